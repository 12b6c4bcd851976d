//! An RPM root tree from package entries, from scratch or on a base image's tree, as cached
//! steps (the RPM counterpart of [`crate::debian::bootstrap`]):
//!
//! 1. `merge`: every package's `data/` tree merged as trees, in install order. Identical files
//!    and shared directories are fine; any other clash is a conflict reported by path and
//!    packages. Owner and group *names* from each header are then mapped to numbers through the
//!    merged `/etc/passwd` and `/etc/group` (root needs neither). On a base, its tree comes
//!    first and a new file that differs from one of its files is a conflict. Key: the base tree
//!    and the package keys.
//! 2. `layer`: the scriptlets, run in the sandbox over the merge: every `%pretrans`; then per
//!    package, in install order (dependencies first), `%pre`, the `chown` of files whose owner
//!    only exists once a `%pre` has created it, `%post`, and the `%triggerin` scriptlets that the
//!    package sets off or carries (the base's included); then every `%posttrans`. A failing
//!    scriptlet names its package.
//!    Key: the merge key (the packages decide the scripts).
//! 3. `rootfs`: the layer applied to the merge, plus the rpm database at `/var/lib/rpm`, written
//!    by the build host's `rpm --justdb` from the package files, so that `rpm -qa` and `rpm -V`
//!    inside the image know every package. Key: the merge and layer keys.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use super::header::{self, tag, Header, Scriptlet};
use crate::batch::Batch;
use crate::build::overlay::{id_table, set_at};
use crate::build::scripts::sq;
use crate::db::NewEntry;
use crate::digest::Digest;
use crate::entry::{entry_key, EntryKind};
use crate::merge::{merge, Input};
use crate::progress::Progress;
use crate::store::Store;
use crate::tree::Node;

/// Bump when the merge, script or database logic changes.
const STEPS_VERSION: &[u8] = b"1";
/// Where the rpm database goes inside the image.
pub const DBPATH: &str = "/var/lib/rpm";

/// One package to install: its entry, and its file (for the rpm database).
#[derive(Clone, Debug)]
pub struct Package {
    pub nevra: String,
    pub key: Digest,
    pub tree: Digest,
    pub file: PathBuf,
}

/// The keys of the three steps.
#[derive(Clone, Copy, Debug)]
pub struct Keys {
    pub merge: Digest,
    pub layer: Digest,
    pub rootfs: Digest,
}

impl Keys {
    pub fn steps(&self) -> [(&'static str, Digest); 3] {
        [("merge", self.merge), ("layer", self.layer), ("rootfs", self.rootfs)]
    }
}

/// The step keys for packages (entry keys, in install order) on `base` (a tree), computed
/// without running anything.
pub fn keys(base: Option<&Digest>, package_keys: &[Digest]) -> Keys {
    let inputs: Vec<Digest> = base.into_iter().chain(package_keys).copied().collect();
    let merge = entry_key(EntryKind::Merge, &[("format", b"rpm"), ("version", STEPS_VERSION)], &inputs);
    let layer = entry_key(EntryKind::Layer, &[("format", b"rpm-scriptlets"), ("version", STEPS_VERSION)], &[merge]);
    let rootfs = entry_key(EntryKind::Rootfs, &[("format", b"rpm"), ("version", STEPS_VERSION)], &[merge, layer]);
    Keys { merge, layer, rootfs }
}

/// One step's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    pub kind: &'static str,
    pub key: Digest,
    pub tree: Digest,
    pub cached: bool,
}

/// An RPM root tree that packages are added to: its entry and its installed packages' headers.
pub struct Base {
    pub entry: crate::db::EntryRow,
    pub headers: Vec<Header>,
}

/// The owner name of a base tree's files in merge conflict reports.
const BASE_OWNER: &str = "(base image)";

