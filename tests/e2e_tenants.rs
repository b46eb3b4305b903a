//! Many tenants in one plugin process: M mounts on one dev server, each configured with a key
//! of its own Qlik user, all rotating by themselves. Measured: the plugin's memory per mount,
//! the Qlik calls and plugin CPU of a server tick over mounts that have nothing due (none
//! may call Qlik), the same over the ticks that rotate every mount, 429s at the tenant (none),
//! and every mount's chain alive at the end.
//!
//! CI runs 50 mounts; `scripts/soak.sh --mounts 1000` runs more (`QLIK_TENANTS_MOUNTS`), and
//! `QLIK_TENANTS_ROUNDS=N` waits for N rotations of every mount (memory after each round).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{DevServer, PLUGIN, try_http};

fn rss(pid: u32) -> u64 {
    support::rss_kb(pid).unwrap_or(0)
}
use support::inproc::alive;
use vault_plugin_secrets_qlik::fake::{FakeOptions, FakeTenant, KeyView, SeedUser, SettingsPatch};

/// User + system CPU time of a process, in milliseconds.
fn cpu_ms(pid: u32) -> u64 {
    let ticks_per_s = 100; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit(')').next()?.to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) * 1000 / ticks_per_s)
        })
        .unwrap_or(0)
}

/// The longest run of CPU samples no more than 3 s apart, in seconds: one tick's work (a
/// window of a little over a minute can hold the start of the next one too).
fn tick_span(busy_at: &[f64]) -> f64 {
    let mut best = 0.0_f64;
    let mut start = None;
    let mut last = 0.0;
    for &t in busy_at {
        match start {
            Some(s) if t - last <= 3.0 => best = best.max(t - s),
            _ => start = Some(t),
        }
        last = t;
    }
    if busy_at.is_empty() { 0.0 } else { best + 0.1 }
}

