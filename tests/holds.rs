//! Lease holds on the stored key, in-process (the engine's real dispatch over in-memory
//! storage, against a real `fake-qlik`).

mod support;

use serde_json::json;
use support::inproc::{Engine, config_body, start_fake};

/// Not a test: prints what `key` reads cost the mount's storage (`cargo nextest run --test
/// holds --run-ignored only --no-capture storage_written_per_key_read`). Reads are counted,
/// never timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn storage_written_per_key_read() {
    const READS: u64 = 2_000;
    let fake = start_fake().await;
    let engine = Engine::new();
    let written = engine
        .call("create", "config", config_body(&fake, json!({})))
        .await;
    assert_eq!(written.status, 204, "{:?}", written.data);
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
    let record = dump
        .iter()
        .find(|(k, _)| k.starts_with("keys/"))
        .map(|(_, v)| v.to_string().len())
        .unwrap_or(0);
    println!(
        "{READS} key reads: {puts} puts, {bytes} bytes written ({} bytes a read on average, \
         {last_read} bytes the last read); the key's record is {record} bytes",
        bytes / READS,
    );
}
