//! Running scripts (maintainer scripts, `config.sh`) against a stored tree, and capturing what
//! they change as a layer.
//!
//! The tree is checked out by hardlinks (kept between runs, see [`crate::store::lowers`]) and used
//! read-only as the lower directories of an overlayfs; the script runs in new mount, PID, IPC,
//! UTS and network namespaces (`unshare`), with `/proc`, a minimal `/dev`, `/run` and `/tmp`
//! mounted over the overlay (so they never reach the layer). The network namespace has no
//! interfaces but a down loopback: no network. When the script ends, the PID namespace ends and
//! every process it left behind is killed; a script running longer than its timeout is killed
//! too. The overlay's upper directory is then stored as the layer tree.
//!
//! What keeps a hostile script off the host ([`enter`], the sandbox's last step):
//! - the overlay becomes the root by `pivot_root`, and the host's root is detached from the
//!   mount namespace: there is no host tree left to escape to (a `chroot` escape ends in the
//!   image), and `/proc/1/root` is the sandbox's own; every file descriptor the caller left
//!   open is closed and standard input is the image's `/dev/null`, so none leads back;
//! - capabilities are dropped from the bounding set but those that package scripts need on
//!   files ([`KEPT_CAPS`]: owners, modes, file capabilities, device nodes, switching users):
//!   no mounts, modules, raw I/O, ptrace, clock, reboot, BPF, audit or MAC control, and
//!   `no_new_privs` keeps a setuid program or file capability from bringing any back;
//! - every writable mount (the overlay, `/tmp`, `/run`, `/dev/shm`) is `nodev`: a script may
//!   make device nodes for the image, but not open them (a node of the host's disk reads
//!   nothing); `/dev` is read-only and holds null, zero, full, random, urandom and tty;
//! - `/proc/sys`, `/proc/sysrq-trigger`, `/proc/irq`, `/proc/bus` and `/proc/fs` are read-only;
//!   `/proc/kcore`, `/proc/keys`, `/proc/kmsg` and the kernel's debugging files read as empty,
//!   `/proc/acpi`, `/proc/scsi` and `/proc/asound` as empty directories;
//! - a system call filter ([`syscall_filter`]) refuses what no capability guards (the kernel
//!   keyrings of the host's root, file handles, io_uring, …) and new user namespaces;
//! - a pids cgroup per run bounds its tasks ([`Limits::tasks`]); a watch on the store's file
//!   system stops it past [`Limits::write_bytes`] or near a full disk, and `RLIMIT_FSIZE`
//!   bounds each file.
//!
//! Scripts still run as root over the image's files (user ids are the image's): that is what
//! lets the layer keep owners exactly.
//!
//! What the script prints (stdout and stderr interleaved line by line as they come, the last
//! [`LOG_LIMIT`] bytes) is returned for the step to keep with its entry; `build -v` also prints it as it comes.
//! A failed script's log (the same last [`LOG_LIMIT`] bytes) is kept under the store's
//! `logs/failed/` (the newest 20), and the error names the command that prints it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::util::progress::Progress;

/// The environment scripts get: nothing from the caller's.
pub const SCRIPT_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ("HOME", "/root"),
    ("LC_ALL", "C.UTF-8"),
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
    ("SOURCE_DATE_EPOCH", "0"),
];

/// What a script run produced.
pub struct RunOutput {
    /// The captured layer tree (whiteouts and opaque markers included).
    pub layer: Digest,
    /// Combined stdout and stderr of the script.
    pub log: String,
}

/// What a script may use of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long it may run before it is killed.
    pub timeout: Duration,
    /// How many bytes it may add to the store's file system while it runs; also the largest
    /// file it may write (`RLIMIT_FSIZE`).
    pub write_bytes: u64,
    /// How many processes and threads it may run at once.
    pub tasks: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: Duration::from_secs(1800), write_bytes: 32 << 30, tasks: 4096 }
    }
}

