//! Garbage collection while builds run: rows gc found dead are first **doomed**, and deleted
//! only once no process that could still use them is alive.
//!
//! The protocol (the proof is in docs/design.md, "gc while builds run"):
//! - gc marks what roots hold and, in the same write transaction, dooms every dead object, tree
//!   and entry with a new epoch (table `doomed`, run in `gc_runs`); just after the commit it
//!   stamps the run with the boot-time clock. The run's **blockers** are the sessions
//!   ([`crate::store::session`]) of the same boot that started before that stamp.
//! - A run is **sweepable** once its blockers have all ended. gc marks the sweepable runs' rows
//!   **dying** (epoch -1), unlinks the dying objects' files, then deletes the dying rows
//!   ([`finish_sweep`]), all under the exclusive sweep lock (`<store>/sweep.lock`).
//! - A process uses a row only after seeing it not doomed: object lookups, entry lookups, roots
//!   and commits **revive** a doomed row and what it reaches ([`revive`]) before relying on it;
//!   a dying row is waited for (the sweep lock; a sweep takes milliseconds) and is then gone.
//!   A row seen live before a run doomed it is safe while the process lives, since its session
//!   blocks that run.
//! - Invariant: a tree or entry that is not doomed reaches nothing doomed. gc keeps it (what it
//!   marks live it un-dooms), and so do revivals and commits (they revive what they reference),
//!   which is why a revival walks only through doomed rows.
//! - Rows are deleted only after their files are unlinked, so an object without a row has no
//!   unlink pending: a writer that finds no row may place the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::digest::Digest;
use crate::store::lock::{LockMode, StoreLock};
use crate::store::tree::{object_id, Node, Tree};

/// What a doomed row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Object = 0,
    Tree = 1,
    Entry = 2,
}

impl Kind {
    /// The kind stored in the `doomed.kind` column.
    pub fn from_column(n: i64) -> Kind {
        match n {
            0 => Kind::Object,
            1 => Kind::Tree,
            _ => Kind::Entry,
        }
    }
}

/// The epoch of a row being deleted.
pub const DYING: i64 = -1;

pub fn sweep_lock_path(root: &Path) -> PathBuf {
    root.join("sweep.lock")
}

/// Take the sweep lock exclusively (gc, and a process that finishes an interrupted sweep).
pub fn sweep_lock(root: &Path, wait: Duration) -> anyhow::Result<StoreLock> {
    StoreLock::acquire(&sweep_lock_path(root), LockMode::Exclusive, wait, || {
        tracing::info!("waiting for a gc to finish deleting");
    })
}

/// Whether anything is doomed (the fast path of commits when not).
pub fn any(conn: &Connection) -> anyhow::Result<bool> {
    Ok(conn.prepare_cached("SELECT 1 FROM doomed LIMIT 1")?.exists([])?)
}

/// The doom epoch of a row, if it is doomed.
fn epoch(conn: &Connection, kind: Kind, id: &Digest) -> anyhow::Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT epoch FROM doomed WHERE kind = ?1 AND id = ?2")?
        .query_row(params![kind as i64, id.as_bytes()], |r| r.get(0))
        .optional()?)
}

fn exists(conn: &Connection, kind: Kind, id: &Digest) -> anyhow::Result<bool> {
    let sql = match kind {
        Kind::Object => "SELECT 1 FROM objects WHERE id = ?1",
        Kind::Tree => "SELECT 1 FROM trees WHERE id = ?1",
        Kind::Entry => "SELECT 1 FROM entries WHERE key = ?1",
    };
    Ok(conn.prepare_cached(sql)?.exists([id.as_bytes()])?)
}

/// What a revival found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revival {
    /// Rows no longer doomed.
    pub revived: u64,
    /// Rows that are gone (swept): whatever needed them must be made again.
    pub missing: Vec<(Kind, Digest)>,
    /// Rows being deleted right now: wait for the sweep, then try again.
    pub dying: bool,
}

/// Revive `roots` and every doomed row they reach, inside the caller's write transaction.
/// Rows that are not doomed end the walk (the invariant above).
pub fn revive_in(conn: &Connection, roots: &[(Kind, Digest)]) -> anyhow::Result<Revival> {
    let mut out = Revival::default();
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<(Kind, Digest)> = roots.to_vec();
    while let Some((kind, id)) = stack.pop() {
        if !seen.insert((kind, id)) {
            continue;
        }
        let doom = epoch(conn, kind, &id)?;
        if doom.is_none() {
            if !exists(conn, kind, &id)? {
                out.missing.push((kind, id));
            }
            continue;
        }
        if doom == Some(DYING) {
            out.dying = true;
            continue;
        }
        conn.prepare_cached("DELETE FROM doomed WHERE kind = ?1 AND id = ?2")?
            .execute(params![kind as i64, id.as_bytes()])?;
        out.revived += 1;
        match kind {
            Kind::Object => {}
            Kind::Entry => {
                let (tree,): (Vec<u8>,) = conn
                    .prepare_cached("SELECT tree FROM entries WHERE key = ?1")?
                    .query_row([id.as_bytes()], |r| Ok((r.get(0)?,)))?;
                stack.push((Kind::Tree, digest(&tree)?));
                let mut refs = conn.prepare_cached("SELECT target FROM entry_refs WHERE entry = ?1")?;
                for t in refs.query_map([id.as_bytes()], |r| r.get::<_, Vec<u8>>(0))? {
                    stack.push((Kind::Entry, digest(&t?)?));
                }
            }
            Kind::Tree => {
                let data: Vec<u8> = conn
                    .prepare_cached("SELECT data FROM trees WHERE id = ?1")?
                    .query_row([id.as_bytes()], |r| r.get(0))?;
                stack.extend(children(&id, &data)?);
            }
        }
    }
    Ok(out)
}

