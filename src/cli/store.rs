//! `strata store …`: add, checkout, ls, show, diff, verify.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::{output, Ctx};
use crate::store::checkout::LinkMode;
use crate::store::local::Target;
use crate::store::lock::LockMode;
use crate::store::Backend;

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Import a directory as an entry
    ///
    /// Every regular file becomes an object keyed by its content and metadata (owner, mode,
    /// xattrs); files the store already has are not written again. Symlinks, device nodes,
    /// fifos, setuid bits, hardlinks and xattrs are kept exactly; sockets are refused.
    #[command(
        after_help = "Examples:\n  strata store add ./rootfs --name base\n  strata store add ./rootfs --root tags/base --json"
    )]
    Add(AddArgs),
    /// Materialize an entry or tree as a directory
    ///
    /// DEST must not exist or be empty. A hardlinked checkout shares its files with the store:
    /// never write to it (use reflink or copy for a tree you will modify).
    #[command(
        after_help = "Examples:\n  strata store checkout tags/base /srv/base\n  strata store checkout 3fa9c2 /tmp/t --link copy"
    )]
    Checkout(CheckoutArgs),
    /// List entries
    #[command(after_help = "Examples:\n  strata store ls\n  strata store ls --json | jq '.[].name'")]
    Ls,
    /// Show one entry or tree
    #[command(after_help = "Examples:\n  strata store show tags/base\n  strata store show 3fa9 --json")]
    Show(IdArg),
    /// List the paths that differ between two entries or trees
    ///
    /// Each change says what differs: content, mode, owner, xattrs, target (symlinks), device,
    /// or type.
    #[command(after_help = "Examples:\n  strata store diff tags/base tags/next\n  strata store diff 3fa9 77c0 --json")]
    Diff(DiffArgs),
    /// Check the store's integrity; exits non-zero on any problem
    ///
    /// Fast mode checks that every tree decodes and every object file exists with its size;
    /// --full also re-hashes every object and checks its owner, mode and xattrs.
    #[command(
        after_help = "Examples:\n  strata store verify\n  strata store verify --full --json\n  strata store verify --full --repair"
    )]
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The directory to import
    path: PathBuf,
    /// A label for the entry [default: the directory's name]
    #[arg(long)]
    name: Option<String>,
    /// Also create or move this root to the new entry (keeps it from gc)
    #[arg(long)]
    root: Option<String>,
}

#[derive(Args, Debug)]
pub struct CheckoutArgs {
    /// Entry key, tree id (unique prefix) or root name
    id: String,
    /// Where to create the tree
    dest: PathBuf,
    /// How to materialize files
    #[arg(long, value_enum, default_value_t = LinkArg::Auto)]
    link: LinkArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LinkArg {
    /// reflink if the file system can, else hardlink, else copy
    Auto,
    /// copy-on-write clones (btrfs, xfs with reflink=1)
    Reflink,
    /// hard links to the store's objects (read-only use)
    Hardlink,
    /// full copies
    Copy,
}

impl From<LinkArg> for LinkMode {
    fn from(a: LinkArg) -> LinkMode {
        match a {
            LinkArg::Auto => LinkMode::Auto,
            LinkArg::Reflink => LinkMode::Reflink,
            LinkArg::Hardlink => LinkMode::Hardlink,
            LinkArg::Copy => LinkMode::Copy,
        }
    }
}

#[derive(Args, Debug)]
pub struct IdArg {
    /// Entry key, tree id (unique prefix) or root name
    id: String,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The older entry, tree or root
    a: String,
    /// The newer entry, tree or root
    b: String,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Re-hash every object and check its metadata (reads the whole store)
    #[arg(long)]
    full: bool,
    /// Restore what is damaged from another copy (an object with the same content, a kept
    /// checkout, an OSTree repository strata wrote), and drop what cannot be restored: the
    /// entries that use it, named with their images (the next build makes them again)
    #[arg(long)]
    repair: bool,
}

pub fn run(ctx: &Ctx, cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Add(a) => add(ctx, a),
        StoreCommand::Checkout(a) => checkout(ctx, a),
        StoreCommand::Ls => ls(ctx),
        StoreCommand::Show(a) => show(ctx, a),
        StoreCommand::Diff(a) => diff(ctx, a),
        StoreCommand::Verify(a) => verify(ctx, a),
    }
}

