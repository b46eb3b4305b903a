//! The mount's key records and lease holds as this process last wrote them, in memory, so
//! that `status` and `metrics` read no storage per scrape (before: every key record and
//! every hold listing, 1,000 `creds` leases = 1,000 storage reads per scrape).
//!
//! Built from storage the first time a scrape needs it (and again after this node became the
//! active one, or after a write the ledger could not follow), then kept by every write this
//! process makes under `keys/` and `holds/` ([`super::watched_storage`] calls
//! [`Ledger::wrote`]). Only the active node writes, and only the active node answers
//! `status` ([`super::node_role`]), so on the node that answers the ledger is exact.
//!
//! Writes that land while it is being built are journalled and replayed over the result:
//! every change is idempotent (a record is set or removed, a hold added or removed), so a
//! change the build already saw is harmless to apply again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use super::records::{HOLDS_PREFIX, KEYS_PREFIX, KeyKind, KeyRecord, KeyState};
use super::schema;
use crate::framework::{Storage, StorageError};

/// A change to the records or holds, as written.
#[derive(Debug, Clone)]
enum Change {
    Record(String, Option<Entry>),
    Hold(String, String, bool),
    /// A write the ledger could not follow (an undecodable record): build again.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    kind: KeyKind,
    state: KeyState,
    /// Holds in the record itself (written by earlier versions).
    legacy_holds: usize,
}

impl Entry {
    fn of(record: &KeyRecord) -> Self {
        Self {
            kind: record.kind,
            state: record.state,
            legacy_holds: record.holds.len(),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Index {
    records: HashMap<String, Entry>,
    holds: HashMap<String, HashSet<String>>,
}

impl Index {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Record(id, Some(entry)) => {
                self.records.insert(id, entry);
            }
            Change::Record(id, None) => {
                self.records.remove(&id);
            }
            Change::Hold(id, hold, true) => {
                self.holds.entry(id).or_default().insert(hold);
            }
            Change::Hold(id, hold, false) => {
                if let Some(holds) = self.holds.get_mut(&id) {
                    holds.remove(&hold);
                    if holds.is_empty() {
                        self.holds.remove(&id);
                    }
                }
            }
            Change::Unknown => {}
        }
    }
}

#[derive(Debug, Default)]
enum State {
    /// Not built (or no longer trusted).
    #[default]
    Stale,
    /// Being built; the changes since it started.
    Building(Vec<Change>),
    /// Built and kept.
    Ready(Index),
}

/// What `status` and `metrics` report of the records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tracked keys by kind (every kind present, 0 included).
    pub keys_by_kind: BTreeMap<&'static str, usize>,
    /// Keys whose deletion at Qlik is pending.
    pub deletions_pending: usize,
    /// Leases holding stored, superseded or foreign keys.
    pub live_holds: usize,
}

/// The in-memory ledger of one mount.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    state: Mutex<State>,
    /// One build at a time: a second scrape waits for the first one's result.
    building: tokio::sync::Mutex<()>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ready(&self) -> Option<Tally> {
        match &*self.lock() {
            State::Ready(index) => Some(tally(index)),
            _ => None,
        }
    }

    /// Forgets everything: the next tally builds from storage.
    pub(crate) fn invalidate(&self) {
        *self.lock() = State::Stale;
    }

    /// A write of this process succeeded: `value` is `None` for a delete.
    pub(crate) fn wrote(&self, key: &str, value: Option<&[u8]>) {
        let change = if let Some(id) = key.strip_prefix(KEYS_PREFIX) {
            match value {
                None => Change::Record(id.to_string(), None),
                Some(bytes) => match schema::decode::<KeyRecord>(key, bytes) {
                    Ok(record) => Change::Record(id.to_string(), Some(Entry::of(&record))),
                    Err(_) => Change::Unknown,
                },
            }
        } else if let Some(rest) = key.strip_prefix(HOLDS_PREFIX) {
            match rest.split_once('/') {
                Some((id, hold)) if !hold.is_empty() => {
                    Change::Hold(id.to_string(), hold.to_string(), value.is_some())
                }
                _ => return,
            }
        } else {
            return;
        };
        let mut state = self.lock();
        match &mut *state {
            State::Stale => {}
            State::Building(journal) => journal.push(change),
            State::Ready(_) if matches!(change, Change::Unknown) => *state = State::Stale,
            State::Ready(index) => index.apply(change),
        }
    }

    /// The tally, from memory; built from storage first if need be.
    pub(crate) async fn tally(&self, storage: &dyn Storage) -> Result<Tally, StorageError> {
        if let Some(tally) = self.ready() {
            return Ok(tally);
        }
        let _building = self.building.lock().await;
        if let Some(tally) = self.ready() {
            return Ok(tally);
        }
        let index = self.build(storage).await?;
        Ok(tally(&index))
    }

    async fn build(&self, storage: &dyn Storage) -> Result<Index, StorageError> {
        *self.lock() = State::Building(Vec::new());
        let result = read_all(storage).await;
        let mut state = self.lock();
        let journal = match std::mem::take(&mut *state) {
            State::Building(journal) => journal,
            // Invalidated meanwhile: use this build for this answer only.
            other => {
                *state = other;
                return result;
            }
        };
        let mut index = result?;
        if journal.iter().any(|c| matches!(c, Change::Unknown)) {
            return Ok(index);
        }
        for change in journal {
            index.apply(change);
        }
        *state = State::Ready(index.clone());
        Ok(index)
    }
}