impl Limits {
    /// The default limits with this timeout.
    pub fn with_timeout(timeout: Duration) -> Limits {
        Limits { timeout, ..Limits::default() }
    }
}

/// Below this much free space on the store's file system (or a twentieth of its size, if that is
/// less), a script that has written anything is stopped, whatever its limit: the host keeps room
/// to work.
pub const FREE_SPACE_RESERVE: u64 = 256 << 20;

/// Run `script` (a `/bin/sh -e` script) chrooted in an overlay over `base`; capture the layer.
pub fn run(
    store: &mut Store,
    base: &Digest,
    script: &str,
    limits: &Limits,
    progress: &Progress,
) -> anyhow::Result<RunOutput> {
    let _span = tracing::debug_span!("sandbox", base = %base.short()).entered();
    let work = tempfile::Builder::new().prefix("run-").tempdir_in(store.tmp_dir())?;
    // Hardlinked checkouts (kept between runs, see `lowers`) as the read-only lower directories.
    let lowers = {
        let _span = tracing::debug_span!("sandbox lower directories").entered();
        crate::store::lowers::lowers_for(store, base, work.path())?
    };
    let lower = lowers.dirs.iter().map(|l| shell_path(l)).collect::<anyhow::Result<Vec<_>>>()?.join(":");
    let (upper, ovl_work, merged) = (work.path().join("upper"), work.path().join("work"), work.path().join("root"));
    for d in [&upper, &ovl_work, &merged] {
        fs_err::create_dir(d)?;
    }
    // The overlay's root takes the upper directory's metadata: make it the base root's.
    store.tree(base)?.meta.apply(&upper, false, store.privileged())?;
    let script_file = work.path().join("script.sh");
    let cgroup = PidsCgroup::new(limits.tasks);
    fs_err::write(&script_file, script)?;
    let setup = format!(
        r#"set -e
mount -t overlay overlay -o nodev,lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off,index=off,xino=off {root}
for d in proc dev run tmp; do [ -d {root}/$d ] || {{ echo "the image has no /$d directory" >&2; exit 1; }}; done
mount -t proc proc {root}/proc
for p in sys sysrq-trigger irq bus fs; do
  [ ! -e {root}/proc/$p ] || mount --bind -o ro {root}/proc/$p {root}/proc/$p
done
mount -t tmpfs -o mode=0755,nosuid dev {root}/dev
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $n
  mknod -m 666 {root}/dev/$1 c $2 $3
done
ln -s /proc/self/fd {root}/dev/fd; mkdir {root}/dev/pts {root}/dev/shm
mount -t tmpfs -o mode=1777,nosuid,nodev,size=10% shm {root}/dev/shm
mount -t tmpfs -o mode=0755,nosuid,nodev,size=10% run {root}/run
mount -t tmpfs -o mode=1777,nosuid,nodev,size=25% tmp {root}/tmp
for p in kcore keys timer_list timer_stats latency_stats sched_debug kmsg; do
  [ ! -f {root}/proc/$p ] || mount --bind {root}/dev/null {root}/proc/$p
done
for d in acpi scsi asound; do
  [ ! -d {root}/proc/$d ] || mount -t tmpfs -o ro,nosuid,nodev,noexec,size=0 masked {root}/proc/$d
done
# /dev read-only: its nodes work (a device file is not written through its file system), but no
# node can be added; every writable mount is nodev.
mount -o remount,bind,ro,nosuid,noexec {root}/dev
cp {script} {root}/tmp/.strata-script
exec {exe} sandbox-exec {root} --max-file-size {file_size}{cgroup}
"#,
        lower = lower,
        upper = shell_path(&upper)?,
        work = shell_path(&ovl_work)?,
        root = shell_path(&merged)?,
        script = shell_path(&script_file)?,
        exe = shell_path(&std::env::current_exe().context("cannot find strata's own executable")?)?,
        file_size = limits.write_bytes,
        cgroup = match &cgroup {
            Some(c) => format!(" --cgroup {}", shell_path(&c.dir)?),
            None => String::new(),
        },
    );
    let spinner = progress.spinner("running scripts");
    // Its own process group, which the watch kills; `--kill-child`: when unshare dies (killed by
    // the watch, or with strata), so does the sandbox's first process, and with it the whole
    // PID namespace.
    let mut cmd = crate::util::process::command("unshare");
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.args(["--mount", "--pid", "--net", "--ipc", "--uts", "--fork", "--kill-child", "--propagation", "private"])
        .args(["/bin/sh", "-c", &setup])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in SCRIPT_ENV {
        cmd.env(k, v);
    }
    let script_span = tracing::debug_span!("sandbox script").entered();
    let watch = Watch::start(&upper, limits)?;
    let mut child = cmd.spawn().context("failed to run the sandbox (unshare from util-linux)")?;
    let done = std::sync::atomic::AtomicBool::new(false);
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let (captured, stopped) = std::thread::scope(|s| {
        let watcher = s.spawn(|| watch.watch(group, &done));
        let captured = capture(&mut child, progress.streams_output().then_some(&spinner));
        if captured.is_err() {
            // Nobody reads its output any more: end it rather than wait for it.
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (captured, watcher.join().unwrap_or_else(|_| Some("the sandbox's watch panicked".into())))
    });
    let status = child.wait()?;
    let captured = captured?;
    // What it wrote in its last moments, after the watch's last look, counts too.
    let stopped = stopped.or_else(|| disk_usage(&upper).ok().and_then(|(used, free)| watch.over(used, free)));
    spinner.finish_and_clear();
    drop(script_span);
    let text = String::from_utf8_lossy(&captured.log).into_owned();
    let failure = match status.code() {
        _ if stopped.is_some() => stopped,
        Some(0) => None,
        Some(137) | None => Some("the script was killed (out of memory?)".to_string()),
        // 128 + SIGXFSZ: the shell's status when a command was killed for a file over RLIMIT_FSIZE.
        Some(153) => Some(format!(
            "the script failed with exit status 153: a file larger than its limit of {} (--script-write-limit)",
            crate::util::text::bytes(limits.write_bytes)
        )),
        // 128 + SIGSYS: the system call filter killed a program of another ABI.
        Some(159) => Some(
            "the script failed with exit status 159: a program made a system call of another ABI (i386 or x32), \
             which the sandbox does not run"
                .to_string(),
        ),
        Some(code) => Some(format!("the script failed with exit status {code}")),
    };
    if let Some(why) = failure {
        let saved = match save_failed_log(store, base, script, &captured.log) {
            Ok(id) => format!("\nthe whole log: strata log --failed {id}"),
            Err(e) => format!("\n(the whole log could not be kept: {e:#})"),
        };
        // Error output last, where the eye lands (it is interleaved in the whole log).
        let ordered = [&captured.stdout[..], &captured.stderr[..]].concat();
        bail!("{why}; last output:\n{}{saved}", tail(&String::from_utf8_lossy(&ordered)));
    }
    let (batch, layer, _) = crate::store::import::import_tree(store, &upper, true, progress)?;
    batch.commit(store, None)?;
    let _cleanup = tracing::debug_span!("sandbox cleanup").entered();
    crate::store::local::make_writable(work.path());
    drop(work);
    Ok(RunOutput { layer, log: text })
}

/// A pids cgroup of its own for one script run (`pids.max` = its task limit), removed when
/// dropped. Root is exempt from `RLIMIT_NPROC`, so only a cgroup bounds a root script's
/// processes. cgroup v1's pids hierarchy is used below strata's own pids cgroup; with v2, below
/// strata's own cgroup when it delegates the pids controller, else below the root cgroup.
struct PidsCgroup {
    dir: std::path::PathBuf,
}

impl PidsCgroup {
    /// `None` (with a warning) where there is no writable pids controller.
    fn new(tasks: u64) -> Option<PidsCgroup> {
        let parent = pids_hierarchy()?;
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        remove_stale_cgroups(&parent);
        let dir = parent.join(format!("strata-sandbox-{}-{}-{n}", pid_namespace(), std::process::id()));
        let made = fs_err::create_dir(&dir).and_then(|_| fs_err::write(dir.join("pids.max"), tasks.to_string()));
        match made {
            Ok(()) => Some(PidsCgroup { dir }),
            Err(e) => {
                let _ = fs_err::remove_dir(&dir);
                tracing::warn!("scripts run without a process limit: {e}");
                None
            }
        }
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // The tasks are gone once the sandbox's PID namespace is; their release can lag a little.
        for _ in 0..50 {
            if fs_err::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!("cannot remove the cgroup {}", self.dir.display());
    }
}

/// The directory under which a pids cgroup can be made, if any.
fn pids_hierarchy() -> Option<std::path::PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let own = fs_err::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // cgroup v1: "N:pids:/path".
    if let Some(path) = own.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        controllers.split(',').any(|c| c == "pids").then(|| path.trim_start_matches('/').to_string())
    }) {
        let dir = root.join("pids").join(path);
        if dir.join("cgroup.procs").exists() {
            return Some(dir);
        }
    }
    // cgroup v2 ("0::/path"): below strata's own cgroup when it gives the pids controller to its
    // children (its limits and accounting then hold for scripts too), else below the root's.
    let gives_pids = |dir: &Path| {
        fs_err::read_to_string(dir.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"))
    };
    let own_v2 = own.lines().find_map(|l| l.strip_prefix("0::")).map(|p| root.join(p.trim_start_matches('/')));
    if let Some(dir) = own_v2.filter(|d| gives_pids(d)) {
        return Some(dir);
    }
    if gives_pids(root) {
        return Some(root.to_path_buf());
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| tracing::warn!("scripts run without a process limit: no pids cgroup controller is mounted"));
    None
}

