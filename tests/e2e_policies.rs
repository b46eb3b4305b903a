//! The README's policies (`examples/policies/*.hcl`), loaded as written: operators configure,
//! rotate, manage roles, inspect, tidy and revoke dedicated keys, but read no application key;
//! applications read only what their policy names. And every command of `docs/runbooks.md`,
//! run as written under the operator policy in the state its runbook describes.
//!
//! Convention (also in a comment at the top of docs/runbooks.md):
//! - Every line of a ```sh block of docs/runbooks.md that starts with `bao ` is a runbook
//!   command. The test runs each one, in the order of the file, under a token of
//!   examples/policies/qlik-operator.hcl as written, and it must succeed. Before a section's
//!   commands the test sets up the state its section describes (a fault, a key deleted at
//!   Qlik, the key limit reached), and before its "Fix" blocks it does what the text says
//!   happens outside OpenBao (Qlik recovers: the faults are cleared). Commands are grouped by
//!   their `## ` section and `### ` phase heading (Check, Fix, Verify; none for the steps of
//!   the first five minutes).
//! - A trailing `# …` is a comment and dropped; a line whose comment is `# admin` is run by
//!   someone with more rights and is left out (counted as excluded). ```text blocks are not
//!   read: output, shell steps (`export`, `bao login`, `shred`), commands shown as NOT to run.
//! - `<name>` is a placeholder, taken from what the section's set-up recorded (`<role>`,
//!   `<client>`, `<key_id>`, `<lease>`, `<rotate_lease>`); a command with `-field=NAME` sets
//!   `<NAME>` to what it printed, for the lines after it. An unknown placeholder fails the test.
//! - Lines are split on spaces (no quotes, pipes or variables) and run with the test's scratch
//!   directory as the working directory (`api_key=@new-key.txt` reads a file written there).
//! - Where the runbook says what to look for, `expect` asserts it on that command's output; a
//!   section or command the test expects but the doc lacks fails the test, and so does a runbook
//!   command that was neither run nor excluded.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vault_plugin_secrets_qlik::fake::{FaultSpec, RunningFake, SettingsPatch};

use support::{DevServer, Setup, mounted_server, no_rate_limits};

fn token_for(server: &DevServer, policy: &str) -> String {
    server.token_for_example_policy(policy)
}

