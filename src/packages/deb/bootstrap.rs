//! A Debian root tree from package entries, as cached steps:
//!
//! 1. `merge`: every package's `data/` tree (moved under `/usr` for a merged-/usr system), the
//!    `/bin`, `/sbin`, `/lib*` → `usr/…` symlinks, and the dpkg database (`status` with every
//!    package `unpacked`, `info/*.list`, `md5sums`, `conffiles`, maintainer scripts) merged as
//!    trees, with file conflicts reported by path and packages. Key: the package keys.
//! 2. `layer`: the maintainer scripts run in the sandbox over that merge: `preinst install` of
//!    Essential packages first, then the others, then `dpkg --configure -a`, with services kept
//!    from starting (`policy-rc.d`). Key: the merge key and the script.
//! 3. `rootfs`: the layer flattened onto the merge, plus apt's sources and index files so that
//!    apt inside the image knows the same packages. Key: both keys and the apt tree.
//!
//! Every step whose key is in the store is a hit: building the same package set again costs
//! only the key lookups.

use anyhow::Context;

use super::deb822;
use super::repo::{AptSource, ListContent, ListFile, PackageRecord};
use super::unpack::PackageReport;
use crate::store::batch::Batch;
use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::meta::Meta;
use crate::store::tree::{Name, Node, Tree};
use crate::store::tree_builder::{implicit_dir_meta, TreeBuilder};
use crate::trees::merge::{merge, Input};
use crate::util::progress::Progress;

/// Bump when the merge or script logic changes, so old cached steps are not reused.
const STEPS_VERSION: &[u8] = b"2";
/// The packages installed in a Debian root tree: name -> version.
pub fn installed(
    store: &Store,
    tree_entry: &crate::store::db::EntryRow,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    installed_in(&base_status(store, tree_entry)?)
}

fn base_status(store: &Store, b: &crate::store::db::EntryRow) -> anyhow::Result<String> {
    match store.lookup(&b.tree, &[b"var", b"lib", b"dpkg", b"status"])? {
        Some(node @ Node::File { .. }) => Ok(String::from_utf8(store.read_file(&node)?)?),
        _ => anyhow::bail!("{} ({}) has no dpkg database: it is not a Debian tree", b.key.short(), b.name),
    }
}

fn installed_in(status: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    Ok(deb822::parse(status)?
        .iter()
        .filter(|p| p.get("Status").is_some_and(|s| s.ends_with(" installed")))
        .filter_map(|p| Some((p.get("Package")?.to_string(), p.get("Version")?.to_string())))
        .collect())
}

/// The owner name of a base tree's files in merge conflict reports.
const BASE_OWNER: &str = "(base image)";
/// Top-level directories that a merged-/usr system keeps under `/usr`.
const MERGED_DIRS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

#[derive(Clone, Debug)]
pub struct Options {
    pub merged_usr: bool,
    pub script_limits: crate::sandbox::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options { merged_usr: true, script_limits: Default::default() }
    }
}

use crate::packages::Step;

#[derive(Clone, Debug, serde::Serialize)]
pub struct BootstrapReport {
    pub steps: Vec<Step>,
    pub rootfs: Step,
}

