//! The Qlik secrets engine: one mount ([`QlikBackend`]) and the dispatcher that sends each
//! request to the module of its path family.
//!
//! Floors (`docs/design.md`); a floor imports only from the floors below it:
//! 1. [`chain`]: the chain and its records (credential records, holds, intents, schedules,
//!    ticks, health, the ledger); knows nothing of Qlik, `config` or paths.
//! 2. [`tenant`]: the connection to the tenant (Qlik clients, tier-2 pacers, counters, Qlik's
//!    errors as users read them).
//! 3. [`api_key`]: the API key as a credential kind (its `config` record, minting, rotation,
//!    slots, deletion, tidy).
//! 4. [`paths`]: one module per path family, like mini-redis's commands.
//!
//! Invariants every floor keeps:
//! - Before any call that mints a key, an intent is written to storage (the request's first
//!   write: on a standby it fails read-only and the server forwards the request), and the
//!   minted key is recorded there before anything else is done with it ([`api_key::mint`]).
//! - The stored key is never deleted at Qlik before its successor is verified and stored
//!   ([`api_key::rotation`]).
//! - Lease TTLs come from the `expires_at` Qlik returned, never from the requested duration.

pub mod api_key;
pub mod chain;
pub mod oauth;
pub mod paths;
pub mod tenant;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::duration::KeyDuration;
use crate::framework::{
    BackendFactory, LeaseOperation, LeaseRequest, LogicalBackend, MountContext, PathSpec, Request,
    RequestError, Response, SpecialPaths, Storage, SystemView,
};
use crate::qlik::{QLIK_TIER2_LIMIT, QLIK_TIER2_WINDOW, QlikClient, Tier2Pacer};
use api_key::config;
use chain::{ledger, node_role, records, ticks, watched_storage};
use tenant::{ClientCache, Pacing};

pub use crate::VERSION;

/// Every route of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `config`.
    Config,
    /// `rotate`.
    Rotate,
    /// `key`.
    Key,
    /// `roles/`.
    RolesList,
    /// `roles/<name>`.
    Role,
    /// `creds/<name>`.
    Creds,
    /// `keys/`.
    KeysList,
    /// `keys/<id>`.
    KeyRecord,
    /// `tidy`.
    Tidy,
    /// `status`.
    Status,
    /// `metrics`.
    Metrics,
    /// `oauth/clients/`.
    OAuthClientsList,
    /// `oauth/clients/<name>`.
    OAuthClient,
    /// `oauth/clients/<name>/rotate`.
    OAuthClientRotate,
    /// `oauth/clients/<name>/secret`.
    OAuthClientSecret,
    /// `oauth/roles/`.
    OAuthRolesList,
    /// `oauth/roles/<name>`.
    OAuthRole,
    /// `oauth/token/<name>`.
    OAuthToken,
}

/// The paths, in matching order.
pub static PATHS: &[PathSpec<Route>] = &[
    paths::config::PATH,
    paths::rotate::PATH,
    paths::key::PATH,
    paths::roles::LIST_PATH,
    paths::roles::PATH,
    paths::creds::PATH,
    paths::keys::LIST_PATH,
    paths::keys::PATH,
    paths::tidy::PATH,
    paths::status::PATH,
    paths::metrics::PATH,
    paths::oauth_clients::LIST_PATH,
    paths::oauth_clients::PATH,
    paths::oauth_secrets::ROTATE_PATH,
    paths::oauth_secrets::SECRET_PATH,
    paths::oauth_roles::LIST_PATH,
    paths::oauth_roles::PATH,
    paths::oauth_token::PATH,
];

const HELP: &str = "\
The Qlik secrets engine keeps a Qlik Cloud API key alive: it stores the key, rotates it before \
it expires (minting the new key with the old one), verifies and stores the new key before \
deleting anything, and hands keys to applications as leases whose TTL is the key's real \
remaining life.

