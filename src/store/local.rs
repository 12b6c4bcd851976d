//! The store: a directory of immutable, content-addressed objects and trees with their metadata in
//! SQLite.
//!
//! ```text
//! <store>/meta.json          {"format": "strata-store", "layout": 1, "features": []}
//! <store>/lock               flock: shared for use, exclusive for gc (store::lock)
//! <store>/db.sqlite          objects, trees, entries, roots (schema in store-schema/, store::db)
//! <store>/objects/ab/<62 hex> file objects: content with the object's owner, mode and xattrs, mtime 0
//! <store>/checkouts/         materialized trees that steps need as real directories
//! <store>/tmp/               work in progress, same file system as objects/; emptied when the
//!                            store is opened with nobody else using it, and by gc
//! <store>/cache/downloads/   fetched files, by checksum
//! <store>/cache/resolutions/ dependency resolutions, by request and signed Release texts
//! ```
//!
//! Write order (the crash-safety invariant): object files are written under `tmp/` and renamed
//! into `objects/`; then one `syncfs`; then the SQLite transaction that records objects, trees and
//! entries; then roots. A crash leaves at worst object files without rows (orphans, which gc
//! deletes), never a row that points at a missing object. An object file without a row is not
//! trusted: the next add that needs it writes it again.
//!
//! In a store opened without root privileges, objects keep the caller as owner, drop the
//! privileged extended attributes, and stay readable by their owner; the trees still record the
//! exact metadata, and checkouts apply what the caller is allowed to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::store::batch::Batch;
use crate::store::db::{Db, EntryRow, NewEntry, RootRow};
use crate::store::digest::{is_hex_prefix, Digest};
use crate::store::error::StoreError;
use crate::store::lock::{LockMode, StoreLock};
use crate::store::meta::Meta;
use crate::store::tree::Tree;
use crate::store::{Backend, Written};

/// The on-disk layout this build writes and understands.
pub const LAYOUT_VERSION: u32 = 1;
const FORMAT: &str = "strata-store";
/// The shortest abbreviation accepted for an id.
pub const MIN_PREFIX: usize = 4;

#[derive(serde::Serialize, serde::Deserialize)]
struct MetaJson {
    format: String,
    layout: u32,
    #[serde(default)]
    features: Vec<String>,
}

/// How to open a store.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub lock: LockMode,
    /// How long to wait for a busy lock before failing.
    pub lock_wait: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { lock: LockMode::Shared, lock_wait: Duration::from_secs(60) }
    }
}

pub struct Store {
    root: PathBuf,
    opts: OpenOptions,
    pub(crate) db: Db,
    _lock: StoreLock,
    privileged: bool,
    /// Dropped after `db` (fields drop in order): the session outlives every read.
    session: crate::store::session::Session,
}

/// What a user-given id names.
#[derive(Clone, Debug)]
pub enum Target {
    Entry(EntryRow),
    Tree(Digest),
}

impl Target {
    pub fn tree(&self) -> Digest {
        match self {
            Target::Entry(e) => e.tree,
            Target::Tree(t) => *t,
        }
    }
}

const SKELETON: &[&str] =
    &["objects", "checkouts", "tmp", "cache", "lock", "db.sqlite", "db.sqlite-wal", "db.sqlite-shm"];

impl Store {
    /// Open the store at `root`, creating it if the directory is missing or empty.
    /// `on_wait` is told when the lock is busy and we wait for it.
    pub fn open(root: &Path, opts: &OpenOptions, on_wait: impl FnOnce()) -> anyhow::Result<Store> {
        let root = root.to_path_buf();
        check_or_init_layout(&root)?;
        keep_private(&root)?;
        let lock_path = root.join("lock");
        let lock = match opts.lock {
            LockMode::Exclusive => {
                let lock = StoreLock::acquire(&lock_path, LockMode::Exclusive, opts.lock_wait, on_wait)?;
                clean_tmp(&root)?;
                lock
            }
            LockMode::Shared => match StoreLock::try_exclusive(&lock_path)? {
                Some(mut lock) => {
                    clean_tmp(&root)?;
                    lock.downgrade()?;
                    lock
                }
                None => StoreLock::acquire(&lock_path, LockMode::Shared, opts.lock_wait, on_wait)?,
            },
        };
        // Announced before the first read: a gc that dooms what this handle sees counts it.
        let session = crate::store::session::Session::start(&root)?;
        let mut db = Db::open(&root.join("db.sqlite"))?;
        db.set_wait(opts.lock_wait);
        Ok(Store { root, db, _lock: lock, privileged: crate::store::meta::privileged(), opts: opts.clone(), session })
    }

