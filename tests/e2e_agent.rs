//! The README's Vault Agent example (`examples/agent/`), run as written: `bao agent` with the
//! example's config and template renders the key of `qlik/key` into a file, and renders the
//! new key after a rotation, by itself, when the old key's lease nears its end.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::inproc::authenticates;
use support::{ChildGuard, DevServer, Setup, mounted_server, no_rate_limits};

/// The example's files, copied unchanged into `dir` (the agent's working directory).
fn copy_example(dir: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent");
    for file in ["agent.hcl", "qlik-key.ctmpl"] {
        std::fs::copy(example.join(file), dir.join(file)).expect("copy example file");
    }
}

/// `KEY=value` lines of the rendered file.
fn rendered(path: &Path) -> Option<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let map: std::collections::BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.contains_key("QLIK_KEY_ID").then_some(map)
}

fn wait_for_file(
    server: &DevServer,
    agent_log: &Path,
    file: &Path,
    key_id: &str,
    timeout: Duration,
) -> std::collections::BTreeMap<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(map) = rendered(file)
            && map["QLIK_KEY_ID"] == key_id
        {
            return map;
        }
        if Instant::now() > deadline {
            panic!(
                "the agent did not render key {key_id} within {timeout:?}; file: {:?}\nagent log:\n{}\nserver log:\n{}",
                std::fs::read_to_string(file).ok(),
                std::fs::read_to_string(agent_log).unwrap_or_default(),
                server.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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
    copy_example(&agent_dir);
    std::fs::write(agent_dir.join("agent-token"), "root\n").expect("token file");
    let agent_log = agent_dir.join("agent.log");
    let log = std::fs::File::create(&agent_log).expect("agent log");
    let _agent = ChildGuard(
        Command::new(&server.bao)
            .args(["agent", "-config=agent.hcl"])
            .current_dir(&agent_dir)
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

    let file = agent_dir.join("qlik-key.env");
    let first = wait_for_file(
        &server,
        &agent_log,
        &file,
        &first_id,
        Duration::from_secs(20),
    );
    assert_eq!(
        first["QLIK_TENANT_URL"],
        fake.url.as_str().trim_end_matches('/')
    );
    assert_eq!(first["QLIK_API_KEY"], fake.service.api_key);
    assert!(!first["QLIK_KEY_EXPIRES_AT"].is_empty(), "{first:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the rendered key file is readable by others");
    }

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
    let second = wait_for_file(&server, &agent_log, &file, &new_id, Duration::from_secs(60));
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
