//! The architecture check: the modules of `src/` form layers, and imports only run down them.
//!
//! `docs/layers.txt` lists the top-level modules (`src/<name>.rs` or `src/<name>/`) from the top
//! layer down, one layer per line. Names on one line share a layer; blank lines and `#` comments
//! are ignored. This test fails, listing every problem at once, when
//!
//! - a top-level module is missing from `docs/layers.txt`;
//! - a file imports from a top-level module of a higher layer (the import "runs back up");
//!   imports within one layer are allowed;
//! - imports run in a circle: between top-level modules (within one layer too), or between files.
//!
//! An import is any `crate::…` or `super::…` path, in a `use` item (grouped ones too:
//! `use crate::{a, b::{c, d}}`) or inline (`crate::a::f()`). It names the longest module the path
//! starts with, and that module's file (or its nearest ancestor's). `super` is resolved from the
//! file's module, also inside an inline `mod tests`; a glob `use super::*` and a path built by a
//! macro are not seen. A `mod.rs` naming its own submodules is structure, not an import. Comments
//! are skipped; string literals are read like code.
//!
//! These are the reading rules of the shared `tools/modgraph` script, except that comments are
//! recognised as Rust lexes them (modgraph's regular expressions take the `/*` of `info/*.list` in
//! a `//` comment, or in a string, for the start of a block comment) and that nested groups are
//! resolved below their own prefix (modgraph reads `b::{c}` in a group as `crate::c`).
//!
//! Set `STRATA_LAYERS_FILE` (relative to the crate's root, or absolute) to check against another
//! layers file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

/// A module path below the crate root: `["store", "gc"]` for `src/store/gc.rs`.
type Module = Vec<String>;

/// Files (paths relative to `src/`, like `store/gc.rs`) to the files they import, or top-level
/// modules to the top-level modules they import.
type Edges = BTreeMap<String, BTreeSet<String>>;

/// The top-level "module" of `src/lib.rs` and `src/main.rs`.
const CRATE_ROOT: &str = "(crate root)";

#[test]
fn imports_run_down_the_layers_and_never_in_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layers_path =
        root.join(std::env::var_os("STRATA_LAYERS_FILE").filter(|v| !v.is_empty()).unwrap_or("docs/layers.txt".into()));
    let layers_name = layers_path.strip_prefix(root).unwrap_or(&layers_path).display().to_string();
    let layers = parse_layers(&read_text(&layers_path));
    let graph = Graph::new(&read_sources(&root.join("src")));
    let problems = problems(&graph, &layers, &layers_name);
    assert!(
        problems.is_empty(),
        "the imports of src/ break the layering of {layers_name} ({} problem{}):\n{}\n",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.join("\n")
    );
}

// ---- Reading the files

/// The text of a file (as modgraph does, bytes that are not UTF-8 are replaced).
#[allow(clippy::disallowed_methods)] // std only, no fs-err here: the error names the path by hand
fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every `.rs` file under `src`, as (path relative to `src`, text), sorted by path. Like modgraph,
/// a symbolic link to a folder is not followed.
#[allow(clippy::disallowed_methods)] // std only, no fs-err here: the error names the path by hand
fn read_sources(src: &Path) -> Vec<(String, String)> {
    let mut sources = Vec::new();
    let mut folders = vec![(src.to_path_buf(), String::new())];
    while let Some((dir, rel)) = folders.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let path = entry.path();
            if path.is_dir() {
                if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                    folders.push((path, rel));
                }
            } else if name.ends_with(".rs") {
                sources.push((rel, read_text(&path)));
            }
        }
    }
    sources.sort();
    sources
}

/// The module a file under `src/` defines: `a/b.rs` and `a/b/mod.rs` are `a::b`, and `lib.rs` and
/// `main.rs` the crate root.
fn module_of(file: &str) -> Module {
    let mut module: Module = file.strip_suffix(".rs").unwrap_or(file).split('/').map(String::from).collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        module.pop();
    }
    module
}

// ---- Reading one file: comments out, then the `crate::` and `super::` paths

