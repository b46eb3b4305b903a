//! Floor 3: Qlik OAuth M2M clients as a credential kind: the client record and its secret
//! ([`client`]), token roles ([`roles`]) and access tokens ([`tokens`]). Facts:
//! `qlik-oauth.md`; design: `docs/design.md` §3.

pub mod client;
pub mod health;
pub mod roles;
pub mod rotation;
pub mod secrets;
pub mod tokens;

use std::collections::HashMap;

use crate::engine::tenant::ClientCache;
use crate::framework::RequestError;
use crate::qlik::{ClientConfig, QlikClient};

/// The OAuth side of a mount, in memory: a Qlik client per OAuth client (each with the tier-2
/// pacer of its own bot user) and the shared tokens.
#[derive(Default)]
pub struct OAuthState {
    /// Shared tokens, by role.
    pub shared: tokens::SharedTokens,
    /// One secret rotation at a time in the mount (and none under tidy's clean-up).
    pub rotation_lock: tokio::sync::Mutex<()>,
    clients: std::sync::Mutex<HashMap<String, QlikClient>>,
}

impl OAuthState {
    /// The Qlik client for OAuth client `client_id` on the tenant `settings` name, built once
    /// per distinct settings; its tier-2 calls (tokens, revocations, secrets) are paced as
    /// the client's bot user's ([`ClientCache::build_for`]).
    pub(crate) fn qlik(
        &self,
        cache: &ClientCache,
        settings: ClientConfig,
        name: &str,
        client_id: &str,
    ) -> Result<QlikClient, RequestError> {
        let owner = format!("oauth:{client_id}");
        let fingerprint = format!(
            "{}|{owner}|{name}|{}|{}|{}",
            settings.tenant_url,
            settings.ca_cert_pem.as_deref().unwrap_or(""),
            settings.request_timeout.as_secs(),
            settings.max_retries
        );
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&fingerprint) {
            return Ok(client.clone());
        }
        let observer = std::sync::Arc::new(crate::engine::tenant::counters::ClientCalls {
            metrics: cache.metrics.clone(),
            client: name.to_string(),
        });
        let client = cache.build_observed(settings, &owner, observer)?;
        if clients.len() >= 256 {
            clients.clear();
        }
        clients.insert(fingerprint, client.clone());
        Ok(client)
    }

    /// Forgets the Qlik clients (the tenant's settings changed).
    pub fn forget_clients(&self) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