Start with `config` (tenant URL and the first API key). `rotate` rotates now and returns the \
new key; `key` returns the current key; `creds/<role>` mints a dedicated key per lease; \
`keys/` shows every key the mount tracks; `tidy` reconciles with Qlik. `status` (the chain's \
health) and `metrics` (Prometheus text) are for monitoring and carry no secret.";

/// Secret types (lease kinds).
pub mod secret_types {
    /// A lease on the stored key (from `key` or `rotate`): it holds the key alive.
    pub const STORED_KEY: &str = "qlik_stored_key";
    /// A lease on a dedicated key (from `creds/<role>`): its end deletes the key.
    pub const DEDICATED_KEY: &str = "qlik_dedicated_key";
    /// A lease on an OAuth access token (from `oauth/token/<role>`): its end revokes the
    /// token at Qlik unless the role shares it; renewal never passes the token's life.
    pub const OAUTH_TOKEN: &str = "qlik_oauth_token";
    /// A lease on an OAuth client's secret (from `oauth/clients/<name>/secret`): it holds
    /// the secret alive through rotations.
    pub const OAUTH_CLIENT_SECRET: &str = "qlik_oauth_client_secret";
}

/// One mount of the engine.
pub struct QlikBackend {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) system: Arc<dyn SystemView>,
    /// Names this mount in the markers of the keys it mints.
    pub(crate) mount_id: String,
    /// One client (connection pool) per configuration, shared with the deleter.
    clients: Arc<ClientCache>,
    /// Serialises read-modify-write of the mount's records.
    pub(crate) state_lock: Mutex<()>,
    /// Serialises rotations of the stored key.
    pub(crate) rotation_lock: Mutex<()>,
    /// Serialises every mint with what must see a consistent count of keys: the key-limit
    /// check before a `creds` mint (else parallel requests all pass it and Qlik refuses
    /// half-way), and tidy's orphan scan (else a key minted after tidy read the records
    /// looks untracked and is deleted under a live lease). Order: `rotation_lock`, then
    /// `mint_lock`, then `state_lock`.
    pub(crate) mint_lock: Mutex<()>,
    /// When the periodic tick last ran tidy.
    pub(crate) last_tidy: Mutex<Option<tokio::time::Instant>>,
    /// When the periodic tidy next lists the owner's keys without an intent pointing at
    /// work ([`api_key::tidy::FULL_SCAN_PERIOD`]).
    pub(crate) next_full_scan: Mutex<tokio::time::Instant>,
    /// The config as last read or written (see [`config::load`]).
    pub(crate) config_cache: ConfigCache,
    /// Deletions the tier-2 budget could not take at once.
    pub(crate) deleter: Arc<api_key::deleter::Deleter>,
    /// Qlik's last answer about the stored key (for `status`).
    pub(crate) key_check: chain::health::KeyCheckCache,
    /// When a `key` read last asked Qlik for the tenant's clock.
    pub(crate) clock_check: api_key::tenant_clock::ClockCheck,
    /// When the server's periodic tick last came, and how far apart ticks come.
    pub(crate) ticks: ticks::TickClock,
    /// Whether this process serves the active node or a standby (seen by storage writes).
    pub(crate) role: Arc<node_role::NodeRole>,
    /// The records and holds as written, for `status` and `metrics`.
    pub(crate) ledger: Arc<ledger::Ledger>,
    /// OAuth clients' Qlik clients and shared tokens.
    pub(crate) oauth: oauth::OAuthState,
}

/// Mount option: the tier-2 calls (create, patch, delete) the mount may make per window (Qlik
/// allows 100 per user and minute; set it lower when several mounts or other clients share the
/// key's owner).
pub const TIER2_LIMIT_OPTION: &str = "qlik_tier2_limit";
/// Mount option: that window, in seconds (Qlik: 60).
pub const TIER2_WINDOW_OPTION: &str = "qlik_tier2_window_seconds";

/// A cached config (`None`: known to be absent), shared without copying its strings.
pub(crate) type SharedConfig = Option<Arc<config::Config>>;

/// An in-memory copy of the stored config, with a generation counter so that a read racing a
/// write can never install the old value: writers bump the generation before and after
/// writing, and a reader fills the copy only if the generation did not move while it read.
#[derive(Default)]
pub(crate) struct ConfigCache {
    state: std::sync::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    generation: u64,
    /// The current copy (`Some(None)`: known to be absent), if any; shared, so that a read
    /// takes it without copying every string in it.
    config: Option<SharedConfig>,
    /// The part of the `config` read that is a pure function of that copy, rendered once:
    /// re-rendering it on every read was most of the engine's instructions per read over the
    /// null plugin, under callgrind.
    read: Option<Arc<str>>,
}