fn allowed(server: &DevServer, token: &str, args: &[&str]) {
    let out = server.cli_as(token, args);
    assert!(
        out.status.success(),
        "bao {args:?} was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn denied(server: &DevServer, token: &str, args: &[&str]) {
    let out = server.cli_as(token, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("permission denied"),
        "bao {args:?} was not refused: {err}{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn example_policies_separate_operators_and_applications() {
    let Some(Setup { fake, server }) = mounted_server(no_rate_limits()).await else {
        return;
    };
    let config = support::config_args(&fake, server.dir.path(), &[]);

    let operator = token_for(&server, "qlik-operator");
    let app_key = token_for(&server, "qlik-app-key");
    let app_reporting = token_for(&server, "qlik-app-reporting");
    let app_oauth = token_for(&server, "qlik-app-oauth");

    // The operator sets everything up.
    allowed(&server, &operator, &support::strs(&config));
    allowed(&server, &operator, &["read", "qlik/config"]);
    allowed(&server, &operator, &["write", "-force", "qlik/rotate"]);
    allowed(
        &server,
        &operator,
        &["write", "qlik/roles/reporting", "expiry=PT1H"],
    );
    allowed(
        &server,
        &operator,
        &["write", "qlik/roles/other", "expiry=PT1H"],
    );
    allowed(&server, &operator, &["read", "qlik/roles/reporting"]);
    allowed(&server, &operator, &["list", "qlik/roles"]);
    // OAuth: the operator writes a client and two token roles and rotates the client's
    // secret, but reads no secret lease and no token (those are the applications').
    let client_id = format!("client_id={}", fake.oauth.client_id);
    let client_secret = format!("client_secret={}", fake.oauth.client_secret);
    allowed(
        &server,
        &operator,
        &[
            "write",
            "qlik/oauth/clients/app",
            &client_id,
            &client_secret,
        ],
    );
    allowed(
        &server,
        &operator,
        &["write", "qlik/oauth/roles/reporting", "client=app"],
    );
    allowed(
        &server,
        &operator,
        &["write", "qlik/oauth/roles/other", "client=app"],
    );
    allowed(&server, &operator, &["read", "qlik/oauth/clients/app"]);
    allowed(&server, &operator, &["list", "qlik/oauth/clients"]);
    allowed(&server, &operator, &["list", "qlik/oauth/roles"]);
    allowed(
        &server,
        &operator,
        &["write", "-force", "qlik/oauth/clients/app/rotate"],
    );
    denied(
        &server,
        &operator,
        &["read", "qlik/oauth/clients/app/secret"],
    );
    denied(&server, &operator, &["read", "qlik/oauth/token/reporting"]);

    // Applications read what their policy names, and nothing else.
    allowed(&server, &app_key, &["read", "qlik/key"]);
    allowed(&server, &app_reporting, &["read", "qlik/creds/reporting"]);
    allowed(&server, &app_oauth, &["read", "qlik/oauth/token/reporting"]);
    for args in [
        &["read", "qlik/config"][..],
        &["write", "-force", "qlik/rotate"],
        &["read", "qlik/creds/reporting"],
        &["list", "qlik/keys"],
        &["write", "qlik/roles/mine", "expiry=PT1H"],
        &["read", "qlik/oauth/token/reporting"],
    ] {
        denied(&server, &app_key, args);
    }
    for args in [
        &["read", "qlik/key"][..],
        &["read", "qlik/creds/other"],
        &["read", "qlik/config"],
        &["write", "-force", "qlik/tidy"],
        &["read", "qlik/oauth/token/reporting"],
    ] {
        denied(&server, &app_reporting, args);
    }
    // The OAuth application: its role's token (and renewing its lease, which the default
    // policy allows), not the client, its secret, another role's token or the key paths.
    let read = server.cli_as(
        &app_oauth,
        &["read", "-format=json", "qlik/oauth/token/reporting"],
    );
    assert!(read.status.success(), "{read:?}");
    let lease: serde_json::Value = serde_json::from_slice(&read.stdout).expect("json");
    assert!(lease["data"]["access_token"].as_str().is_some(), "{lease}");
    let lease_id = lease["lease_id"].as_str().expect("lease_id");
    allowed(&server, &app_oauth, &["lease", "renew", lease_id]);
    for args in [
        &["read", "qlik/oauth/clients/app"][..],
        &[
            "write",
            "qlik/oauth/clients/app",
            &client_id,
            &client_secret,
        ],
        &[
            "write",
            "qlik/oauth/clients/mine",
            &client_id,
            &client_secret,
        ],
        &["read", "qlik/oauth/clients/app/secret"],
        &["write", "-force", "qlik/oauth/clients/app/rotate"],
        &["list", "qlik/oauth/clients"],
        &["read", "qlik/oauth/roles/reporting"],
        &[
            "write",
            "qlik/oauth/roles/reporting",
            "client=app",
            "shared=true",
        ],
        &["read", "qlik/oauth/token/other"],
        &["read", "qlik/key"],
        &["read", "qlik/creds/reporting"],
        &["read", "qlik/config"],
    ] {
        denied(&server, &app_oauth, args);
    }

    // The operator inspects, tidies and ends the dedicated keys, but reads no application key.
    allowed(&server, &operator, &["list", "qlik/keys"]);
    let keys = server.json(&["list", "qlik/keys"]);
    let first = keys[0].as_str().expect("a key id");
    allowed(&server, &operator, &["read", &format!("qlik/keys/{first}")]);
    allowed(&server, &operator, &["write", "-force", "qlik/tidy"]);
    allowed(
        &server,
        &operator,
        &["lease", "revoke", "-sync", "-prefix", "qlik/creds/"],
    );
    denied(&server, &operator, &["read", "qlik/key"]);
    denied(&server, &operator, &["read", "qlik/creds/reporting"]);
    allowed(&server, &operator, &["delete", "qlik/roles/other"]);

    // The runbooks' lease commands reach the engine's leases, and no further: not the leases
    // applications hold on the stored key or their tokens, not the whole mount, not another
    // mount's or the server's leases, and never a forced revocation.
    let key_lease = server.json(&["read", "qlik/key"])["lease_id"]
        .as_str()
        .expect("lease_id")
        .to_string();
    let creds_lease = server.json(&["read", "qlik/creds/reporting"])["lease_id"]
        .as_str()
        .expect("lease_id")
        .to_string();
    allowed(
        &server,
        &operator,
        &["list", "sys/leases/lookup/qlik/creds/reporting"],
    );
    allowed(&server, &operator, &["lease", "lookup", &creds_lease]);
    allowed(
        &server,
        &operator,
        &["lease", "revoke", "-sync", &creds_lease],
    );
    for args in [
        &["lease", "revoke", "-sync", &key_lease][..],
        &["lease", "revoke", "-sync", "-prefix", "qlik/"],
        &["lease", "revoke", "-sync", "-prefix", "qlik/key"],
        &[
            "lease",
            "revoke",
            "-sync",
            "-prefix",
            "qlik/oauth/token/reporting",
        ],
        &["lease", "revoke", "-force", "-prefix", "qlik/creds/"],
        &["list", "sys/leases/lookup/auth/token"],
        &["list", "sys/leases/lookup/"],
        &["read", "sys/policies/acl/qlik-operator"],
    ] {
        denied(&server, &operator, args);
    }
}

/// One runbook command of docs/runbooks.md.
#[derive(Debug, Clone)]
struct RunbookCommand {
    /// 1-based line in the file.
    line: usize,
    /// The `## ` heading it is under.
    section: String,
    /// The `### ` heading it is under since that section started ("" for none).
    phase: String,
    /// The command without its comment.
    text: String,
    /// Marked `# admin`: not an operator's.
    admin: bool,
}

/// Every `bao ` line of the ```sh blocks of `doc`.
fn runbook_commands(doc: &str) -> Vec<RunbookCommand> {
    let mut commands = Vec::new();
    let (mut section, mut phase) = (String::new(), String::new());
    let mut fence: Option<String> = None;
    for (index, line) in doc.lines().enumerate() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(info.trim().to_string()),
            };
            continue;
        }
        match fence.as_deref() {
            None => {
                if let Some(heading) = line.strip_prefix("## ") {
                    section = heading.trim().to_string();
                    phase.clear();
                } else if let Some(heading) = line.strip_prefix("### ") {
                    phase = heading.trim().to_string();
                }
            }
            Some("sh") if line.starts_with("bao ") => {
                let (text, comment) = match line.find(" #") {
                    Some(at) => (&line[..at], line[at + 2..].trim()),
                    None => (line, ""),
                };
                commands.push(RunbookCommand {
                    line: index + 1,
                    section: section.clone(),
                    phase: phase.clone(),
                    text: text.trim().to_string(),
                    admin: comment == "admin",
                });
            }
            Some(_) => {}
        }
    }
    commands
}