/// The inode of strata's PID namespace: process ids name processes only within it.
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs_err::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// Remove the cgroups of sandboxes whose strata process (of this PID namespace) is gone, killed
/// before it could.
fn remove_stale_cgroups(parent: &Path) {
    let Ok(dir) = fs_err::read_dir(parent) else { return };
    let ours = format!("strata-sandbox-{}-", pid_namespace());
    for e in dir.flatten() {
        let name = e.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(&ours)?.split('-').next()?.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists()) {
            let _ = fs_err::remove_dir(e.path());
        }
    }
}

/// Watches a script while it runs, and stops it (the whole process group of its sandbox) at its
/// timeout, when it has added more than its limit to the file system of its overlay, or when that
/// file system is about to fill up ([`FREE_SPACE_RESERVE`]).
struct Watch {
    path: std::path::PathBuf,
    limit: u64,
    used_before: u64,
    reserve: u64,
    timeout: Duration,
    started: std::time::Instant,
}

impl Watch {
    fn start(path: &Path, limits: &Limits) -> anyhow::Result<Watch> {
        let (used_before, free) = disk_usage(path)?;
        let reserve = FREE_SPACE_RESERVE.min((used_before + free) / 20);
        Ok(Watch {
            path: path.to_path_buf(),
            limit: limits.write_bytes,
            used_before,
            reserve,
            timeout: limits.timeout,
            started: std::time::Instant::now(),
        })
    }

