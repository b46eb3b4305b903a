//! The README's Vault Agent examples (`examples/agent/`), run as written: `bao agent` with the
//! example's config and template renders the key of `qlik/key` into a file, and renders the
//! new key after a rotation, by itself, when the old key's lease nears its end; with the OAuth
//! config it renders an access token of `qlik/oauth/token/reporting`, and a new token before
//! the old one expires.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;
use support::inproc::authenticates;
use support::{ChildGuard, DevServer, Setup, configured_server, mounted_server, no_rate_limits};
use vault_plugin_secrets_qlik::fake::SettingsPatch;

/// The example's `files`, copied unchanged into `dir` (the agent's working directory).
fn copy_example(dir: &Path, files: &[&str]) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent");
    for file in files {
        std::fs::copy(example.join(file), dir.join(file)).expect("copy example file");
    }
}

/// `KEY=value` lines of the rendered file, once it has `field`.
fn rendered(path: &Path, field: &str) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let map: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.contains_key(field).then_some(map)
}

/// Waits until the rendered `file` has `field` equal to `value` (`None`: any value) and not
/// equal to `not`.
fn wait_for_file(
    server: &DevServer,
    agent_log: &Path,
    file: &Path,
    (field, value, not): (&str, Option<&str>, Option<&str>),
    timeout: Duration,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(map) = rendered(file, field)
            && value.is_none_or(|v| map[field] == v)
            && not.is_none_or(|v| map[field] != v)
        {
            return map;
        }
        if Instant::now() > deadline {
            panic!(
                "the agent did not render {field} (= {value:?}, != {not:?}) within {timeout:?}; file: {:?}\nagent log:\n{}\nserver log:\n{}",
                std::fs::read_to_string(file).ok(),
                std::fs::read_to_string(agent_log).unwrap_or_default(),
                server.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts `bao agent -config=<config>` in `dir` (its token in `agent-token`), logging to
/// `agent.log`.
fn start_agent(server: &DevServer, dir: &Path, config: &str, token: &str) -> (ChildGuard, PathBuf) {
    std::fs::write(dir.join("agent-token"), format!("{token}\n")).expect("token file");
    let agent_log = dir.join("agent.log");
    let log = std::fs::File::create(&agent_log).expect("agent log");
    let agent = ChildGuard(
        Command::new(&server.bao)
            .args(["agent", &format!("-config={config}")])
            .current_dir(dir)
            .env("BAO_ADDR", &server.addr)
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env("NO_PROXY", "127.0.0.1")
            .env("TMPDIR", server.dir.path().join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start bao agent"),
    );
    (agent, agent_log)
}

fn assert_only_owner_reads(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the rendered file is readable by others");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_renders_the_key_and_the_new_key_after_a_rotation() {
    let Some(Setup { fake, server }) = mounted_server(no_rate_limits()).await else {
        return;
    };
    // `key` leases are capped at the mount's max lease TTL: 30 s makes the agent re-read the
    // key within 30 s instead of near the end of the key's 24 h life.
    server.ok(&["secrets", "tune", "-max-lease-ttl=30s", "qlik/"]);
    // No automatic rotation during the test: only the rotation below changes the key.
    server.write_config(&fake, &["auto_rotate=false"]);
    let first_id = server.json(&["read", "qlik/config"])["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();

    let agent_dir = server.dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("agent dir");
    copy_example(&agent_dir, &["agent.hcl", "qlik-key.ctmpl"]);
    let (_agent, agent_log) = start_agent(&server, &agent_dir, "agent.hcl", "root");

    let file = agent_dir.join("qlik-key.env");
    let first = wait_for_file(
        &server,
        &agent_log,
        &file,
        ("QLIK_KEY_ID", Some(&first_id), None),
        Duration::from_secs(20),
    );
    assert_eq!(
        first["QLIK_TENANT_URL"],
        fake.url.as_str().trim_end_matches('/')
    );
    assert_eq!(first["QLIK_API_KEY"], fake.service.api_key);
    assert!(!first["QLIK_KEY_EXPIRES_AT"].is_empty(), "{first:?}");
    assert_only_owner_reads(&file);

    // A rotation: its lease may be no longer than the mount's max (30 s), so the key it mints
    // lives 30 s.
    let rotated = server.json(&["write", "qlik/rotate", "expiry=30s"]);
    let new_id = rotated["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();
    assert_ne!(new_id, first_id);
    let started = Instant::now();
    // The agent re-reads a non-renewable secret at 90-100 % of its lease (30 s at most here).
    let second = wait_for_file(
        &server,
        &agent_log,
        &file,
        ("QLIK_KEY_ID", Some(&new_id), None),
        Duration::from_secs(60),
    );
    eprintln!(
        "the agent rendered the new key {:?} after the rotation",
        started.elapsed()
    );
    assert_eq!(
        second["QLIK_API_KEY"],
        rotated["data"]["api_key"].as_str().unwrap()
    );
    assert!(
        authenticates(&fake, &second["QLIK_API_KEY"]).await,
        "the rendered new key does not authenticate at the tenant"
    );
}

/// How many `POST /oauth/token` the fake answered.
fn token_calls(fake: &vault_plugin_secrets_qlik::fake::RunningFake) -> usize {
    fake.fake()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/oauth/token")
        .count()
}

/// How Vault Agent (OpenBao Agent 2.7.2, openbao-template 1.0.1) follows a renewable lease
/// with a max TTL: its lifetime watcher renews the lease at once, then sleeps 2/3 of the TTL
/// plus a third of a grace of 10-20 % of the first TTL; that renewal cannot extend the lease
/// (max TTL = the token's life), and the third of the TTL it leaves is within the grace, so the
/// watcher stops and the agent reads a new token: at 70-73 % of the token's life.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_renders_an_oauth_token_and_a_new_one_before_it_expires() {
    // Tokens live 2 minutes (Qlik's: 6 hours), so the test sees a whole cycle.
    let settings = SettingsPatch {
        oauth_token_life: Some("PT2M".into()),
        ..no_rate_limits()
    };
    let Some(Setup { fake, server }) = configured_server(settings, &[]).await else {
        return;
    };
    let id_arg = format!("client_id={}", fake.oauth.client_id);
    let secret_arg = format!("client_secret={}", fake.oauth.client_secret);
    server.ok(&["write", "qlik/oauth/clients/app", &id_arg, &secret_arg]);
    server.ok(&["write", "qlik/oauth/roles/reporting", "client=app"]);
    // The agent authenticates with the README's policy for this role, nothing more.
    let app_token = server.token_for_example_policy("qlik-app-oauth");

    let agent_dir = server.dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("agent dir");
    copy_example(&agent_dir, &["agent-oauth.hcl", "qlik-oauth-token.ctmpl"]);
    let calls_before = token_calls(&fake);
    let (_agent, agent_log) = start_agent(&server, &agent_dir, "agent-oauth.hcl", &app_token);

    let file = agent_dir.join("qlik-oauth-token.env");
    let first = wait_for_file(
        &server,
        &agent_log,
        &file,
        ("QLIK_ACCESS_TOKEN", None, None),
        Duration::from_secs(20),
    );
    let rendered_at = Instant::now();
    let rendered_ts = Timestamp::now();
    assert_only_owner_reads(&file);
    let old_token = first["QLIK_ACCESS_TOKEN"].clone();
    assert!(!old_token.is_empty(), "{first:?}");
    let expires_at: Timestamp = first["QLIK_TOKEN_EXPIRES_AT"]
        .parse()
        .expect("QLIK_TOKEN_EXPIRES_AT is RFC 3339");
    let life = expires_at.duration_since(rendered_ts).as_secs_f64();
    assert!((100.0..=121.0).contains(&life), "token life {life}s");
    assert!(
        authenticates(&fake, &old_token).await,
        "the rendered token does not authenticate at the tenant"
    );

    // The agent's lease on the first token.
    let listed = server.json(&["list", "sys/leases/lookup/qlik/oauth/token/reporting/"]);
    let leases: Vec<&str> = listed
        .as_array()
        .expect("lease list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(leases.len(), 1, "one lease, the agent's: {listed}");
    let old_lease = format!("qlik/oauth/token/reporting/{}", leases[0]);

    // A new token, before the old one expires.
    let second = wait_for_file(
        &server,
        &agent_log,
        &file,
        ("QLIK_ACCESS_TOKEN", None, Some(&old_token)),
        Duration::from_secs_f64(life + 15.0),
    );
    let after = rendered_at.elapsed().as_secs_f64();
    let left = expires_at.duration_since(Timestamp::now()).as_secs_f64();
    eprintln!(
        "the agent rendered a new token {after:.1}s after the first ({:.0} % of its {life:.0}s life, {left:.1}s before it expired)",
        100.0 * after / life
    );
    assert!(
        left > 10.0,
        "the new token came {left:.1}s before the old one expired"
    );
    assert!(
        authenticates(&fake, &old_token).await,
        "the old token was dead before the agent replaced it"
    );
    assert!(
        authenticates(&fake, &second["QLIK_ACCESS_TOKEN"]).await,
        "the new rendered token does not authenticate at the tenant"
    );
    let new_expires: Timestamp = second["QLIK_TOKEN_EXPIRES_AT"].parse().expect("RFC 3339");
    assert!(new_expires > expires_at, "{second:?}");
    // The schedule above: 2/3 of the life plus a third of a 10-20 % grace (with slack for the
    // agent's own steps).
    let share = after / life;
    assert!(
        (0.66..=0.80).contains(&share),
        "re-rendered at {:.0} % of the token's life, not at 70-73 %",
        100.0 * share
    );
    // Renewals get no token: one token call for each rendered token.
    assert_eq!(token_calls(&fake) - calls_before, 2, "token calls at Qlik");

    // The agent renewed the old lease at about 2/3 of its life (the renewal that made it
    // give up on the lease), and the server kept the lease within the token's life.
    let lookup = server.json(&[
        "write",
        "sys/leases/lookup",
        &format!("lease_id={old_lease}"),
    ]);
    let last_renewal: Timestamp = lookup["data"]["last_renewal"]
        .as_str()
        .unwrap_or_else(|| panic!("the agent never renewed the lease: {lookup}"))
        .parse()
        .expect("last_renewal");
    let renewed_after = last_renewal.duration_since(rendered_ts).as_secs_f64();
    assert!(
        renewed_after > 0.6 * life && renewed_after <= after + 1.0,
        "last renewal {renewed_after:.1}s after the first render"
    );
    let lease_end: Timestamp = lookup["data"]["expire_time"]
        .as_str()
        .expect("expire_time")
        .parse()
        .expect("expire_time");
    assert!(
        lease_end.duration_since(expires_at).as_secs_f64() <= 1.0,
        "the renewed lease ends at {lease_end}, after the token ({expires_at})"
    );
}
