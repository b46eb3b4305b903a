//! `status` and `metrics` read no storage per scrape (in-process: the engine's real dispatch
//! over in-memory storage that counts its reads, against a real `fake-qlik`): the records'
//! figures are kept in memory as this process writes them, built from storage once, and are
//! what a fresh process builds from the same storage.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::inproc::{Engine, start_fake};

const KEY_LEASES: usize = 300;
const CREDS_LEASES: usize = 60;

fn figures(status: &Value) -> Value {
    json!({
        "tracked_keys": status["tracked_keys"],
        "live_holds": status["live_holds"],
        "deferred_deletions_pending": status["deferred_deletions_pending"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_reads_no_storage_and_agrees_with_a_fresh_process() {
    let fake = start_fake().await;
    let engine = Engine::configured(&fake, json!({})).await;
    let role = engine
        .call("create", "roles/app", json!({ "expiry": "PT1H" }))
        .await;
    assert!(role.status < 300, "{:?}", role.data);
    // Leases before the first scrape: the first one builds from storage.
    let mut leases = engine.read_keys(KEY_LEASES / 2).await;
    let first = engine.call("read", "status", json!({})).await;
    assert_eq!(first.status, 200, "{:?}", first.data);
    // ... and after it: kept by the writes themselves.
    leases.extend(engine.read_keys(KEY_LEASES - KEY_LEASES / 2).await);
    let rotated = engine.call("update", "rotate", json!({})).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.data);
    for _ in 0..CREDS_LEASES {
        let creds = engine.call("read", "creds/app", json!({})).await;
        assert_eq!(creds.status, 200, "{:?}", creds.data);
        leases.push(creds.lease.expect("lease"));
    }
    // Some leases end: holds released, dedicated keys deleted.
    for lease in leases.iter().step_by(7) {
        let revoked = engine.revoke(lease).await;
        assert!(revoked.status < 300, "{:?}", revoked.data);
    }

    for path in ["status", "metrics"] {
        let before = engine.storage.reads();
        let reply = engine.call("read", path, json!({})).await;
        assert_eq!(reply.status, 200, "{path}: {:?}", reply.data);
        let reads = engine.storage.reads() - before;
        assert!(
            reads <= 5,
            "{path} read {reads} storage entries with {} live leases",
            leases.len()
        );
    }
    let kept = engine.call("read", "status", json!({})).await.data;
    let revoked_n = leases.len().div_ceil(7);
    let creds_revoked = leases[KEY_LEASES..]
        .iter()
        .enumerate()
        .filter(|(i, _)| (KEY_LEASES + i).is_multiple_of(7))
        .count();
    assert_eq!(
        kept["tracked_keys"]["dedicated"],
        CREDS_LEASES - creds_revoked,
        "{kept}"
    );
    assert_eq!(
        kept["live_holds"],
        KEY_LEASES + 1 - (revoked_n - creds_revoked),
        "every key lease and the rotation's: {kept}"
    );
    // A fresh process over the same storage builds the same figures.
    let fresh = Engine::with_storage(Arc::clone(&engine.storage));
    let built = fresh.call("read", "status", json!({})).await.data;
    assert_eq!(figures(&built), figures(&kept));
    fake.shutdown().await;
}
