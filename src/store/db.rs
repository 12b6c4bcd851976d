//! The store's SQL: the schema migrations and every query of the store's own tables (objects,
//! trees, entries, references, roots). Tables that other modules own are queried there, through
//! [`Db::sql`] and [`Tx::sql`]: generations in `graph::generations`, the OSTree mapping in
//! `ostree::mapping`. All migrations are applied here, in order, whoever owns the tables.
//!
//! Migrations are the numbered files of `store-schema/`, compiled in, applied in order inside one
//! transaction each, and tracked by SQLite's `user_version`. A database newer than this build is
//! refused rather than guessed at. Landed migration files are never edited.
//!
//! Invariants kept by the callers of this module (see `store`): an `objects` row is inserted only
//! after its file is synced; a `trees` row only together with the rows it references; an `entries`
//! row only together with its tree.

use std::path::Path;

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::doomed::{self, Kind};

use crate::store::digest::Digest;
use crate::store::error::StoreError;

/// The schema files, in order. Index + 1 is the version each one brings the database to.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_initial", include_str!("../../store-schema/0001_initial.sql")),
    ("0002_generations", include_str!("../../store-schema/0002_generations.sql")),
    ("0003_ostree", include_str!("../../store-schema/0003_ostree.sql")),
    ("0004_ostree_cleanup", include_str!("../../store-schema/0004_ostree_cleanup.sql")),
    ("0005_logs", include_str!("../../store-schema/0005_logs.sql")),
    ("0006_lifecycle", include_str!("../../store-schema/0006_lifecycle.sql")),
    ("0007_concurrent_gc", include_str!("../../store-schema/0007_concurrent_gc.sql")),
    ("0008_described_retention", include_str!("../../store-schema/0008_described_retention.sql")),
    ("0009_oci_layers", include_str!("../../store-schema/0009_oci_layers.sql")),
    ("0010_oci_configs", include_str!("../../store-schema/0010_oci_configs.sql")),
    ("0011_oci_chunks", include_str!("../../store-schema/0011_oci_chunks.sql")),
    ("0012_oci_pushed", include_str!("../../store-schema/0012_oci_pushed.sql")),
    ("0013_ostree_container_layers", include_str!("../../store-schema/0013_ostree_container_layers.sql")),
];

/// The zstd level of step logs: text compresses well at a low level, and logs are written on the
/// build's path.
const LOG_LEVEL: i32 = 3;

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// One row of `entries`, joined with the roots that name it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EntryRow {
    pub key: Digest,
    pub kind: String,
    pub name: String,
    pub tree: Digest,
    pub files: u64,
    pub bytes: u64,
    pub created: i64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RootRow {
    pub name: String,
    pub entry: Digest,
    pub updated: i64,
}

/// A new entry to record.
pub struct NewEntry<'a> {
    pub key: Digest,
    pub kind: &'a str,
    pub name: &'a str,
    pub tree: Digest,
    pub files: u64,
    pub bytes: u64,
    pub refs: &'a [Digest],
    /// What the step printed, kept with the entry (compressed); `None` for steps that run
    /// nothing.
    pub log: Option<&'a [u8]>,
}

pub struct Db {
    conn: Connection,
    /// The store's directory (for the sweep lock) and how long to wait for a sweep.
    root: std::path::PathBuf,
    wait: std::time::Duration,
}

pub fn digest_col(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Digest> {
    let blob: Vec<u8> = row.get(idx)?;
    Digest::from_slice(&blob).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Blob, "digest is not 32 bytes".into())
    })
}

fn entry_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok(EntryRow {
        key: digest_col(row, 0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        tree: digest_col(row, 3)?,
        files: row.get::<_, i64>(4)? as u64,
        bytes: row.get::<_, i64>(5)? as u64,
        created: row.get(6)?,
    })
}

const ENTRY_COLS: &str = "key, kind, name, tree, files, bytes, created";

/// The inclusive blob range of all digests starting with the hex `prefix`.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let pad = |c: char| {
        let mut s = prefix.to_string();
        while s.len() < 64 {
            s.push(c);
        }
        hex::decode(s).expect("hex prefix")
    };
    (pad('0'), pad('f'))
}

