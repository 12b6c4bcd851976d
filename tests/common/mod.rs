//! Helpers shared by the integration tests: running the real binary against a temporary store,
//! building fixture trees, and describing a directory exactly (a manifest) to compare trees.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// These tests create device nodes, set owners and mount file systems: they need root, and say
/// so instead of silently passing.
pub fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "the integration tests must run as root (see README: tools/test.sh)");
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        require_root();
        Env { dir: tempfile::Builder::new().prefix("strata-test-").tempdir().unwrap() }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--store").arg(self.store()).args(args).env_remove("STRATA_STORE").env_remove("RUST_LOG");
        c
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(out.status.success(), "strata {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run and require failure; returns stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let out: Output = self.cmd(args).output().unwrap();
        assert!(!out.status.success(), "strata {args:?} succeeded but should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    /// The names of the store's entries, in `store ls` order.
    pub fn entry_names(&self) -> Vec<String> {
        let ls = self.json(&["store", "ls"]);
        ls.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}

/// Build a tree holding every kind of node the store must keep exactly.
pub fn special_fixture(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let w = |p: &str, content: &[u8], mode: u32| {
        let path = root.join(p);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, content).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    fs_err::create_dir_all(root).unwrap();
    w("etc/hostname", b"fixture\n", 0o644);
    w("etc/shadow", b"root:*:19000:0:99999:7:::\n", 0o640);
    w("usr/bin/su", b"\x7fELF pretend setuid binary", 0o4755);
    w("usr/bin/wall", b"\x7fELF pretend setgid binary", 0o2755);
    w("usr/bin/ping", b"\x7fELF pretend capability binary", 0o755);
    w("usr/lib/a", b"shared content", 0o644);
    w("usr/share/empty", b"", 0o644);
    w("usr/share/same-as-a", b"shared content", 0o644); // identical, but not a hardlink
    fs_err::hard_link(root.join("usr/lib/a"), root.join("usr/lib/a-link")).unwrap();
    fs_err::hard_link(root.join("usr/lib/a"), root.join("etc/a-link")).unwrap();
    fs_err::create_dir_all(root.join("tmp")).unwrap();
    fs_err::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    fs_err::create_dir_all(root.join("dev")).unwrap();
    nix::sys::stat::mknod(
        &root.join("dev/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &root.join("dev/loop9"),
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        nix::sys::stat::makedev(7, 9),
    )
    .unwrap();
    nix::unistd::mkfifo(&root.join("dev/initctl"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::os::unix::fs::symlink("../usr/bin/su", root.join("etc/su-link")).unwrap();
    std::os::unix::fs::symlink("dangling/target", root.join("etc/dangling")).unwrap();
    std::os::unix::fs::symlink("loop-b", root.join("etc/loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", root.join("etc/loop-b")).unwrap();
    w("etc/name with\nnewline", b"odd name", 0o644);
    w("etc/caf\u{e9}", b"utf-8 name", 0o644);
    // security.capability: cap_net_raw+ep (VFS_CAP_REVISION_2).
    let cap = [0u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    xattr::set(root.join("usr/bin/ping"), "security.capability", &cap).unwrap();
    xattr::set(root.join("etc/hostname"), "security.selinux", b"system_u:object_r:etc_t:s0\0").unwrap();
    xattr::set(root.join("etc/hostname"), "user.comment", b"from the fixture").unwrap();
    xattr::set(root.join("usr"), "user.dir-attr", b"on a directory").unwrap();
    let chown = |p: &str, u: u32, g: u32| {
        nix::unistd::fchownat(
            None,
            &root.join(p),
            Some(u.into()),
            Some(g.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
    };
    chown("etc/shadow", 0, 42);
    chown("usr/bin/wall", 0, 5);
    chown("etc/dangling", 1000, 1000);
    chown("usr/share", 1234, 5678);
    // chown cleared the setgid bit of wall; set it again.
    fs_err::set_permissions(root.join("usr/bin/wall"), std::fs::Permissions::from_mode(0o2755)).unwrap();
}

/// Everything the store promises to keep, per path: type, mode, owner, xattrs, content or target
/// or device number, and the hardlink group (numbered by first appearance).
pub fn manifest(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut groups: HashMap<(u64, u64), usize> = HashMap::new();
    let mut inode_count: HashMap<(u64, u64), usize> = HashMap::new();
    let mut paths = Vec::new();
    collect(root, root, &mut paths);
    paths.sort();
    for p in &paths {
        let st = fs_err::symlink_metadata(p).unwrap();
        if st.is_file() {
            *inode_count.entry((st.dev(), st.ino())).or_default() += 1;
        }
    }
    for p in paths {
        let st = fs_err::symlink_metadata(&p).unwrap();
        let ft = st.file_type();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let mut xattrs: Vec<String> = xattr::list(&p)
            .unwrap()
            .map(|n| {
                format!("{}={}", n.to_string_lossy(), hex::encode(xattr::get(&p, &n).unwrap().unwrap_or_default()))
            })
            .collect();
        xattrs.sort();
        let what = if ft.is_file() {
            let key = (st.dev(), st.ino());
            let group = if inode_count[&key] > 1 {
                let n = groups.len() + 1;
                *groups.entry(key).or_insert(n)
            } else {
                0
            };
            format!("file {} link-group {group}", blake3::hash(&fs_err::read(&p).unwrap()).to_hex())
        } else if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs_err::read_link(&p).unwrap().display())
        } else if ft.is_char_device() {
            format!("chardev {}", st.rdev())
        } else if ft.is_block_device() {
            format!("blockdev {}", st.rdev())
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else {
            "other".to_string()
        };
        let mode = if ft.is_symlink() { 0o777 } else { st.mode() & 0o7777 };
        out.insert(rel, format!("{what} mode {mode:o} owner {}:{} xattrs [{}]", st.uid(), st.gid(), xattrs.join(" ")));
    }
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    let _ = root;
    for e in fs_err::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            collect(root, &e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// A tree of `n` small files spread over directories, deterministic content.
pub fn many_files(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("d{:02}/e{:02}", i % 37, i % 11));
        fs_err::create_dir_all(&dir).unwrap();
        let body = format!("file {i}\n").repeat(1 + i % 50);
        fs_err::write(dir.join(format!("f{i}")), body).unwrap();
    }
}

/// The number of object files in a store.
pub fn object_files(store: &Path) -> usize {
    let mut n = 0;
    for d in fs_err::read_dir(store.join("objects")).unwrap() {
        n += fs_err::read_dir(d.unwrap().path()).unwrap().count();
    }
    n
}

/// Build a small package with the real `dpkg-deb`: `fields` are extra control lines
/// (`Depends: …`), `files` are (path, content) pairs under the package root.
pub fn simple_deb(out_dir: &Path, name: &str, version: &str, fields: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = out_dir.join(format!(".build-{name}-{version}"));
    fs_err::create_dir_all(root.join("DEBIAN")).unwrap();
    let mut control =
        format!("Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: T <t@example.org>\n");
    for line in fields.lines().filter(|l| !l.is_empty()) {
        control.push_str(line);
        control.push('\n');
    }
    control.push_str("Description: test package\n");
    fs_err::write(root.join("DEBIAN/control"), control).unwrap();
    for (path, content) in files {
        let p = root.join(path);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, content).unwrap();
    }
    let deb = out_dir.join(format!("{name}_{version}_amd64.deb"));
    let out = Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&root).arg(&deb).output().unwrap();
    assert!(out.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&out.stderr));
    fs_err::remove_dir_all(&root).unwrap();
    deb
}

/// Write `text` to `path`, creating its parent directories.
pub fn write(path: &Path, text: &str) {
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

/// Run a shell command line, requiring success.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A real HTTP server (python's http.server) on 127.0.0.1 serving `dir`, stopped on drop.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Server { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the HTTP server did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A signing key in its own GNUPGHOME; returns the public keyring file for gpgv.
pub fn make_key(env: &Env, name: &str) -> (PathBuf, PathBuf) {
    let home = env.path(&format!("gnupg-{name}"));
    fs_err::create_dir_all(&home).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let h = home.display();
    sh(&format!("GNUPGHOME={h} gpg --batch --quiet --passphrase '' --quick-gen-key '{name} <{name}@example.org>' ed25519 sign never"));
    let keyring = env.path(&format!("{name}.gpg"));
    sh(&format!("GNUPGHOME={h} gpg --batch --quiet --export > {}", keyring.display()));
    (home, keyring)
}

/// A test environment whose store shares the persistent download cache in
/// /var/cache/strata-tests, so that each package is fetched from the mirror once per machine.
pub fn env_with_cache() -> Env {
    let env = Env::new();
    let shared = Path::new("/var/cache/strata-tests/downloads");
    fs_err::create_dir_all(shared).unwrap();
    fs_err::create_dir_all(env.store().join("cache")).unwrap();
    std::os::unix::fs::symlink(shared, env.store().join("cache/downloads")).unwrap();
    env
}

/// Run `cmd` with `/bin/sh` chrooted into a checked-out image (a `/dev/null` is made if the
/// image has none); returns success and the combined output.
pub fn chroot(root: &Path, cmd: &str) -> (bool, String) {
    if !root.join("dev/null").exists() {
        sh(&format!("mknod -m 666 {}/dev/null c 1 3", root.display()));
    }
    let out = Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", cmd])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The SVG renders (rsvg-convert) to a PNG of at least `min_bytes`.
pub fn rendered(env: &Env, svg: &str, name: &str, min_bytes: usize) {
    let file = env.path(&format!("{name}.svg"));
    write(&file, svg);
    let png = env.path(&format!("{name}.png"));
    sh(&format!("rsvg-convert -o {} {}", png.display(), file.display()));
    let bytes = fs_err::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() >= min_bytes, "{name}: {} bytes of PNG", bytes.len());
}

/// A root whose every tool is a static busybox (`tests/sandbox.rs`, `tests/faults.rs`), made at
/// `root`: scripts run without network or a distribution.
pub fn busybox_tree(root: &Path) {
    sh(&format!(
        "mkdir -p {r}/usr/bin {r}/proc {r}/dev {r}/run {r}/tmp {r}/etc {r}/sys {r}/var/lib && cp /bin/busybox {r}/usr/bin/ \
         && for a in $({r}/usr/bin/busybox --list); do [ -e {r}/usr/bin/$a ] || ln -s busybox {r}/usr/bin/$a; done \
         && ln -s usr/bin {r}/bin && ln -s usr/bin {r}/sbin && chmod 1777 {r}/tmp",
        r = root.display()
    ));
}