    /// Poll until `done`; returns why the script was stopped, if it was.
    fn watch(&self, group: nix::unistd::Pid, done: &std::sync::atomic::AtomicBool) -> Option<String> {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let usage = disk_usage(&self.path);
            let why = if done.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            } else if self.started.elapsed() >= self.timeout {
                format!("the script timed out after {} s (--script-timeout)", self.timeout.as_secs())
            } else if let Some(why) = usage.ok().and_then(|(used, free)| self.over(used, free)) {
                why
            } else {
                continue;
            };
            // unshare leads the sandbox's process group.
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            return Some(why);
        }
        None
    }

    /// Why a script that brought the file system to `used` bytes, `free` left, must stop.
    fn over(&self, used: u64, free: u64) -> Option<String> {
        let added = used.saturating_sub(self.used_before);
        Some(if added > self.limit {
            format!(
                "the script wrote more than its limit of {} (--script-write-limit)",
                crate::util::text::bytes(self.limit)
            )
        } else if free < self.reserve && added > 0 {
            format!(
                "the script was filling the store's file system (less than {} left, {} written by the script)",
                crate::util::text::bytes(self.reserve),
                crate::util::text::bytes(added)
            )
        } else {
            return None;
        })
    }
}

/// Bytes used and bytes available to root on the file system of `path`.
fn disk_usage(path: &Path) -> anyhow::Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path)
        .with_context(|| format!("cannot read the free space of {}", path.display()))?;
    let block = st.fragment_size();
    Ok((st.blocks().saturating_sub(st.blocks_free()) * block, st.blocks_free() * block))
}

