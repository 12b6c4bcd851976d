//! What the store knows of OSTree repositories (store-schema/0003_ostree.sql, 0004): the layout
//! report of each layout entry, the OSTree content checksum of store objects, the dirtree and
//! dirmeta checksums of store trees per repository, and named push destinations. Rows about
//! objects and trees go with them when gc deletes them (triggers in 0004); a pruned repository
//! is forgotten as a whole.

use rusqlite::{params, OptionalExtension};

use crate::store::db::{digest_col, Db, Tx};
use crate::store::digest::Digest;
use crate::store::local::Store;

/// The layout report recorded with an OSTree layout entry.
pub fn layout_report(db: &Db, entry: &Digest) -> anyhow::Result<Option<String>> {
    let mut stmt = db.sql().prepare_cached("SELECT report FROM ostree_layouts WHERE entry = ?1")?;
    Ok(stmt.query_row([entry.as_bytes()], |r| r.get(0)).optional()?)
}

/// The OSTree content checksum of each of `objects`, where known.
pub fn ostree_checksums(db: &Db, objects: &[Digest]) -> anyhow::Result<Vec<Option<Digest>>> {
    let mut stmt = db.sql().prepare_cached("SELECT checksum FROM ostree_files WHERE object = ?1")?;
    objects.iter().map(|id| Ok(stmt.query_row([id.as_bytes()], |r| digest_col(r, 0)).optional()?)).collect()
}

/// The dirtree and dirmeta checksums of store tree `tree`, if repository `repo` holds it.
pub fn ostree_tree(db: &Db, repo: &str, tree: &Digest) -> anyhow::Result<Option<(Digest, Digest)>> {
    let mut stmt =
        db.sql().prepare_cached("SELECT dirtree, dirmeta FROM ostree_trees WHERE repo = ?1 AND tree = ?2")?;
    Ok(stmt.query_row(params![repo, tree.as_bytes()], |r| Ok((digest_col(r, 0)?, digest_col(r, 1)?))).optional()?)
}

/// Named push destinations, by name.
pub fn ostree_remotes(store: &Store) -> anyhow::Result<Vec<(String, String)>> {
    let mut stmt = store.db().sql().prepare("SELECT name, url FROM ostree_remotes ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn insert_layout_report(tx: &Tx<'_>, entry: &Digest, report: &str) -> anyhow::Result<()> {
    tx.sql().execute(
        "INSERT OR REPLACE INTO ostree_layouts (entry, report) VALUES (?1, ?2)",
        params![entry.as_bytes(), report],
    )?;
    Ok(())
}

pub fn insert_ostree_file(tx: &Tx<'_>, object: &Digest, checksum: &Digest) -> anyhow::Result<()> {
    let mut stmt = tx.sql().prepare_cached("INSERT OR REPLACE INTO ostree_files (object, checksum) VALUES (?1, ?2)")?;
    stmt.execute(params![object.as_bytes(), checksum.as_bytes()])?;
    Ok(())
}

pub fn insert_ostree_tree(
    tx: &Tx<'_>,
    repo: &str,
    tree: &Digest,
    dirtree: &Digest,
    dirmeta: &Digest,
) -> anyhow::Result<()> {
    let mut stmt = tx
        .sql()
        .prepare_cached("INSERT OR REPLACE INTO ostree_trees (repo, tree, dirtree, dirmeta) VALUES (?1, ?2, ?3, ?4)")?;
    stmt.execute(params![repo, tree.as_bytes(), dirtree.as_bytes(), dirmeta.as_bytes()])?;
    Ok(())
}

/// Forget which trees repository `repo` holds (after objects were pruned from it).
pub fn forget_ostree_repo(tx: &Tx<'_>, repo: &str) -> anyhow::Result<()> {
    tx.sql().execute("DELETE FROM ostree_trees WHERE repo = ?1", [repo])?;
    Ok(())
}

/// Add a push destination; false when the name is taken.
pub fn add_ostree_remote(tx: &Tx<'_>, name: &str, url: &str) -> anyhow::Result<bool> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Ok(tx.sql().execute(
        "INSERT OR IGNORE INTO ostree_remotes (name, url, created) VALUES (?1, ?2, ?3)",
        params![name, url, now],
    )? == 1)
}

/// Returns whether a remote was removed.
pub fn remove_ostree_remote(tx: &Tx<'_>, name: &str) -> anyhow::Result<bool> {
    Ok(tx.sql().execute("DELETE FROM ostree_remotes WHERE name = ?1", [name])? == 1)
}

/// Add a push destination to the store; false when the name is taken.
pub fn add_remote(store: &mut Store, name: &str, url: &str) -> anyhow::Result<bool> {
    let tx = store.db_mut().transaction()?;
    let added = add_ostree_remote(&tx, name, url)?;
    tx.commit()?;
    Ok(added)
}

/// Forget a push destination; whether there was one.
pub fn remove_remote(store: &mut Store, name: &str) -> anyhow::Result<bool> {
    let tx = store.db_mut().transaction()?;
    let removed = remove_ostree_remote(&tx, name)?;
    tx.commit()?;
    Ok(removed)
}

/// Forget which trees repository `repo` (its key, see `export::repo_key`) holds, after objects
/// were pruned from it: the next export writes what it needs again.
pub fn forget_repo(store: &mut Store, repo: &str) -> anyhow::Result<()> {
    let tx = store.db_mut().transaction()?;
    forget_ostree_repo(&tx, repo)?;
    tx.commit()
}