/// Build (or find) the root tree of `packages` (unpacked entries with their index records),
/// from scratch or on top of an existing Debian root tree (a `rootfs` entry): only the
/// packages it lacks are merged in and configured, so adding a package to a built image costs
/// that package and its scripts. `packages` is the whole resolved set; a package of the base that
/// it would change or remove is an error (build from scratch instead). `apt` is what apt inside the
/// image should know: the sources and their index files.
pub fn bootstrap_on(
    store: &mut Store,
    base: Option<&crate::store::db::EntryRow>,
    packages: &[(PackageRecord, PackageReport)],
    apt: (&[AptSource], &[ListFile]),
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<BootstrapReport> {
    let _span = tracing::debug_span!("bootstrap", packages = packages.len()).entered();
    let records: Vec<(PackageRecord, Digest)> = packages.iter().map(|(r, rep)| (r.clone(), rep.key)).collect();
    let k = keys(store, base, &records, apt, opts)?;
    let packages: Vec<(PackageRecord, PackageReport)> = k.packages.iter().map(|i| packages[*i].clone()).collect();
    let (base_status, merge_key, inputs_keys) = (k.base_status, k.merge, k.refs);
    let packages = &packages[..];
    let merged = Memo::with_key(EntryKind::Merge, "debian-merge", merge_key).get_or_build(store, |store| {
        let base = base_status.as_ref().map(|(b, status)| (b.tree, status.as_str()));
        let _span = tracing::debug_span!("merge").entered();
        Ok(Built::recorded(build_merge(store, base, packages, opts)?).refs(inputs_keys))
    })?;
    let merge_step = Step::of("merge", merged);

    let (script, layer_key) = (k.script, k.layer);
    let layer =
        Memo::with_key(EntryKind::Layer, "debian-maintainer-scripts", layer_key).get_or_build(store, |store| {
            let out = crate::sandbox::run(store, &merge_step.tree, &script, &opts.script_limits, progress)
                .context("maintainer scripts failed")?;
            Ok(Built::recorded(out.layer).refs([merge_key]).log(out.log))
        })?;
    let layer_step = Step::of("layer", layer);

    let (apt_key, apt_tree) = apt_lists(store, apt.0, apt.1)?;
    let rootfs_key = k.rootfs;
    let rootfs = Memo::with_key(EntryKind::Rootfs, "debian-rootfs", rootfs_key).get_or_build(store, |store| {
        let _span = tracing::debug_span!("rootfs").entered();
        let mut batch = Batch::new();
        let configured = crate::trees::layer::apply(store, &merge_step.tree, &layer_step.tree, &mut batch.trees)?;
        batch.commit(store, None)?;
        let mut batch = Batch::new();
        // Merged (not applied as a layer) so that directories keep the configured tree's metadata.
        let inputs = [
            Input { owner: BASE_OWNER.into(), tree: configured, replaces: vec![] },
            Input { owner: "(apt lists)".into(), tree: apt_tree, replaces: vec![BASE_OWNER.into()] },
        ];
        let tree = merge(store, &inputs, &mut batch.trees)?;
        Ok(Built::in_batch(tree, batch).refs([merge_key, layer_key, apt_key]))
    })?;
    Ok(BootstrapReport { steps: vec![merge_step, layer_step], rootfs: Step::of("rootfs", rootfs) })
}

/// The keys of the steps [`bootstrap_on`] runs, computed without running anything.
pub struct Keys {
    /// The base entry with its dpkg status, if any.
    base_status: Option<(crate::store::db::EntryRow, String)>,
    /// The packages to merge (those the base lacks), as indices into the resolved set.
    pub packages: Vec<usize>,
    refs: Vec<Digest>,
    script: String,
    pub merge: Digest,
    pub layer: Digest,
    pub rootfs: Digest,
}

impl Keys {
    /// The steps as (kind, key), in the order they run.
    pub fn steps(&self) -> [(&'static str, Digest); 3] {
        [("merge", self.merge), ("layer", self.layer), ("rootfs", self.rootfs)]
    }
}

/// Compute the step keys of a bootstrap (see [`bootstrap_on`]) from the resolved packages and
/// their package entry keys.
pub fn keys(
    store: &Store,
    base: Option<&crate::store::db::EntryRow>,
    packages: &[(PackageRecord, Digest)],
    apt: (&[AptSource], &[ListFile]),
    opts: &Options,
) -> anyhow::Result<Keys> {
    let (base_status, new) = match base {
        None => (None, (0..packages.len()).collect::<Vec<_>>()),
        Some(b) => {
            let status = base_status(store, b)?;
            let installed = installed_in(&status)?;
            let mut new = Vec::new();
            for (i, (r, _)) in packages.iter().enumerate() {
                match installed.get(&r.name) {
                    Some(v) if *v == r.version.to_string() => {}
                    Some(v) => anyhow::bail!(
                        "the base has {} {v} but the package set needs {}: adding packages cannot upgrade the base; build it again",
                        r.name,
                        r.version
                    ),
                    None => new.push(i),
                }
            }
            (Some((b.clone(), status)), new)
        }
    };
    let mut keys: Vec<Digest> = new.iter().map(|i| packages[*i].1).collect();
    keys.sort();
    let merged_usr: &[u8] = if opts.merged_usr { b"yes" } else { b"no" };
    // The base enters the key by its tree (so an identical base rebuilt by other steps is a hit)
    // and the refs by its entry (so gc keeps it).
    let mut key_inputs = keys.clone();
    let mut refs = keys;
    // New packages overwrite files of the base that they also ship (configuration a script wrote,
    // say), as dpkg does for files no package owns.
    if let Some((b, _)) = &base_status {
        key_inputs.insert(0, b.tree);
        refs.insert(0, b.key);
    }
    let merge = entry_key(EntryKind::Merge, &[("debian", STEPS_VERSION), ("merged-usr", merged_usr)], &key_inputs);
    let records: Vec<&PackageRecord> = new.iter().map(|i| &packages[*i].0).collect();
    let script = configure_script(&records, base_status.is_some());
    let layer = entry_key(EntryKind::Layer, &[("script", script.as_bytes())], &[merge]);
    let apt = apt_key(apt.0, apt.1);
    let rootfs = entry_key(EntryKind::Rootfs, &[], &[merge, layer, apt]);
    Ok(Keys { base_status, packages: new, refs, script, merge, layer, rootfs })
}

/// The key of the apt lists entry: the sources and the identities of the index files.
fn apt_key(sources: &[AptSource], lists: &[ListFile]) -> Digest {
    let text: String = sources.iter().map(|s| format!("{s}\n")).collect();
    let mut params: Vec<(String, Vec<u8>)> = vec![("sources.list".into(), text.clone().into_bytes())];
    for l in lists {
        let identity = match &l.content {
            ListContent::Bytes(b) => Digest::of(b).to_hex(),
            ListContent::Index { path, .. } => path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        };
        params.push((l.name.clone(), identity.into_bytes()));
    }
    let params: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    entry_key(EntryKind::Layer, &params, &[])
}

/// A tree with `/etc/apt/sources.list` and `/var/lib/apt/lists`, as a cached `layer` entry
/// keyed by the sources and the identities of the index files; returns its key and tree id.
fn apt_lists(store: &mut Store, sources: &[AptSource], lists: &[ListFile]) -> anyhow::Result<(Digest, Digest)> {
    let text: String = sources.iter().map(|s| format!("{s}\n")).collect();
    let memo = Memo::with_key(EntryKind::Layer, "apt-lists", apt_key(sources, lists));
    let (entry, _) = memo.get_or_build(store, |store| apt_lists_tree(store, &text, lists))?;
    Ok((entry.key, entry.tree))
}

/// The tree of [`apt_lists`], its objects and trees in the batch.
fn apt_lists_tree(store: &mut Store, text: &str, lists: &[ListFile]) -> anyhow::Result<Built> {
    let meta = Meta { mode: 0o644, uid: 0, gid: 0, xattrs: vec![] };
    let mut batch = Batch::new();
    let mut b = TreeBuilder::new(implicit_dir_meta());
    b.insert(
        &[name("etc"), name("apt"), name("sources.list")],
        batch.put_bytes(store, text.as_bytes(), meta.clone())?,
    )?;
    let dir = [name("var"), name("lib"), name("apt"), name("lists")];
    b.mkdir(&[&dir[..], &[name("partial")]].concat(), Meta { mode: 0o700, ..implicit_dir_meta() })?;
    let mut bytes = text.len() as u64;
    for l in lists {
        let content = l.content.read().with_context(|| format!("apt list {}", l.name))?;
        bytes += content.len() as u64;
        b.insert(
            &[&dir[..], &[Name::new(l.name.as_str())?]].concat(),
            batch.put_bytes(store, &content, meta.clone())?,
        )?;
    }
    let id = b.finish(&mut batch.trees);
    Ok(Built::in_batch(id, batch).totals(lists.len() as u64 + 1, bytes))
}

/// Where the merge stages trigger interests (under `/var/lib/dpkg`) until the script has
/// configured the packages.
const STAGED_TRIGGERS: &str = "triggers.strata";

/// File triggers of the base's packages that new packages set off, as dpkg would when it
/// unpacks them: when a new package ships a path under an interest, the interested package's
/// `postinst triggered PATH` runs. (Named triggers that packages activate, dpkg itself runs
/// during `--configure`, from the interests the merge records. Without a base, every interested
/// package is configured after all files are in place, which covers what its file triggers do.)
const BASE_TRIGGERS: &str = r#"strata_new() { case " $strata_new_packages " in *" $1 "*) return 0;; esac; return 1; }
for strata_tf in /var/lib/dpkg/info/*.triggers; do
  [ -e "$strata_tf" ] || continue
  strata_p=${strata_tf##*/}; strata_p=${strata_p%.triggers}
  strata_new "$strata_p" && continue
  while read -r strata_dir strata_arg strata_rest; do
    case "$strata_dir" in interest|interest-await|interest-noawait) ;; *) continue;; esac
    case "$strata_arg" in /*) ;; *) continue;; esac
    strata_hit=
    for strata_n in $strata_new_packages; do
      if [ -e "/var/lib/dpkg/info/$strata_n.list" ] && awk -v a="$strata_arg" '$0 == a || index($0, a "/") == 1 { f = 1 } END { exit !f }' "/var/lib/dpkg/info/$strata_n.list"; then strata_hit=1; fi
    done
    [ -n "$strata_hit" ] || continue
    [ -x "/var/lib/dpkg/info/$strata_p.postinst" ] || continue
    DPKG_MAINTSCRIPT_PACKAGE=${strata_p%%:*} DPKG_MAINTSCRIPT_ARCH=$(dpkg-query -W -f '${Architecture}' "$strata_p") \
      DPKG_MAINTSCRIPT_NAME=postinst DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 DPKG_ADMINDIR=/var/lib/dpkg DPKG_ROOT= \
      "/var/lib/dpkg/info/$strata_p.postinst" triggered "$strata_arg" </dev/null \
      || { echo "strata: the trigger $strata_arg of $strata_p failed" >&2; exit 1; }
  done < "$strata_tf"
done
"#;

/// The script the `layer` step runs: preinst of Essential packages, then of the rest, then
/// configure everything, run the triggers, and put the staged trigger interests in place.
fn configure_script(packages: &[&PackageRecord], on_base: bool) -> String {
    let mut names: Vec<(bool, String, &str, &str)> =
        packages.iter().map(|r| (!r.essential, info_name(r), r.name.as_str(), r.architecture.as_str())).collect();
    names.sort();
    let mut s = String::from(
        "# strata: configure a Debian tree\n\
         printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d\n\
         chmod 755 /usr/sbin/policy-rc.d\n",
    );
    // The environment dpkg gives maintainer scripts (dpkg-maintscript-helper relies on it).
    for (_, info, pkg, arch) in &names {
        s.push_str(&format!(
            "if [ -x /var/lib/dpkg/info/{info}.preinst ]; then DPKG_MAINTSCRIPT_PACKAGE={pkg} DPKG_MAINTSCRIPT_ARCH={arch} \
             DPKG_MAINTSCRIPT_NAME=preinst DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 DPKG_ADMINDIR=/var/lib/dpkg DPKG_ROOT= \
             /var/lib/dpkg/info/{info}.preinst install || {{ echo \"strata: the preinst script of {pkg} failed\" >&2; exit 1; }}; fi\n"
        ));
    }
    s.push_str("dpkg --configure -a\n");
    if on_base {
        let new: Vec<&str> = names.iter().map(|(_, info, _, _)| info.as_str()).collect();
        s.push_str(&format!("strata_new_packages='{}'\n{BASE_TRIGGERS}", new.join(" ")));
    }
    s.push_str("dpkg --triggers-only -a || true\nldconfig\nrm -f /usr/sbin/policy-rc.d\n");
    // The trigger interests the merge staged take effect for dpkg inside the image.
    s.push_str(&format!(
        "for f in /var/lib/dpkg/{STAGED_TRIGGERS}/*; do if [ -f \"$f\" ]; then cat \"$f\" > \"/var/lib/dpkg/triggers/${{f##*/}}\"; fi; done\nrm -rf /var/lib/dpkg/{STAGED_TRIGGERS}\n"
    ));
    // Logs and caches that record the time or inode numbers of this run: the same packages must
    // give the same tree.
    s.push_str("rm -f /var/log/dpkg.log /var/log/alternatives.log /var/cache/ldconfig/aux-cache /var/log/apt/*.log\n");
    // A machine id belongs to a machine, not an image: systemd generates it at first boot.
    s.push_str("if [ -e /etc/machine-id ]; then : > /etc/machine-id; fi\nrm -f /var/lib/dbus/machine-id\n");
    s
}

