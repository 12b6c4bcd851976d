//! Merging trees: the `merge` step that combines package trees into one root tree, on trees and
//! not on files (no file is copied or read).
//!
//! Rules, following dpkg:
//! - directories merge recursively; the first input's directory metadata wins;
//! - identical nodes (same kind, metadata and content) at one path are fine;
//! - different nodes at one path conflict, unless the later owner `Replaces` every earlier one,
//!   in which case the later one wins;
//! - a directory and a non-directory at one path always conflict.
//!
//! All conflicts are collected and reported together, by path and packages. Hardlink groups are
//! renumbered so that groups from different inputs never meet.

use std::collections::{BTreeMap, HashMap};

use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::tree::{Name, Node, Tree, TreeRows};
use crate::util::text::escape_path;

/// One tree to merge, with the package that owns it.
#[derive(Clone, Debug)]
pub struct Input {
    pub owner: String,
    pub tree: Digest,
    /// Owners whose files this input may overwrite (Debian `Replaces`).
    pub replaces: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    pub path: String,
    pub owners: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{} file conflicts: {}", conflicts.len(), conflicts.iter().take(10).map(|c| format!("`{}` ({})", c.path, c.owners.join(", "))).collect::<Vec<_>>().join("; "))]
pub struct MergeError {
    pub conflicts: Vec<Conflict>,
}

struct Merger<'s> {
    store: &'s Store,
    inputs: &'s [Input],
    out: &'s mut TreeRows,
    conflicts: Vec<Conflict>,
    /// (input, old group) -> new group.
    links: HashMap<(usize, u32), u32>,
    has_links: HashMap<Digest, bool>,
}

/// Merge `inputs` (in order) into one tree; new tree rows go to `out`.
pub fn merge(store: &Store, inputs: &[Input], out: &mut TreeRows) -> anyhow::Result<Digest> {
    let mut m = Merger { store, inputs, out, conflicts: Vec::new(), links: HashMap::new(), has_links: HashMap::new() };
    let sources: Vec<(usize, Digest)> = inputs.iter().enumerate().map(|(i, input)| (i, input.tree)).collect();
    let id = m.merge_dirs(b"", &sources)?;
    if !m.conflicts.is_empty() {
        return Err(MergeError { conflicts: m.conflicts }.into());
    }
    Ok(id)
}

impl Merger<'_> {
    fn merge_dirs(&mut self, path: &[u8], sources: &[(usize, Digest)]) -> anyhow::Result<Digest> {
        if sources.len() == 1 {
            return self.renumber(sources[0].0, &sources[0].1);
        }
        let trees: Vec<(usize, Tree)> =
            sources.iter().map(|(i, id)| Ok((*i, self.store.tree(id)?))).collect::<anyhow::Result<_>>()?;
        let meta = trees[0].1.meta.clone();
        let mut by_name: BTreeMap<Name, Vec<(usize, Node)>> = BTreeMap::new();
        for (i, tree) in trees {
            for (name, node) in tree.entries {
                by_name.entry(name).or_default().push((i, node));
            }
        }
        let mut entries = Vec::with_capacity(by_name.len());
        for (name, nodes) in by_name {
            let mut child = path.to_vec();
            child.push(b'/');
            child.extend_from_slice(name.as_bytes());
            let dirs: Vec<(usize, Digest)> = nodes
                .iter()
                .filter_map(|(i, n)| match n {
                    Node::Directory { tree } => Some((*i, *tree)),
                    _ => None,
                })
                .collect();
            let node = if dirs.len() == nodes.len() {
                Node::Directory { tree: self.merge_dirs(&child, &dirs)? }
            } else if !dirs.is_empty() {
                self.conflict(&child, &nodes);
                continue;
            } else {
                match self.pick(&nodes) {
                    Some((i, node)) => self.relink(i, node),
                    None => {
                        self.conflict(&child, &nodes);
                        continue;
                    }
                }
            };
            entries.push((name, node));
        }
        Ok(Tree { meta, entries }.encode_into(self.out))
    }

    /// The winning non-directory node at one path, if the owners agree or Replaces decides:
    /// the last input that replaces every owner whose node differs from its own.
    fn pick(&self, nodes: &[(usize, Node)]) -> Option<(usize, Node)> {
        nodes
            .iter()
            .rev()
            .find(|(i, n)| {
                nodes.iter().all(|(j, m)| same(m, n) || self.inputs[*i].replaces.contains(&self.inputs[*j].owner))
            })
            .cloned()
    }

    fn conflict(&mut self, path: &[u8], nodes: &[(usize, Node)]) {
        let mut owners: Vec<String> = nodes.iter().map(|(i, _)| self.inputs[*i].owner.clone()).collect();
        owners.dedup();
        self.conflicts.push(Conflict { path: escape_path(path), owners });
    }

    fn relink(&mut self, input: usize, node: Node) -> Node {
        match node {
            Node::File { meta, size, content, link } if link != 0 => {
                let next = self.links.len() as u32 + 1;
                let link = *self.links.entry((input, link)).or_insert(next);
                Node::File { meta, size, content, link }
            }
            other => other,
        }
    }

    /// A subtree taken whole from one input: reused as is unless it holds hardlink groups.
    fn renumber(&mut self, input: usize, id: &Digest) -> anyhow::Result<Digest> {
        if !self.contains_links(id)? {
            return Ok(*id);
        }
        let tree = self.store.tree(id)?;
        let mut entries = Vec::with_capacity(tree.entries.len());
        for (name, node) in tree.entries {
            let node = match node {
                Node::Directory { tree } => Node::Directory { tree: self.renumber(input, &tree)? },
                other => self.relink(input, other),
            };
            entries.push((name, node));
        }
        Ok(Tree { meta: tree.meta, entries }.encode_into(self.out))
    }

    fn contains_links(&mut self, id: &Digest) -> anyhow::Result<bool> {
        if let Some(&b) = self.has_links.get(id) {
            return Ok(b);
        }
        let tree = self.store.tree(id)?;
        let mut found = false;
        for (_, node) in &tree.entries {
            found |= match node {
                Node::File { link, .. } => *link != 0,
                Node::Directory { tree } => self.contains_links(tree)?,
                _ => false,
            };
        }
        self.has_links.insert(*id, found);
        Ok(found)
    }
}

/// Equal for merging: hardlink group numbers are local to their input and do not count.
fn same(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::File { meta: ma, size: sa, content: ca, .. }, Node::File { meta: mb, size: sb, content: cb, .. }) => {
            ma == mb && sa == sb && ca == cb
        }
        _ => a == b,
    }
}
