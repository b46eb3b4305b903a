//! The chain must not die of a condition the engine can detect or route around (in-process:
//! the engine's real dispatch over in-memory storage, against a real `fake-qlik`):
//! - `key_expiry` (and a role's `expiry`) above the tenant's `max_api_key_expiry` is refused
//!   at `config`, and an automatic rotation Qlik refuses for it mints at the tenant maximum;
//! - a one-off `rotate expiry=…` does not become the mount's policy, and `key_expiry=""`
//!   goes back to the default;
//! - a manual rotation that would leave no key slot for the next rotation is refused; an
//!   automatic rotation refused for the key limit frees a slot of its own mount's keys;
//! - lease TTLs hold when the tenant's clock is ahead of or behind the server's, and tidy
//!   deletes the secret an interrupted secret rotation left, whatever the tenant's clock.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::inproc::{
    Engine, LeaseHandle, Reply, alive, config_body, mint_directly, start_fake, write_seed_client,
};
use vault_plugin_secrets_qlik::fake::{RunningFake, SettingsPatch};

async fn configured(fake: &RunningFake, extra: Value) -> Engine {
    Engine::configured(fake, extra).await
}

async fn read(engine: &Engine, path: &str) -> Value {
    let reply = engine.call("read", path, json!({})).await;
    assert_eq!(reply.status, 200, "read {path}: {:?}", reply.data);
    reply.data
}

/// A tenant admin makes a second secret for the seed client, then deletes the one the mount
/// stores, at Qlik: (the new secret, its hint).
async fn replace_the_stored_secret_at_qlik(
    engine: &Engine,
    fake: &RunningFake,
) -> (String, String) {
    let http = support::inproc::http_client(fake);
    let secrets = format!(
        "{}/api/v1/oauth-clients/{}/client-secrets",
        fake.url.as_str().trim_end_matches('/'),
        fake.oauth.client_id
    );
    let created: Value = http
        .post(&secrets)
        .bearer_auth(&fake.admin.api_key)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("created");
    let stored_hint = read(engine, "oauth/clients/app").await["client_secret_hint"]
        .as_str()
        .expect("hint")
        .to_string();
    let deleted = http
        .delete(format!("{secrets}/{stored_hint}"))
        .bearer_auth(&fake.admin.api_key)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status().as_u16(), 204);
    (
        created["clientSecret"]
            .as_str()
            .expect("secret")
            .to_string(),
        created["hint"].as_str().expect("hint").to_string(),
    )
}

async fn rotate(engine: &Engine, data: Value) -> Reply {
    engine.call("update", "rotate", data).await
}

fn lease(reply: &Reply, what: &str) -> LeaseHandle {
    assert_eq!(reply.status, 200, "{what}: {:?}", reply.data);
    reply
        .lease
        .clone()
        .unwrap_or_else(|| panic!("{what}: no lease"))
}

fn set(fake: &RunningFake, patch: SettingsPatch) {
    fake.update_settings(patch).expect("fake settings");
}

/// Active keys of the service user at the fake.
fn active_keys(fake: &RunningFake) -> Vec<String> {
    fake.keys()
        .into_iter()
        .filter(|k| k.sub == fake.service.user_id && k.status == "active" && !k.deleted)
        .map(|k| k.id)
        .collect()
}

