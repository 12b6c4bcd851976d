//! Importing an OCI image from an image layout (`oci:DIR[:TAG]`) as a store entry: the base a
//! derived description names with `derived-from = "oci:DIR:TAG"`.
//!
//! The tag is resolved through `index.json` to a manifest (through an image index, to the entry
//! for linux and the build's architecture); the entry is keyed by the manifest's digest, so an
//! image is imported once. Every blob must be a regular file of its descriptor's size, and is
//! hashed as it is read: nothing of a layer is recorded before its digest matched.
//! Each layer is read by [`crate::packages::tar`] (paths checked as for packages: no `..`, no
//! absolute paths, nothing through a symlink, limits on sizes and members) into a tree of its own,
//! then laid over the layers below:
//! - `.wh.NAME` removes NAME from the layers below, `.wh..wh..opq` empties its directory of
//!   everything from below; a whiteout never names anything outside the tree (its path was
//!   checked like any other) and never survives into the result;
//! - a directory the layer does not list itself (only a path below it) keeps the metadata it has
//!   below; a listed one takes the layer's;
//! - hardlink groups stay within their layer and are numbered anew over the whole tree.
//!
//! Invariants: nothing is recorded unless every layer was read whole and matched its digest;
//! the entry's tree is what `umoci unpack` or a container runtime would see.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::layout::{Descriptor, Layout, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, REF_NAME};
use super::registry::Client;
use crate::description::ImageReference;
use crate::packages::tar::TarReader;
use crate::packages::Limits;
use crate::store::batch::Batch;
use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::meta::Meta;
use crate::store::tree::{Name, Node, Tree, TreeRows};
use crate::util::progress::Progress;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Marks, while layers are read, a directory the layer did not list (see the module doc).
const IMPLICIT_XATTR: &[u8] = b"strata.oci.implicit";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// The entry key of the image whose manifest has this digest.
pub fn image_key(manifest_digest: &str) -> Digest {
    entry_key(EntryKind::Import, &[("oci-manifest", manifest_digest.as_bytes())], &[])
}

/// Open a blob: a regular file (not a link, a fifo or a device) of exactly the descriptor's size.
fn open_blob(dir: &Path, d: &Descriptor) -> anyhow::Result<fs_err::File> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let path = blob_path(dir, &d.digest)?;
    // O_NONBLOCK: opening a fifo must not wait for a writer (it is refused just below).
    let file = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("blob {}", d.digest))?;
    let st = file.metadata()?;
    if !st.is_file() || st.len() != d.size {
        bail!(
            "blob {}: expected a regular file of {} bytes, found {}",
            d.digest,
            d.size,
            if st.is_file() { format!("{} bytes", st.len()) } else { "something else".to_string() }
        );
    }
    Ok(file)
}

/// A blob's bytes, checked against its descriptor (small blobs: manifests, indexes, configs).
fn read_blob(dir: &Path, d: &Descriptor, max: u64) -> anyhow::Result<Vec<u8>> {
    if d.size > max {
        bail!("blob {} of {} bytes: more than the {max} a {} may have", d.digest, d.size, d.media_type);
    }
    let mut bytes = Vec::with_capacity(d.size as usize);
    let mut r = Hashing::new(open_blob(dir, d)?.take(d.size));
    r.read_to_end(&mut bytes)?;
    r.check(d)?;
    Ok(bytes)
}

fn blob_path(dir: &Path, digest: &str) -> anyhow::Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| anyhow::anyhow!("digest `{digest}`: expected sha256: and 64 lowercase hex digits"))?;
    Ok(dir.join("blobs/sha256").join(hex))
}

/// Hashes and counts what is read through it.
struct Hashing<R> {
    inner: R,
    hash: sha2::Sha256,
    len: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        use sha2::Digest as _;
        Hashing { inner, hash: sha2::Sha256::new(), len: 0 }
    }

    /// Read what is left, then compare with the descriptor's digest and size.
    fn check(mut self, d: &Descriptor) -> anyhow::Result<()> {
        use sha2::Digest as _;
        std::io::copy(&mut self, &mut std::io::sink())?;
        let got = format!("sha256:{}", hex::encode(self.hash.finalize()));
        if got != d.digest || self.len != d.size {
            bail!("blob {} does not match its descriptor: its content has another digest", d.digest);
        }
        Ok(())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Whether a media type is an image index (OCI) or a manifest list (Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type == INDEX_MEDIA_TYPE || media_type == DOCKER_LIST
}

/// Whether a media type is an image manifest (OCI or Docker).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == MANIFEST_MEDIA_TYPE || media_type == DOCKER_MANIFEST
}

