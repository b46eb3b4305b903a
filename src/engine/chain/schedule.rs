//! When the stored key is rotated by itself: Vault's automated-rotation fields
//! (`rotation_schedule`, `rotation_window`, `rotation_period`, `disable_automated_rotation`,
//! as in the Go SDK's `automatedrotationutil`), on top of the expiry guard, never instead of it.
//!
//! - `rotation_schedule`: standard 5-field cron (minute hour day-of-month month day-of-week,
//!   or `@daily`-style nicknames), evaluated in UTC, parsed by the `croner` crate. The next
//!   occurrence counts from the later of the moment the schedule was written and the last
//!   rotation the schedule started.
//! - `rotation_window`: only with a schedule. A scheduled rotation that has not succeeded
//!   within the window after its occurrence waits for the next occurrence. Without a window
//!   a missed occurrence is retried at every tick until it succeeds.
//! - `rotation_period`: rotate when the stored key is older than this. Mutually exclusive with
//!   `rotation_schedule` (Vault's error).
//! - The expiry guard (less than `rotate_before` left) always applies.
//! - `disable_automated_rotation` (or its older alias `auto_rotate=false`): no automatic
//!   rotation at all, the expiry guard included.
//!
//! Each tick the earliest of the three due times decides; the reason of the next rotation is
//! `expiry`, `schedule` or `period` (on a tie `expiry`).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Rotating;
use crate::duration::KeyDuration;
use crate::framework::{FieldData, RequestError};

/// The shortest `rotation_window` and `rotation_period` accepted: the server's rollback tick
/// comes once a minute, so anything shorter could never be honoured.
pub const MIN_INTERVAL_SECS: u64 = 60;

/// Vault's error for the exclusive pair (sdk `automatedrotationutil`).
pub const ERR_MUTUALLY_EXCLUSIVE: &str = "mutually exclusive fields rotation_schedule and rotation_period were both specified; only one of them can be provided";

/// The schedule settings, as stored in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationSettings {
    /// Cron expression (5 fields, UTC); `None`: no schedule.
    #[serde(default)]
    pub schedule: Option<String>,
    /// How long after an occurrence a scheduled rotation may still start.
    #[serde(default)]
    pub window: Option<KeyDuration>,
    /// Rotate when the key is older than this.
    #[serde(default)]
    pub period: Option<KeyDuration>,
    /// When the schedule was written: the first occurrence counts from here.
    #[serde(default)]
    pub schedule_since: Option<Timestamp>,
    /// The last successful rotation the schedule started: later occurrences count from here.
    #[serde(default)]
    pub last_scheduled: Option<Timestamp>,
}

/// Why the next automatic rotation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Less than `rotate_before` is left.
    Expiry,
    /// An occurrence of `rotation_schedule`.
    Schedule,
    /// The key is older than `rotation_period`.
    Period,
}

impl Reason {
    /// The name in reads, logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Expiry => "expiry",
            Self::Schedule => "schedule",
            Self::Period => "period",
        }
    }
}

/// The next automatic rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextRotation {
    /// When it is due (in the past: at the next tick).
    pub at: Timestamp,
    /// Why.
    pub reason: Reason,
}

/// A parsed cron schedule, evaluated in UTC.
#[derive(Debug, Clone)]
pub struct CronSchedule(croner::Cron);

impl CronSchedule {
    /// Parses a standard 5-field expression (or a nickname such as `@daily`).
    pub fn parse(text: &str) -> Result<Self, String> {
        use croner::parser::{CronParser, Seconds, Year};
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && fields != 5 {
            return Err(format!(
                "{text:?} has {fields} fields; expected the standard 5 (minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\" for 02:00 UTC every day"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("{text:?} is not a valid cron expression ({e})"))?;
        let schedule = Self(cron);
        if schedule.next_after(Timestamp::now()).is_none() {
            return Err(format!("{text:?} never occurs"));
        }
        Ok(schedule)
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let at = to_chrono(t)?;
        self.0
            .find_next_occurrence(&at, false)
            .ok()
            .and_then(from_chrono)
    }

    /// The last occurrence at or before `t`.
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let at = to_chrono(t)?;
        self.0
            .find_previous_occurrence(&at, true)
            .ok()
            .and_then(from_chrono)
    }
}

fn to_chrono(t: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.as_second(), 0)
}

