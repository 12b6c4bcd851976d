//! `strata describe|plan|build|why` and `strata images …`: image descriptions and their builds.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::{output, Ctx};
use crate::graph::{self, generations, Mode, Outcome, State};
use crate::store::lock::LockMode;

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
    /// The time written into the image where a date is needed (password ages), in seconds
    /// since 1970 [default: 2024-01-01]
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<u64>,
}

impl BuildArgs {
    pub(crate) fn source_date_epoch(&self) -> Option<u64> {
        self.source_date_epoch
    }

    pub(crate) fn options(&self) -> graph::Options {
        graph::Options {
            profiles: self.desc.profiles.clone(),
            set_repos: self.set_repos.clone(),
            add_repos: self.add_repos.clone(),
            arch: self.arch.clone(),
            script_timeout: std::time::Duration::from_secs(self.script_timeout),
            epoch: self.source_date_epoch.unwrap_or(graph::DEFAULT_EPOCH),
        }
    }
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

pub fn plan(ctx: &Ctx, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Shared)?;
    let o = graph::run(&mut store, &args.desc.description, &args.options(), Mode::Plan, &ctx.progress)?;
    let (total, cached, _) = o.counts();
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
    let o = graph::run(&mut store, &args.desc.description, &args.options(), Mode::Build, &ctx.progress)?;
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

pub fn why(ctx: &Ctx, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Shared)?;
    let o = graph::run(&mut store, &args.desc.description, &args.options(), Mode::Plan, &ctx.progress)?;
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
    let store = ctx.open(LockMode::Shared)?;
    match cmd {
        ImagesCommand::Ls => {
            let gens = generations::generations(&store, None)?;
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