/// Build (or find) the root tree of `packages`, given in install order, from scratch or on `base`.
pub fn build(
    store: &mut Store,
    base: Option<&Base>,
    packages: &[Package],
    script_timeout: Duration,
    progress: &Progress,
) -> anyhow::Result<Vec<Step>> {
    let k = keys(base.map(|b| &b.entry.tree), &packages.iter().map(|p| p.key).collect::<Vec<_>>());
    // Headers are read only when a step has to be built.
    let headers = |store: &Store| packages.iter().map(|p| package_header(store, p)).collect::<anyhow::Result<Vec<_>>>();
    let mut built_merge = None;
    let merge_step = match store.db().entry(&k.merge)? {
        Some(e) => Step { kind: "merge", key: k.merge, tree: e.tree, cached: true },
        None => {
            let _span = tracing::debug_span!("rpm merge").entered();
            let headers = headers(store)?;
            let (tree, unresolved) = build_merge(store, base, packages, &headers, &k)?;
            built_merge = Some((headers, unresolved));
            Step { kind: "merge", key: k.merge, tree, cached: false }
        }
    };

    let layer_step = match store.db().entry(&k.layer)? {
        Some(e) => Step { kind: "layer", key: k.layer, tree: e.tree, cached: true },
        None => {
            let (headers, unresolved) = match built_merge {
                Some(h) => h,
                None => {
                    let headers = headers(store)?;
                    // The merge's owners are set; what it could not resolve is found again.
                    let unresolved = owners(store, &merge_step.tree, packages, &headers)?.1;
                    (headers, unresolved)
                }
            };
            let base_headers = base.map(|b| b.headers.as_slice()).unwrap_or_default();
            let script = scriptlets_script(base_headers, packages, &headers, &unresolved)?;
            let tree = match script {
                None => {
                    let mut batch = Batch::new();
                    let empty = batch.put_tree(&crate::tree::Tree {
                        meta: crate::tree_builder::implicit_dir_meta(),
                        entries: vec![],
                    });
                    batch.commit(store, None)?;
                    empty
                }
                Some(script) => {
                    if store.lookup(&merge_step.tree, &[b"bin", b"sh"])?.is_none()
                        && store.lookup(&merge_step.tree, &[b"usr", b"bin", b"sh"])?.is_none()
                    {
                        bail!("the packages have scriptlets but none of them provides /bin/sh to run them");
                    }
                    crate::sandbox::run(store, &merge_step.tree, &script, script_timeout, progress)
                        .context("RPM scriptlets failed")?
                        .layer
                }
            };
            let (files, bytes) = crate::walk::file_totals(store, &tree)?;
            let entry = NewEntry {
                key: k.layer,
                kind: EntryKind::Layer.as_str(),
                name: "rpm-scriptlets",
                tree,
                files,
                bytes,
                refs: &[k.merge],
            };
            Batch::new().commit(store, Some(&entry))?;
            Step { kind: "layer", key: k.layer, tree, cached: false }
        }
    };

    let rootfs = match store.db().entry(&k.rootfs)? {
        Some(e) => Step { kind: "rootfs", key: k.rootfs, tree: e.tree, cached: true },
        None => {
            let _span = tracing::debug_span!("rpm rootfs").entered();
            let mut batch = Batch::new();
            let configured = crate::layer::apply(store, &merge_step.tree, &layer_step.tree, &mut batch.trees)?;
            batch.commit(store, None)?;
            let db = super::rpmdb::write(store, base.map(|b| &b.entry.tree), packages, progress)?;
            let mut batch = Batch::new();
            let inputs = [
                Input { owner: "(packages and scriptlets)".into(), tree: configured, replaces: vec![] },
                Input { owner: "(rpm database)".into(), tree: db, replaces: vec!["(packages and scriptlets)".into()] },
            ];
            let tree = merge(store, &inputs, &mut batch.trees)?;
            batch.commit(store, None)?;
            let (files, bytes) = crate::walk::file_totals(store, &tree)?;
            let entry = NewEntry {
                key: k.rootfs,
                kind: EntryKind::Rootfs.as_str(),
                name: "rpm-rootfs",
                tree,
                files,
                bytes,
                refs: &[k.merge, k.layer],
            };
            Batch::new().commit(store, Some(&entry))?;
            Step { kind: "rootfs", key: k.rootfs, tree, cached: false }
        }
    };
    Ok(vec![merge_step, layer_step, rootfs])
}

