//! A package set from rpm-md repositories: load the verified metadata, resolve the request,
//! download the chosen packages into the cache and unpack each into its `package` entry.

use anyhow::{bail, Context};

use super::repo::{load, RpmRecord, RpmSource};
use super::rootfs::Package;
use super::solve::{install_order, solve, Request};
use super::unpack::{package_key, unpack};
use super::version::Evr;
use crate::fetch::Fetcher;
use crate::package::{Limits, PackageReport};
use crate::progress::Progress;
use crate::store::Store;

/// The resolved set, in install order (dependencies first).
pub struct Resolved {
    pub records: Vec<RpmRecord>,
    pub order: Vec<usize>,
}

impl Resolved {
    pub fn chosen(&self) -> impl Iterator<Item = &RpmRecord> {
        self.order.iter().map(|&i| &self.records[i])
    }
}

/// RPM's name for a Debian architecture name (`amd64` → `x86_64`).
pub fn rpm_arch(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "i386" => "i686",
        "ppc64el" => "ppc64le",
        other => other,
    }
}

/// Load the metadata of `sources` and resolve `request` on top of the `installed` packages (name
/// and version, a base image's): those stay as they are, and only the packages they lack are
/// returned, in install order. A request that would change an installed package is an error.
pub fn resolve(
    fetcher: &Fetcher,
    sources: &[RpmSource],
    arch: &str,
    request: &Request,
    installed: &[(String, Evr)],
    progress: &Progress,
) -> anyhow::Result<Resolved> {
    let _span = tracing::debug_span!("rpm resolve").entered();
    let records = load(fetcher, sources, rpm_arch(arch), progress)?;
    let mut request = request.clone();
    for (name, evr) in installed {
        // A base package the repositories no longer carry is kept as it is, unsolved.
        if records.iter().any(|r| r.name == *name) {
            request.install.push(name.clone());
            request.locked.insert(name.clone(), evr.clone());
        }
    }
    let chosen = solve(&records, &request)?;
    let mut new = Vec::new();
    for i in chosen {
        let r = &records[i];
        match installed.iter().find(|(n, _)| *n == r.name) {
            Some((_, evr)) if *evr == r.evr => {}
            Some((_, evr)) => bail!(
                "the base has {}-{evr} but the package set needs {}: adding packages cannot upgrade the base; build it again",
                r.name,
                r.nevra()
            ),
            None => new.push(i),
        }
    }
    let order = install_order(&records, &new);
    Ok(Resolved { records, order })
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
        if store.db().entry(&package_key(&r.want.sha256))?.is_none() {
            missing.push(r.want.clone());
        }
    }
    fetcher.get_all(&missing, progress)?;
    let bar = progress.items(resolved.order.len() as u64, "unpacking");
    let mut out = Vec::new();
    for r in resolved.chosen() {
        let report = unpack(store, &fetcher.cached_path(&r.want.sha256), limits)
            .with_context(|| format!("package {} ({})", r.nevra(), r.want.url))?;
        let (name, version) = (&report.package, &report.version);
        if *name != r.name || Some(version.as_str()) != Some(r.evr.to_string().as_str()) {
            bail!("{}: the metadata says {}, the package file says {name}-{version}", r.want.url, r.nevra());
        }
        bar.inc(1);
        out.push(report);
    }
    bar.finish_and_clear();
    Ok(out)
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