/// The name dpkg uses for a package's info files (`pkg`, or `pkg:arch` for Multi-Arch: same).
fn info_name(r: &PackageRecord) -> String {
    if r.multi_arch.as_deref() == Some("same") {
        format!("{}:{}", r.name, r.architecture)
    } else {
        r.name.clone()
    }
}

/// A name strata itself chose (a constant).
fn name(s: &str) -> Name {
    Name::new(s).expect("a constant name is valid")
}

/// `info/<package>.<what>`: from package data, so checked.
fn info_file(info_dir: &[Name], info: &str, what: &str) -> anyhow::Result<Vec<Name>> {
    let file = Name::new(format!("{info}.{what}"))
        .map_err(|e| anyhow::anyhow!("cannot name the dpkg database file for {info}.{what}: {e}"))?;
    Ok([info_dir, &[file]].concat())
}

/// Merge `packages` and their dpkg database, onto `base` (its tree and dpkg status) if given.
fn build_merge(
    store: &mut Store,
    base: Option<(Digest, &str)>,
    packages: &[(PackageRecord, PackageReport)],
    opts: &Options,
) -> anyhow::Result<Digest> {
    let mut m = MergeBuild::new(store, base, opts)?;
    for (record, report) in packages {
        m.add_package(store, record, report)?;
    }
    if !m.conflicts.is_empty() {
        return Err(crate::trees::merge::MergeError { conflicts: m.conflicts }.into());
    }
    m.finish(store)
}

