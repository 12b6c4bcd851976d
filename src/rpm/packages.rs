//! A package set from rpm-md repositories: load the verified metadata, resolve the request,
//! download the chosen packages into the cache and unpack each into its `package` entry.

use anyhow::{bail, Context};

use super::repo::{load, RpmRecord, RpmSource};
use super::rootfs::Package;
use super::solve::{install_order, solve, Request};
use super::unpack::{package_key, unpack};
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

/// Load the metadata of `sources` and resolve `request`.
pub fn resolve(
    fetcher: &Fetcher,
    sources: &[RpmSource],
    arch: &str,
    request: &Request,
    progress: &Progress,
) -> anyhow::Result<Resolved> {
    let _span = tracing::debug_span!("rpm resolve").entered();
    let records = load(fetcher, sources, rpm_arch(arch), progress)?;
    let chosen = solve(&records, request)?;
    let order = install_order(&records, &chosen);
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
