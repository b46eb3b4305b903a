//! `tidy`: reconcile the mount's records with Qlik now ([`crate::engine::api_key::tidy`]).

use std::time::Duration;

use serde_json::{Map, json};

use crate::engine::api_key::tidy::tidy;
use crate::engine::{QlikBackend, Route};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};

static RESPONSE: &[FieldSpec] = &[
    FieldSpec::new(
        "orphans_deleted",
        FieldKind::Int,
        "Untracked keys with this mount's marker deleted.",
    ),
    FieldSpec::new(
        "superseded_deleted",
        FieldKind::Int,
        "Superseded keys nothing held, deleted.",
    ),
    FieldSpec::new(
        "intents_resolved",
        FieldKind::Int,
        "Interrupted operations cleaned up.",
    ),
    FieldSpec::new(
        "expired_forgotten",
        FieldKind::Int,
        "Expired keys forgotten.",
    ),
    FieldSpec::new(
        "holds_removed",
        FieldKind::Int,
        "Lease holds on keys tracked nowhere, removed.",
    ),
    FieldSpec::new(
        "errors",
        FieldKind::StringList,
        "What could not be done; tidy retries.",
    ),
];

/// The `tidy` path.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::Tidy,
    pattern: "tidy",
    fields: &[],
    operations: &[
        OperationSpec::new(Operation::Update, "Reconcile with Qlik now.").returns(RESPONSE),
    ],
    existence_check: false,
    synopsis: "Reconcile with Qlik now (also runs by itself every 10 minutes).",
    description: "\
Deletes keys minted by interrupted operations (found by the marker the engine puts in every \
key's description), superseded keys that no lease holds, and keys whose deletion failed; \
forgets keys that have expired, and lease holds on keys it tracks no more. At most 20 \
deletions a run.",
};

pub(crate) async fn handle(
    backend: &QlikBackend,
    _request: Request<Route>,
) -> Result<Response, RequestError> {
    let mut report = tidy(backend, Duration::ZERO).await?;
    // The OAuth clients' secrets: interrupted rotations and unheld superseded secrets.
    let secrets = crate::engine::oauth::rotation::tidy(backend, Duration::ZERO).await?;
    report.intents_resolved += secrets.intents_resolved;
    report.orphans_deleted += secrets.secrets_deleted;
    report.errors.extend(secrets.errors);
    let mut data = Map::new();
    data.insert("orphans_deleted".into(), json!(report.orphans_deleted));
    data.insert(
        "superseded_deleted".into(),
        json!(report.superseded_deleted),
    );
    data.insert("intents_resolved".into(), json!(report.intents_resolved));
    data.insert("expired_forgotten".into(), json!(report.expired_forgotten));
    data.insert("holds_removed".into(), json!(report.holds_removed));
    data.insert("errors".into(), json!(report.errors));
    Ok(Response::data(data))
}
