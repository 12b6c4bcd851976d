//! Layers: the change a sandboxed run made on top of a base tree, captured from an overlayfs
//! upper directory, and flattening a layer onto its base.
//!
//! A captured layer is an ordinary tree in which a 0/0 character device is a whiteout (the path
//! was deleted) and a directory carrying [`OPAQUE_XATTR`] replaces the base's directory instead of
//! merging with it, as in overlayfs. [`apply`] resolves both, so flattened trees never contain them.
//! Hardlink groups inside a layer are dropped when it is flattened (overlayfs breaks hardlinks on
//! copy-up anyway), so that they can never join a group of the base.

use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::meta::OPAQUE_XATTR;
use crate::store::tree::{Node, Tree, TreeRows};

fn is_whiteout(node: &Node) -> bool {
    matches!(node, Node::CharDevice { rdev: 0, .. })
}

fn strip_opaque(tree: &mut Tree) -> bool {
    let before = tree.meta.xattrs.len();
    tree.meta.xattrs.retain(|(k, _)| k.as_slice() != OPAQUE_XATTR);
    tree.meta.xattrs.len() != before
}

/// Flatten `layer` onto `base`; new tree rows go to `out`.
pub fn apply(store: &Store, base: &Digest, layer: &Digest, out: &mut TreeRows) -> anyhow::Result<Digest> {
    let mut top = store.tree(layer)?;
    let opaque = strip_opaque(&mut top);
    if opaque {
        return clean(store, top, out);
    }
    let base_tree = store.tree(base)?;
    let mut entries: std::collections::BTreeMap<_, _> = base_tree.entries.into_iter().collect();
    for (name, node) in top.entries {
        if is_whiteout(&node) {
            entries.remove(&name);
            continue;
        }
        let node = unlink(node);
        let merged = match (entries.get(&name), &node) {
            (Some(Node::Directory { tree: b }), Node::Directory { tree: l }) => {
                Node::Directory { tree: apply(store, b, l, out)? }
            }
            (_, Node::Directory { tree: l }) => Node::Directory { tree: clean(store, store.tree(l)?, out)? },
            _ => node,
        };
        entries.insert(name, merged);
    }
    Ok(Tree { meta: top.meta, entries: entries.into_iter().collect() }.encode_into(out))
}

/// A layer subtree with no base below it: drop whiteouts and opaque markers.
fn clean(store: &Store, mut tree: Tree, out: &mut TreeRows) -> anyhow::Result<Digest> {
    strip_opaque(&mut tree);
    let mut entries = Vec::with_capacity(tree.entries.len());
    for (name, node) in tree.entries {
        match node {
            n if is_whiteout(&n) => {}
            Node::Directory { tree } => {
                entries.push((name, Node::Directory { tree: clean(store, store.tree(&tree)?, out)? }))
            }
            n => entries.push((name, unlink(n))),
        }
    }
    Ok(Tree { meta: tree.meta, entries }.encode_into(out))
}

/// The node without its hardlink group.
pub fn unlink(node: Node) -> Node {
    match node {
        Node::File { meta, size, content, .. } => Node::File { meta, size, content, link: 0 },
        n => n,
    }
}
