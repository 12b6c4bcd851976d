//! Differences between two stored trees (`strata store diff`).
//!
//! Equal subtree ids are skipped without loading them, so diffing two versions of a large image
//! costs the size of the change. An added or removed directory is reported once, not file by file.

use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::meta::Meta;
use crate::store::tree::Node;
use crate::util::text::escape_path;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Absolute path inside the tree; bytes that are not printable UTF-8 are escaped (`\n`, `\xff`).
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// The node's kind (in the newer tree, for `changed`).
    pub kind: &'static str,
    /// For `changed`: which aspects differ (`type`, `content`, `mode`, `owner`, `xattrs`, `target`,
    /// `device`).
    pub what: Vec<&'static str>,
}

/// Changes from tree `a` to tree `b`, sorted by path.
pub fn diff(store: &Store, a: &Digest, b: &Digest) -> anyhow::Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_dirs(store, b"", a, b, &mut out)?;
    Ok(out)
}

fn diff_dirs(store: &Store, path: &[u8], a: &Digest, b: &Digest, out: &mut Vec<Change>) -> anyhow::Result<()> {
    if a == b {
        return Ok(());
    }
    let ta = store.tree(a)?;
    let tb = store.tree(b)?;
    let what = meta_diff(&ta.meta, &tb.meta);
    if !what.is_empty() {
        out.push(change(if path.is_empty() { b"/" } else { path }, "changed", "directory", what));
    }
    let (mut i, mut j) = (0, 0);
    while i < ta.entries.len() || j < tb.entries.len() {
        let ord = match (ta.entries.get(i), tb.entries.get(j)) {
            (Some((na, _)), Some((nb, _))) => na.cmp(nb),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                let (name, node) = &ta.entries[i];
                out.push(change(&join(path, name.as_bytes()), "removed", node.kind_name(), vec![]));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let (name, node) = &tb.entries[j];
                out.push(change(&join(path, name.as_bytes()), "added", node.kind_name(), vec![]));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (name, na) = &ta.entries[i];
                let nb = &tb.entries[j].1;
                let child = join(path, name.as_bytes());
                match (na, nb) {
                    (Node::Directory { tree: x }, Node::Directory { tree: y }) => diff_dirs(store, &child, x, y, out)?,
                    _ => {
                        let what = node_diff(na, nb);
                        if !what.is_empty() {
                            out.push(change(&child, "changed", nb.kind_name(), what));
                        }
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn join(path: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = path.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn change(path: &[u8], change: &'static str, kind: &'static str, what: Vec<&'static str>) -> Change {
    Change { path: escape_path(path), change, kind, what }
}

/// Which aspects of two non-directory nodes differ.
fn node_diff(a: &Node, b: &Node) -> Vec<&'static str> {
    if std::mem::discriminant(a) != std::mem::discriminant(b) {
        return vec!["type"];
    }
    let mut what = Vec::new();
    let differs = match (a, b) {
        (Node::File { size: sa, content: ca, .. }, Node::File { size: sb, content: cb, .. }) => {
            (sa != sb || ca != cb).then_some("content")
        }
        (Node::Symlink { target: ta, .. }, Node::Symlink { target: tb, .. }) => (ta != tb).then_some("target"),
        (Node::CharDevice { rdev: ra, .. }, Node::CharDevice { rdev: rb, .. })
        | (Node::BlockDevice { rdev: ra, .. }, Node::BlockDevice { rdev: rb, .. }) => (ra != rb).then_some("device"),
        _ => None,
    };
    what.extend(differs);
    if let (Some(ma), Some(mb)) = (a.meta(), b.meta()) {
        what.extend(meta_diff(ma, mb));
    }
    what
}

fn meta_diff(a: &Meta, b: &Meta) -> Vec<&'static str> {
    let mut what = Vec::new();
    if a.mode != b.mode {
        what.push("mode");
    }
    if a.uid != b.uid || a.gid != b.gid {
        what.push("owner");
    }
    if a.xattrs != b.xattrs {
        what.push("xattrs");
    }
    what
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_diff_table() {
        let m = |mode, uid| Meta { mode, uid, gid: 0, xattrs: vec![] };
        let file = |mode, uid, c: &[u8]| Node::File {
            meta: m(mode, uid),
            size: c.len() as u64,
            content: Digest::of(c),
            link: 0,
        };
        let cases = [
            (file(0o644, 0, b"a"), file(0o644, 0, b"a"), vec![]),
            (file(0o644, 0, b"a"), file(0o644, 0, b"b"), vec!["content"]),
            (file(0o644, 0, b"a"), file(0o755, 0, b"a"), vec!["mode"]),
            (file(0o644, 0, b"a"), file(0o600, 1, b"b"), vec!["content", "mode", "owner"]),
            (file(0o644, 0, b"a"), Node::Fifo { meta: m(0o644, 0) }, vec!["type"]),
            (
                Node::Symlink { meta: m(0o777, 0), target: b"x".to_vec() },
                Node::Symlink { meta: m(0o777, 0), target: b"y".to_vec() },
                vec!["target"],
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(node_diff(&a, &b), expected, "{a:?} -> {b:?}");
        }
    }
}