fn from_chrono(t: chrono::DateTime<chrono::Utc>) -> Option<Timestamp> {
    Timestamp::from_second(t.timestamp()).ok()
}

/// The scheduled occurrence that is pending at `now`: the first after the anchor, unless its
/// window has passed, then the latest one whose window is still open, else the next one.
pub fn pending_occurrence(settings: &RotationSettings, now: Timestamp) -> Option<Timestamp> {
    let schedule = CronSchedule::parse(settings.schedule.as_deref()?).ok()?;
    let anchor = match (settings.schedule_since, settings.last_scheduled) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => now,
    };
    let first = schedule.next_after(anchor)?;
    let Some(window) = settings.window else {
        return Some(first);
    };
    let window = window.as_signed();
    if first.checked_add(window).ok()? >= now {
        return Some(first);
    }
    // Missed: the latest occurrence, if its window is still open; else the next one.
    match schedule.last_at_or_before(now) {
        Some(last) if last.checked_add(window).ok()? >= now => Some(last),
        _ => schedule.next_after(now),
    }
}

/// The next automatic rotation: the earliest of the expiry guard, the schedule and the
/// period; `None` when automatic rotation is disabled.
pub fn next_rotation(chain: &dyn Rotating, now: Timestamp) -> Option<NextRotation> {
    next_rotation_seen(chain, now, None)
}

/// [`next_rotation`] with the tenant's clock as last seen (`skew`, see
/// [`Rotating::expiry_guard`]).
pub fn next_rotation_seen(
    chain: &dyn Rotating,
    now: Timestamp,
    skew: Option<jiff::SignedDuration>,
) -> Option<NextRotation> {
    if !chain.auto_rotate() {
        return None;
    }
    let settings = chain.settings();
    let mut candidates = Vec::with_capacity(3);
    if let Some(at) = chain.expiry_guard(skew) {
        candidates.push(NextRotation {
            at,
            reason: Reason::Expiry,
        });
    }
    if let Some(at) = pending_occurrence(settings, now) {
        candidates.push(NextRotation {
            at,
            reason: Reason::Schedule,
        });
    }
    if let Some(period) = settings.period
        && let Some(created) = chain.current_created()
        && let Ok(at) = created.checked_add(period.as_signed())
    {
        candidates.push(NextRotation {
            at,
            reason: Reason::Period,
        });
    }
    // Earliest first; on a tie the expiry guard (pushed first) wins: min_by_key keeps the first.
    candidates.into_iter().min_by_key(|c| c.at)
}

/// The rotation due at a tick at `now`, if any (the tenant's clock as last seen: `skew`).
/// The schedule and the period are due once their time has come. The expiry guard counts
/// the next tick, expected within `lookahead` ([`super::ticks`]): a key whose margin will
/// have passed by then is due now, so it is rotated at the last tick before less than
/// `rotate_before` is left, not at the first tick after (which may come after the key died).
pub fn due(
    chain: &dyn Rotating,
    now: Timestamp,
    skew: Option<jiff::SignedDuration>,
    lookahead: std::time::Duration,
) -> Option<NextRotation> {
    let next = next_rotation_seen(chain, now, skew)?;
    if next.at <= now {
        return Some(next);
    }
    let horizon = now
        .checked_add(jiff::SignedDuration::try_from(lookahead).ok()?)
        .ok()?;
    chain
        .expiry_guard(skew)
        .filter(|guard| *guard <= horizon)
        .map(|at| NextRotation {
            at,
            reason: Reason::Expiry,
        })
}

/// Records a successful rotation the schedule started.
pub fn after_rotation(settings: &mut RotationSettings, reason: Option<Reason>, at: Timestamp) {
    if reason == Some(Reason::Schedule) {
        settings.last_scheduled = Some(at);
    }
}

/// What a `config` write asks of automatic rotation.
pub struct Requested {
    /// The settings to store.
    pub settings: RotationSettings,
    /// `auto_rotate` to store (`!disable_automated_rotation`).
    pub auto_rotate: bool,
}