struct Api {
    http: reqwest::Client,
    addr: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.addr);
        try_http(&self.http, url, "root", method, body).await
    }

    /// The stored key's id of each mount `qlik1..=qlik{mounts}` ("" where `config` gave none).
    async fn key_ids(&self, mounts: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(mounts);
        for i in 1..=mounts {
            let (_, body) = self.call("GET", &format!("qlik{i}/config"), None).await;
            ids.push(
                body["data"]["key_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        ids
    }
}

/// How many mounts have a stored key, other than the one they had (`before`, by mount).
fn rotated_since<'a>(now: &[String], before: impl Iterator<Item = &'a str>) -> usize {
    now.iter()
        .zip(before)
        .filter(|(id, was)| !id.is_empty() && id.as_str() != *was)
        .count()
}

/// The mounts whose stored key (`ids`, by mount) is not alive at the fake, as `qlik<i><what>: id`.
fn dead_chains(ids: &[String], keys: &[KeyView], what: &str) -> Vec<String> {
    ids.iter()
        .enumerate()
        .filter(|(_, id)| !alive(keys, id))
        .map(|(i, id)| format!("qlik{}{what}: {id}", i + 1))
        .collect()
}

/// Runs `f` over `0..n` with at most `width` at a time.
async fn each<F, Fut>(n: usize, width: usize, f: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let f = Arc::new(f);
    let permits = Arc::new(tokio::sync::Semaphore::new(width));
    let mut tasks = Vec::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await.expect("permit");
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            f(i).await;
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_mounts_in_one_process_rotate_by_themselves_and_idle_ticks_call_no_one() {
    let mounts: usize = std::env::var("QLIK_TENANTS_MOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    // Keys due `life - margin` after their user was created: long enough to configure every
    // mount and watch one idle tick first.
    let (life, margin) = if mounts <= 100 { (180, 30) } else { (600, 120) };
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    let Some(server) = DevServer::start() else {
        return;
    };
    let api = Arc::new(Api {
        http: reqwest::Client::builder().no_proxy().build().expect("http"),
        addr: server.addr.clone(),
    });
    let tenant_url = fake.url.as_str().trim_end_matches('/').to_string();
    let ca = fake.ca_pem.clone();
    let config = move |user: &SeedUser| {
        json!({
            "tenant_url": tenant_url, "api_key": user.api_key, "ca_cert": ca,
            "rotate_before": margin.to_string(),
        })
    };

    // One mount first: the plugin's own footprint.
    server.enable("qlik0");
    let (status, body) = api
        .call("PUT", "qlik0/config", Some(config(&fake.service)))
        .await;
    assert!(status < 300, "qlik0/config: {status} {body}");
    let pid = *server.plugin_pids().first().expect("plugin process");
    let rss_one = rss(pid);

    fake.update_settings(SettingsPatch {
        max_api_key_expiry: Some(format!("PT{life}S")),
        ..Default::default()
    })
    .expect("settings");
    let users: Arc<Vec<SeedUser>> = Arc::new(
        (1..=mounts)
            .map(|i| {
                fake.create_user(&format!("svc-{i}"), true, false)
                    .expect("user")
            })
            .collect(),
    );
    let created = Instant::now();
    let configure_start = Instant::now();
    {
        let (api, users, config) = (api.clone(), users.clone(), Arc::new(config));
        each(mounts, 8, move |i| {
            let (api, users, config) = (api.clone(), users.clone(), config.clone());
            async move {
                let path = format!("qlik{}", i + 1);
                let (status, body) = api
                    .call(
                        "POST",
                        &format!("sys/mounts/{path}"),
                        Some(json!({ "type": PLUGIN })),
                    )
                    .await;
                assert!(status < 300, "enable {path}: {status} {body}");
                let (status, body) = api
                    .call("PUT", &format!("{path}/config"), Some(config(&users[i])))
                    .await;
                assert!(status < 300, "{path}/config: {status} {body}");
            }
        })
        .await;
    }
    let configure_s = configure_start.elapsed().as_secs_f64();
    assert_eq!(
        server.plugin_pids(),
        vec![pid],
        "one plugin process serves every mount"
    );
    let rss_configured = rss(pid);

    // An idle tick: nothing is due on any mount, so nothing may call Qlik. The expiry guard
    // counts the next tick (up to 70 s ahead): a key is rotated up to 70 s before its margin.
    let lookahead = 70;
    let due_in = Duration::from_secs(life - margin - lookahead).saturating_sub(created.elapsed());
    assert!(
        due_in > Duration::from_secs(66),
        "configuring took too long ({configure_s:.0} s) to watch an idle tick first"
    );
    let requests_before = fake.requests().len();
    let cpu_before = cpu_ms(pid);
    // The tick's wall time: the span over which the plugin's CPU time rises, sampled every
    // 100 ms (the server ticks every mount about once in this window).
    let idle_start = Instant::now();
    let mut busy_at = Vec::new();
    let mut last_cpu = cpu_before;
    while idle_start.elapsed() < Duration::from_secs(62) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now_cpu = cpu_ms(pid);
        if now_cpu > last_cpu {
            busy_at.push(idle_start.elapsed().as_secs_f64());
        }
        last_cpu = now_cpu;
    }
    let idle_tick_wall_s = tick_span(&busy_at);
    let idle_requests: Vec<String> = fake.requests()[requests_before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    // Each mount lists its owner's keys once every 6 hours at a phase of its own (the
    // backstop scan): M mounts make about M/360 such listings a minute, due work. Any other
    // call, or more listings than that (every mount's first tidy listing, as before the
    // periodic run looked at storage first), is a tick calling Qlik for nothing.
    let backstop_scans = idle_requests
        .iter()
        .filter(|r| *r == "GET /api/v1/api-keys")
        .count();
    let idle_calls: Vec<&String> = idle_requests
        .iter()
        .filter(|r| *r != "GET /api/v1/api-keys")
        .collect();
    let expected_scans = (mounts as f64 * 62.0 / (6.0 * 3600.0) * 3.0).ceil() as usize + 2;
    let idle_cpu_ms = cpu_ms(pid) - cpu_before;

    // The rotations: every mount's key is replaced by itself.
    let requests_before = fake.requests().len();
    let cpu_before = cpu_ms(pid);
    let rotate_start = Instant::now();
    let deadline = created + Duration::from_secs(life + 90);
    let mut rotated = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(if mounts > 100 { 15 } else { 5 })).await;
        rotated = rotated_since(
            &api.key_ids(mounts).await,
            users.iter().map(|u| u.key_id.as_str()),
        );
        if rotated == mounts {
            break;
        }
    }
    let rotate_s = rotate_start.elapsed().as_secs_f64();
    let rotation_requests: Vec<_> = fake.requests()[requests_before..].to_vec();
    let rotation_cpu_ms = cpu_ms(pid) - cpu_before;
    let throttled = rotation_requests.iter().filter(|r| r.status == 429).count();

    // Every chain alive at the end; what each mount keeps in its inventory.
    let mut dead = dead_chains(&api.key_ids(mounts).await, &fake.keys(), "");
    let mut tracked_total = 0;
    for i in 1..=mounts {
        let (_, listed) = api.call("LIST", &format!("qlik{i}/keys"), None).await;
        tracked_total += listed["data"]["keys"].as_array().map_or(0, Vec::len);
    }
    let rss_end = rss(pid);
    // Large runs: does the rotations' memory come back after quiet ticks (100 s: past the
    // HTTP client's 90 s idle-connection timeout)?
    let rss_after_quiet_tick = if mounts > 100 {
        tokio::time::sleep(Duration::from_secs(100)).await;
        Some(rss(pid))
    } else {
        None
    };
    // `QLIK_TENANTS_ROUNDS=N` (long runs): every mount's next N-1 rotations too, with the RSS
    // after each round. RSS flat over the later rounds means the first round's growth was a
    // high-water mark (buffers and connections of the burst); growing each round by the same
    // amount means memory kept per rotation.
    let rounds: usize = std::env::var("QLIK_TENANTS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut later_rounds = Vec::new();
    for round in 2..=rounds {
        let before = api.key_ids(mounts).await;
        let started = Instant::now();
        let mut rotated_again = 0;
        while started.elapsed() < Duration::from_secs(life + 90) {
            tokio::time::sleep(Duration::from_secs(15)).await;
            let now = api.key_ids(mounts).await;
            rotated_again = rotated_since(&now, before.iter().map(String::as_str));
            if rotated_again == mounts {
                break;
            }
        }
        dead.extend(dead_chains(
            &api.key_ids(mounts).await,
            &fake.keys(),
            &format!(" after round {round}"),
        ));
        let window_s = started.elapsed().as_secs();
        let rss_after = rss(pid);
        tokio::time::sleep(Duration::from_secs(100)).await;
        later_rounds.push(json!({
            "round": round,
            "rotated": rotated_again,
            "window_s": window_s,
            "rss_kb_after": rss_after,
            "rss_kb_100s_after": rss(pid),
        }));
    }
    let per_mount_kb = rss_configured.saturating_sub(rss_one) as f64 / mounts as f64;
    let summary = json!({
        "mounts": mounts,
        "key_life_s": life,
        "rss_kb_one_mount": rss_one,
        "rss_kb_all_configured": rss_configured,
        "rss_kb_after_rotations": rss_end,
        "rss_kb_100s_after_rotations": rss_after_quiet_tick,
        "rss_kb_per_mount": (per_mount_kb * 10.0).round() / 10.0,
        "configure_s": (configure_s * 10.0).round() / 10.0,
        "idle_tick_qlik_calls": idle_calls.len(),
        "idle_tick_backstop_scans": backstop_scans,
        "idle_tick_plugin_cpu_ms": idle_cpu_ms,
        "idle_tick_wall_s": (idle_tick_wall_s * 10.0).round() / 10.0,
        "rotated": rotated,
        "rotation_window_s": (rotate_s * 10.0).round() / 10.0,
        "rotation_qlik_calls": rotation_requests.len(),
        "rotation_qlik_calls_per_mount": (rotation_requests.len() as f64 / mounts as f64 * 100.0).round() / 100.0,
        "rotation_plugin_cpu_ms": rotation_cpu_ms,
        "http_429": throttled,
        "chains_dead": dead.len(),
        "tracked_keys_per_mount": (tracked_total as f64 / mounts as f64 * 100.0).round() / 100.0,
        "later_rounds": later_rounds,
    });
    eprintln!("TENANTS summary:");
    for (k, v) in summary.as_object().expect("object") {
        eprintln!("  {k:<32} {v}");
    }
    println!("TENANTS_JSON {summary}");
    assert!(
        idle_calls.is_empty(),
        "an idle tick called Qlik: {idle_calls:?}"
    );
    assert!(
        backstop_scans <= expected_scans,
        "{backstop_scans} key listings in an idle tick over {mounts} mounts: more than the \
         backstop scans ({expected_scans} at most)"
    );
    assert_eq!(rotated, mounts, "mounts rotated by themselves");
    for round in &later_rounds {
        assert_eq!(round["rotated"], mounts, "mounts rotated again: {round}");
    }
    assert!(dead.is_empty(), "dead chains: {dead:?}");
    assert_eq!(throttled, 0, "Qlik answered 429");
    drop(server);
    fake.shutdown().await;
}
