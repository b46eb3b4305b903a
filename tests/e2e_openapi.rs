//! The OpenAPI document a client generator reads (`GET /v1/sys/internal/specs/openapi`, as the
//! server serves it, after it has merged the plugin's document) documents every path of the
//! mount completely: every operation has a summary, a description and a 2xx response with a
//! schema (or an explicit no-content), every request and response field has a type and a
//! description, every path parameter is described.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{DevServer, Setup, mounted_server, no_rate_limits};
use vault_plugin_secrets_qlik::engine::PATHS;
use vault_plugin_secrets_qlik::framework::Operation;

/// Checks an inline object schema: properties with a type and a description, arrays with items.
fn check_object(schema: &Value, at: &str, problems: &mut Vec<String>) {
    if schema.get("$ref").is_some() || schema.as_object().is_none_or(|o| o.is_empty()) {
        problems.push(format!(
            "{at}: empty schema or a $ref (the server drops $ref): {schema}"
        ));
        return;
    }
    if schema["type"] != "object" {
        problems.push(format!("{at}: type is not object: {schema}"));
    }
    let Some(properties) = schema["properties"].as_object().filter(|p| !p.is_empty()) else {
        problems.push(format!("{at}: no properties: {schema}"));
        return;
    };
    for (name, property) in properties {
        let kind = property["type"].as_str().unwrap_or("");
        if !["string", "integer", "boolean", "array", "object"].contains(&kind) {
            problems.push(format!("{at}.{name}: no type: {property}"));
        }
        if kind == "array" && property["items"]["type"].as_str().is_none() {
            problems.push(format!("{at}.{name}: array without item type: {property}"));
        }
        if property["description"]
            .as_str()
            .is_none_or(|d| d.trim().is_empty())
        {
            problems.push(format!("{at}.{name}: no description"));
        }
    }
}

