//! A package set from apt repositories: load the signed indexes, resolve the request, download
//! the chosen packages into the cache, and unpack each into its `package` entry.

use std::path::Path;

use anyhow::Context;

use super::repo::{fetch_releases, load_indexes, AptSource, ListFile, PackageRecord};
use super::solve::{solve, Request};
use super::unpack::{unpack, Limits, PackageReport};
use super::version::Version;
use crate::packages::fetch::Fetcher;
use crate::store::local::Store;
use crate::store::Backend;
use crate::util::progress::Progress;

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
///
/// Resolutions are cached under the store's `cache/resolutions`, keyed by the request and the
/// signed Release texts: while the repositories publish nothing new, the same request costs the
/// Release files and their signature checks, not parsing and solving the indexes again.
pub fn resolve(
    fetcher: &Fetcher,
    sources: &[AptSource],
    arch: &str,
    request: &Request,
    progress: &Progress,
) -> anyhow::Result<Resolved> {
    let _span = tracing::debug_span!("resolve").entered();
    let releases = fetch_releases(fetcher, sources)?;
    let mut h = blake3::Hasher::new();
    h.update(b"strata-resolution-v2\0");
    h.update(
        serde_json::to_string(&(arch, &request.install, request.required, &request.exclude, &request.locked))?
            .as_bytes(),
    );
    for r in &releases {
        h.update(r.source.to_string().as_bytes());
        h.update(&[0]);
        h.update(blake3::hash(r.text.as_bytes()).as_bytes());
    }
    let cache =
        fetcher.dir().parent().unwrap_or(fetcher.dir()).join("resolutions").join(h.finalize().to_hex().as_str());
    if let Some(cached) = load_cached(&cache) {
        let records: Vec<PackageRecord> =
            cached.chosen.into_iter().map(Chosen::into_record).collect::<anyhow::Result<_>>()?;
        let chosen = (0..records.len()).collect();
        return Ok(Resolved { records, chosen, lists: cached.lists, sources: sources.to_vec() });
    }
    let indexes = load_indexes(fetcher, &releases, arch, progress)?;
    let chosen = {
        let _span = tracing::debug_span!("solve", records = indexes.records.len()).entered();
        solve(&indexes.records, request)?
    };
    let resolved = Resolved { records: indexes.records, chosen, lists: indexes.lists, sources: sources.to_vec() };
    let entry =
        CachedResolution { chosen: resolved.chosen().map(Chosen::from).collect(), lists: resolved.lists.clone() };
    fs_err::create_dir_all(cache.parent().expect("resolutions dir"))?;
    let tmp = cache.with_extension("tmp");
    fs_err::write(&tmp, serde_json::to_vec(&entry)?)?;
    fs_err::rename(&tmp, &cache)?;
    Ok(resolved)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedResolution {
    chosen: Vec<Chosen>,
    lists: Vec<ListFile>,
}

/// What later steps need of a chosen package (relations were only needed to solve).
#[derive(serde::Serialize, serde::Deserialize)]
struct Chosen {
    name: String,
    version: String,
    architecture: String,
    multi_arch: Option<String>,
    priority: Option<String>,
    essential: bool,
    want: crate::packages::fetch::Want,
}

impl From<&PackageRecord> for Chosen {
    fn from(r: &PackageRecord) -> Chosen {
        Chosen {
            name: r.name.clone(),
            version: r.version.to_string(),
            architecture: r.architecture.clone(),
            multi_arch: r.multi_arch.clone(),
            priority: r.priority.clone(),
            essential: r.essential,
            want: r.want.clone(),
        }
    }
}

impl Chosen {
    fn into_record(self) -> anyhow::Result<PackageRecord> {
        Ok(PackageRecord {
            version: Version::parse(&self.version)?,
            name: self.name,
            architecture: self.architecture,
            multi_arch: self.multi_arch,
            priority: self.priority,
            essential: self.essential,
            depends: vec![],
            pre_depends: vec![],
            provides: vec![],
            conflicts: vec![],
            breaks: vec![],
            want: self.want,
        })
    }
}

/// A cached resolution, if present, readable and its index files still cached.
fn load_cached(path: &Path) -> Option<CachedResolution> {
    let text = fs_err::read(path).ok()?;
    let cached: CachedResolution = serde_json::from_slice(&text).ok()?;
    let indexes_present = cached.lists.iter().all(|l| match &l.content {
        super::repo::ListContent::Index { path, .. } => path.exists(),
        super::repo::ListContent::Bytes(_) => true,
    });
    indexes_present.then_some(cached)
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
        if store.entry(&super::unpack::package_key(&r.want.sha256))?.is_none() {
            missing.push(r.want.clone());
        }
    }
    fetcher.get_all(&missing, progress)?;
    let _span = tracing::debug_span!("unpack", packages = records.len(), missing = missing.len()).entered();
    crate::packages::unpack::unpack_in_parallel(store, &records, progress, |worker, r| {
        unpack_cached(worker, &fetcher.cached_path(&r.want.sha256), r, limits)
    })
}

fn unpack_cached(store: &mut Store, path: &Path, r: &PackageRecord, limits: &Limits) -> anyhow::Result<PackageReport> {
    // Unpacked before (a base's packages, say): the entry is the answer, the file is not needed.
    if let Some(report) = super::unpack::cached(store, &r.want.sha256)? {
        if report.package == r.name && report.version == r.version.to_string() {
            return Ok(report);
        }
    }
    let report =
        unpack(store, path, limits).with_context(|| format!("package {} {} ({})", r.name, r.version, r.want.url))?;
    if report.sha256 != r.want.sha256 {
        anyhow::bail!(
            "{}: the unpacked file's SHA-256 {} is not the index's {}",
            r.want.url,
            report.sha256,
            r.want.sha256
        );
    }
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