/// The capabilities a script keeps (bounding set): what package scripts need on the image's
/// files. Every other one is dropped before the script starts.
pub const KEPT_CAPS: &[caps::Capability] = &[
    caps::Capability::CAP_CHOWN,
    caps::Capability::CAP_DAC_OVERRIDE,
    caps::Capability::CAP_FOWNER,
    caps::Capability::CAP_FSETID,
    caps::Capability::CAP_KILL,
    caps::Capability::CAP_SETGID,
    caps::Capability::CAP_SETUID,
    caps::Capability::CAP_SETPCAP,
    caps::Capability::CAP_SETFCAP,
    caps::Capability::CAP_NET_BIND_SERVICE,
    caps::Capability::CAP_SYS_CHROOT,
    caps::Capability::CAP_MKNOD,
];

/// The sandbox's last step (`strata sandbox-exec ROOT`, run by the setup inside the new
/// namespaces): make `root` the root and detach the host's, close every file descriptor but
/// the output pipes (standard input becomes the image's `/dev/null`: nothing the caller left
/// open leads back to the host), drop capabilities, set `no_new_privs`, join the pids `cgroup`,
/// limit files to `max_file_size` bytes, install the system call filter ([`syscall_filter`]),
/// and run the script (`/tmp/.strata-script`) with `/bin/sh -e`.
pub fn enter(root: &Path, cgroup: Option<&Path>, max_file_size: u64) -> anyhow::Result<std::convert::Infallible> {
    use nix::mount::{umount2, MntFlags};
    use nix::sys::resource::{setrlimit, Resource};
    use std::os::unix::process::CommandExt;
    if let Some(dir) = cgroup {
        // "0": the writing process.
        fs_err::write(dir.join("cgroup.procs"), "0").context("cannot join the sandbox's pids cgroup")?;
    }
    nix::unistd::chdir(root).with_context(|| format!("cannot enter `{}`", root.display()))?;
    nix::unistd::pivot_root(".", ".").context("cannot make the image the root (pivot_root)")?;
    umount2(".", MntFlags::MNT_DETACH).context("cannot detach the host's root")?;
    nix::unistd::chdir("/")?;
    let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty())
        .context("cannot open the image's /dev/null")?;
    nix::unistd::dup2(null, 0).context("cannot make /dev/null standard input")?;
    let open: Vec<i32> = fs_err::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in open {
        // The directory listing's own descriptor is closed already: EBADF.
        let _ = nix::unistd::close(fd);
    }
    let supported = caps::runtime::thread_all_supported();
    for cap in supported {
        if !KEPT_CAPS.contains(&cap) {
            caps::drop(None, caps::CapSet::Bounding, cap).with_context(|| format!("cannot drop {cap}"))?;
        }
    }
    for set in [caps::CapSet::Inheritable, caps::CapSet::Ambient] {
        caps::clear(None, set).context("cannot clear capabilities")?;
    }
    nix::sys::prctl::set_no_new_privs().context("cannot set no_new_privs")?;
    setrlimit(Resource::RLIMIT_FSIZE, max_file_size, max_file_size).context("cannot limit the size of files")?;
    let filter = syscall_filter()?;
    seccompiler::apply_filter(&filter).context("cannot install the system call filter (seccomp)")?;
    let err = std::process::Command::new("/bin/sh").args(["-e", "/tmp/.strata-script"]).exec();
    Err(anyhow::Error::new(err).context("cannot run /bin/sh in the image"))
}

