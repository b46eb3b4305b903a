//! `rotate`: replace the stored key by a new one minted with it, and automatic rotation.
//!
//! Order (never lose a key): mint with the stored key → verify the new key (`users/me` answers
//! as the same owner) → store it → only then delete the old key, at once if no lease holds
//! it (else when the last one ends), or at once regardless with `revoke_previous=true`.

use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde_json::{Map, json};

use crate::duration::KeyDuration;
use crate::engine::QlikBackend;
use crate::engine::api_key::config::{self, Config, KeyInfo};
use crate::engine::api_key::mint::{self, MintPlan};
use crate::engine::api_key::slots;
use crate::engine::chain;
use crate::engine::chain::health::RotationOutcome;
use crate::engine::chain::records::{IntentKind, KeyKind, KeyRecord, KeyState, MintedKey};
use crate::engine::chain::schedule::Reason;
use crate::engine::chain::time::ttl_until;
use crate::engine::secret_types;
use crate::engine::tenant::qlik_error;
use crate::framework::{Lease, RequestError, Response};
use crate::qlik::{DeleteOutcome, ErrorKind, QlikClient};

/// Who asked for the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `vault write qlik/rotate`.
    Manual,
    /// The periodic tick, for this reason.
    Automatic(Reason),
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Automatic(_) => "automatic",
        }
    }

    /// `manual`, or the reason of an automatic rotation (metric label).
    fn label(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Automatic(reason) => reason.name(),
        }
    }
}

/// What a rotation produced.
pub struct Rotated {
    /// The configuration now stored.
    pub config: Config,
    /// The new key.
    pub key: MintedKey,
    /// What happened to the previous key.
    pub warnings: Vec<String>,
}

/// How to rotate.
pub struct RotateOptions<'a> {
    /// Lifetime of the new key (`None`: `key_expiry`).
    pub expiry: Option<KeyDuration>,
    /// Text in front of the marker.
    pub description: &'a str,
    /// Delete the previous key at once, even while leases hold it.
    pub revoke_previous: bool,
    /// A lease hold to put on the new key as it is stored (the answer's lease).
    pub hold: Option<&'a str>,
}

/// Rotates the stored key (serialised per mount). See the module docs for the order.
pub async fn rotate(
    backend: &QlikBackend,
    op: &str,
    trigger: Trigger,
    options: RotateOptions<'_>,
    mount_point: &str,
) -> Result<Rotated, RequestError> {
    let _rotation = backend.rotation_lock.lock().await;
    let config = config::require_api_key(backend).await?;
    // An `expiry` asked for by the request applies to this rotation only; the policy is
    // `key_expiry` (or its captured default), and only the policy's expiry is replaced by the
    // tenant maximum when Qlik refuses it (see `rotate_locked`).
    let from_policy = options.expiry.is_none();
    let options = RotateOptions {
        expiry: options.expiry.or(config.effective_key_expiry()),
        ..options
    };
    if trigger == Trigger::Manual {
        backend.check_max_ttl(options.expiry, mount_point).await?;
    }
    let how = How {
        trigger,
        from_policy,
        mount_point,
    };
    let result = rotate_locked(backend, op, &config, &options, &how).await;
    if let Err(error) = &result {
        if !error.is_read_only() {
            backend.metrics().rotation(trigger.label(), false);
            record_outcome(backend, trigger, Some(error)).await;
            tracing::warn!(trigger = trigger.name(), %error, "rotation failed");
        }
    } else {
        backend.metrics().rotation(trigger.label(), true);
        record_outcome(backend, trigger, None).await;
    }
    result
}

/// Who rotates, and where the expiry came from.
struct How<'a> {
    trigger: Trigger,
    /// The expiry is the mount's policy, not the request's.
    from_policy: bool,
    mount_point: &'a str,
}

