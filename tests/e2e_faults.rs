//! A representative part of the fault matrix (`fault_matrix.rs` has all of it, in-process)
//! through a real `bao` dev server: every Qlik call and every kind of fault at least once,
//! one server for all cells. Each cell: the status of the README's errors table (or success after
//! retries), `config` unchanged by a failure, and the invariants after `tidy`.

mod support;

use serde_json::Value;
use support::crash::{self, Live};
use support::{DevServer, Setup};
use vault_plugin_secrets_qlik::fake::{FaultKind, FaultSpec};

/// (name, faults, CLI args, expected: `None` = success, `Some(status)`).
type Cell = (&'static str, Vec<FaultSpec>, Vec<String>, Option<u16>);

fn fault(method: &str, prefix: &str, count: u32) -> FaultSpec {
    FaultSpec {
        method: Some(method.into()),
        path_prefix: Some(prefix.into()),
        count: Some(count),
        ..Default::default()
    }
}

fn status(code: u16, spec: FaultSpec) -> FaultSpec {
    FaultSpec {
        status: Some(code),
        retry_after: (code == 429).then_some(1),
        ..spec
    }
}

fn config_without_outcome(server: &DevServer) -> Value {
    let mut data = server.json(&["read", "qlik/config"])["data"].clone();
    if let Value::Object(map) = &mut data {
        map.remove("last_rotation");
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn qlik_failures_through_the_server_give_clear_errors_and_lose_nothing() {
    let Some(Setup { fake, server }) =
        crash::dev_server(&["request_timeout=2s", "max_retries=1"]).await
    else {
        return;
    };
    let t = crash::DevTarget(&server);
    let mut live: Live = Vec::new();
    let revoke_me = crash::json(&t, &["read", "qlik/creds/app"]);
    let revoke_key = revoke_me["data"]["key_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no key_id in the creds answer"))
        .to_string();
    let revoke_lease = revoke_me["lease_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no lease_id in the creds answer"))
        .to_string();
    live.push((revoke_lease.clone(), revoke_key.clone()));
    let url = fake.url.as_str().trim_end_matches('/').to_string();
    let key = fake.service.api_key.clone();
    let users_me = "/api/v1/users/me";
    let keys = "/api/v1/api-keys";
    let key_path = "/api/v1/api-keys/";
    let configs = "/api/v1/api-keys/configs/";
    // (name, faults, CLI args, expected: None = success, Some(code))
    let cells: Vec<Cell> = vec![
        (
            "config: users/me 503 throughout",
            vec![status(503, fault("GET", users_me, 5))],
            vec!["write".into(), "qlik/config".into(), "max_retries=1".into()],
            Some(502),
        ),
        (
            "config: key record 401",
            vec![status(401, fault("GET", key_path, 1))],
            vec![
                "write".into(),
                "qlik/config".into(),
                format!("api_key={key}"),
            ],
            Some(400),
        ),
        (
            "config: connection refused (closed port)",
            vec![],
            vec![
                "write".into(),
                "qlik/config".into(),
                "tenant_url=https://127.0.0.1:9".into(),
                format!("api_key={key}"),
            ],
            Some(502),
        ),
        (
            "rotate: key created, answer after the timeout",
            vec![FaultSpec {
                delay_after_ms: Some(2_500),
                ..fault("POST", keys, 1)
            }],
            vec!["write".into(), "-force".into(), "qlik/rotate".into()],
            Some(502),
        ),
        (
            "rotate: connection dropped after the key was created",
            vec![FaultSpec {
                kind: Some(FaultKind::DropConnection),
                ..fault("POST", keys, 1)
            }],
            vec!["write".into(), "-force".into(), "qlik/rotate".into()],
            Some(502),
        ),
        (
            "rotate: verifying the new key, 403",
            vec![status(403, fault("GET", users_me, 5))],
            vec!["write".into(), "-force".into(), "qlik/rotate".into()],
            Some(400),
        ),
        (
            "rotate: 429 once, then success",
            vec![status(429, fault("POST", keys, 1))],
            vec!["write".into(), "-force".into(), "qlik/rotate".into()],
            None,
        ),
        (
            "creds: malformed JSON for the created key",
            vec![FaultSpec {
                kind: Some(FaultKind::MalformedJson),
                ..fault("POST", keys, 1)
            }],
            vec!["read".into(), "qlik/creds/app".into()],
            Some(502),
        ),
        (
            "creds: tenant limits 429 throughout",
            vec![status(429, fault("GET", configs, 5))],
            vec!["read".into(), "qlik/creds/app".into()],
            Some(429),
        ),
        (
            "creds: key list times out once, retried",
            vec![
                FaultSpec {
                    delay_before_ms: Some(0),
                    ..fault("GET", configs, 1)
                },
                FaultSpec {
                    delay_before_ms: Some(2_500),
                    ..fault("GET", keys, 1)
                },
            ],
            vec!["read".into(), "qlik/creds/app".into()],
            None,
        ),
        (
            "tidy: key list 500 once, retried",
            vec![status(500, fault("GET", keys, 1))],
            vec!["write".into(), "-force".into(), "qlik/tidy".into()],
            None,
        ),
        (
            "revoke: delete 502 throughout",
            vec![status(502, fault("DELETE", key_path, 5))],
            vec![
                "lease".into(),
                "revoke".into(),
                "-sync".into(),
                revoke_lease.clone(),
            ],
            Some(400),
        ),
    ];
    let count = cells.len();
    for (name, faults, args, expected) in cells {
        let before = config_without_outcome(&server);
        let injected: u32 = faults.iter().map(|f| f.count.unwrap_or(1)).sum();
        for f in faults {
            fake.inject_fault(f);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut with_format = args.clone();
        if args[0] != "lease" {
            with_format.insert(1, "-format=json");
        }
        let out = server.cli(&with_format);
        // Every fault of a cell that succeeds was hit (a success that never met its fault
        // proves nothing); a failing cell met at least one use of its faults.
        let pending = fake.pending_faults();
        if expected.is_none() {
            assert_eq!(pending, 0, "{name}: a fault was never hit");
        } else {
            assert!(
                injected == 0 || pending < injected,
                "{name}: the fault was never hit"
            );
        }
        fake.clear_faults();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        match expected {
            None => {
                assert!(out.status.success(), "{name}: {stderr}");
                if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
                    && let (Some(lease), Some(id)) =
                        (v["lease_id"].as_str(), v["data"]["key_id"].as_str())
                    && !lease.is_empty()
                {
                    live.push((lease.to_string(), id.to_string()));
                }
            }
            Some(code) => {
                assert!(!out.status.success(), "{name}: should fail");
                assert!(
                    stderr.contains(&format!("Code: {code}")),
                    "{name}: expected {code}: {stderr}"
                );
                assert!(
                    stderr.contains("Qlik") || stderr.contains("failed to revoke"),
                    "{name}: says what failed: {stderr}"
                );
                assert_eq!(
                    config_without_outcome(&server),
                    before,
                    "{name}: config changed by a failure"
                );
            }
        }
        if name.starts_with("rotate: key created") {
            // The held answer: let the fake finish before tidy looks.
            std::thread::sleep(std::time::Duration::from_millis(1_000));
        }
        if name.starts_with("revoke") {
            // The server retries a failed revocation; here: at once.
            server.ok(&["lease", "revoke", "-sync", args[3]]);
            live.retain(|(_, id)| *id != revoke_key);
            assert!(!support::inproc::alive(&fake.keys(), &revoke_key));
        }
        crash::check(&t, &fake, &live, name).await;
    }
    let _ = url;
    eprintln!("FAULTS THROUGH THE SERVER: {count} cells");
}
