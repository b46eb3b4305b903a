//! `QlikClient`: the engine's HTTP client for one Qlik Cloud tenant.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::Retryable;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::{Host, Url};
use zeroize::Zeroizing;

use super::error::{QlikError, describe_body};
use super::pacer::Tier2Pacer;
use super::retry::{self, AttemptError};
use super::types::{
    ApiKey, ApiKeysConfig, CreateKeyRequest, CreatedKey, DeleteOutcome, ListFilter, User,
};

/// How to reach a tenant. One [`QlikClient`] (one connection pool) per configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `https://<tenant>.<region>.qlikcloud.com` (no user-info, query, fragment or path).
    pub tenant_url: Url,
    /// Extra trust roots (PEM, one or more certificates), added to the OS roots.
    pub ca_cert_pem: Option<String>,
    /// Budget of one client call, retries and waits included (a `list_keys` call covers
    /// all its pages).
    pub request_timeout: Duration,
    /// Retries after the first attempt (see [`super::retry`] for what is retried).
    pub max_retries: u32,
}

impl ClientConfig {
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_RETRIES: u32 = 4;

    /// The product defaults: no extra CA, 30 s, 4 retries.
    pub fn new(tenant_url: Url) -> Self {
        Self {
            tenant_url,
            ca_cert_pem: None,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            max_retries: Self::DEFAULT_MAX_RETRIES,
        }
    }
}

/// A client for one tenant. Cheap to clone (an `Arc` around one `reqwest::Client`).
#[derive(Clone)]
pub struct QlikClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: Arc<reqwest::Client>,
    base: Url,
    request_timeout: Duration,
    max_retries: u32,
    /// Tier-2 pacing (create, patch, delete), shared by the clients of one mount.
    pacer: Option<Arc<Tier2Pacer>>,
    /// The tenant's clock minus ours, from the last answer's `Date` header (see
    /// [`QlikClient::clock_skew`]), and when that answer came.
    skew: std::sync::Mutex<Option<(jiff::SignedDuration, Instant)>>,
    /// Told of every answer and every wait (metrics), if any.
    observer: Option<Arc<dyn CallObserver>>,
}

/// Watches the client's calls (for metrics): every answer Qlik gave, and every wait a 429's
/// `retry-after` imposed. Called on the request path: must not block.
pub trait CallObserver: Send + Sync {
    /// An attempt ended: `operation` is `METHOD /path/template`, `status` the HTTP status, or
    /// `None` when no answer came (connection error, timeout).
    fn answered(&self, operation: &str, status: Option<u16>);
    /// A retry waits `wait` because Qlik answered 429 with `retry-after`.
    fn retry_after_wait(&self, operation: &str, wait: Duration);
}

impl std::fmt::Debug for QlikClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QlikClient")
            .field("tenant_url", &self.inner.base.as_str())
            .field("request_timeout", &self.inner.request_timeout)
            .field("max_retries", &self.inner.max_retries)
            .finish()
    }
}

/// Whether a failed attempt may be repeated (see [`super::retry`]), and how it is paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// GET: repeating it cannot do harm.
    Idempotent,
    /// PATCH (description), DELETE, `POST /oauth/token`, `POST /oauth/revoke`: repeatable
    /// (a duplicate access token is harmless: it only expires), and tier 2 at Qlik (paced:
    /// waits for a slot).
    IdempotentTier2,
    /// POST /api-keys, POST client-secrets: a repeat could create a second one. Tier 2,
    /// takes its slot at once.
    CreatesKey,
}

impl Mode {
    /// Whether a failure after the request may have reached Qlik (timeout, reset, 5xx)
    /// may be retried.
    fn repeatable(self) -> bool {
        !matches!(self, Mode::CreatesKey)
    }
}

pub(super) struct Call {
    pub(super) method: Method,
    pub(super) url: Url,
    /// `METHOD /path/template`, for messages and logs.
    pub(super) operation: String,
    /// The request body; zeroized on drop, since an OAuth body carries a client secret.
    pub(super) body: Option<Zeroizing<Vec<u8>>>,
    pub(super) mode: Mode,
    /// Longest wait for a tier-2 slot before a paced call gives up (deletions only).
    pub(super) max_pace_wait: Option<Duration>,
    /// Secrets this call sends in its body (OAuth client secret, token): blanked out of
    /// anything of Qlik's answer quoted in an error, should Qlik ever echo one.
    pub(super) redact: Vec<SecretString>,
}

