//! The plugin's log as an operator reads it, in a real `bao server -dev`: one plugin process
//! serves every mount and the server files all its lines under the first mount's accessor, so
//! each line about a request or a periodic run must name its mount; the default level shows
//! every mint and deletion; `debug` is the engine's debug, not HTTP/2 frames; an invalid
//! `QLIK_PLUGIN_LOG` warns.

mod support;

use support::{DevServer, PLUGIN, config_args, no_rate_limits, strs};
use vault_plugin_secrets_qlik::engine::api_key::tenant_clock::FRESH;
use vault_plugin_secrets_qlik::fake::{FakeOptions, FakeTenant, FaultSpec, RunningFake};

async fn fake() -> RunningFake {
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    fake.update_settings(no_rate_limits()).expect("settings");
    fake
}

/// Writes `<mount>/config` for `fake`.
fn configure(server: &DevServer, mount: &str, fake: &RunningFake) {
    let mut args = config_args(fake, server.dir.path(), &[]);
    args[1] = format!("{mount}/config");
    server.ok(&strs(&args));
}

/// The plugin's own lines in the server log (every mount's: they share one logger name; the
/// server's plugin client logs under it too, without `@module`).
fn plugin_lines(log: &str) -> Vec<&str> {
    let logger = format!("secrets.{PLUGIN}.");
    log.lines()
        .filter(|l| l.contains(&logger) && l.contains(" @module="))
        .collect()
}

/// The value of ` key=value` in a server log line (hclog's text format), if any.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split_whitespace().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_engine_line_names_its_mount() {
    let (one, two) = (fake().await, fake().await);
    let Some(server) = DevServer::start_env(&[], &[("QLIK_PLUGIN_LOG", "debug")]) else {
        return;
    };
    server.enable("qlik");
    server.enable("qlik2");
    configure(&server, "qlik", &one);
    configure(&server, "qlik2", &two);
    let mut rotated = Vec::new();
    for mount in ["qlik", "qlik2"] {
        let lease = server.json(&["write", "-force", &format!("{mount}/rotate")]);
        rotated.push(
            lease["data"]["key_id"]
                .as_str()
                .expect("key_id")
                .to_string(),
        );
    }
    let (qlik_key, qlik2_key) = (&rotated[0], &rotated[1]);
    assert_eq!(
        server.plugin_pids().len(),
        1,
        "one process serves both mounts"
    );
    // A lease's end is a request of its own (revoke), also filed under its mount.
    server.ok(&["write", "qlik2/roles/app", "expiry=PT1H"]);
    let creds = server.json(&["read", "qlik2/creds/app"]);
    let dedicated = creds["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();
    server.ok(&[
        "lease",
        "revoke",
        "-sync",
        creds["lease_id"].as_str().expect("lease"),
    ]);

    let log = server.log();
    let lines = plugin_lines(&log);
    // Every line of the engine, its Qlik client and its framework (everything but the
    // process's own start-up and transport lines) names the mount.
    let engine: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            field(l, "@module").is_some_and(|m| {
                m.starts_with("vault_plugin_secrets_qlik::")
                    && !m.starts_with("vault_plugin_secrets_qlik::goplugin")
            })
        })
        .collect();
    assert!(
        engine.len() >= 6,
        "too few engine lines:\n{}",
        lines.join("\n")
    );
    let mut uuids = std::collections::BTreeMap::new();
    for line in &engine {
        let mount = field(line, "mount").unwrap_or_else(|| panic!("no mount: {line}"));
        let uuid = field(line, "mount_uuid").unwrap_or_else(|| panic!("no mount_uuid: {line}"));
        assert!(mount == "qlik/" || mount == "qlik2/", "{line}");
        // One backend UUID per mount point, and a different one for each.
        assert_eq!(
            uuids.entry(mount).or_insert(uuid).to_string(),
            uuid,
            "{line}"
        );
    }
    assert_eq!(uuids.len(), 2, "{uuids:?}");
    assert_ne!(uuids["qlik/"], uuids["qlik2/"]);

    // Each rotation's lines carry its own mount: a grep for one mount is its history.
    let rotation = |key: &str| -> Vec<&str> {
        engine
            .iter()
            .copied()
            .filter(|l| l.contains("stored key rotated") && field(l, "new_key_id") == Some(key))
            .collect()
    };
    let (first, second) = (rotation(qlik_key), rotation(qlik2_key));
    assert_eq!(first.len(), 1, "{log}");
    assert_eq!(second.len(), 1, "{log}");
    assert_eq!(field(first[0], "mount"), Some("qlik/"), "{}", first[0]);
    assert_eq!(field(second[0], "mount"), Some("qlik2/"), "{}", second[0]);
    assert_eq!(
        field(first[0], "request_path"),
        Some("rotate"),
        "{}",
        first[0]
    );
    assert!(field(first[0], "request_id").is_some(), "{}", first[0]);
    let minted = |mount: &str| {
        engine
            .iter()
            .filter(|l| l.contains("key minted") && field(l, "mount") == Some(mount))
            .count()
    };
    assert_eq!(minted("qlik/"), 1, "{log}");
    assert_eq!(minted("qlik2/"), 2, "{log}");
    let revoked: Vec<&str> = engine
        .iter()
        .copied()
        .filter(|l| {
            l.contains("dedicated key deleted at Qlik") && field(l, "key_id") == Some(&dedicated)
        })
        .collect();
    assert_eq!(revoked.len(), 1, "{log}");
    assert_eq!(field(revoked[0], "mount"), Some("qlik2/"), "{}", revoked[0]);
    assert_eq!(
        field(revoked[0], "request_operation"),
        Some("revoke"),
        "{}",
        revoked[0]
    );

    // `debug` is the engine's debug (its Qlik calls), not the transport's frames.
    assert!(
        engine
            .iter()
            .any(|l| l.contains("[DEBUG]") && l.contains("Qlik answered")),
        "no engine DEBUG line:\n{}",
        lines.join("\n")
    );
    let transport: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            field(l, "@module").is_some_and(|m| {
                ["h2", "hyper", "tonic", "tower", "rustls"]
                    .iter()
                    .any(|t| m == *t || m.starts_with(&format!("{t}::")))
            })
        })
        .collect();
    assert!(
        transport.is_empty(),
        "transport lines at debug:\n{}",
        transport.join("\n")
    );
    assert!(!log.contains(&one.service.api_key) && !log.contains(&two.service.api_key));
}

