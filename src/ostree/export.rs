//! Writing a store tree into an OSTree repository as a commit, through libostree.
//!
//! The export is incremental at two levels, both remembered in the store database:
//! - every store file object maps to its OSTree content checksum (`ostree_files`), so a file
//!   the repository already holds is neither read nor hashed again;
//! - every store tree a repository holds completely maps to its dirtree and dirmeta checksums
//!   (`ostree_trees`), so an unchanged subtree is linked into the new commit by checksum
//!   without being walked.
//!
//! New content objects are written by one thread per core, each with its own handle on the
//! repository (libostree's writes within one transaction are thread-safe). Files are read
//! once: libostree hashes while it writes (and compresses, in an `archive` repository).
//!
//! The commit is reproducible: its time is the source date, its metadata holds only what
//! identifies the image (version, name, strata entry key, source date, kernel), and its parent
//! is the ref's previous commit. Exporting a tree identical to the ref's commit writes nothing
//! and returns that commit.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::meta::Meta;
use crate::store::tree::{object_id, Node, Tree};
use crate::util::progress::Progress;

/// Files up to this size are read into memory and written in one call.
const INLINE_MAX: u64 = 256 * 1024;

/// The repository modes strata writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoMode {
    /// Files as they are, with owners: for a system's own repository (needs root).
    Bare,
    /// Compressed objects: for serving over HTTP.
    Archive,
    /// Files owned by the caller, owners kept in an xattr.
    BareUser,
}

impl RepoMode {
    fn to_ostree(self) -> ostree::RepoMode {
        match self {
            RepoMode::Bare => ostree::RepoMode::Bare,
            RepoMode::Archive => ostree::RepoMode::Archive,
            RepoMode::BareUser => ostree::RepoMode::BareUser,
        }
    }
}

