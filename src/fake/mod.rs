//! `fake-qlik`: a faithful fake Qlik Cloud tenant for tests, demos and users' own CI.
//!
//! It serves the api-keys, OAuth, users and tenants endpoints over HTTPS (its own CA, written to
//! `ca.pem`), reproduces the behaviour list of `qlik-api-keys.md` §14, and has test
//! controls under `/__fake/` (see [`control`]). Run it in-process with
//! [`FakeTenant::start`] or as the `fake-qlik` binary.
//!
//! # Open questions (`qlik-api-keys.md` §16) and what the fake does
//!
//! | § | question | default | switch | why this default |
//! |---|---|---|---|---|
//! | 16.1 | `expiry` above `max_api_key_expiry` | reject, 400 `APIKEYS-FAKE-EXPIRY-ABOVE-MAX` | `expiry_above_max: clamp` / `--expiry-above-max clamp` | the stricter outcome; a client that copes with it copes with clamping too (it reads `expiry` back) |
//! | 16.2 | status when `max_keys_per_user` is reached; what counts | 400 `APIKEYS-FAKE-KEY-LIMIT`; only `active` keys count (expired, revoked, deleted do not) | `key_limit_status` / `--key-limit-status` | 400 is "Invalid request" in the spec; the docs say "active" keys |
//! | 16.3 | accepted ISO 8601 grammar | what jiff's strict ISO parser accepts (`PnW`, `PnDTnH`, `PTnM`, `PTnS`, fractions of H/M/S, calendar `PnM`/`PnY` added in UTC); zero and negative rejected; garbage → 400 `APIKEYS-FAKE-INVALID-EXPIRY` | — | permissive on grammar, strict on garbage: the engine must send canonical `PnD`/`PTnH`/… anyway |
//! | 16.4 | 401 body for expired/revoked/deleted keys | the same auth-layer body for all: `{"errors":[{"title":"Authorization Required","code":"LOGIN-2","status":"401"}],"traceId":…}` | — | matches the published auth-layer shape; clients must not tell the cases apart by body |
//! | 16.5 | keys of a user who loses "Manage API keys" | keep working (only creation gets 403) | `keys_require_permission` / `--keys-require-permission` (then 401) | nothing states the rule; the 401 reports were about the removed toggle |
//! | 16.6 | DELETE by an owner who is also TenantAdmin | delete (the owner rule wins) | `owner_admin_delete: revoke` / `--owner-admin-delete revoke` | the spec's owner sentence is unconditional |
//! | 16.7 | `sub` set to another user | only a TenantAdmin may (target must exist); others get 403 | — | the least privilege reading |
//! | 16.8 | who may GET `api-keys/configs/{tenantId}` | any authenticated user of the tenant | — | the spec lists no 403 |
//! | 16.9 | users/me, tenants/me | 301 / 302 with a relative `Location`, `text/html` body | — | what the API reference documents |
//! | 16.10 | request-id header | none; `traceId` only in users/tenants/auth error bodies | — | as documented |
//! | 16.11 | key id format | UUID v4 (also `jti` and `kid`) | — | what real tokens carry |
//! | 16.12 | spec inconsistencies | `status` integer in api-keys and users errors, string in auth and tenants errors; `max_keys_per_user` a number; `subType` only `user` (others → 400) | — | as the specs type them |
//! | 16.13 | `links.prev`/`next` on first/last page | omitted | `null_page_links` (then `{"href": null}`) | the api-keys spec makes them optional |
//! | 16.14 | `X-RateLimit-*` headers | not sent | — | not documented by Qlik |
//! | 16.15 | Developer role removal date | not modelled: only the per-user "Manage API keys" flag exists | — | history only |
//! | 16.16 | `description` limits | any string, empty included; missing or non-string → 400 | — | nothing documented |
//!
//! # OAuth M2M (`qlik-oauth.md`) and what the fake does where no source settles it (§6)
//!
//! The fake also serves `POST /oauth/token`, `POST /oauth/revoke`, `GET /api/v1/oauth-tokens`,
//! `DELETE /api/v1/oauth-tokens/{id}`, `GET /api/v1/oauth-clients` (the list),
//! `GET /api/v1/oauth-clients/{id}` and the client-secret routes (see [`oauth`],
//! [`oauth_routes`]); its access tokens are accepted as bearers on every
//! `/api/v1/*` route, acting as the client's bot or the impersonated user.
//!
//! | § | question | default | switch | why this default |
//! |---|---|---|---|---|
//! | 6.1 | who may manage a client's secrets (and read or list the client) | TenantAdmin users (API key or impersonation token) and the client's own bot; another client's bot and non-admins get 403 | `oauth_secrets_admin_only` / `--oauth-secrets-admin-only` (the own bot gets 403 too) | the bot is TenantAdmin-equivalent, so its own client is the plausible reading |
//! | 6.2 | body for a wrong client or secret | 401 `{"errors":[{"code":"OAUTH-FAKE-INVALID-CLIENT",…,"status":"401"}]}`; every `/oauth/*` error in that shape | `oauth_error_style: rfc6749` / `--oauth-error-style rfc6749` (`{"error","error_description"}` as RFC 6749 §5.2: 401 for `invalid_client` only, 400 for `invalid_request`, `unsupported_grant_type`, `unauthorized_client`, `invalid_scope`, `invalid_grant`; the 403 token maximum (`access_denied`), 405 and 413 (`invalid_request`) keep their status in that shape) | every other Qlik service answers `{errors}`, and Qlik's own client only recognises that shape |
//! | 6.3 | client-credentials tokens under `/api/v1/oauth-tokens` | listed under the bot's `userId` | `oauth_hide_client_tokens` / `--oauth-hide-client-tokens` (not listed; DELETE by id 404) | the bot is a user, and the API lists users' tokens |
//! | 6.4 | how a hint is formed | the secret's last 4 characters, unique per client | `oauth_secret_hint: prefix\|opaque` / `--oauth-secret-hint` | the usual console pattern; `opaque` (random) catches a client that derives hints |
//! | 6.5 | `expires_in` always present | present (seconds), with `expires_at` (RFC 3339, milliseconds) | `oauth_omit_expires_in` / `--oauth-omit-expires-in` and `oauth_omit_expires_at` / `--oauth-omit-expires-at` (either, or both: then the client must fall back to 6 h) | the tutorial shows `expires_in`, the reference lists `expires_at`; the switches test both fallbacks |
//! | — | `status` in OAuth error bodies | a string (`"401"`) on every OAuth route (`/oauth/*`, oauth-tokens, oauth-clients), no `traceId`; the api-keys errors keep their integer (16.12) | — | `oauth-tokens.d.ts` types `Error.status?: string`, as qlik.dev's `/oauth/token` errors show |
//! | — | the "maximum number of tokens" (403) | no maximum | `oauth_max_tokens_per_user` / `--oauth-max-tokens N` (403 `OAUTH-FAKE-TOKEN-LIMIT` once the user the token would act as holds N live tokens: the client's bot for client credentials, the impersonated user for impersonation, counted over every client) | the number is undocumented; Qlik's words are per user ("user is disabled or has reached the maximum number of tokens") |
//! | — | tokens minted with a secret that is then deleted | stay valid until they expire or are revoked | `oauth_secret_delete_revokes_tokens` / `--oauth-secret-delete-revokes-tokens` (revokes the live tokens minted with that very secret, known by the fake's own id of the secret, not by its hint: a hint is unique only among current secrets, so a deleted secret's hint may come back) | the documented rotation says nothing of live tokens; a token is not bound to a secret |
//! | — | token life | 6 h | `oauth_token_life` / `--oauth-token-life` | the tutorial's `expires_in` 21600 |
//! | — | `sort` of `GET /api/v1/oauth-tokens` | `userId`, `+userId` or `-userId` (ties in issue order); none: `userId`; any other value 400 `OAUTH-FAKE-BAD-REQUEST` | — | `oauth-tokens.d.ts` has only `sort?: "userId"`, and qlik.dev names `userId` the default |
//! | — | the client's JSON | only members of `OAuthClientReadResponse` (`clientId` & `OAuthClientBase`) the fake can fill: `clientId`, `clientName`, `appType` `"web"`, `allowedAuthMethods` `["client_secret"]`, `allowedGrantTypes`, `allowedScopes`, `clientSecrets` (`hint`, `createdAt`, `createdBy`), `createdAt`, `createdByType` `"user"`, `updatedAt` (= `createdAt`: the fake has no PATCH) | — | `@qlik/api` 2.19.0 `oauth-clients.d.ts`; `appType` is `web\|native\|spa\|anonymous-embed` and `allowedGrantTypes` is for `web` only |
//! | — | `GET /api/v1/oauth-clients` | the clients the caller may `GET` one by one (a TenantAdmin user: all; a bot: its own client; others 403); `limit` 1-100 (20), `next`/`prev` cursors in absolute links, `sort` `±clientId\|clientName\|appType\|tenantId\|createdAt\|updatedAt` (default `+createdAt`, others 400), `filter` only `attr eq "value"` clauses joined by `and` (others 400), `totalResults` | — | `getOAuthClients` in `oauth-clients.d.ts`; the filter subset is what a client needs to find a client by id or name |
//! | — | the token answer | `{access_token, token_type: "bearer", expires_in, expires_at, scope}`, `scope` the granted scopes, space-separated | 6.5 | both qlik.dev samples carry these fields |
//! | — | token format | opaque: 43 base64url characters, no `.` | — | "tokens are opaque" |
//! | — | body types | JSON or form, by `content-type` (others 400 `invalid_request`); impersonation needs JSON (`user_lookup` is an object) | — | what the reference and Qlik's client send |
//! | — | client credentials in an HTTP Basic `Authorization` header at `/oauth/token` and `/oauth/revoke` | accepted beside the body (not both in one request: 400 `invalid_request`); a bad one 401 with `WWW-Authenticate: Basic` | `oauth_basic_auth: false` / `--no-oauth-basic-auth` (the header is not read: Basic alone gets 401) | RFC 6749 §2.3.1 makes servers support it, and Qlik's 401 text names "client credentials provided in Authorization header"; Qlik's own client sends the body |
//! | — | `scope` | checked against the allow list at `/oauth/token`; `/api/v1/*` routes check no scope | — | the fake models no per-route scope |
//! | — | rate limit of `/oauth/token`, `/oauth/revoke` | tier 2 of the client's bot (shared with the bot's tier-2 API calls), for every call naming a known client (in the body or a Basic header), wrong secret included | the tier flags | tier 2 per user |
//! | — | the bot | created by the client's first token (either grant): TenantAdmin, may create API keys, `subject` `qlikbot\<clientId>`, named as the client | — | "TenantAdmin-equivalent" |
//! | — | `/oauth/revoke` | 200 `{}` for a live, revoked or unknown token; client credentials optional (when given they must be right, and only that client's tokens are revoked) | — | RFC 7009 |
//!
//! State is in memory only; `--state-dir` receives `ca.pem`. Rate-limit windows use real
//! time, key expiry and token expiry use the movable clock.

