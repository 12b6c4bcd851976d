//! The store: immutable, content-addressed objects and trees, entries that memoize build steps,
//! and the roots that keep them alive.
//!
//! [`Backend`] is the boundary everything above the store goes through to find and record
//! results. Two backends implement it: [`local::Store`] (a directory of object files with the
//! metadata in SQLite, what strata runs on) and [`memory::MemoryStore`] (everything in memory,
//! for tests of the logic above the store, without root or a disk). One contract suite
//! (`contract.rs`) runs against both. A remote, read-through backend (a binary cache) plugs in
//! here: it fills a local store and verifies what it receives, and nothing above the boundary
//! changes.
//!
//! What stays local-only, on [`local::Store`]: checkouts and imports of host directories
//! ([`checkout`], [`import`]), locks ([`lock`]), garbage collection ([`gc`]), verification
//! ([`verify`]) and the kept checkouts of [`lowers`].
//!
//! The contract, shared by every backend:
//! - ids name content: an object id covers its metadata and content ([`tree::object_id`]); a
//!   tree id is blake3 of its canonical encoding. [`tree::TreeRows`] is only filled by
//!   [`tree::Tree::encode_into`], so the trees of a [`batch::Batch`] are right by construction;
//!   a backend that receives trees from elsewhere checks them with [`tree::Tree::decode`] and
//!   [`tree::Tree::id`].
//! - nothing written is visible until [`Backend::commit`] records it, and a commit is atomic:
//!   its objects, trees and entry all become visible, or none does.
//! - an entry names a tree the backend has, and references only entries it has; a root names
//!   an entry it has. Writes that break this are refused and change nothing.
//! - an entry, once recorded under a key, is never replaced: recording the same key again keeps
//!   the first.

use std::io::Read;

use crate::store::db::{EntryRow, NewEntry, RootRow};
use crate::store::digest::{is_hex_prefix, Digest};
use crate::store::error::StoreError;
use crate::store::meta::Meta;
use crate::store::tree::{Node, Tree};

pub mod batch;
pub mod checkout;
#[cfg(test)]
mod contract;
pub mod db;
pub mod digest;
pub mod doomed;
pub mod entry;
pub mod error;
pub mod gc;
pub mod import;
pub mod local;
pub mod lock;
pub mod logs;
pub mod lowers;
pub mod memo;
pub mod memory;
pub mod meta;
pub mod object;
pub mod repair;
pub mod session;
pub mod tree;
pub mod tree_builder;
pub mod verify;
pub mod walk;

/// A file object written by [`Backend::write_object`]: recorded already (`new` is false), or
/// in place and recorded by the commit of a batch that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// The object id: metadata and content.
    pub id: Digest,
    /// blake3 of the content.
    pub content: Digest,
    pub size: u64,
    /// Whether the backend did not have the object recorded already: only then must a batch
    /// record it.
    pub new: bool,
}

/// What a store backend provides: objects by id, trees by id, entries by input key, roots by
/// name. Each method states what "not found" means and what is checked on write.
pub trait Backend {
    /// Which of `ids` are recorded objects, in order. An object written but not yet committed
    /// is not recorded.
    fn has_objects(&self, ids: &[Digest]) -> anyhow::Result<Vec<bool>>;

    /// Write a file object: the content of `reader` (at most `limit` bytes, else an error) with
    /// `meta`. The id is computed here, from what was read; the object becomes visible when a
    /// [`batch::Batch`] that holds it is committed. Writing an object the backend already has is
    /// harmless.
    fn write_object(&self, reader: &mut dyn Read, meta: &Meta, limit: u64) -> anyhow::Result<Written>;

    /// The content of recorded object `id`; [`StoreError::ObjectMissing`] when it is not
    /// recorded.
    fn read_object(&self, id: &Digest) -> anyhow::Result<Vec<u8>>;

    /// The canonical encoding of tree `id`; `None` when the tree is not recorded.
    fn tree_data(&self, id: &Digest) -> anyhow::Result<Option<Vec<u8>>>;

