//! Shared helpers for the fake-qlik and client tests: an in-process fake and raw HTTPS.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use vault_plugin_secrets_qlik::fake::{FakeOptions, FakeTenant, RunningFake, SettingsPatch};
use vault_plugin_secrets_qlik::qlik::{ClientConfig, QlikClient};

pub async fn start_fake() -> RunningFake {
    FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake starts")
}

pub async fn start_fake_with(patch: SettingsPatch) -> RunningFake {
    let fake = start_fake().await;
    fake.update_settings(patch).expect("settings apply");
    fake
}

/// The engine's client against this fake, with a given budget and retry count.
pub fn qlik_client(fake: &RunningFake, request_timeout: Duration, max_retries: u32) -> QlikClient {
    QlikClient::new(ClientConfig {
        tenant_url: fake.url.clone(),
        ca_cert_pem: Some(fake.ca_pem.clone()),
        request_timeout,
        max_retries,
    })
    .expect("client builds")
}

pub fn secret(token: &str) -> SecretString {
    SecretString::from(token.to_string())
}

/// A plain HTTPS client trusting only the fake's CA, for asserting raw answers.
pub struct Raw {
    pub http: reqwest::Client,
    pub base: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    /// Sends the request and keeps its status, headers and body text.
    pub async fn read(request: reqwest::RequestBuilder) -> Self {
        let response = request.send().await.expect("request is answered");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Self {
            status,
            headers,
            text,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Raw {
    pub fn new(fake: &RunningFake, follow_redirects: bool) -> Self {
        let ca = reqwest::Certificate::from_pem(fake.ca_pem.as_bytes()).unwrap();
        let policy = if follow_redirects {
            reqwest::redirect::Policy::limited(5)
        } else {
            reqwest::redirect::Policy::none()
        };
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .no_proxy()
            .redirect(policy)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            http,
            base: fake.url.as_str().trim_end_matches('/').to_string(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::read(request).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.send(Method::DELETE, path, Some(token), None).await
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send(method, path, None, body).await
    }

    /// Creates a key and returns the 201 body (panics on any other answer).
    pub async fn create_key(&self, token: &str, description: &str, expiry: Option<&str>) -> Value {
        let mut body = serde_json::json!({ "description": description });
        if let Some(expiry) = expiry {
            body["expiry"] = expiry.into();
        }
        let answer = self.post("/api/v1/api-keys", token, body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.json()
    }
}

/// The single error entry of a Qlik error body.
pub fn only_error(body: &Value) -> &Value {
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{body}");
    &errors[0]
}

pub fn ts(text: &Value) -> jiff::Timestamp {
    text.as_str()
        .expect("timestamp string")
        .parse()
        .expect("RFC 3339")
}

/// The fake-qlik binary on a free port, its ready line read: killed by PID and waited for on
/// drop, even when the test fails.
pub struct FakeBinary {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// The one JSON line it prints when it is ready.
    pub ready: Value,
}

impl FakeBinary {
    /// `fake-qlik --listen 127.0.0.1:0 --state-dir <state_dir> <args>`, stderr dropped.
    pub fn start(state_dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-qlik"))
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state_dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let mut binary = Self {
            child,
            stdout,
            ready: Value::Null,
        };
        read.unwrap();
        binary.ready = serde_json::from_str(&line).unwrap();
        binary
    }

    /// A string field of the ready line.
    pub fn field(&self, name: &str) -> &str {
        self.ready[name].as_str().unwrap()
    }

    /// `curl -sS --noproxy '*' --max-time 10 --cacert <its CA> <args>`: asserts it succeeds and
    /// returns its output as JSON.
    pub fn curl(&self, args: &[&str]) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--noproxy", "*", "--max-time", "10", "--cacert"])
            .arg(self.field("ca_cert"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    }

    /// SIGTERM: asserts it exits cleanly and returns what else it printed on stdout.
    pub fn terminate(&mut self) -> String {
        let pid = self.child.id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        rest
    }
}

impl Drop for FakeBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
