//! Exporting an image as an OCI image: one layer per step that changed the root tree, base first.
//!
//! The layers are the root trees an image's entries reach (imports, package roots, the steps
//! after them), in dependency order, consecutive equal trees once: layer N is the change from
//! tree N-1 to tree N ([`super::layer`]). A derived image reaches its base's trees first, so its
//! first layers are the base's, byte for byte, and a registry or layout stores them once.
//!
//! Invariants: the same image, compression and source date give the same blobs, config and
//! manifest digests on any machine (deterministic tars, canonical JSON with sorted maps, times
//! from the source date). A layer already made for the same pair of trees is a lookup (its
//! digests are recorded in the store) and is not written again when the layout has its blob.
//! Digests are SHA-256, as the OCI specification requires; the strata tree of every layer and
//! the entry of the image are kept as annotations (`dev.strata.tree`, `dev.strata.entry`).

use std::collections::BTreeMap;
use std::io::Write;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::layer;
use super::layout::{Descriptor, Layout, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::description::Container;
use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::util::progress::Progress;

/// The layer writer's version: part of every recorded layer's key.
const FORMAT: i64 = 1;
/// The annotation holding a strata tree id (on layers and the manifest).
pub const TREE_ANNOTATION: &str = "dev.strata.tree";
pub const ENTRY_ANNOTATION: &str = "dev.strata.entry";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How layers are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// Where an export puts its blobs and its manifest: an image layout ([`Layout`] itself), a
/// registry ([`super::registry::Push`]) or an archive ([`super::archive`]). Layers are made
/// into [`Target::staging`] only when the destination lacks them and the staging layout has
/// no copy (a registry's and an archive's staging layout is the store's blob cache).
pub trait Target {
    /// `oci:DIR:TAG`, `docker://HOST/REPO:TAG`: for reports.
    fn name(&self) -> String;
    /// Whether the destination has the blob already (then it is neither made nor sent).
    fn has_blob(&mut self, digest: &str, size: u64) -> anyhow::Result<bool>;
    /// The layout new blobs are written into first.
    fn staging(&self) -> &Layout;
    /// Hand on a blob now in [`Target::staging`]; returns whether its bytes were sent (a
    /// registry may mount it from another repository instead).
    fn put_blob(&mut self, digest: &str, size: u64) -> anyhow::Result<bool>;
    /// Point `tag` at `manifest` (its blob in [`Target::staging`]), after every blob it names.
    fn tag(&mut self, tag: &str, manifest: &Descriptor) -> anyhow::Result<()>;
    /// Whether [`Target::staging`] is the destination itself (a layout).
    fn stages_in_place(&self) -> bool {
        false
    }
    /// Complete the destination, after the last tag (an archive is written now).
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A layout is its own staging area.
pub struct LayoutTarget {
    pub layout: Layout,
    pub tag: String,
}

impl Target for LayoutTarget {
    fn name(&self) -> String {
        format!("oci:{}:{}", self.layout.dir().display(), self.tag)
    }

    fn has_blob(&mut self, digest: &str, size: u64) -> anyhow::Result<bool> {
        Ok(self.layout.has_blob(digest, size))
    }

    fn staging(&self) -> &Layout {
        &self.layout
    }

    fn stages_in_place(&self) -> bool {
        true
    }

    fn put_blob(&mut self, _digest: &str, _size: u64) -> anyhow::Result<bool> {
        Ok(true)
    }

    fn tag(&mut self, tag: &str, manifest: &Descriptor) -> anyhow::Result<()> {
        self.layout.tag(tag, manifest)
    }
}

/// How to export.
pub struct OciTo<'a> {
    pub tag: &'a str,
    /// What a runtime starts, and how (KIWI `<containerconfig>`, TOML `[container]`); its
    /// additional tags name the image too.
    pub container: Option<&'a Container>,
    pub compression: Compression,
    /// Every timestamp: the tar entries', the config's `created`.
    pub source_date: u64,
    /// `uname -m` style (`x86_64`); written as the OCI name (`amd64`).
    pub arch: &'a str,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    /// The step whose tree the layer ends at (for an ostree-native container: what it holds).
    pub step: String,
    /// The store tree the layer ends at (none for an ostree-native container's layers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<Digest>,
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    /// Written now (false: the destination had it).
    pub written: bool,
    /// The layer's annotations in the manifest.
    #[serde(skip)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OciReport {
    /// `oci:DIR:TAG`, `docker://HOST/REPO:TAG`, `oci-archive:FILE:TAG`.
    pub destination: String,
    pub tag: String,
    /// The manifest's digest.
    pub manifest: String,
    pub config: String,
    pub compression: Compression,
    pub layers: Vec<LayerReport>,
    /// Bytes of layer and config blobs written (or sent) now (the manifest, a few hundred
    /// bytes, is not counted).
    pub bytes_written: u64,
}

/// The root trees `entry`'s steps made, dependencies first, each with its step's name;
/// consecutive equal trees once, and the entry's own tree last.
pub fn step_trees(store: &Store, entry: &EntryRow) -> anyhow::Result<Vec<(Digest, String)>> {
    let mut out: Vec<(Digest, String)> = vec![];
    for e in store.closure(&entry.key)? {
        if matches!(e.kind.as_str(), "import" | "rootfs" | "step") && out.last().is_none_or(|(t, _)| *t != e.tree) {
            out.push((e.tree, e.name));
        }
    }
    if out.last().is_none_or(|(t, _)| *t != entry.tree) {
        out.push((entry.tree, entry.name.clone()));
    }
    Ok(out)
}

/// The OCI name of an architecture given as `uname -m` does.
pub fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "i686" | "i386" => "386",
        "armv7l" => "arm",
        other => other,
    }
}

