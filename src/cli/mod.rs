//! The command line: clap definitions, global options, and dispatch to one module per command.
//! Commands call the library and print; data goes to stdout (as JSON with `--json`), messages
//! and progress to stderr.

mod deploy;
mod docs;
mod export_args;
mod image;
mod lifecycle;
mod log;
mod oci;
mod ostree;
mod output;
mod package;
mod roots;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::store::local::{OpenOptions, Store};
use crate::store::lock::LockMode;
use crate::util::progress::Progress;

const AFTER_HELP: &str = "\
Examples:
  strata build descriptions/debian-base
  strata store checkout images/debian-base /srv/rootfs
  strata store add ./rootfs --name base --root tags/base
  strata store checkout tags/base /tmp/base --link auto
  strata store diff tags/base tags/next
  strata gc --dry-run

Docs: docs/README.md in the source tree; `strata man` prints the manual page.";

/// Build operating-system images from a content-addressed store.
///
/// Every tree strata imports or builds is stored once, by content (blake3), as an immutable
/// entry; checkouts are hardlinks or reflinks of the stored objects. Entries, trees and roots
/// are named by a unique hex prefix of their id (at least 4 characters) or by a root name.
#[derive(Parser, Debug)]
#[command(name = "strata", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// The store directory [default: /var/lib/strata as root, else $XDG_DATA_HOME/strata]
    #[arg(long, global = true, env = "STRATA_STORE", value_name = "PATH")]
    store: Option<PathBuf>,

    /// Print machine-readable JSON on stdout instead of text
    #[arg(long, global = true)]
    json: bool,

    /// Print nothing but results and errors; no progress bars
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Log more (-v: debug, -vv: trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Seconds to wait for a store locked by another strata process before failing
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    lock_wait: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// (internal) The last step of the script sandbox, run inside its namespaces
    #[command(hide = true)]
    SandboxExec {
        /// The prepared root
        root: PathBuf,
        /// The pids cgroup to join
        #[arg(long)]
        cgroup: Option<PathBuf>,
        /// RLIMIT_FSIZE
        #[arg(long)]
        max_file_size: u64,
    },
    /// Build an image from its description: only steps whose inputs changed run
    ///
    /// Resolves the description (KIWI XML or TOML) and the descriptions it derives from, then
    /// runs its steps: packages, removals, users, archives, root/ files, preferences, config.sh,
    /// images.sh. Each step's result is a store entry keyed by its inputs; steps whose key is in
    /// the store are hits. A build that yields a new tree becomes the next generation,
    /// `images/<name>/<N>`.
    #[command(
        after_help = "Examples:\n  strata build descriptions/debian-base\n  strata build descriptions/debian-web --json\n  strata build ./my-image --set-repo 'deb [signed-by=/etc/apt/keyring.gpg] http://mirror/debian bookworm main'\n  strata store checkout images/debian-web /srv/web"
    )]
    Build(image::BuildArgs),
    /// Print the steps of a build (kind, key, state) without building anything, or draw them
    #[command(
        after_help = "Examples:\n  strata plan descriptions/debian-web\n  strata plan descriptions/debian-web --json\n  strata plan descriptions/debian-web --format svg > plan.svg"
    )]
    Plan(image::PlanArgs),
    /// Pin the exact package sets of a description and its bases in DESC/strata.lock
    ///
    /// Records every package (version, architecture, URL, SHA-256), the apt sources and the
    /// index files apt inside the image gets (signed Release, Packages, by SHA-256). `build
    /// --locked` then installs exactly that set, from the download cache or the URLs, and gives
    /// the same tree on any store. The image is built to learn its set (a derived image's
    /// depends on what its base installed); every cached step is reused.
    #[command(
        after_help = "Examples:\n  strata lock descriptions/debian-base\n  strata build descriptions/debian-base --locked\n  strata lock descriptions/debian-base --update --json"
    )]
    Lock(image::LockArgs),
    /// Explain, step by step, which inputs changed since the image's newest generation
    #[command(
        after_help = "Examples:\n  strata why descriptions/debian-web\n  strata why descriptions/debian-web --json"
    )]
    Why(image::BuildArgs),
    /// Print a description in the other format (KIWI XML <-> TOML)
    #[command(
        after_help = "Examples:\n  strata describe descriptions/debian-base --format toml\n  strata describe descriptions/debian-web --format xml > appliance.kiwi"
    )]
    Describe {
        #[command(flatten)]
        desc: image::DescArgs,
        /// The format to print
        #[arg(long, value_enum, default_value = "toml")]
        format: image::Format,
    },
    /// Print what the steps of an image printed: scripts, dracut, disk and ISO assembly
    ///
    /// Every step that runs something (maintainer scripts, RPM scriptlets, users, config.sh,
    /// images.sh, dracut, disk and ISO assembly) keeps its combined output with its entry,
    /// compressed, so a cached step's log is still there; gc drops it with the entry. A failed
    /// script's whole log is kept too, under the id its error names (--failed). `build -v`
    /// prints scripts' output as it comes.
    #[command(
        after_help = "Examples:\n  strata log images/debian-base\n  strata log debian-web config.sh\n  strata log debian-base --list --json\n  strata log --failed\n  strata log --failed 3fa9c2d41b07"
    )]
    Log(log::LogArgs),
    /// List built images and their generations
    #[command(subcommand)]
    Images(image::ImagesCommand),
    /// Commit an image to an OSTree repository (laid out for OSTree, signed, with deltas), or
    /// write it as an OCI image or an ostree-native container
    ///
    /// Builds the description (every cached step is reused), runs the OSTree layout step
    /// (/etc to /usr/etc, /var recreated by tmpfiles.d, the kernel and initramfs under
    /// /usr/lib/modules/KVER), and commits the tree through libostree. Only files the
    /// repository lacks are read and written; an unchanged image writes nothing. The commit is
    /// reproducible: its time is SOURCE_DATE_EPOCH and its parent the ref's previous commit.
    ///
    /// With --format oci the image (as built, without the OSTree layout) goes to an OCI image
    /// layout: one layer per step that changed the tree, base first, so a derived image shares
    /// its base's layers. Layers are deterministic tars (the same image gives the same digests);
    /// a layer written before is not written again.
    ///
    /// With --format ostree-container the commit (into --repo, else the store's own repository)
    /// goes out as the image bootc and rpm-ostree pull: its repository objects in OCI layers,
    /// by package, with the tree as a container sees it. `strata export ostree-container:IMAGE
    /// --repo PATH` brings such an image's commit back into a repository: the same commit, every
    /// object checked.
    #[command(
        after_help = "Examples:\n  strata export descriptions/debian-base --repo ./repo\n  strata export descriptions/debian-base --repo ./repo --sign-key signing.key --deltas 1 --history 10\n  strata export images/debian-base --repo ./repo --ref exampleos/x86_64/stable --json\n  ostree --repo=./repo log debian-base/x86_64\n  strata export descriptions/debian-web --format oci --output oci:./layout:web\n  skopeo copy oci:./layout:web docker://registry.example.org/web:1\n  strata export descriptions/debian-base --format ostree-container --output docker://registry.example.org/os:1\n  strata export ostree-container:docker://registry.example.org/os:1 --repo ./repo --ref os/x86_64"
    )]
    Export(export_args::ExportArgs),
    /// Publish a ref to another archive repository: objects, deltas, then ref and summary
    #[command(
        after_help = "Examples:\n  strata push debian-base/x86_64 --repo ./repo --to /srv/www/ostree --sign-key signing.key\n  strata push debian-base/x86_64 --repo ./repo --to public"
    )]
    Push(ostree::PushArgs),
    /// Name the repositories `strata push` publishes to
    #[command(subcommand)]
    Remote(ostree::RemoteCommand),
    /// Make ed25519 signing keys for OSTree commits and summaries
    #[command(subcommand)]
    Key(ostree::KeyCommand),
    /// Deploy an image's OSTree commit to a bootable disk image or live ISO (BIOS and UEFI)
    ///
    /// Builds and exports the image first (all cached). A disk: the commit deployed into an
    /// OSTree sysroot, written as a GPT disk (BIOS boot partition, EFI system partition, ext4
    /// /boot, ext4 or xfs root); GRUB reads the boot loader configuration OSTree maintains, so the
    /// machine keeps booting after `ostree admin upgrade` or a rollback. An ISO: the commit's
    /// tree on squashfs with a dracut live initramfs (a cached step; the image needs
    /// dracut-live), hybrid El Torito. Without --format, the description's primary target
    /// decides. Artifacts are cached in the store: deploying an unchanged image again only copies
    /// it out.
    #[command(
        after_help = "Examples:\n  sudo strata deploy descriptions/debian-base --output debian.qcow2\n  sudo strata deploy descriptions/debian-base --format iso --output debian.iso\n  sudo strata deploy descriptions/debian-base --format raw --filesystem xfs --size 8G --output disk.raw\n  sudo strata deploy ostree:./repo#debian-base/x86_64 --format raw --output disk.raw --karg quiet\n  strata boot debian.qcow2 --login debian:debian --run 'ostree admin status'"
    )]
    Deploy(deploy::DeployArgs),
    /// Boot a disk image or ISO in QEMU and wait for the login prompt (optionally log in, run
    /// commands)
    #[command(
        after_help = "Examples:\n  strata boot debian.qcow2\n  strata boot debian.iso --uefi\n  strata boot debian.qcow2 --uefi --login debian:debian --run 'cat /etc/os-release' --json\n  strata boot disk.raw --timeout 300 --log serial.log"
    )]
    Boot(deploy::BootArgs),
    /// Add, inspect, check out and verify store entries
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Turn package files into cached store entries
    #[command(subcommand)]
    Package(package::PackageCommand),
    /// Name entries so that gc keeps them
    #[command(subcommand)]
    Roots(roots::RootsCommand),
    /// Remove what nothing keeps: old generations (by retention), their OSTree commits, and the
    /// entries, trees, objects and cached downloads nothing holds
    ///
    /// In order: retention removes the roots of generations no rule keeps (the policies of
    /// `strata images keep` and of descriptions' `[retention]`, or --keep-last/--keep-younger-than
    /// for this run; the newest and pinned generations always stay); the OSTree repositories
    /// strata wrote (its deploy repository and every `export --repo`) lose the commits of removed
    /// generations, their objects and deltas; the store deletes entries, trees and objects that no
    /// root holds (cached disk images and ISOs stay while their generation does); the download
    /// cache drops abandoned partial downloads and, with --max-download-age and
    /// --max-download-cache, files unused too long and then the least recently used; the local
    /// mirrors of ssh push destinations drop what the far side has. Builds keep running while gc
    /// runs. --dry-run reports the same, per kind, and changes nothing.
    #[command(
        after_help = "Examples:\n  strata gc --dry-run\n  strata gc --keep-last 5 --keep-younger-than 30d\n  strata gc --keep-last 1 --image debian-web --json\n  strata gc --max-download-cache 5G"
    )]
    Gc(lifecycle::GcArgs),
    /// Show what uses the store's disk: bytes per image, generation and step, unique and shared
    ///
    /// A generation's unique bytes are what removing it alone would free; an image's unique bytes
    /// what `images rm IMAGE` would free; shared bytes stay while another image holds them. Each
    /// file is charged to the step that first brought it in (a package set, a script).
    #[command(
        after_help = "Examples:\n  strata du\n  strata du debian-web --steps\n  strata du --json | jq '.images[].unique_bytes'\n  strata du --format svg > usage.svg"
    )]
    Du(lifecycle::DuArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  strata completions bash > /etc/bash_completion.d/strata\n  strata completions zsh > ~/.zfunc/_strata"
    )]
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory
    #[command(after_help = "Examples:\n  strata man | man -l -\n  strata man --dir /usr/local/share/man/man1")]
    Man(docs::ManArgs),
}