impl Call {
    /// What Qlik said (see [`describe_body`]), with this call's secrets blanked out.
    pub(super) fn describe(&self, body: &[u8]) -> String {
        let mut said = describe_body(body);
        for secret in &self.redact {
            let secret = secret.expose_secret();
            if !secret.is_empty() && said.contains(secret) {
                said = said.replace(secret, "[REDACTED]");
            }
        }
        said
    }
}

/// A final (non-retried) answer.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
    /// The answer's `Date` header: the tenant's clock, to the second.
    pub(super) date: Option<jiff::Timestamp>,
}

/// The HTTP clients in use, by settings (see [`QlikClient::new`]); an entry lives as long as
/// a [`QlikClient`] holds it.
type SharedHttp = std::collections::HashMap<String, std::sync::Weak<reqwest::Client>>;

fn shared_http_map() -> std::sync::MutexGuard<'static, SharedHttp> {
    static SHARED: std::sync::OnceLock<std::sync::Mutex<SharedHttp>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn shared_http(key: &str) -> Option<Arc<reqwest::Client>> {
    shared_http_map()
        .get(key)
        .and_then(std::sync::Weak::upgrade)
}

fn remember_http(key: String, http: &Arc<reqwest::Client>) {
    let mut map = shared_http_map();
    map.retain(|_, client| client.strong_count() > 0);
    map.insert(key, Arc::downgrade(http));
}

const MAX_PAGES: usize = 1000;
const USER_AGENT: &str = concat!("vault-plugin-secrets-qlik/", env!("CARGO_PKG_VERSION"));

impl QlikClient {
    /// Builds the client. Fails with [`QlikError::Config`] on a bad URL or CA.
    ///
    /// TLS: the OS trust store plus `ca_cert_pem` (`tls_certs_merge`). An operator behind
    /// a TLS-intercepting proxy puts the proxy's CA there and everything keeps working;
    /// adding a CA never removes trust in the public CAs that sign `*.qlikcloud.com`.
    /// Proxies: `HTTPS_PROXY`/`NO_PROXY` from the environment, except that a loopback
    /// tenant (`127.0.0.0/8`, `::1`, `localhost`) is always reached directly, since a
    /// proxy's loopback is not ours. Redirects: followed only within the tenant's origin
    /// (so the bearer never leaves it), at most 5.
    pub fn new(cfg: ClientConfig) -> Result<Self, QlikError> {
        Self::build(cfg, None, None)
    }

    /// [`Self::new`], with tier-2 calls paced by `pacer` (one per mount, see [`super::pacer`]).
    pub fn new_paced(cfg: ClientConfig, pacer: Arc<Tier2Pacer>) -> Result<Self, QlikError> {
        Self::build(cfg, Some(pacer), None)
    }

    /// [`Self::new_paced`], with every answer and `retry-after` wait reported to `observer`.
    pub fn new_observed(
        cfg: ClientConfig,
        pacer: Arc<Tier2Pacer>,
        observer: Arc<dyn CallObserver>,
    ) -> Result<Self, QlikError> {
        Self::build(cfg, Some(pacer), Some(observer))
    }

