//! The OSTree layout step: turn an image's root tree into the tree an OSTree deployment boots.
//!
//! An OSTree commit carries only the read-only part of a system; the deployment supplies a
//! three-way-merged `/etc` and a persistent `/var`. The step rewrites the stored tree (no
//! checkout: subtrees move by id) as follows:
//!
//! - fifos and device nodes, which OSTree does not store, are left out and reported, or fail the
//!   step naming the path ([`SpecialFiles`]);
//! - `/etc` moves to `/usr/etc`;
//! - `/home`, `/root`, `/opt`, `/srv`, `/mnt` and `/usr/local` become symlinks into `/var`
//!   (`var/home`, `var/roothome`, …) and their content moves there;
//! - the dpkg database (`/var/lib/dpkg`) describes `/usr`, so it moves to
//!   `/usr/lib/sysimage/dpkg` (where rpm-ostree keeps RPM's) and `/var/lib/dpkg` becomes a
//!   symlink to it: a deployed system can query its packages, and an update brings the
//!   database that matches its `/usr`;
//! - `/var` is emptied: its content is kept read-only in `/usr/share/factory/var`, and
//!   `/usr/lib/tmpfiles.d/strata-var.conf` recreates it at boot (`d` for directories with their
//!   modes and owners, `L` for symlinks, `C` to copy files from the factory copy), so a new
//!   machine starts with the image's `/var` and an updated one keeps its own;
//! - the kernel (`/boot/vmlinuz-K`) and its initramfs move to `/usr/lib/modules/K/vmlinuz` and
//!   `initramfs.img` (with `config` and `System.map`); the rest of `/boot` is left out, since
//!   OSTree manages `/boot`;
//! - `/sysroot` is added, and `/ostree` as a symlink to `sysroot/ostree`.
//!
//! Trees that cannot boot under OSTree are refused with the reason: no `/usr`, no kernel or more
//! than one, no initramfs, an initramfs without OSTree's `ostree-prepare-root`, or `/bin`, `/sbin`
//! or `/lib` as directories outside `/usr`. The step is cached like every other: its key is the
//! input tree and the options; its report is kept with the entry.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::initramfs::{self, Lookup};
use crate::store::batch::Batch;
use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::entry::EntryKind;
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::meta::Meta;
use crate::store::tree::{Name, Node, Tree};
use crate::trees::edit::{load, lookup, put, set};

/// Bumped when the conversion changes, so that cached layout entries are not reused.
const LAYOUT_VERSION: &[u8] = b"2";

/// Where the tmpfiles.d snippet that recreates `/var` goes, under `/usr`.
pub const TMPFILES_PATH: &[&str] = &["lib", "tmpfiles.d", "strata-var.conf"];
/// Where the dpkg database goes, under `/usr`.
pub const DPKG_DATABASE: &[&str] = &["lib", "sysimage", "dpkg"];
/// Where the image's `/var` is kept, under `/usr`.
pub const FACTORY_VAR: &[&str] = &["share", "factory", "var"];

/// Top-level directories that live in `/var` on an OSTree system: (directory, name under /var, mode).
const VAR_LINKS: &[(&str, &str, u32)] = &[
    ("home", "home", 0o755),
    ("root", "roothome", 0o700),
    ("opt", "opt", 0o755),
    ("srv", "srv", 0o755),
    ("mnt", "mnt", 0o755),
];

/// What to do with fifos and device nodes, which OSTree cannot store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialFiles {
    /// Leave them out and list them in the report.
    Skip,
    /// Fail, naming the first one.
    Fail,
}

impl SpecialFiles {
    fn as_str(self) -> &'static str {
        match self {
            SpecialFiles::Skip => "skip",
            SpecialFiles::Fail => "fail",
        }
    }
}

/// A path the conversion left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub path: String,
    pub reason: String,
}

