//! A real Prometheus (the Debian package's 2.42) scrapes `/v1/qlik/metrics` of a real `bao
//! server -dev` as `examples/monitoring/prometheus.yml` tells users to (a token of the example
//! monitoring policy in `bearer_token_file`), and evaluates the shipped alert rules of
//! `examples/monitoring/qlik-alerts.yml`, their expressions unchanged and only their `for:`
//! shortened. Everything is asserted through Prometheus's own HTTP API: the target is up, the
//! engine's series are there, and each alert fires when its chain is in that state and resolves
//! after the operator's fix:
//!
//! - `QlikKeyChainBroken`: the stored key deleted at the tenant (Qlik answers 401); fixed by
//!   writing a new key to `qlik/config`;
//! - `QlikOAuthClientBroken`: the OAuth client's stored secret deleted at the tenant, a rotation
//!   by hand refused (`invalid_client`); fixed by writing a new secret, then rotating;
//! - `QlikKeyChainAtRisk` and `QlikKeyChainAtRiskExpiringSoon`: a 10-minute key inside its
//!   `rotate_before` while the tenant refuses every key creation, so the server's tick fails to
//!   rotate it; `QlikOAuthClientAtRisk`: at the same tick, the client's secret is due (a
//!   one-minute period) and its creation refused too. Fixed by clearing the outage and
//!   rotating by hand.
//!
//! The broken cases run while the test waits for the server's first tick (about 60 s after
//! the server started: OpenBao ticks every mount once a minute), which sets the test's length.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::prometheus::{PromServer, require_prometheus};
use support::{DevServer, Setup, mounted_server, no_rate_limits};
use vault_plugin_secrets_qlik::fake::{FaultSpec, RunningFake, SettingsPatch};

/// The `for:` every rule gets in this test instead of its real 1 to 15 minutes (those are
/// exercised by `promtool test rules` in `tests/promtool.rs`).
const SHORT_FOR: &str = "2s";
const JOB: &str = "qlik-secrets-engine";

/// The shipped rules with only their `for:` durations shortened to [`SHORT_FOR`]: the rules'
/// expressions, labels and annotations are exactly the shipped ones. Asserts that the result
/// differs from `original` in those lines only (and in every one of them).
fn shortened_for(original: &str) -> String {
    let shortened: Vec<String> = original
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}for: {SHORT_FOR}")
            }
            None => line.to_string(),
        })
        .collect();
    let changed: Vec<(&str, &str)> = original
        .lines()
        .zip(&shortened)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (a, b.as_str()))
        .collect();
    assert_eq!(original.lines().count(), shortened.len());
    let for_lines = original
        .lines()
        .filter(|l| l.trim_start().starts_with("for: "))
        .count();
    assert!(for_lines >= 4, "the example's rules have for: durations");
    assert_eq!(changed.len(), for_lines, "every for: line, nothing else");
    for (was, now) in &changed {
        assert!(
            was.trim_start().starts_with("for: ") && now.trim_start().starts_with("for: "),
            "{was:?} → {now:?}"
        );
    }
    shortened.join("\n") + "\n"
}

/// The example scrape config, for this server: the same job, metrics path and
/// `bearer_token_file`, with the dev server's plain-HTTP loopback address, the token file of
/// this test, and 1 s scrape and evaluation intervals. Each substituted text is in the example
/// exactly once.
fn scrape_config(example: &str, target: &str, token_file: &str) -> String {
    let mut config = example.to_string();
    for (from, to) in [
        ("scheme: https", "scheme: http".to_string()),
        (
            "bearer_token_file: /etc/prometheus/openbao-qlik-monitoring.token",
            format!("bearer_token_file: {token_file}"),
        ),
        (
            "targets: [\"openbao.example.com:8200\"]",
            format!("targets: [\"{target}\"]"),
        ),
    ] {
        assert_eq!(config.matches(from).count(), 1, "{from:?} in:\n{example}");
        config = config.replace(from, &to);
    }
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{config}"
    )
}

/// A key of the fake's service user with `expiry`: its token.
async fn new_key(fake: &RunningFake, expiry: &str) -> String {
    support::inproc::mint_directly(fake, &fake.service.api_key, expiry)
        .await
        .1
}

