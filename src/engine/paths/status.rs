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

use std::time::Instant;

use jiff::Timestamp;
use serde_json::{Map, json};

use crate::engine::QlikBackend;
use crate::engine::Route;
use crate::engine::api_key::config::{self, Config};
use crate::engine::chain::health::{ChainState, KeyCheck, Observed, RotationHistory, chain_state};
use crate::engine::chain::ledger::Tally;
use crate::engine::chain::schedule::{self, NextRotation};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};
use crate::qlik::ErrorKind;

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
/// is the read-only error, which makes the server forward the request ([`crate::engine::chain::node_role`]).
/// Reads no storage once the ledger is built (the config is in memory too).
pub async fn snapshot(backend: &QlikBackend) -> Result<Option<Snapshot>, RequestError> {
    crate::engine::chain::node_role::require_active(&backend.role, backend.storage.as_ref())
        .await?;
    let Some(config) = config::load(backend).await?.filter(Config::has_api_key) else {
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
        "oauth_clients",
        FieldKind::Object,
        "Each OAuth client's chain by name: client_id, state (healthy, at_risk: the last automatic secret rotation failed, broken: Qlik refused the stored secret), state_reason, secret_hint, secret_age_seconds, next_rotation_at, next_rotation_reason, last_success_at, consecutive_failures, last_error, tracked_secrets (by kind), live_secret_leases.",
    ),
    FieldSpec::new(
        "api_key",
        FieldKind::Bool,
        "false on a mount without an API key (OAuth clients only); the key's fields are then absent and state is the worst client's.",
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

pub(crate) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    if request.operation != Operation::Read {
        return Err(RequestError::UnsupportedOperation);
    }
    let now = Timestamp::now();
    let mut data = Map::new();
    let snapshot = snapshot(backend).await?;
    let clients = crate::engine::oauth::health::clients(backend.storage.as_ref()).await?;
    data.insert("oauth_clients".into(), clients_data(&clients));
    let Some(s) = snapshot else {
        if config::load(backend).await?.is_some() {
            // OAuth clients only: the mount's state is its worst client's.
            let worst = clients.iter().max_by_key(|c| c.state as u8);
            data.insert(
                "state".into(),
                json!(worst.map_or("healthy", |c| c.state.name())),
            );
            data.insert(
                "state_reason".into(),
                json!(worst.and_then(|c| c.state_reason.clone())),
            );
            data.insert("api_key".into(), json!(false));
            data.insert("checked_at".into(), json!(now.to_string()));
            return Ok(Response::data(data));
        }
        data.insert("state".into(), json!("unconfigured"));
        data.insert(
            "state_reason".into(),
            json!("config is not written: write tenant_url (and api_key for API keys) to config"),
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

/// Each OAuth client's figures, by name.
fn clients_data(clients: &[crate::engine::oauth::health::ClientHealth]) -> serde_json::Value {
    let time = |t: Option<Timestamp>| json!(t.map(|t| t.to_string()));
    let mut all = Map::new();
    for c in clients {
        all.insert(
            c.name.clone(),
            json!({
                "client_id": c.client_id,
                "state": c.state.name(),
                "state_reason": c.state_reason,
                "secret_hint": c.secret_hint,
                "secret_age_seconds": c.secret_age_secs,
                "next_rotation_at": time(c.next_rotation.map(|n| n.at)),
                "next_rotation_reason": c.next_rotation.map(|n| n.reason.name()),
                "last_success_at": time(c.history.last_success),
                "consecutive_failures": c.history.consecutive_failures,
                "last_error": c.history.last_error,
                "tracked_secrets": c.secrets_by_kind,
                "live_secret_leases": c.live_secret_leases,
            }),
        );
    }
    serde_json::Value::Object(all)
}
