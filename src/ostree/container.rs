//! Ostree-native container images: an OSTree commit carried as an OCI image, in the layout
//! ostree's container tooling (ostree-ext, bootc, rpm-ostree) writes and reads.
//!
//! **Writing** ([`encapsulate`]). Every layer holds a `bare-split-xattrs` repository at
//! `sysroot/ostree/repo` (its directories and `config`) and the checkout paths of the files it
//! carries, each a hardlink to its object (`objects/XX/REST.file`; an empty file is an empty file
//! of its own), so a container runtime sees the commit's tree with `/usr/etc` as `/etc`:
//! - layer 0, the commit layer: the commit, its detached metadata, every dirtree and dirmeta
//!   object, and a directory entry for every directory of the tree (`/sysroot` excepted: the
//!   repository lives there), then `/var/tmp` when the commit lacks it;
//! - then, for a tree with dpkg file lists, one layer per bucket of packages (the buckets of
//!   [`crate::oci::chunk`], paths read as the image had them before the OSTree layout moved them),
//!   each with the file objects of its packages (in checksum order) and their checkout paths;
//!   without file lists, every file object goes in layer 0.
//!
//! Each file object is preceded by its `.file-xattrs-link` (the serialized `a(ayay)` of its
//! extended attributes), and carries them as pax records too (`security.selinux` excepted), as
//! current ostree-ext writes. Every timestamp is 0. The config and manifest carry the labels
//! ostree's tools read: `ostree.commit`, `ostree.final-diffid` (the last ostree layer's diff id),
//! `ostree.bootable` and `containers.bootc` for a bootable commit, `ostree.linux`.
//!
//! **Reading** ([`unencapsulate`], [`import`]). The layers up to `ostree.final-diffid` (layer 0
//! alone without it) are read for their `sysroot/ostree/repo/objects/` members; everything else
//! in them is the checkout view, ignored. Every object is written through libostree with its
//! expected checksum (regular files by one writer thread per core, while the layers are read,
//! in one transaction that an error aborts), so a changed byte, owner, mode or extended attribute is refused naming the
//! object; metadata objects must be in normal form and at most [`MAX_METADATA`] bytes; then every
//! object the commit reaches must have arrived. Layers after the last ostree layer (a container
//! build on top) are laid over the commit's tree as any OCI layer is.
//!
//! Invariants: an image written from a commit and read back gives that commit, byte for byte
//! (same checksum); the same commit gives the same layers on any machine; nothing is recorded
//! unless every object was verified.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use rusqlite::{params, OptionalExtension};

use crate::description::{Base, ImageReference};
use crate::oci::chunk::{Owners, MERGED};
use crate::oci::image::{self as oci_image, Image, LayerReport, OciReport, OciTo, Target};
use crate::oci::import as oci_import;
use crate::oci::layer::{append, header};
use crate::oci::layout::Descriptor;
use crate::packages::Limits;
use crate::store::batch::Batch;
use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::meta::Meta;
use crate::store::tree::{Name, Node, Tree};
use crate::store::Backend;
use crate::trees::edit::{load, lookup, put, set};
use crate::util::progress::Progress;

/// The label naming the commit an image carries.
pub const COMMIT_LABEL: &str = "ostree.commit";
/// The label naming the diff id of the last layer that carries the commit's objects.
pub const FINAL_DIFFID_LABEL: &str = "ostree.final-diffid";
/// The annotation listing the packages of a layer.
const COMPONENTS_ANNOTATION: &str = "ostree.components";
/// Where the repository lives in every layer.
const REPO: &str = "sysroot/ostree/repo";
const REPO_CONFIG: &[u8] = b"[core]\nrepo_version=1\nmode=bare-split-xattrs\n";
/// The writer's version: part of the key of every layer recorded.
const FORMAT: i64 = 1;
/// The largest metadata object (commit, dirtree, dirmeta, detached metadata) accepted.
pub const MAX_METADATA: u64 = 10 << 20;
/// The largest extended attribute set accepted.
const MAX_XATTRS: u64 = 1 << 20;
/// The deepest directory a commit read from an image may have.
const MAX_DEPTH: usize = 1024;
/// Regular file objects up to this size are read into memory and written by the writer threads
/// (larger ones stream into a repository from the layer, except an archive repository's).
const PARALLEL_MAX: u64 = 16 << 20;

const COMMIT_TYPE: &str = "(a{sv}aya(say)sstayay)";
const DIRTREE_TYPE: &str = "(a(say)a(sayay))";
const DIRMETA_TYPE: &str = "(uuua(ayay))";
const XATTRS_TYPE: &str = "a(ayay)";

/// The entry key of the ostree-native container image whose manifest has this digest.
pub fn image_key(manifest_digest: &str) -> Digest {
    entry_key(EntryKind::Import, &[("ostree-container-manifest", manifest_digest.as_bytes())], &[])
}

fn glib_err(e: glib::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message())
}

fn variant_type(t: &str) -> &glib::VariantTy {
    glib::VariantTy::new(t).expect("a valid variant type")
}

/// A checksum held as `ay`, in hex.
fn checksum_hex(v: &glib::Variant) -> anyhow::Result<String> {
    let bytes = v.fixed_array::<u8>().map_err(|e| anyhow::anyhow!("{e}"))?;
    if bytes.len() != 32 {
        bail!("a checksum of {} bytes, not 32", bytes.len());
    }
    Ok(hex::encode(bytes))
}

/// A directory's listing.
struct DirTree {
    /// (name, content object)
    files: Vec<(String, String)>,
    /// (name, dirtree, dirmeta)
    dirs: Vec<(String, String, String)>,
}

fn dirtree(repo: &ostree::Repo, checksum: &str) -> anyhow::Result<DirTree> {
    let v = repo.load_variant(ostree::ObjectType::DirTree, checksum).map_err(glib_err)?;
    let (files_v, dirs_v) = (v.child_value(0), v.child_value(1));
    let mut files = Vec::with_capacity(files_v.n_children());
    for i in 0..files_v.n_children() {
        let f = files_v.child_value(i);
        let name = f.child_value(0).str().unwrap_or_default().to_string();
        files.push((name, checksum_hex(&f.child_value(1))?));
    }
    let mut dirs = Vec::with_capacity(dirs_v.n_children());
    for i in 0..dirs_v.n_children() {
        let d = dirs_v.child_value(i);
        let name = d.child_value(0).str().unwrap_or_default().to_string();
        dirs.push((name, checksum_hex(&d.child_value(1))?, checksum_hex(&d.child_value(2))?));
    }
    Ok(DirTree { files, dirs })
}

/// The (uid, gid, mode, xattrs) of a dirmeta object (stored big-endian).
fn dirmeta(repo: &ostree::Repo, checksum: &str) -> anyhow::Result<Meta> {
    let v = repo.load_variant(ostree::ObjectType::DirMeta, checksum).map_err(glib_err)?;
    let num = |i: usize| u32::from_be(v.child_value(i).get::<u32>().unwrap_or_default());
    Ok(Meta { uid: num(0), gid: num(1), mode: num(2) & 0o7777, xattrs: xattrs_of(&v.child_value(3)) })
}