async fn rotate_locked(
    backend: &QlikBackend,
    op: &str,
    config: &Config,
    options: &RotateOptions<'_>,
    how: &How<'_>,
) -> Result<Rotated, RequestError> {
    // Held through the whole rotation: a creds mint or tidy's orphan scan must see the new
    // key either not yet minted or already tracked.
    let _mint = backend.mint_lock.lock().await;
    let link = KeyLink {
        backend,
        config,
        client: backend.client(config).await?,
        options,
        how,
        healed_expiry: std::sync::atomic::AtomicBool::new(false),
    };
    let rotated = chain::rotation::rotate(&link, op, options.hold, options.revoke_previous).await?;
    Ok(Rotated {
        config: rotated.stored,
        key: rotated.new,
        warnings: rotated.warnings,
    })
}

/// The API key's steps of the chain's order ([`chain::rotation`]).
struct KeyLink<'a> {
    backend: &'a QlikBackend,
    config: &'a Config,
    client: QlikClient,
    options: &'a RotateOptions<'a>,
    how: &'a How<'a>,
    /// The mint had to ask for the tenant's maximum instead of the policy's expiry.
    healed_expiry: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl chain::rotation::Link for KeyLink<'_> {
    type New = MintedKey;
    type Stored = Config;
    type Error = RequestError;

    const NOUN: &'static str = "key";

    fn current_id(&self) -> String {
        self.config.key_info.key_id.clone()
    }

    fn new_id(new: &MintedKey) -> String {
        new.id.clone()
    }

    /// The intent, a slot check for a manual rotation, the create; if the tenant refuses the
    /// policy's expiry, again at the tenant maximum; if the key limit refuses an automatic
    /// rotation, again once a slot of this mount is freed (the last resort).
    async fn mint(&self, op: &str, warnings: &mut Vec<String>) -> Result<MintedKey, RequestError> {
        let (backend, config, client, how) = (self.backend, self.config, &self.client, self.how);
        let storage = backend.storage.as_ref();
        let mut plan = MintPlan {
            kind: IntentKind::Rotate,
            role: None,
            description: self.options.description,
            expiry: self.options.expiry,
        };
        // The intent is the first write, before any Qlik call (a standby fails here, read-only).
        let reservation = mint::reserve(backend, op, &plan).await?;
        if reservation.is_fresh() && how.trigger == Trigger::Manual && !self.options.revoke_previous
        {
            let old_holds = match KeyRecord::load(storage, &config.key_info.key_id).await? {
                Some(record) => record.live_holds(storage).await?,
                None => 0,
            };
            if let Err(error) =
                slots::check_manual_rotation(config, client, old_holds, how.mount_point).await
            {
                mint::abandon(backend, op).await?;
                return Err(error);
            }
        }
        let mut attempt =
            mint::mint_reserved(backend, config, client, op, &plan, reservation).await;
        if let Err(failure) = &attempt
            && failure.refused == Some(ErrorKind::ExpiryAboveMaximum)
            && how.from_policy
            && plan.expiry.is_some()
        {
            // The policy asks more than the tenant allows now (key_expiry above a lowered
            // max_api_key_expiry): every rotation would be refused until the chain died. Qlik
            // gives the tenant maximum when no expiry is asked for.
            let asked = plan.expiry.map(KeyDuration::to_iso).unwrap_or_default();
            tracing::warn!(
                asked = %asked,
                error = %failure.error,
                "Qlik refused the key_expiry policy as above the tenant's max_api_key_expiry: \
                 minting at the tenant maximum instead; set key_expiry to at most the maximum"
            );
            warnings.push(format!(
                "Qlik refused key_expiry {asked} as above the tenant's max_api_key_expiry; the new \
                 key has the tenant's maximum lifetime instead. Fix: set key_expiry to at most the \
                 maximum (or clear it: key_expiry=\"\")"
            ));
            plan.expiry = None;
            self.healed_expiry
                .store(true, std::sync::atomic::Ordering::Relaxed);
            attempt = mint::mint(backend, config, client, op, &plan).await;
        }
        if let Err(failure) = &attempt
            && failure.refused == Some(ErrorKind::KeyLimit)
            && matches!(how.trigger, Trigger::Automatic(_))
        {
            // The last resort once the stored key is in the last half of its margin (leases had
            // that long to end by themselves), or when the next tick may come too late to save it
            // (a margin shorter than two ticks never reaches its last half at a tick).
            let left = ttl_until(config.key_info.deadline());
            let last_tick = left < backend.ticks.lookahead() + LAST_TICK_SAFETY;
            let last_resort = last_tick
                || config
                    .stored_key_margin()
                    .is_some_and(|margin| left < margin.half().as_std());
            let freed = slots::free_for_rotation(backend, config, client, last_resort).await?;
            if freed.any() {
                attempt = mint::mint(backend, config, client, op, &plan).await;
            } else {
                let slots = slots::count(config, client).await.ok().flatten();
                let numbers = slots.map_or_else(String::new, |s| {
                    format!(" ({} active keys of {} allowed)", s.active, s.max)
                });
                tracing::error!(
                    key_id = %config.key_info.key_id,
                    expires_at = %config.key_info.expires_at,
                    "chain at risk: Qlik refused the rotation for the key limit{numbers} and no key \
                     of this mount can be freed yet; free a slot (vault list <mount>/keys; revoke \
                     leases holding old keys) or raise max_keys_per_user before the stored key expires"
                );
            }
        }
        Ok(attempt?)
    }

    /// `users/me` with the new key answers as the same owner.
    async fn verify(&self, minted: &MintedKey) -> Result<(), RequestError> {
        let owner = &self.config.key_info.owner_id;
        match self.client.me(&minted.token).await {
            Ok(user) if user.id == *owner => Ok(()),
            Ok(user) => Err(RequestError::status(
                502,
                format!(
                    "the new key authenticates as Qlik user {} instead of {owner}; it was deleted and the stored key kept",
                    user.id
                ),
            )),
            Err(error) => Err(qlik_error(
                &error,
                "verifying the new key (it was deleted and the stored key kept)",
            )),
        }
    }

    async fn discard(&self, minted: &MintedKey) -> bool {
        self.client
            .delete_key(&self.config.key.token, &minted.id)
            .await
            .is_ok()
    }

    /// The new key becomes the stored key (`config`), the old one superseded.
    async fn store(
        &self,
        minted: &MintedKey,
        hold: Option<&str>,
    ) -> Result<(Config, usize), RequestError> {
        let (backend, config) = (self.backend, self.config);
        let storage = backend.storage.as_ref();
        let new_info = KeyInfo {
            key_id: minted.id.clone(),
            created_at: minted.created_at,
            expires_at: minted.expires_at,
            dies_at: minted.dies_at,
            rotated: true,
            ..config.key_info.clone()
        };
        let mut new_config = config.clone();
        new_config.key = config::StoredKey {
            token: minted.token.clone(),
        };
        if new_config.inherited_key_expiry.is_none() {
            // A config of an earlier version: its default policy is captured now, before the
            // new key (whose lifetime may be a one-off request's) replaces the old one.
            new_config.inherited_key_expiry = config.key_info.lifetime();
        }
        new_config.key_info = new_info;
        if self
            .healed_expiry
            .load(std::sync::atomic::Ordering::Relaxed)
            && new_config.key_expiry.is_none()
        {
            // The captured default was above the tenant maximum: the maximum is the default now.
            new_config.inherited_key_expiry = new_config.key_info.lifetime();
        }
        let old_id = config.key_info.key_id.clone();
        let _state = backend.state_lock.lock().await;
        KeyRecord::new(
            minted.id.clone(),
            KeyKind::Stored,
            None,
            minted.created_at,
            minted.expires_at,
        )
        .minted_for(&config.key_info.owner_id)
        .save(storage)
        .await?;
        if let Some(hold) = hold {
            KeyRecord::add_hold(storage, &minted.id, hold).await?;
        }
        config::store(backend, &new_config).await?;
        let mut old = KeyRecord::load(storage, &old_id).await?.unwrap_or_else(|| {
            KeyRecord::new(
                old_id.clone(),
                KeyKind::Superseded,
                None,
                config.key_info.created_at,
                config.key_info.expires_at,
            )
        });
        old.kind = KeyKind::Superseded;
        old.save(storage).await?;
        // Counted in the same step as superseding it: from here no read can add a hold (they
        // hold the new key), and a lease ending after this step sees a superseded key and
        // deletes it itself if it held it last; so whichever of the two comes last deletes it.
        // The client stays: it is keyed by tenant, CA and HTTP settings, not by the bearer key,
        // and rebuilding it (trust store, new TLS connection) cost the next call about 50 ms.
        let old_holds = old.live_holds(storage).await?;
        tracing::info!(old_key_id = %old_id, new_key_id = %minted.id, expires_at = %minted.expires_at, "stored key rotated");
        Ok((new_config, old_holds))
    }

    async fn stored_already(&self, hold: Option<&str>) -> Result<Config, RequestError> {
        if let Some(hold) = hold {
            let _state = self.backend.state_lock.lock().await;
            KeyRecord::add_hold(
                self.backend.storage.as_ref(),
                &self.config.key_info.key_id,
                hold,
            )
            .await?;
        }
        Ok(self.config.clone())
    }

    async fn finish(&self, op: &str) -> Result<(), RequestError> {
        mint::finish(self.backend, op).await
    }

    async fn delete_old(&self, stored: &Config, old_id: &str) -> Option<String> {
        match delete_superseded(self.backend, stored, old_id).await {
            Ok(SupersededDeletion::Deleted) => None,
            Ok(SupersededDeletion::Deferred) => Some(format!(
                "the previous key {old_id} is deleted in the background: Qlik's rate limit for key deletions is in use"
            )),
            Err(error) => Some(format!(
                "the previous key {old_id} could not be deleted at Qlik yet ({error}); tidy retries"
            )),
        }
    }
}

