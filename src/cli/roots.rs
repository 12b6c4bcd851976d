//! `strata roots …`: the names that keep entries alive.

use std::process::ExitCode;

use clap::Subcommand;

use super::{output, Ctx};
use crate::store::check_root_name;
use crate::store::local::Target;
use crate::store::lock::LockMode;
use crate::store::Backend;

#[derive(Subcommand, Debug)]
pub enum RootsCommand {
    /// List roots and the entries they name
    #[command(after_help = "Examples:\n  strata roots ls\n  strata roots ls --json")]
    Ls,
    /// Create a root, or move an existing one, to an entry
    #[command(after_help = "Examples:\n  strata roots add tags/base 3fa9c2\n  strata roots add tags/prod tags/base")]
    Add {
        /// Root name, e.g. `tags/base` (letters, digits, `._-+@`, `/` between parts)
        name: String,
        /// Entry key (unique prefix) or another root's name
        id: String,
    },
    /// Remove a root (the entry stays until gc)
    #[command(after_help = "Examples:\n  strata roots rm tags/old")]
    Rm {
        /// Root name
        name: String,
    },
}

pub fn run(ctx: &Ctx, cmd: RootsCommand) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Shared)?;
    match cmd {
        RootsCommand::Ls => {
            let roots = store.roots()?;
            if ctx.json {
                output::json(&roots)?;
            } else {
                if roots.is_empty() {
                    ctx.note("no roots (create one with `strata roots add NAME ID`)");
                }
                for r in roots {
                    let name = store.db().peek_entry(&r.entry)?.map(|e| e.name).unwrap_or_default();
                    println!("{:<32} {}  {:<24} {}", r.name, r.entry.short(), name, output::date(r.updated));
                }
            }
        }
        RootsCommand::Add { name, id } => {
            check_root_name(&name)?;
            let entry = match store.resolve(&id)? {
                Target::Entry(e) => e,
                Target::Tree(t) => anyhow::bail!("{} is a tree, not an entry: roots name entries", t.short()),
            };
            store.set_root(&name, &entry.key)?;
            if ctx.json {
                output::json(&serde_json::json!({"name": name, "entry": entry.key}))?;
            } else {
                ctx.note(format!("root `{name}` -> {} ({})", entry.key.short(), entry.name));
            }
        }
        RootsCommand::Rm { name } => {
            let removed = store.remove_root(&name)?;
            if !removed {
                anyhow::bail!("no root named `{name}` (see `strata roots ls`)");
            }
            if ctx.json {
                output::json(&serde_json::json!({"removed": name}))?;
            } else {
                ctx.note(format!("removed root `{name}`"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
