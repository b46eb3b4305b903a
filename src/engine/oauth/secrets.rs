//! An OAuth client's secrets as a chain (`docs/design.md` §2): the client secret is the
//! credential, minted beside the current one (`POST /api/v1/oauth-clients/{id}/client-secrets`),
//! verified by getting a token with it, stored in the client's record, and the old one deleted
//! by its hint once no lease holds it. Qlik allows 5 secrets per client; a rotation needs one.
//!
//! - `oauth/secrets/<client>/<id>`: every secret the mount tracks for the client (the id is
//!   its hint, or `unhinted-…` for a written secret whose hint Qlik never told).
//! - `oauth/holds/<client>/<id>/<hold>`: the leases (`oauth/clients/<name>/secret`) on it.
//! - `intents/<op>` (kind `secret_rotate`): written before any Qlik call, the hints of the
//!   client's secrets listed just before the create added, the new secret saved in it as soon
//!   as Qlik answers, removed once it is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::client::{ClientRecord, ManageWith};
use super::tokens;
use crate::engine::QlikBackend;
use crate::engine::api_key::config::Config;
use crate::engine::chain::holds::Holds;
use crate::engine::chain::named::Named;
use crate::engine::chain::records::{Intent, IntentKind, KeyKind, KeyState, MintedSecret};
use crate::engine::chain::rotation::Link;
use crate::engine::chain::schema;
use crate::engine::tenant::qlik_error;
use crate::framework::{RequestError, Storage, StorageError};
use crate::qlik::{DeleteOutcome, ErrorKind, QlikClient};

/// Secrets Qlik allows per client.
pub const MAX_SECRETS: usize = 5;

/// A tracked secret (never the secret itself: the client's record holds the current one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretRecord {
    /// The record's id: the hint, or `unhinted-…`.
    pub id: String,
    /// Its hint at Qlik, when known.
    #[serde(default)]
    pub hint: Option<String>,
    /// Stored (the client's current secret), superseded (kept while leases hold it) or
    /// foreign (written by an operator and replaced: never deleted by the engine).
    pub kind: KeyKind,
    /// Created at Qlik (or written here).
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// Life at Qlik.
    pub state: KeyState,
    /// The last error deleting it.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Created by this engine's rotation (else written by an operator).
    #[serde(default)]
    pub minted: bool,
}

fn records_prefix(client: &str) -> String {
    format!("oauth/secrets/{client}/")
}

/// The hold entries of a client's secrets.
pub fn holds(client: &str) -> Holds {
    Holds::new(format!("oauth/holds/{client}/"))
}