#[test]
fn every_operation_and_field_of_the_mount_is_documented() {
    let Some(server) = DevServer::start() else {
        return;
    };
    server.enable("qlik");
    let out = server.ok(&["read", "-format=json", "sys/internal/specs/openapi"]);
    let doc: Value = serde_json::from_str(&out).expect("OpenAPI JSON");
    let doc = if doc.get("paths").is_some() {
        doc
    } else {
        doc["data"].clone()
    };
    let paths = doc["paths"].as_object().expect("paths");

    // Exactly the engine's paths, under the mount.
    let served: BTreeSet<&str> = paths
        .keys()
        .filter(|p| p.starts_with("/qlik/"))
        .map(String::as_str)
        .collect();
    let expected: Vec<String> = PATHS
        .iter()
        .map(|p| format!("/qlik/{}", p.pattern))
        .collect();
    let expected_set: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(served, expected_set, "paths of the qlik mount");

    let mut problems = Vec::new();
    let mut operation_ids = BTreeSet::new();
    for spec in PATHS {
        let path = format!("/qlik/{}", spec.pattern);
        let item = &paths[&path];
        if item["description"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{path}: no description"));
        }
        // Path parameters.
        for segment in spec.pattern.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let described = item["parameters"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p["name"] == name
                            && p["in"] == "path"
                            && p["description"].as_str().is_some_and(|d| !d.is_empty())
                    })
                });
                if !described {
                    problems.push(format!("{path}: path parameter {name} not described"));
                }
            }
        }
        // The methods the engine's operations map to, and nothing else.
        let mut methods = BTreeSet::new();
        for op in spec.operations {
            methods.insert(match op.op {
                Operation::Read | Operation::List => "get",
                Operation::Create | Operation::Update => "post",
                Operation::Delete => "delete",
                Operation::Patch => "patch",
            });
        }
        let documented: BTreeSet<&str> = ["get", "post", "delete", "patch", "put"]
            .into_iter()
            .filter(|m| item.get(*m).is_some())
            .collect();
        if documented != methods {
            problems.push(format!(
                "{path}: methods {documented:?}, engine has {methods:?}"
            ));
        }
        for method in &documented {
            let op = &item[*method];
            let at = format!("{method} {path}");
            for key in ["summary", "description", "operationId"] {
                if op[key].as_str().is_none_or(|s| s.trim().is_empty()) {
                    problems.push(format!("{at}: no {key}"));
                }
            }
            if let Some(id) = op["operationId"].as_str()
                && !operation_ids.insert(id.to_string())
            {
                problems.push(format!("{at}: duplicate operationId {id}"));
            }
            let responses = op["responses"].as_object().cloned().unwrap_or_default();
            let success: Vec<(&String, &Value)> = responses
                .iter()
                .filter(|(code, _)| code.starts_with('2'))
                .collect();
            if success.is_empty() {
                problems.push(format!("{at}: no 2xx response"));
            }
            for (code, response) in success {
                if response["description"].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{at} {code}: no description"));
                }
                match code.as_str() {
                    "204" => {
                        if response.get("content").is_some() {
                            problems.push(format!("{at} 204 has content"));
                        }
                    }
                    _ => check_object(
                        &response["content"]["application/json"]["schema"],
                        &format!("{at} {code}"),
                        &mut problems,
                    ),
                }
            }
            // Request bodies: every field the engine takes from the body, described.
            let body_fields: Vec<&str> = spec
                .fields
                .iter()
                .filter(|f| !f.in_path)
                .map(|f| f.name)
                .collect();
            if *method == "post" && !body_fields.is_empty() {
                let schema = &op["requestBody"]["content"]["application/json"]["schema"];
                check_object(schema, &format!("{at} request"), &mut problems);
                let properties: BTreeSet<&str> = schema["properties"]
                    .as_object()
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let fields: BTreeSet<&str> = body_fields.iter().copied().collect();
                if properties != fields {
                    problems.push(format!(
                        "{at} request: properties {properties:?}, fields {fields:?}"
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "OpenAPI gaps for the qlik mount:\n{}",
        problems.join("\n")
    );
}

/// The documented properties of the 2xx response of `method path` (OpenAPI path).
fn documented(doc: &Value, path: &str, method: &str) -> BTreeSet<String> {
    let responses = &doc["paths"][path][method]["responses"];
    let schema = &responses["200"]["content"]["application/json"]["schema"];
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_field_the_engine_returns_is_documented() {
    let Some(Setup { fake, server }) = mounted_server(no_rate_limits()).await else {
        return;
    };
    let (status, doc) = server.http("GET", "sys/internal/specs/openapi", None).await;
    assert_eq!(status, 200);
    let config = serde_json::json!({
        "tenant_url": fake.url.as_str().trim_end_matches('/'),
        "api_key": fake.service.api_key,
        "ca_cert": fake.ca_pem,
    });
    let (status, body) = server.http("POST", "qlik/config", Some(config)).await;
    assert!(status == 204 || status == 200, "{status} {body}");
    let (status, body) = server
        .http(
            "POST",
            "qlik/roles/app",
            Some(serde_json::json!({"expiry": "PT1H"})),
        )
        .await;
    assert!(status == 204 || status == 200, "{status} {body}");

    // Every operation that answers with data, as a client calls it.
    let calls: Vec<(&str, String, &str)> = vec![
        ("POST", "qlik/rotate".into(), "/qlik/rotate"),
        ("GET", "qlik/config".into(), "/qlik/config"),
        ("GET", "qlik/key".into(), "/qlik/key"),
        ("GET", "qlik/creds/app".into(), "/qlik/creds/{name}"),
        ("GET", "qlik/roles/app".into(), "/qlik/roles/{name}"),
        ("LIST", "qlik/roles/".into(), "/qlik/roles/"),
        ("LIST", "qlik/keys/".into(), "/qlik/keys/"),
        ("POST", "qlik/tidy".into(), "/qlik/tidy"),
        ("GET", "qlik/status".into(), "/qlik/status"),
    ];
    let mut problems = Vec::new();
    for (method, path, openapi_path) in calls {
        problems.extend(undocumented(&server, &doc, method, &path, openapi_path).await);
    }
    // A key record: the stored key, which the calls above leave in place.
    let (_, config) = server.http("GET", "qlik/config", None).await;
    let id = config["data"]["key_id"].as_str().expect("key_id");
    let path = format!("qlik/keys/{id}");
    problems.extend(undocumented(&server, &doc, "GET", &path, "/qlik/keys/{id}").await);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Calls `method path` and names the fields of its `data` that the OpenAPI document lacks.
async fn undocumented(
    server: &DevServer,
    doc: &Value,
    method: &str,
    path: &str,
    openapi_path: &str,
) -> Option<String> {
    let body = (method == "POST").then(|| serde_json::json!({}));
    let (status, answer) = server.http(method, path, body).await;
    assert_eq!(status, 200, "{method} {path}: {answer}");
    let returned: BTreeSet<String> = answer["data"]
        .as_object()
        .expect("data")
        .keys()
        .cloned()
        .collect();
    let openapi_method = if method == "GET" || method == "LIST" {
        "get"
    } else {
        "post"
    };
    let documented = documented(doc, openapi_path, openapi_method);
    let missing: Vec<&String> = returned.difference(&documented).collect();
    (!missing.is_empty()).then(|| format!("{method} {path}: undocumented fields {missing:?}"))
}
