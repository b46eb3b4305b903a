//! The mount's storage as the engine uses it: the server's storage, with every write this
//! process makes seen on its way back. A write's outcome tells the node's role
//! ([`super::node_role`]); a write under `keys/` or `holds/` that succeeded updates the
//! in-memory ledger ([`super::ledger`]). Reads pass straight through.

use std::sync::Arc;

use super::ledger::Ledger;
use super::node_role::{NodeRole, Role};
use crate::framework::{Storage, StorageError};

/// The server's storage, watched.
pub(crate) struct WatchedStorage {
    inner: Arc<dyn Storage>,
    role: Arc<NodeRole>,
    ledger: Arc<Ledger>,
}

impl WatchedStorage {
    pub(crate) fn new(inner: Arc<dyn Storage>, role: Arc<NodeRole>, ledger: Arc<Ledger>) -> Self {
        Self {
            inner,
            role,
            ledger,
        }
    }

    fn saw<T>(&self, result: &Result<T, StorageError>) {
        if self.role.saw_write(result) != Role::Active && result.is_ok() {
            // This node was a standby (or not known to be active): what it remembers may
            // lag behind what the active node wrote. Built again at the next scrape.
            self.ledger.invalidate();
        }
    }
}

#[async_trait::async_trait]
impl Storage for WatchedStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        // The ledger needs the value after the write; only records and holds keep a copy.
        let copy = (key.starts_with(super::records::KEYS_PREFIX)
            || key.starts_with(super::records::HOLDS_PREFIX))
        .then(|| value.clone());
        let result = self.inner.put(key, value).await;
        self.saw(&result);
        if result.is_ok()
            && let Some(copy) = copy
        {
            self.ledger.wrote(key, Some(&copy));
        }
        result
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let result = self.inner.delete(key).await;
        self.saw(&result);
        if result.is_ok() {
            self.ledger.wrote(key, None);
        }
        result
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.list_page(prefix, after, limit).await
    }
}
