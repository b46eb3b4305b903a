//! The fault matrix: every Qlik call the engine makes × every way it can fail, through the
//! engine's real request dispatch (in-process, see `support/inproc.rs`) against a real
//! `fake-qlik` over HTTPS. `e2e_faults.rs` runs a representative part through a real
//! `bao` dev server.
//!
//! For each cell: the outcome is the status of the README's errors table (400/429/502) or a
//! success after retries; on failure storage is unchanged (the rotation outcome recorded in
//! `config.last_rotation` and `config.history` aside); after `tidy`, exactly one stored key that authenticates,
//! no intent, and every key alive at the fake with the mount's marker is tracked and held.
//! One test per Qlik call, so the rows run in parallel.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::inproc::{Engine, LeaseHandle, alive, check_invariants, config_body, start_fake};
use vault_plugin_secrets_qlik::fake::{FaultKind, FaultSpec, RunningFake};

/// `request_timeout` of the engine under test (one whole call including retries) and the
/// delay that makes a call time out.
const REQUEST_TIMEOUT: &str = "2s";
const TIMEOUT_DELAY_MS: u64 = 2_500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    S500,
    S502,
    S503,
    /// 429 with `retry-after: 1`.
    S429,
    /// Qlik is slow to start: the call's time is up before it does anything (the fake
    /// drops the work when the client goes away).
    Timeout,
    /// Qlik does the work, but its answer comes after the call's time is up.
    SlowAnswer,
    /// Handled for real, then a truncated JSON body.
    Malformed,
    S401,
    S403,
    /// Handled for real, then the connection is dropped without an answer.
    Drop,
}

const FAULTS: &[Fault] = &[
    Fault::S500,
    Fault::S502,
    Fault::S503,
    Fault::S429,
    Fault::Timeout,
    Fault::SlowAnswer,
    Fault::Malformed,
    Fault::S401,
    Fault::S403,
    Fault::Drop,
];

impl Fault {
    /// Faults a retry can get past: tried once (transient) and persistently.
    fn retryable(self) -> bool {
        matches!(
            self,
            Self::S500
                | Self::S502
                | Self::S503
                | Self::S429
                | Self::Timeout
                | Self::SlowAnswer
                | Self::Drop
        )
    }

    fn spec(self, method: &str, prefix: &str, count: u32) -> FaultSpec {
        let mut spec = FaultSpec {
            method: Some(method.into()),
            path_prefix: Some(prefix.into()),
            count: Some(count),
            ..Default::default()
        };
        match self {
            Self::S500 => spec.status = Some(500),
            Self::S502 => spec.status = Some(502),
            Self::S503 => spec.status = Some(503),
            Self::S429 => {
                spec.status = Some(429);
                spec.retry_after = Some(1);
            }
            Self::S401 => spec.status = Some(401),
            Self::S403 => spec.status = Some(403),
            Self::Timeout => spec.delay_before_ms = Some(TIMEOUT_DELAY_MS),
            Self::SlowAnswer => spec.delay_after_ms = Some(TIMEOUT_DELAY_MS),
            Self::Malformed => spec.kind = Some(FaultKind::MalformedJson),
            Self::Drop => spec.kind = Some(FaultKind::DropConnection),
        }
        spec
    }
}

/// The Qlik calls, each with the engine operation that makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `GET users/me` verifying `api_key` in a `config` write.
    ConfigUsersMe,
    /// `GET api-keys/{id}` reading the key's record in a `config` write.
    ConfigGetKey,
    /// `POST api-keys` from `rotate`.
    RotateMint,
    /// `GET users/me` verifying the new key in `rotate`.
    RotateVerify,
    /// `DELETE api-keys/{id}` of the superseded key in `rotate revoke_previous=true`.
    RotateDelete,
    /// `GET api-keys/configs/{tenant}` (key limit) from `creds`.
    CredsConfigs,
    /// `GET api-keys?sub=…` (counting active keys) from `creds`.
    CredsList,
    /// `POST api-keys` from `creds`.
    CredsMint,
    /// `DELETE api-keys/{id}` when a `creds` lease is revoked.
    RevokeDelete,
    /// `GET api-keys?sub=…` from `tidy`.
    TidyList,
}

