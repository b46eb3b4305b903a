//! `rotate`: replace the stored key by a new one minted with it now; the answer is the new key
//! as a lease ([`crate::engine::api_key::rotation`] does the work).

use secrecy::ExposeSecret;

use crate::engine::api_key::mint;
use crate::engine::api_key::rotation::{RotateOptions, Trigger, lease_response, rotate};
use crate::engine::{QlikBackend, Route};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};

static FIELDS: &[FieldSpec] = &[
    FieldSpec::new(
        "expiry",
        FieldKind::Duration,
        "Lifetime to ask of Qlik for the new key.",
    )
    .default("key_expiry from config"),
    FieldSpec::new(
        "description",
        FieldKind::String,
        "Text put in front of the engine's marker in the new key's Qlik description.",
    )
    .default("vault-plugin-secrets-qlik"),
    FieldSpec::new(
        "revoke_previous",
        FieldKind::Bool,
        "Delete the previous key at Qlik at once, even while leases hold it (for a leaked key).",
    )
    .default("false"),
];

/// The data of a lease on a key (`rotate`, `key`, `creds`).
pub static KEY_RESPONSE: &[FieldSpec] = &[
    FieldSpec::new(
        "api_key",
        FieldKind::String,
        "The Qlik API key (bearer token).",
    ),
    FieldSpec::new("key_id", FieldKind::String, "Qlik key id."),
    FieldSpec::new(
        "expires_at",
        FieldKind::String,
        "When Qlik expires the key (RFC 3339).",
    ),
    FieldSpec::new(
        "expiry",
        FieldKind::Duration,
        "The key's lifetime, ISO 8601.",
    ),
    FieldSpec::new("tenant_url", FieldKind::String, "Tenant URL."),
    FieldSpec::new("owner_id", FieldKind::String, "Qlik user owning the key."),
];

/// The `rotate` path.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::Rotate,
    pattern: "rotate",
    fields: FIELDS,
    operations: &[OperationSpec::new(
        Operation::Update,
        "Rotate the stored key now and return the new key as a lease.",
    )
    .returns(KEY_RESPONSE)
    .leased()],
    existence_check: false,
    synopsis: "Rotate the stored key now; the answer is the new key, as a lease.",
    description: "\
Mints a new key at Qlik with the stored key as bearer, verifies it (`GET /api/v1/users/me`), \
stores it, and answers with it as a lease whose TTL is the key's real remaining life \
(`expires_at` as Qlik returned it) and which is not renewable. The previous key is deleted at \
Qlik as soon as no lease holds it; `revoke_previous=true` deletes it at once.",
};

pub(crate) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    let op = mint::operation_id(&request.id);
    let expiry = request.data.duration("expiry");
    let description = request
        .data
        .str("description")
        .unwrap_or("vault-plugin-secrets-qlik");
    let revoke_previous = request.data.bool("revoke_previous").unwrap_or(false);
    // The answer's lease holds the new key from the moment it is stored: a rotation right
    // behind this one must not delete it before the lease exists.
    let hold = uuid::Uuid::new_v4().to_string();
    let rotated = rotate(
        backend,
        &op,
        Trigger::Manual,
        RotateOptions {
            expiry,
            description,
            revoke_previous,
            hold: Some(&hold),
        },
        &request.mount_point,
    )
    .await?;
    let mut response = lease_response(
        backend,
        &rotated.config,
        &rotated.config.key_info,
        rotated.key.token.expose_secret(),
        hold,
        false,
    )
    .await;
    response.warnings = rotated.warnings;
    Ok(response)
}
