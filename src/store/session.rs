//! Sessions: every open store handle announces itself, so that gc knows which processes may
//! still use what it finds dead (see [`crate::store::doomed`] for the protocol).
//!
//! A session is a file `<store>/sessions/<boot>-<start>-<pid>-<n>` that its handle holds under an
//! exclusive `flock` for as long as it lives, and removes on drop. `start` is `CLOCK_BOOTTIME`
//! in nanoseconds, taken before the handle reads anything from the database; `boot` is the
//! kernel's boot id (monotonic clocks of two boots do not compare). Invariants:
//! - a session file becomes visible under its final name only once locked (it is created under
//!   a temporary name and renamed), so gc never mistakes a starting session for a dead one;
//! - a session file whose lock can be taken belongs to a dead process: gc removes it;
//! - start times only grow within a boot, so "started before gc's mark" is a comparison.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// One live session, as gc sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub name: String,
    pub boot: String,
    /// `CLOCK_BOOTTIME` nanoseconds when it started.
    pub start: u64,
    pub pid: u32,
}

/// A held session; dropping it ends the session.
pub struct Session {
    path: PathBuf,
    name: String,
    _lock: Flock<std::fs::File>,
}

/// The kernel's boot id.
pub fn boot_id() -> String {
    fs_err::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `CLOCK_BOOTTIME` in nanoseconds: monotonic within a boot, and counting time suspended.
pub fn clock_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME is always there");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn dir(root: &Path) -> PathBuf {
    root.join("sessions")
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Session {
    /// Start a session on the store at `root`.
    pub fn start(root: &Path) -> anyhow::Result<Session> {
        let dir = dir(root);
        fs_err::create_dir_all(&dir)?;
        let start = clock_ns();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{start:020}-{}-{n}", boot_id(), std::process::id());
        let tmp = dir.join(format!(".{name}"));
        let file = fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(&tmp)?.into_parts().0;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| anyhow::Error::new(e).context(format!("cannot lock `{}`", tmp.display())))?;
        let path = dir.join(&name);
        fs_err::rename(&tmp, &path)?;
        Ok(Session { path, name, _lock: lock })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = fs_err::remove_file(&self.path);
    }
}

fn parse(name: &str) -> Option<SessionInfo> {
    // The boot id contains dashes: the last three fields are start, pid and counter.
    let mut parts = name.rsplitn(4, '-');
    let _n = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let boot = parts.next()?.to_string();
    Some(SessionInfo { name: name.to_string(), boot, start, pid })
}

/// The live sessions of the store at `root`; files of dead ones are removed on the way.
pub fn live(root: &Path) -> anyhow::Result<Vec<SessionInfo>> {
    let dir = dir(root);
    let mut out = vec![];
    let Ok(entries) = fs_err::read_dir(&dir) else { return Ok(out) };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with('.') {
            // A session being created, or what a crash left of one: a day-old one is debris.
            let old = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|m| m.elapsed().ok());
            if old.is_some_and(|age| age.as_secs() > 86400) {
                let _ = fs_err::remove_file(&path);
            }
            continue;
        }
        let Ok(file) = fs_err::File::open(&path).map(|f| f.into_parts().0) else { continue };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_dead) => {
                let _ = fs_err::remove_file(&path);
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                if let Some(info) = parse(&name) {
                    out.push(info);
                }
            }
            Err((_, e)) => return Err(anyhow::Error::new(e).context(format!("cannot check `{}`", path.display()))),
        }
    }
    out.sort_by_key(|s| s.start);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_seen_while_held_and_gone_after() {
        let d = tempfile::tempdir().unwrap();
        let a = Session::start(d.path()).unwrap();
        let b = Session::start(d.path()).unwrap();
        let seen = live(d.path()).unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].name, a.name());
        assert!(seen[0].start <= seen[1].start);
        assert_eq!(seen[0].pid, std::process::id());
        assert_eq!(seen[0].boot, boot_id());
        drop(a);
        assert_eq!(live(d.path()).unwrap().iter().map(|s| s.name.clone()).collect::<Vec<_>>(), [b.name()]);
        // A file nobody holds is a dead session's: removed.
        let stale = d.path().join("sessions").join(format!("{}-{:020}-1-0", boot_id(), 5));
        fs_err::write(&stale, "").unwrap();
        assert_eq!(live(d.path()).unwrap().len(), 1);
        assert!(!stale.exists());
    }
}
