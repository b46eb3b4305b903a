//! Deletions at Qlik that the tier-2 budget cannot take right now.
//!
//! A revocation deletes its key at Qlik at once when the mount's [`Tier2Pacer`] has a slot
//! within [`REVOKE_PACE_WAIT`]. During a mass revocation (`lease revoke -prefix`: the server
//! runs up to 200 revocations at once, each with a 90 s deadline and six attempts in about ten
//! minutes) most of them cannot get one: waiting would time out at the server and spend its
//! retries, and calling anyway would earn 429s and block the whole tier at Qlik. Instead the key
//! is marked `delete_pending` in storage (durable: `tidy` and the periodic run delete such keys
//! too), the lease ends, and this background task deletes the keys at the pace Qlik allows.
//!
//! [`Tier2Pacer`]: crate::qlik::Tier2Pacer

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use crate::engine::api_key::config::{Config, STORAGE_KEY};
use crate::engine::chain::records::{KeyRecord, KeyState};
use crate::engine::chain::schema;
use crate::engine::tenant::ClientCache;
use crate::framework::Storage;
use crate::qlik::ErrorKind;
use tracing::Instrument;

/// How long a revocation may wait for a tier-2 slot before it hands the deletion over.
pub const REVOKE_PACE_WAIT: Duration = Duration::from_secs(20);

/// The mount's queue of deferred deletions and the task that works it off.
pub struct Deleter {
    storage: Arc<dyn Storage>,
    clients: Arc<ClientCache>,
    state: Mutex<State>,
    /// The span current when the mount's backend was built (the framework's mount span, so
    /// the task's lines name the mount).
    span: tracing::Span,
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    running: bool,
    stopped: bool,
}

impl Deleter {
    pub(crate) fn new(storage: Arc<dyn Storage>, clients: Arc<ClientCache>) -> Arc<Self> {
        Arc::new(Self {
            storage,
            clients,
            state: Mutex::new(State::default()),
            span: tracing::Span::current(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a key already marked `delete_pending` in storage; starts the task if idle.
    pub fn enqueue(self: &Arc<Self>, key_id: String) {
        let mut state = self.state();
        if state.stopped {
            return;
        }
        state.queue.push_back(key_id);
        self.clients.metrics.deletion_deferred();
        if !state.running {
            state.running = true;
            let me = self.clone();
            let span = self.span.clone();
            tokio::spawn(async move { me.run().await }.instrument(span));
        }
    }

    /// The mount goes away: stop after the current deletion (the records stay for `tidy`).
    pub fn stop(&self) {
        let mut state = self.state();
        state.stopped = true;
        state.queue.clear();
    }

    /// Keys waiting.
    pub fn pending(&self) -> usize {
        self.state().queue.len()
    }

    fn next(&self) -> Option<String> {
        let mut state = self.state();
        let next = if state.stopped {
            None
        } else {
            state.queue.pop_front()
        };
        if next.is_none() {
            state.running = false;
        }
        next
    }

    async fn run(self: Arc<Self>) {
        let mut deleted = 0usize;
        while let Some(key_id) = self.next() {
            let config: Option<Config> = match schema::load(self.storage.as_ref(), STORAGE_KEY)
                .await
            {
                Ok(config) => config,
                Err(error) => {
                    tracing::warn!(%error, "deferred deletions: cannot read the config; tidy retries");
                    continue;
                }
            };
            let Some(config) = config else {
                // Revocation without config forgets the key (it expires at Qlik by itself).
                let _ = KeyRecord::forget(self.storage.as_ref(), &key_id).await;
                continue;
            };
            let settings = match config.client_config() {
                Ok(settings) => settings,
                Err(error) => {
                    tracing::warn!(%error, "deferred deletions: no Qlik client; tidy retries");
                    continue;
                }
            };
            let qlik = match self.clients.get(settings, &config.key_info.owner_id).await {
                Ok(qlik) => qlik,
                Err(error) => {
                    tracing::warn!(%error, "deferred deletions: no Qlik client; tidy retries");
                    continue;
                }
            };
            match qlik.delete_key(&config.key.token, &key_id).await {
                Ok(_) => {
                    deleted += 1;
                    if let Err(error) = KeyRecord::forget(self.storage.as_ref(), &key_id).await {
                        tracing::warn!(key_id, %error, "deferred deletion done, record kept");
                    }
                }
                Err(error) if error.kind() == ErrorKind::RateLimited => {
                    // The pacer (or Qlik) has no slot yet: back in the queue, after a pause.
                    let wait = match &error {
                        crate::qlik::QlikError::RateLimited {
                            retry_after: Some(d),
                            ..
                        } => (*d).min(Duration::from_secs(30)),
                        _ => Duration::from_secs(1),
                    };
                    self.state().queue.push_front(key_id);
                    tokio::time::sleep(wait).await;
                }
                Err(error) => {
                    tracing::warn!(key_id, %error, "deferred deletion failed; tidy retries");
                    if let Ok(Some(mut record)) =
                        KeyRecord::load(self.storage.as_ref(), &key_id).await
                    {
                        record.state = KeyState::DeletePending;
                        record.last_error = Some(error.to_string());
                        let _ = record.save(self.storage.as_ref()).await;
                    }
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "deferred deletions done");
        }
    }
}
