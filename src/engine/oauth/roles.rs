//! Token roles (`oauth/roles/<role>`): which client, which grant and scopes, how long a lease
//! lasts, and whether readers share one token.

use serde::{Deserialize, Serialize};

use crate::duration::KeyDuration;
use crate::engine::chain::named::Named;

/// Storage prefix of token roles.
pub const PREFIX: &str = "oauth/roles/";

/// How a role's tokens are granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "grant")]
pub enum RoleGrant {
    /// The client's own bot user.
    ClientCredentials,
    /// On behalf of a user, by subject or by id.
    Impersonation {
        /// `user_subject`.
        #[serde(default)]
        user_subject: Option<String>,
        /// `user_id`.
        #[serde(default)]
        user_id: Option<String>,
    },
}

impl RoleGrant {
    /// The field's accepted forms.
    pub const ACCEPTED: &str = "client_credentials or impersonation";

    /// The name users write in `grant`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::Impersonation { .. } => "impersonation",
        }
    }
}

/// A role as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRole {
    /// The client (`oauth/clients/<client>`).
    pub client: String,
    /// Scopes asked for (empty: the client's default scopes).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The grant.
    #[serde(flatten)]
    pub grant: RoleGrant,
    /// The longest lease (`None`: the token's remaining life).
    #[serde(default)]
    pub ttl: Option<KeyDuration>,
    /// Readers share one cached token.
    #[serde(default)]
    pub shared: bool,
}

impl Named for TokenRole {
    const PREFIX: &'static str = PREFIX;
}

impl TokenRole {
    /// The scopes a token of this role asks for: the role's, else the client's defaults.
    pub fn effective_scopes<'a>(&'a self, client_defaults: &'a [String]) -> &'a [String] {
        if self.scopes.is_empty() {
            client_defaults
        } else {
            &self.scopes
        }
    }
}
