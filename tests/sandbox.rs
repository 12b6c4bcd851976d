//! The script sandbox against hostile scripts: each attempt on the host is contained, and the
//! host is untouched afterwards. The image is a static busybox, so the test needs no network.

mod common;

use std::path::Path;

use common::{sh, write, Env};

/// A root with a static busybox as every tool, as the root `tags/bb`.
fn busybox_root(env: &Env) {
    let root = env.path("bb");
    sh(&format!(
        "mkdir -p {r}/usr/bin {r}/proc {r}/dev {r}/run {r}/tmp {r}/etc {r}/sys && cp /bin/busybox {r}/usr/bin/ \
         && for a in $({r}/usr/bin/busybox --list); do [ -e {r}/usr/bin/$a ] || ln -s busybox {r}/usr/bin/$a; done \
         && ln -s usr/bin {r}/bin && ln -s usr/bin {r}/sbin && chmod 1777 {r}/tmp",
        r = root.display()
    ));
    env.ok(&["store", "add", root.to_str().unwrap(), "--root", "tags/bb"]);
}

fn description(dir: &Path, name: &str, script: &str) {
    write(&dir.join("image.toml"), &format!("[image]\nname = \"{name}\"\nderived-from = \"root:tags/bb\"\n"));
    write(&dir.join("config.sh"), script);
}

#[test]
fn hostile_scripts_are_contained_and_the_host_is_untouched() {
    common::require_root();
    let env = Env::new();
    busybox_root(&env);
    // The device of the host's root file system (or the first SCSI disk's numbers).
    let numbers = sh("stat -L -c '%t %T' \"$(findmnt -no SOURCE / | head -1)\" 2>/dev/null || echo '8 0'");
    let (major, minor) = numbers.trim().split_once(' ').unwrap();
    let (major, minor) = (u32::from_str_radix(major, 16).unwrap(), u32::from_str_radix(minor, 16).unwrap());
    let interval_before = sh("cat /proc/sys/vm/stat_interval").trim().to_string();
    let hostname_before = sh("cat /proc/sys/kernel/hostname").trim().to_string();
    let marker = env.path("host-marker");
    write(&marker, "host\n");
    let dir = env.path("hostile");
    // Each attempt records what happened in /results, which the test reads from the image.
    description(
        &dir,
        "hostile",
        &format!(
            r#"#!/bin/sh
set -u
r=/results
try() {{ name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name: done" >> $r; else echo "$name: blocked" >> $r; fi; }}
grep -E '^Cap(Eff|Bnd)' /proc/self/status >> $r
mkdir -p /m
try mount-sysfs mount -t sysfs sysfs /m
try mount-proc mount -t proc proc /m
try mount-tmpfs-over-root mount -t tmpfs tmpfs /
try mount-debugfs mount -t debugfs debugfs /m
mknod /disk b {major} {minor}
try read-host-disk dd if=/disk of=/dev/null bs=512 count=1
try write-sysrq sh -c 'echo h > /proc/sysrq-trigger'
try write-proc-sys sh -c 'echo 7 > /proc/sys/vm/stat_interval'
try set-hostname-sysctl sh -c 'echo hostile > /proc/sys/kernel/hostname'
try kill-host-init kill -0 1
try see-host-processes sh -c 'test $(ls -d /proc/[0-9]* | wc -l) -gt 20'
try read-host-file test -e {marker}
try read-host-file-through-proc test -e /proc/1/root{marker}
echo end >> $r
"#,
            marker = marker.display()
        ),
    );
    let out = env.json(&["build", dir.to_str().unwrap()]);
    assert!(out["steps"]["built"].as_u64().unwrap() > 0, "{out}");
    let tree = env.path("tree");
    env.ok(&["store", "checkout", "images/hostile", tree.to_str().unwrap(), "--link", "copy"]);
    let results = fs_err::read_to_string(tree.join("results")).unwrap();
    assert!(results.ends_with("end\n"), "{results}");
    for attempt in [
        "mount-sysfs",
        "mount-proc",
        "mount-tmpfs-over-root",
        "mount-debugfs",
        "read-host-disk",
        "write-proc-sys",
        "set-hostname-sysctl",
        "see-host-processes",
        "read-host-file",
        "read-host-file-through-proc",
    ] {
        assert!(results.contains(&format!("{attempt}: blocked")), "{attempt} was not blocked:\n{results}");
    }
    if Path::new("/proc/sysrq-trigger").exists() {
        assert!(results.contains("write-sysrq: blocked"), "{results}");
    }
    // Inside its PID namespace the script is alone: "init" is the sandbox's own.
    assert!(results.contains("kill-host-init: done"), "{results}");
    // No capability to administer the system, in effect or ever again (bounding set).
    for line in results.lines().filter(|l| l.starts_with("Cap")) {
        let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        for (bit, name) in [(21, "CAP_SYS_ADMIN"), (16, "CAP_SYS_MODULE"), (17, "CAP_SYS_RAWIO"), (22, "CAP_SYS_BOOT")]
        {
            assert_eq!(mask & (1 << bit), 0, "{name} in `{line}`");
        }
    }
    // The host: its sysctls and files as they were.
    assert_eq!(sh("cat /proc/sys/vm/stat_interval").trim(), interval_before);
    assert_eq!(sh("cat /proc/sys/kernel/hostname").trim(), hostname_before);
    assert_eq!(fs_err::read_to_string(&marker).unwrap(), "host\n");
    // Scripts still do what images need: own files by other users, set modes, make nodes.
    let ok = env.path("ok");
    description(
        &ok,
        "ok",
        "#!/bin/sh\nset -e\necho data > /owned && chown 4242:4243 /owned && chmod 4750 /owned\nmknod /null-copy c 1 3\n",
    );
    env.ok(&["build", ok.to_str().unwrap()]);
    let tree = env.path("ok-tree");
    env.ok(&["store", "checkout", "images/ok", tree.to_str().unwrap(), "--link", "copy"]);
    let st = sh(&format!("stat -c '%u %g %a' {}", tree.join("owned").display()));
    assert_eq!(st.trim(), "4242 4243 4750");
    assert_eq!(
        sh(&format!("stat -c '%F %t %T' {}", tree.join("null-copy").display())).trim(),
        "character special file 1 3"
    );
}
