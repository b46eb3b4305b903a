//! Crash points with a real `bao` dev server: the plugin process is killed (by PID) at each
//! step of `rotate`, `creds` and revocation, and of an OAuth client's secret rotation and a
//! secret lease's end (see `support/crash.rs`). The client gets an error, or, when the server
//! noticed the plugin shut down before the call failed, the server relaunches the plugin and
//! retries the request once (both are seen; the race is the server's). Either way the next
//! request has a new plugin process, and `tidy` cleans up. The server-kill variant runs on a
//! Raft server (`e2e_raft.rs`, `scripts/crash-points.sh`); automatic rotation (a 60 s tick) is
//! `#[ignore]` here and run by that script. Which way the race goes is not ours to choose, so
//! the server's retry of a secret rotation that died in Qlik's create is also played
//! in-process, the same request id sent twice (the `a_retried_secret_rotation_…` tests).

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::json;
use support::crash::{self, POINTS, Target};
use support::inproc::{Engine, start_fake};
use support::{DevServer, Setup};
use vault_plugin_secrets_qlik::fake::{FaultKind, FaultSpec};

struct PluginKill<'a>(&'a DevServer);

impl Target for PluginKill<'_> {
    fn endpoint(&self) -> (PathBuf, String, String) {
        (self.0.bao.clone(), self.0.addr.clone(), "root".into())
    }
    fn crash(&self) {
        let pids = self.0.plugin_pids();
        assert!(!pids.is_empty(), "no plugin process to kill");
        for pid in pids {
            support::kill(pid, "KILL");
        }
    }
    fn recover(&self) {}
    fn what(&self) -> &'static str {
        "plugin killed"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_plugin_at_every_step_loses_nothing() {
    let Some(Setup { fake, server }) = crash::dev_server(&[]).await else {
        return;
    };
    let target = PluginKill(&server);
    crash::configure_oauth(&target, &fake);
    let mut live = Vec::new();
    for point in POINTS {
        crash::run_point(&target, &fake, point, &mut live).await;
    }
    eprintln!("CRASH POINTS (plugin killed): {}", POINTS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "waits for the server's 60 s rollback tick; run by scripts/crash-points.sh"]
async fn killing_the_plugin_during_automatic_rotation_loses_nothing() {
    let Some(Setup { fake, server }) = crash::dev_server(&[]).await else {
        return;
    };
    let target = PluginKill(&server);
    let mut live = Vec::new();
    crash::run_automatic_point(&target, &fake, &mut live).await;
}

/// The server's retry of a secret rotation whose first attempt died while Qlik created the
/// secret (crash point "secret rotate: new secret created at Qlik, answer not yet back"),
/// made certain: the first attempt's create answer is lost (Qlik acted, the connection
/// dropped), the intent stays without a secret, and the same request id comes again. The
/// secret Qlik made for the first attempt was never seen, so nothing can use it: the retry
/// must delete it, not leave it beside the one it creates (its intent goes when the retry
/// finishes, so tidy would never find it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_secret_rotation_leaves_no_secret_of_its_first_attempt() {
    let fake = start_fake().await;
    let engine = Engine::configured(&fake, json!({})).await;
    support::inproc::write_seed_client(&engine, &fake).await;
    let seed = crash::secrets_at_fake(&fake);
    assert_eq!(seed.len(), 1, "{seed:?}");
    let creates = || {
        fake.count_requests(
            "POST",
            &format!(
                "/api/v1/oauth-clients/{}/client-secrets",
                fake.oauth.client_id
            ),
        )
    };

    fake.inject_fault(FaultSpec {
        method: Some("POST".into()),
        path_prefix: Some("/api/v1/oauth-clients/".into()),
        kind: Some(FaultKind::DropConnection),
        ..Default::default()
    });
    let rotate = || {
        engine.call_with_id(
            "req-retried-rotate",
            "update",
            "oauth/clients/app/rotate",
            "{}".into(),
        )
    };
    let first = rotate().await;
    assert!(
        first.status >= 400,
        "the first attempt fails: {:?}",
        first.data
    );
    assert_eq!(creates(), 1);
    let after_first = crash::secrets_at_fake(&fake);
    assert_eq!(after_first.len(), 2, "Qlik created one: {after_first:?}");

    let retried = rotate().await;
    assert_eq!(retried.status, 200, "the retry: {:?}", retried.data);
    assert_eq!(creates(), 2, "one create for the retry");
    let stored = retried.data["client_secret_hint"]
        .as_str()
        .expect("client_secret_hint")
        .to_string();
    assert_eq!(retried.data["previous"], "deleted", "{:?}", retried.data);
    assert_eq!(
        crash::secrets_at_fake(&fake),
        BTreeSet::from([stored.clone()]),
        "the retry left only its stored secret (the first attempt's is deleted)"
    );
    let tidied = engine.call("update", "tidy", json!({})).await;
    assert_eq!(tidied.status, 200, "tidy: {:?}", tidied.data);
    assert_eq!(crash::secrets_at_fake(&fake), BTreeSet::from([stored]));
}

/// The same retry, failing before it could delete what its first attempt left: Qlik refuses
/// the token that manages the client's secrets (`manage_with=self`), then the listing of
/// them. The intent must stay each time, so that tidy deletes that secret (an abandoned
/// intent would leave it at Qlik for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_secret_rotation_that_fails_early_leaves_its_intent_to_tidy() {
    let fake = start_fake().await;
    let engine = Engine::configured(&fake, json!({})).await;
    support::inproc::write_seed_client(&engine, &fake).await;
    let seed = crash::secrets_at_fake(&fake);
    let rotate = || {
        engine.call_with_id(
            "req-retried-rotate",
            "update",
            "oauth/clients/app/rotate",
            "{}".into(),
        )
    };
    fake.inject_fault(FaultSpec {
        method: Some("POST".into()),
        path_prefix: Some("/api/v1/oauth-clients/".into()),
        kind: Some(FaultKind::DropConnection),
        ..Default::default()
    });
    let first = rotate().await;
    assert!(
        first.status >= 400,
        "the first attempt fails: {:?}",
        first.data
    );
    assert_eq!(crash::secrets_at_fake(&fake).len(), 2, "Qlik created one");

    for (method, path, what) in [
        ("POST", "/oauth/token", "the managing token"),
        ("GET", "/api/v1/oauth-clients/", "the listing"),
    ] {
        fake.inject_fault(FaultSpec {
            method: Some(method.into()),
            path_prefix: Some(path.into()),
            status: Some(if method == "POST" { 401 } else { 403 }),
            count: Some(10),
            ..Default::default()
        });
        let retried = rotate().await;
        assert!(
            retried.status >= 400,
            "the retry fails at {what}: {:?}",
            retried.data
        );
        fake.clear_faults();
        assert_eq!(crash::secrets_at_fake(&fake).len(), 2, "{what}");
    }

    let tidied = engine.call("update", "tidy", json!({})).await;
    assert_eq!(tidied.status, 200, "tidy: {:?}", tidied.data);
    assert_eq!(
        tidied.data["intents_resolved"], 1,
        "the retry left its intent: {:?}",
        tidied.data
    );
    assert_eq!(
        crash::secrets_at_fake(&fake),
        seed,
        "tidy deleted the first attempt's secret; the stored one is intact"
    );
}
