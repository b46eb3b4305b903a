//! What the engine remembers about Qlik keys, in the mount's storage.
//!
//! - `keys/<id>`: every key this mount minted or adopted, why it is alive, and the leases
//!   that hold it.
//! - `intents/<op>`: written *before* any call that mints a key (the first storage write of
//!   the request, so a standby fails here and the server forwards the request), updated with
//!   the minted key as soon as Qlik answers, and removed once the key is stored for good.
//!   An intent left behind means an operation was interrupted: `tidy` finishes the clean-up.

use jiff::Timestamp;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::config::secret_string;
use crate::framework::storage::{Storage, StorageError, get_json, put_json};

/// Storage prefix of key records.
pub const KEYS_PREFIX: &str = "keys/";
/// Storage prefix of mint intents.
pub const INTENTS_PREFIX: &str = "intents/";

/// Why a key is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// The current stored key.
    Stored,
    /// A former stored key, kept while leases hold it.
    Superseded,
    /// A key minted for one `creds/<role>` lease.
    Dedicated,
}

/// Where a key is in its life at Qlik.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Alive at Qlik.
    Active,
    /// Should be deleted at Qlik; the last attempt failed (tidy retries).
    DeletePending,
}

/// A tracked key (never its token: leases and the config hold those).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Qlik key id (the JWT `jti`).
    pub id: String,
    /// Why it is alive.
    pub kind: KeyKind,
    /// The role it was minted for (dedicated keys).
    #[serde(default)]
    pub role: Option<String>,
    /// Created at Qlik.
    pub created_at: Option<Timestamp>,
    /// Expires at Qlik.
    pub expires_at: Timestamp,
    /// Lease holds (one id per live lease on the key).
    #[serde(default)]
    pub holds: Vec<String>,
    /// Life at Qlik.
    pub state: KeyState,
    /// The last error deleting it, if any.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl KeyRecord {
    /// A newly tracked, active key with no lease holding it yet.
    pub fn new(
        id: String,
        kind: KeyKind,
        role: Option<String>,
        created_at: Option<Timestamp>,
        expires_at: Timestamp,
    ) -> Self {
        Self {
            id,
            kind,
            role,
            created_at,
            expires_at,
            holds: Vec::new(),
            state: KeyState::Active,
            last_error: None,
        }
    }

    fn key(id: &str) -> String {
        format!("{KEYS_PREFIX}{id}")
    }

    /// Loads a record.
    pub async fn load(storage: &dyn Storage, id: &str) -> Result<Option<Self>, StorageError> {
        get_json(storage, &Self::key(id)).await
    }

    /// Saves it.
    pub async fn save(&self, storage: &dyn Storage) -> Result<(), StorageError> {
        put_json(storage, &Self::key(&self.id), self).await
    }

    /// Forgets it.
    pub async fn forget(storage: &dyn Storage, id: &str) -> Result<(), StorageError> {
        storage.delete(&Self::key(id)).await
    }

    /// Every tracked key id.
    pub async fn ids(storage: &dyn Storage) -> Result<Vec<String>, StorageError> {
        Ok(storage
            .list(KEYS_PREFIX)
            .await?
            .into_iter()
            .filter(|k| !k.ends_with('/'))
            .collect())
    }
}

/// What an interrupted operation was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentKind {
    /// Rotation of the stored key.
    Rotate,
    /// A dedicated key for a role.
    Creds,
}

/// A key Qlik returned, saved before anything else is done with it.
#[derive(Clone, Serialize, Deserialize)]
pub struct MintedKey {
    /// Qlik key id.
    pub id: String,
    /// The token (only ever in the mount's storage).
    #[serde(with = "secret_string")]
    pub token: SecretString,
    /// Created at Qlik.
    pub created_at: Option<Timestamp>,
    /// Expires at Qlik.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedKey")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A mint in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    /// Operation id (the server's request id when there is one: a retried request finds it).
    pub op: String,
    /// What for.
    pub kind: IntentKind,
    /// The role (creds).
    #[serde(default)]
    pub role: Option<String>,
    /// The marker put into the key's Qlik description.
    pub marker: String,
    /// When it started.
    pub started_at: Timestamp,
    /// The key, once Qlik returned it.
    #[serde(default)]
    pub minted: Option<MintedKey>,
}

impl Intent {
    fn key(op: &str) -> String {
        format!("{INTENTS_PREFIX}{op}")
    }

    /// Loads an intent.
    pub async fn load(storage: &dyn Storage, op: &str) -> Result<Option<Self>, StorageError> {
        get_json(storage, &Self::key(op)).await
    }

    /// Saves it.
    pub async fn save(&self, storage: &dyn Storage) -> Result<(), StorageError> {
        put_json(storage, &Self::key(&self.op), self).await
    }

    /// Removes it: the operation is complete.
    pub async fn remove(storage: &dyn Storage, op: &str) -> Result<(), StorageError> {
        storage.delete(&Self::key(op)).await
    }

    /// Every pending operation id.
    pub async fn ops(storage: &dyn Storage) -> Result<Vec<String>, StorageError> {
        Ok(storage
            .list(INTENTS_PREFIX)
            .await?
            .into_iter()
            .filter(|k| !k.ends_with('/'))
            .collect())
    }
}
