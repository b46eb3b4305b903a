//! `creds/<name>`: a new dedicated key per read, deleted at Qlik when its lease ends.

use secrecy::ExposeSecret;
use serde_json::{Map, json};

use super::config::{self, KeyInfo};
use super::mint::{self, MintPlan};
use super::records::{IntentKind, KeyKind, KeyRecord};
use super::rotate::{KEY_RESPONSE, key_data};
use super::{QlikBackend, Route, qlik_error, roles, secret_types, ttl_until};
use crate::framework::{
    FieldKind, FieldSpec, Lease, Operation, OperationSpec, PathSpec, Request, RequestError,
    Response,
};
use crate::qlik::{ErrorKind, KeyStatus, ListFilter};

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

pub(super) async fn handle(
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
    let config = config::require(backend).await?;
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
        && let Err(error) = check_key_limit(&config, &client, &request.mount_point).await
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
        .save(backend.storage.as_ref())
        .await?;
    }
    mint::finish(backend, &op).await?;
    drop(mint_guard);
    let info = KeyInfo {
        key_id: minted.id.clone(),
        created_at: minted.created_at,
        expires_at: minted.expires_at,
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
            ttl: ttl_until(minted.expires_at),
            max_ttl: None,
            renewable: false,
            internal,
        }),
        warnings: Vec::new(),
    })
}

/// Key slots `creds` leaves free: one, for the stored key's next rotation.
const ROTATION_SLOTS: usize = 1;

/// Refuses, with the numbers and the fix, a mint that would take the owner's last free key
/// slot. The last slot belongs to the stored key's rotation, which mints the successor before
/// it deletes the old key: were `creds` allowed to fill every slot, Qlik would refuse the
/// rotation and the stored key would expire with the chain.
async fn check_key_limit(
    config: &config::Config,
    client: &crate::qlik::QlikClient,
    mount_point: &str,
) -> Result<(), RequestError> {
    let token = &config.key.token;
    let limits = match client
        .tenant_config(token, &config.key_info.tenant_id)
        .await
    {
        Ok(limits) => limits,
        // Reading the tenant settings may need rights the owner lacks: then Qlik decides.
        Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::NotFound) => {
            return Ok(());
        }
        Err(e) => return Err(qlik_error(&e, "reading the tenant's API key limits")),
    };
    let active = client
        .list_keys(
            token,
            &ListFilter {
                sub: Some(config.key_info.owner_id.clone()),
                status: Some(KeyStatus::Active),
                created_by_user: None,
            },
        )
        .await
        .map_err(|e| qlik_error(&e, "counting the owner's active keys"))?;
    let max = limits.max_keys_per_user as usize;
    if active.len() + ROTATION_SLOTS >= max {
        return Err(RequestError::bad_request(format!(
            "key limit reached: the Qlik user {} already has {} active API keys and the tenant allows {} \
             (max_keys_per_user), of which one stays free for the stored key's rotation; nothing \
             was minted. Fix: revoke leases you no longer need \
             (vault lease revoke -prefix {mount_point}creds/), or raise max_keys_per_user in the \
             tenant's API key settings",
            config.key_info.owner_id,
            active.len(),
            max,
        )));
    }
    Ok(())
}
