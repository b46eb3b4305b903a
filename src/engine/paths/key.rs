//! `key`: the current stored key, as a lease that holds it.

use super::rotate::KEY_RESPONSE;
use crate::engine::QlikBackend;
use crate::engine::Route;
use crate::engine::api_key::rotation::current_key_lease;
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

pub(crate) async fn handle(
    backend: &QlikBackend,
    _request: Request<Route>,
) -> Result<Response, RequestError> {
    current_key_lease(backend).await
}
