//! Time on this machine's clock: when a credential Qlik dated by the tenant's clock dies here,
//! and how long is left until then.

use std::time::Duration;

/// When a key Qlik says expires at `expiry` dies by this machine's clock, never later: the
/// earlier of two estimates, each a little early rather than late. From the mint's answer:
/// the key's own lifetime (`expiry - created`, both of the tenant's clock) from the moment
/// the answer arrived, less a second (the answer took some time to arrive). From the
/// tenant's `Date` header: `expiry - skew` ([`QlikClient::clock_skew`], rounded up). Without
/// either, `expiry` itself. Lease TTLs and rotation times use this, so a tenant clock that
/// runs ahead of ours can never give a lease that outlives its key.
pub fn local_deadline(
    created: Option<jiff::Timestamp>,
    expiry: jiff::Timestamp,
    answered: jiff::Timestamp,
    skew: Option<jiff::SignedDuration>,
) -> jiff::Timestamp {
    let by_life = created.and_then(|created| {
        let life = expiry.duration_since(created);
        answered
            .checked_add(life)
            .and_then(|t| t.checked_sub(jiff::SignedDuration::from_secs(1)))
            .ok()
    });
    let by_date = skew.and_then(|skew| expiry.checked_sub(skew).ok());
    match (by_life, by_date) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => expiry,
    }
}

/// Seconds from now to `expires_at` (at least one second).
pub fn ttl_until(expires_at: jiff::Timestamp) -> Duration {
    let secs = expires_at.duration_since(jiff::Timestamp::now()).as_secs();
    Duration::from_secs(u64::try_from(secs).unwrap_or(0).max(1))
}
