//! The fake tenant's OAuth M2M part (qlik-oauth.md, issue 22), checked over real HTTPS.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Answer, FakeBinary, Raw, only_error, start_fake, start_fake_with, ts};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vault_plugin_secrets_qlik::fake::{
    FaultKind, FaultSpec, GRANT_CLIENT_CREDENTIALS, Grant, OAuthErrorStyle, RequestRecord,
    RunningFake, SecretHint, SettingsPatch,
};

const IMPERSONATION: &str = "urn:qlik:oauth:user-impersonation";

fn cc_body(client_id: &str, secret: &str) -> Value {
    json!({
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
    })
}

fn seed_body(fake: &RunningFake) -> Value {
    cc_body(&fake.oauth.client_id, &fake.oauth.client_secret)
}

fn impersonation_body(fake: &RunningFake, field: &str, value: &str) -> Value {
    json!({
        "grant_type": IMPERSONATION,
        "client_id": fake.oauth.client_id,
        "client_secret": fake.oauth.client_secret,
        "user_lookup": { "field": field, "value": value },
    })
}

/// A fresh fake with its default settings and a raw client that does not follow redirects.
async fn started() -> (RunningFake, Raw) {
    let fake = start_fake().await;
    let raw = Raw::new(&fake, false);
    (fake, raw)
}

/// A request with a body of any content type (or none), no bearer.
async fn send_body(
    raw: &Raw,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = raw
        .http
        .request(method, format!("{}{path}", raw.base))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    Answer::read(request).await
}

/// A POST with a JSON content type and a body as given, well-formed or not.
async fn post_json_text(raw: &Raw, path: &str, body: impl Into<reqwest::Body>) -> Answer {
    send_body(raw, Method::POST, path, Some("application/json"), body).await
}

async fn post_form(raw: &Raw, path: &str, pairs: &[(&str, &str)]) -> Answer {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    send_body(
        raw,
        Method::POST,
        path,
        Some("application/x-www-form-urlencoded"),
        body,
    )
    .await
}

async fn post_token(raw: &Raw, body: Value) -> Answer {
    raw.send(Method::POST, "/oauth/token", None, Some(body))
        .await
}

async fn post_revoke(raw: &Raw, body: Value) -> Answer {
    raw.send(Method::POST, "/oauth/revoke", None, Some(body))
        .await
}

/// A bodiless request to an /oauth/* route that only takes POST: asserts the 405 and its
/// `allow: POST`.
async fn method_not_allowed(raw: &Raw, method: Method, path: &str) -> Answer {
    let answer = raw.send(method.clone(), path, None, None).await;
    assert_eq!(
        answer.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{method} {path}"
    );
    assert_eq!(answer.headers["allow"], "POST");
    answer
}

/// The status of `GET /api/v1/users/me` with this bearer: 301 for a live token.
async fn me_status(raw: &Raw, token: &str) -> StatusCode {
    raw.get("/api/v1/users/me", token).await.status
}

