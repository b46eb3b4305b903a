//! End to end: the plugin binary inside a real `bao server -dev`, driven through the `bao` CLI
//! and the HTTP API, with an in-process fake Qlik tenant for a valid `tenant_url`, `ca_cert`
//! and `api_key`.
//!
//! Every test starts its own server (about a second with the plugin probes) and stops it, and
//! every process it started, by PID when it ends, also when it fails.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{DevServer, PLUGIN, kill};
use vault_plugin_secrets_qlik::engine::paths::config;
use vault_plugin_secrets_qlik::fake::{FakeOptions, FakeTenant, RunningFake};

/// The version the plugin reports: `v` + the crate version.
const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// A fake tenant serving on its own runtime (the plugin, a separate process, calls it while
/// the test thread blocks on the CLI).
struct Tenant {
    fake: RunningFake,
    rt: tokio::runtime::Runtime,
}

impl Tenant {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fake = rt
            .block_on(FakeTenant::start(FakeOptions::default()))
            .expect("fake tenant");
        Self { fake, rt }
    }

    fn url(&self) -> String {
        self.fake.url.as_str().trim_end_matches('/').to_string()
    }

    fn key(&self) -> &str {
        &self.fake.service.api_key
    }

    /// `bao write <mount>/config` arguments for this tenant.
    fn config_args(&self, mount: &str) -> Vec<String> {
        vec![
            "write".into(),
            format!("{mount}/config"),
            format!("tenant_url={}", self.url()),
            format!("api_key={}", self.key()),
            format!("ca_cert={}", self.fake.ca_pem),
        ]
    }
}

/// A dev server with the plugin enabled at `qlik/`, and a fake tenant. Fields drop in order:
/// the server (and its plugins) first.
struct Lab {
    server: DevServer,
    tenant: Tenant,
}

impl Lab {
    fn start() -> Option<Self> {
        Self::start_env(&[])
    }

    fn start_env(env: &[(&str, &str)]) -> Option<Self> {
        let server = DevServer::start_env(&[], env)?;
        server.enable("qlik");
        Some(Self {
            server,
            tenant: Tenant::start(),
        })
    }

    fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.tenant
            .rt
            .block_on(self.server.http(method, path, body))
    }

    /// Writes the fake tenant's URL, key and CA to `<mount>/config` with the CLI.
    fn configure(&self, mount: &str, tenant: &Tenant, extra: &[&str]) {
        let mut args = tenant.config_args(mount);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.server.ok(&args);
        assert!(out.contains("Success"), "{out}");
    }

    /// `GET /v1/<mount>/config`: the `data` object, asserting 200.
    fn read_config(&self, mount: &str) -> Value {
        let (status, body) = self.http("GET", &format!("{mount}/config"), None);
        assert_eq!(status, 200, "read {mount}/config: {body}");
        body["data"].clone()
    }

    fn single_plugin_pid(&self) -> u32 {
        let pids = self.server.plugin_pids();
        assert_eq!(pids.len(), 1, "expected one plugin process, found {pids:?}");
        pids[0]
    }
}

/// The mount's entry in `bao secrets list -detailed -format=json`.
fn mount_entry(server: &DevServer, mount: &str) -> Value {
    let list = server.json(&["secrets", "list", "-detailed"]);
    list[format!("{mount}/")].clone()
}

