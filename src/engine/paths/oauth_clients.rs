//! `oauth/clients/<name>`: the mount's Qlik OAuth M2M clients (create, read, update, delete,
//! list). The secret is write-only and verified at write by getting a token with it.

use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde_json::{Map, json};

use crate::duration::KeyDuration;
use crate::engine::api_key::config;
use crate::engine::chain::Rotating;
use crate::engine::chain::named::Named;
use crate::engine::chain::records::{KeyKind, KeyState};
use crate::engine::chain::schedule;
use crate::engine::oauth::client::{ClientRecord, DEFAULT_ROTATION_PERIOD_SECS, ManageWith};
use crate::engine::oauth::roles::TokenRole;
use crate::engine::oauth::secrets::{self, SecretRecord};
use crate::engine::oauth::tokens;
use crate::engine::{QlikBackend, Route};
use crate::framework::{
    FieldKind, FieldSpec, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};
use crate::qlik::ErrorKind;

static FIELDS: &[FieldSpec] = &[
    FieldSpec::new(
        "name",
        FieldKind::String,
        "The client's name in this mount.",
    )
    .in_path(),
    FieldSpec::new(
        "client_id",
        FieldKind::String,
        "Qlik's id of the OAuth M2M client.",
    )
    .required(),
    FieldSpec::new(
        "client_secret",
        FieldKind::String,
        "The client secret (write-only), verified by getting a token with it before anything is stored.",
    )
    .sensitive(),
    FieldSpec::new(
        "client_secret_hint",
        FieldKind::String,
        "The hint Qlik shows for the written secret, when the client has several (else the engine reads it from Qlik).",
    ),
    FieldSpec::new(
        "scopes",
        FieldKind::StringList,
        "Default scopes of tokens (comma-separated or a list); each must be on the client's allow list. Empty: the client's allow list.",
    ),
    FieldSpec::new(
        "manage_with",
        FieldKind::String,
        "What creates and deletes the client's secrets at Qlik: self (the client's own token) or api_key (the mount's stored key of a tenant admin).",
    )
    .default("self"),
    FieldSpec::new(
        "rotation_schedule",
        FieldKind::String,
        "Standard 5-field cron (UTC) at which to rotate the secret. Mutually exclusive with rotation_period; an empty string removes it.",
    ),
    FieldSpec::new(
        "rotation_window",
        FieldKind::Duration,
        "Only with rotation_schedule: how long a missed occurrence stays due (at least 60s; 0 removes it).",
    )
    .zero_clears(),
    FieldSpec::new(
        "rotation_period",
        FieldKind::Duration,
        "Rotate the secret once it is older than this (at least 60s; 0 removes it). Mutually exclusive with rotation_schedule.",
    )
    .default("P30D")
    .zero_clears(),
    FieldSpec::new(
        "disable_automated_rotation",
        FieldKind::Bool,
        "No automatic rotation of the secret.",
    )
    .default("false"),
];

static RESPONSE: &[FieldSpec] = &[
    FieldSpec::new("client_id", FieldKind::String, "Qlik's client id."),
    FieldSpec::new(
        "client_secret_hint",
        FieldKind::String,
        "The current secret's hint at Qlik (null: not known).",
    ),
    FieldSpec::new(
        "secret_created_at",
        FieldKind::String,
        "When the current secret was written or created (RFC 3339).",
    ),
    FieldSpec::new("scopes", FieldKind::StringList, "Default scopes."),
    FieldSpec::new("manage_with", FieldKind::String, "self or api_key."),
    FieldSpec::new(
        "rotation_schedule",
        FieldKind::String,
        "The cron schedule (UTC), or empty.",
    ),
    FieldSpec::new(
        "rotation_window",
        FieldKind::Int,
        "The schedule's window in seconds (0: none).",
    ),
    FieldSpec::new(
        "rotation_period",
        FieldKind::Int,
        "Rotate when the secret is older than this many seconds (0: none).",
    ),
    FieldSpec::new(
        "disable_automated_rotation",
        FieldKind::Bool,
        "Whether automatic rotation is off.",
    ),
    FieldSpec::new(
        "next_rotation_at",
        FieldKind::String,
        "When the secret is next rotated automatically (RFC 3339), or null.",
    ),
    FieldSpec::new(
        "next_rotation_reason",
        FieldKind::String,
        "period or schedule, or null.",
    ),
    FieldSpec::new(
        "last_rotation",
        FieldKind::Object,
        "The last rotation: time, outcome, trigger, error; null before the first.",
    ),
    FieldSpec::new(
        "secrets",
        FieldKind::Object,
        "The secrets the mount tracks for the client, by id (the hint, or unhinted-…): hint, kind (stored, superseded, foreign), state, live_leases, last_error.",
    ),
];

