//! The harness's modules depend on each other in one direction only: reading every `crate::`
//! path in `src/`, the graph of top-level modules has no cycle, so each module can be read (and
//! changed) knowing only the ones below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its code names through `crate::` (test modules
/// included: a test-only cycle is a cycle to a reader too).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src/");
            let first = relative.components().next().expect("a file name");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if module == "lib" {
                continue;
            }
            let code = std::fs::read_to_string(&path).expect("source is readable");
            let targets = graph.entry(module.clone()).or_default();
            for line in code.lines() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        Some(group) => group
                            .split(['}', ','])
                            .map(|item| item.trim().split("::").next().unwrap_or(""))
                            .collect(),
                        None => vec![rest
                            .split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                            .unwrap_or("")],
                    };
                    for name in names {
                        let is_module = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
                        if is_module && name != module {
                            targets.insert(name.to_string());
                        }
                    }
                }
            }
        }
    }
    graph
}

/// A cycle through `from`, if there is one (depth-first search).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let current = path.last().cloned().unwrap_or_default();
        for next in graph.get(&current).into_iter().flatten() {
            if *next == path[0] {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_string()];
    walk(graph, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = module_graph();
    assert!(
        graph.contains_key("hostcalls") && graph.contains_key("state"),
        "{graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|module| cycle_from(&graph, module))
        .map(|cycle| cycle.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}
