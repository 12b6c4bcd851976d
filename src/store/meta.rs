//! `Meta`: the metadata a store records for every node (permission bits, owner, extended attributes),
//! read from and applied to the file system.
//!
//! Invariants: `mode` holds only the permission bits (`0o7777`: rwx, setuid, setgid, sticky), never
//! the file type; `xattrs` is sorted by name with no duplicates, so that equal metadata encodes
//! identically. Timestamps are deliberately not metadata: checkouts are reproducible.
//!
//! Order matters when applying: `chown` clears setuid/setgid and file capabilities, so ownership
//! goes first, then the mode, then extended attributes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;

/// Extended attributes, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// How a captured layer marks an opaque directory (overlayfs' `trusted.overlay.opaque`).
/// It never reaches a flattened tree: [`crate::trees::layer::apply`] consumes it.
pub const OPAQUE_XATTR: &[u8] = b"strata.layer.opaque";

/// Extended attributes that describe the file system underneath, not the file: never recorded.
const IGNORED_XATTR_PREFIXES: &[&[u8]] = &[b"trusted.overlay.", b"security.ima", b"security.evm"];

#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: Xattrs,
}

impl Meta {
    /// Metadata of the node at `path` (not following a final symlink), given its `lstat`.
    pub fn read(path: &Path, st: &std::fs::Metadata) -> anyhow::Result<Meta> {
        Meta::read_as(path, st, false)
    }

    /// Like [`Meta::read`]; with `overlay_upper`, the `trusted.overlay.opaque` marker of an
    /// overlayfs upper directory is kept (as [`OPAQUE_XATTR`]) so a captured layer can say that a
    /// directory replaces the one below instead of merging with it.
    pub fn read_as(path: &Path, st: &std::fs::Metadata, overlay_upper: bool) -> anyhow::Result<Meta> {
        let mut xattrs = read_xattrs(path)?;
        if overlay_upper
            && st.is_dir()
            && xattr::get(path, "trusted.overlay.opaque").ok().flatten().as_deref() == Some(b"y")
        {
            xattrs.push((OPAQUE_XATTR.to_vec(), b"y".to_vec()));
            xattrs.sort();
        }
        Ok(Meta { mode: st.mode() & 0o7777, uid: st.uid(), gid: st.gid(), xattrs })
    }

    /// Apply owner, mode and xattrs to `path` (which must not be a symlink when `is_symlink` is
    /// false). `privileged` tells whether ownership and `security.*`/`trusted.*` attributes can
    /// be set; without it they are left as the caller's (as `cp -a` does for a normal user).
    pub fn apply(&self, path: &Path, is_symlink: bool, privileged: bool) -> anyhow::Result<()> {
        use nix::fcntl::AtFlags;
        use nix::unistd::{Gid, Uid};
        use std::os::unix::ffi::OsStrExt;
        if privileged {
            nix::unistd::fchownat(
                None,
                path,
                Some(Uid::from_raw(self.uid)),
                Some(Gid::from_raw(self.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .with_context(|| format!("failed to set owner {}:{} on `{}`", self.uid, self.gid, path.display()))?;
        }
        if !is_symlink {
            nix::sys::stat::fchmodat(
                None,
                path,
                nix::sys::stat::Mode::from_bits_retain(self.mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .with_context(|| format!("failed to set mode {:o} on `{}`", self.mode, path.display()))?;
        }
        for (name, value) in &self.xattrs {
            if (!privileged && !name.starts_with(b"user.")) || name.as_slice() == OPAQUE_XATTR {
                continue;
            }
            let name_os = std::ffi::OsStr::from_bytes(name);
            xattr::set(path, name_os, value).with_context(|| {
                format!("failed to set extended attribute `{}` on `{}`", String::from_utf8_lossy(name), path.display())
            })?;
        }
        Ok(())
    }
}

/// Whether an extended attribute is part of a node's metadata (and not of the file system below).
pub fn recorded_xattr(name: &[u8]) -> bool {
    !IGNORED_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// All extended attributes of `path` (not following symlinks), sorted by name.
pub fn read_xattrs(path: &Path) -> anyhow::Result<Xattrs> {
    use std::os::unix::ffi::OsStrExt;
    let names = match xattr::list(path) {
        Ok(names) => names,
        // File systems without xattr support have none to record.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to list extended attributes of `{}`", path.display())),
    };
    let mut out = Vec::new();
    for name in names {
        let bytes = name.as_bytes();
        if !recorded_xattr(bytes) {
            continue;
        }
        let value = xattr::get(path, &name)
            .with_context(|| {
                format!("failed to read extended attribute `{}` of `{}`", name.to_string_lossy(), path.display())
            })?
            .unwrap_or_default();
        out.push((bytes.to_vec(), value));
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// Whether this process may set owners and privileged extended attributes.
pub fn privileged() -> bool {
    nix::unistd::geteuid().is_root()
}
