//! `config`: the tenant, the stored key, rotation and HTTP settings.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::records::{KeyKind, KeyRecord};
use super::schema;
use super::{QlikBackend, Route};
use crate::duration::KeyDuration;
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};

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

static FIELDS: &[FieldSpec] = &[
    FieldSpec::new(
        "tenant_url",
        FieldKind::String,
        "Qlik Cloud tenant URL, e.g. https://acme.eu.qlikcloud.com (https only; no path, query or user info).",
    )
    .required(),
    FieldSpec::new(
        "api_key",
        FieldKind::String,
        "The Qlik API key the engine starts from. Verified at Qlik before anything is stored.",
    )
    .required()
    .sensitive(),
    FieldSpec::new(
        "key_expiry",
        FieldKind::Duration,
        "Lifetime asked of Qlik for every key the engine mints for itself (ISO 8601 like PT24H or P1D, Vault style like 24h, or seconds). At most the tenant's max_api_key_expiry. 0 or an empty string goes back to the default.",
    )
    .default("the configured key's own lifetime (expiry − created), captured when api_key is written")
    .zero_clears(),
    FieldSpec::new("auto_rotate", FieldKind::Bool, "Rotate the stored key by itself (the older name of the opposite of disable_automated_rotation; giving both with contradicting values is refused).")
        .default("true"),
    FieldSpec::new(
        "rotate_before",
        FieldKind::Duration,
        "Rotate once the stored key has less than this left (the expiry guard: it applies with any schedule or period). 0 or an empty string goes back to the default.",
    )
    .default("half of key_expiry")
    .zero_clears(),
    FieldSpec::new(
        "key_ttl",
        FieldKind::Duration,
        "The longest lease a `key` read gives (Vault's ttl): the lease lasts the shorter of this and the stored key's remaining life, so that a superseded key (and the Qlik key slot it takes) is freed soon after a rotation instead of at its expiry. Readers such as Vault Agent read again when the lease ends. 0 or an empty string removes it. `rotate` leases always last the key's remaining life.",
    )
    .default("none: a key lease lasts the key's remaining life")
    .zero_clears(),
    FieldSpec::new(
        "rotation_schedule",
        FieldKind::String,
        "Standard 5-field cron (minute hour day-of-month month day-of-week, evaluated in UTC, e.g. \"0 2 * * *\") at which to rotate, in addition to the expiry guard. Mutually exclusive with rotation_period; an empty string removes it.",
    ),
    FieldSpec::new(
        "rotation_window",
        FieldKind::Duration,
        "Only with rotation_schedule: a scheduled rotation that has not succeeded this long after its time waits for the next occurrence (at least 60s; 0 removes it). Without it a missed occurrence is retried at every tick.",
    )
    .zero_clears(),
    FieldSpec::new(
        "rotation_period",
        FieldKind::Duration,
        "Rotate once the stored key is older than this, in addition to the expiry guard (at least 60s; 0 removes it). Mutually exclusive with rotation_schedule.",
    )
    .zero_clears(),
    FieldSpec::new(
        "disable_automated_rotation",
        FieldKind::Bool,
        "No automatic rotation at all, the expiry guard included (auto_rotate=false is the same).",
    )
    .default("false"),
    FieldSpec::new(
        "ca_cert",
        FieldKind::Text,
        "PEM certificates trusted for the tenant in addition to the system roots (TLS-intercepting proxies, a test tenant). An empty string removes them.",
    ),
    FieldSpec::new(
        "request_timeout",
        FieldKind::Duration,
        "Time allowed for one whole Qlik call including retries (at most 60s: the server and the CLI give up on a request after that).",
    )
    .default("PT30S"),
    FieldSpec::new(
        "max_retries",
        FieldKind::Int,
        "Retries on 429, 5xx and connection errors (0–10). A key creation is retried only where it cannot create a duplicate.",
    )
    .default("4"),
];

