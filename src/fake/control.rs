//! Test controls under `/__fake/` (no auth: this is a test tool bound to loopback only).
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /__fake/keys` | — | `{"keys":[KeyView]}` every key, deleted ones too, never a token |
//! | `POST /__fake/faults` | `FaultSpec` | `{"ok":true}` |
//! | `DELETE /__fake/faults` | — | `{"ok":true}` |
//! | `GET /__fake/clock` | — | `{"now","offset_seconds"}` |
//! | `POST /__fake/clock` | `{"advance_seconds":N}` | `{"now","offset_seconds"}` |
//! | `POST /__fake/users` | `{"name","can_create_keys"=true,"tenant_admin"=false}` | `{"user_id","api_key","key_id"}` |
//! | `POST /__fake/users/{id}` | `{"can_create_keys"?,"tenant_admin"?}` | `{"ok":true}` |
//! | `GET /__fake/settings` | — | `{"settings":Settings,"config":TenantConfig}` |
//! | `POST /__fake/settings` | `SettingsPatch` (every field optional) | same as GET |
//! | `GET /__fake/requests` | — | `{"requests":[{"method","path","status","fault","key_id"}]}` in the order answered; `key_id`: the bearer's key |
//! | `DELETE /__fake/requests` | — | `{"ok":true}` |
//! | `GET /__fake/public-key` | — | `{"alg":"ES384","public_key":<base64url uncompressed P-384 point>}` |
//! | `GET /__fake/oauth-clients` | — | `{"clients":[ClientView]}`: every OAuth client, secret hints only, its bot once created |
//! | `POST /__fake/oauth-clients` | `{"name","allowed_grant_types"=both,"allowed_scopes"=["user_default","admin_classic"]}` | `{"client_id","client_secret","hint"}` |
//! | `GET /__fake/oauth-clients/{id}/secrets` | — | `{"secrets":[{"hint","created_at","created_by"}]}` never a secret |
//! | `GET /__fake/oauth-clients/{id}/tokens` | `?all=true` for expired and revoked ones too | `{"tokens":[TokenView]}` the client's live tokens (both grants), never a token |
//!
//! The request log's lines also carry `client_id` and `token_id` when an OAuth client or
//! access token called (see [`super::faults::RequestRecord`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::clock::rfc3339_millis;
use super::faults::FaultSpec;
use super::oauth::{DEFAULT_SCOPES, GRANT_CLIENT_CREDENTIALS, GRANT_IMPERSONATION};
use super::oauth::{OAuthErrorStyle, SecretHint};
use super::state::{ExpiryAboveMax, OwnerAdminDelete, parse_positive_duration};
use super::{Fake, KeyView};

pub fn router(fake: Arc<Fake>) -> Router {
    Router::new()
        .route("/__fake/keys", get(keys))
        .route("/__fake/faults", post(add_fault).delete(clear_faults))
        .route("/__fake/clock", get(clock).post(advance_clock))
        .route("/__fake/users", post(create_user))
        .route("/__fake/users/{id}", post(update_user))
        .route("/__fake/settings", get(settings).post(update_settings))
        .route("/__fake/requests", get(requests).delete(clear_requests))
        .route("/__fake/public-key", get(public_key))
        .route(
            "/__fake/oauth-clients",
            get(oauth_clients).post(create_oauth_client),
        )
        .route("/__fake/oauth-clients/{id}/secrets", get(oauth_secrets))
        .route("/__fake/oauth-clients/{id}/tokens", get(oauth_tokens))
        .with_state(fake)
}

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": message.into() })),
    )
        .into_response()
}

fn ok() -> Response {
    Json(json!({ "ok": true })).into_response()
}

async fn keys(State(fake): State<Arc<Fake>>) -> Json<serde_json::Value> {
    let keys: Vec<KeyView> = fake.keys();
    Json(json!({ "keys": keys }))
}

async fn add_fault(State(fake): State<Arc<Fake>>, Json(spec): Json<FaultSpec>) -> Response {
    fake.faults().add(spec);
    ok()
}

async fn clear_faults(State(fake): State<Arc<Fake>>) -> Response {
    fake.faults().clear();
    ok()
}

#[derive(Deserialize)]
struct Advance {
    advance_seconds: i64,
}

fn clock_json(fake: &Fake) -> Response {
    Json(json!({
        "now": rfc3339_millis(fake.clock.now()),
        "offset_seconds": fake.clock.offset().as_secs(),
    }))
    .into_response()
}

async fn clock(State(fake): State<Arc<Fake>>) -> Response {
    clock_json(&fake)
}

async fn advance_clock(State(fake): State<Arc<Fake>>, Json(advance): Json<Advance>) -> Response {
    fake.clock
        .advance(SignedDuration::from_secs(advance.advance_seconds));
    clock_json(&fake)
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    #[serde(default = "yes")]
    can_create_keys: bool,
    #[serde(default)]
    tenant_admin: bool,
}

fn yes() -> bool {
    true
}

async fn create_user(State(fake): State<Arc<Fake>>, Json(new): Json<NewUser>) -> Response {
    match fake.create_user(&new.name, new.can_create_keys, new.tenant_admin) {
        Ok(seed) => {
            Json(json!({ "user_id": seed.user_id, "api_key": seed.api_key, "key_id": seed.key_id }))
                .into_response()
        }
        Err(e) => bad_request(e.to_string()),
    }
}

#[derive(Deserialize)]
struct UserUpdate {
    can_create_keys: Option<bool>,
    tenant_admin: Option<bool>,
}

async fn update_user(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<String>,
    Json(update): Json<UserUpdate>,
) -> Response {
    let mut state = fake.state();
    let Some(user) = state.users.iter_mut().find(|u| u.id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "unknown user" })),
        )
            .into_response();
    };
    if let Some(v) = update.can_create_keys {
        user.can_create_keys = v;
    }
    if let Some(v) = update.tenant_admin {
        user.tenant_admin = v;
    }
    ok()
}

/// The highest `max_keys_per_user` the control endpoint accepts.
pub const MAX_KEYS_PER_USER_CONTROL: u32 = 100_000;

/// Every field optional; only the ones present change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub rate_limits_enabled: Option<bool>,
    pub tier1_per_window: Option<u32>,
    pub tier2_per_window: Option<u32>,
    pub rate_window_seconds: Option<u64>,
    pub key_limit_status: Option<u16>,
    pub expiry_above_max: Option<ExpiryAboveMax>,
    pub owner_admin_delete: Option<OwnerAdminDelete>,
    pub keys_require_permission: Option<bool>,
    pub null_page_links: Option<bool>,
    /// Tenant config `max_keys_per_user` (0–100,000 here; Qlik's own PATCH: 0–1000).
    pub max_keys_per_user: Option<u32>,
    /// Tenant config `max_api_key_expiry` (ISO 8601 duration).
    pub max_api_key_expiry: Option<String>,
    /// OAuth access-token life (ISO 8601 duration); applies to tokens issued after.
    pub oauth_token_life: Option<String>,
    pub oauth_error_style: Option<OAuthErrorStyle>,
    /// 0: no maximum.
    pub oauth_max_tokens_per_user: Option<u32>,
    pub oauth_secrets_admin_only: Option<bool>,
    pub oauth_hide_client_tokens: Option<bool>,
    /// Applies to secrets created after.
    pub oauth_secret_hint: Option<SecretHint>,
    pub oauth_omit_expires_in: Option<bool>,
    pub oauth_omit_expires_at: Option<bool>,
    pub oauth_secret_delete_revokes_tokens: Option<bool>,
    /// false: an HTTP Basic `Authorization` header is not read at `/oauth/*`.
    pub oauth_basic_auth: Option<bool>,
}

fn settings_json(fake: &Fake) -> Response {
    let state = fake.state();
    Json(json!({ "settings": state.settings, "config": state.config })).into_response()
}

async fn settings(State(fake): State<Arc<Fake>>) -> Response {
    settings_json(&fake)
}

async fn update_settings(
    State(fake): State<Arc<Fake>>,
    Json(patch): Json<SettingsPatch>,
) -> Response {
    if let Err(message) = fake.update_settings(patch) {
        return bad_request(message);
    }
    settings_json(&fake)
}

impl Fake {
    /// Applies a settings patch atomically; rate-limit windows restart.
    pub fn update_settings(&self, patch: SettingsPatch) -> Result<(), String> {
        if let Some(status) = patch.key_limit_status {
            StatusCode::from_u16(status).map_err(|_| format!("invalid status {status}"))?;
        }
        // Beyond Qlik's own 0-1000 (which the tenant-config PATCH keeps): load tests such as
        // `scripts/bench.sh --full` need 10,000 live keys.
        if let Some(n) = patch.max_keys_per_user
            && n > MAX_KEYS_PER_USER_CONTROL
        {
            return Err(format!(
                "max_keys_per_user must be 0-{MAX_KEYS_PER_USER_CONTROL}"
            ));
        }
        if let Some(text) = &patch.max_api_key_expiry {
            parse_positive_duration(text)?;
        }
        if let Some(text) = &patch.oauth_token_life {
            parse_positive_duration(text)?;
        }
        let mut state = self.state();
        let s = &mut state.settings;
        macro_rules! set {
            ($($field:ident),*) => {$( if let Some(v) = patch.$field.clone() { s.$field = v; } )*};
        }
        set!(
            rate_limits_enabled,
            tier1_per_window,
            tier2_per_window,
            rate_window_seconds,
            key_limit_status,
            expiry_above_max,
            owner_admin_delete,
            keys_require_permission,
            null_page_links,
            oauth_token_life,
            oauth_error_style,
            oauth_max_tokens_per_user,
            oauth_secrets_admin_only,
            oauth_hide_client_tokens,
            oauth_secret_hint,
            oauth_omit_expires_in,
            oauth_omit_expires_at,
            oauth_secret_delete_revokes_tokens,
            oauth_basic_auth
        );
        if let Some(n) = patch.max_keys_per_user {
            state.config.max_keys_per_user = n;
        }
        if let Some(text) = patch.max_api_key_expiry {
            state.config.max_api_key_expiry = text;
        }
        drop(state);
        self.limiter().reset();
        Ok(())
    }
}

async fn requests(State(fake): State<Arc<Fake>>) -> Response {
    let requests = fake.requests().clone();
    Json(json!({ "requests": requests })).into_response()
}

async fn clear_requests(State(fake): State<Arc<Fake>>) -> Response {
    fake.requests().clear();
    ok()
}

async fn public_key(State(fake): State<Arc<Fake>>) -> Response {
    Json(json!({ "alg": "ES384", "public_key": URL_SAFE_NO_PAD.encode(fake.signer.public_key()) }))
        .into_response()
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": what }))).into_response()
}

async fn oauth_clients(State(fake): State<Arc<Fake>>) -> Response {
    Json(json!({ "clients": fake.state().client_views() })).into_response()
}

fn both_grants() -> Vec<String> {
    vec![GRANT_CLIENT_CREDENTIALS.into(), GRANT_IMPERSONATION.into()]
}

fn default_scopes() -> Vec<String> {
    DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOAuthClient {
    name: String,
    #[serde(default = "both_grants")]
    allowed_grant_types: Vec<String>,
    #[serde(default = "default_scopes")]
    allowed_scopes: Vec<String>,
}

async fn create_oauth_client(
    State(fake): State<Arc<Fake>>,
    Json(new): Json<NewOAuthClient>,
) -> Response {
    match fake.create_oauth_client(&new.name, &new.allowed_grant_types, &new.allowed_scopes) {
        Ok(client) => Json(json!({
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "hint": client.hint,
        }))
        .into_response(),
        Err(e) => bad_request(e.to_string()),
    }
}

async fn oauth_secrets(State(fake): State<Arc<Fake>>, Path(id): Path<String>) -> Response {
    match fake
        .state()
        .client_views()
        .into_iter()
        .find(|c| c.client_id == id)
    {
        Some(client) => Json(json!({ "secrets": client.secrets })).into_response(),
        None => not_found("unknown client"),
    }
}

#[derive(Deserialize)]
struct TokensQuery {
    #[serde(default)]
    all: bool,
}

async fn oauth_tokens(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<TokensQuery>,
) -> Response {
    let state = fake.state();
    if state.oauth.client(&id).is_none() {
        return not_found("unknown client");
    }
    let tokens = state.token_views(&id, query.all, fake.clock.now());
    Json(json!({ "tokens": tokens })).into_response()
}