impl Db {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Db> {
        let mut conn =
            Connection::open(path).with_context(|| format!("failed to open store database `{}`", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .with_context(|| format!("failed to enable WAL on `{}`", path.display()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn, path)?;
        let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(Db { conn, root, wait: std::time::Duration::from_secs(60) })
    }

    /// How long to wait for a gc's sweep in progress (the caller's `--lock-wait`).
    pub fn set_wait(&mut self, wait: std::time::Duration) {
        self.wait = wait;
    }

    /// Revive doomed rows before they are used (see [`crate::store::doomed`]); returns the
    /// rows that are gone.
    pub fn revive(&self, rows: &[(Kind, Digest)]) -> anyhow::Result<Vec<(Kind, Digest)>> {
        doomed::revive(&self.conn, &self.root, self.wait, rows)
    }

    /// The connection, for the modules that own tables of their own (generations in
    /// `graph::generations`, the OSTree mapping in `ostree::mapping`); the store's own tables
    /// are read through the methods here.
    pub fn sql(&self) -> &Connection {
        &self.conn
    }

    pub fn transaction(&mut self) -> anyhow::Result<Tx<'_>> {
        Ok(Tx { tx: self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)? })
    }

    /// Which of `ids` are in the store and may be used: an `objects` row that is not doomed,
    /// or a doomed one revived here (a gc found it dead while this process may use it).
    pub fn known_objects(&self, ids: &[Digest]) -> anyhow::Result<Vec<bool>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.epoch IS NOT NULL FROM objects o LEFT JOIN doomed d ON d.kind = 0 AND d.id = o.id WHERE o.id = ?1",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        let mut doomed_ones = vec![];
        for (i, id) in ids.iter().enumerate() {
            match stmt.query_row([id.as_bytes()], |r| r.get::<_, bool>(0)).optional()? {
                None => out.push(false),
                Some(false) => out.push(true),
                Some(true) => {
                    out.push(true);
                    doomed_ones.push(i);
                }
            }
        }
        // Rare (between a gc that doomed them and the sweep): one revival each, all or nothing.
        for i in doomed_ones {
            out[i] = self.revive(&[(Kind::Object, ids[i])])?.is_empty();
        }
        Ok(out)
    }

