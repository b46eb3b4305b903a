//! The Qlik client's OAuth M2M calls (src/qlik/oauth.rs) against the in-process fake tenant,
//! over HTTPS: tokens by client credentials and impersonation, revocation, client secrets,
//! error kinds in both of the fake's `/oauth/*` error shapes, retries and pacing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Raw, qlik_client, secret, start_fake, start_fake_with};
use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use vault_plugin_secrets_qlik::fake::{
    FaultKind, FaultSpec, GRANT_CLIENT_CREDENTIALS, OAuthErrorStyle, RunningFake, SettingsPatch,
};
use vault_plugin_secrets_qlik::qlik::{
    AccessToken, ClientConfig, DeleteOutcome, ErrorKind, Grant, LifeSource, QlikClient, QlikError,
    Tier2Pacer, TokenRequest, UserLookup,
};

const QUICK: Duration = Duration::from_secs(10);
const STYLES: [OAuthErrorStyle; 2] = [OAuthErrorStyle::Qlik, OAuthErrorStyle::Rfc6749];

/// The seed client's id and secret.
fn seed(fake: &RunningFake) -> (String, SecretString) {
    (
        fake.oauth.client_id.clone(),
        secret(&fake.oauth.client_secret),
    )
}

async fn token(
    client: &QlikClient,
    client_id: &str,
    client_secret: &SecretString,
    scopes: &[String],
    grant: Grant<'_>,
) -> Result<AccessToken, QlikError> {
    client
        .oauth_token(&TokenRequest {
            client_id,
            client_secret,
            scopes,
            grant,
        })
        .await
}

/// A client-credentials token of the seed client, all its scopes.
async fn seed_token(client: &QlikClient, fake: &RunningFake) -> AccessToken {
    let (id, secret) = seed(fake);
    token(client, &id, &secret, &[], Grant::ClientCredentials)
        .await
        .unwrap()
}

fn style(fake: &RunningFake, style: OAuthErrorStyle) {
    fake.update_settings(SettingsPatch {
        oauth_error_style: Some(style),
        ..Default::default()
    })
    .unwrap();
}

fn bot_of(fake: &RunningFake, client_id: &str) -> String {
    fake.oauth_clients()
        .into_iter()
        .find(|c| c.client_id == client_id)
        .and_then(|c| c.bot_user_id)
        .expect("the client has a bot once it got a token")
}

/// Asserts `at` is within two seconds of `expected`.
fn near(at: Timestamp, expected: Timestamp) {
    let off = at.duration_since(expected).abs();
    assert!(off <= SignedDuration::from_secs(2), "{at} vs {expected}");
}

fn oauth_post_fault(path: &str) -> FaultSpec {
    FaultSpec {
        method: Some("POST".into()),
        path_prefix: Some(path.into()),
        ..Default::default()
    }
}

fn statuses(fake: &RunningFake, path: &str) -> Vec<u16> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| r.status)
        .collect()
}

#[tokio::test]
async fn a_client_credentials_token_acts_as_the_clients_bot_for_its_life() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    // The tenant's clock is a day ahead of ours: the token's life is by the tenant's clock.
    fake.advance_clock(86_400);
    let token = seed_token(&client, &fake).await;
    assert_eq!(token.token_type, "bearer");
    assert_eq!(token.scope.as_deref(), Some("user_default admin_classic"));
    assert_eq!(
        token.scopes().collect::<Vec<_>>(),
        ["user_default", "admin_classic"]
    );
    assert_eq!(token.expires_in, Some(21_600));
    assert_eq!(token.life_source, LifeSource::ExpiresIn);
    near(token.answered_at, fake.now());
    near(
        token.valid_until,
        fake.now() + SignedDuration::from_secs(21_600),
    );
    assert_eq!(
        token.valid_until.duration_since(token.answered_at),
        SignedDuration::from_secs(21_600),
        "anchored at the answer"
    );
    let skew = client.clock_skew().unwrap();
    assert!(
        (skew - SignedDuration::from_secs(86_400)).abs() <= SignedDuration::from_secs(2),
        "{skew:?}"
    );

    // A real bearer at the fake: it acts as the client's bot.
    let me = client.me(&token.access_token).await.unwrap();
    assert_eq!(me.id, bot_of(&fake, &fake.oauth.client_id));
    assert_eq!(me.tenant_id, fake.tenant_id);
    // No Authorization header at /oauth/token: the fake saw no bearer token there.
    let call = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/oauth/token")
        .unwrap();
    assert_eq!(
        (call.status, call.client_id.as_deref(), call.key_id),
        (200, Some(fake.oauth.client_id.as_str()), None)
    );

    // It dies when Qlik says.
    fake.advance_clock(21_601);
    let error = client.me(&token.access_token).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized, "{error}");
}