    fn build(
        cfg: ClientConfig,
        pacer: Option<Arc<Tier2Pacer>>,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Result<Self, QlikError> {
        let config = |detail: String| QlikError::Config { detail };
        let url = cfg.tenant_url;
        if url.scheme() != "https" {
            return Err(config(format!(
                "tenant_url must use https://, not {}://",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(config("tenant_url must not contain user info".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(config(
                "tenant_url must not have a query or fragment".into(),
            ));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(config(format!(
                "tenant_url must not have a path (got {})",
                url.path()
            )));
        }
        if cfg.request_timeout.is_zero() {
            return Err(config("request_timeout must be positive".into()));
        }
        let mut base = url.clone();
        base.set_path("/");
        let connect_timeout = cfg.request_timeout.min(Duration::from_secs(10));
        // Clients with the same tenant, CA and connect timeout share one HTTP client: one
        // connection pool and one TLS configuration (the trust store is most of a client's
        // memory) for every mount of a tenant in this process.
        let shared_key = format!(
            "{base}|{}|{}",
            cfg.ca_cert_pem.as_deref().unwrap_or(""),
            connect_timeout.as_millis()
        );
        let http = match shared_http(&shared_key) {
            Some(http) => http,
            None => {
                let http = Arc::new(Self::http_client(
                    &base,
                    cfg.ca_cert_pem.as_deref(),
                    connect_timeout,
                )?);
                remember_http(shared_key, &http);
                http
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                request_timeout: cfg.request_timeout,
                max_retries: cfg.max_retries,
                pacer,
                observer,
                skew: std::sync::Mutex::new(None),
            }),
        })
    }

    fn http_client(
        base: &Url,
        ca_cert_pem: Option<&str>,
        connect_timeout: Duration,
    ) -> Result<reqwest::Client, QlikError> {
        let config = |detail: String| QlikError::Config { detail };
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same_origin = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| first.origin() == attempt.url().origin());
                if attempt.previous().len() > 5 {
                    attempt.error("more than 5 redirects")
                } else if same_origin {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }));
        if let Some(pem) = ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| config(format!("ca_cert is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(config("ca_cert contains no PEM certificate".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        if is_loopback(base) {
            builder = builder.no_proxy();
        }
        builder
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client: {}", chain(&e))))
    }

    /// How far the tenant's clock is ahead of ours (negative: behind), measured from the
    /// `Date` header of the last answer, rounded up: the header has whole seconds, so the
    /// tenant's time is taken as the end of that second. Key expiries are instants of the
    /// tenant's clock; `expiry - skew` is when the key dies by ours, never later (up to a
    /// second early). `None` before the first answer that carried a `Date`.
    pub fn clock_skew(&self) -> Option<jiff::SignedDuration> {
        self.inner
            .skew
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(skew, _)| skew)
    }

    /// How long ago the answer that gave [`Self::clock_skew`] came (`None`: no answer yet).
    /// The tenant's clock can step between answers, and only the next answer shows it.
    pub fn clock_seen_ago(&self) -> Option<Duration> {
        self.inner
            .skew
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(_, at)| at.elapsed())
    }

