//! The fake tenant's movable clock: fake now = real now + an offset tests can advance.
//!
//! Key expiry and `status` are computed from this clock, so a test can jump a day ahead
//! without waiting. Rate-limit windows use real time (`Instant`) on purpose: they must
//! measure what a client really waits.

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};

/// Real time plus an offset in milliseconds.
#[derive(Debug, Default)]
pub struct FakeClock {
    offset_ms: AtomicI64,
}

impl FakeClock {
    /// The fake "now", truncated to milliseconds (the precision the fake emits).
    pub fn now(&self) -> Timestamp {
        let real = Timestamp::now().as_millisecond();
        let shifted = real.saturating_add(self.offset_ms.load(Ordering::Relaxed));
        Timestamp::from_millisecond(shifted).unwrap_or(Timestamp::MAX)
    }

    /// Moves the clock forward (or backward, for a negative value).
    pub fn advance(&self, by: SignedDuration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Current offset from real time.
    pub fn offset(&self) -> SignedDuration {
        SignedDuration::from_millis(self.offset_ms.load(Ordering::Relaxed))
    }
}

/// RFC 3339 UTC with `Z` and always three fractional digits, e.g. `2026-11-26T05:00:00.123Z`.
pub fn rfc3339_millis(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
