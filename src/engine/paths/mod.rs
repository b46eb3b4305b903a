//! Floor 4: one module per path family (fields, answers, errors), like mini-redis's commands.
//! They call the credential kinds and the chain; nothing below imports them.

pub mod config;
pub mod creds;
pub mod key;
pub mod keys;
pub mod leases;
pub mod metrics;
pub mod oauth_clients;
pub mod oauth_roles;
pub mod oauth_token;
pub mod roles;
pub mod rotate;
pub mod status;
pub mod tidy;