/// The descriptor an image index (`index`, the bytes of the blob `digest`) holds for linux on
/// `arch` (`uname -m` style).
pub fn platform_manifest(index: &[u8], digest: &str, arch: &str) -> anyhow::Result<Descriptor> {
    let list: serde_json::Value =
        serde_json::from_slice(index).with_context(|| format!("image index {digest}: not JSON"))?;
    let want = super::image::oci_arch(arch);
    let entries = list["manifests"].as_array().cloned().unwrap_or_default();
    let found =
        entries.iter().find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == want).cloned();
    let Some(found) = found else {
        let have: Vec<String> = entries
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap_or("?"),
                    m["platform"]["architecture"].as_str().unwrap_or("?")
                )
            })
            .collect();
        bail!("image index {digest} has no manifest for linux/{want} (it has: {})", have.join(", "));
    };
    serde_json::from_value(found).with_context(|| format!("image index {digest}: a manifest descriptor"))
}

/// The manifest `tag` names in the layout at `dir` (the only one, without a tag), for `arch`
/// (`uname -m` style); returns its descriptor and parsed JSON.
pub fn resolve(dir: &Path, tag: Option<&str>, arch: &str) -> anyhow::Result<(Descriptor, serde_json::Value)> {
    let index_path = dir.join("index.json");
    let text = fs_err::read(&index_path).with_context(|| format!("`{}` is not an OCI image layout", dir.display()))?;
    let index: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("`{}`: not JSON", index_path.display()))?;
    let manifests: Vec<Descriptor> = serde_json::from_value(index["manifests"].clone())
        .with_context(|| format!("`{}`: `manifests` is not a list of descriptors", index_path.display()))?;
    let tags: Vec<&str> = manifests.iter().filter_map(|m| m.annotations.get(REF_NAME).map(String::as_str)).collect();
    let chosen = match tag {
        Some(t) => manifests.iter().find(|m| m.annotations.get(REF_NAME).map(String::as_str) == Some(t)),
        None if manifests.len() == 1 => manifests.first(),
        None => bail!(
            "`{}` holds {} images: name one with oci:DIR:TAG (tags: {})",
            dir.display(),
            manifests.len(),
            tags.join(", ")
        ),
    };
    let Some(mut desc) = chosen.cloned() else {
        bail!("`{}` has no tag `{}` (tags: {})", dir.display(), tag.unwrap_or_default(), tags.join(", "));
    };
    // An image index: the entry for this platform.
    if is_index(&desc.media_type) {
        desc = platform_manifest(&read_blob(dir, &desc, 4 << 20)?, &desc.digest, arch)?;
    }
    if !is_manifest(&desc.media_type) {
        bail!("{}: media type `{}` is not an image manifest", desc.digest, desc.media_type);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&read_blob(dir, &desc, 4 << 20)?)
        .with_context(|| format!("manifest {}: not JSON", desc.digest))?;
    Ok((desc, manifest))
}

/// Read the layer `d` (number `i` of its image) from the layout at `dir`, decompressed, through
/// `read`. The digest is checked on the bytes `read` consumed, and whatever it left, before its
/// result is returned (no second read a swapped file could pass): a bad digest explains a bad tar
/// too, so it is the error reported.
pub fn read_layer<T>(
    dir: &Path,
    i: usize,
    d: &Descriptor,
    read: impl FnOnce(&mut dyn Read) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let ctx = || format!("layer {i} ({})", d.digest);
    let mut raw =
        Hashing::new(std::io::BufReader::with_capacity(1 << 20, open_blob(dir, d).with_context(ctx)?.take(d.size)));
    let result = {
        let mut reader: Box<dyn Read + '_> = match d.media_type.as_str() {
            "application/vnd.oci.image.layer.v1.tar" => Box::new(&mut raw),
            "application/vnd.oci.image.layer.v1.tar+gzip" | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                Box::new(flate2::read::MultiGzDecoder::new(&mut raw))
            }
            "application/vnd.oci.image.layer.v1.tar+zstd" => Box::new(zstd::stream::read::Decoder::new(&mut raw)?),
            other => bail!("layer {i} ({}): media type `{other}` is not a layer strata reads", d.digest),
        };
        read(&mut reader)
    };
    raw.check(d).with_context(ctx)?;
    result.with_context(ctx)
}

/// The layers a manifest lists.
pub fn manifest_layers(desc: &Descriptor, manifest: &serde_json::Value) -> anyhow::Result<Vec<Descriptor>> {
    serde_json::from_value(manifest["layers"].clone())
        .with_context(|| format!("manifest {}: `layers` is not a list of descriptors", desc.digest))
}

