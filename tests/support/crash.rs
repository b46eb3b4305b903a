//! Crash points: the plugin process (or the whole server) dies at each step of `rotate`,
//! automatic rotation, `creds` and revocation, and of an OAuth client's secret rotation
//! (`oauth/clients/app/rotate`) and the end of a secret lease, landed on by holding the
//! matching request at the fake (`delay_before_ms`: Qlik has not acted yet; `delay_after_ms`:
//! Qlik acted, its answer is held back). After recovery and `tidy`: exactly one stored key, it
//! authenticates at the fake, every live lease's key exists there, nothing is left behind; and
//! for the client: its stored secret gets tokens that work at the fake, and the client's
//! secrets at the fake are exactly the stored one and those live secret leases hold.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vault_plugin_secrets_qlik::fake::{FaultSpec, RunningFake, SettingsPatch};

use super::inproc::{alive, authenticates, check_accounted};

/// A dev server as a [`Target`] that is never crashed (fault and concurrency runs).
pub struct DevTarget<'a>(pub &'a super::DevServer);

impl Target for DevTarget<'_> {
    fn endpoint(&self) -> (PathBuf, String, String) {
        (self.0.bao.clone(), self.0.addr.clone(), "root".into())
    }
    fn crash(&self) {}
    fn recover(&self) {}
    fn what(&self) -> &'static str {
        "dev server"
    }
}

/// How long the fake holds the chosen request.
pub const HOLD_MS: u64 = 1_500;

/// What is crashed and how it comes back.
pub trait Target {
    /// (bao binary, address, token) of the node requests go to.
    fn endpoint(&self) -> (PathBuf, String, String);
    /// Kills the process(es) by PID.
    fn crash(&self);
    /// Brings it back (nothing for a plugin: the server restarts it on demand).
    fn recover(&self);
    fn what(&self) -> &'static str;
}

pub fn cli(t: &dyn Target, args: &[&str]) -> Output {
    let (bao, addr, token) = t.endpoint();
    super::run_bao(&bao, &addr, &token, args)
}

pub fn ok(t: &dyn Target, args: &[&str]) -> String {
    super::succeeded(args, cli(t, args))
}

