//! The shape of the code: no two modules under `src/` import each other, directly or
//! in a circle, so each can be read and changed knowing only what it imports.
//!
//! Each `.rs` file is a module (`mod.rs` its folder's). A module's imports are the
//! `crate::`, `super::` and `self::` paths it names, resolved to the longest module
//! path that exists. A parent naming its own children is not an import (it owns
//! them); a child naming its parent is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every module under `src/`, by path, with its file.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("reading src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            found.insert(module, path);
        }
    }
    found
}

/// The text without line comments (doc comments name paths that are not imports).
fn code_of(text: &str) -> String {
    text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The paths `module` names: `crate::a::b`, `super::c`, and the items of
/// `use crate::a::{b, c::d}` groups.
fn named_paths(module: &Module, code: &str) -> Vec<Module> {
    let mut paths = Vec::new();
    let tokens: Vec<char> = code.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut at = 0;
    while at < tokens.len() {
        let rest: String = tokens[at..tokens.len().min(at + 8)].iter().collect();
        let base = ["crate::", "super::", "self::"].into_iter().find(|b| rest.starts_with(b));
        let starts_word = at == 0 || !ident(tokens[at - 1]);
        let Some(base) = base.filter(|_| starts_word) else {
            at += 1;
            continue;
        };
        at += base.len();
        let mut prefix: Module = match base {
            "crate::" => Vec::new(),
            "super::" => module[..module.len().saturating_sub(1)].to_vec(),
            _ => module.clone(),
        };
        loop {
            let start = at;
            while at < tokens.len() && ident(tokens[at]) {
                at += 1;
            }
            let segment: String = tokens[start..at].iter().collect();
            if segment == "super" {
                prefix.pop();
            } else if !segment.is_empty() {
                prefix.push(segment);
            }
            let group_start = if tokens[at..].starts_with(&[':', ':', '{']) {
                Some(at + 3)
            } else if tokens[at..].starts_with(&['{']) {
                Some(at + 1)
            } else {
                None
            };
            if let Some(group_start) = group_start {
                // A group: each item is a path below the prefix.
                let end = tokens[at..].iter().position(|c| *c == '}').map_or(tokens.len(), |p| at + p);
                let group: String = tokens[group_start..end].iter().collect();
                for item in group.split(',') {
                    let first = item.trim().split("::").next().unwrap_or_default().trim();
                    let mut path = prefix.clone();
                    if !first.is_empty() && first != "self" && first.chars().all(ident) {
                        path.push(first.to_owned());
                    }
                    paths.push(path);
                }
                at = end;
                break;
            }
            if tokens[at..].starts_with(&[':', ':']) {
                at += 2;
                continue;
            }
            paths.push(prefix);
            break;
        }
    }
    paths
}

/// The longest module that `path` starts with.
fn resolve(path: &Module, known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| known.contains_key(m))
}

/// The import graph: module → modules it imports (its own descendants left out).
fn imports(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let known = modules(src);
    let mut graph = BTreeMap::new();
    for (module, file) in &known {
        let code = code_of(&std::fs::read_to_string(file).expect("reading a module"));
        let targets = named_paths(module, &code)
            .iter()
            .filter_map(|path| resolve(path, &known))
            .filter(|target| target != module && !target.starts_with(module))
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

/// A circle of imports, if there is one: depth-first search for an edge back to a
/// module still on the path.
fn find_circle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        module: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        path: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut circle = path[start..].to_vec();
            circle.push(module.clone());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.clone());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

fn show(circle: &[Module]) -> String {
    circle.iter().map(|m| if m.is_empty() { "crate".to_owned() } else { m.join("::") }).collect::<Vec<_>>().join(" → ")
}

#[test]
fn no_two_modules_import_each_other_directly_or_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    assert!(graph.len() > 50, "the modules under src/ were found: {}", graph.len());
    if let Some(circle) = find_circle(&graph) {
        panic!("modules import each other in a circle: {}", show(&circle));
    }
}

#[test]
fn no_two_top_level_parts_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut parts: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, targets) in imports(&src) {
        let Some(part) = module.first() else { continue };
        for target in targets.iter().filter_map(|t| t.first()).filter(|t| *t != part) {
            parts.entry(vec![part.clone()]).or_default().insert(vec![target.clone()]);
        }
    }
    if let Some(circle) = find_circle(&parts) {
        panic!("parts of folio import each other in a circle: {}", show(&circle));
    }
}

/// The checker finds what it must: a circle of three, and a child naming its parent
/// while the parent imports the child's sibling that names the parent back.
#[test]
fn the_checker_finds_circles_and_ignores_a_parent_owning_its_children() {
    let module = |path: &str| path.split("::").map(str::to_owned).collect::<Module>();
    let mut graph = BTreeMap::new();
    graph.insert(module("a"), BTreeSet::from([module("b")]));
    graph.insert(module("b"), BTreeSet::from([module("c")]));
    graph.insert(module("c"), BTreeSet::from([module("a")]));
    assert_eq!(show(&find_circle(&graph).unwrap()), "a → b → c → a");
    graph.insert(module("c"), BTreeSet::new());
    assert_eq!(find_circle(&graph), None);

    let named = named_paths(
        &module("cluster::job"),
        "use super::context::{Context, Error};\nlet x = crate::lifecycle::status::cut(y);\nuse super::{ledger, webhooks};",
    );
    assert_eq!(
        named,
        [
            module("cluster::context::Context"),
            module("cluster::context::Error"),
            module("lifecycle::status::cut"),
            module("cluster::ledger"),
            module("cluster::webhooks"),
        ]
    );
}