/// `text` without its comments: `//` to the end of the line (doc comments too) and `/* */` (they
/// nest), each block comment left as a space. A `//` or `/*` in a string or character literal is
/// no comment; the literals themselves are kept.
fn strip_comments(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    // `text[kept..i]` is code still to be copied. Only ASCII bytes start anything, so `i` is a
    // character boundary wherever `text[i..]` is taken.
    let (mut kept, mut i) = (0, 0);
    while i < text.len() {
        match text.as_bytes()[i] {
            b'/' if text[i..].starts_with("//") => {
                code.push_str(&text[kept..i]);
                i += text[i..].find('\n').unwrap_or(text.len() - i);
                kept = i;
            }
            b'/' if text[i..].starts_with("/*") => {
                code.push_str(&text[kept..i]);
                code.push(' ');
                i += block_comment_len(&text[i..]);
                kept = i;
            }
            b'"' | b'\'' | b'r' | b'b' | b'c' => i += literal_len(text, i).unwrap_or(1),
            _ => i += 1,
        }
    }
    code.push_str(&text[kept..]);
    code
}

/// The length of the block comment `rest` starts with, nested ones included (all of `rest` if it
/// is not closed).
fn block_comment_len(rest: &str) -> usize {
    let bytes = rest.as_bytes();
    let (mut depth, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// The length of the string or character literal at `text[i..]`, if one starts there: `"…"`,
/// `b"…"`, `c"…"`, raw `r#"…"#` (also `br`, `cr`), `'x'`, `'\n'`, `b'x'`. A lifetime or label
/// (`'a`) is none.
fn literal_len(text: &str, i: usize) -> Option<usize> {
    let rest = &text[i..];
    // A prefix letter must start a word: the `r"` of `bar"` is no raw string.
    let word_start = starts_word(text, i);
    for prefix in ["r", "br", "cr"] {
        let Some(after) = rest.strip_prefix(prefix).filter(|_| word_start) else { continue };
        let hashes = after.len() - after.trim_start_matches('#').len();
        if after[hashes..].starts_with('"') {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = prefix.len() + hashes + 1;
            return Some(rest[body..].find(&close).map_or(rest.len(), |n| body + n + close.len()));
        }
    }
    let prefix = usize::from(word_start && ["b\"", "c\"", "b'"].iter().any(|p| rest.starts_with(p)));
    let body = rest[prefix..].get(1..)?;
    match rest[prefix..].chars().next()? {
        '"' => {
            let mut escaped = false;
            for (n, c) in body.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => return Some(prefix + 1 + n + 1),
                    _ => {}
                }
            }
            Some(rest.len())
        }
        '\'' => {
            let first = body.chars().next()?;
            let after_first = first.len_utf8();
            if first == '\\' {
                // '\n', '\'', '\u{1F600}': the escaped character, then anything up to the quote
                let escaped = body[after_first..].chars().next()?.len_utf8();
                let close = body[after_first + escaped..].find('\'')?;
                Some(prefix + 1 + after_first + escaped + close + 1)
            } else if body[after_first..].starts_with('\'') {
                Some(prefix + 1 + after_first + 1)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `text[i..]` starts a word (`\b` before a word character, in a regular expression).
fn starts_word(text: &str, i: usize) -> bool {
    !text[..i].chars().next_back().is_some_and(is_word_char)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Anchor {
    Crate,
    Super,
}

/// A path as written after `crate` or `super`: `super::super::x` is `(Super, ["super", "x"])`.
type PathRef = (Anchor, Vec<String>);

/// Every `crate::…` and `super::…` path in `code` (comments already out): each item of a grouped
/// `use`, and every path with at least one name after its anchor, wherever it is.
fn path_refs(code: &str) -> Vec<PathRef> {
    let mut found = grouped_uses(code);
    found.extend(inline_paths(code));
    found
}

/// `crate` or `super` at `code[i..]`, starting a word.
fn anchor_at(code: &str, i: usize) -> Option<Anchor> {
    let rest = &code[i..];
    if !starts_word(code, i) {
        None
    } else if rest.starts_with("crate") {
        Some(Anchor::Crate)
    } else if rest.starts_with("super") {
        Some(Anchor::Super)
    } else {
        None
    }
}

/// The `::name` segments that follow each other from `code[i..]`, and where they end.
fn segments_at(code: &str, mut i: usize) -> (Vec<String>, usize) {
    let bytes = code.as_bytes();
    let mut segments = Vec::new();
    while bytes[i..].starts_with(b"::") && bytes.get(i + 2).is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_') {
        let start = i + 2;
        i = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
        segments.push(code[start..i].to_string());
    }
    (segments, i)
}

/// Every `crate::a::b` and `super::a` path, one after another (not one inside another).
fn inline_paths(code: &str) -> Vec<PathRef> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        // `c` and `s` are ASCII, so `i` is then a character boundary.
        if let Some(anchor) = matches!(code.as_bytes()[i], b'c' | b's').then(|| anchor_at(code, i)).flatten() {
            let (segments, end) = segments_at(code, i + "crate".len());
            if !segments.is_empty() {
                found.push((anchor, segments));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// The items of every grouped `use crate::a::{…};` or `use super::{…};`, each with its whole
/// path: `use crate::a::{b, c::{d, e as f}}` gives `a::b`, `a::c::d` and `a::c::e`.
fn grouped_uses(code: &str) -> Vec<PathRef> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(n) = code[i..].find("use") {
        let start = i + n;
        i = grouped_use_at(code, start, &mut found).unwrap_or(start + 1);
    }
    found
}

/// Reads the grouped `use` at `code[i..]`, if there is one, into `found`; returns where it ends.
/// Like modgraph, the group runs to the first `;` after its `{`, which must follow a `}`.
fn grouped_use_at(code: &str, i: usize, found: &mut Vec<PathRef>) -> Option<usize> {
    let after_use = &code[i + "use".len()..];
    let path = after_use.trim_start();
    if !starts_word(code, i) || path.len() == after_use.len() {
        return None;
    }
    let at = code.len() - path.len();
    let anchor = anchor_at(code, at)?;
    let (prefix, end) = segments_at(code, at + "crate".len());
    let open = end + code[end..].strip_prefix("::{").map(|_| 3)?;
    let semicolon = open + code[open..].find(';')?;
    let inner = code[open..semicolon].strip_suffix('}')?;
    group_items(anchor, &prefix, inner, found);
    Some(semicolon + 1)
}

/// The paths the items of a use group `{inner}` below `prefix` name. `self` or an empty item (a
/// trailing comma) name the prefix itself; `x as y` names `x`.
fn group_items(anchor: Anchor, prefix: &[String], inner: &str, found: &mut Vec<PathRef>) {
    for item in split_top_level_commas(inner) {
        let item = item.trim();
        let mut path = prefix.to_vec();
        if let Some(open) = item.find('{') {
            path.extend(path_segments(&item[..open]));
            let close = item.rfind('}').filter(|&close| close > open).unwrap_or(item.len());
            group_items(anchor, &path, &item[open + 1..close], found);
        } else {
            let words: String = item.split_whitespace().take_while(|w| *w != "as").collect();
            path.extend(path_segments(&words).filter(|s| s != "self"));
            found.push((anchor, path));
        }
    }
}

/// The names of a path like `a::b::`.
fn path_segments(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

/// `a, b::{c, d}, e` as `a`, `b::{c, d}` and `e`.
fn split_top_level_commas(text: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

// ---- The import graph

struct Graph {
    /// Every file, by its path relative to `src/`, with its module.
    modules: BTreeMap<String, Module>,
    /// File to the files it imports from.
    edges: Edges,
}

impl Graph {
    /// The graph of `sources`: (path relative to `src/`, text).
    fn new(sources: &[(String, String)]) -> Graph {
        let modules: BTreeMap<String, Module> = sources.iter().map(|(f, _)| (f.clone(), module_of(f))).collect();
        // What a path can name: the files' modules and their parents (`a.rs` + `a/`, or a bare `a/`).
        let known: HashSet<&[String]> = modules.values().flat_map(|m| (1..=m.len()).map(move |k| &m[..k])).collect();
        let file_of: HashMap<&[String], &str> = modules.iter().map(|(f, m)| (m.as_slice(), f.as_str())).collect();
        let mut edges = Edges::new();
        for (file, text) in sources {
            let module = &modules[file];
            let is_mod_file = matches!(file.rsplit('/').next(), Some("mod.rs" | "lib.rs" | "main.rs"));
            for (anchor, segments) in path_refs(&strip_comments(text)) {
                let path = from_crate_root(module, anchor, segments);
                let Some(mut target) = (1..=path.len()).rev().find(|&k| known.contains(&path[..k])).map(|k| &path[..k])
                else {
                    continue;
                };
                if target == module.as_slice() {
                    continue;
                }
                // The file that holds the target: its own, or its nearest ancestor's.
                while !target.is_empty() && !file_of.contains_key(target) {
                    target = &target[..target.len() - 1];
                }
                // The crate root is never a target; a `mod.rs` naming its own submodules is structure.
                if target.is_empty() || file_of[target] == file || (is_mod_file && target.starts_with(module)) {
                    continue;
                }
                edges.entry(file.clone()).or_default().insert(file_of[target].to_string());
            }
        }
        Graph { modules, edges }
    }

    /// The top-level module a file belongs to: `store` for `store/gc.rs`.
    fn top(&self, file: &str) -> &str {
        self.modules[file].first().map_or(CRATE_ROOT, String::as_str)
    }

    /// Every import, as (importing file, imported file).
    fn imports(&self) -> impl Iterator<Item = (&str, &str)> {
        self.edges.iter().flat_map(|(from, tos)| tos.iter().map(move |to| (from.as_str(), to.as_str())))
    }

    /// The imports between top-level modules (within one, they are not counted).
    fn top_edges(&self) -> Edges {
        let mut edges = Edges::new();
        for (from, to) in self.imports() {
            if self.top(from) != self.top(to) {
                edges.entry(self.top(from).to_string()).or_default().insert(self.top(to).to_string());
            }
        }
        edges
    }
}

/// The path from the crate root that `anchor::segments`, written in `module`, stands for.
fn from_crate_root(module: &[String], anchor: Anchor, segments: Vec<String>) -> Vec<String> {
    match anchor {
        Anchor::Crate => segments,
        Anchor::Super => {
            let mut base = module[..module.len().saturating_sub(1)].to_vec();
            let supers = segments.iter().take_while(|s| *s == "super").count();
            base.truncate(base.len().saturating_sub(supers));
            base.extend(segments.into_iter().skip(supers));
            base
        }
    }
}

/// The circles of a graph: its strongly connected components of more than one node, each sorted
/// (Tarjan's algorithm).
fn circles(edges: &Edges) -> Vec<Vec<String>> {
    struct Search<'a> {
        edges: &'a Edges,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: HashSet<&'a str>,
        circles: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            let edges = self.edges;
            for w in edges.get(v).into_iter().flatten().map(String::as_str) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    self.low.insert(v, self.low[v].min(self.low[w]));
                } else if self.on_stack.contains(w) {
                    self.low.insert(v, self.low[v].min(self.index[w]));
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.circles.push(component);
                }
            }
        }
    }
    let mut search = Search {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: HashSet::new(),
        circles: Vec::new(),
    };
    for v in edges.keys() {
        if !search.index.contains_key(v.as_str()) {
            search.visit(v.as_str());
        }
    }
    search.circles.sort();
    search.circles
}

// ---- The rules

/// The layer of each name in a layers file: the number of its line, so a smaller one is higher.
/// A `#` starts a comment.
fn parse_layers(text: &str) -> HashMap<String, usize> {
    let mut layers = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        for name in line.split('#').next().unwrap_or("").split_whitespace() {
            layers.insert(name.to_string(), n);
        }
    }
    layers
}

/// Everything that breaks the rules, one line each: modules missing from the layers file, imports
/// that run back up, circles between top-level modules and between files.
fn problems(graph: &Graph, layers: &HashMap<String, usize>, layers_name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let tops: BTreeSet<&str> = graph.modules.keys().map(|f| graph.top(f)).filter(|&t| t != CRATE_ROOT).collect();
    for top in tops {
        if !layers.contains_key(top) {
            problems.push(format!("not in {layers_name}: {top}"));
        }
    }
    for (from, to) in graph.imports() {
        let (lower, higher) = (graph.top(from), graph.top(to));
        if let (Some(a), Some(b)) = (layers.get(lower), layers.get(higher)) {
            if b < a {
                problems.push(format!("runs back up: {from} -> {to} ({lower} is below {higher})"));
            }
        }
    }
    let top_edges = graph.top_edges();
    for circle in circles(&top_edges) {
        // Each import between two modules of the circle, with the first file import behind it.
        let mut steps = Vec::new();
        for a in &circle {
            for b in top_edges[a].iter().filter(|b| circle.contains(b)) {
                let files: Vec<_> =
                    graph.imports().filter(|&(from, to)| graph.top(from) == a && graph.top(to) == b).collect();
                let more = if files.len() > 1 { format!(" and {} more", files.len() - 1) } else { String::new() };
                steps.push(format!("{a} -> {b} ({} -> {}{more})", files[0].0, files[0].1));
            }
        }
        problems.push(format!("circle: {}: {}", circle.join(" <-> "), steps.join(", ")));
    }
    for circle in circles(&graph.edges) {
        problems.push(format!("circle: {}", circle.join(", ")));
    }
    problems
}

// ---- The checker's own tests

mod checker {
    use super::*;

    fn refs(code: &str) -> BTreeSet<(Anchor, String)> {
        path_refs(&strip_comments(code)).into_iter().map(|(a, s)| (a, s.join("::"))).collect()
    }

    fn crate_refs(paths: &[&str]) -> BTreeSet<(Anchor, String)> {
        paths.iter().map(|p| (Anchor::Crate, p.to_string())).collect()
    }

    fn graph(files: &[(&str, &str)]) -> Graph {
        Graph::new(&files.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect::<Vec<_>>())
    }

    fn edges(pairs: &[(&str, &str)]) -> Edges {
        let mut edges = Edges::new();
        for (a, b) in pairs {
            edges.entry(a.to_string()).or_default().insert(b.to_string());
        }
        edges
    }

    #[test]
    fn module_paths() {
        assert_eq!(module_of("store/gc.rs"), ["store", "gc"]);
        assert_eq!(module_of("store/mod.rs"), ["store"]);
        assert_eq!(module_of("sandbox.rs"), ["sandbox"]);
        assert!(module_of("lib.rs").is_empty() && module_of("main.rs").is_empty());
    }

    #[test]
    fn plain_and_grouped_uses() {
        assert_eq!(refs("use crate::store::gc::Collector;"), crate_refs(&["store::gc::Collector"]));
        assert_eq!(
            refs("pub use crate::{a, b::{c, d::{self, E as F}}, g::h as i,\n    j::*, };"),
            crate_refs(&["a", "b::c", "b::d", "b::d::E", "g::h", "j::*", ""])
        );
        // The inline reading also sees `crate::x` before a group.
        assert_eq!(refs("use crate::x::{y, z};"), crate_refs(&["x", "x::y", "x::z"]));
        assert_eq!(refs("use crate::store::{\n    self,\n    db::Row,\n};"), crate_refs(&["store", "store::db::Row"]));
    }

    #[test]
    fn super_paths() {
        let sup = |p: &str| (Anchor::Super, p.to_string());
        assert_eq!(refs("use super::repo::Repo;"), BTreeSet::from([sup("repo::Repo")]));
        assert_eq!(refs("use super::super::db;"), BTreeSet::from([sup("super::db")]));
        assert_eq!(refs("use super::{a, b};"), BTreeSet::from([sup("a"), sup("b")]));
        assert!(refs("use super::*;").is_empty(), "a glob of the parent is not read (like modgraph)");
        let m = |s: &[&str]| s.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(from_crate_root(&m(&["store", "gc"]), Anchor::Super, m(&["db", "Row"])), ["store", "db", "Row"]);
        assert_eq!(from_crate_root(&m(&["a", "b", "c"]), Anchor::Super, m(&["super", "x"])), ["a", "x"]);
        assert_eq!(from_crate_root(&m(&["store"]), Anchor::Super, m(&["sandbox"])), ["sandbox"]);
    }

    #[test]
    fn inline_paths_anywhere() {
        assert_eq!(
            refs("fn f() -> crate::error::Result<()> { crate::store::gc::run(&x)?; Ok(()) }"),
            crate_refs(&["error::Result", "store::gc::run"])
        );
        assert_eq!(refs("pub(in crate::store) fn f() {}"), crate_refs(&["store"]));
        // whole words only, and a name must follow
        assert!(refs("let mycrate::x = supers::y; let crate_::z; crate::{ }; crate ::a").is_empty());
    }

    #[test]
    fn comments_are_skipped() {
        assert!(refs("// use crate::a;\n/// crate::b\n//! crate::c\n/* crate::d /* nested */ crate::e */").is_empty());
        assert_eq!(refs("/** crate::doc */ use crate::a; /*! crate::b */"), crate_refs(&["a"]));
        assert_eq!(refs("use crate::{a, /* b, */ c}; // crate::d"), crate_refs(&["a", "c"]));
        // A `/*` in a line comment or a string opens no block comment (modgraph's would hide `crate::b`).
        assert_eq!(refs("//! info/*.list\nuse crate::b;\n// x*/"), crate_refs(&["b"]));
        assert_eq!(refs("let g = \"/tmp/*\"; crate::b::f(); let h = \"*/\";"), crate_refs(&["b::f"]));
        assert_eq!(refs("let u = \"http://x\"; crate::b::f();"), crate_refs(&["b::f"]));
        assert_eq!(refs("let r = r#\"a \"/*\" b\"#; crate::b::f(); // */"), crate_refs(&["b::f"]));
        assert_eq!(refs("let (c, q) = ('/', '\"'); crate::b::f(); let e = '\\''; // \""), crate_refs(&["b::f"]));
        assert_eq!(refs("fn f<'a>(x: &'a str) -> &'a str { crate::b::g(x) } // '"), crate_refs(&["b::g"]));
        // String literals are read like code (as modgraph does).
        assert_eq!(refs("let s = \"crate::a\";"), crate_refs(&["a"]));
    }

    #[test]
    fn comment_stripping() {
        assert_eq!(strip_comments("a // b\nc /* d /* e */ f */ g"), "a \nc   g");
        assert_eq!(strip_comments("x /* never closed"), "x  ");
        assert_eq!(strip_comments("b\"//\" br#\"/*\"# 'é' '\\u{2F}' b'/'"), "b\"//\" br#\"/*\"# 'é' '\\u{2F}' b'/'");
    }

    #[test]
    fn edges_name_files() {
        let g = graph(&[
            ("lib.rs", "pub mod store; pub mod sandbox; pub use crate::store::Store;"),
            ("store/mod.rs", "pub mod gc; pub mod db; use crate::store::gc::Collector; use crate::error::E;"),
            ("store/gc.rs", "use super::db::{Row, Table}; use crate::sandbox::lowers::Lower; crate::util::f();"),
            ("store/db.rs", "use crate::store::Store; use crate::store::db::X;"),
            ("sandbox.rs", "mod lowers;"),
            ("sandbox/lowers.rs", "use crate::sandbox::run;"),
            ("util/text.rs", ""),
        ]);
        let want = edges(&[
            ("store/gc.rs", "store/db.rs"),
            ("store/gc.rs", "sandbox/lowers.rs"),
            ("store/db.rs", "store/mod.rs"),
            ("sandbox/lowers.rs", "sandbox.rs"),
        ]);
        // lib.rs and store/mod.rs name their submodules (structure); `crate::error` and
        // `crate::util` (a folder without a file of its own) hold no file; db.rs naming itself is none.
        assert_eq!(g.edges, want);
        assert_eq!(g.top("store/gc.rs"), "store");
        assert_eq!(g.top("lib.rs"), CRATE_ROOT);
        assert_eq!(g.top_edges(), edges(&[("store", "sandbox")]));
    }

    #[test]
    fn circle_detection() {
        assert!(circles(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
        assert_eq!(circles(&edges(&[("a", "b"), ("b", "a")])), [["a", "b"]]);
        assert_eq!(
            circles(&edges(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d"), ("f", "a")])),
            [vec!["a", "b", "c"], vec!["d", "e"]]
        );
    }

    #[test]
    fn layers_file() {
        let layers = parse_layers("# top first\ncli\n\ndeploy ostree   # same layer\n  store\n");
        assert_eq!(layers.len(), 4);
        assert!(layers["cli"] < layers["deploy"] && layers["deploy"] == layers["ostree"]);
        assert!(layers["ostree"] < layers["store"]);
    }

    #[test]
    fn every_problem_is_reported() {
        let g = graph(&[
            ("lib.rs", ""),
            ("cli.rs", "use crate::store::Store;"),
            ("deploy.rs", "use crate::ostree::Repo;"),
            ("ostree.rs", "use crate::deploy::Sysroot;"),
            ("store/mod.rs", ""),
            ("store/gc.rs", "use crate::cli::Args;"),
            ("store/db.rs", "fn f() -> crate::cli::Args { todo!() }"),
            ("extra.rs", ""),
        ]);
        let layers = parse_layers("cli\ndeploy ostree\nstore\n");
        assert_eq!(
            problems(&g, &layers, "layers.txt"),
            [
                "not in layers.txt: extra",
                "runs back up: store/db.rs -> cli.rs (store is below cli)",
                "runs back up: store/gc.rs -> cli.rs (store is below cli)",
                "circle: cli <-> store: cli -> store (cli.rs -> store/mod.rs), store -> cli (store/db.rs -> cli.rs and 1 more)",
                "circle: deploy <-> ostree: deploy -> ostree (deploy.rs -> ostree.rs), ostree -> deploy (ostree.rs -> deploy.rs)",
                "circle: deploy.rs, ostree.rs",
            ]
        );
        let fine = graph(&[("cli.rs", "use crate::store::Store;"), ("store.rs", "crate::util::f()"), ("util.rs", "")]);
        assert!(problems(&fine, &parse_layers("cli\nstore util\n"), "layers.txt").is_empty());
    }
}
