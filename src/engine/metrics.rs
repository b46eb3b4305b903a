//! `metrics`: the mount's figures in the Prometheus text format (0.0.4), encoded by the
//! `prometheus-client` crate and served as a raw HTTP response (the protocol's
//! `http_raw_body`, as the PKI engine serves CRLs), so that a Prometheus server scrapes
//! `/v1/<mount>/metrics` with a token.
//!
//! Counters are per mount and live in the plugin process: they start at zero when the process
//! starts (a plugin reload, a server restart, a standby becoming active) and count what this
//! process did. `qlik_counters_start_time_seconds` says since when. Gauges come from the active
//! node's memory ([`super::status::snapshot`]: no storage read per scrape); a standby has the
//! server forward the request to the active node.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Map, json};

use super::status::{self, ChainState, Snapshot};
use super::{QlikBackend, Route};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};
use crate::qlik::CallObserver;

type Labels = Vec<(String, String)>;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

static RESPONSE: &[FieldSpec] = &[FieldSpec::new(
    "metrics",
    FieldKind::String,
    "The body is the Prometheus text format (0.0.4), Content-Type text/plain; version=0.0.4, not JSON.",
)];

/// The `metrics` path.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::Metrics,
    pattern: "metrics",
    fields: &[],
    operations: &[OperationSpec::new(
        Operation::Read,
        "The mount's counters and gauges in the Prometheus text format (a raw response, not JSON).",
    )
    .returns(RESPONSE)],
    existence_check: false,
    synopsis: "Prometheus metrics of this mount (raw text, for a scraper with a token).",
    description: "\
Answers with the Prometheus text exposition format (version 0.0.4), Content-Type \
`text/plain; version=0.0.4; charset=utf-8`, not with JSON: point a Prometheus scrape job at \
`/v1/<mount>/metrics` with a token allowed to read it. Counters (`*_total`) count what this \
plugin process did on this mount since it started (`qlik_counters_start_time_seconds`); \
gauges come from the active node's memory (a standby forwards the request). No secret is in it.",
};

/// The counters of one mount (cheap to clone: the families share their values).
pub struct Metrics {
    rotations: Family<Labels, Counter>,
    creds_minted: Counter,
    keys_deleted: Counter,
    qlik_requests: Family<Labels, Counter>,
    rate_limited: Counter,
    retry_after_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    deferred_deletions: Counter,
    started: jiff::Timestamp,
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

    /// A deletion was handed to the background deleter.
    pub fn deletion_deferred(&self) {
        self.deferred_deletions.inc();
    }

