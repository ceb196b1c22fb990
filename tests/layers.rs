//! The shape of `src/`: every `crate::` import points down a layer, so
//! the code reads in one direction, from the socket up to the application.
//!
//! Run `cargo test --test layers -- --nocapture` to see the module graph
//! (each module and what it imports) and the longest functions.
//!
//! The graph is read from the source text, as a reader would: the `use
//! crate::…` and `super::…` paths of each file, outside its tests (a
//! module's tests sit at its bottom, after `#[cfg(test)]`) and comments.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The layers, from the bottom. A module may import from a lower layer,
/// or from its own top-level module (`app::chat` from `app`), never from a
/// layer above or from a neighbour in its own layer.
const LAYERS: [(&str, &[&str]); 6] = [
    (
        "leaves",
        &["config", "json", "time", "random", "tap", "budget"],
    ),
    ("http", &["http"]),
    ("protocols", &["sse", "websocket", "static_files", "redis"]),
    (
        "broadcast, inspection, clients",
        &["hub", "inspect", "client"],
    ),
    ("application", &["app"]),
    ("server", &["server"]),
];

/// The layer of a module; a module in none is shown above them all (and
/// fails the test), so the graph of any checkout can be printed.
fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or(module);
    LAYERS
        .iter()
        .position(|(_, members)| members.contains(&top))
        .unwrap_or(LAYERS.len())
}

fn layer_name(layer: usize) -> &'static str {
    LAYERS.get(layer).map_or("in no layer", |(name, _)| name)
}

/// Every library module (not `main`, `lib` or `bin/`), by path: `app::chat`.
fn modules() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    collect(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path(),
        "",
        &mut found,
    );
    found
}

fn collect(dir: &Path, prefix: &str, found: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if prefix.is_empty() && name == "bin" {
                continue; // the programs sit above the library
            }
            collect(&path, &join(prefix, &name), found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = match name.as_str() {
                "mod" => prefix.to_string(),
                "lib" | "main" if prefix.is_empty() => continue,
                _ => join(prefix, &name),
            };
            found.insert(module, fs::read_to_string(&path).unwrap());
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}::{name}")
    }
}

/// The code of a file without its tests and comments.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names: `crate::a::b` and `super::c`, with groups
/// (`use crate::{a, b::{c, d}}`) expanded, each made absolute.
fn paths_named(module: &str, code: &str) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut out = Vec::new();
    for (root, base) in [("crate::", String::new()), ("super::", parent.to_string())] {
        let mut rest = code;
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().last();
            rest = &rest[at + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // part of a longer name
            }
            expand(&base, rest, &mut out);
        }
    }
    out
}

/// Reads one path (or group of paths) at the start of `text`.
fn expand(base: &str, text: &str, out: &mut Vec<String>) {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    let path = text[..end].trim_end_matches(':');
    let full = match (base.is_empty(), path.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => path.to_string(),
        (false, false) => format!("{base}::{path}"),
    };
    if text[end..].starts_with('{') && text[..end].ends_with("::") || text.starts_with('{') {
        let open = end;
        let mut depth = 0;
        let mut close = open;
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                close = open + i;
                break;
            }
        }
        for item in split_top_level(&text[open + 1..close]) {
            let item = item.trim();
            if item == "self" {
                out.push(full.clone());
            } else if !item.is_empty() {
                expand(&full, item, out);
            }
        }
    } else if !full.is_empty() {
        out.push(full);
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The module a path lands in: the longest module name it starts with.
fn resolve<'a>(path: &str, modules: &'a BTreeMap<String, String>) -> Option<&'a str> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|m| modules.get_key_value(&m).map(|(k, _)| k.as_str()))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let mut graph = BTreeMap::new();
    for (module, text) in &modules {
        let mut edges = BTreeSet::new();
        for path in paths_named(module, &code_of(text)) {
            if let Some(target) = resolve(&path, &modules) {
                // A module's own children are its business.
                if target != module && !target.starts_with(&format!("{module}::")) {
                    edges.insert(target.to_string());
                }
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        trail: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in &graph[at] {
            if next == start {
                trail.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                trail.push(next.clone());
                if walk(graph, start, next, trail, seen) {
                    return true;
                }
                trail.pop();
            }
        }
        false
    }
    let mut trail = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut trail, &mut seen).then_some(trail)
}

