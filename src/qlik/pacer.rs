//! Pacing of Qlik's tier-2 calls (create, patch, delete: 100 per minute per user at Qlik).
//!
//! Qlik answers the call that exceeds the limit with 429 and then blocks the whole tier for
//! that user until the window ends, so a burst of revocations (`lease revoke -prefix`, where
//! the server runs up to 200 revocations at once) would otherwise spend most of its calls on
//! 429s and retries. The pacer is a token bucket per mount: it refills at 90 % of the limit
//! with a burst of 10 %, so that any window of the limit's length sees at most the limit.
//! Deletions wait for a slot (or are told how long the wait would be, to defer the deletion);
//! user-facing mints never wait but take their slot, so background deletions yield to them.
//! A 429 that reaches the client anyway (another client of the same user) blocks the bucket for
//! its `retry-after`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Qlik's tier-2 limit: calls per user and window.
pub const QLIK_TIER2_LIMIT: u32 = 100;
/// Qlik's rate-limit window.
pub const QLIK_TIER2_WINDOW: Duration = Duration::from_secs(60);

/// A token bucket shared by every tier-2 call of one mount.
#[derive(Debug)]
pub struct Tier2Pacer {
    per_second: f64,
    burst: f64,
    /// The most debt mints can run up: one window's worth (Qlik's window resets after that).
    floor: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Available slots; negative when slots in the future are already promised.
    tokens: f64,
    updated: Instant,
    blocked_until: Option<Instant>,
}

impl Tier2Pacer {
    /// A bucket for a limit of `limit` calls per `window` (Qlik: 100 a minute): a burst of a
    /// tenth of the limit, then the rest spread evenly over the window.
    pub fn new(limit: u32, window: Duration) -> Self {
        let limit = f64::from(limit.max(1));
        let window = window.as_secs_f64().max(0.001);
        let burst = (limit / 10.0).floor().max(1.0);
        Self {
            floor: -(limit - burst).max(1.0),
            per_second: (limit - burst).max(0.5) / window,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                updated: Instant::now(),
                blocked_until: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refill(&self, state: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.per_second).min(self.burst);
        state.updated = now;
    }

    /// Promises the next free slot if it comes within `max_wait`, and returns the wait until
    /// it. `Err(wait)`: the slot would come later than `max_wait`; nothing was promised.
    pub fn reserve(&self, max_wait: Duration) -> Result<Duration, Duration> {
        self.reserve_at(Instant::now(), max_wait)
    }

    fn reserve_at(&self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        let mut state = self.state();
        self.refill(&mut state, now);
        let after = state.tokens - 1.0;
        let for_token = if after >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-after / self.per_second)
        };
        let blocked = state
            .blocked_until
            .map(|until| until.saturating_duration_since(now))
            .unwrap_or_default();
        let wait = for_token.max(blocked);
        if wait > max_wait {
            return Err(wait);
        }
        state.tokens = after;
        Ok(wait)
    }

    /// Takes a slot without waiting (a user-facing call: Qlik decides).
    pub fn take(&self) {
        self.take_at(Instant::now());
    }

    fn take_at(&self, now: Instant) {
        let mut state = self.state();
        self.refill(&mut state, now);
        state.tokens = (state.tokens - 1.0).max(self.floor);
    }

    /// Qlik answered 429: no paced call before `retry_after` has passed.
    pub fn block_for(&self, retry_after: Duration) {
        self.block_at(Instant::now(), retry_after);
    }

    fn block_at(&self, now: Instant, retry_after: Duration) {
        let until = now + retry_after;
        let mut state = self.state();
        if state.blocked_until.is_none_or(|b| b < until) {
            state.blocked_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_never_sees_more_than_the_limit() {
        let pacer = Tier2Pacer::new(100, QLIK_TIER2_WINDOW);
        let start = Instant::now();
        // Callers take every slot as soon as it is promised; count slots in the first minute.
        let mut admitted = 0;
        while let Ok(wait) = pacer.reserve_at(start, Duration::from_secs(3600)) {
            if wait >= Duration::from_secs(60) {
                break;
            }
            admitted += 1;
        }
        assert!(admitted <= 100, "{admitted} slots in one minute");
        assert!(admitted >= 90, "{admitted} slots in one minute");
    }

    #[test]
    fn slots_are_promised_in_order_and_refill_with_time() {
        let pacer = Tier2Pacer::new(60, QLIK_TIER2_WINDOW); // burst 6, then one every 60/54 s
        let t0 = Instant::now();
        for _ in 0..6 {
            assert_eq!(pacer.reserve_at(t0, Duration::ZERO), Ok(Duration::ZERO));
        }
        let wait = pacer.reserve_at(t0, Duration::ZERO).unwrap_err();
        assert!(wait > Duration::from_secs(1) && wait < Duration::from_millis(1200));
        let first = pacer
            .reserve_at(t0, Duration::from_secs(5))
            .unwrap_or_default();
        let second = pacer
            .reserve_at(t0, Duration::from_secs(5))
            .unwrap_or_default();
        assert!(second > first);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(pacer.reserve_at(later, Duration::ZERO), Ok(Duration::ZERO));
    }

    #[test]
    fn mints_take_slots_from_deletions() {
        let pacer = Tier2Pacer::new(10, QLIK_TIER2_WINDOW); // burst 1
        let t0 = Instant::now();
        pacer.take_at(t0);
        assert!(pacer.reserve_at(t0, Duration::ZERO).is_err());
    }

    #[test]
    fn mints_run_up_at_most_one_window_of_debt() {
        let pacer = Tier2Pacer::new(100, QLIK_TIER2_WINDOW);
        let t0 = Instant::now();
        for _ in 0..1000 {
            pacer.take_at(t0);
        }
        let wait = pacer
            .reserve_at(t0, Duration::from_secs(3600))
            .unwrap_or_default();
        assert!(wait <= Duration::from_secs(61), "{wait:?}");
    }

    #[test]
    fn a_429_blocks_until_retry_after() {
        let pacer = Tier2Pacer::new(1000, QLIK_TIER2_WINDOW);
        let t0 = Instant::now();
        pacer.block_at(t0, Duration::from_secs(7));
        assert_eq!(
            pacer.reserve_at(t0, Duration::from_secs(1)),
            Err(Duration::from_secs(7))
        );
        let later = t0 + Duration::from_secs(7);
        assert_eq!(pacer.reserve_at(later, Duration::ZERO), Ok(Duration::ZERO));
    }
}
