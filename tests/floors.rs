//! The engine's floors (`docs/design.md` §1) hold: a module imports only from its own floor or
//! the floors below, `chain` and `tenant` never see the mount (`QlikBackend`), and no two
//! modules import each other, directly or round a circle. Read from the source text (code
//! only: comments and tests are left out), so a new import that breaks a floor fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A floor's number; `engine` is the top (the mount and the dispatcher).
fn floor(name: &str) -> Option<u8> {
    match name {
        "chain" => Some(1),
        "tenant" => Some(2),
        "api_key" | "oauth" => Some(3),
        "paths" => Some(4),
        _ => None,
    }
}

/// The code of a file: no comment lines, nothing from `#[cfg(test)]` on.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `floor::module` → the `floor::module` (or `engine::item`) names it refers to.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut graph = BTreeMap::new();
    for dir in std::fs::read_dir(&root).expect("src/engine") {
        let dir = dir.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        let floor_name = dir.file_name().and_then(|n| n.to_str()).expect("name");
        for file in std::fs::read_dir(&dir).expect("floor") {
            let file = file.expect("file").path();
            let module = file.file_stem().and_then(|n| n.to_str()).expect("stem");
            let text = code(&std::fs::read_to_string(&file).expect("read"));
            let mut refs = BTreeSet::new();
            for (prefix, base) in [("crate::engine::", None), ("super::", Some(floor_name))] {
                for (at, _) in text.match_indices(prefix) {
                    // `super::` inside a longer path (`super::super::`) is the top.
                    if base.is_some() && text[..at].ends_with("::") {
                        continue;
                    }
                    let rest = &text[at + prefix.len()..];
                    let names: Vec<&str> = rest
                        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                        .next()
                        .unwrap_or_default()
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .collect();
                    let target = match (base, names.as_slice()) {
                        (Some(base), [first, ..]) => format!("{base}::{first}"),
                        (None, [first, second, ..]) if floor(first).is_some() => {
                            format!("{first}::{second}")
                        }
                        (None, [first, ..]) => format!("engine::{first}"),
                        _ => continue,
                    };
                    refs.insert(target);
                }
            }
            refs.remove(&format!("{floor_name}::{module}"));
            graph.insert(format!("{floor_name}::{module}"), refs);
        }
    }
    graph
}

#[test]
fn every_module_imports_only_from_its_floor_or_below() {
    let graph = graph();
    assert!(graph.contains_key("chain::records"), "{graph:?}");
    let mut broken = Vec::new();
    for (module, refs) in &graph {
        let own = floor(module.split("::").next().unwrap_or_default()).expect("floor");
        for target in refs {
            let top = target.split("::").next().unwrap_or_default();
            let up = match floor(top) {
                Some(f) => f > own,
                // The mount handle and the route enum: only the kinds and the paths see them.
                None => own < 3,
            };
            if up {
                broken.push(format!("{module} -> {target}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports from a higher floor: {broken:#?}"
    );
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let graph = graph();
    // Depth-first search for a back edge among modules of the floors.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            // `floor::mod` is the floor's own module file; a reference to a floor item
            // (`chain::Rotating`) is a reference to it.
            let next = if graph.contains_key(next) {
                next.clone()
            } else {
                let floor = next.split("::").next().unwrap_or_default();
                format!("{floor}::mod")
            };
            if graph.contains_key(&next)
                && let Some(circle) = visit(&next, graph, path, done)
            {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!(
                "modules import each other in a circle: {}",
                circle.join(" -> ")
            );
        }
    }
}
