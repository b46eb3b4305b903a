//! The README's `config` field table stays true to the code: the same fields in the same
//! order, each row carrying the field's documented default, "required" and "write-only" marks.

use vault_plugin_secrets_qlik::engine::paths::config;

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
        "README config table vs src/engine/paths/config.rs"
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
            "examples/policies/qlik-app-oauth.hcl",
            include_str!("../examples/policies/qlik-app-oauth.hcl"),
        ),
        (
            "examples/agent/qlik-key.ctmpl",
            include_str!("../examples/agent/qlik-key.ctmpl"),
        ),
        (
            "examples/agent/qlik-oauth-token.ctmpl",
            include_str!("../examples/agent/qlik-oauth-token.ctmpl"),
        ),
    ] {
        assert!(
            readme.contains(text),
            "README does not show {name} as it is:\n{text}"
        );
    }
}

/// Top-level folders of the repository whose files the README names (`scripts/…`,
/// `examples/…`, `src/…`, `tests/…`, …). Paths under other words (`dist/`, `target/`, storage
/// keys such as `keys/<id>`, mount paths such as `qlik/config`) are not repository files.
const REPO_DIRS: &[&str] = &[
    "scripts", "examples", "src", "tests", "fuzz", "proto", "docs", ".ci", ".config", ".cargo",
    "benches",
];

/// Repository files the README names: each `DIR/…` word (a run of path characters starting
/// with a [`REPO_DIRS`] folder, not inside another word), without trailing punctuation.
fn repo_paths_named(text: &str) -> Vec<String> {
    let path_char = |c: char| c.is_ascii_alphanumeric() || "_-./*".contains(c);
    let mut found = Vec::new();
    for (at, _) in text.char_indices() {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| path_char(c) || c == '<' || c == ':') {
            continue;
        }
        let rest = &text[at..];
        if !REPO_DIRS
            .iter()
            .any(|dir| rest.starts_with(dir) && rest[dir.len()..].starts_with('/'))
        {
            continue;
        }
        let end = rest.find(|c: char| !path_char(c)).unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches(['.', ',']);
        found.push(path.to_string());
    }
    found
}

/// Whether `path` (relative to the repository; `*` matches within one name) exists.
fn exists_in_repo(path: &str) -> bool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some((dir, name)) = path.trim_end_matches('/').rsplit_once('/') else {
        return root.join(path).exists();
    };
    match name.split_once('*') {
        None => root.join(path).exists(),
        Some((prefix, suffix)) => std::fs::read_dir(root.join(dir)).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let file = e.file_name();
                let file = file.to_string_lossy();
                file.starts_with(prefix) && file.ends_with(suffix) && file.len() >= name.len() - 1
            })
        }),
    }
}

/// Extensions of the repository's own files: a bare file name with one of them (`agent.hcl`,
/// `product.md`) names a file that must be somewhere in the repository.
const REPO_EXTENSIONS: &[&str] = &["md", "rs", "sh", "hcl", "toml", "ctmpl", "proto"];

/// Bare file names (no folder) with a [`REPO_EXTENSIONS`] extension.
fn bare_files_named(text: &str) -> Vec<String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(name_char) {
        let before = rest[..start].chars().next_back();
        let tail = &rest[start..];
        let end = tail.find(|c: char| !name_char(c)).unwrap_or(tail.len());
        let word = tail[..end].trim_end_matches('.');
        let after = tail[end..].chars().next();
        rest = &tail[end..];
        if before.is_some_and(|c| c == '/' || c == '<' || c == ':')
            || after.is_some_and(|c| c == '/' || c == '*' || c == '<')
        {
            continue;
        }
        if let Some((stem, ext)) = word.rsplit_once('.')
            && !stem.is_empty()
            && REPO_EXTENSIONS.contains(&ext)
        {
            found.push(word.to_string());
        }
    }
    found
}

/// File names anywhere in the repository (not `target/`, not `.git/`).
fn repo_file_names() -> std::collections::BTreeSet<String> {
    fn walk(dir: &std::path::Path, names: &mut std::collections::BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if path.is_dir() {
                if name != "target" && name != ".git" {
                    walk(&path, names);
                }
            } else {
                names.insert(name);
            }
        }
    }
    let mut names = std::collections::BTreeSet::new();
    walk(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &mut names);
    names
}

#[test]
fn every_repository_file_the_readme_names_exists() {
    let readme = include_str!("../README.md");
    let named = repo_paths_named(readme);
    assert!(
        named.iter().any(|p| p == "scripts/register.sh") && named.len() > 20,
        "the scan finds the README's paths: {named:?}"
    );
    let missing: Vec<&String> = named.iter().filter(|p| !exists_in_repo(p)).collect();
    assert!(
        missing.is_empty(),
        "the README names files that are not in the repository: {missing:?}"
    );
    let files = repo_file_names();
    let bare = bare_files_named(readme);
    assert!(
        bare.iter().any(|f| f == "agent.hcl"),
        "the scan finds bare file names: {bare:?}"
    );
    let missing: Vec<&String> = bare.iter().filter(|f| !files.contains(*f)).collect();
    assert!(
        missing.is_empty(),
        "the README names files that are not in the repository: {missing:?}"
    );
}

#[test]
fn the_path_scan_finds_paths_and_only_paths() {
    let text = "run `scripts/demo.sh`, see tests/e2e_*.rs and src/engine/config.rs. \
                Not qlik/config, dist/x, keys/<id>, mysrc/a or https://h/src/x.";
    assert_eq!(
        repo_paths_named(text),
        ["scripts/demo.sh", "tests/e2e_*.rs", "src/engine/config.rs"]
    );
    assert_eq!(
        bare_files_named("see `product.md`, agent.hcl and src/x.rs, e2e_*.rs, v0.1.0, a.txt."),
        ["product.md", "agent.hcl"]
    );
    assert!(exists_in_repo("tests/e2e_*.rs"));
    assert!(exists_in_repo("examples/agent/"));
    assert!(!exists_in_repo("tests/nothing_*.rs"));
    assert!(!exists_in_repo("scripts/missing.sh"));
}
