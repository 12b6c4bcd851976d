//! What an artifact is made with: the command line's choices first, then the description's
//! target of that kind (KIWI's `<type image="oem">` / `[target.disk]`, `<type image="iso">` /
//! `[target.iso]`). Each artifact kind reads only its own target's attributes, and every
//! option is checked before anything is built.

use std::collections::BTreeMap;

use anyhow::{bail, Context};

use crate::deploy::{DeployOptions, Filesystem, Format};
use crate::description::TargetKind;

/// The choices a command gives; `None` leaves them to the description's target.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub format: Option<Format>,
    /// A size as written: `8G`, `4096M`, bytes.
    pub size: Option<String>,
    pub filesystem: Option<String>,
    /// Kernel arguments, after the target's kernelcmdline.
    pub kargs: Vec<String>,
    pub osname: Option<String>,
}

/// The target made when none is named: the only one, or the one marked primary; `None` when
/// the description has no target.
pub fn primary(targets: &BTreeMap<TargetKind, BTreeMap<String, String>>) -> anyhow::Result<Option<TargetKind>> {
    match targets.keys().copied().collect::<Vec<_>>().as_slice() {
        [] => Ok(None),
        [only] => Ok(Some(*only)),
        several => several
            .iter()
            .copied()
            .find(|k| targets[k].get("primary").map(String::as_str) == Some("true"))
            .map(Some)
            .with_context(|| {
                format!(
                    "the description has {} targets and none is primary: give --format",
                    several.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                )
            }),
    }
}

/// The deploy options: the command line first, then the description's target of that kind
/// (`[target.disk]`/`<type image="oem">`, `[target.iso]`/`<type image="iso">`). Without
/// `--format`, the primary target (or the only one) decides.
pub fn resolve(
    args: &Request,
    targets: &BTreeMap<TargetKind, BTreeMap<String, String>>,
    osname: String,
) -> anyhow::Result<DeployOptions> {
    let attr = |kind: TargetKind, name: &str| targets.get(&kind).and_then(|t| t.get(name)).map(String::as_str);
    let format = match args.format {
        Some(format) => format,
        None => {
            let Some(kind) = primary(targets)? else {
                bail!("give --format raw, qcow2, iso or oci (the source names no target)")
            };
            // As in KIWI, a disk without a format is raw.
            match (kind, attr(kind, "format")) {
                (TargetKind::Container, _) => {
                    bail!("the primary target is a container image: it is written as an OCI archive, not deployed to a disk")
                }
                (TargetKind::Iso, _) => Format::Iso,
                (TargetKind::Disk, Some("qcow2")) => Format::Qcow2,
                (TargetKind::Disk, None | Some("raw")) => Format::Raw,
                (TargetKind::Disk, Some(other)) => {
                    bail!("the disk target's format `{other}` is not supported: expected raw or qcow2")
                }
            }
        }
    };
    let kind = if format == Format::Iso { TargetKind::Iso } else { TargetKind::Disk };
    if let Some(b) = attr(kind, "bootloader") {
        if !matches!(b, "grub" | "grub2") {
            bail!("the {} target's bootloader `{b}` is not supported: strata installs GRUB", kind.as_str());
        }
    }
    let mut kargs: Vec<String> = attr(kind, "kernelcmdline")
        .or_else(|| attr(TargetKind::Disk, "kernelcmdline"))
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    kargs.extend(args.kargs.iter().cloned());
    let size = match (&args.size, attr(kind, "disksize")) {
        _ if format == Format::Iso => {
            if args.size.is_some() {
                bail!("--size is for disk images: an ISO is as large as its content");
            }
            None
        }
        (Some(s), _) => Some(parse_size(s)?),
        (None, Some(s)) => Some(parse_size(s).context("the disk target's disksize")?),
        (None, None) => None,
    };
    // Each artifact kind reads only its own target's attributes.
    let filesystem = match (&args.filesystem, attr(TargetKind::Disk, "filesystem")) {
        _ if format == Format::Iso => {
            if args.filesystem.is_some() {
                bail!("--filesystem is for disk images: an ISO's root is squashfs");
            }
            Filesystem::Ext4
        }
        (Some(f), _) => Filesystem::parse(f)?,
        (None, Some(f)) => Filesystem::parse(f).context("the disk target's filesystem")?,
        (None, None) => Filesystem::Ext4,
    };
    let osname = args.osname.clone().unwrap_or(osname);
    let volid = attr(TargetKind::Iso, "volid").map_or_else(|| crate::deploy::live::volume_id(&osname), str::to_string);
    if format == Format::Iso {
        crate::deploy::live::check_volume_id(&volid).context("the ISO target's volid")?;
    }
    crate::deploy::check_kernel_arguments(&kargs)?;
    Ok(DeployOptions { format, size, filesystem, volid, kargs, osname })
}

pub use crate::util::text::parse_size;
