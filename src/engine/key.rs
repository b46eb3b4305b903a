//! `key`: the current stored key, as a lease that holds it.

use secrecy::ExposeSecret;

use super::rotate::{KEY_RESPONSE, key_lease};
use super::{QlikBackend, Route, config};
use crate::framework::{Operation, OperationSpec, PathSpec, Request, RequestError, Response};

/// The `key` path.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::Key,
    pattern: "key",
    fields: &[],
    operations: &[
        OperationSpec::new(Operation::Read, "Read the current stored key as a lease.")
            .returns(KEY_RESPONSE)
            .leased(),
    ],
    existence_check: false,
    synopsis: "The current stored key, as a lease whose TTL is the key's remaining life.",
    description: "\
Every reader shares the stored key. The lease holds the key: after a rotation the superseded \
key stays alive at Qlik while a lease on it is live, and is deleted when the last one ends. \
Revoking a lease on the current key never deletes it. The TTL is capped at the mount's max \
lease TTL (readers then just come back sooner); it is never renewable.",
};

pub(super) async fn handle(
    backend: &QlikBackend,
    _request: Request<Route>,
) -> Result<Response, RequestError> {
    let config = config::require(backend).await?;
    if config.key_info.expires_at <= jiff::Timestamp::now() {
        return Err(RequestError::bad_request(format!(
            "the stored key {} expired at {}: write a valid key to config",
            config.key_info.key_id, config.key_info.expires_at
        )));
    }
    let token = config.key.token.expose_secret().to_string();
    key_lease(backend, &config, &config.key_info, &token, true).await
}
