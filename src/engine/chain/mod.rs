//! Floor 1: the chain and its records. A chain is a sequence of credentials (API keys, OAuth
//! client secrets) in which each is minted with or beside the one before it, and the stored one
//! is never deleted before its successor is verified and stored (`docs/design.md`).
//!
//! This floor knows nothing of Qlik calls, of the `config` record or of paths: the credential
//! kinds (`engine::api_key`, `engine::oauth`) describe their chains to it through [`Rotating`].

pub mod health;
pub mod holds;
pub mod ledger;
pub mod named;
pub mod node_role;
pub mod records;
pub mod rotation;
pub mod schedule;
pub mod schema;
pub mod secret_string;
pub mod ticks;
pub mod time;
pub mod watched_storage;

use jiff::{SignedDuration, Timestamp};

use crate::duration::KeyDuration;
use health::RotationHistory;
use schedule::RotationSettings;

/// What the schedule ([`schedule::due`]) and the health ([`health::chain_state`]) need to know
/// of one chain: its policy and its current credential.
pub trait Rotating: Send + Sync {
    /// Automatic rotation is on.
    fn auto_rotate(&self) -> bool;
    /// `rotation_schedule`, `rotation_window`, `rotation_period`.
    fn settings(&self) -> &RotationSettings;
    /// Successes and failures of rotation.
    fn history(&self) -> &RotationHistory;
    /// When the current credential was created (what `rotation_period` counts from).
    fn current_created(&self) -> Option<Timestamp>;
    /// When the current credential expires at Qlik (`None`: it never does).
    fn expires_at(&self) -> Option<Timestamp>;
    /// The margin applied to the current credential: less than this left, and it must be
    /// rotated (`None`: no margin, it never expires).
    fn margin(&self) -> Option<KeyDuration>;
    /// When the current credential must be rotated by at the latest (its death by this
    /// machine's clock, with the tenant's clock as last seen (`skew`), less the margin);
    /// `None` when it never dies or automatic rotation is off.
    fn expiry_guard(&self, skew: Option<SignedDuration>) -> Option<Timestamp>;
    /// The margin the policy asks for new credentials (for warnings about a schedule).
    fn margin_policy(&self) -> Option<KeyDuration>;
    /// The lifetime the policy asks for new credentials (for warnings about a schedule).
    fn lifetime_policy(&self) -> Option<KeyDuration>;
}