fn package_header(store: &Store, p: &Package) -> anyhow::Result<Header> {
    let node = store
        .lookup(&p.tree, &[b"rpm", b"header"])?
        .with_context(|| format!("{}: the package entry has no rpm/header", p.nevra))?;
    Header::parse(store.read_file(&node)?).with_context(|| format!("{}: rpm/header", p.nevra))
}

fn data_tree(store: &Store, p: &Package) -> anyhow::Result<Digest> {
    match store.lookup(&p.tree, &[b"data"])? {
        Some(Node::Directory { tree }) => Ok(tree),
        _ => bail!("{}: the package entry has no data/ tree", p.nevra),
    }
}

/// A file whose owner or group has no number in the merged tree yet: `(package, path, user, group)`.
type Unresolved = Vec<(usize, String, String, String)>;

fn build_merge(
    store: &mut Store,
    base: Option<&Base>,
    packages: &[Package],
    headers: &[Header],
    k: &Keys,
) -> anyhow::Result<(Digest, Unresolved)> {
    // On a base, a new package's file may differ from the base's only where the base has none:
    // anything else is a conflict (rpm refuses those too).
    let mut inputs: Vec<Input> =
        base.map(|b| Input { owner: BASE_OWNER.into(), tree: b.entry.tree, replaces: vec![] }).into_iter().collect();
    for p in packages {
        inputs.push(Input { owner: p.nevra.clone(), tree: data_tree(store, p)?, replaces: vec![] });
    }
    let mut batch = Batch::new();
    let merged = merge(store, &inputs, &mut batch.trees)?;
    batch.commit(store, None)?;
    let (tree, unresolved) = owners(store, &merged, packages, headers)?;
    let refs: Vec<Digest> = base.map(|b| b.entry.key).into_iter().chain(packages.iter().map(|p| p.key)).collect();
    let (files, bytes) = crate::walk::file_totals(store, &tree)?;
    let entry =
        NewEntry { key: k.merge, kind: EntryKind::Merge.as_str(), name: "rpm-merge", tree, files, bytes, refs: &refs };
    Batch::new().commit(store, Some(&entry))?;
    Ok((tree, unresolved))
}

/// Give files their owners by name, through the tree's `/etc/passwd` and `/etc/group`. Returns
/// the new tree and the files whose names it lacks (their `%pre` may create them).
fn owners(
    store: &mut Store,
    tree: &Digest,
    packages: &[Package],
    headers: &[Header],
) -> anyhow::Result<(Digest, Unresolved)> {
    let mut users = id_table(store, tree, b"passwd")?;
    let mut groups = id_table(store, tree, b"group")?;
    users.entry("root".into()).or_insert(0);
    groups.entry("root".into()).or_insert(0);
    let mut root = *tree;
    let mut unresolved = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        for f in header::files(h).with_context(|| packages[i].nevra.clone())? {
            if (f.user == "root" && f.group == "root") || f.flags & header::FILE_GHOST != 0 {
                continue;
            }
            let (Some(&uid), Some(&gid)) = (users.get(&f.user), groups.get(&f.group)) else {
                unresolved.push((i, f.path.clone(), f.user.clone(), f.group.clone()));
                continue;
            };
            let parts: Vec<&[u8]> = f.path.split('/').filter(|p| !p.is_empty()).map(str::as_bytes).collect();
            let mut batch = Batch::new();
            let change = |meta: &mut crate::meta::Meta| {
                meta.uid = uid;
                meta.gid = gid;
            };
            if let Some(new) = set_at(store, &mut batch, &root, &parts, &change)? {
                root = new;
                // Recorded before the next path reads the new trees.
                batch.commit(store, None)?;
            }
        }
    }
    Ok((root, unresolved))
}

