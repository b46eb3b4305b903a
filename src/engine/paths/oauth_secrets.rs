//! `oauth/clients/<name>/rotate` (a new secret now; the answer carries no secret) and
//! `oauth/clients/<name>/secret` (the current secret as a lease that holds it).

use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::engine::api_key::{config, mint};
use crate::engine::chain::named::Named;
use crate::engine::chain::records::KeyKind;
use crate::engine::chain::schedule;
use crate::engine::chain::time::ttl_until;
use crate::engine::oauth::client::ClientRecord;
use crate::engine::oauth::rotation::{previous_state, rotate_client};
use crate::engine::oauth::secrets::{self, Deletion, SecretRecord};
use crate::engine::{QlikBackend, Route, secret_types};
use crate::framework::{
    FieldKind, FieldSpec, Lease, LeaseOperation, LeaseRequest, Operation, OperationSpec, PathSpec,
    Request, RequestError, Response,
};

static FIELDS: &[FieldSpec] =
    &[FieldSpec::new("name", FieldKind::String, "The OAuth client.").in_path()];

static ROTATE_RESPONSE: &[FieldSpec] = &[
    FieldSpec::new("client_id", FieldKind::String, "Qlik's client id."),
    FieldSpec::new(
        "client_secret_hint",
        FieldKind::String,
        "The new secret's hint at Qlik.",
    ),
    FieldSpec::new(
        "previous_hint",
        FieldKind::String,
        "The previous secret's hint (null: not known).",
    ),
    FieldSpec::new(
        "previous",
        FieldKind::String,
        "What became of it: deleted, kept_while_held, kept_unknown_hint or delete_pending.",
    ),
];

static SECRET_RESPONSE: &[FieldSpec] = &[
    FieldSpec::new("client_id", FieldKind::String, "Qlik's client id."),
    FieldSpec::new("client_secret", FieldKind::String, "The client secret."),
    FieldSpec::new(
        "client_secret_hint",
        FieldKind::String,
        "Its hint at Qlik (null: not known).",
    ),
    FieldSpec::new("tenant_url", FieldKind::String, "Tenant URL."),
];

/// `oauth/clients/<name>/rotate`.
pub const ROTATE_PATH: PathSpec<Route> = PathSpec {
    route: Route::OAuthClientRotate,
    pattern: "oauth/clients/{name}/rotate",
    fields: FIELDS,
    operations: &[
        OperationSpec::new(Operation::Update, "Rotate the client's secret now.")
            .returns(ROTATE_RESPONSE),
    ],
    existence_check: false,
    synopsis: "Rotate an OAuth client's secret now (the answer carries no secret).",
    description: "\
Creates a new secret at Qlik, verifies it by getting a token with it, stores it, and only then \
deletes the previous one by its hint, unless a lease (oauth/clients/<name>/secret) still holds \
it or its hint is not known (then it is kept, and the answer says so). Qlik allows 5 secrets \
per client: with 5, the rotation is refused and nothing changes.",
};

/// `oauth/clients/<name>/secret`.
pub const SECRET_PATH: PathSpec<Route> = PathSpec {
    route: Route::OAuthClientSecret,
    pattern: "oauth/clients/{name}/secret",
    fields: FIELDS,
    operations: &[OperationSpec::new(
        Operation::Read,
        "The client's id and current secret, as a lease that holds the secret.",
    )
    .returns(SECRET_RESPONSE)
    .leased()],
    existence_check: false,
    synopsis: "An OAuth client's id and current secret, as a lease (for applications that get their own tokens).",
    description: "\
The lease holds the secret: a rotation keeps a superseded secret at Qlik until its last lease \
ends. The lease lasts until the next planned rotation (at least a minute), capped by the \
mount's max; without automatic rotation, the mount's default TTL. Not renewable: read again \
for the current secret.",
};

fn unknown(name: &str) -> RequestError {
    RequestError::bad_request(format!(
        "no OAuth client {name:?} in this mount (vault list <mount>/oauth/clients shows them)"
    ))
}

