//! Editing stored trees by path without a checkout: look a node up, set or remove it, change a
//! node's metadata in place ([`set_at`]), and rewrite the directories above it; and the image's
//! own user and group tables ([`id_table`]), which owner names are resolved through. New trees go to a [`Batch`] and are read back from it
//! before it is committed, so a series of edits can build on each other.

use std::collections::BTreeMap;

use anyhow::bail;

use crate::store::batch::Batch;
use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::meta::Meta;
use crate::store::tree::{Name, Node, Tree};

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

/// A name → id table from the image's `/etc/passwd` or `/etc/group`.
pub fn id_table(store: &Store, tree: &Digest, file: &[u8]) -> anyhow::Result<BTreeMap<String, u32>> {
    let node = match store.lookup(tree, &[b"etc", file])? {
        Some(n @ Node::File { .. }) => n,
        _ => return Ok(BTreeMap::new()),
    };
    let text = String::from_utf8_lossy(&store.read_file(&node)?).into_owned();
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((name.to_string(), id))
        })
        .collect())
}

/// Change the metadata of the node at `path` below `tree` with `change` (a file is stored again
/// with its new metadata, a symlink keeps its mode); returns the new root tree, or `None` when
/// `path` does not exist. New trees go to `batch`.
pub fn set_at(
    store: &Store,
    batch: &mut Batch,
    tree: &Digest,
    path: &[&[u8]],
    change: &dyn Fn(&mut Meta),
) -> anyhow::Result<Option<Digest>> {
    let mut t = store.tree(tree)?;
    let Some((first, rest)) = path.split_first() else {
        change(&mut t.meta);
        return Ok(Some(t.encode_into(&mut batch.trees)));
    };
    let Some(pos) = t.entries.iter().position(|(n, _)| n.as_bytes() == *first) else { return Ok(None) };
    let node = t.entries[pos].1.clone();
    let new = match node {
        Node::Directory { tree: sub } => match set_at(store, batch, &sub, rest, change)? {
            Some(id) => Node::Directory { tree: id },
            None => return Ok(None),
        },
        _ if !rest.is_empty() => return Ok(None),
        Node::File { mut meta, size, content, link } => {
            let bytes = store.read_file(&Node::File { meta: meta.clone(), size, content, link })?;
            change(&mut meta);
            match batch.put_bytes(store, &bytes, meta)? {
                Node::File { meta, size, content, .. } => Node::File { meta, size, content, link: 0 },
                other => other,
            }
        }
        Node::Symlink { mut meta, target } => {
            let mode = meta.mode;
            change(&mut meta);
            meta.mode = mode;
            Node::Symlink { meta, target }
        }
        Node::CharDevice { mut meta, rdev } => {
            change(&mut meta);
            Node::CharDevice { meta, rdev }
        }
        Node::BlockDevice { mut meta, rdev } => {
            change(&mut meta);
            Node::BlockDevice { meta, rdev }
        }
        Node::Fifo { mut meta } => {
            change(&mut meta);
            Node::Fifo { meta }
        }
    };
    t.entries[pos].1 = new;
    Ok(Some(t.encode_into(&mut batch.trees)))
}