/// What the layout step did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutReport {
    /// The kernel version (the name of its `/usr/lib/modules` directory).
    pub kernel: String,
    /// Whether the initramfs was seen to hold `ostree-prepare-root` (false: compressed in a
    /// format that could not be read; `initramfs_note` says which).
    pub initramfs_checked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs_note: Option<String>,
    /// Lines of the tmpfiles.d snippet that recreates `/var`.
    pub var_lines: u64,
    /// Whether a dpkg database moved to `/usr/lib/sysimage/dpkg`.
    #[serde(default)]
    pub dpkg_database: bool,
    pub left_out: Vec<LeftOut>,
}

/// The result of the layout step.
pub struct Layout {
    pub entry: EntryRow,
    pub report: LayoutReport,
    pub cached: bool,
}

/// Run (or reuse) the layout step on `input`, an image's rootfs entry.
pub fn step(store: &mut Store, input: &EntryRow, special: SpecialFiles) -> anyhow::Result<Layout> {
    let _span = tracing::debug_span!("ostree layout").entered();
    let memo = Memo::new(
        EntryKind::Step,
        format!("{}/ostree-layout", input.name),
        &[("step", b"ostree-layout"), ("version", LAYOUT_VERSION), ("special-files", special.as_str().as_bytes())],
        &[input.tree],
    );
    let key = memo.key;
    if let Some(entry) = memo.lookup(store)? {
        if let Some(json) = crate::ostree::mapping::layout_report(store.db(), &key)? {
            let report = serde_json::from_str(&json).context("corrupt layout report in the store")?;
            return Ok(Layout { entry, report, cached: true });
        }
    }
    let mut batch = Batch::new();
    let (tree, report) = convert(store, &mut batch, &input.tree, special)
        .with_context(|| format!("cannot lay out {} ({}) for OSTree", input.name, input.key.short()))?;
    // Trees first, so that the new tree can be walked; a crash before the entry leaves
    // unreferenced rows for gc.
    let entry = memo.record(store, Built::in_batch(tree, batch).refs([input.key]))?;
    let tx = store.db_mut().transaction()?;
    crate::ostree::mapping::insert_layout_report(&tx, &key, &serde_json::to_string(&report)?)?;
    tx.commit()?;
    Ok(Layout { entry, report, cached: false })
}

/// Convert the tree `root`; new objects and trees go to `batch`.
pub fn convert(
    store: &Store,
    batch: &mut Batch,
    root: &Digest,
    special: SpecialFiles,
) -> anyhow::Result<(Digest, LayoutReport)> {
    let mut report = LayoutReport::default();
    let mut left_out = Vec::new();
    let root = strip_special(store, batch, root, "", special, &mut left_out)?;
    let mut top = load(store, batch, &root)?;
    let mut usr = load_usr(store, batch, &top)?;

    // /etc → /usr/etc.
    move_etc(&mut top, &mut usr)?;

    // Directories that live in /var.
    let (var_meta, mut var) = move_var_dirs(store, batch, &mut top, &mut usr)?;

    // The package database.
    if let Some(Node::Directory { tree }) = lookup(store, batch, &var, &["lib", "dpkg"])? {
        put(store, batch, &mut usr, DPKG_DATABASE, Some(Node::Directory { tree }))?;
        put(store, batch, &mut var, &["lib", "dpkg"], Some(symlink("../../usr/lib/sysimage/dpkg")))?;
        report.dpkg_database = true;
    }

    // The kernel and its initramfs.
    move_boot(store, batch, &mut top, &mut usr, &mut report, &mut left_out)?;

    // /var: kept in the factory directory, recreated by tmpfiles.d.
    keep_var_in_factory(store, batch, &mut usr, &var, &mut report)?;
    set(&mut top, "var", Some(Node::Directory { tree: batch.put_tree(&Tree { meta: var_meta, entries: vec![] }) }));

    // /sysroot and /ostree.
    add_sysroot(batch, &mut top)?;

    set(&mut top, "usr", Some(Node::Directory { tree: batch.put_tree(&usr) }));
    left_out.sort_by(|a, b| a.path.cmp(&b.path));
    report.left_out = left_out;
    Ok((batch.put_tree(&top), report))
}

