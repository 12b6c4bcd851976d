//! A batch of new objects and trees that become visible together, in the store's crash-safe
//! order: object files are already in place; [`Batch::commit`] syncs once, then records the
//! objects, trees and (optionally) an entry in one transaction.

use std::collections::HashSet;

use crate::store::db::NewEntry;
use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::meta::Meta;
use crate::store::tree::{Node, Tree, TreeRows};

#[derive(Default)]
pub struct Batch {
    objects: Vec<(Digest, u64)>,
    seen: HashSet<Digest>,
    pub trees: TreeRows,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Move a staged object into place unless the store (or this batch) already has it; returns
    /// whether it was new.
    pub fn keep(&mut self, store: &Store, staged: crate::store::object::Staged) -> anyhow::Result<bool> {
        if self.seen.contains(&staged.id) || store.db().known_objects(&[staged.id])?[0] {
            return Ok(false);
        }
        self.seen.insert(staged.id);
        self.objects.push((staged.id, staged.size));
        store.object_store().commit(staged)?;
        Ok(true)
    }

    /// Record an object that is already in place under `objects/` (written by parallel workers).
    pub fn record_placed(&mut self, id: Digest, size: u64) {
        if self.seen.insert(id) {
            self.objects.push((id, size));
        }
    }

    /// Store `bytes` as a file object with `meta`; returns the file node.
    pub fn put_bytes(&mut self, store: &Store, bytes: &[u8], meta: Meta) -> anyhow::Result<Node> {
        let staged = store.object_store().stage(&mut &*bytes, &meta, u64::MAX)?;
        let node = Node::File { meta, size: staged.size, content: staged.content, link: 0 };
        self.keep(store, staged)?;
        Ok(node)
    }

    /// Encode a tree into the batch and return its id.
    pub fn put_tree(&mut self, tree: &Tree) -> Digest {
        tree.encode_into(&mut self.trees)
    }

    pub fn new_objects(&self) -> u64 {
        self.objects.len() as u64
    }

    /// Sync, then record everything (and `entry`) in one transaction.
    pub fn commit(self, store: &mut Store, entry: Option<&NewEntry<'_>>) -> anyhow::Result<()> {
        if !self.objects.is_empty() {
            store.sync()?;
        }
        let tx = store.db_mut().transaction()?;
        for (id, size) in &self.objects {
            tx.insert_object(id, *size)?;
        }
        for (id, data) in &self.trees {
            tx.insert_tree(id, data)?;
        }
        if let Some(e) = entry {
            tx.insert_entry(e)?;
        }
        tx.commit()
    }
}
