//! The chain's safety rules through a real `bao server -dev` and `fake-qlik` (the in-process
//! cases, with the automatic rotations, are in `tests/chain.rs`).

mod support;

use support::{config_args, configured_server, mounted_server, no_rate_limits, strs};
use vault_plugin_secrets_qlik::fake::SettingsPatch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_expiry_above_the_tenant_maximum_is_refused_through_the_server() {
    let Some(s) = mounted_server(SettingsPatch {
        max_api_key_expiry: Some("PT12H".into()),
        ..no_rate_limits()
    })
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let args = config_args(&s.fake, dir.path(), &["key_expiry=13h"]);
    let message = s.server.fails(&strs(&args));
    for needle in ["key_expiry", "PT13H", "PT12H", "max_api_key_expiry"] {
        assert!(message.contains(needle), "{needle} missing: {message}");
    }
    let (status, body) = s.server.http("GET", "/v1/qlik/config", None).await;
    assert!(
        status == 404 || body["data"].is_null() || body["data"] == serde_json::json!({}),
        "nothing stored: {status} {body}"
    );
    let args = config_args(&s.fake, dir.path(), &["key_expiry=12h"]);
    s.server.ok(&strs(&args));
    let config = s.server.json(&["read", "qlik/config"]);
    assert_eq!(config["data"]["key_expiry"], "PT12H");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_never_outlives_its_key_when_the_tenant_clock_runs_ahead() {
    let Some(s) = configured_server(no_rate_limits(), &[]).await else {
        return;
    };
    // Qlik's clock 10 minutes ahead of the server's: a 1 h key dies 50 minutes from now by
    // the server's clock (this answered 4199 s before the fix).
    s.fake.advance_clock(600);
    let out = s.server.json(&["write", "qlik/rotate", "expiry=PT1H"]);
    let ttl = out["lease_duration"].as_i64().expect("lease_duration");
    assert!(
        (3590..=3600).contains(&ttl),
        "lease {ttl} s for a 3600 s key"
    );
    let key = s.server.json(&["read", "qlik/key"]);
    let ttl = key["lease_duration"].as_i64().expect("lease_duration");
    assert!((3585..=3600).contains(&ttl), "key lease {ttl} s");
}
