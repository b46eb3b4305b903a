//! The engine's Qlik client against the in-process fake tenant, over HTTPS.

mod common;

use std::time::{Duration, Instant};

use common::{qlik_client, secret, start_fake, start_fake_with};
use secrecy::ExposeSecret;
use vault_plugin_secrets_qlik::fake::{FaultKind, FaultSpec, SettingsPatch};
use vault_plugin_secrets_qlik::qlik::{
    ClientConfig, CreateKeyRequest, DeleteOutcome, ErrorKind, KeyStatus, ListFilter, QlikClient,
    QlikError, token_claims,
};

const QUICK: Duration = Duration::from_secs(10);

fn create(description: &str, expiry: Option<&str>) -> CreateKeyRequest {
    CreateKeyRequest {
        description: description.into(),
        expiry: expiry.map(str::to_string),
    }
}

fn post_fault(kind: Option<FaultKind>) -> FaultSpec {
    FaultSpec {
        method: Some("POST".into()),
        path_prefix: Some("/api/v1/api-keys".into()),
        kind,
        ..Default::default()
    }
}

#[tokio::test]
async fn me_follows_the_redirect_and_keeps_the_bearer() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let me = client.me(&secret(&fake.service.api_key)).await.unwrap();
    assert_eq!(
        (me.id.as_str(), me.tenant_id.as_str(), me.name.as_str()),
        (
            fake.service.user_id.as_str(),
            fake.tenant_id.as_str(),
            "qlik-service-user"
        )
    );
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].path.as_str(), log[0].status),
        ("/api/v1/users/me", 301)
    );
    assert_eq!(
        (log[1].path.clone(), log[1].status),
        (format!("/api/v1/users/{}", fake.service.user_id), 200)
    );
}

#[tokio::test]
async fn create_get_list_update_delete_round_trip() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let root = secret(&fake.service.api_key);
    let created = client
        .create_key(&root, &create("round trip", Some("PT1H")))
        .await
        .unwrap();
    assert_eq!(created.key.status, KeyStatus::Active);
    assert_eq!(
        created
            .key
            .expiry
            .duration_since(created.key.created.unwrap())
            .as_secs(),
        3600
    );
    let claims = token_claims(&created.token).unwrap();
    assert_eq!(
        (
            claims.key_id.as_str(),
            claims.sub.as_str(),
            claims.tenant_id.as_str()
        ),
        (
            created.key.id.as_str(),
            fake.service.user_id.as_str(),
            fake.tenant_id.as_str()
        )
    );

    // The new key works as a bearer, and reads its own record.
    let fresh = created.token;
    let record = client.get_key(&fresh, &created.key.id).await.unwrap();
    assert_eq!(record, created.key);
    client
        .update_description(&fresh, &record.id, "renamed")
        .await
        .unwrap();
    assert_eq!(
        client.get_key(&root, &record.id).await.unwrap().description,
        "renamed"
    );

    let filter = ListFilter {
        sub: Some(fake.service.user_id.clone()),
        status: Some(KeyStatus::Active),
        created_by_user: None,
    };
    let listed = client.list_keys(&root, &filter).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|k| k.id == record.id));

    // The new key deletes the old one (root rotation), then itself twice.
    assert_eq!(
        client
            .delete_key(&fresh, &fake.service.key_id)
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        client
            .delete_key(&fresh, &fake.service.key_id)
            .await
            .unwrap(),
        DeleteOutcome::AlreadyGone
    );
    let gone = client
        .get_key(&fresh, &fake.service.key_id)
        .await
        .unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");
    assert!(gone.to_string().contains(&fake.service.key_id));
}