    /// Records the skew from an answer's `Date` header, and returns that date.
    fn observe_date(&self, headers: &reqwest::header::HeaderMap) -> Option<jiff::Timestamp> {
        let date = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| jiff::fmt::rfc2822::parse(v).ok())?
            .timestamp();
        let tenant_upper = date + jiff::SignedDuration::from_secs(1);
        let skew = tenant_upper.duration_since(jiff::Timestamp::now());
        *self.inner.skew.lock().unwrap_or_else(|e| e.into_inner()) = Some((skew, Instant::now()));
        Some(date)
    }

    /// The tenant URL this client talks to.
    pub fn tenant_url(&self) -> &Url {
        &self.inner.base
    }

    /// `GET /api/v1/users/me`, following Qlik's 301 to `/api/v1/users/{id}`: the key's owner.
    pub async fn me(&self, key: &SecretString) -> Result<User, QlikError> {
        let call = self.call(
            Method::GET,
            &["api", "v1", "users", "me"],
            "GET /api/v1/users/me",
            None,
        )?;
        let reply = self.execute(Some(key), &call, self.deadline()).await?;
        let body = expect_success(&call, reply, || "user".into())?;
        parse_json(&call, &body)
    }

    /// `GET /api/v1/api-keys/{id}`: a key's record. 404 gives [`QlikError::NotFound`].
    pub async fn get_key(&self, key: &SecretString, id: &str) -> Result<ApiKey, QlikError> {
        self.get_key_within(key, id, self.inner.request_timeout)
            .await
    }

    /// [`Self::get_key`], retries included, within `budget` (at most `request_timeout`).
    pub async fn get_key_within(
        &self,
        key: &SecretString,
        id: &str,
        budget: Duration,
    ) -> Result<ApiKey, QlikError> {
        let call = self.call(
            Method::GET,
            &["api", "v1", "api-keys", id],
            "GET /api/v1/api-keys/{id}",
            None,
        )?;
        let budget = budget.min(self.inner.request_timeout);
        let reply = self
            .execute(Some(key), &call, Instant::now() + budget)
            .await?;
        let body = expect_success(&call, reply, || format!("API key {id}"))?;
        parse_json(&call, &body)
    }

    /// `POST /api/v1/api-keys`: mints a key owned by the bearer's user.
    ///
    /// Never retried once the request may have reached Qlik: a timeout, a dropped
    /// connection, a 5xx or an unreadable 201 give [`QlikError::OutcomeUnknown`]. Retried
    /// only on 429 and on connection failures before anything was sent.
    pub async fn create_key(
        &self,
        key: &SecretString,
        req: &CreateKeyRequest,
    ) -> Result<CreatedKey, QlikError> {
        let body = serde_json::to_vec(req).map_err(|e| QlikError::Config {
            detail: e.to_string(),
        })?;
        let mut call = self.call(
            Method::POST,
            &["api", "v1", "api-keys"],
            "POST /api/v1/api-keys",
            Some(Zeroizing::new(body)),
        )?;
        call.mode = Mode::CreatesKey;
        let reply = self.execute(Some(key), &call, self.deadline()).await?;
        if !reply.status.is_success() {
            return Err(status_error(&call, reply.status, &reply.body, || {
                "API keys endpoint".into()
            }));
        }
        // serde's messages can quote input; this body holds a token, so say only what failed.
        serde_json::from_slice::<CreatedKey>(&reply.body).map_err(|_| QlikError::OutcomeUnknown {
            operation: call.operation.clone(),
            cause: format!(
                "Qlik answered {} but the body is not a readable API key with token",
                reply.status
            ),
        })
    }

    /// `GET /api/v1/api-keys` with filters, following every `links.next` page.
    pub async fn list_keys(
        &self,
        key: &SecretString,
        filter: &ListFilter,
    ) -> Result<Vec<ApiKey>, QlikError> {
        let mut call = self.call(
            Method::GET,
            &["api", "v1", "api-keys"],
            "GET /api/v1/api-keys",
            None,
        )?;
        {
            let mut query = call.url.query_pairs_mut();
            query.append_pair("limit", "100");
            if let Some(sub) = &filter.sub {
                query.append_pair("sub", sub);
            }
            if let Some(status) = &filter.status {
                query.append_pair("status", status.as_str());
            }
            if let Some(user) = &filter.created_by_user {
                query.append_pair("createdByUser", user);
            }
        }
        let deadline = self.deadline();
        let mut keys = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let reply = self.execute(Some(key), &call, deadline).await?;
            let body = expect_success(&call, reply, || "API key list".into())?;
            let page: Page = parse_json(&call, &body)?;
            keys.extend(page.data);
            let Some(next) = page.links.and_then(|l| l.next).and_then(|n| n.href) else {
                return Ok(keys);
            };
            let next = self
                .inner
                .base
                .join(&next)
                .map_err(|e| invalid(&call, format!("bad links.next.href: {e}")))?;
            if next.origin() != self.inner.base.origin() {
                return Err(invalid(
                    &call,
                    "links.next.href points to another origin; not followed".into(),
                ));
            }
            if !seen.insert(next.to_string()) {
                return Err(invalid(
                    &call,
                    "links.next.href repeats an earlier page".into(),
                ));
            }
            call.url = next;
        }
        Err(invalid(&call, format!("more than {MAX_PAGES} pages")))
    }

    /// `DELETE /api/v1/api-keys/{id}`. The owner's delete removes the key; a TenantAdmin's
    /// delete of another user's key revokes it. 404 is [`DeleteOutcome::AlreadyGone`].
    ///
    /// Paced (see [`super::pacer`]): waits for a tier-2 slot within the call's budget.
    pub async fn delete_key(
        &self,
        key: &SecretString,
        id: &str,
    ) -> Result<DeleteOutcome, QlikError> {
        self.delete_key_within(key, id, self.inner.request_timeout)
            .await
    }

    /// [`Self::delete_key`], waiting at most `max_wait` for a tier-2 slot: if the pacer has
    /// none that soon, nothing is sent and the answer is [`QlikError::RateLimited`] with the
    /// wait in `retry_after` and `attempts` 0.
    pub async fn delete_key_within(
        &self,
        key: &SecretString,
        id: &str,
        max_wait: Duration,
    ) -> Result<DeleteOutcome, QlikError> {
        let mut call = self.call(
            Method::DELETE,
            &["api", "v1", "api-keys", id],
            "DELETE /api/v1/api-keys/{id}",
            None,
        )?;
        call.mode = Mode::IdempotentTier2;
        call.max_pace_wait = Some(max_wait);
        let reply = self.execute(Some(key), &call, self.deadline()).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(DeleteOutcome::AlreadyGone);
        }
        expect_success(&call, reply, || format!("API key {id}"))?;
        Ok(DeleteOutcome::Deleted)
    }

    /// `PATCH /api/v1/api-keys/{id}`: replaces the description (the only mutable field).
    pub async fn update_description(
        &self,
        key: &SecretString,
        id: &str,
        description: &str,
    ) -> Result<(), QlikError> {
        let patch =
            serde_json::json!([{ "op": "replace", "path": "/description", "value": description }]);
        let mut call = self.call(
            Method::PATCH,
            &["api", "v1", "api-keys", id],
            "PATCH /api/v1/api-keys/{id}",
            Some(Zeroizing::new(patch.to_string().into_bytes())),
        )?;
        call.mode = Mode::IdempotentTier2;
        let reply = self.execute(Some(key), &call, self.deadline()).await?;
        expect_success(&call, reply, || format!("API key {id}"))?;
        Ok(())
    }

    /// `GET /api/v1/api-keys/configs/{tenantId}`: the tenant's key limit and maximum expiry.
    pub async fn tenant_config(
        &self,
        key: &SecretString,
        tenant_id: &str,
    ) -> Result<ApiKeysConfig, QlikError> {
        let call = self.call(
            Method::GET,
            &["api", "v1", "api-keys", "configs", tenant_id],
            "GET /api/v1/api-keys/configs/{tenantId}",
            None,
        )?;
        let reply = self.execute(Some(key), &call, self.deadline()).await?;
        let body = expect_success(&call, reply, || {
            format!("API key configuration for tenant {tenant_id}")
        })?;
        parse_json(&call, &body)
    }

    /// The budget of one call ([`ClientConfig::request_timeout`]).
    pub(super) fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.inner.request_timeout
    }

    pub(super) fn call(
        &self,
        method: Method,
        segments: &[&str],
        operation: &str,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Call, QlikError> {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|()| QlikError::Config {
                detail: "tenant_url cannot carry a path".into(),
            })?
            .clear()
            .extend(segments);
        Ok(Call {
            method,
            url,
            operation: operation.to_string(),
            body,
            mode: Mode::Idempotent,
            max_pace_wait: None,
            redact: Vec::new(),
        })
    }

    /// Runs a call with bounded retries; returns the first final answer. `key` is the
    /// bearer; `None` sends no `Authorization` header (`/oauth/*`: the client authenticates
    /// in the body).
    pub(super) async fn execute(
        &self,
        key: Option<&SecretString>,
        call: &Call,
        deadline: Instant,
    ) -> Result<Reply, QlikError> {
        let attempts = AtomicU32::new(0);
        let result = (|| async { self.attempt(key, call, deadline, &attempts).await })
            .retry(retry::backoff(self.inner.max_retries))
            .when(|e: &AttemptError| e.retryable)
            .adjust(|e, backoff| {
                retry::next_wait(
                    e,
                    backoff,
                    deadline.saturating_duration_since(Instant::now()),
                )
            })
            .notify(|e, wait| {
                if let (Some(observer), QlikError::RateLimited { .. }) =
                    (&self.inner.observer, &e.error)
                {
                    observer.retry_after_wait(&call.operation, wait);
                }
                tracing::warn!(
                    operation = %call.operation,
                    wait_ms = wait.as_millis() as u64,
                    error = %e.error,
                    "Qlik call failed; retrying"
                );
            })
            .await;
        result.map_err(|e| e.error.with_attempts(attempts.load(Ordering::Relaxed)))
    }

    /// Tier-2 pacing before an attempt: mints take their slot at once; deletions and patches
    /// wait for theirs (within `max_pace_wait` and the call's budget). Returns the budget left.
    async fn pace(&self, call: &Call, left: Duration) -> Result<Duration, AttemptError> {
        let Some(pacer) = &self.inner.pacer else {
            return Ok(left);
        };
        match call.mode {
            Mode::Idempotent => Ok(left),
            Mode::CreatesKey => {
                pacer.take();
                Ok(left)
            }
            Mode::IdempotentTier2 => {
                // Leave the call itself a second to run.
                let budget = left.saturating_sub(Duration::from_secs(1));
                let max_wait = call.max_pace_wait.unwrap_or(budget).min(budget);
                match pacer.reserve(max_wait) {
                    Ok(wait) => {
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        Ok(left.saturating_sub(wait))
                    }
                    Err(wait) => Err(AttemptError::fatal(QlikError::RateLimited {
                        operation: call.operation.clone(),
                        retry_after: Some(wait),
                        attempts: 0,
                    })),
                }
            }
        }
    }

    /// One attempt; `attempts` counts it once the request is about to go out (a pacer
    /// refusal or a used-up budget sends nothing, so it is no attempt).
    async fn attempt(
        &self,
        key: Option<&SecretString>,
        call: &Call,
        deadline: Instant,
        attempts: &AtomicU32,
    ) -> Result<Reply, AttemptError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AttemptError::fatal(unavailable(
                call,
                "request_timeout used up",
                "no time left for another attempt".into(),
            )));
        }
        let left = self.pace(call, left).await?;
        attempts.fetch_add(1, Ordering::Relaxed);
        let timeout = match call.mode {
            // A POST that times out is never repeated, so it gets the whole budget.
            Mode::CreatesKey => left,
            Mode::Idempotent | Mode::IdempotentTier2 => {
                let share = self.inner.request_timeout / (self.inner.max_retries + 1).min(3);
                left.min(share.max(Duration::from_secs(1)))
            }
        };
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .timeout(timeout);
        if let Some(key) = key {
            request = request.bearer_auth(key.expose_secret());
        }
        if let Some(body) = &call.body {
            // This copy belongs to reqwest from here on (like the Authorization header).
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.to_vec());
        }
        let response = request.send().await.map_err(|e| {
            if let Some(observer) = &self.inner.observer {
                observer.answered(&call.operation, None);
            }
            transport_error(call, &e)
        })?;
        let status = response.status();
        let date = self.observe_date(response.headers());
        if let Some(observer) = &self.inner.observer {
            observer.answered(&call.operation, Some(status.as_u16()));
        }
        let retry_after =
            retry::parse_retry_after(response.headers().get(reqwest::header::RETRY_AFTER));
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(call, &e))?
            .to_vec();
        tracing::debug!(operation = %call.operation, %status, "Qlik answered");

        if status == StatusCode::TOO_MANY_REQUESTS {
            if call.mode != Mode::Idempotent
                && let Some(pacer) = &self.inner.pacer
            {
                pacer.block_for(retry_after.unwrap_or(Duration::from_secs(1)));
            }
            let error = QlikError::RateLimited {
                operation: call.operation.clone(),
                retry_after,
                attempts: 0,
            };
            return Err(AttemptError::transient(error, retry_after));
        }
        if status.is_server_error() {
            let what = format!("Qlik answered {status}");
            return Err(match call.mode {
                Mode::CreatesKey => AttemptError::fatal(QlikError::OutcomeUnknown {
                    operation: call.operation.clone(),
                    cause: format!("{what}: {}", call.describe(&body)),
                }),
                _ if is_retryable_5xx(status) => {
                    AttemptError::transient(unavailable(call, &what, call.describe(&body)), None)
                }
                _ => AttemptError::fatal(unavailable(call, &what, call.describe(&body))),
            });
        }
        Ok(Reply { status, body, date })
    }
}

