//! Key slots: Qlik lets a user hold `max_keys_per_user` active keys (5 by default), and the
//! stored key's rotation needs one free slot, because it mints the successor before it deletes
//! the old key. A chain whose owner has no free slot dies when the stored key expires, so every
//! path that adds an active key keeps that slot free, and automatic rotation routes around a
//! full owner where it safely can.
//!
//! - `creds` refuses a mint that would take the last free slot ([`check_creds`]).
//! - A manual `rotate` whose previous key stays alive (leases hold it) refuses when it would
//!   leave no slot for the next rotation ([`check_manual_rotation`]).
//! - Automatic rotation refused by Qlik for the key limit ([`free_for_rotation`]) deletes
//!   superseded keys of this mount that nothing holds any more; if none, and the stored key is
//!   in the last half of its rotation margin, it deletes the key of this mount that expires
//!   first even though a lease holds it, and says so (a warning naming the key and its leases):
//!   one lease losing its key early is better than the chain, and every later read, dying.
//!   Keys this mount did not mint or adopt are never touched.

use jiff::Timestamp;

use crate::engine::QlikBackend;
use crate::engine::api_key::config::Config;
use crate::engine::chain::records::{KeyKind, KeyRecord};
use crate::engine::tenant::qlik_error;
use crate::framework::RequestError;
use crate::qlik::{DeleteOutcome, ErrorKind, KeyStatus, ListFilter, QlikClient};

/// Key slots kept free for the stored key's next rotation.
pub const ROTATION_SLOTS: usize = 1;

/// The owner's active keys against the tenant's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    /// Active keys of the stored key's owner.
    pub active: usize,
    /// The tenant's `max_keys_per_user`.
    pub max: usize,
}

/// Counts the owner's active keys against the tenant's limit. `None` when the owner may not
/// read the tenant settings (then Qlik alone decides).
pub async fn count(config: &Config, client: &QlikClient) -> Result<Option<Slots>, RequestError> {
    let token = &config.key.token;
    let limits = match client
        .tenant_config(token, &config.key_info.tenant_id)
        .await
    {
        Ok(limits) => limits,
        Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::NotFound) => {
            return Ok(None);
        }
        Err(e) => return Err(qlik_error(&e, "reading the tenant's API key limits")),
    };
    let active = client
        .list_keys(
            token,
            &ListFilter {
                sub: Some(config.key_info.owner_id.clone()),
                status: Some(KeyStatus::Active),
                created_by_user: None,
            },
        )
        .await
        .map_err(|e| qlik_error(&e, "counting the owner's active keys"))?;
    Ok(Some(Slots {
        active: active.len(),
        max: limits.max_keys_per_user as usize,
    }))
}

/// Refuses, with the numbers and the fix, a `creds` mint that would take the owner's last free
/// key slot (the stored key's rotation's).
pub async fn check_creds(
    config: &Config,
    client: &QlikClient,
    mount_point: &str,
) -> Result<(), RequestError> {
    let Some(slots) = count(config, client).await? else {
        return Ok(());
    };
    if slots.active + ROTATION_SLOTS >= slots.max {
        return Err(RequestError::bad_request(format!(
            "key limit reached: the Qlik user {} already has {} active API keys and the tenant allows {} \
             (max_keys_per_user), of which one stays free for the stored key's rotation; nothing \
             was minted. Fix: see what holds the slots (vault list {mount_point}keys, then \
             vault read {mount_point}keys/<id>: kind and live_leases), revoke the creds leases \
             no longer needed (vault lease revoke <lease_id>; a whole role: vault lease revoke \
             -prefix {mount_point}creds/<role>, which ends its applications' keys at once), or \
             raise max_keys_per_user in the tenant's API key settings",
            config.key_info.owner_id, slots.active, slots.max,
        )));
    }
    Ok(())
}