#[tokio::test]
async fn the_life_falls_back_to_expires_at_then_to_six_hours() {
    let fake = start_fake_with(SettingsPatch {
        oauth_token_life: Some("PT1H".into()),
        ..Default::default()
    })
    .await;
    let client = qlik_client(&fake, QUICK, 2);
    let token = seed_token(&client, &fake).await;
    assert_eq!(
        (token.expires_in, token.life_source),
        (Some(3600), LifeSource::ExpiresIn)
    );
    near(
        token.valid_until,
        fake.now() + SignedDuration::from_secs(3600),
    );

    fake.update_settings(SettingsPatch {
        oauth_omit_expires_in: Some(true),
        ..Default::default()
    })
    .unwrap();
    let token = seed_token(&client, &fake).await;
    assert_eq!(
        (token.expires_in, token.life_source),
        (None, LifeSource::ExpiresAt)
    );
    assert_eq!(Some(token.valid_until), token.expires_at);
    near(
        token.valid_until,
        fake.now() + SignedDuration::from_secs(3600),
    );

    fake.update_settings(SettingsPatch {
        oauth_omit_expires_at: Some(true),
        ..Default::default()
    })
    .unwrap();
    let token = seed_token(&client, &fake).await;
    assert_eq!(
        (token.expires_in, token.expires_at, token.life_source),
        (None, None, LifeSource::Documented6h)
    );
    assert_eq!(
        token.valid_until.duration_since(token.answered_at),
        SignedDuration::from_hours(6)
    );
}

#[tokio::test]
async fn scopes_are_asked_for_and_checked_against_the_allow_list() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let (id, secret) = seed(&fake);
    let narrow = token(
        &client,
        &id,
        &secret,
        &["user_default".into()],
        Grant::ClientCredentials,
    )
    .await
    .unwrap();
    assert_eq!(narrow.scope.as_deref(), Some("user_default"));
    let both = token(
        &client,
        &id,
        &secret,
        &["admin_classic".into(), "user_default".into()],
        Grant::ClientCredentials,
    )
    .await
    .unwrap();
    assert_eq!(both.scope.as_deref(), Some("admin_classic user_default"));
    let granted: Vec<Vec<String>> = fake
        .oauth_tokens(&id, false)
        .into_iter()
        .map(|t| t.scopes)
        .collect();
    assert_eq!(
        granted,
        [
            vec!["user_default".to_string()],
            vec!["admin_classic".into(), "user_default".into()]
        ]
    );

    for style_now in STYLES {
        style(&fake, style_now);
        let error = token(
            &client,
            &id,
            &secret,
            &["user_default".into(), "admin.apps".into()],
            Grant::ClientCredentials,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                error,
                QlikError::InvalidScope {
                    status: Some(400),
                    ..
                }
            ),
            "{style_now:?}: {error}"
        );
        assert_eq!(error.http_status(), 400);
        assert!(error.to_string().contains("admin.apps"), "{error}");
    }
    assert_eq!(
        fake.count_requests("POST", "/oauth/token"),
        4,
        "refusals are not retried"
    );

    // A scope with a space is refused before anything is sent.
    let error = token(
        &client,
        &id,
        &secret,
        &["user_default admin_classic".into()],
        Grant::ClientCredentials,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, QlikError::InvalidScope { status: None, .. }),
        "{error}"
    );
    assert_eq!(fake.count_requests("POST", "/oauth/token"), 4);
}