/// Extended attributes from an `a(ayay)` (names with their trailing NUL), sorted, without those
/// a store never records.
fn xattrs_of(v: &glib::Variant) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(v.n_children());
    for i in 0..v.n_children() {
        let pair = v.child_value(i);
        let name = pair.child_value(0).fixed_array::<u8>().map(<[u8]>::to_vec).unwrap_or_default();
        let name = name.strip_suffix(b"\0").map(<[u8]>::to_vec).unwrap_or(name);
        let value = pair.child_value(1).fixed_array::<u8>().map(<[u8]>::to_vec).unwrap_or_default();
        if crate::store::meta::recorded_xattr(&name) {
            out.push((name, value));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The content object `checksum` of `repo` (at `path`, for errors): its stream (none for a
/// symlink), file info, metadata and extended attributes as stored.
fn load_content(
    repo: &ostree::Repo,
    checksum: &str,
    path: &str,
) -> anyhow::Result<(Option<gio::InputStream>, gio::FileInfo, Meta, glib::Variant)> {
    let (stream, info, xattrs) = repo
        .load_file(checksum, gio::Cancellable::NONE)
        .map_err(glib_err)
        .with_context(|| format!("content object {checksum} (/{path})"))?;
    let meta = Meta {
        mode: info.attribute_uint32("unix::mode") & 0o7777,
        uid: info.attribute_uint32("unix::uid"),
        gid: info.attribute_uint32("unix::gid"),
        xattrs: xattrs_of(&xattrs),
    };
    Ok((stream, info, meta, xattrs))
}

/// The commit's root (dirtree, dirmeta) and metadata.
fn commit_root(repo: &ostree::Repo, commit: &str) -> anyhow::Result<(String, String, glib::Variant)> {
    let v = repo.load_variant(ostree::ObjectType::Commit, commit).map_err(glib_err)?;
    Ok((checksum_hex(&v.child_value(6))?, checksum_hex(&v.child_value(7))?, v.child_value(0)))
}

fn object_path(checksum: &str, ext: &str) -> String {
    format!("{REPO}/objects/{}/{}.{ext}", &checksum[..2], &checksum[2..])
}

/// The path a container shows for a path of the commit: `/usr/etc` is `/etc`.
fn checkout_path(commit_path: &str) -> String {
    match commit_path.strip_prefix("usr/etc") {
        Some("") => "etc".to_string(),
        Some(rest) if rest.starts_with('/') => format!("etc{rest}"),
        _ => commit_path.to_string(),
    }
}

/// The path a dpkg file list names for a path of a commit the OSTree layout step made (the
/// step moves `/etc`, `/var`, the dpkg database and the kernel).
fn image_path(commit_path: &str) -> String {
    let moved: &[(&str, &str)] =
        &[("usr/etc/", "etc/"), ("usr/share/factory/var/", "var/"), ("usr/lib/sysimage/dpkg/", "var/lib/dpkg/")];
    for (from, to) in moved {
        if let Some(rest) = commit_path.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    if let Some(rest) = commit_path.strip_prefix("usr/lib/modules/") {
        if let Some((kver, file)) = rest.split_once('/') {
            let boot = match file {
                "vmlinuz" => Some("vmlinuz"),
                "initramfs.img" => Some("initrd.img"),
                "config" => Some("config"),
                "System.map" => Some("System.map"),
                _ => None,
            };
            if let Some(b) = boot {
                return format!("boot/{b}-{kver}");
            }
        }
    }
    commit_path.to_string()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

// ------------------------------------------------------------------------------------------
// Writing

/// One step of the commit layer, in order.
enum Event {
    /// A dirtree or dirmeta object.
    Meta(ostree::ObjectType, String),
    /// A directory of the tree, at its checkout path, with its dirmeta.
    Dir(String, String),
    /// A file of the tree, at its checkout path: the object's index.
    File(String, usize),
}

struct FileObject {
    checksum: String,
    /// Checkout paths, in walk order.
    paths: Vec<String>,
    /// The layer it goes to (0: the commit layer).
    layer: usize,
}

/// The walk of a commit: what each layer holds.
struct Plan {
    commit: String,
    root_meta: String,
    events: Vec<Event>,
    objects: Vec<FileObject>,
    /// Per layer after the commit layer: the packages it holds, and its history text.
    components: Vec<(Vec<String>, String)>,
    has_var_tmp: bool,
}

fn plan(repo: &ostree::Repo, commit: &str) -> anyhow::Result<Plan> {
    let (root_tree, root_meta, _) = commit_root(repo, commit)?;
    let mut p = Plan {
        commit: commit.to_string(),
        root_meta: root_meta.clone(),
        events: vec![],
        objects: vec![],
        components: vec![],
        has_var_tmp: false,
    };
    let mut seen_meta: HashSet<String> = HashSet::from([root_meta]);
    let mut index: HashMap<String, usize> = HashMap::new();
    // (commit path, object) of every file, in walk order.
    let mut files: Vec<(String, usize)> = vec![];
    let mut lists: Vec<(String, String)> = vec![];
    let mut top_links: Vec<String> = vec![];
    walk(repo, "", &root_tree, &mut p, &mut seen_meta, &mut index, &mut files, &mut lists, &mut top_links)?;
    let dirs: Vec<&str> =
        p.events.iter().filter_map(|e| if let Event::Dir(d, _) = e { Some(d.as_str()) } else { None }).collect();
    if dirs.iter().filter(|d| **d == "etc").count() > 1 {
        bail!("the commit has both /etc and /usr/etc: a container shows /usr/etc as /etc, so only one can be there");
    }

    // Layers by package, from the dpkg file lists.
    let mut lists_sorted = lists;
    lists_sorted.sort();
    if !lists_sorted.is_empty() {
        let mut texts = vec![];
        for (package, checksum) in &lists_sorted {
            let (stream, _, _) = repo.load_file(checksum, gio::Cancellable::NONE).map_err(glib_err)?;
            let mut text = vec![];
            if let Some(s) = stream {
                s.into_read().read_to_end(&mut text)?;
            }
            texts.push((package.clone(), text));
        }
        let merged: Vec<&[u8]> =
            MERGED.iter().copied().filter(|m| top_links.iter().any(|l| l.as_bytes() == *m)).collect();
        let mut owners = Owners::from_lists(texts, &merged);
        let mut bucket_of_object: Vec<Option<usize>> = vec![None; p.objects.len()];
        for (path, object) in &files {
            if bucket_of_object[*object].is_none() {
                bucket_of_object[*object] = Some(owners.bucket_of(image_path(path).as_bytes()));
            }
        }
        let mut used: Vec<usize> = bucket_of_object.iter().flatten().copied().collect();
        used.sort_unstable();
        used.dedup();
        let layer_of: HashMap<usize, usize> = used.iter().enumerate().map(|(i, b)| (*b, i + 1)).collect();
        for (o, b) in p.objects.iter_mut().zip(&bucket_of_object) {
            o.layer = b.map_or(0, |b| layer_of[&b]);
        }
        p.components = used.iter().map(|b| (owners.packages(*b), owners.label(*b))).collect();
    }
    Ok(p)
}

#[allow(clippy::too_many_arguments)]
fn walk(
    repo: &ostree::Repo,
    path: &str,
    tree: &str,
    p: &mut Plan,
    seen_meta: &mut HashSet<String>,
    index: &mut HashMap<String, usize>,
    files: &mut Vec<(String, usize)>,
    lists: &mut Vec<(String, String)>,
    top_links: &mut Vec<String>,
) -> anyhow::Result<()> {
    if seen_meta.insert(tree.to_string()) {
        p.events.push(Event::Meta(ostree::ObjectType::DirTree, tree.to_string()));
    }
    let listing = dirtree(repo, tree).with_context(|| format!("dirtree {tree} (/{path})"))?;
    for (name, checksum) in &listing.files {
        let commit_path = join(path, name);
        if path.is_empty() {
            top_links.push(name.clone());
        }
        if path == "usr/lib/sysimage/dpkg/info" || path == "var/lib/dpkg/info" {
            if let Some(package) = name.strip_suffix(".list") {
                lists.push((package.to_string(), checksum.clone()));
            }
        }
        let next = p.objects.len();
        let object = *index.entry(checksum.clone()).or_insert(next);
        if object == next {
            p.objects.push(FileObject { checksum: checksum.clone(), paths: vec![], layer: 0 });
        }
        let shown = checkout_path(&commit_path);
        p.objects[object].paths.push(shown.clone());
        files.push((commit_path, object));
        p.events.push(Event::File(shown, object));
    }
    for (name, subtree, meta) in &listing.dirs {
        if seen_meta.insert(meta.clone()) {
            p.events.push(Event::Meta(ostree::ObjectType::DirMeta, meta.clone()));
        }
        let commit_path = join(path, name);
        if commit_path == "sysroot" {
            // The repository lives there: the directory is the layers' own.
            let inside = dirtree(repo, subtree)?;
            if !inside.files.is_empty() || !inside.dirs.is_empty() {
                bail!("the commit has content in /sysroot, where an ostree container keeps its repository");
            }
            if seen_meta.insert(subtree.clone()) {
                p.events.push(Event::Meta(ostree::ObjectType::DirTree, subtree.clone()));
            }
            continue;
        }
        if commit_path == "var/tmp" {
            p.has_var_tmp = true;
        }
        p.events.push(Event::Dir(checkout_path(&commit_path), meta.clone()));
        walk(repo, &commit_path, subtree, p, seen_meta, index, files, lists, top_links)?;
    }
    Ok(())
}

/// Writes the tar of one layer.
struct LayerWriter<'a, W: Write> {
    repo: &'a ostree::Repo,
    tar: tar::Builder<W>,
    /// Objects whose content this layer holds already.
    written: HashSet<usize>,
}

fn root_meta() -> Meta {
    Meta { mode: 0o755, uid: 0, gid: 0, xattrs: vec![] }
}

impl<W: Write> LayerWriter<'_, W> {
    fn dir(&mut self, path: &str, meta: &Meta) -> anyhow::Result<()> {
        let mut h = header(tar::EntryType::Directory, meta, 0, 0);
        append(&mut self.tar, &mut h, format!("{path}/").as_bytes(), None, &[], std::io::empty())
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let meta = Meta { mode: 0o644, uid: 0, gid: 0, xattrs: vec![] };
        let mut h = header(tar::EntryType::Regular, &meta, 0, bytes.len() as u64);
        append(&mut self.tar, &mut h, path.as_bytes(), None, &[], bytes)
    }

    /// The repository's directories and config, as every layer has them.
    fn skeleton(&mut self) -> anyhow::Result<()> {
        for d in ["sysroot", "sysroot/ostree", REPO, &format!("{REPO}/objects")] {
            self.dir(d, &root_meta())?;
        }
        for i in 0..=255u8 {
            self.dir(&format!("{REPO}/objects/{i:02x}"), &root_meta())?;
        }
        for d in ["extensions", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp", "tmp/cache"] {
            self.dir(&format!("{REPO}/{d}"), &root_meta())?;
        }
        self.file(&format!("{REPO}/config"), REPO_CONFIG)
    }

    fn metadata(&mut self, kind: ostree::ObjectType, checksum: &str) -> anyhow::Result<()> {
        let ext = match kind {
            ostree::ObjectType::Commit => "commit",
            ostree::ObjectType::DirTree => "dirtree",
            ostree::ObjectType::DirMeta => "dirmeta",
            _ => unreachable!("metadata objects only"),
        };
        let v = self.repo.load_variant(kind, checksum).map_err(glib_err)?;
        self.file(&object_path(checksum, ext), &v.data_as_bytes())
    }

    /// The object's xattrs link and content (once per layer), then its entry at `path`.
    fn content(&mut self, plan: &Plan, object: usize, path: &str) -> anyhow::Result<()> {
        let checksum = &plan.objects[object].checksum;
        let (stream, info, mut meta, xattrs) = load_content(self.repo, checksum, path)?;
        // As the pax records carry them: a label belongs to the host's policy.
        meta.xattrs.retain(|(n, _)| n.as_slice() != b"security.selinux");
        let symlink = info.file_type() == gio::FileType::SymbolicLink;
        let size = if symlink { 0 } else { info.size() as u64 };
        let object_at = object_path(checksum, "file");
        if self.written.insert(object) {
            self.file(&object_path(checksum, "file-xattrs-link"), &xattrs.data_as_bytes())?;
            if symlink {
                let target = info.symlink_target().unwrap_or_default();
                let mut h = header(tar::EntryType::Symlink, &Meta { mode: 0o777, ..meta.clone() }, 0, 0);
                append(
                    &mut self.tar,
                    &mut h,
                    object_at.as_bytes(),
                    Some(target.as_os_str().as_encoded_bytes()),
                    &meta.xattrs,
                    std::io::empty(),
                )?;
            } else {
                let mut h = header(tar::EntryType::Regular, &meta, 0, size);
                let data = stream.map(|s| s.into_read());
                let reader: Box<dyn Read> = match data {
                    Some(r) => Box::new(r.take(size)),
                    None => Box::new(std::io::empty()),
                };
                append(&mut self.tar, &mut h, object_at.as_bytes(), None, &meta.xattrs, reader)?;
            }
        }
        if !symlink && size == 0 {
            // An empty file is a file of its own: a container build that writes it must not
            // write the repository's object.
            let mut h = header(tar::EntryType::Regular, &meta, 0, 0);
            return append(&mut self.tar, &mut h, path.as_bytes(), None, &meta.xattrs, std::io::empty());
        }
        let mut h = header(tar::EntryType::Link, &meta, 0, 0);
        append(&mut self.tar, &mut h, path.as_bytes(), Some(object_at.as_bytes()), &[], std::io::empty())
    }
}

/// Write layer `n` of `plan` (0: the commit layer) into `out`.
fn write_layer<W: Write>(repo: &ostree::Repo, plan: &Plan, n: usize, out: W) -> anyhow::Result<W> {
    let mut w = LayerWriter { repo, tar: tar::Builder::new(out), written: HashSet::new() };
    if n == 0 {
        w.dir(".", &dirmeta(repo, &plan.root_meta)?)?;
        w.skeleton()?;
        w.metadata(ostree::ObjectType::Commit, &plan.commit)?;
        if let Some(meta) =
            repo.read_commit_detached_metadata(&plan.commit, gio::Cancellable::NONE).map_err(glib_err)?
        {
            w.file(&object_path(&plan.commit, "commitmeta"), &meta.data_as_bytes())?;
        }
        w.metadata(ostree::ObjectType::DirMeta, &plan.root_meta)?;
        let mut metas: HashMap<&str, Meta> = HashMap::new();
        for e in &plan.events {
            match e {
                Event::Meta(kind, checksum) => w.metadata(*kind, checksum)?,
                Event::Dir(path, meta) => {
                    if !metas.contains_key(meta.as_str()) {
                        metas.insert(meta, dirmeta(repo, meta)?);
                    }
                    w.dir(path, &metas[meta.as_str()])?;
                }
                Event::File(path, object) if plan.objects[*object].layer == 0 => w.content(plan, *object, path)?,
                Event::File(..) => {}
            }
        }
        if !plan.has_var_tmp {
            w.dir("var/tmp", &Meta { mode: 0o1777, uid: 0, gid: 0, xattrs: vec![] })?;
        }
    } else {
        w.skeleton()?;
        let mut mine: Vec<usize> = (0..plan.objects.len()).filter(|o| plan.objects[*o].layer == n).collect();
        mine.sort_by(|a, b| plan.objects[*a].checksum.cmp(&plan.objects[*b].checksum));
        for o in mine {
            for path in plan.objects[o].paths.clone() {
                w.content(plan, o, &path)?;
            }
        }
    }
    w.tar.into_inner().context("cannot finish the layer's tar stream")
}

/// Write the commit `commit` of `repo` as an ostree-native container image to `target` (the
/// image `image`, whose labels get the ostree ones).
pub fn encapsulate(
    store: &mut Store,
    repo: &ostree::Repo,
    commit: &str,
    image: Image<'_>,
    to: &OciTo<'_>,
    target: &mut dyn Target,
    progress: &Progress,
) -> anyhow::Result<OciReport> {
    let plan = plan(repo, commit)?;
    let count = plan.components.len() + 1;
    let keys = layer_keys(repo, &plan)?;
    let bar = progress.items(count as u64, "layers");
    let mut layers: Vec<LayerReport> = Vec::with_capacity(count);
    let mut bytes_written = 0;
    for (n, key) in keys.iter().enumerate() {
        let key = key.as_str();
        let known = recorded(store, key, to)?;
        let placed = oci_image::place_layer(target, known, &mut |layout| {
            oci_image::write_compressed(layout, to.compression, &mut |w| {
                write_layer(repo, &plan, n, w)?;
                Ok(())
            })
        })?;
        if placed.made {
            record(store, key, to, &placed.diff_id, &placed.digest, placed.size)?;
        }
        if placed.sent {
            bytes_written += placed.size;
        }
        let (step, annotations) = match n {
            0 => (format!("ostree commit {commit}"), BTreeMap::new()),
            n => {
                let (packages, label) = &plan.components[n - 1];
                (label.clone(), [(COMPONENTS_ANNOTATION.to_string(), packages.join(","))].into_iter().collect())
            }
        };
        layers.push(LayerReport {
            step,
            tree: None,
            digest: placed.digest,
            diff_id: placed.diff_id,
            size: placed.size,
            written: placed.sent,
            annotations,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut image = image;
    image.labels.insert(COMMIT_LABEL.into(), commit.to_string());
    image.labels.insert(FINAL_DIFFID_LABEL.into(), layers.last().expect("the commit layer").diff_id.clone());
    let (_, _, metadata) = commit_root(repo, commit)?;
    let dict = glib::VariantDict::new(Some(&metadata));
    if dict.lookup::<bool>("ostree.bootable").ok().flatten() == Some(true) {
        image.labels.insert("ostree.bootable".into(), "true".into());
        image.labels.insert("containers.bootc".into(), "1".into());
    }
    if let Some(linux) = dict.lookup::<String>("ostree.linux").ok().flatten() {
        image.labels.insert("ostree.linux".into(), linux);
    }
    oci_image::write_image(store, &image, to, target, layers, bytes_written)
}

/// What each layer's bytes depend on, as a key its digests are recorded under: for layer 0 the
/// commit and its detached metadata (`0/COMMIT[/SHA256]`: signatures added later change it); for
/// a layer of packages the sha256 of its objects (checksums, which cover content, owners, modes
/// and extended attributes) with their paths, so that a bucket no package of which changed is a
/// lookup in the next commit too.
fn layer_keys(repo: &ostree::Repo, plan: &Plan) -> anyhow::Result<Vec<String>> {
    use sha2::Digest as _;
    let detached = repo.read_commit_detached_metadata(&plan.commit, gio::Cancellable::NONE).map_err(glib_err)?;
    let mut keys = vec![match &detached {
        Some(m) => format!("0/{}/{}", plan.commit, sha256_hex(&m.data_as_bytes())),
        None => format!("0/{}", plan.commit),
    }];
    let mut hashes: Vec<sha2::Sha256> = (0..plan.components.len()).map(|_| sha2::Sha256::new()).collect();
    let mut mine: Vec<&FileObject> = plan.objects.iter().filter(|o| o.layer > 0).collect();
    mine.sort_by(|a, b| a.checksum.cmp(&b.checksum));
    for o in mine {
        let h = &mut hashes[o.layer - 1];
        h.update(o.checksum.as_bytes());
        for p in &o.paths {
            h.update(b"\0");
            h.update(p.as_bytes());
        }
        h.update(b"\n");
    }
    keys.extend(hashes.into_iter().map(|h| format!("objects/{}", hex::encode(h.finalize()))));
    Ok(keys)
}

/// The digests of the layer recorded under `key` ([`layer_keys`]).
fn recorded(store: &Store, key: &str, to: &OciTo<'_>) -> anyhow::Result<Option<(String, String, u64)>> {
    Ok(store
        .db()
        .sql()
        .query_row(
            "SELECT diff_id, digest, size FROM ostree_container_layers \
             WHERE layer_key = ?1 AND compression = ?2 AND format = ?3",
            params![key, to.compression.as_str(), FORMAT],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)? as u64)),
        )
        .optional()?)
}

fn record(store: &mut Store, key: &str, to: &OciTo<'_>, diff_id: &str, digest: &str, size: u64) -> anyhow::Result<()> {
    let tx = store.db_mut().transaction()?;
    tx.sql().execute(
        "INSERT OR REPLACE INTO ostree_container_layers (layer_key, compression, format, diff_id, digest, size) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![key, to.compression.as_str(), FORMAT, diff_id, digest, size as i64],
    )?;
    tx.commit()
}

// ------------------------------------------------------------------------------------------
// Reading

/// Where an ostree-native container image comes from, resolved to its manifest.
pub struct Resolved {
    /// As the description names it (`ostree-container:oci:DIR:TAG`).
    pub name: String,
    /// As lock files name it (paths made absolute).
    pub locked: String,
    pub desc: Descriptor,
    pub manifest: serde_json::Value,
    blobs: Blobs,
}

/// Where the blobs are: a layout; an archive (its small members unpacked into a scratch layout
/// when resolved, the rest when imported); a registry (downloaded when imported).
enum Blobs {
    Layout(PathBuf),
    Archive(PathBuf, tempfile::TempDir),
    Registry(Box<crate::oci::registry::Client>, ImageReference),
}

/// Resolve `image` (an [`Base::Oci`], [`Base::OciArchive`] or [`Base::Registry`]) to a manifest
/// for linux on `arch`.
pub fn resolve(
    store: &Store,
    image: &Base,
    arch: &str,
    registry: &crate::oci::registry::Settings,
) -> anyhow::Result<Resolved> {
    let canonical = |p: &Path| fs_err::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let with_tag = |kind: &str, p: &Path, tag: &Option<String>| match tag {
        Some(t) => format!("ostree-container:{kind}:{}:{t}", p.display()),
        None => format!("ostree-container:{kind}:{}", p.display()),
    };
    let (name, locked, blobs) = match image {
        Base::Oci { dir, tag } => {
            (with_tag("oci", dir, tag), with_tag("oci", &canonical(dir), tag), Blobs::Layout(dir.clone()))
        }
        Base::OciArchive { file, tag } => {
            let work = tempfile::Builder::new().prefix("oci-archive-").tempdir_in(store.tmp_dir())?;
            let name = with_tag("oci-archive", file, tag);
            crate::oci::archive::unpack(file, work.path(), Some(4 << 20)).with_context(|| name.clone())?;
            (name, with_tag("oci-archive", &canonical(file), tag), Blobs::Archive(file.clone(), work))
        }
        Base::Registry(r) => {
            let name = format!("ostree-container:{r}");
            let client = crate::oci::registry::Client::connect(r, registry, false).with_context(|| name.clone())?;
            (name.clone(), name, Blobs::Registry(Box::new(client), r.clone()))
        }
        _ => bail!("an ostree container is an oci:, oci-archive: or docker:// image"),
    };
    let tag = |t: &Option<String>| t.clone();
    let (desc, manifest) = match (&blobs, image) {
        (Blobs::Layout(dir), Base::Oci { tag: t, .. }) => oci_import::resolve(dir, tag(t).as_deref(), arch),
        (Blobs::Archive(_, work), Base::OciArchive { tag: t, .. }) => {
            oci_import::resolve(work.path(), tag(t).as_deref(), arch)
        }
        (Blobs::Registry(client, r), _) => oci_import::resolve_remote(client, r, arch),
        _ => unreachable!("blobs follow the image's kind"),
    }
    .with_context(|| name.clone())?;
    Ok(Resolved { name, locked, desc, manifest, blobs })
}

impl Resolved {
    /// Run `f` with the layout directory that holds every blob of the image.
    pub fn with_blobs<T>(
        &self,
        store: &mut Store,
        progress: &Progress,
        f: impl FnOnce(&mut Store, &Path) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        match &self.blobs {
            Blobs::Layout(dir) => f(store, dir),
            Blobs::Archive(file, work) => {
                crate::oci::archive::unpack(file, work.path(), None)?;
                f(store, work.path())
            }
            Blobs::Registry(client, r) => {
                let work = oci_import::download(store, client, r, &self.desc, &self.manifest, progress)?;
                f(store, work.path())
            }
        }
    }
}

/// An image's ostree layers (0 to the one `ostree.final-diffid` names) and derived layers, with
/// the commit its label names.
struct Split {
    commit: String,
    ostree: Vec<(usize, Descriptor)>,
    derived: Vec<(usize, Descriptor)>,
}

fn split(dir: &Path, desc: &Descriptor, manifest: &serde_json::Value) -> anyhow::Result<Split> {
    let config = oci_import::image_config(dir, manifest)?;
    let labels = &config["config"]["Labels"];
    let Some(commit) = labels[COMMIT_LABEL].as_str() else {
        bail!("manifest {}: no `{COMMIT_LABEL}` label: not an ostree-native container (derive from it without `ostree-container:`)", desc.digest);
    };
    if commit.len() != 64 || !commit.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        bail!("manifest {}: `{COMMIT_LABEL}` is `{commit}`, not a checksum", desc.digest);
    }
    let layers = oci_import::manifest_layers(desc, manifest)?;
    if layers.is_empty() {
        bail!("manifest {}: an image without layers", desc.digest);
    }
    let diff_ids: Vec<String> = serde_json::from_value(config["rootfs"]["diff_ids"].clone())
        .context("the image config's `rootfs.diff_ids` is not a list of digests")?;
    if diff_ids.len() != layers.len() {
        bail!("manifest {}: {} layers but {} diff ids in its config", desc.digest, layers.len(), diff_ids.len());
    }
    let last = match labels[FINAL_DIFFID_LABEL].as_str() {
        None => 0,
        Some(d) => {
            let found: Vec<usize> = diff_ids.iter().enumerate().filter(|(_, x)| *x == d).map(|(i, _)| i).collect();
            match found.as_slice() {
                [i] => *i,
                [] => bail!("manifest {}: `{FINAL_DIFFID_LABEL}` {d} is none of its layers", desc.digest),
                _ => bail!("manifest {}: `{FINAL_DIFFID_LABEL}` {d} names more than one layer", desc.digest),
            }
        }
    };
    let all: Vec<(usize, Descriptor)> = layers.into_iter().enumerate().collect();
    let (ostree, derived) = all.split_at(last + 1);
    Ok(Split { commit: commit.to_string(), ostree: ostree.to_vec(), derived: derived.to_vec() })
}

/// What [`unencapsulate`] wrote.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Unencapsulated {
    pub commit: String,
    /// Objects written now (the repository lacked them).
    pub objects_written: u64,
    pub objects_present: u64,
    /// The repository had the commit already.
    pub commit_existed: bool,
}

/// A member of the embedded repository.
#[derive(Debug)]
enum Member<'a> {
    Object { checksum: String, ext: &'a str },
    Other,
}

fn member(path: &[u8]) -> anyhow::Result<Option<Member<'_>>> {
    let path = path.strip_prefix(b"./").unwrap_or(path);
    let Some(rest) = path.strip_prefix(format!("{REPO}/").as_bytes()) else { return Ok(None) };
    let Some(object) = rest.strip_prefix(b"objects/") else { return Ok(Some(Member::Other)) };
    let text = std::str::from_utf8(object).ok();
    let parsed = text.and_then(|t| {
        let (dir, file) = t.split_once('/')?;
        let (stem, ext) = file.split_once('.')?;
        let checksum = format!("{dir}{stem}");
        let hex =
            dir.len() == 2 && checksum.len() == 64 && checksum.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        hex.then_some((checksum, ext))
    });
    match parsed {
        Some((checksum, ext))
            if ["commit", "commitmeta", "dirtree", "dirmeta", "file", "file-xattrs", "file-xattrs-link"]
                .contains(&ext) =>
        {
            Ok(Some(Member::Object { checksum, ext }))
        }
        _ => bail!(
            "not an object name (objects/XX/REST.TYPE: 64 lowercase hex digits, TYPE commit, commitmeta, dirtree, dirmeta, file, file-xattrs or file-xattrs-link)"
        ),
    }
}