static READ_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("tenant_url", FieldKind::String, "Tenant URL."),
    FieldSpec::new(
        "key_expiry",
        FieldKind::Duration,
        "Lifetime asked for minted keys, ISO 8601.",
    ),
    FieldSpec::new(
        "auto_rotate",
        FieldKind::Bool,
        "Automatic rotation on or off.",
    ),
    FieldSpec::new(
        "rotate_before",
        FieldKind::Duration,
        "Rotation margin, ISO 8601.",
    ),
    FieldSpec::new(
        "key_ttl",
        FieldKind::Duration,
        "The longest `key` lease, ISO 8601; null when unset (a key lease lasts the key's remaining life).",
    ),
    FieldSpec::new(
        "ca_cert",
        FieldKind::Text,
        "Extra trusted PEM certificates.",
    ),
    FieldSpec::new("ca_cert_set", FieldKind::Bool, "Whether ca_cert is set."),
    FieldSpec::new(
        "request_timeout",
        FieldKind::Duration,
        "Whole-call timeout, ISO 8601.",
    ),
    FieldSpec::new("max_retries", FieldKind::Int, "Retries."),
    FieldSpec::new("tenant_id", FieldKind::String, "Qlik tenant id."),
    FieldSpec::new(
        "owner_id",
        FieldKind::String,
        "Qlik user id owning the stored key.",
    ),
    FieldSpec::new("owner_name", FieldKind::String, "Name of that user."),
    FieldSpec::new("key_id", FieldKind::String, "Id of the stored key."),
    FieldSpec::new(
        "key_created_at",
        FieldKind::String,
        "When the stored key was created (RFC 3339).",
    ),
    FieldSpec::new(
        "key_expires_at",
        FieldKind::String,
        "When the stored key expires (RFC 3339).",
    ),
    FieldSpec::new(
        "rotation_schedule",
        FieldKind::String,
        "The cron schedule (UTC), or empty.",
    ),
    FieldSpec::new(
        "rotation_window",
        FieldKind::Int,
        "The schedule's window in seconds (0: none).",
    ),
    FieldSpec::new(
        "rotation_period",
        FieldKind::Int,
        "Rotate when the key is older than this many seconds (0: none).",
    ),
    FieldSpec::new(
        "disable_automated_rotation",
        FieldKind::Bool,
        "Automatic rotation off (the opposite of auto_rotate).",
    ),
    FieldSpec::new(
        "next_rotation_at",
        FieldKind::String,
        "When the next automatic rotation is due (RFC 3339; in the past: at the next tick), if on.",
    ),
    FieldSpec::new(
        "next_scheduled_at",
        FieldKind::String,
        "The pending occurrence of rotation_schedule (RFC 3339), or null without a schedule.",
    ),
    FieldSpec::new(
        "next_rotation_reason",
        FieldKind::String,
        "Why: expiry (less than rotate_before left), schedule or period; null if off.",
    ),
    FieldSpec::new(
        "last_rotation",
        FieldKind::Object,
        "The last rotation: `time` (RFC 3339), `outcome` (success or failure), `trigger` (manual or automatic) and `error` (on failure); null before the first.",
    ),
];

/// The `config` path.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::Config,
    pattern: "config",
    fields: FIELDS,
    operations: &[
        OperationSpec::new(Operation::Create, "Configure the tenant and the first key."),
        OperationSpec::new(
            Operation::Update,
            "Change settings, or replace the stored key.",
        ),
        OperationSpec::new(Operation::Read, "Read the configuration (never the key).")
            .returns(READ_FIELDS),
        OperationSpec::new(Operation::Delete, "Remove the configuration."),
    ],
    existence_check: true,
    synopsis: "Configure the Qlik tenant, the stored API key and how it is rotated.",
    description: "\
Writing `config` verifies `api_key` at Qlik (`GET /api/v1/users/me` and the key's own record) \
before anything is stored, and records the key's id, owner, tenant, creation and expiry. \
The key is write-only: reads never return it.\n\n\
Durations accept ISO 8601 (`PT12H`, `P1D`), Vault style (`12h`, `90m`) and whole seconds, \
and are echoed back in ISO 8601. Months and years are refused: their length depends on the \
start date.\n\n\
Deleting `config` does not revoke leases already handed out; they still revoke cleanly.",
};

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