pub mod clock;
pub mod control;
pub mod errors;
pub mod faults;
pub mod jwt;
pub mod oauth;
pub mod oauth_routes;
pub mod rate_limit;
pub mod routes;
pub mod state;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use url::Url;

pub use control::SettingsPatch;
pub use faults::{FaultKind, FaultSpec, RequestRecord};
pub use oauth::{
    ClientView, GRANT_CLIENT_CREDENTIALS, GRANT_IMPERSONATION, Grant, NewClient, OAuthErrorStyle,
    SecretHint, SecretView, TokenView,
};
pub use state::{ExpiryAboveMax, OwnerAdminDelete, Settings, TenantConfig};

use clock::{FakeClock, rfc3339_millis};
use faults::FaultTable;
use jwt::TokenSigner;
use rate_limit::RateLimiter;
use state::TenantState;

/// Why the fake could not start.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("fake-qlik only listens on loopback addresses, not {0}")]
    NotLoopback(SocketAddr),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(#[from] tls::TlsSetupError),
    #[error("generating the token signing key failed")]
    Signer,
    #[error("invalid option: {0}")]
    Option(String),
    #[error("starting the server: {0}")]
    Serve(std::io::Error),
}

/// How to start a fake tenant.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Loopback address; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where `ca.pem` is written (nothing is written when `None`).
    pub state_dir: Option<PathBuf>,
    /// Initial tenant API-key config.
    pub config: TenantConfig,
    /// Initial switches.
    pub settings: Settings,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            config: TenantConfig::default(),
            settings: Settings::default(),
        }
    }
}