#[test]
fn dev_server_registers_the_plugin_and_reports_its_version() {
    let Some(server) = DevServer::start() else {
        return;
    };
    // Registered at start-up from the plugin directory, under its file name and the version
    // it reports (a versioned catalog entry: unversioned lookups answer 404).
    let version_flag = format!("-version={VERSION}");
    let catalog = server.json(&["plugin", "info", &version_flag, "secret", PLUGIN]);
    assert_eq!(catalog["name"], PLUGIN, "{catalog}");
    assert_eq!(catalog["version"], VERSION, "{catalog}");
    assert!(server.plugin_pids().is_empty(), "registered is not mounted");

    server.enable("qlik");
    let entry = mount_entry(&server, "qlik");
    assert_eq!(entry["type"], PLUGIN, "{entry}");
    assert_eq!(entry["running_plugin_version"], VERSION, "{entry}");
    assert!(
        entry["running_sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64),
        "{entry}"
    );
    assert_eq!(server.plugin_pids().len(), 1);
}

#[test]
fn config_round_trips_through_storage_and_never_returns_the_key() {
    let Some(lab) = Lab::start() else { return };
    let key = lab.tenant.key().to_string();
    lab.configure("qlik", &lab.tenant, &["max_retries=7", "key_expiry=P1D"]);

    let read = lab.server.json(&["read", "qlik/config"]);
    let data = &read["data"];
    assert_eq!(data["tenant_url"], lab.tenant.url(), "{read}");
    assert_eq!(data["max_retries"], 7, "{read}");
    assert_eq!(data["key_expiry"], "P1D", "{read}");
    assert_eq!(data["rotate_before"], "PT12H", "half of key_expiry: {read}");
    assert_eq!(data["request_timeout"], "PT30S", "{read}");
    assert_eq!(data["auto_rotate"], true, "{read}");
    assert_eq!(data["ca_cert_set"], true, "{read}");
    assert_eq!(data["ca_cert"], lab.tenant.fake.ca_pem.as_str(), "{read}");
    assert!(data.get("api_key").is_none(), "{read}");
    assert!(
        !read.to_string().contains(&key),
        "the key leaked into the read"
    );
    let (_, http_read) = lab.http("GET", "qlik/config", None);
    assert!(
        !http_read.to_string().contains(&key),
        "the key leaked into the HTTP read"
    );
    let table = lab.server.ok(&["read", "qlik/config"]);
    assert!(
        !table.contains(&key) && !table.contains("api_key"),
        "{table}"
    );

    // An update changes one field and keeps the others (and the key).
    lab.server.ok(&[
        "write",
        "qlik/config",
        "auto_rotate=false",
        "request_timeout=45s",
    ]);
    let updated = lab.read_config("qlik");
    assert_eq!(updated["auto_rotate"], false);
    assert_eq!(updated["request_timeout"], "PT45S");
    assert_eq!(updated["max_retries"], 7);
    assert_eq!(updated["tenant_url"], lab.tenant.url());

    let deleted = lab.server.ok(&["delete", "qlik/config"]);
    assert!(deleted.contains("Success"), "{deleted}");
    let (status, _) = lab.http("GET", "qlik/config", None);
    assert_eq!(status, 404, "config still readable after delete");
    let gone = lab.server.fails(&["read", "qlik/config"]);
    assert!(gone.contains("No value found"), "{gone}");
    assert!(
        !lab.server.log().contains(&key),
        "the key is in the server log"
    );
}

#[test]
fn bad_config_fields_are_400_naming_the_field_and_change_nothing() {
    let Some(lab) = Lab::start() else { return };
    lab.configure("qlik", &lab.tenant, &[]);
    let before = lab.read_config("qlik");
    assert_eq!(before["auto_rotate"], true);

    // Each body also carries a valid change (auto_rotate=false): a partial write would show.
    let cases = [
        (
            "tenant_url",
            json!({"tenant_url": "http://acme.eu.qlikcloud.com"}),
        ),
        (
            "tenant_url",
            json!({"tenant_url": "https://acme.eu.qlikcloud.com/api"}),
        ),
        ("key_expiry", json!({"key_expiry": "P1M"})),
        ("key_expiry", json!({"key_expiry": "P1DXYZ"})),
        ("bogus", json!({"bogus": "1"})),
        ("max_retries", json!({"max_retries": 99})),
        ("request_timeout", json!({"request_timeout": "5m"})),
        ("ca_cert", json!({"ca_cert": "not a certificate"})),
    ];
    for (field, mut body) in cases {
        body["auto_rotate"] = json!(false);
        let (status, reply) = lab.http("POST", "qlik/config", Some(body.clone()));
        assert_eq!(status, 400, "{body} -> {reply}");
        let errors = reply["errors"].to_string();
        assert!(
            errors.contains(field),
            "{body}: error does not name {field}: {errors}"
        );
        assert_eq!(lab.read_config("qlik"), before, "{body} changed the config");
    }

    // The CLI shows the same: code 400 and the field.
    let err = lab
        .server
        .fails(&["write", "qlik/config", "key_expiry=P1M"]);
    assert!(
        err.contains("Code: 400") && err.contains("key_expiry"),
        "{err}"
    );
    assert_eq!(lab.read_config("qlik"), before);
}

#[test]
fn config_survives_a_plugin_reload() {
    let Some(lab) = Lab::start() else { return };
    lab.configure("qlik", &lab.tenant, &["max_retries=2"]);
    let before = lab.read_config("qlik");
    let old = lab.single_plugin_pid();

    let out = lab
        .server
        .ok(&["plugin", "reload", &format!("-plugin={PLUGIN}")]);
    assert!(out.contains("Reloaded"), "{out}");
    lab.server
        .wait_for("a new plugin process", Duration::from_secs(10), || {
            let pids = lab.server.plugin_pids();
            pids.len() == 1 && pids[0] != old
        });
    assert_eq!(lab.read_config("qlik"), before);
    assert_eq!(before["max_retries"], 2);
}

#[test]
fn path_help_and_openapi_document_the_config_path() {
    let Some(lab) = Lab::start() else { return };
    let help = lab.server.ok(&["path-help", "qlik/config"]);
    assert!(!config::PATH.fields.is_empty());
    for field in config::PATH.fields {
        assert!(
            help.contains(field.name),
            "path-help lacks {}:\n{help}",
            field.name
        );
        assert!(
            help.contains(field.description),
            "path-help lacks the description of {}:\n{help}",
            field.name
        );
    }
    for op in ["create", "update", "read", "delete"] {
        assert!(help.contains(op), "path-help lacks operation {op}:\n{help}");
    }
    assert!(
        help.contains("Write-only"),
        "api_key not marked write-only:\n{help}"
    );

    let (status, spec) = lab.http("GET", "sys/internal/specs/openapi", None);
    assert_eq!(status, 200, "{spec}");
    let paths = spec["paths"].as_object().expect("paths object");
    let config_path = &paths.get("/qlik/config").expect("/qlik/config listed");
    for method in ["get", "post", "delete"] {
        assert!(
            config_path.get(method).is_some(),
            "no {method} in {config_path}"
        );
    }
    assert!(
        paths.keys().any(|p| p.starts_with("/secret/")),
        "the dev kv mount's paths are gone"
    );
    assert!(
        paths.keys().any(|p| p.starts_with("/sys/")),
        "sys paths are gone"
    );
}

#[test]
fn two_mounts_keep_separate_configs() {
    let Some(lab) = Lab::start() else { return };
    let other = Tenant::start();
    lab.server.enable("qlik2");
    lab.configure("qlik", &lab.tenant, &["max_retries=1"]);
    lab.configure("qlik2", &other, &["max_retries=9"]);

    let one = lab.read_config("qlik");
    let two = lab.read_config("qlik2");
    assert_eq!(one["tenant_url"], lab.tenant.url());
    assert_eq!(two["tenant_url"], other.url());
    assert_ne!(one["tenant_url"], two["tenant_url"]);
    assert_eq!(
        (one["max_retries"].clone(), two["max_retries"].clone()),
        (json!(1), json!(9))
    );

    lab.server.ok(&["delete", "qlik2/config"]);
    assert_eq!(lab.http("GET", "qlik2/config", None).0, 404);
    assert_eq!(lab.read_config("qlik"), one);
}

#[test]
fn a_killed_plugin_is_relaunched_and_disable_leaves_no_process() {
    let Some(lab) = Lab::start() else { return };
    lab.configure("qlik", &lab.tenant, &[]);
    let before = lab.read_config("qlik");
    let old = lab.single_plugin_pid();

    kill(old, "KILL");
    let exited = format!(
        "plugin process exited: plugin={}/{PLUGIN} id={old}",
        lab.server.plugin_dir.display()
    );
    lab.server.wait_for(
        "the server to see the plugin die",
        Duration::from_secs(5),
        || lab.server.log().contains(&exited),
    );
    // OpenBao 2.7.2 race (host side): for a few tens of ms after logging the exit, a request
    // still dials the dead plugin's socket and fails with 500 "connection refused" instead of
    // relaunching (2 of 5 tries with no pause, 0 of 5 after 200 ms). Give the host that time.
    std::thread::sleep(Duration::from_millis(300));
    // The next request is served: the server relaunches the plugin and retries.
    let started = Instant::now();
    assert_eq!(lab.read_config("qlik"), before);
    assert!(started.elapsed() < Duration::from_secs(10));
    let new = lab.single_plugin_pid();
    assert_ne!(new, old);
    lab.server.ok(&["write", "qlik/config", "max_retries=3"]);
    assert_eq!(lab.read_config("qlik")["max_retries"], 3);

    let out = lab.server.ok(&["secrets", "disable", "qlik"]);
    assert!(out.contains("Success"), "{out}");
    lab.server.wait_for(
        "no plugin process after disable",
        Duration::from_secs(5),
        || lab.server.plugin_pids().is_empty(),
    );
    assert!(!std::path::Path::new(&format!("/proc/{new}/exe")).exists());
    assert!(mount_entry(&lab.server, "qlik").is_null());
    // The server is still fine.
    lab.server.ok(&["status"]);
}

#[test]
fn plugin_log_lines_reach_the_server_log_under_the_plugin_name() {
    // The plugin logs hclog JSON on stderr; at the default level (info) it has no INFO line
    // yet on this path, so this test uses QLIK_PLUGIN_LOG=debug and the plugin's DEBUG lines.
    let Some(lab) = Lab::start_env(&[("QLIK_PLUGIN_LOG", "debug")]) else {
        return;
    };
    lab.configure("qlik", &lab.tenant, &[]);
    let accessor = mount_entry(&lab.server, "qlik")["accessor"]
        .as_str()
        .expect("accessor")
        .to_string();
    // secrets.<type>.<accessor>.<plugin name>.<binary basename>
    let logger = format!("secrets.{PLUGIN}.{accessor}.{PLUGIN}.{PLUGIN}: ");
    let log = lab.server.log();
    let serving: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&logger) && l.contains("plugin serving"))
        .collect();
    assert!(!serving.is_empty(), "no plugin line under {logger}:\n{log}");
    for line in &serving {
        assert!(line.contains("[DEBUG]"), "wrong level: {line}");
        assert!(
            line.contains("@module=vault_plugin_secrets_qlik::goplugin"),
            "{line}"
        );
        // Parsed as hclog JSON (a line go-plugin could not parse is logged verbatim).
        assert!(!line.contains("\"@level\""), "not parsed: {line}");
    }
    assert!(
        !log.lines()
            .any(|l| l.contains(&logger) && l.contains("{\"@level\"")),
        "a plugin line was not parsed as hclog JSON:\n{log}"
    );
    assert!(
        !log.contains(lab.tenant.key()),
        "the key is in the server log"
    );
}