/// What goes into the commit besides the tree.
#[derive(Clone, Debug)]
pub struct CommitMeta {
    pub subject: String,
    /// Commit time and `strata.source-date`: seconds since 1970.
    pub source_date: u64,
    pub version: Option<String>,
    pub image: Option<String>,
    /// The strata entry the tree came from.
    pub entry: Digest,
    /// The kernel version, for bootable trees (`ostree.bootable`, `ostree.linux`).
    pub kernel: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportReport {
    pub commit: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub repo: PathBuf,
    /// Objects the repository did not have before (content and metadata).
    pub objects_written: u64,
    pub content_bytes_written: u64,
    /// Files read and hashed (the others were known to the repository).
    pub files_hashed: u64,
    /// Directories linked in by checksum without a walk.
    pub trees_reused: u64,
    /// False when the ref already pointed at an identical commit.
    pub new_commit: bool,
    pub parent: Option<String>,
}

/// Open the repository at `path`, creating it (in `mode`, default archive) when missing.
pub fn open_repo(path: &Path, mode: Option<RepoMode>) -> anyhow::Result<ostree::Repo> {
    let repo = ostree::Repo::new_for_path(path);
    if path.join("config").exists() {
        repo.open(gio::Cancellable::NONE)
            .with_context(|| format!("cannot open the OSTree repository `{}`", path.display()))?;
        if let Some(mode) = mode {
            if repo.mode() != mode.to_ostree() {
                bail!("the repository `{}` is in mode {:?}, not {mode:?}", path.display(), repo.mode());
            }
        }
        return Ok(repo);
    }
    if path.exists() && fs_err::read_dir(path)?.next().is_some() {
        bail!("`{}` is neither an OSTree repository (no config) nor empty", path.display());
    }
    fs_err::create_dir_all(path)?;
    repo.create(mode.unwrap_or(RepoMode::Archive).to_ostree(), gio::Cancellable::NONE)
        .with_context(|| format!("cannot create the OSTree repository `{}`", path.display()))?;
    Ok(repo)
}

/// The key under which the store remembers what a repository holds.
pub fn repo_key(path: &Path) -> anyhow::Result<String> {
    let abs = fs_err::canonicalize(path)?;
    Ok(abs.to_string_lossy().into_owned())
}

/// A file the repository does not have yet.
struct Job {
    object: Digest,
    meta: Meta,
    size: u64,
    path: String,
}

/// What the walk of the store tree found.
#[derive(Default)]
struct Plan {
    /// Trees to turn into dirtrees, by id.
    trees: HashMap<Digest, Tree>,
    /// Trees the repository holds: (dirtree, dirmeta).
    reused: HashMap<Digest, (String, String)>,
    /// File objects with the first path they were seen at.
    files: HashMap<Digest, (Meta, u64, String)>,
}

/// Export tree `root` of the store as a commit on `reference` in the repository at `repo_path`.
pub fn export(
    store: &mut Store,
    root: &Digest,
    repo_path: &Path,
    mode: Option<RepoMode>,
    reference: &str,
    meta: &CommitMeta,
    progress: &Progress,
) -> anyhow::Result<ExportReport> {
    let _span = tracing::debug_span!("ostree export").entered();
    check_ref(reference)?;
    let repo = open_repo(repo_path, mode)?;
    let key = repo_key(repo_path)?;
    // gc prunes no repository an export is writing into.
    let _lock = crate::ostree::retain::lock_for_export(store.root(), &key, store.lock_wait())?;

    let mut plan = Plan::default();
    {
        let _span = tracing::debug_span!("plan").entered();
        walk(store, &repo, &key, root, "", &mut plan)?;
    }
    let objects: Vec<Digest> = plan.files.keys().copied().collect();
    let known = crate::ostree::mapping::ostree_checksums(store.db(), &objects)?;
    let mut checksums: HashMap<Digest, String> = HashMap::new();
    let mut jobs = Vec::new();
    for (object, known) in objects.into_iter().zip(known) {
        if let Some(sum) = known {
            let hex = sum.to_hex();
            if repo.has_object(ostree::ObjectType::File, &hex, gio::Cancellable::NONE)? {
                checksums.insert(object, hex);
                continue;
            }
        }
        let (meta, size, path) = plan.files[&object].clone();
        jobs.push(Job { object, meta, size, path });
    }
    // Large files first, so that no core is left with one big file at the end.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.size));
    tracing::debug!(
        trees = plan.trees.len(),
        reused = plan.reused.len(),
        files = plan.files.len(),
        new = jobs.len(),
        "export plan"
    );

    repo.prepare_transaction(gio::Cancellable::NONE)?;
    let result = write_commit(store, &repo, &plan, &jobs, &mut checksums, root, reference, meta, progress);
    let (commit, parent, new_commit, built) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = repo.abort_transaction(gio::Cancellable::NONE);
            return Err(e);
        }
    };
    let stats = repo.commit_transaction(gio::Cancellable::NONE).context("cannot commit the repository transaction")?;
    // Complete now, whether new or the ref's commit again (which an export killed before this
    // line left partial).
    if let Err(e) = repo.mark_commit_partial(&commit, false) {
        tracing::warn!("commit {commit} stays marked partial: {e}");
    }

    // Only now does the repository hold the objects: remember them.
    let tx = store.db_mut().transaction()?;
    for job in &jobs {
        crate::ostree::mapping::insert_ostree_file(&tx, &job.object, &hex_digest(&checksums[&job.object])?)?;
    }
    for (tree, dirtree, dirmeta) in &built {
        crate::ostree::mapping::insert_ostree_tree(&tx, &key, tree, &hex_digest(dirtree)?, &hex_digest(dirmeta)?)?;
    }
    tx.commit()?;

    Ok(ExportReport {
        commit,
        reference: reference.to_string(),
        repo: repo_path.to_path_buf(),
        objects_written: (stats.get_content_objects_written() + stats.get_metadata_objects_written()) as u64,
        content_bytes_written: stats.get_content_bytes_written(),
        files_hashed: jobs.len() as u64,
        trees_reused: plan.reused.len() as u64,
        new_commit,
        parent,
    })
}

type Built = Vec<(Digest, String, String)>;

