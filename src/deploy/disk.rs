//! A bootable disk image from an OSTree sysroot directory, built without partition devices:
//! nothing is mounted (but an xfs root, see below) and no loop device is partitioned.
//!
//! Layout (GPT, 1 MiB aligned):
//!
//! | # | partition | size | content |
//! |---|---|---|---|
//! | 1 | BIOS boot | 1 MiB | GRUB's `core.img` |
//! | 2 | EFI system | 100 MiB | FAT (mtools): `EFI/BOOT/BOOTX64.EFI` |
//! | 3 | `/boot` | 512 MiB | ext4 labelled `strata-boot`: OSTree's kernels, `loader/`, `grub/grub.cfg` |
//! | 4 | root | the rest | ext4 or xfs labelled `strata-root`: the sysroot (`ostree/repo`, `ostree/deploy`) |
//!
//! The ext4 file systems are made from directories by `mke2fs -d` into files and copied into
//! their partitions' offsets (skipping holes); an xfs root (xfsprogs 6.1 cannot fill a file
//! system from a directory) is made in a file, loop-mounted, filled by `cp -a` and unmounted
//! before it is copied. The ESP is formatted and filled by mtools at its offset; the table is
//! written by `sfdisk` on the image file.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::grub;
use super::sysroot::{BOOT_LABEL, ROOT_LABEL};
use super::Filesystem;

const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;
const BIOS_START: u64 = MIB;
const BIOS_SIZE: u64 = MIB;
const ESP_SIZE: u64 = 100 * MIB;
const BOOT_SIZE: u64 = 512 * MIB;
/// Space after the last partition, for the backup GPT.
const TAIL: u64 = MIB;

/// Partition offsets and sizes, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    pub disk: u64,
    pub esp_start: u64,
    pub boot_start: u64,
    pub root_start: u64,
    pub root_size: u64,
}

impl Layout {
    /// The layout for a root file system of `root_size` bytes, or for a disk of `disk` bytes.
    pub fn new(root_size: u64, disk: Option<u64>) -> anyhow::Result<Layout> {
        let esp_start = BIOS_START + BIOS_SIZE;
        let boot_start = esp_start + ESP_SIZE;
        let root_start = boot_start + BOOT_SIZE;
        let fixed = root_start + TAIL;
        let disk = match disk {
            Some(d) => {
                let d = d / MIB * MIB;
                if d < fixed + root_size {
                    bail!(
                        "a disk of {} MiB is too small: this image needs at least {} MiB (its root file system {} MiB)",
                        d / MIB,
                        (fixed + root_size).div_ceil(MIB),
                        root_size.div_ceil(MIB)
                    );
                }
                d
            }
            None => fixed + root_size.div_ceil(MIB) * MIB,
        };
        Ok(Layout { disk, esp_start, boot_start, root_start, root_size: disk - root_start - TAIL })
    }

    fn sfdisk_script(&self) -> String {
        let s = |bytes: u64| bytes / SECTOR;
        format!(
            "label: gpt\n\
             start={}, size={}, type=21686148-6449-6E6F-744E-656564454649, name=\"bios\"\n\
             start={}, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"esp\"\n\
             start={}, size={}, type=BC13C2FF-59E6-4262-A352-B275FD6F7172, name=\"boot\"\n\
             start={}, size={}, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=\"root\"\n",
            s(BIOS_START),
            s(BIOS_SIZE),
            s(self.esp_start),
            s(ESP_SIZE),
            s(self.boot_start),
            s(BOOT_SIZE),
            s(self.root_start),
            s(self.root_size),
        )
    }
}

/// Bytes the files under `dir` occupy (each inode once), for sizing the root file system.
pub fn used_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs_err::read_dir(&d)? {
            let entry = entry?;
            let st = fs_err::symlink_metadata(entry.path())?;
            if st.is_dir() {
                stack.push(entry.path());
            }
            if seen.insert((st.dev(), st.ino())) {
                total += st.blocks() * 512 + 256; // and its inode
            }
        }
    }
    Ok(total)
}