/// What became of a superseded key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupersededDeletion {
    /// Deleted at Qlik (or already gone) and forgotten.
    Deleted,
    /// Qlik's tier-2 budget is in use: the mount's deleter deletes it at the pace Qlik allows.
    Deferred,
}

/// Deletes a superseded key at Qlik (bearer: the stored key) and forgets it; on failure marks
/// it for tidy.
pub async fn delete_superseded(
    backend: &QlikBackend,
    config: &Config,
    id: &str,
) -> Result<SupersededDeletion, RequestError> {
    let storage = backend.storage.as_ref();
    let client = backend.client(config).await?;
    match client.delete_key(&config.key.token, id).await {
        Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => {
            let _state = backend.state_lock.lock().await;
            KeyRecord::forget(storage, id).await?;
            tracing::info!(key_id = %id, "superseded key deleted at Qlik");
            Ok(SupersededDeletion::Deleted)
        }
        Err(error) => {
            {
                let _state = backend.state_lock.lock().await;
                if let Some(mut record) = KeyRecord::load(storage, id).await? {
                    record.state = KeyState::DeletePending;
                    record.last_error = Some(error.to_string());
                    record.save(storage).await?;
                }
            }
            if error.kind() == crate::qlik::ErrorKind::RateLimited {
                // No tier-2 slot now: the mount's deleter deletes it at the pace Qlik allows.
                tracing::info!(key_id = %id, "tier-2 budget in use: deletion of the superseded key deferred");
                backend.deleter.enqueue(id.to_string());
                return Ok(SupersededDeletion::Deferred);
            }
            Err(qlik_error(&error, "deleting the superseded key"))
        }
    }
}

