//! OCI image layouts on disk (`oci:DIR[:TAG]`): `oci-layout`, `index.json` and content-addressed
//! blobs under `blobs/sha256/`, as the OCI image-layout specification defines them.
//!
//! Invariants: a blob is written under a temporary name in `blobs/sha256/`, synced, and renamed to
//! its SHA-256 only when complete, so a blob's name is always its content's digest; a blob the
//! layout has already (same digest and size) is not written again; `index.json` is replaced by a
//! rename after every blob it names is in place, so a reader sees the old index or the new one,
//! never a tag whose blobs are missing. Tagging replaces the manifest of the same tag
//! (`org.opencontainers.image.ref.name`) and keeps every other entry of the index as it was.
//! Temporary files a killed export left are removed when the layout is next opened, and every
//! rename is followed by a sync of its directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::Digest as _;

pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The annotation that names a manifest's tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const TMP_PREFIX: &str = ".strata-tmp-";

/// Check that `digest` is `sha256:` and 64 lowercase hex digits (digests from manifests and
/// registries are untrusted: they end up in paths and URLs).
pub fn valid_digest(digest: &str) -> anyhow::Result<()> {
    let ok = digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    if !ok {
        bail!("digest `{digest}`: expected sha256: and 64 lowercase hex digits");
    }
    Ok(())
}

/// A content descriptor: what a manifest or index says about a blob.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:HEX`.
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// An image layout directory, opened for writing (locked: two strata exports into one layout
/// take turns; the lock is on the directory itself, so the layout holds no file of strata's).
pub struct Layout {
    dir: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Layout {
    /// Open the layout at `dir`, creating it when the directory is missing or empty. A non-empty
    /// directory that is not an image layout is refused.
    pub fn open(dir: &Path) -> anyhow::Result<Layout> {
        let marker = dir.join("oci-layout");
        let empty = !dir.exists() || fs_err::read_dir(dir)?.next().is_none();
        if empty {
            fs_err::create_dir_all(dir.join("blobs/sha256"))?;
            write_atomic(dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        } else {
            let text = fs_err::read_to_string(&marker).map_err(|_| {
                anyhow::anyhow!(
                    "`{}` is not empty and is not an OCI image layout (it has no oci-layout file)",
                    dir.display()
                )
            })?;
            let v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("`{}`: not JSON", marker.display()))?;
            if v["imageLayoutVersion"] != "1.0.0" {
                bail!("`{}`: imageLayoutVersion {}, expected \"1.0.0\"", marker.display(), v["imageLayoutVersion"]);
            }
            fs_err::create_dir_all(dir.join("blobs/sha256"))?;
        }
        let handle = fs_err::File::open(dir)?.into_parts().0;
        let lock = nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("cannot lock `{}`", dir.display()))?;
        let layout = Layout { dir: dir.to_path_buf(), _lock: lock };
        layout.remove_temporaries()?;
        Ok(layout)
    }

