//! Booting a disk image in QEMU to prove it boots: the serial console goes to a log, the harness
//! waits for a login prompt, can log in and run commands, and reports what it saw.
//!
//! With `Accel::Auto`, KVM is tried when `/dev/kvm` can be opened; a KVM that exists but fails
//! is dropped for TCG, which is slower but always works. "Fails" includes the quiet ways seen in
//! nested setups: QEMU exits, the firmware runs but the boot loader never starts (a real-mode
//! boot sector that hangs), or the boot loader runs but the kernel never prints: KVM must get
//! to the kernel's banner within [`KVM_PROBE`]. When TCG then gets to the login prompt, KVM is
//! what fails on this host: that is remembered until the host reboots ([`KVM_UNUSABLE`], on the
//! `/run` tmpfs), so later boots go to TCG at once.
//! The image is not written (QEMU's `-snapshot`) unless asked
//! (`persist`); extra disks are attached read-only. UEFI boots use Debian's OVMF with a scratch copy of
//! its variable store.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const READY: &str = "__strata_ready__";
const RC: &str = "__strata_rc=";
/// Marks each line a command prints, so that kernel messages on the same console stay out.
const OUT: &str = "|> ";
/// Where a command's output goes before it is printed with [`OUT`] in front.
const OUT_FILE: &str = "/tmp/.strata-output";
/// How long a KVM boot may take to reach the kernel's banner (boot menus wait a few seconds).
const KVM_PROBE: Duration = Duration::from_secs(30);
/// What a working boot prints early: the kernel's banner, or a login prompt.
const BANNERS: &[&str] = &["Linux version", "login: "];
/// Marks KVM as failed on this host until it reboots.
const KVM_UNUSABLE: &str = "/run/strata/kvm-unusable";

