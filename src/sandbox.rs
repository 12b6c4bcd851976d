//! Running scripts (maintainer scripts, `config.sh`) against a stored tree, and capturing what
//! they change as a layer.
//!
//! The tree is checked out by hardlinks (kept between runs, see [`crate::store::lowers`]) and used
//! read-only as the lower directories of an overlayfs; the script runs in new mount, PID and network namespaces
//! (`unshare`), chrooted into the overlay, with `/proc`, a minimal `/dev`, `/run` and `/tmp`
//! mounted over it (so they never reach the layer). The network namespace has no interfaces but
//! a down loopback: no network. When the script ends, the PID namespace ends and every process it
//! left behind is killed; a script running longer than its timeout is killed too. The overlay's
//! upper directory is then stored as the layer tree.

use std::path::Path;
use std::process::Command;
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

/// Run `script` (a `/bin/sh -e` script) chrooted in an overlay over `base`; capture the layer.
pub fn run(
    store: &mut Store,
    base: &Digest,
    script: &str,
    timeout: Duration,
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
    fs_err::write(&script_file, script)?;
    let setup = format!(
        r#"set -e
mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off,index=off,xino=off {root}
for d in proc dev run tmp; do [ -d {root}/$d ] || {{ echo "the image has no /$d directory" >&2; exit 1; }}; done
mount -t proc proc {root}/proc
mount -t tmpfs -o mode=0755,nosuid dev {root}/dev
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $n
  mknod -m 666 {root}/dev/$1 c $2 $3
done
ln -s /proc/self/fd {root}/dev/fd; mkdir {root}/dev/pts {root}/dev/shm
mount -t tmpfs -o mode=0755,nosuid run {root}/run
mount -t tmpfs -o mode=1777,nosuid tmp {root}/tmp
cp {script} {root}/tmp/.strata-script
exec chroot {root} /bin/sh -e /tmp/.strata-script
"#,
        lower = lower,
        upper = shell_path(&upper)?,
        work = shell_path(&ovl_work)?,
        root = shell_path(&merged)?,
        script = shell_path(&script_file)?,
    );
    let spinner = progress.spinner("running scripts");
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=10")
        .arg(format!("{}", timeout.as_secs().max(1)))
        .args([
            "unshare",
            "--mount",
            "--pid",
            "--net",
            "--ipc",
            "--uts",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
        ])
        .args(["/bin/sh", "-c", &setup])
        .env_clear();
    for (k, v) in SCRIPT_ENV {
        cmd.env(k, v);
    }
    let started = std::time::Instant::now();
    let script_span = tracing::debug_span!("sandbox script").entered();
    let out = cmd.output().context("failed to run the sandbox (unshare and timeout from util-linux and coreutils)")?;
    spinner.finish_and_clear();
    drop(script_span);
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let timed_out = started.elapsed() >= timeout;
    match out.status.code() {
        Some(0) => {}
        Some(124 | 137) | None if timed_out => {
            bail!("the script timed out after {} s; last output:\n{}", timeout.as_secs(), tail(&log))
        }
        Some(137) | None => bail!("the script was killed (out of memory?); last output:\n{}", tail(&log)),
        Some(code) => bail!("the script failed with exit status {code}; last output:\n{}", tail(&log)),
    }
    let (batch, layer, _) = crate::store::import::import_tree(store, &upper, true, progress)?;
    batch.commit(store, None)?;
    let _cleanup = tracing::debug_span!("sandbox cleanup").entered();
    crate::store::local::make_writable(work.path());
    drop(work);
    Ok(RunOutput { layer, log })
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
