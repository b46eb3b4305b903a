//! Error responses in the shapes real Qlik services use (qlik-api-keys.md §3.7).
//!
//! Qlik publishes no api-keys error codes except `HTTP-429` (and `APIKEYS-18`, only in
//! events), so the codes below are the fake's own inventions and say so in their name
//! where no real one is known:
//!
//! | code | status | when |
//! |---|---|---|
//! | `LOGIN-2` | 401 (string) | bearer missing, not ours, unknown, expired, revoked or deleted (auth layer shape, with `traceId`) |
//! | `APIKEYS-FAKE-BAD-REQUEST` | 400 | malformed body, missing `description`, bad query parameter |
//! | `APIKEYS-FAKE-INVALID-EXPIRY` | 400 | `expiry` is not an ISO 8601 duration the fake accepts |
//! | `APIKEYS-FAKE-EXPIRY-ABOVE-MAX` | 400 | `expiry` above `max_api_key_expiry` (reject mode) |
//! | `APIKEYS-FAKE-KEY-LIMIT` | configurable (400) | `max_keys_per_user` active keys already exist |
//! | `APIKEYS-FAKE-FORBIDDEN` | 403 | no "Manage API keys" permission, another user's key, admin-only operation |
//! | `APIKEYS-FAKE-NOT-FOUND` | 404 | unknown or deleted key, wrong tenant id in configs |
//! | `USERS-7` | 404 | unknown user id (users shape, with `traceId`) |
//! | `TENANTS-FAKE-NOT-FOUND` | 404 (string) | unknown tenant id (tenants shape, with `traceId`) |
//! | `HTTP-429` | 429 | rate limit; `retry-after` header and the real body |
//! | `APIKEYS-FAKE-INTERNAL` | 500 | the fake failed to sign a token (never expected) |
//!
//! The OAuth part (qlik-oauth.md) adds, all in the `{"errors":[…]}` shape with a string
//! `status` (`"401"`: `oauth-tokens.d.ts` types `Error.status?: string`; the api-keys errors
//! above keep their integer), and no `traceId` (Qlik publishes no OAuth error codes either):
//!
//! | code | status | when |
//! |---|---|---|
//! | `OAUTH-FAKE-INVALID-CLIENT` | 401 | `/oauth/token`: unknown client, wrong or missing secret |
//! | `OAUTH-FAKE-INVALID-REQUEST` | 400 | `/oauth/token`, `/oauth/revoke`: unreadable body, missing or repeated parameter |
//! | `OAUTH-FAKE-UNSUPPORTED-GRANT-TYPE` | 400 | a `grant_type` the tenant does not know |
//! | `OAUTH-FAKE-UNAUTHORIZED-CLIENT` | 400 | a grant not in the client's `allowedGrantTypes` |
//! | `OAUTH-FAKE-INVALID-SCOPE` | 400 | a scope not in the client's `allowedScopes` |
//! | `OAUTH-FAKE-INVALID-GRANT` | 400 | the user to impersonate does not exist |
//! | `OAUTH-FAKE-TOKEN-LIMIT` | 403 | the user the token would act as holds the maximum number of live tokens (switch) |
//! | `OAUTH-FAKE-BAD-REQUEST` | 400 | oauth-tokens / oauth-clients: bad query parameter |
//! | `OAUTH-FAKE-FORBIDDEN` | 403 | oauth-tokens / oauth-clients: the caller may not |
//! | `OAUTH-FAKE-NOT-FOUND` | 404 | unknown client, secret hint or token id |
//! | `OAUTH-FAKE-SECRET-LIMIT` | 409 | the client already has 5 secrets |
//! | `OAUTH-FAKE-PAYLOAD-TOO-LARGE` | 413 | an `/oauth/*` body above 64 KiB |
//! | `OAUTH-FAKE-METHOD-NOT-ALLOWED` | 405 | `/oauth/token` or `/oauth/revoke` with another method than POST |
//!
//! With `oauth_error_style: rfc6749` the `/oauth/token` and `/oauth/revoke` errors (their
//! 405 and 413 included) take RFC 6749's shape instead: `{"error":"invalid_client",
//! "error_description":…}`, 401 for `invalid_client` only and 400 for the RFC's other §5.2
//! errors; the 403 token maximum (`access_denied`), 405, 413 and 500 keep their status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Which Qlik service "answers", which decides the body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"errors":[{code,title,detail?,status:int}]}`
    ApiKeys,
    /// `{"errors":[{code,title,status:"401"}],"traceId":…}` (edge/auth layer)
    Auth,
    /// users service: integer `status` plus `traceId`
    Users,
    /// tenants service: string `status` plus `traceId`
    Tenants,
    /// the documented rate-limit body, no `status` field
    RateLimit,
    /// RFC 6749 §5.2: `{"error": code, "error_description": detail}` (`code` is the RFC's)
    Rfc6749,
    /// the OAuth services: `{"errors":[{code,title,detail?,status:"401"}]}` (`oauth-tokens.d.ts`
    /// types `Error.status` as a string; no `traceId`)
    OAuth,
}

