//! `strata package …`: package files as store entries.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{output, Ctx};
use crate::store::lock::LockMode;
use crate::store::Backend;

#[derive(Subcommand, Debug)]
pub enum PackageCommand {
    /// Resolve packages against apt repositories and print the chosen set (nothing is installed)
    ///
    /// Release files are verified with gpgv against the keyrings the sources name, indexes by
    /// their checksums. Dependencies, alternatives, virtual packages, Conflicts and Breaks are
    /// solved with a SAT solver; an impossible request prints the chain of reasons.
    #[command(
        after_help = "Examples:\n  strata package resolve --host-sources --required systemd\n  strata package resolve --repo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://MIRROR/debian bookworm main' nginx --json"
    )]
    Resolve(RepoArgs),
    /// Build a Debian root tree from packages, as cached steps (like debootstrap)
    ///
    /// Resolves and fetches the packages, merges their trees with the dpkg database (file
    /// conflicts are errors), runs the maintainer scripts in a sandbox (namespaces, overlayfs, no
    /// network) and records the result as a `rootfs` entry. Every step is cached: the same
    /// package set again is all hits.
    #[command(
        after_help = "Examples:\n  strata package bootstrap --host-sources --required apt --exclude usrmerge --root tags/bookworm\n  strata store checkout tags/bookworm /srv/rootfs --link copy"
    )]
    Bootstrap(BootstrapArgs),
    /// Resolve, download (in parallel, resumable, verified) and unpack packages into entries
    #[command(
        after_help = "Examples:\n  strata package fetch --host-sources --required\n  strata package fetch --host-sources --exclude exim4-base mailutils"
    )]
    Fetch(RepoArgs),
    /// Unpack Debian (.deb) or RPM (.rpm) packages into package entries, keyed by their SHA-256
    ///
    /// Each package is read once, straight into the store: files the store already has are not
    /// written again, and a package unpacked before is a cache hit that reads nothing but its
    /// checksum. The entry's tree holds `data/` (the files) and `control/` (a .deb's control
    /// archive) or `rpm/header` (an .rpm's header: scriptlets, owner names).
    /// Package contents are untrusted: paths that leave the package root, go through a symlink,
    /// or repeat are refused with the member's name.
    #[command(
        after_help = "Examples:\n  strata package unpack ./hello_2.10-3_amd64.deb\n  strata package unpack ./hello-2.12-1.x86_64.rpm\n  strata package unpack /var/cache/apt/archives/*.deb --json"
    )]
    Unpack {
        /// The package files
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Refuse a package whose files add up to more than this many bytes (decompression bombs)
        #[arg(long, value_name = "BYTES", default_value_t = crate::packages::deb::unpack::Limits::default().max_bytes)]
        max_bytes: u64,
    },
}

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Keep /bin, /sbin and /lib as real directories instead of links into /usr
    #[arg(long)]
    no_merged_usr: bool,
    /// Add the packages to this Debian root tree (an entry or root made by bootstrap) instead of
    /// building from scratch: only the missing packages are merged and configured
    #[arg(long, value_name = "ID")]
    base: Option<String>,
    /// Create or move this root to the root-tree entry
    #[arg(long)]
    root: Option<String>,
    /// Seconds the maintainer scripts may run before they are killed
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    script_timeout: u64,
    /// The most the maintainer scripts may add to the store's file system (and their largest
    /// file), e.g. 500M, 32G
    #[arg(long, value_name = "SIZE", value_parser = crate::util::text::parse_size, default_value = "32G")]
    script_write_limit: u64,
}

#[derive(Args, Debug)]
pub struct RepoArgs {
    /// An apt source: `deb [signed-by=KEYRING] URI SUITE COMPONENT...` (flat: `deb [...] URI ./`)
    #[arg(long = "repo", value_name = "LINE")]
    repos: Vec<String>,
    /// Also use the build host's configured apt sources and their keyrings
    #[arg(long)]
    host_sources: bool,
    /// The architecture to install (`all` packages are included)
    #[arg(long, default_value = "amd64")]
    arch: String,
    /// Also install every package with Priority: required or Essential: yes (a Debian base)
    #[arg(long)]
    required: bool,
    /// Never install this package (repeatable)
    #[arg(long, value_name = "PACKAGE")]
    exclude: Vec<String>,
    /// Packages to install
    packages: Vec<String>,
}

impl RepoArgs {
    fn sources(&self) -> anyhow::Result<Vec<crate::packages::deb::repo::AptSource>> {
        let mut out = Vec::new();
        if self.host_sources {
            out.extend(crate::packages::deb::repo::host_sources()?);
        }
        for line in &self.repos {
            out.push(crate::packages::deb::repo::parse_source_line(line)?);
        }
        if out.is_empty() {
            anyhow::bail!("no repositories: pass --repo LINE or --host-sources");
        }
        Ok(out)
    }

    fn request(&self) -> crate::packages::deb::solve::Request {
        crate::packages::deb::solve::Request {
            install: self.packages.clone(),
            required: self.required,
            exclude: self.exclude.clone(),
            locked: Default::default(),
        }
    }
}

pub fn run(ctx: &Ctx, cmd: PackageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PackageCommand::Resolve(args) => resolve(ctx, args, false),
        PackageCommand::Fetch(args) => resolve(ctx, args, true),
        PackageCommand::Bootstrap(args) => bootstrap(ctx, args),
        PackageCommand::Unpack { files, max_bytes } => unpack(ctx, files, max_bytes),
    }
}

