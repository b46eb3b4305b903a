//! `status`: the health of the key chain, for a monitor (no secret in it).
//!
//! - `broken`: the stored key expired, or Qlik refuses it (401): only a new key written to
//!   `config` repairs the chain.
//! - `at_risk`: the stored key has less than `rotate_before` left and the last automatic
//!   rotation attempt failed: it still works, and the next tick retries.
//! - `healthy`: anything else.
//!
//! Whether Qlik refuses the stored key is asked at Qlik (`GET /api/v1/users/me`, a tier-1
//! call) at most once every [`CHECK_EVERY`] per mount; the answer is kept in memory. A
//! failure to reach Qlik is reported (`qlik_check`) but does not make the chain broken.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::config::{self, Config};
use super::records::{KeyKind, KeyRecord, KeyState};
use super::schedule::{self, NextRotation, Reason};
use super::{QlikBackend, Route};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};
use crate::qlik::ErrorKind;

/// How long an answer of Qlik about the stored key is reused.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// What happened to rotations lately (stored in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationHistory {
    /// The last successful rotation (any trigger).
    #[serde(default)]
    pub last_success: Option<Timestamp>,
    /// Failed attempts (any trigger) since the last success.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The error of the last failed attempt (cleared by a success).
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the last attempt failed.
    #[serde(default)]
    pub last_failure: Option<Timestamp>,
    /// Whether the last automatic attempt failed.
    #[serde(default)]
    pub last_automatic_failed: bool,
}

impl RotationHistory {
    /// Records the end of a rotation attempt. `automatic`: started by the tick.
    pub fn record(&mut self, automatic: bool, at: Timestamp, error: Option<&RequestError>) {
        match error {
            None => {
                self.last_success = Some(at);
                self.consecutive_failures = 0;
                self.last_error = None;
                self.last_automatic_failed = false;
            }
            Some(error) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_error = Some(error.to_string());
                self.last_failure = Some(at);
                if automatic {
                    self.last_automatic_failed = true;
                }
            }
        }
    }
}

/// The state of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainState {
    /// Nothing to do.
    Healthy,
    /// Rotation is overdue and failing; the key still works.
    AtRisk,
    /// The stored key no longer works.
    Broken,
}

impl ChainState {
    /// Every state, for the metric.
    pub const ALL: [Self; 3] = [Self::Healthy, Self::AtRisk, Self::Broken];

    /// The name in `status` and the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::AtRisk => "at_risk",
            Self::Broken => "broken",
        }
    }
}

/// Qlik's last answer about the stored key.
#[derive(Debug, Clone)]
pub(crate) struct KeyCheck {
    key_id: String,
    at: Instant,
    /// `ok`, `refused` (401) or `unreachable`.
    outcome: &'static str,
    detail: Option<String>,
}

/// The last [`KeyCheck`] of a mount.
#[derive(Default)]
pub(crate) struct KeyCheckCache(std::sync::Mutex<Option<KeyCheck>>);

impl KeyCheckCache {
    fn get(&self, key_id: &str) -> Option<KeyCheck> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|c| c.key_id == key_id && c.at.elapsed() < CHECK_EVERY)
            .cloned()
    }

    fn put(&self, check: KeyCheck) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(check);
    }
}

/// Everything `status` and `metrics` report.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The chain's state.
    pub state: ChainState,
    /// Why it is not healthy.
    pub state_reason: Option<String>,
    /// The stored key's id.
    pub key_id: String,
    /// When it expires.
    pub key_expires_at: Timestamp,
    /// Seconds from now to then (negative once expired).
    pub seconds_left: i64,
    /// The expiry guard, in seconds.
    pub rotate_before_secs: Option<i64>,
    /// Whether automatic rotation is on.
    pub automatic_rotation: bool,
    /// The next automatic rotation.
    pub next_rotation: Option<NextRotation>,
    /// The pending occurrence of the schedule.
    pub next_scheduled: Option<Timestamp>,
    /// Rotation history.
    pub history: RotationHistory,
    /// Qlik's answer about the stored key: `ok`, `refused`, `unreachable`.
    pub qlik_check: &'static str,
    /// Keys whose deletion is pending.
    pub deletions_pending: usize,
    /// Tracked keys by kind.
    pub keys_by_kind: BTreeMap<&'static str, usize>,
    /// Leases holding stored or superseded keys.
    pub live_holds: usize,
}

