//! Qlik Cloud OAuth machine-to-machine calls (qlik-oauth.md): access tokens from
//! `/oauth/token`, their revocation at `/oauth/revoke`, and an OAuth client's secrets under
//! `/api/v1/oauth-clients/{id}`.
//!
//! | call | tier | retried after the request may have reached Qlik |
//! |---|---|---|
//! | [`QlikClient::oauth_token`] | 2, waits for a slot | yes: a duplicate token is harmless |
//! | [`QlikClient::oauth_revoke`] | 2, waits for a slot | yes: revoking twice is harmless |
//! | [`QlikClient::oauth_client`] | 1 | yes |
//! | [`QlikClient::create_client_secret`] | 2, takes its slot at once | no: [`QlikError::OutcomeUnknown`] |
//! | [`QlikClient::delete_client_secret`] | 2, waits for a slot | yes |
//!
//! `/oauth/*` calls carry no `Authorization` header: the client id and secret go in a JSON
//! body, as Qlik's own client sends them (qlik-oauth.md §2). That body is zeroized when the
//! call ends, and the secret and token are blanked out of any answer an error quotes.
//! Qlik's error shape at `/oauth/*` is not settled (§6.2): both `{"errors":[…]}` and RFC
//! 6749's `{"error": …}` are read (see [`QlikError`] for how each kind is recognised).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::client::{Call, Mode, QlikClient, Reply, invalid, parse_json, status_error, suffix};
use super::error::{ErrorBody, OAuthErrorBody, QlikError};
use super::types::DeleteOutcome;

/// `grant_type` of the client-credentials grant.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// `grant_type` of Qlik's user impersonation grant (changelog 84).
pub const GRANT_USER_IMPERSONATION: &str = "urn:qlik:oauth:user-impersonation";
/// An access token's life when Qlik's answer says nothing of it: the 6 h of Qlik's tutorial
/// (`expires_in: 21600`, qlik-oauth.md §2, §6.5).
pub const DOCUMENTED_TOKEN_LIFE: SignedDuration = SignedDuration::from_hours(6);

/// What to ask `/oauth/token` for.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// The OAuth client's id.
    pub client_id: &'a str,
    /// One of the client's current secrets.
    pub client_secret: &'a SecretString,
    /// Scopes to ask for, each one word on the client's `allowedScopes`. Empty: no `scope`
    /// is sent, and Qlik grants the client's whole allow list.
    pub scopes: &'a [String],
    /// Client credentials (the token acts as the client's bot user) or user impersonation.
    pub grant: Grant<'a>,
}

/// The grant a token is asked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'a> {
    /// `client_credentials`: the token acts as the client's bot user (TenantAdmin-like).
    ClientCredentials,
    /// `urn:qlik:oauth:user-impersonation`: the token acts as this user. The client's
    /// `allowedGrantTypes` must include the grant and the user must exist.
    Impersonation(UserLookup<'a>),
}

impl Grant<'_> {
    /// The `grant_type` sent.
    pub fn grant_type(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => GRANT_CLIENT_CREDENTIALS,
            Grant::Impersonation(_) => GRANT_USER_IMPERSONATION,
        }
    }
}

/// How an impersonation request names its user (`user_lookup: {field, value}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserLookup<'a> {
    /// By the user's `subject` (the identity provider's id).
    Subject(&'a str),
    /// By the user's Qlik id.
    UserId(&'a str),
}

impl<'a> UserLookup<'a> {
    fn field_and_value(&self) -> (&'static str, &'a str) {
        match *self {
            UserLookup::Subject(value) => ("subject", value),
            UserLookup::UserId(value) => ("userId", value),
        }
    }
}

/// Where [`AccessToken::valid_until`] comes from (qlik-oauth.md §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeSource {
    /// The answer's `expires_in`, counted from the answer's time.
    ExpiresIn,
    /// The answer's `expires_at` (no usable `expires_in`).
    ExpiresAt,
    /// Neither was in the answer: [`DOCUMENTED_TOKEN_LIFE`] from the answer's time.
    Documented6h,
}

