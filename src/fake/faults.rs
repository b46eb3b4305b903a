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
}

/// The middleware: apply the first matching fault, record the request, answer.
pub async fn apply(State(fake): State<Arc<Fake>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let key_id = bearer_key_id(&fake, request.headers());
    let fault = fake.faults().take(&method, &path);
    let record_handled = |status: u16, fault: Option<&str>, handled_status: Option<u16>| {
        let mut log = fake.requests();
        // Bounded, so a fake left running for days does not grow without end.
        if log.len() >= MAX_LOGGED_REQUESTS {
            log.drain(..MAX_LOGGED_REQUESTS / 10);
        }
        log.push(RequestRecord {
            method: method.to_string(),
            path: path.clone(),
            status,
            fault: fault.map(str::to_string),
            key_id: key_id.clone(),
            handled_status,
        });
    };
    let record = |status: u16, fault: Option<&str>| record_handled(status, fault, None);
    let Some(fault) = fault else {
        let response = next.run(request).await;
        record(response.status().as_u16(), None);
        return response;
    };
    tracing::info!(%method, %path, ?fault.kind, status = ?fault.status, "injecting fault");
    if let Some(ms) = fault.delay_before_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let response = match fault.kind() {
        Some(FaultKind::Status) => {
            let response = status_response(&fault);
            record(response.status().as_u16(), Some("status"));
            return response;
        }
        Some(FaultKind::DropConnection) => {
            let handled = next.run(request).await;
            record_handled(0, Some("drop_connection"), Some(handled.status().as_u16()));
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
            record(response.status().as_u16(), Some("malformed_json"));
            response
        }
        None => {
            let response = next.run(request).await;
            record(response.status().as_u16(), Some("delay"));
            response
        }
    };
    if let Some(ms) = fault.delay_after_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    response
}

/// The `jti` (key id) of a bearer token this tenant signed.
fn bearer_key_id(fake: &Fake, headers: &axum::http::HeaderMap) -> Option<String> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    fake.signer
        .verify(token.trim())
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
