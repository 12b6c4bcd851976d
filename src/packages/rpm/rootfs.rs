//! An RPM root tree from package entries, from scratch or on a base image's tree, as cached
//! steps (the RPM counterpart of [`crate::packages::deb::bootstrap`]):
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

use anyhow::{bail, Context};

use super::header::{self, tag, Header, Scriptlet};
use crate::store::batch::Batch;
use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::tree::Node;
use crate::trees::edit::{id_table, set_at};
use crate::trees::merge::{merge, Input};
use crate::util::progress::Progress;
use crate::util::text::sq;

/// Bump when the merge, script or database logic changes.
const STEPS_VERSION: &[u8] = b"1";
use super::rpmdb::Package;

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

use crate::packages::Step;

/// An RPM root tree that packages are added to: its entry and its installed packages' headers.
pub struct Base {
    pub entry: crate::store::db::EntryRow,
    pub headers: Vec<Header>,
}

/// The owner name of a base tree's files in merge conflict reports.
const BASE_OWNER: &str = "(base image)";

/// Build (or find) the root tree of `packages`, given in install order, from scratch or on `base`.
pub fn build(
    store: &mut Store,
    base: Option<&Base>,
    packages: &[Package],
    script_limits: &crate::sandbox::Limits,
    progress: &Progress,
) -> anyhow::Result<Vec<Step>> {
    let k = keys(base.map(|b| &b.entry.tree), &packages.iter().map(|p| p.key).collect::<Vec<_>>());
    // Headers are read, and owners resolved, only when a step has to be built.
    let mut state: Option<(Vec<Header>, Unresolved)> = None;
    let merged = Memo::with_key(EntryKind::Merge, "rpm-merge", k.merge).get_or_build(store, |store| {
        let _span = tracing::debug_span!("rpm merge").entered();
        let headers = read_headers(store, packages)?;
        let (built, unresolved) = build_merge(store, base, packages, &headers)?;
        state = Some((headers, unresolved));
        Ok(built)
    })?;
    let merge_step = Step::of("merge", merged);

    let layer = Memo::with_key(EntryKind::Layer, "rpm-scriptlets", k.layer).get_or_build(store, |store| {
        let (headers, unresolved) = pending(store, &merge_step.tree, packages, &mut state)?;
        let base_headers = base.map(|b| b.headers.as_slice()).unwrap_or_default();
        let script = scriptlets_script(base_headers, headers, unresolved)?;
        let (tree, log) = match script {
            None => {
                let mut batch = Batch::new();
                let empty = batch.put_tree(&crate::store::tree::Tree {
                    meta: crate::store::tree_builder::implicit_dir_meta(),
                    entries: vec![],
                });
                batch.commit(store, None)?;
                (empty, None)
            }
            Some(script) => {
                if store.lookup(&merge_step.tree, &[b"bin", b"sh"])?.is_none()
                    && store.lookup(&merge_step.tree, &[b"usr", b"bin", b"sh"])?.is_none()
                {
                    bail!("the packages have scriptlets but none of them provides /bin/sh to run them");
                }
                let out = crate::sandbox::run(store, &merge_step.tree, &script, script_limits, progress)
                    .context("RPM scriptlets failed")?;
                (out.layer, Some(out.log))
            }
        };
        let built = Built::recorded(tree).refs([k.merge]);
        Ok(match log {
            Some(log) => built.log(log),
            None => built,
        })
    })?;
    let layer_step = Step::of("layer", layer);

    let rootfs = Memo::with_key(EntryKind::Rootfs, "rpm-rootfs", k.rootfs).get_or_build(store, |store| {
        let _span = tracing::debug_span!("rpm rootfs").entered();
        let mut batch = Batch::new();
        let configured = crate::trees::layer::apply(store, &merge_step.tree, &layer_step.tree, &mut batch.trees)?;
        batch.commit(store, None)?;
        let (_, unresolved) = pending(store, &merge_step.tree, packages, &mut state)?;
        let configured = restore_special_bits(store, configured, unresolved)?;
        let dbpath = super::rpmdb::dbpath_in(store, &configured)?;
        let db = super::rpmdb::write(store, base.map(|b| &b.entry.tree), dbpath, packages, progress)?;
        let mut batch = Batch::new();
        let inputs = [
            Input { owner: "(packages and scriptlets)".into(), tree: configured, replaces: vec![] },
            Input { owner: "(rpm database)".into(), tree: db, replaces: vec!["(packages and scriptlets)".into()] },
        ];
        let tree = merge(store, &inputs, &mut batch.trees)?;
        Ok(Built::in_batch(tree, batch).refs([k.merge, k.layer]))
    })?;
    Ok(vec![merge_step, layer_step, Step::of("rootfs", rootfs)])
}

