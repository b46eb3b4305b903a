//! Per-user, per-tier rate limits (qlik-api-keys.md §7, §14.12).
//!
//! A fixed window per (user, tier). The request that exceeds the limit blocks the whole
//! tier for that user until the window ends; while blocked every call in the tier gets 429
//! with `retry-after`, the other tier is untouched. No `X-RateLimit-*` headers (§16.14).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Qlik's two tiers for the endpoints the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// list, get, get-config, users, tenants
    One,
    /// create, patch, delete, patch-config
    Two,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: HashMap<(String, Tier), Window>,
}

impl RateLimiter {
    /// Counts one request; `Err(retry_after_seconds)` when the tier is blocked.
    pub fn check(
        &mut self,
        user_id: &str,
        tier: Tier,
        limit: u32,
        window: Duration,
    ) -> Result<(), u64> {
        let now = Instant::now();
        let entry = self
            .windows
            .entry((user_id.to_string(), tier))
            .or_insert(Window {
                started: now,
                count: 0,
                blocked_until: None,
            });
        if let Some(until) = entry.blocked_until {
            if now < until {
                return Err(seconds_until(now, until));
            }
            entry.blocked_until = None;
        }
        if now.duration_since(entry.started) >= window {
            entry.started = now;
            entry.count = 0;
        }
        entry.count += 1;
        if entry.count > limit {
            let until = entry.started + window;
            entry.blocked_until = Some(until);
            return Err(seconds_until(now, until));
        }
        Ok(())
    }

    /// Forgets every window (settings changed).
    pub fn reset(&mut self) {
        self.windows.clear();
    }
}

/// Whole seconds to wait, rounded up, at least 1 (the header is an integer).
fn seconds_until(now: Instant, until: Instant) -> u64 {
    let wait = until.saturating_duration_since(now);
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}
