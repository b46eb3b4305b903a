//! OAuth machine-to-machine clients, their secrets and access tokens (qlik-oauth.md), as
//! tenant state and the rules the OAuth endpoints follow. Like [`super::state`], everything
//! here is synchronous and takes "now" from the caller.
//!
//! Secrets and access tokens are kept only as SHA-256 digests (aws-lc-rs, already the
//! fake's crypto): the fake can tell a presented value is right, never show one again.

use std::cmp::Ordering;
use std::collections::HashMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::clock::rfc3339_millis;
use super::errors::{ApiError, ErrorShape};
use super::state::{
    Page, PageFrom, TenantState, User, add_span, list_href, new_user_id, page_limit, page_links,
    page_window, parse_positive_duration,
};

/// `grant_type` of the client-credentials grant.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// `grant_type` of Qlik's user impersonation grant (changelog 84).
pub const GRANT_IMPERSONATION: &str = "urn:qlik:oauth:user-impersonation";
/// "max number of client secrets is 5" (qlik-oauth.md §4).
pub const MAX_CLIENT_SECRETS: usize = 5;
/// The seed client's scopes (and the control API's default).
pub const DEFAULT_SCOPES: [&str; 2] = ["user_default", "admin_classic"];
/// Largest `/oauth/*` body the fake reads.
pub const MAX_OAUTH_BODY: usize = 64 * 1024;

/// Shape of `/oauth/token` and `/oauth/revoke` errors (qlik-oauth.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OAuthErrorStyle {
    /// `{"errors":[{code,title,detail,status:"401"}]}`, as every other Qlik service answers.
    #[default]
    Qlik,
    /// RFC 6749 §5.2: `{"error":"invalid_client","error_description":…}`.
    #[value(name = "rfc6749")]
    Rfc6749,
}

/// How a client secret's hint is formed (qlik-oauth.md §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SecretHint {
    /// The secret's last 4 characters.
    #[default]
    Suffix,
    /// The secret's first 4 characters.
    Prefix,
    /// 8 random hex characters unrelated to the secret.
    Opaque,
}

type Digest = [u8; 32];

fn sha256(data: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 hex characters, like the client ids Qlik shows.
fn new_client_id() -> String {
    hex(&rand::random::<[u8; 16]>())
}

/// One client secret: only its digest is kept.
#[derive(Debug, Clone)]
pub struct ClientSecret {
    /// The fake's own id of the secret, never shown by the API: hints are unique only among
    /// a client's current secrets, so a deleted secret's hint may come back.
    pub id: String,
    pub hint: String,
    digest: Digest,
    pub created_at: Timestamp,
    pub created_by: String,
}

#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub id: String,
    pub name: String,
    pub app_type: String,
    pub allowed_grant_types: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub secrets: Vec<ClientSecret>,
    pub created_at: Timestamp,
    pub created_by: String,
    /// The id its bot user gets (reserved at creation, so the rate limiter can count the
    /// client's calls before the first token creates the user).
    pub bot_user_id: String,
}

impl OAuthClient {
    fn matching_secret(&self, presented: &str) -> Option<&ClientSecret> {
        let presented = sha256(presented.as_bytes());
        self.secrets
            .iter()
            .find(|s| verify_slices_are_equal(&s.digest, &presented).is_ok())
    }

    fn allows(&self, grant: Grant) -> bool {
        self.allowed_grant_types.iter().any(|g| g == grant.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    ClientCredentials,
    Impersonation,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::ClientCredentials => GRANT_CLIENT_CREDENTIALS,
            Grant::Impersonation => GRANT_IMPERSONATION,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            GRANT_CLIENT_CREDENTIALS => Some(Grant::ClientCredentials),
            GRANT_IMPERSONATION => Some(Grant::Impersonation),
            _ => None,
        }
    }
}

/// One access token: only its digest is kept.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub id: String,
    digest: Digest,
    pub client_id: String,
    /// Who the token acts as: the client's bot, or the impersonated user.
    pub user_id: String,
    pub grant: Grant,
    pub scopes: Vec<String>,
    /// The internal id of the client secret it was minted with (see [`ClientSecret::id`]).
    pub secret_id: String,
    /// That secret's hint when the token was minted (for the control view only).
    pub secret_hint: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked: bool,
    pub last_used: Option<Timestamp>,
}

impl AccessToken {
    /// `active`, `expired` or `revoked`, as of `now`.
    pub fn status(&self, now: Timestamp) -> &'static str {
        if self.revoked {
            "revoked"
        } else if now >= self.expires_at {
            "expired"
        } else {
            "active"
        }
    }

    pub fn is_live(&self, now: Timestamp) -> bool {
        self.status(now) == "active"
    }
}

/// Clients and tokens of the tenant.
#[derive(Debug, Default)]
pub struct OAuthState {
    pub clients: Vec<OAuthClient>,
    pub tokens: Vec<AccessToken>,
    by_digest: HashMap<Digest, usize>,
}

impl OAuthState {
    pub fn client(&self, id: &str) -> Option<&OAuthClient> {
        self.clients.iter().find(|c| c.id == id)
    }

    fn token_index(&self, value: &str) -> Option<usize> {
        self.by_digest.get(&sha256(value.as_bytes())).copied()
    }

    /// The id and client of a token this tenant issued (valid or not), for the request log.
    pub fn token_of(&self, value: &str) -> Option<(String, String)> {
        let token = &self.tokens[self.token_index(value)?];
        Some((token.id.clone(), token.client_id.clone()))
    }

    /// The bot user id of a token's client (for rate limiting `/oauth/revoke`).
    pub fn bot_of_token(&self, value: &str) -> Option<String> {
        let token = &self.tokens[self.token_index(value)?];
        self.client(&token.client_id).map(|c| c.bot_user_id.clone())
    }