/// Metadata of a file strata writes: owned by root, with `mode`.
fn file_meta(mode: u32) -> Meta {
    Meta { mode, uid: 0, gid: 0, xattrs: vec![] }
}

/// What [`build_merge`] gathers package by package: the merge inputs and the dpkg database.
struct MergeBuild<'o> {
    /// The base's tree, if any.
    base: Option<Digest>,
    opts: &'o Options,
    batch: Batch,
    inputs: Vec<Input>,
    /// Top-level directories the packages ship that merged /usr moves (they become links).
    moved_dirs: std::collections::BTreeSet<&'static str>,
    status: String,
    base_owners: Option<std::collections::HashMap<String, String>>,
    diversions: Option<Vec<Diversion>>,
    conflicts: Vec<crate::trees::merge::Conflict>,
    db: TreeBuilder,
    /// dpkg's trigger interests (`triggers/File`, `triggers/<name>`), the base's first.
    interests: Interests,
    info_dir: [Name; 4],
}

/// A package entry's parts that the merge reads.
struct PackageParts {
    data: Digest,
    control_tree: Tree,
    control_text: String,
    replaces: Vec<String>,
}

impl<'o> MergeBuild<'o> {
    /// Start a merge: the base as the first input, its status and trigger interests.
    fn new(store: &Store, base: Option<(Digest, &str)>, opts: &'o Options) -> anyhow::Result<Self> {
        let batch = Batch::new();
        let mut inputs = Vec::new();
        if let Some((tree, _)) = base {
            inputs.push(Input { owner: BASE_OWNER.into(), tree, replaces: vec![] });
        }
        let moved_dirs = std::collections::BTreeSet::new();
        let status = base.map(|(_, s)| s.trim_end().to_string() + "\n\n").unwrap_or_default();
        let mut db = TreeBuilder::new(implicit_dir_meta());
        let interests = match base {
            Some((tree, _)) => trigger_interests(store, &tree)?,
            None => Interests::default(),
        };
        let info_dir = [name("var"), name("lib"), name("dpkg"), name("info")];
        db.mkdir(&info_dir, implicit_dir_meta())?;
        Ok(MergeBuild {
            base: base.map(|(tree, _)| tree),
            opts,
            batch,
            inputs,
            moved_dirs,
            status,
            base_owners: None,
            diversions: None,
            conflicts: Vec::new(),
            db,
            interests,
            info_dir,
        })
    }

