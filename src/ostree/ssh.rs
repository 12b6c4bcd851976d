//! Pushing to a repository on another host over ssh, with rsync, keeping it servable.
//!
//! The far side needs only sshd and rsync (no ostree). strata keeps a local mirror of each
//! destination (`<store>/cache/ostree-mirrors/<hash of the URL>`), an archive repository that
//! holds the destination's refs, their commits and delta superblocks, plus whatever strata
//! pushed. A push:
//! 1. refreshes the mirror's refs, the commits they name and the delta superblocks from the far
//!    side (so that refs others pushed stay in the summary);
//! 2. pushes the ref into the mirror with the local algorithm ([`super::push::push`]), which
//!    writes the objects, deltas, ref and the signed summary;
//! 3. uploads the mirror in the same order as a local push: every object but commits, then
//!    signatures, then commits; delta parts, then superblocks; the refs; `summary.sig` and
//!    `summary`. rsync writes each file under a temporary name and renames it, and
//!    `--delay-updates` renames a whole pass at its end, so the far side never has a partial
//!    file, nor a commit before its objects.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::push::PushReport;
use super::sign::Signer;
use crate::util::progress::Progress;

/// `ssh://[USER@]HOST[:PORT]/PATH`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshUrl {
    /// `USER@HOST` or `HOST`.
    pub host: String,
    pub port: Option<u16>,
    /// Absolute path on the far side.
    pub path: String,
}

impl SshUrl {
    pub fn parse(url: &str) -> anyhow::Result<SshUrl> {
        let expected = "expected ssh://[USER@]HOST[:PORT]/PATH";
        let Some(rest) = url.strip_prefix("ssh://") else { bail!("`{url}`: {expected}") };
        let Some(slash) = rest.find('/') else { bail!("`{url}` has no path: {expected}") };
        let (authority, path) = rest.split_at(slash);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(p.parse::<u16>().map_err(|_| anyhow::anyhow!("`{url}`: port `{p}` is not a number: {expected}"))?),
            ),
            None => (authority, None),
        };
        let host_part = host.rsplit('@').next().unwrap_or("");
        let valid =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid(host_part) || host.split('@').count() > 2 || host.split('@').any(|p| !valid(p)) {
            bail!("`{url}`: invalid host `{host}`: {expected}");
        }
        let path_ok = path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@'));
        if path.len() < 2 || !path_ok || path.split('/').any(|p| p == "..") {
            bail!("`{url}`: invalid path `{path}` (letters, digits and `/._-+@` only, no `..`): {expected}");
        }
        Ok(SshUrl { host: host.to_string(), port, path: path.trim_end_matches('/').to_string() })
    }

    /// `HOST:PATH/rel` for rsync.
    fn remote(&self, rel: &str) -> String {
        format!("{}:{}/{rel}", self.host, self.path)
    }
}

/// How to run ssh: a command line (`ssh` by default) to which the port is added.
pub struct Ssh {
    pub command: String,
}

impl Ssh {
    fn rsh(&self, url: &SshUrl) -> String {
        match url.port {
            Some(p) => format!("{} -p {p}", self.command),
            None => self.command.clone(),
        }
    }

    /// Run `rsync ARGS` with this ssh; `what` names the step in errors.
    fn rsync(&self, url: &SshUrl, what: &str, args: &[&str]) -> anyhow::Result<()> {
        let out = crate::util::process::command("rsync")
            .arg("-e")
            .arg(self.rsh(url))
            .args(args)
            .output()
            .context("cannot run rsync (install the rsync package)")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!("{what}: rsync failed: {}", err.trim().lines().last().unwrap_or(""));
        }
        Ok(())
    }
}

/// The mirror directory of `url` under `cache`.
fn mirror_dir(cache: &Path, url: &str) -> PathBuf {
    cache.join("ostree-mirrors").join(&blake3::hash(url.as_bytes()).to_hex()[..16])
}

/// The local mirror of one destination, locked for a push: gc trims only mirrors no push holds.
pub struct Mirror {
    dir: PathBuf,
    _lock: crate::store::lock::StoreLock,
}

impl Mirror {
    /// Lock (shared, waiting at most `wait` for a gc trimming it) and create the mirror of `url`
    /// under `cache`.
    pub fn lock(cache: &Path, url: &str, wait: std::time::Duration) -> anyhow::Result<Mirror> {
        let dir = mirror_dir(cache, url);
        fs_err::create_dir_all(&dir)?;
        let lock = crate::store::lock::StoreLock::acquire(
            &mirror_lock_path(&dir),
            crate::store::lock::LockMode::Shared,
            wait,
            || tracing::info!("waiting for gc to finish trimming {}", dir.display()),
        )?;
        Ok(Mirror { dir, _lock: lock })
    }
}

/// The lock a push holds shared for its whole run (fetch, push into the mirror, upload), and
/// [`trim_mirror`] exclusively: `<mirror>.lock`, beside the mirror.
fn mirror_lock_path(mirror: &Path) -> PathBuf {
    mirror.with_extension("lock")
}

