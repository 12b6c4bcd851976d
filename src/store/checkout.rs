//! Materializing a stored tree as a real directory.
//!
//! Link modes, chosen once per checkout:
//! - `reflink`: a copy-on-write clone of each object (btrfs, xfs with reflink): independent files
//!   that share blocks; writable without harm to the store.
//! - `hardlink`: each file is a hard link to its object, carrying the object's owner, mode and
//!   xattrs. Fastest, but the files ARE the store's objects: a hardlinked checkout must never be
//!   written to (anything that writes works on an overlay or a reflink/copy checkout).
//! - `copy`: a full copy (holes kept); works across file systems.
//! - `auto`: reflink where the file system can, else hardlink, else (another file system) copy.
//!
//! An object at the file system's hard-link limit is copied instead, and counted in the report.
//! The checkout is built in a hidden sibling directory and renamed to its destination at the end,
//! so a failed checkout leaves nothing behind.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rayon::prelude::*;

use crate::store::digest::Digest;
use crate::store::local::{make_writable, Store};
use crate::store::meta::Meta;
use crate::store::object::{copy_sparse, ObjectStore};
use crate::store::tree::{object_id, Node};
use crate::store::walk::{flatten, ItemKind};
use crate::util::progress::Progress;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    Auto,
    Reflink,
    Hardlink,
    Copy,
}

impl LinkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Auto => "auto",
            LinkMode::Reflink => "reflink",
            LinkMode::Hardlink => "hardlink",
            LinkMode::Copy => "copy",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckoutReport {
    pub tree: Digest,
    pub dest: PathBuf,
    /// The method used for regular files (never `auto`).
    pub method: LinkMode,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Device nodes and fifos.
    pub special: u64,
    /// Files copied because their object reached the hard-link limit.
    pub copied_at_link_limit: u64,
}

struct FileJob {
    path: PathBuf,
    object: Digest,
    meta: Meta,
    size: u64,
    /// First path of the file's hardlink group, when it is not itself the first.
    link_to: Option<PathBuf>,
}

/// Check out tree `tree` at `dest`, which must not exist or be an empty directory.
pub fn checkout(
    store: &Store,
    tree: &Digest,
    dest: &Path,
    mode: LinkMode,
    progress: &Progress,
) -> anyhow::Result<CheckoutReport> {
    if let Ok(st) = fs_err::symlink_metadata(dest) {
        let empty_dir = st.is_dir() && fs_err::read_dir(dest)?.next().is_none();
        if !empty_dir {
            anyhow::bail!("`{}` already exists and is not an empty directory", dest.display());
        }
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs_err::create_dir_all(&parent)?;
    let base = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{base}.strata-"))
        .tempdir_in(&parent)
        .with_context(|| format!("failed to create a staging directory in `{}`", parent.display()))?;
    let result = materialize(store, tree, staging.path(), mode, progress);
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            make_writable(staging.path());
            return Err(e.context(format!("failed to check out {} at `{}`", tree.short(), dest.display())));
        }
    };
    let staged = staging.keep();
    if dest.exists() {
        fs_err::remove_dir(dest)?;
    }
    if let Err(e) = fs_err::rename(&staged, dest) {
        make_writable(&staged);
        let _ = fs_err::remove_dir_all(&staged);
        return Err(e.into());
    }
    report.dest = dest.to_path_buf();
    Ok(report)
}

