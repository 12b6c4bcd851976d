//! The store's cache of OCI blobs (`<store>/cache/oci-layers`): the layers, configs and
//! manifests strata made for archives and registries, so that pushing an image again, to
//! another registry or repository, or writing it as an archive, sends the blobs made before
//! instead of compressing the layers again.
//!
//! It is an image layout without an index, written by several processes at once (a shared lock;
//! blobs are complete when they have their names, see [`super::layout`]). Invariants: a blob is
//! kept while a tree in the store is the end of a layer recorded with its digest, or was cut
//! into layers ([`super::chunk`]) one of which it is (configs and
//! manifests, a few hundred bytes, are made again by every export and go at the next gc); gc
//! trims it only with the cache to itself, and reports it deferred otherwise.

use std::collections::HashSet;
use std::path::PathBuf;

use super::layout::Layout;
use crate::store::local::Store;

/// Where the cache is.
pub fn dir(store: &Store) -> PathBuf {
    store.root().join("cache/oci-layers")
}

/// The cache, for writing blobs into (shared with other strata processes).
pub fn open(store: &Store) -> anyhow::Result<Layout> {
    Layout::open_shared(&dir(store))
}

/// What trimming removed (or would), and what stays.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Trimmed {
    pub files: u64,
    pub bytes: u64,
    pub remaining_files: u64,
    pub remaining_bytes: u64,
    /// Another process was writing into the cache: nothing was trimmed.
    pub deferred: bool,
}

/// Remove the blobs no layer ending at a tree of the store names (see the module doc).
pub fn trim(store: &Store, dry_run: bool) -> anyhow::Result<Trimmed> {
    let mut out = Trimmed::default();
    // Records of entries and trees that are gone: only with no other strata process alive (an
    // import records its image's settings just before its entry).
    let alone = crate::store::session::live(store.root())?.iter().all(|s| s.name == store.session_name());
    if !dry_run && alone {
        store.db().sql().execute("DELETE FROM oci_configs WHERE entry NOT IN (SELECT key FROM entries)", [])?;
        store.db().sql().execute("DELETE FROM oci_chunks WHERE tree NOT IN (SELECT id FROM trees)", [])?;
    }
    let dir = dir(store);
    if !dir.join("blobs/sha256").is_dir() {
        return Ok(out);
    }
    let Some(layout) = Layout::try_exclusive(&dir)? else {
        out.deferred = true;
        return Ok(out);
    };
    let needed: HashSet<String> = {
        let conn = store.db().sql();
        let mut stmt = conn.prepare(
            "SELECT DISTINCT digest FROM oci_layers WHERE to_tree IN (SELECT id FROM trees) \
             OR to_tree IN (SELECT subtree FROM oci_chunks WHERE tree IN (SELECT id FROM trees))",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if !dry_run {
        layout.remove_temporaries()?;
    }
    for e in fs_err::read_dir(dir.join("blobs/sha256"))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let len = e.metadata()?.len();
        if needed.contains(&format!("sha256:{name}")) {
            out.remaining_files += 1;
            out.remaining_bytes += len;
        } else {
            out.files += 1;
            out.bytes += len;
            if !dry_run {
                fs_err::remove_file(e.path())?;
            }
        }
    }
    Ok(out)
}