async fn record_outcome(backend: &QlikBackend, trigger: Trigger, error: Option<&RequestError>) {
    let _state = backend.state_lock.lock().await;
    let Ok(Some(mut config)) = config::load(backend).await else {
        return;
    };
    config.last_rotation = Some(RotationOutcome::now(
        matches!(trigger, Trigger::Automatic(_)),
        error,
    ));
    let reason = match trigger {
        Trigger::Manual => None,
        Trigger::Automatic(reason) => Some(reason),
    };
    crate::engine::chain::health::record(&mut config.history, &mut config.rotation, reason, error);
    if let Err(e) = config::store(backend, &config).await {
        tracing::debug!(error = %e, "could not record the rotation outcome");
    }
}

/// A lease on the current stored key (`key`): loads the configuration and registers a hold
/// on its key in one step under the state lock, so that a rotation cannot supersede and
/// delete the key in between (the hold is also the request's first write: a standby fails
/// here, read-only). The hold is one small entry of its own and the configuration is served
/// from memory, so a read costs storage one put; the key's record exists since the key was
/// stored (`config`, `rotate`) and is not touched. The TTL is capped at the mount's maximum.
pub(crate) async fn current_key_lease(backend: &QlikBackend) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    let hold = uuid::Uuid::new_v4().to_string();
    let config = {
        let _state = backend.state_lock.lock().await;
        let config = config::require_api_key(backend).await?;
        let info = &config.key_info;
        if info.deadline() <= Timestamp::now() {
            return Err(RequestError::bad_request(format!(
                "the stored key {} expired at {}: write a valid key to config",
                info.key_id, info.expires_at
            )));
        }
        KeyRecord::add_hold(storage, &info.key_id, &hold).await?;
        config
    };
    Ok(lease_response(
        backend,
        &config,
        &config.key_info,
        config.key.token.expose_secret(),
        hold,
        true,
    )
    .await)
}

