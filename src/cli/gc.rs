//! `strata gc`: delete what no root keeps alive.

use std::process::ExitCode;

use clap::Args;

use super::{output, Ctx};
use crate::store::lock::LockMode;

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Report what would be deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
}

pub fn run(ctx: &Ctx, args: GcArgs) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Exclusive)?;
    let r = crate::store::gc::gc(&mut store, args.dry_run, &ctx.progress)?;
    if ctx.json {
        output::json(&r)?;
    } else {
        ctx.note(format!(
            "{} {} entries, {} trees, {} objects, {}",
            if r.dry_run { "would delete" } else { "deleted" },
            r.entries,
            r.trees,
            r.objects,
            output::bytes(r.bytes)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