/// The `/usr` tree, refusing trees without it or with `/bin`, `/sbin` or `/lib` outside it.
fn load_usr(store: &Store, batch: &Batch, top: &Tree) -> anyhow::Result<Tree> {
    let usr = match top.get(b"usr") {
        Some(Node::Directory { tree }) => load(store, batch, tree)?,
        _ => bail!("the tree has no /usr directory: it is not an operating system tree"),
    };
    for dir in ["bin", "sbin", "lib", "lib64"] {
        if let Some(Node::Directory { tree }) = top.get(dir.as_bytes()) {
            if !load(store, batch, tree)?.entries.is_empty() {
                bail!("/{dir} is a directory: OSTree needs /bin, /sbin and /lib inside /usr (merged /usr, symlinks at the top)");
            }
        }
    }
    Ok(usr)
}

/// Move `/etc` to `/usr/etc`.
fn move_etc(top: &mut Tree, usr: &mut Tree) -> anyhow::Result<()> {
    match (top.get(b"etc").cloned(), usr.get(b"etc").is_some()) {
        (Some(Node::Directory { tree }), false) => {
            set(usr, "etc", Some(Node::Directory { tree }));
            set(top, "etc", None);
        }
        (Some(Node::Directory { .. }), true) => {
            bail!("both /etc and /usr/etc exist: only one can become the default /etc")
        }
        (Some(other), _) => bail!("/etc is a {}, not a directory", other.kind_name()),
        (None, true) => {}
        (None, false) => bail!("the tree has no /etc"),
    }
    Ok(())
}

/// Move the directories that live in `/var` there, leaving symlinks; returns `/var`'s metadata and tree.
fn move_var_dirs(store: &Store, batch: &mut Batch, top: &mut Tree, usr: &mut Tree) -> anyhow::Result<(Meta, Tree)> {
    let (var_meta, mut var) = match top.get(b"var") {
        Some(Node::Directory { tree }) => {
            let t = load(store, batch, tree)?;
            (t.meta.clone(), t)
        }
        Some(other) => bail!("/var is a {}, not a directory", other.kind_name()),
        None => (dir_meta(0o755), Tree { meta: dir_meta(0o755), entries: vec![] }),
    };
    for &(dir, under_var, mode) in VAR_LINKS {
        let moved = move_into_var(store, batch, top, &mut var, dir, under_var, mode)?;
        if moved {
            set(top, dir, Some(symlink(&format!("var/{under_var}"))));
        }
    }
    if move_into_var(store, batch, usr, &mut var, "local", "usrlocal", 0o755)? {
        set(usr, "local", Some(symlink("../var/usrlocal")));
    }
    Ok((var_meta, var))
}

/// Move the kernel and its initramfs into `/usr`, and leave `/boot` empty and its links out.
fn move_boot(
    store: &Store,
    batch: &mut Batch,
    top: &mut Tree,
    usr: &mut Tree,
    report: &mut LayoutReport,
    left_out: &mut Vec<LeftOut>,
) -> anyhow::Result<()> {
    let boot = match top.get(b"boot") {
        Some(Node::Directory { tree }) => Some(load(store, batch, tree)?),
        _ => None,
    };
    kernel(store, batch, usr, boot.as_ref(), report, left_out)?;
    let boot_meta = boot.map_or_else(|| dir_meta(0o755), |b| b.meta);
    set(top, "boot", Some(Node::Directory { tree: batch.put_tree(&Tree { meta: boot_meta, entries: vec![] }) }));
    for link in ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"] {
        if let Some(Node::Symlink { .. }) = top.get(link.as_bytes()) {
            set(top, link, None);
        }
    }
    Ok(())
}