    /// Live tokens acting as a user (from any client, either grant).
    fn live_tokens_for(&self, user_id: &str, now: Timestamp) -> usize {
        self.tokens
            .iter()
            .filter(|t| t.user_id == user_id && t.is_live(now))
            .count()
    }
}

/// A new secret and its hint, the hint unique among the client's secrets.
fn new_secret(style: SecretHint, taken: &[ClientSecret]) -> (String, String) {
    loop {
        let secret = hex(&rand::random::<[u8; 32]>());
        let hint = match style {
            SecretHint::Suffix => secret[secret.len() - 4..].to_string(),
            SecretHint::Prefix => secret[..4].to_string(),
            SecretHint::Opaque => hex(&rand::random::<[u8; 4]>()),
        };
        if !taken.iter().any(|s| s.hint == hint) {
            return (secret, hint);
        }
    }
}

/// Why `/oauth/token` or `/oauth/revoke` refused a request (RFC 6749 §5.2 names).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenFailure {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("client authentication failed: unknown client, or wrong or missing client_secret")]
    InvalidClient,
    #[error("grant_type '{0}' is not supported")]
    UnsupportedGrantType(String),
    #[error("the client may not use grant_type '{0}'")]
    UnauthorizedClient(String),
    #[error("scope not allowed for this client: {0}")]
    InvalidScope(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error(
        "user has reached the maximum number of tokens ({live} live tokens, maximum {max} per user)"
    )]
    TokenLimit { live: usize, max: u32 },
    #[error("request body above {MAX_OAUTH_BODY} bytes")]
    TooLarge,
    #[error("use POST")]
    MethodNotAllowed,
    #[error("{0}")]
    Internal(String),
}

impl TokenFailure {
    /// The answer, in Qlik's `{"errors":[…]}` shape or RFC 6749's.
    pub fn into_api_error(self, style: OAuthErrorStyle) -> ApiError {
        let (status, code, rfc, title) = match &self {
            Self::InvalidRequest(_) => (
                StatusCode::BAD_REQUEST,
                "OAUTH-FAKE-INVALID-REQUEST",
                "invalid_request",
                "Invalid request",
            ),
            Self::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                "OAUTH-FAKE-INVALID-CLIENT",
                "invalid_client",
                "Invalid client",
            ),
            Self::UnsupportedGrantType(_) => (
                StatusCode::BAD_REQUEST,
                "OAUTH-FAKE-UNSUPPORTED-GRANT-TYPE",
                "unsupported_grant_type",
                "Unsupported grant type",
            ),
            Self::UnauthorizedClient(_) => (
                StatusCode::BAD_REQUEST,
                "OAUTH-FAKE-UNAUTHORIZED-CLIENT",
                "unauthorized_client",
                "Grant type not allowed for this client",
            ),
            Self::InvalidScope(_) => (
                StatusCode::BAD_REQUEST,
                "OAUTH-FAKE-INVALID-SCOPE",
                "invalid_scope",
                "Invalid scope",
            ),
            Self::InvalidGrant(_) => (
                StatusCode::BAD_REQUEST,
                "OAUTH-FAKE-INVALID-GRANT",
                "invalid_grant",
                "Invalid grant",
            ),
            Self::TokenLimit { .. } => (
                StatusCode::FORBIDDEN,
                "OAUTH-FAKE-TOKEN-LIMIT",
                "access_denied",
                "Maximum number of tokens reached",
            ),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "OAUTH-FAKE-PAYLOAD-TOO-LARGE",
                "invalid_request",
                "Payload too large",
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "OAUTH-FAKE-METHOD-NOT-ALLOWED",
                "invalid_request",
                "Method not allowed",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "OAUTH-FAKE-INTERNAL",
                "server_error",
                "Unexpected error",
            ),
        };
        let detail = self.to_string();
        match style {
            OAuthErrorStyle::Qlik => {
                ApiError::new(status, ErrorShape::OAuth, code, title).with_detail(detail)
            }
            OAuthErrorStyle::Rfc6749 => {
                // RFC 6749 §5.2: 400 for its errors, "unless specified otherwise": 401 for
                // invalid_client only. What lies outside §5.2 (Qlik's 403 token maximum, 405,
                // 413, 500) keeps its status, in the RFC's body shape.
                let status = match &self {
                    Self::InvalidClient => StatusCode::UNAUTHORIZED,
                    Self::InvalidRequest(_)
                    | Self::UnsupportedGrantType(_)
                    | Self::UnauthorizedClient(_)
                    | Self::InvalidScope(_)
                    | Self::InvalidGrant(_) => StatusCode::BAD_REQUEST,
                    Self::TokenLimit { .. }
                    | Self::TooLarge
                    | Self::MethodNotAllowed
                    | Self::Internal(_) => status,
                };
                ApiError::new(status, ErrorShape::Rfc6749, rfc, title).with_detail(detail)
            }
        }
    }
}

/// Undoes `application/x-www-form-urlencoded` encoding (`+` and `%XX`), as RFC 6749 §2.3.1
/// asks of the client id and secret in a Basic header; `None` for a broken escape or UTF-8.
fn form_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let high = char::from(bytes.next()?).to_digit(16)?;
                let low = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(high * 16 + low).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Client credentials from an HTTP Basic `Authorization` header (RFC 6749 §2.3.1:
/// `base64(urlencode(client_id) ":" urlencode(client_secret))`). `None` without a Basic
/// header; `Err(InvalidClient)` for one that does not decode to an id and a secret.
pub fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), TokenFailure>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let (id, secret) = text.split_once(':')?;
            Some((form_decode(id)?, form_decode(secret)?))
        })
        .filter(|(id, secret)| !id.is_empty() && !secret.is_empty());
    Some(decoded.ok_or(TokenFailure::InvalidClient))
}

/// The parameters of an `/oauth/*` body, JSON or form. Strings only, except `user_lookup`.
pub struct OAuthParams(Map<String, Value>);

