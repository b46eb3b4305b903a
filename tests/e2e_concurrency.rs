//! Parallel `rotate`, `key`, `creds`, revocations and `tidy` through a real `bao` dev server
//! (the in-process `concurrency.rs` runs a bigger mix): every request ends in bounded time,
//! and afterwards the invariants hold (see `support/crash.rs`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Setup;
use support::crash;
use support::inproc::alive_of_owner;
use tokio::sync::Mutex;
use vault_plugin_secrets_qlik::fake::SettingsPatch;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_requests_through_the_server_lose_nothing() {
    const TASKS: usize = 8;
    const OPS: usize = 24;
    const LIMIT: u32 = 10;
    let Some(Setup { fake, server }) = crash::dev_server(&[]).await else {
        return;
    };
    fake.update_settings(SettingsPatch {
        max_keys_per_user: Some(LIMIT),
        ..Default::default()
    })
    .expect("limit");
    let server = Arc::new(server);
    let live: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (server, live) = (server.clone(), live.clone());
        tasks.spawn(async move {
            // (ok, refused at the key limit, creds ok)
            let mut outcomes = (0usize, 0usize, 0usize);
            for i in 0..OPS {
                let pick = (t * 7 + i * 13) % 10;
                let call = async {
                    match pick {
                        0 | 1 => Some(server.http("POST", "qlik/rotate", None).await),
                        2 | 3 => Some(server.http("GET", "qlik/key", None).await),
                        4..=6 => Some(server.http("GET", "qlik/creds/app", None).await),
                        7 | 8 => {
                            let lease = {
                                let mut l = live.lock().await;
                                (!l.is_empty()).then(|| {
                                    let n = (t + i) % l.len();
                                    l.swap_remove(n)
                                })
                            };
                            if let Some((lease, _)) = lease {
                                let (status, body) = server
                                    .http(
                                        "PUT",
                                        "sys/leases/revoke",
                                        Some(serde_json::json!({"lease_id": lease, "sync": true})),
                                    )
                                    .await;
                                assert_eq!(status, 204, "revoke: {body}");
                            }
                            None
                        }
                        _ => Some(server.http("POST", "qlik/tidy", None).await),
                    }
                };
                let reply = tokio::time::timeout(Duration::from_secs(60), call)
                    .await
                    .unwrap_or_else(|_| panic!("task {t} op {i} hung"));
                let Some((status, body)) = reply else {
                    continue;
                };
                match status {
                    200 | 204 => {
                        outcomes.0 += 1;
                        if (4..=6).contains(&pick) {
                            outcomes.2 += 1;
                        }
                        if let (Some(lease), Some(id)) =
                            (body["lease_id"].as_str(), body["data"]["key_id"].as_str())
                            && !lease.is_empty()
                        {
                            live.lock().await.push((lease.to_string(), id.to_string()));
                        }
                    }
                    400 if body.to_string().contains("max_keys_per_user")
                        || body.to_string().contains("key limit reached") =>
                    {
                        assert!(
                            pick <= 1 || body.to_string().contains("key limit reached"),
                            "creds let Qlik refuse at the limit: {body}"
                        );
                        outcomes.1 += 1;
                    }
                    _ => panic!("task {t} op {i} (kind {pick}): {status} {body}"),
                }
            }
            outcomes
        });
    }
    let (mut ok, mut refused, mut creds_ok) = (0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        let (o, r, c) = done.expect("task");
        ok += o;
        refused += r;
        creds_ok += c;
    }
    let took = started.elapsed();
    let live_now = live.lock().await.clone();
    crash::check(
        &crash::DevTarget(&server),
        &fake,
        &live_now,
        "after the parallel run",
    )
    .await;
    assert!(creds_ok > 0, "no creds read succeeded in the parallel run");

    // One at a time up to a small limit: creds stops with the engine's own refusal while the
    // owner still has a free slot, and the rotation then takes that slot. Every lease ends
    // first (one call; tidy has already run), and their keys' deletions (paced) are awaited,
    // so that the count holds still.
    let (status, body) = server
        .http(
            "PUT",
            "sys/leases/revoke-prefix/qlik",
            Some(serde_json::json!({"sync": true})),
        )
        .await;
    assert_eq!(status, 204, "revoke-prefix: {body}");
    server.wait_for(
        "only the stored key alive after every lease ended",
        Duration::from_secs(60),
        || alive_of_owner(&fake.keys(), &fake.service.user_id).len() == 1,
    );
    const FILL_LIMIT: u32 = 3;
    fake.update_settings(SettingsPatch {
        max_keys_per_user: Some(FILL_LIMIT),
        ..Default::default()
    })
    .expect("limit");
    let mut filled: crash::Live = Vec::new();
    let refusal = loop {
        let (status, body) = server.http("GET", "qlik/creds/app", None).await;
        if status != 200 {
            break body;
        }
        filled.push((
            body["lease_id"].as_str().expect("lease_id").to_string(),
            body["data"]["key_id"].as_str().expect("key_id").to_string(),
        ));
        assert!(
            filled.len() < FILL_LIMIT as usize,
            "creds filled every slot"
        );
    };
    assert!(
        refusal.to_string().contains("key limit reached"),
        "the engine refuses, not Qlik: {refusal}"
    );
    let active = alive_of_owner(&fake.keys(), &fake.service.user_id).len();
    assert_eq!(
        active,
        FILL_LIMIT as usize - 1,
        "creds left exactly the last slot free"
    );
    let (status, rotated) = server.http("POST", "qlik/rotate", None).await;
    assert_eq!(status, 200, "the rotation takes the last slot: {rotated}");
    filled.push((
        rotated["lease_id"].as_str().expect("lease_id").to_string(),
        rotated["data"]["key_id"]
            .as_str()
            .expect("key_id")
            .to_string(),
    ));
    crash::check(
        &crash::DevTarget(&server),
        &fake,
        &filled,
        "creds filled up to the limit",
    )
    .await;
    eprintln!("T all {:?}", started.elapsed());
    eprintln!(
        "CONCURRENCY THROUGH THE SERVER: {TASKS} tasks × {OPS} ops in {took:?}: {ok} ok ({creds_ok} creds), {refused} refused at the key limit, {} leases live",
        live_now.len()
    );
}
