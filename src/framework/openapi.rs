//! `help` answers: markdown for `path-help`, and OpenAPI 3 documents for the server's
//! `sys/internal/specs/openapi` (which asks the root help of every mount: it must never fail).

use serde_json::{Map, Value, json};

use super::field::{FieldKind, FieldSpec};
use super::path::{Operation, OperationSpec, PathSpec};

/// The markdown help of one path.
pub fn path_help<R: 'static>(spec: &PathSpec<R>) -> String {
    let mut text = format!(
        "Request:        {}\nMatching Route: ^{}$\n\n",
        spec.pattern, spec.pattern
    );
    text.push_str(spec.synopsis);
    text.push_str("\n\n## PARAMETERS\n\n");
    let mut any = false;
    for field in spec.fields {
        any = true;
        text.push_str(&format!(
            "{}\n    ({}{}{})\n    {}\n",
            field.name,
            kind_name(field.kind),
            if field.required {
                ", required on create"
            } else {
                ""
            },
            field
                .default
                .map(|d| format!(", default: {d}"))
                .unwrap_or_default(),
            field.description,
        ));
        if field.sensitive {
            text.push_str("    Write-only: never returned.\n");
        }
        text.push('\n');
    }
    if !any {
        text.push_str("(none)\n\n");
    }
    text.push_str("## OPERATIONS\n\n");
    for op in spec.operations {
        text.push_str(&format!(
            "{:<8} {}{}\n",
            op.op.wire_name(),
            op.summary,
            if op.lease { " (returns a lease)" } else { "" }
        ));
    }
    text.push_str("\n## DESCRIPTION\n\n");
    text.push_str(spec.description);
    text.push('\n');
    text
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::String => "string",
        FieldKind::Text => "string (multi-line)",
        FieldKind::Bool => "bool",
        FieldKind::Int => "int",
        FieldKind::Duration => "duration: ISO 8601, Vault style or seconds",
        FieldKind::StringList => "list of strings",
        FieldKind::Object => "object",
    }
}

/// The root help text: the backend's description and an index of its paths.
pub fn root_help<R: 'static>(backend_help: &str, paths: &[PathSpec<R>]) -> String {
    let mut text = String::from(backend_help.trim_end());
    text.push_str("\n\n## PATHS\n\n");
    for spec in paths {
        text.push_str(&format!(
            "    ^{}$\n        {}\n\n",
            spec.pattern, spec.synopsis
        ));
    }
    text
}

fn schema_of(field: &FieldSpec) -> Value {
    let mut schema = json!({
        "type": field.kind.openapi_type(),
        "description": field.description,
    });
    match field.kind {
        FieldKind::Duration => schema["format"] = json!("duration"),
        FieldKind::StringList => schema["items"] = json!({ "type": "string" }),
        _ => {}
    }
    if let Some(default) = field.default {
        schema["x-vault-default-doc"] = json!(default);
    }
    if field.sensitive {
        schema["writeOnly"] = json!(true);
        schema["x-vault-displayAttrs"] = json!({ "sensitive": true });
    }
    schema
}