#[tokio::test]
async fn list_follows_every_page() {
    let fake = start_fake_with(SettingsPatch {
        rate_limits_enabled: Some(false),
        max_keys_per_user: Some(1000),
        ..Default::default()
    })
    .await;
    let client = qlik_client(&fake, Duration::from_secs(30), 2);
    let root = secret(&fake.service.api_key);
    for i in 0..120 {
        client
            .create_key(&root, &create(&format!("k{i}"), Some("PT1H")))
            .await
            .unwrap();
    }
    let keys = client
        .list_keys(&root, &ListFilter::default())
        .await
        .unwrap();
    assert_eq!(keys.len(), 121);
    let mut ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 121, "no key twice");
    assert_eq!(
        fake.count_requests("GET", "/api/v1/api-keys"),
        2,
        "100 + 21"
    );
    let none = client
        .list_keys(
            &root,
            &ListFilter {
                status: Some(KeyStatus::Revoked),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn unauthorized_when_the_key_expired_was_revoked_or_deleted() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let root = secret(&fake.service.api_key);
    let admin = secret(&fake.admin.api_key);

    let expiring = client
        .create_key(&root, &create("expiring", Some("PT1H")))
        .await
        .unwrap();
    let revoked = client
        .create_key(&root, &create("revoked", Some("PT2H")))
        .await
        .unwrap();
    let deleted = client
        .create_key(&root, &create("deleted", Some("PT2H")))
        .await
        .unwrap();

    fake.advance_clock(3601);
    let error = client.me(&expiring.token).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized, "{error}");
    assert_eq!(
        client
            .get_key(&root, &expiring.key.id)
            .await
            .unwrap()
            .status,
        KeyStatus::Expired
    );

    assert_eq!(
        client.delete_key(&admin, &revoked.key.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        client.me(&revoked.token).await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        client.get_key(&root, &revoked.key.id).await.unwrap().status,
        KeyStatus::Revoked
    );

    assert_eq!(
        client.delete_key(&root, &deleted.key.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    let error = client
        .create_key(&deleted.token, &create("x", None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized);
    assert!(
        error
            .to_string()
            .contains("expired, was revoked or deleted"),
        "{error}"
    );
    assert_eq!(error.http_status(), 400);
    assert_eq!(
        fake.count_requests("POST", "/api/v1/api-keys"),
        4,
        "401 is not retried"
    );
}

#[tokio::test]
async fn permission_denied_without_manage_api_keys() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let viewer = fake.create_user("viewer", false, false).unwrap();
    let error = client
        .create_key(&secret(&viewer.api_key), &create("x", None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(error.to_string().contains("Manage API keys"));
    let error = client
        .tenant_config(&secret(&viewer.api_key), "wrong-tenant")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn key_limit_is_recognised_whatever_the_status() {
    let fake = start_fake_with(SettingsPatch {
        max_keys_per_user: Some(1),
        ..Default::default()
    })
    .await;
    let client = qlik_client(&fake, QUICK, 2);
    let root = secret(&fake.service.api_key);
    let error = client
        .create_key(&root, &create("x", None))
        .await
        .unwrap_err();
    assert!(
        matches!(error, QlikError::KeyLimit { status: 400, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("max_keys_per_user"));
    fake.update_settings(SettingsPatch {
        key_limit_status: Some(403),
        ..Default::default()
    })
    .unwrap();
    let error = client
        .create_key(&root, &create("x", None))
        .await
        .unwrap_err();
    assert!(
        matches!(error, QlikError::KeyLimit { status: 403, .. }),
        "{error}"
    );
    fake.update_settings(SettingsPatch {
        key_limit_status: Some(409),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        client
            .create_key(&root, &create("x", None))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::KeyLimit
    );
}

#[tokio::test]
async fn expiry_above_maximum_and_invalid_expiry() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let root = secret(&fake.service.api_key);
    let error = client
        .create_key(&root, &create("x", Some("P2D")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ExpiryAboveMaximum, "{error}");
    let error = client
        .create_key(&root, &create("x", Some("P1X")))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, QlikError::BadRequest { status: 400, detail, .. } if detail.contains("ISO 8601")),
        "{error}"
    );
    let config = client.tenant_config(&root, &fake.tenant_id).await.unwrap();
    assert_eq!(
        (config.max_keys_per_user, config.max_api_key_expiry.as_str()),
        (5, "PT24H")
    );
}

#[tokio::test]
async fn rate_limit_waits_retry_after_then_succeeds() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let root = secret(&fake.service.api_key);
    fake.inject_fault(FaultSpec {
        method: Some("GET".into()),
        status: Some(429),
        retry_after: Some(1),
        ..Default::default()
    });
    let started = Instant::now();
    client.get_key(&root, &fake.service.key_id).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited retry-after: {:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
}

#[tokio::test]
async fn a_create_refused_by_the_real_rate_limiter_is_retried_after_retry_after() {
    let fake = start_fake_with(SettingsPatch {
        tier2_per_window: Some(1),
        rate_window_seconds: Some(1),
        ..Default::default()
    })
    .await;
    let client = qlik_client(&fake, QUICK, 3);
    let root = secret(&fake.service.api_key);
    client
        .create_key(&root, &create("first", Some("PT1H")))
        .await
        .unwrap();
    client
        .create_key(&root, &create("second", Some("PT1H")))
        .await
        .unwrap();
    let posts: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [201, 429, 201]);
    assert_eq!(fake.keys().len(), 4, "two seeds + exactly two new keys");
}

#[tokio::test]
async fn rate_limit_longer_than_the_budget_gives_up_at_once() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, Duration::from_secs(3), 4);
    fake.inject_fault(FaultSpec {
        status: Some(429),
        retry_after: Some(10),
        ..Default::default()
    });
    let started = Instant::now();
    let error = client.me(&secret(&fake.service.api_key)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(error, QlikError::RateLimited { retry_after: Some(d), attempts: 1, .. } if d == Duration::from_secs(10)),
        "{error}"
    );
    assert_eq!(error.http_status(), 429);
    assert!(error.to_string().contains("retry in 10 s"), "{error}");
}

#[tokio::test]
async fn server_errors_are_retried_for_reads_but_not_for_creates() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 3);
    let root = secret(&fake.service.api_key);
    fake.inject_fault(FaultSpec {
        method: Some("GET".into()),
        status: Some(503),
        count: Some(2),
        ..Default::default()
    });
    let listed = client
        .list_keys(&root, &ListFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(fake.count_requests("GET", "/api/v1/api-keys"), 3);

    fake.inject_fault(FaultSpec {
        method: Some("GET".into()),
        status: Some(502),
        count: Some(10),
        ..Default::default()
    });
    let error = client
        .get_key(&root, &fake.service.key_id)
        .await
        .unwrap_err();
    assert!(
        matches!(error, QlikError::Unavailable { attempts: 4, .. }),
        "{error}"
    );
    assert_eq!(error.http_status(), 502);
    fake.clear_faults();

    fake.inject_fault(FaultSpec {
        status: Some(500),
        ..post_fault(None)
    });
    let error = client
        .create_key(&root, &create("x", None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutcomeUnknown, "{error}");
    assert_eq!(fake.count_requests("POST", "/api/v1/api-keys"), 1);
}

#[tokio::test]
async fn a_slow_read_times_out_within_the_budget() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, Duration::from_secs(1), 3);
    fake.inject_fault(FaultSpec {
        method: Some("GET".into()),
        delay_before_ms: Some(3000),
        ..Default::default()
    });
    let started = Instant::now();
    let error = client
        .get_key(&secret(&fake.service.api_key), &fake.service.key_id)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1800),
        "{elapsed:?}"
    );
    assert!(
        matches!(&error, QlikError::Unavailable { what, .. } if what == "timed out"),
        "{error}"
    );
}

