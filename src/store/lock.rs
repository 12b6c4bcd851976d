//! The store lock: one `flock` on `<store>/lock`.
//!
//! | mode      | held by                                              |
//! |-----------|------------------------------------------------------|
//! | shared    | every command that reads or adds (add, checkout, ls, verify, roots, builds) |
//! | exclusive | gc, and opening a store to clean its `tmp/`           |
//!
//! Rules: take the lock before opening the database; never upgrade shared to exclusive (two
//! upgraders deadlock): a command that needs exclusive takes it from the start. A busy lock is
//! waited for up to the caller's limit, with a message, then reported as `StoreError::LockBusy`.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::store::error::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A held lock, released on drop.
pub struct StoreLock {
    flock: Flock<std::fs::File>,
    pub mode: LockMode,
}

impl StoreLock {
    /// Take the exclusive lock if nobody holds the store, without waiting.
    pub fn try_exclusive(path: &Path) -> anyhow::Result<Option<StoreLock>> {
        let file = fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(path)?.into_parts().0;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Some(StoreLock { flock, mode: LockMode::Exclusive })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(anyhow::Error::new(e).context(format!("failed to lock `{}`", path.display()))),
        }
    }

    /// Turn an exclusive lock into a shared one.
    pub fn downgrade(&mut self) -> anyhow::Result<()> {
        self.flock.relock(FlockArg::LockShared)?;
        self.mode = LockMode::Shared;
        Ok(())
    }

    /// Take the lock on `path`, waiting at most `wait`. `on_wait` is called once if we have to wait.
    pub fn acquire(path: &Path, mode: LockMode, wait: Duration, on_wait: impl FnOnce()) -> anyhow::Result<StoreLock> {
        let file = fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(path)?.into_parts().0;
        let arg = match mode {
            LockMode::Shared => FlockArg::LockSharedNonblock,
            LockMode::Exclusive => FlockArg::LockExclusiveNonblock,
        };
        let start = Instant::now();
        let mut file = file;
        let mut announced = false;
        let mut on_wait = Some(on_wait);
        loop {
            match Flock::lock(file, arg) {
                Ok(flock) => return Ok(StoreLock { flock, mode }),
                Err((f, Errno::EWOULDBLOCK)) => {
                    file = f;
                    if start.elapsed() >= wait {
                        let held = match mode {
                            LockMode::Shared => "gc is running",
                            LockMode::Exclusive => "the store is in use",
                        };
                        let store = path.parent().unwrap_or(path).to_path_buf();
                        return Err(StoreError::LockBusy { path: store, held, waited_secs: wait.as_secs() }.into());
                    }
                    if !announced {
                        announced = true;
                        if let Some(f) = on_wait.take() {
                            f();
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, e)) => {
                    return Err(anyhow::Error::new(e).context(format!("failed to lock `{}`", path.display())));
                }
            }
        }
    }
}