/// A token Qlik issued. `Debug` never prints the token: it is a [`SecretString`], zeroized
/// when dropped.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The bearer. Opaque: never parse it (qlik-oauth.md §2).
    pub access_token: SecretString,
    /// `token_type` (`bearer`; `bearer` too when Qlik leaves it out).
    pub token_type: String,
    /// The granted scopes, space-separated, when the answer has them.
    pub scope: Option<String>,
    /// The answer's `expires_in` (seconds), when present and readable.
    pub expires_in: Option<u64>,
    /// The answer's `expires_at`, when present and readable (RFC 3339, or epoch seconds).
    pub expires_at: Option<Timestamp>,
    /// The tenant's time of the answer: its `Date` header (to the second), or, without one,
    /// our clock at the answer plus the last known [`QlikClient::clock_skew`].
    pub answered_at: Timestamp,
    /// When the token dies, by the tenant's clock (subtract [`QlikClient::clock_skew`] for
    /// ours): `answered_at + expires_in` (preferred), else `expires_at`, else
    /// `answered_at` + 6 h. [`Self::life_source`] says which.
    pub valid_until: Timestamp,
    /// Which of the answer's fields gave [`Self::valid_until`].
    pub life_source: LifeSource,
}

impl AccessToken {
    /// The granted scopes, one by one (empty when the answer has no `scope`).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split_whitespace()
    }
}

/// `GET /api/v1/oauth-clients/{id}`: an OAuth client as Qlik shows it (hints only, never a
/// secret). Lists Qlik leaves out are empty.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientInfo {
    pub client_id: String,
    #[serde(default)]
    pub client_name: String,
    /// `web` for an M2M client.
    #[serde(default)]
    pub app_type: String,
    #[serde(default)]
    pub allowed_scopes: Vec<String>,
    #[serde(default)]
    pub allowed_grant_types: Vec<String>,
    /// The client's current secrets (at most 5), by hint.
    #[serde(default)]
    pub client_secrets: Vec<ClientSecretInfo>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
}

impl OAuthClientInfo {
    /// Whether one of the client's current secrets has this hint.
    pub fn has_secret(&self, hint: &str) -> bool {
        self.client_secrets.iter().any(|s| s.hint == hint)
    }
}

/// One of a client's secrets, as listed: its hint, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSecretInfo {
    /// Qlik's handle of the secret (how it is formed is not documented: never derive it
    /// from a secret, qlik-oauth.md §6.4).
    pub hint: String,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// The id of the user (or the client's bot) that created it.
    #[serde(default)]
    pub created_by: Option<String>,
}

/// The `201` answer to a client-secret create: the secret, shown by Qlik only this once.
/// `Debug` redacts it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewClientSecret {
    pub client_id: String,
    pub client_secret: SecretString,
    /// The handle to delete it by, and to find it in [`OAuthClientInfo::client_secrets`].
    pub hint: String,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub created_by: Option<String>,
}

/// The `/oauth/token` body, as Qlik's own client sends it (qlik-oauth.md §2).
#[derive(Serialize)]
struct TokenBody<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    grant_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_lookup: Option<LookupBody<'a>>,
}

#[derive(Serialize)]
struct LookupBody<'a> {
    field: &'static str,
    value: &'a str,
}

/// The `/oauth/revoke` body (RFC 7009, with the client's credentials as at `/oauth/token`).
#[derive(Serialize)]
struct RevokeBody<'a> {
    token: &'a str,
    token_type_hint: &'static str,
    client_id: &'a str,
    client_secret: &'a str,
}

/// A `/oauth/token` answer; `expires_in` and `expires_at` are read leniently (unreadable:
/// absent), since a token is good without them.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "lenient_timestamp")]
    expires_at: Option<Timestamp>,
}

/// Seconds as a JSON number (integer or not) or a numeric string; anything else is `None`.
fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let seconds = match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(whole_seconds)),
        Value::String(s) => s.trim().parse::<f64>().ok().and_then(whole_seconds),
        _ => None,
    };
    Ok(seconds)
}

fn whole_seconds(seconds: f64) -> Option<u64> {
    // `as` saturates; the range check keeps nonsense out.
    (seconds.is_finite() && (0.0..1e12).contains(&seconds)).then_some(seconds as u64)
}

