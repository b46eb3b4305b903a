//! Rotation of an OAuth client's secret, by hand (`oauth/clients/<name>/rotate`) or by the
//! periodic tick (`rotation_period`, `rotation_schedule`), through the chain's order with the
//! client secret's steps ([`super::secrets::SecretLink`]), and the clean-up of what an
//! interrupted one left behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use super::client::ClientRecord;
use super::secrets::{self, Deletion, SecretLink, SecretRecord};
use crate::engine::QlikBackend;
use crate::engine::api_key::config;
use crate::engine::chain::health::{self, RotationOutcome};
use crate::engine::chain::named::Named;
use crate::engine::chain::records::{Intent, IntentKind, KeyKind, KeyState};
use crate::engine::chain::rotation::{self, Rotated};
use crate::engine::chain::schedule::{self, Reason};
use crate::framework::RequestError;
use secrecy::{ExposeSecret, SecretString};

/// What became of the previous secret, as the `rotate` answer says it.
pub fn previous_state(record: Option<&SecretRecord>) -> &'static str {
    match record {
        None => "deleted",
        Some(r) if r.hint.is_none() || r.kind == KeyKind::Foreign => "kept_unknown_hint",
        Some(r) if r.state == KeyState::DeletePending => "delete_pending",
        Some(_) => "kept_while_held",
    }
}

/// Rotates client `name`'s secret (one rotation at a time per mount). `reason`: `None` for a
/// manual rotation, else why the tick started it.
pub async fn rotate_client<'a>(
    backend: &'a QlikBackend,
    name: &'a str,
    op: &str,
    reason: Option<Reason>,
    client: &'a ClientRecord,
    config: &'a config::Config,
) -> Result<Rotated<SecretLink<'a>>, RequestError> {
    let _rotation = backend.oauth.rotation_lock.lock().await;
    let qlik = backend.oauth_qlik(config, name, &client.client_id)?;
    let link = SecretLink {
        backend,
        config,
        name,
        client,
        qlik,
        stored_refused: AtomicBool::new(false),
    };
    let result = rotation::rotate(&link, op, None, false).await;
    let refused = link.stored_refused.load(Ordering::Relaxed);
    let trigger = if reason.is_some() {
        "automatic"
    } else {
        "manual"
    };
    match &result {
        Err(error) if error.is_read_only() => {}
        Err(error) => {
            tracing::warn!(client = %name, trigger, %error, "client secret rotation failed");
            record_outcome(backend, name, reason, Some(error), refused).await;
        }
        Ok(_) => record_outcome(backend, name, reason, None, false).await,
    }
    backend
        .metrics()
        .secret_rotation(reason.map_or("manual", Reason::name), result.is_ok());
    if result.is_ok() {
        backend.oauth.shared.clear();
    }
    result
}

async fn record_outcome(
    backend: &QlikBackend,
    name: &str,
    reason: Option<Reason>,
    error: Option<&RequestError>,
    refused: bool,
) {
    let storage = backend.storage.as_ref();
    let _state = backend.state_lock.lock().await;
    let Ok(Some(mut client)) = ClientRecord::load(storage, name).await else {
        return;
    };
    client.last_rotation = Some(RotationOutcome::now(reason.is_some(), error));
    health::record(&mut client.history, &mut client.rotation, reason, error);
    if error.is_some() && refused {
        // Set, never cleared by a failure of another cause (an outage says nothing of the
        // secret): only a success or a written secret clears it.
        client.history.credential_refused = true;
    }
    if let Err(e) = client.save(storage, name).await {
        tracing::debug!(error = %e, "could not record the secret rotation's outcome");
    }
}

/// Qlik refused client `name`'s stored secret when a token was got with it (an application's
/// token read): the client is broken from now until a valid secret is written or a rotation
/// succeeds. Recorded only while `secret` is still the stored one (a rotation may have
/// replaced it meanwhile) and once (not rewritten by every refused read).
pub async fn record_refusal(
    backend: &QlikBackend,
    name: &str,
    secret: &SecretString,
    error: &RequestError,
) {
    let storage = backend.storage.as_ref();
    let _state = backend.state_lock.lock().await;
    let Ok(Some(mut client)) = ClientRecord::load(storage, name).await else {
        return;
    };
    if client.history.credential_refused || client.secret.expose_secret() != secret.expose_secret()
    {
        return;
    }
    client.history.credential_refused = true;
    client.history.last_error = Some(error.to_string());
    client.history.last_failure = Some(Timestamp::now());
    tracing::warn!(client = %name, "Qlik refused the stored client secret on a token read: the client is broken until a valid secret is written");
    if let Err(e) = client.save(storage, name).await {
        tracing::debug!(error = %e, "could not record the refused secret");
    }
}

