//! Live ISOs: a hybrid El Torito image (BIOS and UEFI, also bootable written to a USB stick) that
//! runs the image's tree from a compressed read-only root under a writable overlay in memory.
//!
//! From the OSTree layout tree of the commit (the exact content of the commit):
//!
//! 1. the live tree ([`live_tree`]): `/etc` back from `/usr/etc` (a live system has no
//!    deployment to merge it into) and OSTree's initramfs left out; a tree operation, no copy;
//! 2. the live initramfs ([`initramfs`]), a cached step of its own: dracut with its
//!    `dmsquash-live` module (Debian's `dracut-live`), run in the sandbox over the live tree, so
//!    the image's own kernel modules and tools go in; stored zstd-compressed;
//! 3. the root ([`build_iso`]): squashfs (zstd, every core) of a hardlinked checkout;
//! 4. the ISO: kernel, initramfs, `LiveOS/squashfs.img` and a GRUB menu, assembled by
//!    `grub-mkrescue` (xorriso; the EFI image is written by mtools, nothing is mounted).
//!
//! The initramfs finds the root by the ISO's volume label (`root=live:CDLABEL=…`) and puts an
//! overlayfs over it (`rd.live.overlay.overlayfs=1`); `/var` is filled by systemd-tmpfiles from
//! the layout's factory copy, as on a deployed system.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use super::disk::{ensure_free, run, used_bytes};
use super::single_file;
use crate::ostree::layout::module_kernels;
use crate::store::batch::Batch;
use crate::store::checkout::{checkout, LinkMode};
use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::entry::EntryKind;
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::meta::Meta;
use crate::store::tree::{object_id, Name, Node, Tree};
use crate::trees::edit::{load, lookup, put};
use crate::util::progress::Progress;

/// Bumped when the live tree or the way the initramfs is made changes.
pub const LIVE_INITRAMFS_VERSION: &[u8] = b"1";
/// Bumped when the ISO's content or layout changes (its menu, the squashfs options).
pub const ISO_VERSION: &[u8] = b"2";
/// How long dracut may run.
const DRACUT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Where the sandboxed dracut writes the initramfs (captured in the run's layer).
const DRACUT_OUTPUT: &str = ".strata-live-initrd";

/// The tree a live system runs, and its kernel.
pub struct LiveTree {
    pub tree: Digest,
    pub kver: String,
    pub kernel: Node,
}

/// The default ISO 9660 volume label for `osname`: upper case letters, digits and `_`, at most
/// 32 characters (a description's `volid` may also use lower case and `-`).
pub fn volume_id(osname: &str) -> String {
    let mut v: String =
        osname.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).take(32).collect();
    if v.is_empty() {
        v.push_str("STRATA_LIVE");
    }
    v
}

/// Refuse a volume label the initramfs could not find the ISO by.
pub fn check_volume_id(volid: &str) -> anyhow::Result<()> {
    if volid.is_empty() || volid.len() > 32 || !volid.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("invalid ISO volume id `{volid}`: 1 to 32 letters, digits, `_` or `-`");
    }
    Ok(())
}

/// Kernel arguments of a live system on the ISO labelled `volid`, then the caller's.
pub fn kernel_arguments(volid: &str, extra: &[String]) -> Vec<String> {
    let mut kargs = vec![
        format!("root=live:CDLABEL={volid}"),
        "rd.live.image".to_string(),
        "rd.live.overlay.overlayfs=1".to_string(),
    ];
    kargs.extend(extra.iter().cloned());
    kargs
}