fn is_retryable_5xx(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[derive(Deserialize)]
struct Page {
    data: Vec<ApiKey>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<Href>,
}

#[derive(Deserialize)]
struct Href {
    #[serde(default)]
    href: Option<String>,
}

fn unavailable(call: &Call, what: &str, cause: String) -> QlikError {
    QlikError::Unavailable {
        operation: call.operation.clone(),
        what: what.to_string(),
        attempts: 0,
        cause,
    }
}

pub(super) fn invalid(call: &Call, detail: String) -> QlikError {
    QlikError::InvalidResponse {
        operation: call.operation.clone(),
        detail,
    }
}

pub(super) fn parse_json<T: DeserializeOwned>(call: &Call, body: &[u8]) -> Result<T, QlikError> {
    serde_json::from_slice(body)
        .map_err(|e| invalid(call, format!("malformed or incomplete JSON: {e}")))
}

fn expect_success(
    call: &Call,
    reply: Reply,
    what: impl FnOnce() -> String,
) -> Result<Vec<u8>, QlikError> {
    if reply.status.is_success() {
        Ok(reply.body)
    } else {
        Err(status_error(call, reply.status, &reply.body, what))
    }
}

/// `": <what Qlik said>"`, or nothing.
pub(super) fn suffix(call: &Call, body: &[u8]) -> String {
    let said = call.describe(body);
    if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    }
}

