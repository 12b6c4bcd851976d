//! The log of an artifact's assembly: each tool run for it through [`run`] (`mkfs.ext4`,
//! `mkfs.xfs`, `mtools`, `grub-mkimage`, `mksquashfs`, `grub-mkrescue`, `qemu-img`, …) with its
//! command line and what it printed (`sfdisk`, fed on stdin, and libostree's in-process work
//! are not in it), kept with the artifact's
//! entry (see `strata log`).
//!
//! Invariant: an artifact is assembled on one thread, start to end. [`Recording::start`] begins
//! the thread's transcript and [`Recording::finish`] takes it; tools run through [`run`] while a
//! recording lives append to it, and outside of one they append nowhere.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::process::{Command, Output};

use anyhow::{bail, Context};

thread_local! {
    static TRANSCRIPT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The transcript of the artifact being assembled on this thread.
pub struct Recording(());

impl Recording {
    pub fn start() -> Recording {
        TRANSCRIPT.with(|t| *t.borrow_mut() = Some(String::new()));
        Recording(())
    }

    /// Everything recorded since [`Recording::start`].
    pub fn finish(self) -> String {
        TRANSCRIPT.with(|t| t.borrow_mut().take()).unwrap_or_default()
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        TRANSCRIPT.with(|t| t.borrow_mut().take());
    }
}

/// Note a tool's run in the transcript, if one is being recorded.
pub fn note(cmd: &Command, out: &Output) {
    TRANSCRIPT.with(|t| {
        if let Some(log) = t.borrow_mut().as_mut() {
            let args: Vec<String> = cmd.get_args().map(|a| shell_word(&a.to_string_lossy())).collect();
            let _ = writeln!(log, "$ {} {}", cmd.get_program().to_string_lossy(), args.join(" "));
            log.push_str(&String::from_utf8_lossy(&out.stdout));
            log.push_str(&String::from_utf8_lossy(&out.stderr));
            if !log.ends_with('\n') {
                log.push('\n');
            }
            if !out.status.success() {
                let _ = writeln!(log, "[{}]", out.status);
            }
        }
    });
}

/// A word as a shell would need it: as it is when plain, else single-quoted.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"_./=:,@%+-".contains(&b));
    if plain {
        w.to_string()
    } else {
        crate::util::text::sq(w)
    }
}

/// Run a tool, note it in the transcript, and fail with its error output when it fails.
pub fn run(cmd: &mut Command, what: &str) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    note(cmd, &out);
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_run_while_recording_are_in_the_transcript_and_only_then() {
        run(crate::util::process::command("echo").arg("before"), "echo").unwrap();
        let rec = Recording::start();
        run(crate::util::process::command("echo").arg("it's here"), "echo").unwrap();
        let err =
            run(crate::util::process::command("sh").args(["-c", "echo oops >&2; exit 3"]), "the check").unwrap_err();
        assert_eq!(err.to_string(), "the check failed: oops");
        let log = rec.finish();
        assert_eq!(log, "$ echo 'it'\\''s here'\nit's here\n$ sh -c 'echo oops >&2; exit 3'\noops\n[exit status: 3]\n");
        run(crate::util::process::command("echo").arg("after"), "echo").unwrap();
        assert_eq!(Recording::start().finish(), "");
    }
}
