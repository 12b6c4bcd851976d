//! Flattening a stored tree into the list of nodes under it, in sorted depth-first order.
//!
//! Checkout, diff and verify all need "every node with its path"; this module loads each distinct
//! subtree once and hands back plain lists, so callers can then work in parallel.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::store::digest::Digest;
use crate::store::meta::Meta;
use crate::store::tree::{Node, Tree};
use crate::store::Backend;

/// One node of a flattened tree. `path` is relative to the tree's root; the root itself has an
/// empty path and appears first.
#[derive(Clone, Debug)]
pub struct Item {
    pub path: PathBuf,
    pub kind: ItemKind,
}

#[derive(Clone, Debug)]
pub enum ItemKind {
    Dir { meta: Meta, tree: Digest },
    Leaf(Node),
}

/// Every node of tree `id`, directories before their contents, entries sorted by name.
pub fn flatten<B: Backend + ?Sized>(store: &B, id: &Digest) -> anyhow::Result<Vec<Item>> {
    let mut cache: HashMap<Digest, std::rc::Rc<Tree>> = HashMap::new();
    let mut out = Vec::new();
    let mut stack = vec![(PathBuf::new(), *id)];
    while let Some((path, id)) = stack.pop() {
        let tree = match cache.get(&id) {
            Some(t) => t.clone(),
            None => {
                let t = std::rc::Rc::new(store.tree(&id)?);
                cache.insert(id, t.clone());
                t
            }
        };
        out.push(Item { path: path.clone(), kind: ItemKind::Dir { meta: tree.meta.clone(), tree: id } });
        // Push subdirectories in reverse so they pop in sorted order; leaves go out right away.
        let mut subdirs = Vec::new();
        for (name, node) in &tree.entries {
            let child = path.join(name.as_os_str());
            match node {
                Node::Directory { tree } => subdirs.push((child, *tree)),
                leaf => out.push(Item { path: child, kind: ItemKind::Leaf(leaf.clone()) }),
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// The number of regular files under tree `id` and their total size.
pub fn file_totals<B: Backend + ?Sized>(store: &B, id: &Digest) -> anyhow::Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for item in flatten(store, id)? {
        if let ItemKind::Leaf(Node::File { size, .. }) = item.kind {
            files += 1;
            bytes += size;
        }
    }
    Ok((files, bytes))
}
