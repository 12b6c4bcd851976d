//! The pipeline as commands use it: description -> image -> commit -> artifact.
//!
//! A command names where it starts (a description directory, a store id, for `deploy` also an
//! OSTree commit) and how far it goes; this module runs the stages in order and returns what
//! each produced, for the CLI to print. Messages meant for the user while the work goes on (the
//! generation recorded, files the OSTree layout left out) go to the caller's `note`.
//!
//! A description is read once per command ([`Input::open`]): its targets are checked before
//! anything is built, and the same loaded chain is what gets built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::deploy::options::Request;
use crate::deploy::{Artifact, DeployOptions, Format};
use crate::description::{Chain, TargetKind};
use crate::graph::{self, generations, Mode};
use crate::ostree::export::{self, CommitMeta, ExportReport, RepoMode};
use crate::ostree::layout::{self, Layout, SpecialFiles};
use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::local::{Store, Target};
use crate::util::progress::Progress;

/// Where an export or deploy starts.
pub enum Input {
    /// A description directory, read.
    Description(Chain),
    /// A store id: `images/NAME`, a root name or a key prefix.
    Store(String),
}

impl Input {
    /// A description when `spec` is a path that exists, else a store id.
    pub fn open(spec: &Path, profiles: &[String]) -> anyhow::Result<Input> {
        if spec.exists() {
            Ok(Input::Description(crate::description::load_chain(spec, profiles)?))
        } else {
            Ok(Input::Store(spec.to_string_lossy().into_owned()))
        }
    }

    /// The description's name and targets (`[target.disk]`, `<type image="oem">`, …, its
    /// nearest base's when it declares none), for a description.
    pub fn targets(&self) -> Option<(&str, &Targets)> {
        match self {
            Input::Description(chain) => Some((chain.image().description.name.as_str(), chain.targets())),
            Input::Store(_) => None,
        }
    }
}

/// A description's targets with their attributes.
pub type Targets = BTreeMap<TargetKind, BTreeMap<String, String>>;

/// The image an export or deploy starts from.
pub struct Source {
    pub entry: EntryRow,
    pub image: String,
    pub version: Option<String>,
    pub targets: Targets,
    /// The container configuration of the description's chain (none for a store id).
    pub container: Option<crate::description::Container>,
}

/// Build the description, every cached step reused, and record its generation; or resolve the
/// store id. `version` overrides the description's.
pub fn source(
    store: &mut Store,
    input: &Input,
    opts: &graph::Options,
    version: Option<String>,
    progress: &Progress,
    note: &dyn Fn(String),
) -> anyhow::Result<Source> {
    match input {
        Input::Description(chain) => {
            let o = graph::run_chain(store, chain, opts, Mode::Build, progress)?;
            let (generation, new) = generations::record(store, &o)?;
            note(format!("{}: generation {generation}{}", o.image, if new { "" } else { " (unchanged)" }));
            let d = &chain.image().description;
            Ok(Source {
                entry: o.rootfs.expect("a build ends with its rootfs entry"),
                image: o.image,
                version: version.or(d.preferences.version.clone()),
                targets: chain.targets().clone(),
                container: chain.container(),
            })
        }
        Input::Store(spec) => match store.resolve(spec)? {
            Target::Entry(e) => {
                let image = e.name.split('/').next().unwrap_or(&e.name).to_string();
                Ok(Source { entry: e, image, version, targets: BTreeMap::new(), container: None })
            }
            Target::Tree(t) => {
                bail!("{} is a tree, not an entry: give an image (images/NAME) or a description", t.short())
            }
        },
    }
}

/// Where and how to commit an image.
pub struct CommitTo<'a> {
    pub repo: &'a Path,
    /// The mode of a new repository; an existing one must match.
    pub mode: Option<RepoMode>,
    pub reference: &'a str,
    pub special: SpecialFiles,
    /// Run the OSTree layout step (not for trees committed as they are).
    pub layout: bool,
    /// `SOURCE_DATE_EPOCH` of the commit.
    pub source_date: u64,
}

/// What [`commit`] did.
pub struct Committed {
    pub export: ExportReport,
    /// The layout step, when it ran (or was found).
    pub layout: Option<Layout>,
    /// The committed tree: the commit's content in the store.
    pub tree: Digest,
}

