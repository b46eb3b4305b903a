//! What the mounts of one Qlik user share in one plugin process.
//!
//! Qlik's tier-2 limit (100 key creations and deletions a minute) is per user, not per
//! client: two mounts configured with keys of the same owner draw on one budget. Each mount
//! paces its calls with a [`Tier2Pacer`]; mounts of the same tenant and owner (and the same
//! mount options for the budget) share one, so that together they stay within the user's
//! limit. A pacer lives as long as a mount's client holds it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::qlik::Tier2Pacer;

type Pacers = HashMap<(String, String, u32, u128), Weak<Tier2Pacer>>;

fn pacers() -> std::sync::MutexGuard<'static, Pacers> {
    static PACERS: OnceLock<Mutex<Pacers>> = OnceLock::new();
    PACERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The tier-2 pacer of `owner` at `tenant_url`, for a budget of `limit` calls per `window`.
pub fn tier2_pacer(tenant_url: &str, owner: &str, limit: u32, window: Duration) -> Arc<Tier2Pacer> {
    let key = (
        tenant_url.to_string(),
        owner.to_string(),
        limit,
        window.as_millis(),
    );
    let mut pacers = pacers();
    if let Some(pacer) = pacers.get(&key).and_then(Weak::upgrade) {
        return pacer;
    }
    pacers.retain(|_, pacer| pacer.strong_count() > 0);
    let pacer = Arc::new(Tier2Pacer::new(limit, window));
    pacers.insert(key, Arc::downgrade(&pacer));
    pacer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_of_one_user_share_a_pacer_and_others_do_not() {
        let minute = Duration::from_secs(60);
        let a = tier2_pacer("https://t", "u1", 100, minute);
        let b = tier2_pacer("https://t", "u1", 100, minute);
        assert!(Arc::ptr_eq(&a, &b));
        let other_user = tier2_pacer("https://t", "u2", 100, minute);
        assert!(!Arc::ptr_eq(&a, &other_user));
        let other_budget = tier2_pacer("https://t", "u1", 50, minute);
        assert!(!Arc::ptr_eq(&a, &other_budget));
        drop((a, b));
        // Gone with its last holder: a new one starts with a full bucket.
        let fresh = tier2_pacer("https://t", "u1", 100, minute);
        assert_eq!(Arc::strong_count(&fresh), 1);
    }
}