impl ConfigCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current copy (`Some(None)`: known to be absent), if any.
    pub(crate) fn get(&self) -> Option<Option<config::Config>> {
        let config = self.lock().config.clone();
        config.map(|c| c.map(|c| config::Config::clone(&c)))
    }

    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    pub(crate) fn fill(&self, generation: u64, config: &Option<config::Config>) {
        let mut state = self.lock();
        if state.generation == generation {
            state.config = Some(config.clone().map(Arc::new));
        }
    }

    /// The generation, the current copy and its rendered `config` read, as one consistent view.
    pub(crate) fn snapshot(&self) -> (u64, Option<SharedConfig>, Option<Arc<str>>) {
        let state = self.lock();
        (state.generation, state.config.clone(), state.read.clone())
    }

    /// Keeps the rendered `config` read, if the copy it was made from is still current.
    pub(crate) fn keep_read(&self, generation: u64, text: &Arc<str>) {
        let mut state = self.lock();
        if state.generation == generation && matches!(state.config, Some(Some(_))) {
            state.read = Some(text.clone());
        }
    }

    pub(crate) fn invalidate(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.config = None;
        state.read = None;
    }
}

impl QlikBackend {
    /// A backend over a mount's storage and system view. `mount_uuid` is the server's stable
    /// id for the mount.
    pub fn new(storage: Arc<dyn Storage>, system: Arc<dyn SystemView>, mount_uuid: &str) -> Self {
        Self::with_budget(
            storage,
            system,
            mount_uuid,
            QLIK_TIER2_LIMIT,
            QLIK_TIER2_WINDOW,
        )
    }

    /// [`Self::new`] with a tier-2 budget other than Qlik's 100 calls a minute, shared with
    /// the other mounts of the same Qlik user and budget in this process.
    pub fn with_budget(
        storage: Arc<dyn Storage>,
        system: Arc<dyn SystemView>,
        mount_uuid: &str,
        limit: u32,
        window: Duration,
    ) -> Self {
        Self::with_pacing(
            storage,
            system,
            mount_uuid,
            Pacing::PerUser { limit, window },
        )
    }

    /// [`Self::new`] with a tier-2 pacer of this mount's own (shared with no other mount).
    pub fn with_pacer(
        storage: Arc<dyn Storage>,
        system: Arc<dyn SystemView>,
        mount_uuid: &str,
        pacer: Tier2Pacer,
    ) -> Self {
        Self::with_pacing(storage, system, mount_uuid, Pacing::Own(Arc::new(pacer)))
    }

    fn with_pacing(
        storage: Arc<dyn Storage>,
        system: Arc<dyn SystemView>,
        mount_uuid: &str,
        pacing: Pacing,
    ) -> Self {
        let mount_id: String = mount_uuid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let clients = Arc::new(ClientCache::new(pacing));
        let next_full_scan = api_key::tidy::first_full_scan(&mount_id);
        let role = Arc::new(node_role::NodeRole::default());
        let ledger = Arc::new(ledger::Ledger::default());
        let storage: Arc<dyn Storage> = Arc::new(watched_storage::WatchedStorage::new(
            storage,
            role.clone(),
            ledger.clone(),
        ));
        Self {
            deleter: api_key::deleter::Deleter::new(storage.clone(), clients.clone()),
            clients,
            storage,
            system,
            mount_id: if mount_id.is_empty() {
                "unknown".into()
            } else {
                mount_id
            },
            state_lock: Mutex::new(()),
            rotation_lock: Mutex::new(()),
            mint_lock: Mutex::new(()),
            last_tidy: Mutex::new(None),
            next_full_scan: Mutex::new(next_full_scan),
            config_cache: ConfigCache::default(),
            key_check: chain::health::KeyCheckCache::default(),
            clock_check: api_key::tenant_clock::ClockCheck::default(),
            ticks: ticks::TickClock::default(),
            role,
            ledger,
            oauth: oauth::OAuthState::default(),
        }
    }