impl OAuthParams {
    /// Reads a JSON body (what Qlik's own client sends) or an
    /// `application/x-www-form-urlencoded` one (RFC 6749), by `content-type`.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, TokenFailure> {
        let mime = content_type
            .and_then(|c| c.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        match mime.as_deref() {
            Some("application/json") => match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => Ok(Self(map)),
                Ok(_) => Err(TokenFailure::InvalidRequest(
                    "the body must be a JSON object".into(),
                )),
                Err(e) => Err(TokenFailure::InvalidRequest(format!(
                    "the body is not valid JSON: {e}"
                ))),
            },
            Some("application/x-www-form-urlencoded") => {
                let mut map = Map::new();
                for (name, value) in url::form_urlencoded::parse(body) {
                    // RFC 6749 §3.2: parameters must not be repeated.
                    if map.insert(name.to_string(), json!(value)).is_some() {
                        return Err(TokenFailure::InvalidRequest(format!(
                            "parameter '{name}' is repeated"
                        )));
                    }
                }
                Ok(Self(map))
            }
            _ => Err(TokenFailure::InvalidRequest(
                "content-type must be application/json or application/x-www-form-urlencoded".into(),
            )),
        }
    }

    /// A string parameter; absent or empty is `None`, another type is refused.
    pub fn string(&self, name: &str) -> Result<Option<&str>, TokenFailure> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(TokenFailure::InvalidRequest(format!(
                "parameter '{name}' must be a string"
            ))),
        }
    }

    /// Takes the client credentials of a Basic header (see [`basic_credentials`]) as the
    /// request's `client_id` and `client_secret`. A client uses one method only (RFC 6749
    /// §2.3): a `client_secret` in the body too, or another `client_id`, is `invalid_request`.
    pub fn apply_basic(
        &mut self,
        basic: Option<Result<(String, String), TokenFailure>>,
    ) -> Result<(), TokenFailure> {
        let Some(basic) = basic else {
            return Ok(());
        };
        let (id, secret) = basic?;
        if self.string("client_secret")?.is_some() {
            return Err(TokenFailure::InvalidRequest(
                "client credentials in both the Authorization header and the body: use one \
                 method (RFC 6749 §2.3)"
                    .into(),
            ));
        }
        if self
            .string("client_id")?
            .is_some_and(|body_id| body_id != id)
        {
            return Err(TokenFailure::InvalidRequest(
                "client_id in the body differs from the Authorization header's".into(),
            ));
        }
        self.0.insert("client_id".into(), json!(id));
        self.0.insert("client_secret".into(), json!(secret));
        Ok(())
    }

    /// A string parameter for the request log only: errors read as absent.
    pub fn loose(&self, name: &str) -> Option<String> {
        self.string(name).ok().flatten().map(str::to_string)
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

/// A token the tenant just issued. `value` is the bearer: shown once, never kept.
pub struct IssuedToken {
    pub id: String,
    pub value: String,
    pub client_id: String,
    pub user_id: String,
    pub grant: Grant,
    /// The granted scopes (the answer's space-separated `scope`).
    pub scopes: Vec<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("value", &"[REDACTED]")
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A client as `GET /__fake/oauth-clients` shows it (hints only, never a secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub app_type: String,
    pub allowed_grant_types: Vec<String>,
    pub allowed_scopes: Vec<String>,
    /// `None` until the client's first token creates its bot.
    pub bot_user_id: Option<String>,
    pub secrets: Vec<SecretView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretView {
    pub hint: String,
    pub created_at: String,
    pub created_by: String,
}

/// A token as `GET /__fake/oauth-clients/{id}/tokens` shows it (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenView {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub grant: Grant,
    pub scopes: Vec<String>,
    /// The fake's own id of the secret it was minted with (never shown by the API).
    pub secret_id: String,
    /// That secret's hint at the time (a later secret may have the same hint).
    pub secret_hint: String,
    pub status: String,
    pub issued_at: String,
    pub expires_at: String,
    pub last_used: Option<String>,
}

/// A client and its first secret, as created by [`TenantState::add_oauth_client`].
#[derive(Clone)]
pub struct NewClient {
    pub client_id: String,
    /// The secret, shown once (test material).
    pub client_secret: String,
    pub hint: String,
}

impl std::fmt::Debug for NewClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("hint", &self.hint)
            .finish()
    }
}

fn oauth_error(status: StatusCode, code: &'static str, title: &str) -> ApiError {
    ApiError::new(status, ErrorShape::OAuth, code, title)
}

/// The 400 of a list call's query.
fn bad_query(detail: String) -> ApiError {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "OAUTH-FAKE-BAD-REQUEST",
        "Invalid request was made",
    )
    .with_detail(detail)
}

fn client_forbidden(detail: &str) -> ApiError {
    oauth_error(
        StatusCode::FORBIDDEN,
        "OAUTH-FAKE-FORBIDDEN",
        "Requestor not allowed to manage this OAuth client",
    )
    .with_detail(detail)
}

/// Attributes `getOAuthClients` may filter on.
const FILTERABLE: [&str; 5] = [
    "clientId",
    "clientName",
    "appType",
    "tenantId",
    "createdByType",
];

