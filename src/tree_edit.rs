//! Editing stored trees by path without a checkout: look a node up, set or remove it, and
//! rewrite the directories above it. New trees go to a [`Batch`] and are read back from it
//! before it is committed, so a series of edits can build on each other.

use anyhow::bail;

use crate::batch::Batch;
use crate::digest::Digest;
use crate::meta::Meta;
use crate::store::Store;
use crate::tree::{Name, Node, Tree};

/// Set (or with `None` remove) entry `name` of `tree`, keeping entries sorted. `name` is a
/// constant or was read from a tree (with lossy UTF-8, which keeps it a valid name).
pub fn set(tree: &mut Tree, name: &str, node: Option<Node>) {
    let name = Name::new(name.as_bytes()).expect("a valid file name");
    match (tree.entries.binary_search_by(|(n, _)| n.cmp(&name)), node) {
        (Ok(i), Some(node)) => tree.entries[i].1 = node,
        (Ok(i), None) => {
            tree.entries.remove(i);
        }
        (Err(i), Some(node)) => tree.entries.insert(i, (name, node)),
        (Err(_), None) => {}
    }
}

/// The node at `path` below `tree`.
pub fn lookup(store: &Store, batch: &Batch, tree: &Tree, path: &[&str]) -> anyhow::Result<Option<Node>> {
    let Some((first, rest)) = path.split_first() else { return Ok(None) };
    match (tree.get(first.as_bytes()), rest.is_empty()) {
        (node, true) => Ok(node.cloned()),
        (Some(Node::Directory { tree }), false) => lookup(store, batch, &load(store, batch, tree)?, rest),
        _ => Ok(None),
    }
}

/// A tree from the batch (written by earlier edits, not yet recorded) or the store.
pub fn load(store: &Store, batch: &Batch, id: &Digest) -> anyhow::Result<Tree> {
    match batch.trees.iter().rev().find(|(t, _)| t == id) {
        Some((_, data)) => Ok(Tree::decode(data)?),
        None => store.tree(id),
    }
}

/// Set the node at `path` below `tree`, creating missing directories (0755, root); removing
/// (`None`) a path that is not there changes nothing.
pub fn put(store: &Store, batch: &mut Batch, tree: &mut Tree, path: &[&str], node: Option<Node>) -> anyhow::Result<()> {
    let Some((first, rest)) = path.split_first() else { bail!("empty path") };
    if rest.is_empty() {
        set(tree, first, node);
        return Ok(());
    }
    let mut child = match tree.get(first.as_bytes()) {
        Some(Node::Directory { tree }) => load(store, batch, tree)?,
        None if node.is_none() => return Ok(()),
        None => Tree { meta: Meta { mode: 0o755, uid: 0, gid: 0, xattrs: vec![] }, entries: vec![] },
        Some(other) => bail!("{first} is a {}, not a directory", other.kind_name()),
    };
    put(store, batch, &mut child, rest, node)?;
    set(tree, first, Some(Node::Directory { tree: batch.put_tree(&child) }));
    Ok(())
}
