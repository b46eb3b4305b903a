//! The one error type of the Qlik client, and how Qlik's error bodies are read.

use std::time::Duration;

use serde::Deserialize;

/// Everything that can go wrong talking to a Qlik Cloud tenant.
///
/// Messages are written for a Vault operator: they say what failed, what Qlik answered
/// and what to do. They never contain an API key, access token or client secret (bearers
/// travel only in the `Authorization` header, which never appears in an error or a log;
/// OAuth secrets sent in a body are blanked out of any answer an error quotes).
/// [`QlikError::kind`] classifies the error for the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QlikError {
    /// 401: Qlik did not accept the bearer key. It expired, was revoked by a tenant admin,
    /// was deleted, or belongs to another tenant. Never retried.
    #[error(
        "Qlik rejected the API key on {operation} (401{detail}): the key has expired, was revoked or deleted, or is not a key of this tenant; write a valid key to config"
    )]
    Unauthorized { operation: String, detail: String },

    /// 403: the key's owner lacks a permission, typically "Manage API keys" for creating
    /// keys, or TenantAdmin for other users' keys and the tenant settings.
    #[error(
        "Qlik denied {operation} (403{detail}): the key's owner needs the \"Manage API keys\" permission in Qlik (User Default or a custom role), or TenantAdmin for other users' keys"
    )]
    PermissionDenied { operation: String, detail: String },

    /// Creating a key failed because the owner already has `max_keys_per_user` active keys.
    /// Qlik documents no status or code for this; it is recognised from the error text.
    #[error(
        "Qlik refused to create an API key: the owner's active key limit (max_keys_per_user) is reached ({status}{detail}); revoke unused leases (vault lease revoke -prefix <mount>/creds/) or raise the tenant limit"
    )]
    KeyLimit { status: u16, detail: String },

    /// Creating a key failed because the requested `expiry` is above the tenant's
    /// `max_api_key_expiry`. Recognised from the error text (undocumented by Qlik).
    #[error(
        "Qlik refused the requested key expiry as above the tenant maximum max_api_key_expiry ({status}{detail}); ask for a shorter expiry or raise the tenant setting"
    )]
    ExpiryAboveMaximum { status: u16, detail: String },

    /// 404 on a read of a single resource (a key that does not exist or was deleted,
    /// a wrong tenant id). `delete_key` turns a 404 into `DeleteOutcome::AlreadyGone`.
    #[error("Qlik has no {what} (404{detail})")]
    NotFound { what: String, detail: String },

    /// Any other 4xx: Qlik found the request invalid. `detail` is Qlik's own explanation.
    #[error("Qlik rejected {operation} as invalid ({status}{detail})")]
    BadRequest {
        operation: String,
        status: u16,
        detail: String,
    },

    /// 429 and still limited after the retries (or `retry-after` is longer than the client
    /// may wait within `request_timeout`). `retry_after` is Qlik's last `retry-after`.
    #[error("Qlik rate limit reached on {operation} after {attempts} attempt(s){}", retry_hint(*.retry_after))]
    RateLimited {
        operation: String,
        retry_after: Option<Duration>,
        attempts: u32,
    },

    /// The tenant could not be reached or answered 5xx, after the retries: connection
    /// refused or reset, DNS failure, timeout, 500/502/503/504.
    #[error("Qlik unavailable on {operation}: {what} after {attempts} attempt(s): {cause}")]
    Unavailable {
        operation: String,
        what: String,
        attempts: u32,
        cause: String,
    },

    /// The TLS handshake failed: the tenant's certificate is not trusted (wrong or missing
    /// `ca_cert`, TLS-intercepting proxy) or is invalid. Never retried.
    #[error(
        "TLS with the Qlik tenant failed on {operation}: {cause}; if a proxy or private CA signs the tenant's certificate, put that CA in ca_cert"
    )]
    Tls { operation: String, cause: String },

    /// Qlik answered something the client cannot read: malformed JSON, missing fields,
    /// an unexpected status or a redirect to another origin.
    #[error("unexpected answer from Qlik on {operation}: {detail}")]
    InvalidResponse { operation: String, detail: String },

    /// A creating POST (an API key, an OAuth client secret) whose outcome is unknown: it
    /// timed out, the connection dropped after the request was sent, Qlik answered 5xx, or
    /// the 201 body was unreadable. The thing may or may not exist; it is never retried.
    /// Look for a key by its description marker; for a client secret, list the client's
    /// hints (`oauth_client`) and delete any hint not known before.
    #[error("the outcome of {operation} is unknown ({cause}): Qlik may or may not have created it")]
    OutcomeUnknown { operation: String, cause: String },

    /// `/oauth/token` or `/oauth/revoke` did not accept the client's credentials: unknown
    /// client id, wrong or deleted client secret. Recognised from a 401 (whatever the body),
    /// or from RFC 6749's `invalid_client` (or an `errors` entry saying "invalid client")
    /// with another 4xx: Qlik's shape is not settled (qlik-oauth.md §6.2).
    #[error(
        "Qlik rejected the OAuth client credentials on {operation} ({status}{detail}): the client id is unknown, or the client secret is wrong or was deleted; write the client id and a current secret to oauth/clients/<name>"
    )]
    InvalidClient {
        operation: String,
        status: u16,
        detail: String,
    },

    /// `/oauth/token` refused a requested scope: it is not on the client's allow list
    /// (`allowedScopes`). Recognised from RFC 6749's `invalid_scope` or an error saying
    /// "invalid scope" (any 4xx). `status` is `None` when the client refused the scope
    /// itself before sending (empty, or with whitespace: one scope is one word).
    #[error(
        "the requested scope was refused on {operation} ({}{detail}): ask only for scopes on the OAuth client's allowedScopes, or for none to get all of them",
        status_or_unsent(*.status)
    )]
    InvalidScope {
        operation: String,
        status: Option<u16>,
        detail: String,
    },

    /// A user-impersonation request named a user the tenant does not have (no such
    /// `subject` or `userId`). Recognised, on impersonation requests only, from RFC 6749's
    /// `invalid_grant`, an error saying "invalid grant" or that the user does not exist
    /// (400), or a 404.
    #[error(
        "Qlik found no user to impersonate on {operation} ({status}{detail}): no user with that subject or userId exists in the tenant"
    )]
    UnknownUser {
        operation: String,
        status: u16,
        detail: String,
    },

    /// `/oauth/token` refused the grant type: the client's `allowedGrantTypes` lacks it
    /// (RFC 6749 `unauthorized_client`), or the tenant does not know it
    /// (`unsupported_grant_type`). Recognised from those codes or the same words (any 4xx).
    #[error(
        "Qlik refused the grant type on {operation} ({status}{detail}): the OAuth client's allowedGrantTypes must include it (user impersonation must be allowed for the client), or the tenant does not support it"
    )]
    GrantNotAllowed {
        operation: String,
        status: u16,
        detail: String,
    },

    /// 403 from `/oauth/token`, which Qlik documents as "user is disabled or has reached the
    /// maximum number of tokens" (the maximum is not documented). The user is the client's
    /// bot (client credentials) or the impersonated user. Its own kind rather than
    /// `PermissionDenied`: no permission is missing, and revoking tokens (or waiting for
    /// them to expire) can clear it. Not transient: it lasts hours, not seconds.
    #[error(
        "Qlik refused to issue an access token on {operation} (403{detail}): the user the token would act as (the client's bot user, or the impersonated user) is disabled or holds the maximum number of tokens; revoke unused tokens or wait for them to expire"
    )]
    TokenLimit { operation: String, detail: String },

    /// Creating a client secret failed because the client already has the maximum of 5.
    /// Recognised from a 409, or from an error saying "max number of client secrets" (any
    /// 4xx).
    #[error(
        "Qlik refused to create a client secret on {operation} ({status}{detail}): the OAuth client already has the maximum of 5 secrets; delete an unused one (by its hint)"
    )]
    SecretLimit {
        operation: String,
        status: u16,
        detail: String,
    },

    /// 403 on an OAuth client or its secrets: the bearer may not manage that client. Kind
    /// [`ErrorKind::PermissionDenied`], with an OAuth-specific message.
    #[error(
        "Qlik denied {operation} (403{detail}): managing an OAuth client's secrets needs a tenant admin's credential, or the client's own access token where the tenant lets a client manage itself"
    )]
    ClientAccessDenied { operation: String, detail: String },

    /// The client configuration is unusable: bad tenant URL, bad CA PEM, or the HTTP
    /// client could not be built.
    #[error("invalid Qlik client configuration: {detail}")]
    Config { detail: String },

    /// A value given as an API key is not a Qlik API key (not a JWT with the claims
    /// `jti`, `sub`, `tenantId`).
    #[error("the value is not a Qlik API key: {reason}")]
    InvalidKeyFormat { reason: String },
}

