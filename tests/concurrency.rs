//! Many parallel `rotate`, `key`, `creds`, revocations and `tidy` runs against one mount,
//! through the engine's real request dispatch (in-process) against a real `fake-qlik`.
//! `e2e_concurrency.rs` does the same through a real `bao` dev server.
//!
//! Invariants: every operation ends in bounded time (no deadlock); afterwards, after
//! `tidy`, exactly one stored key that authenticates, every live lease's key alive, no
//! intent, nothing alive at the fake with the mount's marker that is not accounted for;
//! the owner's active keys never exceed the tenant's `max_keys_per_user`, some `creds` reads
//! succeed, `creds` never lets Qlik refuse a key for the limit (the engine refuses first,
//! with the numbers), and, filled one at a time, `creds` stops at the engine's refusal with
//! the last slot free for the rotation that then takes it.
//!
//! Size: `QLIK_SOAK_TASKS` (default 8) × `QLIK_SOAK_OPS` (default 25) operations.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::inproc::{
    Engine, LeaseHandle, alive, alive_of_owner, check_invariants, config_body, start_fake,
};
use tokio::sync::Mutex;
use vault_plugin_secrets_qlik::fake::SettingsPatch;

const KEY_LIMIT: u32 = 8;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    creds_ok: AtomicUsize,
    refused_by_engine: AtomicUsize,
    refused_by_qlik: AtomicUsize,
    other: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_rotate_key_creds_revoke_and_tidy_lose_nothing() {
    let tasks = env_usize("QLIK_SOAK_TASKS", 8);
    let ops = env_usize("QLIK_SOAK_OPS", 25);
    let fake = Arc::new(start_fake().await);
    fake.update_settings(SettingsPatch {
        max_keys_per_user: Some(KEY_LIMIT),
        ..Default::default()
    })
    .expect("limit");
    let engine = Arc::new(Engine::new());
    let written = engine
        .call(
            "create",
            "config",
            config_body(&fake, json!({"request_timeout": "10s", "max_retries": 2})),
        )
        .await;
    assert_eq!(written.status, 204, "{:?}", written.data);
    let role = engine
        .call("create", "roles/app", json!({"expiry": "PT1H"}))
        .await;
    assert_eq!(role.status, 204);
    let owner = fake.service.user_id.clone();

    // The owner's active keys, sampled all along.
    let stop = Arc::new(AtomicBool::new(false));
    let most_active = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (fake, stop, most) = (fake.clone(), stop.clone(), most_active.clone());
        let owner = owner.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let active = fake
                    .keys()
                    .iter()
                    .filter(|k| k.sub == owner && k.status == "active" && !k.deleted)
                    .count();
                most.fetch_max(active, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let live: Arc<Mutex<Vec<LeaseHandle>>> = Arc::default();
    let tally: Arc<Tally> = Arc::default();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (engine, live, tally) = (engine.clone(), live.clone(), tally.clone());
        workers.spawn(async move {
            for i in 0..ops {
                let pick = (t * 7 + i * 13) % 10;
                let work = async {
                    match pick {
                        0 | 1 => Some(engine.call("update", "rotate", json!({})).await),
                        2 | 3 => Some(engine.call("read", "key", json!({})).await),
                        4..=6 => Some(engine.call("read", "creds/app", json!({})).await),
                        7 | 8 => {
                            let lease = {
                                let mut live = live.lock().await;
                                if live.is_empty() {
                                    None
                                } else {
                                    let n = (t + i) % live.len();
                                    Some(live.swap_remove(n))
                                }
                            };
                            if let Some(lease) = lease {
                                let r = engine.revoke(&lease).await;
                                assert_eq!(r.status, 204, "revoke {lease:?}: {:?}", r.data);
                            }
                            None
                        }
                        _ => Some(engine.call("update", "tidy", json!({})).await),
                    }
                };
                let reply = tokio::time::timeout(Duration::from_secs(60), work)
                    .await
                    .unwrap_or_else(|_| panic!("task {t} op {i} (kind {pick}) hung: deadlock?"));
                let Some(reply) = reply else { continue };
                match reply.status {
                    200 | 204 => {
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                        if (4..=6).contains(&pick) {
                            tally.creds_ok.fetch_add(1, Ordering::SeqCst);
                        }
                        if let Some(lease) = reply.lease {
                            live.lock().await.push(lease);
                        }
                    }
                    400 if reply.error().starts_with("key limit reached") => {
                        tally.refused_by_engine.fetch_add(1, Ordering::SeqCst);
                    }
                    400 if reply.error().contains("max_keys_per_user") => {
                        // Qlik's own refusal: only a rotation may meet it (superseded keys
                        // held by `key` leases use slots); creds must refuse first.
                        assert!(pick <= 1, "creds let Qlik refuse a key: {}", reply.error());
                        tally.refused_by_qlik.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        tally.other.fetch_add(1, Ordering::SeqCst);
                        panic!(
                            "task {t} op {i} (kind {pick}): {} {:?}",
                            reply.status, reply.data
                        );
                    }
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done {
            stop.store(true, Ordering::SeqCst);
            panic!("worker failed: {e}");
        }
    }
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.await;

    let live_now = live.lock().await.clone();
    check_invariants(&engine, &fake, &live_now, "after the parallel run").await;
    let most = most_active.load(Ordering::SeqCst);
    assert!(
        most <= KEY_LIMIT as usize,
        "the owner held {most} active keys, limit {KEY_LIMIT}"
    );
    for lease in &live_now {
        let r = engine.revoke(lease).await;
        assert_eq!(r.status, 204, "{:?}", r.data);
    }
    check_invariants(&engine, &fake, &[], "after revoking everything").await;
    let keys = fake.keys();
    for lease in &live_now {
        if lease.path.starts_with("creds/") {
            assert!(!lease.key_id.is_empty(), "a creds lease without a key id");
            assert!(!alive(&keys, &lease.key_id), "revoked creds key deleted");
        }
    }
    let creds_ok = tally.creds_ok.load(Ordering::SeqCst);
    assert!(creds_ok > 0, "no creds read succeeded in the parallel run");

    // One at a time up to the limit: creds stops with the engine's own refusal while the
    // owner still has a free slot, and the rotation then takes that slot.
    let mut filled = Vec::new();
    let refusal = loop {
        let reply = engine.call("read", "creds/app", json!({})).await;
        match reply.status {
            200 => filled.push(reply.lease.expect("a creds lease")),
            _ => break reply,
        }
        assert!(filled.len() < KEY_LIMIT as usize, "creds filled every slot");
    };
    assert_eq!(refusal.status, 400, "{:?}", refusal.data);
    assert!(
        refusal.error().starts_with("key limit reached"),
        "the engine refuses, not Qlik: {}",
        refusal.error()
    );
    let owner_active = alive_of_owner(&fake.keys(), &owner).len();
    assert_eq!(
        owner_active,
        KEY_LIMIT as usize - 1,
        "creds left exactly the last slot free"
    );
    let rotated = engine.call("update", "rotate", json!({})).await;
    assert_eq!(
        rotated.status, 200,
        "the rotation takes the last slot: {:?}",
        rotated.data
    );
    filled.push(rotated.lease.expect("a rotate lease"));
    check_invariants(&engine, &fake, &filled, "creds filled up to the limit").await;
    for lease in &filled {
        let r = engine.revoke(lease).await;
        assert_eq!(r.status, 204, "{:?}", r.data);
    }
    eprintln!(
        "CONCURRENCY: {tasks} tasks × {ops} ops = {} requests in {took:?}: {} ok ({creds_ok} creds), {} refused by the engine at the key limit, {} rotations refused by Qlik at the limit; most active keys {most}/{KEY_LIMIT}; {} leases live at the end",
        tasks * ops,
        tally.ok.load(Ordering::SeqCst),
        tally.refused_by_engine.load(Ordering::SeqCst),
        tally.refused_by_qlik.load(Ordering::SeqCst),
        live_now.len()
    );
}