/// Inside the transaction: content, dirtrees, the commit and the ref.
#[allow(clippy::too_many_arguments)]
fn write_commit(
    store: &Store,
    repo: &ostree::Repo,
    plan: &Plan,
    jobs: &[Job],
    checksums: &mut HashMap<Digest, String>,
    root: &Digest,
    reference: &str,
    meta: &CommitMeta,
    progress: &Progress,
) -> anyhow::Result<(String, Option<String>, bool, Built)> {
    {
        let _span = tracing::debug_span!("write content", files = jobs.len()).entered();
        checksums.extend(write_files(store, repo, jobs, progress)?);
    }
    let _span = tracing::debug_span!("write dirtrees and commit").entered();
    let mut dirmetas = HashMap::new();
    let mut built = Vec::new();
    let mtree = ostree::MutableTree::new();
    build_mtree(repo, plan, checksums, &mut dirmetas, &mtree, root, "", &mut built)?;
    let root_file = repo.write_mtree(&mtree, gio::Cancellable::NONE)?;
    let root_file = root_file
        .downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow::anyhow!("write_mtree returned no repository file"))?;
    let built: Built = built
        .into_iter()
        .map(|(tree, mt): (Digest, ostree::MutableTree)| {
            (tree, mt.contents_checksum().to_string(), mt.metadata_checksum().to_string())
        })
        .collect();

    let metadata = commit_metadata(meta);
    let parent = repo.resolve_rev(reference, true)?.map(|s| s.to_string());
    if let Some(parent) = &parent {
        let (commit, _) = repo.load_commit(parent)?;
        let same_root = commit.child_value(6).data_as_bytes()
            == hex_bytes_variant(&root_file.tree_get_contents_checksum())
            && commit.child_value(7).data_as_bytes() == hex_bytes_variant(&root_file.tree_get_metadata_checksum());
        if same_root && commit.child_value(0) == metadata {
            return Ok((parent.clone(), Some(parent.clone()), false, built));
        }
    }
    let commit = repo
        .write_commit_with_time(
            parent.as_deref(),
            Some(&meta.subject),
            None,
            Some(&metadata),
            &root_file,
            meta.source_date,
            gio::Cancellable::NONE,
        )
        .context("cannot write the commit")?
        .to_string();
    // Partial until the transaction is committed: libostree moves the staged objects into place
    // in no particular order, so a process killed half-way can leave the commit without some of
    // its dirtrees. A partial commit is what fsck and pulls know to be incomplete; the next
    // export writes what is missing.
    repo.mark_commit_partial(&commit, true)?;
    repo.transaction_set_ref(None, reference, Some(&commit));
    Ok((commit, parent, true, built))
}

/// The bytes of a checksum as it sits in a commit variant (`ay` of 32 bytes).
fn hex_bytes_variant(hex: &Option<glib::GString>) -> glib::Bytes {
    let bytes = hex.as_deref().and_then(|h| hex::decode(h).ok()).unwrap_or_default();
    glib::Bytes::from_owned(bytes)
}

fn hex_digest(hex: &str) -> anyhow::Result<Digest> {
    hex::decode(hex)
        .ok()
        .and_then(|b| Digest::from_slice(&b))
        .with_context(|| format!("bad checksum `{hex}` from libostree"))
}

/// Walk the store tree: trees the repository holds are noted and not entered.
fn walk(store: &Store, repo: &ostree::Repo, key: &str, id: &Digest, at: &str, plan: &mut Plan) -> anyhow::Result<()> {
    if plan.trees.contains_key(id) || plan.reused.contains_key(id) {
        return Ok(());
    }
    if let Some((dirtree, dirmeta)) = crate::ostree::mapping::ostree_tree(store.db(), key, id)? {
        let (dirtree, dirmeta) = (dirtree.to_hex(), dirmeta.to_hex());
        if repo.has_object(ostree::ObjectType::DirTree, &dirtree, gio::Cancellable::NONE)?
            && repo.has_object(ostree::ObjectType::DirMeta, &dirmeta, gio::Cancellable::NONE)?
        {
            plan.reused.insert(*id, (dirtree, dirmeta));
            return Ok(());
        }
    }
    let tree = store.tree(id)?;
    for (name, node) in &tree.entries {
        let Ok(name) = std::str::from_utf8(name.as_bytes()) else {
            bail!("{at}/{}: OSTree needs file names in UTF-8", String::from_utf8_lossy(name.as_bytes()));
        };
        let path = format!("{at}/{name}");
        match node {
            Node::Directory { tree } => walk(store, repo, key, tree, &path, plan)?,
            Node::File { meta, size, content, .. } => {
                plan.files.entry(object_id(meta, *size, content)).or_insert_with(|| (meta.clone(), *size, path));
            }
            Node::Symlink { target, .. } => {
                if std::str::from_utf8(target).is_err() {
                    bail!("{path}: OSTree needs symlink targets in UTF-8");
                }
            }
            other => bail!(
                "{path} is a {}, which OSTree cannot store (export the image, whose layout step leaves these out)",
                other.kind_name()
            ),
        }
    }
    plan.trees.insert(*id, tree);
    Ok(())
}

