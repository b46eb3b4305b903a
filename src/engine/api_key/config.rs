//! The `config` record: the tenant, the stored API key and how it is rotated, with the rules
//! that keep it valid (verification at Qlik, the tenant's maximum key lifetime) and what
//! becomes of the previously stored key when an operator writes another one.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::duration::KeyDuration;
use crate::engine::QlikBackend;
use crate::engine::chain::health::{RotationHistory, RotationOutcome};
use crate::engine::chain::records::{KeyKind, KeyRecord};
use crate::engine::chain::schedule::RotationSettings;
use crate::engine::chain::{Rotating, schema, secret_string};
use crate::framework::RequestError;

/// Where the configuration is stored (seal-wrapped).
pub const STORAGE_KEY: &str = "config";

/// Default whole-call timeout of a Qlik request, retries included.
pub const DEFAULT_REQUEST_TIMEOUT: u64 = 30;
/// The longest allowed: the server gives a request 90 s, the CLI waits 60 s.
pub const MAX_REQUEST_TIMEOUT: u64 = 60;
/// Default retries on 429/5xx/connection errors.
pub const DEFAULT_MAX_RETRIES: i64 = 4;
/// The most retries allowed.
pub const MAX_RETRIES: i64 = 10;

/// The stored key: its secret and what Qlik said about it.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    /// The key itself. Serialised only into the mount's seal-wrapped storage.
    #[serde(with = "secret_string")]
    pub token: SecretString,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredKey([REDACTED])")
    }
}

/// The configuration as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Normalised tenant URL (no trailing slash).
    pub tenant_url: String,
    /// The stored key.
    pub key: StoredKey,
    /// Lifetime asked for minted keys; `None` = [`Self::inherited_key_expiry`].
    pub key_expiry: Option<KeyDuration>,
    /// The default of `key_expiry`: the lifetime of the key written to `config`, captured when
    /// it was written (capped at the tenant maximum), so that a one-off `rotate expiry=…` does
    /// not become the policy. `None` in configs of earlier versions (captured at their next
    /// rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherited_key_expiry: Option<KeyDuration>,
    /// Automatic rotation.
    pub auto_rotate: bool,
    /// Rotation margin; `None` = half of the key expiry.
    pub rotate_before: Option<KeyDuration>,
    /// The longest `key` lease; `None`: the key's remaining life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ttl: Option<KeyDuration>,
    /// Extra trusted PEM certificates.
    pub ca_cert: Option<String>,
    /// Whole-call timeout.
    pub request_timeout: KeyDuration,
    /// Retries.
    pub max_retries: u32,
    /// What Qlik said about the stored key.
    pub key_info: KeyInfo,
    /// The last rotation, manual or automatic.
    #[serde(default)]
    pub last_rotation: Option<RotationOutcome>,
    /// `rotation_schedule`, `rotation_window`, `rotation_period` ([`crate::engine::chain::schedule`]).
    #[serde(default)]
    pub rotation: RotationSettings,
    /// Successes and failures of rotation ([`crate::engine::chain::health`]).
    #[serde(default)]
    pub history: RotationHistory,
}

/// What Qlik said about the stored key when it was verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Key id (JWT `jti`).
    pub key_id: String,
    /// Owner (JWT `sub`, `users/me` id).
    pub owner_id: String,
    /// Owner's name.
    pub owner_name: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Created at Qlik.
    pub created_at: Option<jiff::Timestamp>,
    /// Expires at Qlik.
    pub expires_at: jiff::Timestamp,
    /// When it dies by this machine's clock (see `engine::local_deadline`); absent in configs
    /// of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dies_at: Option<jiff::Timestamp>,
    /// Minted by a rotation of this engine (not written to `config`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotated: bool,
}

impl KeyInfo {
    /// When the key dies by this machine's clock: lease TTLs and rotation times use this.
    pub fn deadline(&self) -> jiff::Timestamp {
        self.dies_at.unwrap_or(self.expires_at)
    }

    /// [`Self::deadline`], or earlier if the tenant's clock has since been seen further ahead
    /// (`skew`, from the last answer's `Date`): a clock that steps forward shortens the key's
    /// life by our clock.
    pub fn deadline_seen(&self, skew: Option<jiff::SignedDuration>) -> jiff::Timestamp {
        let by_skew = skew.and_then(|skew| self.expires_at.checked_sub(skew).ok());
        by_skew.map_or(self.deadline(), |t| t.min(self.deadline()))
    }

