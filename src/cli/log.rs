//! `strata log`: what the steps of an image printed (scripts, dracut, disk and ISO assembly),
//! kept with their entries, and the kept logs of failed scripts.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::{output, Ctx};
use crate::store::local::{Store, Target};
use crate::store::lock::LockMode;
use crate::store::logs::{self, StepLog};

#[derive(Args, Debug)]
pub struct LogArgs {
    /// The image: `images/NAME` (or just NAME), a root, or an entry key prefix (an artifact's
    /// or a step's)
    #[arg(required_unless_present = "failed")]
    image: Option<String>,
    /// Only this step: its name (`config.sh`), its kind (`script`), its entry name or a key
    /// prefix
    step: Option<String>,
    /// List the steps that kept a log, without printing the logs
    #[arg(long)]
    list: bool,
    /// Print the kept log of a failed script (the error names its id); without an id, list them
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["image", "step"])]
    failed: Option<String>,
}

pub fn run(ctx: &Ctx, args: LogArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.open(LockMode::Shared)?;
    if let Some(id) = &args.failed {
        return failed(ctx, &store, id);
    }
    let spec = args.image.as_deref().expect("clap requires an image without --failed");
    let entry = match store.resolve(spec) {
        Ok(Target::Entry(e)) => e,
        Ok(Target::Tree(t)) => {
            bail!("{} is a tree, not an entry: give an image (images/NAME) or a step's key", t.short())
        }
        Err(e) if !spec.contains('/') => match store.resolve(&format!("images/{spec}")) {
            Ok(Target::Entry(e)) => e,
            _ => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let mut steps = logs::reachable(&store, &entry.key)?;
    if let Some(what) = &args.step {
        let all: Vec<String> = steps.iter().map(|s| s.entry.name.clone()).collect();
        steps.retain(|s| s.is_named(what));
        if steps.is_empty() {
            if all.is_empty() {
                bail!("{spec}: no step of it kept a log (no step ran a script since logs are kept)");
            }
            bail!("{spec}: no step `{what}` kept a log; the steps with logs: {}", all.join(", "));
        }
    }
    if ctx.json {
        let list: Vec<serde_json::Value> = steps.iter().map(|s| step_json(s, !args.list)).collect();
        output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if steps.is_empty() {
        ctx.note(format!("{spec}: no step of it kept a log (no step ran a script since logs are kept)"));
    }
    for s in &steps {
        let header = format!("{} ({}, {})", s.entry.name, s.entry.key.short(), output::bytes(s.log.len() as u64));
        if args.list {
            println!("{header}");
        } else {
            println!("==> {header} <==");
            print!("{}", s.log);
            if !s.log.is_empty() && !s.log.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn step_json(s: &StepLog, with_log: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "key": s.entry.key, "kind": s.entry.kind, "name": s.entry.name, "bytes": s.log.len(),
    });
    if with_log {
        v["log"] = s.log.clone().into();
    }
    v
}

fn failed(ctx: &Ctx, store: &Store, id: &str) -> anyhow::Result<ExitCode> {
    let logs = crate::sandbox::failed_logs(store.root())?;
    if id.is_empty() {
        if ctx.json {
            output::json(&logs)?;
        } else if logs.is_empty() {
            ctx.note("no failed script's log is kept");
        } else {
            for l in &logs {
                println!("{}  {}  {}", l.id, output::bytes(l.bytes), l.path.display());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(found) = logs.iter().find(|l| l.id == id) else {
        bail!(
            "no kept log of a failed script with id `{id}` (`strata log --failed` lists them; the newest 20 are kept)"
        );
    };
    let text = String::from_utf8_lossy(&fs_err::read(&found.path)?).into_owned();
    if ctx.json {
        output::json(&serde_json::json!({"id": found.id, "path": found.path, "log": text}))?;
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}
