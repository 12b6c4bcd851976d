//! `strata deploy` and `strata boot`: bootable disk images and live ISOs from OSTree commits,
//! and proving that they boot.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::image::BuildArgs;
use super::{output, Ctx};
use crate::deploy::boot::{self, BootOptions};
use crate::deploy::options::Request;
use crate::deploy::{self, Format};
use crate::description::TargetKind;
use crate::graph;
use crate::pipeline::{self, DeployFrom};
use crate::store::lock::LockMode;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// A raw disk image (sparse)
    Raw,
    /// A qcow2 disk image
    Qcow2,
    /// A hybrid live ISO (BIOS and UEFI, CD or USB stick); the image needs dracut-live
    Iso,
    /// An OCI archive (`podman load`, `skopeo copy oci-archive:FILE …`), with the
    /// description's container configuration
    Oci,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The image: a description directory (built and exported first, all cached), a store
    /// entry (`images/NAME`), or an OSTree commit `ostree:REPO#REF`
    #[command(flatten)]
    build: BuildArgs,
    /// The artifact to make [default: the description's primary target]
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Where to write it
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// The disk size, e.g. 8G or 4096M [default: what the image needs, plus room for updates;
    /// not for ISOs]
    #[arg(long, value_name = "SIZE")]
    size: Option<String>,
    /// The root file system of a disk image: ext4 or xfs [default: the disk target's
    /// filesystem, else ext4]
    #[arg(long, value_name = "FS")]
    filesystem: Option<String>,
    /// A kernel argument (repeatable), after the description's kernelcmdline
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,
    /// The OS name: a disk's OSTree stateroot; an ISO's menu title and default volume id
    /// [default: the image name]
    #[arg(long = "os", value_name = "NAME")]
    osname: Option<String>,
}