/// An RFC 3339 string, or epoch seconds (milliseconds when above 10^11); else `None`.
fn lenient_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let at = match Value::deserialize(d)? {
        Value::String(s) => s.trim().parse::<Timestamp>().ok(),
        Value::Number(n) => n.as_i64().and_then(|n| {
            if n.abs() > 100_000_000_000 {
                Timestamp::from_millisecond(n).ok()
            } else {
                Timestamp::from_second(n).ok()
            }
        }),
        _ => None,
    };
    Ok(at)
}

/// A JSON body in a zeroizing buffer, allocated once: `to_writer` never grows it past
/// `capacity` (an estimate with room for escapes), so no unzeroized copy is left behind.
fn json_body(value: &impl Serialize, capacity: usize) -> Result<Zeroizing<Vec<u8>>, QlikError> {
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *body, value).map_err(|e| QlikError::Config {
        detail: format!("cannot encode the request body: {e}"),
    })?;
    Ok(body)
}

/// Which `/oauth/*` endpoint answered, for reading its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Token { impersonation: bool },
    Revoke,
}

/// What an error answer says: RFC 6749's `error` code if the body has one, and the whole
/// description in lower case with `_` and `-` read as spaces (so `invalid_scope`,
/// `OAUTH-INVALID-SCOPE` and "Invalid scope" all read "invalid scope").
struct Said {
    rfc: Option<String>,
    text: String,
}

