//! Trees laid over an image: the description's `root/` and `config-overlay/` directories, tar
//! archives, preference files, owner and mode attributes, and a base from an OSTree commit.
//!
//! Overlay rules: a directory present in both keeps the image's metadata and merges; anything
//! else from the overlay replaces what the image had at that path. Files of the description
//! directory are owned by root in the image (a git checkout's owner is nobody's business), unless
//! the description's `[files]` / `<files>` says otherwise; their modes are kept.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use super::{input, Input};
use crate::description::{FileAttrs, Preferences};
use crate::store::batch::Batch;
use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::entry::EntryKind;
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::meta::Meta;
use crate::store::tree::{Name, Node, Tree, TreeRows};
use crate::store::tree_builder::{implicit_dir_meta, TreeBuilder};
use crate::store::Backend;
use crate::trees::edit::{id_table, set_at};
use crate::util::progress::Progress;

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("failed to run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Import a description directory's overlay (`root/`) as a tree owned by root; returns the tree
/// and one input per file (path and object id) for `why`.
pub fn import_overlay(
    store: &mut Store,
    dir: &Path,
    label: &str,
    progress: &Progress,
) -> anyhow::Result<(Digest, Vec<Input>)> {
    let work = tempfile::Builder::new().prefix("overlay-").tempdir_in(store.tmp_dir())?;
    let copy = work.path().join("tree");
    run(
        crate::util::process::command("cp").arg("-a").arg("--no-target-directory").arg(dir).arg(&copy),
        &format!("copying `{}`", dir.display()),
    )?;
    run(crate::util::process::command("chown").args(["-hR", "0:0"]).arg(&copy), "chown of the overlay copy")?;
    let (batch, tree, _) = crate::store::import::import_tree(store, &copy, false, progress)
        .with_context(|| format!("importing `{}`", dir.display()))?;
    batch.commit(store, None)?;
    crate::store::local::make_writable(work.path());
    let mut inputs = Vec::new();
    for item in crate::store::walk::flatten(store, &tree)?.iter().skip(1) {
        let value = match &item.kind {
            crate::store::walk::ItemKind::Dir { meta, .. } => format!("directory {:o}", meta.mode),
            crate::store::walk::ItemKind::Leaf(node) => format!("{} {}", node.kind_name(), node_digest(node).short()),
        };
        inputs.push(input(format!("{label}/{}", item.path.display()), value));
    }
    Ok((tree, inputs))
}

/// A digest of a leaf node (content and metadata), for `why`.
fn node_digest(node: &Node) -> Digest {
    let mut rows = TreeRows::default();
    let name = Name::new("n").expect("constant name");
    Tree { meta: Meta::default(), entries: vec![(name, node.clone())] }.encode_into(&mut rows)
}

/// Unpack a tar archive (any compression `tar` detects) into a tree.
pub fn import_archive(store: &mut Store, path: &Path, progress: &Progress) -> anyhow::Result<Digest> {
    let work = tempfile::Builder::new().prefix("archive-").tempdir_in(store.tmp_dir())?;
    let dest = work.path().join("tree");
    fs_err::create_dir(&dest)?;
    run(
        crate::util::process::command("tar")
            .args(["--numeric-owner", "--same-permissions", "--xattrs", "--xattrs-include=*", "-x", "-f"])
            .arg(path)
            .arg("-C")
            .arg(&dest),
        &format!("unpacking archive `{}`", path.display()),
    )?;
    let (batch, tree, _) = crate::store::import::import_tree(store, &dest, false, progress)?;
    batch.commit(store, None)?;
    crate::store::local::make_writable(work.path());
    Ok(tree)
}

/// The `import` entry of an OSTree commit (imported now unless the store has it).
pub fn ostree_commit_entry(
    store: &mut Store,
    repo: &Path,
    commit: &str,
    progress: &Progress,
) -> anyhow::Result<EntryRow> {
    let key = ostree_commit_key(commit);
    match store.entry(&key)? {
        Some(e) => Ok(e),
        None => import_ostree(store, repo, commit, key, progress),
    }
}

/// The key of an OSTree commit's `import` entry.
pub fn ostree_commit_key(commit: &str) -> Digest {
    crate::store::entry::entry_key(EntryKind::Import, &[("ostree-commit", commit.as_bytes())], &[])
}

/// Check out an OSTree commit and record it as an `import` entry under `key`.
pub fn import_ostree(
    store: &mut Store,
    repo: &Path,
    commit: &str,
    key: Digest,
    progress: &Progress,
) -> anyhow::Result<EntryRow> {
    let work = tempfile::Builder::new().prefix("ostree-").tempdir_in(store.tmp_dir())?;
    let dest = work.path().join("tree");
    run(
        crate::util::process::command("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["checkout", commit])
            .arg(&dest),
        &format!("ostree checkout of {commit}"),
    )?;
    let (batch, tree, stats) = crate::store::import::import_tree(store, &dest, false, progress)?;
    let memo = Memo::with_key(EntryKind::Import, format!("ostree:{}", &commit[..commit.len().min(12)]), key);
    let entry = memo.record(store, Built::in_batch(tree, batch).totals(stats.files, stats.bytes))?;
    crate::store::local::make_writable(work.path());
    Ok(entry)
}

/// Lay `top` over `base` (see the module rules); returns the new tree, recorded.
pub fn overlay(store: &mut Store, base: &Digest, top: &Digest) -> anyhow::Result<Digest> {
    let mut batch = Batch::new();
    let id = overlay_into(store, base, top, &mut batch.trees)?;
    batch.commit(store, None)?;
    Ok(id)
}

fn overlay_into(store: &Store, base: &Digest, top: &Digest, out: &mut TreeRows) -> anyhow::Result<Digest> {
    let base_tree = store.tree(base)?;
    let mut entries: BTreeMap<Name, Node> = base_tree.entries.into_iter().collect();
    for (name, node) in store.tree(top)?.entries {
        let merged = match (entries.get(&name), node) {
            (Some(Node::Directory { tree: b }), Node::Directory { tree: t }) => {
                Node::Directory { tree: overlay_into(store, b, &t, out)? }
            }
            (_, Node::Directory { tree: t }) => Node::Directory { tree: unlinked(store, &t, out)? },
            (_, n) => crate::trees::layer::unlink(n),
        };
        entries.insert(name, merged);
    }
    Ok(Tree { meta: base_tree.meta, entries: entries.into_iter().collect() }.encode_into(out))
}

/// A subtree with its hardlink groups dropped, so they can never join a group of the image.
fn unlinked(store: &Store, id: &Digest, out: &mut TreeRows) -> anyhow::Result<Digest> {
    let tree = store.tree(id)?;
    let mut entries = Vec::with_capacity(tree.entries.len());
    for (name, node) in tree.entries {
        entries.push((
            name,
            match node {
                Node::Directory { tree } => Node::Directory { tree: unlinked(store, &tree, out)? },
                n => crate::trees::layer::unlink(n),
            },
        ));
    }
    Ok(Tree { meta: tree.meta, entries }.encode_into(out))
}

/// One line describing attributes, for `why`.
pub fn describe_attrs(a: &FileAttrs) -> String {
    format!(
        "owner={} group={} mode={}",
        a.owner.as_deref().unwrap_or("-"),
        a.group.as_deref().unwrap_or("-"),
        a.mode.map(|m| format!("{m:04o}")).unwrap_or_else(|| "-".into())
    )
}

/// Set owners and modes of paths in `tree`; owner and group names are looked up in the image.
pub fn set_attrs(store: &mut Store, tree: &Digest, files: &BTreeMap<String, FileAttrs>) -> anyhow::Result<Digest> {
    if files.is_empty() {
        return Ok(*tree);
    }
    let users = id_table(store, tree, b"passwd")?;
    let groups = id_table(store, tree, b"group")?;
    let mut root = *tree;
    for (path, a) in files {
        let mut batch = Batch::new();
        let lookup =
            |table: &BTreeMap<String, u32>, name: &Option<String>, what: &str| -> anyhow::Result<Option<u32>> {
                match name {
                    None => Ok(None),
                    Some(n) => match (table.get(n), n.parse::<u32>()) {
                        (Some(id), _) => Ok(Some(*id)),
                        (None, Ok(id)) => Ok(Some(id)),
                        _ => bail!(
                            "files: {path}: the image has no {what} `{n}` (in /etc/{what_file})",
                            what_file = if what == "user" { "passwd" } else { "group" }
                        ),
                    },
                }
            };
        let uid = lookup(&users, &a.owner, "user")?;
        let gid = lookup(&groups, &a.group, "group")?;
        let parts: Vec<&[u8]> =
            path.trim_start_matches('/').split('/').filter(|p| !p.is_empty()).map(str::as_bytes).collect();
        let change = |meta: &mut Meta| {
            if let Some(u) = uid {
                meta.uid = u;
            }
            if let Some(g) = gid {
                meta.gid = g;
            }
            if let Some(m) = a.mode {
                meta.mode = (meta.mode & !0o7777) | m;
            }
        };
        root = set_at(store, &mut batch, &root, &parts, &change)
            .with_context(|| format!("files: {path}"))?
            .ok_or_else(|| anyhow::anyhow!("files: {path}: no such path in the image"))?;
        // Recorded before the next path reads the new trees.
        batch.commit(store, None)?;
    }
    Ok(root)
}

/// Timezone, locale and keytable files, laid over the image.
pub fn preferences(store: &mut Store, base: &Digest, p: &Preferences) -> anyhow::Result<Digest> {
    let file = Meta { mode: 0o644, uid: 0, gid: 0, xattrs: vec![] };
    let mut batch = Batch::new();
    let mut b = TreeBuilder::new(implicit_dir_meta());
    let name = |s: &str| Name::new(s).expect("constant name");
    if let Some(tz) = &p.timezone {
        let parts: Vec<&[u8]> =
            ["usr", "share", "zoneinfo"].iter().map(|s| s.as_bytes()).chain(tz.split('/').map(str::as_bytes)).collect();
        if tz.split('/').any(|c| c.is_empty() || c == "." || c == "..") || store.lookup(base, &parts)?.is_none() {
            bail!("timezone `{tz}`: the image has no /usr/share/zoneinfo/{tz} (install tzdata, or check the name)");
        }
        b.insert(
            &[name("etc"), name("timezone")],
            batch.put_bytes(store, format!("{tz}\n").as_bytes(), file.clone())?,
        )?;
        b.insert(
            &[name("etc"), name("localtime")],
            Node::Symlink {
                meta: Meta { mode: 0o777, ..file.clone() },
                target: format!("/usr/share/zoneinfo/{tz}").into_bytes(),
            },
        )?;
    }
    if let Some(locale) = &p.locale {
        if !locale.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.@-".contains(&c)) {
            bail!("locale `{locale}`: expected a name such as en_US.UTF-8");
        }
        let text = format!("LANG={locale}\n");
        b.insert(
            &[name("etc"), name("default"), name("locale")],
            batch.put_bytes(store, text.as_bytes(), file.clone())?,
        )?;
        b.insert(&[name("etc"), name("locale.conf")], batch.put_bytes(store, text.as_bytes(), file.clone())?)?;
    }
    if let Some(keys) = &p.keytable {
        if !keys.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c)) {
            bail!("keytable `{keys}`: expected a keymap name such as de-latin1");
        }
        let text = format!("KEYMAP={keys}\n");
        b.insert(&[name("etc"), name("vconsole.conf")], batch.put_bytes(store, text.as_bytes(), file.clone())?)?;
    }
    let top = b.finish(&mut batch.trees);
    batch.commit(store, None)?;
    overlay(store, base, &top)
}