/// The rows a tree's encoding references.
pub fn children(id: &Digest, data: &[u8]) -> anyhow::Result<Vec<(Kind, Digest)>> {
    let tree = Tree::decode(data)
        .map_err(|e| crate::store::error::StoreError::CorruptTree { id: *id, reason: e.to_string() })?;
    Ok(tree
        .entries
        .into_iter()
        .filter_map(|(_, node)| match node {
            Node::Directory { tree } => Some((Kind::Tree, tree)),
            Node::File { meta, size, content, .. } => Some((Kind::Object, object_id(&meta, size, &content))),
            _ => None,
        })
        .collect())
}

fn digest(bytes: &[u8]) -> anyhow::Result<Digest> {
    Digest::from_slice(bytes).ok_or_else(|| anyhow::anyhow!("an id in the store database is not 32 bytes"))
}

/// Revive `roots` in a transaction of its own, waiting out a sweep in progress. Returns the
/// rows that are gone (empty: all of `roots` can be used; otherwise nothing was revived).
pub fn revive(
    conn: &Connection,
    root: &Path,
    wait: Duration,
    roots: &[(Kind, Digest)],
) -> anyhow::Result<Vec<(Kind, Digest)>> {
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let r = match revive_in(conn, roots) {
            Ok(r) => r,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        if r.dying {
            conn.execute_batch("ROLLBACK")?;
            wait_out_sweep(conn, root, wait)?;
            continue;
        }
        if !r.missing.is_empty() {
            // All or nothing: a row stays doomed rather than live with parts gone.
            conn.execute_batch("ROLLBACK")?;
            return Ok(r.missing);
        }
        if let Err(e) = conn.execute_batch("COMMIT") {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        return Ok(r.missing);
    }
}

/// Run `f` in a write transaction (`BEGIN IMMEDIATE`): committed when it returns `Ok`, rolled
/// back when it fails or the commit does.
pub fn in_tx<T>(conn: &Connection, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match f() {
        Ok(v) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Mark the rows of runs `epochs` dying, in one transaction; first revive what roots reach
/// (a root set on a doomed entry after the run's mark), so nothing rooted is ever deleted.
pub fn set_dying(conn: &Connection, epochs: &[i64]) -> anyhow::Result<()> {
    in_tx(conn, || {
        let rooted: Vec<Vec<u8>> = {
            let mut stmt = conn.prepare(
                "SELECT DISTINCT r.entry FROM roots r JOIN doomed d ON d.kind = 2 AND d.id = r.entry WHERE d.epoch > 0",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let roots: Vec<(Kind, Digest)> =
            rooted.iter().map(|k| Ok((Kind::Entry, digest(k)?))).collect::<anyhow::Result<_>>()?;
        revive_in(conn, &roots)?;
        let mut dying = conn.prepare_cached("UPDATE doomed SET epoch = -1 WHERE epoch = ?1")?;
        for e in epochs {
            dying.execute([e])?;
        }
        Ok(())
    })
}

/// Wait until no sweep is in progress, finishing one a crash interrupted.
pub fn wait_out_sweep(conn: &Connection, root: &Path, wait: Duration) -> anyhow::Result<()> {
    let _lock = sweep_lock(root, wait)?;
    finish_sweep(conn, root)?;
    Ok(())
}

/// The rows a sweep is deleting (or a crash left half-deleted): not part of the store any
/// more, whatever their files say.
pub fn dying(conn: &Connection) -> anyhow::Result<std::collections::HashSet<(Kind, Digest)>> {
    let mut stmt = conn.prepare("SELECT kind, id FROM doomed WHERE epoch = -1")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let mut out = std::collections::HashSet::new();
    for row in rows {
        let (kind, id) = row?;
        out.insert((Kind::from_column(kind), digest(&id)?));
    }
    Ok(out)
}

/// What a sweep deleted.
#[derive(Clone, Debug, Default)]
pub struct Swept {
    pub entries: u64,
    pub trees: u64,
    pub objects: u64,
    pub bytes: u64,
}

/// Delete the dying rows: their object files first, then the rows, in one transaction. The
/// caller holds the sweep lock exclusively.
pub fn finish_sweep(conn: &Connection, root: &Path) -> anyhow::Result<Swept> {
    let mut out = Swept::default();
    let dying: Vec<(Vec<u8>, i64)> = {
        let mut stmt = conn.prepare(
            "SELECT d.id, COALESCE(o.size, 0) FROM doomed d LEFT JOIN objects o ON o.id = d.id \
             WHERE d.kind = 0 AND d.epoch = -1",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let objects = root.join("objects");
    for (id, size) in &dying {
        let id = digest(id)?;
        let hex = id.to_hex();
        match fs_err::remove_file(objects.join(&hex[..2]).join(&hex[2..])) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        out.objects += 1;
        out.bytes += *size as u64;
    }
    in_tx(conn, || {
        conn.pragma_update(None, "defer_foreign_keys", "ON")?;
        out.entries = conn
            .execute("DELETE FROM entries WHERE key IN (SELECT id FROM doomed WHERE kind = 2 AND epoch = -1)", [])?
            as u64;
        out.trees = conn
            .execute("DELETE FROM trees WHERE id IN (SELECT id FROM doomed WHERE kind = 1 AND epoch = -1)", [])?
            as u64;
        conn.execute("DELETE FROM objects WHERE id IN (SELECT id FROM doomed WHERE kind = 0 AND epoch = -1)", [])?;
        conn.execute("DELETE FROM doomed WHERE epoch = -1", [])?;
        conn.execute("DELETE FROM gc_runs WHERE epoch NOT IN (SELECT DISTINCT epoch FROM doomed)", [])?;
        Ok(())
    })?;
    Ok(out)
}