/// The subset of RFC 7644 §3.4.2.2 filters the fake reads: `attr eq "value"` clauses joined
/// by `and` (operators and `and` in any case; `\"` and `\\` escapes in values).
fn parse_filter(text: &str) -> Result<Vec<(String, String)>, String> {
    let unsupported = || {
        format!(
            "unsupported filter '{text}': the fake reads attr eq \"value\" clauses joined by and, \
             on {}",
            FILTERABLE.join(", ")
        )
    };
    let mut clauses = Vec::new();
    let mut rest = text.trim_start();
    loop {
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(end);
        if !FILTERABLE.contains(&name) {
            return Err(unsupported());
        }
        let after = after.trim_start();
        let after = after
            .get(..2)
            .filter(|op| op.eq_ignore_ascii_case("eq"))
            .map(|_| after[2..].trim_start())
            .ok_or_else(unsupported)?;
        let mut chars = after
            .strip_prefix('"')
            .ok_or_else(unsupported)?
            .char_indices();
        let mut value = String::new();
        let close = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('"' | '\\'))) => value.push(c),
                    _ => return Err(unsupported()),
                },
                Some((_, c)) => value.push(c),
                None => return Err(unsupported()),
            }
        };
        clauses.push((name.to_string(), value));
        rest = after[1 + close + 1..].trim_start();
        if rest.is_empty() {
            return Ok(clauses);
        }
        let joined = rest
            .get(..3)
            .filter(|and| and.eq_ignore_ascii_case("and"))
            .map(|_| &rest[3..])
            .filter(|after| after.starts_with(char::is_whitespace))
            .ok_or_else(unsupported)?;
        rest = joined.trim_start();
    }
}

fn client_not_found() -> ApiError {
    oauth_error(
        StatusCode::NOT_FOUND,
        "OAUTH-FAKE-NOT-FOUND",
        "OAuth client not found",
    )
}

