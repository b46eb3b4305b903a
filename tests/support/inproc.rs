//! The engine driven in-process, without a server: the real framework dispatch
//! (`framework::handle_request` with protocol `pb::Request`s, so field parsing, error
//! mapping and lease encoding are the plugin's own) over in-memory storage, against a real
//! `fake-qlik` over HTTPS. Used where a `bao` dev server per case would be too slow (the
//! fault matrix, the concurrency soak); the `e2e_*` tests cover the same ground through a
//! real server.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};
use vault_plugin_secrets_qlik::engine::{QlikBackend, VERSION};
use vault_plugin_secrets_qlik::fake::{
    FakeOptions, FakeTenant, KeyView, RunningFake, SettingsPatch,
};
use vault_plugin_secrets_qlik::framework::storage::MemoryStorage;
use vault_plugin_secrets_qlik::framework::system::StaticSystemView;
use vault_plugin_secrets_qlik::framework::{Storage, handle_request};
use vault_plugin_secrets_qlik::proto::pb;

/// The marker prefix of keys minted by an [`Engine`] built with [`MOUNT_UUID`].
pub const MOUNT_UUID: &str = "inproc01-0000-4000-8000-000000000000";
pub const MARKER: &str = "[vault-qlik mount=inproc01";

/// A lease the engine handed out, as the server would store it.
#[derive(Debug, Clone)]
pub struct LeaseHandle {
    pub path: String,
    pub internal_data: String,
    pub key_id: String,
    pub token: String,
    pub ttl_secs: i64,
}

/// What the engine answered, as the HTTP client would see it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// 200 (204 for an empty reply), 400, or the error's status.
    pub status: u16,
    /// The response data, or `{"error": message}`.
    pub data: Value,
    pub warnings: Vec<String>,
    pub lease: Option<LeaseHandle>,
}

impl Reply {
    pub fn error(&self) -> String {
        self.data["error"].as_str().unwrap_or_default().to_string()
    }
}

