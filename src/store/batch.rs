//! A batch of new objects and trees that become visible together: objects are written as the
//! batch is filled (invisible until recorded); [`Batch::commit`] hands the batch to the backend,
//! which records the objects, trees and (optionally) an entry at once (see [`Backend::commit`]).
//! On the local store that is the crash-safe order: object files in place, one sync, then one
//! SQLite transaction.

use std::collections::HashSet;

use crate::store::db::NewEntry;
use crate::store::digest::Digest;
use crate::store::meta::Meta;
use crate::store::tree::{Node, Tree, TreeRows};
use crate::store::Backend;

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

    /// Record an object that is already in place (written by parallel workers, or by
    /// [`Backend::write_object`]); whether the batch did not hold it yet.
    pub fn record_placed(&mut self, id: Digest, size: u64) -> bool {
        let new = self.seen.insert(id);
        if new {
            self.objects.push((id, size));
        }
        new
    }

    /// Whether the batch holds object `id`.
    pub fn holds(&self, id: &Digest) -> bool {
        self.seen.contains(id)
    }

    /// Store `bytes` as a file object with `meta`; returns the file node.
    pub fn put_bytes<B: Backend + ?Sized>(&mut self, store: &B, bytes: &[u8], meta: Meta) -> anyhow::Result<Node> {
        let w = store.write_object(&mut &*bytes, &meta, u64::MAX)?;
        if w.new {
            self.record_placed(w.id, w.size);
        }
        Ok(Node::File { meta, size: w.size, content: w.content, link: 0 })
    }

    /// Encode a tree into the batch and return its id.
    pub fn put_tree(&mut self, tree: &Tree) -> Digest {
        tree.encode_into(&mut self.trees)
    }

    pub fn new_objects(&self) -> u64 {
        self.objects.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.trees.is_empty()
    }

    /// The objects (id, size) and trees, for a backend's [`Backend::commit`].
    pub fn into_parts(self) -> (Vec<(Digest, u64)>, TreeRows) {
        (self.objects, self.trees)
    }

    /// Record everything (and `entry`) at once; see [`Backend::commit`].
    pub fn commit<B: Backend + ?Sized>(self, store: &mut B, entry: Option<&NewEntry<'_>>) -> anyhow::Result<()> {
        store.commit(self, entry)
    }
}