fn normalize(text: &str) -> String {
    text.to_ascii_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl Said {
    fn read(call: &Call, body: &[u8]) -> Self {
        Self {
            rfc: OAuthErrorBody::parse(body).map(|b| b.error.to_ascii_lowercase()),
            text: normalize(&call.describe(body)),
        }
    }

    /// An RFC body is judged by its `error` code only; any other by its words.
    fn says(&self, rfc_codes: &[&str], phrases: &[&str]) -> bool {
        match &self.rfc {
            Some(code) => rfc_codes.contains(&code.as_str()),
            None => {
                rfc_codes.iter().any(|c| self.text.contains(&normalize(c)))
                    || phrases.iter().any(|p| self.text.contains(p))
            }
        }
    }
}

/// Maps a final non-2xx answer of `/oauth/token` or `/oauth/revoke`.
fn oauth_error(call: &Call, status: StatusCode, body: &[u8], endpoint: Endpoint) -> QlikError {
    let said = Said::read(call, body);
    let operation = call.operation.clone();
    let detail = suffix(call, body);
    let code = status.as_u16();
    let token = matches!(endpoint, Endpoint::Token { .. });
    let impersonation = matches!(
        endpoint,
        Endpoint::Token {
            impersonation: true
        }
    );
    let client_error = status.is_client_error();
    if code == 401
        || (client_error && said.says(&["invalid_client"], &["client authentication failed"]))
    {
        return QlikError::InvalidClient {
            operation,
            status: code,
            detail,
        };
    }
    if token && code == 403 {
        return QlikError::TokenLimit { operation, detail };
    }
    if token && client_error && said.says(&["invalid_scope"], &["scope not allowed"]) {
        return QlikError::InvalidScope {
            operation,
            status: Some(code),
            detail,
        };
    }
    if token
        && client_error
        && said.says(
            &["unauthorized_client", "unsupported_grant_type"],
            &["grant type not allowed", "grant type is not allowed"],
        )
    {
        return QlikError::GrantNotAllowed {
            operation,
            status: code,
            detail,
        };
    }
    let no_such_user = said.says(
        &["invalid_grant"],
        &[
            "no user",
            "user not found",
            "unknown user",
            "user does not exist",
        ],
    );
    if impersonation && (code == 404 || (client_error && no_such_user)) {
        return QlikError::UnknownUser {
            operation,
            status: code,
            detail,
        };
    }
    status_error(call, status, body, || match endpoint {
        Endpoint::Token { .. } => "OAuth token endpoint".into(),
        Endpoint::Revoke => "OAuth revocation endpoint".into(),
    })
}

/// Whether a `/oauth/revoke` refusal only says the token is not valid (any more): RFC 7009
/// answers 200 for that, but a server that answers `invalid_token` or `invalid_grant`
/// means the same.
fn token_already_invalid(call: &Call, reply: &Reply) -> bool {
    matches!(reply.status.as_u16(), 400 | 404)
        && Said::read(call, &reply.body).says(
            &["invalid_token", "invalid_grant"],
            &["token not found", "unknown token"],
        )
}

/// Maps a final non-2xx answer of the oauth-clients API (403: [`QlikError::ClientAccessDenied`]).
fn client_api_error(call: &Call, reply: &Reply, what: impl FnOnce() -> String) -> QlikError {
    if reply.status == StatusCode::FORBIDDEN {
        return QlikError::ClientAccessDenied {
            operation: call.operation.clone(),
            detail: suffix(call, &reply.body),
        };
    }
    status_error(call, reply.status, &reply.body, what)
}

impl QlikClient {
    /// `POST {tenant}/oauth/token`: an access token for an OAuth M2M client, by client
    /// credentials or user impersonation. JSON body `{client_id, client_secret, scope?,
    /// grant_type, user_lookup?}`, no `Authorization` header, as Qlik's own client sends.
    ///
    /// Tier 2, paced like a deletion: waits for a tier-2 slot within the call's budget, so a
    /// burst of token reads waits instead of meeting a 429 (the engine gives each OAuth
    /// client its own pacer: its bot user has its own tier-2 budget at Qlik). Retried on
    /// 429, 5xx, timeouts and dropped connections, since a duplicate token is harmless.
    ///
    /// Errors of note: [`QlikError::InvalidClient`], [`QlikError::InvalidScope`],
    /// [`QlikError::GrantNotAllowed`], [`QlikError::UnknownUser`] (impersonation),
    /// [`QlikError::TokenLimit`] (403).
    pub async fn oauth_token(&self, request: &TokenRequest<'_>) -> Result<AccessToken, QlikError> {
        const OPERATION: &str = "POST /oauth/token";
        if let Some(bad) = request
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(QlikError::InvalidScope {
                operation: OPERATION.into(),
                status: None,
                detail: format!(
                    ": scope '{bad}' is empty or has whitespace (one scope is one word)"
                ),
            });
        }
        let scope = (!request.scopes.is_empty()).then(|| request.scopes.join(" "));
        let user_lookup = match request.grant {
            Grant::ClientCredentials => None,
            Grant::Impersonation(lookup) => {
                let (field, value) = lookup.field_and_value();
                Some(LookupBody { field, value })
            }
        };
        let secret = request.client_secret.expose_secret();
        let capacity = 256
            + 6 * (request.client_id.len()
                + secret.len()
                + scope.as_ref().map_or(0, String::len)
                + user_lookup.as_ref().map_or(0, |l| l.value.len()));
        let body = json_body(
            &TokenBody {
                client_id: request.client_id,
                client_secret: secret,
                scope,
                grant_type: request.grant.grant_type(),
                user_lookup,
            },
            capacity,
        )?;
        let mut call = self.call(Method::POST, &["oauth", "token"], OPERATION, Some(body))?;
        call.mode = Mode::IdempotentTier2;
        call.redact = vec![request.client_secret.clone()];
        let reply = self.execute(None, &call, self.deadline()).await?;
        if !reply.status.is_success() {
            let endpoint = Endpoint::Token {
                impersonation: matches!(request.grant, Grant::Impersonation(_)),
            };
            return Err(oauth_error(&call, reply.status, &reply.body, endpoint));
        }
        let status = reply.status;
        let date = reply.date;
        let body = Zeroizing::new(reply.body);
        let answer = read_token_answer(&call, status, &body)?;
        let answered_at = date.unwrap_or_else(|| {
            Timestamp::now() + self.clock_skew().unwrap_or(SignedDuration::ZERO)
        });
        let (valid_until, life_source) = token_life(answered_at, &answer);
        tracing::debug!(
            operation = OPERATION,
            grant = request.grant.grant_type(),
            scope = answer.scope.as_deref().unwrap_or(""),
            %valid_until,
            life_source = ?life_source,
            "Qlik issued an access token"
        );
        Ok(AccessToken {
            access_token: answer.access_token,
            token_type: answer.token_type.unwrap_or_else(|| "bearer".into()),
            scope: answer.scope,
            expires_in: answer.expires_in,
            expires_at: answer.expires_at,
            answered_at,
            valid_until,
            life_source,
        })
    }

    /// `POST {tenant}/oauth/revoke` `{token, token_type_hint: "access_token", client_id,
    /// client_secret}` (RFC 7009). A token that is already revoked, expired or unknown is
    /// success: Qlik answers 200 (an `invalid_token`/`invalid_grant` refusal counts too).
    /// A wrong client id or secret is [`QlikError::InvalidClient`].
    ///
    /// Tier 2, paced like a deletion: waits for a tier-2 slot within the call's budget.
    /// Retried on transient errors (revoking twice is harmless).
    pub async fn oauth_revoke(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        token: &SecretString,
    ) -> Result<(), QlikError> {
        self.oauth_revoke_within(client_id, client_secret, token, self.request_timeout())
            .await
    }

    /// [`Self::oauth_revoke`], waiting at most `max_wait` for a tier-2 slot: if the pacer
    /// has none that soon, nothing is sent and the answer is [`QlikError::RateLimited`]
    /// with the wait in `retry_after` and `attempts` 0 (as `delete_key_within`).
    pub async fn oauth_revoke_within(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        token: &SecretString,
        max_wait: Duration,
    ) -> Result<(), QlikError> {
        let (secret, value) = (client_secret.expose_secret(), token.expose_secret());
        let capacity = 256 + 6 * (client_id.len() + secret.len() + value.len());
        let body = json_body(
            &RevokeBody {
                token: value,
                token_type_hint: "access_token",
                client_id,
                client_secret: secret,
            },
            capacity,
        )?;
        let mut call = self.call(
            Method::POST,
            &["oauth", "revoke"],
            "POST /oauth/revoke",
            Some(body),
        )?;
        call.mode = Mode::IdempotentTier2;
        call.max_pace_wait = Some(max_wait);
        call.redact = vec![client_secret.clone(), token.clone()];
        let reply = self.execute(None, &call, self.deadline()).await?;
        if reply.status.is_success() || token_already_invalid(&call, &reply) {
            return Ok(());
        }
        Err(oauth_error(
            &call,
            reply.status,
            &reply.body,
            Endpoint::Revoke,
        ))
    }

    /// `GET /api/v1/oauth-clients/{id}`: the client, its allow lists and its secrets' hints.
    /// `bearer`: a tenant admin's API key or token, or the client's own access token where
    /// the tenant allows it (qlik-oauth.md §6.1); else [`QlikError::ClientAccessDenied`].
    /// 404: [`QlikError::NotFound`].
    pub async fn oauth_client(
        &self,
        bearer: &SecretString,
        client_id: &str,
    ) -> Result<OAuthClientInfo, QlikError> {
        let call = self.call(
            Method::GET,
            &["api", "v1", "oauth-clients", client_id],
            "GET /api/v1/oauth-clients/{id}",
            None,
        )?;
        let reply = self.execute(Some(bearer), &call, self.deadline()).await?;
        if !reply.status.is_success() {
            return Err(client_api_error(&call, &reply, || {
                format!("OAuth client {client_id}")
            }));
        }
        parse_json(&call, &reply.body)
    }

    /// `POST /api/v1/oauth-clients/{id}/client-secrets` (no body) → 201: a new secret,
    /// shown only in this answer, and its hint.
    ///
    /// Never retried once the request may have reached Qlik (like `create_key`): a
    /// timeout, a dropped connection, a 5xx or an unreadable 201 give
    /// [`QlikError::OutcomeUnknown`]; a secret may then exist that nobody can read, so
    /// compare the hints of [`Self::oauth_client`] with those known before and delete the
    /// stranger. Retried only on 429 and on connection failures before anything was sent.
    /// Tier 2, takes its slot at once. The 6th secret: [`QlikError::SecretLimit`].
    pub async fn create_client_secret(
        &self,
        bearer: &SecretString,
        client_id: &str,
    ) -> Result<NewClientSecret, QlikError> {
        let mut call = self.call(
            Method::POST,
            &["api", "v1", "oauth-clients", client_id, "client-secrets"],
            "POST /api/v1/oauth-clients/{id}/client-secrets",
            None,
        )?;
        call.mode = Mode::CreatesKey;
        let reply = self.execute(Some(bearer), &call, self.deadline()).await?;
        if !reply.status.is_success() {
            let said = Said::read(&call, &reply.body);
            let about_limit = said.says(
                &[],
                &[
                    "max number of client secrets",
                    "maximum number of client secrets",
                ],
            );
            if reply.status == StatusCode::CONFLICT
                || (reply.status.is_client_error() && about_limit)
            {
                return Err(QlikError::SecretLimit {
                    operation: call.operation.clone(),
                    status: reply.status.as_u16(),
                    detail: suffix(&call, &reply.body),
                });
            }
            return Err(client_api_error(&call, &reply, || {
                format!("OAuth client {client_id}")
            }));
        }
        let status = reply.status;
        let body = Zeroizing::new(reply.body);
        // serde's messages can quote input; this body holds a secret, so say only what failed.
        let created = serde_json::from_slice::<NewClientSecret>(&body)
            .ok()
            .filter(|c| !c.hint.is_empty() && !c.client_secret.expose_secret().is_empty());
        created.ok_or_else(|| QlikError::OutcomeUnknown {
            operation: call.operation.clone(),
            cause: format!(
                "Qlik answered {status} but the body is not a readable client secret with its hint"
            ),
        })
    }

    /// `DELETE /api/v1/oauth-clients/{id}/client-secrets/{hint}`: 204 is
    /// [`DeleteOutcome::Deleted`], 404 [`DeleteOutcome::AlreadyGone`] (no such hint, or no
    /// such client). Tier 2, waits for a slot; retried on transient errors.
    pub async fn delete_client_secret(
        &self,
        bearer: &SecretString,
        client_id: &str,
        hint: &str,
    ) -> Result<DeleteOutcome, QlikError> {
        let mut call = self.call(
            Method::DELETE,
            &[
                "api",
                "v1",
                "oauth-clients",
                client_id,
                "client-secrets",
                hint,
            ],
            "DELETE /api/v1/oauth-clients/{id}/client-secrets/{hint}",
            None,
        )?;
        call.mode = Mode::IdempotentTier2;
        let reply = self.execute(Some(bearer), &call, self.deadline()).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(DeleteOutcome::AlreadyGone);
        }
        if !reply.status.is_success() {
            return Err(client_api_error(&call, &reply, || {
                format!("client secret {hint} of OAuth client {client_id}")
            }));
        }
        Ok(DeleteOutcome::Deleted)
    }
}