/// `qlik/config` for `fake` with the API key `token`, then `extra`.
fn write_config(server: &DevServer, fake: &RunningFake, token: &str, extra: &[&str]) {
    let ca = server.dir.path().join("fake-ca.pem");
    std::fs::write(&ca, &fake.ca_pem).expect("ca");
    let mut args = vec![
        "write".to_string(),
        "qlik/config".into(),
        format!("tenant_url={}", fake.url.as_str().trim_end_matches('/')),
        format!("api_key={token}"),
        format!("ca_cert=@{}", ca.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    server.ok(&support::strs(&args));
}

/// 503 for every `method` call under `prefix` (a tenant outage for those calls).
fn refuse(fake: &RunningFake, method: &str, prefix: &str) {
    fake.inject_fault(FaultSpec {
        method: Some(method.into()),
        path_prefix: Some(prefix.into()),
        count: Some(10_000),
        status: Some(503),
        ..Default::default()
    });
}

async fn status(server: &DevServer) -> Value {
    let (code, body) = server.http("GET", "qlik/status", None).await;
    assert_eq!(code, 200, "{body}");
    body["data"].clone()
}

/// The active alert named `name` (its labels must match `labels`), when in `state`.
async fn alert(prom: &PromServer, name: &str, state: &str) -> Option<Value> {
    prom.alerts()
        .await
        .into_iter()
        .find(|a| a["labels"]["alertname"] == name && a["state"] == state)
}

/// Names of the active (pending or firing) alerts.
async fn active(prom: &PromServer) -> Vec<String> {
    let mut names: Vec<String> = prom
        .alerts()
        .await
        .iter()
        .map(|a| format!("{}({})", a["labels"]["alertname"], a["state"]))
        .map(|s| s.replace('"', ""))
        .collect();
    names.sort();
    names
}

/// Waits until `name` fires; returns the alert and how long it took from `since`.
async fn fired(prom: &PromServer, name: &str, since: Instant) -> (Value, Duration) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(alert) = alert(prom, name, "firing").await {
            return (alert, since.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not fire within 30 s; active: {:?}",
            active(prom).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `name` is no longer active (resolved); returns how long it took from `since`.
async fn resolved(prom: &PromServer, name: &str, since: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now_active = active(prom).await;
        if !now_active
            .iter()
            .any(|a| a.starts_with(&format!("{name}(")))
        {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{name} still active 30 s after the fix: {now_active:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of a one-series query.
async fn value(prom: &PromServer, expr: &str) -> f64 {
    let result = prom.query(expr).await;
    assert_eq!(result.len(), 1, "{expr}: {result:?}");
    result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{expr}: {result:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_fires_and_resolves_the_example_alerts() {
    let test_started = Instant::now();
    let Some(tools) = require_prometheus() else {
        return;
    };
    let Some(Setup { fake, server }) = mounted_server(SettingsPatch {
        max_keys_per_user: Some(20),
        // The fake's default, Qlik-shaped error bodies (`OAUTH-…-INVALID-CLIENT`): the engine
        // knows a refused secret by its kind, whatever the body says.
        ..no_rate_limits()
    })
    .await
    else {
        return;
    };
    let server_started = Instant::now();
    let first_key = new_key(&fake, "PT1H").await;
    write_config(&server, &fake, &first_key, &["key_expiry=PT1H"]);
    let id_arg = format!("client_id={}", fake.oauth.client_id);
    let secret_arg = format!("client_secret={}", fake.oauth.client_secret);
    server.ok(&["write", "qlik/oauth/clients/app", &id_arg, &secret_arg]);

    // Prometheus with the example's scrape job and the shipped rules (for: shortened).
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monitoring");
    let dir = tempfile::Builder::new()
        .prefix("qlik-prometheus")
        .tempdir()
        .expect("tempdir");
    let token_file = dir.path().join("openbao-qlik-monitoring.token");
    std::fs::write(
        &token_file,
        server.token_for_example_policy("qlik-monitoring"),
    )
    .expect("token file");
    let example = std::fs::read_to_string(examples.join("prometheus.yml")).expect("example");
    let target = server.addr.trim_start_matches("http://").to_string();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        scrape_config(&example, &target, token_file.to_str().expect("path")),
    )
    .expect("config");
    // The example's `rule_files: [qlik-alerts.yml]` is relative to the config file.
    let rules = std::fs::read_to_string(examples.join("qlik-alerts.yml")).expect("rules");
    std::fs::write(dir.path().join("qlik-alerts.yml"), shortened_for(&rules)).expect("rules");
    let prom = PromServer::start(&tools.prometheus, dir).await;
    eprintln!(
        "prometheus pid {} at {}, bao at {}",
        prom.pid(),
        prom.url,
        server.addr
    );

    // The target is up, scraped with the monitoring token.
    let deadline = Instant::now() + Duration::from_secs(20);
    let target_info = loop {
        let targets = prom.api("targets", &[("state", "active")]).await;
        let ours = targets["activeTargets"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["labels"]["job"] == JOB).cloned());
        if let Some(t) = &ours
            && t["health"] == "up"
        {
            break t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "target not up: {ours:?}\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        target_info["scrapeUrl"],
        format!("http://{target}/v1/qlik/metrics"),
        "{target_info}"
    );
    assert_eq!(target_info["lastError"], "", "{target_info}");
    // The rules loaded, unchanged but for `for:`.
    let groups = prom.api("rules", &[("type", "alert")]).await;
    let loaded: Vec<&str> = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["health"] == "ok")
        .filter_map(|r| r["name"].as_str())
        .collect();
    for name in [
        "QlikKeyChainAtRisk",
        "QlikKeyChainAtRiskExpiringSoon",
        "QlikKeyChainBroken",
        "QlikOAuthClientAtRisk",
        "QlikOAuthClientBroken",
    ] {
        assert!(loaded.contains(&name), "{name} not loaded: {groups}");
    }
    // The engine's series, as Prometheus stored them.
    let chain = prom.query("qlik_chain_state").await;
    assert_eq!(chain.len(), 3, "healthy, at_risk, broken: {chain:?}");
    assert_eq!(
        value(&prom, r#"qlik_chain_state{state="healthy"}"#).await,
        1.0
    );
    let left = value(&prom, "qlik_stored_key_seconds_left").await;
    assert!((3000.0..=3600.0).contains(&left), "{left}");
    assert_eq!(
        value(
            &prom,
            r#"qlik_oauth_client_state{client="app",state="healthy"}"#
        )
        .await,
        1.0
    );
    let series = value(&prom, &format!(r#"scrape_samples_scraped{{job="{JOB}"}}"#)).await;
    let names = prom
        .query(&format!(
            r#"count by (__name__) ({{job="{JOB}",__name__=~"qlik_.*"}})"#
        ))
        .await
        .len();
    eprintln!("MEASURED: one scrape: {series} samples, {names} qlik_* metric names");
    assert!(series >= 30.0, "{series}");
    assert_eq!(
        active(&prom).await,
        Vec::<String>::new(),
        "healthy: no alert"
    );

    // 1. The stored key deleted at the tenant: Qlik refuses it, the chain is broken.
    let key_id = server.json(&["read", "qlik/config"])["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();
    let fault_at = Instant::now();
    let deleted = support::inproc::http_client(&fake)
        .delete(fake.url_for(&format!("/api/v1/api-keys/{key_id}")))
        .bearer_auth(&fake.admin.api_key)
        .send()
        .await
        .expect("delete at the fake");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let (broken, took) = fired(&prom, "QlikKeyChainBroken", fault_at).await;
    eprintln!("MEASURED: key deleted → QlikKeyChainBroken firing: {took:?}");
    assert_eq!(broken["labels"]["severity"], "critical", "{broken}");
    assert_eq!(broken["labels"]["instance"], target.as_str(), "{broken}");
    assert!(
        broken["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("bao write qlik/config api_key=")),
        "{broken}"
    );
    assert_eq!(status(&server).await["state"], "broken");
    // The fix: a new key written to qlik/config. 10 minutes of life, inside its 9m50s
    // margin within seconds, and an outage of key creation from now on: the server's next
    // tick must rotate it and cannot (part 3).
    let fix_at = Instant::now();
    let short_key = new_key(&fake, "PT10M").await;
    // (Before the write, so that no tick finds the key due without the outage.)
    refuse(&fake, "POST", "/api/v1/api-keys");
    write_config(
        &server,
        &fake,
        &short_key,
        &["rotate_before=PT9M50S", "key_expiry=PT1H"],
    );
    let took = resolved(&prom, "QlikKeyChainBroken", fix_at).await;
    eprintln!("MEASURED: new key written → QlikKeyChainBroken resolved: {took:?}");

    // 2. The OAuth client's stored secret deleted at the tenant (a new one made first, as an
    // administrator would for the fix), then a rotation by hand: Qlik refuses the stored one.
    let http = support::inproc::http_client(&fake);
    let secrets_url = fake.url_for(&format!(
        "/api/v1/oauth-clients/{}/client-secrets",
        fake.oauth.client_id
    ));
    let created: Value = http
        .post(&secrets_url)
        .bearer_auth(&fake.admin.api_key)
        .send()
        .await
        .expect("create a secret")
        .json()
        .await
        .expect("json");
    let (new_secret, new_hint) = (
        created["clientSecret"]
            .as_str()
            .expect("secret")
            .to_string(),
        created["hint"].as_str().expect("hint").to_string(),
    );
    let stored_hint =
        server.json(&["read", "qlik/oauth/clients/app"])["data"]["client_secret_hint"]
            .as_str()
            .expect("hint")
            .to_string();
    let fault_at = Instant::now();
    let deleted = http
        .delete(format!("{secrets_url}/{stored_hint}"))
        .bearer_auth(&fake.admin.api_key)
        .send()
        .await
        .expect("delete the secret");
    assert_eq!(deleted.status().as_u16(), 204);
    let refused = server.fails(&["write", "-force", "qlik/oauth/clients/app/rotate"]);
    assert!(
        refused.contains("Qlik rejected the OAuth client credentials"),
        "{refused}"
    );
    let (broken, took) = fired(&prom, "QlikOAuthClientBroken", fault_at).await;
    eprintln!(
        "MEASURED: secret deleted, rotation refused → QlikOAuthClientBroken firing: {took:?}"
    );
    assert_eq!(broken["labels"]["client"], "app", "{broken}");
    assert_eq!(broken["labels"]["severity"], "critical", "{broken}");
    assert!(
        broken["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("client app broken")),
        "{broken}"
    );
    // The fix: the new secret written, then a rotation (the written secret alone leaves the
    // state broken: the client's history keeps the refusal until a rotation succeeds). The
    // rotation's secret is made while the tenant's clock is 2 minutes behind, so that Qlik
    // dates it 2 minutes ago: with a one-minute period it is due at the server's first tick
    // (part 3), where its creation is refused (the outage set before the period is written).
    let fix_at = Instant::now();
    server.ok(&[
        "write",
        "qlik/oauth/clients/app",
        &format!("client_secret={new_secret}"),
        &format!("client_secret_hint={new_hint}"),
    ]);
    fake.advance_clock(-120);
    server.ok(&["write", "-force", "qlik/oauth/clients/app/rotate"]);
    fake.advance_clock(120);
    refuse(&fake, "POST", "/api/v1/oauth-clients/");
    server.ok(&["write", "qlik/oauth/clients/app", "rotation_period=60s"]);
    let took = resolved(&prom, "QlikOAuthClientBroken", fix_at).await;
    eprintln!(
        "MEASURED: new secret written and rotated → QlikOAuthClientBroken resolved: {took:?}"
    );
    assert_eq!(
        status(&server).await["oauth_clients"]["app"]["state"],
        "healthy"
    );

    // 3. At risk: the server's tick finds both due and fails to rotate either.
    let deadline = Instant::now() + Duration::from_secs(100);
    let at_risk_at = loop {
        let now = status(&server).await;
        assert_ne!(now["state"], "broken", "{now}");
        if now["state"] == "at_risk" && now["oauth_clients"]["app"]["state"] == "at_risk" {
            assert!(
                now["state_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("last automatic rotation failed")),
                "{now}"
            );
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "not at_risk {:?} after the server started: {now}",
            server_started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "MEASURED: at_risk (the first tick) {:?} after the server started",
        server_started.elapsed()
    );
    let (at_risk, took) = fired(&prom, "QlikKeyChainAtRisk", at_risk_at).await;
    eprintln!("MEASURED: status at_risk → QlikKeyChainAtRisk firing: {took:?}");
    assert_eq!(at_risk["labels"]["severity"], "warning", "{at_risk}");
    let description = at_risk["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("(1 failed attempts)")
            && description.contains("The stored key expires in 9m"),
        "the annotations' queries: {at_risk}"
    );
    let (soon, took) = fired(&prom, "QlikKeyChainAtRiskExpiringSoon", at_risk_at).await;
    eprintln!("MEASURED: status at_risk → QlikKeyChainAtRiskExpiringSoon firing: {took:?}");
    assert_eq!(soon["labels"]["severity"], "critical", "{soon}");
    let (oauth, took) = fired(&prom, "QlikOAuthClientAtRisk", at_risk_at).await;
    eprintln!("MEASURED: status at_risk → QlikOAuthClientAtRisk firing: {took:?}");
    assert_eq!(oauth["labels"]["client"], "app", "{oauth}");
    assert!(
        oauth["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("(1 failed attempts;")),
        "{oauth}"
    );
    assert!(
        alert(&prom, "QlikKeyChainBroken", "firing").await.is_none()
            && alert(&prom, "QlikOAuthClientBroken", "firing")
                .await
                .is_none(),
        "{:?}",
        active(&prom).await
    );
    // The fix: the outage over, both rotated by hand.
    let fix_at = Instant::now();
    fake.clear_faults();
    server.ok(&["write", "-force", "qlik/rotate"]);
    server.ok(&["write", "-force", "qlik/oauth/clients/app/rotate"]);
    for name in [
        "QlikKeyChainAtRisk",
        "QlikKeyChainAtRiskExpiringSoon",
        "QlikOAuthClientAtRisk",
    ] {
        let took = resolved(&prom, name, fix_at).await;
        eprintln!("MEASURED: rotated by hand → {name} resolved: {took:?}");
    }
    assert_eq!(active(&prom).await, Vec::<String>::new());
    let now = status(&server).await;
    assert_eq!(now["state"], "healthy", "{now}");
    assert_eq!(now["oauth_clients"]["app"]["state"], "healthy", "{now}");
    // Every scrape of the run succeeded.
    assert_eq!(
        value(&prom, &format!(r#"min_over_time(up{{job="{JOB}"}}[10m])"#)).await,
        1.0
    );
    eprintln!("MEASURED: whole test {:?}", test_started.elapsed());
}