/// The answer with a lease on a stored key whose hold `hold` is registered. For a `key` read
/// (`key_read`), the tenant's clock is first seen fresh ([`crate::engine::api_key::tenant_clock`]) and the TTL
/// is capped at the mount's maximum.
pub(crate) async fn lease_response(
    backend: &QlikBackend,
    config: &Config,
    info: &KeyInfo,
    token: &str,
    hold: String,
    key_read: bool,
) -> Response {
    // A `key` read may come long after the mount's last Qlik call: the tenant's clock is read
    // again if need be. A rotation's answer has just given it.
    let skew = if key_read {
        crate::engine::api_key::tenant_clock::fresh_skew(backend, config).await
    } else {
        backend.last_clock_skew().await
    };
    let mut ttl = ttl_until(info.deadline_seen(skew));
    if key_read && let Some(cap) = config.key_ttl {
        // `key_ttl`: readers come back sooner, and a superseded key's last lease ends sooner.
        ttl = ttl.min(cap.as_std());
    }
    if key_read
        && let Ok(max) = backend.system.max_lease_ttl().await
        && max.as_secs() > 0
        && ttl > max
    {
        ttl = max;
    }
    let mut internal = Map::new();
    internal.insert("key_id".into(), json!(info.key_id));
    internal.insert("hold".into(), json!(hold));
    Response {
        data: Some(key_data(config, info, token)),
        lease: Some(Lease {
            kind: secret_types::STORED_KEY,
            ttl,
            max_ttl: None,
            renewable: false,
            internal,
        }),
        ..Default::default()
    }
}

