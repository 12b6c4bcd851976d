//! Importing a directory into the store as an entry (`strata store add`).
//!
//! Four passes, so that re-importing known content writes nothing and memory stays flat:
//! 1. scan: one sorted walk that records every node's metadata (never following symlinks) and
//!    refuses what a tree cannot hold (sockets) before anything is written;
//! 2. hash: content digests on all cores, one read per distinct inode;
//! 3. store: only objects the database does not know are copied into `objects/` (holes kept,
//!    a file that changed since it was hashed is an error), then one `syncfs`;
//! 4. record: trees are encoded bottom-up and written with the entry in one transaction.
//!
//! A failed import leaves no rows; object files it already moved into place are orphans for gc.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rayon::prelude::*;

use crate::store::batch::Batch;
use crate::store::check_root_name;
use crate::store::digest::Digest;
use crate::store::entry::EntryKind;
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::meta::Meta;
use crate::store::object::{hash_file, Stamp};
use crate::store::tree::{object_id, Name, Node, Tree, TreeRows};
use crate::store::Backend;
use crate::util::progress::Progress;

/// What an import did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImportReport {
    pub key: Digest,
    pub tree: Digest,
    /// Regular files (every path of a hardlinked file counts).
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// Objects the store did not have before.
    pub new_objects: u64,
    /// Bytes of those new objects.
    pub new_bytes: u64,
    /// Whether the entry is new (false: the same tree was imported before).
    pub new_entry: bool,
}

struct ScanFile {
    path: PathBuf,
    meta: Meta,
    stamp: Stamp,
    devino: (u64, u64),
    nlink: u64,
    link: u32,
    content: Digest,
}

enum ScanNode {
    Dir(ScanDir),
    File(usize),
    Other(Node),
}

struct ScanDir {
    meta: Meta,
    entries: Vec<(Name, ScanNode)>,
}

/// Import the directory `src` as an entry named `name`, optionally pointed at by root `root`.
pub fn import_dir(
    store: &mut Store,
    src: &Path,
    name: &str,
    root: Option<&str>,
    progress: &Progress,
) -> anyhow::Result<ImportReport> {
    if let Some(root) = root {
        check_root_name(root)?;
    }
    let (batch, tree, stats) = import_tree(store, src, false, progress)?;
    let memo = Memo::new(EntryKind::Import, name, &[], &[tree]);
    let key = memo.key;
    let new_entry = memo.lookup(store)?.is_none();
    memo.record(store, Built::in_batch(tree, batch).totals(stats.files, stats.bytes))?;
    if let Some(root) = root {
        store.set_root(root, &key)?;
    }
    Ok(ImportReport {
        key,
        tree,
        files: stats.files,
        bytes: stats.bytes,
        new_objects: stats.new_objects,
        new_bytes: stats.new_bytes,
        new_entry,
    })
}

/// What [`import_tree`] stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct TreeStats {
    pub files: u64,
    pub bytes: u64,
    pub new_objects: u64,
    pub new_bytes: u64,
}

/// Store the directory `src`'s objects and encode its trees; the returned batch (objects already
/// in place, trees pending) is for the caller to commit, with its entry, in one transaction.
/// With `overlay_upper`, `src` is an overlayfs upper directory: opaque markers are kept and
/// whiteouts (0/0 character devices) are stored as such, for [`crate::trees::layer::apply`].
pub fn import_tree(
    store: &mut Store,
    src: &Path,
    overlay_upper: bool,
    progress: &Progress,
) -> anyhow::Result<(Batch, Digest, TreeStats)> {
    let top = fs_err::metadata(src)?;
    if !top.is_dir() {
        anyhow::bail!("`{}` is not a directory", src.display());
    }

    let started = std::time::Instant::now();
    let _span = tracing::debug_span!("import", src = %src.display()).entered();

    // 1. scan
    let spinner = progress.spinner("scanning");
    let mut files = Vec::new();
    let root_dir = scan_dir(src, &top, overlay_upper, &mut files, &spinner)?;
    spinner.finish_and_clear();
    assign_link_groups(&mut files);
    tracing::debug!(files = files.len(), ms = started.elapsed().as_millis() as u64, "scanned");

    // 2. hash
    let total: u64 = files.iter().map(|f| f.stamp.size).sum();
    let bar = progress.bytes(total, "hashing");
    let first_of_inode: HashMap<(u64, u64), usize> = {
        let mut m = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            m.entry(f.devino).or_insert(i);
        }
        m
    };
    files.par_iter_mut().enumerate().try_for_each(|(i, f)| -> anyhow::Result<()> {
        if first_of_inode[&f.devino] != i {
            return Ok(());
        }
        let mut file = crate::store::object::open_no_follow(&f.path)?;
        let st = file.metadata()?;
        f.stamp = Stamp::of(&st);
        f.content = hash_file(file.file_mut(), f.stamp.size)
            .with_context(|| format!("failed to read `{}`", f.path.display()))?;
        bar.inc(f.stamp.size);
        Ok(())
    })?;
    for i in 0..files.len() {
        let first = first_of_inode[&files[i].devino];
        if first != i {
            files[i].content = files[first].content;
            files[i].stamp = files[first].stamp;
        }
    }
    bar.finish_and_clear();
    tracing::debug!(bytes = total, ms = started.elapsed().as_millis() as u64, "hashed");

    // 3. store new objects
    let mut unique: Vec<(Digest, usize)> = Vec::new();
    {
        let mut seen = std::collections::HashSet::new();
        for (i, f) in files.iter().enumerate() {
            let id = object_id(&f.meta, f.stamp.size, &f.content);
            if seen.insert(id) {
                unique.push((id, i));
            }
        }
    }
    let ids: Vec<Digest> = unique.iter().map(|(id, _)| *id).collect();
    let known = store.db().known_objects(&ids)?;
    let missing: Vec<(Digest, usize)> = unique.iter().zip(&known).filter(|(_, k)| !**k).map(|(u, _)| *u).collect();
    let new_bytes: u64 = missing.iter().map(|(_, i)| files[*i].stamp.size).sum();
    let objects = store.object_store();
    let bar = progress.bytes(new_bytes, "storing");
    missing.par_iter().try_for_each(|(id, i)| -> anyhow::Result<()> {
        let f = &files[*i];
        objects.insert_file(id, &f.path, f.stamp, &f.meta)?;
        bar.inc(f.stamp.size);
        Ok(())
    })?;
    bar.finish_and_clear();
    tracing::debug!(new_objects = missing.len(), new_bytes, ms = started.elapsed().as_millis() as u64, "stored");

    // 4. encode (the caller records)
    let mut batch = Batch::new();
    for (id, i) in &missing {
        batch.record_placed(*id, files[*i].stamp.size);
    }
    let tree = encode_dir(&root_dir, &files, &mut batch.trees);
    tracing::debug!(%tree, trees = batch.trees.len(), ms = started.elapsed().as_millis() as u64, "encoded");
    let stats = TreeStats { files: files.len() as u64, bytes: total, new_objects: missing.len() as u64, new_bytes };
    Ok((batch, tree, stats))
}