fn read_headers(store: &Store, packages: &[Package]) -> anyhow::Result<Vec<Header>> {
    packages.iter().map(|p| package_header(store, p)).collect()
}

/// The packages' headers and the files the merge could not give an owner (found again from the
/// merged tree when the merge step was a cache hit).
fn pending<'s>(
    store: &mut Store,
    merged: &Digest,
    packages: &[Package],
    state: &'s mut Option<(Vec<Header>, Unresolved)>,
) -> anyhow::Result<&'s (Vec<Header>, Unresolved)> {
    if state.is_none() {
        let headers = read_headers(store, packages)?;
        let unresolved = owners(store, merged, packages, &headers)?.1;
        *state = Some((headers, unresolved));
    }
    Ok(state.as_ref().expect("just set"))
}

/// Setuid and setgid bits and capabilities that a scriptlet-time `chown` cleared, set again as
/// the header has them (rpm sets modes after owners for the same reason).
fn restore_special_bits(store: &mut Store, tree: Digest, unresolved: &Unresolved) -> anyhow::Result<Digest> {
    let mut root = tree;
    for p in unresolved.iter().filter(|p| p.mode & 0o6000 != 0 || !p.caps.is_empty()) {
        let caps = if p.caps.is_empty() { None } else { Some(super::unpack::capability_xattr(&p.caps)?) };
        let change = |meta: &mut crate::store::meta::Meta| {
            meta.mode = (meta.mode & !0o7777) | (p.mode & 0o7777);
            if let Some(c) = &caps {
                meta.xattrs.retain(|(n, _)| n != b"security.capability");
                meta.xattrs.push((b"security.capability".to_vec(), c.clone()));
                meta.xattrs.sort();
            }
        };
        let parts: Vec<&[u8]> = p.path.split('/').filter(|s| !s.is_empty()).map(str::as_bytes).collect();
        let mut batch = Batch::new();
        if let Some(new) = set_at(store, &mut batch, &root, &parts, &change)? {
            root = new;
            batch.commit(store, None)?;
        }
    }
    Ok(root)
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
type Unresolved = Vec<Pending>;

/// A file whose owner the merge could not resolve; chowning it later clears its setuid and
/// setgid bits and capabilities, which are restored from the header afterwards.
pub struct Pending {
    package: usize,
    path: String,
    user: String,
    group: String,
    mode: u32,
    caps: String,
}

fn build_merge(
    store: &mut Store,
    base: Option<&Base>,
    packages: &[Package],
    headers: &[Header],
) -> anyhow::Result<(Built, Unresolved)> {
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
    Ok((Built::recorded(tree).refs(refs), unresolved))
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
        for f in header::files(h, crate::packages::Limits::default().max_members)
            .with_context(|| packages[i].nevra.clone())?
        {
            if (f.user == "root" && f.group == "root") || f.flags & header::FILE_GHOST != 0 {
                continue;
            }
            let (Some(&uid), Some(&gid)) = (users.get(&f.user), groups.get(&f.group)) else {
                unresolved.push(Pending {
                    package: i,
                    path: f.path.clone(),
                    user: f.user.clone(),
                    group: f.group.clone(),
                    mode: f.mode,
                    caps: f.caps.clone(),
                });
                continue;
            };
            let parts: Vec<&[u8]> = f.path.split('/').filter(|p| !p.is_empty()).map(str::as_bytes).collect();
            let mut batch = Batch::new();
            let change = |meta: &mut crate::store::meta::Meta| {
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

/// A package as scriptlets see it: its name, version and header.
struct Known<'a> {
    nevra: String,
    name: String,
    evr: super::version::Evr,
    triggers: Vec<header::Trigger>,
    header: &'a Header,
}

impl<'a> Known<'a> {
    fn new(h: &'a Header) -> anyhow::Result<Known<'a>> {
        let nevra = h.nevra();
        let read = || -> anyhow::Result<(String, super::version::Evr, Vec<header::Trigger>)> {
            Ok((h.string(tag::NAME)?.unwrap_or_default(), h.evr()?, header::triggers_in(h)?))
        };
        let (name, evr, triggers) = read().with_context(|| nevra.clone())?;
        Ok(Known { nevra, name, evr, triggers, header: h })
    }

    fn scriptlet(&self, body_tag: u32, prog_tag: u32) -> anyhow::Result<Option<Scriptlet>> {
        header::scriptlet(self.header, body_tag, prog_tag).with_context(|| self.nevra.clone())
    }
}

/// The script that runs every scriptlet of the new packages in order (and the base's triggers
/// they set off), or `None` when there is nothing to run. Arguments are rpm's for a first
/// install: 1 for `%pre`, `%post` and triggers (with the triggering package's count, 1), 0 for
/// `%pretrans` and `%posttrans`.
fn scriptlets_script(base: &[Header], headers: &[Header], unresolved: &Unresolved) -> anyhow::Result<Option<String>> {
    let base: Vec<Known<'_>> = base.iter().map(Known::new).collect::<anyhow::Result<_>>()?;
    let new: Vec<Known<'_>> = headers.iter().map(Known::new).collect::<anyhow::Result<_>>()?;
    let mut body = String::new();
    let mut n = 0usize;
    let mut emit = |body: &mut String, nevra: &str, what: &str, s: &Scriptlet, args: &str| -> anyhow::Result<()> {
        let interp = s.interpreter.first().map(String::as_str).unwrap_or("/bin/sh");
        if interp == "<lua>" {
            bail!("{nevra}: its {what} scriptlet is in Lua, which strata cannot run yet");
        }
        let argv: Vec<String> = s.interpreter.iter().map(|a| sq(a)).collect();
        let failed = sq(&format!("strata: {nevra}: its {what} scriptlet failed"));
        // `%post -p /sbin/ldconfig` without a body: rpm runs the program alone.
        let call = if s.body.trim().is_empty() {
            argv.join(" ")
        } else {
            n += 1;
            let file = format!("/tmp/.strata-scriptlet-{n}");
            let delim = format!("STRATA_SCRIPTLET_{}", Digest::of(s.body.as_bytes()).short());
            body.push_str(&format!("cat > {file} <<'{delim}'\n{}\n{delim}\n", s.body));
            format!("{} {file} {args}", argv.join(" "))
        };
        body.push_str(&format!("{call} </dev/null || {{ rc=$?; echo {failed}\" (exit $rc)\" >&2; exit 1; }}\n"));
        Ok(())
    };
    for k in &new {
        if let Some(s) = k.scriptlet(tag::PRETRANS, tag::PRETRANSPROG)? {
            emit(&mut body, &k.nevra, "%pretrans", &s, "0")?;
        }
    }
    // rpm installs a file whose owner does not exist as root, with a warning; so does strata.
    let mut chowns: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for Pending { package, path, user, group, .. } in unresolved {
        let warning =
            format!("strata: warning: {}: {path}: no user {user} or group {group}, left to root", new[*package].nevra);
        chowns.entry(*package).or_default().push(format!(
            "chown -h {}:{} {} 2>/dev/null || echo {} >&2\n",
            sq(user),
            sq(group),
            sq(path),
            sq(&warning)
        ));
    }
    for (i, k) in new.iter().enumerate() {
        if let Some(s) = k.scriptlet(tag::PREIN, tag::PREINPROG)? {
            emit(&mut body, &k.nevra, "%pre", &s, "1")?;
        }
        for c in chowns.get(&i).into_iter().flatten() {
            body.push_str(c);
        }
        if let Some(s) = k.scriptlet(tag::POSTIN, tag::POSTINPROG)? {
            emit(&mut body, &k.nevra, "%post", &s, "1")?;
        }
        // Triggers on this package: the base's, then those of packages installed so far (this
        // one included); then this package's triggers on packages installed before it.
        for owner in base.iter().chain(&new[..=i]) {
            for t in owner.triggers.iter().filter(|t| t.fires_on(&k.name, &k.evr)) {
                emit(&mut body, &owner.nevra, &format!("%triggerin -- {}", t.on), &t.script, "1 1")?;
            }
        }
        for earlier in base.iter().chain(&new[..i]) {
            for t in k.triggers.iter().filter(|t| t.fires_on(&earlier.name, &earlier.evr)) {
                emit(&mut body, &k.nevra, &format!("%triggerin -- {}", t.on), &t.script, "1 1")?;
            }
        }
    }
    for k in &new {
        if let Some(s) = k.scriptlet(tag::POSTTRANS, tag::POSTTRANSPROG)? {
            emit(&mut body, &k.nevra, "%posttrans", &s, "0")?;
        }
    }
    Ok((!body.is_empty()).then(|| format!("set +e\n{body}rm -f /tmp/.strata-scriptlet-*\n")))
}
