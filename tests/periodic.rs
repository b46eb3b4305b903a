//! The periodic tick calls Qlik only for work storage points at (in-process: the engine's
//! real dispatch over in-memory storage, against a real `fake-qlik`): an idle mount's tick
//! makes no Qlik call at all, so a tick over many mounts (or a plugin start) does not list
//! every owner's keys at once; an intent left by an interrupted operation makes the next run
//! list the owner's keys and delete the key it left.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::inproc::{Engine, alive, http_client, start_fake};
use vault_plugin_secrets_qlik::framework::Storage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_mounts_tick_makes_no_qlik_call_and_an_intent_makes_it_scan() {
    let fake = start_fake().await;
    let engine = Engine::configured(&fake, json!({})).await;

    // The first tick runs tidy (nothing due for rotation): no call to Qlik.
    let before = fake.requests().len();
    let tick = engine.rollback().await;
    assert!(tick.status < 300, "{:?}", tick.data);
    assert!(
        engine.dump().await.contains_key("tidy/last_periodic_run"),
        "the periodic tidy ran"
    );
    let calls: Vec<String> = fake.requests()[before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(calls.is_empty(), "an idle tick called Qlik: {calls:?}");

    // An operation interrupted after Qlik created its key: the intent and the key remain.
    let marker = "[vault-qlik mount=inproc01 op=interrupted-1]";
    let created: serde_json::Value = http_client(&fake)
        .post(fake.url_for("/api/v1/api-keys"))
        .bearer_auth(&fake.service.api_key)
        .json(&json!({ "description": format!("vault-plugin-secrets-qlik {marker}"), "expiry": "PT1H" }))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    let orphan = created["id"].as_str().expect("id").to_string();
    let started = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    let intent = json!({
        "op": "interrupted-1", "kind": "rotate", "marker": marker,
        "started_at": started.to_string(),
    });
    engine
        .storage
        .put("intents/interrupted-1", intent.to_string().into_bytes())
        .await
        .expect("put");
    // A restarted plugin (new backend over the same storage) runs tidy at its first tick.
    let restarted = Engine::with_storage(Arc::clone(&engine.storage));
    let before = fake.requests().len();
    let tick = restarted.rollback().await;
    assert!(tick.status < 300, "{:?}", tick.data);
    let lists = fake.requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/api-keys")
        .count();
    assert!(lists >= 1, "the intent made the tick list the owner's keys");
    assert!(
        !alive(&fake.keys(), &orphan),
        "the interrupted operation's key was deleted"
    );
    assert!(
        !restarted
            .dump()
            .await
            .keys()
            .any(|k| k.starts_with("intents/")),
        "the intent is resolved"
    );
    fake.shutdown().await;
}
