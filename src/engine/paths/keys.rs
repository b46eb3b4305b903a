//! `keys/`: every Qlik key this mount tracks, and why it is alive.

use serde_json::{Map, json};

use crate::engine::QlikBackend;
use crate::engine::Route;
use crate::engine::chain::records::{KeyKind, KeyRecord, KeyState};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};

static FIELDS: &[FieldSpec] = &[FieldSpec::new("id", FieldKind::String, "Qlik key id.").in_path()];

static RESPONSE: &[FieldSpec] = &[
    FieldSpec::new("key_id", FieldKind::String, "Qlik key id."),
    FieldSpec::new(
        "kind",
        FieldKind::String,
        "stored, superseded, dedicated, or foreign (a key stored before the current config's key that this engine did not mint for the same Qlik user: left alone at Qlik, listed while leases hold it).",
    ),
    FieldSpec::new("role", FieldKind::String, "The role of a dedicated key."),
    FieldSpec::new(
        "created_at",
        FieldKind::String,
        "Created at Qlik (RFC 3339).",
    ),
    FieldSpec::new(
        "expires_at",
        FieldKind::String,
        "Expires at Qlik (RFC 3339).",
    ),
    FieldSpec::new(
        "live_leases",
        FieldKind::Int,
        "Live leases keeping the key alive: `key` and `rotate` leases on a stored, superseded or foreign key; for a dedicated key its `creds` lease (1, ending at expires_at; 0 once it ended and the deletion is pending).",
    ),
    FieldSpec::new(
        "state",
        FieldKind::String,
        "active, or delete_pending (tidy retries).",
    ),
    FieldSpec::new(
        "last_error",
        FieldKind::String,
        "The last error deleting it.",
    ),
];

static LIST_RESPONSE: &[FieldSpec] = &[FieldSpec::new("keys", FieldKind::StringList, "Key ids.")];

/// `keys/`.
pub const LIST_PATH: PathSpec<Route> = PathSpec {
    route: Route::KeysList,
    pattern: "keys/",
    fields: &[],
    operations: &[
        OperationSpec::new(Operation::List, "List the keys this mount tracks.")
            .returns(LIST_RESPONSE),
    ],
    existence_check: false,
    synopsis: "List the Qlik key ids this mount created or adopted.",
    description: "Every key the mount tracks: the stored key, superseded keys still held by leases, and dedicated keys.",
};

/// `keys/<id>`.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::KeyRecord,
    pattern: "keys/{id}",
    fields: FIELDS,
    operations: &[
        OperationSpec::new(Operation::Read, "Read what the mount knows of a key.")
            .returns(RESPONSE),
    ],
    existence_check: false,
    synopsis: "What the mount knows of one key, and why it is alive.",
    description: "Never the key itself: only its id, kind, role, times, live leases and state.",
};

/// The leases keeping `record`'s key alive. A dedicated key lives exactly as long as its one
/// `creds` lease: its record exists from the mint until the lease's revocation forgets it (or,
/// when the deletion at Qlik was deferred, marks it `delete_pending`: the lease has ended).
async fn live_leases(
    record: &KeyRecord,
    storage: &dyn crate::framework::Storage,
) -> Result<usize, crate::framework::StorageError> {
    match record.kind {
        KeyKind::Dedicated => Ok(usize::from(record.state == KeyState::Active)),
        KeyKind::Stored | KeyKind::Superseded | KeyKind::Foreign => {
            record.live_holds(storage).await
        }
    }
}

pub(crate) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    if request.route == Route::KeysList {
        let ids = KeyRecord::ids(storage).await?;
        if ids.is_empty() {
            return Ok(Response::empty());
        }
        let mut data = Map::new();
        data.insert("keys".into(), json!(ids));
        return Ok(Response::data(data));
    }
    let id = request.data.str("id").unwrap_or_default();
    let Some(record) = KeyRecord::load(storage, id).await? else {
        return Ok(Response::empty());
    };
    let mut data = Map::new();
    data.insert("key_id".into(), json!(record.id));
    data.insert("kind".into(), json!(record.kind));
    data.insert("role".into(), json!(record.role));
    data.insert(
        "created_at".into(),
        json!(record.created_at.map(|t| t.to_string())),
    );
    data.insert("expires_at".into(), json!(record.expires_at.to_string()));
    data.insert(
        "live_leases".into(),
        json!(live_leases(&record, storage).await?),
    );
    data.insert("state".into(), json!(record.state));
    data.insert("last_error".into(), json!(record.last_error));
    Ok(Response::data(data))
}