pub(crate) async fn rotate(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    let name = request.data.str("name").unwrap_or_default().to_string();
    let Some(client) = ClientRecord::load(storage, &name).await? else {
        return Err(unknown(&name));
    };
    let config = config::require(backend).await?;
    let op = mint::operation_id(&request.id);
    let rotated = rotate_client(backend, &name, &op, None, &client, &config).await?;
    let previous = SecretRecord::load(storage, &name, &rotated.old_id).await?;
    let mut data = Map::new();
    data.insert("client_id".into(), json!(rotated.stored.client_id));
    data.insert(
        "client_secret_hint".into(),
        json!(rotated.stored.secret_hint),
    );
    data.insert("previous_hint".into(), json!(client.secret_hint));
    data.insert("previous".into(), json!(previous_state(previous.as_ref())));
    let mut response = Response::data(data);
    response.warnings = rotated.warnings;
    Ok(response)
}

pub(crate) async fn secret(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    let name = request.data.str("name").unwrap_or_default().to_string();
    let hold = uuid::Uuid::new_v4().to_string();
    let config = config::require(backend).await?;
    // The client and its hold in one step: a rotation cannot supersede and delete the
    // secret in between (the hold is the request's first write: a standby fails here).
    let (client, id) = {
        let _state = backend.state_lock.lock().await;
        let Some(client) = ClientRecord::load(storage, &name).await? else {
            return Err(unknown(&name));
        };
        let id = client
            .secret_id
            .clone()
            .unwrap_or_else(|| secrets::record_id(client.secret_hint.as_deref()));
        secrets::holds(&name).add(storage, &id, &hold).await?;
        (client, id)
    };
    let now = Timestamp::now();
    let mut ttl = match schedule::next_rotation(&client, now) {
        Some(next) => ttl_until(next.at).max(std::time::Duration::from_secs(60)),
        None => backend
            .system
            .default_lease_ttl()
            .await
            .map_err(|e| RequestError::Internal(e.to_string()))?,
    };
    if let Ok(max) = backend.system.max_lease_ttl().await
        && max.as_secs() > 0
    {
        ttl = ttl.min(max);
    }
    let mut data = Map::new();
    data.insert("client_id".into(), json!(client.client_id));
    data.insert("client_secret".into(), json!(client.secret.expose_secret()));
    data.insert("client_secret_hint".into(), json!(client.secret_hint));
    data.insert("tenant_url".into(), json!(config.tenant_url));
    let mut internal = Map::new();
    internal.insert("client".into(), json!(name));
    internal.insert("secret_id".into(), json!(id));
    internal.insert("hold".into(), json!(hold));
    Ok(Response {
        data: Some(data),
        lease: Some(Lease {
            kind: secret_types::OAUTH_CLIENT_SECRET,
            ttl,
            max_ttl: None,
            renewable: false,
            internal,
        }),
        ..Default::default()
    })
}

/// A secret lease ends: its hold goes; a superseded secret nothing holds any more is deleted
/// at Qlik, a foreign one forgotten.
pub(crate) async fn lease(
    backend: &QlikBackend,
    op: LeaseOperation,
    lease: LeaseRequest,
) -> Result<Response, RequestError> {
    if op == LeaseOperation::Renew {
        return Err(RequestError::bad_request(
            "a client secret lease is not renewable: read oauth/clients/<name>/secret again",
        ));
    }
    let text = |field: &str| {
        lease
            .internal
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (name, id, hold) = (text("client"), text("secret_id"), text("hold"));
    let storage = backend.storage.as_ref();
    let superseded = {
        let _state = backend.state_lock.lock().await;
        secrets::holds(&name).remove(storage, &id, &hold).await?;
        let Some(record) = SecretRecord::load(storage, &name, &id).await? else {
            return Ok(Response::empty());
        };
        if record.kind == KeyKind::Stored || secrets::holds(&name).is_held(storage, &id).await? {
            return Ok(Response::empty());
        }
        if record.kind == KeyKind::Foreign {
            SecretRecord::forget(storage, &name, &id).await?;
            return Ok(Response::empty());
        }
        record.kind == KeyKind::Superseded
    };
    if superseded {
        let (Some(client), Some(config)) = (
            ClientRecord::load(storage, &name).await?,
            config::load(backend).await?,
        ) else {
            return Ok(Response::empty());
        };
        let qlik = backend.oauth_qlik(&config, &name, &client.client_id)?;
        if let Deletion::Failed(error) =
            secrets::delete_secret(backend, &qlik, &name, &client, &config, &id).await?
        {
            tracing::warn!(client = %name, secret = %id, %error, "the superseded secret could not be deleted at Qlik; tidy retries");
        }
    }
    Ok(Response::empty())
}
