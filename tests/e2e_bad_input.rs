//! Bad input through a real `bao` dev server, as raw HTTP bodies (non-UTF-8 bytes, wrong
//! JSON types, huge values): every case is a 400 whose message names the field, and the
//! mount's storage reads the same before and after.

mod support;

use serde_json::{Value, json};
use support::{DevServer, Setup, configured_server};
use vault_plugin_secrets_qlik::fake::SettingsPatch;

/// (method, path, raw body, text the 400 must contain).
fn cases(fake_url: &str) -> Vec<(&'static str, &'static str, Vec<u8>, String)> {
    let j = |v: Value| v.to_string().into_bytes();
    let big = "a".repeat(2000);
    let huge_pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        "A".repeat(300 * 1024)
    );
    let mut non_utf8_url = b"{\"tenant_url\":\"https://\xff\xfe.example.com\"}".to_vec();
    non_utf8_url.shrink_to_fit();
    let f = |s: &str| format!("\"{s}\"");
    let mut c: Vec<(&'static str, &'static str, Vec<u8>, String)> = vec![
        // config: tenant_url
        (
            "POST",
            "qlik/config",
            j(json!({"tenant_url": "http://acme.eu.qlikcloud.com"})),
            f("tenant_url"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"tenant_url": "https://u:p@acme.eu.qlikcloud.com"})),
            f("tenant_url"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"tenant_url": "https://acme.eu.qlikcloud.com/?x=1"})),
            f("tenant_url"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"tenant_url": "https://acme.eu.qlikcloud.com/api"})),
            f("tenant_url"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"tenant_url": "https://acme.eu.qlikcloud.com/#frag"})),
            f("tenant_url"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"tenant_url": "acme.eu.qlikcloud.com"})),
            f("tenant_url"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"tenant_url": 5})),
            f("tenant_url"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"tenant_url": format!("https://{big}.com")})),
            f("tenant_url"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"tenant_url": "https://a.com\nx"})),
            f("tenant_url"),
        ),
        ("POST", "qlik/config", non_utf8_url, f("tenant_url")),
        // config: api_key
        (
            "POST",
            "qlik/config",
            j(json!({"api_key": ""})),
            f("api_key"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"api_key": "not-a-jwt"})),
            f("api_key"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"api_key": [1, 2]})),
            f("api_key"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"api_key": "eyJ.eyJ.sig"})),
            f("api_key"),
        ),
        (
            "POST",
            "qlik/config",
            b"{\"api_key\":\"\xc3\x28\xa0\xa1\"}".to_vec(),
            f("api_key"),
        ),
        // config: durations
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": "P1M"})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": "P1Y"})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": "PT0S"})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": -5})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": 1.5})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": "P1DXYZ"})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": "PT0.5S"})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": "P0.5D"})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": "1h1h"})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": "PT99999999999999999999H"})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"key_expiry": true})),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            b"{\"key_expiry\":\"PT1\xffH\"}".to_vec(),
            f("key_expiry"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"rotate_before": "P2D"})),
            f("rotate_before"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"rotate_before": "-1h"})),
            f("rotate_before"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"request_timeout": "PT2M"})),
            f("request_timeout"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"request_timeout": "0"})),
            f("request_timeout"),
        ),
        // config: bool, int, PEM, unknown
        (
            "POST",
            "qlik/config",
            j(json!({"auto_rotate": "maybe"})),
            f("auto_rotate"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"auto_rotate": 5})),
            f("auto_rotate"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"max_retries": 11})),
            f("max_retries"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"max_retries": -1})),
            f("max_retries"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"max_retries": "lots"})),
            f("max_retries"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"max_retries": 1.5})),
            f("max_retries"),
        ),
        (
            "POST",
            "qlik/config",
            b"{\"max_retries\": 99999999999999999999999}".to_vec(),
            f("max_retries"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"ca_cert": "hello"})),
            f("ca_cert"),
        ),
        (
            "POST",
            "qlik/config",
            j(
                json!({"ca_cert": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"}),
            ),
            f("ca_cert"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"ca_cert": huge_pem})),
            f("ca_cert"),
        ),
        (
            "POST",
            "qlik/config",
            j(json!({"ca_cert": {"pem": "x"}})),
            f("ca_cert"),
        ),
        ("POST", "qlik/config", j(json!({"bogus": 1})), f("bogus")),
        // rotate
        (
            "POST",
            "qlik/rotate",
            j(json!({"expiry": "P1Y"})),
            f("expiry"),
        ),
        (
            "POST",
            "qlik/rotate",
            j(json!({"expiry": "abc"})),
            f("expiry"),
        ),
        (
            "POST",
            "qlik/rotate",
            j(json!({"expiry": [1]})),
            f("expiry"),
        ),
        (
            "POST",
            "qlik/rotate",
            j(json!({"revoke_previous": "perhaps"})),
            f("revoke_previous"),
        ),
        (
            "POST",
            "qlik/rotate",
            j(json!({"description": big.clone()})),
            f("description"),
        ),
        (
            "POST",
            "qlik/rotate",
            j(json!({"description": "two\nlines"})),
            f("description"),
        ),
        ("POST", "qlik/rotate", j(json!({"ttl": "1h"})), f("ttl")),
        // roles
        (
            "POST",
            "qlik/roles/app",
            j(json!({"expiry": "1.5h"})),
            f("expiry"),
        ),
        (
            "POST",
            "qlik/roles/app",
            j(json!({"expiry": {}})),
            f("expiry"),
        ),
        (
            "POST",
            "qlik/roles/app",
            j(json!({"expiry": "P1M"})),
            f("expiry"),
        ),
        (
            "POST",
            "qlik/roles/app",
            j(json!({"description": ["x"]})),
            f("description"),
        ),
        (
            "POST",
            "qlik/roles/app",
            j(json!({"description": big})),
            f("description"),
        ),
        ("POST", "qlik/roles/app", j(json!({"ttl": "1h"})), f("ttl")),
        (
            "POST",
            "qlik/roles/app",
            j(json!({"name": "other"})),
            f("name"),
        ),
        // creds, tidy
        ("GET", "qlik/creds/nope", Vec::new(), f("nope")),
        ("POST", "qlik/tidy", j(json!({"x": 1})), f("x")),
    ];
    // Same URL but with a trailing path: the one accepted form is `https://host[:port]`.
    c.push((
        "POST",
        "qlik/config",
        j(json!({"tenant_url": format!("{fake_url}/x")})),
        f("tenant_url"),
    ));
    c
}