/// The one place a key is written out in clear: the mount's own storage.
pub(crate) mod secret_string {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose_secret())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(SecretString::from)
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
    /// `rotation_schedule`, `rotation_window`, `rotation_period` ([`super::schedule`]).
    #[serde(default)]
    pub rotation: super::schedule::RotationSettings,
    /// Successes and failures of rotation ([`super::status`]).
    #[serde(default)]
    pub history: super::status::RotationHistory,
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

/// The outcome of a rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationOutcome {
    /// When it ended.
    pub time: jiff::Timestamp,
    /// `success` or `failure`.
    pub outcome: String,
    /// Manual (`rotate`) or automatic.
    pub trigger: String,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

impl Config {
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

/// Loads the configuration or tells the caller to write it first.
pub async fn require(backend: &QlikBackend) -> Result<Config, RequestError> {
    load(backend).await?.ok_or_else(|| {
        RequestError::bad_request(
            "the engine is not configured: write config first (tenant_url and api_key)",
        )
    })
}

pub(super) async fn exists(backend: &QlikBackend) -> Result<bool, RequestError> {
    Ok(backend.storage.get(STORAGE_KEY).await?.is_some())
}

pub(super) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    match request.operation {
        Operation::Read => read(backend).await,
        Operation::Create | Operation::Update => write(backend, request).await,
        Operation::Delete => {
            let _guard = backend.state_lock.lock().await;
            remove(backend).await?;
            backend.forget_client().await;
            tracing::info!("configuration deleted");
            Ok(Response::empty())
        }
        _ => Err(RequestError::UnsupportedOperation),
    }
}

