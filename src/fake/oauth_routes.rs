//! The OAuth routes (qlik-oauth.md §2–§4): `POST /oauth/token`, `POST /oauth/revoke`,
//! `GET /api/v1/oauth-tokens`, `DELETE /api/v1/oauth-tokens/{id}`, `GET /api/v1/oauth-clients`,
//! `GET /api/v1/oauth-clients/{id}` and its client secrets. They sit behind the same fault,
//! request-log and `Date` layers as the api-keys routes (see [`super::app`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use super::Fake;
use super::clock::rfc3339_millis;
use super::errors::ApiError;
use super::oauth::{MAX_OAUTH_BODY, OAuthErrorStyle, OAuthParams, TokenFailure, basic_credentials};
use super::rate_limit::Tier;
use super::routes::{Caller, count_call, list_query, page_answer};

type ApiResult = Result<Response, ApiError>;

/// Set by `/oauth/token` on its answer: the id of the token it issued, for the fault layer's
/// request log.
#[derive(Debug, Clone)]
pub struct IssuedTokenId(pub String);

pub fn routes() -> Router<Arc<Fake>> {
    Router::new()
        .route("/oauth/token", post(token).fallback(method_not_allowed))
        .route("/oauth/revoke", post(revoke).fallback(method_not_allowed))
        .route("/api/v1/oauth-tokens", get(list_tokens))
        .route("/api/v1/oauth-tokens/{id}", delete(delete_token))
        .route("/api/v1/oauth-clients", get(list_clients))
        .route("/api/v1/oauth-clients/{id}", get(get_client))
        .route(
            "/api/v1/oauth-clients/{id}/client-secrets",
            post(create_secret),
        )
        .route(
            "/api/v1/oauth-clients/{id}/client-secrets/{hint}",
            delete(delete_secret),
        )
}

pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// Reads an `/oauth/*` body (at most [`MAX_OAUTH_BODY`] bytes).
pub async fn read_body(body: Body) -> Result<Bytes, TokenFailure> {
    axum::body::to_bytes(body, MAX_OAUTH_BODY)
        .await
        .map_err(|_| TokenFailure::TooLarge)
}