/// System calls a script gets `EPERM` for, whatever its capabilities: kernel modules, kexec,
/// reboot, the kernel keyrings (shared with the host's root), BPF, perf, mounts and the new mount
/// API, swap, the kernel log, accounting, clocks, raw I/O ports, `open_by_handle_at` (it reaches
/// files outside the root), userfaultfd, io_uring, quotas and `setns`.
const DENIED_SYSCALLS: &[i64] = &[
    nix::libc::SYS_init_module,
    nix::libc::SYS_finit_module,
    nix::libc::SYS_delete_module,
    nix::libc::SYS_kexec_load,
    nix::libc::SYS_kexec_file_load,
    nix::libc::SYS_reboot,
    nix::libc::SYS_add_key,
    nix::libc::SYS_request_key,
    nix::libc::SYS_keyctl,
    nix::libc::SYS_bpf,
    nix::libc::SYS_perf_event_open,
    nix::libc::SYS_mount,
    nix::libc::SYS_umount2,
    nix::libc::SYS_pivot_root,
    nix::libc::SYS_open_tree,
    nix::libc::SYS_move_mount,
    nix::libc::SYS_fsopen,
    nix::libc::SYS_fsconfig,
    nix::libc::SYS_fsmount,
    nix::libc::SYS_fspick,
    nix::libc::SYS_mount_setattr,
    nix::libc::SYS_swapon,
    nix::libc::SYS_swapoff,
    nix::libc::SYS_syslog,
    nix::libc::SYS_acct,
    nix::libc::SYS_settimeofday,
    nix::libc::SYS_clock_settime,
    nix::libc::SYS_clock_adjtime,
    nix::libc::SYS_adjtimex,
    #[cfg(target_arch = "x86_64")]
    nix::libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    nix::libc::SYS_ioperm,
    nix::libc::SYS_open_by_handle_at,
    nix::libc::SYS_userfaultfd,
    nix::libc::SYS_io_uring_setup,
    nix::libc::SYS_io_uring_enter,
    nix::libc::SYS_io_uring_register,
    nix::libc::SYS_quotactl,
    nix::libc::SYS_lookup_dcookie,
    nix::libc::SYS_vhangup,
    nix::libc::SYS_setns,
];