fn status_or_unsent(status: Option<u16>) -> String {
    match status {
        Some(status) => status.to_string(),
        None => "not sent".into(),
    }
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("; Qlik asks to retry in {} s", d.as_secs().max(1)),
        None => String::new(),
    }
}

/// What the engine should make of an error (see the errors table in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    Unauthorized,
    PermissionDenied,
    KeyLimit,
    ExpiryAboveMaximum,
    NotFound,
    BadRequest,
    RateLimited,
    Unavailable,
    Tls,
    InvalidResponse,
    OutcomeUnknown,
    Config,
    InvalidKeyFormat,
    InvalidClient,
    InvalidScope,
    UnknownUser,
    GrantNotAllowed,
    TokenLimit,
    SecretLimit,
}

impl QlikError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unauthorized { .. } => ErrorKind::Unauthorized,
            Self::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Self::KeyLimit { .. } => ErrorKind::KeyLimit,
            Self::ExpiryAboveMaximum { .. } => ErrorKind::ExpiryAboveMaximum,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::BadRequest { .. } => ErrorKind::BadRequest,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Tls { .. } => ErrorKind::Tls,
            Self::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            Self::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            Self::Config { .. } => ErrorKind::Config,
            Self::InvalidKeyFormat { .. } => ErrorKind::InvalidKeyFormat,
            Self::InvalidClient { .. } => ErrorKind::InvalidClient,
            Self::InvalidScope { .. } => ErrorKind::InvalidScope,
            Self::UnknownUser { .. } => ErrorKind::UnknownUser,
            Self::GrantNotAllowed { .. } => ErrorKind::GrantNotAllowed,
            Self::TokenLimit { .. } => ErrorKind::TokenLimit,
            Self::SecretLimit { .. } => ErrorKind::SecretLimit,
            Self::ClientAccessDenied { .. } => ErrorKind::PermissionDenied,
        }
    }

    /// The HTTP status the engine's response should carry (the README's errors table):
    /// 400 for what the operator must fix (the OAuth kinds included), 429 for rate limits,
    /// 502 for an upstream failure.
    pub fn http_status(&self) -> u16 {
        match self.kind() {
            ErrorKind::RateLimited => 429,
            ErrorKind::Unavailable
            | ErrorKind::Tls
            | ErrorKind::InvalidResponse
            | ErrorKind::OutcomeUnknown => 502,
            _ => 400,
        }
    }

    /// True when the same call may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), ErrorKind::RateLimited | ErrorKind::Unavailable)
    }

    /// Fills in the attempt count once the retry loop is over.
    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        if let Self::RateLimited { attempts, .. } | Self::Unavailable { attempts, .. } = &mut self {
            *attempts = n;
        }
        self
    }
}