#[tokio::test]
async fn a_post_that_timed_out_is_never_sent_twice() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, Duration::from_secs(1), 4);
    fake.inject_fault(FaultSpec {
        delay_after_ms: Some(2000),
        ..post_fault(None)
    });
    let error = client
        .create_key(
            &secret(&fake.service.api_key),
            &create("marker-123", Some("PT1H")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, QlikError::OutcomeUnknown { cause, .. } if cause.contains("timed out")),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.count_requests("POST", "/api/v1/api-keys"), 1);
    let minted: Vec<_> = fake
        .keys()
        .into_iter()
        .filter(|k| k.description == "marker-123")
        .collect();
    assert_eq!(minted.len(), 1);
    assert_eq!(
        minted[0].status, "active",
        "Qlik did create it: the engine must find it by its marker"
    );
}

#[tokio::test]
async fn a_dropped_connection_after_a_post_is_outcome_unknown() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 4);
    fake.inject_fault(post_fault(Some(FaultKind::DropConnection)));
    let error = client
        .create_key(&secret(&fake.service.api_key), &create("dropped", None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutcomeUnknown, "{error}");
    assert_eq!(fake.count_requests("POST", "/api/v1/api-keys"), 1);
    assert!(fake.keys().iter().any(|k| k.description == "dropped"));
    // A dropped read is simply retried.
    fake.inject_fault(FaultSpec {
        method: Some("GET".into()),
        kind: Some(FaultKind::DropConnection),
        ..Default::default()
    });
    client
        .get_key(&secret(&fake.service.api_key), &fake.service.key_id)
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_json_is_an_invalid_response_or_an_unknown_outcome() {
    let fake = start_fake().await;
    let client = qlik_client(&fake, QUICK, 2);
    let root = secret(&fake.service.api_key);
    fake.inject_fault(FaultSpec {
        method: Some("GET".into()),
        kind: Some(FaultKind::MalformedJson),
        ..Default::default()
    });
    let error = client
        .get_key(&root, &fake.service.key_id)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidResponse, "{error}");
    fake.inject_fault(post_fault(Some(FaultKind::MalformedJson)));
    let error = client
        .create_key(&root, &create("unreadable", None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutcomeUnknown, "{error}");
    assert!(fake.keys().iter().any(|k| k.description == "unreadable"));
}

#[tokio::test]
async fn connection_refused_is_retried_then_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let client = QlikClient::new(ClientConfig {
        tenant_url: format!("https://127.0.0.1:{port}").parse().unwrap(),
        ca_cert_pem: None,
        request_timeout: QUICK,
        max_retries: 2,
    })
    .unwrap();
    let key = secret("eyJ.refused.key");
    let error = client.me(&key).await.unwrap_err();
    assert!(
        matches!(&error, QlikError::Unavailable { attempts: 3, what, .. } if what == "could not connect"),
        "{error}"
    );
    // Nothing was sent, so even a create may be retried.
    let error = client
        .create_key(&key, &create("x", None))
        .await
        .unwrap_err();
    assert!(
        matches!(error, QlikError::Unavailable { attempts: 3, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_wrong_ca_is_a_clear_tls_error() {
    let fake = start_fake().await;
    let other = start_fake().await;
    for ca in [Some(other.ca_pem.clone()), None] {
        let client = QlikClient::new(ClientConfig {
            tenant_url: fake.url.clone(),
            ca_cert_pem: ca,
            request_timeout: QUICK,
            max_retries: 3,
        })
        .unwrap();
        let started = Instant::now();
        let error = client.me(&secret(&fake.service.api_key)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Tls, "{error}");
        assert!(error.to_string().contains("certificate"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2), "not retried");
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    let fake = start_fake().await;
    let config = |url: &str, ca: Option<&str>| ClientConfig {
        tenant_url: url.parse().unwrap(),
        ca_cert_pem: ca.map(str::to_string),
        request_timeout: QUICK,
        max_retries: 1,
    };
    for (url, ca) in [
        ("http://127.0.0.1:1", None),
        ("https://user:pw@tenant.eu.qlikcloud.com", None),
        ("https://tenant.eu.qlikcloud.com/api", None),
        ("https://tenant.eu.qlikcloud.com/?x=1", None),
        ("https://tenant.eu.qlikcloud.com", Some("not a pem")),
        (
            "https://tenant.eu.qlikcloud.com",
            Some("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
        ),
    ] {
        let error = QlikClient::new(config(url, ca)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{url} {ca:?}: {error}");
    }
    let ok = QlikClient::new(config(
        &format!("{}/", fake.url.as_str().trim_end_matches('/')),
        Some(&fake.ca_pem),
    ))
    .unwrap();
    assert!(ok.me(&secret(&fake.service.api_key)).await.is_ok());
    let mut zero = config("https://tenant.eu.qlikcloud.com", None);
    zero.request_timeout = Duration::ZERO;
    assert_eq!(QlikClient::new(zero).unwrap_err().kind(), ErrorKind::Config);
}

#[tokio::test]
async fn no_error_or_debug_output_contains_a_key() {
    let fake = start_fake_with(SettingsPatch {
        max_keys_per_user: Some(2),
        ..Default::default()
    })
    .await;
    let client = qlik_client(&fake, Duration::from_secs(2), 1);
    let root = secret(&fake.service.api_key);
    let created = client
        .create_key(&root, &create("x", Some("PT1H")))
        .await
        .unwrap();
    let token = created.token.expose_secret().to_string();
    let mut outputs = vec![
        format!("{created:?}"),
        format!("{client:?}"),
        format!("{root:?}"),
    ];
    let errors = [
        client
            .create_key(&root, &create("limit", None))
            .await
            .unwrap_err(),
        client.me(&secret("garbage")).await.unwrap_err(),
        token_claims(&secret("garbage.garbage")).unwrap_err(),
    ];
    fake.advance_clock(7200);
    let expired = client.me(&created.token).await.unwrap_err();
    for error in errors.iter().chain([&expired]) {
        outputs.push(error.to_string());
        outputs.push(format!("{error:?}"));
    }
    for output in outputs {
        assert!(
            !output.contains(&token) && !output.contains(&fake.service.api_key),
            "leak: {output}"
        );
        assert!(!output.contains("garbage"), "leak: {output}");
    }
}
