//! The tenant's server-side state (users, keys, the API-key config, the fake's switches)
//! and the api-keys business rules of qlik-api-keys.md §14. Everything here is synchronous
//! and takes "now" from the caller, so the rules are easy to read and to test.

use std::cmp::Ordering;
use std::collections::HashMap;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::fmt::temporal::SpanParser;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::clock::rfc3339_millis;
use super::errors::ApiError;
use super::jwt::{Claims, TokenSigner};
use super::oauth::{OAuthErrorStyle, OAuthState, SecretHint};

/// What to do with a requested `expiry` above `max_api_key_expiry` (open question §16.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExpiryAboveMax {
    /// 400 `APIKEYS-FAKE-EXPIRY-ABOVE-MAX`.
    #[default]
    Reject,
    /// Create the key with the tenant maximum instead.
    Clamp,
}

/// What a DELETE does when the owner is also TenantAdmin (open question §16.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OwnerAdminDelete {
    #[default]
    Delete,
    Revoke,
}

/// The fake's own switches (not Qlik settings); changed at runtime by `POST /__fake/settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub rate_limits_enabled: bool,
    /// Tier 1 requests allowed per user per window (list, get, get-config, users, tenants).
    pub tier1_per_window: u32,
    /// Tier 2 requests allowed per user per window (create, patch, delete, patch-config).
    pub tier2_per_window: u32,
    /// Window length; 60 s = Qlik's "per minute". Tests shorten it to keep retry-after small.
    pub rate_window_seconds: u64,
    /// Status of the "active key limit reached" error (§16.2).
    pub key_limit_status: u16,
    pub expiry_above_max: ExpiryAboveMax,
    pub owner_admin_delete: OwnerAdminDelete,
    /// §16.5: when true, keys of a user without "Manage API keys" get 401.
    pub keys_require_permission: bool,
    /// §16.13: when true, first/last list pages carry `"prev"/"next": {"href": null}`.
    pub null_page_links: bool,
    /// Life of an OAuth access token (ISO 8601 duration; Qlik's tutorial shows 6 h).
    pub oauth_token_life: String,
    /// Body of `/oauth/token` and `/oauth/revoke` errors (qlik-oauth.md §6.2).
    pub oauth_error_style: OAuthErrorStyle,
    /// Live access tokens a user may hold (a client's bot for client credentials, the
    /// impersonated user for impersonation, over every client); 0 = no maximum (§1: Qlik's
    /// 403 says "user ... has reached the maximum number of tokens", the number undocumented).
    pub oauth_max_tokens_per_user: u32,
    /// §6.1: when true, only TenantAdmin users (no OAuth bot) may manage a client's secrets.
    pub oauth_secrets_admin_only: bool,
    /// §6.3: when true, client-credentials tokens are not listed under `/api/v1/oauth-tokens`.
    pub oauth_hide_client_tokens: bool,
    /// §6.4: how a client secret's hint is formed.
    pub oauth_secret_hint: SecretHint,
    /// §6.5: when true, token answers carry no `expires_in`.
    pub oauth_omit_expires_in: bool,
    /// §6.5: when true, token answers carry no `expires_at` (with `oauth_omit_expires_in`
    /// too, neither: the client must fall back to the documented 6 h).
    pub oauth_omit_expires_at: bool,
    /// When true, deleting a client secret revokes the live tokens minted with it.
    pub oauth_secret_delete_revokes_tokens: bool,
    /// When true (the default), `/oauth/token` and `/oauth/revoke` also take the client
    /// credentials from an HTTP Basic `Authorization` header (RFC 6749 §2.3.1).
    pub oauth_basic_auth: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rate_limits_enabled: true,
            tier1_per_window: 1000,
            tier2_per_window: 100,
            rate_window_seconds: 60,
            key_limit_status: 400,
            expiry_above_max: ExpiryAboveMax::Reject,
            owner_admin_delete: OwnerAdminDelete::Delete,
            keys_require_permission: false,
            null_page_links: false,
            oauth_token_life: "PT6H".into(),
            oauth_error_style: OAuthErrorStyle::Qlik,
            oauth_max_tokens_per_user: 0,
            oauth_secrets_admin_only: false,
            oauth_hide_client_tokens: false,
            oauth_secret_hint: SecretHint::Suffix,
            oauth_omit_expires_in: false,
            oauth_omit_expires_at: false,
            oauth_secret_delete_revokes_tokens: false,
            oauth_basic_auth: true,
        }
    }
}