#[tokio::test]
async fn impersonation_by_user_id_and_by_subject() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let (id, secret) = seed(&fake);
    let as_service = token(
        &client,
        &id,
        &secret,
        &[],
        Grant::Impersonation(UserLookup::UserId(&fake.service.user_id)),
    )
    .await
    .unwrap();
    assert_eq!(
        client.me(&as_service.access_token).await.unwrap().id,
        fake.service.user_id
    );

    let raw = Raw::new(&fake, true);
    let admin = raw
        .get(
            &format!("/api/v1/users/{}", fake.admin.user_id),
            &fake.admin.api_key,
        )
        .await
        .json();
    let subject = admin["subject"].as_str().unwrap();
    let as_admin = token(
        &client,
        &id,
        &secret,
        &["user_default".into()],
        Grant::Impersonation(UserLookup::Subject(subject)),
    )
    .await
    .unwrap();
    assert_eq!(
        client.me(&as_admin.access_token).await.unwrap().id,
        fake.admin.user_id
    );
    assert_eq!(as_admin.scope.as_deref(), Some("user_default"));

    for style_now in STYLES {
        style(&fake, style_now);
        for lookup in [
            UserLookup::UserId("000000000000000000000000"),
            UserLookup::Subject("auth0|nobody"),
        ] {
            let error = token(&client, &id, &secret, &[], Grant::Impersonation(lookup))
                .await
                .unwrap_err();
            assert!(
                matches!(error, QlikError::UnknownUser { status: 400, .. }),
                "{style_now:?} {lookup:?}: {error}"
            );
            assert_eq!(error.http_status(), 400);
        }
    }
}

#[tokio::test]
async fn a_grant_the_client_is_not_allowed_is_grant_not_allowed() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let cc_only = fake
        .fake()
        .create_oauth_client(
            "cc-only",
            &[GRANT_CLIENT_CREDENTIALS.into()],
            &["user_default".into()],
        )
        .unwrap();
    let secret = secret(&cc_only.client_secret);
    token(
        &client,
        &cc_only.client_id,
        &secret,
        &[],
        Grant::ClientCredentials,
    )
    .await
    .unwrap();
    for style_now in STYLES {
        style(&fake, style_now);
        let error = token(
            &client,
            &cc_only.client_id,
            &secret,
            &[],
            Grant::Impersonation(UserLookup::UserId(&fake.service.user_id)),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, QlikError::GrantNotAllowed { status: 400, .. }),
            "{style_now:?}: {error}"
        );
    }
}

#[tokio::test]
async fn a_wrong_secret_or_client_is_invalid_client_in_both_shapes() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let (id, good) = seed(&fake);
    let wrong = secret("wrong-secret-0123456789");
    for style_now in STYLES {
        style(&fake, style_now);
        for (client_id, client_secret) in [
            (id.as_str(), &wrong),
            ("00000000000000000000000000000000", &good),
        ] {
            let error = token(
                &client,
                client_id,
                client_secret,
                &[],
                Grant::ClientCredentials,
            )
            .await
            .unwrap_err();
            assert!(
                matches!(error, QlikError::InvalidClient { status: 401, .. }),
                "{style_now:?}: {error}"
            );
            assert_eq!(
                (error.kind(), error.http_status()),
                (ErrorKind::InvalidClient, 400)
            );
            assert!(!error.is_transient());
            let text = format!("{error} {error:?}");
            assert!(
                !text.contains(wrong.expose_secret()) && !text.contains(good.expose_secret()),
                "{text}"
            );
        }
    }
    assert_eq!(
        fake.count_requests("POST", "/oauth/token"),
        4,
        "401 is not retried"
    );
    assert!(fake.oauth_tokens(&id, true).is_empty());
}

#[tokio::test]
async fn a_400_invalid_client_body_is_invalid_client_too() {
    // RFC 6749 allows 400 for invalid_client; the fake answers 401, so a fault plays it.
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let (id, secret) = seed(&fake);
    for body in [
        json!({"error": "invalid_client", "error_description": "bad client"}),
        json!({"errors": [{"code": "OAUTH-1", "title": "Invalid client", "status": "400"}]}),
    ] {
        fake.inject_fault(FaultSpec {
            status: Some(400),
            body: Some(body.clone()),
            ..oauth_post_fault("/oauth/token")
        });
        let error = token(&client, &id, &secret, &[], Grant::ClientCredentials)
            .await
            .unwrap_err();
        assert!(
            matches!(error, QlikError::InvalidClient { status: 400, .. }),
            "{body}: {error}"
        );
    }
}