/// The live tree of `layout`, an OSTree layout tree (recorded in the store).
pub fn live_tree(store: &mut Store, layout: &Digest) -> anyhow::Result<LiveTree> {
    let mut batch = Batch::new();
    let mut root = store.tree(layout)?;
    let etc = match lookup(store, &batch, &root, &["usr", "etc"])? {
        Some(n @ Node::Directory { .. }) => n,
        _ => bail!("the tree {} has no /usr/etc: it is not laid out for OSTree", layout.short()),
    };
    let modules = match lookup(store, &batch, &root, &["usr", "lib", "modules"])? {
        Some(Node::Directory { tree }) => load(store, &batch, &tree)?,
        _ => bail!("the tree {} has no /usr/lib/modules: no kernel", layout.short()),
    };
    let mut kernels = module_kernels(store, &batch, &modules)?;
    let (kver, kernel) = match kernels.len() {
        1 => kernels.pop_first().expect("one kernel"),
        n => bail!(
            "the tree {} has {n} kernels in /usr/lib/modules/*/vmlinuz ({}); a live ISO boots exactly one",
            layout.short(),
            kernels.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    put(store, &mut batch, &mut root, &["etc"], Some(etc))?;
    put(store, &mut batch, &mut root, &["usr", "lib", "modules", &kver, "initramfs.img"], None)?;
    let tree = batch.put_tree(&root);
    batch.commit(store, None)?;
    Ok(LiveTree { tree, kver, kernel })
}

/// The live initramfs of `live`: a cached step (dracut with `dmsquash-live` in the sandbox).
/// `refs` are the entries it is made from. Returns its entry, its file in the store and whether
/// it was cached.
pub fn initramfs(
    store: &mut Store,
    live: &LiveTree,
    image: &str,
    refs: &[Digest],
    progress: &Progress,
) -> anyhow::Result<(EntryRow, PathBuf, bool)> {
    let _span = tracing::debug_span!("live initramfs", kver = %live.kver).entered();
    let memo = Memo::new(
        EntryKind::Step,
        format!("{image}/live-initramfs"),
        &[("step", b"live-initramfs"), ("version", LIVE_INITRAMFS_VERSION), ("kernel", live.kver.as_bytes())],
        &[live.tree],
    );
    if let Some(entry) = memo.lookup(store)? {
        let (file, _, _) = single_file(store, &entry)?;
        return Ok((entry, file, true));
    }
    let root = store.tree(&live.tree)?;
    let batch = Batch::new();
    if !matches!(lookup(store, &batch, &root, &["usr", "bin", "dracut"])?, Some(Node::File { .. })) {
        bail!("{image} has no dracut (/usr/bin/dracut): a live ISO's initramfs is made by dracut; add the packages dracut and dracut-live");
    }
    if !matches!(
        lookup(store, &batch, &root, &["usr", "lib", "dracut", "modules.d", "90dmsquash-live"])?,
        Some(Node::Directory { .. })
    ) {
        bail!(
            "{image} has no dracut module dmsquash-live, which mounts a live ISO's root: add the package dracut-live"
        );
    }
    // Not compressed by dracut (the image may lack a fast compressor): strata compresses it.
    let script = format!(
        "dracut --quiet --force --no-hostonly --no-hostonly-cmdline --reproducible --no-compress --tmpdir /tmp \
         --add dmsquash-live --omit ostree /{DRACUT_OUTPUT} {kver}\n",
        kver = crate::util::text::sq(&live.kver)
    );
    let run = crate::sandbox::run(
        store,
        &live.tree,
        &script,
        &crate::sandbox::Limits::with_timeout(DRACUT_TIMEOUT),
        progress,
    )
    .with_context(|| format!("cannot make the live initramfs of {image} with dracut"))?;
    let made = match store.lookup(&run.layer, &[DRACUT_OUTPUT.as_bytes()])? {
        Some(n @ Node::File { .. }) => n,
        _ => bail!("dracut made no initramfs for {image}; its output:\n{}", run.log.trim()),
    };
    let cpio = store.read_file(&made)?;
    let mut enc = zstd::Encoder::new(Vec::with_capacity(cpio.len() / 3), 9)?;
    enc.write_all(&cpio)?;
    let compressed = enc.finish()?;
    let mut batch = Batch::new();
    let node = batch.put_bytes(store, &compressed, Meta { mode: 0o644, uid: 0, gid: 0, xattrs: vec![] })?;
    let tree = batch.put_tree(&Tree {
        meta: Meta { mode: 0o755, uid: 0, gid: 0, xattrs: vec![] },
        entries: vec![(Name::new("initrd.img").expect("valid name"), node)],
    });
    let built = Built::in_batch(tree, batch).refs(refs).totals(1, compressed.len() as u64).log(run.log);
    let entry = memo.record(store, built)?;
    let (file, _, _) = single_file(store, &entry)?;
    Ok((entry, file, false))
}

/// What goes into an ISO.
pub struct IsoInput<'a> {
    pub live: &'a LiveTree,
    /// The live initramfs (zstd-compressed cpio).
    pub initramfs: &'a Path,
    pub kargs: &'a [String],
    pub volid: &'a str,
    /// The boot menu's title.
    pub title: &'a str,
    /// `SOURCE_DATE_EPOCH` for the squashfs and ISO time stamps.
    pub source_date: u64,
}

/// Sizes of the parts of an ISO, in bytes.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct IsoLayout {
    pub squashfs: u64,
    pub kernel: u64,
    pub initramfs: u64,
}