/// Export `entry` (the image `image`, at `version`) to `target` under `to.tag`.
pub fn export(
    store: &mut Store,
    entry: &EntryRow,
    image: &str,
    version: Option<&str>,
    to: &OciTo<'_>,
    target: &mut dyn Target,
    progress: &Progress,
) -> anyhow::Result<OciReport> {
    // Each layer as (from, to, step): the first tree cut by package when it can be, then each
    // step's change.
    let trees = step_trees(store, entry)?;
    let mut plan: Vec<(Option<Digest>, Digest, String)> = vec![];
    let mut prev: Option<Digest> = None;
    for (i, (tree, step)) in trees.iter().enumerate() {
        let chunks = if i == 0 { super::chunk::chunks(store, tree)? } else { None };
        match chunks {
            Some(chunks) => {
                plan.extend(chunks.into_iter().map(|c| (None, c.tree, format!("{step}: {}", c.label))));
            }
            None => plan.push((prev, *tree, step.clone())),
        }
        prev = Some(*tree);
    }
    let bar = progress.items(plan.len() as u64, "layers");
    let mut layers = Vec::with_capacity(plan.len());
    let mut bytes_written = 0;
    for (prev, tree, step) in &plan {
        let known = recorded(store, prev.as_ref(), tree, to)?;
        let placed = place_layer(target, known, &mut |layout| write_layer(store, layout, prev.as_ref(), tree, to))?;
        if placed.made {
            record(store, prev.as_ref(), tree, to, &placed.diff_id, &placed.digest, placed.size)?;
        }
        if placed.sent {
            bytes_written += placed.size;
        }
        let report = LayerReport {
            step: step.clone(),
            tree: Some(*tree),
            digest: placed.digest,
            diff_id: placed.diff_id,
            size: placed.size,
            written: placed.sent,
            annotations: tree_annotation(tree),
        };
        layers.push(report);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let image = Image { entry, image, version, labels: BTreeMap::new(), history_prefix: "strata: " };
    write_image(store, &image, to, target, layers, bytes_written)
}

/// A blob written into a layout: (diff id, digest, size, whether the layout had it already).
pub type MadeBlob = (String, String, u64, bool);

/// A layer put into a destination.
pub struct Placed {
    pub diff_id: String,
    pub digest: String,
    pub size: u64,
    /// Made now (then the caller records its digests).
    pub made: bool,
    /// Its bytes were sent (or written) now.
    pub sent: bool,
}

/// Put a layer into `target`: one made before (`known`: diff id, digest, size) that the
/// destination has is neither made nor sent; one the staging layout (the store's blob cache) has
/// is handed on as it is; else `make` writes it into the staging layout.
pub fn place_layer(
    target: &mut dyn Target,
    known: Option<(String, String, u64)>,
    make: &mut dyn FnMut(&Layout) -> anyhow::Result<MadeBlob>,
) -> anyhow::Result<Placed> {
    match known {
        Some((diff_id, digest, size)) if target.has_blob(&digest, size)? => {
            Ok(Placed { diff_id, digest, size, made: false, sent: false })
        }
        Some((diff_id, digest, size)) if target.staging().has_blob(&digest, size) => {
            let sent = target.put_blob(&digest, size)?;
            Ok(Placed { diff_id, digest, size, made: false, sent })
        }
        _ => {
            let (diff_id, digest, size, existed) = make(target.staging())?;
            // Made now, but the destination may have it (another machine sent it, or the same
            // bytes came from another pair of trees): then it is not sent again.
            let there = if target.stages_in_place() { existed } else { target.has_blob(&digest, size)? };
            let sent = !there && target.put_blob(&digest, size)?;
            Ok(Placed { diff_id, digest, size, made: true, sent })
        }
    }
}

/// What names an image besides its layers: the entry it is made of, its name and version, and
/// labels of its format (an ostree-native container's `ostree.commit`).
pub struct Image<'a> {
    pub entry: &'a EntryRow,
    pub image: &'a str,
    pub version: Option<&'a str>,
    pub labels: BTreeMap<String, String>,
    /// Before each layer's step in its history entry (`strata: `).
    pub history_prefix: &'a str,
}

