//! The filter's modules depend on each other in one direction only, along a request's data flow
//! (facts -> identity -> decide -> rewrite -> record, the shared vocabulary beneath, the compiled
//! policy, the evaluation, the session, the request path and the glue above): read from the
//! `use crate::` paths of the sources, at the level of the top modules and of their children, the
//! dependency graph has no cycle.

// Slicing a path known to have `depth` segments.
#![allow(clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

#[test]
fn the_top_modules_depend_on_each_other_without_cycles() {
    let graph = dependencies(1);
    assert!(graph.len() >= 10, "too few modules found: {graph:?}");
    assert_eq!(cycle(&graph), None, "{}", describe(&graph));
}

#[test]
fn the_modules_within_each_top_module_depend_on_each_other_without_cycles() {
    let graph = dependencies(2);
    assert_eq!(cycle(&graph), None, "{}", describe(&graph));
}

#[test]
fn the_first_stages_know_nothing_of_the_later_ones() {
    let graph = dependencies(1);
    let uses = |from: &str, to: &str| {
        graph
            .get(&vec![from.to_owned()])
            .is_some_and(|targets| targets.contains(&vec![to.to_owned()]))
    };
    for (stage, later) in [
        (
            "facts",
            &["identity", "decide", "rewrite", "record", "policy"][..],
        ),
        ("identity", &["decide", "rewrite", "record", "policy"]),
        ("decide", &["rewrite", "record", "policy"]),
        ("rewrite", &["record", "policy"]),
        // Above the stages: one request is evaluated, then the request path acts on it.
        ("evaluate", &["session", "request"]),
        ("session", &["request"]),
    ] {
        for later in later {
            assert!(!uses(stage, later), "{stage} uses {later}");
        }
    }
}

/// Module -> the modules it names through `crate::` paths, both cut to their first `depth`
/// segments; a dependency is kept only between modules of the same parent.
fn dependencies(depth: usize) -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    for file in rust_files(&src) {
        let module = module_path(&src, &file);
        // Unit tests may reach anywhere; the layout is about the code they test. A module's tests
        // and the tests' helpers live in `tests` and `test_support` modules, or after its
        // `#[cfg(test)]`.
        if module
            .iter()
            .any(|segment| segment == "tests" || segment == "test_support")
        {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap_or_default();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or_default();
            for (start, _) in line.match_indices("crate::") {
                let path: Vec<String> = line[start + "crate::".len()..]
                    .split("::")
                    .map(|segment| {
                        segment
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'
                            })
                            .collect::<String>()
                    })
                    .take_while(|segment| !segment.is_empty())
                    .collect();
                let from: Vec<String> = module.iter().take(depth).cloned().collect();
                let to: Vec<String> = path.iter().take(depth).cloned().collect();
                let same_parent = from.len() == depth
                    && to.len() == depth
                    && from[..depth - 1] == to[..depth - 1];
                if same_parent && from != to {
                    graph.entry(from).or_default().insert(to);
                }
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// `src/identity/x509/mod.rs` -> `[identity, x509]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut path: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if path
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        path.pop();
    }
    path
}

/// A cycle of the graph, if it has one (depth-first search).
fn cycle(graph: &Graph) -> Option<Vec<Vec<String>>> {
    fn visit(
        graph: &Graph,
        node: &Vec<String>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(position) = stack.iter().position(|on_stack| on_stack == node) {
            return Some(stack[position..].to_vec());
        }
        if !done.insert(node.clone()) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

fn describe(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(from, to)| {
            let to: Vec<String> = to.iter().map(|module| module.join("::")).collect();
            format!("{} -> {}", from.join("::"), to.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
