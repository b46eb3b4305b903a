//! The fake tenant reproduces qlik-api-keys.md §14, checked over real HTTPS.

mod common;

use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{FakeBinary, Raw, only_error, start_fake, start_fake_with, ts};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vault_plugin_secrets_qlik::fake::{
    ExpiryAboveMax, FaultKind, FaultSpec, OwnerAdminDelete, SettingsPatch,
};

fn is_millis_rfc3339(text: &str) -> bool {
    // 2026-11-26T05:00:00.123Z
    text.len() == 24
        && text.ends_with('Z')
        && text.as_bytes()[19] == b'.'
        && text[20..23].bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn tokens_are_es384_jwts_with_qlik_claims_and_no_expiry() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let created = raw
        .create_key(&fake.service.api_key, "jwt shape", Some("PT1H"))
        .await;
    let token = created["token"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();

    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert!(!token.contains('='), "base64url without padding");
    let header = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(
        header,
        format!(r#"{{"alg":"ES384","kid":"{id}","typ":"JWT"}}"#)
    );
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(
        payload,
        format!(
            r#"{{"subType":"user","tenantId":"{}","jti":"{id}","aud":"qlik.api","iss":"qlik.api/api-keys","sub":"{}"}}"#,
            fake.tenant_id, fake.service.user_id
        )
    );
    for absent in ["exp", "iat", "nbf"] {
        assert!(!payload.contains(&format!("\"{absent}\"")));
    }
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert_eq!((signature.len(), parts[2].len()), (96, 128));
    let public_key = fake.jwt_public_key();
    let message = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &public_key)
        .verify(message.as_bytes(), &signature)
        .expect("ES384 signature verifies with the fake's public key");
    assert!((440..=520).contains(&token.len()), "length {}", token.len());

    // Identifiers in Qlik's formats.
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert!(
        fake.service.user_id.len() == 24
            && fake.service.user_id.bytes().all(|b| b.is_ascii_hexdigit())
    );
    assert_eq!(fake.tenant_id.len(), 32);

    // A token with a forged signature is refused, even with a valid jti.
    let mut forged = signature.clone();
    forged[10] ^= 0xff;
    let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode(forged));
    assert_eq!(
        raw.get("/api/v1/api-keys", &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn create_returns_every_field_and_the_token_only_once() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let answer = raw
        .post(
            "/api/v1/api-keys",
            &fake.service.api_key,
            json!({"description": "one", "expiry": "PT1H"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let created = answer.json();
    for field in [
        "id",
        "token",
        "expiry",
        "status",
        "sub",
        "subType",
        "tenantId",
        "description",
        "createdByUser",
        "created",
        "lastUpdated",
    ] {
        assert!(created.get(field).is_some(), "missing {field}: {created}");
    }
    assert_eq!(created["status"], "active");
    assert_eq!(created["subType"], "user");
    assert_eq!(created["sub"], fake.service.user_id.as_str());
    assert_eq!(created["createdByUser"], fake.service.user_id.as_str());
    assert_eq!(created["tenantId"], fake.tenant_id.as_str());
    assert!(
        is_millis_rfc3339(created["created"].as_str().unwrap()),
        "{}",
        created["created"]
    );
    assert!(is_millis_rfc3339(created["expiry"].as_str().unwrap()));
    assert_eq!(
        ts(&created["expiry"])
            .duration_since(ts(&created["created"]))
            .as_secs(),
        3600
    );

    let id = created["id"].as_str().unwrap();
    let fetched = raw
        .get(&format!("/api/v1/api-keys/{id}"), &fake.service.api_key)
        .await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert!(fetched.json().get("token").is_none());
    let listed = raw.get("/api/v1/api-keys", &fake.service.api_key).await;
    assert!(!listed.text.contains("\"token\""));
}

#[tokio::test]
async fn create_defaults_expiry_to_the_tenant_maximum_and_validates_the_body() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let created = raw
        .create_key(&fake.service.api_key, "default expiry", None)
        .await;
    assert_eq!(
        ts(&created["expiry"])
            .duration_since(ts(&created["created"]))
            .as_secs(),
        24 * 3600
    );

    let token = &fake.service.api_key;
    for (body, why) in [
        (json!({}), "missing description"),
        (json!({"description": 7}), "non-string description"),
        (json!({"description": "x", "expiry": "P1X"}), "not ISO 8601"),
        (json!({"description": "x", "expiry": "-P1D"}), "negative"),
        (json!({"description": "x", "expiry": "PT0S"}), "zero"),
        (
            json!({"description": "x", "expiry": "1 day"}),
            "friendly format",
        ),
    ] {
        let answer = raw.post("/api/v1/api-keys", token, body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{why}: {}",
            answer.text
        );
        let error = only_error(&answer.json()).clone();
        assert_eq!(error["status"], 400, "integer status in api-keys errors");
        assert!(error["code"].is_string() && error["title"].is_string());
    }
    let garbage = raw
        .http
        .post(format!("{}/api/v1/api-keys", raw.base))
        .bearer_auth(token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    // Weeks and combined units are accepted (open question 16.3).
    let weeks = raw
        .post(
            "/api/v1/api-keys",
            token,
            json!({"description": "x", "expiry": "PT1H30M"}),
        )
        .await;
    assert_eq!(weeks.status, StatusCode::CREATED);
}

#[tokio::test]
async fn create_needs_the_manage_api_keys_permission() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let viewer = fake.create_user("viewer", false, false).unwrap();
    let answer = raw
        .post(
            "/api/v1/api-keys",
            &viewer.api_key,
            json!({"description": "no"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(only_error(&answer.json())["status"], 403);
    // §16.5 default: the user's existing key still works...
    assert_eq!(
        raw.get("/api/v1/users/me", &viewer.api_key).await.status,
        StatusCode::MOVED_PERMANENTLY
    );
    // ...and with the switch on it gets 401.
    fake.update_settings(SettingsPatch {
        keys_require_permission: Some(true),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        raw.get("/api/v1/users/me", &viewer.api_key).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        raw.get("/api/v1/users/me", &fake.service.api_key)
            .await
            .status,
        StatusCode::MOVED_PERMANENTLY
    );
    // Losing the permission (via the control API) makes creation fail with 403.
    let revoke = raw
        .control(
            Method::POST,
            &format!("/__fake/users/{}", fake.service.user_id),
            Some(json!({"can_create_keys": false})),
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);
    fake.update_settings(SettingsPatch {
        keys_require_permission: Some(false),
        ..Default::default()
    })
    .unwrap();
    let denied = raw
        .post(
            "/api/v1/api-keys",
            &fake.service.api_key,
            json!({"description": "no"}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn active_key_limit_counts_only_active_keys() {
    let fake = start_fake_with(SettingsPatch {
        max_keys_per_user: Some(2),
        ..Default::default()
    })
    .await;
    let raw = Raw::new(&fake, false);
    let token = &fake.service.api_key;
    let short = raw.create_key(token, "short", Some("PT1H")).await; // seed + short = 2 active
    let refused = raw
        .post("/api/v1/api-keys", token, json!({"description": "third"}))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let error = only_error(&refused.json()).clone();
    assert!(
        error["detail"]
            .as_str()
            .unwrap()
            .contains("max_keys_per_user"),
        "{error}"
    );

    // An expired key no longer counts.
    fake.advance_clock(2 * 3600);
    assert_eq!(
        raw.get(
            &format!("/api/v1/api-keys/{}", short["id"].as_str().unwrap()),
            token
        )
        .await
        .json()["status"],
        "expired"
    );
    let replacement = raw.create_key(token, "after expiry", Some("PT1H")).await;
    // Nor does a deleted one.
    let again = raw
        .post("/api/v1/api-keys", token, json!({"description": "x"}))
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        raw.delete(
            &format!("/api/v1/api-keys/{}", replacement["id"].as_str().unwrap()),
            token
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    raw.create_key(token, "after delete", Some("PT1H")).await;

    // The status is switchable (open question 16.2).
    fake.update_settings(SettingsPatch {
        key_limit_status: Some(403),
        ..Default::default()
    })
    .unwrap();
    let forbidden = raw
        .post("/api/v1/api-keys", token, json!({"description": "x"}))
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(
        only_error(&forbidden.json())["code"],
        "APIKEYS-FAKE-KEY-LIMIT"
    );
}

#[tokio::test]
async fn expiry_above_the_maximum_is_rejected_or_clamped() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let token = &fake.service.api_key;
    let rejected = raw
        .post(
            "/api/v1/api-keys",
            token,
            json!({"description": "x", "expiry": "P2D"}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        only_error(&rejected.json())["code"],
        "APIKEYS-FAKE-EXPIRY-ABOVE-MAX"
    );
    let at_max = raw.create_key(token, "at max", Some("P1D")).await;
    assert_eq!(
        ts(&at_max["expiry"])
            .duration_since(ts(&at_max["created"]))
            .as_secs(),
        86400
    );

    fake.update_settings(SettingsPatch {
        expiry_above_max: Some(ExpiryAboveMax::Clamp),
        ..Default::default()
    })
    .unwrap();
    let clamped = raw.create_key(token, "clamped", Some("P2D")).await;
    assert_eq!(
        ts(&clamped["expiry"])
            .duration_since(ts(&clamped["created"]))
            .as_secs(),
        86400
    );
}

#[tokio::test]
async fn keys_expire_on_the_movable_clock() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let created = raw
        .create_key(&fake.service.api_key, "expires", Some("PT1H"))
        .await;
    let (id, token) = (
        created["id"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
    );
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.status,
        StatusCode::OK
    );

    fake.advance_clock(3599);
    assert_eq!(
        raw.get(&format!("/api/v1/api-keys/{id}"), token)
            .await
            .json()["status"],
        "active"
    );
    let clock = raw
        .control(
            Method::POST,
            "/__fake/clock",
            Some(json!({"advance_seconds": 2})),
        )
        .await
        .json();
    assert_eq!(clock["offset_seconds"], 3601);

    let refused = raw.get("/api/v1/api-keys", token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let body = refused.json();
    assert_eq!(
        only_error(&body)["status"],
        "401",
        "auth-layer errors carry a string status"
    );
    assert_eq!(body["traceId"].as_str().unwrap().len(), 32);
    let seen = raw
        .get(&format!("/api/v1/api-keys/{id}"), &fake.service.api_key)
        .await
        .json();
    assert_eq!(seen["status"], "expired");
    assert!(
        fake.keys()
            .iter()
            .any(|k| k.id == id && k.status == "expired")
    );
}

#[tokio::test]
async fn list_pages_through_absolute_next_links() {
    let fake = start_fake_with(SettingsPatch {
        max_keys_per_user: Some(100),
        ..Default::default()
    })
    .await;
    let raw = Raw::new(&fake, false);
    let token = &fake.service.api_key;
    for i in 0..6 {
        raw.create_key(token, &format!("key {i}"), Some("PT1H"))
            .await;
        fake.advance_clock(1); // distinct created instants
    }
    // Default sort -created, limit 2: 7 keys (seed + 6) on 4 pages.
    let mut href = format!("{}/api/v1/api-keys?limit=2", raw.base);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = raw.get(&href, token).await.json();
        pages += 1;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(
            data.iter()
                .map(|k| (k["id"].as_str().unwrap().to_string(), ts(&k["created"]))),
        );
        assert!(
            page["links"]["self"]["href"]
                .as_str()
                .unwrap()
                .starts_with(&raw.base)
        );
        if pages == 1 {
            assert!(
                page["links"].get("prev").is_none(),
                "no prev on the first page"
            );
        } else {
            assert!(
                page["links"]["prev"]["href"]
                    .as_str()
                    .unwrap()
                    .contains("endingBefore=")
            );
        }
        match page["links"].get("next") {
            Some(next) => {
                href = next["href"].as_str().unwrap().to_string();
                assert!(
                    href.starts_with("https://127.0.0.1:"),
                    "absolute next link: {href}"
                );
                assert!(href.contains("startingAfter=") && href.contains("limit=2"));
            }
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (4, 7));
    assert!(
        seen.windows(2).all(|w| w[0].1 >= w[1].1),
        "sorted by -created"
    );

    // prev of page 2 gives page 1 back.
    let first = raw.get("/api/v1/api-keys?limit=2", token).await.json();
    let second = raw
        .get(first["links"]["next"]["href"].as_str().unwrap(), token)
        .await
        .json();
    let back = raw
        .get(second["links"]["prev"]["href"].as_str().unwrap(), token)
        .await
        .json();
    assert_eq!(back["data"], first["data"]);

    // Default limit is 20, sort +description, filters.
    let all = raw
        .get("/api/v1/api-keys?sort=%2Bdescription", token)
        .await
        .json();
    let descriptions: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["description"].as_str().unwrap())
        .collect();
    let mut sorted = descriptions.clone();
    sorted.sort();
    assert_eq!((descriptions.len(), &descriptions), (7, &sorted));
    fake.advance_clock(3600);
    let active = raw
        .get("/api/v1/api-keys?status=active", token)
        .await
        .json();
    assert_eq!(
        active["data"].as_array().unwrap().len(),
        1,
        "only the 24 h seed key is still active"
    );
    let expired = raw
        .get("/api/v1/api-keys?status=expired&limit=100", token)
        .await
        .json();
    assert_eq!(expired["data"].as_array().unwrap().len(), 6);
    assert!(expired["links"].get("next").is_none());

    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "sort=expiry",
        "status=gone",
        "startingAfter=a&endingBefore=b",
    ] {
        let answer = raw.get(&format!("/api/v1/api-keys?{bad}"), token).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Non-admins see only their own keys and may not filter on others.
    let other = fake.create_user("other", true, false).unwrap();
    let own = raw.get("/api/v1/api-keys", &other.api_key).await.json();
    assert_eq!(own["data"].as_array().unwrap().len(), 1);
    let spying = raw
        .get(
            &format!("/api/v1/api-keys?sub={}", fake.service.user_id),
            &other.api_key,
        )
        .await;
    assert_eq!(spying.status, StatusCode::FORBIDDEN);
    let spying = raw
        .get(
            &format!("/api/v1/api-keys?createdByUser={}", fake.service.user_id),
            &other.api_key,
        )
        .await;
    assert_eq!(spying.status, StatusCode::FORBIDDEN);
    let admin_view = raw
        .get(
            &format!("/api/v1/api-keys?sub={}&limit=100", fake.service.user_id),
            &fake.admin.api_key,
        )
        .await
        .json();
    assert_eq!(admin_view["data"].as_array().unwrap().len(), 7);

    // Open question 16.13: null links on request.
    fake.update_settings(SettingsPatch {
        null_page_links: Some(true),
        ..Default::default()
    })
    .unwrap();
    let single = raw.get("/api/v1/api-keys", &other.api_key).await.json();
    assert_eq!(single["links"]["next"], json!({"href": null}));
    assert_eq!(single["links"]["prev"], json!({"href": null}));
}

#[tokio::test]
async fn patch_changes_the_description_only() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let token = &fake.service.api_key;
    let created = raw.create_key(token, "before", Some("PT1H")).await;
    let path = format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap());
    fake.advance_clock(5);
    let ok = raw
        .patch(
            &path,
            token,
            json!([{"op": "replace", "path": "/description", "value": "after"}]),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    let after = raw.get(&path, token).await.json();
    assert_eq!(after["description"], "after");
    assert_eq!(after["expiry"], created["expiry"]);
    assert_eq!(
        ts(&after["lastUpdated"])
            .duration_since(ts(&created["lastUpdated"]))
            .as_secs(),
        5
    );
    for body in [
        json!([{"op": "replace", "path": "/expiry", "value": "P7D"}]),
        json!([{"op": "add", "path": "/description", "value": "x"}]),
        json!([{"op": "replace", "path": "/description", "value": 3}]),
        json!({"description": "x"}),
        json!([]),
    ] {
        assert_eq!(
            raw.patch(&path, token, body.clone()).await.status,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    let other = fake.create_user("other", true, false).unwrap();
    let foreign = raw
        .patch(
            &path,
            &other.api_key,
            json!([{"op": "replace", "path": "/description", "value": "x"}]),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn owner_delete_removes_and_admin_delete_revokes() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let owner = &fake.service.api_key;

    // Owner deletes with another key of the same owner (root rotation).
    let doomed = raw.create_key(owner, "doomed", Some("PT1H")).await;
    let (doomed_id, doomed_token) = (
        doomed["id"].as_str().unwrap(),
        doomed["token"].as_str().unwrap(),
    );
    assert_eq!(
        raw.delete(&format!("/api/v1/api-keys/{doomed_id}"), owner)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        raw.get(&format!("/api/v1/api-keys/{doomed_id}"), owner)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        raw.get(
            &format!("/api/v1/api-keys/{doomed_id}"),
            &fake.admin.api_key
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        raw.get("/api/v1/users/me", doomed_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        !raw.get("/api/v1/api-keys", owner)
            .await
            .text
            .contains(doomed_id)
    );
    assert!(fake.keys().iter().any(|k| k.id == doomed_id && k.deleted));
    assert_eq!(
        raw.delete(&format!("/api/v1/api-keys/{doomed_id}"), owner)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Admin deletes someone else's key: revoked, still listed.
    let victim = raw.create_key(owner, "victim", Some("PT1H")).await;
    let (victim_id, victim_token) = (
        victim["id"].as_str().unwrap(),
        victim["token"].as_str().unwrap(),
    );
    assert_eq!(
        raw.delete(
            &format!("/api/v1/api-keys/{victim_id}"),
            &fake.admin.api_key
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let seen = raw
        .get(&format!("/api/v1/api-keys/{victim_id}"), owner)
        .await;
    assert_eq!(
        (seen.status, seen.json()["status"].clone()),
        (StatusCode::OK, json!("revoked"))
    );
    assert_eq!(
        raw.get("/api/v1/users/me", victim_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        raw.get("/api/v1/api-keys?status=revoked", owner)
            .await
            .text
            .contains(victim_id)
    );

    // A non-owner non-admin is refused; unknown ids are 404.
    let other = fake.create_user("other", true, false).unwrap();
    assert_eq!(
        raw.delete(
            &format!("/api/v1/api-keys/{}", fake.service.key_id),
            &other.api_key
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        raw.get(
            &format!("/api/v1/api-keys/{}", fake.service.key_id),
            &other.api_key
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let unknown = raw
        .delete(
            "/api/v1/api-keys/00000000-0000-4000-8000-000000000000",
            owner,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(only_error(&unknown.json())["status"], 404);

    // Open question 16.6: an owner who is TenantAdmin deletes by default, revokes if switched.
    let admin_own = raw
        .create_key(&fake.admin.api_key, "admin own", Some("PT1H"))
        .await;
    let admin_own_id = admin_own["id"].as_str().unwrap();
    raw.delete(
        &format!("/api/v1/api-keys/{admin_own_id}"),
        &fake.admin.api_key,
    )
    .await;
    assert!(
        fake.keys()
            .iter()
            .any(|k| k.id == admin_own_id && k.deleted && !k.revoked)
    );
    fake.update_settings(SettingsPatch {
        owner_admin_delete: Some(OwnerAdminDelete::Revoke),
        ..Default::default()
    })
    .unwrap();
    let admin_second = raw
        .create_key(&fake.admin.api_key, "admin second", Some("PT1H"))
        .await;
    let admin_second_id = admin_second["id"].as_str().unwrap();
    raw.delete(
        &format!("/api/v1/api-keys/{admin_second_id}"),
        &fake.admin.api_key,
    )
    .await;
    assert!(
        fake.keys()
            .iter()
            .any(|k| k.id == admin_second_id && k.revoked && !k.deleted)
    );
}

#[tokio::test]
async fn tenant_config_get_and_patch() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let path = format!("/api/v1/api-keys/configs/{}", fake.tenant_id);
    let config = raw.get(&path, &fake.service.api_key).await;
    assert_eq!(config.status, StatusCode::OK);
    assert_eq!(
        config.json(),
        json!({"max_keys_per_user": 5, "max_api_key_expiry": "PT24H", "scim_externalClient_expiry": "P365D"})
    );
    assert_eq!(
        raw.get("/api/v1/api-keys/configs/wrong", &fake.service.api_key)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let set = |n: Value| json!([{"op": "replace", "path": "/max_keys_per_user", "value": n}]);
    assert_eq!(
        raw.patch(&path, &fake.service.api_key, set(json!(7)))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        raw.patch(&path, &fake.admin.api_key, set(json!(1001)))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        raw.patch(&path, &fake.admin.api_key, set(json!(-1)))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        raw.patch(
            "/api/v1/api-keys/configs/wrong",
            &fake.admin.api_key,
            set(json!(7))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let bad_path = json!([{"op": "replace", "path": "/api_keys_enabled", "value": true}]);
    assert_eq!(
        raw.patch(&path, &fake.admin.api_key, bad_path).await.status,
        StatusCode::BAD_REQUEST
    );
    let bad_expiry = json!([{"op": "replace", "path": "/max_api_key_expiry", "value": "soon"}]);
    assert_eq!(
        raw.patch(&path, &fake.admin.api_key, bad_expiry)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let both = json!([
        {"op": "replace", "path": "/max_keys_per_user", "value": 0},
        {"op": "replace", "path": "/max_api_key_expiry", "value": "P7D"}
    ]);
    assert_eq!(
        raw.patch(&path, &fake.admin.api_key, both).await.status,
        StatusCode::NO_CONTENT
    );
    let config = raw.get(&path, &fake.service.api_key).await.json();
    assert_eq!(
        (
            config["max_keys_per_user"].clone(),
            config["max_api_key_expiry"].clone()
        ),
        (json!(0), json!("P7D"))
    );
    // Applies to new keys only: existing keys keep working, new ones hit the limit of 0.
    assert_eq!(
        raw.get("/api/v1/users/me", &fake.service.api_key)
            .await
            .status,
        StatusCode::MOVED_PERMANENTLY
    );
    let refused = raw
        .post(
            "/api/v1/api-keys",
            &fake.service.api_key,
            json!({"description": "x"}),
        )
        .await;
    assert_eq!(
        only_error(&refused.json())["code"],
        "APIKEYS-FAKE-KEY-LIMIT"
    );
}

#[tokio::test]
async fn users_me_and_tenants_me_redirect() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let me = raw.get("/api/v1/users/me", &fake.service.api_key).await;
    assert_eq!(me.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        me.headers["location"],
        format!("/api/v1/users/{}", fake.service.user_id).as_str()
    );
    let tenant = raw.get("/api/v1/tenants/me", &fake.service.api_key).await;
    assert_eq!(tenant.status, StatusCode::FOUND);
    assert_eq!(
        tenant.headers["location"],
        format!("/api/v1/tenants/{}", fake.tenant_id).as_str()
    );

    let follow = Raw::new(&fake, true);
    let user = follow.get("/api/v1/users/me", &fake.service.api_key).await;
    assert_eq!(user.status, StatusCode::OK);
    let user = user.json();
    assert_eq!(
        (
            user["id"].as_str().unwrap(),
            user["tenantId"].as_str().unwrap()
        ),
        (fake.service.user_id.as_str(), fake.tenant_id.as_str())
    );
    assert_eq!(user["name"], "qlik-service-user");
    let admin = follow
        .get("/api/v1/users/me", &fake.admin.api_key)
        .await
        .json();
    assert_eq!(admin["assignedRoles"][0]["name"], "TenantAdmin");
    let tenant = follow
        .get("/api/v1/tenants/me", &fake.service.api_key)
        .await
        .json();
    assert_eq!(tenant["id"], fake.tenant_id.as_str());

    for path in ["/api/v1/users/me", "/api/v1/tenants/me"] {
        assert_eq!(
            raw.get(path, "not-a-key").await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            raw.send(Method::GET, path, None, None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let missing = raw
        .get(
            "/api/v1/users/000000000000000000000000",
            &fake.service.api_key,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let body = missing.json();
    assert_eq!(
        (
            only_error(&body)["code"].clone(),
            only_error(&body)["status"].clone()
        ),
        (json!("USERS-7"), json!(404))
    );
    assert!(body["traceId"].is_string());
    let missing = raw
        .get("/api/v1/tenants/nope", &fake.service.api_key)
        .await
        .json();
    assert_eq!(
        only_error(&missing)["status"],
        "404",
        "tenants errors carry a string status"
    );
}

#[tokio::test]
async fn rate_limit_blocks_the_whole_tier_with_retry_after() {
    let fake = start_fake_with(SettingsPatch {
        tier1_per_window: Some(3),
        tier2_per_window: Some(2),
        rate_window_seconds: Some(2),
        ..Default::default()
    })
    .await;
    let raw = Raw::new(&fake, false);
    let token = &fake.service.api_key;
    let path = format!("/api/v1/api-keys/{}", fake.service.key_id);
    let patch = json!([{"op": "replace", "path": "/description", "value": "x"}]);
    assert_eq!(
        raw.patch(&path, token, patch.clone()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        raw.patch(&path, token, patch.clone()).await.status,
        StatusCode::NO_CONTENT
    );
    let limited = raw.patch(&path, token, patch.clone()).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert!(
        limited
            .headers
            .keys()
            .all(|h| !h.as_str().to_ascii_lowercase().contains("ratelimit"))
    );
    assert_eq!(
        limited.json(),
        json!({"errors": [{"code": "HTTP-429", "title": "API rate limit reached.", "detail": format!("You need to wait {retry_after} seconds until limit is lifted.")}]})
    );
    // The whole tier is blocked (create and delete too), not Tier 1, not other users.
    assert_eq!(
        raw.post("/api/v1/api-keys", token, json!({"description": "x"}))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        raw.delete("/api/v1/api-keys/unknown", token).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(raw.get(&path, token).await.status, StatusCode::OK);
    let admin_path = format!("/api/v1/api-keys/{}", fake.admin.key_id);
    assert_eq!(
        raw.patch(&admin_path, &fake.admin.api_key, patch.clone())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // Tier 1 has its own budget: 3 in the window (one used above).
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        raw.get("/api/v1/users/me", token).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100)).await;
    assert_eq!(
        raw.patch(&path, token, patch).await.status,
        StatusCode::NO_CONTENT
    );

    fake.update_settings(SettingsPatch {
        rate_limits_enabled: Some(false),
        ..Default::default()
    })
    .unwrap();
    for _ in 0..5 {
        assert_eq!(
            raw.get("/api/v1/api-keys", token).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn faults_and_the_request_log() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let token = &fake.service.api_key;
    let fault =
        json!({"method": "GET", "path_prefix": "/api/v1/api-keys", "status": 503, "count": 2});
    assert_eq!(
        raw.control(Method::POST, "/__fake/faults", Some(fault))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        raw.get("/api/v1/users/me", token).await.status,
        StatusCode::MOVED_PERMANENTLY,
        "path does not match"
    );
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.status,
        StatusCode::OK,
        "count used up"
    );

    // Custom body and 429 with retry-after.
    raw.control(
        Method::POST,
        "/__fake/faults",
        Some(json!({"status": 429, "retry_after": 7})),
    )
    .await;
    let limited = raw.get("/api/v1/api-keys", token).await;
    assert_eq!(
        (
            limited.status,
            limited.headers["retry-after"].to_str().unwrap()
        ),
        (StatusCode::TOO_MANY_REQUESTS, "7")
    );
    raw.control(
        Method::POST,
        "/__fake/faults",
        Some(json!({"status": 500, "body": {"oops": true}})),
    )
    .await;
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.json(),
        json!({"oops": true})
    );

    // delay_before then normal handling.
    raw.control(
        Method::POST,
        "/__fake/faults",
        Some(json!({"delay_before_ms": 300})),
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.status,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // malformed_json: the key is really created, the body is broken.
    fake.inject_fault(FaultSpec {
        method: Some("POST".into()),
        kind: Some(FaultKind::MalformedJson),
        ..Default::default()
    });
    let broken = raw
        .post(
            "/api/v1/api-keys",
            token,
            json!({"description": "malformed"}),
        )
        .await;
    assert_eq!(broken.status, StatusCode::CREATED);
    assert!(serde_json::from_str::<Value>(&broken.text).is_err());
    assert!(fake.keys().iter().any(|k| k.description == "malformed"));

    // drop_connection: the key is created, the client gets no answer.
    fake.inject_fault(FaultSpec {
        method: Some("POST".into()),
        kind: Some(FaultKind::DropConnection),
        ..Default::default()
    });
    let dropped = raw
        .http
        .post(format!("{}/api/v1/api-keys", raw.base))
        .bearer_auth(token)
        .json(&json!({"description": "dropped"}))
        .send()
        .await;
    assert!(dropped.is_err(), "no response: {dropped:?}");
    assert!(fake.keys().iter().any(|k| k.description == "dropped"));

    // delay_after: handled first, answered later.
    fake.inject_fault(FaultSpec {
        method: Some("POST".into()),
        delay_after_ms: Some(300),
        ..Default::default()
    });
    let started = Instant::now();
    raw.create_key(token, "late", None).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Faults can be cleared; the log counts every request with its final status.
    raw.control(
        Method::POST,
        "/__fake/faults",
        Some(json!({"status": 500, "count": 10})),
    )
    .await;
    raw.control(Method::DELETE, "/__fake/faults", None).await;
    assert_eq!(
        raw.get("/api/v1/api-keys", token).await.status,
        StatusCode::OK
    );
    let log = raw
        .control(Method::GET, "/__fake/requests", None)
        .await
        .json();
    let posts: Vec<&Value> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "POST")
        .collect();
    assert_eq!(posts.len(), 3);
    assert_eq!(
        posts[1]["status"], 0,
        "a dropped connection is logged with status 0"
    );
    assert_eq!(fake.count_requests("POST", "/api/v1/api-keys"), 3);
    // Each line names the key whose token was the bearer (never the token itself).
    let last = log["requests"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["key_id"], fake.service.key_id.as_str(), "{last}");
    assert!(!log.to_string().contains(token.as_str()));
    raw.send(Method::GET, "/api/v1/users/me", None, None).await;
    assert_eq!(fake.requests().last().unwrap().key_id, None);
    assert!(
        log["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["path"].as_str().unwrap().starts_with("/__fake"))
    );
    raw.control(Method::DELETE, "/__fake/requests", None).await;
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn control_api_users_keys_settings_and_public_key() {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    let user = raw
        .control(
            Method::POST,
            "/__fake/users",
            Some(json!({"name": "ci", "can_create_keys": true, "tenant_admin": true})),
        )
        .await
        .json();
    let token = user["api_key"].as_str().unwrap();
    let me = Raw::new(&fake, true)
        .get("/api/v1/users/me", token)
        .await
        .json();
    assert_eq!(me["id"], user["user_id"]);
    // An admin user created over the control API can read everyone's keys.
    let all = raw.get("/api/v1/api-keys?limit=100", token).await.json();
    assert_eq!(all["data"].as_array().unwrap().len(), 3);

    let keys = raw.control(Method::GET, "/__fake/keys", None).await;
    assert!(
        !keys.text.contains("eyJ") && !keys.text.contains("token"),
        "never a token: {}",
        keys.text
    );
    let keys = keys.json();
    let first = &keys["keys"][0];
    for field in [
        "id",
        "status",
        "sub",
        "description",
        "expiry",
        "created",
        "deleted",
        "revoked",
    ] {
        assert!(first.get(field).is_some(), "{field}");
    }

    let settings = raw
        .control(Method::POST, "/__fake/settings", Some(json!({"max_keys_per_user": 9, "max_api_key_expiry": "P7D", "expiry_above_max": "clamp"})))
        .await
        .json();
    assert_eq!(settings["config"]["max_keys_per_user"], 9);
    assert_eq!(settings["settings"]["expiry_above_max"], "clamp");
    let refused = raw
        .control(
            Method::POST,
            "/__fake/settings",
            Some(json!({"max_api_key_expiry": "never"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    let public = raw
        .control(Method::GET, "/__fake/public-key", None)
        .await
        .json();
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(public["public_key"].as_str().unwrap())
            .unwrap(),
        fake.jwt_public_key()
    );
}

#[test]
fn binary_prints_one_ready_line_and_serves_curl() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = FakeBinary::start(
        &dir.path().join("state"),
        &["--max-keys-per-user", "7", "--max-expiry", "PT12H"],
    );
    let ready = binary.ready.clone();
    let fields: Vec<&String> = ready.as_object().unwrap().keys().collect();
    assert_eq!(fields.len(), 8, "{ready}");
    for field in [
        "url",
        "ca_cert",
        "api_key",
        "user_id",
        "tenant_id",
        "admin_api_key",
        "oauth_client_id",
        "oauth_client_secret",
    ] {
        assert!(
            ready[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}"
        );
    }
    let ca = ready["ca_cert"].as_str().unwrap();
    assert_eq!(ca, dir.path().join("state/ca.pem").to_str().unwrap());
    assert!(
        std::fs::read_to_string(ca)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let url = ready["url"].as_str().unwrap();

    let curl = |path: &str, token: &str| {
        binary.curl(&[
            "-L",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{url}{path}"),
        ])
    };
    let me = curl("/api/v1/users/me", ready["api_key"].as_str().unwrap());
    assert_eq!(me["id"], ready["user_id"]);
    assert_eq!(me["tenantId"], ready["tenant_id"]);
    let config = curl(
        &format!(
            "/api/v1/api-keys/configs/{}",
            ready["tenant_id"].as_str().unwrap()
        ),
        ready["admin_api_key"].as_str().unwrap(),
    );
    assert_eq!(
        (
            config["max_keys_per_user"].clone(),
            config["max_api_key_expiry"].clone()
        ),
        (json!(7), json!("PT12H"))
    );

    // SIGTERM ends it cleanly, and nothing more was printed on stdout.
    assert_eq!(binary.terminate(), "", "exactly one line on stdout");
}
