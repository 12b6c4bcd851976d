//! The build graph: a description chain turned into cached steps whose results are store entries.
//!
//! For each description of the chain (base first), in order:
//!
//! 1. `packages`: resolve, unpack (one `package` entry per package), merge, configure and add
//!    apt's lists ([`crate::packages::deb::bootstrap`]); from scratch for the first description (with
//!    every `Priority: required` package, like debootstrap), or on top of the base for a derived one;
//! 2. `remove`: packages removed (`apt-get purge`, and `dpkg --purge --force-depends` for `delete`);
//! 3. `users`: groups and users created or changed with the image's own tools, passwords hashed;
//! 4. `archive`: each tar archive unpacked over the root;
//! 5. `files`: the `root/` and `config-overlay/` trees, owned by root unless the description says
//!    otherwise, laid over the root;
//! 6. `preferences`: timezone, locale and keytable files;
//! 7. `config.sh` and `images.sh`, run in the sandbox like maintainer scripts;
//! 8. `image`: the description's final `rootfs` entry, named after it.
//!
//! Every step after `packages` is keyed by its named inputs and the tree it starts from, never by
//! the keys of earlier steps: a step that runs again and yields the same tree leaves every later
//! step a hit (early cutoff). The packages step keys on package checksums, the base tree and the
//! scripts it runs. [`run`] in [`Mode::Plan`] computes what it can without building anything: a
//! step whose input tree is not built yet is `pending`.

pub mod generations;
pub mod overlay;
mod package_steps;
pub mod picture;
pub mod retention;
mod rpm_packages;
pub mod scripts;
mod step;

use step::{input, Cur};
pub use step::{Input, Mode, State, Step};

use std::path::Path;

use anyhow::{bail, Context};

use crate::description::{self, Base, Chain, Loaded, Repository};
use crate::packages::deb::{bootstrap, packages, solve::Request};
use crate::packages::lock::{Asked, Family, Lock, LockedBase, LockedImage};
use crate::packages::rpm::repo::RpmSource;
use crate::store::batch::Batch;
use crate::store::db::EntryRow;
use crate::store::digest::Digest;

use crate::store::local::{Store, Target};
use crate::store::memo::Built;

use crate::store::Backend;
use crate::util::progress::Progress;
use rpm_packages::{rpm_source_line, Sources};

/// The fixed time used inside images when the caller sets no `SOURCE_DATE_EPOCH`
/// (2024-01-01T00:00:00Z): dates written into files (password ages) never come from the clock.
pub const DEFAULT_EPOCH: u64 = 1_704_067_200;

#[derive(Clone, Debug)]
pub struct Options {
    /// KIWI profiles to select.
    pub profiles: Vec<String>,
    /// Replace every repository of the descriptions with these apt source lines.
    pub set_repos: Vec<String>,
    /// Add these apt source lines to the descriptions' repositories.
    pub add_repos: Vec<String>,
    pub arch: String,
    /// What scripts may use (time, disk, processes).
    pub script_limits: crate::sandbox::Limits,
    /// Seconds since 1970 used for dates written inside the image.
    pub epoch: u64,
    /// Install exactly the package sets of this lock (see [`crate::packages::lock`]).
    pub locked: Option<Lock>,
    /// How registries are reached (bases `docker://…`).
    pub registry: crate::oci::registry::Settings,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            profiles: vec![],
            set_repos: vec![],
            add_repos: vec![],
            arch: "amd64".into(),
            script_limits: Default::default(),
            epoch: DEFAULT_EPOCH,
            locked: None,
            registry: Default::default(),
        }
    }
}

/// What [`run`] did or would do.
#[derive(Debug)]
pub struct Outcome {
    pub image: String,
    pub document: String,
    pub steps: Vec<Step>,
    /// The final `rootfs` entry, when known.
    pub rootfs: Option<EntryRow>,
    /// The package set each description of the chain installed from apt repositories, base
    /// first, as a lock file holds it.
    pub locks: Vec<LockedImage>,
    /// The tree the chain started from, when it derives from a root or an OSTree commit.
    pub bases: Vec<LockedBase>,
    /// The retention policy the image's own description sets (not its bases').
    pub retention: Option<crate::description::Retention>,
}

