//! What the compiler cannot see of the layers, checked from the `use` lines and
//! `crate::`/`super::` paths of both crates against the code map in ARCHITECTURE.md. The pure
//! core is its own crate, `rw-core`, which cannot import the worker crate or an IO crate
//! (the compiler refuses); inside each crate:
//!
//! - every module of `crates/core/src` is in the code map's pure core table, every module of
//!   `src/` in its IO or wiring table, once, and every module the tables name exists;
//! - no module of the worker crate imports from the wiring when it is IO;
//! - no two modules import each other, directly or around a circle, and neither do the folders
//!   (`resume/`, `pipeline/`, …) taken as one.
//!
//! Test code is left out: the files `tests.rs`, `*_tests.rs`, `testutil.rs` and an inline
//! `#[cfg(test)] mod … { … }`, which ends its file by the house rule this test also checks.
//! Run it alone with `cargo test --test layers`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: [&str; 3] = ["pure core", "IO", "wiring"];

/// The crates: the pure core, and the worker (IO and the wiring) above it.
const CORE: &str = "crates/core/src";
const WORKER: &str = "src";

/// A module path without `crate::`, e.g. `resume::rule`; the crate root is "".
type Module = String;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `src/resume/rule.rs` → `resume::rule`, `src/resume/mod.rs` → `resume`, `src/lib.rs` → "".
fn module_of(rel: &Path) -> Module {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_name().unwrap().to_string_lossy();
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// A crate's library source files (`src` is [`CORE`] or [`WORKER`]) by module, test files and
/// the binaries left out.
fn library_files(src: &str) -> BTreeMap<Module, String> {
    let src = root().join(src);
    let mut out = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(&src).unwrap().to_owned();
            if path.is_dir() {
                if rel != Path::new("bin") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && rel != Path::new("main.rs") && !is_test_file(&rel)
            {
                out.insert(module_of(&rel), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

/// The code without comments and without its inline test module, which must end the file.
fn production_code(module: &str, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (i, pair) in lines.windows(2).enumerate() {
        if pair[0].trim() == "#[cfg(test)]" && pair[1].starts_with("mod ") && pair[1].trim_end().ends_with('{') {
            assert_eq!(lines.last().map(|l| l.trim()), Some("}"), "{module}: its inline test module must end the file");
            end = i;
            break;
        }
    }
    lines[..end]
        .iter()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| l.split(" // ").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a `use` tree or an inline path names, from `text` at `i` (just after `prefix::`):
/// `a::b::C`, `{a::{b, c}, d}`, expanded.
fn paths_at(text: &[char], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        if text.get(i) == Some(&'{') {
            i += 1;
            loop {
                while text.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                    i += 1;
                }
                if text.get(i) == Some(&'}') {
                    return i + 1;
                }
                i = paths_at(text, i, path.clone(), out);
            }
        }
        let start = i;
        while text.get(i).copied().is_some_and(is_ident) {
            i += 1;
        }
        if i == start {
            out.push(path);
            return i;
        }
        path.push(text[start..i].iter().collect());
        if text.get(i) == Some(&':') && text.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// Every module path `code` (the code of `module`) reaches by `crate::`, `super::` or `self::`.
fn referenced(module: &str, code: &str) -> Vec<Vec<String>> {
    let text: Vec<char> = code.chars().collect();
    let here: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let before_ok = i == 0 || !is_ident(text[i - 1]) && text[i - 1] != ':';
        let rest: String = text[i..text.len().min(i + 7)].iter().collect();
        let base = if !before_ok {
            None
        } else if rest.starts_with("crate::") {
            Some((7, Vec::new()))
        } else if rest.starts_with("super::") {
            // A file `a/b.rs` is module `a::b`; its `super` is `a`.
            Some((7, here[..here.len().saturating_sub(1)].to_vec()))
        } else if rest.starts_with("self::") {
            Some((6, here.clone()))
        } else {
            None
        };
        match base {
            Some((skip, prefix)) => i = paths_at(&text, i + skip, prefix, &mut out),
            None => i += 1,
        }
    }
    out
}

/// The longest known module a path starts with.
fn resolve(path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains(m))
}

/// The code map of the crate in `src` ([`CORE`], or [`WORKER`]): module → layer, from
/// ARCHITECTURE.md's three tables (the first is the core crate's, the others the worker's).
fn code_map(src: &str) -> BTreeMap<Module, usize> {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let section = doc.split("\n## Code map").nth(1).expect("ARCHITECTURE.md has a code map");
    let section = section.split("\n## ").next().unwrap();
    let mut layer = None;
    let mut map = BTreeMap::new();
    for line in section.lines() {
        if let Some(n) = LAYERS.iter().position(|l| line.to_lowercase().starts_with(&l.to_lowercase())) {
            layer = Some(n);
        } else if line.starts_with("| `") {
            let layer = layer.expect("a table under a layer's heading");
            if (layer == 0) != (src == CORE) {
                continue;
            }
            let cell = line.split(" | ").next().unwrap();
            for name in cell.split('`').skip(1).step_by(2) {
                if name.ends_with(".rs") {
                    continue; // main.rs and the binaries: users of the library, not in it
                }
                assert!(map.insert(name.to_owned(), layer).is_none(), "{name} is in the code map twice");
            }
        }
    }
    map
}

/// One circle in `edges`, if there is any.
fn circle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        node: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, bool>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let from = stack.iter().position(|m| m == node).unwrap();
                let mut c = stack[from..].to_vec();
                c.push(node.clone());
                return Some(c);
            }
            None => {}
        }
        state.insert(node.clone(), false);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(node.clone(), true);
        None
    }
    let mut state = BTreeMap::new();
    edges.keys().find_map(|n| visit(n, edges, &mut state, &mut Vec::new()))
}

