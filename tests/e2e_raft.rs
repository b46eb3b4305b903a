//! OpenBao Raft storage, started with `scripts/raft-cluster.sh` (both tests take minutes:
//! `#[ignore]`, run by `scripts/raft-cluster.sh test` and `scripts/crash-points.sh`).
//!
//! - A single Raft server killed (`kill -9`, server and plugin) at every crash point, then
//!   restarted and unsealed: storage survives, and after `tidy` nothing is lost.
//! - A 3-node cluster: `rotate`, `key` and `creds` through a standby (the engine's first
//!   storage write fails read-only there and the server forwards the request: no Qlik call is
//!   wasted on the standby), the active node killed in the middle of a rotation, the new
//!   active node finishing the work, leases still revoking, automatic rotation running once.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::Cluster;
use support::crash::{self, Live, POINTS, Target};
use vault_plugin_secrets_qlik::fake::{FakeOptions, FakeTenant, FaultSpec, RunningFake};

/// Requests go to `node`.
struct Node<'a> {
    cluster: &'a Cluster,
    node: std::cell::Cell<usize>,
}

impl Target for Node<'_> {
    fn endpoint(&self) -> (PathBuf, String, String) {
        (
            self.cluster.bao.clone(),
            self.cluster.addr(self.node.get()),
            self.cluster.token.clone(),
        )
    }
    fn crash(&self) {
        self.cluster.kill_node(self.node.get());
    }
    fn recover(&self) {
        self.cluster.start_node(self.node.get());
        let leader = self.cluster.leader();
        self.node.set(leader);
        self.cluster.wait_mount(leader, Duration::from_secs(60));
    }
    fn what(&self) -> &'static str {
        "Raft server killed"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "restarts a Raft server a dozen times (minutes); run by scripts/crash-points.sh"]
async fn killing_the_raft_server_at_every_step_loses_nothing() {
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    let Some(cluster) = Cluster::start(1, 18300) else {
        return;
    };
    let target = Node {
        cluster: &cluster,
        node: std::cell::Cell::new(1),
    };
    crash::configure(&target, &fake, cluster.dir.path(), &[]);
    crash::configure_oauth(&target, &fake);
    let started = Instant::now();
    let mut live = Vec::new();
    for point in POINTS {
        crash::run_point(&target, &fake, point, &mut live).await;
    }
    crash::run_automatic_point(&target, &fake, &mut live).await;
    eprintln!(
        "CRASH POINTS (Raft server killed): {} in {:?}",
        POINTS.len() + 1,
        started.elapsed()
    );
}

fn posts(fake: &RunningFake) -> usize {
    fake.count_requests("POST", "/api/v1/api-keys")
}

fn configs_reads(fake: &RunningFake) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/api-keys/configs/"))
        .count()
}

fn lease_of(v: &Value) -> (String, String) {
    (
        v["lease_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no lease_id in {:?}", v["data"]["key_id"]))
            .to_string(),
        v["data"]["key_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no key_id in the answer"))
            .to_string(),
    )
}

/// The rollback tick's period (OpenBao: every minute on every node), and a margin.
const TICK_PERIOD: Duration = Duration::from_secs(60);
const TICK_MARGIN: Duration = Duration::from_secs(8);