/// One mount of the engine over in-memory storage.
pub struct Engine {
    pub backend: QlikBackend,
    pub storage: Arc<MemoryStorage>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Engine {
    pub fn new() -> Self {
        Self::with_storage(Arc::new(MemoryStorage::default()))
    }

    /// A new engine with `config` written for `fake` (and `extra` fields).
    pub async fn configured(fake: &RunningFake, extra: Value) -> Self {
        let engine = Self::new();
        let written = engine
            .call("create", "config", config_body(fake, extra))
            .await;
        assert!(written.status < 300, "config: {:?}", written.data);
        engine
    }

    /// `n` `key` reads; their leases.
    pub async fn read_keys(&self, n: usize) -> Vec<LeaseHandle> {
        let mut leases = Vec::with_capacity(n);
        for _ in 0..n {
            let read = self.call("read", "key", json!({})).await;
            leases.push(read.lease.unwrap_or_else(|| panic!("key: {:?}", read.data)));
        }
        leases
    }

    /// A second backend over the same storage (another node, or a restarted plugin).
    ///
    /// The mount is unpaced, like the fake (whose rate limits these tests switch off): the
    /// tier-2 pacer has tests of its own (`tests/pacing.rs`), and here a pacer that defers
    /// deletions would hide the Qlik faults the matrix injects.
    pub fn with_storage(storage: Arc<MemoryStorage>) -> Self {
        let backend = QlikBackend::with_pacer(
            storage.clone(),
            Arc::new(StaticSystemView::default()),
            MOUNT_UUID,
            vault_plugin_secrets_qlik::qlik::Tier2Pacer::new(
                1_000_000,
                std::time::Duration::from_secs(60),
            ),
        );
        Self {
            backend,
            storage,
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn request_id(&self) -> String {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("req-{n}-{}", uuid_like())
    }

    /// One request (`read`, `update`, `create`, `delete`, `list`).
    pub async fn call(&self, operation: &str, path: &str, data: Value) -> Reply {
        self.call_raw(operation, path, data.to_string()).await
    }

    /// One request with the data text as the server would send it.
    pub async fn call_raw(&self, operation: &str, path: &str, data: String) -> Reply {
        self.call_with_id(&self.request_id(), operation, path, data)
            .await
    }

    /// One request with the server's request id `id`: sent twice, it is a request the
    /// server retried after a plugin crash.
    pub async fn call_with_id(&self, id: &str, operation: &str, path: &str, data: String) -> Reply {
        let request = pb::Request {
            id: id.into(),
            operation: operation.into(),
            path: path.into(),
            data,
            mount_point: "qlik/".into(),
            display_name: "root".into(),
            ..Default::default()
        };
        self.send(request).await
    }

    async fn send(&self, request: pb::Request) -> Reply {
        let path = request.path.clone();
        let reply = handle_request(&self.backend, VERSION, "test", request).await;
        decode(reply, &path)
    }

    /// The server revoking a lease.
    pub async fn revoke(&self, lease: &LeaseHandle) -> Reply {
        let request = pb::Request {
            id: self.request_id(),
            operation: "revoke".into(),
            path: lease.path.clone(),
            data: "null".into(),
            secret: Some(pb::Secret {
                lease_options: Some(pb::LeaseOptions::default()),
                internal_data: lease.internal_data.clone(),
                lease_id: format!("qlik/{}/x", lease.path),
            }),
            mount_point: "qlik/".into(),
            ..Default::default()
        };
        self.send(request).await
    }

    /// The server's periodic `rollback`.
    pub async fn rollback(&self) -> Reply {
        self.call_raw("rollback", "", "null".into()).await
    }

    /// Every storage entry (key → JSON), for before/after comparisons.
    pub async fn dump(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut prefixes = vec![String::new()];
        while let Some(prefix) = prefixes.pop() {
            for item in self.storage.list(&prefix).await.unwrap_or_default() {
                let key = format!("{prefix}{item}");
                if key.ends_with('/') {
                    prefixes.push(key);
                } else if let Ok(Some(bytes)) = self.storage.get(&key).await {
                    out.insert(key, serde_json::from_slice(&bytes).unwrap_or(Value::Null));
                }
            }
        }
        out
    }

    /// The stored configuration as stored (token included).
    pub async fn stored_config(&self) -> Value {
        self.dump().await.remove("config").unwrap_or(Value::Null)
    }

    /// The stored key's token.
    pub async fn stored_token(&self) -> String {
        self.stored_config().await["key"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Tracked key ids (`keys/`).
    pub async fn tracked(&self) -> BTreeSet<String> {
        self.dump()
            .await
            .keys()
            .filter_map(|k| k.strip_prefix("keys/").map(str::to_string))
            .collect()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}")
}

fn decode(reply: pb::HandleRequestReply, path: &str) -> Reply {
    if let Some(err) = reply.err {
        let status = match err.err_type {
            3 => u16::try_from(err.err_code).unwrap_or(500),
            4 => 400,
            5 => 405,
            6 => 404,
            8 => 403,
            // Go's ErrReadOnly travels as a plain error; the server forwards on its text.
            0 if err.err_msg == "cannot write to readonly storage" => 503,
            _ => 500,
        };
        return Reply {
            status,
            data: json!({ "error": err.err_msg }),
            warnings: Vec::new(),
            lease: None,
        };
    }
    let Some(response) = reply.response else {
        return Reply {
            status: 204,
            data: Value::Null,
            warnings: Vec::new(),
            lease: None,
        };
    };
    let data: Value = serde_json::from_str(&response.data).unwrap_or(Value::Null);
    if data.get("error").is_some() && response.secret.is_none() {
        return Reply {
            status: 400,
            data,
            warnings: response.warnings,
            lease: None,
        };
    }
    let lease = response.secret.map(|secret| {
        let internal: Value = serde_json::from_str(&secret.internal_data).unwrap_or(Value::Null);
        LeaseHandle {
            path: path.to_string(),
            internal_data: secret.internal_data,
            key_id: internal["key_id"].as_str().unwrap_or_default().to_string(),
            token: data["api_key"].as_str().unwrap_or_default().to_string(),
            ttl_secs: secret
                .lease_options
                .map(|o| o.ttl / 1_000_000_000)
                .unwrap_or(0),
        }
    });
    Reply {
        status: 200,
        data,
        warnings: response.warnings,
        lease,
    }
}

/// A fake tenant with rate limits off and a high key limit (the fault cases decide what
/// fails, not the tenant's budgets).
pub async fn start_fake() -> RunningFake {
    let fake = FakeTenant::start(FakeOptions::default())
        .await
        .expect("fake tenant");
    fake.update_settings(SettingsPatch {
        rate_limits_enabled: Some(false),
        max_keys_per_user: Some(1000),
        ..Default::default()
    })
    .expect("settings");
    fake
}

/// The `config` write for `fake`.
pub fn config_body(fake: &RunningFake, extra: Value) -> Value {
    let mut body = json!({
        "tenant_url": fake.url.as_str().trim_end_matches('/'),
        "api_key": fake.service.api_key,
        "ca_cert": fake.ca_pem,
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    body
}

pub fn http_client(fake: &RunningFake) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(fake.ca_pem.as_bytes()).expect("ca");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .build()
        .expect("client")
}

/// The fake's seed OAuth client written to the engine as `oauth/clients/app`.
pub async fn write_seed_client(engine: &Engine, fake: &RunningFake) {
    let written = engine
        .call(
            "create",
            "oauth/clients/app",
            json!({
                "client_id": fake.oauth.client_id,
                "client_secret": fake.oauth.client_secret,
            }),
        )
        .await;
    assert!(written.status < 300, "client: {:?}", written.data);
}

/// A key minted at the fake by hand with `token` (not by the engine), with `expiry`: (id, token).
pub async fn mint_directly(fake: &RunningFake, token: &str, expiry: &str) -> (String, String) {
    let reply: Value = http_client(fake)
        .post(fake.url_for("/api/v1/api-keys"))
        .bearer_auth(token)
        .json(&json!({ "description": "minted by hand", "expiry": expiry }))
        .send()
        .await
        .expect("POST api-keys")
        .json()
        .await
        .expect("json");
    let id = reply["id"].as_str().expect("id").to_string();
    let token = reply["token"].as_str().expect("token").to_string();
    (id, token)
}

/// Whether `token` authenticates at the fake (`users/me` answers 200). A transport error
/// panics: it must not pass for "does not authenticate" in a negative assertion.
pub async fn authenticates(fake: &RunningFake, token: &str) -> bool {
    http_client(fake)
        .get(fake.url_for("/api/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("users/me at the fake")
        .status()
        .as_u16()
        == 200
}

/// Keys alive at the fake whose description carries `marker`.
pub fn alive_marked(keys: &[KeyView], marker: &str) -> BTreeSet<String> {
    keys.iter()
        .filter(|k| k.description.contains(marker) && !k.deleted && k.status == "active")
        .map(|k| k.id.clone())
        .collect()
}

/// Every key of `owner` alive at the fake, whatever its description says: a key that lost the
/// mount's marker (the marker `tidy` relies on) is counted all the same.
pub fn alive_of_owner(keys: &[KeyView], owner: &str) -> BTreeSet<String> {
    keys.iter()
        .filter(|k| k.sub == owner && !k.deleted && k.status == "active")
        .map(|k| k.id.clone())
        .collect()
}

/// Every key alive at the fake with `marker` is `tracked`, and every active key of the
/// service user, marked or not, is `accounted` for: a key that lost its marker would be
/// invisible to tidy and to the marker check alike.
pub fn check_accounted(
    keys: &[KeyView],
    fake: &RunningFake,
    accounted: &BTreeSet<String>,
    tracked: &BTreeSet<String>,
    marker: &str,
    context: &str,
) {
    for id in alive_marked(keys, marker) {
        assert!(
            tracked.contains(&id),
            "{context}: key {id} alive at the fake with the mount's marker is untracked"
        );
    }
    let leaked: Vec<String> = alive_of_owner(keys, &fake.service.user_id)
        .difference(accounted)
        .cloned()
        .collect();
    assert!(
        leaked.is_empty(),
        "{context}: keys of the service user alive at the fake and held by nothing (leak): {leaked:?}"
    );
}

pub fn alive(keys: &[KeyView], id: &str) -> bool {
    keys.iter()
        .any(|k| k.id == id && !k.deleted && k.status == "active")
}

/// The invariants, after `tidy`: exactly one stored key, it is alive and authenticates,
/// every live lease's key is alive, no intent is left, and every key alive at the fake
/// with this mount's marker is tracked, and every key of the service user alive at the fake
/// (marked or not) is accounted for (the stored key, a superseded key a live lease holds, or a
/// live lease's dedicated key).
pub async fn check_invariants(
    engine: &Engine,
    fake: &RunningFake,
    live: &[LeaseHandle],
    context: &str,
) {
    let tidy = engine.call("update", "tidy", json!({})).await;
    assert_eq!(tidy.status, 200, "{context}: tidy: {:?}", tidy.data);
    let dump = engine.dump().await;
    let config = dump.get("config").cloned().unwrap_or(Value::Null);
    let stored = config["key_info"]["key_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no stored key: {config}"))
        .to_string();
    let stored_records: Vec<&String> = dump
        .iter()
        .filter(|(k, v)| k.starts_with("keys/") && v["kind"] == "stored")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        stored_records,
        vec![&format!("keys/{stored}")],
        "{context}: exactly one stored key record"
    );
    let keys = fake.keys();
    assert!(
        alive(&keys, &stored),
        "{context}: stored key {stored} alive"
    );
    let token = config["key"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no stored token"));
    assert!(
        authenticates(fake, token).await,
        "{context}: the stored key authenticates"
    );
    let intents: Vec<&String> = dump.keys().filter(|k| k.starts_with("intents/")).collect();
    assert!(intents.is_empty(), "{context}: intents left: {intents:?}");
    let mut accounted: BTreeSet<String> = BTreeSet::from([stored.clone()]);
    for lease in live {
        assert!(
            !lease.key_id.is_empty(),
            "{context}: a lease without a key id"
        );
        assert!(
            alive(&keys, &lease.key_id),
            "{context}: live lease's key {} alive at the fake",
            lease.key_id
        );
        accounted.insert(lease.key_id.clone());
    }
    let tracked: BTreeSet<String> = dump
        .keys()
        .filter_map(|k| k.strip_prefix("keys/").map(str::to_string))
        .collect();
    check_accounted(&keys, fake, &accounted, &tracked, MARKER, context);
}
