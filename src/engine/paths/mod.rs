//! Floor 4: one module per path family (fields, answers, errors), like mini-redis's commands.
//! They call the credential kinds and the chain; nothing below imports them.

pub mod config;
pub mod creds;
pub mod key;
pub mod keys;
pub mod leases;
pub mod metrics;
pub mod oauth_clients;
pub mod oauth_roles;
pub mod oauth_secrets;
pub mod oauth_token;
pub mod roles;
pub mod rotate;
pub mod status;
pub mod tidy;

use serde_json::{Map, json};

use crate::framework::Response;

/// The answer of a list path: `keys` with the names, or no data when there are none (the
/// server then answers 404, as Vault's list paths do).
pub(crate) fn list_response(names: Vec<String>) -> Response {
    if names.is_empty() {
        return Response::empty();
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(names));
    Response::data(data)
}
