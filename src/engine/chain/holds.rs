//! Lease holds: one small entry per live lease on a credential, `<prefix><id>/<hold>`, written
//! by the read that hands the lease out and deleted when the lease ends. A superseded
//! credential is deleted at Qlik only when its last hold is gone. API keys keep theirs under
//! `holds/`, an OAuth client's secrets under `oauth/holds/<client>/`.

use crate::framework::{Storage, StorageError};

/// The hold entries of one chain.
#[derive(Debug, Clone)]
pub struct Holds {
    prefix: String,
}

impl Holds {
    /// The holds under `prefix` (ends with `/`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    fn of(&self, id: &str) -> String {
        format!("{}{id}/", self.prefix)
    }

    fn entry(&self, id: &str, hold: &str) -> String {
        format!("{}{id}/{hold}", self.prefix)
    }

    /// Registers a lease's hold on credential `id`.
    pub async fn add(
        &self,
        storage: &dyn Storage,
        id: &str,
        hold: &str,
    ) -> Result<(), StorageError> {
        // `{}` keeps the value valid JSON for tools that decode every entry.
        storage.put(&self.entry(id, hold), b"{}".to_vec()).await
    }

    /// Removes a hold (no error if absent).
    pub async fn remove(
        &self,
        storage: &dyn Storage,
        id: &str,
        hold: &str,
    ) -> Result<(), StorageError> {
        if hold.is_empty() {
            // Would name the credential's whole prefix, not an entry.
            return Ok(());
        }
        storage.delete(&self.entry(id, hold)).await
    }

    /// The hold ids of credential `id`.
    pub async fn entries(
        &self,
        storage: &dyn Storage,
        id: &str,
    ) -> Result<Vec<String>, StorageError> {
        Ok(storage
            .list(&self.of(id))
            .await?
            .into_iter()
            .filter(|k| !k.ends_with('/'))
            .collect())
    }

    /// Whether any lease holds credential `id`: one page of one entry, not the whole list.
    pub async fn is_held(&self, storage: &dyn Storage, id: &str) -> Result<bool, StorageError> {
        Ok(!storage.list_page(&self.of(id), "", 1).await?.is_empty())
    }

    /// Every credential id with hold entries.
    pub async fn held_ids(&self, storage: &dyn Storage) -> Result<Vec<String>, StorageError> {
        Ok(storage
            .list(&self.prefix)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_suffix('/').map(str::to_string))
            .collect())
    }

    /// Removes every hold of credential `id`; how many there were.
    pub async fn remove_all(&self, storage: &dyn Storage, id: &str) -> Result<usize, StorageError> {
        let holds = self.entries(storage, id).await?;
        for hold in &holds {
            storage.delete(&self.entry(id, hold)).await?;
        }
        Ok(holds.len())
    }
}