fn read_small(entry: &mut impl Read, size: u64, max: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    if size > max {
        bail!("{what}: {size} bytes, more than the {max} accepted");
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry.take(max + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// State while reading the objects of the layers.
struct Reader<'a> {
    repo: &'a ostree::Repo,
    /// Regular file objects go to the writer threads through this.
    jobs: std::sync::mpsc::SyncSender<FileJob>,
    /// Whether objects are written through memory (libostree writes an archive repository's
    /// content objects from a stream only).
    archive: bool,
    /// The commit the image's label names: the commit object must be this one.
    expected: String,
    commit: Option<String>,
    /// `.file-xattrs` objects of this layer by their checksum, and their bytes in all.
    xattrs: HashMap<String, glib::Bytes>,
    xattrs_bytes: u64,
    /// The xattrs for the next `.file`: (its checksum, the xattrs).
    next: Option<(String, glib::Bytes)>,
    limits: &'a Limits,
    /// Content bytes and objects read, against `limits`.
    bytes: u64,
    objects: u64,
    out: Unencapsulated,
}

/// A regular file object for a writer thread.
struct FileJob {
    path: String,
    checksum: String,
    uid: u32,
    gid: u32,
    mode: u32,
    xattrs: glib::Variant,
    data: Vec<u8>,
}

/// Write `job` through libostree, which checks its checksum.
fn write_job(repo: &ostree::Repo, job: &FileJob) -> anyhow::Result<()> {
    let written = repo
        .write_regfile_inline(
            Some(&job.checksum),
            job.uid,
            job.gid,
            job.mode,
            Some(&job.xattrs),
            &job.data,
            gio::Cancellable::NONE,
        )
        .map_err(glib_err)
        .with_context(|| format!("`{}`", job.path))?;
    if written.as_str() != job.checksum {
        bail!("`{}`: its content, owner, mode and xattrs have checksum {written}", job.path);
    }
    Ok(())
}

/// The `.file-xattrs` objects of one layer kept at once, in bytes.
const MAX_XATTRS_CACHED: u64 = 64 << 20;

/// A numeric field of `entry`: its pax record (`uid`, `gid`) when it has one, else its header's.
fn pax_number(entry: &mut tar::Entry<'_, impl Read>, key: &str, header: u64) -> anyhow::Result<u64> {
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if ext.key_bytes() == key.as_bytes() {
                let text = std::str::from_utf8(ext.value_bytes()).ok();
                return text
                    .and_then(|t| t.parse().ok())
                    .with_context(|| format!("pax record `{key}` is not a number"));
            }
        }
    }
    Ok(header)
}

