//! A HashiCorp Vault / OpenBao secrets engine that keeps Qlik Cloud API keys alive.
pub mod proto;
