//! The server's `pb.SystemView`: mount TTL limits and server facts.

use std::time::Duration;

use tonic::transport::Channel;

use crate::proto::pb;
use crate::proto::pb::system_view_client::SystemViewClient;

/// Why a system-view call failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemViewError {
    /// The gRPC call failed.
    #[error("system view call failed: {0}")]
    Transport(#[from] tonic::Status),
    /// The server reported an error.
    #[error("system view: {0}")]
    Server(String),
}

/// What the backend may ask the server about its mount.
#[async_trait::async_trait]
pub trait SystemView: Send + Sync {
    /// The mount's default lease TTL.
    async fn default_lease_ttl(&self) -> Result<Duration, SystemViewError>;
    /// The mount's maximum lease TTL: leases are capped there.
    async fn max_lease_ttl(&self) -> Result<Duration, SystemViewError>;
    /// Whether the mount is being removed.
    async fn tainted(&self) -> Result<bool, SystemViewError>;
    /// The server's version (OpenBao reports its own, e.g. `2.7.2`).
    async fn server_version(&self) -> Result<String, SystemViewError>;
}

fn from_nanos(ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// The server's system view over the broker connection.
pub struct GrpcSystemView {
    client: SystemViewClient<Channel>,
}

impl GrpcSystemView {
    /// A system view over an established broker channel.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: SystemViewClient::new(channel),
        }
    }
}

#[async_trait::async_trait]
impl SystemView for GrpcSystemView {
    async fn default_lease_ttl(&self) -> Result<Duration, SystemViewError> {
        let reply = self.client.clone().default_lease_ttl(pb::Empty {}).await?;
        Ok(from_nanos(reply.into_inner().ttl))
    }

    async fn max_lease_ttl(&self) -> Result<Duration, SystemViewError> {
        let reply = self.client.clone().max_lease_ttl(pb::Empty {}).await?;
        Ok(from_nanos(reply.into_inner().ttl))
    }

    async fn tainted(&self) -> Result<bool, SystemViewError> {
        Ok(self
            .client
            .clone()
            .tainted(pb::Empty {})
            .await?
            .into_inner()
            .tainted)
    }

    async fn server_version(&self) -> Result<String, SystemViewError> {
        let reply = self
            .client
            .clone()
            .plugin_env(pb::Empty {})
            .await?
            .into_inner();
        if !reply.err.is_empty() {
            return Err(SystemViewError::Server(reply.err));
        }
        Ok(reply
            .plugin_environment
            .map(|e| e.vault_version)
            .unwrap_or_default())
    }
}

/// Fixed answers, for unit tests.
pub struct StaticSystemView {
    /// Default lease TTL.
    pub default_ttl: Duration,
    /// Max lease TTL.
    pub max_ttl: Duration,
}

impl Default for StaticSystemView {
    fn default() -> Self {
        // The server's own defaults: 768 h.
        Self {
            default_ttl: Duration::from_secs(768 * 3600),
            max_ttl: Duration::from_secs(768 * 3600),
        }
    }
}

#[async_trait::async_trait]
impl SystemView for StaticSystemView {
    async fn default_lease_ttl(&self) -> Result<Duration, SystemViewError> {
        Ok(self.default_ttl)
    }
    async fn max_lease_ttl(&self) -> Result<Duration, SystemViewError> {
        Ok(self.max_ttl)
    }
    async fn tainted(&self) -> Result<bool, SystemViewError> {
        Ok(false)
    }
    async fn server_version(&self) -> Result<String, SystemViewError> {
        Ok("test".into())
    }
}
