//! Publishing a ref to another archive repository, in an order that keeps it servable.
//!
//! A client pulling while a push runs must see the old commit or the new one, never a commit
//! whose objects are not all there. So the push writes, in order:
//! 1. every object the destination lacks, in the order content, directory metadata and trees,
//!    detached metadata (signatures), commits: each file is copied to a temporary name first,
//!    all are synced, and only then renamed into `objects/`;
//! 2. static deltas, each directory renamed into place whole;
//! 3. the ref (a rename);
//! 4. the summary, regenerated from the destination's refs and signed.
//!
//! The commits pushed are the ref's commit and its ancestors back to the first one the
//! destination already has, so `ostree log` on a client shows the same history. Interrupted at
//! any point, the destination still serves its previous commit; leftovers of the interrupted
//! push (under `tmp/`) are removed by the next one.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ostree::gio;

use super::export::{open_repo, RepoMode};
use super::sign::{update_summary, Signer};
use crate::util::progress::Progress;

const STAGING_PREFIX: &str = "strata-push-";

#[derive(Clone, Debug, serde::Serialize)]
pub struct PushReport {
    pub commit: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub dest: PathBuf,
    /// Commits the destination did not have.
    pub commits: u64,
    pub objects_copied: u64,
    pub bytes_copied: u64,
    pub deltas_copied: u64,
    /// False when the destination's ref already pointed at the commit.
    pub updated: bool,
}

/// Push `reference` of the archive repository `src` to the archive repository at `dest`
/// (created when missing), then regenerate and sign the destination's summary.
pub fn push(
    src: &Path,
    reference: &str,
    dest: &Path,
    signers: &[Signer],
    progress: &Progress,
) -> anyhow::Result<PushReport> {
    let _span = tracing::debug_span!("push", reference).entered();
    super::export::check_ref(reference)?;
    let (src_repo, commit) = source_commit(src, reference)?;
    let dest_repo = open_repo(dest, Some(RepoMode::Archive))?;
    let _lock = lock(dest)?;
    clean_staging(dest)?;

    let old = dest_repo.resolve_rev(reference, true)?.map(|s| s.to_string());
    let commits = missing_commits(&src_repo, &dest_repo, &commit)?;
    let objects = missing_objects(src, &src_repo, &dest_repo, &commits)?;

    // 1. Objects: staged, synced, renamed in order.
    let staging = tempfile::Builder::new().prefix(STAGING_PREFIX).tempdir_in(dest.join("tmp"))?;
    let (objects_copied, bytes) = copy_objects(src, dest, staging.path(), &objects, progress)?;

    // 2. Static deltas (and their indexes) the destination lacks.
    let deltas = copy_new_dirs(&src.join("deltas"), &dest.join("deltas"), staging.path())?;
    copy_new_dirs(&src.join("delta-indexes"), &dest.join("delta-indexes"), staging.path())?;
    syncfs(dest)?;

    // 3. The ref, 4. the summary.
    let updated = old.as_deref() != Some(commit.as_str());
    if updated {
        write_ref(dest, staging.path(), reference, &commit)?;
    }
    let dest_repo = open_repo(dest, Some(RepoMode::Archive))?;
    update_summary(&dest_repo, signers)?;
    syncfs(dest)?;
    Ok(PushReport {
        commit,
        reference: reference.to_string(),
        dest: dest.to_path_buf(),
        commits: commits.len() as u64,
        objects_copied,
        bytes_copied: bytes,
        deltas_copied: deltas,
        updated,
    })
}

/// Open the archive repository `src` and resolve `reference` there to its commit.
fn source_commit(src: &Path, reference: &str) -> anyhow::Result<(ostree::Repo, String)> {
    if !src.join("config").exists() {
        bail!("`{}` is not an OSTree repository", src.display());
    }
    let src_repo = open_repo(src, None)?;
    if src_repo.mode() != ostree::RepoMode::Archive {
        bail!(
            "`{}` is a {:?} repository: push publishes from an archive repository (export with --mode archive)",
            src.display(),
            src_repo.mode()
        );
    }
    let commit = src_repo
        .resolve_rev(reference, true)?
        .with_context(|| format!("`{}` has no ref `{reference}`", src.display()))?
        .to_string();
    Ok((src_repo, commit))
}

/// Lock the destination against other pushes, until the returned lock is dropped.
fn lock(dest: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dest.join("strata-push.lock"))?;
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("cannot lock `{}` for pushing", dest.display()))
}

/// The commits to push: the ref's commit and its ancestors the destination lacks.
fn missing_commits(src_repo: &ostree::Repo, dest_repo: &ostree::Repo, commit: &str) -> anyhow::Result<Vec<String>> {
    let mut commits = Vec::new();
    let mut next = Some(commit.to_string());
    while let Some(c) = next {
        if has(dest_repo, ostree::ObjectType::Commit, &c)? {
            break;
        }
        next = super::publish::parent_of(src_repo, &c)?;
        commits.push(c);
    }
    Ok(commits)
}

