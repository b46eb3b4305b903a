//! Fault injection and the request log, as one axum middleware over the Qlik API routes.
//!
//! A fault matches requests by method and path prefix, fires `count` times, and then is
//! gone. Faults are tried in the order they were added. What a fault does:
//! - `delay_before_ms`: wait, then go on (to the fault's status, or to normal handling);
//! - `status` (+ optional `body`, `retry_after`): answer that instead of handling;
//! - `kind: "drop_connection"`: handle the request for real, then abort the connection
//!   without a response (the client cannot know whether the key was created);
//! - `kind: "malformed_json"`: handle for real, then send a truncated JSON body;
//! - `delay_after_ms`: handle for real, then wait before answering.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Fake;
use super::oauth::OAuthParams;
use super::oauth_routes::{self, IssuedTokenId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` (and `body`) without handling the request.
    Status,
    /// Handle the request, then drop the connection instead of answering.
    DropConnection,
    /// Handle the request, then answer with a truncated JSON body.
    MalformedJson,
}

/// One injected fault (`POST /__fake/faults` body).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// HTTP method to match (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Path prefix to match, e.g. `/api/v1/api-keys` (any when absent).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// How many matching requests it applies to (default 1).
    #[serde(default)]
    pub count: Option<u32>,
    /// Status to answer with; implies `kind: "status"` when `kind` is absent.
    #[serde(default)]
    pub status: Option<u16>,
    /// Body for `status` (default: an api-keys error body, or the 429 body).
    #[serde(default)]
    pub body: Option<Value>,
    /// `retry-after` seconds for a 429 fault (default 1).
    #[serde(default)]
    pub retry_after: Option<u64>,
    #[serde(default)]
    pub kind: Option<FaultKind>,
    #[serde(default)]
    pub delay_before_ms: Option<u64>,
    #[serde(default)]
    pub delay_after_ms: Option<u64>,
}

impl FaultSpec {
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }

    fn kind(&self) -> Option<FaultKind> {
        self.kind.or(self.status.map(|_| FaultKind::Status))
    }
}

#[derive(Debug, Default)]
pub struct FaultTable {
    active: Vec<(FaultSpec, u32)>,
}

impl FaultTable {
    pub fn add(&mut self, spec: FaultSpec) {
        let count = spec.count.unwrap_or(1);
        if count > 0 {
            self.active.push((spec, count));
        }
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// Uses of faults not yet taken (a test waits for 0 to know its request is in flight).
    pub fn pending(&self) -> u32 {
        self.active.iter().map(|(_, n)| n).sum()
    }

    /// Takes one use of the first fault matching this request.
    fn take(&mut self, method: &Method, path: &str) -> Option<FaultSpec> {
        let index = self
            .active
            .iter()
            .position(|(spec, _)| spec.matches(method, path))?;
        let (spec, remaining) = &mut self.active[index];
        let spec = spec.clone();
        *remaining -= 1;
        if *remaining == 0 {
            self.active.remove(index);
        }
        Some(spec)
    }
}

/// The request log keeps at most this many entries (the oldest tenth is dropped first).
pub const MAX_LOGGED_REQUESTS: usize = 100_000;

/// One line of `GET /__fake/requests`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// 0 when the connection was dropped without an answer.
    pub status: u16,
    /// Name of the fault that applied, if any.
    pub fault: Option<String>,
    /// The id of the key whose token was the bearer (its `jti`), when the token is one this
    /// tenant signed (valid or not); `None` without one. Lets a test see the order of a
    /// rotation's calls and which key made each.
    #[serde(default)]
    pub key_id: Option<String>,
    /// For a dropped connection: the status the tenant had answered before the drop (201:
    /// the key was created; 400: refused), so a test can tell whether Qlik acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_status: Option<u16>,
    /// The OAuth client that called: the one an `/oauth/token` or `/oauth/revoke` body
    /// names, or the client of the access token that was the bearer. Never its secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The OAuth access token involved, by id (never the token): the bearer (when this
    /// tenant issued it, valid or not), the token `/oauth/revoke` named, or the token
    /// `/oauth/token` issued (also when the connection was then dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// Which credential a request carried, for its log line.
#[derive(Debug, Default, Clone)]
struct Credential {
    key_id: Option<String>,
    client_id: Option<String>,
    token_id: Option<String>,
}

/// Reads the credential of a request. The body of `POST /oauth/token` and `/oauth/revoke`
/// (small, at most 64 KiB) is read to find the client and put back for the handler; a body
/// that cannot be read is answered here, as the handler would.
async fn credential(fake: &Fake, request: Request) -> Result<(Request, Credential), Response> {
    let mut found = Credential {
        key_id: bearer_key_id(fake, request.headers()),
        ..Credential::default()
    };
    if found.key_id.is_none()
        && let Some(bearer) = bearer(request.headers())
        && let Some((token_id, client_id)) = fake.state().oauth.token_of(bearer)
    {
        found.token_id = Some(token_id);
        found.client_id = Some(client_id);
    }
    let path = request.uri().path();
    if request.method() != Method::POST || !(path == "/oauth/token" || path == "/oauth/revoke") {
        return Ok((request, found));
    }
    let revoke = path == "/oauth/revoke";
    let basic = oauth_routes::basic_auth(fake, request.headers());
    let (parts, body) = request.into_parts();
    let bytes = match oauth_routes::read_body(body).await {
        Ok(bytes) => bytes,
        Err(failure) => {
            let style = fake.state().settings.oauth_error_style;
            return Err(failure.into_api_error(style).into_response());
        }
    };
    if let Ok(params) = OAuthParams::parse(oauth_routes::content_type(&parts.headers), &bytes) {
        found.client_id = oauth_routes::named_client(basic.as_ref(), &params);
        if revoke
            && let Some(token) = params.loose("token")
            && let Some((token_id, client_id)) = fake.state().oauth.token_of(&token)
        {
            found.token_id = Some(token_id);
            found.client_id.get_or_insert(client_id);
        }
    }
    Ok((Request::from_parts(parts, Body::from(bytes)), found))
}

/// The middleware: apply the first matching fault, record the request, answer.
pub async fn apply(State(fake): State<Arc<Fake>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (request, credential) = match credential(&fake, request).await {
        Ok(found) => found,
        Err(response) => {
            record_request(
                &fake,
                &method,
                &path,
                &Credential::default(),
                &response,
                None,
                None,
            );
            return response;
        }
    };
    let fault = fake.faults().take(&method, &path);
    let record = |response: &Response, fault: Option<&str>| {
        record_request(&fake, &method, &path, &credential, response, fault, None);
    };
    let Some(fault) = fault else {
        let response = next.run(request).await;
        record(&response, None);
        return response;
    };
    tracing::info!(%method, %path, ?fault.kind, status = ?fault.status, "injecting fault");
    if let Some(ms) = fault.delay_before_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let response = match fault.kind() {
        Some(FaultKind::Status) => {
            let response = status_response(&fault);
            record(&response, Some("status"));
            return response;
        }
        Some(FaultKind::DropConnection) => {
            let handled = next.run(request).await;
            record_request(
                &fake,
                &method,
                &path,
                &credential,
                &handled,
                Some("drop_connection"),
                Some(handled.status().as_u16()),
            );
            // Unwinding out of the connection task closes it without a response (HTTP/1)
            // or resets the stream (HTTP/2). resume_unwind skips the panic hook: no noise.
            std::panic::resume_unwind(Box::new("fake-qlik: drop_connection fault"));
        }
        Some(FaultKind::MalformedJson) => {
            let handled = next.run(request).await;
            let mut response = Response::new(Body::from("{\"errors\":[{\"code\":"));
            *response.status_mut() = handled.status();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(issued) = handled.extensions().get::<IssuedTokenId>() {
                response.extensions_mut().insert(issued.clone());
            }
            record(&response, Some("malformed_json"));
            response
        }
        None => {
            let response = next.run(request).await;
            record(&response, Some("delay"));
            response
        }
    };
    if let Some(ms) = fault.delay_after_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    response
}

/// Appends one line to the request log. `handled_status` marks a dropped connection: the
/// line's own status is then 0.
fn record_request(
    fake: &Fake,
    method: &Method,
    path: &str,
    credential: &Credential,
    response: &Response,
    fault: Option<&str>,
    handled_status: Option<u16>,
) {
    let status = if handled_status.is_some() {
        0
    } else {
        response.status().as_u16()
    };
    let token_id = response
        .extensions()
        .get::<IssuedTokenId>()
        .map(|issued| issued.0.clone())
        .or_else(|| credential.token_id.clone());
    let mut log = fake.requests();
    // Bounded, so a fake left running for days does not grow without end.
    if log.len() >= MAX_LOGGED_REQUESTS {
        log.drain(..MAX_LOGGED_REQUESTS / 10);
    }
    log.push(RequestRecord {
        method: method.to_string(),
        path: path.to_string(),
        status,
        fault: fault.map(str::to_string),
        key_id: credential.key_id.clone(),
        handled_status,
        client_id: credential.client_id.clone(),
        token_id,
    });
}

/// The bearer token of a request, if any.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The `jti` (key id) of a bearer token this tenant signed.
fn bearer_key_id(fake: &Fake, headers: &axum::http::HeaderMap) -> Option<String> {
    fake.signer
        .verify(bearer(headers)?)
        .ok()
        .map(|claims| claims.jti)
}

fn status_response(fault: &FaultSpec) -> Response {
    let status = fault
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::TOO_MANY_REQUESTS && fault.body.is_none() {
        return super::errors::ApiError::rate_limited(fault.retry_after.unwrap_or(1))
            .into_response();
    }
    let body = fault.body.clone().unwrap_or_else(|| {
        json!({ "errors": [{
            "code": "FAKE-FAULT",
            "title": status.canonical_reason().unwrap_or("Injected fault"),
            "status": status.as_u16(),
        }]})
    });
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(seconds) = fault.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
