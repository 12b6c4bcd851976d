//! `strata describe|plan|build|why` and `strata images …`: image descriptions and their builds.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::{output, Ctx};
use crate::graph::{self, generations, Mode, Outcome, State};
use crate::packages::lock::{self, Lock};
use crate::store::lock::LockMode;

/// Where a description's lock file is: beside its document.
pub(crate) fn lock_path(description: &std::path::Path) -> PathBuf {
    if description.is_file() {
        description.parent().unwrap_or(std::path::Path::new(".")).join(lock::FILE_NAME)
    } else {
        description.join(lock::FILE_NAME)
    }
}

#[derive(Args, Debug)]
pub struct DescArgs {
    /// The description: a directory holding appliance.kiwi, config.kiwi, config.xml or
    /// image.toml (or the document itself)
    pub description: PathBuf,
    /// Select a KIWI profile (repeatable); without one, profiles marked import="true" are used
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub(crate) desc: DescArgs,
    /// Use this repository instead of the ones the description names (repeatable): an apt
    /// source `deb [signed-by=KEYRING] URI SUITE COMPONENT...`, or `rpm-md signed-by=KEY URI`
    /// (`rpm-md gpgcheck=false URI`). Bases it derives from build with their own repositories,
    /// so that their steps are reused
    #[arg(long = "set-repo", value_name = "LINE")]
    set_repos: Vec<String>,
    /// Use this repository (same forms) in addition to the description's (repeatable)
    #[arg(long = "add-repo", value_name = "LINE")]
    add_repos: Vec<String>,
    /// The architecture to install
    #[arg(long, default_value = "amd64")]
    pub(crate) arch: String,
    /// Seconds any one script step may run before it is killed
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    script_timeout: u64,
    /// The most any one script step may add to the store's file system (and its largest file),
    /// e.g. 500M, 32G; past it the script is stopped
    #[arg(long, value_name = "SIZE", value_parser = crate::util::text::parse_size, default_value = "32G")]
    script_write_limit: u64,
    /// The time written into the image where a date is needed (password ages), in seconds
    /// since 1970 [default: 2024-01-01]
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<u64>,
    /// Install exactly the package sets of the description's strata.lock (see `strata lock`):
    /// from the download cache or the URLs it names, never a newer index
    #[arg(long)]
    locked: bool,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

/// How `docker://` registries are reached (bases and export destinations).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Registries")]
pub struct RegistryArgs {
    /// Reach this registry (HOST[:PORT]) over plain HTTP, without TLS (repeatable, or
    /// comma-separated in the variable)
    #[arg(long = "registry-insecure", value_name = "HOST", env = "STRATA_REGISTRY_INSECURE", value_delimiter = ',')]
    pub insecure: Vec<String>,
    /// Trust the certificate authorities in DIR/HOST[:PORT]/*.crt for the registry HOST[:PORT]
    /// (repeatable) [default: /etc/containers/certs.d and /etc/docker/certs.d]
    #[arg(long = "registry-cert-dir", value_name = "DIR", env = "STRATA_REGISTRY_CERT_DIR")]
    pub cert_dirs: Vec<PathBuf>,
    /// Registry credentials, in the containers auth file format [default: $REGISTRY_AUTH_FILE,
    /// then $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
    /// ~/.docker/config.json]
    #[arg(long = "authfile", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
}

impl RegistryArgs {
    pub(crate) fn settings(&self) -> crate::oci::registry::Settings {
        crate::oci::registry::Settings {
            insecure: self.insecure.clone(),
            cert_dirs: self.cert_dirs.clone(),
            auth_file: self.auth_file.clone(),
        }
    }
}

impl BuildArgs {
    pub(crate) fn source_date_epoch(&self) -> Option<u64> {
        self.source_date_epoch
    }