/// Every `/oauth/*` answer is JSON (Qlik's client calls `.json()` on each): 405 too, in the
/// `oauth_error_style` shape.
async fn method_not_allowed(State(fake): State<Arc<Fake>>) -> Response {
    let style = fake.state().settings.oauth_error_style;
    let mut response = TokenFailure::MethodNotAllowed
        .into_api_error(style)
        .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// The client credentials of an HTTP Basic header, when `oauth_basic_auth` is on (else the
/// header is not read, and a client that sends only it is unauthenticated).
pub fn basic_auth(
    fake: &Fake,
    headers: &HeaderMap,
) -> Option<Result<(String, String), TokenFailure>> {
    if fake.state().settings.oauth_basic_auth {
        basic_credentials(headers)
    } else {
        None
    }
}

/// The error answer of an `/oauth/*` call. A 401 for credentials sent in a Basic header
/// carries `WWW-Authenticate: Basic` (RFC 6749 §5.2).
fn oauth_failure(failure: TokenFailure, style: OAuthErrorStyle, basic: bool) -> ApiError {
    let mut error = failure.into_api_error(style);
    if basic && error.status == StatusCode::UNAUTHORIZED {
        error.www_authenticate = Some("Basic realm=\"fake-qlik\"");
    }
    error
}

/// The client an `/oauth/*` call names (Basic header first, then body), for the rate
/// limit and the request log.
pub fn named_client(
    basic: Option<&Result<(String, String), TokenFailure>>,
    params: &OAuthParams,
) -> Option<String> {
    match basic {
        Some(Ok((id, _))) => Some(id.clone()),
        _ => params.loose("client_id"),
    }
}

/// `POST /oauth/token`: JSON or form body, client credentials in it or in a Basic header;
/// client credentials or user impersonation.
async fn token(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Body) -> ApiResult {
    let style = fake.state().settings.oauth_error_style;
    let basic = basic_auth(&fake, &headers);
    let fail = |f: TokenFailure| oauth_failure(f, style, basic.is_some());
    let bytes = read_body(body).await.map_err(fail)?;
    let mut params = OAuthParams::parse(content_type(&headers), &bytes).map_err(fail)?;
    // Every call naming a known client counts against its bot's tier 2 (S9), a wrong
    // secret included: the limit sits in front of the OAuth service.
    let bot =
        named_client(basic.as_ref(), &params).and_then(|id| fake.state().oauth_client_bot(&id));
    if let Some(bot) = bot {
        count_call(&fake, &bot, Tier::Two)?;
    }
    params.apply_basic(basic.clone()).map_err(fail)?;
    let now = fake.clock.now();
    let (issued, omit_expires_in, omit_expires_at) = {
        let mut state = fake.state();
        let issued = state.issue_token(&params, now).map_err(fail)?;
        let s = &state.settings;
        (issued, s.oauth_omit_expires_in, s.oauth_omit_expires_at)
    };
    tracing::info!(
        token_id = %issued.id,
        client_id = %issued.client_id,
        user_id = %issued.user_id,
        grant = issued.grant.as_str(),
        "oauth access token issued"
    );
    // Both of qlik.dev's samples carry `scope`: the granted scopes, space-separated.
    let mut answer = json!({
        "access_token": issued.value,
        "token_type": "bearer",
        "scope": issued.scopes.join(" "),
    });
    // §6.5: either may be left out, so a client's fallbacks (expires_at, then 6 h) are tested.
    if !omit_expires_at {
        answer["expires_at"] = json!(rfc3339_millis(issued.expires_at));
    }
    if !omit_expires_in {
        answer["expires_in"] = json!(issued.expires_at.duration_since(issued.issued_at).as_secs());
    }
    let mut response = Json(answer).into_response();
    response.extensions_mut().insert(IssuedTokenId(issued.id));
    // RFC 6749 §5.1.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `POST /oauth/revoke` (RFC 7009): 200 for a revoked, already revoked or unknown token.
async fn revoke(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Body) -> ApiResult {
    let style = fake.state().settings.oauth_error_style;
    let basic = basic_auth(&fake, &headers);
    let fail = |f: TokenFailure| oauth_failure(f, style, basic.is_some());
    let bytes = read_body(body).await.map_err(fail)?;
    let mut params = OAuthParams::parse(content_type(&headers), &bytes).map_err(fail)?;
    let bot = {
        let state = fake.state();
        named_client(basic.as_ref(), &params)
            .and_then(|id| state.oauth_client_bot(&id))
            .or_else(|| {
                params
                    .loose("token")
                    .and_then(|t| state.oauth.bot_of_token(&t))
            })
    };
    if let Some(bot) = bot {
        count_call(&fake, &bot, Tier::Two)?;
    }
    params.apply_basic(basic.clone()).map_err(fail)?;
    let revoked = fake.state().revoke_token(&params).map_err(fail)?;
    if let Some((token_id, client_id)) = revoked {
        tracing::info!(%token_id, %client_id, "oauth access token revoked");
    }
    Ok(Json(json!({})).into_response())
}

async fn list_tokens(RawQuery(query): RawQuery, Caller { fake, user }: Caller<false>) -> ApiResult {
    let query = list_query(query);
    let page = fake
        .state()
        .list_oauth_tokens(&user, &query, fake.clock.now())?;
    Ok(page_answer(page))
}

async fn delete_token(Path(id): Path<String>, Caller { fake, user }: Caller<true>) -> ApiResult {
    fake.state()
        .delete_oauth_token(&user, &id, fake.clock.now())?;
    tracing::info!(token_id = %id, user_id = %user.id, "oauth access token deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `getOAuthClients`: the clients the caller may read, paged.
async fn list_clients(
    RawQuery(query): RawQuery,
    Caller { fake, user }: Caller<false>,
) -> ApiResult {
    let query = list_query(query);
    let page = fake.state().list_oauth_clients(&user, &query)?;
    Ok(Json(page).into_response())
}

async fn get_client(Path(id): Path<String>, Caller { fake, user }: Caller<false>) -> ApiResult {
    let client = fake.state().get_oauth_client(&user, &id)?;
    Ok(Json(client).into_response())
}

/// No body is read: Qlik's endpoint takes none.
async fn create_secret(Path(id): Path<String>, Caller { fake, user }: Caller<true>) -> ApiResult {
    let created = fake
        .state()
        .create_client_secret(&user, &id, fake.clock.now())?;
    tracing::info!(client_id = %id, hint = %created["hint"], user_id = %user.id, "client secret created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn delete_secret(
    Path((id, hint)): Path<(String, String)>,
    Caller { fake, user }: Caller<true>,
) -> ApiResult {
    let revoked = fake
        .state()
        .delete_client_secret(&user, &id, &hint, fake.clock.now())?;
    tracing::info!(client_id = %id, %hint, user_id = %user.id, revoked_tokens = revoked, "client secret deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
