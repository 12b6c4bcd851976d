//! Checking a store (`strata store verify`).
//!
//! Fast mode: every tree row decodes to its id and references only trees and objects the
//! database has; every object row's file exists with the recorded size; every entry's tree and
//! references exist. Full mode adds: every object's content is re-hashed and its on-disk owner,
//! mode and xattrs are what its id says (what a hardlinked checkout would carry).
//! Object files without a row (left by an interrupted write) are counted, not errors: gc removes them.
//! Rows a gc is deleting (dying, see `store::doomed`) are not part of the store and not checked.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use rayon::prelude::*;

use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::meta::{read_xattrs, Meta};
use crate::store::object::hash_file;
use crate::store::tree::{object_id, Node, Tree};
use crate::util::progress::Progress;

#[derive(Clone, Debug, serde::Serialize)]
pub struct EntryRef {
    pub key: Digest,
    pub name: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    /// `object`, `tree` or `entry`.
    pub what: &'static str,
    pub id: Digest,
    pub problem: String,
    /// Entries whose tree contains the bad object or tree.
    pub entries: Vec<EntryRef>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifyReport {
    pub full: bool,
    pub entries: u64,
    pub trees: u64,
    pub objects: u64,
    pub orphan_files: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The metadata, size and content digest a referenced object must have.
type Expected = (Meta, u64, Digest);

pub fn verify(store: &Store, full: bool, progress: &Progress) -> anyhow::Result<VerifyReport> {
    // The rows are read in one snapshot (a gc may delete rows meanwhile); files are not, so an
    // object found missing is checked again against the rows as they are now.
    store.db().sql().execute_batch("BEGIN DEFERRED")?;
    let report = verify_snapshot(store, full, progress);
    let _ = store.db().sql().execute_batch("COMMIT");
    let mut report = report?;
    if report.problems.iter().any(|p| p.what == "object") {
        let dying = crate::store::doomed::dying(store.db().sql())?;
        let rows: HashSet<Digest> = store.db().all_objects()?.into_iter().map(|o| o.0).collect();
        report.problems.retain(|p| {
            p.what != "object"
                || p.problem.starts_with("referenced as")
                || (rows.contains(&p.id) && !dying.contains(&(crate::store::doomed::Kind::Object, p.id)))
        });
    }
    Ok(report)
}

fn verify_snapshot(store: &Store, full: bool, progress: &Progress) -> anyhow::Result<VerifyReport> {
    let db = store.db();
    let mut problems = Vec::new();
    // Rows being deleted (a sweep in progress, or one a crash cut short) are not checked.
    let dying = crate::store::doomed::dying(db.sql())?;
    let object_rows: HashMap<Digest, u64> = db
        .all_objects()?
        .into_iter()
        .filter(|(id, _)| !dying.contains(&(crate::store::doomed::Kind::Object, *id)))
        .collect();

    // Trees.
    let tree_ids: Vec<Digest> =
        db.all_tree_ids()?.into_iter().filter(|id| !dying.contains(&(crate::store::doomed::Kind::Tree, *id))).collect();
    let tree_set: HashSet<Digest> = tree_ids.iter().copied().collect();
    let mut trees: HashMap<Digest, Tree> = HashMap::new();
    let mut expected: HashMap<Digest, Expected> = HashMap::new();
    for id in &tree_ids {
        let data = db.tree_data(id)?.unwrap_or_default();
        if Digest::of(&data) != *id {
            problems.push(problem("tree", *id, "its encoding does not hash to its id".into()));
            continue;
        }
        let tree = match Tree::decode(&data) {
            Ok(t) => t,
            Err(e) => {
                problems.push(problem("tree", *id, format!("cannot be decoded: {e}")));
                continue;
            }
        };
        for (name, node) in &tree.entries {
            match node {
                Node::Directory { tree: child } if !tree_set.contains(child) => problems.push(problem(
                    "tree",
                    *id,
                    format!("entry {name:?} references tree {} which is missing", child.short()),
                )),
                Node::File { meta, size, content, .. } => {
                    let oid = object_id(meta, *size, content);
                    if !object_rows.contains_key(&oid) {
                        problems.push(problem("object", oid, format!("referenced as {name:?} but has no row")));
                    }
                    expected.insert(oid, (meta.clone(), *size, *content));
                }
                _ => {}
            }
        }
        trees.insert(*id, tree);
    }

    // Objects.
    let objects = store.object_store();
    let privileged = store.privileged();
    let rows: Vec<(Digest, u64)> = object_rows.iter().map(|(k, v)| (*k, *v)).collect();
    let total: u64 = if full { rows.iter().map(|r| r.1).sum() } else { rows.len() as u64 };
    let bar = if full { progress.bytes(total, "verifying") } else { progress.items(total, "verifying") };
    let bad_objects: Vec<Problem> = rows
        .par_iter()
        .filter_map(|(id, size)| {
            let result = check_object(&objects, id, *size, expected.get(id), full, privileged);
            bar.inc(if full { *size } else { 1 });
            result.err().map(|msg| problem("object", *id, msg))
        })
        .collect();
    bar.finish_and_clear();
    problems.extend(bad_objects);

    // Entries.
    let entries = db.entries()?;
    let entry_keys: HashSet<Digest> = entries.iter().map(|e| e.key).collect();
    for e in &entries {
        if !tree_set.contains(&e.tree) {
            problems.push(problem("entry", e.key, format!("its tree {} is missing", e.tree.short())));
        }
        for r in db.entry_refs(&e.key)? {
            if !entry_keys.contains(&r) {
                problems.push(problem("entry", e.key, format!("references missing entry {}", r.short())));
            }
        }
    }

    // Who uses what is bad.
    if !problems.is_empty() {
        let bad: HashSet<Digest> = problems.iter().map(|p| p.id).collect();
        for e in &entries {
            let reached = reachable_bad(&trees, &e.tree, &bad);
            for p in problems.iter_mut().filter(|p| reached.contains(&p.id)) {
                p.entries.push(EntryRef { key: e.key, name: e.name.clone() });
            }
        }
    }
    problems.sort_by(|a, b| (a.what, a.id).cmp(&(b.what, b.id)));
    problems.dedup_by(|a, b| a.what == b.what && a.id == b.id && a.problem == b.problem);

    let orphan_files = count_orphans(store, &object_rows)?;
    Ok(VerifyReport {
        full,
        entries: entries.len() as u64,
        trees: tree_ids.len() as u64,
        objects: rows.len() as u64,
        orphan_files,
        problems,
    })
}

fn problem(what: &'static str, id: Digest, problem: String) -> Problem {
    Problem { what, id, problem, entries: vec![] }
}

fn check_object(
    objects: &crate::store::object::ObjectStore,
    id: &Digest,
    size: u64,
    expected: Option<&Expected>,
    full: bool,
    privileged: bool,
) -> Result<(), String> {
    let path = objects.path(id);
    let st = match fs_err::symlink_metadata(&path) {
        Ok(st) => st,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("object file is missing".into()),
        Err(e) => return Err(e.to_string()),
    };
    if !st.is_file() {
        return Err("object path is not a regular file".into());
    }
    if st.len() != size {
        return Err(format!("object file has {} bytes, expected {size}", st.len()));
    }
    if !full {
        return Ok(());
    }
    let mut file = fs_err::File::open(&path).map_err(|e| e.to_string())?;
    let content = hash_file(file.file_mut(), size).map_err(|e| format!("cannot read: {e}"))?;
    let Some((meta, _, want)) = expected else { return Ok(()) };
    if content != *want {
        return Err("content does not match its digest (the file was modified)".into());
    }
    if object_id(meta, size, &content) != *id {
        return Err("metadata and content do not hash to the object id".into());
    }
    let mode = st.mode() & 0o7777;
    if mode != objects.disk_mode(meta) {
        return Err(format!("mode is {mode:o}, expected {:o}", objects.disk_mode(meta)));
    }
    if privileged {
        if (st.uid(), st.gid()) != (meta.uid, meta.gid) {
            return Err(format!("owner is {}:{}, expected {}:{}", st.uid(), st.gid(), meta.uid, meta.gid));
        }
        let xattrs = read_xattrs(&path).map_err(|e| format!("{e:#}"))?;
        if xattrs != meta.xattrs {
            return Err("extended attributes differ from the object's".into());
        }
    }
    Ok(())
}

/// Bad ids reachable from tree `root`.
fn reachable_bad(trees: &HashMap<Digest, Tree>, root: &Digest, bad: &HashSet<Digest>) -> HashSet<Digest> {
    let mut found = HashSet::new();
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if bad.contains(&id) {
            found.insert(id);
        }
        let Some(tree) = trees.get(&id) else { continue };
        for (_, node) in &tree.entries {
            match node {
                Node::Directory { tree } => stack.push(*tree),
                Node::File { meta, size, content, .. } => {
                    let oid = object_id(meta, *size, content);
                    if bad.contains(&oid) {
                        found.insert(oid);
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// Object files on disk that have no row.
fn count_orphans(store: &Store, rows: &HashMap<Digest, u64>) -> anyhow::Result<u64> {
    let mut n = 0;
    crate::store::gc::for_each_object_file(store, |id, _| {
        if id.is_none_or(|id| !rows.contains_key(&id)) {
            n += 1;
        }
        Ok(())
    })?;
    Ok(n)
}
