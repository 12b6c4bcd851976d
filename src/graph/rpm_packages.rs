//! The `packages` step of an image built from rpm-md repositories: resolve, unpack, then the
//! merge, scriptlets and rootfs steps of [`crate::packages::rpm::rootfs`], each a cached entry.

use anyhow::Context;

use super::{input, Cur, Input, Walker};
use crate::description::{Chain, Loaded};
use crate::packages::deb::repo::AptSource;
use crate::packages::lock::{Asked, Family, LockedImage};
use crate::packages::rpm::repo::RpmSource;
use crate::packages::rpm::{packages, rootfs, rpmdb, solve::Request, unpack::package_key};
use crate::store::db::EntryRow;

/// The repositories of one image: one kind only.
pub(super) enum Sources {
    Apt(Vec<AptSource>),
    Rpm(Vec<RpmSource>),
}

/// A source as an `rpm-md …` line of `--add-repo` (for lock files).
fn rpm_line(s: &RpmSource) -> String {
    if s.keys.is_empty() {
        format!("rpm-md gpgcheck=false {}", s.uri)
    } else {
        let keys: Vec<String> = s.keys.iter().map(|k| k.display().to_string()).collect();
        format!("rpm-md signed-by={} {}", keys.join(","), s.uri)
    }
}

/// `[signed-by=KEY[,KEY…]|gpgcheck=false] URI`, the rest of an `rpm-md …` line of `--add-repo`.
pub(super) fn rpm_source_line(rest: &str) -> anyhow::Result<RpmSource> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let bad =
        || anyhow::anyhow!("`rpm-md {rest}`: expected `rpm-md signed-by=/key.asc URI` or `rpm-md gpgcheck=false URI`");
    match words[..] {
        [opt, uri] => {
            let keys = match opt.split_once('=') {
                Some(("signed-by", keys)) => keys.split(',').map(Into::into).collect(),
                Some(("gpgcheck", "false")) => Vec::new(),
                _ => return Err(bad()),
            };
            Ok(RpmSource { uri: uri.to_string(), keys })
        }
        _ => Err(bad()),
    }
}

impl Walker<'_> {
    pub(super) fn rpm_packages(
        &mut self,
        chain: &Chain,
        i: usize,
        layer: &Loaded,
        base: Option<EntryRow>,
        sources: &[RpmSource],
    ) -> anyhow::Result<Cur> {
        let d = &layer.description;
        let image = d.name.clone();
        let file = layer.source.file.display();
        // On a base: its installed packages, from its rpm database.
        let base = match base {
            None => None,
            Some(entry) => {
                let headers = rpmdb::installed(self.store, &entry.tree)?.with_context(|| {
                    format!(
                        "{file}: the base has no rpm database ({} or /usr/lib/sysimage/rpm): rpm-md packages need an RPM base",
                        crate::packages::rpm::rpmdb::DBPATH
                    )
                })?;
                Some(rootfs::Base { entry, headers })
            }
        };
        let installed = match &base {
            Some(b) => b
                .headers
                .iter()
                .map(|h| {
                    packages::installed_record(h).with_context(|| format!("the base's rpm database: {}", h.nevra()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let request = Request {
            install: d.packages.bootstrap.iter().chain(&d.packages.install).cloned().collect(),
            exclude: chain.layers[..=i].iter().flat_map(|l| l.description.packages.exclude.clone()).collect(),
            locked: Default::default(),
        };
        let fetcher = crate::packages::deb::packages::fetcher(self.store)?;
        let asked = Asked::new(sources.iter().map(rpm_line).collect(), &request.install, &request.exclude);
        let resolved = match &self.opts.locked {
            Some(lock) => {
                let locked =
                    lock.section(&image, Family::RpmMd, &self.opts.arch, &asked).with_context(|| format!("{file}"))?;
                locked
                    .rpm_resolved(&fetcher, sources, installed, self.progress)
                    .with_context(|| format!("{file}: locked packages"))?
            }
            None => packages::resolve(&fetcher, sources, &self.opts.arch, &request, installed, self.progress)
                .with_context(|| format!("{file}: packages"))?,
        };
        if self.mode == super::Mode::Build {
            self.locks.push(LockedImage::of_rpm(&image, &self.opts.arch, asked, &resolved, &fetcher)?);
        }
        let keys: Vec<_> = resolved.chosen().map(|r| package_key(&r.want.sha256)).collect();
        let step_keys = rootfs::keys(base.as_ref().map(|b| &b.entry.tree), &keys);
        let mut inputs: Vec<Input> = sources.iter().map(|s| input("repository", format!("rpm-md {}", s.uri))).collect();
        inputs.extend(resolved.chosen().map(|r| input(format!("package {}", r.name), format!("{}.{}", r.evr, r.arch))));
        let steps = self.package_steps(&image, "rpm", inputs, &keys, step_keys.steps())?;
        if let Some(cur) = self.known_package_steps(&steps)? {
            return Ok(cur);
        }
        let limits = crate::packages::Limits::default();
        let reports = packages::fetch_and_unpack(self.store, &fetcher, &resolved, &limits, self.progress)?;
        let pkgs = packages::rootfs_packages(&fetcher, &resolved, &reports, self.progress)?;
        let done = rootfs::build(self.store, base.as_ref(), &pkgs, &self.opts.script_limits, self.progress)?;
        self.built_package_steps(steps, done.iter().map(|s| (s.tree, s.cached)))
    }
}
