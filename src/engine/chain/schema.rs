//! The schema version every JSON record of the engine carries (`config`, `keys/<id>`,
//! `intents/<op>`, `roles/<name>`), for downgrade safety.
//!
//! Each record is written with `"schema_version": SCHEMA_VERSION`. A record without the field
//! was written before the field existed and reads as the current version. A record with a
//! newer version was written by a newer build of the plugin: this build refuses it with an
//! error naming the record and both versions ("upgrade the plugin"), and does not rewrite or
//! delete it: the requests that change records read the config first, and an existing key
//! record, intent or role is read before it is rewritten, so the refusal comes first. (Two
//! deletions do not read first: `roles/<name>` delete, an explicit operator request, and the
//! record of a dedicated key whose lease ends, after the key is deleted at Qlik.)
//!
//! Hold entries (`holds/<key id>/<hold id>`) carry no data (`{}`) and are only ever listed,
//! never decoded: they have no version. The periodic tidy's timestamp
//! (`tidy/last_periodic_run`) is a bare string the engine never reads back.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::VERSION;
use crate::framework::storage::{Storage, StorageError};

/// The schema of the records this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u64 = 1;

/// The field that carries it.
pub const FIELD: &str = "schema_version";

fn codec(key: &str, source: serde_json::Error) -> StorageError {
    StorageError::Codec {
        key: key.to_string(),
        source,
    }
}

/// Decodes a record read at `key`, refusing one of a newer schema.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StorageError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| codec(key, e))?;
    if let Some(found) = value.get(FIELD) {
        let newer = match found.as_u64() {
            Some(version) if version <= SCHEMA_VERSION => None,
            Some(version) => Some(version.to_string()),
            None => Some(found.to_string()),
        };
        if let Some(found) = newer {
            return Err(StorageError::Refused {
                key: key.to_string(),
                reason: format!(
                    "it has schema version {found}, and this plugin ({VERSION}) knows schema \
                     versions up to {SCHEMA_VERSION}: a newer version of the plugin wrote it. \
                     Upgrade the plugin (register and run the version that wrote it); the record \
                     is left unchanged"
                ),
            });
        }
    }
    serde_json::from_value(value).map_err(|e| codec(key, e))
}

/// Encodes a record with the current schema version.
pub fn encode<T: Serialize + ?Sized>(key: &str, record: &T) -> Result<Vec<u8>, StorageError> {
    let mut value = serde_json::to_value(record).map_err(|e| codec(key, e))?;
    if let Some(object) = value.as_object_mut() {
        object.insert(FIELD.to_string(), SCHEMA_VERSION.into());
    }
    serde_json::to_vec(&value).map_err(|e| codec(key, e))
}

/// Reads and decodes the record at `key`, if any (see [`decode`]).
pub async fn load<T: DeserializeOwned>(
    storage: &dyn Storage,
    key: &str,
) -> Result<Option<T>, StorageError> {
    match storage.get(key).await? {
        None => Ok(None),
        Some(bytes) => decode(key, &bytes).map(Some),
    }
}

/// Encodes and writes the record at `key` (see [`encode`]).
pub async fn save<T: Serialize + ?Sized>(
    storage: &dyn Storage,
    key: &str,
    record: &T,
) -> Result<(), StorageError> {
    let bytes = encode(key, record)?;
    storage.put(key, bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::storage::MemoryStorage;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        name: String,
    }

    #[tokio::test]
    async fn records_are_written_with_the_schema_version_and_read_back() {
        let storage = MemoryStorage::default();
        let record = Record { name: "a".into() };
        save(&storage, "r", &record).await.expect("save");
        let raw: serde_json::Value =
            serde_json::from_slice(&storage.get("r").await.expect("get").expect("present"))
                .expect("json");
        assert_eq!(raw[FIELD], SCHEMA_VERSION);
        assert_eq!(
            load::<Record>(&storage, "r").await.expect("load"),
            Some(record)
        );
        assert_eq!(load::<Record>(&storage, "none").await.expect("load"), None);
    }

    #[test]
    fn records_without_the_field_read_as_the_current_version() {
        let record: Record = decode("r", br#"{"name":"old"}"#).expect("decode");
        assert_eq!(record.name, "old");
        let record: Record = decode("r", br#"{"name":"v1","schema_version":1}"#).expect("decode");
        assert_eq!(record.name, "v1");
    }

    #[test]
    fn a_newer_schema_is_refused_naming_the_record_and_both_versions() {
        for (bytes, found) in [
            (&br#"{"name":"x","schema_version":2}"#[..], "2"),
            (&br#"{"name":"x","schema_version":"2.0"}"#[..], "\"2.0\""),
        ] {
            let error = decode::<Record>("keys/k1", bytes).expect_err("refused");
            let message = error.to_string();
            assert!(matches!(error, StorageError::Refused { .. }), "{error:?}");
            for part in [
                "\"keys/k1\"",
                &format!("schema version {found}"),
                &format!("up to {SCHEMA_VERSION}"),
                VERSION,
                "Upgrade the plugin",
            ] {
                assert!(message.contains(part), "{part:?} not in {message}");
            }
        }
    }
}
