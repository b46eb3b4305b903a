//! Automatic rotation by schedule, period and expiry guard through a real `bao` dev server and
//! its real once-a-minute rollback tick. One server, six mounts watched at once (so the whole
//! test costs the ~3.5 minutes of its longest scenario):
//!
//! - `sched/`: `rotation_schedule="* * * * *"` rotates at the first tick after the scheduled
//!   minute, never before it;
//! - `period/`: `rotation_period=60s` rotates a key older than that;
//! - `off/`: `disable_automated_rotation=true` never rotates, although its expiry guard is due,
//!   and `status` says `at_risk` (less than `rotate_before` left, nothing will rotate it);
//! - `short/`: 3-minute keys with `rotate_before=PT30S`, a margin shorter than the tick: the
//!   expiry guard rotates at the last tick before the margin, twice, the chain never broken;
//! - `window/`: a daily occurrence with a 60 s window passes while its tenant refuses every
//!   create: the schedule moves to the next day, and the expiry guard still rotates in time;
//! - `risk/`: the expiry guard fails during a tenant outage (`status` → `at_risk`), the outage
//!   ends, the next tick rotates (`healthy`).

mod support;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;
use support::prometheus::{parse_prometheus, sample, scrape};
use support::{DevServer, no_rate_limits};
use vault_plugin_secrets_qlik::fake::{
    FakeOptions, FakeTenant, FaultSpec, RunningFake, SettingsPatch,
};

async fn tenant() -> RunningFake {
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    fake.update_settings(SettingsPatch {
        max_keys_per_user: Some(100),
        ..no_rate_limits()
    })
    .expect("settings");
    fake
}

/// A key of the fake's service user with `expiry`: (id, token).
async fn seed_key(fake: &RunningFake, expiry: &str) -> (String, String) {
    support::inproc::mint_directly(fake, &fake.service.api_key, expiry).await
}