/// Write the config and manifest of `image`, made of `layers` (in `target` already), tag it, and
/// finish the destination. `bytes_written` counts the layers sent; the config's bytes are added.
pub fn write_image(
    store: &Store,
    image: &Image<'_>,
    to: &OciTo<'_>,
    target: &mut dyn Target,
    layers: Vec<LayerReport>,
    mut bytes_written: u64,
) -> anyhow::Result<OciReport> {
    let Image { entry, image: name, version, .. } = *image;
    let created = crate::util::text::rfc3339(to.source_date);
    // The settings of the OCI image the chain starts from, if any, then the description's.
    // Labels: the base image's, then the title and version of this image, then the
    // description's own.
    let base = base_settings(store, entry)?.unwrap_or_default();
    let mut labels = base.labels.clone();
    labels.insert("org.opencontainers.image.title".to_string(), name.to_string());
    if let Some(v) = version {
        labels.insert("org.opencontainers.image.version".to_string(), v.to_string());
    }
    let mut c = base;
    if let Some(own) = to.container {
        c.merge(own);
        labels.extend(own.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    labels.extend(image.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let c = &c;
    let mut env: Vec<String> = vec![];
    if !c.env.contains_key("PATH") {
        env.push(DEFAULT_PATH.to_string());
    }
    env.extend(c.env.iter().map(|(k, v)| format!("{k}={v}")));
    let set = |items: &[String]| -> BTreeMap<String, Empty> { items.iter().map(|i| (i.clone(), Empty {})).collect() };
    let ports = c.expose.iter().map(|p| Container::port(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut history: Vec<History> = layers
        .iter()
        .map(|l| History {
            created: created.clone(),
            created_by: format!("{}{}", image.history_prefix, l.step),
            comment: match &l.tree {
                Some(t) => format!("tree {}", t.to_hex()),
                None => l.step.clone(),
            },
            author: None,
        })
        .collect();
    if let Some(last) = history.last_mut() {
        if let Some(by) = &c.created_by {
            last.created_by.clone_from(by);
        }
        if let Some(comment) = &c.comment {
            last.comment.clone_from(comment);
        }
        last.author = c.author.clone().or(c.maintainer.clone());
    }
    let config = Config {
        created: created.clone(),
        author: c.author.clone().or(c.maintainer.clone()),
        architecture: oci_arch(to.arch).to_string(),
        os: "linux",
        config: ImageConfig {
            user: c.user.clone(),
            exposed_ports: set(&ports),
            env,
            entrypoint: c.entrypoint.clone().filter(|e| !e.is_empty()),
            cmd: c.cmd.clone().filter(|e| !e.is_empty()),
            volumes: set(&c.volumes),
            working_dir: c.workingdir.clone(),
            labels: labels.clone(),
            stop_signal: c.stop_signal.clone(),
        },
        rootfs: RootFs { kind: "layers", diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect() },
        history,
    };
    let config_desc = target.staging().put_bytes(CONFIG_MEDIA_TYPE, &serde_json::to_vec(&config)?)?;
    if !target.has_blob(&config_desc.digest, config_desc.size)?
        && target.put_blob(&config_desc.digest, config_desc.size)?
    {
        bytes_written += config_desc.size;
    }
    let mut annotations = labels;
    annotations.insert("org.opencontainers.image.created".into(), created);
    annotations.insert(ENTRY_ANNOTATION.into(), entry.key.to_hex());
    annotations.insert(TREE_ANNOTATION.into(), entry.tree.to_hex());
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        config: config_desc.clone(),
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: to.compression.media_type().into(),
                digest: l.digest.clone(),
                size: l.size,
                annotations: l.annotations.clone(),
            })
            .collect(),
        annotations,
    };
    let manifest_desc = target.staging().put_bytes(MANIFEST_MEDIA_TYPE, &serde_json::to_vec(&manifest)?)?;
    target.tag(to.tag, &manifest_desc)?;
    for extra in c.additional_tags.iter().filter(|t| t.as_str() != to.tag) {
        target.tag(extra, &manifest_desc)?;
    }
    target.finish()?;
    Ok(OciReport {
        destination: target.name(),
        tag: to.tag.to_string(),
        manifest: manifest_desc.digest,
        config: config_desc.digest,
        compression: to.compression,
        layers,
        bytes_written,
    })
}

fn tree_annotation(tree: &Digest) -> BTreeMap<String, String> {
    [(TREE_ANNOTATION.to_string(), tree.to_hex())].into_iter().collect()
}

/// The runtime settings of the OCI image `entry` starts from (the first import in its closure
/// with settings recorded by [`super::import`]), as a container configuration.
pub fn base_settings(store: &Store, entry: &EntryRow) -> anyhow::Result<Option<crate::description::Container>> {
    use rusqlite::OptionalExtension;
    for e in store.closure(&entry.key)? {
        if e.kind != "import" {
            continue;
        }
        let text: Option<String> = store
            .db()
            .sql()
            .query_row("SELECT config FROM oci_configs WHERE entry = ?1", [e.key.as_bytes()], |r| r.get(0))
            .optional()?;
        let Some(text) = text else {
            if ["oci:", "oci-archive:", "docker://"].iter().any(|p| e.name.starts_with(p)) {
                tracing::warn!(
                    "{}: imported before strata recorded the settings of imported images: its entrypoint, environment and labels are not carried over",
                    e.name
                );
            }
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let list = |k: &str| -> Option<Vec<String>> {
            v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        };
        let text = |k: &str| v[k].as_str().map(str::to_string);
        let keys =
            |k: &str| -> Vec<String> { v[k].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default() };
        let env = list("Env")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        // The labels that describe the base image's own layers (an ostree-native container's
        // commit) do not describe an image made from it.
        let labels = v["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !k.starts_with("ostree.") && k.as_str() != "containers.bootc")
                    .filter_map(|(k, x)| x.as_str().map(|x| (k.clone(), x.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(Some(crate::description::Container {
            user: text("User"),
            workingdir: text("WorkingDir"),
            stop_signal: text("StopSignal"),
            entrypoint: list("Entrypoint"),
            cmd: list("Cmd"),
            env,
            labels,
            expose: keys("ExposedPorts"),
            volumes: keys("Volumes"),
            ..Default::default()
        }));
    }
    Ok(None)
}

/// Write the layer from `from` to `to` into the layout; returns (diff id, digest, size, whether
/// the layout had the blob already).
fn write_layer(
    store: &Store,
    layout: &Layout,
    from: Option<&Digest>,
    tree: &Digest,
    to: &OciTo<'_>,
) -> anyhow::Result<(String, String, u64, bool)> {
    write_compressed(layout, to.compression, &mut |w| {
        layer::write(store, from, tree, to.source_date, w)?;
        Ok(())
    })
}

/// Write the tar `body` writes as a blob of the layout, compressed; returns (diff id: the tar's
/// digest, digest, size, whether the layout had the blob already).
pub fn write_compressed(
    layout: &Layout,
    compression: Compression,
    body: &mut dyn FnMut(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<MadeBlob> {
    use super::layout::HashingWriter;
    let blob = layout.blob_writer()?;
    let (diff_id, mut blob) = match compression {
        Compression::Gzip => {
            let mut tar = HashingWriter::new(super::gzip::ParGz::new(blob));
            body(&mut tar)?;
            let (diff_id, gz) = tar.finish();
            (diff_id, gz.finish()?)
        }
        Compression::Zstd => {
            let mut tar = HashingWriter::new(zstd::stream::write::Encoder::new(blob, 3)?);
            body(&mut tar)?;
            let (diff_id, z) = tar.finish();
            (diff_id, z.finish()?)
        }
        Compression::None => {
            let mut tar = HashingWriter::new(blob);
            body(&mut tar)?;
            tar.finish()
        }
    };
    blob.flush()?;
    let (digest, size, existed) = blob.finish(layout)?;
    Ok((diff_id, digest, size, existed))
}

fn from_col(from: Option<&Digest>) -> Vec<u8> {
    from.map_or_else(Vec::new, |d| d.as_bytes().to_vec())
}

/// The digests of a layer made before for this pair of trees.
fn recorded(
    store: &Store,
    from: Option<&Digest>,
    tree: &Digest,
    to: &OciTo<'_>,
) -> anyhow::Result<Option<(String, String, u64)>> {
    Ok(store
        .db()
        .sql()
        .query_row(
            "SELECT diff_id, digest, size FROM oci_layers \
             WHERE from_tree = ?1 AND to_tree = ?2 AND compression = ?3 AND format = ?4 AND source_date = ?5",
            params![from_col(from), tree.as_bytes(), to.compression.as_str(), FORMAT, to.source_date as i64],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)? as u64)),
        )
        .optional()?)
}

fn record(
    store: &mut Store,
    from: Option<&Digest>,
    tree: &Digest,
    to: &OciTo<'_>,
    diff_id: &str,
    digest: &str,
    size: u64,
) -> anyhow::Result<()> {
    let tx = store.db_mut().transaction()?;
    tx.sql().execute(
        "INSERT OR REPLACE INTO oci_layers (from_tree, to_tree, compression, format, source_date, diff_id, digest, size) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            from_col(from),
            tree.as_bytes(),
            to.compression.as_str(),
            FORMAT,
            to.source_date as i64,
            diff_id,
            digest,
            size as i64
        ],
    )?;
    tx.commit()
}

#[derive(Serialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Config {
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<String>,
    architecture: String,
    os: &'static str,
    config: ImageConfig,
    rootfs: RootFs,
    history: Vec<History>,
}

/// The runtime settings, as the OCI image specification names them; what is unset is left out,
/// so that an image without a container configuration has `Env` and `Labels` only.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<String, Empty>,
    env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<String, Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
}

/// `{}`: the value of a port or volume in the image config.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History {
    created: String,
    created_by: String,
    comment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<String>,
}
