//! Child processes that end with strata.
//!
//! Invariant: every program strata runs (tar, ostree, mkfs, qemu, the script sandbox, …) is made
//! by [`command`], so that it receives `SIGKILL` when strata dies, killed or crashed. An
//! orphan would go on writing into the store's `tmp/` (or a repository, a disk image) after the
//! store's lock was released, while the next strata process cleans or reuses what it writes.
//!
//! The signal is tied to the thread that started the child: children are waited for by the
//! thread that starts them.

use std::ffi::OsStr;
use std::process::Command;

/// A [`Command`] whose process is killed when strata (the thread starting it) ends.
#[allow(unsafe_code)]
pub fn command(program: impl AsRef<OsStr>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    let parent = nix::unistd::Pid::this();
    // SAFETY: the closure runs in the child between fork and exec. It calls prctl(2) and
    // getppid(2), both async-signal-safe, and allocates nothing (an error is a plain errno).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // strata died before the signal was asked for: do not start.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        })
    };
    cmd
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::thread::spawn(|| super::command("sleep").arg("30").spawn().unwrap()).join().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
}