static LIST_RESPONSE: &[FieldSpec] = &[FieldSpec::new(
    "keys",
    FieldKind::StringList,
    "Client names.",
)];

/// `oauth/clients/`.
pub const LIST_PATH: PathSpec<Route> = PathSpec {
    route: Route::OAuthClientsList,
    pattern: "oauth/clients/",
    fields: &[],
    operations: &[
        OperationSpec::new(Operation::List, "List the OAuth clients.").returns(LIST_RESPONSE),
    ],
    existence_check: false,
    synopsis: "List the OAuth M2M clients.",
    description: "The OAuth M2M clients of this mount, by name.",
};

/// `oauth/clients/<name>`.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::OAuthClient,
    pattern: "oauth/clients/{name}",
    fields: FIELDS,
    operations: &[
        OperationSpec::new(Operation::Create, "Add an OAuth M2M client."),
        OperationSpec::new(Operation::Update, "Change a client, or write a new secret."),
        OperationSpec::new(Operation::Read, "Read a client (never its secret).").returns(RESPONSE),
        OperationSpec::new(
            Operation::Delete,
            "Forget a client (refused while a role names it; nothing is deleted at Qlik).",
        ),
    ],
    existence_check: true,
    synopsis: "A Qlik OAuth M2M client: its id, its secret (write-only) and default scopes.",
    description: "\
Writing a client verifies `client_secret` at Qlik by getting a token with it (and the default \
`scopes`) before anything is stored; a wrong secret is a 400 naming `client_secret`. The \
secret is write-only: reads show its hint at Qlik and when it was written, never the secret. \
`oauth/roles/<role>` names a client; `oauth/token/<role>` gives its access tokens as leases.",
};

pub(crate) async fn exists(
    backend: &QlikBackend,
    request: &Request<Route>,
) -> Result<bool, RequestError> {
    let name = request.data.str("name").unwrap_or_default();
    Ok(ClientRecord::load(backend.storage.as_ref(), name)
        .await?
        .is_some())
}

pub(crate) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    if request.route == Route::OAuthClientsList {
        return Ok(super::list_response(ClientRecord::names(storage).await?));
    }
    let name = request.data.str("name").unwrap_or_default().to_string();
    match request.operation {
        Operation::Read => Ok(match ClientRecord::load(storage, &name).await? {
            None => Response::empty(),
            Some(client) => {
                let mut data = read_data(&client);
                let now = Timestamp::now();
                let next = schedule::next_rotation(&client, now);
                data.insert(
                    "next_rotation_at".into(),
                    json!(next.map(|n| n.at.to_string())),
                );
                data.insert(
                    "next_rotation_reason".into(),
                    json!(next.map(|n| n.reason.name())),
                );
                data.insert("last_rotation".into(), json!(client.last_rotation));
                let mut tracked = Map::new();
                for record in SecretRecord::all(storage, &name).await? {
                    let leases = secrets::holds(&name)
                        .entries(storage, &record.id)
                        .await?
                        .len();
                    tracked.insert(
                        record.id.clone(),
                        json!({
                            "hint": record.hint,
                            "kind": record.kind.name(),
                            "state": record.state,
                            "live_leases": leases,
                            "last_error": record.last_error,
                        }),
                    );
                }
                data.insert("secrets".into(), serde_json::Value::Object(tracked));
                Response::data(data)
            }
        }),
        Operation::Create | Operation::Update => write(backend, &name, request).await,
        Operation::Delete => {
            for role_name in TokenRole::names(storage).await? {
                if let Some(role) = TokenRole::load(storage, &role_name).await?
                    && role.client == name
                {
                    return Err(RequestError::bad_request(format!(
                        "the OAuth role {role_name:?} names this client: delete the role first \
                         (vault delete <mount>/oauth/roles/{role_name}); nothing was deleted"
                    )));
                }
            }
            ClientRecord::delete(storage, &name).await?;
            SecretRecord::forget_all(storage, &name).await?;
            backend.oauth.shared.clear();
            tracing::info!(client = %name, "OAuth client forgotten");
            Ok(Response::empty())
        }
        _ => Err(RequestError::UnsupportedOperation),
    }
}

