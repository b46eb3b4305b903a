//! Operators' controls through a real `bao` dev server: the rotation fields' rules (each a 400
//! naming the field, nothing changed), `status` (broken when Qlik refuses the stored key),
//! `metrics` as a raw Prometheus response a scraper reads unchanged (parsed with the Python
//! `prometheus_client` parser, counters matching what the test did), and the monitoring
//! policy. The rotations that wait for the server's minute tick are in `e2e_schedule.rs`.

mod support;

use serde_json::{Value, json};
use support::prometheus::{parse_prometheus, sample, scrape};
use support::{DevServer, Setup, configured_server, no_rate_limits};
use vault_plugin_secrets_qlik::fake::SettingsPatch;

fn token_for(server: &DevServer, policy: &str) -> String {
    server.token_for_example_policy(policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_fields_follow_vaults_rules_and_bad_values_change_nothing() {
    let Some(Setup {
        fake: _fake,
        server,
    }) = configured_server(no_rate_limits(), &[]).await
    else {
        return;
    };
    let config = |server: &DevServer| server.json(&["read", "qlik/config"])["data"].clone();
    let before = config(&server);
    assert_eq!(before["rotation_schedule"], "");
    assert_eq!(before["rotation_window"], 0);
    assert_eq!(before["rotation_period"], 0);
    assert_eq!(before["disable_automated_rotation"], false);
    assert_eq!(before["next_rotation_reason"], "expiry");
    assert_eq!(before["next_scheduled_at"], Value::Null);

    // (body, the field the 400 must name, a phrase of the rule)
    let refused = [
        (
            json!({"rotation_schedule": "every day"}),
            "rotation_schedule",
            "failed to parse provided rotation_schedule",
        ),
        (
            json!({"rotation_schedule": "0 2 * *"}),
            "rotation_schedule",
            "expected the standard 5",
        ),
        (
            json!({"rotation_schedule": "0 0 2 * * *"}),
            "rotation_schedule",
            "expected the standard 5",
        ),
        (
            json!({"rotation_schedule": "0 0 30 2 *"}),
            "rotation_schedule",
            "never occurs",
        ),
        (
            json!({"rotation_window": "1h"}),
            "rotation_window",
            "cannot use rotation_window without rotation_schedule",
        ),
        (
            json!({"rotation_schedule": "0 2 * * *", "rotation_period": "24h"}),
            "rotation_schedule",
            "mutually exclusive fields rotation_schedule and rotation_period",
        ),
        (
            json!({"rotation_period": "6h", "rotation_window": "1h"}),
            "rotation_window",
            "rotation_window does not apply to period",
        ),
        (
            json!({"rotation_schedule": "0 2 * * *", "rotation_window": "30s"}),
            "rotation_window",
            "shorter than one minute",
        ),
        (
            json!({"rotation_period": 59}),
            "rotation_period",
            "shorter than one minute",
        ),
        (json!({"rotation_period": "-1h"}), "rotation_period", ""),
        (
            json!({"auto_rotate": true, "disable_automated_rotation": true}),
            "disable_automated_rotation",
            "contradicts auto_rotate=true",
        ),
        (
            json!({"disable_automated_rotation": "sometimes"}),
            "disable_automated_rotation",
            "",
        ),
    ];
    for (body, field, rule) in &refused {
        let (status, answer) = server.http("POST", "qlik/config", Some(body.clone())).await;
        let text = answer.to_string();
        assert_eq!(status, 400, "{body} → {status} {text}");
        assert!(
            text.contains(&format!("\\\"{field}\\\"")) && text.contains(rule),
            "{body}: the 400 must name {field:?} and say {rule:?}: {text}"
        );
    }
    assert_eq!(config(&server), before, "no refused write changed anything");

    // Accepted: a daily schedule with a window, echoed in Vault's form (seconds).
    server.ok(&[
        "write",
        "qlik/config",
        "rotation_schedule=0 2 * * *",
        "rotation_window=1h",
    ]);
    let read = config(&server);
    assert_eq!(read["rotation_schedule"], "0 2 * * *");
    assert_eq!(read["rotation_window"], 3600);
    let scheduled: jiff::Timestamp = read["next_scheduled_at"]
        .as_str()
        .expect("next_scheduled_at")
        .parse()
        .expect("RFC 3339");
    assert_eq!(
        (
            scheduled.as_second() % 86_400,
            scheduled.as_second() % 86_400 / 3600
        ),
        (7200, 2),
        "evaluated in UTC: {read}"
    );
    // A period while a schedule is stored: Vault's error, naming the field of this request.
    let (status, answer) = server
        .http(
            "POST",
            "qlik/config",
            Some(json!({"rotation_period": "6h"})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.to_string().contains("\\\"rotation_period\\\"")
            && answer.to_string().contains("mutually exclusive"),
        "{answer}"
    );
    // Removing the schedule while its window stays is refused; both at once is fine.
    let (status, answer) = server
        .http(
            "POST",
            "qlik/config",
            Some(json!({"rotation_schedule": ""})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("rotation_window"), "{answer}");
    server.ok(&[
        "write",
        "qlik/config",
        "rotation_schedule=",
        "rotation_window=0",
        "rotation_period=2h",
    ]);
    let read = config(&server);
    assert_eq!(read["rotation_schedule"], "");
    assert_eq!(read["rotation_window"], 0);
    assert_eq!(read["rotation_period"], 7200);

    // A monthly schedule cannot keep a 24 h key alive: accepted, with a warning.
    let (status, answer) = server
        .http(
            "POST",
            "qlik/config",
            Some(json!({"rotation_period": 0, "rotation_schedule": "0 0 1 * *"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["warnings"]
            .to_string()
            .contains("the expiry guard will rotate earlier"),
        "{answer}"
    );
    let read = config(&server);
    assert_eq!(read["next_rotation_reason"], "expiry", "{read}");

    // disable_automated_rotation and its alias auto_rotate are one setting.
    server.ok(&["write", "qlik/config", "disable_automated_rotation=true"]);
    let read = config(&server);
    assert_eq!(read["auto_rotate"], false);
    assert_eq!(read["next_rotation_at"], Value::Null);
    assert_eq!(read["next_rotation_reason"], Value::Null);
    server.ok(&["write", "qlik/config", "auto_rotate=true"]);
    assert_eq!(config(&server)["disable_automated_rotation"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_metrics_reach_a_monitor_that_can_read_nothing_else() {
    let settings = SettingsPatch {
        max_keys_per_user: Some(20),
        ..no_rate_limits()
    };
    let Some(Setup { fake, server }) = configured_server(settings, &[]).await else {
        return;
    };
    let monitor = token_for(&server, "qlik-monitoring");

    // Work for the counters: 2 manual rotations, 3 creds, 1 revoked (its key deleted).
    server.ok(&["write", "qlik/roles/app", "expiry=PT1H"]);
    server.ok(&["write", "-force", "qlik/rotate"]);
    server.ok(&["write", "-force", "qlik/rotate"]);
    let mut leases = Vec::new();
    for _ in 0..3 {
        let creds = server.json(&["read", "qlik/creds/app"]);
        leases.push(creds["lease_id"].as_str().expect("lease").to_string());
    }
    server.ok(&["lease", "revoke", "-sync", &leases[0]]);

    // status: healthy, numbers a monitor compares without parsing prose.
    let (code, body) = server.http_as(&monitor, "GET", "qlik/status", None).await;
    assert_eq!(code, 200, "{body}");
    let status = &body["data"];
    assert_eq!(status["state"], "healthy", "{status}");
    assert_eq!(status["qlik_check"], "ok");
    assert_eq!(status["consecutive_failures"], 0);
    assert_eq!(status["tracked_keys"]["dedicated"], 2, "{status}");
    assert_eq!(status["tracked_keys"]["stored"], 1, "{status}");
    assert!(status["seconds_left"].as_i64().expect("seconds_left") > 3600);
    assert_eq!(status["next_rotation_reason"], "expiry");
    for time in ["key_expires_at", "next_rotation_at", "last_success_at"] {
        status[time]
            .as_str()
            .unwrap_or_else(|| panic!("{time}: {status}"))
            .parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("{time} is not RFC 3339: {e}"));
    }
    assert!(
        !body.to_string().contains("eyJ"),
        "no key in status: {body}"
    );

    // metrics: a raw Prometheus answer, as a scraper with a bearer token sees it.
    let (code, content_type, text) = scrape(&server, &monitor, "qlik/metrics").await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(text.starts_with("# HELP"), "raw text, not JSON: {text}");
    assert!(!text.contains("eyJ"), "no key in the metrics");
    let samples = parse_prometheus(&text);
    assert_eq!(
        sample(
            &samples,
            "qlik_rotations_total{outcome=success,trigger=manual}"
        ),
        2.0
    );
    assert_eq!(sample(&samples, "qlik_creds_minted_total{}"), 3.0);
    // The first key (superseded, no lease held it) and the revoked creds key; the second
    // rotation's old key stays, held by the first rotation's lease.
    assert_eq!(sample(&samples, "qlik_keys_deleted_total{}"), 2.0);
    assert_eq!(sample(&samples, "qlik_live_holds{}"), 2.0);
    assert_eq!(
        sample(
            &samples,
            "qlik_api_requests_total{endpoint=POST /api/v1/api-keys,status=201}"
        ),
        5.0
    );
    assert_eq!(sample(&samples, "qlik_chain_state{state=healthy}"), 1.0);
    assert_eq!(sample(&samples, "qlik_chain_state{state=broken}"), 0.0);
    assert_eq!(sample(&samples, "qlik_tracked_keys{kind=dedicated}"), 2.0);
    assert_eq!(sample(&samples, "qlik_rate_limited_responses_total{}"), 0.0);
    let left = sample(&samples, "qlik_stored_key_seconds_left{}");
    assert!(left > 3600.0, "{left}");

    // The CLI: `-format=raw` prints the text; a plain `read` cannot (it expects JSON).
    let raw = server.ok(&["read", "-format=raw", "qlik/metrics"]);
    assert!(raw.starts_with("# HELP"), "{raw}");
    parse_prometheus(&raw);
    let plain = server.cli(&["read", "qlik/metrics"]);
    assert!(!plain.status.success());
    // What OpenBao does with a raw answer is what the scraper got: status, type, body.
    let (code, _, root_text) = scrape(&server, "root", "qlik/metrics").await;
    assert_eq!(code, 200);
    assert!(
        root_text.contains("qlik_creds_minted_total 3"),
        "{root_text}"
    );

    // The monitoring policy reads status and metrics, and nothing else.
    for (method, path) in [
        ("GET", "qlik/config"),
        ("GET", "qlik/key"),
        ("GET", "qlik/creds/app"),
        ("POST", "qlik/rotate"),
        ("LIST", "qlik/keys"),
        ("POST", "qlik/config"),
    ] {
        let body = (method == "POST").then(|| json!({}));
        let (code, answer) = server.http_as(&monitor, method, path, body).await;
        assert_eq!(code, 403, "{method} {path}: {answer}");
    }

    // The stored key revoked at Qlik: broken, with the reason, at once (within the 10 s
    // the engine reuses Qlik's answer).
    let key_id = server.json(&["read", "qlik/config"])["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();
    let deleted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(fake.ca_pem.as_bytes()).expect("ca"))
        .no_proxy()
        .build()
        .expect("client")
        .delete(fake.url_for(&format!("/api/v1/api-keys/{key_id}")))
        .bearer_auth(&fake.admin.api_key)
        .send()
        .await
        .expect("delete at the fake");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        let (_, body) = server.http_as(&monitor, "GET", "qlik/status", None).await;
        if body["data"]["state"] == "broken" || std::time::Instant::now() > deadline {
            break body["data"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(status["state"], "broken", "{status}");
    assert_eq!(status["qlik_check"], "refused");
    assert!(
        status["state_reason"]
            .as_str()
            .is_some_and(|r| r.contains("401")),
        "{status}"
    );
    let (_, _, text) = scrape(&server, &monitor, "qlik/metrics").await;
    let samples = parse_prometheus(&text);
    assert_eq!(sample(&samples, "qlik_chain_state{state=broken}"), 1.0);
    assert_eq!(sample(&samples, "qlik_chain_state{state=healthy}"), 0.0);
}
