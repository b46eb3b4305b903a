//! Floor 2: the mount's connection to one Qlik tenant, shared by the credential kinds: the Qlik
//! client (one connection pool per configuration) and its tier-2 pacer ([`pacers`]), the
//! tenant's clock ([`clock`]), and Qlik's errors as users read them ([`qlik_error`]).

pub mod counters;
pub mod pacers;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::RwLock;

use crate::framework::RequestError;
use crate::qlik::{ClientConfig, ErrorKind, QlikClient, QlikError, Tier2Pacer};

/// Where a mount's tier-2 pacer comes from.
pub(crate) enum Pacing {
    /// Shared by the mounts of the same Qlik user in this process ([`pacers::tier2_pacer`]),
    /// for a budget of this many calls per window.
    PerUser { limit: u32, window: Duration },
    /// This mount's own (tests).
    Own(Arc<Tier2Pacer>),
}

/// The mount's Qlik client, kept while the settings it was built from (tenant, owner, CA,
/// timeout, retries) stay the same: a rebuild costs a new TLS connection (~50 ms on the next
/// call). Requests and the background deleter share it, and with it the tier-2 pacer.
pub(crate) struct ClientCache {
    pacing: Pacing,
    /// The mount's counters; every client reports its calls to them.
    pub(crate) metrics: Arc<counters::Metrics>,
    current: RwLock<Option<(String, QlikClient)>>,
}

impl ClientCache {
    pub(crate) fn new(pacing: Pacing) -> Self {
        Self {
            pacing,
            metrics: counters::Metrics::new(),
            current: RwLock::new(None),
        }
    }

    /// The client for `config`, built once per distinct configuration.
    pub(crate) async fn get(
        &self,
        settings: ClientConfig,
        owner_id: &str,
    ) -> Result<QlikClient, RequestError> {
        let fingerprint = format!(
            "{}|{}|{}|{}|{}",
            settings.tenant_url,
            owner_id,
            settings.ca_cert_pem.as_deref().unwrap_or(""),
            settings.request_timeout.as_secs(),
            settings.max_retries
        );
        if let Some((fp, client)) = self.current.read().await.as_ref()
            && *fp == fingerprint
        {
            return Ok(client.clone());
        }
        let client = self.build_for(settings, owner_id)?;
        *self.current.write().await = Some((fingerprint, client.clone()));
        Ok(client)
    }

    /// A client for `owner_id` of the tenant `settings` name, paced as this cache paces (per
    /// Qlik user, or with the mount's own pacer) and reporting to the mount's counters; not
    /// kept here (an OAuth client's bot user is another Qlik user than the key's owner).
    pub(crate) fn build_for(
        &self,
        settings: ClientConfig,
        owner_id: &str,
    ) -> Result<QlikClient, RequestError> {
        self.build_observed(settings, owner_id, self.metrics.clone())
    }

    /// [`Self::build_for`], reporting its calls to `observer` (which reports to the mount's
    /// counters too: [`counters::ClientCalls`]).
    pub(crate) fn build_observed(
        &self,
        settings: ClientConfig,
        owner_id: &str,
        observer: Arc<dyn crate::qlik::CallObserver>,
    ) -> Result<QlikClient, RequestError> {
        let pacer = match &self.pacing {
            Pacing::Own(pacer) => pacer.clone(),
            Pacing::PerUser { limit, window } => pacers::tier2_pacer(
                settings.tenant_url.as_str().trim_end_matches('/'),
                owner_id,
                *limit,
                *window,
            ),
        };
        let client = QlikClient::new_observed(settings, pacer, observer)
            .map_err(|e| RequestError::Internal(format!("cannot build the Qlik client: {e}")))?;
        Ok(client)
    }

    pub(crate) async fn forget(&self) {
        *self.current.write().await = None;
    }

    /// The tenant's clock skew as last seen by the current client, if there is one: no client
    /// is built and no fingerprint formatted (a `key` read and every tick ask for it).
    pub(crate) async fn last_skew(&self) -> Option<jiff::SignedDuration> {
        self.current
            .read()
            .await
            .as_ref()
            .and_then(|(_, client)| client.clock_skew())
    }
}

/// Maps a Qlik error to the errors table of the README: what failed, and what to do.
pub(crate) fn qlik_error(error: &QlikError, doing: &str) -> RequestError {
    match error.kind() {
        ErrorKind::Unauthorized => RequestError::bad_request(format!(
            "{doing}: Qlik rejected the stored key (401): it expired or was revoked at Qlik. \
             Write a valid key to config (vault write <mount>/config api_key=…). Qlik said: {error}"
        )),
        ErrorKind::PermissionDenied => RequestError::bad_request(format!(
            "{doing}: the Qlik user owning the stored key lacks a permission (403). Creating keys \
             needs \"Manage API keys\" (User Default or a custom role). Qlik said: {error}"
        )),
        ErrorKind::RateLimited => RequestError::status(
            429,
            format!(
                "{doing}: Qlik's rate limit is reached: {error}. Retry after the time Qlik gives."
            ),
        ),
        _ => match error.http_status() {
            400 => RequestError::bad_request(format!("{doing}: {error}")),
            status => RequestError::status(status, format!("{doing}: {error}")),
        },
    }
}