/// The script's system call filter (seccomp): [`DENIED_SYSCALLS`] fail with `EPERM`; `clone` and
/// `unshare` fail with `EPERM` when they ask for a new user namespace (where a script would hold
/// every capability again, over a namespace of its own, which is the kernel's widest attack
/// surface); `clone3`, whose flags a filter cannot read, fails with `ENOSYS`, so that the C
/// libraries fall back to `clone`. Calls of another ABI (i386, x32) end the process.
pub fn syscall_filter() -> anyhow::Result<seccompiler::BpfProgram> {
    use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
    let new_user = || -> anyhow::Result<Vec<SeccompRule>> {
        let flags = nix::libc::CLONE_NEWUSER as u64;
        let cond = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flags), flags)?;
        Ok(vec![SeccompRule::new(vec![cond])?])
    };
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> =
        DENIED_SYSCALLS.iter().map(|&nr| (nr, vec![])).collect();
    rules.insert(nix::libc::SYS_clone, new_user()?);
    rules.insert(nix::libc::SYS_unshare, new_user()?);
    let eperm = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(nix::libc::EPERM as u32),
        std::env::consts::ARCH.try_into().context("no system call filter for this architecture")?,
    )?;
    let mut program: seccompiler::BpfProgram = eperm.try_into()?;
    // clone3 first. The filter's prologue (3 instructions) sends any other architecture to
    // "kill"; x32 calls (the x86-64 architecture, numbers with bit 30) end the process too.
    let nr = |code: u16, k: u32, jt: u8, jf: u8| seccompiler::sock_filter { code, jt, jf, k };
    let (ld, jeq, jge, ret) = (0x20u16, 0x15u16, 0x35u16, 0x06u16);
    let extra = [
        nr(ld, 0, 0, 0),
        // -1, which debuggers use to skip a call, is no x32 call.
        nr(jeq, u32::MAX, 2, 0),
        nr(jge, 0x4000_0000, 0, 1),
        nr(ret, nix::libc::SECCOMP_RET_KILL_PROCESS, 0, 0),
        nr(jeq, nix::libc::SYS_clone3 as u32, 0, 1),
        nr(ret, nix::libc::SECCOMP_RET_ERRNO | nix::libc::ENOSYS as u32, 0, 0),
    ];
    anyhow::ensure!(program.len() > 3, "unexpected system call filter");
    program.splice(3..3, extra);
    Ok(program)
}

/// The most of a script's output a log keeps: past this, its beginning is cut (the end is what
/// explains a failure).
pub const LOG_LIMIT: usize = 8 << 20;
/// How many logs of failed scripts `logs/failed` keeps, the newest.
const FAILED_LOGS_KEPT: usize = 20;

/// What a script printed: both streams interleaved as they came (the log), and each stream on
/// its own (for the error message, which shows error output last, as it always has).
struct Captured {
    log: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Read the sandbox's stdout and stderr until both end, at most [`LOG_LIMIT`] bytes of each
/// kept; with `stream`, print each line on stderr as it comes, above the spinner.
fn capture(child: &mut std::process::Child, stream: Option<&indicatif::ProgressBar>) -> anyhow::Result<Captured> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = std::sync::Mutex::new(Capped::default());
    let pump = |reader: &mut dyn Read| -> anyhow::Result<Vec<u8>> {
        let mut own = Capped::default();
        for line in BufReader::new(reader).split(b'\n') {
            let mut line = line.context("failed to read the script's output")?;
            if let Some(bar) = stream {
                bar.suspend(|| eprintln!("| {}", String::from_utf8_lossy(&line)));
            }
            line.push(b'\n');
            log.lock().expect("log lock").push(&line);
            own.push(&line);
        }
        Ok(own.finish())
    };
    let (out, err) = std::thread::scope(|s| {
        let err = s.spawn(|| pump(&mut { stderr }));
        let out = pump(&mut { stdout });
        (out, err.join().unwrap_or_else(|_| Err(anyhow::anyhow!("reading the script's errors panicked"))))
    });
    Ok(Captured { log: log.into_inner().expect("log lock").finish(), stdout: out?, stderr: err? })
}

/// A buffer that keeps the last [`LOG_LIMIT`] bytes or so, from a line start, and counts what it
/// dropped.
#[derive(Default)]
struct Capped {
    buf: Vec<u8>,
    cut: u64,
}

