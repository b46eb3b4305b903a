//! `oauth/roles/<role>`: how `oauth/token/<role>` gets tokens (client, grant, scopes, lease
//! TTL, shared). A role is tried at Qlik when written: a scope not on the client's allow list,
//! an unknown user or a grant the client may not use is a 400 naming the field.

use serde_json::{Map, json};

use crate::duration::KeyDuration;
use crate::engine::api_key::config;
use crate::engine::chain::named::Named;
use crate::engine::oauth::client::ClientRecord;
use crate::engine::oauth::roles::{RoleGrant, TokenRole};
use crate::engine::oauth::tokens;
use crate::engine::{QlikBackend, Route};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};
use crate::qlik::{ErrorKind, QlikError};

static FIELDS: &[FieldSpec] = &[
    FieldSpec::new("name", FieldKind::String, "The role's name.").in_path(),
    FieldSpec::new(
        "client",
        FieldKind::String,
        "The OAuth client (oauth/clients/<client>) whose tokens this role gives.",
    )
    .required(),
    FieldSpec::new(
        "scopes",
        FieldKind::StringList,
        "Scopes asked for (comma-separated or a list); each must be on the client's allow list. Empty: the client's default scopes.",
    ),
    FieldSpec::new(
        "grant",
        FieldKind::String,
        "client_credentials (the client's bot user) or impersonation (a user, named by user_subject or user_id).",
    )
    .default("client_credentials"),
    FieldSpec::new(
        "user_subject",
        FieldKind::String,
        "With grant=impersonation: the user's subject.",
    ),
    FieldSpec::new(
        "user_id",
        FieldKind::String,
        "With grant=impersonation: the user's Qlik id.",
    ),
    FieldSpec::new(
        "ttl",
        FieldKind::Duration,
        "The longest lease on a token (never longer than the token's remaining life). 0 removes it.",
    )
    .zero_clears(),
    FieldSpec::new(
        "shared",
        FieldKind::Bool,
        "Readers share one token, refreshed before it expires; its leases do not revoke it.",
    )
    .default("false"),
];

static RESPONSE: &[FieldSpec] = &[
    FieldSpec::new("client", FieldKind::String, "The OAuth client."),
    FieldSpec::new("scopes", FieldKind::StringList, "Scopes asked for."),
    FieldSpec::new("grant", FieldKind::String, "The grant."),
    FieldSpec::new(
        "user_subject",
        FieldKind::String,
        "Impersonated user's subject.",
    ),
    FieldSpec::new("user_id", FieldKind::String, "Impersonated user's id."),
    FieldSpec::new("ttl", FieldKind::Duration, "The longest lease, ISO 8601."),
    FieldSpec::new("shared", FieldKind::Bool, "Readers share one token."),
];

static LIST_RESPONSE: &[FieldSpec] =
    &[FieldSpec::new("keys", FieldKind::StringList, "Role names.")];

/// `oauth/roles/`.
pub const LIST_PATH: PathSpec<Route> = PathSpec {
    route: Route::OAuthRolesList,
    pattern: "oauth/roles/",
    fields: &[],
    operations: &[
        OperationSpec::new(Operation::List, "List the OAuth token roles.").returns(LIST_RESPONSE),
    ],
    existence_check: false,
    synopsis: "List the OAuth token roles.",
    description: "The OAuth token roles of this mount, by name.",
};

/// `oauth/roles/<name>`.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::OAuthRole,
    pattern: "oauth/roles/{name}",
    fields: FIELDS,
    operations: &[
        OperationSpec::new(Operation::Create, "Create a token role."),
        OperationSpec::new(Operation::Update, "Change a token role."),
        OperationSpec::new(Operation::Read, "Read a token role.").returns(RESPONSE),
        OperationSpec::new(
            Operation::Delete,
            "Delete a token role (leases already issued still revoke).",
        ),
    ],
    existence_check: true,
    synopsis: "How oauth/token/<name> gets access tokens: client, grant, scopes, lease TTL, shared.",
    description: "\
A role is tried at Qlik when written (one token is got with its grant and scopes, then \
revoked), so a scope the client may not ask for, an unknown impersonated user or a grant the \
client may not use is refused with the field named, and nothing is stored.",
};

pub(crate) async fn exists(
    backend: &QlikBackend,
    request: &Request<Route>,
) -> Result<bool, RequestError> {
    let name = request.data.str("name").unwrap_or_default();
    Ok(TokenRole::load(backend.storage.as_ref(), name)
        .await?
        .is_some())
}

pub(crate) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    if request.route == Route::OAuthRolesList {
        return Ok(super::list_response(TokenRole::names(storage).await?));
    }
    let name = request.data.str("name").unwrap_or_default().to_string();
    match request.operation {
        Operation::Read => Ok(match TokenRole::load(storage, &name).await? {
            None => Response::empty(),
            Some(role) => Response::data(read_data(&role)),
        }),
        Operation::Create | Operation::Update => write(backend, &name, &request).await,
        Operation::Delete => {
            TokenRole::delete(storage, &name).await?;
            backend.oauth.shared.clear();
            Ok(Response::empty())
        }
        _ => Err(RequestError::UnsupportedOperation),
    }
}