/// Enables `mount` and writes its config for `fake` with `token` and `extra`.
fn configure(server: &DevServer, fake: &RunningFake, mount: &str, token: &str, extra: &[&str]) {
    server.enable(mount);
    let ca = server.dir.path().join(format!("{mount}-ca.pem"));
    std::fs::write(&ca, &fake.ca_pem).expect("ca");
    let mut args = vec![
        "write".to_string(),
        format!("{mount}/config"),
        format!("tenant_url={}", fake.url.as_str().trim_end_matches('/')),
        format!("api_key={token}"),
        format!("ca_cert=@{}", ca.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    server.ok(&support::strs(&args));
}

async fn read(server: &DevServer, path: &str) -> Value {
    let (code, body) = server.http("GET", path, None).await;
    assert_eq!(code, 200, "{path}: {body}");
    body["data"].clone()
}

/// `path` (a config) once the rotation that changed its key has recorded its outcome (the
/// new key is stored a moment before `last_rotation`).
async fn settled(server: &DevServer, path: &str) -> Value {
    for _ in 0..50 {
        let config = read(server, path).await;
        if config["last_rotation"]["outcome"] == "success" {
            return config;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path}: no last_rotation recorded")
}

fn ts(value: &Value) -> Timestamp {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .expect("RFC 3339")
}

fn refuse_creates(fake: &RunningFake) {
    fake.inject_fault(FaultSpec {
        method: Some("POST".into()),
        path_prefix: Some("/api/v1/api-keys".into()),
        count: Some(10_000),
        status: Some(503),
        ..Default::default()
    });
}

async fn metrics(server: &DevServer, mount: &str) -> std::collections::BTreeMap<String, f64> {
    let (code, _, text) = scrape(server, "root", &format!("{mount}/metrics")).await;
    assert_eq!(code, 200, "{text}");
    parse_prometheus(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedules_periods_windows_and_the_expiry_guard_on_the_real_tick() {
    let (plain, window_tenant, risk_tenant) = (tenant().await, tenant().await, tenant().await);
    let Some(server) = DevServer::start() else {
        return;
    };

    // risk/: the expiry guard is due 30 s after the seed's creation; the tenant is down.
    let (risk_seed, token) = seed_key(&risk_tenant, "PT4M").await;
    configure(
        &server,
        &risk_tenant,
        "risk",
        &token,
        &["key_expiry=PT1H", "rotate_before=PT3M30S"],
    );
    refuse_creates(&risk_tenant);

    // window/: daily at the next minute, 60 s window; the guard is due 150 s after the seed.
    let (window_seed, token) = seed_key(&window_tenant, "PT270S").await;
    let window_seed_expires = Timestamp::now() + jiff::SignedDuration::from_secs(270);
    let next_minute =
        Timestamp::from_second((Timestamp::now().as_second() / 60 + 1) * 60).expect("next minute");
    let minute_of_day = next_minute.as_second() % 86_400;
    let daily = format!(
        "{} {} * * *",
        minute_of_day % 3600 / 60,
        minute_of_day / 3600
    );
    refuse_creates(&window_tenant);
    configure(
        &server,
        &window_tenant,
        "window",
        &token,
        &[
            "key_expiry=PT1H",
            "rotate_before=PT2M",
            &format!("rotation_schedule={daily}"),
            "rotation_window=60s",
        ],
    );
    let window_occurrence = ts(&read(&server, "window/config").await["next_scheduled_at"]);

    // sched/: every minute.
    let (sched_seed, token) = seed_key(&plain, "PT1H").await;
    let written = Timestamp::now();
    configure(
        &server,
        &plain,
        "sched",
        &token,
        &[
            "key_expiry=PT1H",
            "rotate_before=PT10M",
            "rotation_schedule=* * * * *",
        ],
    );
    let sched_config = read(&server, "sched/config").await;
    let sched_occurrence = ts(&sched_config["next_scheduled_at"]);
    assert_eq!(sched_config["next_rotation_reason"], "schedule");
    assert_eq!(sched_occurrence.as_second() % 60, 0, "a whole minute");
    assert!(
        sched_occurrence > written
            && sched_occurrence.duration_since(written) <= jiff::SignedDuration::from_secs(62),
        "the first minute after the write: {sched_occurrence} vs {written}"
    );

    // period/: rotate once the key is older than 60 s.
    let (period_seed, token) = seed_key(&plain, "PT1H").await;
    let period_seed_created = Timestamp::now();
    configure(
        &server,
        &plain,
        "period",
        &token,
        &[
            "key_expiry=PT1H",
            "rotate_before=PT10M",
            "rotation_period=60s",
        ],
    );
    assert_eq!(
        read(&server, "period/config").await["next_rotation_reason"],
        "period"
    );

    // off/: the guard would be due at once, but automatic rotation is disabled.
    let (off_seed, token) = seed_key(&plain, "PT1H").await;
    configure(
        &server,
        &plain,
        "off",
        &token,
        &["rotate_before=PT59M", "disable_automated_rotation=true"],
    );
    let off_status = read(&server, "off/status").await;
    assert_eq!(off_status["automatic_rotation"], false);
    assert_eq!(off_status["next_rotation_at"], Value::Null);
    // Healthy while more than rotate_before is left (59 of 60 minutes); once less is left,
    // nothing will rotate the key: at_risk (checked in the loop), not healthy until broken.
    assert_eq!(off_status["state"], "healthy", "{off_status}");
    let mut off_at_risk_seen = false;

    // short/: 3-minute keys with a 30 s margin, shorter than the tick: the expiry guard must
    // rotate at the last tick before the margin (a tick that finds the key not yet due may be
    // followed by one after the key died). Two rotations, the chain never broken.
    let (short_seed, token) = seed_key(&plain, "PT3M").await;
    configure(
        &server,
        &plain,
        "short",
        &token,
        &["key_expiry=PT3M", "rotate_before=PT30S"],
    );
    let mut short_keys = vec![short_seed.clone()];

    let start = Instant::now();
    let deadline = start + Duration::from_secs(345);
    let mut sched_rotated: Option<(Timestamp, Value)> = None;
    let mut period_rotated: Option<(Timestamp, Value)> = None;
    let mut window_skipped = false;
    let mut window_rotated: Option<Value> = None;
    let mut risk_seen_at_risk = false;
    let mut risk_healthy_again: Option<Value> = None;
    let mut sched_minute_checked = false;
    while Instant::now() < deadline {
        let now = Timestamp::now();

        match &sched_rotated {
            None => {
                let config = read(&server, "sched/config").await;
                if config["key_id"] != sched_seed.as_str() {
                    sched_rotated = Some((now, settled(&server, "sched/config").await));
                } else {
                    assert!(
                        now < sched_occurrence + jiff::SignedDuration::from_secs(75),
                        "no rotation 75 s after the scheduled minute"
                    );
                }
            }
            Some((_, first)) if !sched_minute_checked => {
                // After its rotation the schedule counts from it: a later minute is pending.
                let config = read(&server, "sched/config").await;
                let next = ts(&config["next_scheduled_at"]);
                assert!(
                    next > ts(&first["last_rotation"]["time"]),
                    "the anchor moved: {config}"
                );
                sched_minute_checked = true;
            }
            Some(_) => {}
        }

        if period_rotated.is_none() {
            let config = read(&server, "period/config").await;
            if config["key_id"] != period_seed.as_str() {
                period_rotated = Some((now, settled(&server, "period/config").await));
            }
        }

        if !risk_seen_at_risk {
            let status = read(&server, "risk/status").await;
            assert_eq!(
                status["key_id"],
                risk_seed.as_str(),
                "no rotation in the outage"
            );
            if status["state"] == "at_risk" {
                assert!(status["consecutive_failures"].as_u64() >= Some(1));
                assert!(status["last_error"].is_string(), "{status}");
                let samples = metrics(&server, "risk").await;
                assert_eq!(sample(&samples, "qlik_chain_state{state=at_risk}"), 1.0);
                assert!(
                    sample(
                        &samples,
                        "qlik_rotations_total{outcome=failure,trigger=expiry}"
                    ) >= 1.0
                );
                risk_seen_at_risk = true;
                risk_tenant.clear_faults();
            }
        } else if risk_healthy_again.is_none() {
            let status = read(&server, "risk/status").await;
            if status["state"] == "healthy" {
                risk_healthy_again = Some(status);
            }
        }

        if !window_skipped {
            let config = read(&server, "window/config").await;
            assert_eq!(config["key_id"], window_seed.as_str(), "refused creates");
            if now > window_occurrence + jiff::SignedDuration::from_secs(61) {
                // The window passed with every attempt refused: the next day's occurrence
                // is pending, and the expiry guard comes first.
                let status = read(&server, "window/status").await;
                assert!(
                    status["consecutive_failures"].as_u64() >= Some(1),
                    "the scheduled rotation was tried in its window: {status}"
                );
                assert_eq!(
                    ts(&config["next_scheduled_at"]),
                    window_occurrence + jiff::SignedDuration::from_hours(24),
                    "{config}"
                );
                assert_eq!(config["next_rotation_reason"], "expiry", "{config}");
                let samples = metrics(&server, "window").await;
                assert!(
                    sample(
                        &samples,
                        "qlik_rotations_total{outcome=failure,trigger=schedule}"
                    ) >= 1.0
                );
                window_skipped = true;
                window_tenant.clear_faults();
            }
        } else if window_rotated.is_none() {
            let config = read(&server, "window/config").await;
            if config["key_id"] != window_seed.as_str() {
                window_rotated = Some(settled(&server, "window/config").await);
            }
        }

        if !off_at_risk_seen {
            let status = read(&server, "off/status").await;
            if status["seconds_left"].as_i64() < status["rotate_before_seconds"].as_i64() {
                assert_eq!(status["state"], "at_risk", "off/: {status}");
                assert!(
                    status["state_reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("automatic rotation is disabled")),
                    "off/: {status}"
                );
                let samples = metrics(&server, "off").await;
                assert_eq!(sample(&samples, "qlik_chain_state{state=at_risk}"), 1.0);
                off_at_risk_seen = true;
            }
        }

        if short_keys.len() < 3 {
            let status = read(&server, "short/status").await;
            assert_ne!(
                status["state"], "broken",
                "short/: the chain died after keys {short_keys:?}: {status}"
            );
            if let Some(id) = status["key_id"].as_str()
                && short_keys.last().map(String::as_str) != Some(id)
            {
                short_keys.push(id.to_string());
            }
        }

        if sched_minute_checked
            && off_at_risk_seen
            && short_keys.len() >= 3
            && period_rotated.is_some()
            && risk_healthy_again.is_some()
            && window_rotated.is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // sched/: at the scheduled minute, not before, by the schedule.
    let (observed, config) = sched_rotated.expect("sched/ rotated");
    let rotated_at = ts(&config["last_rotation"]["time"]);
    assert!(
        rotated_at >= sched_occurrence && observed >= sched_occurrence,
        "rotated at {rotated_at} (seen {observed}), scheduled {sched_occurrence}"
    );
    assert_eq!(config["last_rotation"]["trigger"], "automatic");
    let samples = metrics(&server, "sched").await;
    assert!(
        sample(
            &samples,
            "qlik_rotations_total{outcome=success,trigger=schedule}"
        ) >= 1.0
    );
    eprintln!(
        "MEASURED: sched/ rotated {} s after its scheduled minute (the server's rollback tick)",
        rotated_at.duration_since(sched_occurrence).as_secs()
    );

    // period/: once the key was older than 60 s.
    let (_, config) = period_rotated.expect("period/ rotated");
    let rotated_at = ts(&config["last_rotation"]["time"]);
    assert!(
        rotated_at >= period_seed_created + jiff::SignedDuration::from_secs(59),
        "{rotated_at} vs created {period_seed_created}"
    );
    let samples = metrics(&server, "period").await;
    assert!(
        sample(
            &samples,
            "qlik_rotations_total{outcome=success,trigger=period}"
        ) >= 1.0
    );
    eprintln!(
        "MEASURED: period/ rotated {} s after its key was created (period 60 s)",
        rotated_at.duration_since(period_seed_created).as_secs()
    );

    // risk/: at_risk through the outage, healthy after it, the chain unbroken.
    let status = risk_healthy_again.expect("risk/ healthy again");
    assert_ne!(status["key_id"], risk_seed.as_str());
    assert_eq!(status["consecutive_failures"], 0);

    // window/: rotated by the expiry guard, before the seed expired.
    let config = window_rotated.expect("window/ rotated by the guard");
    let rotated_at = ts(&config["last_rotation"]["time"]);
    assert!(rotated_at < window_seed_expires, "{rotated_at}");
    let samples = metrics(&server, "window").await;
    assert_eq!(
        sample(
            &samples,
            "qlik_rotations_total{outcome=success,trigger=expiry}"
        ),
        1.0
    );

    // short/: rotated twice by the expiry guard, each time before the key died.
    assert!(
        short_keys.len() >= 3,
        "short/ rotated twice in the scenario: {short_keys:?}"
    );
    let samples = metrics(&server, "short").await;
    assert!(
        sample(
            &samples,
            "qlik_rotations_total{outcome=success,trigger=expiry}"
        ) >= 2.0
    );

    assert!(
        off_at_risk_seen,
        "off/ turned at_risk once inside its margin"
    );

    // off/: never rotated, through every tick of the test.
    let config = read(&server, "off/config").await;
    assert_eq!(config["key_id"], off_seed.as_str());
    assert_eq!(config["last_rotation"], Value::Null);
    let (_, _, text) = scrape(&server, "root", "off/metrics").await;
    assert!(!text.contains("qlik_rotations_total{"), "{text}");
    eprintln!("MEASURED: whole scenario {} s", start.elapsed().as_secs());
}
