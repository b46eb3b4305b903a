//! The Qlik Cloud REST routes the fake serves (qlik-api-keys.md §2, §4).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::Fake;
use super::errors::ApiError;
use super::rate_limit::Tier;
use super::state::{Page, User};

type ApiResult = Result<Response, ApiError>;

/// The api-keys, users and tenants routes; [`super::app`] adds the OAuth routes, the fallback
/// and the fault and `Date` layers.
pub fn routes() -> Router<Arc<Fake>> {
    Router::new()
        .route("/api/v1/api-keys", get(list_keys).post(create_key))
        .route(
            "/api/v1/api-keys/configs/{tenant_id}",
            get(get_config).patch(patch_config),
        )
        .route(
            "/api/v1/api-keys/{id}",
            get(get_key).patch(patch_key).delete(delete_key),
        )
        .route("/api/v1/users/me", get(users_me))
        .route("/api/v1/users/{id}", get(get_user))
        .route("/api/v1/tenants/me", get(tenants_me))
        .route("/api/v1/tenants/{id}", get(get_tenant))
}

/// Every answer's `Date` header tells the tenant's (movable) clock, as a real server's tells
/// its own: a client measures the skew between the tenant's clock and its own from it.
pub(super) async fn date_header(
    axum::extract::State(fake): axum::extract::State<Arc<Fake>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let date =
        jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&fake.clock.now());
    if let Ok(date) = date
        && let Ok(value) = axum::http::HeaderValue::from_str(&date)
    {
        response
            .headers_mut()
            .insert(axum::http::header::DATE, value);
    }
    response
}

/// Authenticates the bearer (§14.1) and then counts the call against its user's tier (§14.12).
/// The bearer is an API key (a JWT this tenant signed) or an OAuth access token (opaque),
/// which acts as its client's bot or the user it impersonates (qlik-oauth.md §2).
pub(super) fn caller(fake: &Fake, headers: &HeaderMap, tier: Tier) -> Result<User, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::unauthorized)?;
    let now = fake.clock.now();
    let user = match fake.signer.verify(token) {
        Ok(claims) => fake.state().authenticate(&claims, now)?,
        Err(_) => fake.state().authenticate_oauth(token, now)?,
    };
    count_call(fake, &user.id, tier)?;
    Ok(user)
}

/// The authenticated caller of an API call, as the last extractor of a handler: [`caller`]
/// with tier 2 when `WRITE`, else tier 1.
pub(super) struct Caller<const WRITE: bool> {
    pub fake: Arc<Fake>,
    pub user: User,
}

impl<const WRITE: bool> axum::extract::FromRequestParts<Arc<Fake>> for Caller<WRITE> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        fake: &Arc<Fake>,
    ) -> Result<Self, ApiError> {
        let tier = if WRITE { Tier::Two } else { Tier::One };
        let user = caller(fake, &parts.headers, tier)?;
        Ok(Self {
            fake: fake.clone(),
            user,
        })
    }
}

/// Counts one call of `user_id` in `tier`; 429 with `retry-after` when the tier is blocked.
pub(super) fn count_call(fake: &Fake, user_id: &str, tier: Tier) -> Result<(), ApiError> {
    let (enabled, limit, window) = {
        let state = fake.state();
        let s = &state.settings;
        let limit = match tier {
            Tier::One => s.tier1_per_window,
            Tier::Two => s.tier2_per_window,
        };
        (s.rate_limits_enabled, limit, s.rate_window_seconds)
    };
    if enabled {
        let window = Duration::from_secs(window.max(1));
        fake.limiter()
            .check(user_id, tier, limit, window)
            .map_err(ApiError::rate_limited)?;
    }
    Ok(())
}

/// A list call's query parameters (a repeated name keeps its last value).
pub(super) fn list_query(query: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The 200 of a paged list: `{"data": [...], "links": {...}}`.
pub(super) fn page_answer(page: Page) -> Response {
    Json(json!({ "data": page.data, "links": page.links })).into_response()
}

fn json_body(bytes: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))
}

async fn list_keys(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let user = caller(&fake, &headers, Tier::One)?;
    let query = list_query(query);
    let page = fake.state().list_keys(&user, &query, fake.clock.now())?;
    Ok(page_answer(page))
}

async fn create_key(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let user = caller(&fake, &headers, Tier::Two)?;
    let body = json_body(&body)?;
    let created = fake
        .state()
        .create_key(&fake.signer, &user, &body, fake.clock.now())?;
    tracing::info!(key_id = %created["id"], user_id = %user.id, "api key created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn get_key(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let user = caller(&fake, &headers, Tier::One)?;
    let key = fake.state().get_key(&user, &id, fake.clock.now())?;
    Ok(Json(key).into_response())
}

async fn patch_key(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let user = caller(&fake, &headers, Tier::Two)?;
    let body = json_body(&body)?;
    fake.state()
        .patch_key(&user, &id, &body, fake.clock.now())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_key(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let user = caller(&fake, &headers, Tier::Two)?;
    fake.state().delete_key(&user, &id, fake.clock.now())?;
    tracing::info!(key_id = %id, user_id = %user.id, "api key deleted or revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_config(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
) -> ApiResult {
    caller(&fake, &headers, Tier::One)?;
    Ok(Json(fake.state().get_config(&tenant_id)?).into_response())
}

async fn patch_config(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let user = caller(&fake, &headers, Tier::Two)?;
    let body = json_body(&body)?;
    fake.state().patch_config(&user, &tenant_id, &body)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The documented redirects (§4, §16.9): 301 for users/me, 302 for tenants/me.
fn redirect(status: StatusCode, location: &str) -> Response {
    let mut response = (
        status,
        format!(
            "<a href=\"{location}\">{}</a>.\n",
            status.canonical_reason().unwrap_or("")
        ),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    response
}

async fn users_me(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> ApiResult {
    let user = caller(&fake, &headers, Tier::One)?;
    Ok(redirect(
        StatusCode::MOVED_PERMANENTLY,
        &format!("/api/v1/users/{}", user.id),
    ))
}

async fn get_user(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    caller(&fake, &headers, Tier::One)?;
    let state = fake.state();
    let user = state.user(&id).ok_or_else(ApiError::user_not_found)?;
    Ok(Json(state.user_json(user)).into_response())
}

async fn tenants_me(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> ApiResult {
    caller(&fake, &headers, Tier::One)?;
    let tenant_id = fake.state().tenant_id.clone();
    Ok(redirect(
        StatusCode::FOUND,
        &format!("/api/v1/tenants/{tenant_id}"),
    ))
}

async fn get_tenant(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    caller(&fake, &headers, Tier::One)?;
    let state = fake.state();
    if id != state.tenant_id {
        return Err(ApiError::tenant_not_found());
    }
    Ok(Json(state.tenant_json()).into_response())
}

pub(super) async fn not_found() -> Response {
    let body = json!({ "errors": [{ "code": "HTTP-404", "title": "Not found", "status": 404 }] });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
