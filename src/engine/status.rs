//! `status`: the health of the key chain, for a monitor (no secret in it).
//!
//! - `broken`: the stored key expired, or Qlik refuses it (401): only a new key written to
//!   `config` repairs the chain.
//! - `at_risk`: the stored key has less than its margin (`rotate_before`) left and no rotation
//!   will happen in time: automatic rotation is off, the last automatic attempt failed, or no
//!   periodic tick reached the mount for longer than a tick ([`chain_state`]). It still works.
//! - `healthy`: anything else.
//!
//! Whether Qlik refuses the stored key is asked at Qlik (`GET /api/v1/users/me`, a tier-1
//! call) at most once every [`CHECK_EVERY`] per mount; the answer is kept in memory. A
//! failure to reach Qlik is reported (`qlik_check`) but does not make the chain broken.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::config::{self, Config};
use super::ledger::Tally;
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
    /// The records' figures, from the ledger.
    pub records: Tally,
}

/// The figures of the mount; `None` when `config` is not written. Only the active node
/// answers (its memory holds the ticks, Qlik's last answer and the ledger): on a standby this
/// is the read-only error, which makes the server forward the request ([`super::node_role`]).
/// Reads no storage once the ledger is built (the config is in memory too).
pub async fn snapshot(backend: &QlikBackend) -> Result<Option<Snapshot>, RequestError> {
    super::node_role::require_active(&backend.role, backend.storage.as_ref()).await?;
    let Some(config) = config::load(backend).await? else {
        return Ok(None);
    };
    let now = Timestamp::now();
    let tally = backend.ledger.tally(backend.storage.as_ref()).await?;
    let check = check_key(backend, &config).await;
    let history = config.history.clone();
    let seconds_left = config.key_info.expires_at.duration_since(now).as_secs();
    let rotate_before = config.effective_rotate_before();
    let (tick_quiet, ticked) = backend.ticks.quiet_for();
    let observed = Observed {
        check: &check,
        tick_quiet,
        ticked,
        lookahead: backend.ticks.lookahead(),
        rotating: backend.rotation_lock.try_lock().is_err(),
    };
    let (state, state_reason) = chain_state(&config, now, &observed);
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
        records: tally,
    }))
}

/// What `status` sees besides the config, for [`chain_state`].
pub(crate) struct Observed<'a> {
    /// Qlik's last answer about the stored key.
    pub check: &'a KeyCheck,
    /// How long since the server's periodic tick last reached this mount (or, before the
    /// first, since the mount's backend was made).
    pub tick_quiet: Duration,
    /// Whether a tick reached this mount at all in this process.
    pub ticked: bool,
    /// How far apart ticks may come ([`super::ticks::TickClock::lookahead`]).
    pub lookahead: Duration,
    /// A rotation is running now.
    pub rotating: bool,
}

/// The chain's state and why. `broken` when the stored key expired or Qlik refuses it.
/// `at_risk` when the key has less than its margin left and no rotation will happen in
/// time, whatever the cause: automatic rotation is off, the last automatic attempt failed, or
/// no periodic tick has reached the mount for longer than a tick (the expiry guard rotates at
/// the last tick *before* the margin, so a key inside its margin means a tick was missed).
pub(crate) fn chain_state(
    config: &Config,
    now: Timestamp,
    observed: &Observed<'_>,
) -> (ChainState, Option<String>) {
    let info = &config.key_info;
    if info.expires_at <= now {
        return (
            ChainState::Broken,
            Some(format!("the stored key expired at {}", info.expires_at)),
        );
    }
    if observed.check.outcome == "refused" {
        return (
            ChainState::Broken,
            Some(format!(
                "Qlik refuses the stored key (401): {}",
                observed.check.detail.clone().unwrap_or_default()
            )),
        );
    }
    let Some(margin) = config.stored_key_margin() else {
        return (ChainState::Healthy, None);
    };
    let left = info.expires_at.duration_since(now).as_secs();
    if left >= i64::try_from(margin.as_secs()).unwrap_or(i64::MAX) {
        return (ChainState::Healthy, None);
    }
    let history = &config.history;
    let reason = if !config.auto_rotate {
        format!(
            "less than rotate_before ({margin}) is left and automatic rotation is disabled \
             (disable_automated_rotation=true): nothing will rotate the key before it expires at \
             {}. Rotate it now (write <mount>/rotate), or enable automatic rotation",
            info.expires_at
        )
    } else if history.last_automatic_failed {
        format!(
            "less than rotate_before is left and the last automatic rotation failed: {}",
            history.last_error.clone().unwrap_or_default()
        )
    } else if !observed.rotating && observed.tick_quiet > observed.lookahead {
        let since = if observed.ticked {
            "the server's periodic tick last reached this mount"
        } else {
            "no periodic tick has reached this mount since the plugin started"
        };
        format!(
            "less than rotate_before ({margin}) is left and the key was not rotated: {since} \
             {} s ago (it comes every 60 s; the expiry guard rotates at a tick). Rotate it now \
             (write <mount>/rotate) and check the server (sealed, overloaded, plugin restarting)",
            observed.tick_quiet.as_secs()
        )
    } else {
        return (ChainState::Healthy, None);
    };
    (ChainState::AtRisk, Some(reason))
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
        "healthy, at_risk (less than rotate_before left and no rotation will happen in time: automatic rotation disabled, the last automatic rotation failed, or no periodic tick for over a minute) or broken (the stored key expired or Qlik refuses it); unconfigured before config is written.",
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
        "Keys this mount tracks by kind: stored, superseded, dedicated, foreign.",
    ),
    FieldSpec::new(
        "live_holds",
        FieldKind::Int,
        "Leases holding the stored, a superseded or a foreign key.",
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
`state` is `healthy`, `at_risk` (the stored key has less than `rotate_before` left and no \
rotation will happen in time: automatic rotation is disabled, the last automatic rotation \
failed, or the server's periodic tick has not reached the mount for over a minute; \
`state_reason` says which; the key still works) or `broken` (the stored key expired or Qlik \
refuses it: write a valid key to `config`). Numbers are in seconds, times \
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
        json!(s.records.deletions_pending),
    );
    data.insert("tracked_keys".into(), json!(s.records.keys_by_kind));
    data.insert("live_holds".into(), json!(s.records.live_holds));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(left_s: i64, auto: bool) -> Config {
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
            state(&config(3000, false), &ok, 500, false),
            ChainState::Healthy
        );
        // Inside it, ticks coming, automatic rotation on: the next tick rotates.
        assert_eq!(
            state(&config(300, true), &ok, 20, false),
            ChainState::Healthy
        );
        // Inside it with automatic rotation off: nothing will rotate it.
        let off = config(300, false);
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
        let mut failed = config(300, true);
        failed.history.last_automatic_failed = true;
        assert_eq!(state(&failed, &ok, 20, false), ChainState::AtRisk);
        // Inside it, and no tick for longer than a tick (unless a rotation is running).
        assert_eq!(
            state(&config(300, true), &ok, 200, false),
            ChainState::AtRisk
        );
        assert_eq!(
            state(&config(300, true), &ok, 200, true),
            ChainState::Healthy
        );
        // Broken wins: expired, or refused by Qlik.
        assert_eq!(
            state(&config(-5, false), &ok, 20, false),
            ChainState::Broken
        );
        assert_eq!(
            state(&config(3000, true), &check("refused"), 20, false),
            ChainState::Broken
        );
    }
}
