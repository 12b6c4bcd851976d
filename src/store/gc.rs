//! Garbage collection (`strata gc`): delete everything no root keeps alive.
//!
//! Runs under the exclusive store lock. Live = the entries roots name, the entries they reference
//! (transitively), their trees and subtrees, and the objects those trees hold. The database rows
//! of everything else are deleted in one transaction first, then the object files are unlinked,
//! then object files that never got a row (orphans of interrupted writes) are removed. A crash
//! at any point leaves only orphan files, which the next gc removes.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::tree::{object_id, Node};
use crate::util::progress::Progress;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Kept sandbox checkouts removed (none on a dry run).
    pub lowers: u64,
    pub entries: u64,
    pub trees: u64,
    pub objects: u64,
    pub bytes: u64,
}

/// What keeps entries alive besides the roots, for one run.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// Entries the caller keeps (cached artifacts of kept generations).
    pub extra: Vec<Digest>,
    /// Roots to disregard: those a dry run of retention would remove.
    pub ignore: HashSet<String>,
}

/// Collect what neither a root (save `live.ignore`) nor `live.extra` holds.
pub fn gc(store: &mut Store, dry_run: bool, live: &Live, progress: &Progress) -> anyhow::Result<GcReport> {
    let lowers = if dry_run {
        0
    } else {
        // Kept sandbox checkouts are a cache of hardlinks to objects: they go first, so that
        // the objects gc removes free their space. (gc holds the store exclusively: none is in use.)
        crate::store::lowers::clear(store)?
    };
    let db = store.db();
    // Live entries.
    let mut refs: HashMap<Digest, Vec<Digest>> = HashMap::new();
    for (from, to) in db.all_entry_refs()? {
        refs.entry(from).or_default().push(to);
    }
    let mut live_entries = HashSet::new();
    let mut stack: Vec<Digest> = db
        .roots()?
        .into_iter()
        .filter(|r| !live.ignore.contains(&r.name))
        .map(|r| r.entry)
        .chain(live.extra.iter().copied())
        .collect();
    while let Some(key) = stack.pop() {
        if live_entries.insert(key) {
            stack.extend(refs.get(&key).into_iter().flatten().copied());
        }
    }
    let entries = db.entries()?;
    let dead_entries: Vec<Digest> = entries.iter().map(|e| e.key).filter(|k| !live_entries.contains(k)).collect();

    // Live trees and objects.
    let mut live_trees = HashSet::new();
    let mut live_objects = HashSet::new();
    let mut stack: Vec<Digest> = entries.iter().filter(|e| live_entries.contains(&e.key)).map(|e| e.tree).collect();
    while let Some(id) = stack.pop() {
        if !live_trees.insert(id) {
            continue;
        }
        for (_, node) in store.tree(&id)?.entries {
            match node {
                Node::Directory { tree } => stack.push(tree),
                Node::File { meta, size, content, .. } => {
                    live_objects.insert(object_id(&meta, size, &content));
                }
                _ => {}
            }
        }
    }
    let dead_trees: Vec<Digest> = db.all_tree_ids()?.into_iter().filter(|t| !live_trees.contains(t)).collect();
    let all_objects = db.all_objects()?;
    let dead_objects: Vec<(Digest, u64)> =
        all_objects.iter().filter(|(id, _)| !live_objects.contains(id)).copied().collect();

    let mut report = GcReport {
        dry_run,
        lowers,
        entries: dead_entries.len() as u64,
        trees: dead_trees.len() as u64,
        objects: dead_objects.len() as u64,
        bytes: dead_objects.iter().map(|o| o.1).sum(),
    };
    tracing::debug!(?report, live_entries = live_entries.len(), live_objects = live_objects.len(), "gc plan");
    if dry_run {
        let known: HashSet<Digest> = all_objects.into_iter().map(|o| o.0).collect();
        for_each_object_file(store, |id, len| {
            if id.is_none_or(|id| !known.contains(&id)) {
                report.objects += 1;
                report.bytes += len;
            }
            Ok(())
        })?;
        return Ok(report);
    }

    let tx = store.db_mut().transaction()?;
    // Dead entries may reference each other; only live ones can be referenced by live ones.
    tx.defer_foreign_keys()?;
    for key in &dead_entries {
        tx.delete_entry(key)?;
    }
    for id in &dead_trees {
        tx.delete_tree(id)?;
    }
    for (id, _) in &dead_objects {
        tx.delete_object(id)?;
    }
    tx.commit()?;

    let bar = progress.items(dead_objects.len() as u64, "deleting");
    let objects = store.object_store();
    for (id, _) in &dead_objects {
        remove_if_present(&objects.path(id))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Orphans: files with no row (interrupted writes, or unlinks a crash cut short).
    for_each_object_file(store, |id, len| {
        // Dead objects with rows were unlinked above, so everything found here is an orphan.
        if id.is_none_or(|id| !live_objects.contains(&id)) {
            report.objects += 1;
            report.bytes += len;
            return Err(Remove);
        }
        Ok(())
    })?;
    Ok(report)
}

/// Returned by a [`for_each_object_file`] callback to delete the file.
pub struct Remove;

/// Call `f` with the id (None for a file whose name is not an id) and length of every file under
/// `objects/`. A callback returning `Err(Remove)` deletes the file.
pub fn for_each_object_file(
    store: &Store,
    mut f: impl FnMut(Option<Digest>, u64) -> Result<(), Remove>,
) -> anyhow::Result<()> {
    let objects = store.objects_dir();
    for prefix in fs_err::read_dir(&objects)? {
        let prefix = prefix?;
        if !prefix.file_type()?.is_dir() {
            continue;
        }
        let p = prefix.file_name().to_string_lossy().into_owned();
        for file in fs_err::read_dir(prefix.path())? {
            let file = file?;
            let name = file.file_name().to_string_lossy().into_owned();
            let id = format!("{p}{name}").parse::<Digest>().ok();
            let len = file.metadata()?.len();
            if f(id, len).is_err() {
                remove_if_present(&file.path())?;
            }
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs_err::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}
