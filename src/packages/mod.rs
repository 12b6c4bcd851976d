//! What unpacking any package format (`.deb`, `.rpm`) shares: the limits that guard against
//! decompression bombs, the report of one unpacked package, member path normalization and the
//! SHA-256 that keys package entries.

use anyhow::bail;

use crate::store::digest::Digest;
use crate::store::tree::Name;

pub mod deb;
pub mod fetch;
pub mod lock;
pub mod rpm;
pub mod tar;
pub mod unpack;

/// The outcome of one step of a package install (merge, scripts, root tree), as reports show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    pub kind: &'static str,
    pub key: Digest,
    pub tree: Digest,
    pub cached: bool,
}

impl Step {
    /// The step of `kind` whose entry [`crate::store::memo::Memo::get_or_build`] found or made.
    pub fn of(kind: &'static str, (entry, cached): (crate::store::db::EntryRow, bool)) -> Step {
        Step { kind, key: entry.key, tree: entry.tree, cached }
    }
}

/// Guards against decompression bombs and pathological archives.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Total bytes of all files in the package.
    pub max_bytes: u64,
    /// Members of the data archive.
    pub max_members: u64,
    /// Total bytes of the control archive's files.
    pub max_control_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 16 << 30, max_members: 1_000_000, max_control_bytes: 64 << 20 }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PackageReport {
    pub key: Digest,
    pub tree: Digest,
    pub package: String,
    pub version: String,
    pub architecture: String,
    pub sha256: String,
    pub files: u64,
    pub bytes: u64,
    pub new_objects: u64,
    /// The entry was already in the store: nothing was unpacked.
    pub cached: bool,
}

/// The kernel's (`uname -m`) and RPM's name for a Debian architecture (`amd64` → `x86_64`).
pub fn uname_arch(debian: &str) -> &str {
    match debian {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "i386" => "i686",
        "ppc64el" => "ppc64le",
        other => other,
    }
}

impl PackageReport {
    /// The report of a package entry found in the store: nothing was unpacked.
    pub fn cached(
        key: Digest,
        entry: &crate::store::db::EntryRow,
        sha256: &str,
        nva: (String, String, String),
    ) -> PackageReport {
        let (package, version, architecture) = nva;
        PackageReport {
            key,
            tree: entry.tree,
            package,
            version,
            architecture,
            sha256: sha256.to_string(),
            files: entry.files,
            bytes: entry.bytes,
            new_objects: 0,
            cached: true,
        }
    }
}

/// Normalize an archive member path (tar, cpio): `./usr/bin/x` and `usr/bin/x` name the same file; `.` parts are
/// dropped; absolute paths, `..` and newlines are refused. The empty list is the archive's root.
///
/// A newline is refused as dpkg refuses it: the package databases list one path per line
/// (`/var/lib/dpkg/info/*.list`), so such a name would corrupt the image's database.
pub fn member_path(raw: &[u8]) -> anyhow::Result<Vec<Name>> {
    if raw.contains(&b'\n') {
        bail!("the name holds a newline: package file lists are one path per line, so dpkg and strata refuse it");
    }
    tree_path(raw)
}

/// Normalize an archive member path as [`member_path`] does, newlines allowed (container image
/// layers, which no package database lists).
pub fn tree_path(raw: &[u8]) -> anyhow::Result<Vec<Name>> {
    if raw.starts_with(b"/") {
        bail!("absolute path: members must be relative to the archive's root");
    }
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => bail!("path contains `..`: it would leave the archive's root"),
            _ => out.push(Name::new(part.to_vec()).map_err(|e| anyhow::anyhow!("{e}"))?),
        }
    }
    Ok(out)
}
