//! Records kept one per name under a prefix (`oauth/clients/<name>`, `oauth/roles/<name>`),
//! with the mount's schema version ([`super::schema`]).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::schema;
use crate::framework::{Storage, StorageError};

/// A record stored at `PREFIX<name>`.
#[async_trait::async_trait]
pub trait Named: Serialize + DeserializeOwned + Send + Sync + Sized {
    /// Where the records are stored.
    const PREFIX: &'static str;

    /// Loads one.
    async fn load(storage: &dyn Storage, name: &str) -> Result<Option<Self>, StorageError> {
        schema::load(storage, &format!("{}{name}", Self::PREFIX)).await
    }

    /// Saves it.
    async fn save(&self, storage: &dyn Storage, name: &str) -> Result<(), StorageError> {
        schema::save(storage, &format!("{}{name}", Self::PREFIX), self).await
    }

    /// Forgets one.
    async fn delete(storage: &dyn Storage, name: &str) -> Result<(), StorageError> {
        storage.delete(&format!("{}{name}", Self::PREFIX)).await
    }

    /// Every name.
    async fn names(storage: &dyn Storage) -> Result<Vec<String>, StorageError> {
        let mut names = storage.list(Self::PREFIX).await?;
        names.retain(|n| !n.ends_with('/'));
        Ok(names)
    }
}