/// Make the ISO in `work` (a scratch directory on the store's file system); returns its path.
pub fn build_iso(
    store: &Store,
    work: &Path,
    input: &IsoInput<'_>,
    progress: &Progress,
) -> anyhow::Result<(PathBuf, IsoLayout)> {
    let bar = progress.spinner("live ISO: checkout");
    let root = work.join("root");
    checkout(store, &input.live.tree, &root, LinkMode::Hardlink, progress)?;
    // The squashfs, then the ISO holding it: compressed, each well under the tree's size.
    ensure_free(work, used_bytes(&root)? + (64 << 20), "the live ISO")?;
    let iso = work.join("iso");
    for d in ["LiveOS", "boot/grub"] {
        fs_err::create_dir_all(iso.join(d))?;
    }
    bar.set_message("live ISO: squashfs");
    let squashfs = iso.join("LiveOS/squashfs.img");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let epoch = input.source_date.to_string();
    run(
        crate::util::process::command("mksquashfs")
            .arg(&root)
            .arg(&squashfs)
            .args(["-noappend", "-no-progress", "-quiet", "-comp", "zstd", "-Xcompression-level", "6", "-b", "1M"])
            .args(["-processors", &cores.to_string(), "-mkfs-time", &epoch, "-all-time", &epoch])
            .args(["-no-exports", "-xattrs"]),
        "mksquashfs (install squashfs-tools)",
    )?;
    crate::store::local::make_writable(&root);
    fs_err::remove_dir_all(&root)?;
    bar.set_message("live ISO: boot files");
    let Node::File { meta, size, content, .. } = &input.live.kernel else { bail!("the kernel is not a file") };
    fs_err::copy(store.object_store().path(&object_id(meta, *size, content)), iso.join("boot/vmlinuz"))?;
    fs_err::copy(input.initramfs, iso.join("boot/initrd.img"))?;
    fs_err::write(iso.join("boot/grub/grub.cfg"), grub_cfg(input.title, input.kargs))?;
    bar.set_message("live ISO: El Torito image");
    // grub-mkrescue quietly leaves out a platform whose GRUB modules are missing.
    for (platform, package) in [("i386-pc", "grub-pc-bin"), ("x86_64-efi", "grub-efi-amd64-bin")] {
        if !Path::new("/usr/lib/grub").join(platform).join("moddep.lst").exists() {
            bail!("a hybrid ISO needs GRUB's {platform} modules: install {package}");
        }
    }
    let out = work.join("live.iso");
    run(
        crate::util::process::command("grub-mkrescue")
            .arg("-o")
            .arg(&out)
            .arg(&iso)
            .args(["-volid", input.volid])
            .env("SOURCE_DATE_EPOCH", &epoch),
        "grub-mkrescue (install grub-common, grub-pc-bin, grub-efi-amd64-bin, xorriso and mtools)",
    )?;
    bar.finish_and_clear();
    let size = |p: PathBuf| fs_err::metadata(p).map(|m| m.len());
    let layout = IsoLayout {
        squashfs: size(squashfs)?,
        kernel: size(iso.join("boot/vmlinuz"))?,
        initramfs: size(iso.join("boot/initrd.img"))?,
    };
    Ok((out, layout))
}

/// The ISO's GRUB menu: serial and screen, one entry, a short timeout. BIOS GRUB boots the
/// kernel with the 16-bit protocol (`linux16`: its 32-bit `linux` hangs under SeaBIOS here).
fn grub_cfg(title: &str, kargs: &[String]) -> String {
    let title = title.replace(['"', '\\', '$'], "_");
    let kargs = kargs.join(" ");
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout=3\n\
         set default=0\n\
         menuentry \"{title}\" {{\n\
         \x20   if [ \"$grub_platform\" = pc ]; then\n\
         \x20       linux16 /boot/vmlinuz {kargs}\n\
         \x20       initrd16 /boot/initrd.img\n\
         \x20   else\n\
         \x20       linux /boot/vmlinuz {kargs}\n\
         \x20       initrd /boot/initrd.img\n\
         \x20   fi\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids_are_iso9660_labels() {
        assert_eq!(volume_id("debian-base"), "DEBIAN_BASE");
        assert_eq!(volume_id(""), "STRATA_LIVE");
        assert_eq!(volume_id(&"x".repeat(40)).len(), 32);
        assert!(check_volume_id("DEBIAN_BASE").is_ok());
        for bad in ["", "a b", "x\"y", &"x".repeat(33)] {
            assert!(check_volume_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn menu_has_the_arguments() {
        let cfg = grub_cfg("debian \"live\"", &kernel_arguments("DEBIAN", &["console=ttyS0".into()]));
        assert!(cfg.contains("menuentry \"debian _live_\""), "{cfg}");
        let kargs = "root=live:CDLABEL=DEBIAN rd.live.image rd.live.overlay.overlayfs=1 console=ttyS0";
        assert!(cfg.contains(&format!("  linux16 /boot/vmlinuz {kargs}\n")), "{cfg}");
        assert!(cfg.contains(&format!("  linux /boot/vmlinuz {kargs}\n")), "{cfg}");
    }
}