    /// Add a package: its database files and status paragraph, and its files as a merge input.
    fn add_package(&mut self, store: &mut Store, record: &PackageRecord, report: &PackageReport) -> anyhow::Result<()> {
        let ctx = || format!("package {} {}", record.name, record.version);
        let PackageParts { data, control_tree, control_text, mut replaces } = package_parts(store, record, report)?;
        let info = info_name(record);
        if let Some(n) = control_tree.get(b"triggers") {
            let text = String::from_utf8_lossy(&store.read_file(n)?).into_owned();
            self.interests.add(&info, &text).with_context(ctx)?;
        }
        self.add_info_files(store, &info, &data, &control_tree)?;
        // The status paragraph: the control file, marked unpacked, with conffile checksums.
        let conffiles = conffile_sums(store, &control_tree, &data)?;
        self.status.push_str(&status_paragraph(&control_text, &conffiles));

        let data = self.placed_data(store, record, data)?;
        if let Some(base_tree) = self.base {
            // The base's files may be overwritten only where dpkg would: files no package owns
            // (written by scripts), or owned by a package this one Replaces.
            let owners = match &self.base_owners {
                Some(o) => o,
                None => self.base_owners.insert(owners_in(store, &base_tree, self.opts.merged_usr)?),
            };
            base_conflicts(store, &base_tree, &data, record, &replaces, owners, &mut self.conflicts)?;
            replaces.push(BASE_OWNER.into());
        }
        self.inputs.push(Input { owner: record.name.clone(), tree: data, replaces });
        Ok(())
    }

    /// Record `info/<pkg>.*` for a package: its file list, its control files and md5sums.
    fn add_info_files(
        &mut self,
        store: &mut Store,
        info: &str,
        data: &Digest,
        control_tree: &Tree,
    ) -> anyhow::Result<()> {
        let (batch, db, info_dir) = (&mut self.batch, &mut self.db, &self.info_dir);
        // info/<pkg>.list: every path the package ships, as dpkg records it.
        let mut list = String::from("/.\n");
        for item in crate::store::walk::flatten(store, data)?.iter().skip(1) {
            list.push('/');
            list.push_str(&item.path.to_string_lossy());
            list.push('\n');
        }
        db.insert(&info_file(info_dir, info, "list")?, batch.put_bytes(store, list.as_bytes(), file_meta(0o644))?)?;
        // Control files dpkg keeps: md5sums, conffiles, scripts, triggers, shlibs, symbols, templates.
        for (fname, node) in &control_tree.entries {
            let fname_str = String::from_utf8_lossy(fname.as_bytes()).into_owned();
            if fname_str == "control" || !matches!(node, Node::File { .. }) {
                continue;
            }
            db.insert(&info_file(info_dir, info, &fname_str)?, node.clone())?;
        }
        // Packages without md5sums get them computed, as dpkg does when it unpacks them.
        if control_tree.get(b"md5sums").is_none() {
            let mut sums = String::new();
            for item in crate::store::walk::flatten(store, data)? {
                if let crate::store::walk::ItemKind::Leaf(node @ Node::File { .. }) = &item.kind {
                    use md5::Digest as _;
                    let md5 = hex::encode(md5::Md5::digest(store.read_file(node)?));
                    sums.push_str(&format!("{md5}  {}\n", item.path.to_string_lossy()));
                }
            }
            let node = batch.put_bytes(store, sums.as_bytes(), file_meta(0o644))?;
            db.insert(&info_file(info_dir, info, "md5sums")?, node)?;
        }
        Ok(())
    }

    /// A package's `data` as it lands in the image: diverted by the base, moved under `/usr`.
    fn placed_data(&mut self, store: &mut Store, record: &PackageRecord, data: Digest) -> anyhow::Result<Digest> {
        let ctx = || format!("package {} {}", record.name, record.version);
        // The base's diversions move this package's files aside, as dpkg does when it unpacks.
        let data = match self.base {
            Some(base_tree) => {
                let list = match &self.diversions {
                    Some(d) => d,
                    None => self.diversions.insert(diversions_in(store, &base_tree)?),
                };
                divert(store, data, &record.name, list).with_context(ctx)?
            }
            None => data,
        };
        if self.opts.merged_usr {
            usrmerge(store, &data, &record.name, &mut self.moved_dirs)
        } else {
            Ok(data)
        }
    }