/// Write new content objects, one thread per core; returns (object, checksum) pairs.
fn write_files(
    store: &Store,
    repo: &ostree::Repo,
    jobs: &[Job],
    progress: &Progress,
) -> anyhow::Result<Vec<(Digest, String)>> {
    if jobs.is_empty() {
        return Ok(vec![]);
    }
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let bar = progress.bytes(total, "writing OSTree objects");
    let objects = store.object_store();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(jobs.len());
    let results: Mutex<Vec<(Digest, String)>> = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            let repo = repo.clone();
            let (next, failed, first_error, results, objects, bar) =
                (&next, &failed, &first_error, &results, &objects, &bar);
            s.spawn(move || {
                let mut mine = Vec::new();
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    match write_file(&repo, &objects.path(&job.object), job) {
                        Ok(sum) => {
                            bar.inc(job.size);
                            mine.push((job.object, sum));
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("error lock").get_or_insert(e);
                        }
                    }
                }
                results.lock().expect("results lock").extend(mine);
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = first_error.into_inner().expect("error lock") {
        return Err(e);
    }
    Ok(results.into_inner().expect("results lock"))
}

fn write_file(repo: &ostree::Repo, object: &Path, job: &Job) -> anyhow::Result<String> {
    let what = || format!("cannot write {} (store object {}) to the repository", job.path, job.object.short());
    let mode = libc_mode(0o100000, job.meta.mode);
    let xattrs = xattrs_variant(&job.meta.xattrs);
    let mut file = fs_err::File::open(object).with_context(what)?;
    if job.size <= INLINE_MAX {
        let mut data = Vec::with_capacity(job.size as usize);
        file.read_to_end(&mut data).with_context(what)?;
        if data.len() as u64 != job.size {
            bail!(
                "store object {} has {} bytes, expected {}: run `strata store verify`",
                job.object,
                data.len(),
                job.size
            );
        }
        let sum = repo
            .write_regfile_inline(
                None,
                job.meta.uid,
                job.meta.gid,
                mode,
                xattrs.as_ref(),
                &data,
                gio::Cancellable::NONE,
            )
            .with_context(what)?;
        return Ok(sum.to_string());
    }
    // Larger files stream through libostree (which hashes, and compresses for an archive
    // repository, as it reads).
    let info = gio::FileInfo::new();
    info.set_file_type(gio::FileType::Regular);
    info.set_size(job.size as i64);
    info.set_attribute_uint32("unix::uid", job.meta.uid);
    info.set_attribute_uint32("unix::gid", job.meta.gid);
    info.set_attribute_uint32("unix::mode", mode);
    let input = gio::ReadInputStream::new(file.into_parts().0);
    let (stream, len) = ostree::raw_file_to_content_stream(&input, &info, xattrs.as_ref(), gio::Cancellable::NONE)
        .with_context(what)?;
    Ok(repo.write_content(None, &stream, len, gio::Cancellable::NONE).with_context(what)?.to_hex())
}

/// Fill `mt` from store tree `id`, recording every (tree, mtree) pair built.
#[allow(clippy::too_many_arguments)]
fn build_mtree(
    repo: &ostree::Repo,
    plan: &Plan,
    checksums: &HashMap<Digest, String>,
    dirmetas: &mut HashMap<Meta, String>,
    mt: &ostree::MutableTree,
    id: &Digest,
    at: &str,
    built: &mut Vec<(Digest, ostree::MutableTree)>,
) -> anyhow::Result<()> {
    if let Some((dirtree, dirmeta)) = plan.reused.get(id) {
        mt.fill_empty_from_dirtree(repo, dirtree, dirmeta);
        return Ok(());
    }
    let tree = &plan.trees[id];
    let dirmeta = match dirmetas.get(&tree.meta) {
        Some(sum) => sum.clone(),
        None => {
            let sum = write_dirmeta(repo, &tree.meta)?;
            dirmetas.insert(tree.meta.clone(), sum.clone());
            sum
        }
    };
    mt.set_metadata_checksum(&dirmeta);
    for (name, node) in &tree.entries {
        let name = std::str::from_utf8(name.as_bytes()).expect("checked by walk");
        let path = format!("{at}/{name}");
        match node {
            Node::Directory { tree } => {
                let sub = mt.ensure_dir(name)?;
                build_mtree(repo, plan, checksums, dirmetas, &sub, tree, &path, built)?;
            }
            Node::File { meta, size, content, .. } => {
                mt.replace_file(name, &checksums[&object_id(meta, *size, content)])?;
            }
            Node::Symlink { meta, target } => {
                let target = std::str::from_utf8(target).expect("checked by walk");
                let xattrs = xattrs_variant(&meta.xattrs);
                let sum = repo
                    .write_symlink(None, meta.uid, meta.gid, xattrs.as_ref(), target, gio::Cancellable::NONE)
                    .with_context(|| format!("cannot write the symlink {path}"))?;
                mt.replace_file(name, &sum)?;
            }
            _ => unreachable!("refused by walk"),
        }
    }
    built.push((*id, mt.clone()));
    Ok(())
}

/// Write the dirmeta object for `meta` (owner, mode and xattrs of a directory).
fn write_dirmeta(repo: &ostree::Repo, meta: &Meta) -> anyhow::Result<String> {
    let xattrs = xattrs_variant(&meta.xattrs).unwrap_or_else(|| xattrs_array(&[]));
    let mode = libc_mode(0o040000, meta.mode);
    // (uuua(ayay)): uid, gid, mode in big-endian, as OSTree stores them.
    let v = glib::Variant::tuple_from_iter([
        meta.uid.to_be().to_variant(),
        meta.gid.to_be().to_variant(),
        mode.to_be().to_variant(),
        xattrs,
    ]);
    let sum = repo.write_metadata(ostree::ObjectType::DirMeta, None, &v, gio::Cancellable::NONE)?;
    Ok(sum.to_hex())
}

fn libc_mode(kind: u32, perm: u32) -> u32 {
    kind | (perm & 0o7777)
}

/// xattrs as OSTree stores them: `a(ayay)`, names NUL-terminated; `None` when there are none.
fn xattrs_variant(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Option<glib::Variant> {
    (!xattrs.is_empty()).then(|| xattrs_array(xattrs))
}

fn xattrs_array(xattrs: &[(Vec<u8>, Vec<u8>)]) -> glib::Variant {
    let items = xattrs.iter().map(|(name, value)| {
        let mut name = name.clone();
        name.push(0);
        (name, value.clone()).to_variant()
    });
    glib::Variant::array_from_iter_with_type(glib::VariantTy::new("(ayay)").expect("valid type"), items)
}

/// The commit's metadata (`a{sv}`), with keys in sorted order.
fn commit_metadata(meta: &CommitMeta) -> glib::Variant {
    let mut entries: Vec<(&str, glib::Variant)> =
        vec![("strata.entry", meta.entry.to_hex().to_variant()), ("strata.source-date", meta.source_date.to_variant())];
    if let Some(v) = &meta.version {
        entries.push(("version", v.to_variant()));
    }
    if let Some(image) = &meta.image {
        entries.push(("strata.image", image.to_variant()));
    }
    if let Some(kernel) = &meta.kernel {
        entries.push(("ostree.bootable", true.to_variant()));
        entries.push(("ostree.linux", kernel.to_variant()));
    }
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let items = entries
        .into_iter()
        .map(|(k, v)| glib::Variant::from_dict_entry(&k.to_variant(), &glib::Variant::from_variant(&v)));
    glib::Variant::array_from_iter_with_type(glib::VariantTy::new("{sv}").expect("valid type"), items)
}

/// OSTree's rule for ref names: `/`-separated parts of letters, digits, `_`, `-` and `.`,
/// not starting with `.` or `-`.
pub fn check_ref(reference: &str) -> anyhow::Result<()> {
    let ok = !reference.is_empty()
        && reference.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with(['.', '-'])
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
    if !ok {
        bail!("invalid ref `{reference}`: expected `/`-separated parts of letters, digits, `_`, `-` and `.` (e.g. debian/12/x86_64/base)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        for good in ["debian/12/x86_64/base", "a", "exampleos/x86_64/stable-1.0"] {
            check_ref(good).unwrap();
        }
        for bad in ["", "/a", "a/", "a//b", ".a", "a/-b", "a b", "a:b"] {
            assert!(check_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_is_sorted_and_stable() {
        let meta = CommitMeta {
            subject: "s".into(),
            source_date: 1704067200,
            version: Some("1.0".into()),
            image: Some("img".into()),
            entry: Digest::of(b"x"),
            kernel: Some("6.1.0-1-amd64".into()),
        };
        let v = commit_metadata(&meta);
        let keys: Vec<String> =
            (0..v.n_children()).map(|i| v.child_value(i).child_value(0).get::<String>().unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(v, commit_metadata(&meta));
        assert_eq!(v.type_().as_str(), "a{sv}");
    }
}