/// Fails, naming `dir` and both figures, when its file system has fewer than `needed` bytes free:
/// better than a tool failing half-way with "No space left on device", which reads as if the
/// image were too small.
pub(super) fn ensure_free(dir: &Path, needed: u64, what: &str) -> anyhow::Result<()> {
    let st = nix::sys::statvfs::statvfs(dir).with_context(|| format!("cannot read free space of {}", dir.display()))?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    if free < needed {
        bail!(
            "not enough free space for {what}: {} has {} MiB free, about {} MiB are needed",
            dir.display(),
            free / MIB,
            needed.div_ceil(MIB)
        );
    }
    Ok(())
}

pub(super) fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    super::transcript::run(cmd, what).map(drop)
}

/// `mke2fs -d`: an ext4 image of `size` bytes at `out` holding `dir`.
fn mkfs_ext4(dir: &Path, label: &str, size: u64, out: &Path) -> anyhow::Result<()> {
    run(
        crate::util::process::command("mkfs.ext4")
            .args(["-q", "-F", "-L", label, "-E", "root_owner=0:0", "-d"])
            .arg(dir)
            .arg(out)
            .arg(format!("{}k", size / 1024)),
        "mkfs.ext4 (e2fsprogs)",
    )
}

/// An xfs image of `size` bytes at `out` holding `dir`: made in the file, loop-mounted on a
/// scratch directory, filled with `cp -a` (hardlinks, xattrs, owners), unmounted. The mount
/// lives in a private mount namespace, so whatever happens to this process (an error, a kill)
/// it goes away with the namespace and its loop device is freed (autoclear): nothing is left
/// mounted in the store's scratch directory. The PID namespace ends `cp` with it.
fn mkfs_xfs(dir: &Path, label: &str, size: u64, out: &Path, work: &Path) -> anyhow::Result<()> {
    fs_err::File::create(out)?.set_len(size)?;
    run(crate::util::process::command("mkfs.xfs").args(["-q", "-f", "-L", label]).arg(out), "mkfs.xfs (xfsprogs)")?;
    let mnt = work.join("xfs-mount");
    fs_err::create_dir_all(&mnt)?;
    run(
        crate::util::process::command("unshare")
            .args(["--mount", "--pid", "--propagation", "private", "--fork", "--kill-child", "sh", "-ec"])
            .arg(r#"mount -t xfs -o loop "$1" "$2"; cp -a --sparse=always "$3/." "$2"; umount "$2""#)
            .arg("sh")
            .args([out, &mnt, dir]),
        "filling the xfs image (mount -o loop, cp -a, umount)",
    )
}

/// Copy the data regions of `src` into `dst` at `offset`, leaving holes as holes.
fn copy_at(src: &Path, dst: &fs_err::File, offset: u64) -> anyhow::Result<()> {
    use nix::unistd::{lseek, Whence};
    let mut f = fs_err::File::open(src)?;
    let len = f.metadata()?.len();
    let fd = f.as_raw_fd();
    let mut buf = vec![0u8; 4 * MIB as usize];
    let mut pos: u64 = 0;
    while pos < len {
        let data = match lseek(fd, pos as i64, Whence::SeekData) {
            Ok(p) => p as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e).context("lseek(SEEK_DATA)"),
        };
        let hole = lseek(fd, data as i64, Whence::SeekHole).context("lseek(SEEK_HOLE)")? as u64;
        f.seek(SeekFrom::Start(data))?;
        let mut at = data;
        while at < hole {
            let n = buf.len().min((hole - at) as usize);
            f.read_exact(&mut buf[..n])?;
            dst.file().write_all_at(&buf[..n], offset + at)?;
            at += n as u64;
        }
        pos = hole;
    }
    Ok(())
}

/// The ESP: a FAT file system at `offset` of `disk` with GRUB's EFI image, through mtools.
fn esp(disk: &Path, offset: u64, efi: &Path) -> anyhow::Result<()> {
    let image = format!("{}@@{offset}", disk.display());
    run(
        crate::util::process::command("mformat").args([
            "-i",
            &image,
            "-T",
            &(ESP_SIZE / SECTOR).to_string(),
            "-h",
            "64",
            "-s",
            "32",
            "-v",
            "ESP",
            "-F",
            "::",
        ]),
        "mformat (mtools)",
    )?;
    run(crate::util::process::command("mmd").args(["-i", &image, "::/EFI", "::/EFI/BOOT"]), "mmd (mtools)")?;
    run(
        crate::util::process::command("mcopy").args(["-i", &image]).arg(efi).arg("::/EFI/BOOT/BOOTX64.EFI"),
        "mcopy (mtools)",
    )
}