impl Call {
    fn target(self) -> (&'static str, &'static str) {
        match self {
            Self::ConfigUsersMe | Self::RotateVerify => ("GET", "/api/v1/users/me"),
            Self::ConfigGetKey => ("GET", "/api/v1/api-keys/"),
            Self::RotateMint | Self::CredsMint => ("POST", "/api/v1/api-keys"),
            Self::RotateDelete | Self::RevokeDelete => ("DELETE", "/api/v1/api-keys/"),
            Self::CredsConfigs => ("GET", "/api/v1/api-keys/configs/"),
            // `creds` first reads the configs, then lists: the fault skips the first match
            // (see `skip_first`).
            Self::CredsList | Self::TidyList => ("GET", "/api/v1/api-keys"),
        }
    }

    fn mints(self) -> bool {
        matches!(self, Self::RotateMint | Self::CredsMint)
    }

    /// The status the engine must answer with (the README's errors table), for a fault that
    /// persists through the retries, or that happens once.
    fn expected(self, fault: Fault, transient: bool) -> u16 {
        use Fault::*;
        // A superseded key that cannot be deleted yet never fails a rotation: the new key is
        // stored, a warning says so, and tidy retries.
        if self == Self::RotateDelete {
            return 200;
        }
        match fault {
            // Reading the tenant settings may need rights the owner lacks: Qlik decides.
            S403 if self == Self::CredsConfigs => 200,
            S401 | S403 => 400,
            // A DELETE answered 204 is done whatever its body says.
            Malformed if self == Self::RevokeDelete => 200,
            // A revocation Qlik rate-limits is handed to the mount's background deleter (the key
            // stays tracked as delete_pending): no 429 reaches the server.
            S429 if self == Self::RevokeDelete => 200,
            Malformed => 502,
            // A key-creating POST is never repeated once it may have reached Qlik, except on
            // 429 (Qlik refused it before doing anything).
            S429 if transient => 200,
            S429 => 429,
            _ if self.mints() => 502,
            _ if transient => 200,
            S500 | S502 | S503 | Timeout | SlowAnswer | Drop => 502,
        }
    }
}

struct Row {
    fake: RunningFake,
    engine: Engine,
    cells: usize,
}

async fn row(call: Call) -> Row {
    let fake = start_fake().await;
    let engine = Engine::new();
    let body = config_body(
        &fake,
        json!({"request_timeout": REQUEST_TIMEOUT, "max_retries": 1}),
    );
    let written = engine.call("create", "config", body).await;
    assert_eq!(written.status, 204, "config: {:?}", written.data);
    let role = engine
        .call("create", "roles/app", json!({"expiry": "PT1H"}))
        .await;
    assert_eq!(role.status, 204, "role: {:?}", role.data);
    let _ = call;
    Row {
        fake,
        engine,
        cells: 0,
    }
}

/// Requests the fake answered with an injected fault.
fn faulted(fake: &RunningFake) -> usize {
    fake.requests().iter().filter(|r| r.fault.is_some()).count()
}

/// Storage without the rotation outcome (a failed rotation records itself there).
fn without_outcome(mut dump: std::collections::BTreeMap<String, Value>) -> Value {
    if let Some(Value::Object(config)) = dump.get_mut("config") {
        config.remove("last_rotation");
        config.remove("history");
    }
    json!(dump)
}

