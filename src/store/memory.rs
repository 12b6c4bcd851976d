//! A store backend held in memory: for tests of the logic above the store (the step memo, the
//! build graph) without root, a disk or SQLite. It keeps the [`Backend`] contract exactly as the
//! local store does, which the contract suite checks.
//!
//! Written objects wait in a staging map until a commit records them, as object files wait
//! without rows on disk. Times come from a counter, so entries are ordered by creation.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Mutex;

use crate::store::batch::Batch;
use crate::store::db::{EntryRow, NewEntry, RootRow};
use crate::store::digest::Digest;
use crate::store::error::StoreError;
use crate::store::meta::Meta;
use crate::store::{Backend, Written};

#[derive(Default)]
pub struct MemoryStore {
    staged: Mutex<HashMap<Digest, Vec<u8>>>,
    objects: HashMap<Digest, Vec<u8>>,
    trees: HashMap<Digest, Vec<u8>>,
    entries: HashMap<Digest, (EntryRow, Vec<Digest>)>,
    logs: HashMap<Digest, Vec<u8>>,
    roots: BTreeMap<String, RootRow>,
    clock: i64,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }
}

impl Backend for MemoryStore {
    fn has_objects(&self, ids: &[Digest]) -> anyhow::Result<Vec<bool>> {
        Ok(ids.iter().map(|id| self.objects.contains_key(id)).collect())
    }

    fn write_object(&self, reader: &mut dyn Read, meta: &Meta, limit: u64) -> anyhow::Result<Written> {
        let mut content = Vec::new();
        reader.take(limit.saturating_add(1)).read_to_end(&mut content)?;
        if content.len() as u64 > limit {
            anyhow::bail!("content is larger than the limit of {limit} bytes");
        }
        let size = content.len() as u64;
        let digest = Digest::of(&content);
        let id = crate::store::tree::object_id(meta, size, &digest);
        let new = !self.objects.contains_key(&id);
        if new {
            self.staged.lock().expect("staging map").insert(id, content);
        }
        Ok(Written { id, content: digest, size, new })
    }

    fn read_object(&self, id: &Digest) -> anyhow::Result<Vec<u8>> {
        self.objects.get(id).cloned().ok_or_else(|| StoreError::ObjectMissing(*id).into())
    }

    fn tree_data(&self, id: &Digest) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.trees.get(id).cloned())
    }

    fn entry(&self, key: &Digest) -> anyhow::Result<Option<EntryRow>> {
        Ok(self.entries.get(key).map(|(e, _)| e.clone()))
    }

    fn entry_log(&self, key: &Digest) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.logs.get(key).cloned())
    }

    fn entries(&self) -> anyhow::Result<Vec<EntryRow>> {
        let mut all: Vec<EntryRow> = self.entries.values().map(|(e, _)| e.clone()).collect();
        all.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        Ok(all)
    }

    fn entry_refs(&self, key: &Digest) -> anyhow::Result<Vec<Digest>> {
        Ok(self.entries.get(key).map(|(_, r)| r.clone()).unwrap_or_default())
    }

    fn commit(&mut self, batch: Batch, entry: Option<&NewEntry<'_>>) -> anyhow::Result<()> {
        let (objects, trees) = batch.into_parts();
        // Check everything before changing anything: a refused commit records nothing.
        let mut staged = self.staged.lock().expect("staging map");
        for (id, _) in &objects {
            if !staged.contains_key(id) && !self.objects.contains_key(id) {
                anyhow::bail!("object {id} was never written");
            }
        }
        if let Some(e) = entry {
            if !self.trees.contains_key(&e.tree) && !trees.iter().any(|(id, _)| *id == e.tree) {
                return Err(StoreError::TreeMissing(e.tree).into());
            }
            if let Some(r) = e.refs.iter().find(|r| !self.entries.contains_key(*r)) {
                return Err(StoreError::EntryMissing(*r).into());
            }
        }
        for (id, _) in &objects {
            if let Some(content) = staged.remove(id) {
                self.objects.insert(*id, content);
            }
        }
        drop(staged);
        for (id, data) in trees {
            self.trees.entry(id).or_insert(data);
        }
        if let Some(e) = entry {
            if !self.entries.contains_key(&e.key) {
                let created = self.tick();
                let row = EntryRow {
                    key: e.key,
                    kind: e.kind.to_string(),
                    name: e.name.to_string(),
                    tree: e.tree,
                    files: e.files,
                    bytes: e.bytes,
                    created,
                };
                let mut refs = e.refs.to_vec();
                refs.sort();
                refs.dedup();
                self.entries.insert(e.key, (row, refs));
                if let Some(log) = e.log {
                    self.logs.insert(e.key, log.to_vec());
                }
            }
        }
        Ok(())
    }

    fn root(&self, name: &str) -> anyhow::Result<Option<RootRow>> {
        Ok(self.roots.get(name).cloned())
    }

    fn roots(&self) -> anyhow::Result<Vec<RootRow>> {
        Ok(self.roots.values().cloned().collect())
    }

    fn set_root(&mut self, name: &str, entry: &Digest) -> anyhow::Result<()> {
        crate::store::check_root_name(name)?;
        if !self.entries.contains_key(entry) {
            return Err(StoreError::EntryMissing(*entry).into());
        }
        let updated = self.tick();
        self.roots.insert(name.to_string(), RootRow { name: name.to_string(), entry: *entry, updated });
        Ok(())
    }

    fn remove_root(&mut self, name: &str) -> anyhow::Result<bool> {
        Ok(self.roots.remove(name).is_some())
    }
}