/// `status` is an integer in api-keys and users errors and a string in auth-layer and
/// tenants errors (qlik-api-keys.md §3.7); accept both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ErrorStatus {
    Int(u16),
    Text(String),
}

/// One entry of Qlik's `errors` array.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorEntry {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub status: Option<ErrorStatus>,
}

/// A Qlik error body: `{"errors":[…], "traceId"?}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub errors: Vec<ErrorEntry>,
    #[serde(default, rename = "traceId")]
    pub trace_id: Option<String>,
}

/// Longest piece of a non-JSON body quoted in an error (HTML from a proxy, say).
const MAX_QUOTED: usize = 200;

impl ErrorBody {
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    /// `code: title: detail` of every entry, plus the trace id.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .errors
            .iter()
            .map(|e| {
                [e.code.as_deref(), e.title.as_deref(), e.detail.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ")
            })
            .collect();
        if let Some(trace) = &self.trace_id {
            parts.push(format!("traceId {trace}"));
        }
        parts.join("; ")
    }
}

/// An RFC 6749 §5.2 error body: `{"error": "invalid_client", "error_description"?, …}`
/// (what `/oauth/*` may answer instead of `{"errors":[…]}`, qlik-oauth.md §6.2).
#[derive(Debug, Clone, Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

impl OAuthErrorBody {
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    /// `error: error_description`.
    pub fn summary(&self) -> String {
        match &self.error_description {
            Some(description) => format!("{}: {description}", self.error),
            None => self.error.clone(),
        }
    }
}