    /// The key's whole lifetime (expiry − created), as Qlik gave it.
    pub fn lifetime(&self) -> Option<KeyDuration> {
        let created = self.created_at?;
        let secs = self.expires_at.duration_since(created).as_secs();
        KeyDuration::from_secs(u64::try_from(secs).ok()?)
    }
}

impl Rotating for Config {
    fn auto_rotate(&self) -> bool {
        self.auto_rotate
    }

    fn settings(&self) -> &RotationSettings {
        &self.rotation
    }

    fn history(&self) -> &RotationHistory {
        &self.history
    }

    /// When the stored key was created (Qlik's record, else its expiry minus its lifetime).
    fn current_created(&self) -> Option<jiff::Timestamp> {
        self.key_info.created_at.or_else(|| {
            let lifetime = self.effective_key_expiry()?;
            self.key_info
                .expires_at
                .checked_sub(lifetime.as_signed())
                .ok()
        })
    }

    fn expires_at(&self) -> Option<jiff::Timestamp> {
        Some(self.key_info.expires_at)
    }

    fn margin(&self) -> Option<KeyDuration> {
        self.stored_key_margin()
    }

    fn expiry_guard(&self, skew: Option<jiff::SignedDuration>) -> Option<jiff::Timestamp> {
        self.next_rotation_at_seen(skew)
    }

    fn margin_policy(&self) -> Option<KeyDuration> {
        self.effective_rotate_before()
    }

    fn lifetime_policy(&self) -> Option<KeyDuration> {
        self.effective_key_expiry()
    }
}

impl Config {
    /// Whether an API key is configured (else the mount holds OAuth clients only).
    pub fn has_api_key(&self) -> bool {
        !self.key_info.key_id.is_empty()
    }

    /// The lifetime asked of Qlik for the engine's own keys: `key_expiry`, else the default
    /// captured when the key was written to `config`, else (configs of earlier versions) the
    /// stored key's own lifetime.
    pub fn effective_key_expiry(&self) -> Option<KeyDuration> {
        self.key_expiry
            .or(self.inherited_key_expiry)
            .or_else(|| self.key_info.lifetime())
    }

    /// The rotation margin: `rotate_before`, else half of the key expiry.
    pub fn effective_rotate_before(&self) -> Option<KeyDuration> {
        self.rotate_before
            .or(self.effective_key_expiry().map(KeyDuration::half))
    }

    /// The margin applied to the stored key: [`Self::effective_rotate_before`], except that a
    /// key minted by a rotation whose whole life is shorter than that margin (a one-off
    /// `rotate expiry=…`, or a tenant that gives shorter keys than asked) is rotated at half
    /// its life instead of at once, so that automatic rotation never mints a key every tick.
    /// A key written to `config` that is shorter than the margin is due at once: replacing it
    /// with a key of the policy is what the margin asks.
    pub fn stored_key_margin(&self) -> Option<KeyDuration> {
        let before = self.effective_rotate_before()?;
        match self.key_info.lifetime() {
            Some(life) if self.key_info.rotated && before >= life => Some(life.half()),
            _ => Some(before),
        }
    }

    /// When automatic rotation is due.
    pub fn next_rotation_at(&self) -> Option<jiff::Timestamp> {
        self.next_rotation_at_seen(None)
    }

    /// [`Self::next_rotation_at`] with the tenant's clock as last seen ([`KeyInfo::deadline_seen`]).
    pub fn next_rotation_at_seen(
        &self,
        skew: Option<jiff::SignedDuration>,
    ) -> Option<jiff::Timestamp> {
        if !self.auto_rotate {
            return None;
        }
        let before = self.stored_key_margin()?;
        self.key_info
            .deadline_seen(skew)
            .checked_sub(before.as_signed())
            .ok()
    }

    /// The client settings for this tenant.
    pub fn client_config(&self) -> Result<crate::qlik::ClientConfig, RequestError> {
        let tenant_url = url::Url::parse(&self.tenant_url)
            .map_err(|e| RequestError::Internal(format!("stored tenant_url: {e}")))?;
        Ok(crate::qlik::ClientConfig {
            tenant_url,
            ca_cert_pem: self.ca_cert.clone(),
            request_timeout: self.request_timeout.as_std(),
            max_retries: self.max_retries,
        })
    }
}