    pub(crate) fn options(&self) -> anyhow::Result<graph::Options> {
        let locked = if self.locked {
            if !self.desc.description.exists() {
                anyhow::bail!(
                    "--locked: `{}` is not a description: a lock belongs to a description directory (a store id is built already)",
                    self.desc.description.display()
                );
            }
            let path = lock_path(&self.desc.description);
            if !path.is_file() {
                anyhow::bail!(
                    "--locked: {} does not exist: write it with `strata lock {}`",
                    path.display(),
                    self.desc.description.display()
                );
            }
            Some(Lock::read(&path)?)
        } else {
            None
        };
        Ok(graph::Options {
            profiles: self.desc.profiles.clone(),
            set_repos: self.set_repos.clone(),
            add_repos: self.add_repos.clone(),
            arch: self.arch.clone(),
            script_limits: crate::sandbox::Limits {
                timeout: std::time::Duration::from_secs(self.script_timeout),
                write_bytes: self.script_write_limit,
                ..Default::default()
            },
            epoch: self.source_date_epoch.unwrap_or(graph::DEFAULT_EPOCH),
            locked,
            registry: self.registry.settings(),
        })
    }
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub(crate) build: BuildArgs,
    /// Print the steps as text, or draw them: `dot` (Graphviz's language) or `svg` (a picture)
    #[arg(long, value_enum, default_value = "text")]
    format: PlanFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Dot,
    Svg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PictureFormat {
    Dot,
    Svg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Toml,
    Xml,
}

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// List the images built in this store with their newest generation
    #[command(after_help = "Examples:\n  strata images ls\n  strata images ls --json")]
    Ls,
    /// List the generations of an image: date, tree, and the inputs that changed
    #[command(after_help = "Examples:\n  strata images history debian-web\n  strata images history debian-web --json")]
    History {
        /// The image name (the description's name)
        name: String,
    },
    /// Draw the images of this store and the steps they share (SVG, or dot for Graphviz)
    ///
    /// Each image's newest generation and every entry it reaches, base first: steps two images
    /// share are drawn as shared; the packages a step installs are counted on it.
    #[command(
        after_help = "Examples:\n  strata images graph > images.svg\n  strata images graph --format dot | dot -Tpng > images.png"
    )]
    Graph {
        /// `svg` (a picture) or `dot` (Graphviz's language)
        #[arg(long, value_enum, default_value = "svg")]
        format: PictureFormat,
    },
    /// Pin a generation: retention never removes it
    #[command(after_help = "Examples:\n  strata images pin debian-base/3\n  strata images unpin debian-base/3")]
    Pin {
        /// IMAGE/GENERATION
        generation: String,
    },
    /// Unpin a generation: retention applies to it again
    #[command(after_help = "Examples:\n  strata images unpin debian-base/3")]
    Unpin {
        /// IMAGE/GENERATION
        generation: String,
    },
    /// Remove a generation, or every generation of an image (what only they held goes at the next gc)
    ///
    /// Removes the generations' roots; pinned generations are refused. The generation's row
    /// stays, so `images history` still lists it, marked as collected once gc ran.
    #[command(after_help = "Examples:\n  strata images rm debian-base/3\n  strata images rm debian-web && strata gc")]
    Rm {
        /// IMAGE or IMAGE/GENERATION
        spec: String,
    },
    /// Show or set the retention policy gc applies: per image, or the default for every image
    ///
    /// A generation is kept when any rule keeps it: one of the newest N, younger than DURATION,
    /// pinned, or the image's newest. Which policy applies, strongest first: `strata gc
    /// --keep-last/--keep-younger-than` for one run; the image's own, set here; the one its
    /// description sets (`[retention]` in TOML, `<retention>` in KIWI XML), recorded by each
    /// build; the default set here. An image with none keeps every generation.
    #[command(
        after_help = "Examples:\n  strata images keep --keep-last 5\n  strata images keep debian-web --keep-last 3 --keep-younger-than 30d\n  strata images keep debian-web --clear\n  strata images keep --json"
    )]
    Keep(super::lifecycle::KeepArgs),
}