/// Keep `var` in the factory directory under `/usr`, with the tmpfiles.d snippet that recreates it.
fn keep_var_in_factory(
    store: &Store,
    batch: &mut Batch,
    usr: &mut Tree,
    var: &Tree,
    report: &mut LayoutReport,
) -> anyhow::Result<()> {
    let var_id = batch.put_tree(var);
    let lines = tmpfiles_lines(store, batch, &var_id)?;
    report.var_lines = lines.len() as u64;
    let mut snippet = String::from(
        "# Recreates the image's /var on a new machine (OSTree keeps /var out of the commit).\n\
         # Files are copied from /usr/share/factory/var; existing paths are left alone.\n",
    );
    for line in &lines {
        snippet.push_str(line);
        snippet.push('\n');
    }
    let file = batch.put_bytes(store, snippet.as_bytes(), file_meta(0o644))?;
    put(store, batch, usr, TMPFILES_PATH, Some(file))?;
    put(store, batch, usr, FACTORY_VAR, Some(Node::Directory { tree: var_id }))?;
    Ok(())
}

/// Add `/ostree` as a symlink to `sysroot/ostree`, and `/sysroot` when missing.
fn add_sysroot(batch: &mut Batch, top: &mut Tree) -> anyhow::Result<()> {
    match top.get(b"ostree") {
        None | Some(Node::Symlink { .. }) => set(top, "ostree", Some(symlink("sysroot/ostree"))),
        Some(other) => bail!("/ostree is a {}: OSTree needs it for the symlink to sysroot/ostree", other.kind_name()),
    }
    if top.get(b"sysroot").is_none() {
        let empty = batch.put_tree(&Tree { meta: dir_meta(0o755), entries: vec![] });
        set(top, "sysroot", Some(Node::Directory { tree: empty }));
    }
    Ok(())
}

/// The kernels of a `/usr/lib/modules` tree: version → its `vmlinuz` file.
pub fn module_kernels(store: &Store, batch: &Batch, modules: &Tree) -> anyhow::Result<BTreeMap<String, Node>> {
    let mut kernels = BTreeMap::new();
    for (name, node) in &modules.entries {
        if let Node::Directory { tree } = node {
            if let Some(k @ Node::File { .. }) = load(store, batch, tree)?.get(b"vmlinuz") {
                kernels.insert(String::from_utf8_lossy(name.as_bytes()).into_owned(), k.clone());
            }
        }
    }
    Ok(kernels)
}

/// Find the one kernel, check its initramfs, and move both into `/usr/lib/modules/<kver>/`.
fn kernel(
    store: &Store,
    batch: &mut Batch,
    usr: &mut Tree,
    boot: Option<&Tree>,
    report: &mut LayoutReport,
    left_out: &mut Vec<LeftOut>,
) -> anyhow::Result<()> {
    let modules = match lookup(store, batch, usr, &["lib", "modules"])? {
        Some(Node::Directory { tree }) => load(store, batch, &tree)?,
        _ => Tree::default(),
    };
    let boot_entries: &[(Name, Node)] = boot.map_or(&[], |b| &b.entries);
    let kver = kernel_version(store, batch, &modules, boot_entries)?;
    if !matches!(modules.get(kver.as_bytes()), Some(Node::Directory { .. })) {
        bail!("kernel {kver} has no modules directory /usr/lib/modules/{kver}");
    }
    let base = ["lib", "modules", kver.as_str()];
    let mut initramfs = lookup(store, batch, usr, &[&base[..], &["initramfs.img"]].concat())?
        .map(|n| (n, format!("/usr/lib/modules/{kver}/initramfs.img")));
    for (name, node) in boot_entries {
        let name_str = String::from_utf8_lossy(name.as_bytes()).into_owned();
        let target = match name_str.as_str() {
            n if n == format!("vmlinuz-{kver}") => Some("vmlinuz"),
            n if n == format!("initrd.img-{kver}") || n == format!("initramfs-{kver}.img") => Some("initramfs.img"),
            n if n == format!("config-{kver}") => Some("config"),
            n if n == format!("System.map-{kver}") => Some("System.map"),
            _ => None,
        };
        match (target, node) {
            (Some(target), Node::File { .. }) => {
                if target == "initramfs.img" {
                    initramfs = Some((node.clone(), format!("/boot/{name_str}")));
                }
                put(store, batch, usr, &[&base[..], &[target]].concat(), Some(node.clone()))?;
            }
            (_, Node::Symlink { .. }) => {}
            _ => left_out.push(LeftOut {
                path: format!("/boot/{name_str}"),
                reason: "OSTree manages /boot; only the kernel and its initramfs are kept".into(),
            }),
        }
    }
    let Some((node, shown)) = initramfs else {
        bail!("no initramfs for kernel {kver} (looked for /boot/initrd.img-{kver} and /usr/lib/modules/{kver}/initramfs.img): install dracut and ostree-boot so that one is built");
    };
    check_initramfs(store, &node, &shown, report)?;
    report.kernel = kver;
    Ok(())
}