    /// How to open another handle on this store as this one was opened (a shared lock, the
    /// caller's `--lock-wait`): for worker threads that each need their own database connection.
    pub fn shared_options(&self) -> OpenOptions {
        OpenOptions { lock: LockMode::Shared, ..self.opts.clone() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This handle's session (see [`crate::store::session`]).
    pub fn session_name(&self) -> &str {
        self.session.name()
    }

    /// How long this handle waits for a busy lock.
    pub fn lock_wait(&self) -> Duration {
        self.opts.lock_wait
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn db_mut(&mut self) -> &mut Db {
        &mut self.db
    }

    /// Whether objects carry their exact owner and privileged xattrs (the store is used as root).
    pub fn privileged(&self) -> bool {
        self.privileged
    }

    /// A `Sync` handle for writing objects from worker threads.
    pub fn object_store(&self) -> crate::store::object::ObjectStore {
        crate::store::object::ObjectStore::new(self.objects_dir(), self.tmp_dir(), self.privileged)
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Move a staged object into place unless the store (or `batch`) already has it, and add it
    /// to `batch`; returns whether it was new. (The streaming path of the unpackers: content is
    /// read and hashed once, and kept only if new.)
    pub fn keep(&self, batch: &mut Batch, staged: crate::store::object::Staged) -> anyhow::Result<bool> {
        if batch.holds(&staged.id) || self.db.known_objects(&[staged.id])?[0] {
            return Ok(false);
        }
        batch.record_placed(staged.id, staged.size);
        self.object_store().commit(staged)?;
        Ok(true)
    }

    /// Flush everything written to the store's file system (one `syncfs`, not one fsync per file).
    pub fn sync(&self) -> anyhow::Result<()> {
        use std::os::fd::AsRawFd;
        let dir = fs_err::File::open(self.objects_dir())?;
        nix::unistd::syncfs(dir.as_raw_fd()).with_context(|| format!("failed to sync `{}`", self.root.display()))?;
        Ok(())
    }

    /// Load and decode a tree (see [`Backend::tree`]).
    pub fn tree(&self, id: &Digest) -> anyhow::Result<Tree> {
        Backend::tree(self, id)
    }

    /// The node at `path` (components) under tree `root` (see [`Backend::lookup`]).
    pub fn lookup(&self, root: &Digest, path: &[&[u8]]) -> anyhow::Result<Option<crate::store::tree::Node>> {
        Backend::lookup(self, root, path)
    }

    /// The content of a regular file node (see [`Backend::read_file`]).
    pub fn read_file(&self, node: &crate::store::tree::Node) -> anyhow::Result<Vec<u8>> {
        Backend::read_file(self, node)
    }

    /// The entries `key` reaches through the keys each entry references, itself included,
    /// dependencies before the entries built on them (each once, in reference order).
    pub fn closure(&self, key: &Digest) -> anyhow::Result<Vec<EntryRow>> {
        fn visit(
            store: &Store,
            key: &Digest,
            seen: &mut std::collections::HashSet<Digest>,
            out: &mut Vec<EntryRow>,
        ) -> anyhow::Result<()> {
            if !seen.insert(*key) {
                return Ok(());
            }
            for r in store.db().entry_refs(key)? {
                visit(store, &r, seen, out)?;
            }
            if let Some(e) = store.db().peek_entry(key)? {
                out.push(e);
            }
            Ok(())
        }
        let mut out = vec![];
        visit(self, key, &mut Default::default(), &mut out)?;
        Ok(out)
    }

    /// Root names pointing at `entry`.
    pub fn roots_of(&self, entry: &Digest) -> anyhow::Result<Vec<String>> {
        self.db.roots_of(entry)
    }

    /// Resolve a user-given id: a root name, or a unique hex prefix (at least [`MIN_PREFIX`]
    /// characters) of an entry key or, failing that, of a tree id.
    pub fn resolve(&self, spec: &str) -> anyhow::Result<Target> {
        if let Some(root) = self.db.root(spec)? {
            let entry = self.db.entry(&root.entry)?.ok_or_else(|| StoreError::NotFound(spec.to_string()))?;
            return Ok(Target::Entry(entry));
        }
        // `images/<name>`: the newest generation of an image.
        if spec.strip_prefix("images/").is_some_and(|i| !i.is_empty() && !i.contains('/')) {
            let newest = self
                .db
                .roots()?
                .into_iter()
                .filter_map(|r| Some((r.name.strip_prefix(spec)?.strip_prefix('/')?.parse::<u64>().ok()?, r.entry)))
                .max_by_key(|(n, _)| *n);
            if let Some((_, key)) = newest {
                let entry = self.db.entry(&key)?.ok_or_else(|| StoreError::NotFound(spec.to_string()))?;
                return Ok(Target::Entry(entry));
            }
        }
        let lower = spec.to_ascii_lowercase();
        if lower.len() >= MIN_PREFIX && is_hex_prefix(&lower) {
            let entries = self.db.entries_with_prefix(&lower)?;
            match entries.as_slice() {
                [one] => return Ok(Target::Entry(self.db.entry(one)?.expect("entry just listed"))),
                [] => {}
                many => return Err(ambiguous(spec, many)),
            }
            let trees = self.db.trees_with_prefix(&lower)?;
            match trees.as_slice() {
                // A tree a gc doomed is revived before it is used (or is gone).
                [one] if self.db.revive(&[(crate::store::doomed::Kind::Tree, *one)])?.is_empty() => {
                    return Ok(Target::Tree(*one))
                }
                [_] => {}
                [] => {}
                many => return Err(ambiguous(spec, many)),
            }
        } else if is_hex_prefix(&lower) {
            anyhow::bail!("`{spec}` is too short to name an id: give at least {MIN_PREFIX} hex characters");
        }
        Err(StoreError::NotFound(spec.to_string()).into())
    }
}

impl Backend for Store {
    fn has_objects(&self, ids: &[Digest]) -> anyhow::Result<Vec<bool>> {
        self.db.known_objects(ids)
    }

    fn write_object(&self, reader: &mut dyn std::io::Read, meta: &Meta, limit: u64) -> anyhow::Result<Written> {
        let staged = self.object_store().stage(reader, meta, limit)?;
        let new = !self.db.known_objects(&[staged.id])?[0];
        let written = Written { id: staged.id, content: staged.content, size: staged.size, new };
        if new {
            self.object_store().commit(staged)?;
        }
        Ok(written)
    }

    fn read_object(&self, id: &Digest) -> anyhow::Result<Vec<u8>> {
        if !self.db.known_objects(&[*id])?[0] {
            return Err(StoreError::ObjectMissing(*id).into());
        }
        Ok(fs_err::read(self.object_store().path(id))?)
    }

    fn tree_data(&self, id: &Digest) -> anyhow::Result<Option<Vec<u8>>> {
        self.db.tree_data(id)
    }

    fn entry(&self, key: &Digest) -> anyhow::Result<Option<EntryRow>> {
        self.db.entry(key)
    }

    fn entry_log(&self, key: &Digest) -> anyhow::Result<Option<Vec<u8>>> {
        self.db.entry_log(key)
    }

    fn entries(&self) -> anyhow::Result<Vec<EntryRow>> {
        self.db.entries()
    }

    fn entry_refs(&self, key: &Digest) -> anyhow::Result<Vec<Digest>> {
        self.db.entry_refs(key)
    }

    /// Object files are in place already; one `syncfs`, then one SQLite transaction (the
    /// foreign keys refuse an entry without its tree or with unknown references).
    fn commit(&mut self, batch: Batch, entry: Option<&NewEntry<'_>>) -> anyhow::Result<()> {
        let (objects, trees) = batch.into_parts();
        if !objects.is_empty() {
            self.sync()?;
        }
        use crate::store::doomed::{self, Kind};
        loop {
            let tx = self.db.transaction()?;
            for (id, size) in &objects {
                tx.insert_object(id, *size)?;
            }
            for (id, data) in &trees {
                tx.insert_tree(id, data)?;
            }
            if let Some(e) = entry {
                if !tx.has_tree(&e.tree)? {
                    return Err(StoreError::TreeMissing(e.tree).into());
                }
                for r in e.refs {
                    if !tx.has_entry(r)? {
                        return Err(StoreError::EntryMissing(*r).into());
                    }
                }
                tx.insert_entry(e)?;
            }
            // A gc may have doomed what this batch reuses (or an entry recorded before with this
            // key): revive it in this transaction, or, while a sweep deletes some of it, wait
            // and start again.
            if doomed::any(tx.sql())? {
                let rows = batch_references(&objects, &trees, entry)?;
                let r = doomed::revive_in(tx.sql(), &rows)?;
                if r.dying {
                    drop(tx);
                    doomed::wait_out_sweep(self.db.sql(), &self.root, self.opts.lock_wait)?;
                    continue;
                }
                if let Some((kind, id)) = r.missing.first() {
                    return Err(match kind {
                        Kind::Object => StoreError::ObjectMissing(*id),
                        Kind::Tree => StoreError::TreeMissing(*id),
                        Kind::Entry => StoreError::EntryMissing(*id),
                    }
                    .into());
                }
            }
            return tx.commit();
        }
    }

    fn root(&self, name: &str) -> anyhow::Result<Option<RootRow>> {
        self.db.root(name)
    }

    fn roots(&self) -> anyhow::Result<Vec<RootRow>> {
        self.db.roots()
    }

    fn set_root(&mut self, name: &str, entry: &Digest) -> anyhow::Result<()> {
        crate::store::check_root_name(name)?;
        // A doomed entry is revived with what it reaches (or is gone).
        if self.db.entry(entry)?.is_none() {
            return Err(StoreError::EntryMissing(*entry).into());
        }
        let tx = self.db.transaction()?;
        if !tx.has_entry(entry)? {
            return Err(StoreError::EntryMissing(*entry).into());
        }
        tx.set_root(name, entry)?;
        tx.commit()
    }

    fn remove_root(&mut self, name: &str) -> anyhow::Result<bool> {
        let tx = self.db.transaction()?;
        let removed = tx.remove_root(name)?;
        tx.commit()?;
        Ok(removed)
    }
}

/// The rows a batch and its entry rely on: its own objects and trees (which may exist already,
/// doomed), what its trees reference, the entry's tree and references, and the entry itself
/// when it exists already.
fn batch_references(
    objects: &[(Digest, u64)],
    trees: &crate::store::tree::TreeRows,
    entry: Option<&NewEntry<'_>>,
) -> anyhow::Result<Vec<(crate::store::doomed::Kind, Digest)>> {
    use crate::store::doomed::{children, Kind};
    let mut rows: Vec<(Kind, Digest)> = objects.iter().map(|(id, _)| (Kind::Object, *id)).collect();
    for (id, data) in trees {
        rows.push((Kind::Tree, *id));
        rows.extend(children(id, data)?);
    }
    if let Some(e) = entry {
        rows.push((Kind::Tree, e.tree));
        rows.push((Kind::Entry, e.key));
        rows.extend(e.refs.iter().map(|r| (Kind::Entry, *r)));
    }
    Ok(rows)
}

fn ambiguous(spec: &str, many: &[Digest]) -> anyhow::Error {
    StoreError::Ambiguous { prefix: spec.to_string(), candidates: many.iter().map(|d| d.short()).collect() }.into()
}

/// Check that `root` holds a store this build understands, creating a new one if `root` is
/// missing or empty (or holds only the skeleton of an interrupted creation).
fn check_or_init_layout(root: &Path) -> anyhow::Result<()> {
    let meta_path = root.join("meta.json");
    match fs_err::read_to_string(&meta_path) {
        Ok(text) => {
            let meta: MetaJson = serde_json::from_str(&text).map_err(|e| StoreError::NotAStore {
                path: root.to_path_buf(),
                reason: format!("meta.json is not valid: {e}"),
            })?;
            if meta.format != FORMAT {
                return Err(StoreError::NotAStore {
                    path: root.to_path_buf(),
                    reason: format!("meta.json names format `{}`, expected `{FORMAT}`", meta.format),
                }
                .into());
            }
            if meta.layout > LAYOUT_VERSION {
                return Err(StoreError::LayoutTooNew {
                    path: root.to_path_buf(),
                    found: meta.layout,
                    supported: LAYOUT_VERSION,
                }
                .into());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => init_layout(root),
        Err(e) => Err(e.into()),
    }
}

fn init_layout(root: &Path) -> anyhow::Result<()> {
    if root.exists() {
        if !root.is_dir() {
            return Err(
                StoreError::NotAStore { path: root.to_path_buf(), reason: "it is not a directory".into() }.into()
            );
        }
        for entry in fs_err::read_dir(root)? {
            let name = entry?.file_name();
            if !SKELETON.iter().any(|s| name == *s) {
                return Err(StoreError::NotAStore {
                    path: root.to_path_buf(),
                    reason: format!("it has no meta.json and is not empty (found `{}`)", name.to_string_lossy()),
                }
                .into());
            }
        }
    }
    fs_err::create_dir_all(root.join("objects"))?;
    for i in 0..=255u8 {
        fs_err::create_dir_all(root.join("objects").join(hex::encode([i])))?;
    }
    for dir in ["checkouts", "tmp", "cache/downloads"] {
        fs_err::create_dir_all(root.join(dir))?;
    }
    let meta = MetaJson { format: FORMAT.into(), layout: LAYOUT_VERSION, features: vec![] };
    let tmp = root.join("meta.json.tmp");
    fs_err::write(&tmp, serde_json::to_string_pretty(&meta)? + "\n")?;
    fs_err::rename(&tmp, root.join("meta.json"))?;
    Ok(())
}

/// The store root's mode: only its owner may enter it. Objects keep their setuid and setgid
/// bits (hardlinked checkouts need them exact) and the sandbox keeps hardlinked checkouts of
/// images under `cache/lowers`: in a store others could enter, any local user could run an old
/// setuid binary of any image generation.
pub const ROOT_MODE: u32 = 0o700;

/// Make the store root [`ROOT_MODE`] if it is open to others (a new store, or one made before
/// strata kept stores private).
fn keep_private(root: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs_err::metadata(root)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs_err::set_permissions(root, std::fs::Permissions::from_mode(ROOT_MODE)).with_context(|| {
            format!(
                "store `{}` is open to other users (mode {mode:04o}) and could not be made private: \
                 its owner can `chmod 700` it",
                root.display()
            )
        })?;
    }
    Ok(())
}

/// Remove everything under `tmp/`. Only called with the exclusive lock held.
fn clean_tmp(root: &Path) -> anyhow::Result<()> {
    let tmp = root.join("tmp");
    for entry in fs_err::read_dir(&tmp)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            make_writable(&path);
            fs_err::remove_dir_all(&path)?;
        } else {
            fs_err::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Give every directory under `path` owner write permission so that it can be removed
/// (a half-made checkout may hold read-only directories).
pub(crate) fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs_err::symlink_metadata(path) else { return };
    if !meta.is_dir() {
        return;
    }
    let _ = fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    if let Ok(rd) = fs_err::read_dir(path) {
        for e in rd.flatten() {
            make_writable(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::check_root_name;

    #[test]
    fn root_name_table() {
        for (name, ok) in [
            ("tags/base", true),
            ("images/web/12", true),
            ("v1.2-rc+1@x", true),
            ("", false),
            ("/abs", false),
            ("a//b", false),
            ("a/../b", false),
            ("dead", false),
            ("with space", false),
        ] {
            assert_eq!(check_root_name(name).is_ok(), ok, "{name}");
        }
    }
}