    /// The client for `config`, built once per distinct configuration.
    pub(crate) async fn client(&self, config: &config::Config) -> Result<QlikClient, RequestError> {
        self.clients
            .get(config.client_config()?, &config.key_info.owner_id)
            .await
    }

    /// The Qlik client of OAuth client `name` (Qlik id `client_id`) on `config`'s tenant
    /// ([`oauth::OAuthState::qlik`]).
    pub(crate) fn oauth_qlik(
        &self,
        config: &config::Config,
        name: &str,
        client_id: &str,
    ) -> Result<QlikClient, RequestError> {
        self.oauth
            .qlik(&self.clients, config.client_config()?, name, client_id)
    }

    /// The mount's counters.
    pub(crate) fn metrics(&self) -> &tenant::counters::Metrics {
        &self.clients.metrics
    }

    /// The tenant's clock skew as last seen by this mount's client ([`QlikClient::clock_skew`]).
    pub(crate) async fn last_clock_skew(&self) -> Option<jiff::SignedDuration> {
        self.clients.last_skew().await
    }

    pub(crate) async fn forget_client(&self) {
        self.clients.forget().await;
    }

    /// The marker of this mount's keys at Qlik (in their description).
    pub(crate) fn mount_marker(&self) -> String {
        format!("[vault-qlik mount={}", self.mount_id)
    }

    /// The 400 that stops a key from outliving the mount's max lease TTL.
    pub(crate) async fn check_max_ttl(
        &self,
        expiry: Option<KeyDuration>,
        mount_point: &str,
    ) -> Result<(), RequestError> {
        let Some(expiry) = expiry else { return Ok(()) };
        let max = self
            .system
            .max_lease_ttl()
            .await
            .map_err(|e| RequestError::Internal(e.to_string()))?;
        if max.as_secs() > 0 && expiry.as_std() > max {
            let hours = expiry.as_secs().div_ceil(3600);
            let mount = if mount_point.is_empty() {
                "qlik/"
            } else {
                mount_point
            };
            return Err(RequestError::bad_request(format!(
                "a key of {expiry} would outlive this mount's max lease TTL ({}s), so its lease \
                 could not cover it; nothing was minted. Fix: vault secrets tune \
                 -max-lease-ttl={hours}h {mount} (or ask for a shorter expiry)",
                max.as_secs()
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl LogicalBackend for QlikBackend {
    type Route = Route;

    fn paths(&self) -> &'static [PathSpec<Route>] {
        PATHS
    }

    fn help(&self) -> &'static str {
        HELP
    }

    fn special_paths(&self) -> SpecialPaths {
        SpecialPaths {
            // Keys are sealed with the server's seal where the seal supports it.
            seal_wrap_storage: vec![
                config::STORAGE_KEY.to_string(),
                records::INTENTS_PREFIX.to_string(),
                oauth::client::PREFIX.to_string(),
            ],
            ..SpecialPaths::default()
        }
    }

    async fn handle(&self, request: Request<Route>) -> Result<Response, RequestError> {
        match request.route {
            Route::Config => paths::config::handle(self, request).await,
            Route::Rotate => paths::rotate::handle(self, request).await,
            Route::Key => paths::key::handle(self, request).await,
            Route::RolesList | Route::Role => paths::roles::handle(self, request).await,
            Route::Creds => paths::creds::handle(self, request).await,
            Route::KeysList | Route::KeyRecord => paths::keys::handle(self, request).await,
            Route::Tidy => paths::tidy::handle(self, request).await,
            Route::Status => paths::status::handle(self, request).await,
            Route::Metrics => paths::metrics::handle(self, request).await,
            Route::OAuthClientsList | Route::OAuthClient => {
                paths::oauth_clients::handle(self, request).await
            }
            Route::OAuthRolesList | Route::OAuthRole => {
                paths::oauth_roles::handle(self, request).await
            }
            Route::OAuthToken => paths::oauth_token::handle(self, request).await,
            Route::OAuthClientRotate => paths::oauth_secrets::rotate(self, request).await,
            Route::OAuthClientSecret => paths::oauth_secrets::secret(self, request).await,
        }
    }

    async fn exists(&self, request: &Request<Route>) -> Result<bool, RequestError> {
        match request.route {
            Route::Config => paths::config::exists(self).await,
            Route::Role => paths::roles::exists(self, request).await,
            Route::OAuthClient => paths::oauth_clients::exists(self, request).await,
            Route::OAuthRole => paths::oauth_roles::exists(self, request).await,
            _ => Ok(true),
        }
    }

    async fn lease(
        &self,
        op: LeaseOperation,
        lease: LeaseRequest,
    ) -> Result<Response, RequestError> {
        paths::leases::handle(self, op, lease).await
    }

    async fn periodic(&self) -> Result<(), RequestError> {
        self.ticks.tick();
        api_key::rotation::periodic(self).await?;
        oauth::rotation::periodic(self).await?;
        api_key::tidy::periodic(self).await
    }

    async fn cleanup(&self) {
        self.deleter.stop();
    }

    async fn invalidate(&self, key: &str) {
        if key == config::STORAGE_KEY {
            self.config_cache.invalidate();
            self.forget_client().await;
            self.oauth.forget_clients();
        } else if key.starts_with("oauth/") {
            // A client or role written by another node: shared tokens are got again.
            self.oauth.shared.clear();
        } else if key.starts_with(records::KEYS_PREFIX) || key.starts_with(records::HOLDS_PREFIX) {
            // Written by another node: what this one remembers is built again when needed.
            self.ledger.invalidate();
        }
    }
}

/// Creates a [`QlikBackend`] per mount.
pub struct Factory;

impl BackendFactory for Factory {
    type Backend = QlikBackend;

    fn create(&self, mount: MountContext) -> Result<QlikBackend, String> {
        let option = |name: &str, default: u64| match mount.config.get(name) {
            None => Ok(default),
            Some(text) => match text.trim().parse::<u64>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err(format!(
                    "mount option {name} must be a whole number from 1 to 1000000, not {text:?}"
                )),
            },
        };
        let limit = option(TIER2_LIMIT_OPTION, u64::from(QLIK_TIER2_LIMIT))?;
        let window = option(TIER2_WINDOW_OPTION, QLIK_TIER2_WINDOW.as_secs())?;
        Ok(QlikBackend::with_budget(
            mount.storage,
            mount.system,
            &mount.backend_uuid,
            u32::try_from(limit).unwrap_or(u32::MAX),
            Duration::from_secs(window),
        ))
    }

    fn version(&self) -> &'static str {
        VERSION
    }

    fn title(&self) -> &'static str {
        "Qlik Cloud API keys secrets engine"
    }
}

#[cfg(test)]
mod config_cache_tests {
    use super::*;

