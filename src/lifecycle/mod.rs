//! One garbage collector for everything strata writes (`strata gc`), and disk usage (`strata du`).
//!
//! A run, in order:
//! 1. retention ([`crate::graph::retention`]) decides which generations keep their roots and
//!    removes the others' roots;
//! 2. the OSTree repositories strata manages (`<store>/ostree-repo`, which `deploy` commits to,
//!    and every repository `export --repo` wrote) are pruned to the commits of kept generations
//!    ([`crate::ostree::retain`]);
//! 3. the store collects every entry, tree and object that neither a root nor a cached artifact
//!    of a kept generation holds, and the kept sandbox checkouts ([`crate::store::gc`]);
//! 4. the download cache drops abandoned partial downloads and, with limits, files unused for
//!    too long and then the least recently used ([`downloads`]);
//! 5. the local mirrors of ssh push destinations drop what the far side already has
//!    ([`crate::ostree::ssh::trim_mirrors`]);
//! 6. the cache of OCI blobs keeps the layers that end at a tree the store still holds
//!    ([`crate::oci::cache`]; a dry run counts against the trees before step 3).
//!
//! A dry run decides the same things, changes nothing, and reports what would go. Each part
//! reports counts and bytes.

pub mod downloads;
pub mod rebuild;
pub mod usage;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::params;
use serde::Serialize;

use crate::graph::generations::root_name;
use crate::graph::retention::{self, Decision, Policy};
use crate::ostree::retain::RepoPruned;
use crate::store::digest::Digest;
use crate::store::gc::{GcReport, Live};
use crate::store::local::Store;
use crate::util::progress::Progress;

/// What to collect.
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    pub dry_run: bool,
    /// Retention from the command line, over the stored policies.
    pub policy: Option<Policy>,
    /// Apply retention to these images only (all when empty).
    pub images: Vec<String>,
    /// Trim the download cache to this many bytes.
    pub max_download_cache: Option<u64>,
    /// Drop downloads unused for longer than this (seconds).
    pub max_download_age: Option<u64>,
}

/// What a run removed (or would remove), per kind.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// Generations whose roots retention removed.
    pub generations: Vec<Decision>,
    /// Generations that stay.
    pub kept_generations: u64,
    /// Cached disk images and ISOs of kept generations that stay.
    pub kept_artifacts: u64,
    pub repos: Vec<RepoPruned>,
    pub store: GcReport,
    pub downloads: downloads::Trimmed,
    /// The local mirrors of ssh push destinations.
    pub mirrors: crate::ostree::ssh::MirrorsTrimmed,
    /// The cache of OCI blobs made for archives and registries.
    pub oci_blobs: crate::oci::cache::Trimmed,
}

/// The OSTree repository `strata deploy` commits to.
pub fn deploy_repo(store: &Store) -> PathBuf {
    store.root().join("ostree-repo")
}

/// Remember a repository strata wrote (`export --repo`), so that gc prunes it.
pub fn register_repo(store: &mut Store, path: &Path) -> anyhow::Result<()> {
    let path = fs_err::canonicalize(path)?;
    if path == fs_err::canonicalize(store.root())?.join("ostree-repo") {
        return Ok(());
    }
    let now = crate::graph::generations::now();
    let tx = store.db_mut().transaction()?;
    tx.sql().execute(
        "INSERT OR IGNORE INTO ostree_repos (path, registered) VALUES (?1, ?2)",
        params![path.to_string_lossy(), now],
    )?;
    tx.commit()
}