/// What laying layers over a tree made.
pub struct Applied {
    pub tree: Digest,
    pub files: u64,
    pub bytes: u64,
}

/// Lay the layers `layers` (each with its number in the image) of the layout at `dir` over
/// `below` (a tree whose hardlink groups number at most `below_links`), each recorded once its
/// digest matched; the result's hardlink groups are numbered anew.
pub fn apply_layers(
    store: &mut Store,
    dir: &Path,
    layers: &[(usize, Descriptor)],
    below: Option<(Digest, u32)>,
    limits: &Limits,
) -> anyhow::Result<Applied> {
    let mut tree: Option<Digest> = below.map(|(t, _)| t);
    let (mut files, mut bytes) = (0, 0);
    let mut offset = below.map_or(0, |(_, links)| links);
    for (i, layer) in layers {
        let ctx = || format!("layer {i} ({})", layer.digest);
        let (top, batch, f, b) = read_layer(dir, *i, layer, |reader| {
            let mut tar = TarReader::new(store);
            tar.implicit_dirs = Meta { mode: 0o755, uid: 0, gid: 0, xattrs: vec![(IMPLICIT_XATTR.to_vec(), vec![])] };
            tar.newlines = true;
            let builder = tar.read(Box::new(reader), limits.max_bytes, limits.max_members, None)?;
            let TarReader { mut batch, files, bytes, .. } = tar;
            let top = builder.finish(&mut batch.trees);
            Ok((top, batch, files, bytes))
        })?;
        files += f;
        bytes += b;
        // The layer's trees go in first: laying it over the layers below reads them.
        batch.commit(store, None).with_context(ctx)?;
        let mut out = Batch::new();
        let mut merge = Merge { store, out: &mut out.trees, offset, max_link: 0 };
        let below = match &tree {
            Some(t) => Some(store.tree(t)?),
            None => None,
        };
        let merged = merge.dir(below, store.tree(&top)?).with_context(ctx)?;
        offset = offset.checked_add(merge.max_link).context("too many hardlink groups")?;
        out.commit(store, None).with_context(ctx)?;
        tree = Some(merged);
    }
    let Some(tree) = tree else { bail!("an image without layers") };
    let mut out = Batch::new();
    let tree = renumber_links(store, &tree, &mut out.trees)?;
    out.commit(store, None)?;
    Ok(Applied { tree, files, bytes })
}

/// Record the runtime settings of the image `manifest` (its blobs in the layout at `dir`) for
/// the entry `key`, before the entry itself: an entry is never without them (a row whose import
/// failed is removed by a gc that runs alone).
pub fn record_settings(
    store: &mut Store,
    dir: &Path,
    key: &Digest,
    desc: &Descriptor,
    manifest: &serde_json::Value,
) -> anyhow::Result<()> {
    let settings = runtime_settings(dir, manifest).with_context(|| format!("manifest {}: its config", desc.digest))?;
    let tx = store.db_mut().transaction()?;
    tx.sql().execute(
        "INSERT OR REPLACE INTO oci_configs (entry, config) VALUES (?1, ?2)",
        rusqlite::params![key.as_bytes(), settings.to_string()],
    )?;
    tx.commit()
}

/// Import the image whose manifest is `desc` (parsed: `manifest`), its blobs in the layout at
/// `dir`, as the entry `name`.
pub fn import_manifest(
    store: &mut Store,
    dir: &Path,
    desc: &Descriptor,
    manifest: &serde_json::Value,
    name: String,
    limits: &Limits,
) -> anyhow::Result<EntryRow> {
    let key = image_key(&desc.digest);
    let layers = manifest_layers(desc, manifest)?;
    if layers.is_empty() {
        bail!("manifest {}: an image without layers", desc.digest);
    }
    let layers: Vec<(usize, Descriptor)> = layers.into_iter().enumerate().collect();
    let applied = apply_layers(store, dir, &layers, None, limits)?;
    record_settings(store, dir, &key, desc, manifest)?;
    Memo::with_key(EntryKind::Import, name, key)
        .record(store, Built::recorded(applied.tree).totals(applied.files, applied.bytes))
}