    fn config() -> config::Config {
        serde_json::from_value(serde_json::json!({
            "tenant_url": "https://t.example", "key": {"token": "k"}, "key_expiry": null,
            "auto_rotate": true, "rotate_before": null, "ca_cert": null,
            "request_timeout": "PT30S", "max_retries": 3,
            "key_info": {"key_id": "a", "owner_id": "o", "owner_name": "n", "tenant_id": "t",
                         "created_at": null, "expires_at": "2030-01-01T00:00:00Z"}
        }))
        .unwrap()
    }

    #[test]
    fn the_rendered_read_lives_and_dies_with_the_copy() {
        let cache = ConfigCache::default();
        let text: Arc<str> = "{\"a\":1}".into();
        // No copy yet, or a copy saying "absent": nothing is kept.
        let generation = cache.generation();
        cache.keep_read(generation, &text);
        assert!(cache.snapshot().2.is_none());
        cache.fill(generation, &None);
        cache.keep_read(generation, &text);
        assert!(cache.snapshot().2.is_none());
        // A copy: kept until the copy goes.
        cache.invalidate();
        let generation = cache.generation();
        cache.fill(generation, &Some(config()));
        cache.keep_read(generation, &text);
        assert_eq!(cache.snapshot().2.as_deref(), Some("{\"a\":1}"));
        cache.invalidate();
        assert!(cache.snapshot().2.is_none());
        // Rendered from a copy that a write replaced meanwhile: not kept.
        let stale = cache.generation();
        cache.fill(stale, &Some(config()));
        cache.invalidate();
        cache.fill(cache.generation(), &Some(config()));
        cache.keep_read(stale, &text);
        assert!(cache.snapshot().2.is_none());
    }
}
