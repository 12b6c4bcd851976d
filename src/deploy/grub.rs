//! GRUB for BIOS and UEFI, reading OSTree's boot loader configuration.
//!
//! Debian's GRUB 2.06 cannot read OSTree's Boot Loader Specification entries, and a menu
//! written once would break when the system updates itself (OSTree flips `/boot/loader` to a new
//! `loader.N`). So GRUB is set up once, statically: its images carry every module they need and
//! an early configuration that finds the `/boot` file system by label; `/boot/grub/grub.cfg`
//! reads `/loader/syslinux.cfg` (which OSTree keeps current) with `syslinux_source`, which loads
//! the default entry's kernel and initramfs, and boots it.
//!
//! BIOS: `grub-mkimage -O i386-pc` gives `core.img`, written to the BIOS boot partition;
//! `boot.img` goes into the first 440 bytes of the protective MBR, pointed at `core.img`, and
//! `core.img`'s first sector is pointed at the rest of it (what `grub-bios-setup` does, without
//! needing a block device). UEFI: `grub-mkimage -O x86_64-efi` gives `BOOTX64.EFI`, the
//! removable-media path on the EFI system partition.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::bail;

use super::sysroot::BOOT_LABEL;

const GRUB_LIB: &str = "/usr/lib/grub";
const COMMON_MODULES: &[&str] = &[
    "part_gpt",
    "ext2",
    "search",
    "search_label",
    "normal",
    "configfile",
    "syslinuxcfg",
    "linux",
    "echo",
    "test",
    "serial",
    "terminal",
    "boot",
    "sleep",
];

/// `/boot/grub/grub.cfg`: never rewritten; the loader OSTree maintains decides what boots.
pub fn config() -> String {
    "serial --unit=0 --speed=115200\n\
     terminal_input serial console\n\
     terminal_output serial console\n\
     # OSTree keeps /loader/syslinux.cfg current (loader is a symlink it swaps on every update).\n\
     syslinux_source -r / /loader/syslinux.cfg\n\
     boot\n"
        .to_string()
}

fn early_config(work: &Path) -> anyhow::Result<PathBuf> {
    let path = work.join("grub-early.cfg");
    fs_err::write(&path, format!("search --no-floppy --label {BOOT_LABEL} --set root\nset prefix=($root)/grub\n"))?;
    Ok(path)
}

fn mkimage(format: &str, extra: &[&str], out: &Path, work: &Path) -> anyhow::Result<()> {
    let dir = Path::new(GRUB_LIB).join(format);
    if !dir.is_dir() {
        bail!("{} is missing: install the grub-pc-bin and grub-efi-amd64-bin packages", dir.display());
    }
    let early = early_config(work)?;
    super::transcript::run(
        crate::util::process::command("grub-mkimage")
            .args(["-O", format, "-d"])
            .arg(&dir)
            .args(["-p", "/grub", "-c"])
            .arg(&early)
            .arg("-o")
            .arg(out)
            .args(COMMON_MODULES)
            .args(extra),
        &format!("grub-mkimage -O {format} (grub-common)"),
    )?;
    Ok(())
}

/// Install GRUB for BIOS into `disk`: `core.img` at sector `start` (the BIOS boot partition,
/// `sectors` long) and `boot.img` in the MBR's boot code.
pub fn install_bios(disk: &mut fs_err::File, start: u64, sectors: u64, work: &Path) -> anyhow::Result<()> {
    let core_path = work.join("core.img");
    mkimage("i386-pc", &["biosdisk", "linux16"], &core_path, work)?;
    let mut core = fs_err::read(&core_path)?;
    let n = core.len().div_ceil(512) as u64;
    if n > sectors {
        bail!("GRUB's core.img needs {n} sectors; the BIOS boot partition has {sectors}");
    }
    core.resize(n as usize * 512, 0);
    // diskboot.img's block list (the last 12 bytes of core.img's first sector): the rest of
    // core.img, contiguous, loaded at segment 0x820.
    core[500..508].copy_from_slice(&(start + 1).to_le_bytes());
    core[508..510].copy_from_slice(&((n - 1) as u16).to_le_bytes());
    core[510..512].copy_from_slice(&0x820u16.to_le_bytes());
    disk.seek(SeekFrom::Start(start * 512))?;
    disk.write_all(&core)?;

    let mut boot = fs_err::read(Path::new(GRUB_LIB).join("i386-pc/boot.img"))?;
    if boot.len() != 512 {
        bail!("{GRUB_LIB}/i386-pc/boot.img is not 512 bytes");
    }
    boot[0x5c..0x64].copy_from_slice(&start.to_le_bytes()); // where core.img starts
    boot[0x64] = 0xff; // boot from the drive the BIOS booted
    boot[0x66..0x68].copy_from_slice(&[0x90, 0x90]); // no drive check: some BIOSes pass a wrong drive
    let mut mbr = [0u8; 512];
    disk.seek(SeekFrom::Start(0))?;
    disk.read_exact(&mut mbr)?;
    mbr[..440].copy_from_slice(&boot[..440]); // the partition table after byte 440 stays
    disk.seek(SeekFrom::Start(0))?;
    disk.write_all(&mbr)?;
    Ok(())
}

/// Build `BOOTX64.EFI` in `work`.
pub fn efi_image(work: &Path) -> anyhow::Result<PathBuf> {
    let out = work.join("BOOTX64.EFI");
    mkimage("x86_64-efi", &["fat", "efi_gop", "all_video"], &out, work)?;
    Ok(out)
}
