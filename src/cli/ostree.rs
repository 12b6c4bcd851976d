//! `strata export`, `strata push`, `strata remote …` and `strata key generate`: OSTree commits
//! of images, and publishing them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::export_args::{ExportArgs, ExportFormat, ModeArg, SigningArgs, SpecialArg};
use super::{output, Ctx};
use crate::graph;
use crate::ostree::export::{self, RepoMode};
use crate::ostree::layout::SpecialFiles;
use crate::ostree::sign::{Ed25519Key, Signer};
use crate::ostree::{mapping, publish, push, ssh};
use crate::pipeline::{self, CommitTo, Input};
use crate::store::local::Store;
use crate::store::lock::LockMode;

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The ref to publish
    #[arg(value_name = "REF")]
    reference: String,
    /// The archive repository that holds the ref (where `strata export` wrote it)
    #[arg(long, value_name = "PATH")]
    repo: PathBuf,
    /// Where to publish: a remote's name (`strata remote add`), a repository path, or
    /// ssh://[USER@]HOST[:PORT]/PATH (the far side needs sshd and rsync)
    #[arg(long, value_name = "REMOTE|PATH|URL")]
    to: String,
    /// The ssh command for ssh:// destinations (options such as `-i KEY` go here)
    #[arg(long, env = "STRATA_SSH_COMMAND", value_name = "COMMAND", default_value = "ssh")]
    ssh_command: String,
    #[command(flatten)]
    signing: SigningArgs,
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Name a repository that `strata push --to NAME` publishes to
    #[command(
        after_help = "Examples:\n  strata remote add public /srv/www/ostree\n  strata remote add mirror ssh://deploy@repo.example.org/srv/ostree\n  strata push debian-base/x86_64 --repo ./repo --to public"
    )]
    Add {
        /// The name
        name: String,
        /// An archive repository path, or ssh://[USER@]HOST[:PORT]/PATH (created by the first push)
        url: String,
    },
    /// List remotes
    #[command(after_help = "Examples:\n  strata remote ls\n  strata remote ls --json")]
    Ls,
    /// Forget a remote (the repository itself is left alone)
    #[command(after_help = "Examples:\n  strata remote rm public")]
    Rm { name: String },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a new ed25519 secret key file and print its public key
    #[command(
        after_help = "Examples:\n  strata key generate signing.key\n  ostree remote add --sign-verify=ed25519=inline:$(strata key generate k.key) os http://host/repo"
    )]
    Generate {
        /// The file to create (mode 0600; never overwritten)
        file: PathBuf,
    },
}