#[derive(Args, Debug)]
pub struct BootArgs {
    /// The disk image (raw or .qcow2) or ISO
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

impl DeployArgs {
    /// The artifact choices this command line makes.
    fn request(&self) -> Request {
        Request {
            // An OCI archive is not a deploy format: `deploy` hands it to the OCI export first.
            format: self.format.and_then(|f| match f {
                FormatArg::Raw => Some(Format::Raw),
                FormatArg::Qcow2 => Some(Format::Qcow2),
                FormatArg::Iso => Some(Format::Iso),
                FormatArg::Oci => None,
            }),
            size: self.size.clone(),
            filesystem: self.filesystem.clone(),
            kargs: self.kargs.clone(),
            osname: self.osname.clone(),
        }
    }
}

/// `strata deploy` of a container target: the image as an OCI archive at `--output`.
fn deploy_container(ctx: &Ctx, args: &DeployArgs, from: &DeployFrom) -> anyhow::Result<ExitCode> {
    let DeployFrom::Image(input) = from else {
        bail!("an OSTree commit deploys to disks and ISOs; an OCI image is made from a description or a store image")
    };
    for (given, flag) in [
        (args.size.is_some(), "--size"),
        (args.filesystem.is_some(), "--filesystem"),
        (!args.kargs.is_empty(), "--karg"),
        (args.osname.is_some(), "--os"),
    ] {
        if given {
            bail!("{flag} is for disk images and ISOs, not for an OCI archive");
        }
    }
    let mut store = ctx.open(LockMode::Shared)?;
    let note = |m: String| ctx.note(m);
    let src = pipeline::source(&mut store, input, &args.build.options()?, None, &ctx.progress, &note)?;
    let output = super::oci::Output::Archive(args.output.clone(), None);
    super::oci::write(
        ctx,
        &mut store,
        &src,
        output,
        crate::oci::image::Compression::Gzip,
        &args.build,
        super::oci::Make::Layers,
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn deploy(ctx: &Ctx, args: DeployArgs) -> anyhow::Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("strata deploy writes files owned by many users into the image: run it as root");
    }
    let from = DeployFrom::open(&args.build.desc.description, &args.build.desc.profiles)?;
    let container = match (args.format, &from) {
        (Some(FormatArg::Oci), _) => true,
        (Some(_), _) | (None, DeployFrom::Ostree { .. }) => false,
        (None, DeployFrom::Image(input)) => match input.targets() {
            Some((_, targets)) => crate::deploy::options::primary(targets)? == Some(TargetKind::Container),
            None => false,
        },
    };
    if container {
        return deploy_container(ctx, &args, &from);
    }
    let mut store = ctx.open(LockMode::Shared)?;
    let source_date = args.build.source_date_epoch().unwrap_or(graph::DEFAULT_EPOCH);
    let note = |m: String| ctx.note(m);
    let d = pipeline::deploy(
        &mut store,
        &from,
        &args.request(),
        &args.build.options()?,
        source_date,
        &ctx.progress,
        &note,
    )?;
    let (artifact, opts, commit_id, reference) = (d.artifact, d.options, d.commit, d.reference);
    let copied = deploy::write_output(&artifact, &args.output)?;
    if ctx.json {
        output::json(&serde_json::json!({
            "output": args.output, "format": opts.format.as_str(), "bytes": artifact.size,
            "commit": commit_id, "ref": reference, "os": opts.osname,
            "filesystem": (opts.format != Format::Iso).then_some(opts.filesystem),
            "volid": (opts.format == Format::Iso).then_some(&opts.volid),
            "kernel_arguments": deploy::kernel_arguments(&opts),
            "artifact": artifact.entry.key, "cached": artifact.cached, "copied": copied,
            "built": artifact.built,
        }))?;
    } else {
        println!("{}", args.output.display());
        ctx.note(format!(
            "{} {} of {} ({}): {}{}",
            opts.format.as_str(),
            output::bytes(artifact.size),
            short(&commit_id),
            reference,
            if artifact.cached { "cached" } else { "built" },
            if copied { "" } else { ", output already up to date" }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The first 12 characters of a checksum, for messages.
fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::DeployOptions;
    use crate::description::TargetKind;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        deploy: DeployArgs,
    }

    fn opts(cli: &str, targets: &[(TargetKind, &[(&str, &str)])]) -> anyhow::Result<DeployOptions> {
        let argv = format!("strata desc --output out {cli}");
        let args = Cli::try_parse_from(argv.split_whitespace()).unwrap().deploy;
        let targets = targets
            .iter()
            .map(|(k, attrs)| (*k, attrs.iter().map(|(a, v)| (a.to_string(), v.to_string())).collect()))
            .collect();
        crate::deploy::options::resolve(&args.request(), &targets, "my-os".into())
    }

    #[test]
    fn targets_fill_in_what_the_command_line_leaves_open() {
        use TargetKind::{Disk, Iso};
        let both: &[(TargetKind, &[(&str, &str)])] = &[
            (Disk, &[("format", "qcow2"), ("primary", "true"), ("kernelcmdline", "console=ttyS0"), ("disksize", "8G")]),
            (Iso, &[("volid", "MY_LIVE")]),
        ];
        let o = opts("", both).unwrap();
        assert_eq!((o.format, o.size, o.filesystem), (Format::Qcow2, Some(8 << 30), deploy::Filesystem::Ext4));
        assert_eq!(o.kargs, ["console=ttyS0"]);
        let o = opts("--format iso --karg quiet", both).unwrap();
        assert_eq!((o.format, o.size, o.volid.as_str()), (Format::Iso, None, "MY_LIVE"));
        assert_eq!(o.kargs, ["console=ttyS0", "quiet"], "an ISO falls back to the disk's kernelcmdline");
        // The only target decides; a disk without a format is raw, as in KIWI.
        assert_eq!(opts("", &[(Disk, &[])]).unwrap().format, Format::Raw);
        let o = opts("", &[(Iso, &[])]).unwrap();
        assert_eq!((o.format, o.volid.as_str()), (Format::Iso, "MY_OS"));
        // Each kind reads only its own target: a disk file system strata cannot make does not
        // stop an ISO, and a bad volume id does not stop a disk.
        let odd: &[(TargetKind, &[(&str, &str)])] =
            &[(Disk, &[("filesystem", "btrfs")]), (Iso, &[("volid", "my live"), ("primary", "true")])];
        assert!(opts("--format raw --filesystem xfs", odd).is_ok());
        let err = opts("--format raw", odd).unwrap_err();
        assert!(format!("{err:#}").contains("filesystem: root file system `btrfs` is not supported"), "{err:#}");
        let err = opts("", odd).unwrap_err();
        assert!(format!("{err:#}").contains("volid: invalid ISO volume id `my live`"), "{err:#}");

        for (cli, targets, expected) in [
            ("", &[][..], "give --format"),
            ("", &[(Disk, &[][..]), (Iso, &[][..])][..], "disk, iso targets and none is primary"),
            ("--format iso --size 4G", &[][..], "--size is for disk images"),
            ("--format iso --filesystem xfs", &[][..], "--filesystem is for disk images"),
            ("--format raw --karg a$b", &[][..], "kernel argument `a$b`"),
            ("", &[(Disk, &[("format", "vmdk")][..])][..], "format `vmdk` is not supported"),
            ("--format raw", &[(Disk, &[("bootloader", "systemd-boot")][..])][..], "bootloader `systemd-boot`"),
        ] {
            let err = format!("{:#}", opts(cli, targets).unwrap_err());
            assert!(err.contains(expected), "{cli}: {err}");
        }
    }
}
