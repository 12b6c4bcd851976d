//! An OSTree sysroot in a plain directory: `init-fs`, `os-init`, the commit pulled into the
//! sysroot's repository, and a deployment with its kernel arguments, all through libostree's
//! Sysroot API. Nothing is mounted: the directory becomes the root file system's content, and
//! its `boot/` the `/boot` file system's.
//!
//! The boot loader configuration is OSTree's syslinux one (`/boot/loader/syslinux.cfg`, which
//! OSTree rewrites and swaps atomically on every upgrade or rollback); GRUB reads it at boot
//! (see [`super::grub`]).

use std::path::Path;

use anyhow::Context;
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// File system labels the kernel arguments, fstab and GRUB refer to.
pub const ROOT_LABEL: &str = "strata-root";
pub const BOOT_LABEL: &str = "strata-boot";

/// What was deployed.
pub struct Deployed {
    pub osname: String,
    pub commit: String,
    /// The deployment's checkout, relative to the sysroot.
    pub deployment: String,
}

/// Build the sysroot at `dir` (empty) with `commit` of the repository `repo` deployed as `osname`.
pub fn build(
    dir: &Path,
    repo: &Path,
    reference: &str,
    commit: &str,
    osname: &str,
    kargs: &[String],
    filesystem: super::Filesystem,
) -> anyhow::Result<Deployed> {
    let _span = tracing::debug_span!("sysroot", osname).entered();
    let sysroot = ostree::Sysroot::new(Some(&gio::File::for_path(dir)));
    sysroot.ensure_initialized(gio::Cancellable::NONE).context("cannot initialize the sysroot")?;
    sysroot.load(gio::Cancellable::NONE)?;
    sysroot
        .init_osname(osname, gio::Cancellable::NONE)
        .with_context(|| format!("cannot create the stateroot {osname}"))?;
    let sysrepo = sysroot.repo();

    // The boot loader: OSTree's syslinux backend, found through /boot/syslinux/syslinux.cfg.
    let config = sysrepo.copy_config();
    config.set_string("sysroot", "bootloader", "syslinux");
    sysrepo.write_config(&config)?;
    let boot = dir.join("boot");
    fs_err::create_dir_all(boot.join("loader.0"))?;
    fs_err::write(boot.join("loader.0/syslinux.cfg"), "")?;
    std::os::unix::fs::symlink("loader.0", boot.join("loader"))?;
    fs_err::create_dir_all(boot.join("syslinux"))?;
    std::os::unix::fs::symlink("../loader/syslinux.cfg", boot.join("syslinux/syslinux.cfg"))?;

    // The commit, pulled from the export repository (objects are hardlinked or copied).
    let options = glib::VariantDict::new(None);
    options.insert_value("refs", &vec![reference.to_string()].to_variant());
    options.insert_value("override-commit-ids", &vec![commit.to_string()].to_variant());
    options.insert_value("gpg-verify", &false.to_variant());
    let url = format!("file://{}", fs_err::canonicalize(repo)?.display());
    sysrepo
        .pull_with_options(&url, &options.end(), None, gio::Cancellable::NONE)
        .with_context(|| format!("cannot pull {commit} into the sysroot"))?;
    sysrepo.set_ref_immediate(None, reference, Some(commit), gio::Cancellable::NONE)?;

    let origin = sysroot.origin_new_from_refspec(reference);
    let argv: Vec<&str> = kargs.iter().map(String::as_str).collect();
    let deployment = sysroot
        .deploy_tree(Some(osname), commit, Some(&origin), None, &argv, gio::Cancellable::NONE)
        .context("cannot deploy the commit")?;
    sysroot
        .simple_write_deployment(
            Some(osname),
            &deployment,
            None,
            ostree::SysrootSimpleWriteDeploymentFlags::NONE,
            gio::Cancellable::NONE,
        )
        .context("cannot write the deployment and its boot loader entry")?;
    let path = sysroot.deployment_dirpath(&deployment).to_string();

    // /boot is its own file system: the deployment mounts it by label.
    let fstab = dir.join(&path).join("etc/fstab");
    fs_err::write(
        &fstab,
        format!(
            "LABEL={ROOT_LABEL} / {} defaults 1 {}\nLABEL={BOOT_LABEL} /boot ext4 defaults 1 2\n",
            filesystem.as_str(),
            // fsck.xfs does nothing: xfs checks itself at mount.
            if filesystem == super::Filesystem::Xfs { 0 } else { 1 }
        ),
    )?;
    Ok(Deployed { osname: osname.to_string(), commit: commit.to_string(), deployment: path })
}
