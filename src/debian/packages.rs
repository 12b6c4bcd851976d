//! A package set from apt repositories: load the signed indexes, resolve the request, download
//! the chosen packages into the cache, and unpack each into its `package` entry.

use std::path::Path;

use anyhow::Context;

use super::repo::{load_indexes, AptSource, PackageRecord};
use super::solve::{solve, Request};
use super::unpack::{unpack, Limits, PackageReport};
use crate::fetch::Fetcher;
use crate::progress::Progress;
use crate::store::Store;

/// The resolved set: every record the indexes offered, the chosen ones (sorted by name), and
/// the files apt inside the image needs to know the same packages.
pub struct Resolved {
    pub records: Vec<PackageRecord>,
    pub chosen: Vec<usize>,
    pub lists: Vec<super::repo::ListFile>,
    pub sources: Vec<AptSource>,
}

impl Resolved {
    pub fn chosen(&self) -> impl Iterator<Item = &PackageRecord> {
        self.chosen.iter().map(|&i| &self.records[i])
    }
}

pub fn fetcher(store: &Store) -> anyhow::Result<Fetcher> {
    Fetcher::new(&store.root().join("cache/downloads"))
}

/// Load the indexes of `sources` and resolve `request`.
pub fn resolve(
    fetcher: &Fetcher,
    sources: &[AptSource],
    arch: &str,
    request: &Request,
    progress: &Progress,
) -> anyhow::Result<Resolved> {
    let indexes = load_indexes(fetcher, sources, arch, progress)?;
    let chosen = solve(&indexes.records, request)?;
    Ok(Resolved { records: indexes.records, chosen, lists: indexes.lists, sources: sources.to_vec() })
}

/// Download the chosen packages and unpack each into its entry (cached ones are hits).
pub fn fetch_and_unpack(
    store: &mut Store,
    fetcher: &Fetcher,
    resolved: &Resolved,
    limits: &Limits,
    progress: &Progress,
) -> anyhow::Result<Vec<PackageReport>> {
    let records: Vec<&PackageRecord> = resolved.chosen().collect();
    // Packages already unpacked need no download at all.
    let mut missing = Vec::new();
    for r in &records {
        if store.db().entry(&super::unpack::package_key(&r.want.sha256))?.is_none() {
            missing.push(r.want.clone());
        }
    }
    fetcher.get_all(&missing, progress)?;
    let bar = progress.items(records.len() as u64, "unpacking");
    let mut out = Vec::new();
    for r in records {
        let path = fetcher.cached_path(&r.want.sha256);
        let report = unpack_cached(store, &path, r, limits)?;
        out.push(report);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

fn unpack_cached(store: &mut Store, path: &Path, r: &PackageRecord, limits: &Limits) -> anyhow::Result<PackageReport> {
    let report =
        unpack(store, path, limits).with_context(|| format!("package {} {} ({})", r.name, r.version, r.want.url))?;
    if report.package != r.name || report.version != r.version.to_string() {
        anyhow::bail!(
            "{}: the index says {} {}, the package file says {} {}",
            r.want.url,
            r.name,
            r.version,
            report.package,
            report.version
        );
    }
    Ok(report)
}