#[tokio::test]
async fn the_403_token_maximum_is_token_limit_in_both_shapes() {
    let fake = start_fake_with(SettingsPatch {
        oauth_max_tokens_per_user: Some(1),
        ..Default::default()
    })
    .await;
    let client = qlik_client(&fake, QUICK, 2);
    let (id, secret) = seed(&fake);
    seed_token(&client, &fake).await;
    for style_now in STYLES {
        style(&fake, style_now);
        let error = token(&client, &id, &secret, &[], Grant::ClientCredentials)
            .await
            .unwrap_err();
        assert!(
            matches!(error, QlikError::TokenLimit { .. }),
            "{style_now:?}: {error}"
        );
        assert_eq!(
            (error.kind(), error.http_status()),
            (ErrorKind::TokenLimit, 400)
        );
        assert!(
            error.to_string().contains("maximum number of tokens"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_revoked_token_gets_401_and_revoking_again_is_fine() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let (id, secret) = seed(&fake);
    let token = seed_token(&client, &fake).await;
    let other = seed_token(&client, &fake).await;
    client.me(&token.access_token).await.unwrap();

    client
        .oauth_revoke(&id, &secret, &token.access_token)
        .await
        .unwrap();
    let error = client.me(&token.access_token).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized, "{error}");
    client.me(&other.access_token).await.unwrap();
    let tokens = fake.oauth_tokens(&id, true);
    assert_eq!(
        tokens.iter().filter(|t| t.status == "revoked").count(),
        1,
        "{tokens:?}"
    );

    // Again, and a token the tenant never issued: success (RFC 7009).
    client
        .oauth_revoke(&id, &secret, &token.access_token)
        .await
        .unwrap();
    client
        .oauth_revoke(&id, &secret, &SecretString::from("never-issued"))
        .await
        .unwrap();

    // A wrong secret: InvalidClient, in both shapes, and the token lives on.
    let wrong = SecretString::from("wrong-secret-at-revoke");
    for style_now in STYLES {
        style(&fake, style_now);
        let error = client
            .oauth_revoke(&id, &wrong, &other.access_token)
            .await
            .unwrap_err();
        assert!(
            matches!(error, QlikError::InvalidClient { status: 401, .. }),
            "{style_now:?}: {error}"
        );
        let text = format!("{error} {error:?}");
        assert!(!text.contains("wrong-secret-at-revoke"), "{text}");
        assert!(!text.contains(other.access_token.expose_secret()), "{text}");
    }
    client.me(&other.access_token).await.unwrap();

    // A server that refuses an invalid token instead of answering 200 means the same.
    fake.inject_fault(FaultSpec {
        status: Some(400),
        body: Some(json!({"error": "invalid_token"})),
        ..oauth_post_fault("/oauth/revoke")
    });
    client
        .oauth_revoke(&id, &secret, &token.access_token)
        .await
        .unwrap();
}

/// Creates secrets up to the maximum, refuses the 6th, deletes by hint, with `bearer`.
async fn manage_secrets(fake: &RunningFake, client: &QlikClient, bearer: &SecretString) {
    let id = fake.oauth.client_id.clone();
    let info = client.oauth_client(bearer, &id).await.unwrap();
    assert_eq!(info.client_id, id);
    assert_eq!(info.client_name, "fake-qlik-m2m");
    assert_eq!(info.app_type, "web");
    assert_eq!(info.allowed_scopes, ["user_default", "admin_classic"]);
    assert_eq!(
        info.allowed_grant_types,
        [
            GRANT_CLIENT_CREDENTIALS,
            "urn:qlik:oauth:user-impersonation"
        ]
    );
    assert_eq!(info.client_secrets.len(), 1);
    assert!(info.has_secret(&fake.oauth.hint));

    let created = client.create_client_secret(bearer, &id).await.unwrap();
    assert_eq!(created.client_id, id);
    assert!(!created.hint.is_empty());
    assert!(created.created_at.is_some());
    let info = client.oauth_client(bearer, &id).await.unwrap();
    assert!(info.has_secret(&created.hint), "{info:?}");
    assert!(!format!("{info:?}").contains(created.client_secret.expose_secret()));
    // The new secret gets tokens.
    let fresh = token(
        client,
        &id,
        &created.client_secret,
        &[],
        Grant::ClientCredentials,
    )
    .await
    .unwrap();
    client.me(&fresh.access_token).await.unwrap();

    let mut hints = vec![created.hint.clone()];
    for _ in 0..3 {
        hints.push(client.create_client_secret(bearer, &id).await.unwrap().hint);
    }
    assert_eq!(
        client
            .oauth_client(bearer, &id)
            .await
            .unwrap()
            .client_secrets
            .len(),
        5
    );
    let error = client.create_client_secret(bearer, &id).await.unwrap_err();
    assert!(
        matches!(error, QlikError::SecretLimit { status: 409, .. }),
        "{error}"
    );
    assert_eq!(
        (error.kind(), error.http_status()),
        (ErrorKind::SecretLimit, 400)
    );

    for hint in &hints {
        assert_eq!(
            client
                .delete_client_secret(bearer, &id, hint)
                .await
                .unwrap(),
            DeleteOutcome::Deleted
        );
    }
    assert_eq!(
        client
            .delete_client_secret(bearer, &id, &hints[0])
            .await
            .unwrap(),
        DeleteOutcome::AlreadyGone
    );
    let info = client.oauth_client(bearer, &id).await.unwrap();
    assert_eq!(
        info.client_secrets
            .iter()
            .map(|s| s.hint.as_str())
            .collect::<Vec<_>>(),
        [fake.oauth.hint.as_str()]
    );
    // The deleted secret gets no more tokens.
    let error = token(
        client,
        &id,
        &created.client_secret,
        &[],
        Grant::ClientCredentials,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidClient, "{error}");
}

#[tokio::test]
async fn the_clients_own_token_manages_its_secrets() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let own = seed_token(&client, &fake).await;
    manage_secrets(&fake, &client, &own.access_token).await;
    let created = client
        .create_client_secret(&own.access_token, &fake.oauth.client_id)
        .await
        .unwrap();
    let info = client
        .oauth_client(&own.access_token, &fake.oauth.client_id)
        .await
        .unwrap();
    let listed = info
        .client_secrets
        .iter()
        .find(|s| s.hint == created.hint)
        .unwrap();
    assert_eq!(
        listed.created_by.as_deref(),
        Some(bot_of(&fake, &fake.oauth.client_id).as_str())
    );

    // §6.1 switch: only a tenant admin may; the client's own token is denied.
    fake.update_settings(SettingsPatch {
        oauth_secrets_admin_only: Some(true),
        ..Default::default()
    })
    .unwrap();
    let denied = [
        client
            .oauth_client(&own.access_token, &fake.oauth.client_id)
            .await
            .unwrap_err(),
        client
            .create_client_secret(&own.access_token, &fake.oauth.client_id)
            .await
            .unwrap_err(),
        client
            .delete_client_secret(&own.access_token, &fake.oauth.client_id, &created.hint)
            .await
            .unwrap_err(),
    ];
    for error in &denied {
        assert!(
            matches!(error, QlikError::ClientAccessDenied { .. }),
            "{error}"
        );
        assert_eq!(error.kind(), ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("tenant admin"), "{error}");
    }
}

#[tokio::test]
async fn a_tenant_admins_api_key_manages_the_secrets() {
    let fake = start_fake_with(SettingsPatch {
        oauth_secrets_admin_only: Some(true),
        ..Default::default()
    })
    .await;
    let client = qlik_client(&fake, QUICK, 2);
    let admin = secret(&fake.ready_line().admin_api_key);
    manage_secrets(&fake, &client, &admin).await;

    // A user who is no tenant admin may not; an unknown client is NotFound / AlreadyGone.
    let service = secret(&fake.service.api_key);
    let error = client
        .create_client_secret(&service, &fake.oauth.client_id)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    let nobody = "00000000000000000000000000000000";
    let error = client.oauth_client(&admin, nobody).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(error.to_string().contains(nobody), "{error}");
    assert_eq!(
        client
            .delete_client_secret(&admin, nobody, "abcd")
            .await
            .unwrap(),
        DeleteOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn transient_failures_of_the_token_call_are_retried() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 3);
    let id = fake.oauth.client_id.clone();

    // 429 with retry-after: waited, then the token.
    fake.inject_fault(FaultSpec {
        status: Some(429),
        retry_after: Some(1),
        ..oauth_post_fault("/oauth/token")
    });
    let started = Instant::now();
    let token = seed_token(&client, &fake).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(statuses(&fake, "/oauth/token"), [429, 200]);
    client.me(&token.access_token).await.unwrap();

    // 503 twice: retried (a duplicate token is harmless).
    fake.inject_fault(FaultSpec {
        status: Some(503),
        count: Some(2),
        ..oauth_post_fault("/oauth/token")
    });
    seed_token(&client, &fake).await;
    assert_eq!(statuses(&fake, "/oauth/token"), [429, 200, 503, 503, 200]);

    // A dropped connection after Qlik issued a token: retried; the orphan just expires.
    fake.inject_fault(FaultSpec {
        kind: Some(FaultKind::DropConnection),
        ..oauth_post_fault("/oauth/token")
    });
    seed_token(&client, &fake).await;
    assert_eq!(
        statuses(&fake, "/oauth/token"),
        [429, 200, 503, 503, 200, 0, 200]
    );
    assert_eq!(fake.oauth_tokens(&id, false).len(), 4);

    // A revoke is retried too.
    fake.inject_fault(FaultSpec {
        status: Some(502),
        ..oauth_post_fault("/oauth/revoke")
    });
    let (id, secret) = seed(&fake);
    client
        .oauth_revoke(&id, &secret, &token.access_token)
        .await
        .unwrap();
    assert_eq!(statuses(&fake, "/oauth/revoke"), [502, 200]);
    assert_eq!(
        client.me(&token.access_token).await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );

    // Still limited after the retries: RateLimited, transient.
    fake.inject_fault(FaultSpec {
        status: Some(429),
        retry_after: Some(60),
        ..oauth_post_fault("/oauth/token")
    });
    let (id, secret) = seed(&fake);
    let error = token_error(&client, &id, &secret).await;
    assert!(
        matches!(error, QlikError::RateLimited { attempts: 1, .. }),
        "{error}"
    );
    assert!(error.is_transient());
}

async fn token_error(client: &QlikClient, id: &str, secret: &SecretString) -> QlikError {
    token(client, id, secret, &[], Grant::ClientCredentials)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_secret_create_is_never_sent_twice_once_it_may_have_reached_qlik() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 3);
    let admin = secret(&fake.admin.api_key);
    let id = fake.oauth.client_id.clone();
    let path = format!("/api/v1/oauth-clients/{id}/client-secrets");

    fake.inject_fault(FaultSpec {
        status: Some(500),
        ..oauth_post_fault(&path)
    });
    let error = client.create_client_secret(&admin, &id).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutcomeUnknown, "{error}");
    assert_eq!(statuses(&fake, &path), [500]);

    // Dropped after Qlik created it: unknown, not repeated, and the stranger is found by
    // comparing hints, then deleted.
    let before = client.oauth_client(&admin, &id).await.unwrap();
    fake.inject_fault(FaultSpec {
        kind: Some(FaultKind::DropConnection),
        ..oauth_post_fault(&path)
    });
    let error = client.create_client_secret(&admin, &id).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutcomeUnknown, "{error}");
    assert_eq!(statuses(&fake, &path), [500, 0]);
    let after = client.oauth_client(&admin, &id).await.unwrap();
    let strangers: Vec<&str> = after
        .client_secrets
        .iter()
        .filter(|s| !before.has_secret(&s.hint))
        .map(|s| s.hint.as_str())
        .collect();
    assert_eq!(strangers.len(), 1, "{after:?}");
    assert_eq!(
        client
            .delete_client_secret(&admin, &id, strangers[0])
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );

    // An unreadable 201 is unknown too; a 429 is retried (nothing was created).
    fake.inject_fault(FaultSpec {
        kind: Some(FaultKind::MalformedJson),
        ..oauth_post_fault(&path)
    });
    let error = client.create_client_secret(&admin, &id).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutcomeUnknown, "{error}");
    fake.inject_fault(FaultSpec {
        status: Some(429),
        retry_after: Some(1),
        ..oauth_post_fault(&path)
    });
    client.create_client_secret(&admin, &id).await.unwrap();
    assert_eq!(statuses(&fake, &path), [500, 0, 201, 429, 201]);
}

