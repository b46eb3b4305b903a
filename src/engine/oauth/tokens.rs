//! Access tokens: got from Qlik for a role, handed out as leases, revoked at Qlik when a lease
//! on a token of its own ends. A shared role's readers share one token, kept in the active
//! node's memory only and got again when less than a third of its life is left.
//! Tokens are never written to storage (`docs/design.md` §3).

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use secrecy::SecretString;
use tokio::sync::Mutex;

use super::client::ClientRecord;
use super::roles::{RoleGrant, TokenRole};
use crate::engine::chain::time::local_deadline;
use crate::qlik::{Grant, LifeSource, QlikClient, QlikError, TokenRequest, UserLookup};

/// A token as the engine hands it out.
#[derive(Clone)]
pub struct IssuedToken {
    /// The bearer.
    pub token: SecretString,
    /// `token_type`.
    pub token_type: String,
    /// The granted scopes (space-separated), or the asked ones when Qlik does not say.
    pub scopes: String,
    /// When Qlik says it expires (the tenant's clock).
    pub expires_at: Timestamp,
    /// When it dies by this machine's clock (lease TTLs come from this).
    pub dies_at: Timestamp,
    /// When it was got (this machine's clock).
    pub got_at: Timestamp,
    /// Where its life came from.
    pub life_source: LifeSource,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("expires_at", &self.expires_at)
            .field("dies_at", &self.dies_at)
            .finish_non_exhaustive()
    }
}

impl IssuedToken {
    /// Whether a shared token should be got again: less than a third of its life left (or
    /// less than a minute).
    pub fn is_stale(&self, now: Timestamp) -> bool {
        let life = self.dies_at.duration_since(self.got_at);
        let left = self.dies_at.duration_since(now);
        left < life / 3 || left < jiff::SignedDuration::from_secs(60)
    }
}

/// The grant of a role, for the client call.
fn grant(role: &TokenRole) -> Grant<'_> {
    match &role.grant {
        RoleGrant::ClientCredentials => Grant::ClientCredentials,
        RoleGrant::Impersonation {
            user_subject: Some(subject),
            ..
        } => Grant::Impersonation(UserLookup::Subject(subject)),
        RoleGrant::Impersonation {
            user_id: Some(id), ..
        } => Grant::Impersonation(UserLookup::UserId(id)),
        // A role is checked at write to name exactly one user; an id of "" fails at Qlik.
        RoleGrant::Impersonation { .. } => Grant::Impersonation(UserLookup::UserId("")),
    }
}

/// Gets a token for `role` of `client` from Qlik.
pub async fn get(
    qlik: &QlikClient,
    client: &ClientRecord,
    role: &TokenRole,
) -> Result<IssuedToken, QlikError> {
    let scopes = role.effective_scopes(&client.scopes);
    let answer = qlik
        .oauth_token(&TokenRequest {
            client_id: &client.client_id,
            client_secret: &client.secret,
            scopes,
            grant: grant(role),
        })
        .await?;
    let now = Timestamp::now();
    let dies_at = local_deadline(
        Some(answer.answered_at),
        answer.valid_until,
        now,
        qlik.clock_skew(),
    );
    let granted = answer.scopes().collect::<Vec<_>>().join(" ");
    Ok(IssuedToken {
        scopes: if granted.is_empty() {
            scopes.join(" ")
        } else {
            granted
        },
        token: answer.access_token,
        token_type: answer.token_type,
        expires_at: answer.valid_until,
        dies_at,
        got_at: now,
        life_source: answer.life_source,
    })
}

/// A role's shared token with the settings it was got with, behind the lock its readers
/// queue on.
type Slot = Arc<Mutex<Option<(String, IssuedToken)>>>;

/// A client-credentials role asking no scope (the client's allow list): what verifies a
/// secret and gets the client's own token to manage its secrets.
pub fn client_credentials_role() -> TokenRole {
    TokenRole {
        client: String::new(),
        scopes: Vec::new(),
        grant: RoleGrant::ClientCredentials,
        ttl: None,
        shared: false,
    }
}

/// One shared token per role, got by one reader at a time (the others wait for it).
#[derive(Default)]
pub struct SharedTokens {
    slots: std::sync::Mutex<HashMap<String, Slot>>,
}

impl SharedTokens {
    fn slot(&self, role: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(role.to_string()).or_default().clone()
    }

    /// The role's shared token: the cached one while it is fresh and was got with the same
    /// settings (`fingerprint`), else a new one from `get`. The second value says whether
    /// Qlik was called.
    pub async fn get_or_refresh<F, Fut>(
        &self,
        role: &str,
        fingerprint: &str,
        get: F,
    ) -> Result<(IssuedToken, bool), QlikError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<IssuedToken, QlikError>>,
    {
        let slot = self.slot(role);
        let mut cached = slot.lock().await;
        if let Some((fp, token)) = cached.as_ref()
            && fp == fingerprint
            && !token.is_stale(Timestamp::now())
        {
            return Ok((token.clone(), false));
        }
        let token = get().await?;
        *cached = Some((fingerprint.to_string(), token.clone()));
        Ok((token, true))
    }

    /// Forgets every shared token (a client or role changed).
    pub fn clear(&self) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The settings a shared token was got with: a change to any of them gets a new one.
pub fn fingerprint(client: &ClientRecord, role: &TokenRole) -> String {
    format!(
        "{}|{}|{}|{:?}|{}",
        client.client_id,
        client.secret_created_at,
        role.effective_scopes(&client.scopes).join(" "),
        role.grant,
        role.shared
    )
}