fn read_data(client: &ClientRecord) -> Map<String, serde_json::Value> {
    let mut data = Map::new();
    data.insert("client_id".into(), json!(client.client_id));
    data.insert("client_secret_hint".into(), json!(client.secret_hint));
    data.insert(
        "secret_created_at".into(),
        json!(client.secret_created_at.to_string()),
    );
    data.insert("scopes".into(), json!(client.scopes));
    data.insert("manage_with".into(), json!(client.manage_with.name()));
    let settings = client.settings();
    data.insert(
        "rotation_schedule".into(),
        json!(settings.schedule.clone().unwrap_or_default()),
    );
    data.insert(
        "rotation_window".into(),
        json!(settings.window.map_or(0, KeyDuration::as_secs)),
    );
    data.insert(
        "rotation_period".into(),
        json!(settings.period.map_or(0, KeyDuration::as_secs)),
    );
    data.insert(
        "disable_automated_rotation".into(),
        json!(!client.auto_rotate),
    );
    data
}

async fn write(
    backend: &QlikBackend,
    name: &str,
    mut request: Request<Route>,
) -> Result<Response, RequestError> {
    let storage = backend.storage.as_ref();
    let existing = ClientRecord::load(storage, name).await?;
    let data = &mut request.data;
    let secret = data.take_secret("client_secret");
    if let Some(secret) = &secret
        && secret.expose_secret().trim().is_empty()
    {
        return Err(RequestError::field("client_secret", "must not be empty"));
    }
    let client_id = match (data.str("client_id").map(str::trim), &existing) {
        (Some(""), _) => return Err(RequestError::field("client_id", "must not be empty")),
        (Some(id), _) => id.to_string(),
        (None, Some(existing)) => existing.client_id.clone(),
        (None, None) => {
            return Err(RequestError::bad_request(
                "missing required field \"client_id\"",
            ));
        }
    };
    let (secret, secret_changed) = match (secret, &existing) {
        (Some(secret), _) => (secret, true),
        (None, Some(existing)) if existing.client_id == client_id => {
            (existing.secret.clone(), false)
        }
        (None, Some(_)) => {
            return Err(RequestError::field(
                "client_secret",
                "required when client_id changes: a secret belongs to one client",
            ));
        }
        (None, None) => {
            return Err(RequestError::bad_request(
                "missing required field \"client_secret\"",
            ));
        }
    };
    let manage_with = match data.str("manage_with") {
        Some(text) => ManageWith::parse(text).ok_or_else(|| {
            RequestError::field(
                "manage_with",
                format!(
                    "{text:?} is not accepted; expected {}",
                    ManageWith::ACCEPTED
                ),
            )
        })?,
        None => existing
            .as_ref()
            .map_or(ManageWith::SelfToken, |c| c.manage_with),
    };
    let config = config::require(backend).await?;
    if manage_with == ManageWith::ApiKey && !config.has_api_key() {
        return Err(RequestError::field(
            "manage_with",
            "api_key needs an API key in config; use manage_with=self",
        ));
    }
    let scopes: Vec<String> = match data.list("scopes") {
        Some(scopes) => scopes.to_vec(),
        None => existing
            .as_ref()
            .map(|c| c.scopes.clone())
            .unwrap_or_default(),
    };
    let now = Timestamp::now();
    let mut requested =
        schedule::parse_fields(data, existing.as_ref().map(|c| c as &dyn Rotating), now)?;
    if existing.is_none()
        && requested.settings.schedule.is_none()
        && requested.settings.period.is_none()
        && !data.is_cleared("rotation_period")
    {
        requested.settings.period = KeyDuration::from_secs(DEFAULT_ROTATION_PERIOD_SECS);
    }
    let hint_given = data.str("client_secret_hint").map(str::to_string);
    let mut record = ClientRecord {
        client_id,
        secret,
        secret_hint: existing.as_ref().and_then(|c| c.secret_hint.clone()),
        secret_id: existing.as_ref().and_then(|c| c.secret_id.clone()),
        secret_created_at: existing.as_ref().map_or(now, |c| c.secret_created_at),
        scopes,
        manage_with,
        auto_rotate: requested.auto_rotate,
        rotation: requested.settings,
        history: existing
            .as_ref()
            .map(|c| {
                let mut history = c.history.clone();
                if secret_changed {
                    // The written secret is verified below before anything is stored: the
                    // failures of the one it replaces no longer say anything.
                    history.credential_replaced();
                }
                history
            })
            .unwrap_or_default(),
        last_rotation: existing.as_ref().and_then(|c| c.last_rotation.clone()),
    };
    let mut warnings = Vec::new();
    let verify = secret_changed
        || existing
            .as_ref()
            .is_none_or(|c| c.client_id != record.client_id || c.scopes != record.scopes);
    if verify {
        // Verified with a token of the client's own: a wrong secret or a scope not on the
        // client's allow list stores nothing.
        let qlik = backend.oauth_qlik(&config, name, &record.client_id)?;
        let token = tokens::get(&qlik, &record, &tokens::client_credentials_role())
            .await
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidClient => RequestError::field(
                    "client_secret",
                    format!(
                        "Qlik refused client_id {:?} with this secret (invalid_client); nothing \
                         was stored. Qlik said: {error}",
                        record.client_id
                    ),
                ),
                ErrorKind::InvalidScope => RequestError::field(
                    "scopes",
                    format!(
                        "a scope is not on the client's allow list; nothing was stored. Qlik \
                         said: {error}"
                    ),
                ),
                _ => crate::engine::tenant::qlik_error(
                    &error,
                    "verifying client_secret at Qlik (nothing was stored)",
                ),
            })?;
        if secret_changed {
            record.secret_created_at = now;
            record.secret_hint = None;
            // Which hint is the written secret's: Qlik never says (qlik-oauth.md §6.4).
            let bearer = match manage_with {
                ManageWith::SelfToken => token.token.clone(),
                ManageWith::ApiKey => config.key.token.clone(),
            };
            match qlik.oauth_client(&bearer, &record.client_id).await {
                Ok(info) => {
                    let hints: Vec<&str> = info
                        .client_secrets
                        .iter()
                        .map(|s| s.hint.as_str())
                        .collect();
                    record.secret_hint = match (hints.as_slice(), &hint_given) {
                        ([only], None) => Some((*only).to_string()),
                        (_, Some(given)) if hints.contains(&given.as_str()) => Some(given.clone()),
                        (_, Some(given)) => {
                            return Err(RequestError::field(
                                "client_secret_hint",
                                format!(
                                    "{given:?} is not one of the client's secrets at Qlik \
                                     ({}); nothing was stored",
                                    hints.join(", ")
                                ),
                            ));
                        }
                        _ => {
                            warnings.push(format!(
                                "the client has {} secrets at Qlik and client_secret_hint was \
                                 not given: the written secret's hint is unknown, so a rotation \
                                 will keep it at Qlik instead of deleting it (write \
                                 client_secret_hint to fix)",
                                hints.len()
                            ));
                            None
                        }
                    };
                }
                Err(error) => {
                    record.secret_hint = hint_given.clone();
                    warnings.push(format!(
                        "could not read the client's secrets at Qlik with manage_with={} \
                         ({error}): the written secret's hint is {}",
                        manage_with.name(),
                        record.secret_hint.as_deref().unwrap_or("unknown")
                    ));
                }
            }
        }
        if let Err(error) = qlik
            .oauth_revoke(&record.client_id, &record.secret, &token.token)
            .await
        {
            tracing::debug!(%error, "could not revoke the verification token; it expires by itself");
        }
    } else if let Some(given) = hint_given {
        record.secret_hint = Some(given);
    }
    if secret_changed || record.secret_id.is_none() {
        record.secret_id = Some(secrets::record_id(record.secret_hint.as_deref()));
    }
    let to_delete = {
        let _state = backend.state_lock.lock().await;
        record.save(storage, name).await?;
        track_written_secret(storage, name, &record, existing.as_ref(), secret_changed).await?
    };
    if let Some(old_id) = to_delete {
        let qlik = backend.oauth_qlik(&config, name, &record.client_id)?;
        match secrets::delete_secret(backend, &qlik, name, &record, &config, &old_id).await? {
            secrets::Deletion::Deleted | secrets::Deletion::UnknownHint => {}
            secrets::Deletion::Failed(error) => warnings.push(format!(
                "the previous secret {old_id} (minted by a rotation) could not be deleted at Qlik \
                 yet ({error}); tidy retries"
            )),
        }
    }
    backend.oauth.shared.clear();
    tracing::info!(client = %name, client_id = %record.client_id, secret_changed, "OAuth client written");
    warnings.extend(schedule::warnings(&record, now));
    Ok(Response {
        warnings,
        ..Response::empty()
    })
}

