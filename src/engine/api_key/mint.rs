//! Minting a key without ever losing track of it.
//!
//! 1. An intent is written first (`intents/<op>`): a standby fails here, read-only, and the
//!    server forwards the request; a crash from here on leaves a trace.
//! 2. The key is created at Qlik with the stored key as bearer; its description carries a
//!    marker naming the mount and the operation.
//! 3. The minted key (token included) is saved into the intent before anything else.
//!
//! A request the server retries after a plugin crash carries the same request id, so it finds
//! its intent: with a minted key, it carries on with that key instead of minting another;
//! without one (the crash came during the create call), keys bearing its marker are deleted
//! (their tokens were never seen) before it mints again.

use jiff::Timestamp;
use secrecy::SecretString;

use crate::duration::KeyDuration;
use crate::engine::QlikBackend;
use crate::engine::api_key::config::Config;
use crate::engine::chain::records::{Intent, IntentKind, MintedKey};
use crate::engine::tenant::qlik_error;
use crate::framework::RequestError;
use crate::qlik::{CreateKeyRequest, DeleteOutcome, ErrorKind, ListFilter, QlikClient};

/// A mint that did not produce a key: the error for the caller, and what kind of refusal
/// Qlik gave, if it was Qlik's (so that automatic rotation can route around a refusal it
/// understands: an expiry above the tenant maximum, a full key limit).
#[derive(Debug)]
pub struct MintFailure {
    /// What the caller answers.
    pub error: RequestError,
    /// Qlik's refusal, when Qlik refused the create.
    pub refused: Option<ErrorKind>,
}

impl From<RequestError> for MintFailure {
    fn from(error: RequestError) -> Self {
        Self {
            error,
            refused: None,
        }
    }
}

impl From<crate::framework::StorageError> for MintFailure {
    fn from(error: crate::framework::StorageError) -> Self {
        RequestError::from(error).into()
    }
}

impl From<MintFailure> for RequestError {
    fn from(failure: MintFailure) -> Self {
        failure.error
    }
}

/// What to mint.
pub struct MintPlan<'a> {
    /// Rotation or creds.
    pub kind: IntentKind,
    /// The role (creds).
    pub role: Option<&'a str>,
    /// Text in front of the marker in the Qlik description.
    pub description: &'a str,
    /// The lifetime to ask for (`None`: the tenant's maximum).
    pub expiry: Option<KeyDuration>,
}

/// An operation id: the server's request id when there is one, so that a retried request
/// finds its own intent.
pub fn operation_id(request_id: &str) -> String {
    let id: String = request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    if id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        id
    }
}

/// The marker of one operation.
pub fn marker(backend: &QlikBackend, op: &str) -> String {
    format!("{} op={op}]", backend.mount_marker())
}

/// Where an operation stands once its intent is reserved ([`reserve`]).
pub enum Reservation {
    /// A new operation: its intent was just written.
    Fresh,
    /// A request the server retried after a plugin crash, whose first attempt got as far as
    /// the key at Qlik: carry on with it.
    Minted(MintedKey),
    /// A retried request whose first attempt died while Qlik was creating the key.
    Interrupted,
}

impl Reservation {
    /// Whether this is a new operation (not a retried request).
    pub fn is_fresh(&self) -> bool {
        matches!(self, Self::Fresh)
    }
}

/// Writes the operation's intent (or finds the one a first attempt left): the request's
/// first storage write, before any call to Qlik. On a standby it fails read-only, and the
/// server forwards the request to the active node without a wasted Qlik call.
pub async fn reserve(
    backend: &QlikBackend,
    op: &str,
    plan: &MintPlan<'_>,
) -> Result<Reservation, RequestError> {
    let storage = backend.storage.as_ref();
    Ok(match Intent::load(storage, op).await? {
        Some(Intent {
            minted: Some(minted),
            ..
        }) => Reservation::Minted(minted),
        Some(_) => Reservation::Interrupted,
        None => {
            Intent {
                op: op.to_string(),
                kind: plan.kind,
                role: plan.role.map(str::to_string),
                marker: marker(backend, op),
                started_at: Timestamp::now(),
                minted: None,
                client: None,
                secret: None,
                secrets_before: None,
            }
            .save(storage)
            .await?;
            Reservation::Fresh
        }
    })
}

/// Gives up an operation before anything was minted: its intent goes.
pub async fn abandon(backend: &QlikBackend, op: &str) -> Result<(), RequestError> {
    Ok(Intent::remove(backend.storage.as_ref(), op).await?)
}

