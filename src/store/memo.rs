//! The step memo: how every cached step of strata finds or records its result.
//!
//! A step has a kind, a name for people, and an input key: blake3 over its kind, its named
//! parameters and the ids of its inputs ([`entry_key`]), never over anything that varies between
//! runs. [`Memo::get_or_build`] looks the key up in the backend; on a miss it runs the build,
//! then records the resulting tree as an entry under the key, with the entries it references
//! (so gc keeps them) and its file totals, and returns the entry as recorded. `plan` computes
//! the same keys and only looks them up ([`Memo::lookup`]).
//!
//! Invariants: an entry is recorded only after everything its tree needs is recorded (in the
//! same commit or before); a key, once recorded, keeps its first entry (two processes that build
//! the same step concurrently both get the first one back).

use crate::store::batch::Batch;
use crate::store::db::{EntryRow, NewEntry};
use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::error::StoreError;
use crate::store::Backend;

/// One cached step: what it is and the key it is found under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memo {
    pub kind: EntryKind,
    pub name: String,
    pub key: Digest,
}

/// What a step's build made: the tree, the batch that holds its new objects and trees (empty
/// when they are recorded already), the entries it references, its file totals when the build
/// counted them (else they are counted from the tree), and what it printed when it ran scripts
/// (kept with the entry, see `strata log`).
pub struct Built {
    pub tree: Digest,
    pub batch: Batch,
    pub refs: Vec<Digest>,
    pub totals: Option<(u64, u64)>,
    pub log: Option<Vec<u8>>,
}

impl Built {
    /// A tree whose objects and trees are recorded already.
    pub fn recorded(tree: Digest) -> Built {
        Built { tree, batch: Batch::new(), refs: vec![], totals: None, log: None }
    }

    /// A tree whose new objects and trees are in `batch`.
    pub fn in_batch(tree: Digest, batch: Batch) -> Built {
        Built { tree, batch, refs: vec![], totals: None, log: None }
    }

    pub fn refs(mut self, refs: impl Into<Vec<Digest>>) -> Built {
        self.refs = refs.into();
        self
    }

    pub fn totals(mut self, files: u64, bytes: u64) -> Built {
        self.totals = Some((files, bytes));
        self
    }

    /// Keep what the step printed with its entry.
    pub fn log(mut self, log: impl Into<Vec<u8>>) -> Built {
        self.log = Some(log.into());
        self
    }
}

impl Memo {
    /// A step of `kind` keyed by its named parameters (in a fixed order) and input ids.
    pub fn new(kind: EntryKind, name: impl Into<String>, params: &[(&str, &[u8])], inputs: &[Digest]) -> Memo {
        Memo { kind, name: name.into(), key: entry_key(kind, params, inputs) }
    }

    /// A step whose key was computed ahead (as plans do).
    pub fn with_key(kind: EntryKind, name: impl Into<String>, key: Digest) -> Memo {
        Memo { kind, name: name.into(), key }
    }

    /// The step's entry, if it is recorded.
    pub fn lookup<B: Backend + ?Sized>(&self, store: &B) -> anyhow::Result<Option<EntryRow>> {
        store.entry(&self.key)
    }

    /// The step's entry, found or built: (entry, whether it was found).
    pub fn get_or_build<B: Backend + ?Sized>(
        &self,
        store: &mut B,
        build: impl FnOnce(&mut B) -> anyhow::Result<Built>,
    ) -> anyhow::Result<(EntryRow, bool)> {
        if let Some(e) = self.lookup(store)? {
            return Ok((e, true));
        }
        let built = build(store)?;
        Ok((self.record(store, built)?, false))
    }