/// Turn the sysroot directory `sysroot` into the raw disk image `out`, using `work` for
/// scratch files. Moves `sysroot/boot` out (it becomes the `/boot` file system).
pub fn build_raw(
    sysroot: &Path,
    out: &Path,
    disk_size: Option<u64>,
    filesystem: Filesystem,
    work: &Path,
) -> anyhow::Result<Layout> {
    let bootfs = work.join("bootfs");
    fs_err::rename(sysroot.join("boot"), &bootfs)?;
    fs_err::create_dir(sysroot.join("boot"))?;
    fs_err::create_dir_all(bootfs.join("grub"))?;
    fs_err::write(bootfs.join("grub/grub.cfg"), grub::config())?;

    let used = used_bytes(sysroot)?;
    // The file system's own metadata (inode tables, journal) and room for an upgrade or two.
    let root_size = (used + used / 5 + 512 * MIB).max(1024 * MIB);
    let layout = Layout::new(root_size, disk_size)?;
    // The root file system's image, then the disk it is copied into (both hold the data once).
    ensure_free(work, 2 * (used + BOOT_SIZE / 8) + 64 * MIB, "the disk image")?;
    {
        let _span = tracing::debug_span!("mkfs").entered();
        mkfs_ext4(&bootfs, BOOT_LABEL, BOOT_SIZE, &work.join("boot.ext4"))?;
        match filesystem {
            Filesystem::Ext4 => mkfs_ext4(sysroot, ROOT_LABEL, layout.root_size, &work.join("root.fs"))?,
            Filesystem::Xfs => mkfs_xfs(sysroot, ROOT_LABEL, layout.root_size, &work.join("root.fs"), work)?,
        }
    }
    let _ = fs_err::remove_file(out);
    let disk = fs_err::OpenOptions::new().create_new(true).read(true).write(true).open(out)?;
    disk.set_len(layout.disk)?;
    let mut sfdisk = crate::util::process::command("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run sfdisk (install fdisk)")?;
    sfdisk.stdin.take().expect("piped").write_all(layout.sfdisk_script().as_bytes())?;
    let result = sfdisk.wait_with_output()?;
    if !result.status.success() {
        bail!("sfdisk failed: {}", String::from_utf8_lossy(&result.stderr).trim());
    }
    {
        let _span = tracing::debug_span!("copy file systems").entered();
        copy_at(&work.join("boot.ext4"), &disk, layout.boot_start)?;
        copy_at(&work.join("root.fs"), &disk, layout.root_start)?;
    }
    let mut disk = disk;
    grub::install_bios(&mut disk, BIOS_START / SECTOR, BIOS_SIZE / SECTOR, work)?;
    disk.sync_all()?;
    drop(disk);
    let efi = grub::efi_image(work)?;
    esp(out, layout.esp_start, &efi)?;
    Ok(layout)
}

/// Convert a raw image to qcow2 with `qemu-img`.
pub fn to_qcow2(raw: &Path, out: &Path) -> anyhow::Result<()> {
    run(
        crate::util::process::command("qemu-img").args(["convert", "-f", "raw", "-O", "qcow2"]).arg(raw).arg(out),
        "qemu-img convert (qemu-utils)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let l = Layout::new(1000 * MIB, None).unwrap();
        assert_eq!(l.root_start, 614 * MIB);
        assert_eq!(l.root_size, 1000 * MIB);
        assert_eq!(l.disk, 1615 * MIB);
        let l = Layout::new(1000 * MIB, Some(4096 * MIB)).unwrap();
        assert_eq!(l.disk, 4096 * MIB);
        assert_eq!(l.root_start + l.root_size + TAIL, l.disk);
        let e = Layout::new(1000 * MIB, Some(1024 * MIB)).unwrap_err().to_string();
        assert!(e.contains("too small") && e.contains("1615 MiB"), "{e}");
        assert!(l.sfdisk_script().contains("start=1257472, size="), "{}", l.sfdisk_script());
    }
}
