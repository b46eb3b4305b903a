//! `config`: the tenant, the stored key, rotation and HTTP settings.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::duration::KeyDuration;
use crate::engine::api_key::config::{
    Config, DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT, KeyInfo, MAX_REQUEST_TIMEOUT,
    MAX_RETRIES, STORAGE_KEY, StoredKey, load, normalise_tenant_url, remove, retire, store,
    tenant_max_expiry, validate_ca_cert, verify_key,
};
use crate::engine::chain::Rotating;
use crate::engine::chain::records::{KeyKind, KeyRecord};
use crate::engine::{QlikBackend, Route};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};

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
        "The Qlik API key the engine starts from. Verified at Qlik before anything is stored. Without one the mount holds only OAuth clients (oauth/…), and rotate, key and creds answer 400.",
    )
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

pub(crate) async fn exists(backend: &QlikBackend) -> Result<bool, RequestError> {
    Ok(backend.storage.get(STORAGE_KEY).await?.is_some())
}

pub(crate) async fn handle(
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
        (None, Some(existing)) if !existing.has_api_key() => StoredKey {
            token: SecretString::from(String::new()),
        },
        (None, Some(_)) => {
            return Err(RequestError::field(
                "api_key",
                "required when tenant_url changes: a key belongs to one tenant",
            ));
        }
        // A mount for OAuth clients only.
        (None, None) => StoredKey {
            token: SecretString::from(String::new()),
        },
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
    let automatic = crate::engine::chain::schedule::parse_fields(
        data,
        existing.as_ref().map(|c| c as &dyn Rotating),
        jiff::Timestamp::now(),
    )?;
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
    if config.key.token.expose_secret().is_empty() {
        // No API key: the tenant's settings for the OAuth clients (each verified when written).
        {
            let _guard = backend.state_lock.lock().await;
            store(backend, &config).await?;
        }
        backend.forget_client().await;
        backend.oauth.forget_clients();
        tracing::info!(tenant_url = %config.tenant_url, "configuration written without an API key (OAuth clients only)");
        return Ok(Response {
            warnings: vec![
                "no api_key: this mount holds OAuth clients only (oauth/clients/<name>); rotate, \
                 key and creds answer 400 until an api_key is written to config"
                    .to_string(),
            ],
            ..Response::empty()
        });
    }
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
        match crate::engine::api_key::rotation::delete_superseded(backend, &config, &id).await {
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
    warnings.extend(crate::engine::chain::schedule::warnings(
        &config,
        jiff::Timestamp::now(),
    ));
    Ok(Response {
        warnings,
        ..Response::empty()
    })
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
        crate::engine::chain::schedule::next_rotation(config, now),
        crate::engine::chain::schedule::pending_occurrence(&config.rotation, now),
    )
}

fn join_timed(
    fixed: &str,
    next: Option<crate::engine::chain::schedule::NextRotation>,
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
    // A mount of OAuth clients only has no key: its key's fields are null, not placeholders.
    let keyed = config.has_api_key();
    let key_field = |value: Value| if keyed { value } else { Value::Null };
    data.insert("tenant_id".into(), key_field(json!(info.tenant_id)));
    data.insert("owner_id".into(), key_field(json!(info.owner_id)));
    data.insert("owner_name".into(), key_field(json!(info.owner_name)));
    data.insert("key_id".into(), key_field(json!(info.key_id)));
    data.insert(
        "key_created_at".into(),
        key_field(json!(info.created_at.map(|t| t.to_string()))),
    );
    data.insert(
        "key_expires_at".into(),
        key_field(json!(info.expires_at.to_string())),
    );
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
        let next = crate::engine::chain::schedule::NextRotation {
            at,
            reason: crate::engine::chain::schedule::Reason::Expiry,
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
}
