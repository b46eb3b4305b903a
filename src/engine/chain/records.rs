//! What the engine remembers about Qlik keys, in the mount's storage.
//!
//! - `keys/<id>`: every key this mount minted or adopted, and why it is alive. Written when a
//!   key is stored, superseded or minted, never by a `key` read.
//! - `holds/<key id>/<hold id>`: one small entry per live `key` or `rotate` lease on a stored
//!   or superseded key, written by the read that hands the lease out and deleted when the
//!   lease ends. A key's holds are the entries under its prefix plus any `holds` list a record
//!   written by an earlier version still carries. Entries of their own, so that a read does not
//!   rewrite a record that grows with every live lease.
//! - `intents/<op>`: written *before* any call that mints a key (the first storage write of
//!   the request, so a standby fails here and the server forwards the request), updated with
//!   the minted key as soon as Qlik answers, and removed once the key is stored for good.
//!   An intent left behind means an operation was interrupted: `tidy` finishes the clean-up.

use jiff::Timestamp;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::holds::Holds;
use super::schema;
use super::secret_string;
use crate::framework::storage::{Storage, StorageError};

/// Storage prefix of key records.
pub const KEYS_PREFIX: &str = "keys/";
/// Storage prefix of lease holds (`holds/<key id>/<hold id>`; see the module docs).
pub const HOLDS_PREFIX: &str = "holds/";
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
    /// A key that was the stored key and that this engine may not delete: written to
    /// `config` by an operator (not minted here), or owned by another Qlik user than the one
    /// configured now. Left alone at Qlik; its record stays while leases hold it (`keys/`
    /// shows them) and goes with the last one.
    Foreign,
}

impl KeyKind {
    /// Every kind, for tallies.
    pub const ALL: [Self; 4] = [
        Self::Stored,
        Self::Superseded,
        Self::Dedicated,
        Self::Foreign,
    ];

    /// The name in `keys/`, `status` and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Superseded => "superseded",
            Self::Dedicated => "dedicated",
            Self::Foreign => "foreign",
        }
    }

    /// Whether leases on the stored key (`key`, `rotate`) hold keys of this kind.
    pub fn is_held_by_leases(self) -> bool {
        !matches!(self, Self::Dedicated)
    }
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
    /// Lease holds written into the record by earlier versions (one id per live lease). Still
    /// honoured and removed as their leases end, never added to: holds are entries of their
    /// own now ([`HOLDS_PREFIX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
    /// Life at Qlik.
    pub state: KeyState,
    /// The last error deleting it, if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Minted by this engine (a rotation or `creds`), not written to `config` by an operator.
    /// Absent in records of earlier versions (then not known: treated as not minted here).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub minted: bool,
    /// The Qlik user owning the key, where known (absent in records of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
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
            minted: false,
            owner_id: None,
        }
    }

    /// The same record, noting that this engine minted the key for `owner_id`.
    pub fn minted_for(mut self, owner_id: &str) -> Self {
        self.minted = true;
        self.owner_id = Some(owner_id.to_string());
        self
    }

    fn key(id: &str) -> String {
        format!("{KEYS_PREFIX}{id}")
    }

    /// Loads a record.
    pub async fn load(storage: &dyn Storage, id: &str) -> Result<Option<Self>, StorageError> {
        schema::load(storage, &Self::key(id)).await
    }

    /// Saves it.
    pub async fn save(&self, storage: &dyn Storage) -> Result<(), StorageError> {
        schema::save(storage, &Self::key(&self.id), self).await
    }

    /// Forgets it, and its hold entries (leases that still hold it then find nothing to
    /// release). The record goes first: hold entries left by an interruption are orphans,
    /// which `tidy` removes.
    pub async fn forget(storage: &dyn Storage, id: &str) -> Result<(), StorageError> {
        storage.delete(&Self::key(id)).await?;
        Self::remove_holds(storage, id).await.map(drop)
    }

    /// Forgets a key no lease can hold (a dedicated `creds` key): the record only, without
    /// listing hold entries that cannot exist (one storage call less per revocation).
    pub async fn forget_unheld(storage: &dyn Storage, id: &str) -> Result<(), StorageError> {
        storage.delete(&Self::key(id)).await
    }

    /// The API keys' hold entries (`holds/<key id>/<hold id>`).
    pub fn holds() -> Holds {
        Holds::new(HOLDS_PREFIX)
    }

    /// Registers a lease's hold on key `id`: one small entry, the record is not touched.
    pub async fn add_hold(storage: &dyn Storage, id: &str, hold: &str) -> Result<(), StorageError> {
        Self::holds().add(storage, id, hold).await
    }

    /// Removes a hold entry of key `id` (no error if absent).
    pub async fn remove_hold(
        storage: &dyn Storage,
        id: &str,
        hold: &str,
    ) -> Result<(), StorageError> {
        Self::holds().remove(storage, id, hold).await
    }

    /// The hold ids stored as entries for key `id` (not the record's legacy `holds`).
    pub async fn hold_entries(
        storage: &dyn Storage,
        id: &str,
    ) -> Result<Vec<String>, StorageError> {
        Self::holds().entries(storage, id).await
    }

    /// How many leases hold this key: legacy holds in the record plus hold entries.
    pub async fn live_holds(&self, storage: &dyn Storage) -> Result<usize, StorageError> {
        Ok(self.holds.len() + Self::hold_entries(storage, &self.id).await?.len())
    }

    /// Whether any lease holds this key: one page of one entry, not the whole list (releasing
    /// n holds one by one would otherwise list O(n²) entries).
    pub async fn is_held(&self, storage: &dyn Storage) -> Result<bool, StorageError> {
        Ok(!self.holds.is_empty() || Self::holds().is_held(storage, &self.id).await?)
    }

    /// Every key id that has hold entries (with or without a record).
    pub async fn held_ids(storage: &dyn Storage) -> Result<Vec<String>, StorageError> {
        Self::holds().held_ids(storage).await
    }

    /// Removes every hold entry of key `id` (a key nothing tracks any more).
    pub async fn remove_holds(storage: &dyn Storage, id: &str) -> Result<usize, StorageError> {
        Self::holds().remove_all(storage, id).await
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
    /// Rotation of an OAuth client's secret.
    SecretRotate,
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
    /// When it dies by this machine's clock (see `engine::local_deadline`); absent in intents
    /// of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dies_at: Option<Timestamp>,
}