/// The record id of a secret: its hint, or a fresh `unhinted-…` id.
pub fn record_id(hint: Option<&str>) -> String {
    match hint {
        Some(hint) => hint.to_string(),
        None => format!(
            "unhinted-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
    }
}

impl SecretRecord {
    /// Loads one.
    pub async fn load(
        storage: &dyn Storage,
        client: &str,
        id: &str,
    ) -> Result<Option<Self>, StorageError> {
        schema::load(storage, &format!("{}{id}", records_prefix(client))).await
    }

    /// Saves it.
    pub async fn save(&self, storage: &dyn Storage, client: &str) -> Result<(), StorageError> {
        schema::save(
            storage,
            &format!("{}{}", records_prefix(client), self.id),
            self,
        )
        .await
    }

    /// Forgets it and its holds.
    pub async fn forget(storage: &dyn Storage, client: &str, id: &str) -> Result<(), StorageError> {
        storage
            .delete(&format!("{}{id}", records_prefix(client)))
            .await?;
        holds(client).remove_all(storage, id).await.map(drop)
    }

    /// Every tracked secret of a client.
    pub async fn all(storage: &dyn Storage, client: &str) -> Result<Vec<Self>, StorageError> {
        let mut records = Vec::new();
        for id in storage.list(&records_prefix(client)).await? {
            if id.ends_with('/') {
                continue;
            }
            if let Some(record) = Self::load(storage, client, &id).await? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Forgets every record and hold of a client (the client is forgotten).
    pub async fn forget_all(storage: &dyn Storage, client: &str) -> Result<(), StorageError> {
        for record in Self::all(storage, client).await? {
            Self::forget(storage, client, &record.id).await?;
        }
        Ok(())
    }
}

/// The bearer that manages a client's secrets at Qlik, and what got it.
pub struct ManageBearer {
    /// The bearer: the client's own access token, or the mount's stored key.
    pub token: SecretString,
    /// The secret that got the client's own token (none for the mount's key).
    own_secret: Option<SecretString>,
}

impl ManageBearer {
    /// Revokes the client's own token at Qlik once its work is done (the mount's key is
    /// kept): without it every rotation and deletion left a live token for its 6 hours,
    /// and the client's bot user may hold only so many. Best effort, waiting at most 2 s
    /// for a tier-2 slot: a token left behind expires by itself.
    pub async fn release(self, qlik: &QlikClient, client_id: &str) {
        let Some(secret) = self.own_secret else {
            return;
        };
        if let Err(error) = qlik
            .oauth_revoke_within(client_id, &secret, &self.token, Duration::from_secs(2))
            .await
        {
            tracing::debug!(%error, "could not revoke the token that managed the client's secrets; it expires by itself");
        }
    }
}

/// The bearer that manages the client's secrets at Qlik: a token of the client's own (got
/// with `secret`), or the mount's stored key. [`ManageBearer::release`] it when done.
/// `refused` is set when Qlik refused `secret` itself (`invalid_client`, whatever the shape
/// of Qlik's answer): the chain is broken, not merely failing.
pub async fn manage_bearer(
    qlik: &QlikClient,
    client: &ClientRecord,
    secret: &SecretString,
    config: &Config,
    refused: Option<&AtomicBool>,
) -> Result<ManageBearer, RequestError> {
    match client.manage_with {
        ManageWith::ApiKey => Ok(ManageBearer {
            token: config.key.token.clone(),
            own_secret: None,
        }),
        ManageWith::SelfToken => {
            let with_secret = ClientRecord {
                secret: secret.clone(),
                ..client.clone()
            };
            let token = tokens::get(qlik, &with_secret, &tokens::client_credentials_role())
                .await
                .map_err(|e| {
                    if e.kind() == ErrorKind::InvalidClient
                        && let Some(refused) = refused
                    {
                        refused.store(true, Ordering::Relaxed);
                    }
                    qlik_error(&e, "getting the client's own token to manage its secrets")
                })?;
            Ok(ManageBearer {
                token: token.token,
                own_secret: Some(secret.clone()),
            })
        }
    }
}

/// What a deletion of a secret at Qlik came to.
pub enum Deletion {
    /// Gone at Qlik and forgotten here.
    Deleted,
    /// Its hint is not known: kept at Qlik, never guessed.
    UnknownHint,
    /// Qlik did not delete it; marked for tidy.
    Failed(String),
}

/// Deletes a superseded secret at Qlik by its hint (bearer per `manage_with`) and forgets it.
pub async fn delete_secret(
    backend: &QlikBackend,
    qlik: &QlikClient,
    name: &str,
    client: &ClientRecord,
    config: &Config,
    id: &str,
) -> Result<Deletion, RequestError> {
    let storage = backend.storage.as_ref();
    let Some(mut record) = SecretRecord::load(storage, name, id).await? else {
        return Ok(Deletion::Deleted);
    };
    let Some(hint) = record.hint.clone() else {
        return Ok(Deletion::UnknownHint);
    };
    if record.kind == KeyKind::Foreign {
        return Ok(Deletion::UnknownHint);
    }
    let outcome = match manage_bearer(qlik, client, &client.secret, config, None).await {
        Ok(bearer) => {
            let deleted = qlik
                .delete_client_secret(&bearer.token, &client.client_id, &hint)
                .await
                .map_err(|e| e.to_string());
            bearer.release(qlik, &client.client_id).await;
            deleted
        }
        Err(error) => Err(error.to_string()),
    };
    match outcome {
        Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => {
            let _state = backend.state_lock.lock().await;
            SecretRecord::forget(storage, name, id).await?;
            tracing::info!(client = %name, hint = %hint, "superseded client secret deleted at Qlik");
            Ok(Deletion::Deleted)
        }
        Err(error) => {
            let _state = backend.state_lock.lock().await;
            record.state = KeyState::DeletePending;
            record.last_error = Some(error.clone());
            record.save(storage, name).await?;
            Ok(Deletion::Failed(error))
        }
    }
}

/// An OAuth client's steps of the chain's order ([`crate::engine::chain::rotation`]).
pub struct SecretLink<'a> {
    /// The mount.
    pub backend: &'a QlikBackend,
    /// The tenant (and, for `manage_with=api_key`, the bearer).
    pub config: &'a Config,
    /// The client's name in the mount.
    pub name: &'a str,
    /// The client as stored when the rotation began.
    pub client: &'a ClientRecord,
    /// The client's Qlik client (its bot user's pacer).
    pub qlik: QlikClient,
    /// Set when Qlik refused the stored secret during the rotation (see [`manage_bearer`]).
    pub stored_refused: AtomicBool,
}

impl SecretLink<'_> {
    /// Forgets the intent of a rotation that created nothing.
    async fn abandon(&self, op: &str) {
        let _ = Intent::remove(self.backend.storage.as_ref(), op).await;
    }

    /// With the managing `bearer`: a check that a secret slot is free (after deleting what a
    /// retried request's first attempt left), the hints listed before the create saved in the
    /// intent, the create, and the new secret saved in the intent.
    async fn create(
        &self,
        bearer: &SecretString,
        op: &str,
        intent: Intent,
        resumed: bool,
    ) -> Result<MintedSecret, RequestError> {
        let (backend, client, name) = (self.backend, self.client, self.name);
        let storage = backend.storage.as_ref();
        if resumed {
            // A retried request whose first attempt died while Qlik was creating the secret:
            // what it may have created is deleted before another is made.
            delete_left_by_interruption(backend, &self.qlik, bearer, name, client, &intent).await?;
        }
        // One of the 5 slots must be free: refused here, clearly, rather than by a 409.
        let before: Vec<String> = match self.qlik.oauth_client(bearer, &client.client_id).await {
            Ok(info) if info.client_secrets.len() >= MAX_SECRETS => {
                self.abandon(op).await;
                return Err(limit_error(name, info.client_secrets.len()));
            }
            Ok(info) => info.client_secrets.into_iter().map(|s| s.hint).collect(),
            Err(error) => {
                self.abandon(op).await;
                return Err(qlik_error(
                    &error,
                    "reading the client's secrets at Qlik (nothing was created)",
                ));
            }
        };
        // The secrets there before the create, in the intent: whatever else is there after an
        // interrupted create is what it made (Qlik dates a secret by the tenant's clock, which
        // may be far from ours: the intent's start cannot tell). A resumed request has just
        // deleted what its first attempt left, so what it lists is what was there before.
        let intent = Intent {
            secrets_before: Some(before),
            ..intent
        };
        if let Err(error) = intent.save(storage).await {
            if !resumed {
                self.abandon(op).await;
            }
            return Err(error.into());
        }
        let created = match self
            .qlik
            .create_client_secret(bearer, &client.client_id)
            .await
        {
            Ok(created) => created,
            Err(error) if error.kind() == ErrorKind::SecretLimit => {
                self.abandon(op).await;
                return Err(limit_error(name, MAX_SECRETS));
            }
            Err(error) if error.kind() == ErrorKind::OutcomeUnknown => {
                // Qlik may have created one whose secret we never saw: the intent stays, and
                // tidy deletes any secret of the client not listed before that nothing tracks.
                return Err(qlik_error(
                    &error,
                    "creating the client secret at Qlik (any secret it made is deleted by tidy)",
                ));
            }
            Err(error) => {
                self.abandon(op).await;
                return Err(qlik_error(&error, "creating the client secret at Qlik"));
            }
        };
        let minted = MintedSecret {
            hint: created.hint,
            secret: created.client_secret,
            created_at: created.created_at,
        };
        let recorded = Intent {
            secret: Some(minted.clone()),
            ..intent
        }
        .save(storage)
        .await;
        if let Err(error) = recorded {
            // Not tracked: it must not survive.
            let _ = self
                .qlik
                .delete_client_secret(bearer, &client.client_id, &minted.hint)
                .await;
            return Err(error.into());
        }
        Ok(minted)
    }
}

#[async_trait::async_trait]
impl Link for SecretLink<'_> {
    type New = MintedSecret;
    type Stored = ClientRecord;
    type Error = RequestError;

    const NOUN: &'static str = "client secret";

    fn current_id(&self) -> String {
        self.client
            .secret_id
            .clone()
            .unwrap_or_else(|| record_id(self.client.secret_hint.as_deref()))
    }

    fn new_id(new: &MintedSecret) -> String {
        new.hint.clone()
    }

    /// The intent, a check that a secret slot is free, the create, the secret saved in the
    /// intent.
    async fn mint(
        &self,
        op: &str,
        _warnings: &mut Vec<String>,
    ) -> Result<MintedSecret, RequestError> {
        let (backend, client, name) = (self.backend, self.client, self.name);
        let storage = backend.storage.as_ref();
        let (intent, resumed) = match Intent::load(storage, op).await? {
            Some(Intent {
                secret: Some(secret),
                ..
            }) => {
                tracing::info!(op, client = %name, "retried request: continuing with the secret already created");
                return Ok(secret);
            }
            Some(intent) => (intent, true),
            None => {
                let intent = Intent {
                    op: op.to_string(),
                    kind: IntentKind::SecretRotate,
                    role: None,
                    marker: String::new(),
                    started_at: Timestamp::now(),
                    minted: None,
                    client: Some(name.to_string()),
                    secret: None,
                    secrets_before: None,
                };
                // The first write, before any Qlik call (a standby fails here, read-only).
                intent.save(storage).await?;
                (intent, false)
            }
        };
        let bearer = match manage_bearer(
            &self.qlik,
            client,
            &client.secret,
            self.config,
            Some(&self.stored_refused),
        )
        .await
        {
            Ok(bearer) => bearer,
            Err(error) => {
                // A resumed intent stays: tidy deletes what its first attempt may have made.
                if !resumed {
                    self.abandon(op).await;
                }
                return Err(error);
            }
        };
        let minted = self.create(&bearer.token, op, intent, resumed).await;
        // Released on every way out of the create.
        bearer.release(&self.qlik, &client.client_id).await;
        let minted = minted?;
        tracing::info!(op, client = %name, hint = %minted.hint, "client secret created");
        Ok(minted)
    }

    /// A token with the new secret.
    async fn verify(&self, new: &MintedSecret) -> Result<(), RequestError> {
        let with_new = ClientRecord {
            secret: new.secret.clone(),
            ..self.client.clone()
        };
        let token = tokens::get(&self.qlik, &with_new, &tokens::client_credentials_role())
            .await
            .map_err(|e| {
                qlik_error(
                    &e,
                    "verifying the new client secret (it was deleted and the stored one kept)",
                )
            })?;
        if let Err(error) = self
            .qlik
            .oauth_revoke(&self.client.client_id, &new.secret, &token.token)
            .await
        {
            tracing::debug!(%error, "could not revoke the verification token; it expires by itself");
        }
        Ok(())
    }

    async fn discard(&self, new: &MintedSecret) -> bool {
        match manage_bearer(
            &self.qlik,
            self.client,
            &self.client.secret,
            self.config,
            None,
        )
        .await
        {
            Ok(bearer) => {
                let deleted = self
                    .qlik
                    .delete_client_secret(&bearer.token, &self.client.client_id, &new.hint)
                    .await
                    .is_ok();
                bearer.release(&self.qlik, &self.client.client_id).await;
                deleted
            }
            Err(_) => false,
        }
    }

    /// The new secret becomes the client's, the old one superseded.
    async fn store(
        &self,
        new: &MintedSecret,
        hold: Option<&str>,
    ) -> Result<(ClientRecord, usize), RequestError> {
        let storage = self.backend.storage.as_ref();
        let name = self.name;
        let _state = self.backend.state_lock.lock().await;
        // The client as it is now (a write may have changed its settings meanwhile).
        let current = ClientRecord::load(storage, name)
            .await?
            .unwrap_or_else(|| self.client.clone());
        let old_id = self.current_id();
        SecretRecord {
            id: new.hint.clone(),
            hint: Some(new.hint.clone()),
            kind: KeyKind::Stored,
            created_at: new.created_at,
            state: KeyState::Active,
            last_error: None,
            minted: true,
        }
        .save(storage, name)
        .await?;
        if let Some(hold) = hold {
            holds(name).add(storage, &new.hint, hold).await?;
        }
        let stored = ClientRecord {
            secret: new.secret.clone(),
            secret_hint: Some(new.hint.clone()),
            secret_id: Some(new.hint.clone()),
            secret_created_at: new.created_at.unwrap_or_else(Timestamp::now),
            ..current
        };
        stored.save(storage, name).await?;
        let mut old = SecretRecord::load(storage, name, &old_id)
            .await?
            .unwrap_or(SecretRecord {
                id: old_id.clone(),
                hint: self.client.secret_hint.clone(),
                kind: KeyKind::Stored,
                created_at: Some(self.client.secret_created_at),
                state: KeyState::Active,
                last_error: None,
                minted: false,
            });
        if old.kind == KeyKind::Stored {
            old.kind = KeyKind::Superseded;
        }
        old.save(storage, name).await?;
        let old_holds = holds(name).entries(storage, &old_id).await?.len();
        tracing::info!(client = %name, old_id = %old_id, new_hint = %new.hint, "client secret rotated");
        Ok((stored, old_holds))
    }

    async fn stored_already(&self, hold: Option<&str>) -> Result<ClientRecord, RequestError> {
        if let Some(hold) = hold {
            let _state = self.backend.state_lock.lock().await;
            holds(self.name)
                .add(self.backend.storage.as_ref(), &self.current_id(), hold)
                .await?;
        }
        Ok(self.client.clone())
    }

    async fn finish(&self, op: &str) -> Result<(), RequestError> {
        Ok(Intent::remove(self.backend.storage.as_ref(), op).await?)
    }

    async fn delete_old(&self, stored: &ClientRecord, old_id: &str) -> Option<String> {
        match delete_secret(
            self.backend,
            &self.qlik,
            self.name,
            stored,
            self.config,
            old_id,
        )
        .await
        {
            Ok(Deletion::Deleted) => None,
            Ok(Deletion::UnknownHint) => Some(format!(
                "the previous client secret's hint is not known (it was written, and Qlik never \
                 says which hint a written secret has), so it is kept at Qlik: delete it in the \
                 console, or write client_secret_hint before the next rotation (record {old_id})"
            )),
            Ok(Deletion::Failed(error)) | Err(RequestError::Internal(error)) => Some(format!(
                "the previous client secret {old_id} could not be deleted at Qlik yet ({error}); \
                 tidy retries"
            )),
            Err(error) => Some(format!(
                "the previous client secret {old_id} could not be deleted at Qlik yet ({error}); \
                 tidy retries"
            )),
        }
    }
}