impl Reader<'_> {
    fn have(&self, kind: ostree::ObjectType, checksum: &str) -> anyhow::Result<bool> {
        self.repo.has_object(kind, checksum, gio::Cancellable::NONE).map_err(glib_err)
    }

    fn metadata(
        &mut self,
        kind: ostree::ObjectType,
        type_: &str,
        checksum: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<()> {
        if self.have(kind, checksum)? {
            self.out.objects_present += 1;
            return Ok(());
        }
        let v = glib::Variant::from_bytes_with_type(&glib::Bytes::from_owned(bytes), variant_type(type_));
        if !v.is_normal_form() {
            bail!("not a {type_} in normal form");
        }
        let got = self.repo.write_metadata(kind, Some(checksum), &v, gio::Cancellable::NONE).map_err(glib_err)?;
        if got.to_hex() != checksum {
            bail!("its content has checksum {}", got.to_hex());
        }
        self.out.objects_written += 1;
        Ok(())
    }

    fn entry(&mut self, layer: usize, entry: &mut tar::Entry<'_, impl Read>) -> anyhow::Result<()> {
        if entry.header().entry_type().is_dir() {
            return Ok(());
        }
        let path = entry.path_bytes().into_owned();
        let Some(Member::Object { checksum, ext }) = member(&path)? else { return Ok(()) };
        let kind = entry.header().entry_type();
        let size = entry.size();
        let regular = kind.is_file();
        self.objects += 1;
        if self.objects > self.limits.max_members {
            bail!("more than {} objects: the most an image may carry", self.limits.max_members);
        }
        let needs_regular = |what: &str| -> anyhow::Result<()> {
            if !regular {
                bail!("a {what} must be a regular file, not a {kind:?}");
            }
            Ok(())
        };
        match ext {
            "commit" => {
                needs_regular("commit object")?;
                if layer != 0 {
                    bail!("a commit object in layer {layer}; the commit goes in layer 0");
                }
                if let Some(c) = &self.commit {
                    bail!("a second commit object (the first was {c})");
                }
                if checksum != self.expected {
                    bail!(
                        "layer 0 carries commit {checksum}, but the image's `{COMMIT_LABEL}` label names {}",
                        self.expected
                    );
                }
                let had = self.have(ostree::ObjectType::Commit, &checksum)?;
                let bytes = read_small(entry, size, MAX_METADATA, "the object")?;
                self.metadata(ostree::ObjectType::Commit, COMMIT_TYPE, &checksum, bytes)
                    .with_context(|| format!("commit object {checksum}"))?;
                if !had {
                    // Partial until every object it reaches has come.
                    self.repo.mark_commit_partial(&checksum, true).map_err(glib_err)?;
                }
                self.out.commit_existed = had;
                self.commit = Some(checksum);
            }
            "commitmeta" => {
                needs_regular("detached metadata object")?;
                if self.commit.as_deref() != Some(checksum.as_str()) {
                    bail!("detached metadata of a commit the image does not carry");
                }
                let bytes = read_small(entry, size, MAX_METADATA, "the object")?;
                let v = glib::Variant::from_bytes_with_type(&glib::Bytes::from_owned(bytes), variant_type("a{sv}"));
                if !v.is_normal_form() {
                    bail!("not an a{{sv}} in normal form");
                }
                if self.out.commit_existed {
                    // The repository's own detached metadata (its signatures) stays.
                    return Ok(());
                }
                self.repo
                    .write_commit_detached_metadata(&checksum, Some(&v), gio::Cancellable::NONE)
                    .map_err(glib_err)?;
            }
            "dirtree" | "dirmeta" => {
                needs_regular("metadata object")?;
                let bytes = read_small(entry, size, MAX_METADATA, "the object")?;
                let (kind, type_) = if ext == "dirtree" {
                    (ostree::ObjectType::DirTree, DIRTREE_TYPE)
                } else {
                    (ostree::ObjectType::DirMeta, DIRMETA_TYPE)
                };
                self.metadata(kind, type_, &checksum, bytes).with_context(|| format!("{ext} object {checksum}"))?;
            }
            "file-xattrs" => {
                needs_regular("xattrs object")?;
                let bytes = read_small(entry, size, MAX_XATTRS, "the object")?;
                if sha256_hex(&bytes) != checksum {
                    bail!("its content has another checksum");
                }
                self.xattrs_bytes += bytes.len() as u64;
                if self.xattrs_bytes > MAX_XATTRS_CACHED {
                    bail!("more than {MAX_XATTRS_CACHED} bytes of xattrs objects in one layer");
                }
                self.xattrs.insert(checksum, glib::Bytes::from_owned(bytes));
            }
            "file-xattrs-link" => {
                if let Some((other, _)) = &self.next {
                    bail!("follows the xattrs of {other}, whose content object did not come");
                }
                let bytes = if kind.is_hard_link() {
                    let target = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                    let name = target.rsplit(|b| *b == b'/').next().unwrap_or(&target);
                    let dir = target.rsplit(|b| *b == b'/').nth(1).unwrap_or_default();
                    let sum = format!(
                        "{}{}",
                        String::from_utf8_lossy(dir),
                        String::from_utf8_lossy(name.strip_suffix(b".file-xattrs").unwrap_or(name))
                    );
                    self.xattrs.get(&sum).cloned().with_context(|| {
                        format!("links to the xattrs object {sum}, which did not come before it in this layer")
                    })?
                } else {
                    needs_regular("xattrs link")?;
                    glib::Bytes::from_owned(read_small(entry, size, MAX_XATTRS, "the object")?)
                };
                self.next = Some((checksum, bytes));
            }
            "file" => {
                let xattrs = match self.next.take() {
                    Some((sum, x)) if sum == checksum => x,
                    Some((sum, _)) => bail!("the xattrs before it are those of {sum}"),
                    None => bail!("no xattrs link before the content object"),
                };
                let xattrs = glib::Variant::from_bytes_with_type(&xattrs, variant_type(XATTRS_TYPE));
                if !xattrs.is_normal_form() {
                    bail!("its xattrs are not an a(ayay) in normal form");
                }
                if self.have(ostree::ObjectType::File, &checksum)? {
                    self.out.objects_present += 1;
                    return Ok(());
                }
                let (h_uid, h_gid, mode) =
                    (entry.header().uid()?, entry.header().gid()?, entry.header().mode()? & 0o7777);
                let uid = u32::try_from(pax_number(entry, "uid", h_uid)?).context("a uid beyond 32 bits")?;
                let gid = u32::try_from(pax_number(entry, "gid", h_gid)?).context("a gid beyond 32 bits")?;
                self.bytes = self.bytes.saturating_add(size);
                if self.bytes > self.limits.max_bytes {
                    bail!("more than {} bytes of files: the most an image may carry", self.limits.max_bytes);
                }
                let written = if kind.is_symlink() {
                    let target = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                    let target =
                        std::str::from_utf8(&target).context("a symlink target that is not UTF-8")?.to_string();
                    self.repo
                        .write_symlink(Some(&checksum), uid, gid, Some(&xattrs), &target, gio::Cancellable::NONE)
                        .map_err(glib_err)?
                        .to_string()
                } else if regular {
                    let mode = mode | nix::libc::S_IFREG;
                    if size <= PARALLEL_MAX || self.archive {
                        // Written (and for an archive repository, compressed) by the workers.
                        let data = read_small(entry, size, size, "the object")?;
                        let path = String::from_utf8_lossy(&path).into_owned();
                        let job = FileJob { path, checksum, uid, gid, mode, xattrs, data };
                        if self.jobs.send(job).is_err() {
                            bail!("the writers stopped");
                        }
                        return Ok(());
                    } else {
                        let w = self
                            .repo
                            .write_regfile(Some(&checksum), uid, gid, mode, size, Some(&xattrs))
                            .map_err(glib_err)?;
                        let mut buf = vec![0u8; 1 << 20];
                        loop {
                            let n = entry.read(&mut buf)?;
                            if n == 0 {
                                break;
                            }
                            w.write_all(&buf[..n], gio::Cancellable::NONE).map_err(glib_err)?;
                        }
                        w.finish(gio::Cancellable::NONE).map_err(glib_err)?.to_string()
                    }
                } else {
                    bail!("a content object must be a regular file or a symlink, not a {kind:?}");
                };
                if written != checksum {
                    bail!("its content, owner, mode and xattrs have checksum {written}");
                }
                self.out.objects_written += 1;
            }
            _ => unreachable!("member() accepts these only"),
        }
        Ok(())
    }
}

