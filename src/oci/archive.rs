//! OCI archives (`oci-archive:FILE[:TAG]`): an image layout in one tar file, as skopeo and
//! podman read and write them.
//!
//! Writing: the image's blobs are taken from the store's blob cache ([`super::cache`]; a layer
//! missing there is made into it first) and written as a tar in a fixed order (`oci-layout`,
//! `index.json`, `blobs/`, `blobs/sha256/`, the blobs by digest) with fixed owners, modes and
//! times, through a temporary file renamed over FILE when complete: the same image gives the
//! same archive, and a reader never sees half of one.
//!
//! Reading: only the members a layout has (`oci-layout`, `index.json`, `blobs/`,
//! `blobs/sha256/`, `blobs/sha256/<64 hex digits>`, each at most once, regular files and
//! directories) are accepted, anything else is refused naming the member; the layout is then
//! read like any other ([`super::import`]), every blob checked against its digest.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::image::Target;
use super::layout::{Descriptor, Layout, INDEX_MEDIA_TYPE, REF_NAME};

/// `oci-archive:FILE[:TAG]` as (FILE, TAG): the last `:` starts the tag.
pub fn parse(spec: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    crate::description::oci_archive_reference(spec)
}

/// An export's destination in an archive: blobs come from the store's cache
/// ([`super::cache`]), made there when missing; the archive is written by [`Target::finish`].
pub struct ArchiveTarget {
    file: PathBuf,
    tag: String,
    cache: Layout,
    /// The blobs the archive holds.
    blobs: BTreeSet<String>,
    /// The index's entries: each tag with its manifest.
    tags: Vec<(String, Descriptor)>,
    source_date: u64,
}

impl ArchiveTarget {
    /// An archive to be written at `file` holding the image as `tag` (and whatever further tags
    /// the export gives it); `cache` is the store's blob cache.
    pub fn new(cache: Layout, file: &Path, tag: &str, source_date: u64) -> anyhow::Result<ArchiveTarget> {
        let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("`{}`: the directory `{}` does not exist", file.display(), parent.display());
        }
        if file.is_dir() {
            bail!(
                "`{}` is a directory: an OCI archive is a file (for a layout directory, use oci:DIR)",
                file.display()
            );
        }
        Ok(ArchiveTarget {
            file: file.to_path_buf(),
            tag: tag.to_string(),
            cache,
            blobs: BTreeSet::new(),
            tags: vec![],
            source_date,
        })
    }
}

impl Target for ArchiveTarget {
    fn name(&self) -> String {
        format!("oci-archive:{}:{}", self.file.display(), self.tag)
    }

    /// A new archive has nothing yet: every blob is handed on (from the cache, where possible).
    fn has_blob(&mut self, _digest: &str, _size: u64) -> anyhow::Result<bool> {
        Ok(false)
    }

    fn staging(&self) -> &Layout {
        &self.cache
    }

    fn put_blob(&mut self, digest: &str, _size: u64) -> anyhow::Result<bool> {
        self.blobs.insert(digest.to_string());
        Ok(true)
    }

    fn tag(&mut self, tag: &str, manifest: &Descriptor) -> anyhow::Result<()> {
        self.blobs.insert(manifest.digest.clone());
        let mut entry = manifest.clone();
        entry.annotations.insert(REF_NAME.to_string(), tag.to_string());
        self.tags.push((tag.to_string(), entry));
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": self.tags.iter().map(|(_, d)| d).collect::<Vec<_>>(),
        });
        let blobs: Vec<(String, PathBuf)> = self
            .blobs
            .iter()
            .map(|d| (d.strip_prefix("sha256:").unwrap_or(d).to_string(), self.cache.blob_path(d)))
            .collect();
        write(&serde_json::to_vec(&index)?, &blobs, &self.file, self.source_date)
    }
}