fn materialize(
    store: &Store,
    tree: &Digest,
    root: &Path,
    mode: LinkMode,
    progress: &Progress,
) -> anyhow::Result<CheckoutReport> {
    let privileged = store.privileged();
    let items = flatten(store, tree)?;
    let mut dirs = Vec::new();
    let mut jobs = Vec::new();
    let mut others = Vec::new();
    let mut group_first: HashMap<u32, PathBuf> = HashMap::new();
    for item in items {
        let path = root.join(&item.path);
        match item.kind {
            ItemKind::Dir { meta, .. } => dirs.push((path, meta)),
            ItemKind::Leaf(Node::File { meta, size, content, link }) => {
                let link_to = if link == 0 {
                    None
                } else {
                    match group_first.get(&link) {
                        Some(first) => Some(first.clone()),
                        None => {
                            group_first.insert(link, path.clone());
                            None
                        }
                    }
                };
                jobs.push(FileJob { object: object_id(&meta, size, &content), path, meta, size, link_to });
            }
            ItemKind::Leaf(node) => others.push((path, node)),
        }
    }
    for (path, _) in dirs.iter().skip(1) {
        fs_err::create_dir(path)?;
    }

    let objects = store.object_store();
    let (first_jobs, linked_jobs): (Vec<&FileJob>, Vec<&FileJob>) = jobs.iter().partition(|j| j.link_to.is_none());
    let (method, probed) = resolve_mode(mode, &objects, root, first_jobs.first().copied(), privileged)?;
    tracing::debug!(method = method.as_str(), files = jobs.len(), dirs = dirs.len(), "checkout");
    let bar = progress.items(jobs.len() as u64, "checkout");
    let fallbacks = std::sync::atomic::AtomicU64::new(0);
    // The probe in resolve_mode may have placed the first file already.
    let skip = usize::from(probed);
    bar.inc(skip as u64);
    first_jobs[skip..].par_iter().try_for_each(|job| -> anyhow::Result<()> {
        place_file(&objects, job, method, privileged, &fallbacks)?;
        bar.inc(1);
        Ok(())
    })?;
    for job in &linked_jobs {
        let first = job.link_to.as_ref().expect("linked job");
        if method == LinkMode::Hardlink {
            place_file(&objects, job, method, privileged, &fallbacks)?;
        } else {
            fs_err::hard_link(first, &job.path)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut symlinks = 0;
    for (path, node) in &others {
        place_other(path, node, privileged)?;
        if matches!(node, Node::Symlink { .. }) {
            symlinks += 1;
        }
    }
    // Children first, so that a read-only directory does not block filling it.
    for (path, meta) in dirs.iter().rev() {
        meta.apply(path, false, privileged)?;
    }
    Ok(CheckoutReport {
        tree: *tree,
        dest: root.to_path_buf(),
        method,
        files: jobs.len() as u64,
        dirs: dirs.len() as u64,
        symlinks,
        special: others.len() as u64 - symlinks,
        copied_at_link_limit: fallbacks.into_inner(),
    })
}

/// Decide the method for `auto` or check an explicit one. Trying reflink places `probe`; the
/// returned flag says whether it was placed.
fn resolve_mode(
    mode: LinkMode,
    objects: &ObjectStore,
    root: &Path,
    probe: Option<&FileJob>,
    privileged: bool,
) -> anyhow::Result<(LinkMode, bool)> {
    let same_fs = fs_err::metadata(objects.dir())?.dev() == fs_err::metadata(root)?.dev();
    match mode {
        LinkMode::Auto => {
            if let Some(job) = probe {
                if reflink_copy::reflink(objects.path(&job.object), &job.path).is_ok() {
                    finish_copy(job, privileged)?;
                    return Ok((LinkMode::Reflink, true));
                }
            }
            Ok((if same_fs { LinkMode::Hardlink } else { LinkMode::Copy }, false))
        }
        LinkMode::Hardlink if !same_fs => anyhow::bail!(
            "cannot hardlink: `{}` is on another file system than the store; use --link copy or auto",
            root.display()
        ),
        LinkMode::Reflink => {
            if let Some(job) = probe {
                reflink_copy::reflink(objects.path(&job.object), &job.path).with_context(|| {
                    format!(
                        "this file system cannot reflink from the store to `{}` (btrfs or xfs with reflink=1 can); use --link auto",
                        root.display()
                    )
                })?;
                finish_copy(job, privileged)?;
            }
            Ok((LinkMode::Reflink, probe.is_some()))
        }
        other => Ok((other, false)),
    }
}

fn place_file(
    objects: &ObjectStore,
    job: &FileJob,
    method: LinkMode,
    privileged: bool,
    fallbacks: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<()> {
    let src = objects.path(&job.object);
    match method {
        LinkMode::Hardlink => match nix::unistd::linkat(None, &src, None, &job.path, nix::fcntl::AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EMLINK) => {
                fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                copy_file(&src, job, privileged)
            }
            Err(e) => {
                Err(e).with_context(|| format!("failed to hardlink `{}` to `{}`", job.path.display(), src.display()))
            }
        },
        LinkMode::Reflink => {
            reflink_copy::reflink(&src, &job.path)
                .with_context(|| format!("failed to reflink `{}` to `{}`", src.display(), job.path.display()))?;
            finish_copy(job, privileged)
        }
        LinkMode::Copy | LinkMode::Auto => copy_file(&src, job, privileged),
    }
}

fn copy_file(src: &Path, job: &FileJob, privileged: bool) -> anyhow::Result<()> {
    let from = fs_err::File::open(src)?;
    let to = fs_err::OpenOptions::new().write(true).create_new(true).open(&job.path)?;
    copy_sparse(from.file(), to.file(), job.size)
        .with_context(|| format!("failed to copy `{}` to `{}`", src.display(), job.path.display()))?;
    drop(to);
    finish_copy(job, privileged)
}

/// Give a freshly copied or cloned file the object's metadata and mtime 0.
fn finish_copy(job: &FileJob, privileged: bool) -> anyhow::Result<()> {
    use nix::sys::time::TimeSpec;
    job.meta.apply(&job.path, false, privileged)?;
    nix::sys::stat::utimensat(
        None,
        &job.path,
        &TimeSpec::new(0, 0),
        &TimeSpec::new(0, 0),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("failed to set the mtime of `{}`", job.path.display()))?;
    Ok(())
}

fn place_other(path: &Path, node: &Node, privileged: bool) -> anyhow::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let ctx = || format!("failed to create `{}`", path.display());
    match node {
        Node::Symlink { meta, target } => {
            use std::os::unix::ffi::OsStrExt;
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).with_context(ctx)?;
            meta.apply(path, true, privileged)
        }
        Node::CharDevice { meta, rdev } | Node::BlockDevice { meta, rdev } => {
            if !privileged {
                anyhow::bail!("cannot create device node `{}` without root privileges", path.display());
            }
            let kind = if matches!(node, Node::CharDevice { .. }) { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
            mknod(path, kind, Mode::from_bits_retain(0o600), *rdev).with_context(ctx)?;
            meta.apply(path, false, privileged)
        }
        Node::Fifo { meta } => {
            nix::unistd::mkfifo(path, Mode::from_bits_retain(0o600)).with_context(ctx)?;
            meta.apply(path, false, privileged)
        }
        Node::File { .. } | Node::Directory { .. } => unreachable!("files and directories are placed elsewhere"),
    }
}