/// The data of a key lease.
pub(crate) fn key_data(
    config: &Config,
    info: &KeyInfo,
    token: &str,
) -> Map<String, serde_json::Value> {
    let lifetime = info
        .created_at
        .and_then(|c| u64::try_from(info.expires_at.duration_since(c).as_secs()).ok())
        .and_then(KeyDuration::from_secs)
        .map(KeyDuration::to_iso);
    let mut data = Map::new();
    data.insert("api_key".into(), json!(token));
    data.insert("key_id".into(), json!(info.key_id));
    data.insert("expires_at".into(), json!(info.expires_at.to_string()));
    data.insert("expiry".into(), json!(lifetime));
    data.insert("tenant_url".into(), json!(config.tenant_url));
    data.insert("owner_id".into(), json!(info.owner_id));
    data
}

/// Automatic rotation, from the periodic tick: when on and due.
pub(crate) async fn periodic(backend: &QlikBackend) -> Result<(), RequestError> {
    let Some(config) = config::load(backend).await?.filter(Config::has_api_key) else {
        return Ok(());
    };
    // The tenant's clock as last seen by this mount's client (any call updates it).
    let skew = backend.last_clock_skew().await;
    let lookahead = backend.ticks.lookahead();
    let Some(due) = crate::engine::chain::schedule::due(&config, Timestamp::now(), skew, lookahead)
    else {
        return Ok(());
    };
    let started = tokio::time::Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let op = uuid::Uuid::new_v4().to_string();
        let result = rotate(
            backend,
            &op,
            Trigger::Automatic(due.reason),
            RotateOptions {
                expiry: None,
                description: "vault-plugin-secrets-qlik (automatic rotation)",
                revoke_previous: false,
                hold: None,
            },
            "",
        )
        .await;
        match result {
            Ok(rotated) => {
                tracing::info!(new_key_id = %rotated.key.id, expires_at = %rotated.key.expires_at, reason = due.reason.name(), attempts, "automatic rotation done");
                return Ok(());
            }
            Err(error) if error.is_read_only() => return Err(error),
            Err(error) => {
                // The server's next tick is a minute away. With less life left than a few
                // ticks, a transient failure (Qlik busy, down for a moment, slow) is retried
                // within this tick, so that a short outage near the end does not outlast the
                // key.
                let left = ttl_until(config.key_info.deadline_seen(skew));
                // Past half the urgent margin, the tick keeps trying until the next one is due
                // (a failover or a kill can cost that one): a reload waiting for this tick is
                // a lesser harm than a dead chain.
                let window = if left < URGENT_LIFE / 2 {
                    URGENT_WINDOW_LAST
                } else {
                    URGENT_WINDOW
                };
                if started.elapsed() < window
                    && left < URGENT_LIFE
                    && left > URGENT_RETRY
                    && is_transient(&error)
                {
                    tracing::warn!(%error, left_s = left.as_secs(), attempts, "automatic rotation failed with little life left; retrying in {}s", URGENT_RETRY.as_secs());
                    tokio::time::sleep(URGENT_RETRY).await;
                    continue;
                }
                tracing::warn!(%error, left_s = left.as_secs(), attempts, "automatic rotation failed; the next tick retries");
                return Ok(());
            }
        }
    }
}

/// Life a key needs beyond the next tick for a rotation then to save it (the rotation's own
/// calls, retried): less, and this tick is the last that can.
const LAST_TICK_SAFETY: std::time::Duration = std::time::Duration::from_secs(15);

/// Below this much life left, a failed automatic rotation is retried within the tick.
const URGENT_LIFE: std::time::Duration = std::time::Duration::from_secs(180);
/// The pause between those retries, and how long a tick keeps retrying: the server holds the
/// mount's request lock during the tick, so a `plugin reload` waits for it.
const URGENT_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
const URGENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(25);
/// With under half of [`URGENT_LIFE`] left: until about the next tick.
const URGENT_WINDOW_LAST: std::time::Duration = std::time::Duration::from_secs(55);

/// A failure that may pass by itself: Qlik's rate limit, a 5xx, a timeout, no connection.
fn is_transient(error: &RequestError) -> bool {
    matches!(error, RequestError::Status { status, .. } if *status == 429 || *status >= 500)
}