/// The lifetime Qlik gave key `id`, in seconds.
fn lifetime_at_fake(fake: &RunningFake, id: &str) -> i64 {
    let key = fake
        .keys()
        .into_iter()
        .find(|k| k.id == id)
        .unwrap_or_else(|| panic!("key {id} at the fake"));
    let created: jiff::Timestamp = key.created.parse().expect("created");
    let expiry: jiff::Timestamp = key.expiry.parse().expect("expiry");
    expiry.duration_since(created).as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_expiry_above_the_tenant_maximum_is_refused_at_config() {
    let fake = start_fake().await;
    set(
        &fake,
        SettingsPatch {
            max_api_key_expiry: Some("PT12H".into()),
            ..Default::default()
        },
    );
    let engine = Engine::new();
    let refused = engine
        .call(
            "create",
            "config",
            config_body(&fake, json!({ "key_expiry": "PT13H" })),
        )
        .await;
    assert_eq!(refused.status, 400, "{:?}", refused.data);
    let message = refused.error();
    for needle in ["key_expiry", "PT13H", "PT12H", "max_api_key_expiry"] {
        assert!(message.contains(needle), "{needle} missing: {message}");
    }
    assert!(engine.dump().await.is_empty(), "nothing may be stored");

    // A role's expiry likewise, once the tenant is known.
    let engine = configured(&fake, json!({ "key_expiry": "PT12H" })).await;
    let role = engine
        .call("create", "roles/app", json!({ "expiry": "P1D" }))
        .await;
    assert_eq!(role.status, 400, "{:?}", role.data);
    assert!(role.error().contains("\"expiry\"") && role.error().contains("PT12H"));
    assert!(!engine.dump().await.contains_key("roles/app"));
    let role = engine
        .call("create", "roles/app", json!({ "expiry": "PT12H" }))
        .await;
    assert_eq!(role.status, 204, "{:?}", role.data);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_living_longer_than_the_tenant_allows_now_sets_the_default_to_the_maximum() {
    let fake = start_fake().await;
    // The seed key lives 24 h; the tenant was lowered to 2 h afterwards.
    set(
        &fake,
        SettingsPatch {
            max_api_key_expiry: Some("PT2H".into()),
            ..Default::default()
        },
    );
    let engine = Engine::new();
    let written = engine
        .call("create", "config", config_body(&fake, json!({})))
        .await;
    assert_eq!(written.status, 200, "{:?}", written.data);
    assert!(
        written.warnings.iter().any(|w| w.contains("PT2H")),
        "{:?}",
        written.warnings
    );
    assert_eq!(read(&engine, "config").await["key_expiry"], "PT2H");
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_rotation_refused_for_the_expiry_mints_at_the_tenant_maximum() {
    let fake = start_fake().await;
    // A stored key that is due for rotation two seconds after it is written.
    let (_, short) = mint_directly(&fake, &fake.service.api_key, "PT10M").await;
    let engine = Engine::new();
    let mut body = config_body(
        &fake,
        json!({ "key_expiry": "PT2H", "rotate_before": "PT9M57S" }),
    );
    body["api_key"] = json!(short);
    let written = engine.call("create", "config", body).await;
    assert_eq!(written.status, 204, "{:?}", written.data);
    let before = read(&engine, "config").await;
    // The tenant lowers its maximum below the mount's key_expiry.
    set(
        &fake,
        SettingsPatch {
            max_api_key_expiry: Some("PT1H".into()),
            ..Default::default()
        },
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let posts = fake.count_requests("POST", "/api/v1/api-keys");
    let tick = engine.rollback().await;
    assert!(tick.status < 300, "{:?}", tick.data);
    let after = read(&engine, "config").await;
    assert_ne!(after["key_id"], before["key_id"], "the key was rotated");
    assert_eq!(after["last_rotation"]["outcome"], "success", "{after}");
    let new_id = after["key_id"].as_str().expect("key id");
    assert_eq!(lifetime_at_fake(&fake, new_id), 3600, "the tenant maximum");
    let statuses: Vec<u16> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/api-keys")
        .skip(posts)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![400, 201], "refused once, then minted");
    // The operator's explicit key_expiry stays what they wrote.
    assert_eq!(after["key_expiry"], "PT2H");
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_off_rotate_expiry_does_not_become_the_policy() {
    let fake = start_fake().await;
    let engine = configured(&fake, json!({})).await;
    let before = read(&engine, "config").await;
    assert_eq!(before["key_expiry"], "P1D");
    assert_eq!(before["rotate_before"], "PT12H");
    let short = lease(
        &rotate(&engine, json!({ "expiry": "PT30M" })).await,
        "rotate",
    );
    assert!(
        (1790..=1800).contains(&short.ttl_secs),
        "{}",
        short.ttl_secs
    );
    let after = read(&engine, "config").await;
    assert_eq!(after["key_expiry"], "P1D", "{after}");
    assert_eq!(after["rotate_before"], "PT12H", "{after}");
    // The 30-minute key is rotated at half its life (not at once, not after it died).
    let next: jiff::Timestamp = after["next_rotation_at"]
        .as_str()
        .expect("next_rotation_at")
        .parse()
        .expect("time");
    let in_secs = next.duration_since(jiff::Timestamp::now()).as_secs();
    assert!(
        (880..=900).contains(&in_secs),
        "next rotation in {in_secs} s"
    );
    // The next rotation without expiry mints a key of the policy's lifetime.
    let next = lease(&rotate(&engine, json!({})).await, "rotate");
    assert_eq!(lifetime_at_fake(&fake, &next.key_id), 86_400);

    // key_expiry="" goes back to the default.
    let set_it = engine
        .call("update", "config", json!({ "key_expiry": "PT2H" }))
        .await;
    assert_eq!(set_it.status, 204, "{:?}", set_it.data);
    assert_eq!(read(&engine, "config").await["key_expiry"], "PT2H");
    let cleared = engine
        .call(
            "update",
            "config",
            json!({ "key_expiry": "", "rotate_before": "" }),
        )
        .await;
    assert_eq!(cleared.status, 204, "{:?}", cleared.data);
    let now = read(&engine, "config").await;
    assert_eq!(now["key_expiry"], "P1D", "{now}");
    assert_eq!(now["rotate_before"], "PT12H", "{now}");
    // An empty string is not a duration anywhere else.
    let bad = rotate(&engine, json!({ "expiry": "" })).await;
    assert_eq!(bad.status, 400, "{:?}", bad.data);
    assert!(bad.error().contains("\"expiry\""), "{}", bad.error());
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rotation_never_takes_the_next_rotations_slot() {
    let fake = start_fake().await;
    set(
        &fake,
        SettingsPatch {
            max_keys_per_user: Some(5),
            ..Default::default()
        },
    );
    let engine = configured(&fake, json!({})).await;
    // Each rotate lease holds its key, so each rotation leaves the previous key alive.
    let mut leases = Vec::new();
    for n in 1..=4 {
        leases.push(lease(
            &rotate(&engine, json!({})).await,
            &format!("rotate {n}"),
        ));
    }
    assert_eq!(active_keys(&fake).len(), 4, "4 held keys");
    let posts = fake.count_requests("POST", "/api/v1/api-keys");
    let refused = rotate(&engine, json!({})).await;
    assert_eq!(refused.status, 400, "{:?}", refused.data);
    for needle in ["4 active", "allows 5", "revoke_previous=true", "key_ttl"] {
        assert!(
            refused.error().contains(needle),
            "{needle}: {}",
            refused.error()
        );
    }
    assert_eq!(
        fake.count_requests("POST", "/api/v1/api-keys"),
        posts,
        "the engine refused, not Qlik"
    );
    assert_eq!(active_keys(&fake).len(), 4);
    assert!(
        !engine
            .dump()
            .await
            .keys()
            .any(|k| k.starts_with("intents/")),
        "no intent left"
    );
    // The slot it kept is there: the automatic rotation's (here: revoke_previous, net zero).
    let last = leases.last().expect("lease").key_id.clone();
    let forced = lease(
        &rotate(&engine, json!({ "revoke_previous": true })).await,
        "rotate revoke_previous",
    );
    assert!(!alive(&fake.keys(), &last), "the previous key was deleted");
    assert!(alive(&fake.keys(), &forced.key_id));
    assert_eq!(active_keys(&fake).len(), 4);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_rotation_at_the_key_limit_frees_a_slot_of_its_own_keys_as_a_last_resort() {
    let fake = start_fake().await;
    set(
        &fake,
        SettingsPatch {
            max_keys_per_user: Some(3),
            ..Default::default()
        },
    );
    let engine = configured(&fake, json!({ "rotate_before": "PT9S" })).await;
    // K1 held by an application's key lease; K2, a 10-second key, is stored.
    let held = lease(&engine.call("read", "key", json!({})).await, "key");
    let k2 = lease(
        &rotate(&engine, json!({ "expiry": "PT10S" })).await,
        "rotate",
    );
    // Someone mints a key by hand: the owner is full (3 of 3).
    let (foreign, _) = mint_directly(&fake, &fake.service.api_key, "PT1H").await;
    assert_eq!(active_keys(&fake).len(), 3);
    // Due at once (9 s margin on a 10 s key); the last resort once under half of it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let tick = engine.rollback().await;
    assert!(tick.status < 300, "{:?}", tick.data);
    let config = read(&engine, "config").await;
    assert_eq!(config["last_rotation"]["outcome"], "success", "{config}");
    assert_ne!(config["key_id"].as_str(), Some(k2.key_id.as_str()));
    let keys = fake.keys();
    assert!(
        !alive(&keys, &held.key_id),
        "the held key expiring first went"
    );
    assert!(
        alive(&keys, &foreign),
        "a key the engine did not mint is never touched"
    );
    assert!(alive(&keys, config["key_id"].as_str().expect("id")));
    // Its lease still revokes cleanly.
    let revoked = engine.revoke(&held).await;
    assert!(revoked.status < 300, "{:?}", revoked.data);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_ttls_hold_when_the_tenant_clock_is_skewed() {
    for skew in [600_i64, -600] {
        let fake = start_fake().await;
        fake.advance_clock(skew);
        let engine = configured(&fake, json!({})).await;
        let rotated = lease(
            &rotate(&engine, json!({ "expiry": "PT1H" })).await,
            "rotate",
        );
        // The key dies 3600 s after Qlik minted it, whatever either clock says.
        assert!(
            (3590..=3600).contains(&rotated.ttl_secs),
            "skew {skew}: rotate TTL {}",
            rotated.ttl_secs
        );
        let key = lease(&engine.call("read", "key", json!({})).await, "key");
        assert!(
            (3588..=3600).contains(&key.ttl_secs),
            "skew {skew}: key TTL {}",
            key.ttl_secs
        );
        engine
            .call("create", "roles/app", json!({ "expiry": "PT1H" }))
            .await;
        let creds = lease(&engine.call("read", "creds/app", json!({})).await, "creds");
        assert!(
            (3590..=3600).contains(&creds.ttl_secs),
            "skew {skew}: creds TTL {}",
            creds.ttl_secs
        );
        // Rotation is scheduled by the key's real life too: half of it from now.
        let config = read(&engine, "config").await;
        let next: jiff::Timestamp = config["next_rotation_at"]
            .as_str()
            .expect("next")
            .parse()
            .expect("time");
        let in_secs = next.duration_since(jiff::Timestamp::now()).as_secs();
        assert!(
            (1790..=1800).contains(&in_secs),
            "skew {skew}: next rotation in {in_secs}"
        );
        fake.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_keys_lease_follows_the_tenant_clock() {
    let fake = start_fake().await;
    // The seed key was minted at the fake's start with a 24 h life; the tenant's clock now
    // runs 10 minutes ahead of ours, so the key dies 10 minutes sooner by our clock.
    fake.advance_clock(600);
    let engine = configured(&fake, json!({})).await;
    let key = lease(&engine.call("read", "key", json!({})).await, "key");
    let created: jiff::Timestamp = fake
        .keys()
        .into_iter()
        .find(|k| k.id == fake.service.key_id)
        .expect("seed key")
        .expiry
        .parse()
        .expect("expiry");
    let naive = created.duration_since(jiff::Timestamp::now()).as_secs();
    assert!(
        key.ttl_secs <= naive - 598 && key.ttl_secs >= naive - 603,
        "TTL {} vs expiry - now {naive}",
        key.ttl_secs
    );
    fake.shutdown().await;
}

/// The tenant's clock steps forward while the mount makes no Qlik call: a `key` read after
/// [`tenant_clock::FRESH`] reads the tenant's clock again (one GET of the stored key's record,
/// shared by the reads that follow) and its lease ends when the key dies. If that GET fails,
/// the read is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_lease_given_after_the_tenant_clock_steps_follows_it() {
    use vault_plugin_secrets_qlik::engine::api_key::tenant_clock::FRESH;
    use vault_plugin_secrets_qlik::fake::faults::FaultSpec;
    let fake = start_fake().await;
    let engine = configured(&fake, json!({})).await;
    let minted = std::time::Instant::now();
    let rotated = lease(
        &rotate(&engine, json!({ "expiry": "PT1H" })).await,
        "rotate",
    );
    assert!(rotated.ttl_secs >= 3590, "rotate TTL {}", rotated.ttl_secs);
    let key_id = read(&engine, "config").await["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();
    let record = format!("/api/v1/api-keys/{key_id}");
    let gets_before = fake.count_requests("GET", &record);

    // The tenant's clock jumps 5 minutes ahead: the key now dies 5 minutes sooner by ours.
    fake.advance_clock(300);
    tokio::time::sleep(FRESH + Duration::from_secs(1)).await;
    let first = lease(&engine.call("read", "key", json!({})).await, "key");
    let second = lease(&engine.call("read", "key", json!({})).await, "key");
    // A 1 h key minted `minted` ago, 5 minutes of it taken by the step (2 s of rounding).
    let left = 3600 - 300 - i64::try_from(minted.elapsed().as_secs()).unwrap_or(0) - 2;
    for (n, key) in [first, second].iter().enumerate() {
        assert!(
            key.ttl_secs <= 3600 - 300 && key.ttl_secs >= left,
            "read {n}: key TTL {} after a +300 s step (expected {left}..=3300)",
            key.ttl_secs
        );
    }
    assert_eq!(
        fake.count_requests("GET", &record) - gets_before,
        1,
        "one GET of the stored key's record, shared by both reads"
    );

    // Another step, and Qlik failing the check: the read is served from the last clock seen.
    fake.advance_clock(300);
    fake.inject_fault(FaultSpec {
        method: Some("GET".into()),
        path_prefix: Some(record.clone()),
        status: Some(503),
        count: Some(10),
        ..Default::default()
    });
    tokio::time::sleep(FRESH + Duration::from_secs(1)).await;
    let served = lease(&engine.call("read", "key", json!({})).await, "key");
    assert!(
        served.ttl_secs > 0 && served.ttl_secs <= 3600 - 300,
        "key TTL {} with Qlik failing the clock read",
        served.ttl_secs
    );
    fake.shutdown().await;
}

/// A secret rotation interrupted after Qlik created the secret (the connection dropped: the
/// engine never saw it) leaves its intent; tidy deletes that secret whatever the tenant's
/// clock says, ahead of ours or behind it (Qlik dates the secret by its own clock). A secret
/// left behind takes one of the client's 5 slots for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidy_deletes_a_secret_left_by_an_interrupted_rotation_whatever_the_tenant_clock() {
    use vault_plugin_secrets_qlik::fake::faults::{FaultKind, FaultSpec};
    for skew in [0_i64, 30, -30] {
        let fake = start_fake().await;
        let engine = configured(&fake, json!({})).await;
        let hints = || -> Vec<String> {
            fake.fake()
                .oauth_clients()
                .into_iter()
                .filter(|c| c.client_id == fake.oauth.client_id)
                .flat_map(|c| c.secrets.into_iter().map(|s| s.hint))
                .collect()
        };
        write_seed_client(&engine, &fake).await;
        fake.advance_clock(skew);
        fake.inject_fault(FaultSpec {
            method: Some("POST".into()),
            path_prefix: Some("/api/v1/oauth-clients/".into()),
            kind: Some(FaultKind::DropConnection),
            count: Some(1),
            ..Default::default()
        });
        let rotated = engine
            .call("update", "oauth/clients/app/rotate", json!({}))
            .await;
        assert!(rotated.status >= 400, "skew {skew}: {:?}", rotated.data);
        assert_eq!(
            fake.pending_faults(),
            0,
            "skew {skew}: the create met the drop"
        );
        assert_eq!(hints().len(), 2, "skew {skew}: Qlik created the secret");
        let tidied = engine.call("update", "tidy", json!({})).await;
        assert!(tidied.status < 300, "skew {skew}: tidy {:?}", tidied.data);
        let stored = read(&engine, "oauth/clients/app").await["client_secret_hint"]
            .as_str()
            .expect("hint")
            .to_string();
        assert_eq!(
            hints(),
            vec![stored],
            "skew {skew}: the secret left by the interrupted rotation is deleted ({:?})",
            tidied.data
        );
        fake.shutdown().await;
    }
}

/// With `manage_with=self` a rotation manages the client's secrets with a token of the
/// client's own, and the deletion of a superseded secret with another: each is revoked once
/// its work is done. Before, every rotation left two live tokens at Qlik for their 6 hours,
/// and a client's bot user may hold only so many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_rotations_leave_no_live_token_behind() {
    let fake = start_fake().await;
    let engine = configured(&fake, json!({})).await;
    write_seed_client(&engine, &fake).await;
    for round in 0..3 {
        let rotated = engine
            .call("update", "oauth/clients/app/rotate", json!({}))
            .await;
        assert!(rotated.status < 300, "rotation {round}: {:?}", rotated.data);
    }
    let tidied = engine.call("update", "tidy", json!({})).await;
    assert!(tidied.status < 300, "tidy: {:?}", tidied.data);
    let all = fake.fake().oauth_tokens(&fake.oauth.client_id, true);
    let live = fake.fake().oauth_tokens(&fake.oauth.client_id, false);
    assert!(
        all.len() >= 6,
        "the rotations got tokens (written, 3 x manage + verify, deletions): {}",
        all.len()
    );
    assert!(
        live.is_empty(),
        "no lease holds a token, so none may be live at Qlik: {} of {} live",
        live.len(),
        all.len()
    );
    fake.shutdown().await;
}

/// A client whose stored secret Qlik refuses (deleted at Qlik) is `broken`, whatever the shape
/// of Qlik's 401 (here Qlik's own `errors` body, the fake's default, which never says
/// `invalid_client`); writing a working secret repairs it at once. Before, the state was read
/// from the error's text: with Qlik's shape the client stayed `healthy`, and a written secret
/// left it `broken` until a rotation succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_secret_is_broken_whatever_qliks_answer_and_a_written_one_repairs_it() {
    let fake = start_fake().await;
    let engine = configured(&fake, json!({})).await;
    write_seed_client(&engine, &fake).await;
    let state = |status: &Value| status["oauth_clients"]["app"]["state"].clone();
    assert_eq!(state(&read(&engine, "status").await), json!("healthy"));

    let (new_secret, new_hint) = replace_the_stored_secret_at_qlik(&engine, &fake).await;

    let refused = engine
        .call("update", "oauth/clients/app/rotate", json!({}))
        .await;
    assert!(refused.status >= 400, "{:?}", refused.data);
    assert!(
        !refused.error().contains("invalid_client"),
        "Qlik's own shape: {}",
        refused.error()
    );
    let status = read(&engine, "status").await;
    assert_eq!(state(&status), json!("broken"), "{status}");

    let repaired = engine
        .call(
            "update",
            "oauth/clients/app",
            json!({ "client_secret": new_secret, "client_secret_hint": new_hint }),
        )
        .await;
    assert!(repaired.status < 300, "{:?}", repaired.data);
    let status = read(&engine, "status").await;
    assert_eq!(state(&status), json!("healthy"), "{status}");
    assert_eq!(
        status["oauth_clients"]["app"]["consecutive_failures"],
        json!(0)
    );
    fake.shutdown().await;
}

/// An application's token read that Qlik refuses (the stored secret was deleted at Qlik) makes
/// the client `broken` at once, with no rotation attempt: with `manage_with=api_key` or a
/// 30-day period the next rotation could be weeks away, and `status` said `healthy` meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_read_makes_the_client_broken_at_once() {
    let fake = start_fake().await;
    let engine = configured(&fake, json!({})).await;
    write_seed_client(&engine, &fake).await;
    let role = engine
        .call("create", "oauth/roles/r", json!({ "client": "app" }))
        .await;
    assert!(role.status < 300, "role: {:?}", role.data);
    let state = |status: &Value| status["oauth_clients"]["app"]["state"].clone();

    let (new_secret, new_hint) = replace_the_stored_secret_at_qlik(&engine, &fake).await;

    let refused = engine.call("read", "oauth/token/r", json!({})).await;
    assert_eq!(refused.status, 400, "{:?}", refused.data);
    let status = read(&engine, "status").await;
    assert_eq!(state(&status), json!("broken"), "{status}");
    assert!(
        status["oauth_clients"]["app"]["state_reason"]
            .as_str()
            .is_some_and(|r| r.contains("refused the stored secret")),
        "{status}"
    );

    let repaired = engine
        .call(
            "update",
            "oauth/clients/app",
            json!({ "client_secret": new_secret, "client_secret_hint": new_hint }),
        )
        .await;
    assert!(repaired.status < 300, "{:?}", repaired.data);
    assert_eq!(state(&read(&engine, "status").await), json!("healthy"));
    let token = engine.call("read", "oauth/token/r", json!({})).await;
    assert_eq!(token.status, 200, "{:?}", token.data);
    fake.shutdown().await;
}