/// Refuses a manual rotation that would leave the owner no free slot for the next rotation:
/// the new key takes a slot, and the previous key keeps its own while `old_holds` leases hold
/// it. (A rotation whose previous key goes at once changes nothing in the count.)
pub async fn check_manual_rotation(
    config: &Config,
    client: &QlikClient,
    old_holds: usize,
    mount_point: &str,
) -> Result<(), RequestError> {
    if old_holds == 0 {
        return Ok(());
    }
    let Some(slots) = count(config, client).await? else {
        return Ok(());
    };
    // After the rotation: every active key now, plus the new one, plus the free slot.
    if slots.active + 1 + ROTATION_SLOTS > slots.max {
        return Err(RequestError::bad_request(format!(
            "key limit: the Qlik user {owner} has {active} active API keys and the tenant allows \
             {max} (max_keys_per_user); this rotation would add one while {old_holds} lease(s) \
             keep the previous key {old} alive, leaving no free slot for the next rotation, so \
             the chain would die at the next one; nothing was minted. Fix: leave it to the \
             automatic rotation (it frees a slot of this mount's own keys when it must), set \
             key_ttl on config so key leases end and free old keys sooner, raise \
             max_keys_per_user, or rotate with revoke_previous=true (the previous key is deleted \
             at once: applications holding it must read {mount_point}key again)",
            owner = config.key_info.owner_id,
            active = slots.active,
            max = slots.max,
            old = config.key_info.key_id,
        )));
    }
    Ok(())
}

/// What [`free_for_rotation`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Freed {
    /// Superseded keys nothing held (their deletion had failed or was pending).
    pub unheld: Vec<String>,
    /// A key still held by leases, deleted as the last resort: (id, live leases).
    pub held: Option<(String, usize)>,
}

impl Freed {
    /// Whether a slot was freed.
    pub fn any(&self) -> bool {
        !self.unheld.is_empty() || self.held.is_some()
    }
}

/// Frees a key slot for an automatic rotation Qlik refused for the key limit (see the module
/// docs). `last_resort` allows deleting a held key (the stored key is close to its expiry).
pub async fn free_for_rotation(
    backend: &QlikBackend,
    config: &Config,
    client: &QlikClient,
    last_resort: bool,
) -> Result<Freed, RequestError> {
    let storage = backend.storage.as_ref();
    let mut candidates = Vec::new();
    for id in KeyRecord::ids(storage).await? {
        if id == config.key_info.key_id {
            continue;
        }
        let Some(record) = KeyRecord::load(storage, &id).await? else {
            continue;
        };
        // The stored key is the chain; a foreign key is not this engine's to delete.
        if matches!(record.kind, KeyKind::Stored | KeyKind::Foreign) {
            continue;
        }
        let holds = if record.kind == KeyKind::Superseded {
            record.live_holds(storage).await?
        } else {
            // A dedicated key is held by its one creds lease.
            1
        };
        candidates.push((record, holds));
    }
    let mut freed = Freed::default();
    for (record, holds) in &candidates {
        if record.kind == KeyKind::Superseded
            && *holds == 0
            && delete(backend, config, client, record).await?
        {
            tracing::warn!(key_id = %record.id, "key limit: deleted a superseded key nothing holds, to free a slot for the rotation");
            freed.unheld.push(record.id.clone());
        }
    }
    if freed.any() || !last_resort {
        return Ok(freed);
    }
    // The last resort: the held key of this mount that expires first (the least life lost).
    let Some((victim, holds)) = candidates
        .iter()
        .filter(|(r, _)| r.expires_at > Timestamp::now())
        .min_by_key(|(r, _)| r.expires_at)
    else {
        return Ok(freed);
    };
    if delete(backend, config, client, victim).await? {
        tracing::warn!(
            key_id = %victim.id,
            kind = ?victim.kind,
            live_leases = holds,
            expires_at = %victim.expires_at,
            "key limit: no free key slot and the stored key is close to its expiry: deleted this key \
             although leases hold it, so that the chain survives; those leases now hold a dead key \
             (read the stored key again, or creds again)"
        );
        freed.held = Some((victim.id.clone(), *holds));
    }
    Ok(freed)
}

/// Deletes a tracked key at Qlik and forgets it. `false` when Qlik would not delete it now.
async fn delete(
    backend: &QlikBackend,
    config: &Config,
    client: &QlikClient,
    record: &KeyRecord,
) -> Result<bool, RequestError> {
    match client.delete_key(&config.key.token, &record.id).await {
        Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => {
            let _state = backend.state_lock.lock().await;
            KeyRecord::forget(backend.storage.as_ref(), &record.id).await?;
            Ok(true)
        }
        Err(error) => {
            tracing::warn!(key_id = %record.id, %error, "key limit: could not delete a key to free a slot");
            Ok(false)
        }
    }
}