/// The stored key's id, through `target`.
fn stored_key_id(target: &dyn Target) -> String {
    let config = crash::json(target, &["read", "qlik/config"]);
    config["data"]["key_id"]
        .as_str()
        .unwrap_or_else(|| panic!("key_id: {config}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a 3-node Raft cluster and a failover (minutes); run by scripts/raft-cluster.sh test"]
async fn a_three_node_cluster_forwards_from_standbys_and_survives_failover() {
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake");
    let Some(cluster) = Cluster::start(3, 18400) else {
        return;
    };
    let started = Instant::now();
    let leader = cluster.leader();
    let on = |node: usize| Node {
        cluster: &cluster,
        node: std::cell::Cell::new(node),
    };
    crash::configure(&on(leader), &fake, cluster.dir.path(), &[]);
    let standby = (1..=3).find(|n| *n != leader).expect("standby");
    cluster.wait_mount(standby, Duration::from_secs(30));
    eprintln!("HA: active node {leader}, standby {standby}");

    // Through the standby: rotate (a write: the server forwards it), key and creds (reads:
    // served by the standby until the engine's first write fails read-only).
    let configs_before = configs_reads(&fake);
    let posts_before = posts(&fake);
    let mut live: Live = Vec::new();
    let (status, served, rotated) = cluster.http(standby, "POST", "qlik/rotate", None).await;
    assert_eq!(status, 200, "rotate via standby: {rotated}");
    eprintln!("HA: rotate via standby n{standby}: served by {served}");
    live.push(lease_of(&rotated));
    let (status, served, key) = cluster.http(standby, "GET", "qlik/key", None).await;
    assert_eq!(status, 200, "key via standby: {key}");
    eprintln!("HA: key via standby n{standby}: served by {served}");
    live.push(lease_of(&key));
    let (status, served, creds) = cluster.http(standby, "GET", "qlik/creds/app", None).await;
    assert_eq!(status, 200, "creds via standby: {creds}");
    eprintln!("HA: creds via standby n{standby}: served by {served}");
    live.push(lease_of(&creds));
    assert_eq!(
        posts(&fake) - posts_before,
        2,
        "one key per rotate and creds: no key minted by the standby"
    );
    assert_eq!(
        configs_reads(&fake) - configs_before,
        1,
        "the key limit was read once (on the active node), not on the standby"
    );
    // The leases exist on the cluster.
    for (lease, _) in &live {
        let out = cluster.cli(leader, &["lease", "lookup", lease]);
        assert!(out.status.success(), "lease {lease} persisted");
    }
    crash::check(&on(leader), &fake, &live, "after standby requests").await;

    // status and metrics through the standby: forwarded to the active node, whose memory
    // holds the chain's state (ticks, Qlik's last answer, the ledger). The standby's own
    // process makes no Qlik call for them.
    let calls_before = fake.requests().len();
    for path in ["qlik/status", "qlik/metrics"] {
        let (status, served, body) = cluster.http(standby, "GET", path, None).await;
        assert_eq!(status, 200, "{path} via standby: {body}");
        assert_eq!(
            served,
            format!("n{leader}"),
            "{path} via standby n{standby} is answered by the active node"
        );
        if path == "qlik/status" {
            assert_eq!(body["data"]["state"], "healthy", "{body}");
            assert_eq!(
                body["data"]["live_holds"], 2,
                "the rotate and key leases: {body}"
            );
        }
        eprintln!("HA: {path} via standby n{standby}: served by {served}");
    }
    let calls = fake.requests()[calls_before..].to_vec();
    assert!(
        calls
            .iter()
            .filter(|r| r.path == "/api/v1/users/me")
            .count()
            <= 1
            && calls
                .iter()
                .all(|r| r.method == "GET" && r.path.starts_with("/api/v1/users/")),
        "at most the active node's one check of the stored key (users/me, redirected to \
         users/<id>): {calls:?}"
    );

    // The active node dies in the middle of a rotation (the new key exists at Qlik, its
    // answer is held back).
    fake.inject_fault(FaultSpec {
        method: Some("POST".into()),
        path_prefix: Some("/api/v1/api-keys".into()),
        count: Some(1),
        delay_after_ms: Some(3_000),
        ..Default::default()
    });
    let running = {
        let (bao, addr, token) = on(leader).endpoint();
        std::thread::spawn(move || {
            std::process::Command::new(bao)
                .args(["write", "-force", "qlik/rotate"])
                .env("BAO_ADDR", addr)
                .env("BAO_TOKEN", token)
                .env("NO_PROXY", "127.0.0.1")
                .output()
                .expect("bao")
        })
    };
    crash::wait_taken(
        &fake,
        Duration::from_secs(30),
        "rotation on the active node",
    );
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    cluster.kill_node(leader);
    let out = running.join().expect("join");
    assert!(!out.status.success(), "the interrupted rotation failed");
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);
    cluster.wait_mount(new_leader, Duration::from_secs(60));
    eprintln!(
        "HA: failover n{leader} -> n{new_leader} in {:?}",
        killed_at.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    fake.clear_faults();
    let new_active = on(new_leader);
    crash::check(&new_active, &fake, &live, "after failover").await;
    // Leases from before the failover still revoke on the new active node.
    let (creds_lease, creds_key) = live.pop().expect("creds lease");
    crash::ok(&new_active, &["lease", "revoke", "-sync", &creds_lease]);
    assert!(
        !support::inproc::alive(&fake.keys(), &creds_key),
        "the creds key is deleted at the fake"
    );
    for (lease, _) in live.drain(..) {
        crash::ok(&new_active, &["lease", "revoke", "-sync", &lease]);
    }
    // Rotation works on the new active node.
    let rotated = crash::json(&new_active, &["write", "-force", "qlik/rotate"]);
    live.push(lease_of(&rotated));
    crash::check(&new_active, &fake, &live, "rotation after failover").await;

    // Automatic rotation: due at once; the rollback tick reaches both remaining nodes, only
    // the active one rotates, once.
    let before_id = stored_key_id(&new_active);
    let posts_before = posts(&fake);
    crash::ok(
        &new_active,
        &[
            "write",
            "qlik/config",
            "key_expiry=P2D",
            "rotate_before=P1DT23H",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        if stored_key_id(&new_active) != before_id {
            break;
        }
        assert!(Instant::now() < deadline, "no automatic rotation in 100 s");
        std::thread::sleep(Duration::from_secs(1));
    }
    // Every node's tick comes once a period: wait a whole period (and a margin) after the
    // rotation, so that every node's next tick has come and gone before the POSTs are
    // counted (a node rotating again, or a standby acting on a stale view, adds a POST).
    let rotated_at = Instant::now();
    std::thread::sleep(TICK_PERIOD + TICK_MARGIN);
    eprintln!(
        "HA: counted POSTs {:?} after the automatic rotation",
        rotated_at.elapsed()
    );
    crash::ok(&new_active, &["write", "qlik/config", "auto_rotate=false"]);
    assert_eq!(
        posts(&fake) - posts_before,
        1,
        "exactly one automatic rotation across the nodes"
    );
    crash::check(&new_active, &fake, &live, "after automatic rotation").await;
    eprintln!(
        "HA: 3-node scenario done in {:?} (1 failover)",
        started.elapsed()
    );
}
