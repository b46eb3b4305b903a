//! go-plugin's GRPCBroker: how the plugin reaches the host's Storage and SystemView services.
//!
//! For every mount the host opens a listener of its own and announces it on the broker stream
//! as `ConnInfo{service_id, network, address}`; then it calls `Setup(broker_id)`. The two may
//! arrive in either order, so announcements are buffered by id and `Setup` waits for its own.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc};
use tokio_rustls::TlsConnector;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::proto::goplugin::ConnInfo;
use crate::proto::goplugin::grpc_broker_server::GrpcBroker;

/// Why a broker connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The host never announced the service id it passed to `Setup`.
    #[error("the server did not announce broker service {0} within {1:?}")]
    NotAnnounced(u32, Duration),
    /// Only Unix sockets are used by Vault and OpenBao for the broker.
    #[error("broker network {0:?} is not supported (only unix)")]
    Network(String),
    /// Dialling the host failed.
    #[error("cannot connect to the server's broker at {address}: {source}")]
    Connect {
        /// The socket path.
        address: String,
        /// The cause.
        source: tonic::transport::Error,
    },
}

/// Announcements received from the host, and how to dial them.
pub struct Broker {
    announced: Mutex<HashMap<u32, ConnInfo>>,
    arrived: Notify,
    tls: Arc<rustls::ClientConfig>,
    // Keeps our side of the stream open: the host treats a closed stream as a dead broker.
    outbound: Mutex<Vec<mpsc::Sender<Result<ConnInfo, Status>>>>,
}

impl Broker {
    /// A broker whose dial-backs use `tls` (our certificate, the host's pinned).
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Arc<Self> {
        Arc::new(Self {
            announced: Mutex::new(HashMap::new()),
            arrived: Notify::new(),
            tls,
            outbound: Mutex::new(Vec::new()),
        })
    }

    fn announce(&self, info: ConnInfo) {
        tracing::debug!(service_id = info.service_id, "broker connection announced");
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.service_id, info);
        self.arrived.notify_waiters();
    }

    fn take(&self, id: u32) -> Option<ConnInfo> {
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
    }

    /// Waits up to `wait` for the announcement of `id`.
    pub async fn accept(&self, id: u32, wait: Duration) -> Result<ConnInfo, BrokerError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(info) = self.take(id) {
                return Ok(info);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(BrokerError::NotAnnounced(id, wait));
            }
        }
    }

    /// Waits for the announcement of `id` and opens a gRPC channel to it over mTLS.
    pub async fn dial(&self, id: u32, wait: Duration) -> Result<Channel, BrokerError> {
        let info = self.accept(id, wait).await?;
        if info.network != "unix" {
            return Err(BrokerError::Network(info.network));
        }
        let address = info.address;
        let tls = self.tls.clone();
        let path = address.clone();
        let connector = tower::service_fn(move |_| {
            let tls = tls.clone();
            let path = path.clone();
            async move {
                let stream = UnixStream::connect(&path).await?;
                let name = ServerName::try_from("localhost")
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let tls = TlsConnector::from(tls).connect(name, stream).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        // The URI is not used: the connector decides where to go. `http` keeps tonic from
        // attempting TLS itself.
        Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(10))
            .connect_with_connector(connector)
            .await
            .map_err(|source| BrokerError::Connect { address, source })
    }
}

/// The `plugin.GRPCBroker` service.
pub struct BrokerService(pub Arc<Broker>);

type ConnInfoStream = Pin<Box<dyn Stream<Item = Result<ConnInfo, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcBroker for BrokerService {
    type StartStreamStream = ConnInfoStream;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let broker = self.0.clone();
        tokio::spawn(async move {
            while let Some(item) = inbound.next().await {
                match item {
                    Ok(info) => broker.announce(info),
                    Err(status) => {
                        tracing::debug!(%status, "broker stream ended");
                        break;
                    }
                }
            }
        });
        let (tx, rx) = mpsc::channel(1);
        self.0
            .outbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> Arc<Broker> {
        let id = crate::goplugin::tls::Identity::generate().expect("identity");
        let pin = Arc::new(crate::goplugin::tls::PinnedCert::from_der(
            id.cert_der.clone(),
        ));
        Broker::new(crate::goplugin::tls::client_config(&id, pin).expect("tls"))
    }

    fn info(id: u32) -> ConnInfo {
        ConnInfo {
            service_id: id,
            network: "unix".into(),
            address: format!("/tmp/x{id}"),
            knock: None,
        }
    }

    #[tokio::test]
    async fn an_announcement_before_setup_is_kept() {
        let b = broker();
        b.announce(info(1));
        let got = b.accept(1, Duration::from_millis(10)).await.expect("found");
        assert_eq!(got.address, "/tmp/x1");
    }

    #[tokio::test]
    async fn an_announcement_after_setup_wakes_the_waiter() {
        let b = broker();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.accept(2, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.announce(info(3)); // someone else's
        b.announce(info(2));
        let got = waiter.await.expect("join").expect("found");
        assert_eq!(got.service_id, 2);
        assert!(b.take(3).is_some(), "other ids stay buffered");
    }

    #[tokio::test]
    async fn a_missing_announcement_times_out() {
        let b = broker();
        let err = b.accept(9, Duration::from_millis(30)).await.unwrap_err();
        assert!(matches!(err, BrokerError::NotAnnounced(9, _)));
    }
}
