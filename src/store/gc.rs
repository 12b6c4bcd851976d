//! Garbage collection (`strata gc`): delete everything no root keeps alive, while builds run.
//!
//! Live = the entries roots name (and the caller's extra ones), the entries they reference
//! (transitively), their trees and subtrees, and the objects those trees hold. gc takes the
//! store lock shared, like every other command, `gc.lock` exclusively (one gc at a time), and
//! the sweep lock only while rows are deleted. A run, in order ([`crate::store::doomed`] has the
//! protocol):
//! 1. finish a sweep a crash interrupted; remove kept sandbox checkouts no run is using;
//! 2. in one write transaction: mark; un-doom what is live again; doom what is dead with a new
//!    epoch; then stamp the run's clock;
//! 3. every run whose blockers (sessions that started before its stamp) have ended is swept:
//!    its rows still doomed become dying, their object files are unlinked, the rows deleted;
//! 4. object files without a row (what interrupted writes left) are deleted when no other strata
//!    process runs.
//!
//! With no other session alive, a run dooms and sweeps at once: everything dead goes. With builds
//! running, what they might use stays, doomed, and the first gc after they end deletes it.
//! A crash at any point leaves doomed or dying rows (finished by the next gc or by whoever meets
//! them) and orphan files (step 4), never a row without its file.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rusqlite::params;

use crate::store::digest::Digest;
use crate::store::doomed::{self, Kind};
use crate::store::local::Store;
use crate::store::lock::{LockMode, StoreLock};
use crate::store::session;
use crate::store::tree::{object_id, Node};
use crate::util::progress::Progress;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Kept sandbox checkouts removed (none on a dry run).
    pub lowers: u64,
    /// Deleted (or, on a dry run, that would be).
    pub entries: u64,
    pub trees: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Dead, but kept while running processes may use it; the first gc after they end
    /// deletes it.
    pub deferred: Deferred,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Deferred {
    pub entries: u64,
    pub trees: u64,
    pub objects: u64,
    pub bytes: u64,
    /// The processes it waits for.
    pub pids: Vec<u32>,
}

/// What keeps entries alive besides the roots, for one run.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// Entries the caller keeps (cached artifacts of kept generations).
    pub extra: Vec<Digest>,
    /// Roots to disregard: those a dry run of retention would remove.
    pub ignore: HashSet<String>,
}

/// The live sets.
struct Marked {
    entries: HashSet<Digest>,
    trees: HashSet<Digest>,
    objects: HashSet<Digest>,
    all_entries: Vec<Digest>,
    all_trees: Vec<Digest>,
    all_objects: Vec<(Digest, u64)>,
}