/// Global options resolved once.
pub(crate) struct Ctx {
    store_path: PathBuf,
    json: bool,
    quiet: bool,
    lock_wait: Duration,
    progress: Progress,
}

impl Ctx {
    fn open(&self, lock: LockMode) -> anyhow::Result<Store> {
        let opts = OpenOptions { lock, lock_wait: self.lock_wait };
        let quiet = self.quiet;
        let path = self.store_path.clone();
        Store::open(&self.store_path, &opts, move || {
            if !quiet {
                eprintln!("waiting for the lock on store `{}` (another strata process holds it)", path.display());
            }
        })
    }

    /// A message for humans, on stderr, unless quiet.
    fn note(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}

fn default_store() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/strata");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("strata")
}

/// Parse arguments, run, print `error: …` once on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "strata=debug,info",
        _ => "strata=trace,debug",
    };
    let logger = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.verbose > 0 {
        // Every span reports how long it took when it closes; lines carry the time since start.
        logger
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .init();
    } else {
        logger.without_time().init();
    }
    let store = cli.store.clone().unwrap_or_else(default_store);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {:#}", explain(e, &store));
            ExitCode::FAILURE
        }
    }
}

/// Say what to do about errors that come from the store's state rather than the command: a
/// damaged database, a store that cannot be written. Each hint is given only when the store
/// itself is found so (the error may come from another database, say an image's rpmdb).
fn explain(e: anyhow::Error, store: &std::path::Path) -> anyhow::Error {
    use rusqlite::ErrorCode;
    let sqlite = e.chain().find_map(|c| match c.downcast_ref::<rusqlite::Error>() {
        Some(rusqlite::Error::SqliteFailure(f, _)) => Some(f.code),
        _ => None,
    });
    let read_only_error = sqlite == Some(ErrorCode::ReadOnly)
        || e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ReadOnlyFilesystem)
        });
    let db = store.join("db.sqlite");
    let damaged = || {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let check = rusqlite::Connection::open_with_flags(&db, flags)
            .and_then(|c| c.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0)));
        !matches!(check.as_deref(), Ok("ok"))
    };
    let store_read_only =
        || nix::sys::statvfs::statvfs(store).is_ok_and(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    match sqlite {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) if damaged() => e.context(format!(
            "the store's database {} is damaged: build into a new store (--store), or move this one aside \
             and try `sqlite3 {} .recover`",
            db.display(),
            db.display()
        )),
        _ if read_only_error && store_read_only() => e.context(format!(
            "the store {} is on a read-only file system: strata writes to its store even for a cache hit \
             (use a writable --store)",
            store.display()
        )),
        _ => e,
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Ctx {
        store_path: cli.store.clone().unwrap_or_else(default_store),
        json: cli.json,
        quiet: cli.quiet,
        lock_wait: Duration::from_secs(cli.lock_wait),
        progress: Progress::new(cli.quiet).streaming(cli.verbose > 0),
    };
    match cli.command {
        Command::SandboxExec { root, cgroup, max_file_size } => {
            match crate::sandbox::enter(&root, cgroup.as_deref(), max_file_size)? {}
        }
        Command::Build(args) => image::build(&ctx, args),
        Command::Plan(args) => image::plan(&ctx, args),
        Command::Why(args) => image::why(&ctx, args),
        Command::Lock(args) => image::lock(&ctx, args),
        Command::Describe { desc, format } => image::describe(&ctx, desc, format),
        Command::Images(cmd) => image::images(&ctx, cmd),
        Command::Log(args) => log::run(&ctx, args),
        Command::Export(args) if args.format == export_args::ExportFormat::Oci => oci::export(&ctx, args),
        Command::Export(args) => ostree::export(&ctx, args),
        Command::Push(args) => ostree::push(&ctx, args),
        Command::Remote(cmd) => ostree::remote(&ctx, cmd),
        Command::Key(cmd) => ostree::key(&ctx, cmd),
        Command::Deploy(args) => deploy::deploy(&ctx, args),
        Command::Boot(args) => deploy::boot(&ctx, args),
        Command::Store(cmd) => store::run(&ctx, cmd),
        Command::Package(cmd) => package::run(&ctx, cmd),
        Command::Roots(cmd) => roots::run(&ctx, cmd),
        Command::Gc(args) => lifecycle::gc(&ctx, args),
        Command::Du(args) => lifecycle::du(&ctx, args),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    }
}
