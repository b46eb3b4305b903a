//! A HashiCorp Vault / OpenBao secrets engine that keeps Qlik Cloud API keys alive.
pub mod fake;
pub mod proto;
pub mod qlik;
