//! Storage schema versions, in-process (the engine's real dispatch over in-memory storage,
//! against a real `fake-qlik`): every record is written with `schema_version`, a record of a
//! newer schema is refused with an error naming it and both versions and is left unchanged,
//! and a record without the field (written before it existed) reads as the current version.

mod support;

use serde_json::{Value, json};
use support::inproc::{Engine, config_body, start_fake};
use vault_plugin_secrets_qlik::engine::VERSION;
use vault_plugin_secrets_qlik::engine::chain::schema::SCHEMA_VERSION;
use vault_plugin_secrets_qlik::framework::{LogicalBackend, Storage};

async fn raw(engine: &Engine, key: &str) -> Vec<u8> {
    engine
        .storage
        .get(key)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{key} is stored"))
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("json")
}

/// Rewrites the record at `key` with `schema_version` set to `version` (`None`: removed).
async fn set_schema(engine: &Engine, key: &str, version: Option<u64>) -> Vec<u8> {
    let mut value = json_of(&raw(engine, key).await);
    let object = value.as_object_mut().expect("an object");
    match version {
        Some(v) => object.insert("schema_version".into(), json!(v)),
        None => object.remove("schema_version"),
    };
    let bytes = serde_json::to_vec(&value).expect("encode");
    engine.storage.put(key, bytes.clone()).await.expect("put");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_carries_the_schema_version_and_a_newer_one_is_refused_unchanged() {
    let fake = start_fake().await;
    let engine = Engine::new();
    let written = engine
        .call("create", "config", config_body(&fake, json!({})))
        .await;
    assert_eq!(written.status, 204, "{:?}", written.data);
    let role = engine
        .call("create", "roles/app", json!({"expiry": "PT1H"}))
        .await;
    assert_eq!(role.status, 204, "{:?}", role.data);
    let rotated = engine.call("update", "rotate", json!({})).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.data);
    let id = rotated.data["key_id"].as_str().expect("key_id").to_string();

    // Written with the version: config, the stored key's record, the role.
    let records = [
        "config".to_string(),
        format!("keys/{id}"),
        "roles/app".into(),
    ];
    for key in &records {
        assert_eq!(
            json_of(&raw(&engine, key).await)["schema_version"],
            SCHEMA_VERSION,
            "{key}"
        );
    }

    // A newer schema on each: every request that reads it is refused, naming it; the bytes
    // stay as they are, whatever the request was (a write, a rotation, tidy).
    let newer = SCHEMA_VERSION + 1;
    let mut before = Vec::new();
    for key in &records {
        before.push(set_schema(&engine, key, Some(newer)).await);
    }
    engine.backend.invalidate("config").await;
    let attempts = [
        ("read", "config", json!({})),
        ("update", "config", json!({"auto_rotate": false})),
        ("update", "rotate", json!({})),
        ("read", "key", json!({})),
        ("read", &format!("keys/{id}"), json!({})),
        ("read", "roles/app", json!({})),
        ("update", "roles/app", json!({"description": "x"})),
    ];
    for (operation, path, body) in attempts {
        let reply = engine.call(operation, path, body).await;
        let message = reply.error();
        assert_eq!(reply.status, 500, "{operation} {path}: {:?}", reply.data);
        for part in [
            &format!("schema version {newer}"),
            &format!("up to {SCHEMA_VERSION}"),
            VERSION,
            "Upgrade the plugin",
        ] {
            assert!(
                message.contains(part),
                "{operation} {path}: {part:?} not in {message}"
            );
        }
    }
    let tidy = engine.call("update", "tidy", json!({})).await;
    assert_ne!(
        tidy.status, 200,
        "tidy ran over a newer config: {:?}",
        tidy.data
    );
    for (key, bytes) in records.iter().zip(&before) {
        assert_eq!(&raw(&engine, key).await, bytes, "{key} was rewritten");
    }

    // Without the field (a record written before it existed): read as the current version,
    // and written with it again at the next write.
    for key in &records {
        set_schema(&engine, key, None).await;
    }
    engine.backend.invalidate("config").await;
    let read = engine.call("read", "config", json!({})).await;
    assert_eq!(read.status, 200, "{:?}", read.data);
    let record = engine.call("read", &format!("keys/{id}"), json!({})).await;
    assert_eq!(record.status, 200, "{:?}", record.data);
    let rotated = engine.call("update", "rotate", json!({})).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.data);
    assert_eq!(
        json_of(&raw(&engine, "config").await)["schema_version"],
        SCHEMA_VERSION
    );

    // An intent of a newer schema stops tidy before anything is resolved or deleted (the key
    // it protects could otherwise look like an orphan), and stays as it is.
    let intent = serde_json::to_vec(&json!({
        "op": "newer-op", "kind": "rotate", "marker": "m", "started_at": "2020-01-01T00:00:00Z",
        "schema_version": newer,
    }))
    .expect("encode");
    engine
        .storage
        .put("intents/newer-op", intent.clone())
        .await
        .expect("put");
    let tidy = engine.call("update", "tidy", json!({})).await;
    assert_eq!(tidy.status, 500, "{:?}", tidy.data);
    assert!(
        tidy.error().contains("\"intents/newer-op\""),
        "{}",
        tidy.error()
    );
    assert_eq!(raw(&engine, "intents/newer-op").await, intent);
}
