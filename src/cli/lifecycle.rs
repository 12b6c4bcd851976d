//! `strata gc`, `strata du` and the retention commands of `strata images` (pin, unpin, rm, keep).

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{output, Ctx};
use crate::graph::retention::{self, Policy};
use crate::lifecycle::{self, GcOptions};
use crate::store::lock::LockMode;
use crate::util::text::{bytes, parse_duration, parse_size};

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Report what would be deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Keep the newest N generations of each image (with --keep-younger-than: either keeps)
    #[arg(long, value_name = "N")]
    keep_last: Option<u64>,
    /// Keep generations built less than DURATION ago: `30d`, `12h`, `2w`
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    keep_younger_than: Option<u64>,
    /// Apply retention to this image only (repeatable; default: every image)
    #[arg(long = "image", value_name = "NAME")]
    images: Vec<String>,
    /// Trim the download cache to SIZE, least recently used first: `5G`, `500M`
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_download_cache: Option<u64>,
    /// Drop downloads not used for DURATION: `90d`
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_download_age: Option<u64>,
}

pub fn gc(ctx: &Ctx, args: GcArgs) -> anyhow::Result<ExitCode> {
    let policy = (args.keep_last.is_some() || args.keep_younger_than.is_some())
        .then_some(Policy { keep_last: args.keep_last, keep_younger_than: args.keep_younger_than });
    if args.keep_last == Some(0) {
        anyhow::bail!("--keep-last 0 would keep nothing: the newest generation is always kept, use 1 or more");
    }
    let opts = GcOptions {
        dry_run: args.dry_run,
        policy,
        images: args.images,
        max_download_cache: args.max_download_cache,
        max_download_age: args.max_download_age,
    };
    // Shared, like builds: gc runs while they do (see `strata gc --help`).
    let mut store = ctx.open(LockMode::Shared)?;
    let r = lifecycle::collect(&mut store, &opts, &ctx.progress)?;
    if ctx.json {
        output::json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let mut lines = vec![];
    let gens: Vec<String> = r.generations.iter().map(|d| format!("{}/{}", d.image, d.generation)).collect();
    lines.push(format!(
        "generations: {verb} {}{}; {} kept",
        gens.len(),
        if gens.is_empty() { String::new() } else { format!(" ({})", abbreviate(&gens, 8)) },
        r.kept_generations
    ));
    for repo in &r.repos {
        if repo.deferred {
            lines.push(format!(
                "ostree {}: {} commits to remove, left for a later gc (an export into it is running)",
                repo.repo, repo.commits
            ));
        } else {
            lines.push(format!(
                "ostree {}: {verb} {} commits, {} objects, {}",
                repo.repo,
                repo.commits,
                repo.objects,
                bytes(repo.bytes)
            ));
        }
    }
    let s = &r.store;
    lines.push(format!(
        "store: {verb} {} entries, {} trees, {} objects, {}{}; {} cached artifacts kept",
        s.entries,
        s.trees,
        s.objects,
        bytes(s.bytes),
        if s.lowers > 0 { format!(", {} kept sandbox checkouts", s.lowers) } else { String::new() },
        r.kept_artifacts
    ));
    let def = &s.deferred;
    if def.objects + def.trees + def.entries > 0 {
        let pids: Vec<String> = def.pids.iter().map(|p| p.to_string()).collect();
        lines.push(format!(
            "store: {} entries, {} trees, {} objects ({}) are dead but may be in use by running strata processes \
             (pid {}): {}",
            def.entries,
            def.trees,
            def.objects,
            bytes(def.bytes),
            pids.join(", "),
            if r.dry_run { "a gc now would keep them" } else { "the first gc after those end deletes them" }
        ));
    }
    let d = &r.downloads;
    lines.push(format!(
        "downloads: {verb} {} files, {}; {} files, {} remain",
        d.files,
        bytes(d.bytes),
        d.remaining_files,
        bytes(d.remaining_bytes)
    ));
    let m = &r.mirrors;
    if m.mirrors > 0 {
        lines.push(format!(
            "ssh push mirrors: {verb} {} files, {} (the far side has them){}",
            m.files,
            bytes(m.bytes),
            if m.deferred > 0 {
                format!("; {} in use by a push, left for a later gc", m.deferred)
            } else {
                String::new()
            }
        ));
    }
    let o = &r.oci_blobs;
    if o.deferred {
        lines.push("OCI blob cache: in use by an export, left for a later gc".to_string());
    } else if o.files + o.remaining_files > 0 {
        lines.push(format!(
            "OCI blob cache: {verb} {} files, {}; {} files, {} remain",
            o.files,
            bytes(o.bytes),
            o.remaining_files,
            bytes(o.remaining_bytes)
        ));
    }
    for l in lines {
        ctx.note(l);
    }
    Ok(ExitCode::SUCCESS)
}

fn abbreviate(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{}, … {} more", items[..max].join(", "), items.len() - max)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DuFormat {
    Text,
    Svg,
}

#[derive(Args, Debug)]
pub struct DuArgs {
    /// Only this image (bytes are still counted against every image)
    image: Option<String>,
    /// `text`, or `svg`: bars per image and generation, and the biggest steps
    #[arg(long, value_enum, default_value = "text")]
    format: DuFormat,
    /// List every step of every generation, not only the newest's biggest
    #[arg(long)]
    steps: bool,
}

pub fn du(ctx: &Ctx, args: DuArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.open(LockMode::Shared)?;
    let u = lifecycle::usage::usage(&store, args.image.as_deref())?;
    if args.format == DuFormat::Svg {
        let text = lifecycle::usage::svg(&u);
        if ctx.json {
            output::json(&serde_json::json!({"format": "svg", "document": text}))?;
        } else {
            print!("{text}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if ctx.json {
        output::json(&u)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "store: {} in {} files; images hold {}, other roots and garbage {}",
        bytes(u.store_bytes),
        u.store_files,
        bytes(u.image_bytes),
        bytes(u.other_bytes)
    );
    for img in &u.images {
        println!(
            "{:<24} {:>10} total {:>10} unique {:>10} shared",
            img.image,
            bytes(img.bytes),
            bytes(img.unique_bytes),
            bytes(img.shared_bytes)
        );
        let newest = img.generations.last().map(|g| g.generation);
        for g in &img.generations {
            println!(
                "  {:>4}  {}  {:>10} total {:>10} unique{}",
                g.generation,
                output::date(g.created),
                bytes(g.bytes),
                bytes(g.unique_bytes),
                if g.pinned { "  (pinned)" } else { "" }
            );
            if args.steps || Some(g.generation) == newest {
                let mut steps: Vec<_> = g.steps.iter().filter(|s| s.bytes > 0).collect();
                if !args.steps {
                    steps.sort_by_key(|s| std::cmp::Reverse(s.bytes));
                    steps.truncate(5);
                }
                for s in steps {
                    println!("          {:>10} {:>7} files  {}", bytes(s.bytes), s.files, s.name);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pin(ctx: &Ctx, spec: &str, on: bool) -> anyhow::Result<ExitCode> {
    let (image, n) = retention::parse_generation(spec)?;
    let mut store = ctx.open(LockMode::Shared)?;
    let changed = if on { retention::pin(&mut store, &image, n)? } else { retention::unpin(&mut store, &image, n)? };
    if ctx.json {
        output::json(&serde_json::json!({"image": image, "generation": n, "pinned": on, "changed": changed}))?;
    } else {
        ctx.note(match (on, changed) {
            (true, true) => format!("pinned {image}/{n}: gc keeps it until `strata images unpin {image}/{n}`"),
            (true, false) => format!("{image}/{n} was already pinned"),
            (false, true) => format!("unpinned {image}/{n}: retention applies to it again"),
            (false, false) => format!("{image}/{n} was not pinned"),
        });
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(ctx: &Ctx, spec: &str) -> anyhow::Result<ExitCode> {
    let spec = spec.strip_prefix("images/").unwrap_or(spec);
    let (image, number) = match spec.rsplit_once('/') {
        Some(_) => {
            let (i, n) = retention::parse_generation(spec)?;
            (i, Some(n))
        }
        None => (spec.to_string(), None),
    };
    let mut store = ctx.open(LockMode::Shared)?;
    let removed = retention::remove(&mut store, &image, number)?;
    if ctx.json {
        output::json(&serde_json::json!({"image": image, "removed": removed}))?;
    } else {
        let list: Vec<String> = removed.iter().map(|n| n.to_string()).collect();
        ctx.note(format!(
            "removed {} generation{} of {image} ({}): `strata gc` frees what only they held",
            removed.len(),
            if removed.len() == 1 { "" } else { "s" },
            list.join(", ")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct KeepArgs {
    /// The image the policy is for (default: every image without a policy of its own)
    image: Option<String>,
    /// Keep the newest N generations
    #[arg(long, value_name = "N")]
    keep_last: Option<u64>,
    /// Keep generations built less than DURATION ago: `30d`, `12h`, `2w`
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    keep_younger_than: Option<u64>,
    /// Remove the policy (the image falls back to the default, or keeps everything)
    #[arg(long, conflicts_with_all = ["keep_last", "keep_younger_than"])]
    clear: bool,
}

pub fn keep(ctx: &Ctx, args: KeepArgs) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Shared)?;
    let image = args.image.as_deref().unwrap_or(retention::DEFAULT);
    let changing = args.clear || args.keep_last.is_some() || args.keep_younger_than.is_some();
    if changing {
        let policy = Policy { keep_last: args.keep_last, keep_younger_than: args.keep_younger_than };
        retention::set_policy(&mut store, image, &policy)?;
    }
    let policies = retention::policies(&store)?;
    // A description's policy counts where the store has none of its own for that image.
    let described: Vec<_> =
        retention::described(&store)?.into_iter().filter(|(i, _)| !policies.contains_key(i)).collect();
    if ctx.json {
        let mut v: Vec<_> =
            policies.iter().map(|(i, p)| serde_json::json!({"image": i, "policy": p, "set_by": "store"})).collect();
        v.extend(described.iter().map(
            |(i, (p, doc))| serde_json::json!({"image": i, "policy": p, "set_by": "description", "description": doc}),
        ));
        output::json(&v)?;
    } else if policies.is_empty() && described.is_empty() {
        ctx.note("no retention policy: gc keeps every generation (see `strata images keep --help`)");
    } else {
        for (i, p) in &policies {
            let name = if i == retention::DEFAULT { "* (default)" } else { i.as_str() };
            println!("{name:<24} {}", p.describe());
        }
        for (i, (p, doc)) in &described {
            println!("{i:<24} {} (set by {doc})", p.describe());
        }
    }
    Ok(ExitCode::SUCCESS)
}
