//! The health of a chain: its rotation history, and its state (`healthy`, `at_risk`,
//! `broken`) from what the chain's record says and what the mount observed (Qlik's last
//! answer, the periodic ticks).
//!
//! - `broken`: the current credential expired, or Qlik refuses it (401): only a new one
//!   written by an operator repairs the chain.
//! - `at_risk`: less than the margin is left and no rotation will happen in time: automatic
//!   rotation is off, the last automatic attempt failed, or no periodic tick reached the mount
//!   for longer than a tick ([`chain_state`]). It still works.
//! - `healthy`: anything else.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Rotating;
use super::schedule::{self, Reason, RotationSettings};
use crate::framework::RequestError;

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
    /// Whether the credential's owner refused the chain's own credential (seen by a rotation
    /// attempt or a read; the credential's kind knows how). Cleared by a success or a new
    /// credential written, never by a failure of another cause.
    #[serde(default)]
    pub credential_refused: bool,
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
                self.credential_refused = false;
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

    /// A new credential was written and verified: the failures before it no longer say
    /// anything about the chain (the last success stays).
    pub fn credential_replaced(&mut self) {
        self.consecutive_failures = 0;
        self.last_error = None;
        self.last_failure = None;
        self.last_automatic_failed = false;
        self.credential_refused = false;
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

impl RotationOutcome {
    /// The outcome of an attempt that ends now.
    pub fn now(automatic: bool, error: Option<&RequestError>) -> Self {
        Self {
            time: Timestamp::now(),
            outcome: if error.is_some() {
                "failure"
            } else {
                "success"
            }
            .into(),
            trigger: if automatic { "automatic" } else { "manual" }.into(),
            error: error.map(ToString::to_string),
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
    /// The credential asked about.
    pub key_id: String,
    /// When.
    pub at: Instant,
    /// `ok`, `refused` (401) or `unreachable`.
    pub outcome: &'static str,
    /// What Qlik said.
    pub detail: Option<String>,
}

/// The last [`KeyCheck`] of a mount.
#[derive(Default)]
pub(crate) struct KeyCheckCache(std::sync::Mutex<Option<KeyCheck>>);

impl KeyCheckCache {
    pub(crate) fn get(&self, key_id: &str) -> Option<KeyCheck> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|c| c.key_id == key_id && c.at.elapsed() < CHECK_EVERY)
            .cloned()
    }

    pub(crate) fn put(&self, check: KeyCheck) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(check);
    }
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
    chain: &dyn Rotating,
    now: Timestamp,
    observed: &Observed<'_>,
) -> (ChainState, Option<String>) {
    let expires_at = chain.expires_at();
    if let Some(expires_at) = expires_at
        && expires_at <= now
    {
        return (
            ChainState::Broken,
            Some(format!("the stored key expired at {expires_at}")),
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
    let (Some(margin), Some(expires_at)) = (chain.margin(), expires_at) else {
        return (ChainState::Healthy, None);
    };
    let left = expires_at.duration_since(now).as_secs();
    if left >= i64::try_from(margin.as_secs()).unwrap_or(i64::MAX) {
        return (ChainState::Healthy, None);
    }
    let history = chain.history();
    let reason = if !chain.auto_rotate() {
        format!(
            "less than rotate_before ({margin}) is left and automatic rotation is disabled \
             (disable_automated_rotation=true): nothing will rotate the key before it expires at \
             {expires_at}. Rotate it now (write <mount>/rotate), or enable automatic rotation"
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

/// Records the end of a rotation attempt in a chain's history, and the schedule's anchor.
pub fn record(
    history: &mut RotationHistory,
    settings: &mut RotationSettings,
    reason: Option<Reason>,
    error: Option<&RequestError>,
) {
    let now = Timestamp::now();
    history.record(reason.is_some(), now, error);
    if error.is_none() {
        schedule::after_rotation(settings, reason, now);
    }
}