async fn write(
    backend: &QlikBackend,
    mut request: Request<Route>,
) -> Result<Response, RequestError> {
    let existing = load(backend).await?;
    let data = &mut request.data;
    let api_key = data.take_secret("api_key");
    if let Some(key) = &api_key
        && key.expose_secret().trim().is_empty()
    {
        return Err(RequestError::field("api_key", "must not be empty"));
    }
    let tenant_url = match (data.str("tenant_url"), &existing) {
        (Some(url), _) => normalise_tenant_url(url)?,
        (None, Some(existing)) => existing.tenant_url.clone(),
        (None, None) => {
            return Err(RequestError::bad_request(
                "missing required field \"tenant_url\"",
            ));
        }
    };
    let key = match (api_key, &existing) {
        (Some(token), _) => StoredKey { token },
        (None, Some(existing)) if existing.tenant_url == tenant_url => existing.key.clone(),
        (None, Some(_)) => {
            return Err(RequestError::field(
                "api_key",
                "required when tenant_url changes: a key belongs to one tenant",
            ));
        }
        (None, None) => {
            return Err(RequestError::bad_request(
                "missing required field \"api_key\"",
            ));
        }
    };
    let max_retries = match data.int("max_retries") {
        Some(n) if !(0..=MAX_RETRIES).contains(&n) => {
            return Err(RequestError::field(
                "max_retries",
                format!("{n} is out of range; expected 0 to {MAX_RETRIES}"),
            ));
        }
        Some(n) => n as u32,
        None => existing
            .as_ref()
            .map(|c| c.max_retries)
            .unwrap_or(DEFAULT_MAX_RETRIES as u32),
    };
    let request_timeout = match data.duration("request_timeout") {
        Some(t) if t.as_secs() > MAX_REQUEST_TIMEOUT => {
            return Err(RequestError::field(
                "request_timeout",
                format!(
                    "{t} is too long; at most PT{MAX_REQUEST_TIMEOUT}S (the server and the CLI give up on a request after that)"
                ),
            ));
        }
        Some(t) => t,
        None => existing
            .as_ref()
            .map(|c| c.request_timeout)
            .or(KeyDuration::from_secs(DEFAULT_REQUEST_TIMEOUT))
            .ok_or_else(|| RequestError::Internal("default request timeout".into()))?,
    };
    let ca_cert = match data.str("ca_cert") {
        Some(pem) if pem.trim().is_empty() => None,
        Some(pem) => {
            validate_ca_cert(pem)?;
            Some(pem.to_string())
        }
        None => existing.as_ref().and_then(|c| c.ca_cert.clone()),
    };
    let automatic = super::schedule::parse_fields(data, existing.as_ref(), jiff::Timestamp::now())?;
    let key_expiry = if data.is_cleared("key_expiry") {
        None
    } else {
        data.duration("key_expiry")
            .or(existing.as_ref().and_then(|c| c.key_expiry))
    };
    let rotate_before = if data.is_cleared("rotate_before") {
        None
    } else {
        data.duration("rotate_before")
            .or(existing.as_ref().and_then(|c| c.rotate_before))
    };
    let key_ttl = if data.is_cleared("key_ttl") {
        None
    } else {
        data.duration("key_ttl")
            .or(existing.as_ref().and_then(|c| c.key_ttl))
    };
    if let (Some(before), Some(expiry)) = (rotate_before, key_expiry)
        && before >= expiry
    {
        return Err(RequestError::field(
            "rotate_before",
            format!(
                "{before} must be shorter than key_expiry ({expiry}), or every key would be rotated at once"
            ),
        ));
    }
    let mut config = Config {
        tenant_url,
        key,
        key_expiry,
        inherited_key_expiry: existing.as_ref().and_then(|c| c.inherited_key_expiry),
        auto_rotate: automatic.auto_rotate,
        rotate_before,
        key_ttl,
        ca_cert,
        request_timeout,
        max_retries,
        key_info: existing
            .as_ref()
            .map(|c| c.key_info.clone())
            .unwrap_or_else(|| KeyInfo {
                key_id: String::new(),
                owner_id: String::new(),
                owner_name: String::new(),
                tenant_id: String::new(),
                created_at: None,
                expires_at: jiff::Timestamp::UNIX_EPOCH,
                dies_at: None,
                rotated: false,
            }),
        last_rotation: existing.as_ref().and_then(|c| c.last_rotation.clone()),
        rotation: automatic.settings,
        history: existing
            .as_ref()
            .map(|c| c.history.clone())
            .unwrap_or_default(),
    };
    let key_changed = existing
        .as_ref()
        .is_none_or(|c| c.key.token.expose_secret() != config.key.token.expose_secret());
    // Verify with the settings being written (URL, CA, timeout): nothing is stored if Qlik
    // does not accept the key.
    let client = crate::qlik::QlikClient::new(config.client_config()?).map_err(|e| {
        RequestError::bad_request(format!("cannot use these settings to reach Qlik: {e}"))
    })?;
    config.key_info = verify_key(&client, &config.key.token).await?;
    if let Some(previous) = existing
        .as_ref()
        .filter(|c| c.key_info.key_id == config.key_info.key_id)
        .and_then(|c| c.key_info.dies_at)
        && let Some(now) = config.key_info.dies_at
        && now.duration_since(previous).abs() < jiff::SignedDuration::from_secs(2)
    {
        // The same key, and the tenant's clock where it was: the same config written again
        // stores the same bytes (the measurement differs by the answer's latency).
        config.key_info.dies_at = Some(previous);
    }
    let mut warnings = Vec::new();
    let tenant_max = tenant_max_expiry(&client, &config, &mut warnings).await;
    if let (Some(expiry), Some(max)) = (config.key_expiry, tenant_max)
        && expiry > max
    {
        return Err(RequestError::field(
            "key_expiry",
            format!(
                "{expiry} is longer than the tenant's maximum key lifetime ({max}, \
                 max_api_key_expiry), so Qlik would refuse every rotation; nothing was stored. \
                 Fix: key_expiry={max} or shorter (or leave it unset), or raise the tenant's \
                 Maximum token expiration"
            ),
        ));
    }
    if key_changed || config.inherited_key_expiry.is_none() {
        // The default policy: the written key's own lifetime, captured now, so that a one-off
        // `rotate expiry=…` later does not change it.
        config.inherited_key_expiry = config.key_info.lifetime();
    }
    if let (Some(inherited), Some(max)) = (config.inherited_key_expiry, tenant_max)
        && inherited > max
    {
        warnings.push(format!(
            "the key's own lifetime ({inherited}) is longer than the tenant's maximum \
             ({max}, max_api_key_expiry): the engine mints keys of {max}"
        ));
        config.inherited_key_expiry = Some(max);
    }
    if let (Some(before), Some(expiry)) = (config.rotate_before, config.effective_key_expiry())
        && before >= expiry
    {
        return Err(RequestError::field(
            "rotate_before",
            format!(
                "{before} must be shorter than the key lifetime ({expiry}), or every key would be rotated at once"
            ),
        ));
    }
    let guard = backend.state_lock.lock().await;
    store(backend, &config).await?;
    let mut to_delete = Vec::new();
    if key_changed {
        let storage = backend.storage.as_ref();
        // Every key that was stored before this one is what it is now (see `retire`).
        for id in KeyRecord::ids(storage).await? {
            if id == config.key_info.key_id {
                continue;
            }
            if let Some(record) = KeyRecord::load(storage, &id).await?
                && record.kind == KeyKind::Stored
                && let Some(id) = retire(storage, record, existing.as_ref(), &config).await?
            {
                to_delete.push(id);
            }
        }
        // The new key is tracked from now on (kept as minted here if it was).
        let known = KeyRecord::load(storage, &config.key_info.key_id).await?;
        let mut record = KeyRecord::new(
            config.key_info.key_id.clone(),
            KeyKind::Stored,
            None,
            config.key_info.created_at,
            config.key_info.expires_at,
        );
        record.owner_id = Some(config.key_info.owner_id.clone());
        if let Some(known) = known {
            record.minted = known.minted;
            record.holds = known.holds;
        }
        record.save(storage).await?;
    }
    drop(guard);
    for id in to_delete {
        match super::rotate::delete_superseded(backend, &config, &id).await {
            Ok(_) => {}
            Err(error) => warnings.push(format!(
                "the previously stored key {id} could not be deleted at Qlik yet ({error}); \
                 tidy retries"
            )),
        }
    }
    backend.forget_client().await;
    tracing::info!(
        tenant_url = %config.tenant_url,
        key_id = %config.key_info.key_id,
        key_expires_at = %config.key_info.expires_at,
        "configuration written"
    );
    warnings.extend(super::schedule::warnings(&config, jiff::Timestamp::now()));
    Ok(Response {
        warnings,
        ..Response::empty()
    })
}