async fn snapshot(server: &DevServer) -> Value {
    let mut out = serde_json::Map::new();
    for path in [
        "qlik/config",
        "qlik/roles/app",
        "qlik/roles?list=true",
        "qlik/keys?list=true",
    ] {
        let (status, body) = server.http("GET", path, None).await;
        out.insert(path.into(), json!([status, body["data"]]));
    }
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_input_is_a_400_naming_the_field_and_changes_nothing() {
    let Some(Setup { fake, server }) = configured_server(SettingsPatch::default(), &[]).await
    else {
        return;
    };
    let url = fake.url.as_str().trim_end_matches('/').to_string();
    server.ok(&["write", "qlik/roles/app", "expiry=PT1H", "description=app"]);
    let before = snapshot(&server).await;
    let keys_before = fake.keys().len();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let cases = cases(&url);
    let mut failures = Vec::new();
    for (method, path, body, needle) in &cases {
        let method_ = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = client
            .request(method_, format!("{}/v1/{path}", server.addr))
            .header("X-Vault-Token", "root");
        if !body.is_empty() {
            req = req
                .header("Content-Type", "application/json")
                .body(body.clone());
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0].as_str().map(str::to_string))
            .unwrap_or_default();
        if status != 400 || !message.contains(needle.as_str()) {
            failures.push(format!(
                "{method} {path} {}: {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(120)]),
                &text[..text.len().min(300)]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(snapshot(&server).await, before, "storage changed");
    assert_eq!(fake.keys().len(), keys_before, "nothing minted");
    eprintln!(
        "BAD INPUT: {} cases, each 400 naming the field",
        cases.len()
    );
}
