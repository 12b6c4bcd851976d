//! Pictures of the build graph: Graphviz `dot` text, and SVG rendered from it by Graphviz.
//!
//! - [`plan`]: one build's steps in order, a box per description of the chain (base first),
//!   each step coloured by its state (cached, to build, pending, built); steps that belong to a
//!   base are drawn with a bold border and say which image they are shared with.
//! - [`images`]: every image built in the store (its newest generation still in the store) and
//!   the entries it reaches through references, base first. An entry two or more images reach
//!   is drawn as shared and says by how many; package entries are not drawn one by one but
//!   counted on the step that uses them.
//!
//! Invariants: the same input gives the same text (node ids are entry keys or step positions,
//! nodes and edges come in a fixed order), and every label is escaped for `dot`, so names from
//! descriptions cannot change the graph's structure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Stdio;

use anyhow::{bail, Context};

use super::{generations, Outcome, State};
use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::Backend;

/// Fill colours, one per state; the legend uses the same.
const CACHED: &str = "#c8e6c9";
const TO_BUILD: &str = "#ffcc80";
const PENDING: &str = "#eeeeee";
const BUILT: &str = "#90caf9";
const SHARED: &str = "#fff59d";
const UNIQUE: &str = "#ffffff";

const HEADER: &str = "  graph [fontname=\"Helvetica\", fontsize=12, labelloc=t, nodesep=0.3, ranksep=0.35];\n  \
node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n  \
edge [color=\"#607d8b\", arrowsize=0.7];\n";

/// A `dot` double-quoted string holding `lines`, each escaped, joined by line breaks.
fn quoted(lines: &[&str]) -> String {
    let escaped: Vec<String> = lines
        .iter()
        .map(|l| {
            let l: String = l.chars().filter(|c| !c.is_control()).collect();
            l.replace('\\', "\\\\").replace('"', "\\\"")
        })
        .collect();
    format!("\"{}\"", escaped.join("\\n"))
}

/// At most `n` characters of `s`, marked when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// The plan (or build) of one description chain as a `dot` graph.
pub fn plan(o: &Outcome) -> String {
    let mut s = String::from("digraph plan {\n");
    s.push_str(HEADER);
    let _ = writeln!(s, "  label={};", quoted(&[&format!("strata plan: {}", o.image)]));
    // Descriptions in the order their steps come.
    let mut images: Vec<&str> = Vec::new();
    for step in &o.steps {
        if !images.contains(&step.image.as_str()) {
            images.push(&step.image);
        }
    }
    for (c, image) in images.iter().enumerate() {
        let role = if *image == o.image { "the image" } else { "base" };
        let _ = writeln!(s, "  subgraph cluster_{c} {{");
        let _ = writeln!(
            s,
            "    label={}; style=\"rounded,dashed\"; color=\"#90a4ae\";",
            quoted(&[&format!("{image} ({role})")])
        );
        for (i, step) in o.steps.iter().enumerate().filter(|(_, st)| st.image == *image) {
            let (state, fill, style) = match step.state {
                State::Cached => ("cached", CACHED, "rounded,filled"),
                State::Missing => ("to build", TO_BUILD, "rounded,filled"),
                State::Pending => ("pending", PENDING, "rounded,filled,dashed"),
                State::Built => ("built", BUILT, "rounded,filled"),
            };
            let title = format!("{} {}", step.kind, clip(&step.name, 40));
            let key = step.key.map(|k| k.short()).unwrap_or_else(|| "key not known yet".into());
            let count =
                if step.count > 1 { format!(" · {}/{} cached", step.cached_count, step.count) } else { String::new() };
            let status = format!("{state}{count} · {key}");
            let mut lines = vec![title.as_str(), status.as_str()];
            let shared = format!("shared with {image}");
            let border = if step.image != o.image {
                lines.push(&shared);
                ", penwidth=2"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "    s{i} [id={}, label={}, fillcolor=\"{fill}\", style=\"{style}\"{border}];",
                quoted(&[&format!("step-{i}")]),
                quoted(&lines)
            );
        }
        s.push_str("  }\n");
    }
    for i in 1..o.steps.len() {
        let _ = writeln!(s, "  s{} -> s{i};", i - 1);
    }
    legend(&mut s, &[("cached", CACHED), ("to build", TO_BUILD), ("pending", PENDING), ("built", BUILT)]);
    s.push_str("}\n");
    s
}

/// A row of coloured boxes naming what each colour means.
fn legend(s: &mut String, items: &[(&str, &str)]) {
    s.push_str("  subgraph cluster_legend {\n    label=\"legend\"; style=\"rounded\"; color=\"#cfd8dc\";\n");
    for (i, (name, fill)) in items.iter().enumerate() {
        let _ = writeln!(s, "    legend{i} [label={}, fillcolor=\"{fill}\"];", quoted(&[name]));
    }
    for i in 1..items.len() {
        let _ = writeln!(s, "    legend{} -> legend{i} [style=invis];", i - 1);
    }
    s.push_str("  }\n");
}