/// The normalised tenant URL, or a 400 naming the rule broken.
pub fn normalise_tenant_url(input: &str) -> Result<String, RequestError> {
    let problem = |what: &str| {
        RequestError::field(
            "tenant_url",
            format!("{what}; expected a URL like https://acme.eu.qlikcloud.com"),
        )
    };
    let url = url::Url::parse(input.trim())
        .map_err(|e| problem(&format!("{input:?} is not a URL ({e})")))?;
    if url.scheme() != "https" {
        return Err(problem("only https:// is allowed"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(problem("user info (user:password@) is not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(problem("a query (?…) or fragment (#…) is not allowed"));
    }
    if url.path() != "/" {
        return Err(problem(&format!("a path ({}) is not allowed", url.path())));
    }
    let host = url
        .host_str()
        .ok_or_else(|| problem("a host is required"))?;
    Ok(match url.port() {
        Some(port) => format!("https://{host}:{port}"),
        None => format!("https://{host}"),
    })
}

/// Checks a PEM bundle: at least one certificate, nothing else.
pub fn validate_ca_cert(pem: &str) -> Result<(), RequestError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        cert.map_err(|e| {
            RequestError::field(
                "ca_cert",
                format!("not a valid PEM certificate bundle ({e})"),
            )
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(RequestError::field(
            "ca_cert",
            "no PEM certificate found; expected one or more -----BEGIN CERTIFICATE----- blocks",
        ));
    }
    Ok(())
}

/// Loads the configuration, if written.
///
/// Served from the mount's in-memory copy when it is current: every write of the config goes
/// through [`store`] or [`remove`] on this node, and a write on another node reaches this one
/// as an invalidation ([`QlikBackend::invalidate_config`]). Saves one storage round trip per
/// request.
pub async fn load(backend: &QlikBackend) -> Result<Option<Config>, RequestError> {
    if let Some(cached) = backend.config_cache.get() {
        return Ok(cached);
    }
    let generation = backend.config_cache.generation();
    let config: Option<Config> = schema::load(backend.storage.as_ref(), STORAGE_KEY).await?;
    backend.config_cache.fill(generation, &config);
    Ok(config)
}

/// Writes the config (and keeps the in-memory copy right).
pub async fn store(
    backend: &QlikBackend,
    config: &Config,
) -> Result<(), crate::framework::StorageError> {
    backend.config_cache.invalidate();
    let result = schema::save(backend.storage.as_ref(), STORAGE_KEY, config).await;
    backend.config_cache.invalidate();
    result
}

/// Deletes the config (and the in-memory copy).
pub async fn remove(backend: &QlikBackend) -> Result<(), crate::framework::StorageError> {
    backend.config_cache.invalidate();
    let result = backend.storage.delete(STORAGE_KEY).await;
    backend.config_cache.invalidate();
    result
}

/// Loads a configuration that has an API key, or tells the caller what is missing.
pub async fn require_api_key(backend: &QlikBackend) -> Result<Config, RequestError> {
    let config = require(backend).await?;
    if !config.has_api_key() {
        return Err(RequestError::bad_request(
            "no API key is configured: this mount holds OAuth clients only. Write one to use \
             rotate, key and creds: vault write <mount>/config api_key=…",
        ));
    }
    Ok(config)
}

/// Loads the configuration or tells the caller to write it first.
pub async fn require(backend: &QlikBackend) -> Result<Config, RequestError> {
    load(backend).await?.ok_or_else(|| {
        RequestError::bad_request(
            "the engine is not configured: write config first (tenant_url, and api_key unless the mount holds OAuth clients only)",
        )
    })
}
/// What a key that was stored becomes when `config` gets a new key (after a `config` write
/// with another `api_key`, or a `delete config` and a new `config`): a key this engine minted
/// for the same Qlik user is superseded (deleted now if no lease holds it: the id is
/// returned; else when its last lease ends); any other key (written by an operator, which may
/// still be used elsewhere, or owned by another user, which the new key may not delete) is
/// foreign: left alone at Qlik, its record kept while leases hold it.
pub(crate) async fn retire(
    storage: &dyn crate::framework::Storage,
    mut record: KeyRecord,
    previous: Option<&Config>,
    config: &Config,
) -> Result<Option<String>, RequestError> {
    // Records of earlier versions do not say who minted the key: the previous config does,
    // if it still exists and stored this key.
    let from_previous = previous.filter(|p| p.key_info.key_id == record.id);
    let minted = record.minted || from_previous.is_some_and(|p| p.key_info.rotated);
    let owner = record
        .owner_id
        .clone()
        .or_else(|| from_previous.map(|p| p.key_info.owner_id.clone()));
    let held = record.is_held(storage).await?;
    if minted && owner.as_deref() == Some(config.key_info.owner_id.as_str()) {
        record.kind = KeyKind::Superseded;
        record.save(storage).await?;
        tracing::info!(key_id = %record.id, held, "the previously stored key is superseded by the key written to config");
        return Ok((!held).then_some(record.id));
    }
    if held {
        record.kind = KeyKind::Foreign;
        record.save(storage).await?;
    } else {
        KeyRecord::forget(storage, &record.id).await?;
    }
    tracing::info!(key_id = %record.id, held, "the previously stored key is left alone at Qlik (not minted here for this user)");
    Ok(None)
}

/// The tenant's `max_api_key_expiry`, when the owner may read it. A failure to read it is a
/// warning, never a refusal: the key was just verified, and Qlik still decides at each mint.
pub(crate) async fn tenant_max_expiry(
    client: &crate::qlik::QlikClient,
    config: &Config,
    warnings: &mut Vec<String>,
) -> Option<KeyDuration> {
    use crate::qlik::ErrorKind;
    match client
        .tenant_config(&config.key.token, &config.key_info.tenant_id)
        .await
    {
        Ok(limits) => match KeyDuration::parse(&limits.max_api_key_expiry) {
            Ok(max) => Some(max),
            Err(e) => {
                warnings.push(format!(
                    "the tenant's max_api_key_expiry {:?} could not be read ({e}); key lifetimes \
                     were not checked against it",
                    limits.max_api_key_expiry
                ));
                None
            }
        },
        Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::NotFound) => None,
        Err(e) => {
            warnings.push(format!(
                "could not read the tenant's API key settings ({e}); key lifetimes were not \
                 checked against max_api_key_expiry"
            ));
            None
        }
    }
}

/// Checks a key at Qlik: `users/me` must answer, and the key's own record gives its id,
/// creation and expiry.
pub async fn verify_key(
    client: &crate::qlik::QlikClient,
    token: &SecretString,
) -> Result<KeyInfo, RequestError> {
    let claims = crate::qlik::token_claims(token).map_err(|e| RequestError::field("api_key", e))?;
    let user = client.me(token).await.map_err(|e| verify_error(&e))?;
    let key = client
        .get_key(token, &claims.key_id)
        .await
        .map_err(|e| verify_error(&e))?;
    Ok(KeyInfo {
        key_id: key.id,
        owner_id: user.id,
        owner_name: user.name,
        tenant_id: user.tenant_id,
        created_at: key.created,
        expires_at: key.expiry,
        // The key was minted earlier: only the Date header tells the tenant's clock.
        dies_at: Some(crate::engine::chain::time::local_deadline(
            None,
            key.expiry,
            jiff::Timestamp::now(),
            client.clock_skew(),
        )),
        rotated: false,
    })
}

fn verify_error(error: &crate::qlik::QlikError) -> RequestError {
    use crate::qlik::ErrorKind;
    match error.kind() {
        ErrorKind::Unauthorized => RequestError::field(
            "api_key",
            "Qlik rejected the key (401): it expired, was revoked or deleted, or belongs to another tenant; nothing was stored",
        ),
        _ => crate::engine::tenant::qlik_error(
            error,
            "verifying api_key at Qlik (nothing was stored)",
        ),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_urls_are_normalised_or_refused_with_the_rule() {
        assert_eq!(
            normalise_tenant_url("https://acme.eu.qlikcloud.com/")
                .ok()
                .as_deref(),
            Some("https://acme.eu.qlikcloud.com")
        );
        assert_eq!(
            normalise_tenant_url("https://127.0.0.1:8443")
                .ok()
                .as_deref(),
            Some("https://127.0.0.1:8443")
        );
        for (bad, why) in [
            ("http://acme.eu.qlikcloud.com", "only https"),
            ("https://u:p@acme.eu.qlikcloud.com", "user info"),
            ("https://acme.eu.qlikcloud.com/?x=1", "query"),
            ("https://acme.eu.qlikcloud.com/#f", "fragment"),
            ("https://acme.eu.qlikcloud.com/api", "a path"),
            ("acme.eu.qlikcloud.com", "not a URL"),
        ] {
            match normalise_tenant_url(bad) {
                Err(RequestError::BadRequest(m)) => {
                    assert!(m.contains(why) && m.contains("tenant_url"), "{bad}: {m}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn ca_cert_must_hold_certificates() {
        assert!(validate_ca_cert("hello").is_err());
        assert!(
            validate_ca_cert(
                "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
            )
            .is_err()
        );
        let cert = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
        assert!(validate_ca_cert(&cert.cert.pem()).is_ok());
    }

    #[test]
    fn the_stored_key_never_shows_in_debug() {
        let config = StoredKey {
            token: SecretString::from("eyJhbGciOiJFUzM4NCJ9.secret".to_string()),
        };
        assert!(!format!("{config:?}").contains("secret"));
    }

    // The API key's chain as the chain's health sees it (`Rotating for Config`).
    use crate::engine::chain::health::{ChainState, KeyCheck, Observed, chain_state};
    use jiff::Timestamp;
    use serde_json::json;
    use std::time::{Duration, Instant};

    fn chain(left_s: i64, auto: bool) -> Config {
        let now = Timestamp::now();
        let expires = now + jiff::SignedDuration::from_secs(left_s);
        let created = expires - jiff::SignedDuration::from_secs(3600);
        serde_json::from_value(json!({
            "tenant_url": "https://t.example", "key": {"token": "k"}, "key_expiry": "PT1H",
            "auto_rotate": auto, "rotate_before": "PT10M", "ca_cert": null,
            "request_timeout": "PT30S", "max_retries": 3,
            "key_info": {"key_id": "a", "owner_id": "o", "owner_name": "n", "tenant_id": "t",
                         "created_at": created.to_string(), "expires_at": expires.to_string()}
        }))
        .expect("config")
    }

    fn check(outcome: &'static str) -> KeyCheck {
        KeyCheck {
            key_id: "a".into(),
            at: Instant::now(),
            outcome,
            detail: None,
        }
    }

    fn state(config: &Config, check: &KeyCheck, tick_quiet_s: u64, rotating: bool) -> ChainState {
        let observed = Observed {
            check,
            tick_quiet: Duration::from_secs(tick_quiet_s),
            ticked: true,
            lookahead: Duration::from_secs(70),
            rotating,
        };
        chain_state(config, Timestamp::now(), &observed).0
    }

    #[test]
    fn at_risk_comes_before_broken_whatever_stops_the_rotation() {
        let ok = check("ok");
        // Outside the margin: healthy, whatever the mode.
        assert_eq!(
            state(&chain(3000, false), &ok, 500, false),
            ChainState::Healthy
        );
        // Inside it, ticks coming, automatic rotation on: the next tick rotates.
        assert_eq!(
            state(&chain(300, true), &ok, 20, false),
            ChainState::Healthy
        );
        // Inside it with automatic rotation off: nothing will rotate it.
        let off = chain(300, false);
        assert_eq!(state(&off, &ok, 20, false), ChainState::AtRisk);
        let observed = Observed {
            check: &ok,
            tick_quiet: Duration::from_secs(20),
            ticked: true,
            lookahead: Duration::from_secs(70),
            rotating: false,
        };
        let (_, reason) = chain_state(&off, Timestamp::now(), &observed);
        assert!(
            reason.is_some_and(|r| r.contains("automatic rotation is disabled")),
            "the reason names the cause"
        );
        // Inside it, and the last automatic attempt failed.
        let mut failed = chain(300, true);
        failed.history.last_automatic_failed = true;
        assert_eq!(state(&failed, &ok, 20, false), ChainState::AtRisk);
        // Inside it, and no tick for longer than a tick (unless a rotation is running).
        assert_eq!(
            state(&chain(300, true), &ok, 200, false),
            ChainState::AtRisk
        );
        assert_eq!(
            state(&chain(300, true), &ok, 200, true),
            ChainState::Healthy
        );
        // Broken wins: expired, or refused by Qlik.
        assert_eq!(state(&chain(-5, false), &ok, 20, false), ChainState::Broken);
        assert_eq!(
            state(&chain(3000, true), &check("refused"), 20, false),
            ChainState::Broken
        );
    }
}
