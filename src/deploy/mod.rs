//! Deploying an OSTree commit to a bootable disk image (raw or qcow2) or a live ISO, cached in
//! the store.
//!
//! An artifact is a store entry of kind `artifact` whose tree holds the one image file. Its key
//! is the commit checksum and every option that shapes the image (format; for disks the size
//! and root file system; for ISOs the volume id and source date; kernel arguments, OS name), so
//! a second deploy of an unchanged image is a lookup and a copy.
//! A disk: an OSTree sysroot in a scratch directory ([`sysroot`]), made into a GPT disk with
//! GRUB for BIOS and UEFI ([`disk`], [`grub`]), converted to qcow2 if asked. An ISO: the
//! commit's tree with a live initramfs, squashed and made bootable ([`live`]).

pub mod boot;
pub mod disk;
pub mod grub;
pub mod live;
pub mod options;
pub mod sysroot;
pub mod transcript;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::store::batch::Batch;
use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::local::Store;
use crate::store::memo::{self, Memo};
use crate::store::meta::Meta;
use crate::store::object::{hash_file, Stamp};
use crate::store::tree::{object_id, Name, Node, Tree};
use crate::store::Backend;
use crate::util::progress::Progress;

/// Bumped when the image layout changes, so that cached artifacts are not reused.
const DEPLOY_VERSION: &[u8] = b"1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
    Iso,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Iso => "iso",
        }
    }
}

/// The commit to deploy.
#[derive(Clone, Debug)]
pub struct Commit<'a> {
    /// The repository holding it, and its ref there.
    pub repo: &'a Path,
    pub reference: &'a str,
    pub checksum: &'a str,
    /// Its content as a store tree (needed for ISOs only).
    pub tree: Option<Digest>,
    /// `SOURCE_DATE_EPOCH` for time stamps inside the artifact.
    pub source_date: u64,
}

/// The root file system of a disk image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    Ext4,
    Xfs,
}

impl Filesystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Xfs => "xfs",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Filesystem> {
        match s {
            "ext4" => Ok(Filesystem::Ext4),
            "xfs" => Ok(Filesystem::Xfs),
            other => bail!("root file system `{other}` is not supported: expected ext4 or xfs"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DeployOptions {
    pub format: Format,
    /// The whole disk, in bytes; default: what the tree needs plus room for updates.
    pub size: Option<u64>,
    /// The root file system of a disk image.
    pub filesystem: Filesystem,
    /// The ISO's volume label, which the live initramfs finds its root by.
    pub volid: String,
    /// Kernel arguments besides `root=`, which strata sets.
    pub kargs: Vec<String>,
    /// The OSTree stateroot (`--os`).
    pub osname: String,
}

/// A disk image in the store.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub entry: EntryRow,
    /// The image file inside the store (read-only: copy it out).
    pub file: PathBuf,
    pub size: u64,
    /// blake3 of the image file.
    pub content: Digest,
    pub cached: bool,
    /// How a new artifact was put together (absent when it came from the cache).
    pub built: Option<Built>,
}

/// The parts of a newly built artifact.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Built {
    Disk(disk::Layout),
    Iso {
        #[serde(flatten)]
        layout: live::IsoLayout,
        /// The live initramfs step and whether it came from the cache.
        initramfs_step: Digest,
        initramfs_cached: bool,
    },
}

/// The kernel arguments of an artifact: for a disk, the root file system by label and no GPT
/// auto-mounting (the deployment root is immutable); for an ISO, the live root by volume label;
/// then the caller's.
pub fn kernel_arguments(opts: &DeployOptions) -> Vec<String> {
    if opts.format == Format::Iso {
        return live::kernel_arguments(&opts.volid, &opts.kargs);
    }
    let mut kargs = vec![format!("root=LABEL={}", sysroot::ROOT_LABEL), "systemd.gpt_auto=0".to_string()];
    kargs.extend(opts.kargs.iter().cloned());
    kargs
}

/// Refuse kernel arguments the boot loader configurations cannot carry as they are: GRUB
/// script (the ISO's menu) and OSTree's loader entries split on spaces and treat quotes, `$`,
/// `;`, braces and backslashes specially.
pub fn check_kernel_arguments(kargs: &[String]) -> anyhow::Result<()> {
    for k in kargs {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || "-_.,:=/+@%~^".contains(c)) {
            bail!("kernel argument `{k}`: only letters, digits and -_.,:=/+@%~^ are passed to the boot loader");
        }
    }
    Ok(())
}