    /// Merge everything: the merged-/usr links, the packages and the dpkg database, in one tree.
    fn finish(mut self, store: &mut Store) -> anyhow::Result<Digest> {
        if self.base.is_none() && self.opts.merged_usr {
            self.add_usr_links()?;
        }
        self.write_database(store)?;
        // The new status file replaces the base's.
        let db_tree = self.db.finish(&mut self.batch.trees);
        self.inputs.push(Input { owner: "(dpkg database)".into(), tree: db_tree, replaces: vec![BASE_OWNER.into()] });
        // The database and symlink trees must be recorded before the merge reads them.
        self.batch.commit(store, None)?;

        let mut merged = Batch::new();
        let tree = merge(store, &self.inputs, &mut merged.trees)?;
        merged.commit(store, None)?;
        Ok(tree)
    }

    /// Put the merged-/usr links first among the inputs.
    fn add_usr_links(&mut self) -> anyhow::Result<()> {
        // The merged-/usr links, one per directory a package ships (bin, sbin, lib always).
        self.moved_dirs.extend(["bin", "sbin", "lib"]);
        let mut b = TreeBuilder::new(implicit_dir_meta());
        for d in &self.moved_dirs {
            b.insert(&[name(d)], Node::Symlink { meta: file_meta(0o777), target: format!("usr/{d}").into_bytes() })?;
        }
        let tree = b.finish(&mut self.batch.trees);
        self.inputs.insert(0, Input { owner: "(merged /usr)".into(), tree, replaces: vec![] });
        Ok(())
    }

    /// Write the dpkg database files: `status`, a new tree's empty files, the staged interests.
    fn write_database(&mut self, store: &mut Store) -> anyhow::Result<()> {
        let (batch, db) = (&mut self.batch, &mut self.db);
        let dpkg_dir = &self.info_dir[..3];
        db.insert(
            &[dpkg_dir, &[name("status")]].concat(),
            batch.put_bytes(store, self.status.as_bytes(), file_meta(0o644))?,
        )?;
        if self.base.is_none() {
            for file in ["available", "diversions", "statoverride"] {
                db.insert(&[dpkg_dir, &[name(file)]].concat(), batch.put_bytes(store, b"", file_meta(0o644))?)?;
            }
            db.mkdir(&[dpkg_dir, &[name("updates")]].concat(), implicit_dir_meta())?;
            db.mkdir(&[dpkg_dir, &[name("triggers")]].concat(), implicit_dir_meta())?;
            let unincorp = [dpkg_dir, &[name("triggers"), name("Unincorp")]].concat();
            db.insert(&unincorp, batch.put_bytes(store, b"", file_meta(0o644))?)?;
        }
        // Staged, and moved into `triggers/` by the script once the packages are configured: named
        // triggers that packages of this same step activate are then not run on top of the
        // interested packages' own configuration (the kernel's initramfs would be made twice).
        let triggers_dir = [dpkg_dir, &[name(STAGED_TRIGGERS)]].concat();
        if !self.interests.files.is_empty() {
            let text: String = self.interests.files.iter().map(|l| format!("{l}\n")).collect();
            let node = batch.put_bytes(store, text.as_bytes(), file_meta(0o644))?;
            db.insert(&[&triggers_dir[..], &[name("File")]].concat(), node)?;
        }
        for (trigger, lines) in &self.interests.named {
            let file = Name::new(trigger.as_str()).map_err(|e| anyhow::anyhow!("trigger name `{trigger}`: {e}"))?;
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let node = batch.put_bytes(store, text.as_bytes(), file_meta(0o644))?;
            db.insert(&[&triggers_dir[..], &[file]].concat(), node)?;
        }
        Ok(())
    }
}

/// Read a package entry's `data/` tree, `control/` tree, control text and `Replaces` names.
fn package_parts(store: &Store, record: &PackageRecord, report: &PackageReport) -> anyhow::Result<PackageParts> {
    let ctx = || format!("package {} {}", record.name, record.version);
    let data = match store.lookup(&report.tree, &[b"data"])? {
        Some(Node::Directory { tree }) => tree,
        _ => anyhow::bail!("{}: entry {} has no data/ tree", ctx(), report.key.short()),
    };
    let control_tree = match store.lookup(&report.tree, &[b"control"])? {
        Some(Node::Directory { tree }) => store.tree(&tree)?,
        _ => anyhow::bail!("{}: entry {} has no control/ tree", ctx(), report.key.short()),
    };
    let control_text = match control_tree.get(b"control") {
        Some(n) => {
            String::from_utf8(store.read_file(n)?).with_context(|| format!("{}: control is not UTF-8", ctx()))?
        }
        None => anyhow::bail!("{}: no control file", ctx()),
    };
    let fields = deb822::parse(&control_text).with_context(ctx)?.into_iter().next().unwrap_or_default();
    let replaces: Vec<String> = super::relation::parse(fields.get("Replaces").unwrap_or(""))
        .with_context(ctx)?
        .into_iter()
        .flatten()
        .map(|d| d.name)
        .collect();
    Ok(PackageParts { data, control_tree, control_text, replaces })
}