fn object_schema(fields: &[&FieldSpec]) -> Value {
    let mut properties = Map::new();
    for field in fields {
        properties.insert(field.name.to_string(), schema_of(field));
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut schema = json!({ "type": "object", "properties": properties });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// `roles/{name}` → `roles-name`.
fn kebab(pattern: &str) -> String {
    pattern
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Adds one path's OpenAPI entry. Schemas are inline: no `components` (see `response_doc`).
fn add_path<R: 'static>(spec: &PathSpec<R>, prefix: &str, paths: &mut Map<String, Value>) {
    let body_fields: Vec<&FieldSpec> = spec.fields.iter().filter(|f| !f.in_path).collect();
    let path_params: Vec<Value> = spec
        .fields
        .iter()
        .filter(|f| f.in_path)
        .map(|f| {
            json!({
                "name": f.name, "in": "path", "required": true,
                "description": f.description, "schema": { "type": "string" },
            })
        })
        .collect();
    let mut item = Map::new();
    item.insert("description".into(), json!(spec.synopsis));
    if !path_params.is_empty() {
        item.insert("parameters".into(), json!(path_params));
    }
    let kebab = kebab(spec.pattern);
    let mut post_ops: Vec<&OperationSpec> = Vec::new();
    for op in spec.operations {
        match op.op {
            Operation::Create | Operation::Update => post_ops.push(op),
            Operation::Read | Operation::List | Operation::Delete | Operation::Patch => {
                let method = match op.op {
                    Operation::Delete => "delete",
                    Operation::Patch => "patch",
                    _ => "get",
                };
                let verb = match op.op {
                    Operation::Read => "read",
                    Operation::List => "list",
                    Operation::Delete => "delete",
                    _ => "patch",
                };
                let mut operation = json!({
                    "summary": op.summary,
                    "description": spec.description,
                    "operationId": format!("{prefix}-{verb}-{kebab}"),
                    "tags": ["secrets"],
                    "responses": response_doc(op),
                });
                if op.op == Operation::List {
                    operation["parameters"] = json!([{
                        "name": "list", "in": "query", "required": true,
                        "description": "Must be set to `true`",
                        "schema": { "type": "string", "enum": ["true"] },
                    }]);
                }
                item.insert(method.into(), operation);
            }
        }
    }
    if let Some(first) = post_ops.first() {
        let summary = post_ops
            .iter()
            .map(|o| o.summary)
            .collect::<Vec<_>>()
            .join(" / ");
        let mut operation = json!({
            "summary": summary,
            "description": spec.description,
            "operationId": format!("{prefix}-write-{kebab}"),
            "tags": ["secrets"],
            "responses": response_doc(first),
        });
        if !body_fields.is_empty() {
            // Inline, not a `$ref`: the server decodes a plugin's document into Go structs
            // whose `$ref` field has no decoding tag, so a reference would arrive empty.
            operation["requestBody"] = json!({
                "required": body_fields.iter().any(|f| f.required),
                "content": { "application/json": { "schema": object_schema(&body_fields) } },
            });
        }
        item.insert("post".into(), operation);
        if post_ops.iter().any(|o| o.op == Operation::Create) {
            item.insert("x-vault-createSupported".into(), json!(true));
        }
    }
    paths.insert(format!("/{}", spec.pattern), Value::Object(item));
}

fn response_doc(op: &OperationSpec) -> Value {
    if op.response.is_empty() {
        let (code, text) = match op.op {
            Operation::Delete | Operation::Create | Operation::Update => ("204", "OK, no content"),
            _ => ("200", "OK"),
        };
        return json!({ code: { "description": text } });
    }
    let fields: Vec<&FieldSpec> = op.response.iter().collect();
    let description = if op.lease {
        "OK: a lease (`lease_id`, `lease_duration` = the key's remaining life in seconds, \
         `renewable` = false); `data` holds these fields"
    } else {
        "OK: `data` holds these fields"
    };
    // Inline, like the request bodies (see there).
    json!({ "200": {
        "description": description,
        "content": { "application/json": { "schema": object_schema(&fields) } },
    }})
}

/// The OpenAPI document for `paths`. `prefix` is the request/response name prefix the server
/// passes (`requestResponsePrefix`), e.g. the mount type.
pub fn document<'a, R: 'static>(
    title: &str,
    description: &str,
    version: &str,
    prefix: &str,
    paths: impl IntoIterator<Item = &'a PathSpec<R>>,
) -> Value {
    let mut out_paths = Map::new();
    for spec in paths {
        add_path(spec, prefix, &mut out_paths);
    }
    json!({
        "openapi": "3.0.2",
        "info": {
            "title": title,
            "description": description,
            "version": version,
            "license": { "name": "Mozilla Public License 2.0", "url": "https://www.mozilla.org/en-US/MPL/2.0" },
        },
        "paths": out_paths,
        "components": { "schemas": {} },
    })
}