/// Deploy `commit` to an artifact of `opts.format`.
pub fn deploy(
    store: &mut Store,
    commit: &Commit<'_>,
    opts: &DeployOptions,
    refs: &[Digest],
    progress: &Progress,
) -> anyhow::Result<Artifact> {
    let _span = tracing::debug_span!("deploy", format = opts.format.as_str()).entered();
    if opts.osname.is_empty() || !opts.osname.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("invalid OS name `{}`: letters, digits, `-`, `_` and `.`", opts.osname);
    }
    let iso = opts.format == Format::Iso;
    if iso {
        live::check_volume_id(&opts.volid)?;
    }
    check_kernel_arguments(&opts.kargs)?;
    let kargs = kernel_arguments(opts);
    // Each field is blank where it does not shape this kind of artifact.
    let size = if iso { String::new() } else { opts.size.map(|s| s.to_string()).unwrap_or_default() };
    let source_date = if iso { commit.source_date.to_string() } else { String::new() };
    let (artifact, version) = if iso { (&b"iso"[..], live::ISO_VERSION) } else { (&b"disk"[..], DEPLOY_VERSION) };
    let key = entry_key(
        EntryKind::Artifact,
        &[
            ("artifact", artifact),
            ("version", version),
            ("commit", commit.checksum.as_bytes()),
            ("format", opts.format.as_str().as_bytes()),
            ("size", size.as_bytes()),
            ("kargs", kargs.join("\0").as_bytes()),
            ("os", opts.osname.as_bytes()),
            ("filesystem", if iso { b"" } else { opts.filesystem.as_str().as_bytes() }),
            ("volid", if iso { opts.volid.as_bytes() } else { b"" }),
            ("source-date", source_date.as_bytes()),
        ],
        &[],
    );
    if let Some(entry) = store.entry(&key)? {
        let (file, size, content) = single_file(store, &entry)?;
        return Ok(Artifact { entry, file, size, content, cached: true, built: None });
    }

    let work = tempfile::Builder::new().prefix("deploy-").tempdir_in(store.tmp_dir())?;
    let job = Job { work: work.path(), commit, opts, kargs: &kargs, key, refs, progress };
    let result = if iso { build_iso(store, &job) } else { build_disk(store, &job) };
    // libostree marks deployment directories immutable; clear that so the scratch can go.
    let _ = crate::util::process::command("chattr").args(["-R", "-i"]).arg(work.path()).output();
    result
}

/// What building one artifact needs.
struct Job<'a> {
    /// A scratch directory on the store's file system.
    work: &'a Path,
    commit: &'a Commit<'a>,
    opts: &'a DeployOptions,
    /// The kernel arguments, complete.
    kargs: &'a [String],
    /// The artifact's entry key.
    key: Digest,
    refs: &'a [Digest],
    progress: &'a Progress,
}

fn build_disk(store: &mut Store, job: &Job<'_>) -> anyhow::Result<Artifact> {
    let Job { work, commit, opts, kargs, key, refs, progress } = *job;
    let recording = transcript::Recording::start();
    let bar = progress.spinner("deploying: sysroot");
    let root = work.join("sysroot");
    fs_err::create_dir(&root)?;
    sysroot::build(&root, commit.repo, commit.reference, commit.checksum, &opts.osname, kargs, opts.filesystem)?;
    bar.set_message("deploying: disk image");
    let raw = work.join("disk.raw");
    let layout = disk::build_raw(&root, &raw, opts.size, opts.filesystem, work)?;
    let file = match opts.format {
        Format::Raw | Format::Iso => raw,
        Format::Qcow2 => {
            bar.set_message("deploying: qcow2");
            let q = work.join("disk.qcow2");
            disk::to_qcow2(&raw, &q)?;
            fs_err::remove_file(&raw)?;
            q
        }
    };
    bar.set_message("deploying: storing the image");
    let mut artifact = store_artifact(store, &file, opts, key, refs, recording.finish())?;
    bar.finish_and_clear();
    artifact.built = Some(Built::Disk(layout));
    Ok(artifact)
}