/// The objects of `commits` (with their signatures) the destination lacks, in copy order.
fn missing_objects(
    src: &Path,
    src_repo: &ostree::Repo,
    dest_repo: &ostree::Repo,
    commits: &[String],
) -> anyhow::Result<BTreeSet<(u8, String, ostree::ObjectType)>> {
    let mut objects: BTreeSet<(u8, String, ostree::ObjectType)> = BTreeSet::new();
    for c in commits {
        for name in src_repo.traverse_commit(c, 0, gio::Cancellable::NONE)? {
            let t = name.object_type();
            if !has(dest_repo, t, name.checksum())? {
                objects.insert((order(t), name.checksum().to_string(), t));
            }
        }
        if src.join(object_path(c, ostree::ObjectType::CommitMeta)).exists() {
            objects.insert((order(ostree::ObjectType::CommitMeta), c.clone(), ostree::ObjectType::CommitMeta));
        }
    }
    Ok(objects)
}

/// Copy `objects` into `staging`, sync, then rename them into place in order; returns (count, bytes).
fn copy_objects(
    src: &Path,
    dest: &Path,
    staging: &Path,
    objects: &BTreeSet<(u8, String, ostree::ObjectType)>,
    progress: &Progress,
) -> anyhow::Result<(u64, u64)> {
    let bar = progress.items(objects.len() as u64, "copying objects");
    let mut staged = Vec::with_capacity(objects.len());
    let mut bytes = 0;
    for (i, (_, sum, t)) in objects.iter().enumerate() {
        let rel = object_path(sum, *t);
        let tmp = staging.join(i.to_string());
        bytes += fs_err::copy(src.join(&rel), &tmp)?;
        staged.push((tmp, dest.join(rel)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    syncfs(dest)?;
    for (tmp, target) in &staged {
        fs_err::create_dir_all(target.parent().expect("object dir"))?;
        fs_err::rename(tmp, target)?;
    }
    syncfs(dest)?;
    Ok((staged.len() as u64, bytes))
}

/// Point the destination's `reference` at `commit`: written and synced under `staging`, then renamed.
fn write_ref(dest: &Path, staging: &Path, reference: &str, commit: &str) -> anyhow::Result<()> {
    let ref_path = dest.join("refs/heads").join(reference);
    fs_err::create_dir_all(ref_path.parent().expect("ref dir"))?;
    let tmp = staging.join("ref");
    fs_err::write(&tmp, format!("{commit}\n"))?;
    fs_err::File::open(&tmp)?.sync_all()?;
    fs_err::rename(&tmp, &ref_path)?;
    Ok(())
}

/// Copy order: content, then what refers to it, commits last.
fn order(t: ostree::ObjectType) -> u8 {
    match t {
        ostree::ObjectType::File => 0,
        ostree::ObjectType::DirMeta => 1,
        ostree::ObjectType::DirTree => 2,
        ostree::ObjectType::CommitMeta => 3,
        _ => 4,
    }
}

/// Where an archive repository keeps an object.
fn object_path(checksum: &str, t: ostree::ObjectType) -> PathBuf {
    let ext = match t {
        ostree::ObjectType::File => "filez",
        ostree::ObjectType::DirTree => "dirtree",
        ostree::ObjectType::DirMeta => "dirmeta",
        ostree::ObjectType::Commit => "commit",
        ostree::ObjectType::CommitMeta => "commitmeta",
        _ => "unknown",
    };
    PathBuf::from(format!("objects/{}/{}.{ext}", &checksum[..2], &checksum[2..]))
}

fn has(repo: &ostree::Repo, t: ostree::ObjectType, checksum: &str) -> anyhow::Result<bool> {
    Ok(repo.has_object(t, checksum, gio::Cancellable::NONE)?)
}

/// Copy each `src/XX/NAME` directory that `dest` lacks: staged whole, then renamed into place.
fn copy_new_dirs(src: &Path, dest: &Path, staging: &Path) -> anyhow::Result<u64> {
    if !src.is_dir() {
        return Ok(0);
    }
    let mut copied = 0;
    for prefix in fs_err::read_dir(src)? {
        let prefix = prefix?;
        if !prefix.file_type()?.is_dir() {
            // delta-indexes/XX/NAME.index files and the like: replaced atomically.
            let target = dest.join(prefix.file_name());
            if !target.exists() {
                let tmp = staging.join(format!("f-{copied}"));
                fs_err::copy(prefix.path(), &tmp)?;
                fs_err::create_dir_all(dest)?;
                fs_err::rename(&tmp, &target)?;
            }
            continue;
        }
        for entry in fs_err::read_dir(prefix.path())? {
            let entry = entry?;
            let target = dest.join(prefix.file_name()).join(entry.file_name());
            if target.exists() {
                continue;
            }
            let tmp = staging.join(format!("d-{copied}"));
            copy_tree(&entry.path(), &tmp)?;
            syncfs(staging)?;
            fs_err::create_dir_all(target.parent().expect("delta dir"))?;
            fs_err::rename(&tmp, &target)?;
            copied += 1;
        }
    }
    Ok(copied)
}

fn copy_tree(src: &Path, dest: &Path) -> anyhow::Result<()> {
    if fs_err::symlink_metadata(src)?.is_dir() {
        fs_err::create_dir(dest)?;
        for entry in fs_err::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dest.join(entry.file_name()))?;
        }
    } else {
        fs_err::copy(src, dest)?;
    }
    Ok(())
}

/// Remove what interrupted pushes left under `tmp/`.
fn clean_staging(dest: &Path) -> anyhow::Result<()> {
    for entry in fs_err::read_dir(dest.join("tmp"))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
            fs_err::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

fn syncfs(path: &Path) -> anyhow::Result<()> {
    let dir = fs_err::File::open(path)?;
    nix::unistd::syncfs(dir.as_raw_fd()).with_context(|| format!("cannot sync `{}`", path.display()))?;
    Ok(())
}
