//! The mount's storage: the server's `pb.Storage` service reached through the broker, or an
//! in-memory map for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::error::READ_ONLY_MESSAGE;
use crate::proto::pb;
use crate::proto::pb::storage_client::StorageClient;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// This node is a standby (or the mount is being set up): writes are refused.
    #[error("{READ_ONLY_MESSAGE}")]
    ReadOnly,
    /// The server reported an error.
    #[error("storage: {0}")]
    Server(String),
    /// The gRPC call itself failed.
    #[error("storage call failed: {0}")]
    Transport(#[from] tonic::Status),
    /// A stored value could not be decoded or encoded.
    #[error("stored value {key:?} is not valid: {source}")]
    Codec {
        /// The storage key.
        key: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A stored value this build must not use (for example one written by a newer build); it
    /// is left as it is.
    #[error("stored value {key:?} refused: {reason}")]
    Refused {
        /// The storage key.
        key: String,
        /// Why, and what to do.
        reason: String,
    },
}

impl StorageError {
    fn from_server(message: String) -> Self {
        if message.contains(READ_ONLY_MESSAGE) {
            Self::ReadOnly
        } else {
            Self::Server(message)
        }
    }
}

/// Key/value storage of one mount (keys are relative to the mount).
#[async_trait::async_trait]
pub trait Storage: Send + Sync {
    /// The value at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Writes `value` at `key`.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError>;
    /// Deletes `key` (no error if absent).
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Keys directly under `prefix` (sub-folders end with `/`).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// At most `limit` keys under `prefix` that sort after `after` (`""`: from the start).
    /// Cheaper than [`list`](Storage::list) for "is anything there?" on a long prefix.
    async fn list_page(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        Ok(page(self.list(prefix).await?, after, limit))
    }
}

/// Reads and decodes a JSON value.
pub async fn get_json<T: DeserializeOwned>(
    storage: &dyn Storage,
    key: &str,
) -> Result<Option<T>, StorageError> {
    match storage.get(key).await? {
        None => Ok(None),
        Some(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StorageError::Codec {
                    key: key.to_string(),
                    source,
                })
        }
    }
}

/// `list_page` from a whole listing: sorted, after `after`, at most `limit`.
fn page(mut keys: Vec<String>, after: &str, limit: usize) -> Vec<String> {
    keys.sort();
    keys.into_iter()
        .filter(|k| k.as_str() > after)
        .take(limit)
        .collect()
}

/// Encodes and writes a JSON value.
pub async fn put_json<T: Serialize + ?Sized>(
    storage: &dyn Storage,
    key: &str,
    value: &T,
) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(value).map_err(|source| StorageError::Codec {
        key: key.to_string(),
        source,
    })?;
    storage.put(key, bytes).await
}

/// The server's storage, over the broker connection.
pub struct GrpcStorage {
    client: StorageClient<Channel>,
    /// The server answered `ListPage` with UNIMPLEMENTED (Vault): use `List` from then on.
    no_list_page: AtomicBool,
}

impl GrpcStorage {
    /// Storage over an established broker channel.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: StorageClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            no_list_page: AtomicBool::new(false),
        }
    }
}

#[async_trait::async_trait]
impl Storage for GrpcStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let reply = self
            .client
            .clone()
            .get(pb::StorageGetArgs { key: key.into() })
            .await?
            .into_inner();
        if !reply.err.is_empty() {
            return Err(StorageError::from_server(reply.err));
        }
        Ok(reply.entry.map(|e| e.value))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        let reply = self
            .client
            .clone()
            .put(pb::StoragePutArgs {
                entry: Some(pb::StorageEntry {
                    key: key.into(),
                    value,
                    seal_wrap: false,
                }),
            })
            .await?
            .into_inner();
        if reply.err.is_empty() {
            Ok(())
        } else {
            Err(StorageError::from_server(reply.err))
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let reply = self
            .client
            .clone()
            .delete(pb::StorageDeleteArgs { key: key.into() })
            .await?
            .into_inner();
        if reply.err.is_empty() {
            Ok(())
        } else {
            Err(StorageError::from_server(reply.err))
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let reply = self
            .client
            .clone()
            .list(pb::StorageListArgs {
                prefix: prefix.into(),
            })
            .await?
            .into_inner();
        if reply.err.is_empty() {
            Ok(reply.keys)
        } else {
            Err(StorageError::from_server(reply.err))
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        if !self.no_list_page.load(Ordering::Relaxed) {
            let answer = self
                .client
                .clone()
                .list_page(pb::StorageListPageArgs {
                    prefix: prefix.into(),
                    after: after.into(),
                    // The server reads 0 or less as "no limit".
                    limit: i32::try_from(limit.max(1)).unwrap_or(i32::MAX),
                })
                .await;
            match answer {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    return if reply.err.is_empty() {
                        Ok(reply.keys)
                    } else {
                        Err(StorageError::from_server(reply.err))
                    };
                }
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    tracing::debug!(
                        "the server has no paged storage listing (ListPage): using List"
                    );
                    self.no_list_page.store(true, Ordering::Relaxed);
                }
                Err(status) => return Err(status.into()),
            }
        }
        Ok(page(self.list(prefix).await?, after, limit))
    }
}