/// The figures of the mount; `None` when `config` is not written.
pub async fn snapshot(backend: &QlikBackend) -> Result<Option<Snapshot>, RequestError> {
    let Some(config) = config::load(backend).await? else {
        return Ok(None);
    };
    let now = Timestamp::now();
    let storage = backend.storage.as_ref();
    let mut keys_by_kind = BTreeMap::from([("stored", 0), ("superseded", 0), ("dedicated", 0)]);
    let mut deletions_pending = 0;
    let mut live_holds = 0;
    for id in KeyRecord::ids(storage).await? {
        let Some(record) = KeyRecord::load(storage, &id).await? else {
            continue;
        };
        let kind = match record.kind {
            KeyKind::Stored => "stored",
            KeyKind::Superseded => "superseded",
            KeyKind::Dedicated => "dedicated",
        };
        *keys_by_kind.entry(kind).or_default() += 1;
        if record.state == KeyState::DeletePending {
            deletions_pending += 1;
        }
        if record.kind != KeyKind::Dedicated {
            live_holds += record.live_holds(storage).await?;
        }
    }
    let check = check_key(backend, &config).await;
    let history = config.history.clone();
    let seconds_left = config.key_info.expires_at.duration_since(now).as_secs();
    let rotate_before = config.effective_rotate_before();
    let (state, state_reason) = if config.key_info.expires_at <= now {
        (
            ChainState::Broken,
            Some(format!(
                "the stored key expired at {}",
                config.key_info.expires_at
            )),
        )
    } else if check.outcome == "refused" {
        (
            ChainState::Broken,
            Some(format!(
                "Qlik refuses the stored key (401): {}",
                check.detail.clone().unwrap_or_default()
            )),
        )
    } else if history.last_automatic_failed
        && rotate_before.is_some_and(|b| seconds_left < i64::try_from(b.as_secs()).unwrap_or(0))
    {
        (
            ChainState::AtRisk,
            Some(format!(
                "less than rotate_before is left and the last automatic rotation failed: {}",
                history.last_error.clone().unwrap_or_default()
            )),
        )
    } else {
        (ChainState::Healthy, None)
    };
    Ok(Some(Snapshot {
        state,
        state_reason,
        key_id: config.key_info.key_id.clone(),
        key_expires_at: config.key_info.expires_at,
        seconds_left,
        rotate_before_secs: rotate_before.and_then(|b| i64::try_from(b.as_secs()).ok()),
        automatic_rotation: config.auto_rotate,
        next_rotation: schedule::next_rotation(&config, now),
        next_scheduled: schedule::pending_occurrence(&config.rotation, now),
        history,
        qlik_check: check.outcome,
        deletions_pending,
        keys_by_kind,
        live_holds,
    }))
}

/// Asks Qlik whether it still accepts the stored key (cached for [`CHECK_EVERY`]).
async fn check_key(backend: &QlikBackend, config: &Config) -> KeyCheck {
    let key_id = &config.key_info.key_id;
    if let Some(check) = backend.key_check.get(key_id) {
        return check;
    }
    let (outcome, detail) = match backend.client(config).await {
        Err(error) => ("unreachable", Some(error.to_string())),
        Ok(client) => match client.me(&config.key.token).await {
            Ok(_) => ("ok", None),
            Err(error) if error.kind() == ErrorKind::Unauthorized => {
                ("refused", Some(error.to_string()))
            }
            Err(error) => ("unreachable", Some(error.to_string())),
        },
    };
    let check = KeyCheck {
        key_id: key_id.clone(),
        at: Instant::now(),
        outcome,
        detail,
    };
    backend.key_check.put(check.clone());
    check
}

