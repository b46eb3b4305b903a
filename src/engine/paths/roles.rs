//! `roles/<name>`: templates for dedicated keys.

use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use crate::duration::KeyDuration;
use crate::engine::QlikBackend;
use crate::engine::Route;
use crate::engine::chain::schema;
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};

/// Storage prefix of roles.
pub const PREFIX: &str = "roles/";
/// The longest role description (Qlik's limit is undocumented; the marker follows it).
pub const MAX_DESCRIPTION: usize = 200;

static FIELDS: &[FieldSpec] = &[
    FieldSpec::new(
        "name",
        FieldKind::String,
        "Role name (letters, digits, '-', '_', '.').",
    )
    .in_path(),
    FieldSpec::new(
        "expiry",
        FieldKind::Duration,
        "Lifetime asked of Qlik for each dedicated key.",
    )
    .default("key_expiry from config"),
    FieldSpec::new(
        "description",
        FieldKind::String,
        "Text put in front of the engine's marker in each key's Qlik description.",
    ),
];

static RESPONSE: &[FieldSpec] = &[
    FieldSpec::new(
        "expiry",
        FieldKind::Duration,
        "Lifetime of dedicated keys, ISO 8601 (empty: key_expiry).",
    ),
    FieldSpec::new("description", FieldKind::String, "Description prefix."),
];

static LIST_RESPONSE: &[FieldSpec] =
    &[FieldSpec::new("keys", FieldKind::StringList, "Role names.")];

/// `roles/`.
pub const LIST_PATH: PathSpec<Route> = PathSpec {
    route: Route::RolesList,
    pattern: "roles/",
    fields: &[],
    operations: &[OperationSpec::new(Operation::List, "List the roles.").returns(LIST_RESPONSE)],
    existence_check: false,
    synopsis: "List the roles.",
    description: "The roles of this mount, by name.",
};

/// `roles/<name>`.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::Role,
    pattern: "roles/{name}",
    fields: FIELDS,
    operations: &[
        OperationSpec::new(Operation::Create, "Create a role."),
        OperationSpec::new(Operation::Update, "Change a role."),
        OperationSpec::new(Operation::Read, "Read a role.").returns(RESPONSE),
        OperationSpec::new(
            Operation::Delete,
            "Delete a role (leases already issued still revoke).",
        ),
    ],
    existence_check: true,
    synopsis: "Templates for dedicated keys: creds/<name> mints one key per lease.",
    description: "\
A role says how `creds/<name>` mints keys: their lifetime (`expiry`) and a description. \
Every key has the full rights of the stored key's owner: Qlik keys carry no scopes. Deleting \
a role does not revoke the leases already issued from it.",
};

/// A role as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Role {
    /// Lifetime of its keys (`None`: the engine's key_expiry).
    pub expiry: Option<KeyDuration>,
    /// Description prefix.
    #[serde(default)]
    pub description: String,
}

/// Loads a role.
pub async fn load(backend: &QlikBackend, name: &str) -> Result<Option<Role>, RequestError> {
    Ok(schema::load(backend.storage.as_ref(), &format!("{PREFIX}{name}")).await?)
}

pub(crate) async fn exists(
    backend: &QlikBackend,
    request: &Request<Route>,
) -> Result<bool, RequestError> {
    let name = request.data.str("name").unwrap_or_default();
    Ok(load(backend, name).await?.is_some())
}

pub(crate) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    if request.route == Route::RolesList {
        let mut names = storage.list(PREFIX).await?;
        names.retain(|n| !n.ends_with('/'));
        return Ok(super::list_response(names));
    }
    let name = request.data.str("name").unwrap_or_default().to_string();
    let key = format!("{PREFIX}{name}");
    match request.operation {
        Operation::Read => Ok(match load(backend, &name).await? {
            None => Response::empty(),
            Some(role) => {
                let mut data = Map::new();
                data.insert("expiry".into(), json!(role.expiry.map(KeyDuration::to_iso)));
                data.insert("description".into(), json!(role.description));
                Response::data(data)
            }
        }),
        Operation::Create | Operation::Update => {
            let existing = load(backend, &name).await?;
            let description = match request.data.str("description") {
                Some(d) if d.chars().count() > MAX_DESCRIPTION => {
                    return Err(RequestError::field(
                        "description",
                        format!("longer than {MAX_DESCRIPTION} characters"),
                    ));
                }
                Some(d) => d.to_string(),
                None => existing
                    .as_ref()
                    .map(|r| r.description.clone())
                    .unwrap_or_default(),
            };
            let role = Role {
                expiry: request
                    .data
                    .duration("expiry")
                    .or(existing.and_then(|r| r.expiry)),
                description,
            };
            let mut warnings = Vec::new();
            // Checked when the tenant tells its maximum: a role above it could never mint.
            if let Some(expiry) = request.data.duration("expiry")
                && let Some(config) = crate::engine::api_key::config::load(backend)
                    .await?
                    .filter(crate::engine::api_key::config::Config::has_api_key)
            {
                let client = backend.client(&config).await?;
                if let Some(max) = crate::engine::api_key::config::tenant_max_expiry(
                    &client,
                    &config,
                    &mut warnings,
                )
                .await
                    && expiry > max
                {
                    return Err(RequestError::field(
                        "expiry",
                        format!(
                            "{expiry} is longer than the tenant's maximum key lifetime ({max}, \
                             max_api_key_expiry), so Qlik would refuse every creds read; nothing \
                             was stored. Fix: expiry={max} or shorter, or raise the tenant's \
                             Maximum token expiration"
                        ),
                    ));
                }
            }
            schema::save(storage, &key, &role).await?;
            let mut response = Response::empty();
            response.warnings = warnings;
            Ok(response)
        }
        Operation::Delete => {
            storage.delete(&key).await?;
            Ok(Response::empty())
        }
        _ => Err(RequestError::UnsupportedOperation),
    }
}