/// `strata export` to an OSTree repository, or as an ostree-native container (`--format oci`
/// goes to [`super::oci::export`]); of an ostree-native container image, into an OSTree
/// repository.
pub fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let source = args.build.desc.description.to_string_lossy().into_owned();
    if let Some(image) = crate::description::ostree_container_image(&source)? {
        return unencapsulate(ctx, &args, &source, &image);
    }
    let container = args.format == ExportFormat::OstreeContainer;
    if args.output.is_some() && !container {
        bail!("--output is where --format oci and ostree-container write; an OSTree commit goes into --repo PATH");
    }
    if container && args.output.is_none() {
        bail!("--format ostree-container needs --output oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://HOST/REPO[:TAG]");
    }
    let output = args.output.as_deref().map(super::oci::parse_output).transpose()?;
    let signers = args.signing.signers()?;
    let mut store = ctx.open(LockMode::Shared)?;
    // An ostree-native container without --repo: the commit goes into the store's own
    // repository, where `strata deploy` commits images too.
    let (repo_path, default_mode) = match (&args.repo, container) {
        (Some(r), _) => (r.clone(), None),
        (None, true) => {
            if args.deltas > 0 || args.history.is_some() {
                bail!("--deltas and --history apply to a repository you name: give --repo PATH (without it the commit goes into the store's own repository)");
            }
            (store.root().join("ostree-repo"), Some(RepoMode::Bare))
        }
        (None, false) => {
            bail!("give --repo PATH (the OSTree repository to commit to), or --format oci --output oci:DIR[:TAG]")
        }
    };
    let input = Input::open(&args.build.desc.description, &args.build.desc.profiles)?;
    let note = |m: String| ctx.note(m);
    let src = pipeline::source(&mut store, &input, &args.build.options()?, args.version.clone(), &ctx.progress, &note)?;
    let entry = src.entry.clone();
    // In the store's own repository, a container's commit has refs of its own (`container/…`):
    // those of `strata deploy` stay its own.
    let reference = args.reference.clone().unwrap_or_else(|| {
        let r = pipeline::default_ref(&src.image, &args.build.arch);
        if args.repo.is_none() {
            format!("container/{r}")
        } else {
            r
        }
    });
    let special = match args.special_files {
        SpecialArg::Skip => SpecialFiles::Skip,
        SpecialArg::Fail => SpecialFiles::Fail,
    };
    let mode = args.mode.map(repo_mode).or(default_mode);
    let source_date = args.build.source_date_epoch().unwrap_or(graph::DEFAULT_EPOCH);
    let to = CommitTo { repo: &repo_path, mode, reference: &reference, special, layout: !args.no_layout, source_date };
    let committed = pipeline::commit(&mut store, &src, &to, &ctx.progress, &note)?;
    let layout_json = match &committed.layout {
        Some(l) => {
            serde_json::json!({"key": l.entry.key, "tree": l.entry.tree, "cached": l.cached, "report": l.report})
        }
        None => serde_json::Value::Null,
    };
    let report = committed.export;
    let repo = export::open_repo(&repo_path, None)?;
    crate::ostree::sign::sign_commit(&repo, &report.commit, &signers)?;
    let deltas = publish::generate_deltas(&repo, &report.commit, args.deltas)?;
    let pruned = match args.history {
        Some(keep) => {
            let p = publish::prune(&repo, keep)?;
            if p.objects > 0 {
                let key = export::repo_key(&repo_path)?;
                mapping::forget_repo(&mut store, &key)?;
            }
            Some(p)
        }
        None => None,
    };
    if args.repo.is_some() {
        crate::ostree::sign::update_summary(&repo, &signers)?;
    }
    if let Some(output) = output {
        let compression = super::oci::compression(args.compression);
        let what = super::oci::Make::OstreeCommit { repo: &repo, commit: &report.commit };
        super::oci::write(ctx, &mut store, &src, output, compression, &args.build, what)?;
        return Ok(ExitCode::SUCCESS);
    }
    if ctx.json {
        output::json(&serde_json::json!({
            "commit": report.commit, "ref": report.reference, "repo": report.repo,
            "objects_written": report.objects_written,
            "content_bytes_written": report.content_bytes_written,
            "files_hashed": report.files_hashed, "trees_reused": report.trees_reused,
            "new_commit": report.new_commit, "parent": report.parent,
            "entry": entry.key, "layout": layout_json,
            "signed_by": signers.iter().map(Signer::describe).collect::<Vec<_>>(),
            "deltas": deltas, "pruned": pruned,
        }))?;
    } else {
        println!("{}", report.commit);
        ctx.note(format!(
            "{}: {} {} in {}; {} objects written ({}), {} files hashed, {} directories reused{}{}",
            report.reference,
            if report.new_commit { "committed" } else { "unchanged at" },
            &report.commit[..12],
            repo_path.display(),
            report.objects_written,
            output::bytes(report.content_bytes_written),
            report.files_hashed,
            report.trees_reused,
            if signers.is_empty() { String::new() } else { format!("; signed ({})", signers.len()) },
            if deltas.is_empty() { String::new() } else { format!("; {} static deltas", deltas.len()) },
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `strata export ostree-container:IMAGE --repo PATH [--ref REF]`: the image's commit into an
/// OSTree repository, every object checked; the same commit (same checksum) that was exported.
fn unencapsulate(ctx: &Ctx, args: &ExportArgs, source: &str, image: &str) -> anyhow::Result<ExitCode> {
    use crate::ostree::container;
    if args.format != ExportFormat::Ostree {
        bail!("`{source}` is an ostree-native container: export it with --format ostree --repo PATH (its commit, into an OSTree repository)");
    }
    let Some(repo_path) = &args.repo else {
        bail!("give --repo PATH: the OSTree repository the commit of `{source}` goes into");
    };
    for (given, flag) in [
        (args.output.is_some(), "--output"),
        (args.deltas > 0, "--deltas"),
        (args.history.is_some(), "--history"),
        (!args.signing.sign_keys.is_empty() || !args.signing.gpg_keys.is_empty(), "--sign-key/--gpg-sign"),
        (args.no_layout, "--no-layout"),
        (args.version.is_some(), "--version"),
    ] {
        if given {
            bail!("{flag} does not apply to importing `{source}`: its commit is taken as it is");
        }
    }
    let mut store = ctx.open(LockMode::Shared)?;
    let base = crate::description::parse_base(image, Path::new("."))?;
    let options = args.build.options()?;
    let resolved = container::resolve(&store, &base, &options.arch, &options.registry)?;
    let mode = args.mode.map(repo_mode);
    let repo = export::open_repo(repo_path, mode)?;
    let (got, derived) = resolved
        .with_blobs(&mut store, &ctx.progress, |_, dir| {
            container::unencapsulate(
                &repo,
                dir,
                &resolved.desc,
                &resolved.manifest,
                &crate::packages::Limits::default(),
            )
        })
        .with_context(|| resolved.name.clone())?;
    if !derived.is_empty() {
        ctx.note(format!(
            "{source}: {} layers after the commit's (a container build on top) are not part of the commit and were left out",
            derived.len()
        ));
    }
    if let Some(reference) = &args.reference {
        repo.set_ref_immediate(None, reference, Some(&got.commit), ostree::gio::Cancellable::NONE)?;
    }
    // gc keeps the repository's history as for any repository strata writes.
    crate::lifecycle::register_repo(&mut store, repo_path)?;
    if repo_path.join("summary").exists() {
        if repo_path.join("summary.sig").exists() {
            ctx.note(format!(
                "{}: its summary is signed and was left as it was; sign a new one with `strata export … --sign-key`",
                repo_path.display()
            ));
        } else {
            crate::ostree::sign::update_summary(&repo, &[])?;
        }
    }
    if ctx.json {
        output::json(&serde_json::json!({
            "commit": got.commit, "ref": args.reference, "repo": repo_path,
            "image": resolved.name, "manifest": resolved.desc.digest,
            "objects_written": got.objects_written, "objects_present": got.objects_present,
            "derived_layers_left_out": derived.len(),
        }))?;
    } else {
        println!("{}", got.commit);
        ctx.note(format!(
            "{}: commit {} into {}{}; {} objects written, {} there already",
            resolved.name,
            &got.commit[..12],
            repo_path.display(),
            args.reference.as_ref().map(|r| format!(" as {r}")).unwrap_or_default(),
            got.objects_written,
            got.objects_present
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn repo_mode(m: ModeArg) -> RepoMode {
    match m {
        ModeArg::Archive => RepoMode::Archive,
        ModeArg::Bare => RepoMode::Bare,
        ModeArg::BareUser => RepoMode::BareUser,
    }
}

/// A remote's URL from the store, or the destination as given.
fn destination(store: &Store, to: &str) -> anyhow::Result<String> {
    let remotes = mapping::ostree_remotes(store)?;
    Ok(remotes.into_iter().find(|(name, _)| name == to).map_or_else(|| to.to_string(), |(_, url)| url))
}

/// A push destination must be a path or an ssh:// URL.
fn check_destination(url: &str) -> anyhow::Result<()> {
    if url.starts_with("ssh://") {
        ssh::SshUrl::parse(url)?;
    } else if url.contains("://") {
        bail!("`{url}`: push publishes to a repository path or an ssh://[USER@]HOST[:PORT]/PATH URL");
    }
    Ok(())
}

pub fn push(ctx: &Ctx, args: PushArgs) -> anyhow::Result<ExitCode> {
    let signers = args.signing.signers()?;
    let store = ctx.open(LockMode::Shared)?;
    let dest = destination(&store, &args.to)?;
    check_destination(&dest)?;
    let r = if dest.starts_with("ssh://") {
        let mirror = ssh::Mirror::lock(&store.root().join("cache"), &dest, store.lock_wait())?;
        let ssh = ssh::Ssh { command: args.ssh_command.clone() };
        ssh::push(&args.repo, &args.reference, &dest, &ssh, &mirror, &signers, &ctx.progress)?
    } else {
        push::push(&args.repo, &args.reference, Path::new(&dest), &signers, &ctx.progress)?
    };
    if ctx.json {
        output::json(&r)?;
    } else {
        println!("{}", r.commit);
        ctx.note(format!(
            "{} → {}: {} commits, {} objects ({}), {} static deltas{}",
            r.reference,
            r.dest.display(),
            r.commits,
            r.objects_copied,
            output::bytes(r.bytes_copied),
            r.deltas_copied,
            if r.updated { "" } else { "; the ref was already there" }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn check_remote_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        bail!("invalid remote name `{name}`: use letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

pub fn remote(ctx: &Ctx, cmd: RemoteCommand) -> anyhow::Result<ExitCode> {
    let mut store = ctx.open(LockMode::Shared)?;
    match cmd {
        RemoteCommand::Add { name, url } => {
            check_remote_name(&name)?;
            check_destination(&url)?;
            let abs = if url.starts_with("ssh://") {
                url.clone()
            } else {
                std::path::absolute(Path::new(&url))
                    .with_context(|| format!("invalid path `{url}`"))?
                    .to_string_lossy()
                    .into_owned()
            };
            if !mapping::add_remote(&mut store, &name, &abs)? {
                bail!("a remote named `{name}` exists (remove it with `strata remote rm {name}`)");
            }
            if ctx.json {
                output::json(&serde_json::json!({"name": name, "url": abs}))?;
            } else {
                ctx.note(format!("remote {name} → {abs}"));
            }
        }
        RemoteCommand::Ls => {
            let remotes = mapping::ostree_remotes(&store)?;
            if ctx.json {
                let list: Vec<_> = remotes.iter().map(|(n, u)| serde_json::json!({"name": n, "url": u})).collect();
                output::json(&list)?;
            } else {
                if remotes.is_empty() {
                    ctx.note("no remotes (add one with `strata remote add NAME PATH`)");
                }
                for (name, url) in remotes {
                    println!("{name:<20} {url}");
                }
            }
        }
        RemoteCommand::Rm { name } => {
            if !mapping::remove_remote(&mut store, &name)? {
                bail!("no remote named `{name}`");
            }
            if ctx.json {
                output::json(&serde_json::json!({"removed": name}))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn key(ctx: &Ctx, cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Generate { file } => {
            let key = Ed25519Key::generate()?;
            key.save(&file)?;
            if ctx.json {
                output::json(&serde_json::json!({"file": file, "public_key": key.public()}))?;
            } else {
                println!("{}", key.public());
                ctx.note(format!(
                    "secret key in {}; clients verify with: ostree remote add --sign-verify=ed25519=inline:{} NAME URL",
                    file.display(),
                    key.public()
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