impl MintedKey {
    /// When the key dies by this machine's clock.
    pub fn deadline(&self) -> Timestamp {
        self.dies_at.unwrap_or(self.expires_at)
    }
}

impl std::fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedKey")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A client secret Qlik created, saved before anything else is done with it.
#[derive(Clone, Serialize, Deserialize)]
pub struct MintedSecret {
    /// Its hint at Qlik (from the create's answer).
    pub hint: String,
    /// The secret (only ever in the mount's seal-wrapped storage).
    #[serde(with = "secret_string")]
    pub secret: SecretString,
    /// Created at Qlik.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
}

impl std::fmt::Debug for MintedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedSecret")
            .field("hint", &self.hint)
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
    /// The OAuth client (a secret rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The secret, once Qlik returned it (a secret rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<MintedSecret>,
    /// The hints of the client's secrets at Qlik just before the create (a secret rotation):
    /// a secret the create made without the engine seeing it is one not among them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_before: Option<Vec<String>>,
}

impl Intent {
    fn key(op: &str) -> String {
        format!("{INTENTS_PREFIX}{op}")
    }

    /// Loads an intent.
    pub async fn load(storage: &dyn Storage, op: &str) -> Result<Option<Self>, StorageError> {
        schema::load(storage, &Self::key(op)).await
    }

    /// Saves it.
    pub async fn save(&self, storage: &dyn Storage) -> Result<(), StorageError> {
        schema::save(storage, &Self::key(&self.op), self).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::storage::MemoryStorage;

    fn superseded(id: &str) -> KeyRecord {
        KeyRecord::new(
            id.into(),
            KeyKind::Superseded,
            None,
            None,
            Timestamp::UNIX_EPOCH,
        )
    }

    #[tokio::test]
    async fn holds_are_entries_of_their_own_plus_the_legacy_list() {
        let storage = MemoryStorage::default();
        let mut key = superseded("k1");
        key.holds = vec!["old".into()];
        key.save(&storage).await.expect("save");
        let bytes = storage.get("keys/k1").await.expect("get");
        for hold in ["a", "b"] {
            KeyRecord::add_hold(&storage, "k1", hold)
                .await
                .expect("add");
        }
        KeyRecord::add_hold(&storage, "k2", "c").await.expect("add");
        assert_eq!(storage.get("keys/k1").await.expect("get"), bytes);
        assert_eq!(
            KeyRecord::hold_entries(&storage, "k1").await.expect("list"),
            ["a", "b"]
        );
        assert_eq!(key.live_holds(&storage).await.expect("count"), 3);
        assert_eq!(
            KeyRecord::held_ids(&storage).await.expect("ids"),
            ["k1", "k2"]
        );

        KeyRecord::remove_hold(&storage, "k1", "a")
            .await
            .expect("remove");
        // An empty hold names no entry: nothing else goes.
        KeyRecord::remove_hold(&storage, "k1", "")
            .await
            .expect("remove");
        assert_eq!(key.live_holds(&storage).await.expect("count"), 2);

        KeyRecord::forget(&storage, "k1").await.expect("forget");
        assert!(
            KeyRecord::load(&storage, "k1")
                .await
                .expect("load")
                .is_none()
        );
        assert!(
            KeyRecord::hold_entries(&storage, "k1")
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(KeyRecord::held_ids(&storage).await.expect("ids"), ["k2"]);
    }

    #[test]
    fn records_of_the_previous_version_keep_their_holds() {
        let legacy = r#"{"id":"k","kind":"superseded","created_at":null,
            "expires_at":"2030-01-01T00:00:00Z","holds":["h1","h2"],"state":"active"}"#;
        let record: KeyRecord = serde_json::from_str(legacy).expect("decode");
        assert_eq!(record.holds, ["h1", "h2"]);
        // Kept when saved again (until their leases end) ...
        assert!(
            serde_json::to_string(&record)
                .expect("encode")
                .contains("h2")
        );
        // ... and no longer written for a record without them.
        let new = serde_json::to_string(&superseded("k")).expect("encode");
        assert!(!new.contains("holds"), "{new}");
        let back: KeyRecord = serde_json::from_str(&new).expect("decode");
        assert!(back.holds.is_empty());
    }
}