/// Reads and checks the four fields (and `auto_rotate`) of a `config` write against what is
/// stored; every rule broken is a 400 naming the field, and nothing is stored.
pub fn parse_fields(
    data: &FieldData,
    existing: Option<&dyn Rotating>,
    now: Timestamp,
) -> Result<Requested, RequestError> {
    let old = existing.map(|c| c.settings().clone()).unwrap_or_default();
    let auto_rotate = match (
        data.bool("auto_rotate"),
        data.bool("disable_automated_rotation"),
    ) {
        (Some(auto), Some(disable)) if auto == disable => {
            return Err(RequestError::field(
                "disable_automated_rotation",
                format!(
                    "contradicts auto_rotate={auto} (auto_rotate is the older name of the opposite \
                     of disable_automated_rotation); give one of them"
                ),
            ));
        }
        (Some(auto), _) => auto,
        (None, Some(disable)) => !disable,
        (None, None) => existing.is_none_or(|c| c.auto_rotate()),
    };
    let schedule_given = data.contains("rotation_schedule");
    let schedule = match data.str("rotation_schedule").map(str::trim) {
        Some("") => None,
        Some(text) => {
            CronSchedule::parse(text).map_err(|e| {
                RequestError::field(
                    "rotation_schedule",
                    format!("failed to parse provided rotation_schedule: {e}"),
                )
            })?;
            Some(text.to_string())
        }
        None if schedule_given => None,
        None => old.schedule.clone(),
    };
    let interval = |name: &str, old: Option<KeyDuration>| -> Result<_, RequestError> {
        if data.is_cleared(name) {
            return Ok(None);
        }
        match data.duration(name) {
            Some(d) if d.as_secs() < MIN_INTERVAL_SECS => Err(RequestError::field(
                name,
                format!(
                    "{d} is shorter than one minute; expected at least 60s (the server's periodic \
                     tick runs once a minute), or 0 to remove it"
                ),
            )),
            Some(d) => Ok(Some(d)),
            None => Ok(old),
        }
    };
    let window = interval("rotation_window", old.window)?;
    let period = interval("rotation_period", old.period)?;
    if schedule.is_some() && period.is_some() {
        // Name the field of this request that makes the pair (the schedule when both are new).
        let field = if data.contains("rotation_schedule") {
            "rotation_schedule"
        } else {
            "rotation_period"
        };
        return Err(RequestError::field(
            field,
            format!(
                "{ERR_MUTUALLY_EXCLUSIVE} (one may be stored already: remove it with \
                 rotation_schedule=\"\" or rotation_period=0)"
            ),
        ));
    }
    if window.is_some() && schedule.is_none() {
        let message = if period.is_some() {
            "rotation_window does not apply to period"
        } else {
            "cannot use rotation_window without rotation_schedule"
        };
        return Err(RequestError::field(
            "rotation_window",
            format!("{message} (remove it with rotation_window=0)"),
        ));
    }
    let schedule_since = if schedule.is_none() {
        None
    } else if schedule != old.schedule {
        Some(now)
    } else {
        old.schedule_since.or(Some(now))
    };
    let last_scheduled = if schedule == old.schedule {
        old.last_scheduled
    } else {
        None
    };
    Ok(Requested {
        settings: RotationSettings {
            schedule,
            window,
            period,
            schedule_since,
            last_scheduled,
        },
        auto_rotate,
    })
}