/// Runs the runbook's commands under the operator's token and keeps track of what ran.
struct Runbook<'a> {
    server: &'a DevServer,
    token: String,
    commands: Vec<RunbookCommand>,
    vars: BTreeMap<String, String>,
    ran: BTreeSet<usize>,
    scratch: PathBuf,
}

/// The outputs of one phase's commands, by command text (placeholders as written).
struct Outputs(Vec<(String, String)>);

impl Outputs {
    /// The output of the phase's command `text` (placeholders as in the doc); panics when the
    /// phase has no such command, so that an expectation cannot outlive its command.
    fn of(&self, text: &str) -> &str {
        self.0
            .iter()
            .find(|(t, _)| t == text)
            .map(|(_, out)| out.as_str())
            .unwrap_or_else(|| panic!("the runbook phase has no command `{text}`: {:?}", self.0))
    }

    /// Asserts that the output of `text` contains every one of `wanted`.
    fn expect(&self, text: &str, wanted: &[&str]) {
        let out = self.of(text);
        for want in wanted {
            assert!(out.contains(want), "`{text}` shows no {want:?}:\n{out}");
        }
    }
}

/// The value of `key` in a `bao read` table (`Key   Value` lines).
fn table_field<'o>(out: &'o str, key: &str) -> Option<&'o str> {
    out.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        rest.starts_with(' ').then(|| rest.trim())
    })
}