/// Write the objects of the ostree layers of the image (its blobs in the layout at `dir`) into
/// `repo`, each checked by libostree against its name, then check that every object the commit
/// reaches is there; returns the commit, which is what `ostree.commit` names.
pub fn unencapsulate(
    repo: &ostree::Repo,
    dir: &Path,
    desc: &Descriptor,
    manifest: &serde_json::Value,
    limits: &Limits,
) -> anyhow::Result<(Unencapsulated, Vec<(usize, Descriptor)>)> {
    let split = split(dir, desc, manifest)?;
    repo.prepare_transaction(gio::Cancellable::NONE).map_err(glib_err)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (tx, rx) = std::sync::mpsc::sync_channel::<FileJob>(4 * threads);
    let rx = std::sync::Mutex::new(rx);
    let written = std::sync::atomic::AtomicU64::new(0);
    let first_error: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
    let (result, out, commit) = std::thread::scope(|s| {
        for _ in 0..threads {
            let (repo, rx, written, first_error) = (repo.clone(), &rx, &written, &first_error);
            s.spawn(move || loop {
                let job = rx.lock().expect("job queue lock").recv();
                let Ok(job) = job else { break };
                match write_job(&repo, &job) {
                    Ok(()) => {
                        written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        // The writers go on taking jobs, so that the reader, which stops at
                        // its next entry on seeing the error, is never left blocked.
                        first_error.lock().expect("error lock").get_or_insert(e);
                    }
                }
            });
        }
        let mut reader = Reader {
            repo,
            jobs: tx,
            archive: repo.mode() == ostree::RepoMode::Archive,
            expected: split.commit.clone(),
            commit: None,
            xattrs: HashMap::new(),
            xattrs_bytes: 0,
            next: None,
            limits,
            bytes: 0,
            objects: 0,
            out: Unencapsulated::default(),
        };
        let result = (|| -> anyhow::Result<()> {
            for (i, layer) in &split.ostree {
                oci_import::read_layer(dir, *i, layer, |r| {
                    let mut archive = tar::Archive::new(r);
                    for entry in archive.entries()? {
                        if first_error.lock().expect("error lock").is_some() {
                            bail!("a writer failed");
                        }
                        let mut entry = entry?;
                        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                        reader.entry(*i, &mut entry).with_context(|| format!("`{path}`"))?;
                    }
                    if let Some((sum, _)) = &reader.next {
                        bail!("the xattrs of {sum} end the layer, without its content object");
                    }
                    Ok(())
                })?;
                reader.xattrs.clear();
                reader.xattrs_bytes = 0;
            }
            Ok(())
        })();
        // Closing the queue ends the writers once they wrote what is in it.
        let Reader { out, commit, jobs, .. } = reader;
        drop(jobs);
        (result, out, commit)
    });
    // A writer's error is the cause of a reader's "a writer failed".
    let result = match first_error.into_inner().expect("error lock") {
        Some(e) => Err(e),
        None => result,
    };
    if let Err(e) = result {
        let _ = repo.abort_transaction(gio::Cancellable::NONE);
        return Err(e);
    }
    let mut reader_out = out;
    reader_out.objects_written += written.into_inner();
    repo.commit_transaction(gio::Cancellable::NONE).map_err(glib_err)?;
    let Some(commit) = commit else {
        bail!("layer 0 carries no commit object (sysroot/ostree/repo/objects/XX/REST.commit)");
    };
    complete(repo, &commit, limits)?;
    repo.mark_commit_partial(&commit, false).map_err(glib_err)?;
    reader_out.commit = commit;
    Ok((reader_out, split.derived))
}