static RESPONSE: &[FieldSpec] = &[
    FieldSpec::new(
        "state",
        FieldKind::String,
        "healthy, at_risk (less than rotate_before left and the last automatic rotation failed) or broken (the stored key expired or Qlik refuses it); unconfigured before config is written.",
    ),
    FieldSpec::new(
        "state_reason",
        FieldKind::String,
        "Why the state is not healthy (null when healthy).",
    ),
    FieldSpec::new("key_id", FieldKind::String, "The stored key's id."),
    FieldSpec::new(
        "key_expires_at",
        FieldKind::String,
        "When the stored key expires (RFC 3339).",
    ),
    FieldSpec::new(
        "seconds_left",
        FieldKind::Int,
        "Seconds until the stored key expires (negative once expired).",
    ),
    FieldSpec::new(
        "rotate_before_seconds",
        FieldKind::Int,
        "The expiry guard in seconds.",
    ),
    FieldSpec::new(
        "automatic_rotation",
        FieldKind::Bool,
        "Whether automatic rotation is on.",
    ),
    FieldSpec::new(
        "next_rotation_at",
        FieldKind::String,
        "When the next automatic rotation is due (RFC 3339; in the past: at the next tick); null when disabled.",
    ),
    FieldSpec::new(
        "next_scheduled_at",
        FieldKind::String,
        "The pending occurrence of rotation_schedule (RFC 3339), or null without a schedule.",
    ),
    FieldSpec::new(
        "next_rotation_reason",
        FieldKind::String,
        "expiry, schedule or period; null when disabled.",
    ),
    FieldSpec::new(
        "last_success_at",
        FieldKind::String,
        "The last successful rotation (RFC 3339), null before the first.",
    ),
    FieldSpec::new(
        "consecutive_failures",
        FieldKind::Int,
        "Rotation attempts failed since the last success.",
    ),
    FieldSpec::new(
        "last_error",
        FieldKind::String,
        "The error of the last failed attempt since the last success, or null.",
    ),
    FieldSpec::new(
        "last_failure_at",
        FieldKind::String,
        "When a rotation attempt last failed (RFC 3339), or null.",
    ),
    FieldSpec::new(
        "qlik_check",
        FieldKind::String,
        "Qlik's answer about the stored key (at most every 10 s): ok, refused or unreachable.",
    ),
    FieldSpec::new(
        "deferred_deletions_pending",
        FieldKind::Int,
        "Keys whose deletion at Qlik is pending.",
    ),
    FieldSpec::new(
        "tracked_keys",
        FieldKind::Object,
        "Keys this mount tracks by kind: stored, superseded, dedicated.",
    ),
    FieldSpec::new(
        "live_holds",
        FieldKind::Int,
        "Leases holding the stored or a superseded key.",
    ),
    FieldSpec::new(
        "checked_at",
        FieldKind::String,
        "When this answer was computed (RFC 3339).",
    ),
];

/// The `status` path.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::Status,
    pattern: "status",
    fields: &[],
    operations: &[
        OperationSpec::new(Operation::Read, "The health of the key chain (no secret).")
            .returns(RESPONSE),
    ],
    existence_check: false,
    synopsis: "The health of the key chain, for monitoring (no secret in it).",
    description: "\
`state` is `healthy`, `at_risk` (the stored key has less than `rotate_before` left and the \
last automatic rotation failed: it still works, the next tick retries) or `broken` (the stored \
key expired or Qlik refuses it: write a valid key to `config`). Numbers are in seconds, times \
in RFC 3339. Safe to grant to a monitoring policy on its own.",
};

pub(super) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    if request.operation != Operation::Read {
        return Err(RequestError::UnsupportedOperation);
    }
    let now = Timestamp::now();
    let mut data = Map::new();
    let Some(s) = snapshot(backend).await? else {
        data.insert("state".into(), json!("unconfigured"));
        data.insert(
            "state_reason".into(),
            json!("config is not written: write tenant_url and api_key to config"),
        );
        data.insert("checked_at".into(), json!(now.to_string()));
        return Ok(Response::data(data));
    };
    let time = |t: Option<Timestamp>| json!(t.map(|t| t.to_string()));
    data.insert("state".into(), json!(s.state.name()));
    data.insert("state_reason".into(), json!(s.state_reason));
    data.insert("key_id".into(), json!(s.key_id));
    data.insert("key_expires_at".into(), json!(s.key_expires_at.to_string()));
    data.insert("seconds_left".into(), json!(s.seconds_left));
    data.insert("rotate_before_seconds".into(), json!(s.rotate_before_secs));
    data.insert("automatic_rotation".into(), json!(s.automatic_rotation));
    data.insert(
        "next_rotation_at".into(),
        time(s.next_rotation.map(|n| n.at)),
    );
    data.insert(
        "next_rotation_reason".into(),
        json!(s.next_rotation.map(|n| n.reason.name())),
    );
    data.insert("next_scheduled_at".into(), time(s.next_scheduled));
    data.insert("last_success_at".into(), time(s.history.last_success));
    data.insert(
        "consecutive_failures".into(),
        json!(s.history.consecutive_failures),
    );
    data.insert("last_error".into(), json!(s.history.last_error));
    data.insert("last_failure_at".into(), time(s.history.last_failure));
    data.insert("qlik_check".into(), json!(s.qlik_check));
    data.insert(
        "deferred_deletions_pending".into(),
        json!(s.deletions_pending),
    );
    data.insert("tracked_keys".into(), json!(s.keys_by_kind));
    data.insert("live_holds".into(), json!(s.live_holds));
    data.insert("checked_at".into(), json!(now.to_string()));
    Ok(Response::data(data))
}

/// Records the end of a rotation attempt in `config` (history, and the schedule's anchor).
pub fn record(config: &mut Config, reason: Option<Reason>, error: Option<&RequestError>) {
    let now = Timestamp::now();
    config.history.record(reason.is_some(), now, error);
    if error.is_none() {
        schedule::after_rotation(&mut config.rotation, reason, now);
    }
}