    /// Record what a build made as this step's entry; returns the entry as recorded.
    pub fn record<B: Backend + ?Sized>(&self, store: &mut B, built: Built) -> anyhow::Result<EntryRow> {
        let Built { tree, batch, refs, totals, log } = built;
        let (batch, (files, bytes)) = match totals {
            Some(t) => (batch, t),
            None => {
                // The tree must be readable to be counted.
                if !batch.is_empty() {
                    batch.commit(store, None)?;
                }
                (Batch::new(), crate::store::walk::file_totals(store, &tree)?)
            }
        };
        let entry = NewEntry {
            key: self.key,
            kind: self.kind.as_str(),
            name: &self.name,
            tree,
            files,
            bytes,
            refs: &refs,
            log: log.as_deref(),
        };
        batch.commit(store, Some(&entry))?;
        store.entry(&self.key)?.ok_or_else(|| StoreError::EntryMissing(self.key).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::meta::Meta;
    use crate::store::tree::Name;
    use crate::store::tree_builder::TreeBuilder;

    fn file_tree(store: &MemoryStore, batch: &mut Batch, content: &[u8]) -> Digest {
        let meta = Meta { mode: 0o755, uid: 0, gid: 0, xattrs: vec![] };
        let mut b = TreeBuilder::new(meta.clone());
        let node = batch.put_bytes(store, content, Meta { mode: 0o644, ..meta }).unwrap();
        b.insert(&[Name::new("f").unwrap()], node).unwrap();
        b.finish(&mut batch.trees)
    }

    #[test]
    fn builds_once_then_finds() {
        let mut store = MemoryStore::new();
        let memo = Memo::new(EntryKind::Step, "s", &[("a", b"1")], &[]);
        let mut runs = 0;
        for expect_cached in [false, true] {
            let (e, cached) = memo
                .get_or_build(&mut store, |s| {
                    runs += 1;
                    let mut batch = Batch::new();
                    let tree = file_tree(s, &mut batch, b"hello");
                    Ok(Built::in_batch(tree, batch))
                })
                .unwrap();
            assert_eq!(cached, expect_cached);
            assert_eq!((e.files, e.bytes, e.kind.as_str(), e.name.as_str()), (1, 5, "step", "s"));
        }
        assert_eq!(runs, 1);
    }

    #[test]
    fn given_totals_and_refs_are_recorded() {
        let mut store = MemoryStore::new();
        let base = Memo::new(EntryKind::Import, "base", &[], &[]);
        let (b, _) = base
            .get_or_build(&mut store, |s| {
                let mut batch = Batch::new();
                let tree = file_tree(s, &mut batch, b"x");
                Ok(Built::in_batch(tree, batch))
            })
            .unwrap();
        let top = Memo::new(EntryKind::Layer, "top", &[], &[b.tree]);
        let (t, cached) =
            top.get_or_build(&mut store, |_| Ok(Built::recorded(b.tree).refs([b.key]).totals(7, 70))).unwrap();
        assert!(!cached);
        assert_eq!((t.files, t.bytes), (7, 70));
        assert_eq!(store.entry_refs(&t.key).unwrap(), vec![b.key]);
    }

    #[test]
    fn a_failed_build_records_nothing() {
        let mut store = MemoryStore::new();
        let memo = Memo::new(EntryKind::Step, "s", &[], &[]);
        let err = memo.get_or_build(&mut store, |_| anyhow::bail!("script failed")).unwrap_err();
        assert_eq!(err.to_string(), "script failed");
        assert!(memo.lookup(&store).unwrap().is_none());
    }

    #[test]
    fn keys_depend_on_kind_params_and_inputs() {
        let a = Memo::new(EntryKind::Step, "x", &[("p", b"1")], &[]);
        assert_eq!(a.key, Memo::new(EntryKind::Step, "other name", &[("p", b"1")], &[]).key);
        assert_ne!(a.key, Memo::new(EntryKind::Layer, "x", &[("p", b"1")], &[]).key);
        assert_ne!(a.key, Memo::new(EntryKind::Step, "x", &[("p", b"2")], &[]).key);
        assert_ne!(a.key, Memo::new(EntryKind::Step, "x", &[("p", b"1")], &[Digest::of(b"t")]).key);
    }
}
