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