pub fn describe(ctx: &Ctx, args: DescArgs, format: Format) -> anyhow::Result<ExitCode> {
    let loaded = crate::description::load(&args.description, &args.profiles)?;
    let text = match format {
        Format::Toml => crate::description::toml_form::write(&loaded.description),
        Format::Xml => crate::description::kiwi::write(&loaded.description)
            .map_err(|e| anyhow::anyhow!("{}: {e}", loaded.source.file.display()))?,
    };
    if ctx.json {
        output::json(&serde_json::json!({"format": format!("{format:?}").to_lowercase(), "document": text}))?;
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

fn step_line(s: &graph::Step) -> String {
    let key = s.key.map(|k| k.short()).unwrap_or_else(|| "-".repeat(12));
    let state = match s.state {
        State::Missing => "to build",
        State::Pending => "pending",
        other => other.as_str(),
    };
    let count = if s.count > 1 { format!(" ({}/{} cached)", s.cached_count, s.count) } else { String::new() };
    format!("{:<9} {key} {:<12} {:<14} {}{count}", state, s.image, s.kind, s.name)
}

fn steps_json(o: &Outcome) -> serde_json::Value {
    serde_json::json!(o
        .steps
        .iter()
        .map(|s| serde_json::json!({
            "image": s.image, "kind": s.kind, "name": s.name, "key": s.key, "tree": s.tree,
            "state": s.state, "count": s.count, "cached": s.cached_count,
            "inputs": s.inputs.iter().map(|i| serde_json::json!({"name": i.name, "value": i.value})).collect::<Vec<_>>(),
        }))
        .collect::<Vec<_>>())
}

pub fn plan(ctx: &Ctx, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let PlanArgs { build: args, format } = args;
    let mut store = ctx.open(LockMode::Shared)?;
    let o = graph::run(&mut store, &args.desc.description, &args.options()?, Mode::Plan, &ctx.progress)?;
    let (total, cached, _) = o.counts();
    if format != PlanFormat::Text {
        let dot = graph::picture::plan(&o);
        let text = if format == PlanFormat::Svg { graph::picture::svg(&dot)? } else { dot };
        if ctx.json {
            output::json(
                &serde_json::json!({"image": o.image, "format": format!("{format:?}").to_lowercase(), "document": text}),
            )?;
        } else {
            print!("{text}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if ctx.json {
        output::json(&serde_json::json!({
            "image": o.image, "steps": steps_json(&o),
            "counts": {"total": total, "cached": cached},
            "rootfs": o.rootfs.as_ref().map(|e| serde_json::json!({"key": e.key, "tree": e.tree})),
        }))?;
    } else {
        for s in &o.steps {
            println!("{}", step_line(s));
        }
        ctx.note(format!("{total} steps, {cached} cached"));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn build(ctx: &Ctx, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Shared)?;
    let o = graph::run(&mut store, &args.desc.description, &args.options()?, Mode::Build, &ctx.progress)?;
    let (generation, new) = generations::record(&mut store, &o)?;
    let rootfs = o.rootfs.as_ref().expect("a build ends with its rootfs entry");
    let (total, cached, built) = o.counts();
    if ctx.json {
        output::json(&serde_json::json!({
            "image": o.image,
            "generation": generation,
            "new_generation": new,
            "rootfs": {"key": rootfs.key, "tree": rootfs.tree},
            "steps": {"total": total, "cached": cached, "built": built},
        }))?;
    } else {
        for s in o.steps.iter().filter(|s| s.state == State::Built) {
            ctx.note(step_line(s));
        }
        println!("{}", rootfs.key);
        ctx.note(format!(
            "{}: generation {generation}{} ({}), tree {}; {total} steps: {cached} cached, {built} built",
            o.image,
            if new { "" } else { " (unchanged)" },
            generations::root_name(&o.image, generation),
            rootfs.tree.short()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    pub(crate) build: BuildArgs,
    /// Resolve against the repositories now and rewrite an existing lock, printing what changed
    #[arg(long)]
    update: bool,
}

pub fn lock(ctx: &Ctx, args: LockArgs) -> anyhow::Result<ExitCode> {
    let LockArgs { build: args, update } = args;
    if args.locked {
        anyhow::bail!("strata lock resolves the package sets afresh: --locked is for build, plan, export and deploy");
    }
    let desc = &args.desc.description;
    let path = lock_path(desc);
    let old = if path.is_file() {
        if !update {
            anyhow::bail!(
                "{} exists: `strata build --locked {}` installs it; `strata lock --update` resolves it again against the repositories now",
                path.display(),
                desc.display()
            );
        }
        // A lock that no longer reads is replaced; what changed is then everything.
        Lock::read(&path).ok()
    } else {
        None
    };
    let mut store = ctx.open(LockMode::Shared)?;
    // A derived image's set depends on what its base installed: the chain is built (every
    // step cached), as `build` would.
    let o = graph::run(&mut store, desc, &args.options()?, Mode::Build, &ctx.progress)?;
    generations::record(&mut store, &o)?;
    if o.locks.is_empty() && o.bases.is_empty() {
        anyhow::bail!(
            "{}: neither it nor its bases install packages or start from a root or commit: nothing to lock",
            desc.display()
        );
    }
    let lock = Lock { version: lock::VERSION, bases: o.bases, images: o.locks };
    let changes = old.as_ref().map(|old| lock.changes_since(old)).unwrap_or_default();
    lock.write(&path)?;
    if ctx.json {
        output::json(&serde_json::json!({
            "lock": path,
            "bases": lock.bases,
            "images": lock.images.iter().map(|i| serde_json::json!({"name": i.name, "packages": i.packages.len(), "lists": i.lists.len()})).collect::<Vec<_>>(),
            "changes": changes,
        }))?;
    } else {
        println!("{}", path.display());
        for b in &lock.bases {
            ctx.note(format!("base {}: tree {}", b.name, &b.tree[..12]));
        }
        for i in &lock.images {
            ctx.note(format!("{}: {} packages, {} index files", i.name, i.packages.len(), i.lists.len()));
        }
        match (&old, changes.is_empty()) {
            (Some(_), true) => ctx.note("no change"),
            _ => {
                for c in &changes {
                    ctx.note(c);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn why(ctx: &Ctx, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Shared)?;
    let o = graph::run(&mut store, &args.desc.description, &args.options()?, Mode::Plan, &ctx.progress)?;
    let why = generations::why(&store, &o)?;
    if ctx.json {
        output::json(&why)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(generation) = why.generation else {
        println!("{}: never built in this store: every step that is not cached runs", why.image);
        for s in &o.steps {
            println!("{}", step_line(s));
        }
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{}: compared with generation {generation} (tree {})",
        why.image,
        why.tree.map(|t| t.short()).unwrap_or_default()
    );
    let mut any = false;
    for s in &why.steps {
        let state = match s.state {
            State::Cached => "cached",
            State::Missing => "rebuilds",
            State::Pending => "pending",
            State::Built => "built",
        };
        if s.new {
            println!("{state:<9} {} {} {}: a new step", s.image, s.kind, s.name);
            any = true;
            continue;
        }
        if s.changes.is_empty() {
            match s.state {
                State::Cached | State::Built => {}
                State::Missing => {
                    println!(
                        "{state:<9} {} {} {}: its input tree changed (an earlier step's output)",
                        s.image, s.kind, s.name
                    );
                    any = true;
                }
                State::Pending => {
                    println!(
                        "{state:<9} {} {} {}: follows a step that rebuilds (a hit if that step's output is unchanged)",
                        s.image, s.kind, s.name
                    );
                    any = true;
                }
            }
            continue;
        }
        any = true;
        println!("{state:<9} {} {} {}:", s.image, s.kind, s.name);
        for c in &s.changes {
            match (c.before.as_deref().map(short), c.now.as_deref().map(short)) {
                (Some(b), Some(n)) => println!("            {} changed: {b} -> {n}", c.name),
                (None, Some(n)) => println!("            {} added: {n}", c.name),
                (Some(b), None) => println!("            {} removed (was {b})", c.name),
                (None, None) => {}
            }
        }
    }
    for d in &why.dropped {
        println!("dropped   {d}");
        any = true;
    }
    if !any {
        println!("nothing changed: every step is cached");
    }
    Ok(ExitCode::SUCCESS)
}

/// Digests are shown by their first 12 characters in text output (JSON keeps them whole).
fn short(value: &str) -> &str {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        &value[..12]
    } else {
        value
    }
}

pub fn images(ctx: &Ctx, cmd: ImagesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImagesCommand::Pin { generation } => return super::lifecycle::pin(ctx, &generation, true),
        ImagesCommand::Unpin { generation } => return super::lifecycle::pin(ctx, &generation, false),
        ImagesCommand::Rm { spec } => return super::lifecycle::rm(ctx, &spec),
        ImagesCommand::Keep(args) => return super::lifecycle::keep(ctx, args),
        _ => {}
    }
    let store = ctx.open(LockMode::Shared)?;
    match cmd {
        ImagesCommand::Pin { .. } | ImagesCommand::Unpin { .. } | ImagesCommand::Rm { .. } | ImagesCommand::Keep(_) => {
            unreachable!("handled above")
        }
        ImagesCommand::Graph { format } => {
            let dot = graph::picture::images(&store)?;
            let text = if format == PictureFormat::Svg { graph::picture::svg(&dot)? } else { dot };
            if ctx.json {
                output::json(&serde_json::json!({"format": format!("{format:?}").to_lowercase(), "document": text}))?;
            } else {
                print!("{text}");
            }
        }
        ImagesCommand::Ls => {
            // The newest alive generation of each image (removed ones are in `images history`).
            let gens = crate::graph::retention::alive_generations(&store)?;
            let mut newest: std::collections::BTreeMap<&str, &generations::GenerationRow> = Default::default();
            for g in &gens {
                newest.insert(&g.image, g);
            }
            if ctx.json {
                let v: Vec<_> = newest
                    .values()
                    .map(|g| serde_json::json!({"image": g.image, "generation": g.number, "entry": g.entry, "tree": g.tree, "created": g.created, "description": g.description}))
                    .collect();
                output::json(&v)?;
            } else if newest.is_empty() {
                ctx.note("no images built yet (see `strata build --help`)");
            } else {
                for g in newest.values() {
                    println!(
                        "{:<24} {:>4}  {}  {}  {}",
                        g.image,
                        g.number,
                        output::date(g.created),
                        g.tree.short(),
                        g.description
                    );
                }
            }
        }
        ImagesCommand::History { name } => {
            let items = generations::history(&store, &name)?;
            if ctx.json {
                output::json(&items)?;
            } else {
                for h in &items {
                    println!(
                        "{:>4}  {}  tree {}{}",
                        h.generation,
                        output::date(h.created),
                        h.tree.short(),
                        if h.collected { "  (collected)" } else { "" }
                    );
                    for c in h.changes.iter().take(20) {
                        match (c.before.as_deref().map(short), c.now.as_deref().map(short)) {
                            (Some(b), Some(n)) => println!("        {}: {b} -> {n}", c.name),
                            (None, Some(n)) => println!("        + {}: {n}", c.name),
                            (Some(b), None) => println!("        - {}: {b}", c.name),
                            (None, None) => {}
                        }
                    }
                    if h.changes.len() > 20 {
                        println!("        … and {} more changes", h.changes.len() - 20);
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
