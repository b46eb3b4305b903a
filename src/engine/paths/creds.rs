//! `creds/<name>`: a new dedicated key per read, deleted at Qlik when its lease ends.

use secrecy::ExposeSecret;
use serde_json::{Map, json};

use super::rotate::KEY_RESPONSE;
use crate::engine::QlikBackend;
use crate::engine::Route;
use crate::engine::api_key::config::{self, KeyInfo};
use crate::engine::api_key::mint::{self, MintPlan};
use crate::engine::api_key::rotation::key_data;
use crate::engine::chain::records::{IntentKind, KeyKind, KeyRecord};
use crate::engine::chain::time::ttl_until;
use crate::engine::paths::roles;
use crate::engine::secret_types;
use crate::framework::{
    FieldKind, FieldSpec, Lease, Operation, OperationSpec, PathSpec, Request, RequestError,
    Response,
};

static FIELDS: &[FieldSpec] = &[FieldSpec::new("name", FieldKind::String, "The role.").in_path()];

/// The data of a creds lease: the key's fields (as `rotate` and `key`) and the role.
static CREDS_RESPONSE: &[FieldSpec] = &[
    KEY_RESPONSE[0],
    KEY_RESPONSE[1],
    KEY_RESPONSE[2],
    KEY_RESPONSE[3],
    KEY_RESPONSE[4],
    KEY_RESPONSE[5],
    FieldSpec::new(
        "role",
        FieldKind::String,
        "The role the key was minted for.",
    ),
];

/// The `creds/<name>` path.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::Creds,
    pattern: "creds/{name}",
    fields: FIELDS,
    operations: &[OperationSpec::new(
        Operation::Read,
        "Mint a dedicated key for the role, as a lease.",
    )
    .returns(CREDS_RESPONSE)
    .leased()],
    existence_check: false,
    synopsis: "Mint a dedicated key per read, deleted at Qlik when its lease ends.",
    description: "\
Each read mints a new key with the stored key as bearer. The lease TTL is the key's real \
remaining life; it is not renewable; revoking it (or its expiry) deletes the key at Qlik. \
Before minting, the owner's active keys are counted against the tenant's max_keys_per_user.",
};

pub(crate) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    let name = request.data.str("name").unwrap_or_default().to_string();
    let Some(role) = roles::load(backend, &name).await? else {
        return Err(RequestError::bad_request(format!(
            "unknown role {name:?}: create it first (vault write {}roles/{name} expiry=PT1H)",
            request.mount_point
        )));
    };
    // Count, mint and record as one step per mount (see `QlikBackend::mint_lock`); the
    // configuration is read under it, so no rotation can delete its key meanwhile.
    let mint_guard = backend.mint_lock.lock().await;
    let config = config::require_api_key(backend).await?;
    let expiry = role.expiry.or(config.effective_key_expiry());
    backend.check_max_ttl(expiry, &request.mount_point).await?;
    let client = backend.client(&config).await?;
    let op = mint::operation_id(&request.id);
    let description = if role.description.is_empty() {
        format!("vault-plugin-secrets-qlik role={name}")
    } else {
        role.description.clone()
    };
    let plan = MintPlan {
        kind: IntentKind::Creds,
        role: Some(&name),
        description: &description,
        expiry,
    };
    // The intent is the first write, before any Qlik call: a standby fails here (read-only)
    // and the server forwards the request without a wasted key count.
    let reservation = mint::reserve(backend, &op, &plan).await?;
    if reservation.is_fresh()
        && let Err(error) =
            crate::engine::api_key::slots::check_creds(&config, &client, &request.mount_point).await
    {
        mint::abandon(backend, &op).await?;
        return Err(error);
    }
    let minted = mint::mint_reserved(backend, &config, &client, &op, &plan, reservation).await?;
    backend.metrics().cred_minted();
    {
        let _state = backend.state_lock.lock().await;
        KeyRecord::new(
            minted.id.clone(),
            KeyKind::Dedicated,
            Some(name.clone()),
            minted.created_at,
            minted.expires_at,
        )
        .minted_for(&config.key_info.owner_id)
        .save(backend.storage.as_ref())
        .await?;
    }
    mint::finish(backend, &op).await?;
    drop(mint_guard);
    let info = KeyInfo {
        key_id: minted.id.clone(),
        created_at: minted.created_at,
        expires_at: minted.expires_at,
        dies_at: minted.dies_at,
        ..config.key_info.clone()
    };
    let mut data = key_data(&config, &info, minted.token.expose_secret());
    data.insert("role".into(), json!(name));
    let mut internal = Map::new();
    internal.insert("key_id".into(), json!(minted.id));
    internal.insert("role".into(), json!(name));
    Ok(Response {
        data: Some(data),
        lease: Some(Lease {
            kind: secret_types::DEDICATED_KEY,
            ttl: ttl_until(minted.deadline()),
            max_ttl: None,
            renewable: false,
            internal,
        }),
        ..Default::default()
    })
}
