//! The README's `config` field table stays true to the code: the same fields in the same
//! order, each row carrying the field's documented default, "required" and "write-only" marks.

use vault_plugin_secrets_qlik::engine::config;

fn config_table() -> Vec<(String, String)> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("<!-- config-fields:start -->")
        .expect("README has the config-fields:start marker");
    let end = readme
        .find("<!-- config-fields:end -->")
        .expect("README has the config-fields:end marker");
    readme[start..end]
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let (name, _) = rest.split_once('`')?;
            Some((name.to_string(), line.to_string()))
        })
        .collect()
}

#[test]
fn readme_config_table_matches_the_code() {
    let rows = config_table();
    let documented: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    let code: Vec<&str> = config::PATH.fields.iter().map(|f| f.name).collect();
    assert_eq!(
        documented, code,
        "README config table vs src/engine/config.rs"
    );
    for (field, (_, row)) in config::PATH.fields.iter().zip(&rows) {
        let cells: Vec<&str> = row.split(" | ").collect();
        assert!(cells.len() >= 4, "{row}");
        let (kind, default) = (cells[1], cells[2]);
        if let Some(expected) = field.default {
            assert_eq!(default, expected, "default of {}", field.name);
        }
        assert_eq!(
            default == "required on create",
            field.required,
            "required mark of {}: {row}",
            field.name
        );
        assert_eq!(
            kind.contains("write-only"),
            field.sensitive,
            "write-only mark of {}: {row}",
            field.name
        );
        let kind_word = match field.kind {
            vault_plugin_secrets_qlik::framework::FieldKind::String => "string",
            vault_plugin_secrets_qlik::framework::FieldKind::Text => "PEM text",
            vault_plugin_secrets_qlik::framework::FieldKind::Bool => "bool",
            vault_plugin_secrets_qlik::framework::FieldKind::Int => "int",
            vault_plugin_secrets_qlik::framework::FieldKind::Duration => "duration",
            vault_plugin_secrets_qlik::framework::FieldKind::StringList => "list",
            vault_plugin_secrets_qlik::framework::FieldKind::Object => "object",
        };
        assert!(kind.starts_with(kind_word), "type of {}: {row}", field.name);
    }
}

/// The trimmed cells of a markdown table row.
fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// Rows of the README's `path-fields` table: (path, field, whole row).
fn path_fields_table() -> Vec<(String, String, String)> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("<!-- path-fields:start -->")
        .expect("README has the path-fields:start marker");
    let end = readme
        .find("<!-- path-fields:end -->")
        .expect("README has the path-fields:end marker");
    readme[start..end]
        .lines()
        .filter_map(|line| {
            let cells = cells(line);
            let path = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            let field = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((path.to_string(), field.to_string(), line.to_string()))
        })
        .collect()
}

#[test]
fn readme_path_fields_table_matches_the_code() {
    use vault_plugin_secrets_qlik::engine::PATHS;
    let rows = path_fields_table();
    let documented: Vec<(&str, &str)> = rows
        .iter()
        .map(|(p, f, _)| (p.as_str(), f.as_str()))
        .collect();
    let code: Vec<(&str, &str)> = PATHS
        .iter()
        .filter(|p| p.pattern != "config")
        .flat_map(|p| p.fields.iter().map(|f| (p.pattern, f.name)))
        .collect();
    assert_eq!(
        documented, code,
        "README path-fields table vs the engine's paths"
    );
    let fields = PATHS
        .iter()
        .filter(|p| p.pattern != "config")
        .flat_map(|p| p.fields.iter());
    for (field, (path, _, row)) in fields.zip(&rows) {
        let cells = cells(row);
        let (kind, default) = (cells[2], cells[3]);
        let kind_word = match field.kind {
            vault_plugin_secrets_qlik::framework::FieldKind::String => "string",
            vault_plugin_secrets_qlik::framework::FieldKind::Text => "PEM text",
            vault_plugin_secrets_qlik::framework::FieldKind::Bool => "bool",
            vault_plugin_secrets_qlik::framework::FieldKind::Int => "int",
            vault_plugin_secrets_qlik::framework::FieldKind::Duration => "duration",
            vault_plugin_secrets_qlik::framework::FieldKind::StringList => "list",
            vault_plugin_secrets_qlik::framework::FieldKind::Object => "object",
        };
        assert!(
            kind.starts_with(kind_word),
            "type of {path} {}: {row}",
            field.name
        );
        assert_eq!(
            kind.contains("in the path"),
            field.in_path,
            "path mark of {path} {}: {row}",
            field.name
        );
        assert_eq!(
            default,
            field.default.unwrap_or(""),
            "default of {path} {}: {row}",
            field.name
        );
    }
}

/// The README shows the example policies and the agent template exactly as the files the
/// end-to-end tests load.
#[test]
fn readme_shows_the_tested_example_files_verbatim() {
    let readme = include_str!("../README.md");
    for (name, text) in [
        (
            "examples/policies/qlik-operator.hcl",
            include_str!("../examples/policies/qlik-operator.hcl"),
        ),
        (
            "examples/policies/qlik-app-key.hcl",
            include_str!("../examples/policies/qlik-app-key.hcl"),
        ),
        (
            "examples/policies/qlik-app-reporting.hcl",
            include_str!("../examples/policies/qlik-app-reporting.hcl"),
        ),
        (
            "examples/policies/qlik-monitoring.hcl",
            include_str!("../examples/policies/qlik-monitoring.hcl"),
        ),
        (
            "examples/agent/qlik-key.ctmpl",
            include_str!("../examples/agent/qlik-key.ctmpl"),
        ),
    ] {
        assert!(
            readme.contains(text),
            "README does not show {name} as it is:\n{text}"
        );
    }
}