/// Maps a final non-2xx answer. Qlik documents no error codes for the key limit or an
/// expiry above the maximum, so for creates those are recognised from the text.
pub(super) fn status_error(
    call: &Call,
    status: StatusCode,
    body: &[u8],
    what: impl FnOnce() -> String,
) -> QlikError {
    let operation = call.operation.clone();
    let detail = suffix(call, body);
    let text = detail.to_ascii_lowercase();
    let creating = call.mode == Mode::CreatesKey;
    let about_expiry_max = text.contains("expir")
        && (text.contains("max") || text.contains("exceed") || text.contains("above"));
    let about_key_limit = text.contains("max_keys_per_user")
        || (text.contains("limit")
            && text.contains("key")
            && !text.contains("expir")
            && !text.contains("rate limit"));
    match status.as_u16() {
        401 => QlikError::Unauthorized { operation, detail },
        403 if creating && about_key_limit => QlikError::KeyLimit {
            status: 403,
            detail,
        },
        403 => QlikError::PermissionDenied { operation, detail },
        404 => QlikError::NotFound {
            what: what(),
            detail,
        },
        s @ 400..=499 if creating && about_expiry_max => {
            QlikError::ExpiryAboveMaximum { status: s, detail }
        }
        s @ 400..=499 if creating && about_key_limit => QlikError::KeyLimit { status: s, detail },
        s @ 400..=499 => QlikError::BadRequest {
            operation,
            status: s,
            detail,
        },
        300..=399 => invalid(
            call,
            format!("answered {status} with a redirect to another origin (not followed)"),
        ),
        _ => invalid(call, format!("unexpected status {status}{detail}")),
    }
}