/// Which QEMU accelerator to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Clone, Debug)]
pub struct BootOptions {
    pub image: PathBuf,
    pub uefi: bool,
    pub timeout: Duration,
    /// Log in as (user, password) and run `commands`.
    pub login: Option<(String, String)>,
    pub commands: Vec<String>,
    /// Where the serial console is written (also kept in memory for the report).
    pub log: Option<PathBuf>,
    pub memory_mib: u32,
    pub accel: Accel,
    /// Let the machine write to the image (for tests that reboot into what they changed).
    pub persist: bool,
    /// More disk images, attached read-only after the boot disk (`/dev/vdb`, …).
    pub disks: Vec<PathBuf>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CommandOutput {
    pub command: String,
    pub status: i32,
    pub output: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BootReport {
    /// The login prompt was seen (and, with commands, all of them exited 0).
    pub success: bool,
    pub firmware: &'static str,
    pub accelerator: &'static str,
    /// Seconds from start to the login prompt.
    pub login_prompt_after: Option<f64>,
    pub commands: Vec<CommandOutput>,
    /// What went wrong, when `success` is false.
    pub failure: Option<String>,
    /// The last lines of the console.
    pub last_lines: Vec<String>,
}

/// Whether KVM looks usable (QEMU still falls back to TCG if it is not).
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

/// The console so far, shared with the reader thread.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Console {
    fn text(&self) -> String {
        let raw = self.0.lock().expect("console lock").clone();
        strip_escapes(&String::from_utf8_lossy(&raw))
    }
}

/// Remove terminal escape sequences and carriage returns.
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

struct Vm {
    child: Child,
    console: Console,
    _scratch: tempfile::TempDir,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    fn send(&mut self, text: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("QEMU's console is closed")?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Wait until `found` returns something for the console text after byte `from`.
    fn wait_for<T>(&mut self, deadline: Instant, from: usize, mut found: impl FnMut(&str) -> Option<T>) -> Option<T> {
        loop {
            let text = self.console.text();
            if let Some(t) = found(text.get(from..).unwrap_or("")) {
                return Some(t);
            }
            if Instant::now() >= deadline {
                return None;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return found(&self.console.text()[from.min(text.len())..]);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whether `path` is an ISO 9660 image (`CD001` in its first volume descriptor): it is
/// attached as a CD.
fn is_iso(path: &Path) -> anyhow::Result<bool> {
    let f = fs_err::File::open(path)?;
    let mut magic = [0u8; 5];
    Ok(std::os::unix::fs::FileExt::read_exact_at(f.file(), &mut magic, 0x8001).is_ok() && &magic == b"CD001")
}

fn start(opts: &BootOptions, kvm: bool) -> anyhow::Result<Vm> {
    if !opts.image.is_file() {
        bail!("{}: no such image file", opts.image.display());
    }
    let format = match opts.image.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => "qcow2",
        _ => "raw",
    };
    let scratch = tempfile::Builder::new().prefix("strata-boot-").tempdir()?;
    let mut cmd = crate::util::process::command("qemu-system-x86_64");
    cmd.args(["-accel", if kvm { "kvm" } else { "tcg" }]);
    cmd.args(["-machine", "q35", "-m", &opts.memory_mib.to_string(), "-smp", "2"]).args([
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "stdio",
    ]);
    // The firmware boots this disk (or CD), whatever else is attached.
    if is_iso(&opts.image)? {
        cmd.arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=disk0,media=cdrom,readonly=on", opts.image.display()))
            .args(["-device", "ide-cd,drive=disk0,bootindex=0"]);
    } else {
        cmd.arg("-drive")
            .arg(format!("file={},format={format},if=none,id=disk0", opts.image.display()))
            .args(["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]);
    }
    if !opts.persist {
        cmd.arg("-snapshot");
    }
    for (i, disk) in opts.disks.iter().enumerate() {
        if !disk.is_file() {
            bail!("{}: no such image file", disk.display());
        }
        let f = if disk.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
        let id = format!("disk{}", i + 1);
        cmd.arg("-drive").arg(format!("file={},format={f},if=none,id={id},readonly=on", disk.display()));
        cmd.arg("-device").arg(format!("virtio-blk-pci,drive={id}"));
    }
    if opts.uefi {
        let vars = scratch.path().join("OVMF_VARS.fd");
        fs_err::copy(OVMF_VARS, &vars).context("UEFI boots need Debian's ovmf package")?;
        cmd.arg("-drive")
            .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64 (install qemu-system-x86)")?;
    let console = Console::default();
    let mut log = match &opts.log {
        Some(p) => Some(fs_err::File::create(p)?),
        None => None,
    };
    let mut out = child.stdout.take().expect("piped");
    let sink = console.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.0.lock().expect("console lock").extend_from_slice(&buf[..n]);
            if let Some(l) = log.as_mut() {
                let _ = l.write_all(&buf[..n]);
            }
        }
    });
    let mut err = child.stderr.take().expect("piped");
    let errors = console.clone();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = err.read_to_end(&mut text);
        if !text.is_empty() {
            let mut c = errors.0.lock().expect("console lock");
            c.extend_from_slice(b"\n[qemu] ");
            c.extend_from_slice(&text);
        }
    });
    Ok(Vm { child, console, _scratch: scratch })
}

/// Start with KVM if asked or usable, falling back to TCG when KVM does not get to the kernel.
/// Returns the machine, its accelerator, and whether a KVM probe failed.
fn start_any(opts: &BootOptions) -> anyhow::Result<(Vm, &'static str, bool)> {
    let try_kvm = match opts.accel {
        Accel::Tcg => false,
        Accel::Kvm => true,
        Accel::Auto => kvm_usable() && !Path::new(KVM_UNUSABLE).exists(),
    };
    if try_kvm {
        let mut vm = start(opts, true)?;
        let probe = Instant::now() + KVM_PROBE;
        let alive = vm.wait_for(probe, 0, |t| BANNERS.iter().any(|b| t.contains(b)).then_some(()));
        let exited = matches!(vm.child.try_wait(), Ok(Some(_)));
        if alive.is_some() && !exited {
            return Ok((vm, "kvm", false));
        }
        if opts.accel == Accel::Kvm {
            bail!("KVM did not boot: {}", last_lines(&vm.console.text(), 3).join(" | "));
        }
        tracing::debug!("KVM did not reach the kernel; falling back to TCG");
        drop(vm);
        return Ok((start(opts, false)?, "tcg", opts.accel == Accel::Auto));
    }
    Ok((start(opts, false)?, "tcg", false))
}

/// TCG got further than KVM did with the same image: KVM is what fails on this host. Later boots
/// skip it until the host reboots.
fn remember_kvm_unusable() {
    let written = fs_err::create_dir_all("/run/strata")
        .and_then(|()| fs_err::write(KVM_UNUSABLE, "KVM did not reach the kernel where TCG did\n"));
    if written.is_ok() {
        tracing::info!("KVM does not work on this host: using TCG until it reboots (remove {KVM_UNUSABLE} to retry)");
    }
}

/// Why a login went nowhere: refused, or `otherwise`.
fn login_failure(vm: &Vm, since: usize, otherwise: &str) -> String {
    let text = vm.console.text();
    if text[since.min(text.len())..].contains("Login incorrect") { "login incorrect" } else { otherwise }.to_string()
}

/// The line typed for `command`: it runs in the login shell (a `cd` lasts), its output goes to
/// a file and is then printed with [`OUT`] before each line (spelt `\x7c> ` for GNU sed, so that
/// the shell's echo of the typed line never contains the marker) and a newline after its last
/// line when the command printed none (`$a\`), so that the exit status always starts a line.
fn wrapped(command: &str) -> String {
    format!(
        "{{ {command}\n}} >{OUT_FILE} 2>&1 </dev/null; __strata_s=$?; sed -e 's/^/\\x7c> /' -e '$a\\' {OUT_FILE}; echo \"{RC}$__strata_s\"\n"
    )
}

/// Whether the console ends at a shell prompt (`$ ` or `# `), but for kernel messages printed
/// after it (they share the serial console and may land right behind the prompt).
fn at_prompt(text: &str) -> bool {
    let Some(i) = text.rfind(['$', '#']).filter(|&i| text[i + 1..].starts_with(' ')) else {
        return false;
    };
    text[i + 2..].split('\n').map(|l| l.trim_matches(['\r', ' '])).all(|l| l.is_empty() || is_kernel_message(l))
}

fn is_kernel_message(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else { return false };
    let Some((stamp, _)) = rest.split_once("] ") else { return false };
    let stamp = stamp.trim_start();
    !stamp.is_empty() && stamp.contains('.') && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// What a command printed: the console lines that start with [`OUT`], each ending with a
/// newline. Kernel messages, which share the serial console, and the shell's echo of the typed
/// line do not.
fn command_output(chunk: &str) -> String {
    let mut out = String::new();
    for line in chunk.split_inclusive('\n') {
        if let Some(text) = line.strip_prefix(OUT) {
            out.push_str(&text.replace('\r', ""));
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
}

/// Boot, wait for the login prompt, optionally log in and run commands.
pub fn boot(opts: &BootOptions) -> anyhow::Result<BootReport> {
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let (mut vm, accelerator, kvm_failed) = start_any(opts)?;
    let mut report = BootReport {
        success: false,
        firmware: if opts.uefi { "uefi" } else { "bios" },
        accelerator,
        login_prompt_after: None,
        commands: vec![],
        failure: None,
        last_lines: vec![],
    };
    let finish = |mut report: BootReport, vm: &Vm, failure: Option<String>| {
        report.success = failure.is_none();
        report.failure = failure;
        report.last_lines = last_lines(&vm.console.text(), 25);
        Ok(report)
    };
    let Some(at) = vm.wait_for(deadline, 0, |t| t.rfind("login: ").map(|i| i + "login: ".len())) else {
        let why = format!("no login prompt within {} s", opts.timeout.as_secs());
        return finish(report, &vm, Some(why));
    };
    report.login_prompt_after = Some(started.elapsed().as_secs_f64());
    if kvm_failed {
        remember_kvm_unusable();
    }
    let Some((user, password)) = &opts.login else { return finish(report, &vm, None) };
    vm.send(&format!("{user}\n"))?;
    let Some(rel) = vm.wait_for(deadline, at, |t| t.find("Password: ").map(|i| i + "Password: ".len())) else {
        return finish(report, &vm, Some("no password prompt after the user name".into()));
    };
    let at = at + rel;
    vm.send(&format!("{password}\n"))?;
    // login(1) flushes what is typed ahead: wait for the shell's prompt first (or a refusal,
    // after which login(1) asks again and no prompt comes).
    let prompt = vm.wait_for(deadline, at, |t| {
        if t.contains("Login incorrect") {
            return Some(None);
        }
        at_prompt(t).then_some(Some(t.len()))
    });
    let rel = match prompt {
        Some(Some(rel)) => rel,
        Some(None) => return finish(report, &vm, Some("login incorrect".into())),
        None => return finish(report, &vm, Some(login_failure(&vm, at, "no shell prompt after login"))),
    };
    let at = at + rel;
    vm.send(&format!("echo {READY}\n"))?;
    let ready = format!("\n{READY}\n");
    let Some(rel) = vm.wait_for(deadline, at, |t| t.find(&ready).map(|i| i + ready.len())) else {
        return finish(report, &vm, Some(login_failure(&vm, at, "no shell after login")));
    };
    let mut at = at + rel;
    for command in &opts.commands {
        vm.send(&wrapped(command))?;
        // The first line that starts with the marker and a number: the terminal's echo of the
        // command may wrap right before `{RC}$__strata_s` and start a line with it too.
        let marker = format!("\n{RC}");
        let found = vm.wait_for(deadline, at, |t| {
            t.match_indices(&marker).find_map(|(i, _)| {
                let rest = &t[i + 1 + RC.len()..];
                let end = rest.find('\n')?;
                let status: i32 = rest[..end].trim().parse().ok()?;
                Some((i, status, i + 1 + RC.len() + end + 1))
            })
        });
        let Some((i, status, next)) = found else {
            return finish(report, &vm, Some(format!("`{command}` did not finish in time")));
        };
        let text = vm.console.text();
        let output = command_output(&text[at..at + i]);
        report.commands.push(CommandOutput { command: command.clone(), status, output });
        at += next;
        if status != 0 {
            return finish(report, &vm, Some(format!("`{command}` exited with {status}")));
        }
    }
    finish(report, &vm, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_is_found_behind_kernel_messages() {
        assert!(at_prompt("login ok\ndebian@debian:~$ "));
        assert!(at_prompt("root@debian:~# "));
        assert!(at_prompt(
            "debian@debian:~$ [   31.142529] e1000e: NIC Link is Up\r\n[   31.143615] IPv6: link becomes ready\r\n"
        ));
        assert!(!at_prompt("Password: "));
        assert!(!at_prompt("debian@debian:~$ ls\nfile\n"));
        assert!(!at_prompt("costs 5$ and more"));
    }

    #[test]
    fn command_output_is_the_marked_lines() {
        let typed = wrapped("dmesg | tail -1");
        assert!(typed.starts_with("{ dmesg | tail -1\n} >/tmp/.strata-output 2>&1"), "{typed}");
        let chunk = format!(
            "[   39.081138] IPv6: link becomes ready\n{typed}> \r\n|> [    1.000000] Linux version 6.1\r\n[   40.1] late\n|> more\n"
        );
        assert_eq!(command_output(&chunk), "[    1.000000] Linux version 6.1\nmore\n");
        assert_eq!(command_output("no marked lines\n"), "");
        // A last line without a newline still ends with one, so nothing printed after it joins it.
        assert!(typed.contains("-e '$a\\' /tmp/.strata-output;"), "{typed}");
        assert_eq!(command_output("|> no newline"), "no newline\n");
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(strip_escapes("\u{1b}[0;30;47mWelcome\u{1b}[0m\r\nlogin: "), "Welcome\nlogin: ");
        assert_eq!(last_lines("a\n\nb\nc\n", 2), vec!["b", "c"]);
    }
}
