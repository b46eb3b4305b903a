//! A standby's view of the engine, in-process: its storage refuses writes (read-only, as
//! on an OpenBao standby). Every path that mints a key or hands out a lease must fail with
//! exactly the server's read-only error (so the server forwards it to the active node)
//! *before* any call to Qlik, and the periodic work must skip quietly without touching
//! Qlik. `scripts/raft-cluster.sh` checks the same on a real 3-node cluster.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::inproc::{Engine, check_invariants, config_body, start_fake};
use vault_plugin_secrets_qlik::engine::QlikBackend;
use vault_plugin_secrets_qlik::fake::RunningFake;
use vault_plugin_secrets_qlik::framework::LogicalBackend;
use vault_plugin_secrets_qlik::framework::storage::MemoryStorage;
use vault_plugin_secrets_qlik::framework::system::StaticSystemView;

/// The standby's periodic tick answers, makes no Qlik call and changes nothing in storage.
async fn assert_quiet_tick(standby: &Engine, fake: &RunningFake, what: &str) {
    let before = fake.requests().len();
    let dump = standby.dump().await;
    let tick = standby.rollback().await;
    assert_eq!(tick.status, 204, "{what}: {:?}", tick.data);
    assert_eq!(
        fake.requests().len(),
        before,
        "{what}: a standby made Qlik calls: {:?}",
        &fake.requests()[before..]
    );
    assert_eq!(
        standby.dump().await,
        dump,
        "{what}: nothing changed by the tick"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_forwards_every_leasing_path_before_calling_qlik() {
    let fake = start_fake().await;
    let active = Engine::new();
    let written = active
        .call("create", "config", config_body(&fake, json!({})))
        .await;
    assert_eq!(written.status, 204, "{:?}", written.data);
    active
        .call("create", "roles/app", json!({"expiry": "PT1H"}))
        .await;
    let client = active
        .call(
            "create",
            "oauth/clients/app",
            json!({"client_id": fake.oauth.client_id, "client_secret": fake.oauth.client_secret}),
        )
        .await;
    assert_eq!(client.status, 204, "{:?}", client.data);
    let role = active
        .call("create", "oauth/roles/own", json!({"client": "app"}))
        .await;
    assert_eq!(role.status, 204, "{:?}", role.data);
    // The standby: its own backend over the replicated (here: the same) storage, read-only.
    let standby = Engine::with_storage(active.storage.clone());
    standby.storage.set_read_only(true);
    // The periodic tick on a standby, with nothing due (tidy would run): quiet, and no
    // Qlik call (its view may be stale: an orphan scan there could delete a key the active
    // node just minted).
    assert_quiet_tick(&standby, &fake, "tidy due").await;
    // `status` and `metrics` too: only the active node's memory knows the chain's state
    // (ticks, Qlik's last answer, the ledger), so a standby has the server forward them.
    for (op, path) in [
        ("update", "rotate"),
        ("read", "key"),
        ("read", "creds/app"),
        ("read", "status"),
        ("read", "metrics"),
        ("read", "oauth/token/own"),
        ("read", "oauth/clients/app/secret"),
        ("update", "oauth/clients/app/rotate"),
    ] {
        let before = fake.requests().len();
        let reply = standby.call(op, path, json!({})).await;
        assert_eq!(
            (reply.status, reply.error().as_str()),
            (503, "cannot write to readonly storage"),
            "{path}: the server forwards only on this exact error: {:?}",
            reply.data
        );
        assert_eq!(
            fake.requests()[before..].to_vec(),
            vec![],
            "{path}: the standby called Qlik before its first write failed"
        );
    }
    // Automatic rotation due now: the standby's tick leaves it to the active node.
    standby.storage.set_read_only(false);
    let updated = active
        .call(
            "update",
            "config",
            json!({"key_expiry": "PT2H", "rotate_before": "PT1H30M"}),
        )
        .await;
    assert_eq!(updated.status, 204, "{:?}", updated.data);
    let mut config = standby.stored_config().await;
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(60)).to_string();
    // Qlik's expiry and when the key dies by this machine's clock (what rotation goes by).
    config["key_info"]["expires_at"] = json!(soon);
    config["key_info"]["dies_at"] = json!(soon);
    vault_plugin_secrets_qlik::framework::storage::put_json(
        standby.storage.as_ref(),
        "config",
        &config,
    )
    .await
    .expect("put");
    // Replication tells each node's plugin that `config` changed, as the server does.
    active.backend.invalidate("config").await;
    standby.backend.invalidate("config").await;
    let read = standby.call("read", "config", json!({})).await;
    let due: jiff::Timestamp = read.data["next_rotation_at"]
        .as_str()
        .unwrap_or_else(|| panic!("next_rotation_at: {:?}", read.data))
        .parse()
        .expect("next_rotation_at is a timestamp");
    assert!(
        due <= jiff::Timestamp::now(),
        "the standby sees the rotation due: {due}"
    );

    standby.storage.set_read_only(true);
    assert_quiet_tick(&standby, &fake, "rotation due").await;

    // The control: the same tick where writes succeed rotates, with exactly one new key.
    standby.storage.set_read_only(false);
    let (posts, stored) = (
        fake.count_requests("POST", "/api/v1/api-keys"),
        standby.stored_config().await["key_info"]["key_id"].clone(),
    );
    let tick = standby.rollback().await;
    assert_eq!(tick.status, 204, "{:?}", tick.data);
    assert_eq!(
        fake.count_requests("POST", "/api/v1/api-keys") - posts,
        1,
        "the tick on a writable node rotates once"
    );
    assert_ne!(
        standby.stored_config().await["key_info"]["key_id"],
        stored,
        "the control tick stored a new key"
    );
    active.backend.invalidate("config").await;

    // The active node does the work; the standby's answers come from it.
    standby.storage.set_read_only(false);
    let rotated = active.call("update", "rotate", json!({})).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.data);
    let creds = active.call("read", "creds/app", json!({})).await;
    assert_eq!(creds.status, 200, "{:?}", creds.data);
    check_invariants(
        &active,
        &fake,
        &[rotated.lease.expect("lease"), creds.lease.expect("lease")],
        "after the active node did the work",
    )
    .await;
}

#[test]
fn config_and_intents_are_seal_wrapped() {
    let backend = QlikBackend::new(
        Arc::new(MemoryStorage::default()),
        Arc::new(StaticSystemView::default()),
        "uuid",
    );
    let paths = backend.special_paths();
    assert!(
        paths.seal_wrap_storage.contains(&"config".to_string()),
        "{:?}",
        paths.seal_wrap_storage
    );
    assert!(
        paths.seal_wrap_storage.contains(&"intents/".to_string()),
        "{:?}",
        paths.seal_wrap_storage
    );
}