/// Warnings for a written config: a schedule whose next occurrence comes after the expiry
/// guard would have to rotate anyway.
pub fn warnings(chain: &dyn Rotating, now: Timestamp) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(text) = chain.settings().schedule.as_deref() else {
        return warnings;
    };
    let Ok(schedule) = CronSchedule::parse(text) else {
        return warnings;
    };
    let (Some(first), Some(before)) = (
        pending_occurrence(chain.settings(), now),
        chain.margin_policy(),
    ) else {
        return warnings;
    };
    let second = schedule.next_after(first);
    let guard = chain.expiry_guard(None);
    let lifetime = chain.lifetime_policy();
    let too_late_now = guard.is_some_and(|g| first > g);
    let too_wide = match (second, lifetime) {
        (Some(second), Some(lifetime)) => {
            second.duration_since(first).as_secs()
                > i64::try_from(lifetime.as_secs().saturating_sub(before.as_secs()))
                    .unwrap_or(i64::MAX)
        }
        _ => false,
    };
    if chain.auto_rotate() && (too_late_now || too_wide) {
        warnings.push(format!(
            "rotation_schedule {text:?} would leave the key to expire before its next occurrence \
             ({first}): the expiry guard will rotate earlier, once less than rotate_before ({before}) \
             is left"
        ));
    }
    if !chain.auto_rotate() {
        warnings.push(
            "automatic rotation is disabled (disable_automated_rotation=true): neither the \
             schedule nor the expiry guard rotates the key"
                .to_string(),
        );
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn settings(schedule: &str, window: Option<u64>, since: &str) -> RotationSettings {
        RotationSettings {
            schedule: Some(schedule.into()),
            window: window.and_then(KeyDuration::from_secs),
            period: None,
            schedule_since: Some(ts(since)),
            last_scheduled: None,
        }
    }

    #[test]
    fn cron_is_five_fields_in_utc() {
        let daily = CronSchedule::parse("0 2 * * *").expect("valid");
        assert_eq!(
            daily.next_after(ts("2026-01-01T03:00:00Z")),
            Some(ts("2026-01-02T02:00:00Z"))
        );
        assert_eq!(
            daily.next_after(ts("2026-01-02T02:00:00Z")),
            Some(ts("2026-01-03T02:00:00Z")),
            "strictly after"
        );
        assert_eq!(
            daily.last_at_or_before(ts("2026-01-02T02:00:00Z")),
            Some(ts("2026-01-02T02:00:00Z"))
        );
        assert!(CronSchedule::parse("@daily").is_ok());
        for bad in [
            "",
            "* * * *",
            "0 0 * * * *",
            "61 * * * *",
            "x y z a b",
            "0 0 30 2 *",
        ] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missed_window_waits_for_the_next_occurrence() {
        let s = settings("0 * * * *", Some(600), "2026-01-01T00:30:00Z");
        // Within the window of 01:00.
        assert_eq!(
            pending_occurrence(&s, ts("2026-01-01T01:05:00Z")),
            Some(ts("2026-01-01T01:00:00Z"))
        );
        // The window of 01:00 has passed: the next is 02:00.
        assert_eq!(
            pending_occurrence(&s, ts("2026-01-01T01:11:00Z")),
            Some(ts("2026-01-01T02:00:00Z"))
        );
        // Still failing at 02:05: 02:00's window is open.
        assert_eq!(
            pending_occurrence(&s, ts("2026-01-01T02:05:00Z")),
            Some(ts("2026-01-01T02:00:00Z"))
        );
        // Without a window a missed occurrence stays due.
        let s = settings("0 * * * *", None, "2026-01-01T00:30:00Z");
        assert_eq!(
            pending_occurrence(&s, ts("2026-01-01T05:00:00Z")),
            Some(ts("2026-01-01T01:00:00Z"))
        );
    }

    /// A chain as the schedule sees it: a credential created and expiring at the given times,
    /// rotated `rotate_before` ahead of its expiry.
    struct Chain {
        created: Timestamp,
        expires: Timestamp,
        rotate_before: Option<KeyDuration>,
        rotation: RotationSettings,
        auto_rotate: bool,
        history: crate::engine::chain::health::RotationHistory,
    }

    impl Rotating for Chain {
        fn auto_rotate(&self) -> bool {
            self.auto_rotate
        }
        fn settings(&self) -> &RotationSettings {
            &self.rotation
        }
        fn history(&self) -> &crate::engine::chain::health::RotationHistory {
            &self.history
        }
        fn current_created(&self) -> Option<Timestamp> {
            Some(self.created)
        }
        fn expires_at(&self) -> Option<Timestamp> {
            Some(self.expires)
        }
        fn margin(&self) -> Option<KeyDuration> {
            self.rotate_before
        }
        fn expiry_guard(&self, _skew: Option<jiff::SignedDuration>) -> Option<Timestamp> {
            self.expires
                .checked_sub(self.rotate_before?.as_signed())
                .ok()
        }
        fn margin_policy(&self) -> Option<KeyDuration> {
            self.rotate_before
        }
        fn lifetime_policy(&self) -> Option<KeyDuration> {
            KeyDuration::from_secs(
                u64::try_from(self.expires.duration_since(self.created).as_secs()).ok()?,
            )
        }
    }

    fn config(created: &str, expires: &str, rotation: RotationSettings, auto: bool) -> Chain {
        Chain {
            created: ts(created),
            expires: ts(expires),
            rotate_before: KeyDuration::from_secs(7200),
            rotation,
            auto_rotate: auto,
            history: Default::default(),
        }
    }

    #[test]
    fn the_earliest_reason_wins_and_disabled_means_never() {
        let created = "2026-01-01T00:00:00Z";
        let expires = "2026-01-02T00:00:00Z"; // guard at 22:00
        let now = ts("2026-01-01T00:30:00Z");
        let period = |secs| RotationSettings {
            period: KeyDuration::from_secs(secs),
            ..RotationSettings::default()
        };
        let next = |c: &Chain| next_rotation(c, now).map(|n| (n.at, n.reason));
        assert_eq!(
            next(&config(created, expires, RotationSettings::default(), true)),
            Some((ts("2026-01-01T22:00:00Z"), Reason::Expiry))
        );
        assert_eq!(
            next(&config(created, expires, period(3600), true)),
            Some((ts("2026-01-01T01:00:00Z"), Reason::Period))
        );
        // A period longer than the key's life: the guard comes first.
        assert_eq!(
            next(&config(created, expires, period(86_400), true)),
            Some((ts("2026-01-01T22:00:00Z"), Reason::Expiry))
        );
        let daily = settings("0 2 * * *", None, "2026-01-01T00:10:00Z");
        assert_eq!(
            next(&config(created, expires, daily.clone(), true)),
            Some((ts("2026-01-01T02:00:00Z"), Reason::Schedule))
        );
        assert_eq!(next(&config(created, expires, daily.clone(), false)), None);
        let tick = std::time::Duration::from_secs(70);
        assert!(
            due(
                &config(created, expires, daily.clone(), true),
                now,
                None,
                tick
            )
            .is_none()
        );
        assert_eq!(
            due(
                &config(created, expires, daily, true),
                ts("2026-01-01T02:00:30Z"),
                None,
                tick
            )
            .map(|n| n.reason),
            Some(Reason::Schedule)
        );
    }

    #[test]
    fn the_expiry_guard_counts_the_next_tick() {
        // A 3-minute key with a 30 s margin: the guard is at 02:30.
        let created = "2026-01-01T00:00:00Z";
        let expires = "2026-01-01T00:03:00Z";
        let mut c = config(created, expires, RotationSettings::default(), true);
        c.rotate_before = KeyDuration::from_secs(30);
        let tick = std::time::Duration::from_secs(70);
        let at = |t: &str| due(&c, ts(t), None, tick).map(|n| (n.at, n.reason));
        // 71 s before the guard: the next tick (within 70 s) still comes before it.
        assert_eq!(at("2026-01-01T00:01:19Z"), None);
        // 69 s before: the next tick may come after the guard, and 30 s later the key is
        // dead: due now, by the expiry guard.
        assert_eq!(
            at("2026-01-01T00:01:21Z"),
            Some((ts("2026-01-01T00:02:30Z"), Reason::Expiry))
        );
        assert_eq!(
            at("2026-01-01T00:02:31Z"),
            Some((ts("2026-01-01T00:02:30Z"), Reason::Expiry))
        );
        // The schedule and the period are never early: a period due in 60 s is not due.
        let mut p = config(
            created,
            "2026-01-02T00:00:00Z",
            RotationSettings {
                period: KeyDuration::from_secs(3600),
                ..RotationSettings::default()
            },
            true,
        );
        assert!(due(&p, ts("2026-01-01T00:59:00Z"), None, tick).is_none());
        assert_eq!(
            due(&p, ts("2026-01-01T01:00:00Z"), None, tick).map(|n| n.reason),
            Some(Reason::Period)
        );
        // Disabled: never, however close the guard.
        p.auto_rotate = false;
        assert!(due(&p, ts("2026-01-01T21:59:00Z"), None, tick).is_none());
    }

    #[test]
    fn a_scheduled_rotation_moves_the_anchor() {
        let mut s = settings("* * * * *", None, "2026-01-01T00:00:30Z");
        assert_eq!(
            pending_occurrence(&s, ts("2026-01-01T00:00:40Z")),
            Some(ts("2026-01-01T00:01:00Z"))
        );
        after_rotation(&mut s, Some(Reason::Schedule), ts("2026-01-01T00:01:20Z"));
        assert_eq!(
            pending_occurrence(&s, ts("2026-01-01T00:01:30Z")),
            Some(ts("2026-01-01T00:02:00Z"))
        );
        after_rotation(&mut s, Some(Reason::Expiry), ts("2026-01-01T00:02:20Z"));
        assert_eq!(s.last_scheduled, Some(ts("2026-01-01T00:01:20Z")));
    }
}