#[tokio::test]
async fn no_error_or_debug_output_contains_a_secret_or_token() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 1);
    let (id, secret) = seed(&fake);
    let token = seed_token(&client, &fake).await;
    let value = token.access_token.expose_secret().to_string();
    let admin = SecretString::from(fake.admin.api_key.clone());
    let created = client.create_client_secret(&admin, &id).await.unwrap();
    let new_secret = created.client_secret.expose_secret().to_string();

    // A tenant that echoes what it was sent in its error (and in a 5xx) is blanked out:
    // the client secret at /oauth/token, the secret and the token at /oauth/revoke.
    let echo = |said: String| json!({"errors": [{"code": "X", "title": "echo", "detail": said}]});
    fake.inject_fault(FaultSpec {
        status: Some(400),
        body: Some(echo(fake.oauth.client_secret.clone())),
        ..oauth_post_fault("/oauth/token")
    });
    let echoed = token_error(&client, &id, &secret).await;
    assert!(echoed.to_string().contains("[REDACTED]"), "{echoed}");
    fake.inject_fault(FaultSpec {
        status: Some(500),
        count: Some(2),
        body: Some(echo(format!("{} {value}", fake.oauth.client_secret))),
        ..oauth_post_fault("/oauth/revoke")
    });
    let echoed_5xx = client
        .oauth_revoke(&id, &secret, &token.access_token)
        .await
        .unwrap_err();
    assert_eq!(echoed_5xx.kind(), ErrorKind::Unavailable, "{echoed_5xx}");
    assert!(
        echoed_5xx.to_string().contains("[REDACTED]"),
        "{echoed_5xx}"
    );

    let errors = [
        echoed,
        echoed_5xx,
        token_error(&client, &id, &SecretString::from("wrong")).await,
        client
            .oauth_revoke(&id, &SecretString::from("wrong"), &token.access_token)
            .await
            .unwrap_err(),
    ];
    let mut outputs = vec![
        format!("{token:?}"),
        format!("{created:?}"),
        format!("{client:?}"),
    ];
    for error in &errors {
        outputs.push(error.to_string());
        outputs.push(format!("{error:?}"));
    }
    for output in outputs {
        for leaked in [&fake.oauth.client_secret, &value, &new_secret] {
            assert!(!output.contains(leaked.as_str()), "leak: {output}");
        }
    }
}