/// In-memory storage for unit tests; can be switched to read-only like a standby, and counts
/// its writes and reads (what a request costs the server's storage).
#[derive(Default)]
pub struct MemoryStorage {
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
    read_only: AtomicBool,
    puts: AtomicU64,
    put_bytes: AtomicU64,
    reads: AtomicU64,
}

impl MemoryStorage {
    /// Reads so far: gets, and list calls (each listing counts once).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Successful puts so far, and the bytes of their values.
    pub fn writes(&self) -> (u64, u64) {
        (
            self.puts.load(Ordering::SeqCst),
            self.put_bytes.load(Ordering::SeqCst),
        )
    }

    /// Makes writes fail with [`StorageError::ReadOnly`].
    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::SeqCst);
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writable(&self) -> Result<(), StorageError> {
        if self.read_only.load(Ordering::SeqCst) {
            Err(StorageError::ReadOnly)
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Storage for MemoryStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.entries().get(key).cloned())
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.writable()?;
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.put_bytes
            .fetch_add(value.len() as u64, Ordering::SeqCst);
        self.entries().insert(key.to_string(), value);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.writable()?;
        self.entries().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let mut keys: Vec<String> = Vec::new();
        for key in self.entries().keys() {
            if let Some(rest) = key.strip_prefix(prefix) {
                let item = match rest.find('/') {
                    Some(i) => &rest[..=i],
                    None => rest,
                };
                if keys.last().map(String::as_str) != Some(item) {
                    keys.push(item.to_string());
                }
            }
        }
        keys.dedup();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use tonic::{Request, Response, Status};

    use super::*;
    use crate::proto::pb::storage_server::{Storage as StorageService, StorageServer};

    /// A host's storage service over gRPC. `list_page: false` answers `ListPage` as HashiCorp
    /// Vault's server does (UNIMPLEMENTED: the method is not in its service).
    struct Host {
        keys: Vec<String>,
        list_page: bool,
        list_calls: Arc<AtomicUsize>,
        page_calls: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl StorageService for Host {
        async fn list(
            &self,
            _request: Request<pb::StorageListArgs>,
        ) -> Result<Response<pb::StorageListReply>, Status> {
            self.list_calls.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(pb::StorageListReply {
                keys: self.keys.clone(),
                err: String::new(),
            }))
        }
        async fn list_page(
            &self,
            request: Request<pb::StorageListPageArgs>,
        ) -> Result<Response<pb::StorageListReply>, Status> {
            self.page_calls.fetch_add(1, Ordering::SeqCst);
            if !self.list_page {
                return Err(Status::unimplemented("unknown method ListPage"));
            }
            let args = request.into_inner();
            let limit = usize::try_from(args.limit).unwrap_or(0);
            Ok(Response::new(pb::StorageListReply {
                keys: page(self.keys.clone(), &args.after, limit),
                err: String::new(),
            }))
        }
        async fn get(
            &self,
            _request: Request<pb::StorageGetArgs>,
        ) -> Result<Response<pb::StorageGetReply>, Status> {
            Ok(Response::new(pb::StorageGetReply::default()))
        }
        async fn put(
            &self,
            _request: Request<pb::StoragePutArgs>,
        ) -> Result<Response<pb::StoragePutReply>, Status> {
            Ok(Response::new(pb::StoragePutReply::default()))
        }
        async fn delete(
            &self,
            _request: Request<pb::StorageDeleteArgs>,
        ) -> Result<Response<pb::StorageDeleteReply>, Status> {
            Ok(Response::new(pb::StorageDeleteReply::default()))
        }
    }

    /// Serves `host` on a loopback port; the storage client and the call counters.
    async fn storage_of(list_page: bool) -> (GrpcStorage, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (list_calls, page_calls) = (Arc::default(), Arc::default());
        let host = Host {
            keys: ["c", "a", "d", "b"].map(String::from).to_vec(),
            list_page,
            list_calls: Arc::clone(&list_calls),
            page_calls: Arc::clone(&page_calls),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(StorageServer::new(host))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        (GrpcStorage::new(channel), list_calls, page_calls)
    }

    /// The same pages whichever way the host lists: sorted, after `after`, at most `limit`.
    async fn assert_pages(storage: &GrpcStorage) {
        assert_eq!(storage.list_page("p/", "", 1).await.expect("page"), ["a"]);
        assert_eq!(
            storage.list_page("p/", "b", 5).await.expect("page"),
            ["c", "d"]
        );
    }

    #[tokio::test]
    async fn list_page_uses_the_servers_paging_where_it_exists() {
        let (storage, list_calls, page_calls) = storage_of(true).await;
        assert_pages(&storage).await;
        assert_eq!(page_calls.load(Ordering::SeqCst), 2);
        assert_eq!(list_calls.load(Ordering::SeqCst), 0, "no whole listing");
    }

    #[tokio::test]
    async fn list_page_falls_back_to_list_on_a_server_without_it_and_remembers() {
        let (storage, list_calls, page_calls) = storage_of(false).await;
        assert_pages(&storage).await;
        assert_eq!(
            page_calls.load(Ordering::SeqCst),
            1,
            "asked once, then remembered"
        );
        assert_eq!(list_calls.load(Ordering::SeqCst), 2);
    }
}