/// Mints a key per `plan` under operation `op`, tracking it in an intent (see the module
/// docs). The intent stays until the caller calls [`finish`].
pub async fn mint(
    backend: &QlikBackend,
    config: &Config,
    client: &QlikClient,
    op: &str,
    plan: &MintPlan<'_>,
) -> Result<MintedKey, MintFailure> {
    let reservation = reserve(backend, op, plan).await?;
    mint_reserved(backend, config, client, op, plan, reservation).await
}

/// [`mint`] once the intent is reserved.
pub async fn mint_reserved(
    backend: &QlikBackend,
    config: &Config,
    client: &QlikClient,
    op: &str,
    plan: &MintPlan<'_>,
    reservation: Reservation,
) -> Result<MintedKey, MintFailure> {
    let storage = backend.storage.as_ref();
    let marker = marker(backend, op);
    match reservation {
        Reservation::Minted(minted) => {
            tracing::info!(op, key_id = %minted.id, "retried request: continuing with the key already minted");
            return Ok(minted);
        }
        Reservation::Interrupted => {
            tracing::warn!(
                op,
                "retried request: the first attempt died while creating a key; deleting what it left"
            );
            delete_marked(
                client,
                &config.key.token,
                &config.key_info.owner_id,
                &marker,
            )
            .await?;
        }
        Reservation::Fresh => {}
    }
    let description = if plan.description.is_empty() {
        marker.clone()
    } else {
        format!("{} {marker}", plan.description)
    };
    let request = CreateKeyRequest {
        description,
        expiry: plan.expiry.map(KeyDuration::to_iso),
    };
    let created = match client.create_key(&config.key.token, &request).await {
        Ok(created) => created,
        Err(error) if error.kind() == ErrorKind::OutcomeUnknown => {
            // The key may exist without our knowing its token: find it by its marker.
            let cleaned = delete_marked(
                client,
                &config.key.token,
                &config.key_info.owner_id,
                &marker,
            )
            .await;
            if cleaned.is_ok() {
                Intent::remove(storage, op).await?;
            }
            return Err(qlik_error(
                &error,
                "creating the key at Qlik (any key it made was found by its marker and deleted, or is left for tidy)",
            )
            .into());
        }
        Err(error) => {
            // Qlik refused: nothing was created, the intent goes.
            Intent::remove(storage, op).await?;
            return Err(MintFailure {
                error: qlik_error(&error, "creating the key at Qlik"),
                refused: Some(error.kind()),
            });
        }
    };
    let minted = MintedKey {
        id: created.key.id.clone(),
        token: created.token,
        created_at: created.key.created,
        expires_at: created.key.expiry,
        dies_at: Some(crate::engine::chain::time::local_deadline(
            created.key.created,
            created.key.expiry,
            Timestamp::now(),
            client.clock_skew(),
        )),
    };
    let recorded = Intent {
        op: op.to_string(),
        kind: plan.kind,
        role: plan.role.map(str::to_string),
        marker,
        started_at: Timestamp::now(),
        minted: Some(minted.clone()),
        client: None,
        secret: None,
        secrets_before: None,
    }
    .save(storage)
    .await;
    if let Err(error) = recorded {
        // Not tracked: it must not survive.
        let _ = client.delete_key(&config.key.token, &minted.id).await;
        return Err(RequestError::from(error).into());
    }
    tracing::info!(op, key_id = %minted.id, expires_at = %minted.expires_at, "key minted");
    Ok(minted)
}

/// The operation is complete: its key is stored or tracked elsewhere.
pub async fn finish(backend: &QlikBackend, op: &str) -> Result<(), RequestError> {
    Ok(Intent::remove(backend.storage.as_ref(), op).await?)
}

/// Deletes every key of `owner` whose description contains `marker`. Returns how many.
pub async fn delete_marked(
    client: &QlikClient,
    bearer: &SecretString,
    owner: &str,
    marker: &str,
) -> Result<usize, RequestError> {
    let keys = client
        .list_keys(
            bearer,
            &ListFilter {
                sub: Some(owner.to_string()),
                status: None,
                created_by_user: None,
            },
        )
        .await
        .map_err(|e| {
            qlik_error(
                &e,
                "listing keys at Qlik to find an interrupted operation's key",
            )
        })?;
    let mut deleted = 0;
    for key in keys.iter().filter(|k| k.description.contains(marker)) {
        match client.delete_key(bearer, &key.id).await {
            Ok(DeleteOutcome::Deleted) => {
                tracing::warn!(key_id = %key.id, "deleted a key left by an interrupted operation");
                deleted += 1;
            }
            Ok(_) => {}
            Err(e) => {
                return Err(qlik_error(
                    &e,
                    "deleting a key left by an interrupted operation",
                ));
            }
        }
    }
    Ok(deleted)
}
