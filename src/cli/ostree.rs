//! `strata export`, `strata push`, `strata remote …` and `strata key generate`: OSTree commits
//! of images, and publishing them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use super::image::BuildArgs;
use super::{output, Ctx};
use crate::graph;
use crate::ostree::export::{self, RepoMode};
use crate::ostree::layout::SpecialFiles;
use crate::ostree::sign::{Ed25519Key, Signer};
use crate::ostree::{mapping, publish, push, ssh};
use crate::pipeline::{self, CommitTo, Input};
use crate::store::local::Store;
use crate::store::lock::LockMode;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// Compressed objects, for serving over HTTP (the default for a new repository)
    Archive,
    /// Files as they are, with their owners (needs root)
    Bare,
    /// Files owned by the caller, owners kept in an extended attribute
    BareUser,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SpecialArg {
    /// Leave fifos and device nodes out and list them
    Skip,
    /// Fail on the first one, naming it
    Fail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// An OSTree commit (--repo)
    Ostree,
    /// An OCI image: one layer per step that changed the tree (--output oci:DIR[:TAG])
    Oci,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

#[derive(Args, Debug)]
pub struct SigningArgs {
    /// Sign with this ed25519 secret key file (repeatable; `strata key generate` makes one)
    #[arg(long = "sign-key", value_name = "FILE")]
    pub(crate) sign_keys: Vec<PathBuf>,
    /// Sign with this GPG key (repeatable)
    #[arg(long = "gpg-sign", value_name = "KEY-ID")]
    pub(crate) gpg_keys: Vec<String>,
    /// The GnuPG home directory holding the --gpg-sign keys
    #[arg(long, value_name = "DIR")]
    gpg_homedir: Option<PathBuf>,
}

impl SigningArgs {
    fn signers(&self) -> anyhow::Result<Vec<Signer>> {
        let mut out = Vec::new();
        for path in &self.sign_keys {
            out.push(Signer::Ed25519(Ed25519Key::load(path)?));
        }
        for key_id in &self.gpg_keys {
            out.push(Signer::Gpg { key_id: key_id.clone(), homedir: self.gpg_homedir.clone() });
        }
        Ok(out)
    }
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The image: a description directory (built first, reusing every cached step), or a store
    /// entry (`images/NAME`, a root name or a key prefix)
    #[command(flatten)]
    pub(crate) build: BuildArgs,
    /// What to write: an OSTree commit into --repo, or an OCI image to --output
    #[arg(long, value_enum, default_value = "ostree")]
    pub(crate) format: ExportFormat,
    /// The OSTree repository (created when missing)
    #[arg(long, value_name = "PATH")]
    pub(crate) repo: Option<PathBuf>,
    /// Where the OCI image goes: `oci:DIR[:TAG]`, an OCI image layout (created when missing;
    /// TAG defaults to the image's version, else `latest`)
    #[arg(long, value_name = "oci:DIR[:TAG]")]
    pub(crate) output: Option<String>,
    /// How OCI layers are compressed
    #[arg(long, value_enum, default_value = "gzip")]
    pub(crate) compression: CompressionArg,
    /// The branch to commit to [default: IMAGE/ARCH, e.g. debian-base/x86_64]
    #[arg(long = "ref", value_name = "REF")]
    pub(crate) reference: Option<String>,
    /// The mode of a new repository; an existing one must match
    #[arg(long, value_enum)]
    pub(crate) mode: Option<ModeArg>,
    #[command(flatten)]
    pub(crate) signing: SigningArgs,
    /// Generate static deltas from the last N commits of the ref
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) deltas: u32,
    /// Keep only the newest N commits of every ref, deleting older ones (ostree prune)
    #[arg(long, value_name = "N")]
    pub(crate) history: Option<u32>,
    /// What to do with fifos and device nodes, which OSTree does not store
    #[arg(long, value_enum, default_value = "skip")]
    pub(crate) special_files: SpecialArg,
    /// Commit the tree as it is, without the OSTree layout step (for trees that are not
    /// bootable systems, or are laid out already)
    #[arg(long)]
    pub(crate) no_layout: bool,
    /// The version to record when exporting a store entry [default: the description's]
    #[arg(long, value_name = "VERSION")]
    pub(crate) version: Option<String>,
}

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

/// `strata export` to an OSTree repository (`--format oci` goes to [`super::oci::export`]).
pub fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.output.is_some() {
        bail!("--output is where --format oci writes; an OSTree commit goes into --repo PATH");
    }
    let Some(repo_path) = args.repo.clone() else {
        bail!("give --repo PATH (the OSTree repository to commit to), or --format oci --output oci:DIR[:TAG]");
    };
    let signers = args.signing.signers()?;
    let mut store = ctx.open(LockMode::Shared)?;
    let input = Input::open(&args.build.desc.description, &args.build.desc.profiles)?;
    let note = |m: String| ctx.note(m);
    let src = pipeline::source(&mut store, &input, &args.build.options()?, args.version.clone(), &ctx.progress, &note)?;
    let entry = src.entry.clone();
    let reference = args.reference.clone().unwrap_or_else(|| pipeline::default_ref(&src.image, &args.build.arch));
    let special = match args.special_files {
        SpecialArg::Skip => SpecialFiles::Skip,
        SpecialArg::Fail => SpecialFiles::Fail,
    };
    let mode = args.mode.map(|m| match m {
        ModeArg::Archive => RepoMode::Archive,
        ModeArg::Bare => RepoMode::Bare,
        ModeArg::BareUser => RepoMode::BareUser,
    });
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
    crate::ostree::sign::update_summary(&repo, &signers)?;
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