/// Gets a token and returns the whole 200 answer (panics on any other).
async fn mint(raw: &Raw, body: Value) -> Value {
    let answer = post_token(raw, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json()
}

/// Gets a token and returns its access_token (panics on anything but 200).
async fn access_token(raw: &Raw, body: Value) -> String {
    mint(raw, body).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn seed_token(raw: &Raw, fake: &RunningFake) -> String {
    access_token(raw, seed_body(fake)).await
}

fn is_json(answer: &Answer) -> bool {
    answer
        .headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"))
        && serde_json::from_str::<Value>(&answer.text).is_ok()
}

fn error_code(answer: &Answer) -> String {
    only_error(&answer.json())["code"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The page a list answer's `links.<rel>.href` points to (200 or not, as JSON).
async fn follow(raw: &Raw, page: &Value, rel: &str, token: &str) -> Value {
    let href = page["links"][rel]["href"].as_str().unwrap();
    raw.get(href, token).await.json()
}

/// The status of `DELETE /api/v1/oauth-tokens/{id}` as the holder of `token`.
async fn delete_token_status(raw: &Raw, id: &str, token: &str) -> StatusCode {
    raw.delete(&format!("/api/v1/oauth-tokens/{id}"), token)
        .await
        .status
}

/// `data[0].id` of a list page.
fn first_id(page: &Value) -> String {
    page["data"][0]["id"].as_str().unwrap().to_string()
}

/// Posts a JSON body to an /oauth/* path whose connection a fault drops: asserts that no
/// answer came though the tenant handled it (200), and returns that request's log line.
async fn dropped_oauth_post(
    raw: &Raw,
    fake: &RunningFake,
    path: &str,
    body: &Value,
) -> RequestRecord {
    let dropped = raw
        .http
        .post(format!("{}{path}", raw.base))
        .json(body)
        .send()
        .await;
    assert!(dropped.is_err(), "no answer: {dropped:?}");
    let line = fake
        .requests()
        .into_iter()
        .rfind(|r| r.path == path)
        .unwrap();
    assert_eq!(
        (line.status, line.handled_status, line.fault.as_deref()),
        (0, Some(200), Some("drop_connection"))
    );
    line
}

/// The member names of a JSON object, sorted.
fn field_names(object: &Value) -> Vec<&String> {
    let mut names: Vec<&String> = object.as_object().unwrap().keys().collect();
    names.sort();
    names
}

fn bot_of(fake: &RunningFake, client_id: &str) -> Option<String> {
    fake.oauth_clients()
        .into_iter()
        .find(|c| c.client_id == client_id)
        .and_then(|c| c.bot_user_id)
}

fn client_path(fake: &RunningFake) -> String {
    format!("/api/v1/oauth-clients/{}", fake.oauth.client_id)
}

fn secrets_path(fake: &RunningFake) -> String {
    format!("{}/client-secrets", client_path(fake))
}

/// Another M2M client over the control API: (client_id, client_secret).
async fn control_client(raw: &Raw, body: Value) -> (String, String) {
    let created = raw
        .control(Method::POST, "/__fake/oauth-clients", Some(body))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let created = created.json();
    (
        created["client_id"].as_str().unwrap().to_string(),
        created["client_secret"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn client_credentials_with_a_json_body_acts_as_the_clients_bot() {
    let (fake, raw) = started().await;
    let client_id = fake.oauth.client_id.clone();
    assert_eq!(bot_of(&fake, &client_id), None, "no bot before a token");
    assert_eq!(client_id.len(), 32);

    let answer = post_token(&raw, seed_body(&fake)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(is_json(&answer));
    assert_eq!(answer.headers["cache-control"], "no-store");
    let body = answer.json();
    assert_eq!(
        field_names(&body),
        [
            "access_token",
            "expires_at",
            "expires_in",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(
        body["scope"], "user_default admin_classic",
        "none asked: the allow list, space-separated"
    );
    assert_eq!(body["expires_in"], 21600, "6 h by default");
    let left = ts(&body["expires_at"]).duration_since(fake.now()).as_secs();
    assert!((21590..=21600).contains(&left), "{left}");
    let token = body["access_token"].as_str().unwrap();
    assert!(
        !token.contains('.') && token.len() == 43,
        "opaque, not a JWT: {token}"
    );
    assert!(!answer.text.contains(&fake.oauth.client_secret));

    // The first token created the client's bot, a TenantAdmin of its own.
    let bot = bot_of(&fake, &client_id).expect("the first token creates the bot");
    let me = raw.get("/api/v1/users/me", token).await;
    assert_eq!(me.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        me.headers["location"],
        format!("/api/v1/users/{bot}").as_str()
    );
    let user = Raw::new(&fake, true)
        .get("/api/v1/users/me", token)
        .await
        .json();
    assert_eq!(user["id"], bot.as_str());
    assert_eq!(user["name"], "fake-qlik-m2m");
    assert_eq!(user["subject"], format!("qlikbot\\{client_id}").as_str());
    assert_eq!(user["assignedRoles"][0]["name"], "TenantAdmin");
    assert_ne!(bot, fake.admin.user_id);

    // A second token acts as the same bot; both are live.
    let second = seed_token(&raw, &fake).await;
    assert_ne!(second, token);
    let tokens = raw
        .control(
            Method::GET,
            &format!("/__fake/oauth-clients/{client_id}/tokens"),
            None,
        )
        .await;
    assert!(!tokens.text.contains(token) && !tokens.text.contains(&second));
    let tokens = tokens.json();
    let tokens = tokens["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t["user_id"] == bot.as_str()
        && t["grant"] == "client_credentials"
        && t["status"] == "active"));
    assert_eq!(bot_of(&fake, &client_id), Some(bot));
}

#[tokio::test]
async fn client_credentials_with_a_form_body() {
    let (fake, raw) = started().await;
    let (id, secret) = (&fake.oauth.client_id, &fake.oauth.client_secret);
    let answer = post_form(
        &raw,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", "user_default"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(is_json(&answer));
    let token = answer.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(me_status(&raw, &token).await, StatusCode::MOVED_PERMANENTLY);
    let view = fake.oauth_tokens(id, false);
    assert_eq!(view[0].scopes, ["user_default"]);

    // A repeated parameter (RFC 6749 §3.2), a content type that is neither, no content type,
    // and a JSON body that is not an object: 400 invalid_request, as JSON.
    let repeated = post_form(
        &raw,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_id", id),
            ("client_secret", secret),
        ],
    )
    .await;
    let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let text_plain = send_body(
        &raw,
        Method::POST,
        "/oauth/token",
        Some("text/plain"),
        form.clone(),
    )
    .await;
    let untyped = send_body(&raw, Method::POST, "/oauth/token", None, form).await;
    let array = post_token(&raw, json!([seed_body(&fake)])).await;
    let broken = post_json_text(&raw, "/oauth/token", "{\"grant_type\":").await;
    for answer in [repeated, text_plain, untyped, array, broken] {
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
        assert!(is_json(&answer));
        assert_eq!(error_code(&answer), "OAUTH-FAKE-INVALID-REQUEST");
    }

    // Impersonation needs a JSON body: user_lookup is an object.
    let impersonation = post_form(
        &raw,
        "/oauth/token",
        &[
            ("grant_type", IMPERSONATION),
            ("client_id", id),
            ("client_secret", secret),
            ("user_lookup", "userId"),
        ],
    )
    .await;
    assert_eq!(impersonation.status, StatusCode::BAD_REQUEST);
    let detail = only_error(&impersonation.json())["detail"].clone();
    assert!(detail.as_str().unwrap().contains("JSON"), "{detail}");
    assert_eq!(fake.oauth_tokens(id, false).len(), 1);

    // The request log names the client and the token it issued, never the secret the form
    // bodies carried nor the token.
    let log = raw.control(Method::GET, "/__fake/requests", None).await;
    assert!(!log.text.contains(secret.as_str()), "{}", log.text);
    assert!(!log.text.contains(&token), "{}", log.text);
    let log = log.json();
    let first = &log["requests"][0];
    assert_eq!(
        (&first["path"], &first["status"], &first["client_id"]),
        (&json!("/oauth/token"), &json!(200), &json!(id))
    );
    assert_eq!(first["token_id"], view[0].id.as_str());
    let form_lines = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == "/oauth/token")
        .count();
    assert_eq!(form_lines, 7);
}

#[tokio::test]
async fn impersonation_acts_as_the_user_found_by_user_id_or_subject() {
    let (fake, raw) = started().await;
    let follow = Raw::new(&fake, true);
    let by_id = mint(
        &raw,
        impersonation_body(&fake, "userId", &fake.service.user_id),
    )
    .await;
    let token = by_id["access_token"].as_str().unwrap();
    let me = follow.get("/api/v1/users/me", token).await.json();
    assert_eq!(me["id"], fake.service.user_id.as_str());
    // It acts as that user, not as the bot: no TenantAdmin rights, only the user's keys.
    let keys = raw.get("/api/v1/api-keys?limit=100", token).await.json();
    assert!(
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["sub"] == fake.service.user_id.as_str())
    );
    let config = format!("/api/v1/api-keys/configs/{}", fake.tenant_id);
    let patch = json!([{"op": "replace", "path": "/max_keys_per_user", "value": 6}]);
    assert_eq!(
        raw.patch(&config, token, patch.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    // The client's first token (an impersonation one) created its bot all the same.
    assert!(bot_of(&fake, &fake.oauth.client_id).is_some());
    let view = fake.oauth_tokens(&fake.oauth.client_id, false);
    assert_eq!(
        (view[0].grant, view[0].user_id.as_str()),
        (Grant::Impersonation, fake.service.user_id.as_str())
    );

    // By subject: the tenant admin, who may patch the config.
    let admin = follow
        .get(
            &format!("/api/v1/users/{}", fake.admin.user_id),
            &fake.admin.api_key,
        )
        .await
        .json();
    let subject = admin["subject"].as_str().unwrap();
    let by_subject = mint(&raw, impersonation_body(&fake, "subject", subject)).await;
    let admin_token = by_subject["access_token"].as_str().unwrap();
    assert_eq!(
        follow.get("/api/v1/users/me", admin_token).await.json()["id"],
        fake.admin.user_id.as_str()
    );
    assert_eq!(
        raw.patch(&config, admin_token, patch).await.status,
        StatusCode::NO_CONTENT
    );

    // Refusals.
    let unknown = post_token(
        &raw,
        impersonation_body(&fake, "userId", "000000000000000000000000"),
    )
    .await;
    assert_eq!(
        (unknown.status, error_code(&unknown).as_str()),
        (StatusCode::BAD_REQUEST, "OAUTH-FAKE-INVALID-GRANT")
    );
    let mut missing = impersonation_body(&fake, "userId", "x");
    missing.as_object_mut().unwrap().remove("user_lookup");
    let bad_field = impersonation_body(&fake, "email", "x@y");
    let mut not_object = impersonation_body(&fake, "userId", "x");
    not_object["user_lookup"] = json!("userId");
    for body in [missing, bad_field, not_object] {
        let answer = post_token(&raw, body.clone()).await;
        assert_eq!(
            (answer.status, error_code(&answer).as_str()),
            (StatusCode::BAD_REQUEST, "OAUTH-FAKE-INVALID-REQUEST"),
            "{body}"
        );
    }
    let mut password = seed_body(&fake);
    password["grant_type"] = json!("password");
    let answer = post_token(&raw, password).await;
    assert_eq!(
        (answer.status, error_code(&answer).as_str()),
        (StatusCode::BAD_REQUEST, "OAUTH-FAKE-UNSUPPORTED-GRANT-TYPE")
    );
    let mut no_grant = seed_body(&fake);
    no_grant.as_object_mut().unwrap().remove("grant_type");
    assert_eq!(
        error_code(&post_token(&raw, no_grant).await),
        "OAUTH-FAKE-INVALID-REQUEST"
    );

    // A client allowed only client credentials may not impersonate.
    let (cc_only, cc_secret) = control_client(
        &raw,
        json!({"name": "cc-only", "allowed_grant_types": [GRANT_CLIENT_CREDENTIALS]}),
    )
    .await;
    let refused = post_token(
        &raw,
        json!({"grant_type": IMPERSONATION, "client_id": cc_only, "client_secret": cc_secret,
               "user_lookup": {"field": "userId", "value": fake.service.user_id}}),
    )
    .await;
    assert_eq!(
        (refused.status, error_code(&refused).as_str()),
        (StatusCode::BAD_REQUEST, "OAUTH-FAKE-UNAUTHORIZED-CLIENT")
    );
    mint(&raw, cc_body(&cc_only, &cc_secret)).await;
    assert_eq!(fake.oauth_tokens(&cc_only, false).len(), 1);

    // The request log names the impersonation tokens by id on the calls they made, never
    // the tokens themselves (nor a client secret).
    let log = raw.control(Method::GET, "/__fake/requests", None).await;
    for hidden in [token, admin_token, &fake.oauth.client_secret, &cc_secret] {
        assert!(!log.text.contains(hidden), "{hidden} in {}", log.text);
    }
    let log = log.json();
    let impersonations: Vec<String> = fake
        .oauth_tokens(&fake.oauth.client_id, false)
        .into_iter()
        .filter(|t| t.grant == Grant::Impersonation)
        .map(|t| t.id)
        .collect();
    assert_eq!(impersonations.len(), 2);
    for token_id in &impersonations {
        let used = log["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["token_id"] == token_id.as_str() && r["path"] != "/oauth/token")
            .collect::<Vec<_>>();
        assert!(!used.is_empty(), "{token_id}");
        assert!(
            used.iter()
                .all(|r| r["client_id"] == fake.oauth.client_id.as_str() && r["key_id"].is_null())
        );
    }
}

#[tokio::test]
async fn scopes_are_checked_against_the_clients_allow_list() {
    let (fake, raw) = started().await;
    let client = fake.oauth.client_id.clone();
    let with_scope = |scope: &str| {
        let mut body = seed_body(&fake);
        body["scope"] = json!(scope);
        body
    };
    let granted = [
        mint(&raw, seed_body(&fake)).await,
        mint(&raw, with_scope("")).await,
        mint(&raw, with_scope("user_default")).await,
        mint(&raw, with_scope("admin_classic  user_default")).await,
    ];
    let granted: Vec<&str> = granted
        .iter()
        .map(|a| a["scope"].as_str().unwrap())
        .collect();
    assert_eq!(
        granted,
        [
            "user_default admin_classic",
            "user_default admin_classic",
            "user_default",
            "admin_classic user_default"
        ],
        "the answer's scope: what was granted"
    );
    let scopes: Vec<Vec<String>> = fake
        .oauth_tokens(&client, false)
        .into_iter()
        .map(|t| t.scopes)
        .collect();
    assert_eq!(
        scopes,
        [
            vec!["user_default", "admin_classic"],
            vec!["user_default", "admin_classic"],
            vec!["user_default"],
            vec!["admin_classic", "user_default"],
        ],
        "none given: the allow list"
    );

    for scope in ["admin.apps", "user_default admin.apps", "offline_access"] {
        let answer = post_token(&raw, with_scope(scope)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{scope}");
        assert_eq!(error_code(&answer), "OAUTH-FAKE-INVALID-SCOPE");
        let detail = only_error(&answer.json())["detail"].clone();
        assert!(
            !detail.as_str().unwrap().contains("user_default"),
            "{detail}"
        );
    }
    let (narrow, secret) = control_client(
        &raw,
        json!({"name": "narrow", "allowed_scopes": ["user_default"]}),
    )
    .await;
    let mut body = cc_body(&narrow, &secret);
    body["scope"] = json!("admin_classic");
    assert_eq!(
        error_code(&post_token(&raw, body).await),
        "OAUTH-FAKE-INVALID-SCOPE"
    );
    assert_eq!(fake.oauth_tokens(&client, false).len(), 4);
}

#[tokio::test]
async fn a_wrong_client_or_secret_gets_401_in_qliks_shape_or_rfc_6749s() {
    let (fake, raw) = started().await;
    let id = fake.oauth.client_id.clone();
    let mut no_secret = seed_body(&fake);
    no_secret.as_object_mut().unwrap().remove("client_secret");
    let mut no_client = seed_body(&fake);
    no_client.as_object_mut().unwrap().remove("client_id");
    let refused = [
        cc_body(&id, "wrong"),
        cc_body(
            "00000000000000000000000000000000",
            &fake.oauth.client_secret,
        ),
        no_secret,
        no_client,
    ];
    for body in &refused {
        let answer = post_token(&raw, body.clone()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(is_json(&answer));
        let json = answer.json();
        assert!(json.get("error").is_none(), "{json}");
        let error = only_error(&json);
        assert_eq!(error["code"], "OAUTH-FAKE-INVALID-CLIENT");
        assert_eq!(
            error["status"], "401",
            "a string, as oauth-tokens.d.ts types it"
        );
        assert!(!answer.text.contains(&fake.oauth.client_secret));
    }
    assert!(fake.oauth_tokens(&id, true).is_empty());

    fake.update_settings(SettingsPatch {
        oauth_error_style: Some(OAuthErrorStyle::Rfc6749),
        ..Default::default()
    })
    .unwrap();
    for body in &refused {
        let answer = post_token(&raw, body.clone()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        let json = answer.json();
        assert_eq!(json["error"], "invalid_client", "{json}");
        assert!(json["error_description"].is_string());
        assert!(json.get("errors").is_none());
    }
    let form = post_form(
        &raw,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(
        (form.status, form.json()["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"))
    );
    // The other token errors switch shape too.
    let mut scope = seed_body(&fake);
    scope["scope"] = json!("admin.apps");
    let mut grant = seed_body(&fake);
    grant["grant_type"] = json!("password");
    for (body, error) in [
        (scope, "invalid_scope"),
        (grant, "unsupported_grant_type"),
        (json!("x"), "invalid_request"),
    ] {
        let answer = post_token(&raw, body).await;
        assert_eq!(
            (answer.status, answer.json()["error"].clone()),
            (StatusCode::BAD_REQUEST, json!(error))
        );
    }
    // A good request is unaffected.
    let token = seed_token(&raw, &fake).await;
    assert_eq!(me_status(&raw, &token).await, StatusCode::MOVED_PERMANENTLY);
    // The bearer check of /api/v1 keeps the auth layer's shape in both modes.
    let refused = raw.get("/api/v1/users/me", "not-a-token").await.json();
    assert_eq!(only_error(&refused)["code"], "LOGIN-2");
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let encode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A POST with an `Authorization` header and a JSON or form body.
async fn post_with_auth(raw: &Raw, path: &str, authorization: &str, body: Body) -> Answer {
    let request = raw
        .http
        .post(format!("{}{path}", raw.base))
        .header("authorization", authorization);
    let request = match body {
        Body::Json(json) => request.json(&json),
        Body::Form(pairs) => request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish(),
            ),
    };
    Answer::read(request).await
}

async fn revoke_with_auth(raw: &Raw, authorization: &str, body: Body) -> Answer {
    post_with_auth(raw, "/oauth/revoke", authorization, body).await
}

enum Body {
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

#[tokio::test]
async fn client_credentials_in_an_http_basic_header() {
    let (fake, raw) = started().await;
    let (id, secret) = (
        fake.oauth.client_id.clone(),
        fake.oauth.client_secret.clone(),
    );
    let me = "/api/v1/users/me";
    let header = basic(&id, &secret);
    let cc = || json!({"grant_type": "client_credentials"});

    // JSON and form bodies without credentials; the body may repeat the same client_id.
    let by_json = post_with_auth(&raw, "/oauth/token", &header, Body::Json(cc())).await;
    assert_eq!(by_json.status, StatusCode::OK, "{}", by_json.text);
    let token = by_json.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(me_status(&raw, &token).await, StatusCode::MOVED_PERMANENTLY);
    let form = vec![("grant_type", "client_credentials".to_string())];
    let by_form = post_with_auth(&raw, "/oauth/token", &header, Body::Form(form.clone())).await;
    assert_eq!(by_form.status, StatusCode::OK, "{}", by_form.text);
    let same_id = post_with_auth(
        &raw,
        "/oauth/token",
        &header,
        Body::Json(json!({"grant_type": "client_credentials", "client_id": id})),
    )
    .await;
    assert_eq!(same_id.status, StatusCode::OK, "{}", same_id.text);
    let impersonation = post_with_auth(
        &raw,
        "/oauth/token",
        &header,
        Body::Json(json!({"grant_type": IMPERSONATION,
                          "user_lookup": {"field": "userId", "value": fake.service.user_id}})),
    )
    .await;
    let impersonation = impersonation.json();
    let as_user = impersonation["access_token"].as_str().unwrap();
    assert_eq!(
        Raw::new(&fake, true).get(me, as_user).await.json()["id"],
        fake.service.user_id.as_str()
    );
    assert_eq!(fake.oauth_tokens(&id, false).len(), 4);

    // A wrong secret, an unknown client or an undecodable header: 401 with a Basic challenge.
    for bad in [
        basic(&id, "wrong"),
        basic("00000000000000000000000000000000", &secret),
        "Basic !!!not-base64".to_string(),
        format!("Basic {}", {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("{id}{secret}"))
        }),
    ] {
        let answer = post_with_auth(&raw, "/oauth/token", &bad, Body::Json(cc())).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(error_code(&answer), "OAUTH-FAKE-INVALID-CLIENT");
        assert!(
            answer.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic"),
            "RFC 6749 §5.2"
        );
    }
    // Two methods at once (RFC 6749 §2.3), or another client_id in the body: 400.
    for body in [
        json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        json!({"grant_type": "client_credentials", "client_id": "someone-else"}),
    ] {
        let answer = post_with_auth(&raw, "/oauth/token", &header, Body::Json(body.clone())).await;
        assert_eq!(
            (answer.status, error_code(&answer).as_str()),
            (StatusCode::BAD_REQUEST, "OAUTH-FAKE-INVALID-REQUEST"),
            "{body}"
        );
    }
    assert_eq!(
        fake.oauth_tokens(&id, false).len(),
        4,
        "nothing issued by those"
    );

    // /oauth/revoke: the right client revokes, a wrong secret is 401, another client's
    // credentials leave the token alone.
    let (other, other_secret) = control_client(&raw, json!({"name": "other"})).await;
    let wrong = revoke_with_auth(
        &raw,
        &basic(&id, "wrong"),
        Body::Json(json!({"token": token})),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let foreign = revoke_with_auth(
        &raw,
        &basic(&other, &other_secret),
        Body::Form(vec![("token", token.clone())]),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::OK);
    assert_eq!(me_status(&raw, &token).await, StatusCode::MOVED_PERMANENTLY);
    let own = revoke_with_auth(&raw, &header, Body::Form(vec![("token", token.clone())])).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(me_status(&raw, &token).await, StatusCode::UNAUTHORIZED);

    // The log names the client of the header, never its secret.
    let log = raw.control(Method::GET, "/__fake/requests", None).await;
    assert!(!log.text.contains(&secret) && !log.text.contains(&header));
    let token_lines: Vec<Value> = log.json()["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == "/oauth/token" && r["status"] == 200)
        .cloned()
        .collect();
    assert_eq!(token_lines.len(), 4);
    assert!(token_lines.iter().all(|r| r["client_id"] == id.as_str()));

    // Switched off: the header is not read, so Basic alone is unauthenticated (401, no
    // challenge), and /oauth/revoke ignores it (a wrong secret there revokes all the same).
    fake.update_settings(SettingsPatch {
        oauth_basic_auth: Some(false),
        ..Default::default()
    })
    .unwrap();
    let off = post_with_auth(&raw, "/oauth/token", &header, Body::Json(cc())).await;
    assert_eq!(
        (off.status, error_code(&off).as_str()),
        (StatusCode::UNAUTHORIZED, "OAUTH-FAKE-INVALID-CLIENT")
    );
    assert!(off.headers.get("www-authenticate").is_none());
    let body_only = mint(&raw, seed_body(&fake)).await;
    let body_token = body_only["access_token"].as_str().unwrap();
    let ignored = revoke_with_auth(
        &raw,
        &basic(&id, "wrong"),
        Body::Json(json!({"token": body_token})),
    )
    .await;
    assert_eq!(ignored.status, StatusCode::OK);
    assert_eq!(me_status(&raw, body_token).await, StatusCode::UNAUTHORIZED);
    let settings = raw
        .control(Method::GET, "/__fake/settings", None)
        .await
        .json();
    assert_eq!(settings["settings"]["oauth_basic_auth"], false);
}

/// An RFC 6749 §5.2 body: exactly `error` and `error_description`.
fn rfc_error(answer: &Answer) -> String {
    assert!(is_json(answer), "{}", answer.text);
    let body = answer.json();
    let fields = field_names(&body);
    assert_eq!(fields, ["error", "error_description"], "{body}");
    body["error"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn rfc_6749_style_answers_400_for_its_errors_and_401_only_for_invalid_client() {
    let fake = start_fake_with(SettingsPatch {
        oauth_error_style: Some(OAuthErrorStyle::Rfc6749),
        ..Default::default()
    })
    .await;
    let raw = Raw::new(&fake, false);
    let with = |name: &str, value: Value| {
        let mut body = seed_body(&fake);
        body[name] = value;
        body
    };
    let mut no_grant = seed_body(&fake);
    no_grant.as_object_mut().unwrap().remove("grant_type");
    let (cc_only, cc_secret) = control_client(
        &raw,
        json!({"name": "cc-only", "allowed_grant_types": [GRANT_CLIENT_CREDENTIALS]}),
    )
    .await;
    let cases = [
        (json!("not an object"), "invalid_request"),
        (no_grant, "invalid_request"),
        (with("client_id", json!(7)), "invalid_request"),
        (
            with("grant_type", json!("password")),
            "unsupported_grant_type",
        ),
        (with("scope", json!("admin.apps")), "invalid_scope"),
        (
            impersonation_body(&fake, "userId", "000000000000000000000000"),
            "invalid_grant",
        ),
        (
            json!({"grant_type": IMPERSONATION, "client_id": cc_only, "client_secret": cc_secret,
                   "user_lookup": {"field": "userId", "value": fake.service.user_id}}),
            "unauthorized_client",
        ),
    ];
    for (body, error) in cases {
        let answer = post_token(&raw, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.text
        );
        assert_eq!(rfc_error(&answer), error, "{body}");
    }
    let form = post_form(
        &raw,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "a"),
            ("client_id", "b"),
        ],
    )
    .await;
    assert_eq!(
        (form.status, rfc_error(&form).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let wrong = post_token(&raw, cc_body(&fake.oauth.client_id, "wrong")).await;
    assert_eq!(
        (wrong.status, rfc_error(&wrong).as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    // /oauth/revoke the same way: a missing token 400, wrong client credentials 401.
    let missing = post_revoke(&raw, json!({})).await;
    assert_eq!(
        (missing.status, rfc_error(&missing).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let wrong = post_revoke(
        &raw,
        json!({"token": "x", "client_id": fake.oauth.client_id, "client_secret": "no"}),
    )
    .await;
    assert_eq!(
        (wrong.status, rfc_error(&wrong).as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    // The 405 of /oauth/* and the 413 take the RFC's shape, with their own status.
    for (method, path) in [
        (Method::GET, "/oauth/token"),
        (Method::DELETE, "/oauth/token"),
        (Method::GET, "/oauth/revoke"),
    ] {
        let answer = method_not_allowed(&raw, method, path).await;
        assert_eq!(rfc_error(&answer), "invalid_request");
    }
    let big = format!("{{\"client_id\":\"{}\"}}", "x".repeat(70 * 1024));
    let answer = post_json_text(&raw, "/oauth/token", big).await;
    assert_eq!(
        (answer.status, rfc_error(&answer).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request")
    );
    // Back in Qlik's style, the 405 is Qlik's shape again.
    fake.update_settings(SettingsPatch {
        oauth_error_style: Some(OAuthErrorStyle::Qlik),
        ..Default::default()
    })
    .unwrap();
    let answer = raw.send(Method::GET, "/oauth/token", None, None).await;
    assert_eq!(
        (answer.status, error_code(&answer).as_str()),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "OAUTH-FAKE-METHOD-NOT-ALLOWED"
        )
    );
    assert_eq!(only_error(&answer.json())["status"], "405");
}

#[tokio::test]
async fn access_tokens_are_accepted_on_every_api_route() {
    let (fake, raw) = started().await;
    let token = seed_token(&raw, &fake).await;
    let token_id = fake.oauth_tokens(&fake.oauth.client_id, false)[0]
        .id
        .clone();
    let bot = bot_of(&fake, &fake.oauth.client_id).unwrap();
    raw.control(Method::DELETE, "/__fake/requests", None).await;

    let t = token.as_str();
    let keys = raw.get("/api/v1/api-keys?limit=100", t).await;
    assert_eq!(keys.status, StatusCode::OK);
    assert_eq!(
        keys.json()["data"].as_array().unwrap().len(),
        2,
        "TenantAdmin-equivalent: every user's keys"
    );
    let service_key = format!("/api/v1/api-keys/{}", fake.service.key_id);
    assert_eq!(raw.get(&service_key, t).await.status, StatusCode::OK);
    let created = raw.create_key(t, "made by the bot", Some("PT1H")).await;
    assert_eq!(created["sub"], bot.as_str());
    let own_key = format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap());
    let rename = json!([{"op": "replace", "path": "/description", "value": "renamed"}]);
    assert_eq!(
        raw.patch(&own_key, t, rename).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(raw.delete(&own_key, t).await.status, StatusCode::NO_CONTENT);
    let config = format!("/api/v1/api-keys/configs/{}", fake.tenant_id);
    assert_eq!(raw.get(&config, t).await.status, StatusCode::OK);
    let patch = json!([{"op": "replace", "path": "/max_keys_per_user", "value": 9}]);
    assert_eq!(
        raw.patch(&config, t, patch).await.status,
        StatusCode::NO_CONTENT
    );
    for (path, status) in [
        (
            "/api/v1/users/me".to_string(),
            StatusCode::MOVED_PERMANENTLY,
        ),
        (format!("/api/v1/users/{bot}"), StatusCode::OK),
        ("/api/v1/tenants/me".to_string(), StatusCode::FOUND),
        (
            format!("/api/v1/tenants/{}", fake.tenant_id),
            StatusCode::OK,
        ),
        ("/api/v1/oauth-tokens".to_string(), StatusCode::OK),
        (client_path(&fake), StatusCode::OK),
    ] {
        assert_eq!(raw.get(&path, t).await.status, status, "{path}");
    }

    // The log names the token and its client on every line, never the token itself.
    let log = raw.control(Method::GET, "/__fake/requests", None).await;
    assert!(!log.text.contains(t) && !log.text.contains(&fake.oauth.client_secret));
    let log = log.json();
    let lines = log["requests"].as_array().unwrap();
    assert_eq!(lines.len(), 13);
    for line in lines {
        assert_eq!(line["token_id"], token_id.as_str(), "{line}");
        assert_eq!(line["client_id"], fake.oauth.client_id.as_str());
        assert_eq!(line["key_id"], Value::Null);
    }

    // Unknown or altered tokens get the auth layer's 401.
    let mut altered = token.clone().into_bytes();
    altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for bad in [altered.as_str(), "opaque-but-unknown", ""] {
        let answer = raw.get("/api/v1/api-keys", bad).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(only_error(&answer.json())["status"], "401");
    }
    // An API key still works beside it.
    assert_eq!(
        raw.get("/api/v1/api-keys", &fake.service.api_key)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn expired_revoked_and_deleted_tokens_get_401() {
    let (fake, raw) = started().await;
    let client = fake.oauth.client_id.clone();
    let me = "/api/v1/users/me";

    // Revoked through /oauth/revoke while still in its life: 401 at once, its twin lives on.
    let expiring = seed_token(&raw, &fake).await;
    let revoked = seed_token(&raw, &fake).await;
    let revoke = post_revoke(&raw, json!({"token": revoked})).await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text);
    let answer = raw.get(me, &revoked).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(only_error(&answer.json())["code"], "LOGIN-2");
    assert_eq!(
        me_status(&raw, &expiring).await,
        StatusCode::MOVED_PERMANENTLY
    );

    // Expired, on the movable clock.
    fake.advance_clock(6 * 3600 - 10);
    assert_eq!(
        me_status(&raw, &expiring).await,
        StatusCode::MOVED_PERMANENTLY
    );
    let clock = raw
        .control(
            Method::POST,
            "/__fake/clock",
            Some(json!({"advance_seconds": 11})),
        )
        .await;
    assert_eq!(clock.status, StatusCode::OK);
    let answer = raw.get(me, &expiring).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let body = answer.json();
    assert_eq!(only_error(&body)["code"], "LOGIN-2");
    assert_eq!(only_error(&body)["status"], "401");
    assert!(body["traceId"].is_string());
    assert!(fake.oauth_tokens(&client, false).is_empty());
    let all: Vec<String> = fake
        .oauth_tokens(&client, true)
        .into_iter()
        .map(|t| t.status)
        .collect();
    assert_eq!(all, ["expired", "revoked"]);
    assert_eq!(me_status(&raw, &revoked).await, StatusCode::UNAUTHORIZED);

    // Revoked through /oauth/revoke (JSON, then form); 200 for unknown or repeated ones.
    let live = seed_token(&raw, &fake).await;
    assert_eq!(me_status(&raw, &live).await, StatusCode::MOVED_PERMANENTLY);
    let revoke = post_revoke(
        &raw,
        json!({"token": live, "token_type_hint": "access_token"}),
    )
    .await;
    assert_eq!(revoke.status, StatusCode::OK);
    assert!(is_json(&revoke));
    let revoked_line = fake.requests().last().unwrap().clone();
    assert_eq!(me_status(&raw, &live).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (
            revoked_line.path.as_str(),
            revoked_line.client_id.as_deref()
        ),
        ("/oauth/revoke", Some(client.as_str()))
    );
    assert!(revoked_line.token_id.is_some());
    for token in [live.as_str(), "never-issued"] {
        let again = post_revoke(&raw, json!({"token": token})).await;
        assert_eq!(again.status, StatusCode::OK, "RFC 7009: {token}");
    }
    let by_form = seed_token(&raw, &fake).await;
    let answer = post_form(
        &raw,
        "/oauth/revoke",
        &[("token", &by_form), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(me_status(&raw, &by_form).await, StatusCode::UNAUTHORIZED);
    let missing = post_revoke(&raw, json!({})).await;
    assert_eq!(
        (missing.status, error_code(&missing).as_str()),
        (StatusCode::BAD_REQUEST, "OAUTH-FAKE-INVALID-REQUEST")
    );
    // Optional client credentials: wrong ones 401, another client's leave the token alone.
    let guarded = seed_token(&raw, &fake).await;
    let wrong = post_revoke(
        &raw,
        json!({"token": guarded, "client_id": client, "client_secret": "wrong"}),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let (other, other_secret) = control_client(&raw, json!({"name": "other"})).await;
    let foreign = post_revoke(
        &raw,
        json!({"token": guarded, "client_id": other, "client_secret": other_secret}),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::OK);
    assert_eq!(
        me_status(&raw, &guarded).await,
        StatusCode::MOVED_PERMANENTLY
    );
    let own = post_revoke(
        &raw,
        json!({"token": guarded, "client_id": client,
                        "client_secret": fake.oauth.client_secret}),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(me_status(&raw, &guarded).await, StatusCode::UNAUTHORIZED);

    // Deleted by id through the oauth-tokens API: 204, then 401 for the token, 404 again.
    let deleted = seed_token(&raw, &fake).await;
    let id = fake.oauth_tokens(&client, false)[0].id.clone();
    let path = format!("/api/v1/oauth-tokens/{id}");
    assert_eq!(
        raw.delete(&path, &fake.admin.api_key).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(me_status(&raw, &deleted).await, StatusCode::UNAUTHORIZED);
    let again = raw.delete(&path, &fake.admin.api_key).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(only_error(&again.json())["status"], "404");
    let statuses: Vec<String> = fake
        .oauth_tokens(&client, true)
        .into_iter()
        .map(|t| t.status)
        .collect();
    assert_eq!(
        statuses,
        [
            "expired", "revoked", "revoked", "revoked", "revoked", "revoked"
        ]
    );
}

#[tokio::test]
async fn oauth_tokens_list_pages_filters_and_permissions() {
    let (fake, raw) = started().await;
    let admin = &fake.admin.api_key;
    let mut bot_tokens = Vec::new();
    for _ in 0..5 {
        bot_tokens.push(seed_token(&raw, &fake).await);
        fake.advance_clock(1);
    }
    for _ in 0..2 {
        mint(
            &raw,
            impersonation_body(&fake, "userId", &fake.service.user_id),
        )
        .await;
        fake.advance_clock(1);
    }
    let bot = bot_of(&fake, &fake.oauth.client_id).unwrap();

    // A TenantAdmin pages through all 7, in userId order (qlik.dev's default sort; ties in
    // issue order), by absolute links.
    let mut href = "/api/v1/oauth-tokens?limit=2".to_string();
    let (mut pages, mut seen) = (0, Vec::new());
    loop {
        let page = raw.get(&href, admin).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let page = page.json();
        pages += 1;
        for item in page["data"].as_array().unwrap() {
            for field in ["id", "tenantId", "userId", "description"] {
                assert!(item[field].is_string(), "{field}: {item}");
            }
            assert_eq!(item["tenantId"], fake.tenant_id.as_str());
            seen.push(item.clone());
        }
        assert_eq!(page["links"].get("prev").is_some(), pages > 1);
        match page["links"].get("next") {
            Some(next) => {
                href = next["href"].as_str().unwrap().to_string();
                assert!(href.starts_with("https://127.0.0.1:") && href.contains("limit=2"));
            }
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (4, 7));
    // The client's tokens in issue order (both grants), sorted stably by userId.
    let by_user_id = |descending: bool| {
        let mut expected: Vec<(String, String)> = fake
            .oauth_tokens(&fake.oauth.client_id, false)
            .into_iter()
            .map(|t| (t.user_id, t.id))
            .collect();
        expected.sort_by(|a, b| {
            let order = a.0.cmp(&b.0);
            if descending { order.reverse() } else { order }
        });
        expected
    };
    let pairs = |items: &[Value]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|t| {
                (
                    t["userId"].as_str().unwrap().to_string(),
                    t["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(pairs(&seen), by_user_id(false), "userId order by default");
    let first = raw.get("/api/v1/oauth-tokens?limit=2", admin).await.json();
    let second = follow(&raw, &first, "next", admin).await;
    let back = follow(&raw, &second, "prev", admin).await;
    assert_eq!(back["data"], first["data"]);

    let count = |body: Value| body["data"].as_array().unwrap().len();
    let by_user = |user: &str| format!("/api/v1/oauth-tokens?limit=100&userId={user}");
    assert_eq!(count(raw.get(&by_user(&bot), admin).await.json()), 5);
    assert_eq!(
        count(raw.get(&by_user(&fake.service.user_id), admin).await.json()),
        2
    );
    // oauth-tokens.d.ts has only sort "userId" (and the +/- forms).
    for (sort, descending) in [("userId", false), ("%2BuserId", false), ("-userId", true)] {
        let sorted = raw
            .get(
                &format!("/api/v1/oauth-tokens?limit=100&sort={sort}"),
                admin,
            )
            .await;
        assert_eq!(sorted.status, StatusCode::OK, "{sort}: {}", sorted.text);
        let sorted = sorted.json();
        assert_eq!(
            pairs(sorted["data"].as_array().unwrap()),
            by_user_id(descending),
            "{sort}"
        );
    }

    // A user who is not an admin sees only their own tokens.
    let service = &fake.service.api_key;
    assert_eq!(
        count(raw.get("/api/v1/oauth-tokens", service).await.json()),
        2
    );
    assert_eq!(
        raw.get(&by_user(&bot), service).await.status,
        StatusCode::FORBIDDEN
    );
    let bot_token_id = first_id(&raw.get(&by_user(&bot), admin).await.json());
    assert_eq!(
        delete_token_status(&raw, &bot_token_id, service).await,
        StatusCode::FORBIDDEN
    );
    let own_id = first_id(&raw.get("/api/v1/oauth-tokens", service).await.json());
    assert_eq!(
        delete_token_status(&raw, &own_id, service).await,
        StatusCode::NO_CONTENT
    );
    for bad in [
        "limit=0",
        "limit=101",
        "sort=expiry",
        "sort=-created",
        "sort=description",
        "sort=%2BlastUsed",
        "sort=userid",
        "page=garbage",
    ] {
        let answer = raw.get(&format!("/api/v1/oauth-tokens?{bad}"), admin).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(only_error(&answer.json())["status"], "400");
    }

    // Revoked and expired tokens are not listed; lastUsed follows the fake clock.
    post_revoke(&raw, json!({"token": bot_tokens[0]})).await;
    raw.get("/api/v1/users/me", &bot_tokens[1]).await;
    let used_at = fake.now();
    let listed = raw.get(&by_user(&bot), admin).await.json();
    assert_eq!(count(listed.clone()), 4);
    let used: Vec<&Value> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t.get("lastUsed").is_some())
        .collect();
    assert_eq!(used.len(), 1);
    assert!(
        ts(&used[0]["lastUsed"])
            .duration_since(used_at)
            .as_secs()
            .abs()
            <= 2
    );
    fake.advance_clock(6 * 3600);
    assert_eq!(
        count(raw.get("/api/v1/oauth-tokens", admin).await.json()),
        0
    );

    // §6.3 switch: client-credentials tokens unlisted (and not deletable by id); revoke works.
    fake.update_settings(SettingsPatch {
        oauth_hide_client_tokens: Some(true),
        null_page_links: Some(true),
        ..Default::default()
    })
    .unwrap();
    let hidden = seed_token(&raw, &fake).await;
    mint(
        &raw,
        impersonation_body(&fake, "userId", &fake.service.user_id),
    )
    .await;
    let listed = raw.get("/api/v1/oauth-tokens", admin).await.json();
    assert_eq!(count(listed.clone()), 1);
    assert_eq!(listed["data"][0]["userId"], fake.service.user_id.as_str());
    assert_eq!(listed["links"]["next"], json!({"href": null}));
    assert_eq!(listed["links"]["prev"], json!({"href": null}));
    let hidden_id = fake
        .oauth_tokens(&fake.oauth.client_id, false)
        .into_iter()
        .find(|t| t.grant == Grant::ClientCredentials)
        .unwrap()
        .id;
    assert_eq!(
        delete_token_status(&raw, &hidden_id, admin).await,
        StatusCode::NOT_FOUND
    );
    post_revoke(&raw, json!({"token": hidden})).await;
    assert_eq!(me_status(&raw, &hidden).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn client_secrets_are_created_listed_by_hint_and_deleted() {
    let (fake, raw) = started().await;
    let admin = &fake.admin.api_key;
    let first = fake.oauth.client_secret.clone();

    let client = raw.get(&client_path(&fake), admin).await;
    assert_eq!(client.status, StatusCode::OK);
    assert!(!client.text.contains(&first), "hints only: {}", client.text);
    let client = client.json();
    // Only members of @qlik/api's OAuthClientReadResponse (clientId & OAuthClientBase): no
    // createdBy or tenantId, which that type does not have.
    assert_eq!(
        field_names(&client),
        [
            "allowedAuthMethods",
            "allowedGrantTypes",
            "allowedScopes",
            "appType",
            "clientId",
            "clientName",
            "clientSecrets",
            "createdAt",
            "createdByType",
            "updatedAt",
        ]
    );
    assert_eq!(client["createdByType"], "user");
    assert_eq!(client["allowedAuthMethods"], json!(["client_secret"]));
    assert_eq!(client["updatedAt"], client["createdAt"]);
    assert_eq!(client["appType"], "web", "one of Qlik's appType values");
    assert_eq!(
        client["allowedGrantTypes"],
        json!(["client_credentials", IMPERSONATION])
    );
    let hints = client["clientSecrets"].as_array().unwrap();
    assert_eq!(hints.len(), 1);
    assert_eq!(hints[0]["hint"], fake.oauth.hint.as_str());
    assert_eq!(hints[0]["createdBy"], fake.admin.user_id.as_str());
    assert!(hints[0].get("clientSecret").is_none() && hints[0].get("secret").is_none());
    let old_hint = fake.oauth.hint.clone();
    assert!(
        first.ends_with(&old_hint) && old_hint.len() == 4,
        "suffix by default"
    );

    // A new secret: no body, 201, shown once; both secrets work in between (rotation).
    fake.advance_clock(3600);
    let created = send_body(
        &raw,
        Method::POST,
        &secrets_path(&fake),
        None,
        reqwest::Body::from(""),
    )
    .await;
    assert_eq!(created.status, StatusCode::UNAUTHORIZED, "no bearer");
    let created = raw
        .send(Method::POST, &secrets_path(&fake), Some(admin), None)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let created = created.json();
    assert_eq!(
        field_names(&created),
        ["clientId", "clientSecret", "createdAt", "createdBy", "hint"]
    );
    assert_eq!(created["clientId"], fake.oauth.client_id.as_str());
    assert_eq!(created["createdBy"], fake.admin.user_id.as_str());
    assert!(
        ts(&created["createdAt"])
            .duration_since(fake.now())
            .as_secs()
            .abs()
            <= 2
    );
    let second = created["clientSecret"].as_str().unwrap().to_string();
    let new_hint = created["hint"].as_str().unwrap().to_string();
    assert!(second.len() > new_hint.len() && second != first);
    let listed = raw.get(&client_path(&fake), admin).await;
    assert!(!listed.text.contains(&second) && listed.text.contains(&new_hint));
    let with_old = seed_token(&raw, &fake).await;
    mint(&raw, cc_body(&fake.oauth.client_id, &second)).await;

    // Delete the old one by its hint: it stops working, tokens minted with it do not.
    let old_path = format!("{}/{old_hint}", secrets_path(&fake));
    assert_eq!(
        raw.delete(&old_path, admin).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        post_token(&raw, seed_body(&fake)).await.status,
        StatusCode::UNAUTHORIZED
    );
    mint(&raw, cc_body(&fake.oauth.client_id, &second)).await;
    assert_eq!(
        me_status(&raw, &with_old).await,
        StatusCode::MOVED_PERMANENTLY
    );
    let again = raw.delete(&old_path, admin).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&again), "OAUTH-FAKE-NOT-FOUND");
    let unknown_client = "/api/v1/oauth-clients/00000000000000000000000000000000";
    assert_eq!(
        raw.get(unknown_client, admin).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        raw.send(
            Method::POST,
            &format!("{unknown_client}/client-secrets"),
            Some(admin),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        raw.delete(
            &format!("{unknown_client}/client-secrets/{new_hint}"),
            admin
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // At most 5: the 6th is 409.
    let mut secrets = vec![second.clone()];
    for _ in 0..4 {
        let made = raw
            .send(Method::POST, &secrets_path(&fake), Some(admin), None)
            .await;
        assert_eq!(made.status, StatusCode::CREATED);
        secrets.push(made.json()["clientSecret"].as_str().unwrap().to_string());
    }
    let sixth = raw
        .send(Method::POST, &secrets_path(&fake), Some(admin), None)
        .await;
    assert_eq!(sixth.status, StatusCode::CONFLICT);
    assert!(is_json(&sixth));
    let error = only_error(&sixth.json()).clone();
    assert_eq!(
        (error["code"].clone(), error["status"].clone()),
        (json!("OAUTH-FAKE-SECRET-LIMIT"), json!("409"))
    );
    assert!(
        error["detail"].as_str().unwrap().contains("is 5"),
        "{error}"
    );

    // The control lists the same 5 hints and no secret; so does the API.
    let control = raw
        .control(
            Method::GET,
            &format!("/__fake/oauth-clients/{}/secrets", fake.oauth.client_id),
            None,
        )
        .await;
    let api = raw.get(&client_path(&fake), admin).await;
    for secret in secrets.iter().chain([&first]) {
        assert!(!control.text.contains(secret.as_str()));
        assert!(!api.text.contains(secret.as_str()));
        assert!(
            !raw.control(Method::GET, "/__fake/oauth-clients", None)
                .await
                .text
                .contains(secret.as_str())
        );
    }
    let control_hints: Vec<Value> = control.json()["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hint"].clone())
        .collect();
    let api_hints: Vec<Value> = api.json()["clientSecrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hint"].clone())
        .collect();
    assert_eq!((control_hints.len(), &control_hints), (5, &api_hints));
    for (secret, hint) in secrets.iter().zip(&control_hints) {
        assert!(secret.ends_with(hint.as_str().unwrap()));
    }

    // Switch: deleting a secret revokes the live tokens minted with it.
    fake.update_settings(SettingsPatch {
        oauth_secret_delete_revokes_tokens: Some(true),
        ..Default::default()
    })
    .unwrap();
    let doomed = access_token(&raw, cc_body(&fake.oauth.client_id, &secrets[1])).await;
    let kept = access_token(&raw, cc_body(&fake.oauth.client_id, &secrets[2])).await;
    let doomed_hint = control_hints[1].as_str().unwrap();
    assert_eq!(
        raw.delete(&format!("{}/{doomed_hint}", secrets_path(&fake)), admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(me_status(&raw, &doomed).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&raw, &kept).await, StatusCode::MOVED_PERMANENTLY);
}

#[tokio::test]
async fn oauth_clients_list_pages_sorts_filters_and_permissions() {
    let (fake, raw) = started().await;
    let admin = &fake.admin.api_key;
    // Five clients in creation order: the seed one, then four more a second apart.
    let mut ids = vec![fake.oauth.client_id.clone()];
    let mut secrets = vec![fake.oauth.client_secret.clone()];
    for name in ["delta", "alpha", "echo", "bravo"] {
        fake.advance_clock(1);
        let (id, secret) = control_client(&raw, json!({"name": name})).await;
        ids.push(id);
        secrets.push(secret);
    }
    let list = "/api/v1/oauth-clients";
    let ids_of = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["clientId"].as_str().unwrap().to_string())
            .collect()
    };

    // Unauthenticated 401; a user who is not an admin 403.
    assert_eq!(
        raw.send(Method::GET, list, None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refused = raw.get(list, &fake.service.api_key).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&refused), "OAUTH-FAKE-FORBIDDEN");
    assert_eq!(only_error(&refused.json())["status"], "403");

    // A TenantAdmin pages through all five in creation order by absolute next links; each
    // item is what GET one answers; no secret anywhere.
    let (mut href, mut seen, mut pages) = (format!("{list}?limit=2"), Vec::new(), 0);
    loop {
        let page = raw.get(&href, admin).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(secrets.iter().all(|s| !page.text.contains(s.as_str())));
        let page = page.json();
        pages += 1;
        assert!(page.get("totalResults").is_none(), "only when asked");
        assert!(page["links"]["self"]["href"].is_string());
        assert_eq!(page["links"].get("prev").is_some(), pages > 1);
        seen.extend(ids_of(&page));
        match page["links"].get("next") {
            Some(next) => {
                href = next["href"].as_str().unwrap().to_string();
                assert!(href.starts_with("https://127.0.0.1:") && href.contains("limit=2"));
            }
            None => break,
        }
    }
    assert_eq!((pages, &seen), (3, &ids), "default sort +createdAt");
    let whole = raw.get(list, admin).await.json();
    let one = raw.get(&client_path(&fake), admin).await.json();
    assert_eq!(whole["data"][0], one);
    let first = raw.get(&format!("{list}?limit=2"), admin).await.json();
    let second = follow(&raw, &first, "next", admin).await;
    let back = follow(&raw, &second, "prev", admin).await;
    assert_eq!(back["data"], first["data"]);

    // Sorts, filters and totalResults, as getOAuthClients types them.
    let names = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["clientName"].as_str().unwrap().to_string())
            .collect()
    };
    let sorted = raw
        .get(&format!("{list}?sort=-clientName"), admin)
        .await
        .json();
    assert_eq!(
        names(&sorted),
        ["fake-qlik-m2m", "echo", "delta", "bravo", "alpha"]
    );
    let sorted = raw
        .get(&format!("{list}?sort=%2BclientId"), admin)
        .await
        .json();
    let mut ascending = ids.clone();
    ascending.sort();
    assert_eq!(ids_of(&sorted), ascending);
    let newest = raw
        .get(&format!("{list}?sort=-createdAt&limit=1"), admin)
        .await
        .json();
    assert_eq!(ids_of(&newest), [ids[4].clone()]);
    let filtered = |filter: &str| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("filter", filter)
            .append_pair("totalResults", "true")
            .append_pair("limit", "1")
            .finish();
        let raw = &raw;
        async move { raw.get(&format!("{list}?{query}"), admin).await }
    };
    for (filter, total) in [
        (r#"clientName eq "alpha""#.to_string(), 1),
        (
            format!(r#"appType eq "web" AND clientId eq "{}""#, ids[0]),
            1,
        ),
        (
            r#"appType eq "web" and createdByType eq "user""#.to_string(),
            5,
        ),
        (format!(r#"tenantId eq "{}""#, fake.tenant_id), 5),
        (r#"appType eq "spa""#.to_string(), 0),
    ] {
        let answer = filtered(&filter).await;
        assert_eq!(answer.status, StatusCode::OK, "{filter}: {}", answer.text);
        let answer = answer.json();
        assert_eq!(answer["totalResults"], total, "{filter}");
        assert_eq!(
            answer["data"].as_array().unwrap().len(),
            total.min(1),
            "{filter}"
        );
    }
    assert_eq!(
        ids_of(&filtered(r#"clientName eq "alpha""#).await.json()),
        [ids[2].clone()]
    );
    for bad in [
        r#"clientName co "a""#,
        r#"secret eq "x""#,
        r#"clientName eq "alpha" or appType eq "web""#,
        r#"clientName eq "unterminated"#,
    ] {
        let answer = filtered(bad).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(&answer), "OAUTH-FAKE-BAD-REQUEST");
    }
    let cursor = first["links"]["next"]["href"].as_str().unwrap();
    let cursor = cursor.split("next=").nth(1).unwrap();
    for bad in [
        "limit=0".to_string(),
        "limit=101".to_string(),
        "sort=clientName".to_string(),
        "sort=-expiry".to_string(),
        "totalResults=yes".to_string(),
        "next=garbage".to_string(),
        format!("next={cursor}&prev={cursor}"),
    ] {
        let answer = raw.get(&format!("{list}?{bad}"), admin).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.text
        );
        assert_eq!(only_error(&answer.json())["status"], "400");
    }

    // A client's bot sees its own client only; a token impersonating the admin sees all.
    let own = seed_token(&raw, &fake).await;
    assert_eq!(ids_of(&raw.get(list, &own).await.json()), [ids[0].clone()]);
    let other = access_token(&raw, cc_body(&ids[1], &secrets[1])).await;
    assert_eq!(
        ids_of(&raw.get(list, &other).await.json()),
        [ids[1].clone()]
    );
    let as_admin = access_token(
        &raw,
        impersonation_body(&fake, "userId", &fake.admin.user_id),
    )
    .await;
    assert_eq!(ids_of(&raw.get(list, &as_admin).await.json()), ids);

    // §6.1 switch: bots get 403, as for GET one; tenant admins still list every client.
    fake.update_settings(SettingsPatch {
        oauth_secrets_admin_only: Some(true),
        null_page_links: Some(true),
        ..Default::default()
    })
    .unwrap();
    let refused = raw.get(list, &own).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        only_error(&refused.json())["detail"]
            .as_str()
            .unwrap()
            .contains("oauth_secrets_admin_only")
    );
    let everything = raw.get(list, admin).await.json();
    assert_eq!(ids_of(&everything), ids);
    assert_eq!(everything["links"]["next"], json!({"href": null}));
    assert_eq!(everything["links"]["prev"], json!({"href": null}));
}

#[tokio::test]
async fn secret_hints_never_reveal_the_secret_in_every_style() {
    let (fake, raw) = started().await;
    let admin = &fake.admin.api_key;
    for (style, check) in [
        (SecretHint::Suffix, "suffix"),
        (SecretHint::Prefix, "prefix"),
        (SecretHint::Opaque, "opaque"),
    ] {
        fake.update_settings(SettingsPatch {
            oauth_secret_hint: Some(style),
            ..Default::default()
        })
        .unwrap();
        let made = raw
            .send(Method::POST, &secrets_path(&fake), Some(admin), None)
            .await;
        assert_eq!(made.status, StatusCode::CREATED);
        let made = made.json();
        let (secret, hint) = (
            made["clientSecret"].as_str().unwrap(),
            made["hint"].as_str().unwrap(),
        );
        assert_eq!(secret.len(), 64);
        match check {
            "suffix" => assert!(hint.len() == 4 && secret.ends_with(hint)),
            "prefix" => assert!(hint.len() == 4 && secret.starts_with(hint)),
            _ => assert!(hint.len() == 8 && !secret.contains(hint)),
        }
        let client = raw.get(&client_path(&fake), admin).await;
        assert!(client.text.contains(hint) && !client.text.contains(secret));
        // The hint names the secret for DELETE; it is not a credential.
        assert_eq!(
            post_token(&raw, cc_body(&fake.oauth.client_id, hint))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        mint(&raw, cc_body(&fake.oauth.client_id, secret)).await;
    }
}

#[tokio::test]
async fn a_secret_is_deleted_by_its_opaque_hint() {
    let fake = start_fake_with(SettingsPatch {
        oauth_secret_hint: Some(SecretHint::Opaque),
        oauth_secret_delete_revokes_tokens: Some(true),
        ..Default::default()
    })
    .await;
    let raw = Raw::new(&fake, false);
    let admin = &fake.admin.api_key;
    let made = raw
        .send(Method::POST, &secrets_path(&fake), Some(admin), None)
        .await
        .json();
    let (secret, hint) = (
        made["clientSecret"].as_str().unwrap().to_string(),
        made["hint"].as_str().unwrap().to_string(),
    );
    assert!(hint.len() == 8 && !secret.contains(&hint), "opaque: {hint}");
    let doomed = access_token(&raw, cc_body(&fake.oauth.client_id, &secret)).await;
    let kept = seed_token(&raw, &fake).await;

    let path = format!("{}/{hint}", secrets_path(&fake));
    assert_eq!(
        raw.delete(&path, admin).await.status,
        StatusCode::NO_CONTENT
    );
    let client = raw.get(&client_path(&fake), admin).await;
    assert!(!client.text.contains(&hint), "{}", client.text);
    assert_eq!(
        post_token(&raw, cc_body(&fake.oauth.client_id, &secret))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me_status(&raw, &doomed).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&raw, &kept).await, StatusCode::MOVED_PERMANENTLY);
    seed_token(&raw, &fake).await;
    assert_eq!(raw.delete(&path, admin).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn who_may_manage_client_secrets() {
    let (fake, raw) = started().await;
    let create = |token: String| {
        let raw = &raw;
        let path = secrets_path(&fake);
        async move { raw.send(Method::POST, &path, Some(&token), None).await }
    };

    // A TenantAdmin's API key: yes. A user who is not an admin: 403 on all three routes.
    assert_eq!(
        create(fake.admin.api_key.clone()).await.status,
        StatusCode::CREATED
    );
    let service = &fake.service.api_key;
    assert_eq!(
        raw.get(&client_path(&fake), service).await.status,
        StatusCode::FORBIDDEN
    );
    let refused = create(service.clone()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&refused), "OAUTH-FAKE-FORBIDDEN");
    let hint_path = format!("{}/{}", secrets_path(&fake), fake.oauth.hint);
    assert_eq!(
        raw.delete(&hint_path, service).await.status,
        StatusCode::FORBIDDEN
    );

    // The client's own token, by default: yes.
    let own = seed_token(&raw, &fake).await;
    assert_eq!(
        raw.get(&client_path(&fake), &own).await.status,
        StatusCode::OK
    );
    let made = create(own.clone()).await;
    assert_eq!(made.status, StatusCode::CREATED);
    let bot = bot_of(&fake, &fake.oauth.client_id).unwrap();
    assert_eq!(made.json()["createdBy"], bot.as_str());
    let made_hint = made.json()["hint"].as_str().unwrap().to_string();
    assert_eq!(
        raw.delete(&format!("{}/{made_hint}", secrets_path(&fake)), &own)
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    // Another client's bot: no. A token impersonating the tenant admin: yes (acts as them).
    let (other, other_secret) = control_client(&raw, json!({"name": "other"})).await;
    let other_token = access_token(&raw, cc_body(&other, &other_secret)).await;
    assert_eq!(
        raw.get(&client_path(&fake), &other_token).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        create(other_token.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    let as_admin = access_token(
        &raw,
        impersonation_body(&fake, "userId", &fake.admin.user_id),
    )
    .await;
    assert_eq!(create(as_admin).await.status, StatusCode::CREATED);

    // §6.1 switch: the client's own token gets 403; a TenantAdmin's key still may.
    fake.update_settings(SettingsPatch {
        oauth_secrets_admin_only: Some(true),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        raw.get(&client_path(&fake), &own).await.status,
        StatusCode::FORBIDDEN
    );
    let refused = create(own.clone()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        only_error(&refused.json())["detail"]
            .as_str()
            .unwrap()
            .contains("oauth_secrets_admin_only")
    );
    assert_eq!(
        raw.delete(&hint_path, &own).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        create(fake.admin.api_key.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        raw.delete(&hint_path, &fake.admin.api_key).await.status,
        StatusCode::NO_CONTENT
    );
    // The token itself still works elsewhere.
    assert_eq!(me_status(&raw, &own).await, StatusCode::MOVED_PERMANENTLY);
}

#[tokio::test]
async fn a_maximum_of_live_tokens_per_user() {
    let fake = start_fake_with(SettingsPatch {
        oauth_max_tokens_per_user: Some(2),
        ..Default::default()
    })
    .await;
    let raw = Raw::new(&fake, false);
    let as_service = || impersonation_body(&fake, "userId", &fake.service.user_id);
    let assert_limited = |refused: Answer| {
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        assert!(is_json(&refused));
        let error = only_error(&refused.json()).clone();
        assert_eq!(error["code"], "OAUTH-FAKE-TOKEN-LIMIT");
        assert!(
            error["detail"]
                .as_str()
                .unwrap()
                .contains("maximum number of tokens"),
            "{error}"
        );
    };
    // The bot (client credentials) and the impersonated user count apart: two each.
    let first = seed_token(&raw, &fake).await;
    mint(&raw, as_service()).await;
    seed_token(&raw, &fake).await;
    mint(&raw, as_service()).await;
    assert_limited(post_token(&raw, seed_body(&fake)).await);
    assert_limited(post_token(&raw, as_service()).await);
    // Another user impersonated by the same client has a count of its own.
    mint(
        &raw,
        impersonation_body(&fake, "userId", &fake.admin.user_id),
    )
    .await;
    // Another client's bot has its own count, but the service user is full for every
    // client: the count is the user's, not the client's.
    let (other, secret) = control_client(&raw, json!({"name": "other"})).await;
    mint(&raw, cc_body(&other, &secret)).await;
    mint(&raw, cc_body(&other, &secret)).await;
    assert_limited(post_token(&raw, cc_body(&other, &secret)).await);
    let mut other_as_service = as_service();
    other_as_service["client_id"] = json!(other);
    other_as_service["client_secret"] = json!(secret);
    assert_limited(post_token(&raw, other_as_service).await);
    let tokens_of = |user: &str| {
        fake.oauth_tokens(&fake.oauth.client_id, false)
            .into_iter()
            .chain(fake.oauth_tokens(&other, false))
            .filter(|t| t.user_id == user)
            .count()
    };
    assert_eq!(tokens_of(&fake.service.user_id), 2);

    // A revoked token no longer counts, nor does an expired one.
    post_revoke(&raw, json!({"token": first})).await;
    seed_token(&raw, &fake).await;
    assert_limited(post_token(&raw, seed_body(&fake)).await);
    fake.advance_clock(6 * 3600);
    seed_token(&raw, &fake).await;
    seed_token(&raw, &fake).await;
    fake.update_settings(SettingsPatch {
        oauth_error_style: Some(OAuthErrorStyle::Rfc6749),
        ..Default::default()
    })
    .unwrap();
    let refused = post_token(&raw, seed_body(&fake)).await;
    assert_eq!(
        (refused.status, refused.json()["error"].clone()),
        (StatusCode::FORBIDDEN, json!("access_denied"))
    );
    fake.update_settings(SettingsPatch {
        oauth_max_tokens_per_user: Some(0),
        ..Default::default()
    })
    .unwrap();
    seed_token(&raw, &fake).await;
}

#[tokio::test]
async fn the_token_endpoint_counts_against_the_bots_tier_2() {
    // A window far longer than the test, even on a loaded machine: the count, not the
    // clock, decides every answer below (nothing waits for the window to end).
    const LIMIT: u32 = 3;
    const WINDOW: u64 = 60;
    let fake = start_fake_with(SettingsPatch {
        tier2_per_window: Some(LIMIT),
        rate_window_seconds: Some(WINDOW),
        ..Default::default()
    })
    .await;
    let raw = Raw::new(&fake, false);
    // Exactly LIMIT tier-2 calls of the bot pass: two tokens and, in between, the bot's own
    // secret create with its token.
    let token = seed_token(&raw, &fake).await; // 1
    let made = raw
        .send(Method::POST, &secrets_path(&fake), Some(&token), None)
        .await; // 2: the bot's own tier-2 call
    assert_eq!(made.status, StatusCode::CREATED);
    seed_token(&raw, &fake).await; // 3 = LIMIT
    // Call LIMIT + 1 is refused.
    let limited = post_token(&raw, seed_body(&fake)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(is_json(&limited));
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=WINDOW).contains(&retry_after), "{retry_after}");
    assert_eq!(
        fake.oauth_tokens(&fake.oauth.client_id, false).len(),
        2,
        "the refused call issued nothing"
    );
    assert_eq!(only_error(&limited.json())["code"], "HTTP-429");
    // A wrong secret for this client is counted too (429, not 401); the bot's other tier-2
    // calls and /oauth/revoke of its tokens are blocked; its tier 1 is not.
    assert_eq!(
        post_token(&raw, cc_body(&fake.oauth.client_id, "wrong"))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let hint = made.json()["hint"].as_str().unwrap().to_string();
    assert_eq!(
        raw.delete(&format!("{}/{hint}", secrets_path(&fake)), &token)
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let revoke = post_revoke(&raw, json!({"token": token})).await;
    assert_eq!(revoke.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(is_json(&revoke));
    assert_eq!(me_status(&raw, &token).await, StatusCode::MOVED_PERMANENTLY);
    // Another client's bot, an unknown client and API-key users are not limited by it.
    let (other, secret) = control_client(&raw, json!({"name": "other"})).await;
    mint(&raw, cc_body(&other, &secret)).await;
    assert_eq!(
        post_token(&raw, cc_body("nobody", "x")).await.status,
        StatusCode::UNAUTHORIZED
    );
    raw.create_key(&fake.admin.api_key, "admin unaffected", None)
        .await;

    // A settings change restarts every window: the bot gets tokens again at once.
    fake.update_settings(SettingsPatch {
        tier2_per_window: Some(LIMIT),
        ..Default::default()
    })
    .unwrap();
    seed_token(&raw, &fake).await;
    fake.update_settings(SettingsPatch {
        rate_limits_enabled: Some(false),
        ..Default::default()
    })
    .unwrap();
    for _ in 0..5 {
        seed_token(&raw, &fake).await;
    }
}

#[tokio::test]
async fn faults_and_the_request_log_on_the_oauth_routes() {
    let (fake, raw) = started().await;
    let admin = &fake.admin.api_key;
    let client = fake.oauth.client_id.clone();
    let fault = |body: Value| {
        let raw = &raw;
        async move {
            let answer = raw
                .control(Method::POST, "/__fake/faults", Some(body))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        }
    };

    // 5xx, then normal again; the answer is JSON.
    fault(json!({"path_prefix": "/oauth/token", "status": 503})).await;
    let down = post_token(&raw, seed_body(&fake)).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(is_json(&down));
    assert!(
        fake.oauth_tokens(&client, true).is_empty(),
        "Qlik did not act"
    );
    let token = seed_token(&raw, &fake).await;

    // 429 with retry-after, JSON.
    fault(json!({"path_prefix": "/oauth/token", "status": 429, "retry_after": 7})).await;
    let limited = post_token(&raw, seed_body(&fake)).await;
    assert_eq!(
        (
            limited.status,
            limited.headers["retry-after"].to_str().unwrap()
        ),
        (StatusCode::TOO_MANY_REQUESTS, "7")
    );
    assert!(is_json(&limited));

    // Slow: delay before, then handled.
    fault(json!({"path_prefix": "/oauth/token", "delay_before_ms": 300})).await;
    let started = Instant::now();
    seed_token(&raw, &fake).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Connection dropped after the tenant acted: a token was issued, the client saw nothing.
    let live_before = fake.oauth_tokens(&client, false).len();
    fake.inject_fault(FaultSpec {
        path_prefix: Some("/oauth/token".into()),
        kind: Some(FaultKind::DropConnection),
        ..Default::default()
    });
    let line = dropped_oauth_post(&raw, &fake, "/oauth/token", &seed_body(&fake)).await;
    let live = fake.oauth_tokens(&client, false);
    assert_eq!(live.len(), live_before + 1, "the token was issued");
    assert_eq!(line.client_id.as_deref(), Some(client.as_str()));
    assert_eq!(
        line.token_id.as_deref(),
        Some(live.last().unwrap().id.as_str())
    );

    // The same for a client secret and for a revoke.
    let secrets_before = fake.oauth_clients()[0].secrets.len();
    fake.inject_fault(FaultSpec {
        method: Some("POST".into()),
        path_prefix: Some("/api/v1/oauth-clients/".into()),
        kind: Some(FaultKind::DropConnection),
        ..Default::default()
    });
    let dropped = raw
        .http
        .post(format!("{}{}", raw.base, secrets_path(&fake)))
        .bearer_auth(admin)
        .send()
        .await;
    assert!(dropped.is_err());
    assert_eq!(fake.oauth_clients()[0].secrets.len(), secrets_before + 1);
    let line = fake.requests().last().unwrap().clone();
    assert_eq!((line.status, line.handled_status), (0, Some(201)));
    assert_eq!(line.key_id.as_deref(), Some(fake.admin.key_id.as_str()));
    fake.inject_fault(FaultSpec {
        path_prefix: Some("/oauth/revoke".into()),
        kind: Some(FaultKind::DropConnection),
        ..Default::default()
    });
    let token_id = fake
        .oauth_tokens(&client, false)
        .into_iter()
        .next()
        .unwrap()
        .id;
    // The tenant revoked it before the drop, and its log line says which token and client.
    let line = dropped_oauth_post(&raw, &fake, "/oauth/revoke", &json!({"token": token})).await;
    assert_eq!(
        (line.client_id.as_deref(), line.token_id.as_deref()),
        (Some(client.as_str()), Some(token_id.as_str()))
    );
    assert_eq!(line.key_id, None);
    assert_eq!(me_status(&raw, &token).await, StatusCode::UNAUTHORIZED);

    // A status fault on a secret write: nothing created.
    fault(json!({"method": "POST", "path_prefix": "/api/v1/oauth-clients", "status": 500})).await;
    let failed = raw
        .send(Method::POST, &secrets_path(&fake), Some(admin), None)
        .await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(fake.oauth_clients()[0].secrets.len(), secrets_before + 1);

    // Malformed JSON after a real issue.
    fake.inject_fault(FaultSpec {
        path_prefix: Some("/oauth/token".into()),
        kind: Some(FaultKind::MalformedJson),
        ..Default::default()
    });
    let before = fake.oauth_tokens(&client, false).len();
    let broken = post_token(&raw, seed_body(&fake)).await;
    assert_eq!(broken.status, StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&broken.text).is_err());
    assert_eq!(fake.oauth_tokens(&client, false).len(), before + 1);

    // An outage: everything 503 until cleared, the token routes and bearer calls included.
    let fresh = seed_token(&raw, &fake).await;
    fault(json!({"status": 503, "count": 1000})).await;
    assert_eq!(
        post_token(&raw, seed_body(&fake)).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        raw.get("/api/v1/oauth-tokens", &fresh).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        post_revoke(&raw, json!({"token": fresh})).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        raw.send(Method::POST, &secrets_path(&fake), Some(admin), None)
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    raw.control(Method::DELETE, "/__fake/faults", None).await;
    assert_eq!(fake.pending_faults(), 0);
    assert_eq!(
        me_status(&raw, &fresh).await,
        StatusCode::MOVED_PERMANENTLY,
        "the outage revoked nothing"
    );

    // The log counts every call with the credential that made it, and no secret or token.
    let log = raw.control(Method::GET, "/__fake/requests", None).await;
    assert!(!log.text.contains(&fake.oauth.client_secret));
    assert!(!log.text.contains(&fresh) && !log.text.contains(&token));
    assert_eq!(
        fake.count_requests("POST", "/oauth/token"),
        8,
        "{}",
        log.text
    );
    let token_lines: Vec<Value> = log.json()["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == "/oauth/token")
        .cloned()
        .collect();
    assert!(
        token_lines
            .iter()
            .all(|r| r["client_id"] == client.as_str())
    );
    let faults: Vec<&str> = token_lines
        .iter()
        .map(|r| r["fault"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        faults,
        [
            "status",
            "-",
            "status",
            "delay",
            "drop_connection",
            "malformed_json",
            "-",
            "status"
        ]
    );
}

#[tokio::test]
async fn tokens_and_secrets_follow_the_movable_clock() {
    let (fake, raw) = started().await;
    let client = fake.oauth.client_id.clone();
    fake.advance_clock(30 * 86400);
    let answer = post_token(&raw, seed_body(&fake)).await;
    let now = fake.now();
    let date = jiff::fmt::rfc2822::parse(answer.headers["date"].to_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        date.duration_since(now).as_secs().abs() <= 2,
        "Date is the tenant's clock"
    );
    let body = answer.json();
    assert!(
        (ts(&body["expires_at"]).duration_since(now).as_secs() - 21600).abs() <= 2,
        "expires_at from the tenant's clock, 30 days ahead of real time: {body}"
    );
    let view = &fake.oauth_tokens(&client, false)[0];
    assert!(
        ts(&json!(view.issued_at))
            .duration_since(now)
            .as_secs()
            .abs()
            <= 2
    );

    // A shorter life from the settings, and the §6.5 switch.
    let refused = raw
        .control(
            Method::POST,
            "/__fake/settings",
            Some(json!({"oauth_token_life": "soon"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let settings = raw
        .control(
            Method::POST,
            "/__fake/settings",
            Some(json!({"oauth_token_life": "PT1H"})),
        )
        .await
        .json();
    assert_eq!(settings["settings"]["oauth_token_life"], "PT1H");
    let short = mint(&raw, seed_body(&fake)).await;
    assert_eq!(short["expires_in"], 3600);
    let short_token = short["access_token"].as_str().unwrap();
    fake.advance_clock(3599);
    assert_eq!(
        me_status(&raw, short_token).await,
        StatusCode::MOVED_PERMANENTLY
    );
    fake.advance_clock(2);
    assert_eq!(me_status(&raw, short_token).await, StatusCode::UNAUTHORIZED);
    fake.update_settings(SettingsPatch {
        oauth_omit_expires_in: Some(true),
        ..Default::default()
    })
    .unwrap();
    let no_expires_in = mint(&raw, seed_body(&fake)).await;
    assert!(no_expires_in.get("expires_in").is_none(), "{no_expires_in}");
    assert!(
        (ts(&no_expires_in["expires_at"])
            .duration_since(fake.now())
            .as_secs()
            - 3600)
            .abs()
            <= 2
    );
    // Both left out: the client's last fallback (the documented 6 h) is all there is.
    fake.update_settings(SettingsPatch {
        oauth_omit_expires_at: Some(true),
        ..Default::default()
    })
    .unwrap();
    let neither = mint(&raw, seed_body(&fake)).await;
    let fields = field_names(&neither);
    assert_eq!(fields, ["access_token", "scope", "token_type"], "{neither}");
    // Only expires_at left out: expires_in alone.
    let settings = raw
        .control(
            Method::POST,
            "/__fake/settings",
            Some(json!({"oauth_omit_expires_in": false})),
        )
        .await
        .json();
    assert_eq!(settings["settings"]["oauth_omit_expires_at"], true);
    let only_in = mint(&raw, seed_body(&fake)).await;
    assert!(only_in.get("expires_at").is_none(), "{only_in}");
    assert_eq!(only_in["expires_in"], 3600);
    let neither_token = neither["access_token"].as_str().unwrap();
    assert_eq!(
        me_status(&raw, neither_token).await,
        StatusCode::MOVED_PERMANENTLY
    );
    fake.update_settings(SettingsPatch {
        oauth_omit_expires_at: Some(false),
        ..Default::default()
    })
    .unwrap();

    // The clock going back makes an expired token live again: validity is computed, not
    // stored (as for API keys).
    fake.advance_clock(-2);
    assert_eq!(
        me_status(&raw, short_token).await,
        StatusCode::MOVED_PERMANENTLY
    );
    // Secrets carry the tenant's clock too (made by the bot: the seed API keys expired).
    let bot_token = seed_token(&raw, &fake).await;
    let made = raw
        .send(Method::POST, &secrets_path(&fake), Some(&bot_token), None)
        .await
        .json();
    assert!(
        ts(&made["createdAt"])
            .duration_since(fake.now())
            .as_secs()
            .abs()
            <= 2
    );
}

#[tokio::test]
async fn every_oauth_answer_is_json() {
    let (_fake, raw) = started().await;
    for (method, path) in [
        (Method::GET, "/oauth/token"),
        (Method::PUT, "/oauth/token"),
        (Method::GET, "/oauth/revoke"),
    ] {
        let answer = method_not_allowed(&raw, method, path).await;
        assert!(is_json(&answer), "{}", answer.text);
    }
    let big = format!("{{\"client_id\":\"{}\"}}", "x".repeat(70 * 1024));
    let answer = post_json_text(&raw, "/oauth/token", big).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(is_json(&answer));
    let answer = post_json_text(&raw, "/oauth/revoke", "not json").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(is_json(&answer));
    let answer = raw.send(Method::GET, "/oauth/nothing", None, None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(is_json(&answer));
}

#[test]
fn binary_ready_line_names_an_oauth_client_and_curl_gets_and_uses_a_token() {
    let help = Command::new(env!("CARGO_BIN_EXE_fake-qlik"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for text in [
        "oauth_client_id",
        "oauth_client_secret",
        "--oauth-token-life",
        "--oauth-error-style",
        "--oauth-max-tokens",
        "--oauth-secrets-admin-only",
        "--oauth-hide-client-tokens",
        "--oauth-secret-hint",
        "--oauth-omit-expires-in",
        "--oauth-omit-expires-at",
        "--oauth-secret-delete-revokes-tokens",
        "--no-oauth-basic-auth",
    ] {
        assert!(help.contains(text), "--help names {text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut binary = FakeBinary::start(
        dir.path(),
        &[
            "--oauth-token-life",
            "PT1H",
            "--oauth-error-style",
            "rfc6749",
            "--oauth-secret-hint",
            "prefix",
        ],
    );
    let ready = binary.ready.clone();
    let (client_id, secret) = (
        ready["oauth_client_id"].as_str().unwrap(),
        ready["oauth_client_secret"].as_str().unwrap(),
    );
    assert!(client_id.len() == 32 && client_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(secret.len(), 64);
    let url = ready["url"].as_str().unwrap();

    let curl = |args: &[&str]| binary.curl(args);
    // The README's example: a form body, then the token as a bearer.
    let token = curl(&[
        "-d",
        "grant_type=client_credentials",
        "-d",
        &format!("client_id={client_id}"),
        "-d",
        &format!("client_secret={secret}"),
        &format!("{url}/oauth/token"),
    ]);
    assert_eq!(token["expires_in"], 3600, "{token}");
    let access_token = token["access_token"].as_str().unwrap();
    // The same with the client credentials in an HTTP Basic header (curl -u).
    let basic = curl(&[
        "-u",
        &format!("{client_id}:{secret}"),
        "-d",
        "grant_type=client_credentials",
        &format!("{url}/oauth/token"),
    ]);
    assert_eq!(basic["token_type"], "bearer", "{basic}");
    let me = curl(&[
        "-L",
        "-H",
        &format!("Authorization: Bearer {access_token}"),
        &format!("{url}/api/v1/users/me"),
    ]);
    assert_eq!(me["subject"], format!("qlikbot\\{client_id}").as_str());
    let wrong = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        &json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"})
            .to_string(),
        &format!("{url}/oauth/token"),
    ]);
    assert_eq!(wrong["error"], "invalid_client");
    let clients = curl(&[&format!("{url}/__fake/oauth-clients")]);
    let hint = clients["clients"][0]["secrets"][0]["hint"]
        .as_str()
        .unwrap();
    assert!(secret.starts_with(hint));

    binary.terminate();
}
