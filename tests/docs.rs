//! The README and `docs/` stay true to the code: the field tables of `docs/api.md` (the same
//! fields in the same order as the engine declares them, with their defaults, types and
//! marks), the example files shown verbatim, every repository file and relative link they name,
//! and every `bao` command they show on the mount (a path of the engine, an operation it
//! serves, fields it takes). The README stays at most 200 lines.

use std::path::Path;

use vault_plugin_secrets_qlik::engine::paths::config;

/// A file of the repository, read at test time.
fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The pages users read: the README and every page of `docs/` (relative path, text).
fn pages() -> Vec<(String, String)> {
    let mut names: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"))
            .expect("docs/")
            .flatten()
            .map(|e| format!("docs/{}", e.file_name().to_string_lossy()))
            .filter(|n| n.ends_with(".md"))
            .collect();
    names.sort();
    names.insert(0, "README.md".to_string());
    names
        .into_iter()
        .map(|n| {
            let t = read(&n);
            (n, t)
        })
        .collect()
}

/// The text between `<!-- NAME:start -->` and `<!-- NAME:end -->` of `docs/api.md`.
fn api_table(name: &str) -> String {
    let api = read("docs/api.md");
    let start = api
        .find(&format!("<!-- {name}:start -->"))
        .unwrap_or_else(|| panic!("docs/api.md has the {name}:start marker"));
    let end = api
        .find(&format!("<!-- {name}:end -->"))
        .unwrap_or_else(|| panic!("docs/api.md has the {name}:end marker"));
    api[start..end].to_string()
}

fn config_table() -> Vec<(String, String)> {
    api_table("config-fields")
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let (name, _) = rest.split_once('`')?;
            Some((name.to_string(), line.to_string()))
        })
        .collect()
}