/// The version of the one kernel in `/usr/lib/modules` or `/boot`; none or several is an error.
fn kernel_version(
    store: &Store,
    batch: &Batch,
    modules: &Tree,
    boot_entries: &[(Name, Node)],
) -> anyhow::Result<String> {
    let mut kvers: BTreeSet<String> = module_kernels(store, batch, modules)?.into_keys().collect();
    for (name, node) in boot_entries {
        let name = String::from_utf8_lossy(name.as_bytes());
        if let (Some(kver), Node::File { .. }) = (name.strip_prefix("vmlinuz-"), node) {
            kvers.insert(kver.to_string());
        }
    }
    Ok(match kvers.len() {
        0 => bail!("no kernel: found no /boot/vmlinuz-* and no /usr/lib/modules/*/vmlinuz (install a kernel package, e.g. linux-image-amd64)"),
        1 => kvers.pop_first().expect("one kernel"),
        _ => bail!(
            "{} kernels ({}): an OSTree commit boots exactly one; remove the others",
            kvers.len(),
            kvers.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    })
}

/// Check that the initramfs `node` (shown as `shown`) holds `ostree-prepare-root`, when readable.
fn check_initramfs(store: &Store, node: &Node, shown: &str, report: &mut LayoutReport) -> anyhow::Result<()> {
    let data = store.read_file(node).with_context(|| format!("cannot read {shown}"))?;
    match initramfs::contains(&data, &["usr/lib/ostree/ostree-prepare-root", "usr/bin/ostree-prepare-root"])
        .with_context(|| format!("cannot read the initramfs {shown}"))?
    {
        Lookup::Found => report.initramfs_checked = true,
        Lookup::Missing => bail!(
            "the initramfs {shown} has no ostree-prepare-root, so it cannot mount an OSTree deployment: install ostree-boot and rebuild it with `dracut --add ostree`"
        ),
        Lookup::Unknown(format) => {
            report.initramfs_note = Some(format!("{shown} is {format}-compressed; ostree-prepare-root was not looked for"))
        }
    }
    Ok(())
}

/// Move `from`'s directory `name` into `var` as `under_var`; true when `name` should become a
/// symlink (it was a directory, or was missing and `var` now has an empty one). When both
/// exist, an empty one gives way to the other.
fn move_into_var(
    store: &Store,
    batch: &mut Batch,
    from: &mut Tree,
    var: &mut Tree,
    name: &str,
    under_var: &str,
    mode: u32,
) -> anyhow::Result<bool> {
    let node = match from.get(name.as_bytes()) {
        Some(Node::Symlink { .. }) => return Ok(false),
        Some(Node::Directory { tree }) => Node::Directory { tree: *tree },
        Some(other) => bail!("/{name} is a {}; OSTree needs a directory or a symlink into /var", other.kind_name()),
        None => Node::Directory { tree: batch.put_tree(&Tree { meta: dir_meta(mode), entries: vec![] }) },
    };
    let is_empty = |node: &Node| -> anyhow::Result<bool> {
        Ok(match node {
            Node::Directory { tree } => load(store, batch, tree)?.entries.is_empty(),
            _ => false,
        })
    };
    match var.get(under_var.as_bytes()).cloned() {
        None => set(var, under_var, Some(node)),
        Some(_) if from.get(name.as_bytes()).is_none() => {}
        Some(_) if is_empty(&node)? => {}
        Some(existing) if is_empty(&existing)? => set(var, under_var, Some(node)),
        Some(_) => {
            bail!("both /{name} and /var/{under_var} have content; on OSTree /{name} is a symlink to /var/{under_var}")
        }
    }
    Ok(true)
}

/// The tmpfiles.d lines that recreate the tree `var` (with its files in the factory directory).
fn tmpfiles_lines(store: &Store, batch: &Batch, var: &Digest) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut stack = vec![(String::from("/var"), *var)];
    while let Some((dir, id)) = stack.pop() {
        let tree = load(store, batch, &id)?;
        let mut subdirs = Vec::new();
        for (name, node) in &tree.entries {
            let p = format!("{dir}/{}", escape(name.as_bytes()));
            match node {
                Node::Directory { tree } => {
                    let meta = load(store, batch, tree)?.meta;
                    lines.push(format!("d {p} {:04o} {} {} - -", meta.mode, meta.uid, meta.gid));
                    subdirs.push((p, *tree));
                }
                Node::File { .. } => lines.push(format!("C {p} - - - - -")),
                Node::Symlink { target, .. } => lines.push(format!("L {p} - - - - {}", escape(target))),
                // Left out before this runs.
                Node::CharDevice { .. } | Node::BlockDevice { .. } | Node::Fifo { .. } => {}
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(lines)
}

/// A path or argument for tmpfiles.d: C escapes for anything but plain characters, `%%` for `%`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'%' => out.push_str("%%"),
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b'/'
            | b'.'
            | b'_'
            | b'-'
            | b'+'
            | b':'
            | b'@'
            | b','
            | b'='
            | b'~' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Drop fifos and device nodes below `id` (or fail on the first); returns the new tree id.
fn strip_special(
    store: &Store,
    batch: &mut Batch,
    id: &Digest,
    at: &str,
    special: SpecialFiles,
    left_out: &mut Vec<LeftOut>,
) -> anyhow::Result<Digest> {
    let tree = store.tree(id)?;
    let mut changed = false;
    let mut entries = Vec::with_capacity(tree.entries.len());
    for (name, node) in tree.entries {
        let p = format!("{at}/{}", String::from_utf8_lossy(name.as_bytes()));
        match node {
            Node::Directory { tree } => {
                let new = strip_special(store, batch, &tree, &p, special, left_out)?;
                changed |= new != tree;
                entries.push((name, Node::Directory { tree: new }));
            }
            Node::CharDevice { .. } | Node::BlockDevice { .. } | Node::Fifo { .. } => {
                if special == SpecialFiles::Fail {
                    bail!(
                        "{p} is a {}, which OSTree cannot store (leave such files out with --special-files skip)",
                        node.kind_name()
                    );
                }
                left_out.push(LeftOut { path: p, reason: format!("a {}: OSTree stores none", node.kind_name()) });
                changed = true;
            }
            other => entries.push((name, other)),
        }
    }
    if !changed {
        return Ok(*id);
    }
    Ok(batch.put_tree(&Tree { meta: tree.meta, entries }))
}

fn dir_meta(mode: u32) -> Meta {
    Meta { mode, uid: 0, gid: 0, xattrs: vec![] }
}

fn file_meta(mode: u32) -> Meta {
    Meta { mode, uid: 0, gid: 0, xattrs: vec![] }
}

fn symlink(target: &str) -> Node {
    Node::Symlink { meta: Meta { mode: 0o777, uid: 0, gid: 0, xattrs: vec![] }, target: target.as_bytes().to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfiles_escapes() {
        assert_eq!(escape(b"lib/dpkg/info/libc6:amd64.list"), "lib/dpkg/info/libc6:amd64.list");
        assert_eq!(escape(b"a b\\c%d\n"), "a\\x20b\\x5cc%%d\\x0a");
        assert_eq!(escape(&[0xff]), "\\xff");
    }
}