    /// Open (creating) a layout that several strata processes write blobs into at once, and
    /// that nobody tags: the store's cache of layer blobs. The lock is shared, and temporary
    /// files are left alone (another writer may own them); [`Layout::try_exclusive`] is how gc
    /// gets it to itself.
    pub fn open_shared(dir: &Path) -> anyhow::Result<Layout> {
        if !dir.join("oci-layout").is_file() {
            fs_err::create_dir_all(dir.join("blobs/sha256"))?;
            write_atomic(dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let handle = fs_err::File::open(dir)?.into_parts().0;
        let lock = nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockShared)
            .map_err(|(_, e)| e)
            .with_context(|| format!("cannot lock `{}`", dir.display()))?;
        Ok(Layout { dir: dir.to_path_buf(), _lock: lock })
    }

    /// The layout at `dir` for this process alone, or `None` while another one uses it.
    pub fn try_exclusive(dir: &Path) -> anyhow::Result<Option<Layout>> {
        let handle = fs_err::File::open(dir)?.into_parts().0;
        match nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Layout { dir: dir.to_path_buf(), _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock `{}`", dir.display())),
        }
    }

    /// Remove the temporary files writers left (only with the layout to oneself).
    pub fn remove_temporaries(&self) -> anyhow::Result<u64> {
        let mut removed = 0;
        for sub in [self.dir.clone(), self.dir.join("blobs/sha256")] {
            for e in fs_err::read_dir(&sub)? {
                let e = e?;
                if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    fs_err::remove_file(e.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the blob with this digest (`sha256:HEX`), present or not.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    /// Whether the layout holds the blob, with the expected size.
    pub fn has_blob(&self, digest: &str, size: u64) -> bool {
        fs_err::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// A blob to stream into; [`BlobWriter::finish`] puts it in place under its digest.
    pub fn blob_writer(&self) -> anyhow::Result<BlobWriter> {
        let file = tempfile::Builder::new().prefix(TMP_PREFIX).tempfile_in(self.dir.join("blobs/sha256"))?;
        Ok(BlobWriter { file: std::io::BufWriter::with_capacity(1 << 20, file), hash: sha2::Sha256::new(), size: 0 })
    }

    /// Write a small blob (a manifest, a config); returns its descriptor with `media_type`.
    pub fn put_bytes(&self, media_type: &str, bytes: &[u8]) -> anyhow::Result<Descriptor> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)?;
        let (digest, size, _) = w.finish(self)?;
        Ok(Descriptor { media_type: media_type.into(), digest, size, annotations: Default::default() })
    }

    /// Point `tag` at `manifest` in `index.json`, replacing what the tag named before. Every
    /// other entry, and every other field of the index, is kept as it was (platforms, other
    /// tools' annotations).
    pub fn tag(&self, tag: &str, manifest: &Descriptor) -> anyhow::Result<()> {
        let path = self.dir.join("index.json");
        let mut index: serde_json::Map<String, serde_json::Value> = if path.exists() {
            serde_json::from_slice(&fs_err::read(&path)?)
                .with_context(|| format!("`{}`: not a JSON object", path.display()))?
        } else {
            serde_json::Map::new()
        };
        let mut list = match index.remove("manifests") {
            None => vec![],
            Some(serde_json::Value::Array(list)) => list,
            Some(_) => bail!("`{}`: `manifests` is not a list", path.display()),
        };
        list.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
        let mut entry = manifest.clone();
        entry.annotations.insert(REF_NAME.into(), tag.into());
        list.push(serde_json::to_value(entry)?);
        index.insert("schemaVersion".into(), 2.into());
        index.insert("mediaType".into(), INDEX_MEDIA_TYPE.into());
        index.insert("manifests".into(), list.into());
        write_atomic(&self.dir, "index.json", serde_json::to_string(&index)?.as_bytes())
    }
}

/// Write `dir/name` through a synced temporary file and a rename, the directory synced after.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = tempfile::Builder::new().prefix(TMP_PREFIX).tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name))
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write `{}`", dir.join(name).display()))?;
    sync_dir(dir)
}

/// Make the renames in `dir` durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A blob being written: hashed and counted as it goes.
pub struct BlobWriter {
    file: std::io::BufWriter<tempfile::NamedTempFile>,
    hash: sha2::Sha256,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Sync and rename the blob to its digest; returns (`sha256:HEX`, size, whether the layout
    /// had it already).
    pub fn finish(self, layout: &Layout) -> anyhow::Result<(String, u64, bool)> {
        let digest = format!("sha256:{}", hex::encode(self.hash.finalize()));
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        let target = layout.blob_path(&digest);
        if layout.has_blob(&digest, self.size) {
            return Ok((digest, self.size, true));
        }
        file.as_file().sync_all()?;
        file.persist(&target).map_err(|e| e.error).with_context(|| format!("cannot write `{}`", target.display()))?;
        sync_dir(&layout.dir.join("blobs/sha256"))?;
        Ok((digest, self.size, false))
    }
}

/// Counts and hashes what passes through (the uncompressed tar of a layer: its diff id).
pub struct HashingWriter<W: Write> {
    pub inner: W,
    hash: sha2::Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hash: sha2::Sha256::new() }
    }

    /// (`sha256:HEX`, the inner writer).
    pub fn finish(self) -> (String, W) {
        (format!("sha256:{}", hex::encode(self.hash.finalize())), self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