#[tokio::test]
async fn token_and_secret_calls_go_through_the_tier_2_pacer() {
    let fake = start_fake().await;
    // Burst 1, then a slot a second.
    let pacer = Arc::new(Tier2Pacer::new(10, Duration::from_secs(9)));
    let client = QlikClient::new_paced(
        ClientConfig {
            tenant_url: fake.url.clone(),
            ca_cert_pem: Some(fake.ca_pem.clone()),
            request_timeout: QUICK,
            max_retries: 2,
        },
        pacer,
    )
    .unwrap();
    let (id, secret) = seed(&fake);
    // The first token takes the burst; the second waits for the next slot (no 429).
    let token = seed_token(&client, &fake).await;
    let started = Instant::now();
    seed_token(&client, &fake).await;
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(statuses(&fake, "/oauth/token"), [200, 200]);
    // A revoke waits for a slot too, or gives up at once when told not to wait that long.
    let error = client
        .oauth_revoke_within(
            &id,
            &secret,
            &token.access_token,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, QlikError::RateLimited { attempts: 0, retry_after: Some(wait), .. } if wait > Duration::from_millis(100)),
        "{error}"
    );
    assert_eq!(
        fake.count_requests("POST", "/oauth/revoke"),
        0,
        "nothing sent"
    );
    // Reads are not paced: at once, though no slot is free.
    let started = Instant::now();
    client.oauth_client(&token.access_token, &id).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // A secret deletion waits for its slot.
    let started = Instant::now();
    assert_eq!(
        client
            .delete_client_secret(&token.access_token, &id, &fake.oauth.hint)
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}