/// Check that every object `commit` reaches is in `repo`, naming the first missing one and its
/// path; and that its tree stays within `limits` (paths counted as a checkout would make them)
/// and [`MAX_DEPTH`] directories deep.
fn complete(repo: &ostree::Repo, commit: &str, limits: &Limits) -> anyhow::Result<()> {
    let (tree, meta, _) = commit_root(repo, commit)?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut stack = vec![(String::new(), tree, meta, 0usize)];
    let mut paths: u64 = 0;
    let has = |kind, sum: &str| repo.has_object(kind, sum, gio::Cancellable::NONE).map_err(glib_err);
    while let Some((path, tree, meta, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            bail!("/{path}: more than {MAX_DEPTH} directories deep");
        }
        if seen.insert(meta.clone()) && !has(ostree::ObjectType::DirMeta, &meta)? {
            bail!("the image lacks the dirmeta object {meta} of /{path}");
        }
        if !has(ostree::ObjectType::DirTree, &tree)? {
            bail!("the image lacks the dirtree object {tree} of /{path}");
        }
        let listing = dirtree(repo, &tree)?;
        paths += (listing.files.len() + listing.dirs.len()) as u64;
        if paths > limits.max_members {
            bail!("more than {} paths in the commit's tree: the most an image may have", limits.max_members);
        }
        for (name, sum) in &listing.files {
            if seen.insert(sum.clone()) && !has(ostree::ObjectType::File, sum)? {
                bail!("the image lacks the content object {sum} of /{}", join(&path, name));
            }
        }
        for (name, t, m) in listing.dirs {
            stack.push((join(&path, &name), t, m, depth + 1));
        }
    }
    Ok(())
}