/// A user the fake created, with one active key.
#[derive(Clone, Serialize, Deserialize)]
pub struct SeedUser {
    pub user_id: String,
    pub key_id: String,
    /// The API key (a bearer token). Test material only.
    pub api_key: String,
}

impl std::fmt::Debug for SeedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedUser")
            .field("user_id", &self.user_id)
            .field("key_id", &self.key_id)
            .field("api_key", &"[REDACTED]")
            .finish()
    }
}

/// One key as `GET /__fake/keys` shows it (never the token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyView {
    pub id: String,
    pub status: String,
    pub sub: String,
    pub created_by_user: String,
    pub description: String,
    pub created: String,
    pub expiry: String,
    pub revoked: bool,
    pub deleted: bool,
}

/// The line `fake-qlik` prints on stdout when ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyLine {
    pub url: String,
    pub ca_cert: String,
    pub api_key: String,
    pub user_id: String,
    pub tenant_id: String,
    pub admin_api_key: String,
    /// An M2M OAuth client allowed both grants (client credentials, user impersonation).
    pub oauth_client_id: String,
    /// Its one client secret (test material).
    pub oauth_client_secret: String,
}

/// Shared state behind every route.
pub struct Fake {
    pub clock: FakeClock,
    pub signer: TokenSigner,
    state: Mutex<TenantState>,
    faults: Mutex<FaultTable>,
    limiter: Mutex<RateLimiter>,
    requests: Mutex<Vec<RequestRecord>>,
}