/// `bao <cmd> -format=json …` (the flag right after the command, or the group's command).
pub fn json(t: &dyn Target, args: &[&str]) -> Value {
    let at = if matches!(args[0], "lease" | "secrets" | "plugin" | "operator") {
        2
    } else {
        1
    };
    let mut with = args.to_vec();
    with.insert(at, "-format=json");
    let text = ok(t, &with);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// The fake tenant's settings for these runs: no rate limits, room for many keys, and keys
/// that may live up to three days.
pub fn settings() -> SettingsPatch {
    SettingsPatch {
        rate_limits_enabled: Some(false),
        max_keys_per_user: Some(1000),
        max_api_key_expiry: Some("P3D".into()),
        ..Default::default()
    }
}

/// The role the points' `creds` reads use.
const APP_ROLE: &[&str] = &["write", "qlik/roles/app", "expiry=PT1H"];

/// Configures the mounted engine against `fake` (CA in `dir`) with a role `app`.
pub fn configure(t: &dyn Target, fake: &RunningFake, dir: &std::path::Path, extra: &[&str]) {
    fake.update_settings(settings()).expect("settings");
    ok(t, &super::strs(&super::config_args(fake, dir, extra)));
    ok(t, APP_ROLE);
}

/// A dev server set up as [`configure`] sets up a target (the shared
/// [`super::configured_server`] with [`settings`], then the role `app`).
pub async fn dev_server(extra_config: &[&str]) -> Option<super::Setup> {
    let setup = super::configured_server(settings(), extra_config).await?;
    setup.server.ok(APP_ROLE);
    Some(setup)
}

/// A live lease: (lease id, key id).
pub type Live = Vec<(String, String)>;

/// The OAuth client (`oauth/clients/app`, the fake's seed client) and its token role
/// (`oauth/roles/app`) the secret points use. Call after [`configure`] (or [`dev_server`]).
pub fn configure_oauth(t: &dyn Target, fake: &RunningFake) {
    ok(
        t,
        &[
            "write",
            "qlik/oauth/clients/app",
            &format!("client_id={}", fake.oauth.client_id),
            &format!("client_secret={}", fake.oauth.client_secret),
        ],
    );
    ok(t, &["write", "qlik/oauth/roles/app", "client=app"]);
}

/// The hints of the seed OAuth client's secrets at the fake.
pub fn secrets_at_fake(fake: &RunningFake) -> BTreeSet<String> {
    fake.oauth_clients()
        .into_iter()
        .filter(|c| c.client_id == fake.oauth.client_id)
        .flat_map(|c| c.secrets.into_iter().map(|s| s.hint))
        .collect()
}

/// The hint of the secret the mount stores for client `app` (`oauth/clients/app`).
pub fn stored_secret_hint(t: &dyn Target, context: &str) -> String {
    let client = json(t, &["read", "qlik/oauth/clients/app"]);
    client["data"]["client_secret_hint"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no client_secret_hint: {client}"))
        .to_string()
}

/// A secret lease (`oauth/clients/app/secret`): (lease id, hint of the secret it holds).
pub type HeldSecret = (String, String);

fn read_secret_lease(t: &dyn Target, context: &str) -> HeldSecret {
    let read = json(t, &["read", "qlik/oauth/clients/app/secret"]);
    let lease = read["lease_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no lease_id in the secret read: {read}"));
    let hint = read["data"]["client_secret_hint"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no client_secret_hint in the secret read"));
    (lease.to_string(), hint.to_string())
}

/// The OAuth client's invariants, through the server, after `tidy`: nothing lost (the stored
/// secret exists at the fake, and a token read with it answers `users/me`), nothing orphaned
/// (the client's secrets at the fake are exactly the stored one and those `held` leases
/// hold). Answers the stored secret's hint.
pub async fn check_secrets(
    t: &dyn Target,
    fake: &RunningFake,
    held: &[HeldSecret],
    context: &str,
) -> String {
    ok(t, &["write", "-force", "qlik/tidy"]);
    let stored = stored_secret_hint(t, context);
    let token = json(t, &["read", "qlik/oauth/token/app"]);
    let access = token["data"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no access_token in a token read: {token}"));
    assert!(
        authenticates(fake, access).await,
        "{context}: a token got with the stored secret works at the fake"
    );
    let lease = token["lease_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no lease_id in the token read"));
    ok(t, &["lease", "revoke", "-sync", lease]);
    let mut expected = BTreeSet::from([stored.clone()]);
    expected.extend(held.iter().map(|(_, hint)| hint.clone()));
    assert_eq!(
        secrets_at_fake(fake),
        expected,
        "{context}: the client's secrets at Qlik are the stored one and those live leases hold"
    );
    stored
}

/// The invariants, through the server, after `tidy`.
pub async fn check(t: &dyn Target, fake: &RunningFake, live: &Live, context: &str) {
    ok(t, &["write", "-force", "qlik/tidy"]);
    let config = json(t, &["read", "qlik/config"]);
    let stored = config["data"]["key_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no stored key: {config}"))
        .to_string();
    let listed = json(t, &["list", "qlik/keys"]);
    let tracked: BTreeSet<String> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let mut stored_records = Vec::new();
    for id in &tracked {
        let record = json(t, &["read", &format!("qlik/keys/{id}")]);
        if record["data"]["kind"] == "stored" {
            stored_records.push(id.clone());
        }
    }
    assert_eq!(
        stored_records,
        vec![stored.clone()],
        "{context}: exactly one stored key"
    );
    let read = json(t, &["read", "qlik/key"]);
    assert_eq!(read["data"]["key_id"], stored.as_str(), "{context}");
    let token = read["data"]["api_key"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no api_key in a key read: {read}"));
    assert!(
        authenticates(fake, token).await,
        "{context}: the stored key authenticates at the fake"
    );
    ok(
        t,
        &[
            "lease",
            "revoke",
            "-sync",
            read["lease_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{context}: no lease_id in the key read")),
        ],
    );
    let keys = fake.keys();
    let mut accounted: BTreeSet<String> = BTreeSet::from([stored]);
    for (lease, key) in live {
        assert!(
            alive(&keys, key),
            "{context}: the key {key} of live lease {lease} exists at the fake"
        );
        accounted.insert(key.clone());
    }
    check_accounted(
        &keys,
        fake,
        &accounted,
        &tracked,
        "[vault-qlik mount=",
        context,
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Rotate,
    RotateRevokePrevious,
    Creds,
    Revoke,
    /// `write -force qlik/oauth/clients/app/rotate`, no lease holding the current secret.
    RotateSecret,
    /// The same while a secret lease read before holds the current secret (kept through the
    /// check, then revoked: its secret must go at the fake unless it is still the stored one).
    RotateSecretHeld,
    /// Revoking the last secret lease on a superseded secret (read before a rotation), while
    /// another lease holds the secret the next rotation superseded (kept through the check,
    /// then revoked).
    RevokeSecret,
}

impl Action {
    /// An OAuth client secret action (checked by [`check_secrets`] too).
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Self::RotateSecret | Self::RotateSecretHeld | Self::RevokeSecret
        )
    }
}

