//! What a Prometheus server does with `metrics`: a raw GET with a bearer token, and the
//! Python `prometheus_client` text parser.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use super::DevServer;

/// A raw GET as a scraper sends it: `Authorization: Bearer`, no Vault client.
pub async fn scrape(server: &DevServer, token: &str, path: &str) -> (u16, String, String) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = http
        .get(format!("{}/v1/{path}", server.addr))
        .bearer_auth(token)
        .send()
        .await
        .expect("scrape");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, resp.text().await.unwrap_or_default())
}

/// Parses Prometheus text with the Python `prometheus_client` parser: sample name + sorted
/// labels → value.
pub fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ran");
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics (pip install prometheus-client; scripts/test.sh does): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

pub fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

/// The Prometheus server and `promtool` of the Debian package `prometheus` (2.42), or
/// `PROMETHEUS_BIN` / `PROMTOOL_BIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromTools {
    pub prometheus: std::path::PathBuf,
    pub promtool: std::path::PathBuf,
}

fn tool_on_path(var: &str, name: &str) -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let path = std::path::PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    super::on_path(name)
}

/// Both tools, when both are found.
pub fn prometheus_tools() -> Option<PromTools> {
    Some(PromTools {
        prometheus: tool_on_path("PROMETHEUS_BIN", "prometheus")?,
        promtool: tool_on_path("PROMTOOL_BIN", "promtool")?,
    })
}

/// How to install them, in the failure message.
pub const PROMETHEUS_INSTALL: &str = "install the Debian package with `sudo apt-get install -y \
     --no-install-recommends prometheus` (scripts/test.sh does), or set PROMETHEUS_BIN and \
     PROMTOOL_BIN";

/// `prometheus` and `promtool`, or a clear failure, as for `bao` ([`super::require_bao`]): a
/// skip (`None`) only with `QLIK_SKIP_E2E=1`, never with `CI=true` or `REQUIRE_BAO=1`.
pub fn require_prometheus() -> Option<PromTools> {
    let (required, skip_asked) = super::e2e_required_and_skip_asked();
    super::skip_or_fail_tool(
        "prometheus or promtool",
        PROMETHEUS_INSTALL,
        prometheus_tools(),
        required,
        skip_asked,
        std::thread::current().name(),
    )
}

/// A Prometheus server on a free loopback port with its own storage in `dir` (its config is
/// `dir/prometheus.yml`), stopped by PID when dropped (also when the test panics); `dir` is
/// removed after it.
pub struct PromServer {
    // Dropped first: the process is killed before its directory goes.
    child: Option<super::ChildGuard>,
    pub url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl PromServer {
    /// Starts `prometheus` with `dir/prometheus.yml` and waits until it is ready.
    pub async fn start(bin: &std::path::Path, dir: tempfile::TempDir) -> Self {
        // Never 9090: a system Prometheus (the Debian package starts one) may be there.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("addr").port()
        };
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=info")
            .current_dir(dir.path())
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut server = Self {
            child: Some(super::ChildGuard(child)),
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("client"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(guard) = server.child.as_mut()
                && let Ok(Some(exit)) = guard.0.try_wait()
            {
                panic!("prometheus exited ({exit}):\n{}", server.log());
            }
            let ready = server
                .http
                .get(format!("{}/-/ready", server.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return server;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus not ready after 30 s:\n{}",
                server.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.0.id())
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with `params`: the answer's `data` (panics unless `success`).
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let answer: serde_json::Value = self
            .http
            .get(
                reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), params)
                    .expect("url"),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("prometheus {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("prometheus {path}: not JSON: {e}"));
        assert_eq!(answer["status"], "success", "{path} {params:?}: {answer}");
        answer["data"].clone()
    }

    /// An instant query: its result vector.
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let data = self.api("query", &[("query", expr)]).await;
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The active (pending or firing) alerts.
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        self.api("alerts", &[]).await["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