/// One error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub shape: ErrorShape,
    pub code: &'static str,
    pub title: String,
    pub detail: Option<String>,
    pub retry_after_seconds: Option<u64>,
    /// A `WWW-Authenticate` challenge (RFC 6749 §5.2: a 401 for credentials sent in the
    /// `Authorization` header names the scheme the client used).
    pub www_authenticate: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, shape: ErrorShape, code: &'static str, title: &str) -> Self {
        Self {
            status,
            shape,
            code,
            title: title.into(),
            detail: None,
            retry_after_seconds: None,
            www_authenticate: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorShape::Auth,
            "LOGIN-2",
            "Authorization Required",
        )
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorShape::ApiKeys,
            "APIKEYS-FAKE-BAD-REQUEST",
            "Invalid request was made",
        )
        .with_detail(detail)
    }

    /// The fake itself failed (signing a token); never expected.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorShape::ApiKeys,
            "APIKEYS-FAKE-INTERNAL",
            "Unexpected error",
        )
        .with_detail(detail)
    }

    pub fn invalid_expiry(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorShape::ApiKeys,
            "APIKEYS-FAKE-INVALID-EXPIRY",
            "Invalid expiry",
        )
        .with_detail(detail)
    }

    pub fn expiry_above_max(requested: &str, max: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorShape::ApiKeys,
            "APIKEYS-FAKE-EXPIRY-ABOVE-MAX",
            "Expiry exceeds the maximum API key expiry",
        )
        .with_detail(format!(
            "Requested expiry {requested} exceeds the tenant maximum {max} (max_api_key_expiry)"
        ))
    }

    pub fn key_limit(status: StatusCode, active: usize, limit: u32) -> Self {
        Self::new(
            status,
            ErrorShape::ApiKeys,
            "APIKEYS-FAKE-KEY-LIMIT",
            "Maximum number of active API keys reached",
        )
        .with_detail(format!(
            "User has {active} active API keys and the tenant limit is {limit} (max_keys_per_user)"
        ))
    }

    pub fn forbidden(title: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorShape::ApiKeys,
            "APIKEYS-FAKE-FORBIDDEN",
            title,
        )
    }

    pub fn key_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorShape::ApiKeys,
            "APIKEYS-FAKE-NOT-FOUND",
            "API key was not found",
        )
    }

    pub fn config_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorShape::ApiKeys,
            "APIKEYS-FAKE-NOT-FOUND",
            "Failed to update the API keys configuration",
        )
        .with_detail("unknown tenant id")
    }

    pub fn user_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorShape::Users,
            "USERS-7",
            "Not found",
        )
    }

    pub fn tenant_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorShape::Tenants,
            "TENANTS-FAKE-NOT-FOUND",
            "Not found",
        )
    }

    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorShape::RateLimit,
            "HTTP-429",
            "API rate limit reached.",
        )
        .with_detail(format!(
            "You need to wait {retry_after_seconds} seconds until limit is lifted."
        ));
        e.retry_after_seconds = Some(retry_after_seconds);
        e
    }

    /// The JSON body, in this error's service shape.
    pub fn body(&self) -> Value {
        let status_int = self.status.as_u16();
        let mut entry = json!({ "code": self.code, "title": self.title });
        if let Some(detail) = &self.detail {
            entry["detail"] = json!(detail);
        }
        match self.shape {
            ErrorShape::ApiKeys => {
                entry["status"] = json!(status_int);
                json!({ "errors": [entry] })
            }
            ErrorShape::Users => {
                entry["status"] = json!(status_int);
                json!({ "errors": [entry], "traceId": trace_id() })
            }
            ErrorShape::Auth | ErrorShape::Tenants => {
                entry["status"] = json!(status_int.to_string());
                json!({ "errors": [entry], "traceId": trace_id() })
            }
            ErrorShape::OAuth => {
                entry["status"] = json!(status_int.to_string());
                json!({ "errors": [entry] })
            }
            ErrorShape::RateLimit => json!({ "errors": [entry] }),
            ErrorShape::Rfc6749 => {
                let mut body = json!({ "error": self.code });
                if let Some(detail) = &self.detail {
                    body["error_description"] = json!(detail);
                }
                body
            }
        }
    }
}

/// 32 hex characters, like the `traceId`s in Qlik's error bodies.
pub fn trace_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.www_authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
