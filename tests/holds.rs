//! Lease holds on the stored key, in-process (the engine's real dispatch over in-memory
//! storage, against a real `fake-qlik`): each `key` or `rotate` lease holds its key with a
//! storage entry of its own (`holds/<key id>/<hold id>`), and a superseded key is deleted at
//! Qlik only when its last hold ends.

mod support;

use serde_json::{Value, json};
use support::inproc::{Engine, LeaseHandle, Reply, alive, config_body, mint_directly, start_fake};
use vault_plugin_secrets_qlik::fake::RunningFake;
use vault_plugin_secrets_qlik::framework::Storage;

/// A configured engine and the stored key's id.
async fn configured() -> (RunningFake, Engine, String) {
    let fake = start_fake().await;
    let engine = Engine::new();
    let written = engine
        .call("create", "config", config_body(&fake, json!({})))
        .await;
    assert_eq!(written.status, 204, "{:?}", written.data);
    let id = fake.service.key_id.clone();
    (fake, engine, id)
}

async fn read_key(engine: &Engine) -> LeaseHandle {
    let read = engine.call("read", "key", json!({})).await;
    assert_eq!(read.status, 200, "{:?}", read.data);
    read.lease.expect("a lease")
}

fn hold_of(lease: &LeaseHandle) -> String {
    let internal: Value = serde_json::from_str(&lease.internal_data).expect("internal data");
    internal["hold"].as_str().expect("hold").to_string()
}

/// The hold ids stored as entries for key `id`.
async fn hold_entries(engine: &Engine, id: &str) -> Vec<String> {
    engine
        .storage
        .list(&format!("holds/{id}/"))
        .await
        .expect("list")
}

async fn raw(engine: &Engine, key: &str) -> Option<Vec<u8>> {
    engine.storage.get(key).await.expect("get")
}