    /// The entry recorded under input key `key`; `None` when there is none (the step has not
    /// run here: a miss, not an error).
    fn entry(&self, key: &Digest) -> anyhow::Result<Option<EntryRow>>;

    /// What entry `key`'s step printed, as recorded with it; `None` when the step kept no log
    /// (or there is no such entry). [`StoreError::CorruptLog`] when the stored log does not
    /// decode to its recorded size.
    fn entry_log(&self, key: &Digest) -> anyhow::Result<Option<Vec<u8>>>;

    /// Every entry, oldest first (then by name).
    fn entries(&self) -> anyhow::Result<Vec<EntryRow>>;

    /// The keys entry `key` references, sorted; empty for an unknown entry.
    fn entry_refs(&self, key: &Digest) -> anyhow::Result<Vec<Digest>>;

    /// Record everything `batch` holds, and `entry` if given, atomically. Refused, with nothing
    /// recorded, when the entry's tree is neither in the batch nor recorded, or when it
    /// references an unknown entry. An entry whose key is already recorded is left as it was.
    /// A batch names only objects written to this backend (by [`Backend::write_object`], or by
    /// the local store's own workers): the memory backend checks that; the local one trusts its
    /// callers, as a check would cost a `stat` per object on the hottest path.
    fn commit(&mut self, batch: batch::Batch, entry: Option<&NewEntry<'_>>) -> anyhow::Result<()>;

    /// Root `name`; `None` when there is no such root.
    fn root(&self, name: &str) -> anyhow::Result<Option<RootRow>>;

    /// Every root, by name.
    fn roots(&self) -> anyhow::Result<Vec<RootRow>>;

    /// Point root `name` at `entry`, creating or moving it. [`StoreError::EntryMissing`] when
    /// the entry is not recorded; the name is checked with [`check_root_name`].
    fn set_root(&mut self, name: &str, entry: &Digest) -> anyhow::Result<()>;

    /// Remove root `name`; whether there was one.
    fn remove_root(&mut self, name: &str) -> anyhow::Result<bool>;

    /// Load and decode tree `id`: [`StoreError::TreeMissing`] when it is not recorded,
    /// [`StoreError::CorruptTree`] when its encoding does not decode.
    fn tree(&self, id: &Digest) -> anyhow::Result<Tree> {
        let data = self.tree_data(id)?.ok_or(StoreError::TreeMissing(*id))?;
        Tree::decode(&data).map_err(|e| StoreError::CorruptTree { id: *id, reason: e.to_string() }.into())
    }

    /// The node at `path` (components) under tree `root`; `None` if it does not exist.
    fn lookup(&self, root: &Digest, path: &[&[u8]]) -> anyhow::Result<Option<Node>> {
        let Some((last, parents)) = path.split_last() else {
            return Ok(Some(Node::Directory { tree: *root }));
        };
        let mut dir = *root;
        for name in parents {
            match self.tree(&dir)?.get(name) {
                Some(Node::Directory { tree }) => dir = *tree,
                _ => return Ok(None),
            }
        }
        Ok(self.tree(&dir)?.get(last).cloned())
    }

    /// The content of a regular file node (read into memory: for small files such as control
    /// data).
    fn read_file(&self, node: &Node) -> anyhow::Result<Vec<u8>> {
        let Node::File { meta, size, content, .. } = node else {
            anyhow::bail!("not a regular file");
        };
        self.read_object(&tree::object_id(meta, *size, content))
    }
}

/// Validate a root name: `images/base/3`, `tags/v1`; not a hex string, no empty or dot components.
pub fn check_root_name(name: &str) -> anyhow::Result<()> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+@/".contains(&b));
    let ok_parts = name.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
    if name.is_empty() || !ok_chars || !ok_parts {
        anyhow::bail!(
            "invalid root name `{name}`: use letters, digits and `._-+@`, with `/` between non-empty parts (e.g. `tags/base`)"
        );
    }
    if is_hex_prefix(&name.to_ascii_lowercase()) {
        anyhow::bail!("invalid root name `{name}`: a name made only of hex digits would hide ids that start with it");
    }
    Ok(())
}
