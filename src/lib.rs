//! A HashiCorp Vault / OpenBao secrets engine that keeps Qlik Cloud API keys alive.
//!
//! # Layout
//! - [`goplugin`]: the go-plugin server side (handshake, AutoMTLS, broker, controller).
//! - [`framework`]: a small Vault backend framework: paths with typed fields, dispatch of
//!   requests, leases, help and OpenAPI, storage and system-view clients, multiplexing.
//! - [`engine`]: the Qlik secrets engine itself, one module per path family.
//! - [`duration`]: the one strict duration parser (ISO 8601, Vault style, seconds).
//! - [`logging`]: hclog-compatible JSON logs on stderr.
//! - [`qlik`]: the engine's Qlik Cloud client (retries, one error enum).
//! - [`fake`]: `fake-qlik`, a faithful fake Qlik Cloud tenant for tests, demos and users' CI.
//! - [`proto`]: generated protocol code.
#![forbid(unsafe_code)]

pub mod duration;
pub mod engine;
pub mod fake;
pub mod framework;
pub mod goplugin;
pub mod logging;
pub mod proto;
pub mod qlik;

/// The plugin's version as the server sees it (semver with a `v`): `v` + the crate version,
/// unless the build set `QLIK_PLUGIN_BUILD_VERSION` (read at compile time; upgrade tests build
/// a second binary that reports another version; `scripts/release.sh` never sets it).
pub const VERSION: &str = match option_env!("QLIK_PLUGIN_BUILD_VERSION") {
    Some(version) => version,
    None => concat!("v", env!("CARGO_PKG_VERSION")),
};