/// Deletes every secret of the client at Qlik that the secret rotation of `intent` may have
/// created and that the mount does not track (the stored one, or a record): what an operation
/// interrupted during the create left. Those not listed before the create
/// ([`Intent::secrets_before`]); for an intent that has no such list (written by an earlier
/// version, or interrupted before the list), those Qlik dates since the intent's start, give or
/// take 5 s (Qlik's clock against ours). Returns how many.
pub async fn delete_left_by_interruption(
    backend: &QlikBackend,
    qlik: &QlikClient,
    bearer: &SecretString,
    name: &str,
    client: &ClientRecord,
    intent: &Intent,
) -> Result<usize, RequestError> {
    let storage = backend.storage.as_ref();
    let mut known: Vec<String> = SecretRecord::all(storage, name)
        .await?
        .into_iter()
        .filter_map(|r| r.hint)
        .collect();
    known.extend(client.secret_hint.clone());
    let info = qlik
        .oauth_client(bearer, &client.client_id)
        .await
        .map_err(|e| qlik_error(&e, "reading the client's secrets at Qlik"))?;
    let mut deleted = 0;
    for secret in info.client_secrets {
        let recent = match &intent.secrets_before {
            Some(before) => !before.contains(&secret.hint),
            None => secret
                .created_at
                .is_some_and(|at| at >= intent.started_at - jiff::SignedDuration::from_secs(5)),
        };
        if !recent || known.contains(&secret.hint) {
            continue;
        }
        qlik.delete_client_secret(bearer, &client.client_id, &secret.hint)
            .await
            .map_err(|e| qlik_error(&e, "deleting a secret left by an interrupted rotation"))?;
        tracing::warn!(client = %name, hint = %secret.hint, "deleted a client secret left by an interrupted rotation");
        deleted += 1;
    }
    Ok(deleted)
}

/// The refusal when the client has no free secret slot.
fn limit_error(name: &str, count: usize) -> RequestError {
    RequestError::bad_request(format!(
        "the client has {count} secrets at Qlik and Qlik allows {MAX_SECRETS}: a rotation needs \
         one free. Nothing was created and the stored secret is intact. Fix: delete a secret \
         nothing uses (Qlik console: OAuth client, Client secrets), then rotate again \
         (vault write -force <mount>/oauth/clients/{name}/rotate)"
    ))
}
