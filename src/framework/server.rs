//! The `pb.Backend` gRPC service (plus `logical.PluginVersion` and plugin multiplexing): one
//! backend instance per mount, keyed by the `multiplex_id` the server sends with every call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::{Request, Response, Status};
use tracing::{Instrument, Span};

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
    mounts: RwLock<HashMap<String, Arc<Mount<F::Backend>>>>,
}

/// One mount's backend and its log span.
///
/// One process serves every mount of the plugin, and the server files the process's stderr
/// under the accessor of the mount that started it, so each line must say which mount it is
/// about. Everything the framework runs for a mount runs inside [`Mount::span`]
/// (`mount_uuid`: the backend UUID from `Setup`; `mount`: the mount point the server sends
/// with each request), and each request inside a child span (`request_operation`,
/// `request_path`, `request_id`): the JSON logger writes those fields on every line logged
/// inside. `BackendFactory::create` runs inside the mount span too, so a backend that keeps
/// `tracing::Span::current()` from there can run background work in it.
struct Mount<B> {
    backend: Arc<B>,
    span: Span,
    /// The mount point last recorded into `span` (a mount can be moved).
    mount_point: std::sync::Mutex<String>,
}

impl<B> Mount<B> {
    fn new(backend: B, span: Span) -> Self {
        Self {
            backend: Arc::new(backend),
            span,
            mount_point: std::sync::Mutex::new(String::new()),
        }
    }

    /// A span for one request, inside the mount's; records the mount point the server sent.
    fn request_span(&self, request: &pb::Request) -> Span {
        if request.operation == "resolve-path" {
            // Asked before every request and answered at once, without a line: no span.
            return Span::none();
        }
        if !request.mount_point.is_empty() {
            let mut known = self.mount_point.lock().unwrap_or_else(|e| e.into_inner());
            if *known != request.mount_point {
                known.clone_from(&request.mount_point);
                self.span.record("mount", request.mount_point.as_str());
            }
        }
        // ERROR level: spans carry context, not output; at this level no filter drops them.
        let span = tracing::error_span!(
            parent: &self.span,
            "request",
            request_operation = %request.operation,
            request_path = %request.path,
            request_id = tracing::field::Empty,
        );
        // Internal requests (rollback, revoke, resolve-path) have no id.
        if !request.id.is_empty() {
            span.record("request_id", request.id.as_str());
        }
        span
    }
}

/// The span of a mount's whole life (see [`Mount`]).
fn mount_span(backend_uuid: &str) -> Span {
    tracing::error_span!(
        "mount",
        mount_uuid = %backend_uuid,
        mount = tracing::field::Empty,
    )
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

    fn mount<T>(&self, request: &Request<T>) -> Result<Arc<Mount<F::Backend>>, Status> {
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
        let mount = self.mount(&request)?;
        let Some(req) = request.into_inner().request else {
            return Err(Status::invalid_argument("request missing"));
        };
        let span = mount.request_span(&req);
        let reply = super::handle_request(
            mount.backend.as_ref(),
            self.factory.version(),
            self.factory.title(),
            req,
        )
        .instrument(span)
        .await;
        Ok(Response::new(reply))
    }

    async fn special_paths(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::SpecialPathsReply>, Status> {
        let mount = self.mount(&request)?;
        let paths = mount.backend.special_paths();
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
        let mount = self.mount(&request)?;
        let Some(req) = request.into_inner().request else {
            return Err(Status::invalid_argument("request missing"));
        };
        let span = mount.request_span(&req);
        Ok(Response::new(
            super::existence_check(mount.backend.as_ref(), req)
                .instrument(span)
                .await,
        ))
    }

    async fn cleanup(&self, request: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        // The server may call Cleanup twice for one mount: the second finds nothing.
        let id = Self::mount_id(&request);
        let mount = self
            .mounts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(mount) = mount {
            mount.backend.cleanup().instrument(mount.span.clone()).await;
        }
        Ok(Response::new(pb::Empty {}))
    }

    async fn invalidate_key(
        &self,
        request: Request<pb::InvalidateKeyArgs>,
    ) -> Result<Response<pb::Empty>, Status> {
        if let Ok(mount) = self.mount(&request) {
            mount
                .backend
                .invalidate(&request.into_inner().key)
                .instrument(mount.span.clone())
                .await;
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
        let span = mount_span(&args.backend_uuid);
        let mount = MountContext {
            storage: Arc::new(GrpcStorage::new(channel.clone())),
            system: Arc::new(GrpcSystemView::new(channel)),
            config: args.config,
            backend_uuid: args.backend_uuid,
        };
        let created = span.in_scope(|| self.factory.create(mount));
        match created {
            Ok(backend) => {
                self.mounts
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, Arc::new(Mount::new(backend, span)));
                Ok(Response::new(pb::SetupReply { err: String::new() }))
            }
            Err(err) => Ok(Response::new(pb::SetupReply { err })),
        }
    }

    async fn initialize(
        &self,
        request: Request<pb::InitializeArgs>,
    ) -> Result<Response<pb::InitializeReply>, Status> {
        let mount = self.mount(&request)?;
        let err = mount
            .backend
            .initialize()
            .instrument(mount.span.clone())
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