/// A poisoned lock only means a handler panicked (or a drop_connection fault unwound);
/// the data is still consistent because no handler unwinds while holding a lock.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fake {
    pub fn state(&self) -> MutexGuard<'_, TenantState> {
        lock(&self.state)
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultTable> {
        lock(&self.faults)
    }

    pub fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        lock(&self.limiter)
    }

    pub fn requests(&self) -> MutexGuard<'_, Vec<RequestRecord>> {
        lock(&self.requests)
    }

    /// Every key, deleted ones included.
    pub fn keys(&self) -> Vec<KeyView> {
        let now = self.clock.now();
        self.state()
            .keys
            .iter()
            .map(|k| KeyView {
                id: k.id.clone(),
                status: k.status(now).to_string(),
                sub: k.sub.clone(),
                created_by_user: k.created_by_user.clone(),
                description: k.description.clone(),
                created: rfc3339_millis(k.created),
                expiry: rfc3339_millis(k.expiry),
                revoked: k.revoked,
                deleted: k.deleted,
            })
            .collect()
    }

    /// Creates a user with one active key valid for the tenant maximum.
    pub fn create_user(
        &self,
        name: &str,
        can_create_keys: bool,
        tenant_admin: bool,
    ) -> Result<SeedUser, FakeError> {
        let now = self.clock.now();
        let mut state = self.state();
        let expiry = state.tenant_max_expiry(now).map_err(FakeError::Option)?;
        let user = state.add_user(name, can_create_keys, tenant_admin, now);
        let (key, token) = state
            .mint_key(
                &self.signer,
                &user.id,
                &user.id,
                &format!("fake-qlik seed key for {name}"),
                expiry,
                now,
            )
            .map_err(|_| FakeError::Signer)?;
        Ok(SeedUser {
            user_id: user.id,
            key_id: key.id,
            api_key: token,
        })
    }

    /// Creates an M2M OAuth client with one secret, created by the first tenant admin.
    pub fn create_oauth_client(
        &self,
        name: &str,
        grants: &[String],
        scopes: &[String],
    ) -> Result<NewClient, FakeError> {
        let now = self.clock.now();
        let mut state = self.state();
        let created_by = state
            .users
            .iter()
            .find(|u| u.tenant_admin && u.bot_of.is_none())
            .map(|u| u.id.clone())
            .unwrap_or_default();
        state
            .add_oauth_client(name, grants, scopes, &created_by, now)
            .map_err(FakeError::Option)
    }

    /// Every OAuth client (hints only, never a secret).
    pub fn oauth_clients(&self) -> Vec<ClientView> {
        self.state().client_views()
    }

    /// A client's live tokens (every token with `all`), never a token itself.
    pub fn oauth_tokens(&self, client_id: &str, all: bool) -> Vec<TokenView> {
        let now = self.clock.now();
        self.state().token_views(client_id, all, now)
    }
}

