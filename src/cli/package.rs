//! `strata package …`: package files as store entries.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{output, Ctx};
use crate::lock::LockMode;

#[derive(Subcommand, Debug)]
pub enum PackageCommand {
    /// Unpack Debian packages (.deb) into package entries, keyed by their SHA-256
    ///
    /// Each package is read once, straight into the store: files the store already has are not
    /// written again, and a package unpacked before is a cache hit that reads nothing but its
    /// checksum. The entry's tree holds `control/` (control archive) and `data/` (the files).
    /// Package contents are untrusted: paths that leave the package root, go through a symlink,
    /// or repeat are refused with the member's name.
    #[command(
        after_help = "Examples:\n  strata package unpack ./hello_2.10-3_amd64.deb\n  strata package unpack /var/cache/apt/archives/*.deb --json"
    )]
    Unpack {
        /// The package files
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Refuse a package whose files add up to more than this many bytes (decompression bombs)
        #[arg(long, value_name = "BYTES", default_value_t = crate::debian::unpack::Limits::default().max_bytes)]
        max_bytes: u64,
    },
}

pub fn run(ctx: &Ctx, cmd: PackageCommand) -> anyhow::Result<ExitCode> {
    let PackageCommand::Unpack { files, max_bytes } = cmd;
    let mut store = ctx.open(LockMode::Shared)?;
    let limits = crate::debian::unpack::Limits { max_bytes, ..Default::default() };
    let bar = ctx.progress.items(files.len() as u64, "unpacking");
    let mut reports = Vec::new();
    for file in &files {
        let r = crate::debian::unpack::unpack(&mut store, file, &limits)?;
        bar.inc(1);
        if !ctx.json {
            bar.suspend(|| {
                println!("{}", r.key);
                ctx.note(format!(
                    "{} {} {} ({}): tree {}, {} files ({}), {} new objects",
                    if r.cached { "cached  " } else { "unpacked" },
                    r.package,
                    r.version,
                    r.architecture,
                    r.tree.short(),
                    r.files,
                    output::bytes(r.bytes),
                    r.new_objects
                ));
            });
        }
        reports.push(r);
    }
    bar.finish_and_clear();
    if ctx.json {
        output::json(&reports)?;
    }
    Ok(ExitCode::SUCCESS)
}
