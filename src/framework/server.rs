//! The `pb.Backend` gRPC service (plus `logical.PluginVersion` and plugin multiplexing): one
//! backend instance per mount, keyed by the `multiplex_id` the server sends with every call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::storage::GrpcStorage;
use super::system::GrpcSystemView;
use super::{BackendFactory, LogicalBackend, MountContext};
use crate::goplugin::{Broker, LaunchEnv};
use crate::proto::logical::plugin_version_server::{PluginVersion, PluginVersionServer};
use crate::proto::logical::{self, VersionReply};
use crate::proto::multiplexing::plugin_multiplexing_server::{
    PluginMultiplexing, PluginMultiplexingServer,
};
use crate::proto::multiplexing::{MultiplexingSupportRequest, MultiplexingSupportResponse};
use crate::proto::pb;
use crate::proto::pb::backend_server::{Backend, BackendServer};

/// The whole life of a plugin process serving `factory`'s backends: checks that the server
/// launched it (before anything touches stdout, which belongs to the handshake), starts the
/// logger and the async runtime, serves until the server stops it. `name` prefixes the
/// errors printed before logging works. `main` of the engine and of the benchmark's null
/// plugin, so that both run the same runtime.
pub fn run_plugin<F: BackendFactory>(name: &str, factory: F) -> std::process::ExitCode {
    let launch = match LaunchEnv::from_env(|key| std::env::var(key).ok()) {
        Ok(launch) => launch,
        Err(error) => {
            eprintln!("{name}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    crate::logging::init();
    let runtime = match runtime_builder().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(crate::goplugin::serve(launch, |router, broker| {
        BackendService::new(factory, broker).add_to(router)
    }));
    match result {
        // Exit at once: background tasks (the host connection) must not hold us up.
        Ok(()) => std::process::exit(0),
        Err(error) => {
            tracing::error!(%error, "plugin stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The environment variable that sets the runtime's worker threads.
const THREADS_ENV: &str = "QLIK_PLUGIN_THREADS";

/// The async runtime: `QLIK_PLUGIN_THREADS` worker threads (default 2; 1 runs everything on
/// the main thread). The plugin's work is small and network-bound.
fn runtime_builder() -> tokio::runtime::Builder {
    let threads = std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(2);
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
}

/// The id used when the server sends none (a non-multiplexed launch).
const SINGLE: &str = "single";

/// How long `Setup` waits for the server to announce its broker listener (go-plugin: 5 s).
const BROKER_WAIT: Duration = Duration::from_secs(10);

/// Mounts served by this process.
pub struct BackendService<F: BackendFactory> {
    factory: Arc<F>,
    broker: Arc<Broker>,
    mounts: RwLock<HashMap<String, Arc<F::Backend>>>,
}

impl<F: BackendFactory> BackendService<F> {
    /// A service creating backends with `factory`, reaching the server through `broker`.
    pub fn new(factory: F, broker: Arc<Broker>) -> Arc<Self> {
        Arc::new(Self {
            factory: Arc::new(factory),
            broker,
            mounts: RwLock::new(HashMap::new()),
        })
    }

    /// Adds the backend, version and multiplexing services to a router.
    pub fn add_to(
        self: Arc<Self>,
        router: tonic::transport::server::Router,
    ) -> tonic::transport::server::Router {
        let version = self.factory.version();
        router
            .add_service(
                BackendServer::from_arc(self)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(PluginVersionServer::new(Version(version)))
            .add_service(PluginMultiplexingServer::new(Multiplexing))
    }

    fn mount_id<T>(request: &Request<T>) -> String {
        request
            .metadata()
            .get("multiplex_id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or(SINGLE)
            .to_string()
    }

    fn mount<T>(&self, request: &Request<T>) -> Result<Arc<F::Backend>, Status> {
        let id = Self::mount_id(request);
        self.mounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                Status::failed_precondition(format!("no backend is set up for mount {id}"))
            })
    }
}

#[tonic::async_trait]
impl<F: BackendFactory> Backend for BackendService<F> {
    async fn handle_request(
        &self,
        request: Request<pb::HandleRequestArgs>,
    ) -> Result<Response<pb::HandleRequestReply>, Status> {
        let backend = self.mount(&request)?;
        let Some(req) = request.into_inner().request else {
            return Err(Status::invalid_argument("request missing"));
        };
        let reply = super::handle_request(
            backend.as_ref(),
            self.factory.version(),
            self.factory.title(),
            req,
        )
        .await;
        Ok(Response::new(reply))
    }

    async fn special_paths(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::SpecialPathsReply>, Status> {
        let backend = self.mount(&request)?;
        let paths = backend.special_paths();
        Ok(Response::new(pb::SpecialPathsReply {
            paths: Some(pb::Paths {
                root: paths.root,
                unauthenticated: paths.unauthenticated,
                local_storage: paths.local_storage,
                seal_wrap_storage: paths.seal_wrap_storage,
                write_forwarded_storage: Vec::new(),
            }),
        }))
    }

    async fn handle_existence_check(
        &self,
        request: Request<pb::HandleExistenceCheckArgs>,
    ) -> Result<Response<pb::HandleExistenceCheckReply>, Status> {
        let backend = self.mount(&request)?;
        let Some(req) = request.into_inner().request else {
            return Err(Status::invalid_argument("request missing"));
        };
        Ok(Response::new(
            super::existence_check(backend.as_ref(), req).await,
        ))
    }

    async fn cleanup(&self, request: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        // The server may call Cleanup twice for one mount: the second finds nothing.
        let id = Self::mount_id(&request);
        let backend = self
            .mounts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(backend) = backend {
            backend.cleanup().await;
        }
        Ok(Response::new(pb::Empty {}))
    }

    async fn invalidate_key(
        &self,
        request: Request<pb::InvalidateKeyArgs>,
    ) -> Result<Response<pb::Empty>, Status> {
        if let Ok(backend) = self.mount(&request) {
            backend.invalidate(&request.into_inner().key).await;
        }
        Ok(Response::new(pb::Empty {}))
    }

    async fn setup(
        &self,
        request: Request<pb::SetupArgs>,
    ) -> Result<Response<pb::SetupReply>, Status> {
        let id = Self::mount_id(&request);
        let args = request.into_inner();
        let channel = match self.broker.dial(args.broker_id, BROKER_WAIT).await {
            Ok(channel) => channel,
            Err(error) => {
                return Ok(Response::new(pb::SetupReply {
                    err: error.to_string(),
                }));
            }
        };
        // During registration the server's storage and system view are placeholders that
        // fail every call: nothing may be read or written here.
        let mount = MountContext {
            storage: Arc::new(GrpcStorage::new(channel.clone())),
            system: Arc::new(GrpcSystemView::new(channel)),
            config: args.config,
            backend_uuid: args.backend_uuid,
        };
        match self.factory.create(mount) {
            Ok(backend) => {
                self.mounts
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, Arc::new(backend));
                Ok(Response::new(pb::SetupReply { err: String::new() }))
            }
            Err(err) => Ok(Response::new(pb::SetupReply { err })),
        }
    }

    async fn initialize(
        &self,
        request: Request<pb::InitializeArgs>,
    ) -> Result<Response<pb::InitializeReply>, Status> {
        let backend = self.mount(&request)?;
        let err = backend
            .initialize()
            .await
            .err()
            .map(|e| e.into_proto_error());
        Ok(Response::new(pb::InitializeReply { err }))
    }

    async fn r#type(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::TypeReply>, Status> {
        // 1 = logical (a secrets engine).
        Ok(Response::new(pb::TypeReply { r#type: 1 }))
    }
}

/// `logical.PluginVersion`.
struct Version(&'static str);

#[tonic::async_trait]
impl PluginVersion for Version {
    async fn version(
        &self,
        _request: Request<logical::Empty>,
    ) -> Result<Response<VersionReply>, Status> {
        Ok(Response::new(VersionReply {
            plugin_version: self.0.to_string(),
        }))
    }
}

/// `pluginutil.multiplexing.PluginMultiplexing`: yes, one process may serve several mounts.
/// The answer must never change during the life of the process.
struct Multiplexing;

#[tonic::async_trait]
impl PluginMultiplexing for Multiplexing {
    async fn multiplexing_support(
        &self,
        _request: Request<MultiplexingSupportRequest>,
    ) -> Result<Response<MultiplexingSupportResponse>, Status> {
        Ok(Response::new(MultiplexingSupportResponse {
            supported: true,
        }))
    }
}