/// Write the archive `file`: `oci-layout`, `index.json` (`index`), then `blobs` (name, file) in
/// order (see the module doc).
fn write(index: &[u8], blobs: &[(String, PathBuf)], file: &Path, mtime: u64) -> anyhow::Result<()> {
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new().prefix(".strata-tmp-").tempfile_in(parent)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, tmp));
    let header = |path: &str, size: u64, dir: bool| -> anyhow::Result<tar::Header> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_size(size);
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_entry_type(if dir { tar::EntryType::Directory } else { tar::EntryType::Regular });
        h.set_cksum();
        Ok(h)
    };
    let marker = br#"{"imageLayoutVersion":"1.0.0"}"#;
    tar.append(&header("oci-layout", marker.len() as u64, false)?, &marker[..])?;
    tar.append(&header("index.json", index.len() as u64, false)?, index)?;
    tar.append(&header("blobs/", 0, true)?, std::io::empty())?;
    tar.append(&header("blobs/sha256/", 0, true)?, std::io::empty())?;
    for (name, path) in blobs {
        let f = fs_err::File::open(path)?;
        let size = f.metadata()?.len();
        tar.append(&header(&format!("blobs/sha256/{name}"), size, false)?, f)?;
    }
    let mut out = tar.into_inner()?;
    out.flush()?;
    let tmp = out.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error).with_context(|| format!("cannot write `{}`", file.display()))?;
    fs_err::File::open(parent)?.sync_all()?;
    Ok(())
}

/// Unpack the archive `file` into the empty directory `into` (see the module doc).
/// With `max`, members larger than it are skipped (read past, not written): enough to resolve a
/// tag to its manifest without writing the layers.
pub fn unpack(file: &Path, into: &Path, max: Option<u64>) -> anyhow::Result<()> {
    let shown = file.display();
    let f = fs_err::File::open(file).with_context(|| format!("OCI archive `{shown}`"))?;
    let mut tar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, f));
    let mut seen = std::collections::BTreeSet::new();
    fs_err::create_dir_all(into.join("blobs/sha256"))?;
    for entry in tar.entries().with_context(|| format!("OCI archive `{shown}`"))? {
        let mut entry = entry.with_context(|| format!("OCI archive `{shown}`: not a tar archive"))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = raw.trim_start_matches("./").trim_end_matches('/').to_string();
        let kind = entry.header().entry_type();
        let is_dir = kind == tar::EntryType::Directory;
        let allowed_dir = matches!(name.as_str(), "" | "blobs" | "blobs/sha256");
        let blob = name
            .strip_prefix("blobs/sha256/")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let allowed_file = blob || matches!(name.as_str(), "oci-layout" | "index.json");
        if is_dir && allowed_dir {
            continue;
        }
        if !(allowed_file && kind == tar::EntryType::Regular) {
            bail!(
                "OCI archive `{shown}`: member `{raw}` ({kind:?}): an OCI archive holds only oci-layout, index.json and blobs/sha256/<digest> files"
            );
        }
        if !seen.insert(name.clone()) {
            bail!("OCI archive `{shown}`: member `{raw}` appears twice");
        }
        if max.is_some_and(|m| entry.header().size().unwrap_or(u64::MAX) > m) {
            continue;
        }
        let mut out = fs_err::File::create(into.join(&name))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).with_context(|| format!("OCI archive `{shown}`: member `{raw}`"))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
    }
    for required in ["oci-layout", "index.json"] {
        if !seen.contains(required) {
            bail!("OCI archive `{shown}` has no {required}: it is not an OCI archive");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse("oci-archive:/tmp/a.tar:web").unwrap(), (PathBuf::from("/tmp/a.tar"), Some("web".into())));
        assert_eq!(parse("oci-archive:a.tar").unwrap(), (PathBuf::from("a.tar"), None));
        assert!(parse("oci-archive:").unwrap_err().to_string().contains("oci-archive:FILE"));
    }

    #[test]
    fn foreign_members_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.tar");
        let mut b = tar::Builder::new(fs_err::File::create(&file).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "oci-layout", &b"{}"[..]).unwrap();
        // `tar` refuses to write `..` itself: the name is put in by hand.
        let mut evil = tar::Header::new_gnu();
        evil.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../evil");
        evil.set_size(2);
        evil.set_mode(0o644);
        evil.set_cksum();
        b.append(&evil, &b"{}"[..]).unwrap();
        b.finish().unwrap();
        drop(b);
        let into = dir.path().join("out");
        let err = unpack(&file, &into, None).unwrap_err().to_string();
        assert!(err.contains("member `../evil`"), "{err}");
        assert!(!dir.path().join("evil").exists());
    }
}