async fn run_cell(r: &mut Row, call: Call, fault: Fault, transient: bool) {
    let context = format!(
        "{call:?} × {fault:?} ({})",
        if transient { "once" } else { "persistent" }
    );
    let engine = &r.engine;
    let fake = &r.fake;
    let mut live: Vec<LeaseHandle> = Vec::new();
    // A creds lease to revoke, made before the fault.
    if call == Call::RevokeDelete {
        let creds = engine.call("read", "creds/app", json!({})).await;
        assert_eq!(
            creds.status, 200,
            "{context}: setup creds: {:?}",
            creds.data
        );
        live.push(creds.lease.expect("lease"));
    }
    let before = engine.dump().await;
    let (method, prefix) = call.target();
    // Two attempts (max_retries=1): three uses cover them and any follow-up call.
    let count = if transient { 1 } else { 3 };
    if call == Call::CredsList {
        // The configs read comes first and must pass.
        fake.inject_fault(FaultSpec {
            method: Some("GET".into()),
            path_prefix: Some("/api/v1/api-keys/configs/".into()),
            count: Some(1),
            delay_before_ms: Some(0),
            ..Default::default()
        });
    }
    fake.inject_fault(fault.spec(method, prefix, count));
    let faulted_before = faulted(fake);
    let started = Instant::now();
    let reply = match call {
        Call::ConfigUsersMe | Call::ConfigGetKey => {
            engine
                .call(
                    "update",
                    "config",
                    json!({"max_retries": 1, "auto_rotate": true}),
                )
                .await
        }
        Call::RotateMint | Call::RotateVerify => engine.call("update", "rotate", json!({})).await,
        Call::RotateDelete => {
            engine
                .call("update", "rotate", json!({"revoke_previous": true}))
                .await
        }
        Call::CredsConfigs | Call::CredsList | Call::CredsMint => {
            engine.call("read", "creds/app", json!({})).await
        }
        Call::RevokeDelete => {
            let lease = live[0].clone();
            engine.revoke(&lease).await
        }
        Call::TidyList => engine.call("update", "tidy", json!({})).await,
    };
    let took = started.elapsed();
    fake.clear_faults();
    let expected = call.expected(fault, transient);
    let status = if reply.status == 204 {
        200
    } else {
        reply.status
    };
    assert_eq!(
        status, expected,
        "{context}: status (took {took:?}): {:?}",
        reply.data
    );
    assert!(
        took < Duration::from_secs(12),
        "{context}: bounded time, took {took:?}"
    );
    let message = reply.error();
    if status != 200 {
        assert!(!message.is_empty(), "{context}: an error message");
        match status {
            429 => assert!(message.contains("rate limit"), "{context}: {message}"),
            502 => assert!(message.contains("Qlik"), "{context}: {message}"),
            _ => {}
        }
        // Storage unchanged by a failure (a failed rotation records its outcome only).
        assert_eq!(
            without_outcome(engine.dump().await),
            without_outcome(before.clone()),
            "{context}: storage changed by a failed request"
        );
    } else if call == Call::ConfigUsersMe || call == Call::ConfigGetKey {
        assert_eq!(
            without_outcome(engine.dump().await),
            without_outcome(before.clone()),
            "{context}: the same config written again changes nothing"
        );
    }
    match call {
        Call::RevokeDelete => {
            if status == 200 {
                live.clear();
            } else {
                // The server retries a failed revocation: now it goes through.
                let again = engine.revoke(&live[0]).await;
                assert_eq!(
                    again.status, 204,
                    "{context}: revoke retried: {:?}",
                    again.data
                );
                let keys = fake.keys();
                assert!(
                    !alive(&keys, &live[0].key_id),
                    "{context}: revoked key deleted"
                );
                live.clear();
            }
        }
        _ => {
            if let Some(lease) = reply.lease.clone() {
                live.push(lease);
            }
        }
    }
    if call == Call::RotateDelete {
        // The warning names what is left for tidy.
        assert!(
            matches!(fault, Fault::Malformed) || !reply.warnings.is_empty() || transient,
            "{context}: a warning about the previous key: {:?}",
            reply.warnings
        );
    }
    if matches!(fault, Fault::Timeout | Fault::SlowAnswer) {
        // A delayed request the fake is still working on may yet create a key: let it land
        // so that tidy sees it.
        tokio::time::sleep(Duration::from_millis(
            (TIMEOUT_DELAY_MS + 700).saturating_sub(took.as_millis() as u64),
        ))
        .await;
    }
    // The no-op fault in front of the creds list counts too. A request the fake dropped
    // because the client went away is not logged: its sign is the time the call took.
    let hits = faulted(fake) - faulted_before;
    assert!(
        hits > usize::from(call == Call::CredsList)
            || (fault == Fault::Timeout && took >= Duration::from_millis(900)),
        "{context}: the fault was never hit"
    );
    check_invariants(engine, fake, &live, &context).await;
    for lease in live {
        let revoked = engine.revoke(&lease).await;
        assert_eq!(revoked.status, 204, "{context}: revoke: {:?}", revoked.data);
    }
    r.cells += 1;
}