/// Automatic rotation of every client whose secret is due, from the periodic tick.
pub async fn periodic(backend: &QlikBackend) -> Result<(), RequestError> {
    let storage = backend.storage.as_ref();
    let names = ClientRecord::names(storage).await?;
    if names.is_empty() {
        return Ok(());
    }
    let Some(config) = config::load(backend).await? else {
        return Ok(());
    };
    let now = Timestamp::now();
    let lookahead = backend.ticks.lookahead();
    for name in names {
        let Some(client) = ClientRecord::load(storage, &name).await? else {
            continue;
        };
        let Some(due) = schedule::due(&client, now, None, lookahead) else {
            continue;
        };
        let op = uuid::Uuid::new_v4().to_string();
        match rotate_client(backend, &name, &op, Some(due.reason), &client, &config).await {
            Ok(rotated) => tracing::info!(
                client = %name,
                new_hint = %rotated.stored.secret_hint.as_deref().unwrap_or(""),
                reason = due.reason.name(),
                "automatic client secret rotation done"
            ),
            Err(error) if error.is_read_only() => return Err(error),
            Err(error) => {
                tracing::warn!(client = %name, %error, "automatic client secret rotation failed; the next tick retries");
            }
        }
    }
    tidy(backend, super::super::api_key::tidy::INTENT_GRACE).await?;
    Ok(())
}

/// What one clean-up of the clients' secrets did.
#[derive(Debug, Default)]
pub struct SecretsTidy {
    /// Intents of interrupted secret rotations resolved.
    pub intents_resolved: usize,
    /// Secrets deleted at Qlik (left by an interruption, or superseded and unheld).
    pub secrets_deleted: usize,
    /// What failed.
    pub errors: Vec<String>,
}

/// Resolves interrupted secret rotations older than `grace` (a secret they created that
/// nothing tracks is deleted at Qlik; without a recorded secret, any secret of the client that
/// was not listed before the create and that nothing tracks: see
/// [`secrets::delete_left_by_interruption`]), and deletes superseded secrets no lease holds (and
/// retries failed deletions).
pub async fn tidy(backend: &QlikBackend, grace: Duration) -> Result<SecretsTidy, RequestError> {
    let storage = backend.storage.as_ref();
    let mut report = SecretsTidy::default();
    let now = Timestamp::now();
    let Some(config) = config::load(backend).await? else {
        return Ok(report);
    };
    let _rotation = backend.oauth.rotation_lock.lock().await;
    for op in Intent::ops(storage).await? {
        let Some(intent) = Intent::load(storage, &op).await? else {
            continue;
        };
        if intent.kind != IntentKind::SecretRotate
            || now.duration_since(intent.started_at).as_secs() < grace.as_secs() as i64
        {
            continue;
        }
        let name = intent.client.clone().unwrap_or_default();
        let Some(client) = ClientRecord::load(storage, &name).await? else {
            Intent::remove(storage, &op).await?;
            report.intents_resolved += 1;
            continue;
        };
        let qlik = backend.oauth_qlik(&config, &name, &client.client_id)?;
        let bearer =
            match secrets::manage_bearer(&qlik, &client, &client.secret, &config, None).await {
                Ok(bearer) => bearer,
                Err(error) => {
                    report
                        .errors
                        .push(format!("interrupted secret rotation {op}: {error}"));
                    continue;
                }
            };
        let failed = match &intent.secret {
            // The secret it created, unless it became the stored one or is tracked.
            Some(secret) => {
                let tracked = client.secret_hint.as_deref() == Some(secret.hint.as_str())
                    || SecretRecord::load(storage, &name, &secret.hint)
                        .await?
                        .is_some();
                if tracked {
                    false
                } else {
                    match qlik
                        .delete_client_secret(&bearer.token, &client.client_id, &secret.hint)
                        .await
                    {
                        Ok(_) => {
                            tracing::warn!(client = %name, hint = %secret.hint, "deleted a client secret left by an interrupted rotation");
                            report.secrets_deleted += 1;
                            false
                        }
                        Err(error) => {
                            report.errors.push(format!(
                                "deleting secret {} of client {name}: {error}",
                                secret.hint
                            ));
                            true
                        }
                    }
                }
            }
            // Interrupted during the create: whatever it may have made.
            None => match secrets::delete_left_by_interruption(
                backend,
                &qlik,
                &bearer.token,
                &name,
                &client,
                &intent,
            )
            .await
            {
                Ok(n) => {
                    report.secrets_deleted += n;
                    false
                }
                Err(error) => {
                    report
                        .errors
                        .push(format!("interrupted secret rotation {op}: {error}"));
                    true
                }
            },
        };
        bearer.release(&qlik, &client.client_id).await;
        if !failed {
            Intent::remove(storage, &op).await?;
            report.intents_resolved += 1;
        }
    }
    for name in ClientRecord::names(storage).await? {
        let Some(client) = ClientRecord::load(storage, &name).await? else {
            continue;
        };
        for record in SecretRecord::all(storage, &name).await? {
            if record.kind != KeyKind::Superseded
                || secrets::holds(&name).is_held(storage, &record.id).await?
            {
                continue;
            }
            let qlik = backend.oauth_qlik(&config, &name, &client.client_id)?;
            match secrets::delete_secret(backend, &qlik, &name, &client, &config, &record.id)
                .await?
            {
                Deletion::Deleted => report.secrets_deleted += 1,
                Deletion::UnknownHint => {}
                Deletion::Failed(error) => report.errors.push(format!(
                    "deleting secret {} of client {name}: {error}",
                    record.id
                )),
            }
        }
    }
    Ok(report)
}