/// One crash point.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub name: &'static str,
    pub action: Action,
    pub method: &'static str,
    pub path_prefix: &'static str,
    /// Hold the request before Qlik acts (true) or after (false).
    pub before: bool,
    /// Matching requests let through before the held one (the rotation's first
    /// `/oauth/token` gets the token that manages the secrets; the second verifies the new
    /// secret).
    pub skip: u32,
}

pub const POINTS: &[Point] = &[
    Point {
        name: "rotate: creating the new key, before Qlik acts",
        action: Action::Rotate,
        method: "POST",
        path_prefix: "/api/v1/api-keys",
        before: true,
        skip: 0,
    },
    Point {
        name: "rotate: new key created at Qlik, answer not yet back",
        action: Action::Rotate,
        method: "POST",
        path_prefix: "/api/v1/api-keys",
        before: false,
        skip: 0,
    },
    Point {
        name: "rotate: verifying the new key (users/me)",
        action: Action::Rotate,
        method: "GET",
        path_prefix: "/api/v1/users/me",
        before: true,
        skip: 0,
    },
    Point {
        name: "rotate: new key stored, deleting the previous one",
        action: Action::RotateRevokePrevious,
        method: "DELETE",
        path_prefix: "/api/v1/api-keys/",
        before: true,
        skip: 0,
    },
    Point {
        name: "rotate: previous key deleted at Qlik, answer not yet back",
        action: Action::RotateRevokePrevious,
        method: "DELETE",
        path_prefix: "/api/v1/api-keys/",
        before: false,
        skip: 0,
    },
    Point {
        name: "creds: reading the tenant's key limit",
        action: Action::Creds,
        method: "GET",
        path_prefix: "/api/v1/api-keys/configs/",
        before: true,
        skip: 0,
    },
    Point {
        name: "creds: creating the key, before Qlik acts",
        action: Action::Creds,
        method: "POST",
        path_prefix: "/api/v1/api-keys",
        before: true,
        skip: 0,
    },
    Point {
        name: "creds: key created at Qlik, answer not yet back",
        action: Action::Creds,
        method: "POST",
        path_prefix: "/api/v1/api-keys",
        before: false,
        skip: 0,
    },
    Point {
        name: "revoke: deleting the key, before Qlik acts",
        action: Action::Revoke,
        method: "DELETE",
        path_prefix: "/api/v1/api-keys/",
        before: true,
        skip: 0,
    },
    Point {
        name: "revoke: key deleted at Qlik, answer not yet back",
        action: Action::Revoke,
        method: "DELETE",
        path_prefix: "/api/v1/api-keys/",
        before: false,
        skip: 0,
    },
    Point {
        name: "secret rotate (a lease holds the secret): creating the new secret, before Qlik acts",
        action: Action::RotateSecretHeld,
        method: "POST",
        path_prefix: "/api/v1/oauth-clients/",
        before: true,
        skip: 0,
    },
    Point {
        name: "secret rotate: new secret created at Qlik, answer not yet back",
        action: Action::RotateSecret,
        method: "POST",
        path_prefix: "/api/v1/oauth-clients/",
        before: false,
        skip: 0,
    },
    Point {
        name: "secret rotate (a lease holds the secret): verifying the new secret (token)",
        action: Action::RotateSecretHeld,
        method: "POST",
        path_prefix: "/oauth/token",
        before: true,
        skip: 1,
    },
    Point {
        name: "secret rotate: new secret stored, deleting the previous one",
        action: Action::RotateSecret,
        method: "DELETE",
        path_prefix: "/api/v1/oauth-clients/",
        before: true,
        skip: 0,
    },
    Point {
        name: "secret rotate: previous secret deleted at Qlik, answer not yet back",
        action: Action::RotateSecret,
        method: "DELETE",
        path_prefix: "/api/v1/oauth-clients/",
        before: false,
        skip: 0,
    },
    Point {
        name: "secret lease revoke: deleting the superseded secret, before Qlik acts",
        action: Action::RevokeSecret,
        method: "DELETE",
        path_prefix: "/api/v1/oauth-clients/",
        before: true,
        skip: 0,
    },
];

fn hold(fake: &RunningFake, method: &str, prefix: &str, before: bool) {
    hold_after(fake, method, prefix, before, 0);
}