/// The script that runs every scriptlet in order, or `None` when there is nothing to run.
fn scriptlets_script(
    base: &[Header],
    packages: &[Package],
    headers: &[Header],
    unresolved: &Unresolved,
) -> anyhow::Result<Option<String>> {
    let mut body = String::new();
    let mut n = 0usize;
    let mut emit = |body: &mut String, nevra: &str, what: &str, s: &Scriptlet, arg: &str| -> anyhow::Result<()> {
        let interp = s.interpreter.first().map(String::as_str).unwrap_or("/bin/sh");
        if interp == "<lua>" {
            bail!("{nevra}: its {what} scriptlet is in Lua, which strata cannot run yet");
        }
        n += 1;
        let file = format!("/tmp/.strata-scriptlet-{n}");
        let delim = format!("STRATA_SCRIPTLET_{}", Digest::of(s.body.as_bytes()).short());
        body.push_str(&format!("cat > {file} <<'{delim}'\n{}\n{delim}\n", s.body));
        let argv: Vec<String> = s.interpreter.iter().map(|a| sq(a)).collect();
        let failed = sq(&format!("strata: {nevra}: its {what} scriptlet failed"));
        body.push_str(&format!(
            "{} {file} {arg} || {{ rc=$?; echo {failed}\" (exit $rc)\" >&2; exit 1; }}\n",
            argv.join(" ")
        ));
        Ok(())
    };
    let scriptlet = |h: &Header, body_tag, prog_tag| header::scriptlet(h, body_tag, prog_tag);
    for (p, h) in packages.iter().zip(headers) {
        if let Some(s) = scriptlet(h, tag::PRETRANS, tag::PRETRANSPROG)? {
            emit(&mut body, &p.nevra, "%pretrans", &s, "1")?;
        }
    }
    let names: Vec<String> = headers.iter().map(|h| h.string(tag::NAME).ok().flatten().unwrap_or_default()).collect();
    let triggers: Vec<Vec<header::Trigger>> = headers.iter().map(header::triggers_in).collect::<anyhow::Result<_>>()?;
    let base_names: Vec<String> = base.iter().map(|h| h.string(tag::NAME).ok().flatten().unwrap_or_default()).collect();
    let mut base_triggers = Vec::new();
    for h in base {
        for t in header::triggers_in(h)? {
            base_triggers.push((h, t));
        }
    }
    let mut chowns: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, path, user, group) in unresolved {
        chowns.entry(*i).or_default().push(format!(
            "chown -h {}:{} {} || {{ echo {} >&2; exit 1; }}\n",
            sq(user),
            sq(group),
            sq(path),
            sq(&format!("strata: {}: {path} is owned by {user}:{group}, which the image lacks", packages[*i].nevra))
        ));
    }
    for (i, (p, h)) in packages.iter().zip(headers).enumerate() {
        if let Some(s) = scriptlet(h, tag::PREIN, tag::PREINPROG)? {
            emit(&mut body, &p.nevra, "%pre", &s, "1")?;
        }
        for c in chowns.get(&i).into_iter().flatten() {
            body.push_str(c);
        }
        if let Some(s) = scriptlet(h, tag::POSTIN, tag::POSTINPROG)? {
            emit(&mut body, &p.nevra, "%post", &s, "1")?;
        }
        // Triggers of the base's packages and of those installed so far (this one included) on
        // this package, then this package's triggers on those installed before it.
        for (h, t) in base_triggers.iter().filter(|(_, t)| t.on == names[i]) {
            emit(&mut body, &h.nevra(), &format!("%triggerin -- {}", t.on), &t.script, "1 1")?;
        }
        for j in 0..=i {
            for t in triggers[j].iter().filter(|t| t.on == names[i]) {
                emit(&mut body, &packages[j].nevra, &format!("%triggerin -- {}", t.on), &t.script, "1 1")?;
            }
        }
        for t in triggers[i].iter().filter(|t| names[..i].contains(&t.on) || base_names.contains(&t.on)) {
            emit(&mut body, &p.nevra, &format!("%triggerin -- {}", t.on), &t.script, "1 1")?;
        }
    }
    for (p, h) in packages.iter().zip(headers) {
        if let Some(s) = scriptlet(h, tag::POSTTRANS, tag::POSTTRANSPROG)? {
            emit(&mut body, &p.nevra, "%posttrans", &s, "0")?;
        }
    }
    Ok((!body.is_empty()).then(|| format!("set +e\n{body}rm -f /tmp/.strata-scriptlet-*\n")))
}