/// The Qlik-visible `ApiKeysConfig` (§3.6).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantConfig {
    pub max_keys_per_user: u32,
    pub max_api_key_expiry: String,
    #[serde(rename = "scim_externalClient_expiry")]
    pub scim_external_client_expiry: String,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            max_keys_per_user: 5,
            max_api_key_expiry: "PT24H".into(),
            scim_external_client_expiry: "P365D".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    pub can_create_keys: bool,
    pub tenant_admin: bool,
    pub created: Timestamp,
    /// For an OAuth client's bot user: the client's id.
    pub bot_of: Option<String>,
}

impl User {
    /// The `subject` Qlik shows: `qlikbot\<clientId>` for a bot, the fake's own form else.
    pub fn subject(&self) -> String {
        match &self.bot_of {
            Some(client_id) => format!("qlikbot\\{client_id}"),
            None => format!("fake|{}", self.id),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Key {
    pub id: String,
    pub description: String,
    pub sub: String,
    pub created_by_user: String,
    pub created: Timestamp,
    pub last_updated: Timestamp,
    pub expiry: Timestamp,
    pub revoked: bool,
    /// Owner deletes remove the key from the tenant; the fake keeps a tombstone for `/__fake/keys`.
    pub deleted: bool,
}

impl Key {
    /// `active`, `expired` or `revoked`, as of `now`.
    pub fn status(&self, now: Timestamp) -> &'static str {
        if self.revoked {
            "revoked"
        } else if now >= self.expiry {
            "expired"
        } else {
            "active"
        }
    }

    fn is_active(&self, now: Timestamp) -> bool {
        !self.deleted && self.status(now) == "active"
    }
}

/// Parses a positive ISO 8601 duration (open question §16.3: the fake accepts what jiff's
/// strict ISO parser accepts — weeks, combined units, fractions of H/M/S, calendar Y/M —
/// and rejects zero, negative and anything else).
pub fn parse_positive_duration(text: &str) -> Result<Span, String> {
    let span = SpanParser::new()
        .parse_span(text)
        .map_err(|e| format!("'{text}' is not an ISO 8601 duration: {e}"))?;
    if span.is_zero() || span.is_negative() {
        return Err(format!("'{text}' must be a positive duration"));
    }
    Ok(span)
}

pub fn add_span(start: Timestamp, span: Span) -> Result<Timestamp, String> {
    start
        .to_zoned_datetime(TimeZone::UTC)
        .checked_add(span)
        .map(|z| z.timestamp())
        .map_err(|e| format!("duration out of range: {e}"))
}

/// Identifiers in Qlik's formats (§10): 24 hex user ids, 32-char base64url-like tenant ids.
pub fn new_user_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn new_tenant_id() -> String {
    let bytes: [u8; 24] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The outcome of a list call: the page and whether there is more on either side.
pub struct Page {
    pub data: Vec<Value>,
    pub links: Value,
}

/// `limit` of a list call: 20 when absent, else an integer from 1 to 100 (`bad` words the 400).
pub(super) fn page_limit(
    query: &HashMap<String, String>,
    bad: impl Fn(String) -> ApiError,
) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(20),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| bad("limit must be an integer from 1 to 100".into())),
    }
}