    pub fn all_objects(&self) -> anyhow::Result<Vec<(Digest, u64)>> {
        let mut stmt = self.conn.prepare("SELECT id, size FROM objects")?;
        let rows = stmt.query_map([], |r| Ok((digest_col(r, 0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn tree_data(&self, id: &Digest) -> anyhow::Result<Option<Vec<u8>>> {
        let mut stmt = self.conn.prepare_cached("SELECT data FROM trees WHERE id = ?1")?;
        Ok(stmt.query_row([id.as_bytes()], |r| r.get(0)).optional()?)
    }

    pub fn all_tree_ids(&self) -> anyhow::Result<Vec<Digest>> {
        let mut stmt = self.conn.prepare("SELECT id FROM trees")?;
        let rows = stmt.query_map([], |r| digest_col(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The log kept with entry `key`, decompressed; `None` when the step kept none.
    pub fn entry_log(&self, key: &Digest) -> anyhow::Result<Option<Vec<u8>>> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row("SELECT size, zstd FROM logs WHERE entry = ?1", [key.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((size, packed)) = row else { return Ok(None) };
        let log = zstd::bulk::decompress(&packed, size.max(0) as usize)
            .map_err(|e| StoreError::CorruptLog { key: *key, reason: e.to_string() })?;
        if log.len() as i64 != size {
            let reason = format!("{} bytes, the row says {size}", log.len());
            return Err(StoreError::CorruptLog { key: *key, reason }.into());
        }
        Ok(Some(log))
    }

    /// Entry `key` as it is recorded, without reviving it: for reports (`images ls`, `du`,
    /// `roots ls`), which must not keep alive what a gc found dead. `None` also while a gc
    /// deletes it.
    pub fn peek_entry(&self, key: &Digest) -> anyhow::Result<Option<EntryRow>> {
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM entries WHERE key = ?1 \
             AND key NOT IN (SELECT id FROM doomed WHERE kind = 2 AND epoch = -1)"
        );
        Ok(self.conn.prepare_cached(&sql)?.query_row([key.as_bytes()], entry_row).optional()?)
    }

    /// Entry `key`, if it is in the store and may be used (a doomed entry is revived with
    /// what it reaches, or is gone).
    pub fn entry(&self, key: &Digest) -> anyhow::Result<Option<EntryRow>> {
        let sql = format!("SELECT {ENTRY_COLS} FROM entries WHERE key = ?1");
        let Some(row) = self.conn.prepare_cached(&sql)?.query_row([key.as_bytes()], entry_row).optional()? else {
            return Ok(None);
        };
        let is_doomed =
            self.conn.prepare_cached("SELECT 1 FROM doomed WHERE kind = 2 AND id = ?1")?.exists([key.as_bytes()])?;
        if is_doomed && !self.revive(&[(Kind::Entry, *key)])?.is_empty() {
            return Ok(None);
        }
        Ok(Some(row))
    }

    /// Every entry but those a gc is deleting.
    pub fn entries(&self) -> anyhow::Result<Vec<EntryRow>> {
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM entries WHERE key NOT IN (SELECT id FROM doomed WHERE kind = 2 AND epoch = -1) \
             ORDER BY created, name"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], entry_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn entry_refs(&self, key: &Digest) -> anyhow::Result<Vec<Digest>> {
        let mut stmt = self.conn.prepare_cached("SELECT target FROM entry_refs WHERE entry = ?1 ORDER BY target")?;
        let rows = stmt.query_map([key.as_bytes()], |r| digest_col(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Entry keys starting with the hex `prefix`.
    pub fn entries_with_prefix(&self, prefix: &str) -> anyhow::Result<Vec<Digest>> {
        let (lo, hi) = prefix_range(prefix);
        let mut stmt = self.conn.prepare("SELECT key FROM entries WHERE key BETWEEN ?1 AND ?2 LIMIT 10")?;
        let rows = stmt.query_map(params![lo, hi], |r| digest_col(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Tree ids starting with the hex `prefix`.
    pub fn trees_with_prefix(&self, prefix: &str) -> anyhow::Result<Vec<Digest>> {
        let (lo, hi) = prefix_range(prefix);
        let mut stmt = self.conn.prepare("SELECT id FROM trees WHERE id BETWEEN ?1 AND ?2 LIMIT 10")?;
        let rows = stmt.query_map(params![lo, hi], |r| digest_col(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn root(&self, name: &str) -> anyhow::Result<Option<RootRow>> {
        let mut stmt = self.conn.prepare_cached("SELECT name, entry, updated FROM roots WHERE name = ?1")?;
        Ok(stmt
            .query_row([name], |r| Ok(RootRow { name: r.get(0)?, entry: digest_col(r, 1)?, updated: r.get(2)? }))
            .optional()?)
    }

    pub fn roots(&self) -> anyhow::Result<Vec<RootRow>> {
        let mut stmt = self.conn.prepare("SELECT name, entry, updated FROM roots ORDER BY name")?;
        let rows =
            stmt.query_map([], |r| Ok(RootRow { name: r.get(0)?, entry: digest_col(r, 1)?, updated: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Root names pointing at `entry`.
    pub fn roots_of(&self, entry: &Digest) -> anyhow::Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT name FROM roots WHERE entry = ?1 ORDER BY name")?;
        let rows = stmt.query_map([entry.as_bytes()], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// All entry references, as (entry, target) pairs.
    pub fn all_entry_refs(&self) -> anyhow::Result<Vec<(Digest, Digest)>> {
        let mut stmt = self.conn.prepare("SELECT entry, target FROM entry_refs")?;
        let rows = stmt.query_map([], |r| Ok((digest_col(r, 0)?, digest_col(r, 1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A write transaction. Dropping it without [`Tx::commit`] rolls back.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
}

impl Tx<'_> {
    pub fn has_tree(&self, id: &Digest) -> anyhow::Result<bool> {
        Ok(self.tx.prepare_cached("SELECT 1 FROM trees WHERE id = ?1")?.exists([id.as_bytes()])?)
    }

    pub fn has_entry(&self, key: &Digest) -> anyhow::Result<bool> {
        Ok(self.tx.prepare_cached("SELECT 1 FROM entries WHERE key = ?1")?.exists([key.as_bytes()])?)
    }

    /// Returns whether the row is new.
    pub fn insert_object(&self, id: &Digest, size: u64) -> anyhow::Result<bool> {
        let mut stmt = self.tx.prepare_cached("INSERT OR IGNORE INTO objects (id, size) VALUES (?1, ?2)")?;
        Ok(stmt.execute(params![id.as_bytes(), size as i64])? == 1)
    }

    pub fn insert_tree(&self, id: &Digest, data: &[u8]) -> anyhow::Result<bool> {
        let mut stmt = self.tx.prepare_cached("INSERT OR IGNORE INTO trees (id, data) VALUES (?1, ?2)")?;
        Ok(stmt.execute(params![id.as_bytes(), data])? == 1)
    }

    /// Returns whether the entry is new; an existing entry with the same key is left as it was.
    pub fn insert_entry(&self, e: &NewEntry<'_>) -> anyhow::Result<bool> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO entries (key, kind, name, tree, files, bytes, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let new = stmt.execute(params![
            e.key.as_bytes(),
            e.kind,
            e.name,
            e.tree.as_bytes(),
            e.files as i64,
            e.bytes as i64,
            now
        ])? == 1;
        if new {
            let mut r = self.tx.prepare_cached("INSERT OR IGNORE INTO entry_refs (entry, target) VALUES (?1, ?2)")?;
            for target in e.refs {
                r.execute(params![e.key.as_bytes(), target.as_bytes()])?;
            }
            if let Some(log) = e.log {
                let packed = zstd::bulk::compress(log, LOG_LEVEL)?;
                self.tx
                    .prepare_cached("INSERT INTO logs (entry, size, zstd) VALUES (?1, ?2, ?3)")?
                    .execute(params![e.key.as_bytes(), log.len() as i64, packed])?;
            }
        }
        Ok(new)
    }

    /// Point root `name` at `entry`, reviving it (and what it reaches) if a gc doomed it; an
    /// entry being deleted is refused.
    pub fn set_root(&self, name: &str, entry: &Digest) -> anyhow::Result<()> {
        let r = doomed::revive_in(&self.tx, &[(Kind::Entry, *entry)])?;
        if r.dying || !r.missing.is_empty() {
            return Err(StoreError::EntryMissing(*entry).into());
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        self.tx.execute(
            "INSERT INTO roots (name, entry, updated) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET entry = excluded.entry, updated = excluded.updated",
            params![name, entry.as_bytes(), now],
        )?;
        Ok(())
    }

    /// Returns whether a root was removed.
    pub fn remove_root(&self, name: &str) -> anyhow::Result<bool> {
        Ok(self.tx.execute("DELETE FROM roots WHERE name = ?1", [name])? == 1)
    }

    /// Check foreign keys at commit instead of per statement, so that a set of entries that
    /// reference each other can be deleted in any order.
    pub fn defer_foreign_keys(&self) -> anyhow::Result<()> {
        self.tx.pragma_update(None, "defer_foreign_keys", "ON")?;
        Ok(())
    }

    pub fn delete_entry(&self, key: &Digest) -> anyhow::Result<()> {
        self.tx.execute("DELETE FROM entries WHERE key = ?1", [key.as_bytes()])?;
        Ok(())
    }

    /// Delete a tree row (what other modules know of it goes by their triggers, see
    /// `store-schema/0004_ostree_cleanup.sql`).
    pub fn delete_tree(&self, id: &Digest) -> anyhow::Result<()> {
        self.tx.prepare_cached("DELETE FROM trees WHERE id = ?1")?.execute([id.as_bytes()])?;
        Ok(())
    }

    /// Delete an object row.
    pub fn delete_object(&self, id: &Digest) -> anyhow::Result<()> {
        self.tx.prepare_cached("DELETE FROM objects WHERE id = ?1")?.execute([id.as_bytes()])?;
        Ok(())
    }

    /// The transaction, for the modules that own tables of their own (generations in
    /// `graph::generations`, the OSTree mapping in `ostree::mapping`).
    pub fn sql(&self) -> &rusqlite::Transaction<'_> {
        &self.tx
    }

    pub fn commit(self) -> anyhow::Result<()> {
        self.tx.commit().context("failed to commit the store transaction")
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> anyhow::Result<()> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { path: path.to_path_buf(), found, supported: SCHEMA_VERSION }.into());
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        // Another process may have migrated while we waited for the write lock.
        let now: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if now > i as u32 {
            continue;
        }
        tx.execute_batch(sql).with_context(|| format!("failed to apply store schema `{name}`"))?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_twice_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(Db::open(&path).unwrap());
        let db = Db::open(&path).unwrap();
        let v: u32 = db.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(conn);
        let err = Db::open(&path).err().unwrap();
        assert!(matches!(err.downcast_ref::<StoreError>(), Some(StoreError::SchemaTooNew { .. })), "{err:#}");
    }

    #[test]
    fn entries_that_reference_each_other_delete_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("db.sqlite")).unwrap();
        let tree = Digest::of(b"tree");
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let refs_b = [a];
        let tx = db.transaction().unwrap();
        tx.insert_tree(&tree, b"x").unwrap();
        let e = |key, refs| NewEntry { key, kind: "layer", name: "n", tree, files: 0, bytes: 0, refs, log: None };
        tx.insert_entry(&e(a, &[])).unwrap();
        tx.insert_entry(&e(b, &refs_b)).unwrap();
        tx.commit().unwrap();
        let tx = db.transaction().unwrap();
        tx.defer_foreign_keys().unwrap();
        tx.delete_entry(&a).unwrap(); // still referenced by b until b goes too
        tx.delete_entry(&b).unwrap();
        tx.commit().unwrap();
        assert!(db.entries().unwrap().is_empty());
        // Without b going too, the commit is refused and nothing changes.
        let tx = db.transaction().unwrap();
        tx.insert_entry(&e(a, &[])).unwrap();
        tx.insert_entry(&e(b, &refs_b)).unwrap();
        tx.commit().unwrap();
        let tx = db.transaction().unwrap();
        tx.defer_foreign_keys().unwrap();
        tx.delete_entry(&a).unwrap();
        assert!(tx.commit().is_err());
        assert_eq!(db.entries().unwrap().len(), 2);
    }

    #[test]
    fn a_log_goes_with_its_entry_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("db.sqlite")).unwrap();
        let (tree, key) = (Digest::of(b"tree"), Digest::of(b"k"));
        let tx = db.transaction().unwrap();
        tx.insert_tree(&tree, b"x").unwrap();
        let log = b"Processing triggers for man-db\n".repeat(100);
        let e = NewEntry { key, kind: "step", name: "n", tree, files: 0, bytes: 0, refs: &[], log: Some(&log) };
        tx.insert_entry(&e).unwrap();
        tx.commit().unwrap();
        let stored: i64 = db.conn.query_row("SELECT length(zstd) FROM logs", [], |r| r.get(0)).unwrap();
        assert!(stored < log.len() as i64 / 10, "compressed: {stored} bytes for {}", log.len());
        assert_eq!(db.entry_log(&key).unwrap().unwrap(), log);
        db.conn.execute("UPDATE logs SET size = size + 1", []).unwrap();
        let err = db.entry_log(&key).unwrap_err();
        assert!(matches!(err.downcast_ref::<StoreError>(), Some(StoreError::CorruptLog { .. })), "{err:#}");
        let tx = db.transaction().unwrap();
        tx.delete_entry(&key).unwrap();
        tx.commit().unwrap();
        let left: i64 = db.conn.query_row("SELECT count(*) FROM logs", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0, "the log went with its entry");
    }

    #[test]
    fn prefix_range_table() {
        let (lo, hi) = prefix_range("ab1");
        assert_eq!(hex::encode(&lo[..2]), "ab10");
        assert_eq!(hex::encode(&hi[..2]), "ab1f");
        assert!(lo[2..].iter().all(|&b| b == 0) && hi[2..].iter().all(|&b| b == 0xff));
    }
}