/// Classifies a failure below HTTP (connect, TLS, timeout, reset, body read).
fn transport_error(call: &Call, error: &reqwest::Error) -> AttemptError {
    let cause = chain(error);
    if let Some(tls) = tls_cause(error) {
        return AttemptError::fatal(QlikError::Tls {
            operation: call.operation.clone(),
            cause: tls,
        });
    }
    if error.is_connect() {
        // Nothing was sent: safe to repeat even a POST.
        return AttemptError::transient(unavailable(call, "could not connect", cause), None);
    }
    let what = if error.is_timeout() {
        "timed out"
    } else {
        "connection failed"
    };
    if call.mode.repeatable() {
        AttemptError::transient(unavailable(call, what, cause), None)
    } else {
        AttemptError::fatal(QlikError::OutcomeUnknown {
            operation: call.operation.clone(),
            cause: format!("{what} after the request was sent: {cause}"),
        })
    }
}

/// The error and its sources, without the URL (it adds nothing the operation lacks).
fn chain(error: &reqwest::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = e.source();
    }
    let joined = parts.join(": ");
    match error.url() {
        Some(url) => joined.replace(&format!(" for url ({url})"), ""),
        None => joined,
    }
}

/// A rustls error anywhere in the chain. `io::Error` hides its payload from `source()`,
/// and reqwest nests one `io::Error` in another, so payloads are searched too.
fn tls_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut pending = vec![error];
    while let Some(e) = pending.pop() {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(payload) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            pending.push(payload);
        }
        if let Some(source) = e.source() {
            pending.push(source);
        }
    }
    None
}