fn read_data(role: &TokenRole) -> Map<String, serde_json::Value> {
    let mut data = Map::new();
    data.insert("client".into(), json!(role.client));
    data.insert("scopes".into(), json!(role.scopes));
    data.insert("grant".into(), json!(role.grant.name()));
    let (subject, id) = match &role.grant {
        RoleGrant::ClientCredentials => (None, None),
        RoleGrant::Impersonation {
            user_subject,
            user_id,
        } => (user_subject.clone(), user_id.clone()),
    };
    data.insert("user_subject".into(), json!(subject));
    data.insert("user_id".into(), json!(id));
    data.insert("ttl".into(), json!(role.ttl.map(KeyDuration::to_iso)));
    data.insert("shared".into(), json!(role.shared));
    data
}

async fn write(
    backend: &QlikBackend,
    name: &str,
    request: &Request<Route>,
) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    let data = &request.data;
    let existing = TokenRole::load(storage, name).await?;
    let client_name = match (data.str("client"), &existing) {
        (Some(client), _) => client.trim().to_string(),
        (None, Some(existing)) => existing.client.clone(),
        (None, None) => {
            return Err(RequestError::bad_request(
                "missing required field \"client\"",
            ));
        }
    };
    let Some(client) = ClientRecord::load(storage, &client_name).await? else {
        return Err(RequestError::field(
            "client",
            format!(
                "no OAuth client {client_name:?} in this mount; write oauth/clients/{client_name} \
                 first (vault list <mount>/oauth/clients shows them)"
            ),
        ));
    };
    let grant_name = data
        .str("grant")
        .map(|g| g.trim().to_string())
        .or_else(|| existing.as_ref().map(|r| r.grant.name().to_string()))
        .unwrap_or_else(|| "client_credentials".into());
    let (old_subject, old_id) = match existing.as_ref().map(|r| &r.grant) {
        Some(RoleGrant::Impersonation {
            user_subject,
            user_id,
        }) => (user_subject.clone(), user_id.clone()),
        _ => (None, None),
    };
    let given = |field: &str| {
        data.str(field)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let grant = match grant_name.as_str() {
        "client_credentials" => {
            for field in ["user_subject", "user_id"] {
                if given(field).is_some() {
                    return Err(RequestError::field(
                        field,
                        "only with grant=impersonation (a client_credentials token acts as the \
                         client's bot user)",
                    ));
                }
            }
            RoleGrant::ClientCredentials
        }
        "impersonation" => {
            let (subject, id) = if given("user_subject").is_some() || given("user_id").is_some() {
                (given("user_subject"), given("user_id"))
            } else {
                (old_subject, old_id)
            };
            match (&subject, &id) {
                (Some(_), Some(_)) => {
                    return Err(RequestError::field(
                        "user_id",
                        "give one of user_subject and user_id, not both",
                    ));
                }
                (None, None) => {
                    return Err(RequestError::field(
                        "user_subject",
                        "grant=impersonation needs the user: user_subject or user_id",
                    ));
                }
                _ => {}
            }
            RoleGrant::Impersonation {
                user_subject: subject,
                user_id: id,
            }
        }
        other => {
            return Err(RequestError::field(
                "grant",
                format!(
                    "{other:?} is not accepted; expected {}",
                    RoleGrant::ACCEPTED
                ),
            ));
        }
    };
    let role = TokenRole {
        client: client_name,
        scopes: match data.list("scopes") {
            Some(scopes) => scopes.to_vec(),
            None => existing
                .as_ref()
                .map(|r| r.scopes.clone())
                .unwrap_or_default(),
        },
        grant,
        ttl: if data.is_cleared("ttl") {
            None
        } else {
            data.duration("ttl")
                .or(existing.as_ref().and_then(|r| r.ttl))
        },
        shared: data
            .bool("shared")
            .or(existing.as_ref().map(|r| r.shared))
            .unwrap_or(false),
    };
    if existing.as_ref() != Some(&role) {
        // Tried at Qlik: what Qlik refuses is never stored.
        let config = config::require(backend).await?;
        let qlik = backend.oauth_qlik(&config, &role.client, &client.client_id)?;
        let token = tokens::get(&qlik, &client, &role)
            .await
            .map_err(|error| role_error(&error, &role))?;
        if let Err(error) = qlik
            .oauth_revoke(&client.client_id, &client.secret, &token.token)
            .await
        {
            tracing::debug!(%error, "could not revoke the role's trial token; it expires by itself");
        }
    }
    role.save(storage, name).await?;
    backend.oauth.shared.clear();
    Ok(Response::empty())
}

/// A refusal of Qlik's, as the 400 naming the role's field that caused it.
fn role_error(error: &QlikError, role: &TokenRole) -> RequestError {
    let nothing = "nothing was stored";
    match error.kind() {
        ErrorKind::InvalidScope => RequestError::field(
            "scopes",
            format!("a scope is not on the client's allow list ({nothing}). Qlik said: {error}"),
        ),
        ErrorKind::UnknownUser => {
            let field = match &role.grant {
                RoleGrant::Impersonation {
                    user_subject: Some(_),
                    ..
                } => "user_subject",
                _ => "user_id",
            };
            RequestError::field(
                field,
                format!("Qlik knows no such user ({nothing}). Qlik said: {error}"),
            )
        }
        ErrorKind::GrantNotAllowed => RequestError::field(
            "grant",
            format!(
                "the client may not use this grant (its allowedGrantTypes) ({nothing}). Qlik \
                 said: {error}"
            ),
        ),
        ErrorKind::InvalidClient => RequestError::field(
            "client",
            format!(
                "Qlik refuses the client's stored secret: write a valid one to \
                 oauth/clients/{} ({nothing}). Qlik said: {error}",
                role.client
            ),
        ),
        _ => {
            crate::engine::tenant::qlik_error(error, "trying the role at Qlik (nothing was stored)")
        }
    }
}
