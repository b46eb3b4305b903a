//! OAuth M2M clients through a real `bao` dev server and `fake-qlik` (issue #23, first part):
//! `oauth/clients/<name>` verified at write, `oauth/roles/<role>` tried at Qlik, and
//! `oauth/token/<role>` as a lease whose TTL is the token's life, whose end revokes the token at
//! Qlik, and which a shared role serves from one token call.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Setup, configured_server, no_rate_limits};

/// `GET /api/v1/users/me` at the fake with `token` as bearer: the HTTP status.
async fn status_at_fake(setup: &Setup, token: &str) -> u16 {
    let ca = reqwest::Certificate::from_pem(setup.fake.ca_pem.as_bytes()).expect("ca");
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("client");
    http.get(format!("{}api/v1/users/me", setup.fake.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("call the fake")
        .status()
        .as_u16()
}

/// How many `POST /oauth/token` the fake answered.
fn token_calls(setup: &Setup) -> usize {
    setup
        .fake
        .fake()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/oauth/token")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauth_clients_roles_and_token_leases_through_a_real_server() {
    let Some(setup) = configured_server(no_rate_limits(), &[]).await else {
        return;
    };
    let server = &setup.server;
    let fake = &setup.fake;
    let client_id = fake.oauth.client_id.clone();
    let id_arg = format!("client_id={client_id}");

    // A wrong secret: 400 naming client_secret, nothing stored.
    let refused = server.fails(&[
        "write",
        "qlik/oauth/clients/app",
        &id_arg,
        "client_secret=not-the-secret",
    ]);
    assert!(refused.contains("client_secret"), "{refused}");
    let listed = server.cli(&["list", "-format=json", "qlik/oauth/clients"]);
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains("app"),
        "nothing stored after a refused secret"
    );

    // The right one: stored, read back without the secret, its hint read from Qlik.
    let secret_arg = format!("client_secret={}", fake.oauth.client_secret);
    server.ok(&["write", "qlik/oauth/clients/app", &id_arg, &secret_arg]);
    let read = server.json(&["read", "qlik/oauth/clients/app"]);
    let data = &read["data"];
    assert_eq!(data["client_id"], client_id.as_str());
    assert_eq!(data["manage_with"], "self");
    assert_eq!(
        data["rotation_period"],
        30 * 86_400,
        "default period: {data}"
    );
    let hints: Vec<String> = fake
        .fake()
        .oauth_clients()
        .into_iter()
        .filter(|c| c.client_id == client_id)
        .flat_map(|c| c.secrets.into_iter().map(|s| s.hint))
        .collect();
    assert_eq!(data["client_secret_hint"], hints[0].as_str(), "{data}");
    assert!(
        !read.to_string().contains(&fake.oauth.client_secret),
        "a read never shows the secret"
    );

    // Roles: what Qlik refuses is a 400 naming the field, and nothing is stored.
    let bad_scope = server.fails(&[
        "write",
        "qlik/oauth/roles/bad",
        "client=app",
        "scopes=no_such_scope",
    ]);
    assert!(bad_scope.contains("scopes"), "{bad_scope}");
    let unknown_user = server.fails(&[
        "write",
        "qlik/oauth/roles/bad",
        "client=app",
        "grant=impersonation",
        "user_id=no-such-user",
    ]);
    assert!(unknown_user.contains("user_id"), "{unknown_user}");
    let bad_grant = server.fails(&[
        "write",
        "qlik/oauth/roles/bad",
        "client=app",
        "grant=password",
    ]);
    assert!(bad_grant.contains("grant"), "{bad_grant}");
    let no_client = server.fails(&["write", "qlik/oauth/roles/bad", "client=nope"]);
    assert!(no_client.contains("client"), "{no_client}");
    let gone = server.cli(&["read", "qlik/oauth/roles/bad"]);
    assert!(
        String::from_utf8_lossy(&gone.stdout).trim().is_empty()
            || !gone.status.success()
            || String::from_utf8_lossy(&gone.stderr).contains("No value found"),
        "refused roles are not stored"
    );

    // A role of its own tokens, and an impersonating one (the fake's service user).
    server.ok(&[
        "write",
        "qlik/oauth/roles/own",
        "client=app",
        "scopes=user_default",
    ]);
    let as_user = format!("user_id={}", fake.service.user_id);
    server.ok(&[
        "write",
        "qlik/oauth/roles/as-user",
        "client=app",
        "grant=impersonation",
        &as_user,
    ]);

    // A token lease: TTL = the token's remaining life (within 2 s); the token works at Qlik.
    let lease = server.json(&["read", "qlik/oauth/token/own"]);
    let token = lease["data"]["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let expires_at: jiff::Timestamp = lease["data"]["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("RFC 3339");
    let life = expires_at.duration_since(jiff::Timestamp::now()).as_secs();
    let ttl = lease["lease_duration"].as_i64().expect("lease_duration");
    assert!(
        (ttl - life).abs() <= 2,
        "lease TTL {ttl}s vs the token's remaining life {life}s"
    );
    assert_eq!(lease["renewable"], Value::Bool(true));
    assert_eq!(lease["data"]["scopes"], "user_default");
    assert_eq!(status_at_fake(&setup, &token).await, 200);
    // Renewal never passes the token's life.
    let lease_id = lease["lease_id"].as_str().expect("lease_id").to_string();
    let renewed = server.json(&["lease", "renew", "-increment=87600h", &lease_id]);
    let renewed_ttl = renewed["lease_duration"].as_i64().expect("lease_duration");
    assert!(
        renewed_ttl <= life + 1,
        "renewed to {renewed_ttl}s past {life}s"
    );
    // Revoking the lease revokes the token at Qlik.
    server.ok(&["lease", "revoke", &lease_id]);
    server.wait_for(
        "the revoked token to be refused",
        Duration::from_secs(20),
        || {
            fake.fake()
                .oauth_tokens(&client_id, true)
                .iter()
                .any(|t| t.status != "active")
        },
    );
    assert_eq!(status_at_fake(&setup, &token).await, 401);

    // Impersonation: a token acting as the user.
    let user_lease = server.json(&["read", "qlik/oauth/token/as-user"]);
    let user_token = user_lease["data"]["access_token"].as_str().expect("token");
    assert_eq!(status_at_fake(&setup, user_token).await, 200);

    // A shared role: 300 concurrent readers, one token call.
    server.ok(&[
        "write",
        "qlik/oauth/roles/many",
        "client=app",
        "shared=true",
    ]);
    let before = token_calls(&setup);
    let http = reqwest::Client::new();
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let request = http
            .get(format!("{}/v1/qlik/oauth/token/many", server.addr))
            .header("X-Vault-Token", "root");
        reads.spawn(async move {
            let answer = request.send().await.expect("read");
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            (status, body)
        });
    }
    let answers = reads.join_all().await;
    let mut tokens = std::collections::BTreeSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        tokens.insert(
            body["data"]["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(tokens.len(), 1, "every reader got the one shared token");
    assert_eq!(
        token_calls(&setup) - before,
        1,
        "300 shared reads, one token call"
    );
    // A shared token outlives the end of one of its leases.
    let shared_lease = answers[0].1["lease_id"].as_str().expect("lease_id");
    server.ok(&["lease", "revoke", shared_lease]);
    let shared_token = tokens.into_iter().next().unwrap_or_default();
    assert_eq!(status_at_fake(&setup, &shared_token).await, 200);

    // The client cannot go while a role names it.
    let in_use = server.fails(&["delete", "qlik/oauth/clients/app"]);
    assert!(in_use.contains("role"), "{in_use}");
}

/// The client's secrets at the fake, by hint.
fn hints_at_fake(setup: &Setup) -> Vec<String> {
    setup
        .fake
        .fake()
        .oauth_clients()
        .into_iter()
        .filter(|c| c.client_id == setup.fake.oauth.client_id)
        .flat_map(|c| c.secrets.into_iter().map(|s| s.hint))
        .collect()
}

/// A secret created at the fake by someone else (the tenant admin's key).
async fn create_secret_elsewhere(setup: &Setup) -> u16 {
    let ca = reqwest::Certificate::from_pem(setup.fake.ca_pem.as_bytes()).expect("ca");
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("client");
    http.post(format!(
        "{}api/v1/oauth-clients/{}/client-secrets",
        setup.fake.url, setup.fake.oauth.client_id
    ))
    .bearer_auth(&setup.fake.admin.api_key)
    .send()
    .await
    .expect("call the fake")
    .status()
    .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secrets_rotate_on_the_chain_by_hand_and_by_the_tick() {
    let Some(setup) = configured_server(no_rate_limits(), &[]).await else {
        return;
    };
    let server = &setup.server;
    let fake = &setup.fake;
    let id_arg = format!("client_id={}", fake.oauth.client_id);
    let secret_arg = format!("client_secret={}", fake.oauth.client_secret);
    server.ok(&["write", "qlik/oauth/clients/app", &id_arg, &secret_arg]);
    server.ok(&["write", "qlik/oauth/roles/own", "client=app"]);
    let first_hint = hints_at_fake(&setup);
    assert_eq!(first_hint.len(), 1, "{first_hint:?}");

    // By hand, nothing holding the old secret: new one verified and stored, old one deleted.
    let rotated = server.json(&["write", "-force", "qlik/oauth/clients/app/rotate"]);
    let data = &rotated["data"];
    assert_eq!(data["previous"], "deleted", "{rotated}");
    assert_eq!(data["previous_hint"], first_hint[0].as_str());
    let new_hint = data["client_secret_hint"]
        .as_str()
        .expect("hint")
        .to_string();
    assert_ne!(new_hint, first_hint[0]);
    assert!(
        !rotated.to_string().contains(&fake.oauth.client_secret),
        "the answer carries no secret"
    );
    assert_eq!(
        hints_at_fake(&setup),
        vec![new_hint.clone()],
        "exactly one secret left"
    );
    // The stored secret is the new one: tokens still come.
    let token = server.json(&["read", "qlik/oauth/token/own"]);
    let bearer = token["data"]["access_token"].as_str().expect("token");
    assert_eq!(status_at_fake(&setup, bearer).await, 200);

    // A secret lease holds its secret through a rotation; its end deletes it.
    let held = server.json(&["read", "qlik/oauth/clients/app/secret"]);
    assert_eq!(held["data"]["client_secret_hint"], new_hint.as_str());
    assert!(
        held["data"]["client_secret"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(held["renewable"], Value::Bool(false));
    let rotated = server.json(&["write", "-force", "qlik/oauth/clients/app/rotate"]);
    assert_eq!(rotated["data"]["previous"], "kept_while_held", "{rotated}");
    let newest = rotated["data"]["client_secret_hint"]
        .as_str()
        .expect("hint")
        .to_string();
    assert_eq!(hints_at_fake(&setup).len(), 2, "the held secret is kept");
    // The inventory, status and metrics see the held secret and its lease.
    let read = server.json(&["read", "qlik/oauth/clients/app"]);
    let tracked = &read["data"]["secrets"];
    assert_eq!(tracked[new_hint.as_str()]["kind"], "superseded", "{read}");
    assert_eq!(tracked[new_hint.as_str()]["live_leases"], 1, "{read}");
    assert_eq!(tracked[newest.as_str()]["kind"], "stored", "{read}");
    assert!(
        read["data"]["next_rotation_at"].is_string(),
        "default period: {read}"
    );
    let status = server.json(&["read", "qlik/status"]);
    let app = &status["data"]["oauth_clients"]["app"];
    assert_eq!(app["state"], "healthy", "{status}");
    assert_eq!(app["live_secret_leases"], 1, "{status}");
    assert_eq!(app["secret_hint"], newest.as_str());
    let text = reqwest::Client::new()
        .get(format!("{}/v1/qlik/metrics", server.addr))
        .header("X-Vault-Token", "root")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("qlik_oauth_client_state{client=\"app\",state=\"healthy\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("qlik_oauth_live_secret_leases{client=\"app\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("qlik_oauth_token_calls_total{client=\"app\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("qlik_oauth_token_leases_total{client=\"app\",shared=\"false\"} 1"),
        "{text}"
    );
    let lease_id = held["lease_id"].as_str().expect("lease_id");
    server.ok(&["lease", "revoke", lease_id]);
    server.wait_for(
        "the released secret to be deleted",
        Duration::from_secs(20),
        || hints_at_fake(&setup) == vec![newest.clone()],
    );

    // 5 of 5 secrets taken by someone else: refused clearly, the stored secret intact.
    for _ in 0..4 {
        assert_eq!(create_secret_elsewhere(&setup).await, 201);
    }
    assert_eq!(hints_at_fake(&setup).len(), 5);
    let refused = server.fails(&["write", "-force", "qlik/oauth/clients/app/rotate"]);
    assert!(refused.contains("Qlik allows 5"), "{refused}");
    assert_eq!(hints_at_fake(&setup).len(), 5, "nothing created");
    let read = server.json(&["read", "qlik/oauth/clients/app"]);
    assert_eq!(read["data"]["client_secret_hint"], newest.as_str());
    let token = server.json(&["read", "qlik/oauth/token/own"]);
    let bearer = token["data"]["access_token"].as_str().expect("token");
    assert_eq!(
        status_at_fake(&setup, bearer).await,
        200,
        "the stored secret still works"
    );

    // By the tick: a one-minute period rotates it (once a slot is free).
    let others: Vec<String> = hints_at_fake(&setup)
        .into_iter()
        .filter(|h| *h != newest)
        .collect();
    let ca = reqwest::Certificate::from_pem(fake.ca_pem.as_bytes()).expect("ca");
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("client");
    for hint in others {
        let status = http
            .delete(format!(
                "{}api/v1/oauth-clients/{}/client-secrets/{hint}",
                fake.url, fake.oauth.client_id
            ))
            .bearer_auth(&fake.admin.api_key)
            .send()
            .await
            .expect("delete")
            .status();
        assert_eq!(status.as_u16(), 204);
    }
    server.ok(&["write", "qlik/oauth/clients/app", "rotation_period=60s"]);
    server.wait_for(
        "an automatic secret rotation",
        Duration::from_secs(150),
        || {
            let read = server.json(&["read", "qlik/oauth/clients/app"]);
            read["data"]["client_secret_hint"] != newest.as_str()
        },
    );
    let read = server.json(&["read", "qlik/oauth/clients/app"]);
    let automatic = read["data"]["client_secret_hint"]
        .as_str()
        .expect("hint")
        .to_string();
    server.wait_for(
        "one secret left at the fake",
        Duration::from_secs(20),
        || hints_at_fake(&setup) == vec![automatic.clone()],
    );
    let token = server.json(&["read", "qlik/oauth/token/own"]);
    let bearer = token["data"]["access_token"].as_str().expect("token");
    assert_eq!(status_at_fake(&setup, bearer).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_may_hold_oauth_clients_only() {
    let Some(setup) = support::mounted_server(no_rate_limits()).await else {
        return;
    };
    let server = &setup.server;
    let fake = &setup.fake;
    let ca = server.dir.path().join("fake-ca.pem");
    std::fs::write(&ca, &fake.ca_pem).expect("ca file");
    let tenant = format!("tenant_url={}", fake.url.as_str().trim_end_matches('/'));
    let ca_arg = format!("ca_cert=@{}", ca.display());
    let written = server.cli(&["write", "qlik/config", &tenant, &ca_arg]);
    assert!(written.status.success(), "{written:?}");
    assert!(
        String::from_utf8_lossy(&written.stderr).contains("OAuth clients only")
            || String::from_utf8_lossy(&written.stdout).contains("OAuth clients only"),
        "the write says what the mount is: {written:?}"
    );
    // Its read shows no key: the key's fields are null, not placeholders.
    let read = server.json(&["read", "qlik/config"]);
    for field in [
        "key_id",
        "key_expires_at",
        "key_created_at",
        "owner_id",
        "owner_name",
    ] {
        assert!(
            read["data"][field].is_null(),
            "{field} of a mount without a key: {}",
            read["data"][field]
        );
    }
    assert_eq!(
        read["data"]["tenant_url"].as_str(),
        Some(fake.url.as_str().trim_end_matches('/'))
    );
    // The API key's paths say what is missing.
    for args in [
        vec!["write", "-force", "qlik/rotate"],
        vec!["read", "qlik/key"],
    ] {
        let refused = server.fails(&args);
        assert!(
            refused.contains("no API key is configured"),
            "{args:?}: {refused}"
        );
    }
    server.ok(&["write", "qlik/roles/r", "expiry=1h"]);
    let refused = server.fails(&["read", "qlik/creds/r"]);
    assert!(refused.contains("no API key is configured"), "{refused}");
    // OAuth works, manage_with=api_key is refused.
    let id_arg = format!("client_id={}", fake.oauth.client_id);
    let secret_arg = format!("client_secret={}", fake.oauth.client_secret);
    let refused = server.fails(&[
        "write",
        "qlik/oauth/clients/app",
        &id_arg,
        &secret_arg,
        "manage_with=api_key",
    ]);
    assert!(refused.contains("manage_with"), "{refused}");
    server.ok(&["write", "qlik/oauth/clients/app", &id_arg, &secret_arg]);
    server.ok(&["write", "qlik/oauth/roles/own", "client=app"]);
    let token = server.json(&["read", "qlik/oauth/token/own"]);
    let bearer = token["data"]["access_token"].as_str().expect("token");
    assert_eq!(status_at_fake(&setup, bearer).await, 200);
    let rotated = server.json(&["write", "-force", "qlik/oauth/clients/app/rotate"]);
    assert_eq!(rotated["data"]["previous"], "deleted", "{rotated}");
    assert_eq!(hints_at_fake(&setup).len(), 1);
    // Nothing of the API key's chain runs: no key was minted or called for.
    assert!(
        fake.fake()
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/api/v1/api-keys")),
        "no API key call on a mount without one: {:?}",
        fake.fake()
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
}

/// A non-shared role under a burst larger than the tier-2 budget: the engine paces its token
/// calls, so every reader gets a token and Qlik answers no call with 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_token_reads_is_paced_with_no_429() {
    use vault_plugin_secrets_qlik::fake::{FakeOptions, FakeTenant, SettingsPatch};
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    // Qlik's tier 2 scaled down: 10 calls per 10 s per user; the mount's budget the same.
    fake.update_settings(SettingsPatch {
        rate_limits_enabled: Some(true),
        tier2_per_window: Some(10),
        rate_window_seconds: Some(10),
        ..Default::default()
    })
    .expect("settings");
    let Some(server) = support::DevServer::start() else {
        return;
    };
    server.ok(&[
        "secrets",
        "enable",
        "-path=qlik",
        "-options=qlik_tier2_limit=10",
        "-options=qlik_tier2_window_seconds=10",
        support::PLUGIN,
    ]);
    let setup = Setup { server, fake };
    let (server, fake) = (&setup.server, &setup.fake);
    server.write_config(fake, &[]);
    let id_arg = format!("client_id={}", fake.oauth.client_id);
    let secret_arg = format!("client_secret={}", fake.oauth.client_secret);
    server.ok(&["write", "qlik/oauth/clients/app", &id_arg, &secret_arg]);
    server.ok(&["write", "qlik/oauth/roles/own", "client=app"]);
    let before = token_calls(&setup);
    let http = reqwest::Client::new();
    let mut reads = tokio::task::JoinSet::new();
    let burst = 25;
    for _ in 0..burst {
        let request = http
            .get(format!("{}/v1/qlik/oauth/token/own", server.addr))
            .header("X-Vault-Token", "root");
        reads.spawn(async move {
            let answer = request.send().await.expect("read");
            (
                answer.status().as_u16(),
                answer.text().await.unwrap_or_default(),
            )
        });
    }
    let started = std::time::Instant::now();
    for (status, body) in reads.join_all().await {
        assert_eq!(status, 200, "a reader saw {status}: {body}");
    }
    let took = started.elapsed();
    assert_eq!(
        token_calls(&setup) - before,
        burst,
        "one token call per reader"
    );
    let refused: Vec<_> = fake
        .fake()
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth/token" && r.status == 429)
        .map(|r| r.path.clone())
        .collect();
    assert!(refused.is_empty(), "Qlik answered 429: {refused:?}");
    // 25 calls at 10 per 10 s cannot all go at once: the pacer made them wait.
    assert!(took >= Duration::from_secs(10), "the burst took {took:?}");
    eprintln!("{burst} non-shared token reads over a budget of 10 per 10 s: {took:?}");
}
