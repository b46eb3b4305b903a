//! An OAuth M2M client as the mount holds it: `oauth/clients/<name>` (seal-wrapped), its
//! secret and the policy of the secret's chain.

use jiff::Timestamp;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::duration::KeyDuration;
use crate::engine::chain::health::{RotationHistory, RotationOutcome};
use crate::engine::chain::named::Named;
use crate::engine::chain::schedule::RotationSettings;
use crate::engine::chain::{Rotating, secret_string};

/// Storage prefix of client records (seal-wrapped).
pub const PREFIX: &str = "oauth/clients/";

/// The default `rotation_period` of a client secret: secrets never expire at Qlik, so without
/// one a leaked secret would live for ever (`docs/design.md` §3).
pub const DEFAULT_ROTATION_PERIOD_SECS: u64 = 30 * 86_400;

/// What manages the client's secrets at Qlik (creates and deletes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManageWith {
    /// The client's own access token (its bot user is TenantAdmin-equivalent).
    #[serde(rename = "self")]
    SelfToken,
    /// The mount's stored API key (of a tenant admin).
    ApiKey,
}

impl ManageWith {
    /// The field's accepted forms.
    pub const ACCEPTED: &str = "self or api_key";

    /// Parses the field.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "self" => Some(Self::SelfToken),
            "api_key" => Some(Self::ApiKey),
            _ => None,
        }
    }

    /// The name users write.
    pub fn name(self) -> &'static str {
        match self {
            Self::SelfToken => "self",
            Self::ApiKey => "api_key",
        }
    }
}

/// A client as stored.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Qlik's client id.
    pub client_id: String,
    /// The current secret (only in the mount's seal-wrapped storage).
    #[serde(with = "secret_string")]
    pub secret: SecretString,
    /// The current secret's hint at Qlik, when known (`docs/design.md` §3).
    #[serde(default)]
    pub secret_hint: Option<String>,
    /// The id of the current secret's record (`oauth/secrets/<client>/<id>`): its hint, or
    /// `unhinted-…` when Qlik never told it.
    #[serde(default)]
    pub secret_id: Option<String>,
    /// When the current secret was written or created.
    pub secret_created_at: Timestamp,
    /// Default scopes of tokens (empty: the client's allow list, as Qlik grants it).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// What manages the secrets.
    pub manage_with: ManageWith,
    /// Automatic rotation of the secret.
    pub auto_rotate: bool,
    /// `rotation_schedule`, `rotation_window`, `rotation_period`.
    #[serde(default)]
    pub rotation: RotationSettings,
    /// Successes and failures of rotation.
    #[serde(default)]
    pub history: RotationHistory,
    /// The last rotation.
    #[serde(default)]
    pub last_rotation: Option<RotationOutcome>,
}

impl std::fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("secret_hint", &self.secret_hint)
            .finish_non_exhaustive()
    }
}

impl Rotating for ClientRecord {
    fn auto_rotate(&self) -> bool {
        self.auto_rotate
    }

    fn settings(&self) -> &RotationSettings {
        &self.rotation
    }

    fn history(&self) -> &RotationHistory {
        &self.history
    }

    fn current_created(&self) -> Option<Timestamp> {
        Some(self.secret_created_at)
    }

    /// Secrets never expire at Qlik.
    fn expires_at(&self) -> Option<Timestamp> {
        None
    }

    fn margin(&self) -> Option<KeyDuration> {
        None
    }

    fn expiry_guard(&self, _skew: Option<jiff::SignedDuration>) -> Option<Timestamp> {
        None
    }

    fn margin_policy(&self) -> Option<KeyDuration> {
        None
    }

    fn lifetime_policy(&self) -> Option<KeyDuration> {
        None
    }
}

impl Named for ClientRecord {
    const PREFIX: &'static str = PREFIX;
}
