//! The tenant's clock, seen recently before a `key` lease is given.
//!
//! Key expiries are instants of the tenant's clock; the engine turns them into its own
//! from the `Date` header of Qlik's answers ([`crate::qlik::QlikClient::clock_skew`]). A
//! mount that makes no call (idle: a tick calls Qlik only for due work) would otherwise give
//! `key` leases from a skew measured long ago, and a tenant clock that stepped forward since
//! would make the lease outlive its key by the step. So a `key` read whose last answer from
//! Qlik is older than [`FRESH`] first reads the stored key's record (`GET
//! /api/v1/api-keys/{id}`, Qlik's tier 1, within [`CHECK_BUDGET`]): at most one such call
//! per mount every [`FRESH`], shared by the reads that come meanwhile. If Qlik does not
//! answer, the read is still served with the skew seen last (the stored key is fine; only a
//! step of the tenant's clock since that answer would go unseen).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::engine::QlikBackend;
use crate::engine::api_key::config::Config;

/// How old the last answer's `Date` may be for a `key` lease to be given from it.
pub const FRESH: Duration = Duration::from_secs(5);

/// The most a `key` read waits for Qlik's answer (retries included).
pub const CHECK_BUDGET: Duration = Duration::from_secs(2);

/// When a `key` read last asked Qlik for its clock (one at a time per mount).
#[derive(Default)]
pub(crate) struct ClockCheck {
    last_attempt: Mutex<Option<Instant>>,
}

/// The tenant's clock skew for a `key` lease on `config`'s stored key: the last one seen if
/// seen within [`FRESH`], else after one call to Qlik (see the module's documentation).
pub(crate) async fn fresh_skew(
    backend: &QlikBackend,
    config: &Config,
) -> Option<jiff::SignedDuration> {
    let client = match backend.client(config).await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "no Qlik client to read the tenant's clock");
            return backend.last_clock_skew().await;
        }
    };
    let fresh =
        |client: &crate::qlik::QlikClient| client.clock_seen_ago().is_some_and(|ago| ago <= FRESH);
    if fresh(&client) {
        return client.clock_skew();
    }
    let mut last = backend.clock_check.last_attempt.lock().await;
    // Another read may have asked while this one waited, or asked in vain a moment ago.
    if fresh(&client) || last.is_some_and(|at| at.elapsed() <= FRESH) {
        return client.clock_skew();
    }
    *last = Some(Instant::now());
    let key_id = &config.key_info.key_id;
    match client
        .get_key_within(&config.key.token, key_id, CHECK_BUDGET)
        .await
    {
        Ok(_) => tracing::debug!(%key_id, "tenant clock read for a key lease"),
        // Not the clock's business, but the first sign an idle mount gets that its stored key
        // no longer works (deleted or revoked at Qlik): the key is still handed out (it is
        // what is stored), and the operator is told.
        Err(error) if error.kind() == crate::qlik::ErrorKind::Unauthorized => tracing::warn!(
            %key_id,
            %error,
            "Qlik rejected the stored key (401) when a key read checked the tenant's clock: it \
             expired or was revoked at Qlik. The key read is still served, but rotation will \
             fail until a valid key is written to config (vault write <mount>/config api_key=…)"
        ),
        Err(error) => tracing::debug!(
            %key_id,
            %error,
            "could not read the tenant's clock for a key lease; using the last one seen"
        ),
    }
    client.clock_skew()
}