impl Capped {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > 2 * LOG_LIMIT {
            self.keep_last(LOG_LIMIT);
        }
    }

    /// Drop the beginning so that at most `n` bytes remain, cutting at a line start when there
    /// is one.
    fn keep_last(&mut self, n: usize) {
        let at = self.buf.len().saturating_sub(n);
        // At the first line start after `at`, unless that would leave nothing (one long line).
        let cut = match self.buf[at..].iter().position(|&b| b == b'\n') {
            Some(i) if at + i + 1 < self.buf.len() => at + i + 1,
            _ => at,
        };
        self.buf.drain(..cut);
        self.cut += cut as u64;
    }

    fn finish(mut self) -> Vec<u8> {
        if self.buf.len() > LOG_LIMIT {
            self.keep_last(LOG_LIMIT);
        }
        if self.cut == 0 {
            return self.buf;
        }
        let mut out = format!("[strata: the first {} bytes of output were cut]\n", self.cut).into_bytes();
        out.extend_from_slice(&self.buf);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_keeps_its_last_lines_and_says_what_was_cut() {
        let mut log = Capped::default();
        log.push(b"short\n");
        assert_eq!(log.finish(), b"short\n");
        let mut log = Capped::default();
        let line = [b'x'; 1023].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        for _ in 0..(3 * LOG_LIMIT / 1024) {
            log.push(&line);
        }
        log.push(b"the end\n");
        let out = log.finish();
        let text = String::from_utf8(out).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        let kept = rest.len();
        assert!(kept <= LOG_LIMIT && kept > LOG_LIMIT - 1024, "{kept}");
        assert_eq!(head, format!("[strata: the first {} bytes of output were cut]", 3 * LOG_LIMIT + 8 - kept));
        assert!(rest.starts_with('x') && rest.ends_with("xx\nthe end\n"), "cut at a line start");
    }
}

/// Keep a failed script's whole log under `logs/failed/ID.log` (the newest
/// [`FAILED_LOGS_KEPT`]); returns the id, which names the script and the tree it ran on.
fn save_failed_log(store: &Store, base: &Digest, script: &str, log: &[u8]) -> anyhow::Result<String> {
    let dir = failed_logs_dir(store.root());
    fs_err::create_dir_all(&dir)?;
    let id = blake3::hash(format!("{}\0{script}", base.to_hex()).as_bytes()).to_hex()[..12].to_string();
    let tmp = dir.join(format!(".{id}.tmp"));
    fs_err::write(&tmp, log)?;
    fs_err::rename(&tmp, dir.join(format!("{id}.log")))?;
    let mut logs = failed_logs(store.root())?;
    for old in logs.drain(FAILED_LOGS_KEPT.min(logs.len())..) {
        let _ = fs_err::remove_file(old.path);
    }
    Ok(id)
}

/// Where the logs of failed scripts are kept.
pub fn failed_logs_dir(store_root: &Path) -> std::path::PathBuf {
    store_root.join("logs/failed")
}

/// A kept log of a failed script.
#[derive(Debug, serde::Serialize)]
pub struct FailedLog {
    pub id: String,
    pub path: std::path::PathBuf,
    pub bytes: u64,
    /// Seconds since 1970.
    pub written: i64,
}

/// The kept logs of failed scripts, newest first.
pub fn failed_logs(store_root: &Path) -> anyhow::Result<Vec<FailedLog>> {
    let dir = failed_logs_dir(store_root);
    let mut out = Vec::new();
    let entries = match fs_err::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".log") else { continue };
        let meta = e.metadata()?;
        let written = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        out.push(FailedLog { id: id.to_string(), path: e.path(), bytes: meta.len(), written });
    }
    out.sort_by(|a, b| (b.written, &b.id).cmp(&(a.written, &a.id)));
    Ok(out)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A path safe to paste into the setup script (the store's own paths: no quotes or spaces).
fn shell_path(p: &Path) -> anyhow::Result<String> {
    let s = p.to_str().ok_or_else(|| anyhow::anyhow!("`{}` is not UTF-8", p.display()))?;
    if s.contains(|c: char| c.is_whitespace() || "'\"\\$`,:;&|<>()".contains(c)) {
        bail!("the store path `{s}` contains characters the sandbox cannot pass to mount; use a plainer --store path");
    }
    Ok(s.to_string())
}