impl Outcome {
    /// (total, cached, built) counting every package entry as a step.
    pub fn counts(&self) -> (u64, u64, u64) {
        let total = self.steps.iter().map(|s| s.count).sum();
        let cached = self.steps.iter().map(|s| s.cached_count).sum();
        let built = self.steps.iter().map(|s| if s.state == State::Built { s.count - s.cached_count } else { 0 }).sum();
        (total, cached, built)
    }
}

struct Walker<'a> {
    store: &'a mut Store,
    opts: &'a Options,
    mode: Mode,
    progress: &'a Progress,
    steps: Vec<Step>,
    bar: indicatif::ProgressBar,
    locks: Vec<LockedImage>,
    bases: Vec<LockedBase>,
}

/// Plan or build the image described at `path`.
pub fn run(store: &mut Store, path: &Path, opts: &Options, mode: Mode, progress: &Progress) -> anyhow::Result<Outcome> {
    run_chain(store, &description::load_chain(path, &opts.profiles)?, opts, mode, progress)
}

/// Plan or build a loaded description chain (see [`description::load_chain`]).
pub fn run_chain(
    store: &mut Store,
    chain: &Chain,
    opts: &Options,
    mode: Mode,
    progress: &Progress,
) -> anyhow::Result<Outcome> {
    // The bar starts with the steps the descriptions name; package counts join it once resolved.
    let expected: u64 = chain.layers.iter().map(expected_steps).sum::<u64>() + chain.origin.is_some() as u64;
    let bar = if mode == Mode::Build { progress.items(expected, "steps") } else { indicatif::ProgressBar::hidden() };
    let mut w = Walker { store, opts, mode, progress, steps: Vec::new(), bar, locks: Vec::new(), bases: Vec::new() };
    let mut cur = w.origin(chain)?;
    let mut last = None;
    for (i, layer) in chain.layers.iter().enumerate() {
        cur = w.layer(chain, i, layer, cur)?;
        last = match &cur {
            Cur::Known(e) => Some(e.clone()),
            _ => None,
        };
    }
    w.bar.finish_and_clear();
    let image = chain.image();
    Ok(Outcome {
        image: image.description.name.clone(),
        document: image.source.file.display().to_string(),
        steps: w.steps,
        rootfs: last,
        locks: w.locks,
        bases: w.bases,
        retention: image.description.retention,
    })
}

/// The steps a description names, before its packages are resolved.
fn expected_steps(l: &Loaded) -> u64 {
    let d = &l.description;
    let has = |b: bool| b as u64;
    let scripts = ["config.sh", "images.sh"].iter().filter(|s| l.source.dir.join(s).is_file()).count() as u64;
    let overlays =
        has(l.source.dir.join("root").is_dir() || l.source.dir.join("config-overlay").is_dir() || !d.files.is_empty());
    // unpack, merge, layer, rootfs
    let packages = if d.derived_from.is_none() || !d.packages.install.is_empty() || !d.packages.bootstrap.is_empty() {
        4
    } else {
        0
    };
    packages
        + has(!d.packages.remove.is_empty() || !d.packages.delete.is_empty())
        + has(!d.users.is_empty())
        + d.archives.len() as u64
        + overlays
        + has(d.preferences.timezone.is_some() || d.preferences.locale.is_some() || d.preferences.keytable.is_some())
        + scripts
        + 1
}

