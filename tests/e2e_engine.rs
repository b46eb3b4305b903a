//! The engine end to end: a real `bao server -dev` with the plugin, and `fake-qlik` over HTTPS,
//! driven with the `bao` CLI and the HTTP API as users do.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::inproc::{authenticates, http_client};
use support::{DevServer, Setup, configured_server, no_rate_limits};
use vault_plugin_secrets_qlik::fake::{
    FakeOptions, FakeTenant, FaultSpec, RunningFake, SettingsPatch,
};

/// A dev server with the engine mounted at `qlik/`, configured against a fresh fake tenant
/// whose rate limits are off.
async fn setup() -> Option<Setup> {
    configured_server(no_rate_limits(), &[]).await
}

/// Whether the fake holds key `id` alive (not deleted, not revoked, not expired).
fn alive_at_fake(fake: &RunningFake, id: &str) -> bool {
    fake.keys()
        .iter()
        .any(|k| k.id == id && !k.deleted && k.status == "active")
}

fn fake_expiry_secs_left(fake: &RunningFake, id: &str) -> i64 {
    let key = fake
        .keys()
        .into_iter()
        .find(|k| k.id == id)
        .expect("key at fake");
    let expiry: jiff::Timestamp = key.expiry.parse().expect("expiry");
    expiry.duration_since(jiff::Timestamp::now()).as_secs()
}

