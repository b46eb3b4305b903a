//! The counters of one mount: Qlik's answers (every client reports its calls here), rotations,
//! minted and deleted keys. `paths::metrics` renders them with the chain's gauges.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::qlik::CallObserver;

/// Metric labels.
pub type Labels = Vec<(String, String)>;

/// The counters of one mount (cheap to clone: the families share their values).
pub struct Metrics {
    pub(crate) rotations: Family<Labels, Counter>,
    pub(crate) creds_minted: Counter,
    pub(crate) keys_deleted: Counter,
    pub(crate) qlik_requests: Family<Labels, Counter>,
    pub(crate) rate_limited: Counter,
    pub(crate) retry_after_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    pub(crate) deferred_deletions: Counter,
    pub(crate) oauth_tokens: Family<Labels, Counter>,
    pub(crate) secret_rotations: Family<Labels, Counter>,
    pub(crate) oauth_calls: Family<Labels, Counter>,
    pub(crate) started: jiff::Timestamp,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            rotations: Family::default(),
            creds_minted: Counter::default(),
            keys_deleted: Counter::default(),
            qlik_requests: Family::default(),
            rate_limited: Counter::default(),
            retry_after_seconds: Counter::default(),
            deferred_deletions: Counter::default(),
            oauth_tokens: Family::default(),
            secret_rotations: Family::default(),
            oauth_calls: Family::default(),
            started: jiff::Timestamp::now(),
        }
    }
}

impl Metrics {
    /// New counters at zero.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A rotation ended: `trigger` is `manual`, `schedule`, `period` or `expiry`.
    pub fn rotation(&self, trigger: &str, success: bool) {
        let outcome = if success { "success" } else { "failure" };
        self.rotations
            .get_or_create(&vec![
                ("trigger".into(), trigger.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }

    /// A `creds` key was minted.
    pub fn cred_minted(&self) {
        self.creds_minted.inc();
    }

    /// An access token lease of OAuth client `client` was handed out (`shared`: from a
    /// shared role).
    pub fn oauth_token_issued(&self, client: &str, shared: bool) {
        self.oauth_tokens
            .get_or_create(&vec![
                ("client".into(), client.into()),
                ("shared".into(), shared.to_string()),
            ])
            .inc();
    }

    /// A client secret rotation ended: `trigger` is `manual`, `schedule` or `period`.
    pub fn secret_rotation(&self, trigger: &str, success: bool) {
        let outcome = if success { "success" } else { "failure" };
        self.secret_rotations
            .get_or_create(&vec![
                ("trigger".into(), trigger.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }

    /// A deletion was handed to the background deleter.
    pub fn deletion_deferred(&self) {
        self.deferred_deletions.inc();
    }
}

impl CallObserver for Metrics {
    fn answered(&self, operation: &str, status: Option<u16>) {
        let status_label = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.qlik_requests
            .get_or_create(&vec![
                ("endpoint".into(), operation.to_string()),
                ("status".into(), status_label),
            ])
            .inc();
        if status == Some(429) {
            self.rate_limited.inc();
        }
        if operation.starts_with("DELETE /api/v1/api-keys/")
            && status.is_some_and(|s| (200..300).contains(&s))
        {
            self.keys_deleted.inc();
        }
    }

    fn retry_after_wait(&self, _operation: &str, wait: Duration) {
        self.retry_after_seconds.inc_by(wait.as_secs_f64());
    }
}

/// The calls of one OAuth client's Qlik client: counted with the mount's (every endpoint and
/// status), and its token calls also by client (`qlik_oauth_token_calls{client,status}`).
pub struct ClientCalls {
    /// The mount's counters.
    pub metrics: Arc<Metrics>,
    /// The client's name in the mount.
    pub client: String,
}

impl CallObserver for ClientCalls {
    fn answered(&self, operation: &str, status: Option<u16>) {
        self.metrics.answered(operation, status);
        if operation.starts_with("POST /oauth/token") {
            let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
            self.metrics
                .oauth_calls
                .get_or_create(&vec![
                    ("client".into(), self.client.clone()),
                    ("status".into(), status),
                ])
                .inc();
        }
    }

    fn retry_after_wait(&self, operation: &str, wait: Duration) {
        self.metrics.retry_after_wait(operation, wait);
    }
}