/// What Qlik said, for messages: the error body's summary (Qlik's shape or RFC 6749's), or
/// the start of the raw body.
pub(crate) fn describe_body(body: &[u8]) -> String {
    if let Some(parsed) = ErrorBody::parse(body) {
        return parsed.summary();
    }
    match OAuthErrorBody::parse(body) {
        Some(parsed) => parsed.summary(),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            match text.char_indices().nth(MAX_QUOTED) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_error_with_integer_status() {
        let body = br#"{"errors":[{"code":"APIKEYS-7","title":"Invalid request was made","detail":"description is required","status":400}]}"#;
        let parsed = ErrorBody::parse(body).unwrap();
        assert_eq!(parsed.errors[0].status, Some(ErrorStatus::Int(400)));
        assert_eq!(parsed.trace_id, None);
        assert_eq!(
            parsed.summary(),
            "APIKEYS-7: Invalid request was made: description is required"
        );
    }

    #[test]
    fn auth_layer_error_with_string_status_and_trace_id() {
        let body = br#"{"errors":[{"title":"Authorization Required","code":"LOGIN-2","status":"401"}],"traceId":"000000000000000079cf1ebeae103de1"}"#;
        let parsed = ErrorBody::parse(body).unwrap();
        assert_eq!(
            parsed.errors[0].status,
            Some(ErrorStatus::Text("401".into()))
        );
        assert_eq!(
            parsed.trace_id.as_deref(),
            Some("000000000000000079cf1ebeae103de1")
        );
        assert_eq!(
            parsed.summary(),
            "LOGIN-2: Authorization Required; traceId 000000000000000079cf1ebeae103de1"
        );
    }

    #[test]
    fn rate_limit_body_without_status() {
        let body = br#"{"errors":[{"code":"HTTP-429","title":"API rate limit reached.","detail":"You need to wait 13 seconds until limit is lifted."}]}"#;
        let parsed = ErrorBody::parse(body).unwrap();
        assert_eq!(parsed.errors[0].status, None);
        assert!(parsed.summary().contains("wait 13 seconds"));
    }

    #[test]
    fn non_json_body_is_quoted_and_truncated() {
        assert_eq!(
            describe_body(b"  <html>Bad Gateway</html> "),
            "<html>Bad Gateway</html>"
        );
        let long = "x".repeat(1000);
        let described = describe_body(long.as_bytes());
        assert_eq!(described.chars().count(), MAX_QUOTED + 1);
        assert!(described.ends_with('…'));
    }

    #[test]
    fn rfc_6749_error_bodies_are_summarised() {
        let body =
            br#"{"error":"invalid_client","error_description":"client authentication failed"}"#;
        assert_eq!(
            describe_body(body),
            "invalid_client: client authentication failed"
        );
        assert_eq!(
            describe_body(br#"{"error":"invalid_scope"}"#),
            "invalid_scope"
        );
    }

    #[test]
    fn oauth_kinds_are_for_the_operator_to_fix() {
        let errors = [
            QlikError::InvalidClient {
                operation: "x".into(),
                status: 401,
                detail: String::new(),
            },
            QlikError::InvalidScope {
                operation: "x".into(),
                status: None,
                detail: ": scope 'a b' has whitespace".into(),
            },
            QlikError::UnknownUser {
                operation: "x".into(),
                status: 400,
                detail: String::new(),
            },
            QlikError::GrantNotAllowed {
                operation: "x".into(),
                status: 400,
                detail: String::new(),
            },
            QlikError::TokenLimit {
                operation: "x".into(),
                detail: String::new(),
            },
            QlikError::SecretLimit {
                operation: "x".into(),
                status: 409,
                detail: String::new(),
            },
            QlikError::ClientAccessDenied {
                operation: "x".into(),
                detail: String::new(),
            },
        ];
        let kinds: Vec<ErrorKind> = errors.iter().map(QlikError::kind).collect();
        assert_eq!(
            kinds,
            [
                ErrorKind::InvalidClient,
                ErrorKind::InvalidScope,
                ErrorKind::UnknownUser,
                ErrorKind::GrantNotAllowed,
                ErrorKind::TokenLimit,
                ErrorKind::SecretLimit,
                ErrorKind::PermissionDenied,
            ]
        );
        for error in &errors {
            assert_eq!(error.http_status(), 400, "{error}");
            assert!(!error.is_transient(), "{error}");
        }
        assert!(
            errors[1].to_string().contains("(not sent: scope"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn kinds_map_to_engine_statuses() {
        let e = QlikError::RateLimited {
            operation: "x".into(),
            retry_after: None,
            attempts: 1,
        };
        assert_eq!(e.http_status(), 429);
        let e = QlikError::OutcomeUnknown {
            operation: "x".into(),
            cause: "timeout".into(),
        };
        assert_eq!(
            (e.kind(), e.http_status()),
            (ErrorKind::OutcomeUnknown, 502)
        );
        let e = QlikError::Unauthorized {
            operation: "x".into(),
            detail: String::new(),
        };
        assert_eq!(e.http_status(), 400);
    }
}