/// Holds the matching request that comes after `skip` others (let through as they are).
fn hold_after(fake: &RunningFake, method: &str, prefix: &str, before: bool, skip: u32) {
    if skip > 0 {
        // Faults are tried in the order they were added: this one takes the first `skip`.
        fake.inject_fault(FaultSpec {
            method: Some(method.into()),
            path_prefix: Some(prefix.into()),
            count: Some(skip),
            ..Default::default()
        });
    }
    fake.inject_fault(FaultSpec {
        method: Some(method.into()),
        path_prefix: Some(prefix.into()),
        count: Some(1),
        delay_before_ms: before.then_some(HOLD_MS),
        delay_after_ms: (!before).then_some(HOLD_MS),
        ..Default::default()
    });
}

/// Waits until the held request reached the fake.
pub fn wait_taken(fake: &RunningFake, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while fake.pending_faults() > 0 {
        assert!(Instant::now() < deadline, "{what}: the request never came");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs one crash point; `live` carries the leases alive across points.
pub async fn run_point(t: &dyn Target, fake: &RunningFake, point: &Point, live: &mut Live) {
    let context = format!("{} ({})", point.name, t.what());
    let mut revoking = None;
    // Secret leases read before the point: one revoked by it (RevokeSecret), one kept through
    // it and its check (its secret must stay at Qlik while it lives).
    let mut secret_lease = None;
    let mut kept_secret = None;
    let rotate_keeping = || {
        let rotated = json(t, &["write", "-force", "qlik/oauth/clients/app/rotate"]);
        assert_eq!(
            rotated["data"]["previous"], "kept_while_held",
            "{context}: {rotated}"
        );
    };
    match point.action {
        Action::RotateSecretHeld => kept_secret = Some(read_secret_lease(t, &context)),
        Action::RevokeSecret => {
            secret_lease = Some(read_secret_lease(t, &context));
            rotate_keeping();
            kept_secret = Some(read_secret_lease(t, &context));
            rotate_keeping();
        }
        _ => {}
    }
    if point.action == Action::Revoke {
        let creds = json(t, &["read", "qlik/creds/app"]);
        let lease = creds["lease_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{context}: no lease_id in the creds answer"))
            .to_string();
        let key = creds["data"]["key_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{context}: no key_id in the creds answer"))
            .to_string();
        revoking = Some((lease, key));
    }
    let unfaulted = |fake: &RunningFake| {
        fake.requests()
            .iter()
            .filter(|r| {
                r.method == point.method
                    && r.path.starts_with(point.path_prefix)
                    && r.fault.is_none()
            })
            .count()
    };
    let unfaulted_before = unfaulted(fake);
    hold_after(
        fake,
        point.method,
        point.path_prefix,
        point.before,
        point.skip,
    );
    let args: Vec<String> = match point.action {
        Action::Rotate => vec![
            "write".into(),
            "-format=json".into(),
            "-force".into(),
            "qlik/rotate".into(),
        ],
        Action::RotateRevokePrevious => vec![
            "write".into(),
            "-format=json".into(),
            "qlik/rotate".into(),
            "revoke_previous=true".into(),
        ],
        Action::Creds => vec![
            "read".into(),
            "-format=json".into(),
            "qlik/creds/app".into(),
        ],
        Action::Revoke => vec![
            "lease".into(),
            "revoke".into(),
            "-sync".into(),
            revoking.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
        ],
        Action::RotateSecret | Action::RotateSecretHeld => vec![
            "write".into(),
            "-format=json".into(),
            "-force".into(),
            "qlik/oauth/clients/app/rotate".into(),
        ],
        Action::RevokeSecret => vec![
            "lease".into(),
            "revoke".into(),
            "-sync".into(),
            secret_lease
                .as_ref()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
        ],
    };
    let (bao, addr, token) = t.endpoint();
    let running = std::thread::spawn(move || {
        Command::new(bao)
            .args(&args)
            .env("BAO_ADDR", addr)
            .env("BAO_TOKEN", token)
            .env("NO_PROXY", "127.0.0.1")
            .stdin(Stdio::null())
            .output()
            .expect("bao")
    });
    wait_taken(fake, Duration::from_secs(90), &context);
    let taken = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    t.crash();
    let out = running.join().expect("join");
    // Let a request the fake still holds finish (it may yet create a key), then recover.
    let left = Duration::from_millis(HOLD_MS + 300).saturating_sub(taken.elapsed());
    std::thread::sleep(left);
    fake.clear_faults();
    t.recover();
    // The crash came while the fake held the request, so the client's request cannot have
    // been answered by the process that was killed. It may still succeed: when the server
    // saw the plugin shut down before the call's error came back, it relaunches the plugin
    // and retries the request once (OpenBao's plugin backend wrapper). Such a success is
    // accepted only if the fake saw the held step made again, unheld (the retry); otherwise
    // the crash landed after the request, not in it, and the point tested nothing.
    if out.status.success() {
        let retried = unfaulted(fake) > unfaulted_before;
        assert!(
            retried,
            "{context}: the request succeeded without a retry reaching Qlik: the crash \
             landed after it, not in it"
        );
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        match point.action {
            Action::Rotate | Action::RotateRevokePrevious => {
                let config = json(t, &["read", "qlik/config"]);
                assert_eq!(
                    answer["data"]["key_id"], config["data"]["key_id"],
                    "{context}: the retried rotate returned the key now stored"
                );
                // The rotation's lease would hold that key once a later point supersedes it
                // (and `revoke_previous` there may delete it regardless): end it now, as the
                // failed request left none. A lease on the stored key never deletes it.
                let lease = answer["lease_id"].as_str().unwrap_or_else(|| {
                    panic!("{context}: no lease_id in the retried rotate answer: {answer}")
                });
                ok(t, &["lease", "revoke", "-sync", lease]);
            }
            Action::Creds => {
                let lease = answer["lease_id"].as_str().unwrap_or_else(|| {
                    panic!("{context}: no lease_id in the retried creds answer: {answer}")
                });
                let key = answer["data"]["key_id"].as_str().unwrap_or_else(|| {
                    panic!("{context}: no key_id in the retried creds answer: {answer}")
                });
                live.push((lease.to_string(), key.to_string()));
            }
            Action::RotateSecret | Action::RotateSecretHeld => {
                assert_eq!(
                    answer["data"]["client_secret_hint"],
                    stored_secret_hint(t, &context).as_str(),
                    "{context}: the retried rotate returned the secret now stored: {answer}"
                );
            }
            Action::Revoke | Action::RevokeSecret => {}
        }
        eprintln!("CRASH POINT {context}: the server relaunched the plugin, retried, succeeded");
    } else {
        eprintln!("CRASH POINT {context}: request failed after the crash");
    }
    if let Some((lease, key)) = revoking {
        // The server retries a failed revocation; here: at once.
        let again = cli(t, &["lease", "revoke", "-sync", &lease]);
        assert!(
            again.status.success(),
            "{context}: revoke after recovery: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert!(
            !alive(&fake.keys(), &key),
            "{context}: the revoked key is deleted at the fake"
        );
    }
    if let (Action::RevokeSecret, Some((lease, hint))) = (point.action, &secret_lease) {
        // The server retries a failed revocation; here: at once, before tidy could help.
        let again = cli(t, &["lease", "revoke", "-sync", lease]);
        assert!(
            again.status.success(),
            "{context}: revoke after recovery: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert!(
            !secrets_at_fake(fake).contains(hint),
            "{context}: the superseded secret {hint} is deleted at the fake"
        );
    }
    // A secret point leaves the key's chain alone (the points before checked it): its own
    // chain is checked, which keeps the secret points' share of the run short.
    if !point.action.is_secret() {
        check(t, fake, live, &context).await;
        return;
    }
    let held: Vec<HeldSecret> = kept_secret.iter().cloned().collect();
    let stored = check_secrets(t, fake, &held, &context).await;
    if let Some((lease, hint)) = kept_secret {
        // Its end releases the secret, if a rotation superseded it.
        ok(t, &["lease", "revoke", "-sync", &lease]);
        assert_eq!(
            secrets_at_fake(fake),
            BTreeSet::from([stored.clone()]),
            "{context}: the held secret {hint} (stored: {stored}) is deleted once its lease \
             ends, unless it is still the stored one"
        );
    }
}

/// Automatic rotation interrupted: due at once (`rotate_before` close to the key's life),
/// the rollback tick (every 60 s) mints, the crash lands while Qlik's answer is held.
pub async fn run_automatic_point(t: &dyn Target, fake: &RunningFake, live: &mut Live) {
    let context = format!(
        "automatic rotation: key created at Qlik, answer not yet back ({})",
        t.what()
    );
    hold(fake, "POST", "/api/v1/api-keys", false);
    ok(
        t,
        &[
            "write",
            "qlik/config",
            "auto_rotate=true",
            "key_expiry=P2D",
            "rotate_before=P1DT23H",
        ],
    );
    wait_taken(fake, Duration::from_secs(90), &context);
    let taken = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    t.crash();
    std::thread::sleep(Duration::from_millis(HOLD_MS + 300).saturating_sub(taken.elapsed()));
    fake.clear_faults();
    t.recover();
    // No further automatic rotation while the invariants are checked.
    ok(t, &["write", "qlik/config", "auto_rotate=false"]);
    eprintln!("CRASH POINT {context}");
    check(t, fake, live, &context).await;
}
