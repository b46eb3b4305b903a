//! The go-plugin server side, as HashiCorp Vault and OpenBao expect it from a v5 backend plugin.
//!
//! Start-up: check the launch environment ([`handshake`]), make a certificate and pin the
//! host's ([`tls`]), listen on a Unix socket, print the handshake line, then serve gRPC over
//! mTLS: health (`plugin` = SERVING), the broker ([`broker`]), the controller (`Shutdown`),
//! stdio, and the application services added by the caller. The process exits on `Shutdown`,
//! on SIGTERM, when its parent is gone, or when no host connects within a minute.
//! SIGINT is ignored: a Ctrl-C in the server's terminal reaches the whole process group, and
//! the server shuts its plugins down itself.

pub mod broker;
pub mod handshake;
pub mod tls;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{Notify, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use crate::proto::goplugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use crate::proto::goplugin::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use crate::proto::goplugin::{Empty, StdioData};

pub use broker::Broker;
pub use handshake::{LaunchEnv, LaunchError};

/// Why the plugin server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The socket could not be created, or stdout could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// How long the host may take to connect after the handshake line before the plugin gives up
/// (the host leaks processes in some failure paths: nobody else would stop us).
const FIRST_CONNECTION_DEADLINE: Duration = Duration::from_secs(60);
/// How long a TLS handshake on the plugin socket may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to stop, from `GRPCController/Shutdown` or a signal.
#[derive(Default)]
struct ShutdownSignal {
    notify: Notify,
    requested: AtomicBool,
}

impl ShutdownSignal {
    fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.requested.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Serves the plugin until the host shuts it down. `add_services` adds the application's gRPC
/// services (the Vault backend) to the router; it gets the broker to reach the host's storage.
pub async fn serve<F>(launch: LaunchEnv, add_services: F) -> Result<(), RuntimeError>
where
    F: FnOnce(Router, Arc<Broker>) -> Router,
{
    let identity = tls::Identity::generate()?;
    let host = Arc::new(tls::PinnedCert::from_pem(&launch.client_cert_pem)?);
    let server_tls = tls::server_config(&identity, host.clone())?;
    let broker = Broker::new(tls::client_config(&identity, host)?);

    let socket = SocketFile::bind(&launch)?;
    let shutdown = Arc::new(ShutdownSignal::default());

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    let router = Server::builder()
        .add_service(health_service)
        .add_service(
            crate::proto::goplugin::grpc_broker_server::GrpcBrokerServer::new(
                broker::BrokerService(broker.clone()),
            ),
        )
        .add_service(GrpcControllerServer::new(Controller(shutdown.clone())))
        .add_service(GrpcStdioServer::new(Stdio));
    let router = add_services(router, broker);

    let connected = Arc::new(AtomicBool::new(false));
    let (conn_tx, conn_rx) = mpsc::channel(16);
    tokio::spawn(accept_loop(
        socket.listener,
        TlsAcceptor::from(server_tls),
        conn_tx,
        connected.clone(),
    ));

    // The one line the host reads from stdout. Nothing else is ever written there.
    let line = handshake::handshake_line(&socket.path, &identity.cert_der);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| RuntimeError::Io {
            what: "writing the handshake line to stdout".into(),
            source,
        })?;
    drop(stdout);
    tracing::debug!(socket = %socket.path.display(), "plugin serving");

    spawn_watchdogs(shutdown.clone(), connected);

    let server = router.serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), {
        let shutdown = shutdown.clone();
        async move { shutdown.wait().await }
    });
    tokio::select! {
        result = server => result?,
        () = shutdown.wait() => {
            // Let the reply to Shutdown reach the host, then go: the host kills us after 2 s.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tracing::debug!("plugin shutting down");
    drop(socket.guard);
    Ok(())
}

async fn accept_loop(
    listener: UnixListener,
    acceptor: TlsAcceptor,
    connections: mpsc::Sender<
        std::io::Result<tokio_rustls::server::TlsStream<tokio::net::UnixStream>>,
    >,
    connected: Arc<AtomicBool>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection on the plugin socket failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The TLS handshake runs off the accept loop: one stalled peer must not block others.
        let acceptor = acceptor.clone();
        let connections = connections.clone();
        let connected = connected.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    connected.store(true, Ordering::SeqCst);
                    let _ = connections.send(Ok(tls)).await;
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "TLS handshake with the server failed")
                }
                Err(_) => tracing::warn!("TLS handshake with the server timed out"),
            }
        });
    }
}

/// Stops the plugin when nobody will ever stop it otherwise.
fn spawn_watchdogs(shutdown: Arc<ShutdownSignal>, connected: Arc<AtomicBool>) {
    // SIGINT: ignored on purpose (see the module docs). SIGTERM: stop.
    if let Ok(mut interrupts) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    {
        tokio::spawn(async move {
            while interrupts.recv().await.is_some() {
                tracing::debug!("SIGINT ignored; the server stops its plugins itself");
            }
        });
    }
    if let Ok(mut terms) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if terms.recv().await.is_some() {
                shutdown.trigger();
            }
        });
    }
    // The parent is the server: when it dies we are re-parented.
    let parent = std::os::unix::process::parent_id();
    let orphaned = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if std::os::unix::process::parent_id() != parent {
                tracing::warn!("the server process is gone; exiting");
                orphaned.trigger();
                return;
            }
        }
    });
    tokio::spawn(async move {
        tokio::time::sleep(FIRST_CONNECTION_DEADLINE).await;
        if !connected.load(Ordering::SeqCst) {
            tracing::warn!("no server connected within a minute of the handshake; exiting");
            shutdown.trigger();
        }
    });
}

/// `plugin.GRPCController`: the host's last call.
struct Controller(Arc<ShutdownSignal>);

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.0.trigger();
        Ok(Response::new(Empty {}))
    }
}

/// `plugin.GRPCStdio`: the host reads the plugin's stdout/stderr through it. Our logs go to
/// stderr (which the host reads directly), so the stream stays open and carries nothing.
struct Stdio;

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    type StreamStdioStream = tokio_stream::Pending<Result<StdioData, Status>>;

    async fn stream_stdio(
        &self,
        _: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(tokio_stream::pending()))
    }
}

/// The plugin's Unix socket, removed again when the process stops.
struct SocketFile {
    path: PathBuf,
    listener: UnixListener,
    guard: RemoveOnDrop,
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl SocketFile {
    fn bind(launch: &LaunchEnv) -> Result<Self, RuntimeError> {
        let io = |what: String| move |source| RuntimeError::Io { what, source };
        // sun_path holds 107 bytes: keep the name short.
        let path = launch
            .socket_dir
            .join(format!("plugin{}", rand::random::<u32>()));
        let listener =
            UnixListener::bind(&path).map_err(io(format!("binding {}", path.display())))?;
        let guard = RemoveOnDrop(path.clone());
        if let Some(group) = &launch.socket_group {
            set_group(&path, group).map_err(io(format!("chgrp {group} {}", path.display())))?;
        }
        Ok(Self {
            path,
            listener,
            guard,
        })
    }
}

/// Vault's containerised plugins ask for a group-writable socket.
fn set_group(path: &Path, group: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let gid: u32 = group.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "PLUGIN_UNIX_SOCKET_GROUP must be a numeric group id",
        )
    })?;
    std::os::unix::fs::chown(path, None, Some(gid))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
}