/// Every image of the store (its newest generation still in the store) and the entries it
/// reaches, as a `dot` graph.
pub fn images(store: &Store) -> anyhow::Result<String> {
    let mut newest: BTreeMap<String, (u64, EntryRow)> = BTreeMap::new();
    for g in generations::generations(store, None)? {
        if let Some(e) = store.db().peek_entry(&g.entry)? {
            newest.insert(g.image.clone(), (g.number, e));
        }
    }
    // Which images reach each entry, and each entry's references.
    let mut reached_by: HashMap<Digest, BTreeSet<&str>> = HashMap::new();
    let mut entries: BTreeMap<Digest, (EntryRow, Vec<Digest>)> = BTreeMap::new();
    for (image, (_, top)) in &newest {
        let mut stack = vec![top.key];
        let mut seen = BTreeSet::new();
        while let Some(key) = stack.pop() {
            if !seen.insert(key) {
                continue;
            }
            reached_by.entry(key).or_default().insert(image);
            if let std::collections::btree_map::Entry::Vacant(slot) = entries.entry(key) {
                let Some(e) = store.db().peek_entry(&key)? else { continue };
                slot.insert((e, store.entry_refs(&key)?));
            }
            stack.extend(entries[&key].1.iter().copied());
        }
    }
    let is_package = |k: &Digest| entries.get(k).is_some_and(|(e, _)| e.kind == "package");
    let tops: HashMap<Digest, (&str, u64)> = newest.iter().map(|(i, (n, e))| (e.key, (i.as_str(), *n))).collect();
    let mut s = String::from("digraph images {\n");
    s.push_str(HEADER);
    let _ = writeln!(
        s,
        "  label={};",
        quoted(&[&format!("strata images: {} images, {} entries", newest.len(), entries.len())])
    );
    // Oldest first, so the picture reads from bases down.
    let mut order: Vec<&(EntryRow, Vec<Digest>)> = entries.values().filter(|(e, _)| e.kind != "package").collect();
    order.sort_by(|a, b| (a.0.created, &a.0.name, a.0.key).cmp(&(b.0.created, &b.0.name, b.0.key)));
    for (e, refs) in &order {
        let by = reached_by.get(&e.key).map_or(0, BTreeSet::len);
        let packages = refs.iter().filter(|r| is_package(r)).count();
        let mut lines = vec![format!("{} {}", e.kind, clip(&e.name, 40)), e.key.short()];
        if packages > 0 {
            lines.push(format!("{packages} packages"));
        }
        let (shape, extra) = match tops.get(&e.key) {
            Some((image, n)) => {
                lines.insert(0, format!("image {image} (generation {n})"));
                ("box3d", ", penwidth=2")
            }
            None => ("box", ""),
        };
        let fill = if by > 1 {
            lines.push(format!("shared by {by} images"));
            SHARED
        } else {
            UNIQUE
        };
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let _ = writeln!(
            s,
            "  e{} [id={}, label={}, shape={shape}, fillcolor=\"{fill}\"{extra}];",
            e.key.short(),
            quoted(&[&format!("entry-{}", e.key.short())]),
            quoted(&lines)
        );
    }
    for (e, refs) in &order {
        for r in refs.iter().filter(|r| entries.contains_key(r) && !is_package(r)) {
            let _ = writeln!(s, "  e{} -> e{};", r.short(), e.key.short());
        }
    }
    legend(&mut s, &[("shared by several images", SHARED), ("one image's own", UNIQUE)]);
    s.push_str("}\n");
    Ok(s)
}

/// Render `dot` text as SVG with Graphviz's `dot`.
pub fn svg(dot: &str) -> anyhow::Result<String> {
    let mut child = crate::util::process::command("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `dot` to draw the picture (install the graphviz package)")?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let text = dot.to_string();
    // Written from a thread: dot may fill its output pipe before it has read all its input.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output()?;
    let written = writer.join().map_err(|_| anyhow::anyhow!("writing to dot panicked"))?;
    // dot's own complaint first: a write it cut short is only a consequence.
    if !out.status.success() {
        bail!("dot failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    written.context("writing the graph to dot")?;
    String::from_utf8(out.stdout).context("dot wrote SVG that is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Step;

    #[test]
    fn labels_cannot_break_out_of_their_strings() {
        assert_eq!(quoted(&["a\"b\\c", "d\ne"]), "\"a\\\"b\\\\c\\nde\"");
        assert_eq!(clip("abcdef", 4), "abc…");
    }

    #[test]
    fn a_plan_draws_each_description_and_each_step_in_order() {
        let mut base = Step::new("base", "packages", "ignored\"name", vec![]);
        base.state = State::Cached;
        base.key = Some(Digest::of(b"k"));
        let mut script = Step::new("web", "script", "config.sh", vec![]);
        script.state = State::Missing;
        let o = Outcome {
            image: "web".into(),
            document: "web/image.toml".into(),
            steps: vec![base, script, Step::new("web", "image", "web", vec![])],
            rootfs: None,
            locks: vec![],
            bases: vec![],
            retention: None,
        };
        let dot = plan(&o);
        assert!(dot.contains("label=\"base (base)\"") && dot.contains("label=\"web (the image)\""), "{dot}");
        assert!(dot.contains("packages ignored\\\"name\\ncached · ") && dot.contains("shared with base"), "{dot}");
        assert!(dot.contains("script config.sh\\nto build · key not known yet"), "{dot}");
        assert!(dot.contains("s0 -> s1;\n  s1 -> s2;"), "{dot}");
        assert_eq!(dot, plan(&o), "deterministic");
    }
}
