//! The end of a lease: revoke what it holds. Renewal is refused: Qlik cannot extend a key.

use serde_json::Value;

use crate::engine::QlikBackend;
use crate::engine::api_key::config;
use crate::engine::api_key::deleter::REVOKE_PACE_WAIT;
use crate::engine::api_key::rotation::delete_superseded;
use crate::engine::chain::records::{KeyKind, KeyRecord, KeyState};
use crate::engine::secret_types;
use crate::engine::tenant::qlik_error;
use crate::framework::{LeaseOperation, LeaseRequest, RequestError, Response};
use crate::qlik::{DeleteOutcome, ErrorKind};

pub(crate) async fn handle(
    backend: &QlikBackend,
    op: LeaseOperation,
    lease: LeaseRequest,
) -> Result<Response, RequestError> {
    if lease.kind == secret_types::OAUTH_TOKEN {
        return super::oauth_token::lease(backend, op, lease).await;
    }
    if lease.kind == secret_types::OAUTH_CLIENT_SECRET {
        return super::oauth_secrets::lease(backend, op, lease).await;
    }
    if op == LeaseOperation::Renew {
        return Err(RequestError::bad_request(
            "Qlik cannot extend an API key's expiry, so these leases cannot be renewed: read the path again for a new lease",
        ));
    }
    let key_id = match lease.internal.get("key_id") {
        Some(Value::String(id)) => id.clone(),
        _ => return Err(RequestError::Internal("lease without a key id".into())),
    };
    match lease.kind.as_str() {
        secret_types::STORED_KEY => {
            let hold = lease
                .internal
                .get("hold")
                .and_then(Value::as_str)
                .unwrap_or_default();
            release_hold(backend, &key_id, hold).await
        }
        secret_types::DEDICATED_KEY => revoke_dedicated(backend, &key_id).await,
        other => Err(RequestError::Internal(format!(
            "unknown secret type {other:?}"
        ))),
    }
}

/// A lease on a stored key ends: drop its hold (its entry, or in a record an earlier version
/// wrote, its place in the record's list); a superseded key nobody holds any more goes.
async fn release_hold(
    backend: &QlikBackend,
    key_id: &str,
    hold: &str,
) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    let delete_now = {
        let _state = backend.state_lock.lock().await;
        // Even without a record: a forgotten key's entry would otherwise wait for tidy.
        KeyRecord::remove_hold(storage, key_id, hold).await?;
        let Some(mut record) = KeyRecord::load(storage, key_id).await? else {
            return Ok(Response::empty());
        };
        if record.holds.iter().any(|h| h == hold) {
            record.holds.retain(|h| h != hold);
            record.save(storage).await?;
        }
        // Only a superseded key can go, so only its holds are counted (a listing). A
        // foreign key is never deleted at Qlik: its record goes with its last lease.
        match record.kind {
            KeyKind::Superseded => !record.is_held(storage).await?,
            KeyKind::Foreign => {
                if !record.is_held(storage).await? {
                    KeyRecord::forget(storage, key_id).await?;
                }
                false
            }
            KeyKind::Stored | KeyKind::Dedicated => false,
        }
    };
    if delete_now {
        let Some(config) = config::load(backend).await? else {
            tracing::warn!(
                key_id,
                "config was deleted: the superseded key cannot be deleted at Qlik and will expire there by itself"
            );
            KeyRecord::forget(storage, key_id).await?;
            return Ok(Response::empty());
        };
        delete_superseded(backend, &config, key_id).await?;
    }
    Ok(Response::empty())
}

/// A dedicated key's lease ends: delete the key at Qlik (404: already gone). When the tier-2
/// budget has no slot within [`REVOKE_PACE_WAIT`] (a mass revocation), the key is marked
/// `delete_pending` and deleted by the mount's background [`deleter`](crate::engine::api_key::deleter) at the
/// pace Qlik allows; the lease ends now.
async fn revoke_dedicated(backend: &QlikBackend, key_id: &str) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    let Some(config) = config::load(backend).await? else {
        tracing::warn!(
            key_id,
            "config was deleted: the key cannot be deleted at Qlik and will expire there by itself"
        );
        KeyRecord::forget_unheld(storage, key_id).await?;
        return Ok(Response::empty());
    };
    let client = backend.client(&config).await?;
    match client
        .delete_key_within(&config.key.token, key_id, REVOKE_PACE_WAIT)
        .await
    {
        Ok(outcome) => {
            if outcome == DeleteOutcome::AlreadyGone {
                tracing::info!(key_id, "dedicated key was already gone at Qlik");
            } else {
                tracing::info!(key_id, "dedicated key deleted at Qlik");
            }
            let _state = backend.state_lock.lock().await;
            KeyRecord::forget_unheld(storage, key_id).await?;
            Ok(Response::empty())
        }
        Err(error) if error.kind() == ErrorKind::RateLimited => {
            {
                let _state = backend.state_lock.lock().await;
                if let Some(mut record) = KeyRecord::load(storage, key_id).await? {
                    record.state = KeyState::DeletePending;
                    record.last_error = Some(format!("deferred: {error}"));
                    record.save(storage).await?;
                }
            }
            tracing::debug!(key_id, "tier-2 budget in use: deletion deferred");
            backend.deleter.enqueue(key_id.to_string());
            Ok(Response::empty())
        }
        // The server retries failed revocations with backoff.
        Err(error) => Err(qlik_error(&error, "deleting the dedicated key at Qlik")),
    }
}
