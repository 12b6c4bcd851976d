//! `strata deploy` and `strata boot`: bootable disk images from OSTree commits, and proving
//! that they boot.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::image::BuildArgs;
use super::ostree::{commit, ref_arch, source};
use super::{output, Ctx};
use crate::boot::{self, BootOptions};
use crate::build;
use crate::deploy::{self, DeployOptions, Format};
use crate::lock::LockMode;
use crate::ostree::export::RepoMode;
use crate::ostree::layout::SpecialFiles;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// A raw disk image (sparse)
    Raw,
    /// A qcow2 disk image
    Qcow2,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The image: a description directory (built and exported first, all cached), a store
    /// entry (`images/NAME`), or an OSTree commit `ostree:REPO#REF`
    #[command(flatten)]
    build: BuildArgs,
    /// The artifact to make
    #[arg(long, value_enum)]
    format: FormatArg,
    /// Where to write it
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// The disk size, e.g. 8G or 4096M [default: what the image needs, plus room for updates]
    #[arg(long, value_name = "SIZE")]
    size: Option<String>,
    /// A kernel argument (repeatable), after the description's kernelcmdline
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,
    /// The OSTree stateroot name [default: the image name]
    #[arg(long = "os", value_name = "NAME")]
    osname: Option<String>,
}

#[derive(Args, Debug)]
pub struct BootArgs {
    /// The disk image (raw or .qcow2)
    image: PathBuf,
    /// Boot with UEFI firmware (OVMF) instead of BIOS
    #[arg(long)]
    uefi: bool,
    /// Seconds to wait for the login prompt (and for each command)
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    timeout: u64,
    /// Log in as USER:PASSWORD once the prompt appears
    #[arg(long, value_name = "USER:PASSWORD")]
    login: Option<String>,
    /// A shell command to run after logging in (repeatable; needs --login)
    #[arg(long = "run", value_name = "COMMAND")]
    commands: Vec<String>,
    /// Write the serial console to this file
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Memory of the virtual machine, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    memory: u32,
    /// The accelerator: KVM if it works (auto), or always kvm or tcg
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelArg,
    /// Keep what the machine writes to the image (default: changes are discarded)
    #[arg(long)]
    persist: bool,
    /// Attach another disk image, read-only (repeatable): /dev/vdb, /dev/vdc, …
    #[arg(long = "disk", value_name = "FILE")]
    disks: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

/// `8G`, `4096M`, `512K` or bytes.
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().with_context(|| format!("invalid size `{s}`: expected a number with K, M, G or T"))?;
    let mult = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        "T" | "TIB" => 1 << 40,
        _ => bail!("invalid size `{s}`: expected a number with K, M, G or T"),
    };
    n.checked_mul(mult).with_context(|| format!("size `{s}` is too large"))
}

pub fn deploy(ctx: &Ctx, args: DeployArgs) -> anyhow::Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("strata deploy writes files owned by many users into the image: run it as root");
    }
    let mut store = ctx.open(LockMode::Shared)?;
    let spec = args.build.desc.description.to_string_lossy().into_owned();
    let (repo, reference, commit_id, kargs_from_desc, osname, refs) = if let Some(rest) = spec.strip_prefix("ostree:") {
        let (repo, reference) = rest.split_once('#').with_context(|| format!("`{spec}`: expected ostree:REPO#REF"))?;
        let r = crate::ostree::export::open_repo(std::path::Path::new(repo), None)?;
        let commit_id =
            r.resolve_rev(reference, true)?.with_context(|| format!("`{repo}` has no ref `{reference}`"))?.to_string();
        let os = reference.split('/').next().unwrap_or("os").to_string();
        (PathBuf::from(repo), reference.to_string(), commit_id, vec![], os, vec![])
    } else {
        let src = source(ctx, &mut store, &args.build, None)?;
        let repo = store.root().join("ostree-repo");
        let reference = format!("{}/{}", src.image, ref_arch(&args.build.arch));
        let source_date = args.build.source_date_epoch().unwrap_or(build::DEFAULT_EPOCH);
        let (report, _) = commit(
            ctx,
            &mut store,
            &src,
            &repo,
            Some(RepoMode::Bare),
            &reference,
            SpecialFiles::Skip,
            false,
            source_date,
        )?;
        (repo, reference, report.commit, src.kernelcmdline.clone(), src.image.clone(), vec![src.entry.key])
    };
    let mut kargs = kargs_from_desc;
    kargs.extend(args.kargs.iter().cloned());
    let opts = DeployOptions {
        format: match args.format {
            FormatArg::Raw => Format::Raw,
            FormatArg::Qcow2 => Format::Qcow2,
        },
        size: args.size.as_deref().map(parse_size).transpose()?,
        kargs,
        osname: args.osname.clone().unwrap_or(osname),
    };
    let artifact = deploy::deploy(&mut store, &repo, &reference, &commit_id, &opts, &refs, &ctx.progress)?;
    let copied = deploy::write_output(&artifact, &args.output)?;
    if ctx.json {
        output::json(&serde_json::json!({
            "output": args.output, "format": opts.format.as_str(), "bytes": artifact.size,
            "commit": commit_id, "ref": reference, "os": opts.osname,
            "kernel_arguments": deploy::kernel_arguments(&opts.kargs),
            "artifact": artifact.entry.key, "cached": artifact.cached, "copied": copied,
            "layout": artifact.layout,
        }))?;
    } else {
        println!("{}", args.output.display());
        ctx.note(format!(
            "{} {} of {} ({}): {}{}",
            opts.format.as_str(),
            output::bytes(artifact.size),
            &commit_id[..12],
            reference,
            if artifact.cached { "cached" } else { "built" },
            if copied { "" } else { ", output already up to date" }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn boot(ctx: &Ctx, args: BootArgs) -> anyhow::Result<ExitCode> {
    let login = match &args.login {
        Some(l) => {
            let (u, p) = l.split_once(':').with_context(|| format!("--login `{l}`: expected USER:PASSWORD"))?;
            Some((u.to_string(), p.to_string()))
        }
        None if !args.commands.is_empty() => bail!("--run needs --login USER:PASSWORD"),
        None => None,
    };
    let opts = BootOptions {
        image: args.image.clone(),
        uefi: args.uefi,
        timeout: Duration::from_secs(args.timeout),
        login,
        commands: args.commands.clone(),
        log: args.log.clone(),
        memory_mib: args.memory,
        accel: match args.accel {
            AccelArg::Auto => boot::Accel::Auto,
            AccelArg::Kvm => boot::Accel::Kvm,
            AccelArg::Tcg => boot::Accel::Tcg,
        },
        persist: args.persist,
        disks: args.disks.clone(),
    };
    let bar = ctx.progress.spinner(&format!("booting {}", args.image.display()));
    let report = boot::boot(&opts)?;
    bar.finish_and_clear();
    if ctx.json {
        output::json(&report)?;
    } else {
        for c in &report.commands {
            println!("$ {}", c.command);
            print!("{}", c.output);
        }
        match (&report.failure, report.login_prompt_after) {
            (None, Some(t)) => ctx.note(format!(
                "{}: login prompt after {t:.0} s ({}, {}){}",
                args.image.display(),
                report.firmware,
                report.accelerator,
                if report.commands.is_empty() {
                    String::new()
                } else {
                    format!("; {} commands ran", report.commands.len())
                }
            )),
            (failure, _) => {
                eprintln!("{}", report.last_lines.join("\n"));
                eprintln!("error: {}: {}", args.image.display(), failure.as_deref().unwrap_or("boot failed"));
            }
        }
    }
    Ok(if report.success { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