impl Runbook<'_> {
    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(name.to_string(), value.into());
    }

    fn substitute(&self, command: &RunbookCommand) -> String {
        let mut text = command.text.clone();
        while let Some(start) = text.find('<') {
            let end = start
                + text[start..]
                    .find('>')
                    .unwrap_or_else(|| panic!("line {}: unclosed placeholder", command.line));
            let name = &text[start + 1..end];
            let value = self.vars.get(name).unwrap_or_else(|| {
                panic!(
                    "line {}: no value for <{name}> in `{}` (known: {:?})",
                    command.line, command.text, self.vars
                )
            });
            text.replace_range(start..=end, value);
        }
        text
    }

    /// Runs every operator command of `section`'s `phase`, in order; each must succeed.
    fn run(&mut self, section: &str, phase: &str) -> Outputs {
        let todo: Vec<RunbookCommand> = self
            .commands
            .iter()
            .filter(|c| c.section == section && c.phase == phase && !c.admin)
            .cloned()
            .collect();
        assert!(
            !todo.is_empty(),
            "docs/runbooks.md has no commands under `## {section}` / `### {phase}`"
        );
        let mut outputs = Vec::new();
        for command in todo {
            let text = self.substitute(&command);
            let args: Vec<&str> = text.split_whitespace().skip(1).collect();
            let out = std::process::Command::new(&self.server.bao)
                .args(&args)
                .current_dir(&self.scratch)
                .env("BAO_ADDR", &self.server.addr)
                .env("BAO_TOKEN", &self.token)
                .env_remove("VAULT_ADDR")
                .env_remove("VAULT_TOKEN")
                .env("NO_PROXY", "127.0.0.1")
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run bao");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "docs/runbooks.md line {} (`{text}`, section {section}) failed under the \
                 operator policy: {}{stdout}",
                command.line,
                String::from_utf8_lossy(&out.stderr)
            );
            if let Some(field) = args.iter().find_map(|a| a.strip_prefix("-field=")) {
                self.set(field, stdout.trim());
            }
            self.ran.insert(command.line);
            outputs.push((command.text.clone(), stdout));
        }
        Outputs(outputs)
    }
}

/// An HTTPS client that trusts the fake's CA, for what happens at Qlik outside the engine
/// (a key generated in the console, a key deleted by an admin).
fn qlik_http(fake: &RunningFake) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(fake.ca_pem.as_bytes()).expect("ca"))
        .no_proxy()
        .build()
        .expect("client")
}