/// OAuth at debug: client writes, token reads, a secret rotation and a secret lease leave
/// lines that name the mount and the client, and never a secret or a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauth_lines_name_the_client_and_never_a_secret() {
    let one = fake().await;
    let Some(server) = DevServer::start_env(&[], &[("QLIK_PLUGIN_LOG", "debug")]) else {
        return;
    };
    server.enable("qlik");
    configure(&server, "qlik", &one);
    let id_arg = format!("client_id={}", one.oauth.client_id);
    let secret_arg = format!("client_secret={}", one.oauth.client_secret);
    server.ok(&["write", "qlik/oauth/clients/app", &id_arg, &secret_arg]);
    server.ok(&["write", "qlik/oauth/roles/own", "client=app"]);
    let token = server.json(&["read", "qlik/oauth/token/own"]);
    let access = token["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    server.ok(&[
        "lease",
        "revoke",
        token["lease_id"].as_str().expect("lease"),
    ]);
    server.json(&["write", "-force", "qlik/oauth/clients/app/rotate"]);
    let lease = server.json(&["read", "qlik/oauth/clients/app/secret"]);
    let new_secret = lease["data"]["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    server.ok(&[
        "lease",
        "revoke",
        lease["lease_id"].as_str().expect("lease"),
    ]);
    let log = server.log();
    let lines = plugin_lines(&log);
    let rotated: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("client secret rotated"))
        .collect();
    assert_eq!(rotated.len(), 1, "{}", lines.join("\n"));
    assert_eq!(field(rotated[0], "client"), Some("app"), "{}", rotated[0]);
    assert_eq!(field(rotated[0], "mount"), Some("qlik/"), "{}", rotated[0]);
    for (what, secret) in [
        (
            "the written client secret",
            one.oauth.client_secret.as_str(),
        ),
        ("the rotated client secret", new_secret.as_str()),
        ("an access token", access.as_str()),
    ] {
        assert!(!log.contains(secret), "{what} is in the server's log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_level_shows_every_mint_and_deletion() {
    let tenant = fake().await;
    let Some(server) = DevServer::start() else {
        return;
    };
    server.enable("qlik");
    configure(&server, "qlik", &tenant);
    let rotated = server.json(&["write", "-force", "qlik/rotate"]);
    let stored = rotated["data"]["key_id"]
        .as_str()
        .expect("key_id")
        .to_string();
    server.ok(&["write", "qlik/roles/app", "expiry=PT1H"]);
    let creds = server.json(&["read", "qlik/creds/app"]);
    server.ok(&[
        "lease",
        "revoke",
        "-sync",
        creds["lease_id"].as_str().expect("lease"),
    ]);
    // An idle mount whose stored key Qlik now rejects: the next `key` read checks the
    // tenant's clock with it (after FRESH without an answer from Qlik), is still served, and
    // the operator is warned.
    tenant.inject_fault(FaultSpec {
        method: Some("GET".into()),
        path_prefix: Some(format!("/api/v1/api-keys/{stored}")),
        status: Some(401),
        ..Default::default()
    });
    std::thread::sleep(FRESH + std::time::Duration::from_secs(1));
    let read = server.json(&["read", "qlik/key"]);
    assert_eq!(read["data"]["key_id"], stored.as_str(), "{read}");
    assert_eq!(tenant.pending_faults(), 0, "the key read did not ask Qlik");
    let log = server.log();
    let lines = plugin_lines(&log);
    let rejected: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("[WARN]") && l.contains("Qlik rejected the stored key (401)"))
        .collect();
    assert_eq!(rejected.len(), 1, "{}", lines.join("\n"));
    assert_eq!(
        field(rejected[0], "mount"),
        Some("qlik/"),
        "{}",
        rejected[0]
    );
    assert_eq!(
        field(rejected[0], "key_id"),
        Some(stored.as_str()),
        "{}",
        rejected[0]
    );
    let info = |message: &str| {
        lines
            .iter()
            .filter(|l| l.contains("[INFO]") && l.contains(message))
            .count()
    };
    assert_eq!(info("key minted"), 2, "{}", lines.join("\n"));
    assert_eq!(info("stored key rotated"), 1);
    // The first key had no lease: deleted at once.
    assert_eq!(info("superseded key deleted at Qlik"), 1);
    assert_eq!(info("dedicated key deleted at Qlik"), 1);
    assert!(
        !lines.iter().any(|l| l.contains("[DEBUG]")),
        "DEBUG plugin lines at the default level:\n{}",
        lines.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_level_warns_and_logs_at_info() {
    let tenant = fake().await;
    let Some(server) = DevServer::start_env(&[], &[("QLIK_PLUGIN_LOG", "verbose")]) else {
        return;
    };
    server.enable("qlik");
    configure(&server, "qlik", &tenant);
    server.ok(&["write", "-force", "qlik/rotate"]);
    let log = server.log();
    let lines = plugin_lines(&log);
    let warning: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("[WARN]") && l.contains("invalid QLIK_PLUGIN_LOG"))
        .collect();
    assert_eq!(warning.len(), 1, "{}", lines.join("\n"));
    assert!(warning[0].contains("verbose"), "{}", warning[0]);
    assert!(warning[0].contains("accepted: a level"), "{}", warning[0]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[INFO]") && l.contains("key minted")),
        "{}",
        lines.join("\n")
    );
    assert!(!lines.iter().any(|l| l.contains("[DEBUG]")));
}