async fn live_leases(engine: &Engine, id: &str) -> Value {
    engine
        .call("read", &format!("keys/{id}"), json!({}))
        .await
        .data["live_leases"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_read_writes_one_hold_entry_and_never_the_record() {
    let (fake, engine, id) = configured().await;
    let record = raw(&engine, &format!("keys/{id}")).await.expect("record");
    let (puts_before, _) = engine.storage.writes();
    let mut leases = Vec::new();
    for _ in 0..20 {
        leases.push(read_key(&engine).await);
    }
    assert_eq!(
        engine.storage.writes().0 - puts_before,
        20,
        "one put per read"
    );
    assert_eq!(
        raw(&engine, &format!("keys/{id}")).await.as_ref(),
        Some(&record),
        "the record is not rewritten by reads"
    );
    let mut holds: Vec<String> = leases.iter().map(hold_of).collect();
    holds.sort();
    assert_eq!(
        hold_entries(&engine, &id).await,
        holds,
        "one entry per lease"
    );
    assert_eq!(live_leases(&engine, &id).await, 20);

    // A lease on the current key ends: its entry goes, the key stays.
    let revoked = engine.revoke(&leases[0]).await;
    assert_eq!(revoked.status, 204, "{:?}", revoked.data);
    let left = hold_entries(&engine, &id).await;
    assert_eq!(left.len(), 19);
    assert!(!left.contains(&hold_of(&leases[0])));
    assert_eq!(live_leases(&engine, &id).await, 19);
    assert!(alive(&fake.keys(), &id), "the stored key is never deleted");
    assert_eq!(
        raw(&engine, &format!("keys/{id}")).await.as_ref(),
        Some(&record),
        "nor is its record rewritten by a release"
    );
}

/// Rotates; the answer warns that `old` stays alive while `holds` leases hold it.
async fn rotate_past_holds(engine: &Engine, old: &str, holds: usize) -> Reply {
    let rotated = engine.call("update", "rotate", json!({})).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.data);
    let expected = format!("while {holds} lease(s) hold it");
    assert!(
        rotated
            .warnings
            .iter()
            .any(|w| w.contains(old) && w.contains(&expected)),
        "{:?}",
        rotated.warnings
    );
    rotated
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_key_goes_at_qlik_only_with_its_last_hold() {
    let (fake, engine, old) = configured().await;
    let first = read_key(&engine).await;
    let second = read_key(&engine).await;
    let rotated = rotate_past_holds(&engine, &old, 2).await;
    let new = rotated.lease.as_ref().expect("lease").key_id.clone();
    assert_eq!(
        hold_entries(&engine, &new).await,
        vec![hold_of(rotated.lease.as_ref().expect("lease"))],
        "the rotate lease holds the new key"
    );
    assert_eq!(
        engine.dump().await[&format!("keys/{old}")]["kind"],
        "superseded"
    );
    assert_eq!(live_leases(&engine, &old).await, 2);

    // Tidy leaves a held superseded key alone.
    let tidy = engine.call("update", "tidy", json!({})).await;
    assert_eq!(tidy.data["superseded_deleted"], 0, "{:?}", tidy.data);

    assert_eq!(engine.revoke(&first).await.status, 204);
    assert!(alive(&fake.keys(), &old), "one hold left: still alive");
    assert_eq!(live_leases(&engine, &old).await, 1);

    assert_eq!(engine.revoke(&second).await.status, 204);
    assert!(!alive(&fake.keys(), &old), "the last hold ended: deleted");
    assert!(
        raw(&engine, &format!("keys/{old}")).await.is_none(),
        "forgotten"
    );
    assert!(hold_entries(&engine, &old).await.is_empty());
    assert!(alive(&fake.keys(), &new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_previous_deletes_a_held_key_and_forgets_its_holds() {
    let (fake, engine, old) = configured().await;
    let lease = read_key(&engine).await;
    let rotated = engine
        .call("update", "rotate", json!({"revoke_previous": true}))
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.data);
    assert!(!alive(&fake.keys(), &old), "deleted at once");
    assert!(raw(&engine, &format!("keys/{old}")).await.is_none());
    assert!(
        hold_entries(&engine, &old).await.is_empty(),
        "its holds went with it"
    );
    // Its lease ends later: nothing left to release, and that is no error.
    assert_eq!(engine.revoke(&lease).await.status, 204);
    assert!(hold_entries(&engine, &old).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_hold_in_the_record_still_holds_its_key() {
    let (fake, engine, old) = configured().await;
    // A record as the previous version wrote it: the hold in the record's own list.
    let key = format!("keys/{old}");
    let mut record: Value =
        serde_json::from_slice(&raw(&engine, &key).await.expect("record")).expect("json");
    record["holds"] = json!(["legacy-hold"]);
    engine
        .storage
        .put(&key, serde_json::to_vec(&record).expect("json"))
        .await
        .expect("put");
    let current = read_key(&engine).await;
    // That version's lease: the same internal data, with the hold in the record.
    let mut internal: Value = serde_json::from_str(&current.internal_data).expect("json");
    internal["hold"] = json!("legacy-hold");
    let legacy = LeaseHandle {
        internal_data: internal.to_string(),
        ..current.clone()
    };
    assert_eq!(live_leases(&engine, &old).await, 2, "legacy + entry");

    rotate_past_holds(&engine, &old, 2).await;
    assert_eq!(engine.revoke(&current).await.status, 204);
    assert!(alive(&fake.keys(), &old), "the legacy hold still holds it");
    let tidy = engine.call("update", "tidy", json!({})).await;
    assert_eq!(tidy.data["superseded_deleted"], 0, "{:?}", tidy.data);
    assert!(alive(&fake.keys(), &old), "tidy honours it too");
    assert_eq!(live_leases(&engine, &old).await, 1);

    assert_eq!(engine.revoke(&legacy).await.status, 204);
    assert!(!alive(&fake.keys(), &old), "the legacy hold ended: deleted");
    assert!(raw(&engine, &key).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidy_removes_holds_of_untracked_keys_only() {
    let (_fake, engine, id) = configured().await;
    let lease = read_key(&engine).await;
    for hold in ["h1", "h2"] {
        engine
            .storage
            .put(&format!("holds/forgotten-key/{hold}"), b"{}".to_vec())
            .await
            .expect("put");
    }
    let tidy = engine.call("update", "tidy", json!({})).await;
    assert_eq!(tidy.status, 200, "{:?}", tidy.data);
    assert_eq!(tidy.data["holds_removed"], 2, "{:?}", tidy.data);
    assert!(hold_entries(&engine, "forgotten-key").await.is_empty());
    assert_eq!(hold_entries(&engine, &id).await, vec![hold_of(&lease)]);

    // The stored key's holds are never orphans, even should its record be missing.
    engine
        .storage
        .delete(&format!("keys/{id}"))
        .await
        .expect("delete");
    let tidy = engine.call("update", "tidy", json!({})).await;
    assert_eq!(tidy.data["holds_removed"], 0, "{:?}", tidy.data);
    assert_eq!(hold_entries(&engine, &id).await, vec![hold_of(&lease)]);
}

/// Not a test: prints what `key` reads cost the mount's storage (`cargo nextest run --test
/// holds --run-ignored only --no-capture storage_written_per_key_read`). Reads are counted,
/// never timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn storage_written_per_key_read() {
    const READS: u64 = 2_000;
    let (_fake, engine, _) = configured().await;
    let (puts_before, bytes_before) = engine.storage.writes();
    let mut last_read = 0;
    for _ in 0..READS {
        let before = engine.storage.writes().1;
        let read = engine.call("read", "key", json!({})).await;
        assert_eq!(read.status, 200, "{:?}", read.data);
        last_read = engine.storage.writes().1 - before;
    }
    let (puts, bytes) = engine.storage.writes();
    let (puts, bytes) = (puts - puts_before, bytes - bytes_before);
    let dump = engine.dump().await;
    let (record_name, record) = dump
        .iter()
        .find(|(k, _)| k.starts_with("keys/"))
        .map(|(k, v)| (k.len(), v.to_string().len()))
        .unwrap_or_default();
    let hold_name = dump
        .keys()
        .find(|k| k.starts_with("holds/"))
        .map(String::len)
        .unwrap_or_default();
    println!(
        "{READS} key reads: {puts} puts, {bytes} value bytes written ({} a read on average, \
         {last_read} the last read); the key's record is {record} bytes; entry names: record \
         {record_name} bytes, hold {hold_name} bytes",
        bytes / READS,
    );
}

async fn kind(engine: &Engine, id: &str) -> Value {
    engine
        .call("read", &format!("keys/{id}"), json!({}))
        .await
        .data["kind"]
        .clone()
}

/// `delete config` and a new `config` with `token` (an operator's key of the same user).
async fn reconfigure(fake: &RunningFake, engine: &Engine, token: &str) {
    let deleted = engine.call("delete", "config", json!({})).await;
    assert!(deleted.status < 300, "{:?}", deleted.data);
    let written = engine
        .call(
            "create",
            "config",
            config_body(fake, json!({ "api_key": token })),
        )
        .await;
    assert!(written.status < 300, "{:?}", written.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_config_makes_the_previous_key_what_it_is() {
    let (fake, engine, operator_key) = configured().await;
    let operator_lease = read_key(&engine).await;

    // A key the engine minted (a rotation), held by the rotation's lease, then a new config
    // after `delete config`: superseded, kept while held, deleted at Qlik with its last lease.
    let rotated = engine.call("update", "rotate", json!({})).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.data);
    let rotate_lease = rotated.lease.expect("lease");
    let minted = rotate_lease.key_id.clone();
    let (second, second_token) = mint_directly(&fake, &rotate_lease.token, "PT1H").await;
    reconfigure(&fake, &engine, &second_token).await;
    assert_eq!(
        kind(&engine, &minted).await,
        "superseded",
        "minted here, held"
    );
    assert_eq!(kind(&engine, &second).await, "stored");
    assert!(
        alive(&fake.keys(), &minted),
        "held: alive until its lease ends"
    );
    let revoked = engine.revoke(&rotate_lease).await;
    assert!(revoked.status < 300, "{:?}", revoked.data);
    assert!(!alive(&fake.keys(), &minted), "deleted with its last lease");
    assert_eq!(kind(&engine, &minted).await, Value::Null, "and forgotten");

    // The operator's first key (superseded by the rotation) is still held by its lease.
    assert_eq!(kind(&engine, &operator_key).await, "superseded");
    let revoked = engine.revoke(&operator_lease).await;
    assert!(revoked.status < 300, "{:?}", revoked.data);

    // A key an operator wrote, held by a `key` lease, replaced: foreign, left alone at Qlik,
    // listed while held, forgotten (not deleted) with its last lease.
    let second_lease = read_key(&engine).await;
    let (third, third_token) = mint_directly(&fake, &second_token, "PT1H").await;
    reconfigure(&fake, &engine, &third_token).await;
    assert_eq!(kind(&engine, &second).await, "foreign");
    let status = engine.call("read", "status", json!({})).await;
    assert_eq!(
        status.data["tracked_keys"]["foreign"], 1,
        "{:?}",
        status.data
    );
    assert_eq!(
        status.data["tracked_keys"]["stored"], 1,
        "{:?}",
        status.data
    );
    let revoked = engine.revoke(&second_lease).await;
    assert!(revoked.status < 300, "{:?}", revoked.data);
    assert_eq!(kind(&engine, &second).await, Value::Null, "forgotten");
    assert!(
        alive(&fake.keys(), &second),
        "an operator's key is never deleted"
    );

    // A key the engine minted that nothing holds: deleted at once.
    let rotated = engine.call("update", "rotate", json!({})).await;
    let lease = rotated.lease.expect("lease");
    let revoked = engine.revoke(&lease).await;
    assert!(revoked.status < 300, "{:?}", revoked.data);
    assert!(alive(&fake.keys(), &lease.key_id), "the stored key stays");
    let (_, fourth_token) = mint_directly(&fake, &lease.token, "PT1H").await;
    reconfigure(&fake, &engine, &fourth_token).await;
    assert!(!alive(&fake.keys(), &lease.key_id), "deleted at once");
    assert_eq!(kind(&engine, &lease.key_id).await, Value::Null);
    assert!(
        !alive(&fake.keys(), &third),
        "the third key was replaced by the rotation, which deletes what it supersedes"
    );
    assert!(
        alive(&fake.keys(), &second),
        "the foreign key is still left alone"
    );
    let status = engine.call("read", "status", json!({})).await;
    assert_eq!(
        status.data["tracked_keys"]["stored"], 1,
        "{:?}",
        status.data
    );
    fake.shutdown().await;
}