/// The `Conffiles` lines of a status paragraph: each conffile with the MD5 of the shipped file.
fn conffile_sums(store: &Store, control_tree: &Tree, data: &Digest) -> anyhow::Result<String> {
    let mut conffiles = String::new();
    if let Some(n) = control_tree.get(b"conffiles") {
        for path in String::from_utf8_lossy(&store.read_file(n)?).lines().map(str::trim).filter(|l| l.starts_with('/'))
        {
            let parts: Vec<&[u8]> = path.trim_start_matches('/').split('/').map(str::as_bytes).collect();
            let md5 = match store.lookup(data, &parts)? {
                Some(node @ Node::File { .. }) => {
                    use md5::Digest as _;
                    hex::encode(md5::Md5::digest(store.read_file(&node)?))
                }
                _ => "newconffile".to_string(),
            };
            conffiles.push_str(&format!(" {path} {md5}\n"));
        }
    }
    Ok(conffiles)
}

/// A dpkg diversion: `from` is installed as `to`, except by package `by` (`LOCAL`: by none).
struct Diversion {
    from: String,
    to: String,
    by: String,
}

/// The diversions a Debian tree records in `/var/lib/dpkg/diversions` (three lines each).
fn diversions_in(store: &Store, tree: &Digest) -> anyhow::Result<Vec<Diversion>> {
    let Some(node @ Node::File { .. }) = store.lookup(tree, &[b"var", b"lib", b"dpkg", b"diversions"])? else {
        return Ok(Vec::new());
    };
    let text = String::from_utf8_lossy(&store.read_file(&node)?).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    if !lines.len().is_multiple_of(3) {
        anyhow::bail!("the base's /var/lib/dpkg/diversions is damaged ({} lines, not triplets)", lines.len());
    }
    Ok(lines
        .chunks(3)
        .map(|c| Diversion { from: c[0].to_string(), to: c[1].to_string(), by: c[2].to_string() })
        .collect())
}

/// `data` (a package's files) with every file another package diverts moved to its diverted name.
fn divert(store: &mut Store, data: Digest, package: &str, diversions: &[Diversion]) -> anyhow::Result<Digest> {
    let mut batch = Batch::new();
    let mut root = store.tree(&data)?;
    let mut moved = false;
    for d in diversions.iter().filter(|d| d.by != package) {
        let from: Vec<&str> = d.from.split('/').filter(|p| !p.is_empty()).collect();
        let to: Vec<&str> = d.to.split('/').filter(|p| !p.is_empty()).collect();
        if to.is_empty() || to.iter().any(|p| *p == "." || *p == "..") {
            anyhow::bail!("the base's diversion of {} to `{}` is not a path in the image", d.from, d.to);
        }
        match crate::trees::edit::lookup(store, &batch, &root, &from)? {
            None | Some(Node::Directory { .. }) => {}
            Some(node) => {
                crate::trees::edit::put(store, &mut batch, &mut root, &from, None)?;
                crate::trees::edit::put(store, &mut batch, &mut root, &to, Some(node))?;
                moved = true;
            }
        }
    }
    if !moved {
        return Ok(data);
    }
    let id = batch.put_tree(&root);
    batch.commit(store, None)?;
    Ok(id)
}

/// Trigger interests as dpkg records them under `/var/lib/dpkg/triggers`: `File` holds
/// `PATH PACKAGE[/noawait]` lines for file triggers, and a file per named trigger holds
/// `PACKAGE[/noawait]` lines. Without them, dpkg inside the image would never run the triggers
/// of packages strata installed.
#[derive(Default)]
struct Interests {
    files: Vec<String>,
    named: std::collections::BTreeMap<String, Vec<String>>,
}

impl Interests {
    /// Add the interests of package `info` from its `triggers` control file.
    fn add(&mut self, info: &str, text: &str) -> anyhow::Result<()> {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let mut words = line.split_whitespace();
            let (Some(directive), Some(arg)) = (words.next(), words.next()) else {
                anyhow::bail!("triggers: bad line `{line}`");
            };
            let suffix = match directive {
                "interest" | "interest-await" => "",
                "interest-noawait" => "/noawait",
                d if d.starts_with("activate") => continue,
                other => anyhow::bail!("triggers: unknown directive `{other}`"),
            };
            let who = format!("{info}{suffix}");
            if arg.starts_with('/') {
                let l = format!("{arg} {who}");
                if !self.files.contains(&l) {
                    self.files.push(l);
                }
            } else {
                if arg.contains('/') || arg == "File" || arg == "Lock" || arg == "Unincorp" {
                    anyhow::bail!("triggers: trigger name `{arg}` cannot be recorded");
                }
                let list = self.named.entry(arg.to_string()).or_default();
                if !list.contains(&who) {
                    list.push(who);
                }
            }
        }
        Ok(())
    }
}

/// The trigger interests a Debian tree records.
fn trigger_interests(store: &Store, tree: &Digest) -> anyhow::Result<Interests> {
    let mut out = Interests::default();
    let Some(Node::Directory { tree: dir }) = store.lookup(tree, &[b"var", b"lib", b"dpkg", b"triggers"])? else {
        return Ok(out);
    };
    for (n, node) in &store.tree(&dir)?.entries {
        if !matches!(node, Node::File { .. }) {
            continue;
        }
        let text = String::from_utf8_lossy(&store.read_file(node)?).into_owned();
        let lines = text.lines().map(str::to_string).filter(|l| !l.trim().is_empty());
        match n.as_bytes() {
            b"File" => out.files.extend(lines),
            b"Lock" | b"Unincorp" => {}
            other => out.named.entry(String::from_utf8_lossy(other).into_owned()).or_default().extend(lines),
        }
    }
    Ok(out)
}