async fn read_all(storage: &dyn Storage) -> Result<Index, StorageError> {
    let mut index = Index::default();
    for id in KeyRecord::ids(storage).await? {
        if let Some(record) = KeyRecord::load(storage, &id).await? {
            index.records.insert(id, Entry::of(&record));
        }
    }
    for id in KeyRecord::held_ids(storage).await? {
        let holds: HashSet<String> = KeyRecord::hold_entries(storage, &id)
            .await?
            .into_iter()
            .collect();
        if !holds.is_empty() {
            index.holds.insert(id, holds);
        }
    }
    Ok(index)
}

fn tally(index: &Index) -> Tally {
    let mut keys_by_kind: BTreeMap<&'static str, usize> =
        KeyKind::ALL.iter().map(|k| (k.name(), 0)).collect();
    let mut deletions_pending = 0;
    let mut live_holds = 0;
    for (id, entry) in &index.records {
        *keys_by_kind.entry(entry.kind.name()).or_default() += 1;
        if entry.state == KeyState::DeletePending {
            deletions_pending += 1;
        }
        if entry.kind.is_held_by_leases() {
            live_holds += entry.legacy_holds + index.holds.get(id).map_or(0, HashSet::len);
        }
    }
    Tally {
        keys_by_kind,
        deletions_pending,
        live_holds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::storage::MemoryStorage;

    fn record(id: &str, kind: KeyKind) -> KeyRecord {
        KeyRecord::new(id.into(), kind, None, None, jiff::Timestamp::UNIX_EPOCH)
    }

    /// Saves through the ledger, as the watched storage does.
    async fn save(ledger: &Ledger, storage: &MemoryStorage, record: &KeyRecord) {
        record.save(storage).await.expect("save");
        let key = format!("{KEYS_PREFIX}{}", record.id);
        let bytes = storage.get(&key).await.expect("get").expect("saved");
        ledger.wrote(&key, Some(&bytes));
    }

    #[tokio::test]
    async fn the_tally_follows_writes_and_matches_a_fresh_build() {
        let storage = MemoryStorage::default();
        let ledger = Ledger::default();
        save(&ledger, &storage, &record("s", KeyKind::Stored)).await;
        let empty = ledger.tally(&storage).await.expect("tally");
        assert_eq!(empty.keys_by_kind["stored"], 1);
        save(&ledger, &storage, &record("old", KeyKind::Superseded)).await;
        let mut pending = record("d", KeyKind::Dedicated);
        pending.state = KeyState::DeletePending;
        save(&ledger, &storage, &pending).await;
        for (id, hold) in [("s", "h1"), ("old", "h2"), ("old", "h3")] {
            KeyRecord::add_hold(&storage, id, hold).await.expect("hold");
            ledger.wrote(&format!("{HOLDS_PREFIX}{id}/{hold}"), Some(b"{}"));
        }
        KeyRecord::remove_hold(&storage, "old", "h2")
            .await
            .expect("release");
        ledger.wrote("holds/old/h2", None);
        // Not a record or a hold: ignored.
        ledger.wrote("tidy/last_periodic_run", Some(b"\"x\""));
        let kept = ledger.tally(&storage).await.expect("tally");
        assert_eq!(kept.live_holds, 2);
        assert_eq!(kept.deletions_pending, 1);
        assert_eq!(kept.keys_by_kind["superseded"], 1);
        assert_eq!(kept.keys_by_kind["dedicated"], 1);
        let fresh = Ledger::default().tally(&storage).await.expect("tally");
        assert_eq!(kept, fresh, "what memory kept is what storage holds");
        // A record deleted: gone from the tally.
        KeyRecord::forget_unheld(&storage, "d")
            .await
            .expect("forget");
        ledger.wrote("keys/d", None);
        assert_eq!(
            ledger
                .tally(&storage)
                .await
                .expect("tally")
                .deletions_pending,
            0
        );
    }

    #[tokio::test]
    async fn an_undecodable_record_makes_it_build_again() {
        let storage = MemoryStorage::default();
        let ledger = Ledger::default();
        save(&ledger, &storage, &record("s", KeyKind::Stored)).await;
        ledger.tally(&storage).await.expect("tally");
        save(&ledger, &storage, &record("t", KeyKind::Superseded)).await;
        ledger.wrote("keys/t", Some(b"not json"));
        assert!(matches!(*ledger.lock(), State::Stale));
        let tally = ledger.tally(&storage).await.expect("tally");
        assert_eq!(
            tally.keys_by_kind["superseded"], 1,
            "read from storage again"
        );
    }
}
