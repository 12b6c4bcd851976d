//! What unpacking any package format (`.deb`, `.rpm`) shares: the limits that guard against
//! decompression bombs, the report of one unpacked package, member path normalization and the
//! SHA-256 that keys package entries.

use std::path::Path;

use anyhow::{bail, Context};

use crate::digest::Digest;
use crate::tree::Name;

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

/// Unpack a `.deb` or an `.rpm` into its package entry: an RPM by its lead's magic or its name,
/// anything else as a `.deb` (whose reader then says what is wrong with it).
pub fn unpack_any(store: &mut crate::store::Store, path: &Path, limits: &Limits) -> anyhow::Result<PackageReport> {
    let mut magic = [0u8; 4];
    let n = std::io::Read::read(&mut fs_err::File::open(path)?, &mut magic)?;
    let rpm_name = path.extension().is_some_and(|e| e == "rpm");
    if magic[..n] == [0xed, 0xab, 0xee, 0xdb] || rpm_name {
        crate::rpm::unpack::unpack(store, path, limits)
    } else {
        crate::debian::unpack::unpack(store, path, limits)
    }
}

impl PackageReport {
    /// The report of a package entry found in the store: nothing was unpacked.
    pub fn cached(
        key: Digest,
        entry: &crate::db::EntryRow,
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

/// Unpack `items` with `unpack`, in parallel, counting on a progress bar. Packages are
/// independent steps: each worker has its own handle on the store (objects are written by
/// content, and SQLite serializes the short transactions that record each package).
pub fn unpack_in_parallel<T: Sync>(
    store: &crate::store::Store,
    items: &[T],
    progress: &crate::progress::Progress,
    unpack: impl Fn(&mut crate::store::Store, &T) -> anyhow::Result<PackageReport> + Sync,
) -> anyhow::Result<Vec<PackageReport>> {
    use rayon::prelude::*;
    let bar = progress.items(items.len() as u64, "unpacking");
    let root = store.root().to_path_buf();
    let out = items
        .par_iter()
        .map_init(
            || crate::store::Store::open(&root, &crate::store::OpenOptions::default(), || {}),
            |worker, item| -> anyhow::Result<PackageReport> {
                let worker = worker.as_mut().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                let report = unpack(worker, item)?;
                bar.inc(1);
                Ok(report)
            },
        )
        .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();
    Ok(out)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let mut file = fs_err::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("failed to read `{}`", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Normalize an archive member path (tar, cpio): `./usr/bin/x` and `usr/bin/x` name the same file; `.` parts are
/// dropped; absolute paths and `..` are refused. The empty list is the archive's root.
pub fn member_path(raw: &[u8]) -> anyhow::Result<Vec<Name>> {
    if raw.starts_with(b"/") {
        bail!("absolute path: members must be relative to the package root");
    }
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => bail!("path contains `..`: it would leave the package root"),
            _ => out.push(Name::new(part.to_vec()).map_err(|e| anyhow::anyhow!("{e}"))?),
        }
    }
    Ok(out)
}