#[test]
fn every_import_points_down_a_layer_and_there_is_no_cycle() {
    let graph = graph();
    println!("The module graph (module -> what it imports), top layer first:");
    for layer in (0..=LAYERS.len()).rev() {
        let members: Vec<_> = graph.iter().filter(|(m, _)| layer_of(m) == layer).collect();
        if members.is_empty() {
            continue;
        }
        println!("  [{}]", layer_name(layer));
        for (module, edges) in members {
            let list: Vec<&str> = edges.iter().map(String::as_str).collect();
            let list = if list.is_empty() {
                "-".into()
            } else {
                list.join(", ")
            };
            println!("    {module} -> {list}");
        }
    }
    let cycles: BTreeSet<Vec<String>> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|mut cycle| {
            // The same cycle seen from each of its modules, once.
            cycle.pop();
            let first = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
            cycle.rotate_left(first);
            cycle
        })
        .collect();
    for cycle in &cycles {
        println!("  cycle: {} -> {}", cycle.join(" -> "), cycle[0]);
    }
    let mut wrong = Vec::new();
    for (module, edges) in &graph {
        for target in edges {
            let same_top = module.split("::").next() == target.split("::").next();
            let down = layer_of(target) < layer_of(module);
            if !down && !same_top || layer_of(module) == LAYERS.len() {
                wrong.push(format!(
                    "{module} ({}) imports {target} ({})",
                    layer_name(layer_of(module)),
                    layer_name(layer_of(target))
                ));
            }
        }
    }
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    println!(
        "modules {}, imports {edges}, cycles {}",
        graph.len(),
        cycles.len()
    );
    assert!(cycles.is_empty(), "the module graph has a cycle");
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_groups_nested_paths_and_super() {
    let mut modules = BTreeMap::new();
    for m in [
        "app",
        "app::chat",
        "hub",
        "websocket",
        "websocket::frame",
        "json",
    ] {
        modules.insert(m.to_string(), String::new());
    }
    let code = "use super::{chat, App};\nuse crate::{hub::Hub, websocket::{frame::OpCode}};\n\
                // use crate::json;\nfn f() { crate::json::parse(b\"\"); }";
    let named: BTreeSet<&str> = paths_named("app::upgrade", &code_of(code))
        .iter()
        .filter_map(|p| resolve(p, &modules))
        .collect();
    assert_eq!(
        named,
        BTreeSet::from(["app", "app::chat", "hub", "websocket::frame", "json"])
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycle_from(&graph, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}

/// Functions a reader has to hold in their head at once: none over this.
const LONGEST_FUNCTION: usize = 75;

#[test]
fn no_function_is_longer_than_a_screen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut lengths = Vec::new();
    let mut files = Vec::new();
    list_files(&root, &mut files);
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let lines: Vec<&str> = code.lines().collect();
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        for (at, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let Some(rest) = ["pub fn ", "pub(crate) fn ", "fn "]
                .iter()
                .find_map(|start| trimmed.strip_prefix(start))
            else {
                continue;
            };
            if line.trim_end().ends_with(';') || line.trim_end().ends_with("{}") {
                continue; // a declaration, or an empty default body
            }
            let indent = &line[..line.len() - trimmed.len()];
            let closing = format!("{indent}}}");
            let Some(end) = lines[at..].iter().position(|l| *l == closing) else {
                continue;
            };
            let function = rest.split(['(', '<']).next().unwrap_or(rest);
            lengths.push((end + 1, format!("src/{name}: {function}")));
        }
    }
    lengths.sort_by(|a, b| b.cmp(a));
    println!("The longest functions (lines, outside tests):");
    for (n, name) in lengths.iter().take(10) {
        println!("  {n:4}  {name}");
    }
    let too_long: Vec<String> = lengths
        .iter()
        .filter(|(n, _)| *n > LONGEST_FUNCTION)
        .map(|(n, name)| format!("{name}: {n} lines"))
        .collect();
    assert!(
        too_long.is_empty(),
        "split these where a reader would want a name for a part:\n{}",
        too_long.join("\n")
    );
}

fn list_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            list_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