#[test]
fn plugin_log_level_defaults_to_info() {
    let Some(lab) = Lab::start() else { return };
    lab.configure("qlik", &lab.tenant, &[]);
    lab.read_config("qlik");
    // A rotation: the plugin logs INFO lines for it, which the default level must show.
    let (status, body) = lab.http("POST", "qlik/rotate", None);
    assert_eq!(status, 200, "{body}");
    let log = lab.server.log();
    // The mount is up (the server logged it) ...
    assert!(
        log.contains("successful mount") && log.contains("path=qlik/"),
        "{log}"
    );
    // ... the plugin's INFO lines are shown ...
    for message in ["configuration written", "stored key rotated"] {
        assert!(
            log.lines().any(|l| l.contains("[INFO]")
                && l.contains("@module=vault_plugin_secrets_qlik::engine")
                && l.contains(message)),
            "no INFO line {message:?} from the plugin at the default level:\n{log}"
        );
    }
    // ... and its DEBUG lines are filtered out by the plugin itself.
    assert!(
        !log.lines()
            .any(|l| l.contains("@module=vault_plugin_secrets_qlik") && l.contains("[DEBUG]")),
        "DEBUG plugin lines at the default level:\n{log}"
    );
}

#[test]
fn the_binary_run_by_hand_explains_itself() {
    let binary = env!("CARGO_BIN_EXE_vault-plugin-secrets-qlik");

    let out = Command::new(binary)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run plugin");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "stdout belongs to the handshake");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not meant to be run directly"), "{stderr}");
    assert!(stderr.contains("bao plugin register"), "{stderr}");

    let out = Command::new(binary)
        .arg("--version")
        .output()
        .expect("run plugin");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), VERSION);

    // The server's database-plugin probe (its own cookie only): refuse fast, print nothing on
    // stdout (a handshake line there would be taken for a database plugin).
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env(
            "VAULT_DATABASE_PLUGIN",
            "926a0820-aea2-be28-51d6-83cdf00e8edb",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run plugin");
    let guard_pid = child.id();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(5) {
            kill(guard_pid, "KILL");
            let _ = child.wait();
            panic!("the database probe did not exit within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!status.success(), "{status}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut stdout)
        .expect("read stdout");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_missing_bao_fails_unless_skipping_is_asked_for() {
    let found = Some(std::path::PathBuf::from("/opt/bao"));
    assert_eq!(
        support::skip_or_fail(found.clone(), false, false, None),
        found
    );
    // Skipping only when asked, and never where bao is required (CI, REQUIRE_BAO=1).
    assert_eq!(support::skip_or_fail(None, false, true, Some("t")), None);
    for (required, skip_asked) in [(false, false), (true, false), (true, true)] {
        let outcome = std::panic::catch_unwind(|| {
            support::skip_or_fail(None, required, skip_asked, Some("t"))
        });
        let message = outcome
            .err()
            .and_then(|e| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| panic!("required={required} skip_asked={skip_asked}: no failure"));
        assert!(
            message.contains("bao not found") && message.contains("QLIK_SKIP_E2E=1"),
            "{message}"
        );
    }
}
