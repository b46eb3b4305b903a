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