fn build_iso(store: &mut Store, job: &Job<'_>) -> anyhow::Result<Artifact> {
    let Job { work, commit, opts, kargs, key, refs, progress } = *job;
    let tree = commit.tree.context("a live ISO needs the commit's tree in the store")?;
    let live = live::live_tree(store, &tree)?;
    let (step, initramfs, initramfs_cached) = live::initramfs(store, &live, &opts.osname, refs, progress)?;
    let input = live::IsoInput {
        live: &live,
        initramfs: &initramfs,
        kargs,
        volid: &opts.volid,
        title: &format!("{} live ({})", opts.osname, commit.checksum.get(..12).unwrap_or(commit.checksum)),
        source_date: commit.source_date,
    };
    let recording = transcript::Recording::start();
    let (file, layout) = live::build_iso(store, work, &input, progress)?;
    let mut refs = refs.to_vec();
    refs.push(step.key);
    let mut artifact = store_artifact(store, &file, opts, key, &refs, recording.finish())?;
    artifact.built = Some(Built::Iso { layout, initramfs_step: step.key, initramfs_cached });
    Ok(artifact)
}

/// Record `file` as the artifact entry `key`: one file object, one tree, one entry, with the
/// transcript of its assembly as its log.
fn store_artifact(
    store: &mut Store,
    file: &Path,
    opts: &DeployOptions,
    key: Digest,
    refs: &[Digest],
    log: String,
) -> anyhow::Result<Artifact> {
    let mut f = fs_err::File::open(file)?;
    let st = f.metadata()?;
    let content = hash_file(f.file_mut(), st.len())?;
    let meta = Meta { mode: 0o644, uid: 0, gid: 0, xattrs: vec![] };
    let id = object_id(&meta, st.len(), &content);
    let known = store.has_objects(&[id])?[0];
    let mut batch = Batch::new();
    if !known {
        store.object_store().insert_file(&id, file, Stamp::of(&st), &meta)?;
        batch.record_placed(id, st.len());
    }
    let stem = if opts.format == Format::Iso { "live" } else { "disk" };
    let name = Name::new(format!("{stem}.{}", opts.format.as_str())).expect("valid name");
    let tree = Tree {
        meta: Meta { mode: 0o755, uid: 0, gid: 0, xattrs: vec![] },
        entries: vec![(name, Node::File { meta, size: st.len(), content, link: 0 })],
    };
    let tree_id = batch.put_tree(&tree);
    let step = Memo::with_key(EntryKind::Artifact, format!("{}/{}", opts.osname, opts.format.as_str()), key);
    let built = memo::Built::in_batch(tree_id, batch).refs(refs).totals(1, st.len()).log(log);
    let entry = step.record(store, built)?;
    let (file, size, content) = single_file(store, &entry)?;
    Ok(Artifact { entry, file, size, content, cached: false, built: None })
}

/// The one file of a single-file entry (an artifact, a live initramfs step): its object's path,
/// size and content hash.
pub(crate) fn single_file(store: &Store, entry: &EntryRow) -> anyhow::Result<(PathBuf, u64, Digest)> {
    match store.tree(&entry.tree)?.entries.as_slice() {
        [(_, Node::File { meta, size, content, .. })] => {
            Ok((store.object_store().path(&object_id(meta, *size, content)), *size, *content))
        }
        _ => bail!("entry {} ({}) does not hold one file", entry.key.short(), entry.name),
    }
}

/// Copy the artifact to `out` (reflinked where the file system can), unless `out` already holds
/// exactly it; returns whether it copied.
pub fn write_output(artifact: &Artifact, out: &Path) -> anyhow::Result<bool> {
    if let Ok(st) = fs_err::metadata(out) {
        if st.len() == artifact.size {
            let mut f = fs_err::File::open(out)?;
            if hash_file(f.file_mut(), st.len())? == artifact.content {
                return Ok(false);
            }
        }
    }
    // A temporary file next to the output (removed if anything fails), renamed over it.
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".strata-deploy-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write into `{}`", dir.display()))?;
    // Holes stay holes (a raw disk is mostly empty); copy_file_range reflinks where it can.
    let src = fs_err::File::open(&artifact.file)?;
    crate::store::object::copy_sparse(src.file(), tmp.as_file(), artifact.size)
        .with_context(|| format!("cannot copy the image to `{}`", out.display()))?;
    let mut perms = tmp.as_file().metadata()?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    tmp.as_file().set_permissions(perms)?;
    tmp.persist(out).with_context(|| format!("cannot write `{}`", out.display()))?;
    Ok(true)
}
