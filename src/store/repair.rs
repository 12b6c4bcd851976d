//! Repair (`strata store verify --repair`): bring back what can be brought back, drop the rest.
//!
//! For every object `verify` finds missing or damaged (content, size, owner, mode, xattrs), in
//! order:
//! 1. another file the store has with the same content: an object with the same content digest
//!    (another owner or mode), or the damaged object's own file when only its metadata is wrong;
//! 2. a kept sandbox checkout (`cache/lowers`) holding a file with that content;
//! 3. the caller's other sources: the OSTree repositories strata wrote, which keep every content
//!    object they received, then the package steps made again from the download cache
//!    ([`crate::lifecycle`] supplies both).
//!
//! Each candidate is hashed and must match the content digest the trees record; the object is
//! then written anew with its exact metadata. What cannot be restored is dropped: the trees that
//! reach it, the entries whose trees are among them and every entry built on those, and the roots
//! that named them (a removed generation's image is named in the report). The next build makes
//! those steps again. Invariant: after a repair, `verify` finds nothing, and nothing was dropped
//! that a source could restore.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::meta::Meta;
use crate::store::tree::{object_id, Node, Tree};
use crate::store::verify::{verify, VerifyReport};
use crate::util::progress::Progress;

/// Another place to look for content: given the store, an object id and its content digest, the
/// content and a name for where it came from.
pub type Source<'a> = &'a dyn Fn(&Store, &Digest, &Digest) -> Option<(Vec<u8>, String)>;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Restored {
    pub object: Digest,
    pub from: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Dropped {
    pub key: Digest,
    pub name: String,
    /// Roots that named it (removed).
    pub roots: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RepairReport {
    /// What verify found before.
    pub before: VerifyReport,
    pub restored: Vec<Restored>,
    pub dropped: Vec<Dropped>,
    pub dropped_trees: u64,
    pub dropped_objects: u64,
    /// What verify finds after.
    pub after: VerifyReport,
}

/// Verify, repair what verify found, verify again.
pub fn repair(store: &mut Store, full: bool, extra: Source<'_>, progress: &Progress) -> anyhow::Result<RepairReport> {
    let before = verify(store, full, progress)?;
    let mut restored = vec![];
    let mut dropped = vec![];
    let (mut dropped_trees, mut dropped_objects) = (0, 0);
    if !before.ok() {
        // What every object must be, from the trees; and the objects by content.
        let mut trees: HashMap<Digest, Tree> = HashMap::new();
        for id in store.db().all_tree_ids()? {
            if let Ok(t) = store.tree(&id) {
                trees.insert(id, t);
            }
        }
        let mut expected: HashMap<Digest, (Meta, u64, Digest)> = HashMap::new();
        let mut by_content: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for t in trees.values() {
            for (_, node) in &t.entries {
                if let Node::File { meta, size, content, .. } = node {
                    let oid = object_id(meta, *size, content);
                    if expected.insert(oid, (meta.clone(), *size, *content)).is_none() {
                        by_content.entry(*content).or_default().push(oid);
                    }
                }
            }
        }
        let bad_objects: HashSet<Digest> =
            before.problems.iter().filter(|p| p.what == "object").map(|p| p.id).collect();
        let mut lost: HashSet<Digest> = HashSet::new();
        for oid in &bad_objects {
            let Some((meta, size, content)) = expected.get(oid).cloned() else {
                // No tree references it: garbage, gone with its row.
                lost.insert(*oid);
                continue;
            };
            let found = from_store(store, oid, &content, size, &by_content, &bad_objects)
                .or_else(|| from_lowers(store, &content, size, &trees))
                .or_else(|| {
                    extra(store, oid, &content).filter(|(b, _)| b.len() as u64 == size && Digest::of(b) == content)
                });
            match found {
                Some((bytes, from)) => {
                    let objects = store.object_store();
                    let staged = objects.stage(&mut bytes.as_slice(), &meta, u64::MAX)?;
                    anyhow::ensure!(
                        staged.id == *oid,
                        "restored object {} hashes to {}",
                        oid.short(),
                        staged.id.short()
                    );
                    objects.commit(staged)?;
                    store.sync()?;
                    let tx = store.db_mut().transaction()?;
                    tx.insert_object(oid, size)?;
                    tx.commit()?;
                    restored.push(Restored { object: *oid, from });
                }
                None => {
                    lost.insert(*oid);
                }
            }
        }
        // Trees that are bad themselves, or reach something lost.
        let mut bad_trees: HashSet<Digest> =
            before.problems.iter().filter(|p| p.what == "tree").map(|p| p.id).collect();
        loop {
            let before_len = bad_trees.len();
            for (id, t) in &trees {
                if bad_trees.contains(id) {
                    continue;
                }
                let bad = t.entries.iter().any(|(_, node)| match node {
                    Node::Directory { tree } => bad_trees.contains(tree) || !trees.contains_key(tree),
                    Node::File { meta, size, content, .. } => lost.contains(&object_id(meta, *size, content)),
                    _ => false,
                });
                if bad {
                    bad_trees.insert(*id);
                }
            }
            if bad_trees.len() == before_len {
                break;
            }
        }
        // Entries on a bad tree, or built on a bad entry; and bad entries verify named.
        let entries = store.db().entries()?;
        let mut bad_entries: HashSet<Digest> =
            before.problems.iter().filter(|p| p.what == "entry").map(|p| p.id).collect();
        bad_entries.extend(entries.iter().filter(|e| bad_trees.contains(&e.tree)).map(|e| e.key));
        let refs = store.db().all_entry_refs()?;
        loop {
            let before_len = bad_entries.len();
            for (from, to) in &refs {
                if bad_entries.contains(to) {
                    bad_entries.insert(*from);
                }
            }
            if bad_entries.len() == before_len {
                break;
            }
        }
        if !bad_entries.is_empty() || !bad_trees.is_empty() || !lost.is_empty() {
            let names: HashMap<Digest, String> = entries.iter().map(|e| (e.key, e.name.clone())).collect();
            let roots = store.db().roots()?;
            let tx = store.db_mut().transaction()?;
            tx.defer_foreign_keys()?;
            for key in &bad_entries {
                let named: Vec<String> = roots.iter().filter(|r| r.entry == *key).map(|r| r.name.clone()).collect();
                for r in &named {
                    tx.remove_root(r)?;
                }
                tx.sql().execute("DELETE FROM doomed WHERE kind = 2 AND id = ?1", [key.as_bytes()])?;
                tx.delete_entry(key)?;
                dropped.push(Dropped { key: *key, name: names.get(key).cloned().unwrap_or_default(), roots: named });
            }
            for id in &bad_trees {
                tx.sql().execute("DELETE FROM doomed WHERE kind = 1 AND id = ?1", [id.as_bytes()])?;
                tx.delete_tree(id)?;
            }
            for id in &lost {
                tx.sql().execute("DELETE FROM doomed WHERE kind = 0 AND id = ?1", [id.as_bytes()])?;
                tx.delete_object(id)?;
            }
            tx.commit()?;
            let objects = store.object_store();
            for id in &lost {
                match fs_err::remove_file(objects.path(id)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            dropped_trees = bad_trees.len() as u64;
            dropped_objects = lost.len() as u64;
        }
        dropped.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let after = verify(store, full, progress)?;
    Ok(RepairReport { before, restored, dropped, dropped_trees, dropped_objects, after })
}

/// The content from another object of the store (or the object's own file, when only its
/// metadata is wrong), checked against the digest.
fn from_store(
    store: &Store,
    oid: &Digest,
    content: &Digest,
    size: u64,
    by_content: &HashMap<Digest, Vec<Digest>>,
    bad: &HashSet<Digest>,
) -> Option<(Vec<u8>, String)> {
    let objects = store.object_store();
    let mut candidates: Vec<Digest> = by_content.get(content).into_iter().flatten().copied().collect();
    // Its own file last: right content, wrong owner or mode.
    candidates.sort_by_key(|c| (c == oid, bad.contains(c)));
    for c in candidates {
        if let Some(bytes) = read_checked(&objects.path(&c), content, size) {
            let from = if c == *oid {
                "its own file (metadata restored)".to_string()
            } else {
                format!("object {}", c.short())
            };
            return Some((bytes, from));
        }
    }
    None
}

/// The content from a kept sandbox checkout (hardlinks of objects as they were).
fn from_lowers(store: &Store, content: &Digest, size: u64, trees: &HashMap<Digest, Tree>) -> Option<(Vec<u8>, String)> {
    let base = store.root().join("cache/lowers");
    for e in fs_err::read_dir(&base).ok()?.flatten() {
        let Ok(tree) = e.file_name().to_string_lossy().parse::<Digest>() else { continue };
        let mut stack: Vec<(Digest, PathBuf)> = vec![(tree, e.path())];
        while let Some((id, dir)) = stack.pop() {
            let Some(t) = trees.get(&id) else { continue };
            for (name, node) in &t.entries {
                let path = dir.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
                match node {
                    Node::Directory { tree } => stack.push((*tree, path)),
                    Node::File { content: c, .. } if c == content => {
                        if let Some(bytes) = read_checked(&path, content, size) {
                            return Some((bytes, format!("kept checkout {}", path.display())));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    None
}

/// The file's bytes, read once, if they are `size` bytes with digest `content`.
fn read_checked(path: &std::path::Path, content: &Digest, size: u64) -> Option<Vec<u8>> {
    let bytes = fs_err::read(path).ok()?;
    (bytes.len() as u64 == size && Digest::of(&bytes) == *content).then_some(bytes)
}
