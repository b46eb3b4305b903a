//! Whether this plugin process serves the mount on the active node or on a standby.
//!
//! OpenBao runs a plugin process per mount on every node, and a standby serves reads itself
//! (eventually consistent, no periodic work of its own that writes). The engine learns its
//! role from storage: a write that succeeds means the active node, one refused read-only a
//! standby ([`super::watched_storage`] notes every write). `status` and `metrics` answer only
//! on the active node, whose memory holds the chain's state (the ticks, the last answer of
//! Qlik, the ledger); a standby returns the read-only error unchanged, which makes the server
//! forward the request to the active node. Unless the role is known to be active, a delete of
//! a key that never exists ([`PROBE_KEY`]) finds it out: on the active node it changes nothing,
//! on a standby it is refused.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::framework::{RequestError, Storage, StorageError};

/// The key the probe deletes: never written, so the delete changes nothing.
pub const PROBE_KEY: &str = "node-role-probe";

/// What this process knows of its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No write yet.
    Unknown,
    /// Writes succeed.
    Active,
    /// Writes are refused read-only.
    Standby,
}

/// The role, as last seen by a write.
#[derive(Debug, Default)]
pub(crate) struct NodeRole(AtomicU8);

// 0: not known.
const ACTIVE: u8 = 1;
const STANDBY: u8 = 2;

impl NodeRole {
    pub(crate) fn get(&self) -> Role {
        match self.0.load(Ordering::SeqCst) {
            ACTIVE => Role::Active,
            STANDBY => Role::Standby,
            _ => Role::Unknown,
        }
    }

    /// A write's outcome; returns the role it had before.
    pub(crate) fn saw_write<T>(&self, result: &Result<T, StorageError>) -> Role {
        let before = self.get();
        match result {
            Ok(_) => self.0.store(ACTIVE, Ordering::SeqCst),
            Err(StorageError::ReadOnly) => self.0.store(STANDBY, Ordering::SeqCst),
            Err(_) => {}
        }
        before
    }
}

/// `Ok` on the active node; the read-only error (which the server forwards) on a standby.
/// Known active: no storage call. Otherwise (not known yet, or a standby, which may have
/// become the active node since) the probe asks storage again (`storage` notes the outcome):
/// one delete refused at once on a standby.
pub(crate) async fn require_active(
    role: &NodeRole,
    storage: &dyn Storage,
) -> Result<(), RequestError> {
    match role.get() {
        Role::Active => Ok(()),
        Role::Standby | Role::Unknown => {
            storage.delete(PROBE_KEY).await.map_err(RequestError::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_tell_the_role_and_other_errors_do_not() {
        let role = NodeRole::default();
        assert_eq!(role.get(), Role::Unknown);
        assert_eq!(
            role.saw_write::<()>(&Err(StorageError::ReadOnly)),
            Role::Unknown
        );
        assert_eq!(role.get(), Role::Standby);
        role.saw_write::<()>(&Err(StorageError::Server("busy".into())));
        assert_eq!(role.get(), Role::Standby);
        assert_eq!(role.saw_write(&Ok(())), Role::Standby);
        assert_eq!(role.get(), Role::Active);
    }
}
