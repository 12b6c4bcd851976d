//! Deploying an OSTree commit to a bootable disk image (raw or qcow2), cached in the store.
//!
//! An artifact is a store entry of kind `artifact` whose tree holds the one image file. Its key
//! is the commit checksum and every option that shapes the image (format, size, kernel
//! arguments, OS name), so a second deploy of an unchanged image is a lookup and a copy.
//! Building one: an OSTree sysroot in a scratch directory ([`sysroot`]), made into a GPT disk
//! with GRUB for BIOS and UEFI ([`disk`], [`grub`]), converted to qcow2 if asked.

pub mod disk;
pub mod grub;
pub mod sysroot;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::batch::Batch;
use crate::db::{EntryRow, NewEntry};
use crate::digest::Digest;
use crate::entry::{entry_key, EntryKind};
use crate::meta::Meta;
use crate::object::{hash_file, Stamp};
use crate::progress::Progress;
use crate::store::Store;
use crate::tree::{object_id, Name, Node, Tree};

/// Bumped when the image layout changes, so that cached artifacts are not reused.
const DEPLOY_VERSION: &[u8] = b"1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

#[derive(Clone, Debug)]
pub struct DeployOptions {
    pub format: Format,
    /// The whole disk, in bytes; default: what the tree needs plus room for updates.
    pub size: Option<u64>,
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
    pub layout: Option<disk::Layout>,
}

/// The kernel arguments of a deployment: the root file system by label, no GPT
/// auto-mounting (the deployment root is immutable), then the caller's.
pub fn kernel_arguments(extra: &[String]) -> Vec<String> {
    let mut kargs = vec![format!("root=LABEL={}", sysroot::ROOT_LABEL), "systemd.gpt_auto=0".to_string()];
    kargs.extend(extra.iter().cloned());
    kargs
}

/// Deploy `commit` (on `reference` in the repository `repo`) to a disk image.
pub fn deploy(
    store: &mut Store,
    repo: &Path,
    reference: &str,
    commit: &str,
    opts: &DeployOptions,
    refs: &[Digest],
    progress: &Progress,
) -> anyhow::Result<Artifact> {
    let _span = tracing::debug_span!("deploy", format = opts.format.as_str()).entered();
    if opts.osname.is_empty() || !opts.osname.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("invalid OS name `{}`: letters, digits, `-`, `_` and `.`", opts.osname);
    }
    let kargs = kernel_arguments(&opts.kargs);
    let size = opts.size.map(|s| s.to_string()).unwrap_or_default();
    let key = entry_key(
        EntryKind::Artifact,
        &[
            ("artifact", b"disk"),
            ("version", DEPLOY_VERSION),
            ("commit", commit.as_bytes()),
            ("format", opts.format.as_str().as_bytes()),
            ("size", size.as_bytes()),
            ("kargs", kargs.join("\0").as_bytes()),
            ("os", opts.osname.as_bytes()),
        ],
        &[],
    );
    if let Some(entry) = store.db().entry(&key)? {
        let (file, size, content) = artifact_file(store, &entry)?;
        return Ok(Artifact { entry, file, size, content, cached: true, layout: None });
    }

    let work = tempfile::Builder::new().prefix("deploy-").tempdir_in(store.tmp_dir())?;
    let result = build(store, work.path(), repo, reference, commit, opts, &kargs, key, refs, progress);
    // libostree marks deployment directories immutable; clear that so the scratch can go.
    let _ = Command::new("chattr").args(["-R", "-i"]).arg(work.path()).output();
    result
}

#[allow(clippy::too_many_arguments)]
fn build(
    store: &mut Store,
    work: &Path,
    repo: &Path,
    reference: &str,
    commit: &str,
    opts: &DeployOptions,
    kargs: &[String],
    key: Digest,
    refs: &[Digest],
    progress: &Progress,
) -> anyhow::Result<Artifact> {
    let bar = progress.spinner("deploying: sysroot");
    let root = work.join("sysroot");
    fs_err::create_dir(&root)?;
    sysroot::build(&root, repo, reference, commit, &opts.osname, kargs)?;
    bar.set_message("deploying: disk image");
    let raw = work.join("disk.raw");
    let layout = disk::build_raw(&root, &raw, opts.size, work)?;
    let file = match opts.format {
        Format::Raw => raw,
        Format::Qcow2 => {
            bar.set_message("deploying: qcow2");
            let q = work.join("disk.qcow2");
            disk::to_qcow2(&raw, &q)?;
            fs_err::remove_file(&raw)?;
            q
        }
    };
    bar.set_message("deploying: storing the image");
    // Into the store: one file object, one tree, one entry.
    let mut f = fs_err::File::open(&file)?;
    let st = f.metadata()?;
    let content = hash_file(f.file_mut(), st.len())?;
    let meta = Meta { mode: 0o644, uid: 0, gid: 0, xattrs: vec![] };
    let id = object_id(&meta, st.len(), &content);
    let known = store.db().known_objects(&[id])?[0];
    let mut batch = Batch::new();
    if !known {
        store.object_store().insert_file(&id, &file, Stamp::of(&st), &meta)?;
        batch.record_placed(id, st.len());
    }
    let name = Name::new(format!("disk.{}", opts.format.as_str())).expect("valid name");
    let tree = Tree {
        meta: Meta { mode: 0o755, uid: 0, gid: 0, xattrs: vec![] },
        entries: vec![(name, Node::File { meta, size: st.len(), content, link: 0 })],
    };
    let tree_id = batch.put_tree(&tree);
    let entry_name = format!("{}/{}", opts.osname, opts.format.as_str());
    let new = NewEntry {
        key,
        kind: EntryKind::Artifact.as_str(),
        name: &entry_name,
        tree: tree_id,
        files: 1,
        bytes: st.len(),
        refs,
    };
    batch.commit(store, Some(&new))?;
    bar.finish_and_clear();
    let entry = store.db().entry(&key)?.expect("entry just recorded");
    let (file, size, content) = artifact_file(store, &entry)?;
    Ok(Artifact { entry, file, size, content, cached: false, layout: Some(layout) })
}

/// The image file of an artifact entry.
fn artifact_file(store: &Store, entry: &EntryRow) -> anyhow::Result<(PathBuf, u64, Digest)> {
    let tree = store.tree(&entry.tree)?;
    match tree.entries.as_slice() {
        [(_, Node::File { meta, size, content, .. })] => {
            Ok((store.object_store().path(&object_id(meta, *size, content)), *size, *content))
        }
        _ => bail!("artifact {} does not hold one file", entry.key.short()),
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
    let tmp = out.with_extension("strata-tmp");
    let _ = fs_err::remove_file(&tmp);
    {
        // Holes stay holes (a raw disk is mostly empty); copy_file_range reflinks where it can.
        let src = fs_err::File::open(&artifact.file)?;
        let dst = fs_err::File::create(&tmp)?;
        crate::object::copy_sparse(src.file(), dst.file(), artifact.size)
            .with_context(|| format!("cannot copy the image to `{}`", tmp.display()))?;
    }
    let mut perms = fs_err::metadata(&tmp)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs_err::set_permissions(&tmp, perms)?;
    fs_err::rename(&tmp, out)?;
    Ok(true)
}