/// The `config` object of the image config `manifest` names (`{}` when it has none): only the
/// keys a runtime reads, each of the type the image specification gives it.
fn runtime_settings(dir: &Path, manifest: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let config = image_config(dir, manifest)?;
    let mut out = serde_json::Map::new();
    if let Some(c) = config["config"].as_object() {
        for (key, ok) in [
            ("User", c.get("User").is_some_and(|v| v.is_string())),
            ("WorkingDir", c.get("WorkingDir").is_some_and(|v| v.is_string())),
            ("StopSignal", c.get("StopSignal").is_some_and(|v| v.is_string())),
            ("Entrypoint", c.get("Entrypoint").is_some_and(strings)),
            ("Cmd", c.get("Cmd").is_some_and(strings)),
            ("Env", c.get("Env").is_some_and(strings)),
            (
                "Labels",
                c.get("Labels").is_some_and(|v| v.as_object().is_some_and(|m| m.values().all(|x| x.is_string()))),
            ),
            ("ExposedPorts", c.get("ExposedPorts").is_some_and(|v| v.is_object())),
            ("Volumes", c.get("Volumes").is_some_and(|v| v.is_object())),
        ] {
            match c.get(key) {
                Some(v) if ok => {
                    out.insert(key.to_string(), v.clone());
                }
                Some(serde_json::Value::Null) | None => {}
                Some(_) => bail!("`config.{key}` has the wrong type"),
            }
        }
    }
    Ok(serde_json::Value::Object(out))
}

fn strings(v: &serde_json::Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(|x| x.is_string()))
}

/// The image manifest `r` names, for linux on `arch` (through an image index), with its bytes.
pub fn resolve_remote(
    client: &Client,
    r: &ImageReference,
    arch: &str,
) -> anyhow::Result<(Descriptor, serde_json::Value)> {
    let (mut desc, mut bytes) = client.manifest(r.manifest_reference())?;
    if is_index(&desc.media_type) {
        let picked = platform_manifest(&bytes, &desc.digest, arch)?;
        (desc, bytes) = client.manifest(&picked.digest)?;
    }
    if !is_manifest(&desc.media_type) {
        bail!("{r}: media type `{}` is not an image manifest", desc.media_type);
    }
    let manifest = serde_json::from_slice(&bytes).with_context(|| format!("{r}: manifest {}", desc.digest))?;
    Ok((desc, manifest))
}

/// Download the image `desc` (from [`resolve_remote`]) into a scratch layout under the store's
/// `tmp/`, each blob checked against its digest, and import it as the entry named `r`.
pub fn import_remote(
    store: &mut Store,
    client: &Client,
    r: &ImageReference,
    desc: &Descriptor,
    manifest: &serde_json::Value,
    limits: &Limits,
    progress: &Progress,
) -> anyhow::Result<EntryRow> {
    let work = download(store, client, r, desc, manifest, progress)?;
    import_manifest(store, work.path(), desc, manifest, r.to_string(), limits)
}

/// Download the config and layers of the image `desc` (from [`resolve_remote`]) into a scratch
/// layout under the store's `tmp/`, each blob checked against its digest as it arrives.
pub fn download(
    store: &Store,
    client: &Client,
    r: &ImageReference,
    desc: &Descriptor,
    manifest: &serde_json::Value,
    progress: &Progress,
) -> anyhow::Result<tempfile::TempDir> {
    let work = tempfile::Builder::new().prefix("oci-pull-").tempdir_in(store.tmp_dir())?;
    let layout = Layout::open(work.path())?;
    let mut blobs: Vec<Descriptor> = vec![serde_json::from_value(manifest["config"].clone())
        .with_context(|| format!("{r}: manifest {}: `config` is not a descriptor", desc.digest))?];
    blobs.extend(manifest_layers(desc, manifest).with_context(|| r.to_string())?);
    let total = blobs.iter().fold(0u64, |t, b| t.saturating_add(b.size));
    let bar = progress.bytes(total, "downloading layers");
    for b in &blobs {
        if !layout.has_blob(&b.digest, b.size) {
            let mut w = layout.blob_writer()?;
            client.blob_to(b, &mut w)?;
            w.finish(&layout)?;
        }
        bar.inc(b.size);
    }
    bar.finish_and_clear();
    Ok(work)
}

/// The image config `manifest` names, parsed (its blob in the layout at `dir`).
pub fn image_config(dir: &Path, manifest: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let d: Descriptor = serde_json::from_value(manifest["config"].clone()).context("`config` is not a descriptor")?;
    serde_json::from_slice(&read_blob(dir, &d, 4 << 20)?).with_context(|| format!("config blob {}: not JSON", d.digest))
}

/// Laying one layer's tree over the tree below.
struct Merge<'a> {
    store: &'a Store,
    out: &'a mut TreeRows,
    /// Added to this layer's hardlink group numbers, so they never meet the groups below.
    offset: u32,
    max_link: u32,
}

