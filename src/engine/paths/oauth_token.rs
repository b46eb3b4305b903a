//! `oauth/token/<role>`: an access token as a lease whose TTL is the token's real remaining
//! life (from Qlik's `expires_in`, anchored at the answer, the tenant clock's skew applied),
//! at most the role's `ttl` and the mount's max. The lease's end revokes a token of its own at
//! Qlik (`/oauth/revoke`); a shared token is not revoked by one lease. Renewal extends the
//! lease up to the token's life, never past it.

use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::engine::api_key::config;
use crate::engine::chain::named::Named;
use crate::engine::chain::node_role;
use crate::engine::chain::time::ttl_until;
use crate::engine::oauth::client::ClientRecord;
use crate::engine::oauth::roles::TokenRole;
use crate::engine::oauth::rotation;
use crate::engine::oauth::tokens::{self, IssuedToken};
use crate::engine::{QlikBackend, Route, secret_types};
use crate::framework::{
    FieldKind, FieldSpec, Lease, LeaseOperation, LeaseRequest, Operation, OperationSpec, PathSpec,
    Request, RequestError, Response,
};
use crate::qlik::ErrorKind;

static FIELDS: &[FieldSpec] =
    &[FieldSpec::new("name", FieldKind::String, "The token role.").in_path()];

static RESPONSE: &[FieldSpec] = &[
    FieldSpec::new("access_token", FieldKind::String, "The bearer token."),
    FieldSpec::new("token_type", FieldKind::String, "bearer."),
    FieldSpec::new(
        "expires_at",
        FieldKind::String,
        "When Qlik expires the token (RFC 3339, the tenant's clock).",
    ),
    FieldSpec::new(
        "scopes",
        FieldKind::String,
        "The granted scopes, space-separated.",
    ),
    FieldSpec::new("client_id", FieldKind::String, "The OAuth client."),
    FieldSpec::new(
        "shared",
        FieldKind::Bool,
        "Whether readers of the role share this token.",
    ),
];

/// `oauth/token/<name>`.
pub const PATH: PathSpec<Route> = PathSpec {
    route: Route::OAuthToken,
    pattern: "oauth/token/{name}",
    fields: FIELDS,
    operations: &[
        OperationSpec::new(Operation::Read, "An access token of the role, as a lease.")
            .returns(RESPONSE)
            .leased(),
    ],
    existence_check: false,
    synopsis: "An access token of an OAuth role, as a lease whose TTL is the token's real life.",
    description: "\
Gets an access token from Qlik for the role's client, grant and scopes (or, for a shared role, \
the cached one) and answers with it as a lease whose TTL is the token's real remaining life, \
capped by the role's ttl and the mount's max. The lease's end revokes the token at Qlik, \
unless the role is shared.",
};

pub(crate) async fn handle(
    backend: &QlikBackend,
    request: Request<Route>,
) -> Result<Response, RequestError> {
    if request.operation != Operation::Read {
        return Err(RequestError::UnsupportedOperation);
    }
    // A standby cannot keep the lease: the read-only error makes the server forward.
    node_role::require_active(&backend.role, backend.storage.as_ref()).await?;
    let storage = backend.storage.as_ref();
    let name = request.data.str("name").unwrap_or_default().to_string();
    let Some(role) = TokenRole::load(storage, &name).await? else {
        return Err(RequestError::bad_request(format!(
            "no OAuth role {name:?} in this mount (vault list <mount>/oauth/roles shows them)"
        )));
    };
    let Some(client) = ClientRecord::load(storage, &role.client).await? else {
        return Err(RequestError::bad_request(format!(
            "the role's OAuth client {:?} is gone; write oauth/clients/{} again",
            role.client, role.client
        )));
    };
    let config = config::require(backend).await?;
    let qlik = backend.oauth_qlik(&config, &role.client, &client.client_id)?;
    let doing = "getting an access token";
    let got = if role.shared {
        let fingerprint = tokens::fingerprint(&client, &role);
        backend
            .oauth
            .shared
            .get_or_refresh(&name, &fingerprint, || tokens::get(&qlik, &client, &role))
            .await
            .inspect(|(token, called)| {
                if *called {
                    tracing::info!(role = %name, client = %role.client, expires_at = %token.expires_at, "shared OAuth token got");
                }
            })
            .map(|(token, _)| token)
    } else {
        tokens::get(&qlik, &client, &role).await
    };
    let token = match got {
        Ok(token) => token,
        Err(error) => {
            let refused = token_error(&error, &role.client, doing);
            if error.kind() == ErrorKind::InvalidClient {
                // The chain is broken now: `status` says so at once, not at the next rotation
                // (with `manage_with=api_key`, or a 30-day period, that could be weeks away).
                rotation::record_refusal(backend, &role.client, &client.secret, &refused).await;
            }
            return Err(refused);
        }
    };
    backend
        .metrics()
        .oauth_token_issued(&role.client, role.shared);
    let mut ttl = ttl_until(token.dies_at);
    if let Some(cap) = role.ttl {
        ttl = ttl.min(cap.as_std());
    }
    if let Ok(max) = backend.system.max_lease_ttl().await
        && max.as_secs() > 0
    {
        ttl = ttl.min(max);
    }
    Ok(Response {
        data: Some(token_data(&token, &client, role.shared)),
        lease: Some(Lease {
            kind: secret_types::OAUTH_TOKEN,
            ttl,
            // The server caps a renewal at the lease's issue time plus this: the token's life.
            max_ttl: Some(ttl_until(token.dies_at)),
            renewable: true,
            internal: internal(&name, &role, &client, &token),
        }),
        ..Default::default()
    })
}