    /// The registry of one scrape: the counters, plus gauges from `snapshot`.
    fn registry(&self, snapshot: Option<&Snapshot>) -> Registry {
        let mut registry = Registry::default();
        registry.register(
            "qlik_rotations",
            "Rotations of the stored key by trigger (manual, schedule, period, expiry) and outcome",
            self.rotations.clone(),
        );
        registry.register(
            "qlik_creds_minted",
            "Dedicated keys minted by creds/<role>",
            self.creds_minted.clone(),
        );
        registry.register(
            "qlik_keys_deleted",
            "Keys deleted at Qlik (DELETE answered 2xx)",
            self.keys_deleted.clone(),
        );
        registry.register(
            "qlik_api_requests",
            "Qlik API answers by endpoint and HTTP status (status=\"error\": no answer)",
            self.qlik_requests.clone(),
        );
        registry.register(
            "qlik_rate_limited_responses",
            "Qlik answers with 429 Too Many Requests",
            self.rate_limited.clone(),
        );
        registry.register(
            "qlik_retry_after_wait_seconds",
            "Seconds waited before retries because Qlik answered 429 with retry-after",
            self.retry_after_seconds.clone(),
        );
        registry.register(
            "qlik_deferred_deletions",
            "Deletions handed to the background deleter (Qlik's tier-2 budget was in use)",
            self.deferred_deletions.clone(),
        );
        registry.register(
            "qlik_counters_start_time_seconds",
            "When this process's counters started (Unix time); they restart with the plugin process",
            gauge(self.started.as_second()),
        );
        if let Some(s) = snapshot {
            let state: Family<Labels, Gauge> = Family::default();
            for candidate in ChainState::ALL {
                state
                    .get_or_create(&vec![("state".into(), candidate.name().into())])
                    .set(i64::from(candidate == s.state));
            }
            registry.register(
                "qlik_chain_state",
                "1 for the chain's current state (healthy, at_risk, broken), 0 for the others",
                state,
            );
            registry.register(
                "qlik_stored_key_expiry_timestamp_seconds",
                "When the stored key expires (Unix time)",
                gauge(s.key_expires_at.as_second()),
            );
            registry.register(
                "qlik_stored_key_seconds_left",
                "Seconds until the stored key expires",
                gauge(s.seconds_left),
            );
            registry.register(
                "qlik_rotate_before_seconds",
                "The expiry guard: rotation is due once less than this is left",
                gauge(s.rotate_before_secs.unwrap_or(0)),
            );
            if let Some(next) = s.next_rotation {
                let family: Family<Labels, Gauge> = Family::default();
                family
                    .get_or_create(&vec![("reason".into(), next.reason.name().into())])
                    .set(next.at.as_second());
                registry.register(
                    "qlik_next_rotation_timestamp_seconds",
                    "When the next automatic rotation is due (Unix time), by reason",
                    family,
                );
            }
            if let Some(at) = s.history.last_success {
                registry.register(
                    "qlik_last_rotation_success_timestamp_seconds",
                    "When the stored key was last rotated successfully (Unix time)",
                    gauge(at.as_second()),
                );
            }
            registry.register(
                "qlik_rotation_consecutive_failures",
                "Rotation attempts failed since the last success",
                gauge(i64::from(s.history.consecutive_failures)),
            );
            registry.register(
                "qlik_deferred_deletions_pending",
                "Keys whose deletion at Qlik is pending (delete_pending)",
                gauge(count(s.records.deletions_pending)),
            );
            let kinds: Family<Labels, Gauge> = Family::default();
            for (kind, n) in &s.records.keys_by_kind {
                kinds
                    .get_or_create(&vec![("kind".into(), (*kind).into())])
                    .set(count(*n));
            }
            registry.register(
                "qlik_tracked_keys",
                "Keys this mount tracks, by kind",
                kinds,
            );
            registry.register(
                "qlik_live_holds",
                "Leases holding the stored, a superseded or a foreign key",
                gauge(count(s.records.live_holds)),
            );
        }
        registry
    }
}

fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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

/// The metrics text of a mount.
pub async fn render(backend: &QlikBackend) -> Result<String, RequestError> {
    let snapshot = status::snapshot(backend).await?;
    let registry = backend.metrics().registry(snapshot.as_ref());
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)
        .map_err(|e| RequestError::Internal(format!("encoding the metrics: {e}")))?;
    Ok(text)
}

pub(super) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    if request.operation != Operation::Read {
        return Err(RequestError::UnsupportedOperation);
    }
    let text = render(backend).await?;
    let mut data = Map::new();
    data.insert("http_status_code".into(), json!(200));
    data.insert("http_content_type".into(), json!(CONTENT_TYPE));
    data.insert(
        "http_raw_body".into(),
        json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())),
    );
    Ok(Response::data(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &Metrics) -> String {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &metrics.registry(None)).expect("encode");
        text
    }

    #[test]
    fn answers_and_waits_become_counters() {
        let metrics = Metrics::default();
        metrics.answered("DELETE /api/v1/api-keys/{id}", Some(204));
        metrics.answered("DELETE /api/v1/api-keys/{id}", Some(404));
        metrics.answered("POST /api/v1/api-keys", Some(429));
        metrics.answered("GET /api/v1/users/me", None);
        metrics.retry_after_wait("POST /api/v1/api-keys", Duration::from_millis(1500));
        metrics.rotation("schedule", false);
        metrics.rotation("schedule", false);
        metrics.cred_minted();
        let text = encoded(&metrics);
        for line in [
            "qlik_keys_deleted_total 1\n",
            "qlik_rate_limited_responses_total 1\n",
            "qlik_retry_after_wait_seconds_total 1.5\n",
            "qlik_creds_minted_total 1\n",
            "qlik_rotations_total{trigger=\"schedule\",outcome=\"failure\"} 2\n",
            "qlik_api_requests_total{endpoint=\"GET /api/v1/users/me\",status=\"error\"} 1\n",
            "qlik_api_requests_total{endpoint=\"DELETE /api/v1/api-keys/{id}\",status=\"404\"} 1\n",
            "# TYPE qlik_rotations_total counter\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(
            !text.contains("qlik_chain_state"),
            "no gauges without a config"
        );
    }
}
