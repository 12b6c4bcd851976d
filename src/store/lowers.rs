//! Read-only lower directories for the sandbox, kept between runs.
//!
//! A script step needs its input tree as the lower directory of an overlay. Checking out a whole
//! root tree (tens of thousands of hardlinks) costs about a second, and most steps run over a
//! tree that differs from one checked out before by a few files: the next step of the same
//! build, or a derived image over its base. So hardlinked checkouts are kept under
//! `cache/lowers/<tree>` (a few, newest used first), and a run over tree T stacks two lower
//! directories: a kept checkout of a similar tree C, and under it nothing: above it a small
//! checkout of the difference from C to T, where deleted paths are overlayfs whiteouts. The
//! merged view is exactly T.
//!
//! Kept checkouts are hardlinks to the store's objects, which are read-only; overlayfs never
//! writes to lower directories. A run holds a shared lock on each kept checkout it mounts, and
//! eviction skips checkouts in use. gc removes every one not in use (they are a cache).

use std::path::{Path, PathBuf};

use crate::store::checkout::{checkout, LinkMode};
use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::lock::{LockMode, StoreLock};
use crate::store::meta::Meta;
use crate::store::tree::{Node, Tree, TreeRows};
use crate::util::progress::Progress;

/// How many checkouts to keep.
const KEEP: usize = 3;
/// Use a kept checkout when the difference has at most this many nodes; else check out anew.
const MAX_DELTA_NODES: usize = 4000;

fn dir(store: &Store) -> PathBuf {
    store.root().join("cache/lowers")
}

/// Lower directories, top first, with the locks that keep them from eviction while in use.
pub struct Lowers {
    pub dirs: Vec<PathBuf>,
    _locks: Vec<StoreLock>,
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.with_extension("lock")
}

/// Lock a kept checkout for use; `None` when it is being evicted or gone.
fn use_kept(dir: &Path) -> anyhow::Result<Option<StoreLock>> {
    let lock = match StoreLock::acquire(&lock_path(dir), LockMode::Shared, std::time::Duration::ZERO, || {}) {
        Ok(l) => l,
        Err(_) => return Ok(None),
    };
    Ok(dir.is_dir().then_some(lock))
}

/// The lower directories for a run over `tree`; a delta directory is created under `work`
/// (removed with it).
pub fn lowers_for(store: &mut Store, tree: &Digest, work: &Path) -> anyhow::Result<Lowers> {
    let base = dir(store);
    fs_err::create_dir_all(&base)?;
    let exact = base.join(tree.to_hex());
    if let Some(lock) = use_kept(&exact)? {
        touch(&exact);
        return Ok(Lowers { dirs: vec![exact], _locks: vec![lock] });
    }
    // The kept checkout with the smallest difference to `tree`.
    let mut best: Option<(usize, PathBuf, Digest, TreeRows)> = None;
    for (path, id) in kept(&base)? {
        let mut rows = TreeRows::default();
        let mut count = 0;
        let delta = match delta(store, &id, tree, &mut rows, &mut count) {
            Ok(d) => d,
            Err(e) => {
                // A kept checkout whose tree a gc deleted while a run used it: evicted now.
                tracing::debug!(kept = %path.display(), "kept checkout unusable: {e:#}");
                if let Ok(Some(_lock)) = StoreLock::try_exclusive(&lock_path(&path)) {
                    let _ = remove(&path);
                }
                continue;
            }
        };
        if count <= MAX_DELTA_NODES && best.as_ref().is_none_or(|(c, ..)| count < *c) {
            best = Some((count, path, delta, rows));
        }
    }
    if let Some((count, path, delta, rows)) = best {
        if let Some(lock) = use_kept(&path)? {
            // Recorded so that checkout can read them; gc removes them (nothing refers to them).
            let mut batch = crate::store::batch::Batch::new();
            batch.trees = rows;
            batch.commit(store, None)?;
            tracing::debug!(count, kept = %path.display(), "lower directory from a kept checkout and a delta");
            let top = work.join("delta");
            checkout(store, &delta, &top, LinkMode::Hardlink, &Progress::hidden())?;
            touch(&path);
            return Ok(Lowers { dirs: vec![top, path], _locks: vec![lock] });
        }
    }
    // A new kept checkout, staged and renamed into place; the oldest ones go.
    let staged = work.join("lower");
    checkout(store, tree, &staged, LinkMode::Hardlink, &Progress::hidden())?;
    let lock = StoreLock::acquire(&lock_path(&exact), LockMode::Shared, std::time::Duration::from_secs(60), || {})?;
    match fs_err::rename(&staged, &exact) {
        Ok(()) => {}
        // Another run kept the same tree meanwhile: use theirs.
        Err(_) if exact.is_dir() => {}
        Err(e) => return Err(anyhow::Error::new(e).context("keeping the lower checkout")),
    }
    evict(&base);
    Ok(Lowers { dirs: vec![exact], _locks: vec![lock] })
}