fn resolve(ctx: &Ctx, args: RepoArgs, fetch: bool) -> anyhow::Result<ExitCode> {
    use crate::packages::deb::packages;
    if args.packages.is_empty() && !args.required {
        anyhow::bail!("nothing to install: name packages or pass --required");
    }
    let sources = args.sources()?;
    let mut store = ctx.open(LockMode::Shared)?;
    let fetcher = packages::fetcher(&store)?;
    let resolved = packages::resolve(&fetcher, &sources, &args.arch, &args.request(), &ctx.progress)?;
    if !fetch {
        if ctx.json {
            let v: Vec<_> = resolved
                .chosen()
                .map(|r| serde_json::json!({"package": r.name, "version": r.version.to_string(), "architecture": r.architecture, "url": r.want.url, "size": r.want.size, "sha256": r.want.sha256}))
                .collect();
            output::json(&v)?;
        } else {
            for r in resolved.chosen() {
                println!("{} {} {}", r.name, r.version, r.architecture);
            }
            let size: u64 = resolved.chosen().map(|r| r.want.size).sum();
            ctx.note(format!("{} packages, {} to download at most", resolved.chosen.len(), output::bytes(size)));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let limits = crate::packages::deb::unpack::Limits::default();
    let reports = packages::fetch_and_unpack(&mut store, &fetcher, &resolved, &limits, &ctx.progress)?;
    if ctx.json {
        output::json(&reports)?;
    } else {
        for r in &reports {
            println!("{} {} {}", r.key, r.package, r.version);
        }
        let cached = reports.iter().filter(|r| r.cached).count();
        let new: u64 = reports.iter().map(|r| r.new_objects).sum();
        ctx.note(format!(
            "{} packages: {} unpacked, {cached} cached; {new} new objects",
            reports.len(),
            reports.len() - cached
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn bootstrap(ctx: &Ctx, args: BootstrapArgs) -> anyhow::Result<ExitCode> {
    use crate::packages::deb::{bootstrap, packages};
    if let Some(root) = &args.root {
        crate::store::check_root_name(root)?;
    }
    let sources = args.repo.sources()?;
    let mut store = ctx.open(LockMode::Shared)?;
    let base = match &args.base {
        None => None,
        Some(id) => match store.resolve(id)? {
            crate::store::local::Target::Entry(e) if e.kind == "rootfs" => Some(e),
            _ => anyhow::bail!("--base {id}: not a root tree made by `strata package bootstrap`"),
        },
    };
    let mut request = args.repo.request();
    if let Some(b) = &base {
        // Keep every package of the base, at its version.
        for (name, version) in bootstrap::installed(&store, b)? {
            request.install.push(name.clone());
            request.locked.insert(name, version);
        }
    }
    let fetcher = packages::fetcher(&store)?;
    let resolved = packages::resolve(&fetcher, &sources, &args.repo.arch, &request, &ctx.progress)?;
    let limits = crate::packages::deb::unpack::Limits::default();
    let reports = packages::fetch_and_unpack(&mut store, &fetcher, &resolved, &limits, &ctx.progress)?;
    let pairs: Vec<_> = resolved.chosen().cloned().zip(reports).collect();
    let opts = bootstrap::Options {
        merged_usr: !args.no_merged_usr,
        script_limits: crate::sandbox::Limits {
            timeout: std::time::Duration::from_secs(args.script_timeout),
            write_bytes: args.script_write_limit,
            ..Default::default()
        },
    };
    let report = bootstrap::bootstrap_on(
        &mut store,
        base.as_ref(),
        &pairs,
        (&resolved.sources, &resolved.lists),
        &opts,
        &ctx.progress,
    )?;
    if let Some(root) = &args.root {
        store.set_root(root, &report.rootfs.key)?;
    }
    if ctx.json {
        output::json(&serde_json::json!({
            "packages": pairs.len(),
            "packages_cached": pairs.iter().filter(|(_, r)| r.cached).count(),
            "steps": report.steps,
            "rootfs": report.rootfs,
        }))?;
    } else {
        println!("{}", report.rootfs.key);
        for s in report.steps.iter().chain([&report.rootfs]) {
            ctx.note(format!("{:<7} {} {}", s.kind, s.key.short(), if s.cached { "cached" } else { "built" }));
        }
        let cached = pairs.iter().filter(|(_, r)| r.cached).count();
        ctx.note(format!("{} packages ({cached} cached); rootfs tree {}", pairs.len(), report.rootfs.tree.short()));
    }
    Ok(ExitCode::SUCCESS)
}

fn unpack(ctx: &Ctx, files: Vec<PathBuf>, max_bytes: u64) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Shared)?;
    let limits = crate::packages::deb::unpack::Limits { max_bytes, ..Default::default() };
    let bar = ctx.progress.items(files.len() as u64, "unpacking");
    let mut reports = Vec::new();
    for file in &files {
        let r = crate::packages::unpack::unpack_any(&mut store, file, &limits)?;
        bar.inc(1);
        if !ctx.json {
            bar.suspend(|| {
                println!("{}", r.key);
                ctx.note(format!(
                    "{} {} {} ({}): tree {}, {} files ({}), {} new objects",
                    if r.cached { "cached  " } else { "unpacked" },
                    r.package,
                    r.version,
                    r.architecture,
                    r.tree.short(),
                    r.files,
                    output::bytes(r.bytes),
                    r.new_objects
                ));
            });
        }
        reports.push(r);
    }
    bar.finish_and_clear();
    if ctx.json {
        output::json(&reports)?;
    }
    Ok(ExitCode::SUCCESS)
}