/// Module → the modules it imports from (itself, its own children and the crate root left out).
fn import_graph(src: &str) -> BTreeMap<Module, BTreeSet<Module>> {
    let files = library_files(src);
    let modules: BTreeSet<Module> = files.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (module, text) in &files {
        let targets: BTreeSet<Module> = referenced(module, &production_code(module, text))
            .iter()
            .filter_map(|p| resolve(p, &modules))
            .filter(|t| t != module && !t.starts_with(&format!("{module}::")) && !module.is_empty())
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

#[test]
fn the_code_map_names_every_module_once() {
    for src in [CORE, WORKER] {
        let map = code_map(src);
        let files = library_files(src);
        for module in files.keys().filter(|m| !m.is_empty()) {
            assert!(map.contains_key(module), "{src}: module {module} is not in ARCHITECTURE.md's code map");
        }
        for module in map.keys() {
            assert!(
                files.contains_key(module),
                "ARCHITECTURE.md's code map names {module}, which is not a module of {src}/"
            );
        }
    }
}

#[test]
fn no_import_runs_back_up_the_layers() {
    let map = code_map(WORKER);
    let mut upward = Vec::new();
    for (from, targets) in import_graph(WORKER) {
        let Some(&own) = map.get(&from) else { continue };
        for to in targets.iter().filter(|t| map.get(*t).is_some_and(|&l| l > own)) {
            upward.push(format!("{from} ({}) imports {to} ({})", LAYERS[own], LAYERS[map[to]]));
        }
    }
    assert!(upward.is_empty(), "imports that run back up:\n{}", upward.join("\n"));
}

#[test]
fn no_modules_import_each_other() {
    for src in [CORE, WORKER] {
        if let Some(c) = circle(&import_graph(src)) {
            panic!("{src}: modules in a circle: {}", c.join(" → "));
        }
    }
}

#[test]
fn no_folders_import_each_other() {
    let folder = |m: &str| m.split("::").next().unwrap().to_owned();
    for src in [CORE, WORKER] {
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (from, targets) in import_graph(src) {
            let f = folder(&from);
            let entry = edges.entry(f.clone()).or_default();
            entry.extend(targets.iter().map(|t| folder(t)).filter(|t| *t != f));
        }
        if let Some(c) = circle(&edges) {
            panic!("{src}: folders in a circle: {}", c.join(" → "));
        }
    }
}

/// The checker itself, on code whose imports are known.
#[test]
fn the_checker_reads_use_trees_and_finds_circles() {
    let code = "use crate::{a::{B, c::D}, e};\nfn f() { crate::g::h(); super::i::J; }\n// crate::k::l\n";
    let got: Vec<String> = referenced("x::y", &production_code("x::y", code)).iter().map(|p| p.join("::")).collect();
    assert_eq!(got, ["a::B", "a::c::D", "e", "g::h", "x::i::J"]);
    let modules: BTreeSet<Module> = ["a", "a::c", "x::i"].map(String::from).into();
    assert_eq!(resolve(&["a".into(), "c".into(), "D".into()], &modules).as_deref(), Some("a::c"));
    let edges: BTreeMap<Module, BTreeSet<Module>> =
        [("a", "b"), ("b", "c"), ("c", "a")].iter().map(|(f, t)| (f.to_string(), [t.to_string()].into())).collect();
    assert_eq!(circle(&edges).unwrap().len(), 4);
    let edges: BTreeMap<Module, BTreeSet<Module>> =
        [("a", "b"), ("b", "c")].iter().map(|(f, t)| (f.to_string(), [t.to_string()].into())).collect();
    assert_eq!(circle(&edges), None);
}

/// What holds the core below the rest is its dependencies: with no Kafka client, database
/// driver, HTTP stack or IO runtime among them, an import of one there does not compile. The
/// list is closed: a dependency added to `crates/core` must be added here, as a decision.
#[test]
fn the_core_crate_depends_on_no_io_crate() {
    const PURE: [&str; 18] = [
        "base64",
        "bytes",
        "chrono",
        // Kafka's record batch: its checksum and codecs (src/recordbatch.rs), bytes in and out.
        "crc32c",
        "flate2",
        "futures",
        "lz4",
        "memchr",
        "percent-encoding",
        "serde",
        "sha2",
        "snap",
        "sonic-rs",
        "strsim",
        "thiserror",
        "tokio",
        "uuid",
        "zstd",
    ];
    let manifest = std::fs::read_to_string(root().join("crates/core/Cargo.toml")).unwrap();
    let deps = manifest.split("\n[dependencies]\n").nth(1).expect("[dependencies]").split("\n[").next().unwrap();
    let mut names = Vec::new();
    for line in deps.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name = line.split([' ', '=']).next().unwrap();
        assert!(PURE.contains(&name), "crates/core depends on {name}, which is not on the list of pure crates");
        if name == "tokio" {
            // tokio's channels only (it has no default features): no `net`, `fs`, `io-util`,
            // `process`, `rt`, `time`.
            assert!(
                line.contains(r#"features = ["sync"]"#),
                "crates/core takes tokio with more than its channels: {line}"
            );
        }
        names.push(name);
    }
    assert!(names.contains(&"tokio") && names.len() >= 10, "the list was read: {names:?}");
}
