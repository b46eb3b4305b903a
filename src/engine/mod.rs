//! The Qlik secrets engine: its paths, and the dispatcher that sends each request to the
//! module of its path family (one module per family, like mini-redis's commands).

pub mod config;

use std::sync::Arc;

use crate::framework::{
    BackendFactory, LeaseOperation, LeaseRequest, LogicalBackend, MountContext, PathSpec, Request,
    RequestError, Response, SpecialPaths, Storage, SystemView,
};

/// The plugin's version as the server sees it (semver with a `v`).
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// Every route of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `config`.
    Config,
}

/// The paths, in matching order.
pub static PATHS: &[PathSpec<Route>] = &[config::PATH];

const HELP: &str = "\
The Qlik secrets engine keeps a Qlik Cloud API key alive: it stores the key, rotates it before \
it expires (minting the new key with the old one), verifies and stores the new key before \
deleting anything, and hands keys to applications as leases whose TTL is the key's real \
remaining life.

Start with `config` (tenant URL and the first API key).";

/// One mount of the engine.
pub struct QlikBackend {
    storage: Arc<dyn Storage>,
    #[allow(dead_code)]
    system: Arc<dyn SystemView>,
}

impl QlikBackend {
    /// A backend over a mount's storage and system view.
    pub fn new(storage: Arc<dyn Storage>, system: Arc<dyn SystemView>) -> Self {
        Self { storage, system }
    }
}

#[async_trait::async_trait]
impl LogicalBackend for QlikBackend {
    type Route = Route;

    fn paths(&self) -> &'static [PathSpec<Route>] {
        PATHS
    }

    fn help(&self) -> &'static str {
        HELP
    }

    fn special_paths(&self) -> SpecialPaths {
        SpecialPaths {
            // The stored key is sealed with the server's seal where the seal supports it.
            seal_wrap_storage: vec![config::STORAGE_KEY.to_string()],
            ..SpecialPaths::default()
        }
    }

    async fn handle(&self, request: Request<Route>) -> Result<Response, RequestError> {
        match request.route {
            Route::Config => config::handle(self, request).await,
        }
    }

    async fn exists(&self, request: &Request<Route>) -> Result<bool, RequestError> {
        match request.route {
            Route::Config => config::exists(self).await,
        }
    }

    async fn lease(
        &self,
        _op: LeaseOperation,
        lease: LeaseRequest,
    ) -> Result<Response, RequestError> {
        Err(RequestError::Internal(format!(
            "unknown secret type {:?}",
            lease.kind
        )))
    }
}

/// Creates a [`QlikBackend`] per mount.
pub struct Factory;

impl BackendFactory for Factory {
    type Backend = QlikBackend;

    fn create(&self, mount: MountContext) -> Result<QlikBackend, String> {
        Ok(QlikBackend::new(mount.storage, mount.system))
    }

    fn version(&self) -> &'static str {
        VERSION
    }

    fn title(&self) -> &'static str {
        "Qlik Cloud API keys secrets engine"
    }
}
