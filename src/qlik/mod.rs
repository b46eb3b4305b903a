//! The engine's client for the Qlik Cloud REST API (api-keys, users, configs, and OAuth
//! M2M tokens and client secrets: [`oauth`]).
//!
//! - One [`QlikClient`] per tenant configuration; it holds one `reqwest` connection pool.
//! - Every call takes the bearer key as a [`secrecy::SecretString`]; the key goes only
//!   into the `Authorization` header (marked sensitive), never into an error, a log or a
//!   `Debug` output.
//! - Bounded retries with exponential backoff and jitter, `retry-after` honoured, all
//!   within [`ClientConfig::request_timeout`] ([`retry`] has the rules). A creating POST (an
//!   API key, an OAuth client secret) is never repeated once it may have reached Qlik: that
//!   is [`QlikError::OutcomeUnknown`]. A token from `/oauth/token` is (a duplicate is
//!   harmless).
//! - Errors: one enum, [`QlikError`], classified by [`QlikError::kind`].
//! - TLS trusts the OS roots plus `ca_cert_pem`; see [`QlikClient::new`] for proxies.

mod client;
mod error;
pub mod oauth;
pub mod pacer;
pub mod retry;
mod types;

pub use client::{CallObserver, ClientConfig, QlikClient};
pub use error::{ErrorBody, ErrorEntry, ErrorKind, ErrorStatus, OAuthErrorBody, QlikError};
pub use oauth::{
    AccessToken, ClientSecretInfo, DOCUMENTED_TOKEN_LIFE, GRANT_CLIENT_CREDENTIALS,
    GRANT_USER_IMPERSONATION, Grant, LifeSource, NewClientSecret, OAuthClientInfo, TokenRequest,
    UserLookup,
};
pub use pacer::{QLIK_TIER2_LIMIT, QLIK_TIER2_WINDOW, Tier2Pacer};
pub use types::{
    ApiKey, ApiKeysConfig, CreateKeyRequest, CreatedKey, DeleteOutcome, KeyStatus, ListFilter,
    TokenClaims, User, token_claims,
};