async fn run_row(call: Call) -> usize {
    let mut r = row(call).await;
    for &fault in FAULTS {
        run_cell(&mut r, call, fault, false).await;
        if fault.retryable() {
            run_cell(&mut r, call, fault, true).await;
        }
    }
    check_invariants(&r.engine, &r.fake, &[], &format!("{call:?}: end")).await;
    r.cells
}

/// Every row at once (each with its own fake and mount): the cells mostly wait for
/// timeouts, so this keeps the wall time to that of one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_qlik_call_times_every_fault() {
    let calls = [
        Call::ConfigUsersMe,
        Call::ConfigGetKey,
        Call::RotateMint,
        Call::RotateVerify,
        Call::RotateDelete,
        Call::CredsConfigs,
        Call::CredsList,
        Call::CredsMint,
        Call::RevokeDelete,
        Call::TidyList,
    ];
    let mut rows = tokio::task::JoinSet::new();
    for call in calls {
        rows.spawn(async move { (call, run_row(call).await) });
    }
    let mut total = 0;
    let mut failures = Vec::new();
    while let Some(done) = rows.join_next().await {
        match done {
            Ok((call, cells)) => {
                eprintln!("FAULT MATRIX {call:?}: {cells} cells");
                total += cells;
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "rows failed: {failures:#?}");
    eprintln!(
        "FAULT MATRIX total: {total} cells ({} calls × {} faults, {} of them also once)",
        calls.len(),
        FAULTS.len(),
        FAULTS.iter().filter(|f| f.retryable()).count()
    );
}

/// Connection refused: a closed port for a new tenant, and a tenant that went away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_a_502_and_changes_nothing() {
    let fake = start_fake().await;
    let engine = Engine::new();
    let written = engine
        .call(
            "create",
            "config",
            config_body(
                &fake,
                json!({"request_timeout": REQUEST_TIMEOUT, "max_retries": 1}),
            ),
        )
        .await;
    assert_eq!(written.status, 204);
    engine
        .call("create", "roles/app", json!({"expiry": "PT1H"}))
        .await;
    let before = engine.dump().await;
    // A closed port: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut body = config_body(&fake, json!({}));
    body["tenant_url"] = json!(format!("https://127.0.0.1:{port}"));
    let reply = engine.call("update", "config", body).await;
    assert_eq!(reply.status, 502, "{:?}", reply.data);
    assert!(reply.error().contains("Qlik"), "{}", reply.error());
    assert_eq!(engine.dump().await, before, "config unchanged");

    // The tenant goes away: every call fails with 502, nothing is minted or stored.
    let state = fake.fake().clone();
    let keys_before = state.keys().len();
    fake.shutdown().await;
    // Give the client's pooled keep-alive connection time to see the close; one picked before
    // it does fails after the request was sent, where Qlik might have acted.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (op, path, data) in [
        ("update", "rotate", json!({})),
        ("read", "creds/app", json!({})),
        ("update", "tidy", json!({})),
    ] {
        let reply = engine.call(op, path, data).await;
        assert_eq!(reply.status, 502, "{path}: {:?}", reply.data);
        let mut after = engine.dump().await;
        if reply.error().contains("is unknown") {
            // A request sent on a connection that then died: the engine keeps the operation's
            // intent for tidy, as it must when Qlik may have created a key. Nothing else.
            after.retain(|k, _| !k.starts_with("intents/"));
        }
        assert_eq!(
            without_outcome(after),
            without_outcome(before.clone()),
            "{path}: storage unchanged ({})",
            reply.error()
        );
    }
    assert_eq!(state.keys().len(), keys_before, "nothing minted");
    eprintln!("FAULT MATRIX connection refused: 4 cells");
}