#[test]
fn api_config_table_matches_the_code() {
    let rows = config_table();
    let documented: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    let code: Vec<&str> = config::PATH.fields.iter().map(|f| f.name).collect();
    assert_eq!(
        documented, code,
        "docs/api.md config table vs src/engine/paths/config.rs"
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

/// Rows of `docs/api.md`'s `path-fields` table: (path, field, whole row).
fn path_fields_table() -> Vec<(String, String, String)> {
    api_table("path-fields")
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
fn api_path_fields_table_matches_the_code() {
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
        "docs/api.md path-fields table vs the engine's paths"
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

/// The docs show the example policies and agent templates exactly as the files the end-to-end
/// tests load, each on the page that explains it.
#[test]
fn docs_show_the_tested_example_files_verbatim() {
    for (page, file) in [
        (
            "docs/applications.md",
            "examples/policies/qlik-operator.hcl",
        ),
        ("docs/applications.md", "examples/policies/qlik-app-key.hcl"),
        (
            "docs/applications.md",
            "examples/policies/qlik-app-reporting.hcl",
        ),
        (
            "docs/applications.md",
            "examples/policies/qlik-app-oauth.hcl",
        ),
        (
            "docs/monitoring.md",
            "examples/policies/qlik-monitoring.hcl",
        ),
        ("docs/applications.md", "examples/agent/qlik-key.ctmpl"),
        (
            "docs/applications.md",
            "examples/agent/qlik-oauth-token.ctmpl",
        ),
    ] {
        let text = read(file);
        assert!(
            read(page).contains(&text),
            "{page} does not show {file} as it is:\n{text}"
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
fn every_repository_file_the_docs_name_exists() {
    let files = repo_file_names();
    let mut scanned = 0;
    for (page, text) in pages() {
        let named = repo_paths_named(&text);
        let missing: Vec<&String> = named.iter().filter(|p| !exists_in_repo(p)).collect();
        assert!(
            missing.is_empty(),
            "{page} names files that are not in the repository: {missing:?}"
        );
        let bare = bare_files_named(&text);
        let missing: Vec<&String> = bare.iter().filter(|f| !files.contains(*f)).collect();
        assert!(
            missing.is_empty(),
            "{page} names files that are not in the repository: {missing:?}"
        );
        scanned += named.len() + bare.len();
    }
    assert!(
        scanned > 100,
        "the scan finds the docs' file names: {scanned}"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces as
/// `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown page's headings (outside code blocks); a repeated heading gets
/// `-1`, `-2`, … as on GitHub.
fn anchors(text: &str) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut out = std::collections::BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        // An explicit anchor: `<a id="states"></a>`.
        for attribute in ["<a id=\"", "<a name=\""] {
            if let Some(rest) = line.split(attribute).nth(1)
                && let Some((id, _)) = rest.split_once('"')
            {
                out.insert(id.to_string());
            }
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if fenced {
            continue;
        }
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(heading);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The relative links of a markdown page (`[text](target)`, outside code blocks).
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                links.push(target.to_string());
            }
            rest = &rest[end..];
        }
    }
    links
}

#[test]
fn every_relative_link_reaches_a_file_and_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = pages();
    for extra in ["CHANGELOG.md", "SECURITY.md"] {
        if root.join(extra).exists() {
            pages.push((extra.to_string(), read(extra)));
        }
    }
    let mut checked = 0;
    for (page, text) in &pages {
        let dir = Path::new(page).parent().unwrap_or(Path::new(""));
        for link in relative_links(text) {
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                let joined = dir.join(file);
                let mut parts: Vec<&str> = Vec::new();
                for part in joined.to_str().unwrap_or_default().split('/') {
                    match part {
                        ".." => {
                            parts.pop();
                        }
                        "." | "" => {}
                        p => parts.push(p),
                    }
                }
                parts.join("/")
            };
            assert!(
                root.join(&target).exists(),
                "{page}: the link ({link}) reaches no file ({target})"
            );
            if !anchor.is_empty() {
                let headings = anchors(&read(&target));
                assert!(
                    headings.contains(anchor),
                    "{page}: the link ({link}) names no heading of {target}; it has {headings:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "the scan finds the docs' links: {checked}");
}

#[test]
fn anchors_are_githubs() {
    let page = "# T\n## `status`: the chain's health\n```\n## not a heading\n```\n## Qlik's limits\n## A b\n## A b\n";
    let got = anchors(page);
    for want in [
        "t",
        "status-the-chains-health",
        "qliks-limits",
        "a-b",
        "a-b-1",
    ] {
        assert!(got.contains(want), "{want} in {got:?}");
    }
    assert!(!got.contains("not-a-heading"));
    assert_eq!(
        relative_links("see [a](docs/a.md#x) and [b](https://h/x), `[c](c.md)`"),
        ["docs/a.md#x", "c.md"]
    );
}

/// The `bao` commands of a page's code blocks that address the `qlik/` mount:
/// (subcommand, path below the mount, field names given as `name=value`), continuation lines
/// joined and pipelines, `&&`, `;` and `$(…)` split.
fn mount_commands(text: &str) -> Vec<(String, String, Vec<String>)> {
    let mut commands = Vec::new();
    let mut fenced = false;
    let mut joined = String::new();
    // A `$ command` of a shell session whose output ends in `[exit N]` is shown failing on
    // purpose (bad input and its error): not a command to check.
    let lines: Vec<&str> = text.lines().collect();
    let mut failing = std::collections::BTreeSet::new();
    for (index, line) in lines.iter().enumerate() {
        if !line.starts_with("$ ") {
            continue;
        }
        let output = lines[index + 1..]
            .iter()
            .take_while(|l| !l.starts_with("$ ") && !l.starts_with("```"));
        if output.clone().any(|l| l.starts_with("[exit ")) {
            failing.insert(index);
        }
    }
    for (index, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        let line = line.trim();
        if failing.contains(&index) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            continue;
        }
        joined.push_str(line);
        let command_line = std::mem::take(&mut joined);
        let command_line = command_line.split(" # ").next().unwrap_or_default();
        for segment in command_line.split(['|', ';', '&', '(', ')', '`']) {
            let mut words = segment.split_whitespace().skip_while(|w| {
                w.contains('=') && !w.starts_with('-') && !w.contains('/') || *w == "$"
            });
            if words.next() != Some("bao") {
                continue;
            }
            let Some(sub) = words.next() else { continue };
            if !["read", "write", "list", "delete", "patch"].contains(&sub) {
                continue;
            }
            let mut words = words.skip_while(|w| w.starts_with('-'));
            let Some(path) = words.next() else { continue };
            let Some(below) = path.trim_matches(['"', '\'']).strip_prefix("qlik/") else {
                continue;
            };
            let fields = words
                .filter_map(|w| w.split_once('=').map(|(k, _)| k.to_string()))
                .collect();
            commands.push((sub.to_string(), below.to_string(), fields));
        }
    }
    commands
}

#[test]
fn every_bao_command_on_the_mount_is_a_path_operation_and_fields_of_the_engine() {
    use vault_plugin_secrets_qlik::engine::PATHS;
    use vault_plugin_secrets_qlik::framework::Operation;
    let mut checked = 0;
    for (page, text) in pages() {
        if page == "docs/design.md" {
            continue;
        }
        for (sub, below, fields) in mount_commands(&text) {
            // Placeholders (`<name>`, `…`, `$ROLE`) stand for a name.
            let mut path = String::new();
            for segment in below.split('/') {
                if !path.is_empty() {
                    path.push('/');
                }
                if segment.contains(['<', '…', '$', '"']) {
                    path.push('x');
                } else {
                    path.push_str(segment);
                }
            }
            let (path, ops): (String, &[Operation]) = match sub.as_str() {
                "read" => (path, &[Operation::Read]),
                "write" => (path, &[Operation::Create, Operation::Update]),
                "patch" => (path, &[Operation::Patch]),
                "delete" => (path, &[Operation::Delete]),
                _ => (
                    format!("{}/", path.trim_end_matches('/')),
                    &[Operation::List],
                ),
            };
            let spec = PATHS
                .iter()
                .find(|p| {
                    p.matches(&path).is_some() && ops.iter().any(|op| p.operation(*op).is_some())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{page}: `bao {sub} qlik/{below}` is no path and operation of the engine"
                    )
                });
            for field in &fields {
                assert!(
                    spec.fields.iter().any(|f| f.name == field && !f.in_path),
                    "{page}: `bao {sub} qlik/{below}` gives {field}=, which {} does not take",
                    spec.pattern
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "the scan finds the docs' commands: {checked}");
}

#[test]
fn the_command_scan_reads_commands_as_a_shell_would() {
    let page = "```sh\nbao write qlik/config tenant_url=https://t api_key=@k.txt   # c\n\
                x=$(bao read -format=json qlik/oauth/token/<role> | jq)\n\
                BAO_ADDR=a bao list -ns=team-a qlik/keys && bao read qlik2/key\n\
                bao write -force \\\n    qlik/rotate revoke_previous=true\n```\nbao read qlik/outside\n\
                ```shell-session\n$ bao write qlik/config rotate_befor=1\nError\n[exit 2]\n\
                $ bao read qlik/status\n{}\n```\n";
    let got = mount_commands(page);
    let want = [
        ("write", "config", vec!["tenant_url", "api_key"]),
        ("read", "oauth/token/<role>", vec![]),
        ("list", "keys", vec![]),
        ("write", "rotate", vec!["revoke_previous"]),
        ("read", "status", vec![]),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((sub, path, fields), (s, p, f)) in got.iter().zip(want) {
        assert_eq!((sub.as_str(), path.as_str()), (s, p));
        assert_eq!(fields, &f);
    }
}

#[test]
fn the_readme_is_short() {
    let lines = read("README.md").lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; the issue asks for at most 200"
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

/// Every example alert names its runbook (`runbook_url`), and that heading exists.
#[test]
fn every_example_alert_has_a_runbook() {
    let rules = read("examples/monitoring/qlik-alerts.yml");
    let alerts = rules.matches("- alert: ").count();
    let urls: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .map(|u| u.trim_matches('"'))
        .collect();
    assert!(alerts >= 5, "the example alerts: {alerts}");
    assert_eq!(urls.len(), alerts, "one runbook_url per alert: {urls:?}");
    for url in urls {
        let (file, anchor) = url.split_once('#').expect("file#anchor");
        assert!(
            anchors(&read(file)).contains(anchor),
            "{url}: no such heading in {file}"
        );
    }
}
