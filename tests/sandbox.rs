//! The script sandbox against hostile scripts: each attempt on the host is contained, and the
//! host is untouched afterwards. The image is a static busybox, so the test needs no network.

mod common;

use std::path::Path;
use std::process::Command;

use common::{sh, write, Env};

/// The capabilities a script has (`CapEff`, `CapBnd`): chown, dac_override, fowner, fsetid,
/// kill, setgid, setuid, setpcap, net_bind_service, sys_chroot, mknod, setfcap.
const KEPT_MASK: u64 = 0x8804_05fb;

/// A root with a static busybox as every tool, as the root `tags/bb`.
fn busybox_root(env: &Env) {
    let root = env.path("bb");
    common::busybox_tree(&root);
    sh(&format!(
        "cp /usr/bin/keyctl {r}/usr/bin/ && for l in $(ldd /usr/bin/keyctl | grep -o '/[^ ]*'); do cp --parents -L $l {r}; done",
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
    // The host's first disk, and whether the host itself can read a node of it (a container's
    // device cgroup may forbid it: then that attempt proves nothing and is not asserted).
    let partitions = fs_err::read_to_string("/proc/partitions").unwrap();
    let (major, minor) = partitions
        .lines()
        .skip(2)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse::<u32>().ok()?, f.get(1)?.parse::<u32>().ok()?))
        })
        .unwrap_or((8, 0));
    let probe = env.path("disk-probe");
    let host_reads_disk = Command::new("sh")
        .arg("-c")
        .arg(format!("mknod {0} b {major} {minor} && dd if={0} of=/dev/null bs=512 count=1", probe.display()))
        .output()
        .unwrap()
        .status
        .success();
    let interval_before = sh("cat /proc/sys/vm/stat_interval").trim().to_string();
    let marker = Path::new("/var/tmp").join(format!("strata-sandbox-marker-{}", std::process::id()));
    write(&marker, "host\n");
    let mut sleeper = Command::new("sleep").arg("987.654").spawn().unwrap();
    let dir = env.path("hostile");
    // Each attempt records what happened in /results, which the test reads from the image.
    description(
        &dir,
        "hostile",
        &format!(
            r#"#!/bin/sh
set -u
r=/results
for t in mount mknod dd grep readlink cat chroot keyctl insmod unshare swapon; do command -v $t >/dev/null || echo "missing tool: $t" >> $r; done
try() {{ name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name: done" >> $r; else echo "$name: blocked" >> $r; fi; }}
grep -E '^(Cap(Inh|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status >> $r
echo "pidns: $(readlink /proc/self/ns/pid)" >> $r
mkdir -p /m
try mount-sysfs mount -t sysfs sysfs /m
try mount-proc mount -t proc proc /m
try mount-tmpfs-over-root mount -t tmpfs tmpfs /
try mount-debugfs mount -t debugfs debugfs /m
for d in / /tmp /run /dev /dev/shm; do
  n=$(echo "$d" | tr / _)
  try "open-new-node$n" sh -c "mknod $d/.node c 1 3 && cat $d/.node"
  try "read-host-disk$n" sh -c "mknod $d/.disk b {major} {minor} && dd if=$d/.disk of=/dev/null bs=512 count=1"
done
try write-sysrq sh -c 'echo h > /proc/sysrq-trigger'
try write-proc-sys sh -c 'echo 7 > /proc/sys/vm/stat_interval'
try set-hostname-sysctl sh -c 'echo hostile > /proc/sys/kernel/hostname'
try see-host-processes sh -c 'grep -q "987[.]654" /proc/[0-9]*/cmdline'
try read-host-file test -e {marker}
try read-host-file-through-proc test -e /proc/1/root{marker}
try read-host-file-through-leaked-fd test -e /proc/self/fd/9{marker}
# Blocked by the system call filter (and most by capabilities too): "blocked" only for EPERM.
denied() {{ name=$1; shift; if "$@" 2>&1 | grep -q "not permitted"; then echo "$name: blocked" >> $r; else echo "$name: done" >> $r; fi; }}
try keyring keyctl add user strata-sandbox-probe secret @u
denied keyring-eperm keyctl add user strata-sandbox-probe secret @u
head -c 4096 /dev/zero > /tmp/m.ko
denied load-module insmod /tmp/m.ko
try user-namespace unshare -U true
try user-namespace-mount unshare -U -r -m sh -c 'mount -t tmpfs t /m'
dd if=/dev/zero of=/tmp/swap bs=1M count=1 2>/dev/null
denied swapon swapon /tmp/swap
# A fork bomb, last (its processes live on): the tasks it could start, counted without a fork.
( i=0; while [ $i -lt 6000 ]; do sleep 60 & i=$((i+1)); done ) 2>/dev/null || true
set -- /proc/[0-9]*
echo "tasks: $#" >> $r
echo end >> $r
"#,
            marker = marker.display()
        ),
    );
    // strata started with a descriptor of the host's root left open (as a careless caller might).
    let mut build = Command::new("sh");
    build.arg("-c").arg("exec 9</ && exec \"$0\" \"$@\"").arg(common::bin()).args([
        "--store",
        env.store().to_str().unwrap(),
        "--json",
        "build",
        dir.to_str().unwrap(),
    ]);
    let out = build.output().unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    fs_err::remove_file(&marker).unwrap_or_default();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = env.path("tree");
    env.ok(&["store", "checkout", "images/hostile", tree.to_str().unwrap(), "--link", "copy"]);
    let results = fs_err::read_to_string(tree.join("results")).unwrap();
    assert!(results.ends_with("end\n") && !results.contains("missing tool"), "{results}");
    let mut attempts = vec![
        "mount-sysfs",
        "mount-proc",
        "mount-tmpfs-over-root",
        "mount-debugfs",
        "write-proc-sys",
        "set-hostname-sysctl",
        "see-host-processes",
        "read-host-file",
        "read-host-file-through-proc",
        "read-host-file-through-leaked-fd",
        "keyring",
        "keyring-eperm",
        "load-module",
        "user-namespace",
        "user-namespace-mount",
        "swapon",
    ];
    let nodes = ["_", "_tmp", "_run", "_dev", "_dev_shm"].map(|d| format!("open-new-node{d}"));
    attempts.extend(nodes.iter().map(String::as_str));
    let disks = ["_", "_tmp", "_run", "_dev", "_dev_shm"].map(|d| format!("read-host-disk{d}"));
    if host_reads_disk {
        attempts.extend(disks.iter().map(String::as_str));
    }
    if Path::new("/proc/sysrq-trigger").exists() {
        attempts.push("write-sysrq");
    }
    for attempt in attempts {
        assert!(results.contains(&format!("{attempt}: blocked")), "{attempt} was not blocked:\n{results}");
    }
    // Its own PID namespace.
    let host_ns = fs_err::read_link("/proc/self/ns/pid").unwrap();
    assert!(
        results.contains("pidns: pid:[") && !results.contains(&format!("pidns: {}", host_ns.display())),
        "{results}"
    );
    // Exactly the kept capabilities, none to pass on, and no way to gain more.
    let field = |name: &str| -> u64 {
        let line = results.lines().find(|l| l.starts_with(&format!("{name}:"))).expect(name);
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!((field("CapEff"), field("CapBnd")), (KEPT_MASK, KEPT_MASK), "{results}");
    assert_eq!((field("CapInh"), field("CapAmb")), (0, 0), "{results}");
    assert!(results.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NoNewPrivs:", "1"]), "{results}");
    // The host: its sysctl as it was, nothing in root's keyring.
    assert_eq!(sh("cat /proc/sys/vm/stat_interval").trim(), interval_before);
    let probe = Command::new("keyctl").args(["search", "@u", "user", "strata-sandbox-probe"]).output().unwrap();
    assert!(!probe.status.success(), "the script added a key to the host root's keyring");
    // The fork bomb stopped at the task limit (4096, the script's shells included).
    let tasks: u64 = results.lines().find_map(|l| l.strip_prefix("tasks: ")).unwrap().parse().unwrap();
    assert!((4000..=4096).contains(&tasks), "the fork bomb ran {tasks} tasks:\n{results}");

    // Scripts still do what images need: own files by other users, set modes, make nodes.
    let ok = env.path("ok");
    description(
        &ok,
        "ok",
        "#!/bin/sh\nset -e\necho data > /owned && chown 4242:4243 /owned && chmod 4750 /owned\nmknod /null-copy c 1 3\necho x > /dev/null\n",
    );
    env.ok(&["build", ok.to_str().unwrap()]);
    let tree = env.path("ok-tree");
    env.ok(&["store", "checkout", "images/ok", tree.to_str().unwrap(), "--link", "copy"]);
    let st = sh(&format!("stat -c '%u %g %a' {}", tree.join("owned").display()));
    assert_eq!(st.trim(), "4242 4243 4750");
    let node = sh(&format!("stat -c '%F %t %T' {}", tree.join("null-copy").display()));
    assert_eq!(node.trim(), "character special file 1 3");

    // Filling the disk: one big file stops at the size limit, many files at the write limit.
    // Either way the build fails naming the script and the limit, and nothing is recorded.
    for (name, script, expect) in [
        ("one-big-file", "dd if=/dev/zero of=/big bs=1M count=200\n", "File size limit exceeded"),
        (
            "many-files",
            "i=0\nwhile [ $i -lt 100 ]; do dd if=/dev/zero of=/f$i bs=1M count=8 2>/dev/null; sync; i=$((i+1)); done\n",
            "wrote more than its limit of 64.0 MiB",
        ),
    ] {
        let dir = env.path(name);
        description(&dir, name, &format!("#!/bin/sh\nset -e\n{script}"));
        let err = env.fail(&["build", dir.to_str().unwrap(), "--script-write-limit", "64M"]);
        assert!(err.contains("config.sh") && err.contains(expect), "{name}: {err}");
        assert!(err.contains("limit of 64.0 MiB (--script-write-limit)"), "{name}: {err}");
        let out = env.path(&format!("{name}-tree"));
        env.fail(&["store", "checkout", &format!("images/{name}"), out.to_str().unwrap()]);
    }
}
