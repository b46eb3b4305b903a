//! The health of each OAuth client's chain, for `status` and `metrics`: its state, its
//! secret's age, the next rotation, the rotation history and what the mount tracks.
//!
//! A secret never expires at Qlik, so a client's chain is `at_risk` only when its last
//! automatic rotation failed (a leaked secret then lives on past its period), and `broken`
//! when Qlik refused the stored secret, at a rotation or a token read (`invalid_client`: only a new
//! secret written to `oauth/clients/<name>` repairs it).

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::client::ClientRecord;
use super::secrets::{self, SecretRecord};
use crate::engine::chain::health::{ChainState, RotationHistory};
use crate::engine::chain::named::Named;
use crate::engine::chain::schedule::{self, NextRotation};
use crate::framework::{Storage, StorageError};

/// One client's figures.
#[derive(Debug, Clone)]
pub struct ClientHealth {
    /// The client's name in the mount.
    pub name: String,
    /// Qlik's client id.
    pub client_id: String,
    /// The chain's state.
    pub state: ChainState,
    /// Why it is not healthy.
    pub state_reason: Option<String>,
    /// The current secret's hint.
    pub secret_hint: Option<String>,
    /// Seconds since the current secret was written or created.
    pub secret_age_secs: i64,
    /// The next automatic rotation.
    pub next_rotation: Option<NextRotation>,
    /// Rotation history.
    pub history: RotationHistory,
    /// Tracked secrets by kind.
    pub secrets_by_kind: BTreeMap<&'static str, usize>,
    /// Live `oauth/clients/<name>/secret` leases.
    pub live_secret_leases: usize,
}

/// The figures of every client of the mount.
pub async fn clients(storage: &dyn Storage) -> Result<Vec<ClientHealth>, StorageError> {
    let now = Timestamp::now();
    let mut all = Vec::new();
    for name in ClientRecord::names(storage).await? {
        let Some(client) = ClientRecord::load(storage, &name).await? else {
            continue;
        };
        let mut secrets_by_kind = BTreeMap::new();
        let mut live_secret_leases = 0;
        for record in SecretRecord::all(storage, &name).await? {
            *secrets_by_kind.entry(record.kind.name()).or_insert(0) += 1;
            live_secret_leases += secrets::holds(&name)
                .entries(storage, &record.id)
                .await?
                .len();
        }
        let history = client.history.clone();
        // Qlik refused the stored secret itself (recorded by its kind, whatever the shape of
        // Qlik's answer; a record of an earlier version by the RFC 6749 code in its text).
        // (A token read that Qlik refused sets it too, without a rotation attempt.)
        let refused = history.credential_refused
            || (history.consecutive_failures > 0
                && history
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("invalid_client")));
        let (state, state_reason) = if refused {
            (
                ChainState::Broken,
                Some(format!(
                    "Qlik refused the stored secret: write a valid one to oauth/clients/{name} \
                     (verified when written). {}",
                    history.last_error.clone().unwrap_or_default()
                )),
            )
        } else if history.last_automatic_failed {
            (
                ChainState::AtRisk,
                Some(format!(
                    "the last automatic rotation of the secret failed: {}",
                    history.last_error.clone().unwrap_or_default()
                )),
            )
        } else {
            (ChainState::Healthy, None)
        };
        all.push(ClientHealth {
            client_id: client.client_id.clone(),
            state,
            state_reason,
            secret_hint: client.secret_hint.clone(),
            secret_age_secs: now.duration_since(client.secret_created_at).as_secs(),
            next_rotation: schedule::next_rotation(&client, now),
            history,
            secrets_by_kind,
            live_secret_leases,
            name,
        });
    }
    Ok(all)
}