/// Reads a 2xx `/oauth/token` body without quoting it (it holds the token).
fn read_token_answer(
    call: &Call,
    status: StatusCode,
    body: &[u8],
) -> Result<TokenAnswer, QlikError> {
    match serde_json::from_slice::<TokenAnswer>(body) {
        Ok(answer) if !answer.access_token.expose_secret().is_empty() => Ok(answer),
        Ok(_) => Err(invalid(
            call,
            format!("Qlik answered {status} with an empty access_token"),
        )),
        // Qlik's own client treats any `errors` member as a failure (qlik-oauth.md §2).
        Err(_) => Err(invalid(
            call,
            match ErrorBody::parse(body) {
                Some(errors) => format!("Qlik answered {status} with errors: {}", errors.summary()),
                None => {
                    format!("Qlik answered {status} but the body is not a readable access token")
                }
            },
        )),
    }
}

/// [`AccessToken::valid_until`] and its source (qlik-oauth.md §6.5).
fn token_life(answered_at: Timestamp, answer: &TokenAnswer) -> (Timestamp, LifeSource) {
    let from_expires_in = answer.expires_in.and_then(|seconds| {
        let seconds = i64::try_from(seconds).ok()?;
        answered_at
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
    });
    if let Some(at) = from_expires_in {
        return (at, LifeSource::ExpiresIn);
    }
    if let Some(at) = answer.expires_at {
        return (at, LifeSource::ExpiresAt);
    }
    let at = answered_at
        .checked_add(DOCUMENTED_TOKEN_LIFE)
        .unwrap_or(answered_at);
    (at, LifeSource::Documented6h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> TokenAnswer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn life_prefers_expires_in_then_expires_at_then_6_hours() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let both = answer(
            r#"{"access_token":"t","expires_in":3600,"expires_at":"2026-01-01T05:00:00.000Z"}"#,
        );
        assert_eq!(
            token_life(at, &both),
            (
                "2026-01-01T01:00:00Z".parse().unwrap(),
                LifeSource::ExpiresIn
            )
        );
        let at_only = answer(r#"{"access_token":"t","expires_at":"2026-01-01T05:00:00.000Z"}"#);
        assert_eq!(
            token_life(at, &at_only),
            (
                "2026-01-01T05:00:00Z".parse().unwrap(),
                LifeSource::ExpiresAt
            )
        );
        let neither = answer(r#"{"access_token":"t"}"#);
        assert_eq!(
            token_life(at, &neither),
            (
                "2026-01-01T06:00:00Z".parse().unwrap(),
                LifeSource::Documented6h
            )
        );
    }

    #[test]
    fn odd_expiry_fields_are_read_or_ignored_never_fatal() {
        let a = answer(r#"{"access_token":"t","expires_in":"21600","expires_at":1767225600}"#);
        assert_eq!(a.expires_in, Some(21600));
        assert_eq!(a.expires_at, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        let b = answer(r#"{"access_token":"t","expires_in":21600.0,"expires_at":1767225600000}"#);
        assert_eq!(b.expires_in, Some(21600));
        assert_eq!(b.expires_at, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        let c = answer(r#"{"access_token":"t","expires_in":-5,"expires_at":"soon"}"#);
        assert_eq!((c.expires_in, c.expires_at), (None, None));
        let d = answer(r#"{"access_token":"t","expires_in":null,"expires_at":{}}"#);
        assert_eq!((d.expires_in, d.expires_at), (None, None));
    }

    #[test]
    fn request_bodies_are_what_qliks_client_sends() {
        let body = json_body(
            &TokenBody {
                client_id: "c",
                client_secret: "s",
                scope: None,
                grant_type: GRANT_CLIENT_CREDENTIALS,
                user_lookup: None,
            },
            64,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            serde_json::json!({"client_id": "c", "client_secret": "s", "grant_type": "client_credentials"})
        );
        let (field, value) = UserLookup::Subject("auth0|x").field_and_value();
        let body = json_body(
            &TokenBody {
                client_id: "c",
                client_secret: "s",
                scope: Some("user_default admin_classic".into()),
                grant_type: GRANT_USER_IMPERSONATION,
                user_lookup: Some(LookupBody { field, value }),
            },
            8,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            serde_json::json!({"client_id": "c", "client_secret": "s",
                "scope": "user_default admin_classic",
                "grant_type": "urn:qlik:oauth:user-impersonation",
                "user_lookup": {"field": "subject", "value": "auth0|x"}})
        );
    }

    #[test]
    fn phrases_and_codes_are_normalised() {
        assert_eq!(
            normalize("OAUTH-FAKE-INVALID-SCOPE: Invalid  scope"),
            "oauth fake invalid scope: invalid scope"
        );
        let rfc = Said {
            rfc: Some("invalid_grant".into()),
            text: "invalid grant: no user".into(),
        };
        assert!(rfc.says(&["invalid_grant"], &[]));
        assert!(
            !rfc.says(&["invalid_scope"], &["no user"]),
            "an RFC body is judged by its code"
        );
        let qlik = Said {
            rfc: None,
            text: normalize("OAUTH-7: Unauthorized client"),
        };
        assert!(qlik.says(&["unauthorized_client"], &[]));
    }

    #[test]
    fn debug_output_hides_tokens_and_secrets() {
        let token = AccessToken {
            access_token: SecretString::from("tok-123-secret"),
            token_type: "bearer".into(),
            scope: Some("user_default".into()),
            expires_in: Some(1),
            expires_at: None,
            answered_at: Timestamp::UNIX_EPOCH,
            valid_until: Timestamp::UNIX_EPOCH,
            life_source: LifeSource::ExpiresIn,
        };
        let created: NewClientSecret = serde_json::from_str(
            r#"{"clientId":"c","clientSecret":"sec-456-secret","hint":"cret"}"#,
        )
        .unwrap();
        let secret = SecretString::from("sec-789-secret");
        let request = TokenRequest {
            client_id: "c",
            client_secret: &secret,
            scopes: &[],
            grant: Grant::ClientCredentials,
        };
        for debug in [
            format!("{token:?}"),
            format!("{created:?}"),
            format!("{request:?}"),
        ] {
            assert!(!debug.contains("-secret"), "{debug}");
        }
    }
}
