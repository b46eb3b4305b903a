//! Crash points with a real `bao` dev server: the plugin process is killed (by PID) at each
//! step of `rotate`, `creds` and revocation, and of an OAuth client's secret rotation and a
//! secret lease's end (see `support/crash.rs`). The client gets an error, or, when the server
//! noticed the plugin shut down before the call failed, the server relaunches the plugin and
//! retries the request once (both are seen; the race is the server's). Either way the next
//! request has a new plugin process, and `tidy` cleans up. The server-kill variant runs on a
//! Raft server (`e2e_raft.rs`, `scripts/crash-points.sh`); automatic rotation (a 60 s tick) is
//! `#[ignore]` here and run by that script.

mod support;

use std::path::PathBuf;

use support::crash::{self, POINTS, Target};
use support::{DevServer, Setup};

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