/// The repositories gc prunes: the deploy repository, and registered ones that still exist.
pub fn managed_repos(store: &Store) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = vec![];
    let deploy = deploy_repo(store);
    if deploy.join("config").is_file() {
        out.push(deploy);
    }
    let mut stmt = store.db().sql().prepare("SELECT path FROM ostree_repos ORDER BY path")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for p in rows {
        let p = PathBuf::from(p?);
        if p.join("config").is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

/// Run the collector.
pub fn collect(store: &mut Store, opts: &GcOptions, progress: &Progress) -> anyhow::Result<Report> {
    let now = crate::graph::generations::now();
    let decisions = retention::plan(store, opts.policy.as_ref(), &opts.images, now)?;
    let dropped: Vec<Decision> = decisions.iter().filter(|d| !d.keep).cloned().collect();
    let ignore: HashSet<String> = dropped.iter().map(|d| root_name(&d.image, d.generation)).collect();
    let kept: Vec<_> = retention::alive_generations(store)?
        .into_iter()
        .filter(|g| !ignore.contains(&root_name(&g.image, g.number)))
        .collect();
    let kept_entries: HashSet<Digest> = kept.iter().map(|g| g.entry).collect();
    if !opts.dry_run {
        retention::apply(store, &decisions)?;
    }

    // Cached artifacts made from a kept generation stay with it.
    let mut artifacts = vec![];
    for e in store.db().entries()?.into_iter().filter(|e| e.kind == "artifact") {
        if store.db().entry_refs(&e.key)?.iter().any(|r| kept_entries.contains(r)) {
            artifacts.push(e.key);
        }
    }

    let kept_hex: HashSet<String> = kept_entries.iter().map(|d| d.to_hex()).collect();
    let keep = |entry: &str| kept_hex.contains(entry);
    let mut repos = vec![];
    for repo in managed_repos(store)? {
        // An export into the repository trusts what the store recorded it holds: a repository
        // being exported into is left for a later gc (its commits counted).
        let key = crate::ostree::export::repo_key(&repo)?;
        let lock = crate::ostree::retain::lock_for_prune(store.root(), &key)?;
        let busy = lock.is_none() && !opts.dry_run;
        let r = crate::ostree::retain::prune_to(&repo, &keep, opts.dry_run || busy)
            .with_context(|| format!("while pruning `{}`", repo.display()))?;
        let r = crate::ostree::retain::RepoPruned { deferred: busy, ..r };
        if r.objects > 0 {
            // The store's record of which trees the repository holds is no longer true.
            crate::ostree::mapping::forget_repo(store, &crate::ostree::export::repo_key(&repo)?)?;
        }
        repos.push(r);
    }

    // Retention removed those roots already, except on a dry run, which only pretends to.
    let ignore = if opts.dry_run { ignore } else { HashSet::new() };
    let live = Live { extra: artifacts.clone(), ignore };
    let gc = crate::store::gc::gc(store, opts.dry_run, &live, progress)?;
    let downloads = downloads::trim(
        &store.root().join("cache/downloads"),
        opts.max_download_cache,
        opts.max_download_age,
        opts.dry_run,
    )?;
    let mirrors = crate::ostree::ssh::trim_mirrors(&store.root().join("cache"), opts.dry_run)?;
    let oci_blobs = crate::oci::cache::trim(store, opts.dry_run)?;
    Ok(Report {
        dry_run: opts.dry_run,
        generations: dropped,
        kept_generations: kept.len() as u64,
        kept_artifacts: artifacts.len() as u64,
        repos,
        store: gc,
        downloads,
        mirrors,
        oci_blobs,
    })
}

/// `strata store verify --repair`: [`crate::store::repair`], with two further sources of
/// content: the OSTree repositories strata wrote (they keep every content object they received),
/// then package steps made again from the packages in the download cache ([`rebuild`]).
pub fn repair(
    store: &mut Store,
    full: bool,
    progress: &Progress,
) -> anyhow::Result<crate::store::repair::RepairReport> {
    let repos: Vec<(PathBuf, ostree::Repo)> = managed_repos(store)?
        .into_iter()
        .filter_map(|p| {
            let r = ostree::Repo::new_for_path(&p);
            r.open(ostree::gio::Cancellable::NONE).ok().map(|_| (p, r))
        })
        .collect();
    // Object id -> OSTree content checksum, as the exports recorded it.
    let checksums: std::collections::HashMap<Digest, Digest> = if repos.is_empty() {
        Default::default()
    } else {
        let mut stmt = store.db().sql().prepare("SELECT object, checksum FROM ostree_files")?;
        let rows =
            stmt.query_map([], |r| Ok((crate::store::db::digest_col(r, 0)?, crate::store::db::digest_col(r, 1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let rebuilder = rebuild::Rebuilder::new(&store.root().join("cache/downloads"))?;
    let from_repos = |oid: &Digest| -> Option<(Vec<u8>, String)> {
        let checksum = checksums.get(oid)?.to_hex();
        for (path, repo) in &repos {
            let Ok((Some(input), _, _)) = repo.load_file(&checksum, ostree::gio::Cancellable::NONE) else { continue };
            let mut bytes = Vec::new();
            if std::io::Read::read_to_end(&mut ostree::gio::prelude::InputStreamExtManual::into_read(input), &mut bytes)
                .is_ok()
            {
                return Some((bytes, format!("OSTree repository {}", path.display())));
            }
        }
        None
    };
    let sources = |store: &Store, oid: &Digest, _content: &Digest| -> Option<(Vec<u8>, String)> {
        from_repos(oid).or_else(|| rebuilder.object(store, oid))
    };
    crate::store::repair::repair(store, full, &sources, progress)
}