/// The secret records after a client write: the written secret is tracked as the stored one
/// (not minted here); the previously stored secret, if replaced, becomes what it is: minted by
/// a rotation here -> superseded (its id returned for deletion when no lease holds it); written
/// by an operator -> left alone at Qlik (foreign while leases hold it, else forgotten).
async fn track_written_secret(
    storage: &dyn crate::framework::Storage,
    name: &str,
    record: &ClientRecord,
    existing: Option<&ClientRecord>,
    secret_changed: bool,
) -> Result<Option<String>, RequestError> {
    let Some(id) = record.secret_id.clone() else {
        return Ok(None);
    };
    let mut current = SecretRecord::load(storage, name, &id)
        .await?
        .unwrap_or(SecretRecord {
            id: id.clone(),
            hint: record.secret_hint.clone(),
            kind: KeyKind::Stored,
            created_at: Some(record.secret_created_at),
            state: KeyState::Active,
            last_error: None,
            minted: false,
        });
    current.hint = record.secret_hint.clone();
    current.kind = KeyKind::Stored;
    current.save(storage, name).await?;
    let Some(old_id) = existing
        .filter(|_| secret_changed)
        .and_then(|e| e.secret_id.clone())
        .filter(|old| *old != id)
    else {
        return Ok(None);
    };
    let Some(mut old) = SecretRecord::load(storage, name, &old_id).await? else {
        return Ok(None);
    };
    let held = secrets::holds(name).is_held(storage, &old_id).await?;
    if old.minted {
        old.kind = KeyKind::Superseded;
        old.save(storage, name).await?;
        return Ok((!held).then_some(old_id));
    }
    if held {
        old.kind = KeyKind::Foreign;
        old.save(storage, name).await?;
    } else {
        SecretRecord::forget(storage, name, &old_id).await?;
    }
    Ok(None)
}