fn touch(path: &Path) {
    let _ = nix::sys::stat::utimensat(
        None,
        path,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
}

/// Kept checkouts, newest first.
fn kept(base: &Path) -> anyhow::Result<Vec<(PathBuf, Digest)>> {
    let mut out = Vec::new();
    for e in fs_err::read_dir(base)? {
        let e = e?;
        let Ok(id) = e.file_name().to_string_lossy().parse::<Digest>() else { continue };
        // Evicted by another run meanwhile: not a candidate.
        let Ok(mtime) = e.metadata().and_then(|m| m.modified()) else { continue };
        out.push((mtime, e.path(), id));
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(out.into_iter().map(|(_, p, id)| (p, id)).collect())
}

/// Remove the least recently used kept checkouts beyond [`KEEP`]. Best effort: a cache that
/// cannot be trimmed now is trimmed by a later run or by gc.
fn evict(base: &Path) {
    let Ok(all) = kept(base) else { return };
    for (path, _) in all.into_iter().skip(KEEP) {
        // In use by another run: leave it for later.
        if let Ok(Some(_lock)) = StoreLock::try_exclusive(&lock_path(&path)) {
            if let Err(e) = remove(&path) {
                tracing::debug!(path = %path.display(), "could not evict a kept checkout: {e:#}");
            }
        }
    }
}

/// Remove a kept checkout: first renamed to a name no run takes for a checkout (so a removal
/// cut short never leaves a partial tree under a tree id), then deleted.
fn remove(path: &Path) -> anyhow::Result<()> {
    let dead = path.with_extension(format!("dead-{}", std::process::id()));
    match fs_err::rename(path, &dead) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    crate::store::local::make_writable(&dead);
    fs_err::remove_dir_all(&dead)?;
    Ok(())
}

/// Remove every kept checkout no run is using (gc; runs hold a shared lock on what they mount,
/// and may run while gc does). Returns how many went.
pub fn clear(store: &Store) -> anyhow::Result<u64> {
    let base = dir(store);
    if !base.is_dir() {
        return Ok(0);
    }
    let mut n = 0;
    for e in fs_err::read_dir(&base)? {
        let path = e?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_dir() && name.parse::<Digest>().is_ok() {
            if let Some(_lock) = StoreLock::try_exclusive(&lock_path(&path))? {
                remove(&path)?;
                n += 1;
            }
        } else if path.is_dir() && name.contains(".dead-") {
            // What an interrupted removal left.
            crate::store::local::make_writable(&path);
            fs_err::remove_dir_all(&path)?;
        }
    }
    Ok(n)
}

/// A whiteout: overlayfs hides the lower path.
fn whiteout() -> Node {
    Node::CharDevice { meta: Meta { mode: 0, uid: 0, gid: 0, xattrs: vec![] }, rdev: 0 }
}

/// The tree that, stacked over a checkout of `from`, shows `to`: changed and added nodes, the
/// directories leading to them with `to`'s metadata, and whiteouts for removed paths. `count`
/// grows by the nodes it holds.
fn delta(store: &Store, from: &Digest, to: &Digest, out: &mut TreeRows, count: &mut usize) -> anyhow::Result<Digest> {
    let a = store.tree(from)?;
    let b = store.tree(to)?;
    let mut entries = Vec::new();
    let mut ai = a.entries.iter().peekable();
    for (name, node) in &b.entries {
        while ai.peek().is_some_and(|(n, _)| n < name) {
            let (n, _) = ai.next().expect("peeked");
            entries.push((n.clone(), whiteout()));
            *count += 1;
        }
        let old = if ai.peek().is_some_and(|(n, _)| n == name) { ai.next().map(|(_, o)| o) } else { None };
        match (old, node) {
            (Some(o), n) if o == n => {}
            (Some(Node::Directory { tree: ot }), Node::Directory { tree: nt }) => {
                entries.push((name.clone(), Node::Directory { tree: delta(store, ot, nt, out, count)? }));
                *count += 1;
            }
            (_, n) => {
                *count += match n {
                    Node::Directory { tree } => crate::store::walk::flatten(store, tree)?.len(),
                    _ => 1,
                };
                entries.push((name.clone(), n.clone()));
            }
        }
    }
    for (n, _) in ai {
        entries.push((n.clone(), whiteout()));
        *count += 1;
    }
    entries.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(Tree { meta: b.meta, entries }.encode_into(out))
}