/// Entry point: `FakeTenant::start(options).await`.
pub struct FakeTenant;

impl FakeTenant {
    /// Binds, seeds a service user and a tenant admin, and serves on the current runtime.
    pub async fn start(options: FakeOptions) -> Result<RunningFake, FakeError> {
        if !options.listen.ip().is_loopback() {
            return Err(FakeError::NotLoopback(options.listen));
        }
        state::parse_positive_duration(&options.config.max_api_key_expiry)
            .map_err(FakeError::Option)?;
        state::parse_positive_duration(&options.settings.oauth_token_life)
            .map_err(|e| FakeError::Option(format!("oauth token life: {e}")))?;
        if options.config.max_keys_per_user > 1000 {
            return Err(FakeError::Option("max_keys_per_user must be 0-1000".into()));
        }
        let identity = tls::generate()?;
        let ca_path = match &options.state_dir {
            Some(dir) => {
                let path = dir.join("ca.pem");
                std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::write(&path, &identity.ca_pem))
                    .map_err(|source| FakeError::StateDir {
                        path: path.clone(),
                        source,
                    })?;
                Some(path)
            }
            None => None,
        };

        let listener = TcpListener::bind(options.listen).map_err(|source| FakeError::Bind {
            addr: options.listen,
            source,
        })?;
        listener.set_nonblocking(true).map_err(FakeError::Serve)?;
        let addr = listener.local_addr().map_err(FakeError::Serve)?;
        let url =
            Url::parse(&format!("https://{addr}")).map_err(|e| FakeError::Option(e.to_string()))?;

        let fake = Arc::new(Fake {
            clock: FakeClock::default(),
            signer: TokenSigner::generate().map_err(|_| FakeError::Signer)?,
            state: Mutex::new(TenantState::new(
                url.clone(),
                options.config,
                options.settings,
            )),
            faults: Mutex::default(),
            limiter: Mutex::default(),
            requests: Mutex::default(),
        });
        let service = fake.create_user("qlik-service-user", true, false)?;
        let admin = fake.create_user("tenant-admin", true, true)?;
        let oauth = fake.create_oauth_client(
            "fake-qlik-m2m",
            &[GRANT_CLIENT_CREDENTIALS.into(), GRANT_IMPERSONATION.into()],
            &oauth::DEFAULT_SCOPES.map(String::from),
        )?;
        let tenant_id = fake.state().tenant_id.clone();

        let app = app(fake.clone()).merge(control::router(fake.clone()));
        let handle: Handle<SocketAddr> = Handle::new();
        let server = axum_server::from_tcp_rustls(
            listener,
            RustlsConfig::from_config(identity.server_config),
        )
        .map_err(FakeError::Serve)?
        .handle(handle.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = server.serve(app.into_make_service()).await {
                tracing::error!(%error, "fake-qlik server stopped");
            }
        });
        tracing::info!(%url, %tenant_id, "fake-qlik listening");
        Ok(RunningFake {
            url,
            addr,
            ca_pem: identity.ca_pem,
            ca_path,
            tenant_id,
            service,
            admin,
            oauth,
            fake,
            handle,
            task: Some(task),
        })
    }
}