/// What [`trim_mirror`] removed (or would remove) from the local mirrors of ssh destinations.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MirrorsTrimmed {
    /// Mirrors looked at.
    pub mirrors: u64,
    pub files: u64,
    pub bytes: u64,
    /// Mirrors a push was using: left for a later gc.
    pub deferred: u64,
}

/// Trim every mirror under `cache/ostree-mirrors` to what a push fetches back from the far side
/// anyway: config, refs, commits and their signatures, delta superblocks and the summary stay;
/// file, tree and metadata objects, delta parts and leftovers under `tmp/` go. They are on the
/// far side already (a push uploads before it ends, and uploads skip what the far side has), so
/// the next push copies into the mirror only the objects of its new commits, and uploads only
/// what the far side lacks. A mirror a push is using is skipped and counted as deferred.
pub fn trim_mirrors(cache: &Path, dry_run: bool) -> anyhow::Result<MirrorsTrimmed> {
    let mut out = MirrorsTrimmed::default();
    let Ok(dir) = fs_err::read_dir(cache.join("ostree-mirrors")) else { return Ok(out) };
    for e in dir {
        let e = e?;
        if !e.file_type()?.is_dir() {
            continue;
        }
        out.mirrors += 1;
        let Some(_lock) = crate::store::lock::StoreLock::try_exclusive(&mirror_lock_path(&e.path()))? else {
            out.deferred += 1;
            continue;
        };
        let (files, bytes) = trim_mirror(&e.path(), dry_run)?;
        out.files += files;
        out.bytes += bytes;
    }
    Ok(out)
}

/// Trim one mirror (its lock held); returns (files, bytes).
fn trim_mirror(mirror: &Path, dry_run: bool) -> anyhow::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut remove = |path: &Path, len: u64| -> anyhow::Result<()> {
        if !dry_run {
            match fs_err::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        files += 1;
        bytes += len;
        Ok(())
    };
    for (sub, keep) in [
        (
            "objects",
            &(|name: &str| name.ends_with(".commit") || name.ends_with(".commitmeta")) as &dyn Fn(&str) -> bool,
        ),
        ("deltas", &|name: &str| name == "superblock"),
        ("tmp", &|_: &str| false),
    ] {
        let mut stack = vec![mirror.join(sub)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs_err::read_dir(&dir) else { continue };
            for f in entries {
                let f = f?;
                let t = f.file_type()?;
                if t.is_dir() {
                    stack.push(f.path());
                } else if !keep(&f.file_name().to_string_lossy()) {
                    remove(&f.path(), f.metadata()?.len())?;
                }
            }
        }
    }
    Ok((files, bytes))
}

/// Push `reference` from the archive repository `src` to the repository at `url`.
pub fn push(
    src: &Path,
    reference: &str,
    url: &str,
    ssh: &Ssh,
    mirror: &Mirror,
    signers: &[Signer],
    progress: &Progress,
) -> anyhow::Result<PushReport> {
    let parsed = SshUrl::parse(url)?;
    let _span = tracing::debug_span!("push over ssh", url).entered();
    let mirror = mirror.dir.as_path();
    let far = FarSide { ssh, url: &parsed, mirror };
    super::export::open_repo(mirror, Some(super::export::RepoMode::Archive))?;

    // 1. The far side's refs, their commits and delta superblocks.
    far.fetch()?;

    // 2. Into the mirror.
    let mut report = super::push::push(src, reference, mirror, signers, progress)?;

    // 3. Up, in order.
    far.create()?;
    far.upload()?;
    report.dest = PathBuf::from(url);
    Ok(report)
}

/// The destination of a push over ssh, and its local mirror.
struct FarSide<'a> {
    ssh: &'a Ssh,
    url: &'a SshUrl,
    mirror: &'a Path,
}