fn config_key_id(server: &DevServer) -> String {
    server.json(&["read", "qlik/config"])["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotate_returns_a_lease_whose_ttl_is_the_keys_real_remaining_life() {
    let Some(s) = setup().await else { return };
    let first = config_key_id(&s.server);
    assert_eq!(first, s.fake.service.key_id);
    let mut previous = first;
    let mut previous_lease: Option<String> = None;
    for expiry in [Some("PT2H"), Some("P1D"), None] {
        let mut args = vec!["write", "qlik/rotate"];
        let arg;
        if let Some(e) = expiry {
            arg = format!("expiry={e}");
            args.push(&arg);
        } else {
            args.insert(1, "-force");
        }
        let out = s.server.json(&args);
        let key_id = out["data"]["key_id"].as_str().expect("key_id").to_string();
        let token = out["data"]["api_key"]
            .as_str()
            .expect("api_key")
            .to_string();
        let ttl = out["lease_duration"].as_i64().expect("lease_duration");
        let real = fake_expiry_secs_left(&s.fake, &key_id);
        assert!(
            (ttl - real).abs() <= 2,
            "{expiry:?}: lease {ttl}s vs key {real}s"
        );
        assert_eq!(out["renewable"], false);
        assert!(authenticates(&s.fake, &token).await, "the new key works");
        assert_eq!(config_key_id(&s.server), key_id, "config shows the new key");
        match previous_lease.take() {
            // The seed key: no lease held it, so it went at once.
            None => assert!(!alive_at_fake(&s.fake, &previous), "the old key is gone"),
            // A rotated key is held by its rotate lease until that lease ends.
            Some(lease) => {
                assert!(alive_at_fake(&s.fake, &previous), "held by its lease");
                s.server.ok(&["lease", "revoke", "-sync", &lease]);
                assert!(
                    !alive_at_fake(&s.fake, &previous),
                    "gone with its last lease"
                );
            }
        }
        previous = key_id;
        previous_lease = Some(out["lease_id"].as_str().expect("lease").to_string());
    }
    // The default is the configured key's own lifetime: the fake's 24 h.
    let out = s.server.json(&["read", "qlik/config"]);
    assert_eq!(out["data"]["key_expiry"], "P1D");
    assert_eq!(out["data"]["last_rotation"]["outcome"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_lease_holds_the_superseded_key_until_it_is_revoked() {
    let Some(s) = setup().await else { return };
    let read = s.server.json(&["read", "qlik/key"]);
    let held = read["data"]["key_id"].as_str().expect("id").to_string();
    let token = read["data"]["api_key"].as_str().expect("token").to_string();
    assert_eq!(held, s.fake.service.key_id);
    let lease = read["lease_id"].as_str().expect("lease").to_string();
    assert!(read["lease_duration"].as_i64().expect("ttl") > 86_000);
    let second = s.server.json(&["read", "qlik/key"]);
    let second_lease = second["lease_id"].as_str().expect("lease").to_string();

    let rotated = s.server.json(&["write", "-force", "qlik/rotate"]);
    assert!(
        alive_at_fake(&s.fake, &held),
        "held by a lease: still alive"
    );
    assert!(authenticates(&s.fake, &token).await);
    let record = s.server.json(&["read", &format!("qlik/keys/{held}")]);
    assert_eq!(record["data"]["kind"], "superseded");
    assert_eq!(record["data"]["live_leases"], 2);

    // Revoking a lease on the current key never deletes it.
    let current_lease = rotated["lease_id"].as_str().expect("lease");
    s.server.ok(&["lease", "revoke", "-sync", current_lease]);
    assert!(alive_at_fake(
        &s.fake,
        rotated["data"]["key_id"].as_str().expect("id")
    ));

    // One of two leases ends: the other still holds the key (the server's paged listing,
    // OpenBao's ListPage, sees it).
    s.server.ok(&["lease", "revoke", "-sync", &second_lease]);
    assert!(alive_at_fake(&s.fake, &held), "one lease still holds it");
    assert!(authenticates(&s.fake, &token).await);

    s.server.ok(&["lease", "revoke", "-sync", &lease]);
    assert!(
        !alive_at_fake(&s.fake, &held),
        "the last lease ended: deleted"
    );
    assert!(!authenticates(&s.fake, &token).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creds_keys_live_and_die_with_their_leases() {
    let Some(s) = setup().await else { return };
    s.server.ok(&[
        "write",
        "qlik/roles/app",
        "expiry=PT1H",
        "description=reporting app",
    ]);
    let one = s.server.json(&["read", "qlik/creds/app"]);
    let id = one["data"]["key_id"].as_str().expect("id").to_string();
    assert!(alive_at_fake(&s.fake, &id));
    assert!((one["lease_duration"].as_i64().expect("ttl") - 3600).abs() <= 2);
    let description = s
        .fake
        .keys()
        .into_iter()
        .find(|k| k.id == id)
        .expect("key")
        .description;
    assert!(
        description.starts_with("reporting app [vault-qlik mount="),
        "{description}"
    );
    // The inventory counts the lease that keeps the key alive; it ends when the key expires.
    let record = s.server.json(&["read", &format!("qlik/keys/{id}")]);
    assert_eq!(record["data"]["kind"], "dedicated", "{record}");
    assert_eq!(record["data"]["role"], "app", "{record}");
    assert_eq!(record["data"]["live_leases"], 1, "{record}");
    assert_eq!(
        record["data"]["expires_at"], one["data"]["expires_at"],
        "{record}"
    );
    // Not renewable: the server refuses before the plugin is asked (README, How keys stay
    // alive).
    let lease_id = one["lease_id"].as_str().expect("lease");
    let refused = s.server.fails(&["lease", "renew", lease_id]);
    assert!(refused.contains("lease is not renewable"), "{refused}");
    s.server.ok(&["lease", "revoke", "-sync", lease_id]);
    assert!(!alive_at_fake(&s.fake, &id));
    let (status, _) = s.server.http("GET", &format!("qlik/keys/{id}"), None).await;
    assert_eq!(status, 404, "the revoked key left the inventory");

    let a = s.server.json(&["read", "qlik/creds/app"]);
    let b = s.server.json(&["read", "qlik/creds/app"]);
    let (a_id, b_id) = (
        a["data"]["key_id"].as_str().expect("a").to_string(),
        b["data"]["key_id"].as_str().expect("b").to_string(),
    );
    // One key deleted by hand at Qlik: its lease must still revoke cleanly.
    let resp = http_client(&s.fake)
        .delete(s.fake.url_for(&format!("/api/v1/api-keys/{b_id}")))
        .bearer_auth(&s.fake.service.api_key)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 204);
    s.server
        .ok(&["lease", "revoke", "-sync", "-prefix", "qlik/creds/"]);
    assert!(!alive_at_fake(&s.fake, &a_id));
    let listed = s.server.cli(&["list", "-format=json", "qlik/keys"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !text.contains(&a_id) && !text.contains(&b_id),
        "forgotten: {text}"
    );

    // At the tenant's key limit: 400 with the numbers and the fix, and nothing minted. The
    // last free slot is the stored key's rotation's: with 3 allowed, the stored key and one
    // creds key are all creds may have, and a rotation still succeeds.
    s.fake
        .update_settings(SettingsPatch {
            max_keys_per_user: Some(3),
            ..Default::default()
        })
        .expect("limit");
    let _c = s.server.json(&["read", "qlik/creds/app"]);
    let before = s.fake.keys().len();
    let (status, body) = s.server.http("GET", "qlik/creds/app", None).await;
    assert_eq!(status, 400, "{body}");
    let message = body["errors"][0]
        .as_str()
        .unwrap_or_else(|| panic!("an error message: {body}"));
    assert!(
        message.contains("2 active API keys")
            && message.contains("allows 3")
            && message.contains("stays free for the stored key's rotation")
            && message.contains("vault lease revoke <lease_id>")
            && message.contains("lease revoke -prefix qlik/creds/<role>"),
        "{message}"
    );
    assert_eq!(s.fake.keys().len(), before, "no extra key at the fake");
    let rotated = s.server.json(&["write", "-f", "qlik/rotate"]);
    let new_token = rotated["data"]["api_key"]
        .as_str()
        .unwrap_or_else(|| panic!("api_key: {rotated}"));
    assert!(
        authenticates(&s.fake, new_token).await,
        "the rotation used the slot creds left free: {rotated}"
    );

    // Unknown role: 400 naming it.
    let (status, body) = s.server.http("GET", "qlik/creds/nope", None).await;
    assert_eq!(status, 400);
    assert!(
        body.to_string().contains("unknown role \\\"nope\\\""),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_decide_who_may_do_what() {
    let Some(s) = setup().await else { return };
    s.server.ok(&["write", "qlik/roles/app", "expiry=PT1H"]);
    s.server.ok(&["write", "qlik/roles/other", "expiry=PT1H"]);
    let policy = s.server.dir.path().join("app.hcl");
    std::fs::write(
        &policy,
        "path \"qlik/creds/app\" { capabilities = [\"read\"] }\n",
    )
    .expect("policy");
    s.server
        .ok(&["policy", "write", "qlik-app", &policy.display().to_string()]);
    let created = s
        .server
        .ok(&["token", "create", "-format=json", "-policy=qlik-app"]);
    let created: Value = serde_json::from_str(&created).expect("json");
    let token = created["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_string();
    let (status, body) = s
        .server
        .http_as(&token, "GET", "qlik/creds/app", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(alive_at_fake(
        &s.fake,
        body["data"]["key_id"].as_str().expect("id")
    ));
    for (method, path) in [
        ("GET", "qlik/config"),
        ("POST", "qlik/config"),
        ("POST", "qlik/rotate"),
        ("GET", "qlik/key"),
        ("GET", "qlik/creds/other"),
        ("POST", "qlik/roles/app"),
    ] {
        let body = (method == "POST").then(|| json!({"auto_rotate": false}));
        let (status, _) = s.server.http_as(&token, method, path, body).await;
        assert_eq!(status, 403, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_the_field_named_and_changes_nothing() {
    let Some(s) = setup().await else { return };
    let before = s.server.json(&["read", "qlik/config"])["data"].clone();
    for (args, needle) in [
        (vec!["write", "qlik/rotate", "expiry=P1M"], "\"expiry\""),
        (vec!["write", "qlik/rotate", "expiry=PT0S"], "\"expiry\""),
        (
            vec!["write", "qlik/rotate", "bogus=1"],
            "unknown field \"bogus\"",
        ),
        (vec!["write", "qlik/roles/app", "expiry=1.5h"], "\"expiry\""),
        (
            vec!["write", "qlik/config", "rotate_before=P2D"],
            "\"rotate_before\"",
        ),
        (
            vec!["write", "qlik/config", "api_key=not-a-jwt"],
            "\"api_key\"",
        ),
    ] {
        let err = s.server.fails(&args);
        assert!(
            err.contains("Code: 400") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    // A key that would outlive the mount's max lease TTL: refused before minting, with the fix.
    s.server
        .ok(&["secrets", "tune", "-max-lease-ttl=1h", "qlik/"]);
    let keys_before = s.fake.keys().len();
    let err = s.server.fails(&["write", "qlik/rotate", "expiry=PT2H"]);
    assert!(
        err.contains("Code: 400") && err.contains("vault secrets tune -max-lease-ttl=2h qlik/"),
        "{err}"
    );
    assert_eq!(s.fake.keys().len(), keys_before);
    // A key read is capped at the mount maximum instead, by the engine: exactly the maximum,
    // and without the warning the server adds when it has to clamp a plugin's TTL itself.
    let read = s.server.json(&["read", "qlik/key"]);
    let warnings = &read["warnings"];
    assert_eq!(read["lease_duration"], 3600, "warnings: {warnings}");
    assert!(
        warnings.is_null()
            || warnings
                .as_array()
                .is_some_and(|w| w.iter().all(|w| !w.to_string().contains("max_ttl"))),
        "the server, not the engine, capped the TTL: {warnings}"
    );
    assert_eq!(s.server.json(&["read", "qlik/config"])["data"], before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rejected_by_qlik_stores_nothing_and_says_why() {
    let Some(s) = setup().await else { return };
    let before = s.server.json(&["read", "qlik/config"])["data"].clone();
    // The admin revokes the service user's key: Qlik answers 401 for it from now on.
    let resp = http_client(&s.fake)
        .delete(
            s.fake
                .url_for(&format!("/api/v1/api-keys/{}", s.fake.service.key_id)),
        )
        .bearer_auth(&s.fake.admin.api_key)
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status().as_u16(), 204);
    let err = s.server.fails(&[
        "write",
        "qlik/config",
        &format!("api_key={}", s.fake.service.api_key),
    ]);
    assert!(
        err.contains("Code: 400") && err.contains("api_key") && err.contains("401"),
        "{err}"
    );
    assert_eq!(s.server.json(&["read", "qlik/config"])["data"], before);
    // And the engine says the same when it must use it.
    let err = s.server.fails(&["write", "-force", "qlik/rotate"]);
    assert!(
        err.contains("Code: 400")
            && (err.contains("write a valid key to config")
                || err.contains("Write a valid key to config")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_killed_while_qlik_creates_a_key_loses_nothing() {
    let Some(s) = setup().await else { return };
    s.fake.inject_fault(FaultSpec {
        method: Some("POST".into()),
        path_prefix: Some("/api/v1/api-keys".into()),
        count: Some(1),
        delay_after_ms: Some(4000),
        ..Default::default()
    });
    let rotate = {
        let bao = s.server.bao.clone();
        let addr = s.server.addr.clone();
        std::thread::spawn(move || {
            std::process::Command::new(bao)
                .args(["write", "-format=json", "-force", "qlik/rotate"])
                .env("BAO_ADDR", addr)
                .env("BAO_TOKEN", "root")
                .output()
                .expect("bao")
        })
    };
    // The key now exists at the fake, its answer is held back: kill the plugin.
    s.server
        .wait_for("the delayed key creation", Duration::from_secs(10), || {
            s.fake.count_requests("POST", "/api/v1/api-keys") >= 1
        });
    std::thread::sleep(Duration::from_millis(300));
    let pids = s.server.plugin_pids();
    assert!(!pids.is_empty(), "no plugin process to kill");
    for pid in &pids {
        support::kill(*pid, "KILL");
    }
    let out = rotate.join().expect("join");
    assert!(
        !out.status.success(),
        "the rotate whose plugin was killed cannot have succeeded (the kill came too late)"
    );
    let after = s.server.plugin_pids();
    assert!(
        pids.iter().all(|pid| !after.contains(pid)),
        "the plugin was killed: {pids:?} still in {after:?}"
    );
    // The key Qlik created (before holding its answer back) is alive and carries the mount's
    // marker: an orphan for tidy.
    let config = s.server.json(&["read", "qlik/config"]);
    let stored = config["data"]["key_id"]
        .as_str()
        .unwrap_or_else(|| panic!("stored key_id: {config}"))
        .to_string();
    assert_eq!(
        stored, s.fake.service.key_id,
        "the interrupted rotation stored nothing"
    );
    let orphans: Vec<String> = s
        .fake
        .keys()
        .into_iter()
        .filter(|k| {
            k.sub == s.fake.service.user_id
                && k.id != stored
                && k.description.contains("[vault-qlik mount=")
                && !k.deleted
                && k.status == "active"
        })
        .map(|k| k.id)
        .collect();
    assert_eq!(orphans.len(), 1, "one orphan before tidy: {orphans:?}");
    s.server.ok(&["write", "-force", "qlik/tidy"]);
    // Exactly one stored key, it works, and nothing else of the service user is alive.
    let read = s.server.json(&["read", "qlik/key"]);
    assert_eq!(read["data"]["key_id"], stored.as_str());
    let token = read["data"]["api_key"]
        .as_str()
        .unwrap_or_else(|| panic!("api_key: {read}"));
    assert!(authenticates(&s.fake, token).await, "the stored key works");
    let alive = support::inproc::alive_of_owner(&s.fake.keys(), &s.fake.service.user_id);
    assert_eq!(
        alive,
        std::collections::BTreeSet::from([stored]),
        "only the stored key is alive at the fake: the orphan {orphans:?} was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automatic_rotation_happens_before_expiry_and_the_chain_never_breaks() {
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    // A key with ten minutes left, and a margin of thirty: rotation is due at the next tick.
    let resp = http_client(&fake)
        .post(fake.url_for("/api/v1/api-keys"))
        .bearer_auth(&fake.service.api_key)
        .json(&json!({"description": "short-lived seed", "expiry": "PT10M"}))
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status().as_u16(), 201);
    let created: Value = resp.json().await.expect("json");
    let seed = created["id"].as_str().expect("id").to_string();
    let token = created["token"].as_str().expect("token").to_string();
    let Some(server) = DevServer::start() else {
        return;
    };
    server.enable("qlik");
    let ca = server.dir.path().join("ca.pem");
    std::fs::write(&ca, &fake.ca_pem).expect("ca");
    server.ok(&[
        "write",
        "qlik/config",
        &format!("tenant_url={}", fake.url.as_str().trim_end_matches('/')),
        &format!("api_key={token}"),
        &format!("ca_cert=@{}", ca.display()),
        "key_expiry=PT1H",
        "rotate_before=PT30M",
    ]);
    let config = server.json(&["read", "qlik/config"]);
    let due: jiff::Timestamp = config["data"]["next_rotation_at"]
        .as_str()
        .expect("due")
        .parse()
        .expect("ts");
    assert!(due <= jiff::Timestamp::now());
    // The chain: create (bearer: the old key), verify (the new key), store, and only then
    // delete the old key. The fake holds that DELETE: while it is held, the new key must
    // already be the stored one and the old key still alive.
    let log_start = fake.requests().len();
    fake.inject_fault(FaultSpec {
        method: Some("DELETE".into()),
        path_prefix: Some(format!("/api/v1/api-keys/{seed}")),
        count: Some(1),
        delay_before_ms: Some(3_000),
        ..Default::default()
    });
    // The server's rollback tick comes every 60 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(100);
    while fake.pending_faults() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no deletion of the old key within 100 s; server log:\n{}",
            server.log()
        );
        let id = config_key_id(&server);
        assert!(
            alive_at_fake(&fake, &id),
            "the stored key {id} must be alive at every moment"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new = config_key_id(&server);
    assert_ne!(
        new, seed,
        "the old key's deletion began before the new key was stored"
    );
    assert!(
        alive_at_fake(&fake, &seed),
        "the old key is alive until its held deletion goes through"
    );
    server.wait_for("the held deletion", Duration::from_secs(10), || {
        !alive_at_fake(&fake, &seed)
    });
    let log = fake.requests()[log_start..].to_vec();
    let at =
        |what: &str, found: &dyn Fn(&vault_plugin_secrets_qlik::fake::RequestRecord) -> bool| {
            log.iter()
                .position(found)
                .unwrap_or_else(|| panic!("no {what} in the fake's log: {log:?}"))
        };
    let created = at("create by the old key", &|r| {
        r.method == "POST"
            && r.path == "/api/v1/api-keys"
            && r.status == 201
            && r.key_id.as_deref() == Some(seed.as_str())
    });
    let verified = at("verification by the new key", &|r| {
        r.method == "GET"
            && r.path.starts_with("/api/v1/users/")
            && r.key_id.as_deref() == Some(new.as_str())
    });
    let deleted = at("deletion of the old key", &|r| {
        r.method == "DELETE" && r.path == format!("/api/v1/api-keys/{seed}")
    });
    assert!(
        created < verified && verified < deleted,
        "create, verify, then delete: {log:?}"
    );
    assert_eq!(
        log[deleted].key_id.as_deref(),
        Some(new.as_str()),
        "the old key is deleted with the stored (new) key as bearer"
    );
    assert_eq!(
        log.iter().filter(|r| r.method == "POST").count(),
        1,
        "one key minted: {log:?}"
    );

    let left = fake_expiry_secs_left(&fake, &new);
    assert!((3590..=3600).contains(&left), "asked for PT1H, got {left}s");
    assert!(
        !alive_at_fake(&fake, &seed),
        "the old key went once the new one was stored"
    );
    let config = server.json(&["read", "qlik/config"]);
    assert_eq!(config["data"]["last_rotation"]["trigger"], "automatic");
    assert_eq!(config["data"]["last_rotation"]["outcome"], "success");
    assert!(server.log().contains("automatic rotation done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_still_revoke_after_config_is_deleted() {
    let Some(s) = setup().await else { return };
    s.server.ok(&["write", "qlik/roles/app", "expiry=PT1H"]);
    let creds = s.server.json(&["read", "qlik/creds/app"]);
    let key = s.server.json(&["read", "qlik/key"]);
    s.server.ok(&["delete", "qlik/config"]);
    // No lease is stuck: both revoke, the keys are left to expire at Qlik, a warning says so.
    s.server.ok(&[
        "lease",
        "revoke",
        "-sync",
        creds["lease_id"].as_str().expect("lease"),
    ]);
    s.server.ok(&[
        "lease",
        "revoke",
        "-sync",
        key["lease_id"].as_str().expect("lease"),
    ]);
    assert!(s.server.log().contains("config was deleted"));
    let (status, body) = s.server.http("GET", "qlik/key", None).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("write config first"), "{body}");
}