/// Import the ostree-native container image `desc` (its blobs in the layout at `dir`) as the
/// entry `name`: its commit, verified, as a container sees it (`/usr/etc` as `/etc`, and for a
/// commit strata laid out, `/var` as the image had it), with its derived layers over it.
pub fn import(
    store: &mut Store,
    dir: &Path,
    desc: &Descriptor,
    manifest: &serde_json::Value,
    name: String,
    limits: &Limits,
    progress: &Progress,
) -> anyhow::Result<EntryRow> {
    let key = image_key(&desc.digest);
    let work = tempfile::Builder::new().prefix("ostree-container-").tempdir_in(store.tmp_dir())?;
    // bare-user: owners and extended attributes are kept in an xattr of each object, never
    // applied to the host's files (a `security.selinux` label of the image stays the image's).
    let repo = ostree::Repo::new_for_path(work.path());
    repo.create(ostree::RepoMode::BareUser, gio::Cancellable::NONE)
        .map_err(glib_err)
        .context("cannot create a scratch repository")?;
    repo.set_disable_fsync(true);
    let (got, derived) = unencapsulate(&repo, dir, desc, manifest, limits)?;
    let (batch, tree, files, bytes) = commit_tree(store, &repo, &got.commit, progress)?;
    batch.commit(store, None)?;
    let mut batch = Batch::new();
    let view = container_view(store, &mut batch, &tree)?;
    batch.commit(store, None)?;
    let (tree, files, bytes) = if derived.is_empty() {
        (view, files, bytes)
    } else {
        let applied = oci_import::apply_layers(store, dir, &derived, Some((view, 0)), limits)?;
        (applied.tree, files + applied.files, bytes + applied.bytes)
    };
    oci_import::record_settings(store, dir, &key, desc, manifest)?;
    crate::store::local::make_writable(work.path());
    Memo::with_key(EntryKind::Import, name, key).record(store, Built::recorded(tree).totals(files, bytes))
}

