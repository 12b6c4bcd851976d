//! Retention in an OSTree repository strata writes: keep, on every ref, the commits from the
//! head down to the oldest one whose image generation is kept, and delete the rest of the
//! history, the objects only it reached, and the static deltas that lead to deleted commits.
//!
//! Invariants: a ref's head is never deleted; history stays contiguous (a kept commit's parents
//! up to the oldest kept one stay, so `ostree log` and deltas between kept commits keep working);
//! a commit is matched to its generation by the `strata.entry` key in its metadata, and a commit
//! without that key (not made by strata) counts as kept. libostree's own prune deletes the
//! objects, under the repository's own lock. Static deltas that lead to a deleted commit go;
//! deltas from a deleted commit to a kept one stay (a client still on the old commit uses them).

use std::path::Path;

use anyhow::Context;
use ostree::{gio, glib};

use crate::ostree::publish::parent_of;

/// What pruning a repository removed (or would remove).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RepoPruned {
    pub repo: String,
    pub commits: u64,
    /// Objects and bytes. A dry run counts the objects only the removed commits reach; a real
    /// run reports what libostree's prune deleted (which includes objects no ref reached before).
    pub objects: u64,
    pub bytes: u64,
    /// The repository's summary: `regenerated`, `signed` (left as it was: gc holds no key, so
    /// it still lists the removed deltas until the next signed export), or `none`.
    pub summary: &'static str,
    /// Not pruned now (a strata export into it was running): the commits are what a later gc
    /// removes.
    pub deferred: bool,
}

/// The lock that keeps a repository from being pruned while strata exports into it: an export
/// trusts what the store recorded the repository holds. `<store>/locks/ostree-<hash>.lock`,
/// shared for an export, exclusive for gc's prune.
pub fn repo_lock_path(store_root: &Path, repo_key: &str) -> std::path::PathBuf {
    let hash = blake3::hash(repo_key.as_bytes()).to_hex();
    store_root.join("locks").join(format!("ostree-{}.lock", &hash[..16]))
}

/// Take a repository's lock shared (an export), waiting at most `wait`.
pub fn lock_for_export(
    store_root: &Path,
    repo_key: &str,
    wait: std::time::Duration,
) -> anyhow::Result<crate::store::lock::StoreLock> {
    let path = repo_lock_path(store_root, repo_key);
    fs_err::create_dir_all(path.parent().expect("a lock path has a parent"))?;
    crate::store::lock::StoreLock::acquire(&path, crate::store::lock::LockMode::Shared, wait, || {
        tracing::info!("waiting for gc to finish pruning {repo_key}");
    })
}

/// Take a repository's lock exclusively if no export holds it (gc's prune).
pub fn lock_for_prune(store_root: &Path, repo_key: &str) -> anyhow::Result<Option<crate::store::lock::StoreLock>> {
    let path = repo_lock_path(store_root, repo_key);
    fs_err::create_dir_all(path.parent().expect("a lock path has a parent"))?;
    crate::store::lock::StoreLock::try_exclusive(&path)
}

/// The `strata.entry` metadata of a commit, when it has one.
fn commit_entry(repo: &ostree::Repo, commit: &str) -> anyhow::Result<Option<String>> {
    let (variant, _) = repo.load_commit(commit)?;
    let meta = variant.child_value(0);
    let dict = glib::VariantDict::new(Some(&meta));
    Ok(dict.lookup_value("strata.entry", None).and_then(|v| v.get::<String>()))
}