/// A running fake tenant; shuts down when dropped.
pub struct RunningFake {
    /// `https://127.0.0.1:<port>` (no trailing path).
    pub url: Url,
    pub addr: SocketAddr,
    /// The CA certificate clients must trust.
    pub ca_pem: String,
    /// Where `ca.pem` was written, if a state dir was given.
    pub ca_path: Option<PathBuf>,
    pub tenant_id: String,
    /// A service user with "Manage API keys" and one active key.
    pub service: SeedUser,
    /// A TenantAdmin with one active key.
    pub admin: SeedUser,
    /// An M2M OAuth client allowed both grants, with one secret.
    pub oauth: NewClient,
    fake: Arc<Fake>,
    handle: Handle<SocketAddr>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningFake {
    /// Direct access to the state (for assertions the control API does not cover).
    pub fn fake(&self) -> &Arc<Fake> {
        &self.fake
    }

    /// The ready line the binary prints.
    pub fn ready_line(&self) -> ReadyLine {
        ReadyLine {
            url: self.url.as_str().trim_end_matches('/').to_string(),
            ca_cert: self
                .ca_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            api_key: self.service.api_key.clone(),
            user_id: self.service.user_id.clone(),
            tenant_id: self.tenant_id.clone(),
            admin_api_key: self.admin.api_key.clone(),
            oauth_client_id: self.oauth.client_id.clone(),
            oauth_client_secret: self.oauth.client_secret.clone(),
        }
    }

    /// `url` + `path`, e.g. `url_for("/api/v1/users/me")`.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{}", self.url.as_str().trim_end_matches('/'), path)
    }

    pub fn now(&self) -> Timestamp {
        self.fake.clock.now()
    }

    pub fn advance_clock(&self, seconds: i64) {
        self.fake.clock.advance(SignedDuration::from_secs(seconds));
    }

    pub fn inject_fault(&self, spec: FaultSpec) {
        self.fake.faults().add(spec);
    }

    /// Uses of injected faults not yet taken by a request.
    pub fn pending_faults(&self) -> u32 {
        self.fake.faults().pending()
    }

    pub fn clear_faults(&self) {
        self.fake.faults().clear();
    }

    pub fn keys(&self) -> Vec<KeyView> {
        self.fake.keys()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.fake.requests().clone()
    }

    /// How many requests with this method and exact path were received.
    pub fn count_requests(&self, method: &str, path: &str) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    pub fn create_user(
        &self,
        name: &str,
        can_create_keys: bool,
        tenant_admin: bool,
    ) -> Result<SeedUser, FakeError> {
        self.fake.create_user(name, can_create_keys, tenant_admin)
    }

    pub fn update_settings(&self, patch: SettingsPatch) -> Result<(), FakeError> {
        self.fake.update_settings(patch).map_err(FakeError::Option)
    }

    pub fn oauth_clients(&self) -> Vec<ClientView> {
        self.fake.oauth_clients()
    }

    /// A client's live tokens (every token with `all`).
    pub fn oauth_tokens(&self, client_id: &str, all: bool) -> Vec<TokenView> {
        self.fake.oauth_tokens(client_id, all)
    }

    /// Uncompressed P-384 public key that verifies every token this tenant issues.
    pub fn jwt_public_key(&self) -> Vec<u8> {
        self.fake.signer.public_key()
    }

    /// Stops accepting, closes connections and waits for the server task.
    pub async fn shutdown(mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningFake {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The tenant's API as a client sees it: the api-keys, users and tenants routes and the OAuth
/// routes, behind the fault layer (faults, the request log) and the `Date` header.
pub(crate) fn app(fake: Arc<Fake>) -> axum::Router {
    use axum::middleware::from_fn_with_state;
    routes::routes()
        .merge(oauth_routes::routes())
        .fallback(routes::not_found)
        .layer(from_fn_with_state(fake.clone(), faults::apply))
        .layer(from_fn_with_state(fake.clone(), routes::date_header))
        .with_state(fake)
}