/// The tree of `commit` in the store: its files' content stored, owners, modes and extended
/// attributes as the commit has them. Returns the batch to commit, the tree and file totals.
fn commit_tree(
    store: &mut Store,
    repo: &ostree::Repo,
    commit: &str,
    progress: &Progress,
) -> anyhow::Result<(Batch, Digest, u64, u64)> {
    struct Walk<'a> {
        store: &'a Store,
        repo: &'a ostree::Repo,
        batch: Batch,
        trees: HashMap<(String, String), Digest>,
        files: HashMap<String, Node>,
        count: u64,
        bytes: u64,
        bar: &'a indicatif::ProgressBar,
    }
    impl Walk<'_> {
        fn file(&mut self, checksum: &str, path: &str) -> anyhow::Result<Node> {
            if let Some(n) = self.files.get(checksum) {
                return Ok(n.clone());
            }
            let (stream, info, meta, _) = load_content(self.repo, checksum, path)?;
            let node = if info.file_type() == gio::FileType::SymbolicLink {
                let target = info.symlink_target().unwrap_or_default();
                Node::Symlink { meta, target: target.as_os_str().as_encoded_bytes().to_vec() }
            } else {
                let mut reader: Box<dyn Read> = match stream {
                    Some(s) => Box::new(s.into_read()),
                    None => Box::new(std::io::empty()),
                };
                let w = self.store.write_object(&mut reader, &meta, u64::MAX)?;
                if w.new {
                    self.batch.record_placed(w.id, w.size);
                }
                self.count += 1;
                self.bytes += w.size;
                self.bar.inc(1);
                Node::File { meta, size: w.size, content: w.content, link: 0 }
            };
            self.files.insert(checksum.to_string(), node.clone());
            Ok(node)
        }

        fn dir(&mut self, path: &str, tree: &str, meta: &str) -> anyhow::Result<Digest> {
            let key = (tree.to_string(), meta.to_string());
            if let Some(d) = self.trees.get(&key) {
                return Ok(*d);
            }
            let listing = dirtree(self.repo, tree)?;
            let mut entries: Vec<(Name, Node)> = Vec::with_capacity(listing.files.len() + listing.dirs.len());
            let name_of = |n: &str| Name::new(n.as_bytes()).map_err(|e| anyhow::anyhow!("/{}: {e}", join(path, n)));
            for (name, sum) in &listing.files {
                entries.push((name_of(name)?, self.file(sum, &join(path, name))?));
            }
            for (name, t, m) in &listing.dirs {
                let id = self.dir(&join(path, name), t, m)?;
                entries.push((name_of(name)?, Node::Directory { tree: id }));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
                bail!("/{}: twice in dirtree {tree}", join(path, &String::from_utf8_lossy(w[0].0.as_bytes())));
            }
            let id = self.batch.put_tree(&Tree { meta: dirmeta(self.repo, meta)?, entries });
            self.trees.insert(key, id);
            Ok(id)
        }
    }
    let (tree, meta, _) = commit_root(repo, commit)?;
    let bar = progress.spinner("storing the commit's files");
    let mut w = Walk {
        store,
        repo,
        batch: Batch::new(),
        trees: HashMap::new(),
        files: HashMap::new(),
        count: 0,
        bytes: 0,
        bar: &bar,
    };
    let root = w.dir("", &tree, &meta)?;
    let (batch, count, bytes) = (w.batch, w.count, w.bytes);
    bar.finish_and_clear();
    Ok((batch, root, count, bytes))
}

/// The commit's tree as a container sees it: `/usr/etc` at `/etc`; for a commit the OSTree
/// layout step made, `/var` back from `/usr/share/factory/var` (and the tmpfiles.d snippet that
/// recreates it gone), so that laying the tree out again gives the same commit tree.
fn container_view(store: &Store, batch: &mut Batch, root: &Digest) -> anyhow::Result<Digest> {
    use crate::ostree::layout::{FACTORY_VAR, TMPFILES_PATH};
    let mut top = load(store, batch, root)?;
    let Some(Node::Directory { tree: usr_id }) = top.get(b"usr").cloned() else { return Ok(*root) };
    let mut usr = load(store, batch, &usr_id)?;
    if let (Some(etc @ Node::Directory { .. }), None) = (usr.get(b"etc").cloned(), top.get(b"etc")) {
        set(&mut top, "etc", Some(etc));
        set(&mut usr, "etc", None);
    }
    let factory = lookup(store, batch, &usr, FACTORY_VAR)?;
    let snippet = lookup(store, batch, &usr, TMPFILES_PATH)?;
    let var_empty = match top.get(b"var") {
        Some(Node::Directory { tree }) => load(store, batch, tree)?.entries.is_empty(),
        None => true,
        _ => false,
    };
    if let (Some(var @ Node::Directory { .. }), Some(Node::File { .. }), true) = (factory, snippet, var_empty) {
        set(&mut top, "var", Some(var));
        put(store, batch, &mut usr, FACTORY_VAR, None)?;
        put(store, batch, &mut usr, TMPFILES_PATH, None)?;
        if let Some(Node::Directory { tree }) = lookup(store, batch, &usr, &FACTORY_VAR[..2])? {
            if load(store, batch, &tree)?.entries.is_empty() {
                put(store, batch, &mut usr, &FACTORY_VAR[..2], None)?;
            }
        }
    }
    set(&mut top, "usr", Some(Node::Directory { tree: batch.put_tree(&usr) }));
    Ok(batch.put_tree(&top))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(checkout_path("usr/etc"), "etc");
        assert_eq!(checkout_path("usr/etc/os-release"), "etc/os-release");
        assert_eq!(checkout_path("usr/etcetera"), "usr/etcetera");
        assert_eq!(image_path("usr/etc/passwd"), "etc/passwd");
        assert_eq!(image_path("usr/lib/sysimage/dpkg/status"), "var/lib/dpkg/status");
        assert_eq!(image_path("usr/share/factory/var/lib/apt/lists/x"), "var/lib/apt/lists/x");
        assert_eq!(image_path("usr/lib/modules/6.1.0-9-amd64/vmlinuz"), "boot/vmlinuz-6.1.0-9-amd64");
        assert_eq!(image_path("usr/lib/modules/6.1.0-9-amd64/initramfs.img"), "boot/initrd.img-6.1.0-9-amd64");
        assert_eq!(
            image_path("usr/lib/modules/6.1.0-9-amd64/kernel/x.ko"),
            "usr/lib/modules/6.1.0-9-amd64/kernel/x.ko"
        );
    }

    #[test]
    fn members() {
        let sum = "ab".to_string() + &"c".repeat(62);
        let path = format!("sysroot/ostree/repo/objects/ab/{}.file", "c".repeat(62));
        match member(path.as_bytes()).unwrap() {
            Some(Member::Object { checksum, ext }) => assert_eq!((checksum.as_str(), ext), (sum.as_str(), "file")),
            _ => panic!(),
        }
        assert!(matches!(member(b"sysroot/ostree/repo/config").unwrap(), Some(Member::Other)));
        assert!(member(b"usr/bin/sh").unwrap().is_none());
        for bad in [
            format!("sysroot/ostree/repo/objects/AB/{}.file", "c".repeat(62)),
            format!("sysroot/ostree/repo/objects/ab/{}.file", "c".repeat(61)),
            format!("sysroot/ostree/repo/objects/ab/{}.exe", "c".repeat(62)),
            "sysroot/ostree/repo/objects/../../../etc/passwd".to_string(),
        ] {
            assert!(member(bad.as_bytes()).unwrap_err().to_string().contains("not an object name"), "{bad}");
        }
    }
}