fn scan_dir(
    path: &Path,
    st: &std::fs::Metadata,
    overlay_upper: bool,
    files: &mut Vec<ScanFile>,
    spinner: &indicatif::ProgressBar,
) -> anyhow::Result<ScanDir> {
    let meta = Meta::read_as(path, st, overlay_upper)?;
    let mut names = Vec::new();
    for entry in fs_err::read_dir(path)? {
        names.push(entry?.file_name());
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    let mut entries = Vec::with_capacity(names.len());
    for os_name in names {
        let child = path.join(&os_name);
        let name = Name::new(os_name.as_encoded_bytes().to_vec())
            .with_context(|| format!("cannot store `{}`", child.display()))?;
        let cst = fs_err::symlink_metadata(&child)?;
        let ft = cst.file_type();
        spinner.inc(1);
        let node = if ft.is_dir() {
            ScanNode::Dir(scan_dir(&child, &cst, overlay_upper, files, spinner)?)
        } else if ft.is_file() {
            files.push(ScanFile {
                meta: Meta::read(&child, &cst)?,
                stamp: Stamp::of(&cst),
                devino: (cst.dev(), cst.ino()),
                nlink: cst.nlink(),
                link: 0,
                content: Digest([0; 32]),
                path: child,
            });
            ScanNode::File(files.len() - 1)
        } else if ft.is_symlink() {
            let target = fs_err::read_link(&child)?;
            let mut meta = Meta::read(&child, &cst)?;
            meta.mode = 0o777;
            ScanNode::Other(Node::Symlink { meta, target: target.into_os_string().into_encoded_bytes() })
        } else if ft.is_char_device() {
            ScanNode::Other(Node::CharDevice { meta: Meta::read(&child, &cst)?, rdev: cst.rdev() })
        } else if ft.is_block_device() {
            ScanNode::Other(Node::BlockDevice { meta: Meta::read(&child, &cst)?, rdev: cst.rdev() })
        } else if ft.is_fifo() {
            ScanNode::Other(Node::Fifo { meta: Meta::read(&child, &cst)? })
        } else if ft.is_socket() {
            anyhow::bail!(
                "`{}` is a socket: sockets cannot be stored in a tree (they belong to a running system); remove it or import a copy without it",
                child.display()
            );
        } else {
            anyhow::bail!("`{}` has an unknown file type", child.display());
        };
        entries.push((name, node));
    }
    Ok(ScanDir { meta, entries })
}

/// Number hardlink groups 1, 2, … in walk order, counting only links inside the imported tree.
fn assign_link_groups(files: &mut [ScanFile]) {
    let mut count: HashMap<(u64, u64), u32> = HashMap::new();
    for f in files.iter().filter(|f| f.nlink > 1) {
        *count.entry(f.devino).or_default() += 1;
    }
    let mut group: HashMap<(u64, u64), u32> = HashMap::new();
    for f in files.iter_mut() {
        if count.get(&f.devino).copied().unwrap_or(0) > 1 {
            let next = group.len() as u32 + 1;
            f.link = *group.entry(f.devino).or_insert(next);
        }
    }
}

/// Encode `dir` and its subdirectories bottom-up, pushing every (id, encoding) into `out`.
fn encode_dir(dir: &ScanDir, files: &[ScanFile], out: &mut TreeRows) -> Digest {
    let entries = dir
        .entries
        .iter()
        .map(|(name, node)| {
            let node = match node {
                ScanNode::Dir(d) => Node::Directory { tree: encode_dir(d, files, out) },
                ScanNode::File(i) => {
                    let f = &files[*i];
                    Node::File { meta: f.meta.clone(), size: f.stamp.size, content: f.content, link: f.link }
                }
                ScanNode::Other(n) => n.clone(),
            };
            (name.clone(), node)
        })
        .collect();
    Tree { meta: dir.meta.clone(), entries }.encode_into(out)
}