/// A Qlik call with `bearer`: (status, JSON body or Null).
async fn qlik(
    fake: &RunningFake,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = qlik_http(fake)
        .request(method, fake.url_for(path))
        .bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("qlik call");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A new stored key, and its token: root rotates and ends the rotation's lease at once (ending
/// a lease on the current key never deletes it). A new key id also means that the next
/// `status` asks Qlik about it at once (Qlik's answer about a key is reused for 10 s).
fn fresh_stored_key(server: &DevServer) -> String {
    let rotated = server.json(&["write", "-force", "qlik/rotate"]);
    server.ok(&[
        "lease",
        "revoke",
        "-sync",
        rotated["lease_id"].as_str().expect("lease"),
    ]);
    rotated["data"]["api_key"]
        .as_str()
        .expect("api_key")
        .to_string()
}

/// A key of the stored key's owner made at Qlik by hand ("Generate new key"): its token.
async fn key_made_by_hand(fake: &RunningFake, server: &DevServer, expiry: &str) -> String {
    let (status, key) = qlik(
        fake,
        reqwest::Method::POST,
        "/api/v1/api-keys",
        &fresh_stored_key(server),
        Some(json!({ "description": "made by hand", "expiry": expiry })),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key["token"].as_str().expect("token").to_string()
}

/// Polls `status` (root) until `check` holds on its data.
fn wait_status(server: &DevServer, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = server.json(&["read", "qlik/status"]);
        if check(&status["data"]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what}: {status}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last part of a lease id (as `bao list sys/leases/lookup/…` prints it).
fn lease_suffix(lease_id: &str) -> String {
    lease_id.rsplit('/').next().expect("suffix").to_string()
}

fn fault(method: &str, path: &str, status: u16, count: u32) -> FaultSpec {
    FaultSpec {
        method: Some(method.into()),
        path_prefix: Some(path.into()),
        status: Some(status),
        count: Some(count),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runbook_commands_run_under_the_operator_policy() {
    let started = Instant::now();
    let doc_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbooks.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/runbooks.md");
    let commands = runbook_commands(&doc);
    assert!(
        commands.len() >= 40,
        "too few runbook commands: {commands:?}"
    );

    // The tenant answers OAuth errors in Qlik's own shape (the fake's default): a refused
    // secret is a broken client whatever the body says.
    let settings = SettingsPatch {
        max_keys_per_user: Some(50),
        ..no_rate_limits()
    };
    let Some(Setup { fake, server }) = mounted_server(settings).await else {
        return;
    };
    server.write_config(&fake, &[]);
    server.ok(&["write", "qlik/roles/reporting", "expiry=PT1H"]);
    server.ok(&[
        "write",
        "qlik/oauth/clients/reporting",
        &format!("client_id={}", fake.oauth.client_id),
        &format!("client_secret={}", fake.oauth.client_secret),
    ]);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut rb = Runbook {
        token: token_for(&server, "qlik-operator"),
        server: &server,
        commands: commands.clone(),
        vars: BTreeMap::new(),
        ran: BTreeSet::new(),
        scratch: scratch.path().to_path_buf(),
    };
    rb.set("role", "reporting");
    rb.set("client", "reporting");
    let admin = fake.admin.api_key.clone();
    let client_path = format!("/api/v1/oauth-clients/{}", fake.oauth.client_id);
    let oauth_status = "bao read -format=json -field=oauth_clients qlik/status";

    // The first five minutes, on a healthy mount.
    let out = rb.run("The first five minutes", "");
    assert_eq!(
        table_field(out.of("bao read qlik/status"), "state"),
        Some("healthy")
    );
    out.expect(
        "bao read -format=raw qlik/metrics",
        &["qlik_chain_state{state=\"healthy\"} 1"],
    );
    out.expect(oauth_status, &["\"reporting\"", "\"state\": \"healthy\""]);

    // QlikKeyChainAtRisk: a key inside its margin and automatic rotation disabled (a failed
    // automatic rotation needs the server's one-minute tick; the commands are the same).
    let section = "QlikKeyChainAtRisk";
    let short = key_made_by_hand(&fake, &server, "PT50M").await;
    server.ok(&[
        "write",
        "qlik/config",
        &format!("api_key={short}"),
        "key_expiry=PT2H",
        "disable_automated_rotation=true",
    ]);
    let out = rb.run(section, "Check");
    let status = out.of("bao read qlik/status");
    assert_eq!(table_field(status, "state"), Some("at_risk"), "{status}");
    assert!(
        table_field(status, "state_reason").is_some_and(|r| r.contains("disabled")),
        "{status}"
    );
    out.expect("bao read qlik/config", &["disable_automated_rotation"]);
    rb.run(section, "Fix");
    let out = rb.run(section, "Verify");
    assert_eq!(
        table_field(out.of("bao read qlik/status"), "state"),
        Some("healthy")
    );

    // QlikKeyChainAtRiskExpiringSoon: ten minutes left, nothing rotating.
    let section = "QlikKeyChainAtRiskExpiringSoon";
    let short = key_made_by_hand(&fake, &server, "PT10M").await;
    server.ok(&[
        "write",
        "qlik/config",
        &format!("api_key={short}"),
        "disable_automated_rotation=true",
    ]);
    let out = rb.run(section, "Check");
    let status = out.of("bao read qlik/status");
    assert_eq!(table_field(status, "state"), Some("at_risk"), "{status}");
    let left: i64 = table_field(status, "seconds_left")
        .and_then(|s| s.parse().ok())
        .expect("seconds_left");
    assert!(left < 900, "{status}");
    rb.run(section, "Fix");
    let out = rb.run(section, "Verify");
    assert_eq!(
        table_field(out.of("bao read qlik/status"), "state"),
        Some("healthy")
    );
    server.ok(&["write", "qlik/config", "disable_automated_rotation=false"]);

    // QlikKeyChainBroken: the stored key deleted at Qlik; the owner generated new-key.txt.
    let section = "QlikKeyChainBroken";
    let new_key = key_made_by_hand(&fake, &server, "PT24H").await;
    std::fs::write(scratch.path().join("new-key.txt"), &new_key).expect("new-key.txt");
    let broken_id = server.json(&["read", "qlik/config"])["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();
    let (code, _) = qlik(
        &fake,
        reqwest::Method::DELETE,
        &format!("/api/v1/api-keys/{broken_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(code, 204);
    wait_status(&server, "broken", |s| s["state"] == "broken");
    let out = rb.run(section, "Check");
    let status = out.of("bao read qlik/status");
    assert_eq!(table_field(status, "state"), Some("broken"), "{status}");
    assert_eq!(
        table_field(status, "qlik_check"),
        Some("refused"),
        "{status}"
    );
    out.expect("bao read qlik/config", &["owner_name"]);
    rb.run(section, "Fix");
    let out = rb.run(section, "Verify");
    let status = out.of("bao read qlik/status");
    assert_eq!(table_field(status, "state"), Some("healthy"), "{status}");
    assert_eq!(table_field(status, "qlik_check"), Some("ok"), "{status}");
    assert_ne!(table_field(status, "key_id"), Some(broken_id.as_str()));

    // QlikOAuthClientAtRisk: a rotation of the secret failed (Qlik answered 503). A failed
    // *automatic* rotation (state at_risk) needs the one-minute tick; the commands are the same.
    let section = "QlikOAuthClientAtRisk";
    fake.inject_fault(fault(
        "POST",
        &format!("{client_path}/client-secrets"),
        503,
        1,
    ));
    server.fails(&["write", "-force", "qlik/oauth/clients/reporting/rotate"]);
    let out = rb.run(section, "Check");
    out.expect(oauth_status, &["\"consecutive_failures\": 1", "503"]);
    out.expect(
        "bao read qlik/oauth/clients/<client>",
        &["outcome:failure", "503"],
    );
    fake.clear_faults();
    let out = rb.run(section, "Fix");
    out.expect(
        "bao write -force qlik/oauth/clients/<client>/rotate",
        &["client_secret_hint", "previous"],
    );
    let out = rb.run(section, "Verify");
    out.expect(
        oauth_status,
        &["\"consecutive_failures\": 0", "\"state\": \"healthy\""],
    );

    // QlikOAuthClientBroken: the stored secret deleted in Qlik's console, a new one made there
    // (new-secret.txt), and an application holding a secret lease.
    let section = "QlikOAuthClientBroken";
    server.ok(&["read", "qlik/oauth/clients/reporting/secret"]);
    let hint = server.json(&["read", "qlik/oauth/clients/reporting"])["data"]["client_secret_hint"]
        .as_str()
        .expect("hint")
        .to_string();
    let (code, _) = qlik(
        &fake,
        reqwest::Method::DELETE,
        &format!("{client_path}/client-secrets/{hint}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(code, 204);
    let (code, created) = qlik(
        &fake,
        reqwest::Method::POST,
        &format!("{client_path}/client-secrets"),
        &admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    std::fs::write(
        scratch.path().join("new-secret.txt"),
        created["clientSecret"].as_str().expect("secret"),
    )
    .expect("new-secret.txt");
    server.fails(&["write", "-force", "qlik/oauth/clients/reporting/rotate"]);
    let out = rb.run(section, "Check");
    out.expect(
        oauth_status,
        &[
            "\"state\": \"broken\"",
            "Qlik rejected the OAuth client credentials",
        ],
    );
    rb.run(section, "Fix");
    let out = rb.run(section, "Verify");
    out.expect(
        oauth_status,
        &["\"state\": \"healthy\"", "\"consecutive_failures\": 0"],
    );
    let client = out.of("bao read qlik/oauth/clients/<client>");
    assert!(!client.contains(&format!("{hint}:")), "{client}");

    // The tenant's key limit reached: an operator's rotate lease holds a superseded key, and
    // the application's creds reads fill the owner's slots (two fit) until one is refused.
    let section = "The tenant's key limit reached";
    let first_rotate = server.json(&["write", "-force", "qlik/rotate"]);
    rb.set(
        "rotate_lease",
        lease_suffix(first_rotate["lease_id"].as_str().expect("lease")),
    );
    let second_rotate = server.json(&["write", "-force", "qlik/rotate"]);
    let owner = fake.service.user_id.clone();
    let now = fake.now();
    let active = fake
        .keys()
        .iter()
        .filter(|k| k.sub == owner && !k.deleted && !k.revoked)
        .filter(|k| k.expiry.parse::<jiff::Timestamp>().is_ok_and(|e| e > now))
        .count();
    fake.update_settings(SettingsPatch {
        max_keys_per_user: Some(u32::try_from(active).expect("count") + 3),
        ..Default::default()
    })
    .expect("settings");
    let mut creds = Vec::new();
    for _ in 0..2 {
        creds.push(server.json(&["read", "qlik/creds/reporting"]));
    }
    let refused = server.fails(&["read", "qlik/creds/reporting"]);
    assert!(refused.contains("key limit reached"), "{refused}");
    rb.set(
        "lease",
        lease_suffix(creds[0]["lease_id"].as_str().expect("lease")),
    );
    rb.set(
        "key_id",
        creds[0]["data"]["key_id"].as_str().expect("key_id"),
    );
    let out = rb.run(section, "Check");
    out.expect("bao read qlik/status", &["dedicated:2", "superseded:1"]);
    out.expect("bao read qlik/keys/<key_id>", &["dedicated", "reporting"]);
    out.expect("bao list sys/leases/lookup/qlik/creds", &["reporting/"]);
    out.expect(
        "bao list sys/leases/lookup/qlik/creds/<role>",
        &[rb.vars["lease"].as_str()],
    );
    out.expect(
        "bao list sys/leases/lookup/qlik/rotate",
        &[rb.vars["rotate_lease"].as_str()],
    );
    out.expect(
        "bao lease lookup qlik/creds/<role>/<lease>",
        &["issue_time"],
    );
    rb.run(section, "Fix");
    let out = rb.run(section, "Verify");
    out.expect("bao read qlik/status", &["dedicated:0", "superseded:0"]);
    assert!(!out.of("bao list qlik/keys").contains(&rb.vars["key_id"]));
    server.ok(&["read", "qlik/creds/reporting"]);
    server.ok(&[
        "lease",
        "revoke",
        "-sync",
        second_rotate["lease_id"].as_str().expect("lease"),
    ]);
    server.ok(&["lease", "revoke", "-sync", "-prefix", "qlik/creds/"]);
    fake.update_settings(SettingsPatch {
        max_keys_per_user: Some(50),
        ..Default::default()
    })
    .expect("settings");

    // A leaked stored key.
    let section = "A leaked stored key";
    let stored_id = server.json(&["read", "qlik/config"])["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();
    rb.run(section, "Check");
    assert_eq!(rb.vars["key_id"], stored_id);
    rb.run(section, "Fix");
    let out = rb.run(section, "Verify");
    out.expect("bao read qlik/config", &["outcome:success"]);
    assert!(!out.of("bao list qlik/keys").contains(&stored_id));
    let leaked = fake.keys().into_iter().find(|k| k.id == stored_id);
    assert!(
        leaked.is_some_and(|k| k.deleted),
        "the leaked key is alive at Qlik"
    );

    // A leaked dedicated key: the second of an application's two creds keys.
    let section = "A leaked dedicated key";
    server.ok(&["read", "qlik/creds/reporting"]);
    let leaked = server.json(&["read", "qlik/creds/reporting"]);
    let leaked_id = leaked["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();
    rb.set("key_id", leaked_id.clone());
    rb.set(
        "lease",
        lease_suffix(leaked["lease_id"].as_str().expect("lease")),
    );
    let out = rb.run(section, "Check");
    out.expect("bao read qlik/keys/<key_id>", &["dedicated", "reporting"]);
    out.expect(
        "bao lease lookup qlik/creds/<role>/<lease>",
        &["issue_time"],
    );
    rb.run(section, "Fix");
    let out = rb.run(section, "Verify");
    assert!(!out.of("bao list qlik/keys").contains(&leaked_id));
    let at_qlik = fake.keys().into_iter().find(|k| k.id == leaked_id);
    assert!(
        at_qlik.is_some_and(|k| k.deleted),
        "the leaked key is alive at Qlik"
    );

    // A leaked OAuth client secret, held by an application's secret lease.
    let section = "A leaked OAuth client secret";
    let lease = server.json(&["read", "qlik/oauth/clients/reporting/secret"]);
    rb.set(
        "lease",
        lease_suffix(lease["lease_id"].as_str().expect("lease")),
    );
    let leaked_hint = lease["data"]["client_secret_hint"]
        .as_str()
        .expect("hint")
        .to_string();
    let out = rb.run(section, "Check");
    out.expect(
        "bao read qlik/oauth/clients/<client>",
        &[&format!("{leaked_hint}:map[hint:{leaked_hint} kind:stored")],
    );
    let out = rb.run(section, "Fix");
    out.expect(
        "bao write -force qlik/oauth/clients/<client>/rotate",
        &["kept_while_held"],
    );
    let out = rb.run(section, "Verify");
    let client = out.of("bao read qlik/oauth/clients/<client>");
    assert!(!client.contains(&format!("{leaked_hint}:")), "{client}");
    let hints_at_qlik: Vec<String> = fake
        .oauth_clients()
        .into_iter()
        .find(|c| c.client_id == fake.oauth.client_id)
        .expect("client")
        .secrets
        .into_iter()
        .map(|s| s.hint)
        .collect();
    assert!(!hints_at_qlik.contains(&leaked_hint), "{hints_at_qlik:?}");

    // A Qlik outage, or 429s: Qlik answers 503 to the key check and refuses a rotation.
    let section = "A Qlik outage, or 429s";
    fresh_stored_key(&server);
    fake.inject_fault(fault("GET", "/api/v1/users/me", 503, 10_000));
    fake.inject_fault(FaultSpec {
        retry_after: Some(1),
        ..fault("POST", "/api/v1/api-keys", 429, 10_000)
    });
    server.fails(&["write", "-force", "qlik/rotate"]);
    wait_status(&server, "unreachable", |s| s["qlik_check"] == "unreachable");
    let out = rb.run(section, "Check");
    let status = out.of("bao read qlik/status");
    assert_eq!(
        table_field(status, "qlik_check"),
        Some("unreachable"),
        "{status}"
    );
    assert!(
        table_field(status, "last_error").is_some_and(|e| e.contains("rate limit")),
        "{status}"
    );
    out.expect(
        "bao read -format=raw qlik/metrics",
        &[
            "endpoint=\"GET /api/v1/users/me\",status=\"503\"",
            "endpoint=\"POST /api/v1/api-keys\",status=\"429\"",
        ],
    );
    fake.clear_faults();
    rb.run(section, "Fix");
    let out = rb.run(section, "Verify");
    let status = out.of("bao read qlik/status");
    assert_eq!(table_field(status, "qlik_check"), Some("ok"), "{status}");
    assert_eq!(
        table_field(status, "consecutive_failures"),
        Some("0"),
        "{status}"
    );

    // The server was down longer than a key's life: the tenant's clock moves 25 hours on (the
    // owner generated a longer key first, to have one that lives through it).
    let section = "The server was down longer than a key's life";
    fake.update_settings(SettingsPatch {
        max_api_key_expiry: Some("P3D".into()),
        ..Default::default()
    })
    .expect("settings");
    let new_key = key_made_by_hand(&fake, &server, "P2D").await;
    std::fs::write(scratch.path().join("new-key.txt"), &new_key).expect("new-key.txt");
    fake.advance_clock(25 * 3600);
    wait_status(&server, "broken", |s| s["state"] == "broken");
    let out = rb.run(section, "Check");
    assert_eq!(
        table_field(out.of("bao read qlik/status"), "state"),
        Some("broken")
    );
    rb.run(section, "Fix");
    let out = rb.run(section, "Verify");
    let status = out.of("bao read qlik/status");
    assert_eq!(table_field(status, "state"), Some("healthy"), "{status}");
    assert_eq!(table_field(status, "qlik_check"), Some("ok"), "{status}");

    // Every runbook command ran under the operator policy, or is marked as an admin's.
    let missed: Vec<&RunbookCommand> = commands
        .iter()
        .filter(|c| !c.admin && !rb.ran.contains(&c.line))
        .collect();
    assert!(
        missed.is_empty(),
        "runbook commands the test never ran (give their section a set-up, or mark them \
         `# admin`): {missed:#?}"
    );
    eprintln!(
        "{} runbook commands ran under qlik-operator in {:?}",
        rb.ran.len(),
        started.elapsed()
    );
}