fn strip(meta: &mut Meta, name: &[u8]) -> bool {
    let before = meta.xattrs.len();
    meta.xattrs.retain(|(k, _)| k.as_slice() != name);
    meta.xattrs.len() != before
}

impl Merge<'_> {
    /// `top` (a layer directory) over `below` (none: nothing below, or an opaque directory).
    fn dir(&mut self, below: Option<Tree>, mut top: Tree) -> anyhow::Result<Digest> {
        let implicit = strip(&mut top.meta, IMPLICIT_XATTR);
        let opaque = top.entries.iter().any(|(n, _)| n.as_bytes() == OPAQUE);
        let meta = match (&below, implicit) {
            (Some(b), true) => b.meta.clone(),
            _ => top.meta.clone(),
        };
        let mut entries: BTreeMap<Name, Node> = match below {
            Some(b) if !opaque => b.entries.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        // Whiteouts first: they remove what is below, whatever their place in the order.
        for (name, _) in &top.entries {
            if let Some(hidden) = name.as_bytes().strip_prefix(b".wh.") {
                if name.as_bytes() != OPAQUE {
                    let hidden = Name::new(hidden).map_err(|e| anyhow::anyhow!("whiteout `{name:?}`: {e}"))?;
                    entries.remove(&hidden);
                }
            }
        }
        for (name, node) in top.entries {
            if name.as_bytes().starts_with(b".wh.") {
                continue;
            }
            let merged = match (entries.remove(&name), node) {
                (Some(Node::Directory { tree: b }), Node::Directory { tree: t }) => {
                    let (b, t) = (self.store.tree(&b)?, self.store.tree(&t)?);
                    Node::Directory { tree: self.dir(Some(b), t)? }
                }
                (below, Node::Directory { tree: t }) => {
                    let t = self.store.tree(&t)?;
                    if below.is_some() && t.meta.xattrs.iter().any(|(k, _)| k.as_slice() == IMPLICIT_XATTR) {
                        // A path below a symlink or a file of the layers below: a runtime would
                        // follow the link; strata does not resolve links inside layers.
                        bail!(
                            "`{}` in this layer lies below a non-directory of the layers below (a symlink?): not supported",
                            crate::util::text::escape_path(name.as_bytes())
                        );
                    }
                    Node::Directory { tree: self.dir(None, t)? }
                }
                (_, Node::File { meta, size, content, link }) if link != 0 => {
                    self.max_link = self.max_link.max(link);
                    let link = link.checked_add(self.offset).context("too many hardlink groups")?;
                    Node::File { meta, size, content, link }
                }
                (_, n) => n,
            };
            entries.insert(name, merged);
        }
        Ok(Tree { meta, entries: entries.into_iter().collect() }.encode_into(self.out))
    }
}

/// The tree with its hardlink groups numbered 1, 2, … in sorted depth-first order of first
/// appearance, and groups left with one member dissolved (link 0), as imported trees have them.
fn renumber_links(store: &Store, root: &Digest, out: &mut TreeRows) -> anyhow::Result<Digest> {
    fn count(store: &Store, id: &Digest, counts: &mut HashMap<u32, u32>, order: &mut Vec<u32>) -> anyhow::Result<()> {
        for (_, node) in store.tree(id)?.entries {
            match node {
                Node::Directory { tree } => count(store, &tree, counts, order)?,
                Node::File { link, .. } if link != 0 => {
                    let c = counts.entry(link).or_insert(0);
                    if *c == 0 {
                        order.push(link);
                    }
                    *c += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
    fn rewrite(store: &Store, id: &Digest, map: &HashMap<u32, u32>, out: &mut TreeRows) -> anyhow::Result<Digest> {
        let mut t = store.tree(id)?;
        let mut changed = false;
        for (_, node) in t.entries.iter_mut() {
            match node {
                Node::Directory { tree } => {
                    let new = rewrite(store, tree, map, out)?;
                    changed |= new != *tree;
                    *tree = new;
                }
                Node::File { link, .. } if *link != 0 => {
                    let new = map.get(link).copied().unwrap_or(0);
                    changed |= new != *link;
                    *link = new;
                }
                _ => {}
            }
        }
        Ok(if changed { t.encode_into(out) } else { *id })
    }
    let mut counts = HashMap::new();
    let mut order = vec![];
    count(store, root, &mut counts, &mut order)?;
    let mut map = HashMap::new();
    for link in order {
        if counts[&link] >= 2 {
            let next = map.len() as u32 + 1;
            map.insert(link, next);
        }
    }
    rewrite(store, root, &map, out)
}