/// Where a page of a sorted list begins: at the top, or strictly after or before an item
/// (which need not be in the list itself).
pub(super) enum PageFrom<'a, T> {
    Start,
    After(&'a T),
    Before(&'a T),
}

/// The `[start, end)` window of at most `limit` items of `sorted`, which `order` sorts.
pub(super) fn page_window<T>(
    sorted: &[&T],
    limit: usize,
    from: PageFrom<'_, T>,
    order: impl Fn(&T, &T) -> Ordering,
) -> (usize, usize) {
    match from {
        PageFrom::Start => (0, limit.min(sorted.len())),
        PageFrom::After(at) => {
            let start = sorted.partition_point(|item| order(item, at) != Ordering::Greater);
            (start, (start + limit).min(sorted.len()))
        }
        PageFrom::Before(at) => {
            let end = sorted.partition_point(|item| order(item, at) == Ordering::Less);
            (end.saturating_sub(limit), end)
        }
    }
}

/// A list answer's `links`: `self`, then `next` and `prev` where the window has neighbours on
/// that side (else `{"href": null}` with `null_page_links`, or nothing). `href` makes the URL
/// of the page after (`"next"`) or before (`"prev"`) an item.
pub(super) fn page_links<T>(
    sorted: &[&T],
    (start, end): (usize, usize),
    null_page_links: bool,
    self_href: String,
    href: impl Fn(&str, &T) -> String,
) -> Value {
    let page = &sorted[start..end];
    let mut links = serde_json::Map::new();
    links.insert("self".into(), json!({ "href": self_href }));
    let next = (end < sorted.len()).then(|| page.last()).flatten();
    let prev = (start > 0).then(|| page.first()).flatten();
    for (name, neighbour) in [("next", next), ("prev", prev)] {
        match neighbour {
            Some(item) => {
                links.insert(name.into(), json!({ "href": href(name, item) }));
            }
            None if null_page_links => {
                links.insert(name.into(), json!({ "href": null }));
            }
            None => {}
        }
    }
    Value::Object(links)
}

/// Absolute URL of a list at `path` with the caller's query, its names sorted; with a new
/// cursor, the query's `cursor_names` give way to it, last.
pub(super) fn list_href(
    base_url: &Url,
    path: &str,
    query: &HashMap<String, String>,
    cursor_names: &[&str],
    cursor: Option<(&str, &str)>,
) -> String {
    let mut url = base_url.clone();
    url.set_path(path);
    {
        let mut pairs = url.query_pairs_mut();
        let mut keys: Vec<&String> = query.keys().collect();
        keys.sort();
        for k in keys {
            if !(cursor_names.contains(&k.as_str()) && cursor.is_some()) {
                pairs.append_pair(k, &query[k]);
            }
        }
        if let Some((name, value)) = cursor {
            pairs.append_pair(name, value);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url.to_string()
}

pub struct TenantState {
    pub tenant_id: String,
    pub tenant_name: String,
    pub base_url: Url,
    pub users: Vec<User>,
    pub keys: Vec<Key>,
    pub config: TenantConfig,
    pub settings: Settings,
    /// OAuth clients and access tokens (see [`super::oauth`]).
    pub oauth: OAuthState,
}

impl TenantState {
    pub fn new(base_url: Url, config: TenantConfig, settings: Settings) -> Self {
        Self {
            tenant_id: new_tenant_id(),
            tenant_name: "fake-qlik".into(),
            base_url,
            users: Vec::new(),
            keys: Vec::new(),
            config,
            settings,
            oauth: OAuthState::default(),
        }
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn add_user(
        &mut self,
        name: &str,
        can_create_keys: bool,
        tenant_admin: bool,
        now: Timestamp,
    ) -> User {
        let user = User {
            id: new_user_id(),
            name: name.into(),
            can_create_keys,
            tenant_admin,
            created: now,
            bot_of: None,
        };
        self.users.push(user.clone());
        user
    }

    /// Mints a key directly (seed users, `/__fake/users`), bypassing permission and limits.
    pub fn mint_key(
        &mut self,
        signer: &TokenSigner,
        owner: &str,
        created_by: &str,
        description: &str,
        expiry: Timestamp,
        now: Timestamp,
    ) -> Result<(Key, String), ApiError> {
        let id = uuid::Uuid::new_v4().to_string();
        let token = signer
            .issue(&id, owner, &self.tenant_id)
            .map_err(|_| ApiError::internal("signing the token failed"))?;
        let key = Key {
            id,
            description: description.into(),
            sub: owner.into(),
            created_by_user: created_by.into(),
            created: now,
            last_updated: now,
            expiry,
            revoked: false,
            deleted: false,
        };
        self.keys.push(key.clone());
        Ok((key, token))
    }

    pub fn tenant_max_expiry(&self, now: Timestamp) -> Result<Timestamp, String> {
        add_span(
            now,
            parse_positive_duration(&self.config.max_api_key_expiry)?,
        )
    }

    /// Resolves a verified bearer to its user, or 401 (§14.1, §14.6, §14.17).
    pub fn authenticate(&self, claims: &Claims, now: Timestamp) -> Result<User, ApiError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == claims.jti)
            .filter(|k| !k.deleted && k.is_active(now) && k.sub == claims.sub)
            .filter(|_| claims.tenant_id == self.tenant_id)
            .ok_or_else(ApiError::unauthorized)?;
        let user = self.user(&key.sub).ok_or_else(ApiError::unauthorized)?;
        if self.settings.keys_require_permission && !user.can_create_keys {
            return Err(ApiError::unauthorized());
        }
        Ok(user.clone())
    }

    /// The `ApiKey` JSON (§3.3); the token is never part of it.
    pub fn key_json(&self, key: &Key, now: Timestamp) -> Value {
        json!({
            "id": key.id,
            "tenantId": self.tenant_id,
            "description": key.description,
            "sub": key.sub,
            "subType": "user",
            "status": key.status(now),
            "createdByUser": key.created_by_user,
            "created": rfc3339_millis(key.created),
            "lastUpdated": rfc3339_millis(key.last_updated),
            "expiry": rfc3339_millis(key.expiry),
        })
    }

    /// `POST /api/v1/api-keys` (§14.2–14.5). Returns the 201 body including the token.
    pub fn create_key(
        &mut self,
        signer: &TokenSigner,
        caller: &User,
        body: &Value,
        now: Timestamp,
    ) -> Result<Value, ApiError> {
        if !caller.can_create_keys {
            return Err(
                ApiError::forbidden("Requestor not allowed to create an API key")
                    .with_detail("the user lacks the \"Manage API keys\" permission"),
            );
        }
        let body = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("body must be a JSON object"))?;
        let description = match body.get("description") {
            Some(Value::String(d)) => d.clone(),
            Some(_) => return Err(ApiError::bad_request("description must be a string")),
            None => return Err(ApiError::bad_request("description is required")),
        };
        match body.get("subType") {
            None => {}
            Some(Value::String(t)) if t == "user" => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the fake supports only subType \"user\"",
                ));
            }
        }
        let sub = match body.get("sub") {
            None => caller.id.clone(),
            Some(Value::String(s)) if *s == caller.id => s.clone(),
            // §16.7: only a TenantAdmin may create a key for someone else.
            Some(Value::String(s)) if caller.tenant_admin => {
                if self.user(s).is_none() {
                    return Err(ApiError::bad_request(format!("unknown sub '{s}'")));
                }
                s.clone()
            }
            Some(Value::String(_)) => {
                return Err(ApiError::forbidden(
                    "Requestor not allowed to create an API key for another user",
                ));
            }
            Some(_) => return Err(ApiError::bad_request("sub must be a string")),
        };

        let max_expiry = self.tenant_max_expiry(now).map_err(ApiError::bad_request)?;
        let expiry = match body.get("expiry") {
            None | Some(Value::Null) => max_expiry,
            Some(Value::String(text)) => {
                let span = parse_positive_duration(text).map_err(ApiError::invalid_expiry)?;
                let wanted = add_span(now, span).map_err(ApiError::invalid_expiry)?;
                if wanted <= max_expiry {
                    wanted
                } else {
                    match self.settings.expiry_above_max {
                        ExpiryAboveMax::Reject => {
                            return Err(ApiError::expiry_above_max(
                                text,
                                &self.config.max_api_key_expiry,
                            ));
                        }
                        ExpiryAboveMax::Clamp => max_expiry,
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::invalid_expiry(
                    "expiry must be an ISO 8601 duration string",
                ));
            }
        };

        let active = self
            .keys
            .iter()
            .filter(|k| k.sub == sub && k.is_active(now))
            .count();
        let limit = self.config.max_keys_per_user;
        if active >= limit as usize {
            let status = StatusCode::from_u16(self.settings.key_limit_status)
                .unwrap_or(StatusCode::BAD_REQUEST);
            return Err(ApiError::key_limit(status, active, limit));
        }

        let (key, token) = self.mint_key(signer, &sub, &caller.id, &description, expiry, now)?;
        let mut out = self.key_json(&key, now);
        out["token"] = json!(token);
        Ok(out)
    }

    fn visible_key(&self, caller: &User, id: &str) -> Result<usize, ApiError> {
        let index = self
            .keys
            .iter()
            .position(|k| k.id == id && !k.deleted)
            .ok_or_else(ApiError::key_not_found)?;
        if self.keys[index].sub != caller.id && !caller.tenant_admin {
            return Err(ApiError::forbidden(
                "Requestor not allowed to query this API key",
            ));
        }
        Ok(index)
    }

    /// `GET /api/v1/api-keys/{id}` (§14.8).
    pub fn get_key(&self, caller: &User, id: &str, now: Timestamp) -> Result<Value, ApiError> {
        let index = self.visible_key(caller, id)?;
        Ok(self.key_json(&self.keys[index], now))
    }

    /// `PATCH /api/v1/api-keys/{id}`: description only (§14.9).
    pub fn patch_key(
        &mut self,
        caller: &User,
        id: &str,
        body: &Value,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let index = self.visible_key(caller, id)?;
        let ops = body
            .as_array()
            .filter(|ops| !ops.is_empty())
            .ok_or_else(|| ApiError::bad_request("body must be a non-empty JSON Patch array"))?;
        let mut description = None;
        for op in ops {
            match (
                op.get("op").and_then(Value::as_str),
                op.get("path").and_then(Value::as_str),
                op.get("value"),
            ) {
                (Some("replace"), Some("/description"), Some(Value::String(v))) => {
                    description = Some(v.clone())
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "only {\"op\":\"replace\",\"path\":\"/description\",\"value\":<string>} is allowed",
                    ));
                }
            }
        }
        if let Some(description) = description {
            let key = &mut self.keys[index];
            key.description = description;
            key.last_updated = now;
        }
        Ok(())
    }

    /// `DELETE /api/v1/api-keys/{id}`: owner deletes, TenantAdmin revokes (§14.10).
    pub fn delete_key(&mut self, caller: &User, id: &str, now: Timestamp) -> Result<(), ApiError> {
        let index = self.visible_key(caller, id)?;
        let owner = self.keys[index].sub == caller.id;
        let revoke = if owner {
            caller.tenant_admin && self.settings.owner_admin_delete == OwnerAdminDelete::Revoke
        } else {
            true // visible_key already refused non-owners who are not TenantAdmin
        };
        let key = &mut self.keys[index];
        if revoke {
            key.revoked = true;
        } else {
            key.deleted = true;
        }
        key.last_updated = now;
        Ok(())
    }

    /// `GET /api/v1/api-keys` (§14.7).
    pub fn list_keys(
        &self,
        caller: &User,
        query: &HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Page, ApiError> {
        let limit = page_limit(query, ApiError::bad_request)?;
        let sort = query.get("sort").map(String::as_str).unwrap_or("-created");
        let (descending, field) = match sort.strip_prefix('-') {
            Some(field) => (true, field),
            None => (false, sort.strip_prefix('+').unwrap_or(sort)),
        };
        if !["createdByUser", "sub", "status", "description", "created"].contains(&field) {
            return Err(ApiError::bad_request(format!("unsupported sort '{sort}'")));
        }
        if let Some(status) = query.get("status")
            && !["active", "expired", "revoked"].contains(&status.as_str())
        {
            return Err(ApiError::bad_request(
                "status must be active, expired or revoked",
            ));
        }
        let (after, before) = (query.get("startingAfter"), query.get("endingBefore"));
        if after.is_some() && before.is_some() {
            return Err(ApiError::bad_request(
                "startingAfter and endingBefore cannot be combined",
            ));
        }
        for filter in ["sub", "createdByUser"] {
            if let Some(value) = query.get(filter)
                && *value != caller.id
                && !caller.tenant_admin
            {
                return Err(ApiError::forbidden(
                    "Requestor not allowed to list other users' API keys",
                ));
            }
        }

        let order = |a: &Key, b: &Key| -> Ordering {
            let by_field = match field {
                "createdByUser" => a.created_by_user.cmp(&b.created_by_user),
                "sub" => a.sub.cmp(&b.sub),
                "status" => a.status(now).cmp(b.status(now)),
                "description" => a.description.cmp(&b.description),
                _ => Ordering::Equal,
            };
            let total = by_field
                .then(a.created.cmp(&b.created))
                .then(a.id.cmp(&b.id));
            if descending { total.reverse() } else { total }
        };
        let mut matching: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| !k.deleted)
            .filter(|k| caller.tenant_admin || k.sub == caller.id)
            .filter(|k| query.get("status").is_none_or(|s| k.status(now) == s))
            .filter(|k| query.get("sub").is_none_or(|s| k.sub == *s))
            .filter(|k| {
                query
                    .get("createdByUser")
                    .is_none_or(|c| k.created_by_user == *c)
            })
            .collect();
        matching.sort_by(|a, b| order(a, b));

        // Cursors name a key; the page is what lies strictly after/before it in this order.
        // Tombstones still resolve, so deleting a key between pages does not break paging.
        let cursor = |id: &String| {
            self.keys
                .iter()
                .find(|k| k.id == *id)
                .ok_or_else(|| ApiError::bad_request(format!("unknown cursor '{id}'")))
        };
        let from = match (after, before) {
            (Some(id), _) => PageFrom::After(cursor(id)?),
            (_, Some(id)) => PageFrom::Before(cursor(id)?),
            (None, None) => PageFrom::Start,
        };
        let (start, end) = page_window(&matching, limit, from, order);
        let href = |cursor: Option<(&str, &str)>| {
            list_href(
                &self.base_url,
                "/api/v1/api-keys",
                query,
                &["startingAfter", "endingBefore"],
                cursor,
            )
        };
        let links = page_links(
            &matching,
            (start, end),
            self.settings.null_page_links,
            href(None),
            |name, key: &Key| {
                let name = if name == "next" {
                    "startingAfter"
                } else {
                    "endingBefore"
                };
                href(Some((name, &key.id)))
            },
        );
        let page = &matching[start..end];
        Ok(Page {
            data: page.iter().map(|k| self.key_json(k, now)).collect(),
            links,
        })
    }

    /// `GET /api/v1/api-keys/configs/{tenantId}` (§14.11; §16.8: any authenticated user).
    pub fn get_config(&self, tenant_id: &str) -> Result<Value, ApiError> {
        if tenant_id != self.tenant_id {
            return Err(ApiError::config_not_found());
        }
        serde_json::to_value(&self.config).map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// `PATCH /api/v1/api-keys/configs/{tenantId}` (§14.11).
    pub fn patch_config(
        &mut self,
        caller: &User,
        tenant_id: &str,
        body: &Value,
    ) -> Result<(), ApiError> {
        if !caller.tenant_admin {
            return Err(ApiError::forbidden(
                "Requestor not allowed to update the API keys configuration",
            ));
        }
        if tenant_id != self.tenant_id {
            return Err(ApiError::config_not_found());
        }
        let ops = body
            .as_array()
            .filter(|ops| !ops.is_empty())
            .ok_or_else(|| ApiError::bad_request("body must be a non-empty JSON Patch array"))?;
        let mut next = self.config.clone();
        for op in ops {
            if op.get("op").and_then(Value::as_str) != Some("replace") {
                return Err(ApiError::bad_request("only op \"replace\" is allowed"));
            }
            let value = op.get("value").unwrap_or(&Value::Null);
            match op.get("path").and_then(Value::as_str) {
                Some("/max_keys_per_user") => {
                    next.max_keys_per_user = value
                        .as_u64()
                        .filter(|n| *n <= 1000)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            ApiError::bad_request(
                                "max_keys_per_user must be an integer from 0 to 1000",
                            )
                        })?;
                }
                Some(path @ ("/max_api_key_expiry" | "/scim_externalClient_expiry")) => {
                    let text = value.as_str().ok_or_else(|| {
                        ApiError::bad_request(format!("{path} must be an ISO 8601 duration"))
                    })?;
                    parse_positive_duration(text).map_err(ApiError::bad_request)?;
                    if path == "/max_api_key_expiry" {
                        next.max_api_key_expiry = text.into();
                    } else {
                        next.scim_external_client_expiry = text.into();
                    }
                }
                _ => return Err(ApiError::bad_request("unsupported path")),
            }
        }
        self.config = next;
        Ok(())
    }

    /// `User` JSON (§4).
    pub fn user_json(&self, user: &User) -> Value {
        let roles: Vec<Value> = if user.tenant_admin {
            vec![
                json!({ "id": "tenantadmin", "name": "TenantAdmin", "type": "default", "level": "admin" }),
            ]
        } else {
            Vec::new()
        };
        let mut self_href = self.base_url.clone();
        self_href.set_path(&format!("/api/v1/users/{}", user.id));
        json!({
            "id": user.id,
            "tenantId": self.tenant_id,
            "name": user.name,
            "subject": user.subject(),
            "email": format!("{}@fake-qlik.invalid", user.name),
            "status": "active",
            "assignedRoles": roles,
            "createdAt": rfc3339_millis(user.created),
            "lastUpdatedAt": rfc3339_millis(user.created),
            "links": { "self": { "href": self_href.as_str() } },
        })
    }

    /// `Tenant` JSON (§4).
    pub fn tenant_json(&self) -> Value {
        let mut self_href = self.base_url.clone();
        self_href.set_path(&format!("/api/v1/tenants/{}", self.tenant_id));
        json!({
            "id": self.tenant_id,
            "name": self.tenant_name,
            "hostnames": [self.base_url.host_str().unwrap_or("127.0.0.1")],
            "status": "active",
            "region": "fake",
            "links": { "self": { "href": self_href.as_str() } },
        })
    }
}
