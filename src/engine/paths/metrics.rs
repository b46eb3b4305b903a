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

use base64::Engine as _;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Map, json};

use super::status::{self, Snapshot};
use crate::engine::QlikBackend;
use crate::engine::Route;
use crate::engine::chain::health::ChainState;
use crate::engine::tenant::counters::{Labels, Metrics};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};

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

/// The registry of one scrape: the mount's counters, plus gauges from `snapshot`.
fn registry(counters: &Metrics, snapshot: Option<&Snapshot>) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "qlik_rotations",
        "Rotations of the stored key by trigger (manual, schedule, period, expiry) and outcome",
        counters.rotations.clone(),
    );
    registry.register(
        "qlik_creds_minted",
        "Dedicated keys minted by creds/<role>",
        counters.creds_minted.clone(),
    );
    registry.register(
        "qlik_keys_deleted",
        "Keys deleted at Qlik (DELETE answered 2xx)",
        counters.keys_deleted.clone(),
    );
    registry.register(
        "qlik_api_requests",
        "Qlik API answers by endpoint and HTTP status (status=\"error\": no answer)",
        counters.qlik_requests.clone(),
    );
    registry.register(
        "qlik_rate_limited_responses",
        "Qlik answers with 429 Too Many Requests",
        counters.rate_limited.clone(),
    );
    registry.register(
        "qlik_retry_after_wait_seconds",
        "Seconds waited before retries because Qlik answered 429 with retry-after",
        counters.retry_after_seconds.clone(),
    );
    registry.register(
        "qlik_deferred_deletions",
        "Deletions handed to the background deleter (Qlik's tier-2 budget was in use)",
        counters.deferred_deletions.clone(),
    );
    registry.register(
        "qlik_oauth_secret_rotations",
        "Rotations of OAuth client secrets by trigger (manual, schedule, period) and outcome",
        counters.secret_rotations.clone(),
    );
    registry.register(
        "qlik_oauth_token_calls",
        "Qlik's answers to /oauth/token by OAuth client and HTTP status (status=\"error\": no answer)",
        counters.oauth_calls.clone(),
    );
    registry.register(
        "qlik_oauth_token_leases",
        "Access token leases handed out by oauth/token/<role>, by OAuth client and whether the role shares its token",
        counters.oauth_tokens.clone(),
    );
    registry.register(
        "qlik_counters_start_time_seconds",
        "When this process's counters started (Unix time); they restart with the plugin process",
        gauge(counters.started.as_second()),
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

/// Each OAuth client's gauges, labelled `client` (its name in the mount).
fn register_clients(
    registry: &mut Registry,
    clients: &[crate::engine::oauth::health::ClientHealth],
) {
    if clients.is_empty() {
        return;
    }
    let state: Family<Labels, Gauge> = Family::default();
    let age: Family<Labels, Gauge> = Family::default();
    let next: Family<Labels, Gauge> = Family::default();
    let failures: Family<Labels, Gauge> = Family::default();
    let leases: Family<Labels, Gauge> = Family::default();
    for c in clients {
        let client = || vec![("client".to_string(), c.name.clone())];
        for candidate in ChainState::ALL {
            let mut labels = client();
            labels.push(("state".into(), candidate.name().into()));
            state
                .get_or_create(&labels)
                .set(i64::from(candidate == c.state));
        }
        age.get_or_create(&client()).set(c.secret_age_secs);
        if let Some(n) = c.next_rotation {
            next.get_or_create(&client()).set(n.at.as_second());
        }
        failures
            .get_or_create(&client())
            .set(i64::from(c.history.consecutive_failures));
        leases
            .get_or_create(&client())
            .set(count(c.live_secret_leases));
    }
    registry.register(
        "qlik_oauth_client_state",
        "1 for each OAuth client's chain state (healthy, at_risk, broken), 0 for the others",
        state,
    );
    registry.register(
        "qlik_oauth_secret_age_seconds",
        "Seconds since each OAuth client's current secret was written or created",
        age,
    );
    registry.register(
        "qlik_oauth_next_secret_rotation_timestamp_seconds",
        "When each OAuth client's secret is next rotated automatically (Unix time)",
        next,
    );
    registry.register(
        "qlik_oauth_secret_rotation_consecutive_failures",
        "Secret rotation attempts failed since the last success, per OAuth client",
        failures,
    );
    registry.register(
        "qlik_oauth_live_secret_leases",
        "Live oauth/clients/<name>/secret leases, per OAuth client",
        leases,
    );
}

fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The metrics text of a mount.
pub async fn render(backend: &QlikBackend) -> Result<String, RequestError> {
    let snapshot = status::snapshot(backend).await?;
    let clients = crate::engine::oauth::health::clients(backend.storage.as_ref()).await?;
    let mut registry = registry(backend.metrics(), snapshot.as_ref());
    register_clients(&mut registry, &clients);
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)
        .map_err(|e| RequestError::Internal(format!("encoding the metrics: {e}")))?;
    Ok(text)
}

pub(crate) async fn handle(
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
    use crate::qlik::CallObserver;
    use std::time::Duration;

    fn encoded(metrics: &Metrics) -> String {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry(metrics, None)).expect("encode");
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