/// Which package owns each path of a Debian tree, from its `info/*.list` files (paths under
/// `/bin`, `/sbin` and `/lib*` as merged /usr places them).
fn owners_in(
    store: &Store,
    tree: &Digest,
    merged_usr: bool,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut owners = std::collections::HashMap::new();
    let info = match store.lookup(tree, &[b"var", b"lib", b"dpkg", b"info"])? {
        Some(Node::Directory { tree }) => store.tree(&tree)?,
        _ => return Ok(owners),
    };
    for (name, node) in &info.entries {
        let Some(package) = name.as_bytes().strip_suffix(b".list") else { continue };
        let package = String::from_utf8_lossy(package);
        let package = package.split(':').next().unwrap_or_default().to_string();
        for line in String::from_utf8_lossy(&store.read_file(node)?).lines() {
            let path = match (merged_usr, line.split('/').nth(1)) {
                (true, Some(top)) if MERGED_DIRS.contains(&top) => format!("/usr{line}"),
                _ => line.to_string(),
            };
            owners.insert(path, package.clone());
        }
    }
    Ok(owners)
}

/// Files of `data` (a new package's tree) that differ from the base's file at the same path
/// when another package of the base owns it and the new package does not replace that one.
fn base_conflicts(
    store: &Store,
    base: &Digest,
    data: &Digest,
    record: &PackageRecord,
    replaces: &[String],
    owners: &std::collections::HashMap<String, String>,
    out: &mut Vec<crate::trees::merge::Conflict>,
) -> anyhow::Result<()> {
    for item in crate::store::walk::flatten(store, data)? {
        let crate::store::walk::ItemKind::Leaf(new) = &item.kind else { continue };
        let parts: Vec<&[u8]> = item.path.iter().map(|c| c.as_encoded_bytes()).collect();
        let Some(old) = store.lookup(base, &parts)? else { continue };
        let same = match (&old, new) {
            (Node::File { meta: a, size: s, content: c, .. }, Node::File { meta: b, size: t, content: d, .. }) => {
                a == b && s == t && c == d
            }
            (a, b) => a == b,
        };
        if same {
            continue;
        }
        let path = format!("/{}", item.path.display());
        if let Some(owner) = owners.get(&path) {
            if *owner != record.name && !replaces.contains(owner) {
                out.push(crate::trees::merge::Conflict {
                    path,
                    owners: vec![format!("{owner} (in the base)"), record.name.clone()],
                });
            }
        }
    }
    Ok(())
}

/// The status paragraph of a package: its control text with `Status` after `Package`, and
/// `Conffiles` at the end.
fn status_paragraph(control: &str, conffiles: &str) -> String {
    let mut out = String::new();
    for line in control.lines().filter(|l| !l.trim().is_empty()) {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("Package:") {
            out.push_str("Status: install ok unpacked\n");
        }
    }
    if !conffiles.is_empty() {
        out.push_str("Conffiles:\n");
        out.push_str(conffiles);
    }
    out.push('\n');
    out
}

/// A package tree with `/bin`, `/sbin` and `/lib*` moved under `/usr` (merged /usr). The split
/// trees are recorded first (unreferenced trees are harmless; gc removes them) so that the merge
/// can read them.
fn usrmerge(
    store: &mut Store,
    data: &Digest,
    owner: &str,
    moved_dirs: &mut std::collections::BTreeSet<&'static str>,
) -> anyhow::Result<Digest> {
    let root = store.tree(data)?;
    let merged_dir = |n: &Name, node: &Node| {
        MERGED_DIRS.iter().find(|d| matches!(node, Node::Directory { .. }) && n.as_bytes() == d.as_bytes())
    };
    let is_merged = |n: &Name, node: &Node| merged_dir(n, node).is_some();
    moved_dirs.extend(root.entries.iter().filter_map(|(n, node)| merged_dir(n, node).copied()));
    if !root.entries.iter().any(|(n, node)| is_merged(n, node)) {
        return Ok(*data);
    }
    let (moved, rest): (Vec<_>, Vec<_>) = root.entries.into_iter().partition(|(n, node)| is_merged(n, node));
    let mut split = Batch::new();
    let usr = split.put_tree(&Tree { meta: implicit_dir_meta(), entries: moved });
    let moved_root =
        split.put_tree(&Tree { meta: root.meta.clone(), entries: vec![(name("usr"), Node::Directory { tree: usr })] });
    let rest_root = split.put_tree(&Tree { meta: root.meta, entries: rest });
    split.commit(store, None)?;
    let inputs = [
        Input { owner: owner.to_string(), tree: rest_root, replaces: vec![] },
        Input { owner: format!("{owner} (merged /usr)"), tree: moved_root, replaces: vec![] },
    ];
    let mut merged = Batch::new();
    let id = merge(store, &inputs, &mut merged.trees)
        .with_context(|| format!("package {owner}: moving /bin, /sbin and /lib* under /usr"))?;
    merged.commit(store, None)?;
    Ok(id)
}