impl TenantState {
    /// Creates an M2M client with one secret (the seed client, `POST /__fake/oauth-clients`).
    pub fn add_oauth_client(
        &mut self,
        name: &str,
        grants: &[String],
        scopes: &[String],
        created_by: &str,
        now: Timestamp,
    ) -> Result<NewClient, String> {
        if grants.is_empty() {
            return Err("allowed_grant_types must not be empty".into());
        }
        if let Some(bad) = grants.iter().find(|g| Grant::parse(g).is_none()) {
            return Err(format!(
                "unknown grant type '{bad}' (known: {GRANT_CLIENT_CREDENTIALS}, {GRANT_IMPERSONATION})"
            ));
        }
        if let Some(bad) = scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(format!("invalid scope '{bad}'"));
        }
        let (secret, hint) = new_secret(self.settings.oauth_secret_hint, &[]);
        let client = OAuthClient {
            id: new_client_id(),
            name: name.into(),
            // `OAuthClientBase.appType` is "web" | "native" | "spa" | "anonymous-embed", and
            // `allowedGrantTypes` is "only for use with appType: 'web'": an M2M client is "web".
            app_type: "web".into(),
            allowed_grant_types: grants.to_vec(),
            allowed_scopes: scopes.to_vec(),
            secrets: vec![ClientSecret {
                id: new_user_id(),
                hint: hint.clone(),
                digest: sha256(secret.as_bytes()),
                created_at: now,
                created_by: created_by.into(),
            }],
            created_at: now,
            created_by: created_by.into(),
            bot_user_id: new_user_id(),
        };
        let client_id = client.id.clone();
        self.oauth.clients.push(client);
        Ok(NewClient {
            client_id,
            client_secret: secret,
            hint,
        })
    }

    /// The (reserved) bot user id of a known client: its calls count against that user.
    pub fn oauth_client_bot(&self, client_id: &str) -> Option<String> {
        self.oauth.client(client_id).map(|c| c.bot_user_id.clone())
    }

    /// `POST /oauth/token` once the body is read and the call counted (qlik-oauth.md §2).
    pub fn issue_token(
        &mut self,
        params: &OAuthParams,
        now: Timestamp,
    ) -> Result<IssuedToken, TokenFailure> {
        let client_id = params
            .string("client_id")?
            .ok_or(TokenFailure::InvalidClient)?;
        let secret = params
            .string("client_secret")?
            .ok_or(TokenFailure::InvalidClient)?;
        let client = self
            .oauth
            .client(client_id)
            .ok_or(TokenFailure::InvalidClient)?;
        let (secret_id, secret_hint) = client
            .matching_secret(secret)
            .map(|s| (s.id.clone(), s.hint.clone()))
            .ok_or(TokenFailure::InvalidClient)?;

        let grant_type = params
            .string("grant_type")?
            .ok_or_else(|| TokenFailure::InvalidRequest("grant_type is required".into()))?;
        let grant = Grant::parse(grant_type)
            .ok_or_else(|| TokenFailure::UnsupportedGrantType(grant_type.into()))?;
        if !client.allows(grant) {
            return Err(TokenFailure::UnauthorizedClient(grant_type.into()));
        }

        // Space-separated; none (or empty) means the client's whole allow list (§2).
        let scopes: Vec<String> = match params.string("scope")? {
            None => client.allowed_scopes.clone(),
            Some(text) => {
                let asked: Vec<String> = text.split_whitespace().map(str::to_string).collect();
                let refused: Vec<&str> = asked
                    .iter()
                    .filter(|s| !client.allowed_scopes.contains(s))
                    .map(String::as_str)
                    .collect();
                if !refused.is_empty() {
                    return Err(TokenFailure::InvalidScope(refused.join(" ")));
                }
                asked
            }
        };

        let user_id = match grant {
            Grant::ClientCredentials => client.bot_user_id.clone(),
            Grant::Impersonation => self.impersonated(params)?,
        };

        // "User is disabled or has reached the maximum number of tokens" (S1): per user, the
        // bot for client credentials, the impersonated user for impersonation.
        let max = self.settings.oauth_max_tokens_per_user;
        let live = self.oauth.live_tokens_for(&user_id, now);
        if max > 0 && live >= max as usize {
            return Err(TokenFailure::TokenLimit { live, max });
        }

        let life = parse_positive_duration(&self.settings.oauth_token_life)
            .map_err(TokenFailure::Internal)?;
        let expires_at = add_span(now, life).map_err(TokenFailure::Internal)?;

        // The first token of a client creates its bot: a TenantAdmin-equivalent user (§1).
        let (client_id, bot_user_id, name) = (
            client.id.clone(),
            client.bot_user_id.clone(),
            client.name.clone(),
        );
        if self.user(&bot_user_id).is_none() {
            self.users.push(User {
                id: bot_user_id.clone(),
                name,
                can_create_keys: true,
                tenant_admin: true,
                created: now,
                bot_of: Some(client_id.clone()),
            });
            tracing::info!(%client_id, user_id = %bot_user_id, "oauth bot user created");
        }

        let value = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let token = AccessToken {
            id: new_user_id(),
            digest: sha256(value.as_bytes()),
            client_id: client_id.clone(),
            user_id: user_id.clone(),
            grant,
            scopes: scopes.clone(),
            secret_id,
            secret_hint,
            issued_at: now,
            expires_at,
            revoked: false,
            last_used: None,
        };
        let id = token.id.clone();
        self.oauth
            .by_digest
            .insert(token.digest, self.oauth.tokens.len());
        self.oauth.tokens.push(token);
        Ok(IssuedToken {
            id,
            value,
            client_id,
            user_id,
            grant,
            scopes,
            issued_at: now,
            expires_at,
        })
    }

    /// The user an impersonation request names (`user_lookup: {field, value}`).
    fn impersonated(&self, params: &OAuthParams) -> Result<String, TokenFailure> {
        let lookup = match params.get("user_lookup") {
            None | Some(Value::Null) => {
                return Err(TokenFailure::InvalidRequest(
                    "user_lookup is required for user impersonation".into(),
                ));
            }
            Some(Value::Object(lookup)) => lookup,
            Some(_) => {
                return Err(TokenFailure::InvalidRequest(
                    "user_lookup must be an object {field, value}: send a JSON body".into(),
                ));
            }
        };
        let text = |name: &str| lookup.get(name).and_then(Value::as_str);
        let (Some(field), Some(value)) = (text("field"), text("value")) else {
            return Err(TokenFailure::InvalidRequest(
                "user_lookup needs string members field and value".into(),
            ));
        };
        let user = match field {
            "userId" => self.users.iter().find(|u| u.id == value),
            "subject" => self.users.iter().find(|u| u.subject() == value),
            _ => {
                return Err(TokenFailure::InvalidRequest(format!(
                    "user_lookup.field must be subject or userId, not '{field}'"
                )));
            }
        };
        user.map(|u| u.id.clone()).ok_or_else(|| {
            TokenFailure::InvalidGrant(format!("no user with {field} '{value}' in this tenant"))
        })
    }

    /// Resolves an access token used as a bearer to the user it acts as, or 401.
    pub fn authenticate_oauth(&mut self, value: &str, now: Timestamp) -> Result<User, ApiError> {
        let index = self
            .oauth
            .token_index(value)
            .filter(|&i| self.oauth.tokens[i].is_live(now))
            .ok_or_else(ApiError::unauthorized)?;
        let user_id = self.oauth.tokens[index].user_id.clone();
        let user = self
            .user(&user_id)
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        self.oauth.tokens[index].last_used = Some(now);
        Ok(user)
    }

    /// `POST /oauth/revoke` (RFC 7009): `Ok(None)` for a token the tenant does not know (or
    /// that another client holds), which is answered 200 like a revoked one.
    pub fn revoke_token(
        &mut self,
        params: &OAuthParams,
    ) -> Result<Option<(String, String)>, TokenFailure> {
        let value = params
            .string("token")?
            .ok_or_else(|| TokenFailure::InvalidRequest("token is required".into()))?;
        params.string("token_type_hint")?; // any hint: RFC 7009 §2.1 says search on anyway
        // Client credentials are optional; when given they must be right, and only that
        // client's tokens are revoked.
        let client = match params.string("client_id")? {
            None => None,
            Some(id) => {
                let secret = params.string("client_secret")?.unwrap_or_default();
                let client = self.oauth.client(id).ok_or(TokenFailure::InvalidClient)?;
                client
                    .matching_secret(secret)
                    .ok_or(TokenFailure::InvalidClient)?;
                Some(id.to_string())
            }
        };
        let Some(index) = self.oauth.token_index(value) else {
            return Ok(None);
        };
        let token = &mut self.oauth.tokens[index];
        if client.is_some_and(|c| c != token.client_id) {
            return Ok(None);
        }
        token.revoked = true;
        Ok(Some((token.id.clone(), token.client_id.clone())))
    }

    fn token_description(&self, token: &AccessToken) -> String {
        let name = self
            .oauth
            .client(&token.client_id)
            .map(|c| c.name.as_str())
            .unwrap_or("deleted client");
        match token.grant {
            Grant::ClientCredentials => format!("{name} (client credentials)"),
            Grant::Impersonation => format!("{name} (user impersonation)"),
        }
    }

    /// Whether `GET /api/v1/oauth-tokens` shows the token (§6.3 switch).
    fn token_listed(&self, token: &AccessToken, now: Timestamp) -> bool {
        token.is_live(now)
            && !(self.settings.oauth_hide_client_tokens && token.grant == Grant::ClientCredentials)
    }

    fn token_json(&self, token: &AccessToken) -> Value {
        let mut out = json!({
            "id": token.id,
            "tenantId": self.tenant_id,
            "userId": token.user_id,
            "description": self.token_description(token),
        });
        if let Some(used) = token.last_used {
            out["lastUsed"] = json!(rfc3339_millis(used));
        }
        out
    }

    /// `GET /api/v1/oauth-tokens` (qlik-oauth.md §3): live tokens, paged by an opaque `page`
    /// cursor; a TenantAdmin sees every user's, others only their own.
    pub fn list_oauth_tokens(
        &self,
        caller: &User,
        query: &HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Page, ApiError> {
        let limit = page_limit(query, bad_query)?;
        // `oauth-tokens.d.ts` has only `sort?: "userId"`, and qlik.dev names `userId` the
        // default: `userId`, `+userId` or `-userId`; ties in issue order.
        let descending = match query.get("sort").map(String::as_str) {
            None | Some("userId" | "+userId") => false,
            Some("-userId") => true,
            Some(other) => {
                return Err(bad_query(format!(
                    "unsupported sort '{other}': only userId (+userId, -userId)"
                )));
            }
        };
        if let Some(user_id) = query.get("userId")
            && *user_id != caller.id
            && !caller.tenant_admin
        {
            return Err(oauth_error(
                StatusCode::FORBIDDEN,
                "OAUTH-FAKE-FORBIDDEN",
                "Requestor not allowed to list other users' tokens",
            ));
        }
        let order = |a: &AccessToken, b: &AccessToken| -> Ordering {
            let by_user = a.user_id.cmp(&b.user_id);
            let by_user = if descending {
                by_user.reverse()
            } else {
                by_user
            };
            by_user
                .then(a.issued_at.cmp(&b.issued_at))
                .then(a.id.cmp(&b.id))
        };
        let mut matching: Vec<&AccessToken> = self
            .oauth
            .tokens
            .iter()
            .filter(|t| self.token_listed(t, now))
            .filter(|t| caller.tenant_admin || t.user_id == caller.id)
            .filter(|t| query.get("userId").is_none_or(|u| t.user_id == *u))
            .collect();
        matching.sort_by(|a, b| order(a, b));

        // `page` is an opaque cursor: "a:<id>" (after that token) or "b:<id>" (before it).
        let from = match query.get("page") {
            None => PageFrom::Start,
            Some(cursor) => {
                let decoded = URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| bad_query(format!("unknown page '{cursor}'")))?;
                let (direction, id) = decoded
                    .split_once(':')
                    .ok_or_else(|| bad_query(format!("unknown page '{cursor}'")))?;
                let at = self
                    .oauth
                    .tokens
                    .iter()
                    .find(|t| t.id == id)
                    .ok_or_else(|| bad_query(format!("unknown page '{cursor}'")))?;
                match direction {
                    "a" => PageFrom::After(at),
                    "b" => PageFrom::Before(at),
                    _ => return Err(bad_query(format!("unknown page '{cursor}'"))),
                }
            }
        };
        let (start, end) = page_window(&matching, limit, from, order);
        let href = |page: Option<&str>| {
            list_href(
                &self.base_url,
                "/api/v1/oauth-tokens",
                query,
                &["page"],
                page.map(|page| ("page", page)),
            )
        };
        let links = page_links(
            &matching,
            (start, end),
            self.settings.null_page_links,
            href(query.get("page").map(String::as_str)),
            |name, token: &AccessToken| {
                let direction = if name == "next" { "a" } else { "b" };
                href(Some(
                    &URL_SAFE_NO_PAD.encode(format!("{direction}:{}", token.id)),
                ))
            },
        );
        let page = &matching[start..end];
        Ok(Page {
            data: page.iter().map(|t| self.token_json(t)).collect(),
            links,
        })
    }

    /// `DELETE /api/v1/oauth-tokens/{id}`: the token's user or a TenantAdmin revokes it.
    pub fn delete_oauth_token(
        &mut self,
        caller: &User,
        id: &str,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let index = self
            .oauth
            .tokens
            .iter()
            .position(|t| t.id == id && self.token_listed(t, now))
            .ok_or_else(|| {
                oauth_error(
                    StatusCode::NOT_FOUND,
                    "OAUTH-FAKE-NOT-FOUND",
                    "Token not found",
                )
            })?;
        let token = &mut self.oauth.tokens[index];
        if token.user_id != caller.id && !caller.tenant_admin {
            return Err(oauth_error(
                StatusCode::FORBIDDEN,
                "OAUTH-FAKE-FORBIDDEN",
                "Requestor not allowed to revoke this token",
            ));
        }
        token.revoked = true;
        Ok(())
    }

    /// Who may read a client and manage its secrets (qlik-oauth.md §4, §6.1): TenantAdmin
    /// users, and the client's own bot unless `oauth_secrets_admin_only`; never another
    /// client's bot.
    fn managed_client(&self, caller: &User, id: &str) -> Result<usize, ApiError> {
        let index = self
            .oauth
            .clients
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(client_not_found)?;
        match &caller.bot_of {
            Some(own) if *own == id => {
                if self.settings.oauth_secrets_admin_only {
                    return Err(client_forbidden(
                        "only a tenant admin may manage client secrets (oauth_secrets_admin_only)",
                    ));
                }
            }
            Some(_) => return Err(client_forbidden("another client's bot")),
            None if caller.tenant_admin => {}
            None => return Err(client_forbidden("the user is not a tenant admin")),
        }
        Ok(index)
    }

    fn client_json(&self, client: &OAuthClient) -> Value {
        let secrets: Vec<Value> = client
            .secrets
            .iter()
            .map(|s| {
                json!({
                    "hint": s.hint,
                    "createdAt": rfc3339_millis(s.created_at),
                    "createdBy": s.created_by,
                })
            })
            .collect();
        // The members of `OAuthClientReadResponse` (`clientId` & `OAuthClientBase`) the fake
        // can fill: a tenant admin created every client ("user"), every client authenticates
        // with a secret, and the fake has no PATCH, so a client is never updated.
        let created_at = rfc3339_millis(client.created_at);
        json!({
            "clientId": client.id,
            "clientName": client.name,
            "appType": client.app_type,
            "allowedAuthMethods": ["client_secret"],
            "allowedGrantTypes": client.allowed_grant_types,
            "allowedScopes": client.allowed_scopes,
            "clientSecrets": secrets,
            "createdAt": created_at,
            "createdByType": "user",
            "updatedAt": created_at,
        })
    }

    /// `GET /api/v1/oauth-clients` (`getOAuthClients`): the clients the caller may read with
    /// `GET /api/v1/oauth-clients/{id}` (a TenantAdmin user: every one; a client's bot: its
    /// own, or 403 under `oauth_secrets_admin_only`; other users 403). The query as
    /// `oauth-clients.d.ts` has it: `limit` (1-100, default 20), `next`/`prev` (opaque
    /// cursors from the links), `sort` (`±clientId`, `±clientName`, `±appType`, `±tenantId`,
    /// `±createdAt`, `±updatedAt`; default `+createdAt`; ties by creation), `filter` (RFC 7644
    /// `attr eq "value"` clauses joined by `and`, on `clientId`, `clientName`, `appType`,
    /// `tenantId`, `createdByType`) and `totalResults`.
    pub fn list_oauth_clients(
        &self,
        caller: &User,
        query: &HashMap<String, String>,
    ) -> Result<Value, ApiError> {
        let own = match &caller.bot_of {
            Some(_) if self.settings.oauth_secrets_admin_only => {
                return Err(client_forbidden(
                    "only a tenant admin may read OAuth clients (oauth_secrets_admin_only)",
                ));
            }
            Some(own) => Some(own.as_str()),
            None if caller.tenant_admin => None,
            None => return Err(client_forbidden("the user is not a tenant admin")),
        };
        let limit = page_limit(query, bad_query)?;
        let total_results = match query.get("totalResults").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(bad_query(format!(
                    "totalResults must be true or false, not '{other}'"
                )));
            }
        };
        const SORTABLE: [&str; 6] = [
            "clientId",
            "clientName",
            "appType",
            "tenantId",
            "createdAt",
            "updatedAt",
        ];
        let sort = query
            .get("sort")
            .map(String::as_str)
            .unwrap_or("+createdAt");
        let (descending, field) = match (sort.strip_prefix('+'), sort.strip_prefix('-')) {
            (Some(field), _) => (false, field),
            (_, Some(field)) => (true, field),
            _ => (false, ""),
        };
        if !SORTABLE.contains(&field) {
            return Err(bad_query(format!(
                "unsupported sort '{sort}': +/- and one of {}",
                SORTABLE.join(", ")
            )));
        }
        let filter = match query.get("filter") {
            None => Vec::new(),
            Some(text) => parse_filter(text).map_err(bad_query)?,
        };
        if query.contains_key("next") && query.contains_key("prev") {
            return Err(bad_query("next and prev cannot be combined".into()));
        }

        // The client's value of a filter or sort attribute.
        let attribute = |client: &OAuthClient, name: &str| -> String {
            match name {
                "clientId" => client.id.clone(),
                "clientName" => client.name.clone(),
                "appType" => client.app_type.clone(),
                "tenantId" => self.tenant_id.clone(),
                "createdByType" => "user".into(),
                _ => String::new(),
            }
        };
        let order = |a: &OAuthClient, b: &OAuthClient| -> Ordering {
            let by_creation = a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id));
            let primary = match field {
                // updatedAt = createdAt: the fake never updates a client.
                "createdAt" | "updatedAt" => by_creation,
                name => attribute(a, name).cmp(&attribute(b, name)),
            };
            let primary = if descending {
                primary.reverse()
            } else {
                primary
            };
            primary.then(by_creation)
        };
        let mut matching: Vec<&OAuthClient> = self
            .oauth
            .clients
            .iter()
            .filter(|c| own.is_none_or(|own| c.id == own))
            .filter(|c| {
                filter
                    .iter()
                    .all(|(name, value)| attribute(c, name) == *value)
            })
            .collect();
        matching.sort_by(|a, b| order(a, b));

        // Cursors name a client: `next` pages after it, `prev` before it.
        let at = |name: &str, cursor: &String| {
            URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|id| self.oauth.client(&id))
                .ok_or_else(|| bad_query(format!("unknown {name} cursor '{cursor}'")))
        };
        let from = if let Some(cursor) = query.get("next") {
            PageFrom::After(at("next", cursor)?)
        } else if let Some(cursor) = query.get("prev") {
            PageFrom::Before(at("prev", cursor)?)
        } else {
            PageFrom::Start
        };
        let (start, end) = page_window(&matching, limit, from, order);
        let href = |cursor: Option<(&str, &str)>| {
            list_href(
                &self.base_url,
                "/api/v1/oauth-clients",
                query,
                &["next", "prev"],
                cursor,
            )
        };
        let links = page_links(
            &matching,
            (start, end),
            self.settings.null_page_links,
            href(None),
            |name, client: &OAuthClient| href(Some((name, &URL_SAFE_NO_PAD.encode(&client.id)))),
        );
        let page = &matching[start..end];
        let mut answer = json!({
            "data": page.iter().map(|c| self.client_json(c)).collect::<Vec<_>>(),
            "links": links,
        });
        if total_results {
            answer["totalResults"] = json!(matching.len());
        }
        Ok(answer)
    }

    /// `GET /api/v1/oauth-clients/{id}`: hints only, never a secret.
    pub fn get_oauth_client(&self, caller: &User, id: &str) -> Result<Value, ApiError> {
        let index = self.managed_client(caller, id)?;
        Ok(self.client_json(&self.oauth.clients[index]))
    }

    /// `POST /api/v1/oauth-clients/{id}/client-secrets`: the secret is in this answer only.
    pub fn create_client_secret(
        &mut self,
        caller: &User,
        id: &str,
        now: Timestamp,
    ) -> Result<Value, ApiError> {
        let index = self.managed_client(caller, id)?;
        let style = self.settings.oauth_secret_hint;
        let client = &mut self.oauth.clients[index];
        if client.secrets.len() >= MAX_CLIENT_SECRETS {
            return Err(
                oauth_error(StatusCode::CONFLICT, "OAUTH-FAKE-SECRET-LIMIT", "Conflict")
                    .with_detail(format!(
                        "max number of client secrets is {MAX_CLIENT_SECRETS}"
                    )),
            );
        }
        let (secret, hint) = new_secret(style, &client.secrets);
        client.secrets.push(ClientSecret {
            id: new_user_id(),
            hint: hint.clone(),
            digest: sha256(secret.as_bytes()),
            created_at: now,
            created_by: caller.id.clone(),
        });
        Ok(json!({
            "clientId": client.id,
            "clientSecret": secret,
            "hint": hint,
            "createdAt": rfc3339_millis(now),
            "createdBy": caller.id,
        }))
    }

    /// `DELETE /api/v1/oauth-clients/{id}/client-secrets/{hint}`. Returns how many live
    /// tokens were revoked with it (only with `oauth_secret_delete_revokes_tokens`).
    pub fn delete_client_secret(
        &mut self,
        caller: &User,
        id: &str,
        hint: &str,
        now: Timestamp,
    ) -> Result<usize, ApiError> {
        let index = self.managed_client(caller, id)?;
        let client = &mut self.oauth.clients[index];
        let position = client
            .secrets
            .iter()
            .position(|s| s.hint == hint)
            .ok_or_else(|| {
                oauth_error(
                    StatusCode::NOT_FOUND,
                    "OAUTH-FAKE-NOT-FOUND",
                    "Client secret not found",
                )
            })?;
        let removed = client.secrets.remove(position);
        let mut revoked = 0;
        if self.settings.oauth_secret_delete_revokes_tokens {
            // By the secret's own id, not its hint: a token minted with an earlier secret
            // that had the same hint is not this secret's.
            for token in self
                .oauth
                .tokens
                .iter_mut()
                .filter(|t| t.secret_id == removed.id && t.is_live(now))
            {
                token.revoked = true;
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// Every client, for `/__fake/oauth-clients`.
    pub fn client_views(&self) -> Vec<ClientView> {
        self.oauth
            .clients
            .iter()
            .map(|c| ClientView {
                client_id: c.id.clone(),
                name: c.name.clone(),
                app_type: c.app_type.clone(),
                allowed_grant_types: c.allowed_grant_types.clone(),
                allowed_scopes: c.allowed_scopes.clone(),
                bot_user_id: self.user(&c.bot_user_id).map(|u| u.id.clone()),
                secrets: c
                    .secrets
                    .iter()
                    .map(|s| SecretView {
                        hint: s.hint.clone(),
                        created_at: rfc3339_millis(s.created_at),
                        created_by: s.created_by.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// A client's tokens (live ones only unless `all`), for `/__fake/oauth-clients/{id}/tokens`.
    pub fn token_views(&self, client_id: &str, all: bool, now: Timestamp) -> Vec<TokenView> {
        self.oauth
            .tokens
            .iter()
            .filter(|t| t.client_id == client_id && (all || t.is_live(now)))
            .map(|t| TokenView {
                id: t.id.clone(),
                client_id: t.client_id.clone(),
                user_id: t.user_id.clone(),
                grant: t.grant,
                scopes: t.scopes.clone(),
                secret_id: t.secret_id.clone(),
                secret_hint: t.secret_hint.clone(),
                status: t.status(now).into(),
                issued_at: rfc3339_millis(t.issued_at),
                expires_at: rfc3339_millis(t.expires_at),
                last_used: t.last_used.map(rfc3339_millis),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::state::{Settings, TenantConfig};

    fn params(body: Value) -> OAuthParams {
        OAuthParams::parse(Some("application/json"), body.to_string().as_bytes())
            .expect("a JSON object")
    }

    /// qlik-oauth.md §6.4: a hint is unique only among a client's current secrets, so a new
    /// secret may get the hint of a deleted one. Deleting the new secret (with
    /// `oauth_secret_delete_revokes_tokens`) must not revoke the tokens of the old one.
    #[test]
    fn deleting_a_secret_revokes_only_the_tokens_minted_with_that_very_secret() {
        let now = Timestamp::now();
        let url = url::Url::parse("https://127.0.0.1:1").unwrap();
        let mut state = TenantState::new(url, TenantConfig::default(), Settings::default());
        let admin = state.add_user("admin", true, true, now);
        let first = state
            .add_oauth_client(
                "c",
                &[GRANT_CLIENT_CREDENTIALS.into()],
                &["user_default".into()],
                &admin.id,
                now,
            )
            .unwrap();
        let cc = |secret: &str| {
            params(json!({"grant_type": GRANT_CLIENT_CREDENTIALS,
                          "client_id": first.client_id, "client_secret": secret}))
        };

        // A token of the first secret, which is then deleted with the switch off.
        let old = state.issue_token(&cc(&first.client_secret), now).unwrap();
        let deleted = state
            .delete_client_secret(&admin, &first.client_id, &first.hint, now)
            .unwrap();
        assert_eq!(deleted, 0);
        // A new secret that got the same hint (what a random collision produces).
        let created = state
            .create_client_secret(&admin, &first.client_id, now)
            .unwrap();
        state.oauth.clients[0].secrets[0].hint = first.hint.clone();
        let second = created["clientSecret"].as_str().unwrap();
        let new = state.issue_token(&cc(second), now).unwrap();
        let views = state.token_views(&first.client_id, false, now);
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].secret_hint, views[1].secret_hint);
        assert_ne!(views[0].secret_id, views[1].secret_id);

        state.settings.oauth_secret_delete_revokes_tokens = true;
        let revoked = state
            .delete_client_secret(&admin, &first.client_id, &first.hint, now)
            .unwrap();
        assert_eq!(revoked, 1, "only the token of the deleted secret");
        let status = |id: &str| {
            state
                .oauth
                .tokens
                .iter()
                .find(|t| t.id == id)
                .unwrap()
                .status(now)
        };
        assert_eq!(status(&old.id), "active");
        assert_eq!(status(&new.id), "revoked");
    }
}