fn add(ctx: &Ctx, a: AddArgs) -> anyhow::Result<ExitCode> {
    let name = match &a.name {
        Some(n) => n.clone(),
        None => std::path::absolute(&a.path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "root".into()),
    };
    let mut store = ctx.open(LockMode::Shared)?;
    let r = crate::store::import::import_dir(&mut store, &a.path, &name, a.root.as_deref(), &ctx.progress)?;
    if ctx.json {
        output::json(&serde_json::json!({
            "key": r.key, "tree": r.tree, "files": r.files, "bytes": r.bytes, "new_objects": r.new_objects,
        }))?;
    } else {
        println!("{}", r.key);
        ctx.note(format!(
            "{} entry `{name}`: tree {}, {} files ({}), {} new objects ({})",
            if r.new_entry { "added" } else { "already had" },
            r.tree.short(),
            r.files,
            output::bytes(r.bytes),
            r.new_objects,
            output::bytes(r.new_bytes)
        ));
        match &a.root {
            Some(root) => ctx.note(format!("root `{root}` -> {}", r.key.short())),
            None if store.roots_of(&r.key)?.is_empty() => {
                ctx.note("note: no root names this entry, so the next `strata gc` deletes it (use --root NAME)")
            }
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn checkout(ctx: &Ctx, a: CheckoutArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.open(LockMode::Shared)?;
    let target = store.resolve(&a.id)?;
    let r = crate::store::checkout::checkout(&store, &target.tree(), &a.dest, a.link.into(), &ctx.progress)?;
    if ctx.json {
        output::json(&r)?;
    } else {
        ctx.note(format!(
            "checked out {} at `{}` by {}: {} files, {} directories, {} symlinks, {} special{}",
            r.tree.short(),
            r.dest.display(),
            r.method.as_str(),
            r.files,
            r.dirs,
            r.symlinks,
            r.special,
            if r.copied_at_link_limit > 0 {
                format!(" ({} copied: hard-link limit reached)", r.copied_at_link_limit)
            } else {
                String::new()
            }
        ));
        if r.method == LinkMode::Hardlink {
            ctx.note("note: files are hard links into the store: do not modify them");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ls(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = ctx.open(LockMode::Shared)?;
    let mut rows = Vec::new();
    for e in store.entries()? {
        let roots = store.roots_of(&e.key)?;
        rows.push((e, roots));
    }
    if ctx.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(e, roots)| {
                serde_json::json!({
                    "key": e.key, "kind": e.kind, "name": e.name, "tree": e.tree, "files": e.files,
                    "bytes": e.bytes, "created": e.created, "roots": roots,
                })
            })
            .collect();
        output::json(&v)?;
    } else {
        if rows.is_empty() {
            ctx.note("the store has no entries (add one with `strata store add DIR`)");
        }
        for (e, roots) in rows {
            println!(
                "{}  {:<8} {:<24} {:>8} files {:>10}  {}  {}",
                e.key.short(),
                e.kind,
                e.name,
                e.files,
                output::bytes(e.bytes),
                output::date(e.created),
                roots.join(",")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, a: IdArg) -> anyhow::Result<ExitCode> {
    let store = ctx.open(LockMode::Shared)?;
    match store.resolve(&a.id)? {
        Target::Entry(e) => {
            let refs = store.entry_refs(&e.key)?;
            let roots = store.roots_of(&e.key)?;
            if ctx.json {
                output::json(&serde_json::json!({
                    "type": "entry", "key": e.key, "kind": e.kind, "name": e.name, "tree": e.tree,
                    "files": e.files, "bytes": e.bytes, "created": e.created, "refs": refs, "roots": roots,
                }))?;
            } else {
                println!("entry    {}", e.key);
                println!("kind     {}", e.kind);
                println!("name     {}", e.name);
                println!("tree     {}", e.tree);
                println!("files    {} ({})", e.files, output::bytes(e.bytes));
                println!("created  {}", output::date(e.created));
                println!(
                    "roots    {}",
                    if roots.is_empty() { "(none: gc deletes it)".into() } else { roots.join(", ") }
                );
                for r in refs {
                    println!("uses     {r}");
                }
            }
        }
        Target::Tree(t) => {
            let tree = store.tree(&t)?;
            if ctx.json {
                output::json(&serde_json::json!({
                    "type": "tree", "tree": t, "entries": tree.entries.len(),
                    "mode": format!("{:o}", tree.meta.mode), "uid": tree.meta.uid, "gid": tree.meta.gid,
                }))?;
            } else {
                println!("tree     {t}");
                println!("owner    {}:{} mode {:o}", tree.meta.uid, tree.meta.gid, tree.meta.mode);
                for (name, node) in &tree.entries {
                    println!("  {:<12} {}", node.kind_name(), crate::util::text::escape_path(name.as_bytes()));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn diff(ctx: &Ctx, a: DiffArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.open(LockMode::Shared)?;
    let ta = store.resolve(&a.a)?.tree();
    let tb = store.resolve(&a.b)?.tree();
    let changes = crate::trees::diff::diff(&store, &ta, &tb)?;
    if ctx.json {
        output::json(&changes)?;
    } else {
        for c in &changes {
            let sign = match c.change {
                "added" => "+",
                "removed" => "-",
                _ => "~",
            };
            if c.what.is_empty() {
                println!("{sign} {} ({})", c.path, c.kind);
            } else {
                println!("{sign} {} ({}: {})", c.path, c.kind, c.what.join(", "));
            }
        }
        ctx.note(format!("{} changes", changes.len()));
    }
    Ok(ExitCode::SUCCESS)
}

fn repair(ctx: &Ctx, full: bool) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Shared)?;
    let r = crate::lifecycle::repair(&mut store, full, &ctx.progress)?;
    if ctx.json {
        output::json(&r)?;
    } else {
        for p in &r.before.problems {
            println!("bad {} {}: {}", p.what, p.id, p.problem);
        }
        for x in &r.restored {
            println!("restored object {} from {}", x.object, x.from);
        }
        for d in &r.dropped {
            let roots =
                if d.roots.is_empty() { String::new() } else { format!(" (removed roots: {})", d.roots.join(", ")) };
            println!("dropped entry {} {}{roots}", d.key.short(), d.name);
        }
        if !r.dropped.is_empty() {
            ctx.note("the next build of those images makes the dropped steps again");
        }
        ctx.note(format!(
            "{} problems found, {} objects restored, {} entries, {} trees and {} objects dropped; {}",
            r.before.problems.len(),
            r.restored.len(),
            r.dropped.len(),
            r.dropped_trees,
            r.dropped_objects,
            if r.after.ok() {
                "the store is clean".to_string()
            } else {
                format!("{} problems remain", r.after.problems.len())
            }
        ));
    }
    Ok(if r.after.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn verify(ctx: &Ctx, a: VerifyArgs) -> anyhow::Result<ExitCode> {
    if a.repair {
        return repair(ctx, a.full);
    }
    let store = ctx.open(LockMode::Shared)?;
    let r = crate::store::verify::verify(&store, a.full, &ctx.progress)?;
    if ctx.json {
        output::json(&r)?;
    } else {
        for p in &r.problems {
            let users: Vec<String> = p.entries.iter().map(|e| format!("{} ({})", e.key.short(), e.name)).collect();
            println!(
                "bad {} {}: {}; used by: {}",
                p.what,
                p.id,
                p.problem,
                if users.is_empty() { "no entry".into() } else { users.join(", ") }
            );
        }
        ctx.note(format!(
            "{}: {} entries, {} trees, {} objects checked ({}){}",
            if r.ok() { "store is clean" } else { "store has problems" },
            r.entries,
            r.trees,
            r.objects,
            if r.full { "full: contents re-hashed" } else { "fast: sizes only" },
            if r.orphan_files > 0 {
                format!("; {} orphan object files (removed by gc)", r.orphan_files)
            } else {
                String::new()
            }
        ));
    }
    Ok(if r.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
