//! The server's periodic tick as this mount sees it: when it last came, how far apart ticks
//! come, and so how far ahead the expiry guard must look.
//!
//! The server calls `rollback` on every mount about once a minute (OpenBao and Vault:
//! `rollbackPeriod`, one minute), later under load. A key whose margin passes just after a
//! tick is found "not yet due" by that tick, and the next tick may come after the key died:
//! with 3-minute keys and `rotate_before=PT30S`, 13 of 20 chains died that way. So the expiry
//! guard counts the next tick: a key whose margin will have passed by the time the next tick
//! is expected is due now ([`TickClock::lookahead`]). A key is then rotated at the last tick
//! before less than `rotate_before` is left, never after.

use std::sync::Mutex;
use std::time::Duration;

use std::time::Instant;

/// The server's tick period (OpenBao and Vault: one minute).
pub const PERIOD: Duration = Duration::from_secs(60);
/// Added to the expected interval: a tick is late by a few seconds when the server is busy
/// (every mount is ticked in turn, and a tick that rotates takes seconds).
pub const SLACK: Duration = Duration::from_secs(10);
/// Observed intervals longer than this are not ticks that came late but ticks that did not
/// come (a plugin reload, a sealed server): they do not set the lookahead.
const LONGEST_INTERVAL: Duration = Duration::from_secs(300);

/// When this mount's ticks came.
#[derive(Debug)]
pub(crate) struct TickClock(Mutex<TickState>);

impl Default for TickClock {
    fn default() -> Self {
        Self(Mutex::new(TickState {
            since: Instant::now(),
            last: None,
            interval: None,
        }))
    }
}

#[derive(Debug, Clone, Copy)]
struct TickState {
    /// When this mount's backend was made (ticks are counted from here).
    since: Instant,
    last: Option<Instant>,
    /// The interval between the last two ticks, when it was a plausible one.
    interval: Option<Duration>,
}

impl TickClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, TickState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A tick has come.
    pub(crate) fn tick(&self) {
        self.tick_at(Instant::now());
    }

    fn tick_at(&self, now: Instant) {
        let mut state = self.lock();
        if let Some(last) = state.last {
            let interval = now.duration_since(last);
            if interval <= LONGEST_INTERVAL {
                state.interval = Some(interval);
            }
        }
        state.last = Some(now);
    }

    /// How long ago the last tick came, or (none yet) since the backend was made; and
    /// whether one came at all.
    pub(crate) fn quiet_for(&self) -> (Duration, bool) {
        let state = *self.lock();
        let from = state.last.unwrap_or(state.since);
        (from.elapsed(), state.last.is_some())
    }

    /// How far ahead of now the next tick may come: the period or the last interval seen,
    /// whichever is longer, plus [`SLACK`].
    pub(crate) fn lookahead(&self) -> Duration {
        let interval = self.lock().interval.unwrap_or(PERIOD).max(PERIOD);
        interval + SLACK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookahead_follows_late_ticks_but_not_missing_ones() {
        let clock = TickClock::default();
        assert_eq!(clock.lookahead(), PERIOD + SLACK, "before any tick");
        assert!(!clock.quiet_for().1, "no tick yet");
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        clock.tick_at(start);
        clock.tick_at(at(30));
        assert_eq!(
            clock.lookahead(),
            PERIOD + SLACK,
            "never shorter than the period"
        );
        clock.tick_at(at(125));
        assert_eq!(
            clock.lookahead(),
            Duration::from_secs(95) + SLACK,
            "a late tick"
        );
        clock.tick_at(at(3725));
        assert_eq!(
            clock.lookahead(),
            Duration::from_secs(95) + SLACK,
            "an hour without ticks is no interval"
        );
    }
}