impl FarSide<'_> {
    /// `MIRROR/rel`: a path in the mirror, for rsync.
    fn local(&self, rel: &str) -> String {
        format!("{}/{rel}", self.mirror.display())
    }

    /// Fetch the far side's refs, the commits they name and its delta superblocks, if it has a repository.
    fn fetch(&self) -> anyhow::Result<()> {
        let (ssh, parsed) = (self.ssh, self.url);
        let m = |rel: &str| self.local(rel);
        let exists =
            ssh.rsync(parsed, "list the destination", &["-q", "--list-only", &parsed.remote("config")]).is_ok();
        if exists {
            ssh.rsync(
                parsed,
                "fetch the destination's refs",
                &["-a", "--delete", &parsed.remote("refs/"), &m("refs/")],
            )?;
            ssh.rsync(
                parsed,
                "fetch the destination's commits",
                &[
                    "-a",
                    "--include=*/",
                    "--include=*.commit",
                    "--include=*.commitmeta",
                    "--exclude=*",
                    "--prune-empty-dirs",
                    &parsed.remote("objects/"),
                    &m("objects/"),
                ],
            )?;
            ssh.rsync(
                parsed,
                "fetch the destination's delta superblocks",
                &[
                    "-a",
                    "--include=*/",
                    "--include=superblock",
                    "--exclude=*",
                    "--prune-empty-dirs",
                    &parsed.remote("deltas/"),
                    &m("deltas/"),
                ],
            )
            .ok();
        }
        Ok(())
    }

    /// Create the destination directory itself, then the repository's directories and config.
    fn create(&self) -> anyhow::Result<()> {
        let (ssh, parsed) = (self.ssh, self.url);
        let skeleton = ["--include=*/", "--include=/config", "--exclude=*"];
        let mut args = vec!["-a", "--ignore-existing", "--exclude=/tmp/*", "--exclude=/strata-push.lock"];
        args.extend_from_slice(&skeleton);
        let root = format!("{}/", self.mirror.display());
        let dest_root = format!("{}:{}/", parsed.host, parsed.path);
        let mkdir = crate::util::process::command("sh")
            .arg("-c")
            .arg(format!("{} {} mkdir -p '{}'", ssh.rsh(parsed), parsed.host, parsed.path))
            .output()?;
        if !mkdir.status.success() {
            bail!(
                "cannot create {} on {}: {}",
                parsed.path,
                parsed.host,
                String::from_utf8_lossy(&mkdir.stderr).trim()
            );
        }
        args.push(&root);
        args.push(&dest_root);
        ssh.rsync(parsed, "create the destination repository", &args)
    }

    /// Upload the mirror in a servable order: objects, signatures, commits, deltas, refs, summary.
    fn upload(&self) -> anyhow::Result<()> {
        self.up(
            "upload objects",
            &["--exclude=*.commit", "--exclude=*.commitmeta"],
            "objects/",
            &["--ignore-existing"],
        )?;
        self.up("upload signatures", &["--include=*/", "--include=*.commitmeta", "--exclude=*"], "objects/", &[])?;
        self.up(
            "upload commits",
            &["--include=*/", "--include=*.commit", "--exclude=*"],
            "objects/",
            &["--ignore-existing"],
        )?;
        self.up("upload static deltas", &["--exclude=superblock"], "deltas/", &["--ignore-existing"])?;
        self.up(
            "upload delta superblocks",
            &["--include=*/", "--include=superblock", "--exclude=*"],
            "deltas/",
            &["--ignore-existing"],
        )?;
        self.up("upload delta indexes", &[], "delta-indexes/", &[])?;
        self.up("upload refs", &[], "refs/", &[])?;
        for file in ["summary.sig", "summary"] {
            if self.mirror.join(file).exists() {
                self.ssh.rsync(
                    self.url,
                    &format!("upload {file}"),
                    &["-a", &self.local(file), &self.url.remote(file)],
                )?;
            }
        }
        if !self.mirror.join("summary.sig").exists() {
            // An unsigned push: a signature of an earlier summary would not match the new one
            // (and clients cache the summary by its signature).
            let (ssh, parsed) = (self.ssh, self.url);
            let rm = crate::util::process::command("sh")
                .arg("-c")
                .arg(format!("{} {} rm -f '{}/summary.sig'", ssh.rsh(parsed), parsed.host, parsed.path))
                .output()?;
            if !rm.status.success() {
                bail!(
                    "cannot remove the stale summary.sig on {}: {}",
                    parsed.host,
                    String::from_utf8_lossy(&rm.stderr).trim()
                );
            }
        }
        Ok(())
    }

    /// Upload the mirror's `rel` with rsync `filters` and `extra` options, renamed into place at the end.
    fn up(&self, what: &str, filters: &[&str], rel: &str, extra: &[&str]) -> anyhow::Result<()> {
        let src_dir = self.local(rel);
        if !Path::new(&src_dir).exists() {
            return Ok(());
        }
        let mut args = vec!["-a", "--delay-updates"];
        args.extend_from_slice(extra);
        args.extend_from_slice(filters);
        let dest = self.url.remote(rel);
        args.push(&src_dir);
        args.push(&dest);
        self.ssh.rsync(self.url, what, &args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = SshUrl::parse("ssh://deploy@repo.example.org:2222/srv/ostree/").unwrap();
        assert_eq!(u, SshUrl { host: "deploy@repo.example.org".into(), port: Some(2222), path: "/srv/ostree".into() });
        assert_eq!(u.remote("refs/"), "deploy@repo.example.org:/srv/ostree/refs/");
        let u = SshUrl::parse("ssh://host/r").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("host", None));
        for bad in [
            "http://h/r",
            "ssh://host",
            "ssh://host:x/r",
            "ssh:///r",
            "ssh://a@b@c/r",
            "ssh://h/",
            "ssh://h/a/../b",
            "ssh://h/a b",
            "ssh://h;rm/r",
        ] {
            assert!(SshUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