impl Walker<'_> {
    fn push(&mut self, step: Step) {
        // Steps beyond the expected ones (packages, sub-steps) lengthen the bar.
        let done = self.steps.iter().map(|s| s.count).sum::<u64>() + step.count;
        if done > self.bar.length().unwrap_or(0) {
            self.bar.set_length(done);
        }
        self.bar.inc(step.count);
        let cached: u64 = self.steps.iter().map(|s| s.cached_count).sum::<u64>() + step.cached_count;
        self.bar.set_message(format!("steps ({cached} cached) {} {}", step.kind, step.name));
        self.steps.push(step);
    }

    /// The tree a chain starts from when its first description derives from a root or a commit.
    fn origin(&mut self, chain: &Chain) -> anyhow::Result<Cur> {
        let first = &chain.layers[0];
        let image = first.description.name.clone();
        match &chain.origin {
            None => Ok(Cur::Empty),
            Some(Base::Description(_)) => unreachable!("load_chain follows descriptions"),
            Some(Base::Root(spec)) => {
                let entry = match self.store.resolve(spec).with_context(|| format!("derived-from root:{spec}"))? {
                    Target::Entry(e) => e,
                    Target::Tree(_) => bail!("derived-from root:{spec}: names a tree, not an entry"),
                };
                let step = Step {
                    image,
                    kind: "base".into(),
                    name: format!("root:{spec}"),
                    key: Some(entry.key),
                    tree: Some(entry.tree),
                    state: State::Cached,
                    count: 1,
                    cached_count: 1,
                    inputs: vec![input(format!("root:{spec}"), entry.tree.to_hex())],
                };
                self.base_tree(format!("root:{spec}"), &entry.tree)?;
                self.push(step);
                Ok(Cur::Known(entry))
            }
            Some(Base::Ostree { repo, reference }) => {
                let out = crate::util::process::command("ostree")
                    .arg(format!("--repo={}", repo.display()))
                    .args(["rev-parse", reference])
                    .output()
                    .context("failed to run `ostree` (install the ostree package)")?;
                if !out.status.success() {
                    bail!(
                        "derived-from ostree:{}#{reference}: {}",
                        repo.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let key = overlay::ostree_commit_key(&commit);
                let name = format!("ostree:{reference}");
                let input = input(name.clone(), commit.clone());
                // Named by the repository's real path, however the description was reached.
                let locked = format!(
                    "ostree:{}#{reference}",
                    fs_err::canonicalize(repo).unwrap_or_else(|_| repo.clone()).display()
                );
                let progress = self.progress;
                self.imported_base(image, name, key, input, locked, |store| {
                    overlay::import_ostree(store, repo, &commit, key, progress)
                })
            }
            Some(Base::Oci { dir, tag }) => {
                let shown = |dir: &std::path::Path| match tag {
                    Some(t) => format!("oci:{}:{t}", dir.display()),
                    None => format!("oci:{}", dir.display()),
                };
                let locked = shown(&fs_err::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()));
                self.oci_origin(image, shown(dir), locked, dir, tag.as_deref(), None)
            }
            Some(Base::OciArchive { file, tag }) => {
                let shown = |file: &std::path::Path| match tag {
                    Some(t) => format!("oci-archive:{}:{t}", file.display()),
                    None => format!("oci-archive:{}", file.display()),
                };
                let locked = shown(&fs_err::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()));
                // The small members resolve the tag; the layers are written only for an import.
                let work = tempfile::Builder::new().prefix("oci-archive-").tempdir_in(self.store.tmp_dir())?;
                crate::oci::archive::unpack(file, work.path(), Some(4 << 20))
                    .with_context(|| format!("derived-from {}", shown(file)))?;
                self.oci_origin(image, shown(file), locked, work.path(), tag.as_deref(), Some(file))
            }
            Some(Base::Registry(r)) => self.registry_origin(image, r),
            Some(Base::OstreeContainer(inner)) => self.ostree_container_origin(image, inner),
        }
    }

    /// The base of a chain that derives from an ostree-native container image: its manifest is
    /// resolved as for other OCI images; the image is imported once, keyed by that digest
    /// ([`crate::ostree::container`]: every object checked, the commit's tree as a container
    /// sees it).
    fn ostree_container_origin(&mut self, image: String, inner: &Base) -> anyhow::Result<Cur> {
        use crate::ostree::container;
        let resolved =
            container::resolve(self.store, inner, &self.opts.arch, &self.opts.registry).context("derived-from")?;
        let key = container::image_key(&resolved.desc.digest);
        let input = input(resolved.name.clone(), resolved.desc.digest.clone());
        let progress = self.progress;
        let (name, locked) = (resolved.name.clone(), resolved.locked.clone());
        self.imported_base(image, name.clone(), key, input, locked, |store| {
            let limits = crate::packages::Limits::default();
            resolved
                .with_blobs(store, progress, |store, dir| {
                    container::import(store, dir, &resolved.desc, &resolved.manifest, name.clone(), &limits, progress)
                })
                .with_context(|| format!("derived-from {name}"))
        })
    }

    /// The base of a chain that derives from an image in a registry: its manifest is resolved
    /// (to a digest, for this architecture) on every run; the image is downloaded and imported
    /// once, keyed by that digest.
    fn registry_origin(&mut self, image: String, r: &crate::description::ImageReference) -> anyhow::Result<Cur> {
        use crate::oci::import;
        let context = format!("derived-from {r}");
        let client = crate::oci::registry::Client::connect(r, &self.opts.registry, false).context(context.clone())?;
        let (desc, manifest) = import::resolve_remote(&client, r, &self.opts.arch).context(context.clone())?;
        let key = import::image_key(&desc.digest);
        let name = r.to_string();
        let input = input(name.clone(), desc.digest.clone());
        let progress = self.progress;
        self.imported_base(image, name.clone(), key, input, name, |store| {
            let limits = crate::packages::Limits::default();
            import::import_remote(store, &client, r, &desc, &manifest, &limits, progress).context(context)
        })
    }

    /// The base of a chain that derives from an OCI image: imported once, keyed by its
    /// manifest's digest ([`crate::oci::import`]).
    /// `name` is the image as the description names it, `locked` as lock files do; its layout
    /// is at `dir` (for `oci-archive:`, a scratch directory holding the archive's small members,
    /// where the whole `archive` is unpacked before an import).
    fn oci_origin(
        &mut self,
        image: String,
        name: String,
        locked: String,
        dir: &std::path::Path,
        tag: Option<&str>,
        archive: Option<&std::path::Path>,
    ) -> anyhow::Result<Cur> {
        use crate::oci::import;
        let context = format!("derived-from {name}");
        let (desc, manifest) = import::resolve(dir, tag, &self.opts.arch).with_context(|| context.clone())?;
        let key = import::image_key(&desc.digest);
        let input = input(name.clone(), desc.digest.clone());
        self.imported_base(image, name.clone(), key, input, locked, |store| {
            if let Some(file) = archive {
                crate::oci::archive::unpack(file, dir, None).with_context(|| context.clone())?;
            }
            let limits = crate::packages::Limits::default();
            import::import_manifest(store, dir, &desc, &manifest, name, &limits).context(context)
        })
    }

    /// A base imported from outside the store (an OSTree commit, an OCI image) as the step
    /// `name` keyed `key`: found, or in plan mode missing, or imported by `import`. `locked`
    /// names the base for lock files.
    fn imported_base(
        &mut self,
        image: String,
        name: String,
        key: Digest,
        input: Input,
        locked: String,
        import: impl FnOnce(&mut Store) -> anyhow::Result<crate::store::db::EntryRow>,
    ) -> anyhow::Result<Cur> {
        let mut step = Step {
            image,
            kind: "base".into(),
            name,
            key: Some(key),
            tree: None,
            state: State::Missing,
            count: 1,
            cached_count: 0,
            inputs: vec![input],
        };
        let cur = if let Some(e) = self.store.entry(&key)? {
            step.state = State::Cached;
            step.cached_count = 1;
            Cur::Known(e)
        } else if self.mode == Mode::Plan {
            Cur::Unknown
        } else {
            let e = import(self.store)?;
            step.state = State::Built;
            Cur::Known(e)
        };
        step.tree = match &cur {
            Cur::Known(e) => Some(e.tree),
            _ => None,
        };
        if let Some(tree) = step.tree {
            self.base_tree(locked, &tree)?;
        }
        self.push(step);
        Ok(cur)
    }

    /// Note the tree a chain starts from; with a lock, check it is the locked one.
    fn base_tree(&mut self, name: String, tree: &Digest) -> anyhow::Result<()> {
        if let Some(lock) = &self.opts.locked {
            lock.check_base(&name, &tree.to_hex())?;
        }
        self.bases.push(LockedBase { name, tree: tree.to_hex() });
        Ok(())
    }

    fn layer(&mut self, chain: &Chain, i: usize, layer: &Loaded, cur: Cur) -> anyhow::Result<Cur> {
        let d = &layer.description;
        let mut cur = self.packages(chain, i, layer, cur)?;
        let image = d.name.clone();

        if !d.packages.remove.is_empty() || !d.packages.delete.is_empty() {
            let script = scripts::remove_script(&d.packages.remove, &d.packages.delete);
            let mut inputs: Vec<Input> = d.packages.remove.iter().map(|p| input(format!("remove {p}"), "")).collect();
            inputs.extend(d.packages.delete.iter().map(|p| input(format!("delete {p}"), "")));
            cur = self.script_step(&image, "remove", "packages", inputs, &script, cur)?;
        }
        if !d.users.is_empty() {
            let (script, inputs) = scripts::users_script(&d.name, &d.users, self.opts.epoch);
            cur = self.script_step(&image, "users", "users", inputs, &script, cur)?;
        }
        for a in &d.archives {
            let path = layer.source.dir.join(a);
            let digest = fs_err::read(&path).map(|b| Digest::of(&b)).with_context(|| format!("archive `{a}`"))?;
            let inputs = vec![input(format!("archive {a}"), digest.to_hex())];
            cur = self.tree_step(&image, "archive", a, inputs, cur, |store, base, progress| {
                let top = overlay::import_archive(store, &path, progress)?;
                overlay::overlay(store, base, &top).map(Built::recorded)
            })?;
        }
        let overlays: Vec<&str> =
            ["root", "config-overlay"].into_iter().filter(|n| layer.source.dir.join(n).is_dir()).collect();
        if !overlays.is_empty() || !d.files.is_empty() {
            let mut tops = Vec::new();
            let mut inputs = Vec::new();
            for n in &overlays {
                let (top, mut listed) =
                    overlay::import_overlay(self.store, &layer.source.dir.join(n), n, self.progress)?;
                inputs.push(input(format!("{n}/ tree"), top.to_hex()));
                inputs.append(&mut listed);
                tops.push(top);
            }
            for (path, a) in &d.files {
                inputs.push(input(format!("attributes of {path}"), overlay::describe_attrs(a)));
            }
            let files = d.files.clone();
            cur = self.tree_step(&image, "files", "root", inputs, cur, move |store, base, _| {
                let mut tree = *base;
                for top in &tops {
                    tree = overlay::overlay(store, &tree, top)?;
                }
                overlay::set_attrs(store, &tree, &files).map(Built::recorded)
            })?;
        }
        let p = &d.preferences;
        if p.timezone.is_some() || p.locale.is_some() || p.keytable.is_some() {
            let mut inputs = Vec::new();
            for (k, v) in [("timezone", &p.timezone), ("locale", &p.locale), ("keytable", &p.keytable)] {
                if let Some(v) = v {
                    inputs.push(input(k, v.clone()));
                }
            }
            let prefs = p.clone();
            cur = self.tree_step(&image, "preferences", "locale", inputs, cur, move |store, base, _| {
                overlay::preferences(store, base, &prefs).map(Built::recorded)
            })?;
        }
        // This description's version (or its bases'), not that of an image deriving from it.
        let upto = Chain { origin: None, layers: chain.layers[..=i].to_vec() };
        let version = upto.preferences().version.unwrap_or_default();
        for (what, explicit, default) in
            [("config", &d.scripts.config, "config.sh"), ("images", &d.scripts.images, "images.sh")]
        {
            let name = explicit.as_deref().unwrap_or(default);
            let path = layer.source.dir.join(name);
            if explicit.is_none() && !path.is_file() {
                continue;
            }
            let text = fs_err::read_to_string(&path).with_context(|| format!("scripts {what}"))?;
            let script = scripts::description_script(&d.name, &version, name, &text);
            let inputs = vec![input(name.to_string(), Digest::of(text.as_bytes()).to_hex())];
            cur = self.script_step(&image, "script", name, inputs, &script, cur)?;
        }
        self.image_step(&image, cur)
    }

    /// The repositories for description `i` of the chain (its own and its bases'): apt or
    /// rpm-md, never both. The command line's repositories apply to the description being
    /// built, not to its bases, which build as their own descriptions say (so that a derived
    /// build reuses them).
    fn sources(&self, chain: &Chain, i: usize) -> anyhow::Result<Sources> {
        let (mut apt, mut rpm) = (Vec::new(), Vec::new());
        let top = i + 1 == chain.layers.len();
        if self.opts.set_repos.is_empty() || !top {
            let sub = Chain { origin: None, layers: chain.layers[..=i].to_vec() };
            for r in sub.repositories() {
                match r {
                    Repository::Host => apt.extend(crate::packages::deb::repo::host_sources()?),
                    Repository::Apt(a) => apt.push(
                        crate::packages::deb::repo::parse_source_line(&a.source_line())
                            .with_context(|| format!("repository {}", a.uri))?,
                    ),
                    Repository::RpmMd(r) => {
                        rpm.push(RpmSource { uri: r.uri, keys: r.signed_by.iter().map(Into::into).collect() })
                    }
                }
            }
        }
        if top {
            for line in self.opts.set_repos.iter().chain(&self.opts.add_repos) {
                match line.strip_prefix("rpm-md ") {
                    Some(rest) => rpm.push(rpm_source_line(rest)?),
                    None => apt.push(crate::packages::deb::repo::parse_source_line(line)?),
                }
            }
        }
        let file = chain.layers[i].source.file.display();
        match (apt.is_empty(), rpm.is_empty()) {
            (true, true) => bail!(
                "{file}: no repositories to install packages from: add a <repository> ([[repository]]) or pass --add-repo"
            ),
            (false, false) => bail!("{file}: the repositories mix apt and rpm-md: an image is built from one kind"),
            (false, true) => Ok(Sources::Apt(apt)),
            (true, false) => Ok(Sources::Rpm(rpm)),
        }
    }

    fn packages(&mut self, chain: &Chain, i: usize, layer: &Loaded, cur: Cur) -> anyhow::Result<Cur> {
        let d = &layer.description;
        let image = d.name.clone();
        let wanted: Vec<String> = d.packages.bootstrap.iter().chain(&d.packages.install).cloned().collect();
        let base = match &cur {
            Cur::Empty => None,
            Cur::Known(e) if !wanted.is_empty() => Some(e.clone()),
            Cur::Known(_) => return Ok(cur),
            Cur::Unknown if wanted.is_empty() => return Ok(cur),
            Cur::Unknown => {
                let step = Step {
                    image,
                    kind: "packages".into(),
                    name: wanted.join(" "),
                    key: None,
                    tree: None,
                    state: State::Pending,
                    count: 1,
                    cached_count: 0,
                    inputs: wanted.iter().map(|p| input(format!("install {p}"), "")).collect(),
                };
                self.push(step);
                return Ok(Cur::Unknown);
            }
        };
        let _span = tracing::debug_span!("packages step", image = %image).entered();
        let sources = match self.sources(chain, i)? {
            Sources::Apt(s) => s,
            Sources::Rpm(s) => return self.rpm_packages(chain, i, layer, base, &s),
        };
        let mut request = Request {
            install: wanted.clone(),
            required: base.is_none(),
            exclude: chain.layers[..=i].iter().flat_map(|l| l.description.packages.exclude.clone()).collect(),
            locked: Default::default(),
        };
        if let Some(b) = &base {
            for (name, version) in bootstrap::installed(self.store, b)? {
                request.install.push(name.clone());
                request.locked.insert(name, version);
            }
        }
        let fetcher = packages::fetcher(self.store)?;
        let file = layer.source.file.display();
        let asked = Asked::new(sources.iter().map(ToString::to_string).collect(), &wanted, &request.exclude);
        let resolved = match &self.opts.locked {
            Some(lock) => {
                let locked =
                    lock.section(&image, Family::Apt, &self.opts.arch, &asked).with_context(|| format!("{file}"))?;
                locked
                    .apt_resolved(&fetcher, &sources, self.progress)
                    .with_context(|| format!("{file}: locked packages"))?
            }
            None => packages::resolve(&fetcher, &sources, &self.opts.arch, &request, self.progress)
                .with_context(|| format!("{file}: packages"))?,
        };
        if self.mode == Mode::Build {
            self.locks.push(LockedImage::of_apt(&image, &self.opts.arch, asked, &resolved, &fetcher)?);
        }
        let records: Vec<_> =
            resolved.chosen().map(|r| (r.clone(), crate::packages::deb::unpack::package_key(&r.want.sha256))).collect();
        let bopts = bootstrap::Options { merged_usr: true, script_limits: self.opts.script_limits.clone() };
        let keys = bootstrap::keys(self.store, base.as_ref(), &records, (&resolved.sources, &resolved.lists), &bopts)?;
        let mut inputs: Vec<Input> = sources.iter().map(|s| input("repository", s.to_string())).collect();
        for i in &keys.packages {
            let r = &records[*i].0;
            inputs.push(input(format!("package {}", r.name), r.version.to_string()));
        }
        let new_keys: Vec<Digest> = keys.packages.iter().map(|i| records[*i].1).collect();
        let steps = self.package_steps(&image, "debian", inputs, &new_keys, keys.steps())?;
        if let Some(cur) = self.known_package_steps(&steps)? {
            return Ok(cur);
        }
        let limits = crate::packages::Limits::default();
        let reports = packages::fetch_and_unpack(self.store, &fetcher, &resolved, &limits, self.progress)?;
        let pairs: Vec<_> = resolved.chosen().cloned().zip(reports).collect();
        let report = bootstrap::bootstrap_on(
            self.store,
            base.as_ref(),
            &pairs,
            (&resolved.sources, &resolved.lists),
            &bopts,
            self.progress,
        )?;
        let done = report.steps.iter().chain([&report.rootfs]).map(|s| (s.tree, s.cached));
        self.built_package_steps(steps, done)
    }

    /// A step that runs `script` in the sandbox over the current tree and applies its layer.
    fn script_step(
        &mut self,
        image: &str,
        kind: &str,
        name: &str,
        mut inputs: Vec<Input>,
        script: &str,
        cur: Cur,
    ) -> anyhow::Result<Cur> {
        inputs.push(input("script", Digest::of(script.as_bytes()).to_hex()));
        let script = script.to_string();
        let what = format!("{kind} {name}");
        let limits = self.opts.script_limits.clone();
        self.tree_step(image, kind, name, inputs, cur, move |store, base, progress| {
            let out = crate::sandbox::run(store, base, &script, &limits, progress)
                .with_context(|| format!("{what} failed"))?;
            let mut batch = Batch::new();
            let tree = crate::trees::layer::apply(store, base, &out.layer, &mut batch.trees)?;
            batch.commit(store, None)?;
            Ok(Built::recorded(tree).log(out.log))
        })
    }

    /// A step keyed by its inputs and the current tree; `build` makes the new tree (and the log
    /// of what it ran).
    fn tree_step(
        &mut self,
        image: &str,
        kind: &str,
        name: &str,
        inputs: Vec<Input>,
        cur: Cur,
        build: impl FnOnce(&mut Store, &Digest, &Progress) -> anyhow::Result<Built>,
    ) -> anyhow::Result<Cur> {
        self.bar.set_message(format!("{kind} {name}"));
        let progress = self.progress;
        let (step, cur) =
            step::tree_step(self.store, self.mode, Step::new(image, kind, name, inputs), cur, |s, base| {
                build(s, base, progress)
            })?;
        self.push(step);
        Ok(cur)
    }

    /// The description's final `rootfs` entry.
    fn image_step(&mut self, image: &str, cur: Cur) -> anyhow::Result<Cur> {
        let (step, cur) = step::image_step(self.store, self.mode, image, cur)?;
        self.push(step);
        Ok(cur)
    }
}
