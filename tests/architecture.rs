//! The shape of the code, checked: the top-level modules of `src/` form no import circle (read
//! from the code, not its comments), and no file of `src/`, `macros/` or `grammar/` passes 500
//! lines. docs/how-it-works.md has the map of the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Each top-level module of `src/` and the modules its code names as `crate::<module>`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "lib")
        .collect();
    let mut graph = BTreeMap::new();
    for m in &modules {
        let path = src.join(m);
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![src.join(format!("{m}.rs"))]
        };
        let mut uses = BTreeSet::new();
        for f in files {
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for (i, _) in line.match_indices("crate::") {
                    let name: String = line[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if modules.contains(&name) && name != *m {
                        uses.insert(name);
                    }
                }
            }
        }
        graph.insert(m.clone(), uses);
    }
    graph
}

#[test]
fn the_top_level_modules_form_no_import_circle() {
    let graph = module_graph();
    // Depth-first search for a path that comes back to where it started.
    fn back_to(
        start: &str,
        at: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in &graph[at] {
            path.push(next.clone());
            if next == start
                || (seen.insert(next.clone()) && back_to(start, next, graph, path, seen))
            {
                return true;
            }
            path.pop();
        }
        false
    }
    for m in graph.keys() {
        let mut path = vec![m.clone()];
        assert!(
            !back_to(m, m, &graph, &mut path, &mut BTreeSet::new()),
            "import circle: {}",
            path.join(" -> ")
        );
    }
    // The layers named in docs/how-it-works.md: the bottom ones import nothing of nstest.
    for leaf in ["sys", "settings", "reexec", "protocol"] {
        assert_eq!(
            graph[leaf],
            BTreeSet::new(),
            "{leaf} imports {:?}",
            graph[leaf]
        );
    }
}

#[test]
fn no_file_passes_500_lines() {
    for dir in ["src", "macros/src", "grammar/src"] {
        for f in rust_files(&root().join(dir)) {
            let lines = std::fs::read_to_string(&f).unwrap().lines().count();
            assert!(lines <= 500, "{} has {lines} lines", f.display());
        }
    }
}