/// What a key that was stored becomes when `config` gets a new key (after a `config` write
/// with another `api_key`, or a `delete config` and a new `config`): a key this engine minted
/// for the same Qlik user is superseded (deleted now if no lease holds it: the id is
/// returned; else when its last lease ends); any other key (written by an operator, which may
/// still be used elsewhere, or owned by another user, which the new key may not delete) is
/// foreign: left alone at Qlik, its record kept while leases hold it.
async fn retire(
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
pub(super) async fn tenant_max_expiry(
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
        dies_at: Some(super::local_deadline(
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
        _ => super::qlik_error(error, "verifying api_key at Qlik (nothing was stored)"),
    }
}

async fn read(backend: &QlikBackend) -> Result<Response, RequestError> {
    let (generation, cached, fixed) = backend.config_cache.snapshot();
    let config = match cached {
        Some(config) => config,
        None => load(backend).await?.map(std::sync::Arc::new),
    };
    let Some(config) = config else {
        return Ok(Response::empty());
    };
    let fixed = match fixed {
        Some(text) => text,
        None => {
            let text = Response::render(&read_data(&config));
            backend.config_cache.keep_read(generation, &text);
            text
        }
    };
    Ok(Response::rendered(with_timed_fields(
        &fixed,
        &config,
        jiff::Timestamp::now(),
    )))
}

/// The rendered fixed part of the `config` read (a JSON object's text) with the fields that
/// depend on the time of the read (the next rotation) added, written straight into the
/// answer: this runs on every read, and timestamps and reason names need no escaping.
fn with_timed_fields(fixed: &str, config: &Config, now: jiff::Timestamp) -> String {
    join_timed(
        fixed,
        super::schedule::next_rotation(config, now),
        super::schedule::pending_occurrence(&config.rotation, now),
    )
}

fn join_timed(
    fixed: &str,
    next: Option<super::schedule::NextRotation>,
    scheduled: Option<jiff::Timestamp>,
) -> String {
    let body = fixed
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_default();
    let mut text = String::with_capacity(body.len() + 160);
    text.push('{');
    text.push_str(body);
    if !body.is_empty() {
        text.push(',');
    }
    push_field(&mut text, "next_rotation_at", next.as_ref().map(|n| n.at));
    text.push(',');
    push_field(
        &mut text,
        "next_rotation_reason",
        next.as_ref().map(|n| n.reason.name()),
    );
    text.push(',');
    push_field(&mut text, "next_scheduled_at", scheduled);
    text.push('}');
    text
}

/// `"name":"value"` or `"name":null`, for values whose text needs no JSON escaping.
fn push_field(text: &mut String, name: &str, value: Option<impl std::fmt::Display>) {
    use std::fmt::Write as _;
    let _ = match value {
        Some(v) => write!(text, "\"{name}\":\"{v}\""),
        None => write!(text, "\"{name}\":null"),
    };
}

/// The `config` read's fields that are a pure function of the config (everything but the key
/// itself and [`with_timed_fields`]): rendered once per in-memory copy.
fn read_data(config: &Config) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("tenant_url".into(), json!(config.tenant_url));
    data.insert(
        "key_expiry".into(),
        json!(config.effective_key_expiry().map(KeyDuration::to_iso)),
    );
    data.insert("auto_rotate".into(), json!(config.auto_rotate));
    data.insert(
        "rotate_before".into(),
        json!(config.effective_rotate_before().map(KeyDuration::to_iso)),
    );
    data.insert(
        "key_ttl".into(),
        json!(config.key_ttl.map(KeyDuration::to_iso)),
    );
    data.insert(
        "ca_cert".into(),
        json!(config.ca_cert.clone().unwrap_or_default()),
    );
    data.insert("ca_cert_set".into(), json!(config.ca_cert.is_some()));
    data.insert(
        "request_timeout".into(),
        json!(config.request_timeout.to_iso()),
    );
    data.insert("max_retries".into(), json!(config.max_retries));
    let info = &config.key_info;
    data.insert("tenant_id".into(), json!(info.tenant_id));
    data.insert("owner_id".into(), json!(info.owner_id));
    data.insert("owner_name".into(), json!(info.owner_name));
    data.insert("key_id".into(), json!(info.key_id));
    data.insert(
        "key_created_at".into(),
        json!(info.created_at.map(|t| t.to_string())),
    );
    data.insert("key_expires_at".into(), json!(info.expires_at.to_string()));
    data.insert(
        "rotation_schedule".into(),
        json!(config.rotation.schedule.clone().unwrap_or_default()),
    );
    data.insert(
        "rotation_window".into(),
        json!(config.rotation.window.map_or(0, KeyDuration::as_secs)),
    );
    data.insert(
        "rotation_period".into(),
        json!(config.rotation.period.map_or(0, KeyDuration::as_secs)),
    );
    data.insert(
        "disable_automated_rotation".into(),
        json!(!config.auto_rotate),
    );
    data.insert("last_rotation".into(), json!(config.last_rotation));
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_joins_its_fixed_and_timed_fields_into_one_object() {
        let at: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let next = super::super::schedule::NextRotation {
            at,
            reason: super::super::schedule::Reason::Expiry,
        };
        let joined = join_timed(r#"{"a":1,"b":"x}"}"#, Some(next), None);
        let value: Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(
            value,
            json!({
                "a": 1,
                "b": "x}",
                "next_rotation_at": "2026-12-01T10:00:00Z",
                "next_rotation_reason": "expiry",
                "next_scheduled_at": null,
            })
        );
        let value: Value = serde_json::from_str(&join_timed("{}", None, Some(at))).unwrap();
        assert_eq!(
            value,
            json!({
                "next_rotation_at": null,
                "next_rotation_reason": null,
                "next_scheduled_at": "2026-12-01T10:00:00Z",
            })
        );
    }

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
}