/// Prune `path` so that every ref keeps its commits down to the oldest one whose `strata.entry`
/// `keep` accepts. A dry run deletes nothing and counts commits.
pub fn prune_to(path: &Path, keep: &dyn Fn(&str) -> bool, dry_run: bool) -> anyhow::Result<RepoPruned> {
    let repo = ostree::Repo::new_for_path(path);
    repo.open(gio::Cancellable::NONE)
        .with_context(|| format!("cannot open the OSTree repository `{}`", path.display()))?;
    let mut report = RepoPruned { repo: path.display().to_string(), summary: "none", ..Default::default() };
    let refs = repo.list_refs(None, gio::Cancellable::NONE)?;
    let mut doomed: Vec<String> = Vec::new();
    let mut kept = std::collections::HashSet::new();
    for head in refs.values() {
        let mut chain = vec![head.clone()];
        while let Some(parent) = parent_of(&repo, chain.last().expect("chain starts with the head"))? {
            if chain.contains(&parent) {
                break;
            }
            chain.push(parent);
        }
        let mut oldest = 0;
        for (i, commit) in chain.iter().enumerate() {
            if commit_entry(&repo, commit)?.is_none_or(|e| keep(&e)) {
                oldest = i;
            }
        }
        kept.extend(chain[..=oldest].iter().cloned());
        doomed.extend(chain[oldest + 1..].iter().cloned());
    }
    // A commit another ref keeps stays.
    doomed.retain(|c| !kept.contains(c));
    doomed.sort();
    doomed.dedup();
    report.commits = doomed.len() as u64;
    if doomed.is_empty() {
        return Ok(report);
    }
    if dry_run {
        let (objects, bytes) = only_reached_by(&repo, path, &doomed, &kept)?;
        report.objects = objects;
        report.bytes = bytes;
        return Ok(report);
    }
    // libostree's prune counts the bytes of what it deletes; the commits are deleted here.
    let commit_bytes: u64 = doomed
        .iter()
        .filter_map(|c| fs_err::metadata(path.join(format!("objects/{}/{}.commit", &c[..2], &c[2..]))).ok())
        .map(|m| m.len())
        .sum();
    for commit in &doomed {
        repo.delete_object(ostree::ObjectType::Commit, commit, gio::Cancellable::NONE)
            .with_context(|| format!("cannot delete commit {commit} from `{}`", path.display()))?;
    }
    let (_, pruned, bytes) = repo
        .prune(ostree::RepoPruneFlags::REFS_ONLY, -1, gio::Cancellable::NONE)
        .with_context(|| format!("cannot prune `{}`", path.display()))?;
    repo.prune_static_deltas(None, gio::Cancellable::NONE)
        .with_context(|| format!("cannot prune the static deltas of `{}`", path.display()))?;
    report.objects = pruned.max(0) as u64 + report.commits;
    report.bytes = bytes + commit_bytes;
    report.summary = if !path.join("summary").exists() {
        "none"
    } else if path.join("summary.sig").exists() {
        "signed"
    } else {
        repo.regenerate_summary(None, gio::Cancellable::NONE)
            .with_context(|| format!("cannot write the summary of `{}`", path.display()))?;
        "regenerated"
    };
    Ok(report)
}

/// The objects (commits included) that `doomed` commits reach and no `kept` commit does, and
/// their bytes on disk.
fn only_reached_by(
    repo: &ostree::Repo,
    path: &Path,
    doomed: &[String],
    kept: &std::collections::HashSet<String>,
) -> anyhow::Result<(u64, u64)> {
    let mut reached = std::collections::HashSet::new();
    for c in kept {
        for name in repo.traverse_commit(c, 0, gio::Cancellable::NONE)? {
            reached.insert((name.checksum().to_string(), name.object_type()));
        }
    }
    let mut only = std::collections::HashSet::new();
    for c in doomed {
        for name in repo.traverse_commit(c, 0, gio::Cancellable::NONE)? {
            let key = (name.checksum().to_string(), name.object_type());
            if !reached.contains(&key) {
                only.insert(key);
            }
        }
    }
    let mut bytes = 0;
    for (sum, t) in &only {
        let ext: &[&str] = match t {
            ostree::ObjectType::File => &["filez", "file"],
            ostree::ObjectType::DirTree => &["dirtree"],
            ostree::ObjectType::DirMeta => &["dirmeta"],
            ostree::ObjectType::Commit => &["commit"],
            _ => &[],
        };
        for e in ext {
            if let Ok(m) = fs_err::symlink_metadata(path.join(format!("objects/{}/{}.{e}", &sum[..2], &sum[2..]))) {
                bytes += m.len();
                break;
            }
        }
    }
    Ok((only.len() as u64, bytes))
}
