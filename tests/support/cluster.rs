//! An OpenBao Raft cluster (1 or 3 nodes) on loopback, started and stopped with
//! `scripts/raft-cluster.sh` (the same script users run), and driven with the `bao` CLI.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{PLUGIN, require_bao};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/raft-cluster.sh")
}

/// A running cluster; stopped (by the PIDs the script recorded) when dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub bao: PathBuf,
    pub token: String,
    pub nodes: usize,
    pub base_port: u16,
    pub http: reqwest::Client,
}

impl Cluster {
    /// Starts `nodes` nodes with API ports `base_port`, `base_port + 10`, …
    pub fn start(nodes: usize, base_port: u16) -> Option<Self> {
        Self::start_with_env(nodes, base_port, &[])
    }

    /// [`Self::start`] with extra environment for `scripts/raft-cluster.sh` (e.g.
    /// `RAW_STORAGE=1`).
    pub fn start_with_env(nodes: usize, base_port: u16, env: &[(&str, &str)]) -> Option<Self> {
        let bao = require_bao()?;
        let dir = tempfile::Builder::new()
            .prefix("qlik-raft")
            .tempdir()
            .expect("tempdir");
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .env("NODES", nodes.to_string())
            .env("BASE_PORT", base_port.to_string())
            .env("BAO_BIN", &bao)
            .envs(env.iter().copied())
            .env("PLUGIN_BIN", super::plugin_binary())
            .stdin(Stdio::null())
            .output()
            .expect("raft-cluster.sh");
        let cluster = Self {
            token: std::fs::read_to_string(dir.path().join("root_token"))
                .unwrap_or_default()
                .trim()
                .to_string(),
            dir,
            bao,
            nodes,
            base_port,
            http: reqwest::Client::builder().no_proxy().build().expect("http"),
        };
        assert!(
            out.status.success(),
            "cluster start failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
        Some(cluster)
    }

    fn run_script(&self, args: &[&str]) -> Output {
        Command::new(script())
            .args(args)
            .env("NODES", self.nodes.to_string())
            .env("BASE_PORT", self.base_port.to_string())
            .env("BAO_BIN", &self.bao)
            .stdin(Stdio::null())
            .output()
            .expect("raft-cluster.sh")
    }

    pub fn addr(&self, node: usize) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.base_port as usize + 10 * (node - 1)
        )
    }

    /// The active node (waits for one).
    pub fn leader(&self) -> usize {
        let dir = self.dir.path().display().to_string();
        let out = self.run_script(&["leader", &dir]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no active node: {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// `kill -9` of a node (and its plugin processes).
    pub fn kill_node(&self, node: usize) {
        let dir = self.dir.path().display().to_string();
        let out = self.run_script(&["kill-node", &dir, &node.to_string()]);
        assert!(out.status.success(), "kill-node");
    }

    /// Starts a stopped node again and unseals it.
    pub fn start_node(&self, node: usize) {
        let dir = self.dir.path().display().to_string();
        let out = self.run_script(&["start-node", &dir, &node.to_string()]);
        assert!(
            out.status.success(),
            "start-node: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn cli(&self, node: usize, args: &[&str]) -> Output {
        super::run_bao(&self.bao, &self.addr(node), &self.token, args)
    }

    /// An HTTP API call: (status, the node that served it, JSON body).
    pub async fn http(
        &self,
        node: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}/v1/{}", self.addr(node), path))
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("http call");
        let status = resp.status().as_u16();
        let served_by = resp
            .headers()
            .get("X-Vault-Raft-Node-Id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            served_by,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// Server log of a node.
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{node}/server.log")))
            .unwrap_or_default()
    }

    /// Waits until `node` serves the mount (after a restart or failover).
    pub fn wait_mount(&self, node: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.cli(node, &["read", "qlik/config"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("node {node} does not serve qlik/ after {timeout:?}");
    }

    pub fn plugin_binary(&self) -> PathBuf {
        self.dir.path().join("plugins").join(PLUGIN)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = self.dir.path().display().to_string();
        let _ = self.run_script(&["stop", &dir]);
    }
}
