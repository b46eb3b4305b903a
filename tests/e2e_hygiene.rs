//! Secrets hygiene: a full run (config, rotate, key, creds, revoke, tidy, failing calls)
//! against a real `bao` dev server at `-log-level=trace` with the plugin at `trace` (its
//! transport libraries too); no key the fake issued may appear in the server log (which
//! carries the plugin's stderr), in any error message, or in a `config` read. Keys are collected from the fake's seed users and
//! every `api_key` the engine returned (`/__fake/keys` never shows tokens).

mod support;

use serde_json::json;
use support::DevServer;
use vault_plugin_secrets_qlik::fake::{FakeOptions, FakeTenant, FaultSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_key_appears_in_logs_or_errors() {
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    // Every target at trace, the transport libraries too (they stay at warn unless named).
    let everything = format!(
        "trace,{}",
        vault_plugin_secrets_qlik::logging::TRANSPORT_TARGETS
            .iter()
            .map(|t| format!("{t}=trace"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let Some(server) =
        DevServer::start_env(&["-log-level=trace"], &[("QLIK_PLUGIN_LOG", &everything)])
    else {
        return;
    };
    server.enable("qlik");
    let mut tokens = vec![fake.service.api_key.clone(), fake.admin.api_key.clone()];
    let mut errors = Vec::new();
    server.write_config(&fake, &[]);
    server.ok(&["write", "qlik/roles/app", "expiry=PT1H"]);
    let mut leases = Vec::new();
    for args in [
        vec!["write", "-force", "qlik/rotate"],
        vec!["read", "qlik/key"],
        vec!["read", "qlik/creds/app"],
        vec!["read", "qlik/creds/app"],
        vec!["write", "-force", "qlik/rotate"],
    ] {
        let out = server.json(&args);
        tokens.push(
            out["data"]["api_key"]
                .as_str()
                .expect("api_key")
                .to_string(),
        );
        leases.push(out["lease_id"].as_str().expect("lease").to_string());
    }
    // Failing calls: a key rejected at verification, Qlik failing every way on a rotation
    // and a creds read, a bad api_key value, a revoked lease read back.
    server.ok(&[
        "write",
        "qlik/config",
        "max_retries=1",
        "request_timeout=5s",
    ]);
    for status in [401, 403, 500, 429] {
        fake.inject_fault(FaultSpec {
            method: Some("POST".into()),
            path_prefix: Some("/api/v1/api-keys".into()),
            count: Some(20),
            status: Some(status),
            ..Default::default()
        });
        errors.push(server.fails(&["write", "-force", "qlik/rotate"]));
        errors.push(server.fails(&["read", "qlik/creds/app"]));
        fake.clear_faults();
    }
    fake.inject_fault(FaultSpec {
        method: Some("GET".into()),
        path_prefix: Some("/api/v1/users/me".into()),
        count: Some(3),
        status: Some(401),
        ..Default::default()
    });
    errors.push(server.fails(&[
        "write",
        "qlik/config",
        &format!("api_key={}", tokens[tokens.len() - 1]),
    ]));
    fake.clear_faults();
    errors.push(server.fails(&["write", "qlik/config", &format!("api_key={}x", tokens[2])]));
    let (_, body) = server
        .http(
            "POST",
            "qlik/config",
            Some(json!({"api_key": format!("{}.extra", tokens[3])})),
        )
        .await;
    errors.push(body.to_string());
    for lease in &leases {
        server.ok(&["lease", "revoke", "-sync", lease]);
    }
    server.ok(&["write", "-force", "qlik/tidy"]);
    let config = server.ok(&["read", "-format=json", "qlik/config"]);
    let keys = server.ok(&["list", "-format=json", "qlik/keys"]);
    let openapi = server
        .http("GET", "sys/internal/specs/openapi", None)
        .await
        .1;

    let log = server.log();
    // The plugin itself logged below info (its own module's DEBUG lines, which the default
    // level drops) and at trace (its dependencies' TRACE lines, under the plugin's logger):
    // the server's own lines do not count.
    let plugin = |level: &str, module: &str| {
        log.lines()
            .filter(|l| {
                l.contains(level)
                    && l.contains(&format!("@module={module}"))
                    && l.contains(".vault-plugin-secrets-qlik: ")
            })
            .count()
    };
    assert!(
        plugin("[DEBUG]", "vault_plugin_secrets_qlik") > 0,
        "no DEBUG line of the plugin's own module: the plugin did not log below info"
    );
    assert!(
        plugin("[TRACE]", "") > 0,
        "no TRACE line from the plugin process: it did not log at trace"
    );
    let mut checked = 0;
    for token in &tokens {
        // The whole token, and its signature alone (a truncated token would still leak it).
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(signature.len() > 20, "a real token");
        for needle in [token.as_str(), signature] {
            assert!(!log.contains(needle), "a key is in the server log");
            for e in &errors {
                assert!(!e.contains(needle), "a key is in an error message: {e}");
            }
            assert!(!config.contains(needle), "a key is in a config read");
            assert!(!keys.contains(needle), "a key is in keys/");
            assert!(!openapi.to_string().contains(needle), "a key is in OpenAPI");
            checked += 1;
        }
    }
    eprintln!(
        "HYGIENE: {} keys (whole and signature: {checked} needles) absent from a {} byte trace log and {} error messages",
        tokens.len(),
        log.len(),
        errors.len()
    );
}