/// Lay the source out for OSTree (a cached step) and commit it.
pub fn commit(
    store: &mut Store,
    src: &Source,
    to: &CommitTo<'_>,
    progress: &Progress,
    note: &dyn Fn(String),
) -> anyhow::Result<Committed> {
    let layout = if to.layout {
        let l = layout::step(store, &src.entry, to.special)?;
        for left in &l.report.left_out {
            note(format!("left out {}: {}", left.path, left.reason));
        }
        if let Some(n) = &l.report.initramfs_note {
            note(format!("warning: {n}"));
        }
        Some(l)
    } else {
        None
    };
    let tree = layout.as_ref().map_or(src.entry.tree, |l| l.entry.tree);
    let meta = CommitMeta {
        subject: match &src.version {
            Some(v) => format!("{} {v}", src.image),
            None => src.image.clone(),
        },
        source_date: to.source_date,
        version: src.version.clone(),
        image: Some(src.image.clone()),
        entry: src.entry.key,
        kernel: layout.as_ref().map(|l| l.report.kernel.clone()),
    };
    let export = export::export(store, &tree, to.repo, to.mode, to.reference, &meta, progress)?;
    crate::lifecycle::register_repo(store, to.repo)?;
    Ok(Committed { export, layout, tree })
}

/// The OSTree ref an image is committed to by default: `IMAGE/ARCH` (`debian-base/x86_64`).
pub fn default_ref(image: &str, arch: &str) -> String {
    format!("{image}/{}", crate::packages::uname_arch(arch))
}

/// Where a deploy starts: an image (see [`Input`]) or an OSTree commit `ostree:REPO#REF`.
pub enum DeployFrom {
    Image(Input),
    Ostree { repo: PathBuf, reference: String },
}

impl DeployFrom {
    pub fn open(spec: &Path, profiles: &[String]) -> anyhow::Result<DeployFrom> {
        let text = spec.to_string_lossy();
        match text.strip_prefix("ostree:") {
            Some(rest) => {
                let (repo, reference) =
                    rest.split_once('#').with_context(|| format!("`{text}`: expected ostree:REPO#REF"))?;
                Ok(DeployFrom::Ostree { repo: repo.into(), reference: reference.into() })
            }
            None => Ok(DeployFrom::Image(Input::open(spec, profiles)?)),
        }
    }
}

/// What [`deploy`] made.
pub struct Deployed {
    pub artifact: Artifact,
    pub options: DeployOptions,
    pub commit: String,
    pub reference: String,
}

/// Make a disk image or live ISO: an image is built, laid out and committed to the store's own
/// bare repository first (all cached); an OSTree commit is deployed as it is. The options are
/// resolved, and checked, before anything is built.
pub fn deploy(
    store: &mut Store,
    from: &DeployFrom,
    request: &Request,
    build: &graph::Options,
    source_date: u64,
    progress: &Progress,
    note: &dyn Fn(String),
) -> anyhow::Result<Deployed> {
    let (repo, reference, checksum, tree, options, refs) = match from {
        DeployFrom::Ostree { repo, reference } => {
            let r = export::open_repo(repo, None)?;
            let checksum = r
                .resolve_rev(reference, true)?
                .with_context(|| format!("`{}` has no ref `{reference}`", repo.display()))?
                .to_string();
            let os = reference.split('/').next().unwrap_or("os").to_string();
            let options = crate::deploy::options::resolve(request, &BTreeMap::new(), os)?;
            // An ISO is made from the commit's content in the store.
            let (tree, refs) = if options.format == Format::Iso {
                let e = graph::overlay::ostree_commit_entry(store, repo, &checksum, progress)?;
                (Some(e.tree), vec![e.key])
            } else {
                (None, vec![])
            };
            (repo.clone(), reference.clone(), checksum, tree, options, refs)
        }
        DeployFrom::Image(input) => {
            // A description's options are checked before it is built.
            let early = match input.targets() {
                Some((name, targets)) => Some(crate::deploy::options::resolve(request, targets, name.to_string())?),
                None => None,
            };
            let src = source(store, input, build, None, progress, note)?;
            let repo = store.root().join("ostree-repo");
            let reference = default_ref(&src.image, &build.arch);
            let to = CommitTo {
                repo: &repo,
                mode: Some(RepoMode::Bare),
                reference: &reference,
                special: SpecialFiles::Skip,
                layout: true,
                source_date,
            };
            let c = commit(store, &src, &to, progress, note)?;
            let options = match early {
                Some(options) => options,
                None => crate::deploy::options::resolve(request, &src.targets, src.image.clone())?,
            };
            (repo, reference, c.export.commit, Some(c.tree), options, vec![src.entry.key])
        }
    };
    let commit = crate::deploy::Commit { repo: &repo, reference: &reference, checksum: &checksum, tree, source_date };
    let artifact = crate::deploy::deploy(store, &commit, &options, &refs, progress)?;
    Ok(Deployed { artifact, options, commit: checksum, reference })
}