fn mark(store: &Store, live: &Live) -> anyhow::Result<Marked> {
    let db = store.db();
    let mut refs: HashMap<Digest, Vec<Digest>> = HashMap::new();
    for (from, to) in db.all_entry_refs()? {
        refs.entry(from).or_default().push(to);
    }
    let mut entries = HashSet::new();
    let mut stack: Vec<Digest> = db
        .roots()?
        .into_iter()
        .filter(|r| !live.ignore.contains(&r.name))
        .map(|r| r.entry)
        .chain(live.extra.iter().copied())
        .collect();
    while let Some(key) = stack.pop() {
        if entries.insert(key) {
            stack.extend(refs.get(&key).into_iter().flatten().copied());
        }
    }
    let all: Vec<(Digest, Digest)> = {
        let mut stmt = db.sql().prepare("SELECT key, tree FROM entries")?;
        let rows =
            stmt.query_map([], |r| Ok((crate::store::db::digest_col(r, 0)?, crate::store::db::digest_col(r, 1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut trees = HashSet::new();
    let mut objects = HashSet::new();
    let mut stack: Vec<Digest> = all.iter().filter(|(k, _)| entries.contains(k)).map(|(_, t)| *t).collect();
    while let Some(id) = stack.pop() {
        if !trees.insert(id) {
            continue;
        }
        for (_, node) in store.tree(&id)?.entries {
            match node {
                Node::Directory { tree } => stack.push(tree),
                Node::File { meta, size, content, .. } => {
                    objects.insert(object_id(&meta, size, &content));
                }
                _ => {}
            }
        }
    }
    Ok(Marked {
        entries,
        trees,
        objects,
        all_entries: all.into_iter().map(|(k, _)| k).collect(),
        all_trees: db.all_tree_ids()?,
        all_objects: db.all_objects()?,
    })
}

/// One gc run: its epoch, boot and clock stamp.
struct Run {
    epoch: i64,
    boot: String,
    clock: Option<i64>,
}

fn runs(store: &Store) -> anyhow::Result<Vec<Run>> {
    let mut stmt = store.db().sql().prepare("SELECT epoch, boot, clock FROM gc_runs ORDER BY epoch")?;
    let rows = stmt.query_map([], |r| Ok(Run { epoch: r.get(0)?, boot: r.get(1)?, clock: r.get(2)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The sessions that block `run`: of its boot, started before its stamp (all, while it has none);
/// a live session of another boot (a store shared between machines) blocks every run.
fn blockers<'a>(run: &Run, sessions: &'a [session::SessionInfo]) -> Vec<&'a session::SessionInfo> {
    sessions.iter().filter(|s| s.boot != run.boot || run.clock.is_none_or(|c| s.start as i64 <= c)).collect()
}

fn doomed_rows(store: &Store) -> anyhow::Result<HashMap<(Kind, Digest), i64>> {
    let mut stmt = store.db().sql().prepare("SELECT kind, id, epoch FROM doomed")?;
    let rows = stmt.query_map([], |r| {
        Ok(((Kind::from_column(r.get(0)?), crate::store::db::digest_col(r, 1)?), r.get::<_, i64>(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Collect what neither a root (save `live.ignore`) nor `live.extra` holds, as far as running
/// processes allow; see the module documentation.
pub fn gc(store: &mut Store, dry_run: bool, live: &Live, progress: &Progress) -> anyhow::Result<GcReport> {
    let root = store.root().to_path_buf();
    // One gc at a time; builds never take this lock.
    let _one = StoreLock::acquire(&root.join("gc.lock"), LockMode::Exclusive, store.lock_wait(), || {
        tracing::info!("waiting for another gc to finish");
    })?;
    let own = store.session_name().to_string();
    let others = |root: &Path| -> anyhow::Result<Vec<session::SessionInfo>> {
        Ok(session::live(root)?.into_iter().filter(|s| s.name != own).collect())
    };
    if !dry_run {
        let _sweep = doomed::sweep_lock(&root, store.lock_wait())?;
        doomed::finish_sweep(store.db().sql(), &root)?;
    }
    let lowers = if dry_run { 0 } else { crate::store::lowers::clear(store)? };
    let spinner = progress.spinner("gc: marking");

    if dry_run {
        // A consistent snapshot; nothing is written.
        let conn = store.db().sql();
        conn.execute_batch("BEGIN DEFERRED")?;
        let marked = mark(store, live).and_then(|m| Ok((m, doomed_rows(store)?)));
        let _ = store.db().sql().execute_batch("ROLLBACK");
        let (m, doomed_before) = marked?;
        spinner.finish_and_clear();
        let sessions = others(&root)?;
        // What a run now would delete: dead rows of sweepable runs, and, when no other process
        // is alive, every dead row.
        let runs = runs(store)?;
        let sweepable: HashSet<i64> =
            runs.iter().filter(|r| blockers(r, &sessions).is_empty()).map(|r| r.epoch).collect();
        let goes = |kind: Kind, id: &Digest| match doomed_before.get(&(kind, *id)) {
            Some(e) => sweepable.contains(e) || *e == doomed::DYING,
            None => sessions.is_empty(),
        };
        let mut report = GcReport { dry_run, lowers, ..Default::default() };
        for k in m.all_entries.iter().filter(|k| !m.entries.contains(k)) {
            if goes(Kind::Entry, k) {
                report.entries += 1
            } else {
                report.deferred.entries += 1
            }
        }
        for t in m.all_trees.iter().filter(|t| !m.trees.contains(t)) {
            if goes(Kind::Tree, t) {
                report.trees += 1
            } else {
                report.deferred.trees += 1
            }
        }
        for (o, size) in m.all_objects.iter().filter(|(o, _)| !m.objects.contains(o)) {
            if goes(Kind::Object, o) {
                report.objects += 1;
                report.bytes += size;
            } else {
                report.deferred.objects += 1;
                report.deferred.bytes += size;
            }
        }
        let any = report.deferred.objects + report.deferred.trees + report.deferred.entries > 0;
        report.deferred.pids = deferred_pids(&runs, &sweepable, &sessions, any);
        if sessions.is_empty() {
            let known: HashSet<Digest> = m.all_objects.iter().map(|o| o.0).collect();
            for_each_object_file(store, |id, meta| {
                if id.is_none_or(|id| !known.contains(&id)) {
                    report.objects += 1;
                    report.bytes += meta.len();
                }
                Ok(())
            })?;
        }
        return Ok(report);
    }

    // 2. Mark and doom in one write transaction: no commit comes between.
    let conn = store.db().sql();
    let (m, _) = doomed::in_tx(conn, || {
        let m = mark(store, live)?;
        let doomed_before = doomed_rows(store)?;
        // What is live again (a root added to it) is not doomed.
        let mut undoom = conn.prepare_cached("DELETE FROM doomed WHERE kind = ?1 AND id = ?2")?;
        for (kind, id) in doomed_before.keys() {
            let is_live = match kind {
                Kind::Entry => m.entries.contains(id),
                Kind::Tree => m.trees.contains(id),
                Kind::Object => m.objects.contains(id),
            };
            if is_live {
                undoom.execute(params![*kind as i64, id.as_bytes()])?;
            }
        }
        let epoch: i64 = conn.query_row("SELECT COALESCE(MAX(epoch), 0) + 1 FROM gc_runs", [], |r| r.get(0))?;
        conn.execute(
            "INSERT INTO gc_runs (epoch, boot, clock) VALUES (?1, ?2, NULL)",
            params![epoch, session::boot_id()],
        )?;
        let mut doom = conn.prepare_cached("INSERT OR IGNORE INTO doomed (kind, id, epoch) VALUES (?1, ?2, ?3)")?;
        for k in m.all_entries.iter().filter(|k| !m.entries.contains(k)) {
            doom.execute(params![Kind::Entry as i64, k.as_bytes(), epoch])?;
        }
        for t in m.all_trees.iter().filter(|t| !m.trees.contains(t)) {
            doom.execute(params![Kind::Tree as i64, t.as_bytes(), epoch])?;
        }
        for (o, _) in m.all_objects.iter().filter(|(o, _)| !m.objects.contains(o)) {
            doom.execute(params![Kind::Object as i64, o.as_bytes(), epoch])?;
        }
        Ok((m, epoch))
    })?;
    // The stamp: sessions that started before it may have seen what this run doomed.
    conn.execute("UPDATE gc_runs SET clock = ?1 WHERE clock IS NULL", [session::clock_ns() as i64])?;
    let sizes: HashMap<Digest, u64> = m.all_objects.iter().copied().collect();
    drop(m);

    // 3. Sweep the runs nobody blocks.
    spinner.set_message("gc: deleting");
    let sessions = others(&root)?;
    let runs = runs(store)?;
    let sweepable: Vec<i64> = runs.iter().filter(|r| blockers(r, &sessions).is_empty()).map(|r| r.epoch).collect();
    let swept = {
        let _sweep = doomed::sweep_lock(&root, store.lock_wait())?;
        doomed::set_dying(store.db().sql(), &sweepable)?;
        doomed::finish_sweep(store.db().sql(), &root)?
    };
    let mut report = GcReport {
        dry_run,
        lowers,
        entries: swept.entries,
        trees: swept.trees,
        objects: swept.objects,
        bytes: swept.bytes,
        deferred: Deferred::default(),
    };
    for (kind, id) in doomed_rows(store)?.into_keys() {
        match kind {
            Kind::Entry => report.deferred.entries += 1,
            Kind::Tree => report.deferred.trees += 1,
            Kind::Object => {
                report.deferred.objects += 1;
                report.deferred.bytes += sizes.get(&id).copied().unwrap_or(0);
            }
        }
    }
    let sweepable: HashSet<i64> = sweepable.into_iter().collect();
    let any = report.deferred.objects + report.deferred.trees + report.deferred.entries > 0;
    report.deferred.pids = deferred_pids(&runs, &sweepable, &sessions, any);
    spinner.finish_and_clear();

    // 4. Orphans: files with no row, which interrupted writes leave. Only while no other strata
    // process runs (a live writer's file has no row until its commit), and each checked by inode
    // after it is moved aside (a writer may place the same object again meanwhile).
    if others(&root)?.is_empty() {
        let known: HashSet<Digest> = store.db().all_objects()?.into_iter().map(|o| o.0).collect();
        let mut orphans = vec![];
        for_each_object_file(store, |id, meta| {
            if id.is_none_or(|id| !known.contains(&id)) {
                orphans.push(meta.ino());
                report.objects += 1;
                report.bytes += meta.len();
                return Err(Remove);
            }
            Ok(())
        })?;
    }
    Ok(report)
}

/// The pids of the sessions that block a run not swept.
fn deferred_pids(runs: &[Run], sweepable: &HashSet<i64>, sessions: &[session::SessionInfo], any: bool) -> Vec<u32> {
    let mut pids: Vec<u32> = runs
        .iter()
        .filter(|r| !sweepable.contains(&r.epoch))
        .flat_map(|r| blockers(r, sessions))
        .map(|s| s.pid)
        .collect();
    if any && runs.iter().all(|r| sweepable.contains(&r.epoch)) {
        // A dry run's would-be run: every live session blocks it.
        pids.extend(sessions.iter().map(|s| s.pid));
    }
    pids.sort();
    pids.dedup();
    pids
}

/// Returned by a [`for_each_object_file`] callback to delete the file.
pub struct Remove;

/// Call `f` with the id (None for a file whose name is not an id) and metadata of every file
/// under `objects/`. A callback returning `Err(Remove)` deletes the file: it is moved aside
/// first and deleted only if it is still the file `f` saw (same inode); a file placed there
/// again meanwhile is put back.
pub fn for_each_object_file(
    store: &Store,
    mut f: impl FnMut(Option<Digest>, &std::fs::Metadata) -> Result<(), Remove>,
) -> anyhow::Result<()> {
    let objects = store.objects_dir();
    let aside = store.tmp_dir().join(format!("orphan-{}", std::process::id()));
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
            let meta = match file.metadata() {
                Ok(m) => m,
                // Removed meanwhile (a sweep).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if f(id, &meta).is_err() {
                remove_if_same(&file.path(), &aside, meta.ino())?;
            }
        }
    }
    Ok(())
}

fn remove_if_same(path: &Path, aside: &Path, ino: u64) -> anyhow::Result<()> {
    match fs_err::rename(path, aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if fs_err::symlink_metadata(aside)?.ino() != ino {
        // Placed again since it was looked at: back where it was, unless placed once more.
        match fs_err::hard_link(aside, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    fs_err::remove_file(aside)?;
    Ok(())
}
