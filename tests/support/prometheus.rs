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
