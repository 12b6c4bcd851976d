//! A package set from rpm-md repositories: load the verified metadata, resolve the request,
//! download the chosen packages into the cache and unpack each into its `package` entry.

use anyhow::{bail, Context};

use super::header::{files, sense_flag, tag, Header};
use super::repo::Cap;
use super::repo::{load, FetchedFile, RpmRecord, RpmSource};
use super::rpmdb::Package;
use super::solve::{install_order, solve, Request};
use super::unpack::{package_key, unpack};
use super::version::Evr;
use crate::packages::fetch::Fetcher;
use crate::packages::{Limits, PackageReport};
use crate::store::local::Store;
use crate::store::Backend;
use crate::util::progress::Progress;

/// The resolved set, in install order (dependencies first), and each repository's
/// `repomd.xml` as fetched (URL and bytes), which a lock file records.
pub struct Resolved {
    pub records: Vec<RpmRecord>,
    pub order: Vec<usize>,
    pub repomd: Vec<FetchedFile>,
}

impl Resolved {
    pub fn chosen(&self) -> impl Iterator<Item = &RpmRecord> {
        self.order.iter().map(|&i| &self.records[i])
    }
}

/// A base image's installed package as the solver sees it, from its header: what it provides
/// (its name and version, its `Provides`, its files), already satisfied, never fetched.
pub fn installed_record(h: &Header) -> anyhow::Result<RpmRecord> {
    let names = h.strings(tag::PROVIDENAME)?;
    let flags = h.ints(tag::PROVIDEFLAGS)?;
    let versions = h.strings(tag::PROVIDEVERSION)?;
    let mut provides = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let constraint = match (flags.get(i).and_then(|f| sense_flag(*f)), versions.get(i).filter(|v| !v.is_empty())) {
            (Some(flag), Some(v)) => Some((flag, Evr::parse(v).map_err(|e| anyhow::anyhow!("provide {name}: {e}"))?)),
            _ => None,
        };
        provides.push(Cap { name, constraint });
    }
    Ok(RpmRecord {
        name: h.string(tag::NAME)?.unwrap_or_default(),
        arch: h.string(tag::ARCH)?.unwrap_or_default(),
        evr: h.evr()?,
        provides,
        requires: Vec::new(),
        conflicts: Vec::new(),
        obsoletes: Vec::new(),
        files: files(h, Limits::default().max_members)?.into_iter().map(|f| f.path).collect(),
        want: crate::packages::fetch::Want { url: String::new(), size: 0, sha256: String::new() },
        unsupported: None,
        installed: true,
    })
}

/// Load the metadata of `sources` and resolve `request` on top of the `installed` packages (a
/// base image's, from [`installed_record`]): those stay as they are, whether the repositories
/// still carry them or not, and only the packages they lack are returned, in install order. A
/// request that would replace an installed package is an error.
pub fn resolve(
    fetcher: &Fetcher,
    sources: &[RpmSource],
    arch: &str,
    request: &Request,
    installed: Vec<RpmRecord>,
    progress: &Progress,
) -> anyhow::Result<Resolved> {
    let _span = tracing::debug_span!("rpm resolve").entered();
    // Installed packages first: where a repository has the same package, the installed one wins.
    let mut records = installed;
    let mut request = request.clone();
    for r in &records {
        request.install.push(r.name.clone());
        request.locked.insert(r.name.clone(), r.evr.clone());
    }
    let (offered, repomd) = load(fetcher, sources, crate::packages::uname_arch(arch), progress)?;
    records.extend(offered);
    let chosen = solve(&records, &request)?;
    let mut new = Vec::new();
    for i in chosen {
        let r = &records[i];
        if r.installed {
            continue;
        }
        if let Some(old) = records.iter().find(|o| o.installed && o.name == r.name) {
            bail!(
                "the base has {} but the package set needs {}: adding packages cannot upgrade the base; build it again",
                old.nevra(),
                r.nevra()
            );
        }
        new.push(i);
    }
    let order = install_order(&records, &new);
    Ok(Resolved { records, order, repomd })
}

/// Download the chosen packages (those not unpacked yet) and unpack each into its entry.
pub fn fetch_and_unpack(
    store: &mut Store,
    fetcher: &Fetcher,
    resolved: &Resolved,
    limits: &Limits,
    progress: &Progress,
) -> anyhow::Result<Vec<PackageReport>> {
    let mut missing = Vec::new();
    for r in resolved.chosen() {
        if store.entry(&package_key(&r.want.sha256))?.is_none() {
            missing.push(r.want.clone());
        }
    }
    fetcher.get_all(&missing, progress)?;
    let records: Vec<&RpmRecord> = resolved.chosen().collect();
    crate::packages::unpack::unpack_in_parallel(store, &records, progress, |worker, r| {
        let report = unpack(worker, &fetcher.cached_path(&r.want.sha256), limits)
            .with_context(|| format!("package {} ({})", r.nevra(), r.want.url))?;
        let (name, version) = (&report.package, &report.version);
        if *name != r.name || *version != r.evr.to_string() {
            bail!("{}: the metadata says {}, the package file says {name}-{version}", r.want.url, r.nevra());
        }
        Ok(report)
    })
}

/// The packages for [`super::rootfs::build`]; their files are fetched again if the cache lost them.
pub fn rootfs_packages(
    fetcher: &Fetcher,
    resolved: &Resolved,
    reports: &[PackageReport],
    progress: &Progress,
) -> anyhow::Result<Vec<Package>> {
    let wants: Vec<_> = resolved.chosen().map(|r| r.want.clone()).collect();
    let files = fetcher.get_all(&wants, progress)?;
    Ok(resolved
        .chosen()
        .zip(reports)
        .zip(files)
        .map(|((r, rep), file)| Package { nevra: r.nevra(), key: rep.key, tree: rep.tree, file })
        .collect())
}