fn token_data(token: &IssuedToken, client: &ClientRecord, shared: bool) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("access_token".into(), json!(token.token.expose_secret()));
    data.insert("token_type".into(), json!(token.token_type));
    data.insert("expires_at".into(), json!(token.expires_at.to_string()));
    data.insert("scopes".into(), json!(token.scopes));
    data.insert("client_id".into(), json!(client.client_id));
    data.insert("shared".into(), json!(shared));
    data
}

/// What the lease's end and renewal need: the token itself only when the lease revokes it.
fn internal(
    role_name: &str,
    role: &TokenRole,
    client: &ClientRecord,
    token: &IssuedToken,
) -> Map<String, Value> {
    let mut internal = Map::new();
    internal.insert("role".into(), json!(role_name));
    internal.insert("client".into(), json!(role.client));
    internal.insert("client_id".into(), json!(client.client_id));
    internal.insert("dies_at".into(), json!(token.dies_at.to_string()));
    internal.insert("shared".into(), json!(role.shared));
    if let Some(ttl) = role.ttl {
        internal.insert("role_ttl_secs".into(), json!(ttl.as_secs()));
    }
    if !role.shared {
        internal.insert("token".into(), json!(token.token.expose_secret()));
    }
    internal
}

fn token_error(error: &crate::qlik::QlikError, client: &str, doing: &str) -> RequestError {
    match error.kind() {
        ErrorKind::InvalidClient => RequestError::bad_request(format!(
            "{doing}: Qlik refuses the stored secret of OAuth client {client:?} \
             (invalid_client): write a valid one to oauth/clients/{client}. Qlik said: {error}"
        )),
        _ => crate::engine::tenant::qlik_error(error, doing),
    }
}

/// The end or renewal of a token lease.
pub(crate) async fn lease(
    backend: &QlikBackend,
    op: LeaseOperation,
    lease: LeaseRequest,
) -> Result<Response, RequestError> {
    let text = |name: &str| lease.internal.get(name).and_then(Value::as_str);
    let dies_at: Timestamp = text("dies_at")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| RequestError::Internal("token lease without dies_at".into()))?;
    if op == LeaseOperation::Renew {
        if dies_at <= Timestamp::now() {
            return Err(RequestError::bad_request(
                "the access token has expired: read oauth/token/<role> again for a new one",
            ));
        }
        let mut ttl = ttl_until(dies_at);
        if let Some(cap) = lease.internal.get("role_ttl_secs").and_then(Value::as_u64) {
            ttl = ttl.min(std::time::Duration::from_secs(cap));
        }
        // The server computes the renewed TTL from the increment asked for, capped at the
        // lease's issue time plus the max TTL: the max TTL is what keeps it within the
        // token's life.
        let issued: Timestamp = lease
            .issue_time
            .and_then(|t| Timestamp::try_from(t).ok())
            .unwrap_or_else(Timestamp::now);
        let max_ttl = std::time::Duration::from_secs(
            u64::try_from(dies_at.duration_since(issued).as_secs())
                .unwrap_or(1)
                .max(1),
        );
        return Ok(Response {
            lease: Some(Lease {
                kind: secret_types::OAUTH_TOKEN,
                ttl,
                max_ttl: Some(max_ttl),
                renewable: true,
                internal: lease.internal.clone(),
            }),
            ..Default::default()
        });
    }
    let Some(token) = text("token") else {
        // A shared token: one lease's end does not revoke it.
        return Ok(Response::empty());
    };
    if dies_at <= Timestamp::now() {
        return Ok(Response::empty());
    }
    let (Some(client_name), Some(client_id)) = (text("client"), text("client_id")) else {
        return Err(RequestError::Internal(
            "token lease without its client".into(),
        ));
    };
    let storage = backend.storage.as_ref();
    let client = ClientRecord::load(storage, client_name).await?;
    let (Some(client), Some(config)) = (client, config::load(backend).await?) else {
        tracing::warn!(client = %client_name, "OAuth client or config gone: the token is left to expire at Qlik");
        return Ok(Response::empty());
    };
    if client.client_id != client_id {
        tracing::warn!(client = %client_name, "OAuth client now names another client id: the token is left to expire at Qlik");
        return Ok(Response::empty());
    }
    let qlik = backend.oauth_qlik(&config, client_name, client_id)?;
    let token = secrecy::SecretString::from(token.to_string());
    match qlik.oauth_revoke(client_id, &client.secret, &token).await {
        Ok(()) => {
            tracing::info!(client = %client_name, "OAuth token revoked at Qlik");
            Ok(Response::empty())
        }
        Err(error) if error.kind() == ErrorKind::InvalidClient => {
            tracing::warn!(client = %client_name, %error, "Qlik refuses the client's secret for the revocation: the token is left to expire at Qlik");
            Ok(Response::empty())
        }
        Err(error) => Err(crate::engine::tenant::qlik_error(
            &error,
            "revoking the access token at Qlik (the server retries)",
        )),
    }
}
