//! Faults across the pipeline: SIGKILL at many points of `build` (unpacking an archive, running
//! a script, capturing its layer, recording the generation), `export` (an OCI layout, an OSTree
//! repository) and `gc`; a full file system under the store and under an export; a damaged
//! database and a read-only store. Afterwards the store verifies (`store verify --full`), the
//! OSTree repositories pass `ostree fsck`, and the next run completes with the ids of a run that
//! nothing disturbed. The image is built from a static busybox and local files: no network, so
//! every run builds the same tree.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{sh, write, Env};

/// Kill points per command.
const POINTS: usize = 20;

/// The image: a busybox root, an archive of many files (unpacking), a script that writes many
/// files (running it, then capturing its layer) and a root/ file.
fn description(dir: &Path) {
    write(
        &dir.join("image.toml"),
        "[image]\nname = \"work\"\nderived-from = \"root:tags/bb\"\n\n[packages]\narchives = [\"data.tar.gz\"]\n",
    );
    write(
        &dir.join("config.sh"),
        "#!/bin/sh\nset -e\nmkdir -p /var/lib/work\ni=0\nwhile [ $i -lt 600 ]; do echo \"script file $i\" > /var/lib/work/f$i; i=$((i+1)); done\n\
         head -c 3000000 /dev/zero | tr '\\0' s > /var/lib/work/big\n",
    );
    write(&dir.join("root/etc/work.conf"), "work = 1\n");
    let data = dir.join("data");
    for i in 0..600 {
        write(&data.join(format!("opt/data/d{}/f{i}", i % 40)), &format!("archive file {i}\n").repeat(1 + i % 30));
    }
    for i in 0..2 {
        let body: Vec<u8> = (0..(3 << 19)).map(|j: usize| ((j * 31 + i * 7) % 251) as u8).collect();
        fs_err::write(data.join(format!("opt/data/big{i}")), body).unwrap();
    }
    sh(&format!(
        "cd {0}/data && tar --sort=name --owner=0 --group=0 --mtime=@0 -czf ../data.tar.gz opt && rm -r {0}/data",
        dir.display()
    ));
}

/// A scratch directory with the description (`work/work`) and the busybox root (`work/bb`).
fn setup() -> (Env, PathBuf, PathBuf) {
    common::require_root();
    let work = Env::new();
    let (desc, bb) = (work.path("work"), work.path("bb"));
    description(&desc);
    common::busybox_tree(&bb);
    (work, desc, bb)
}

/// A new store holding the busybox root `bb` as `tags/bb`.
fn store_with_base(bb: &Path) -> Env {
    let env = Env::new();
    env.ok(&["store", "add", bb.to_str().unwrap(), "--root", "tags/bb"]);
    env
}

/// Run strata with `args` and SIGKILL it after `delay`; whether it had finished by then.
fn kill_after(env: &Env, args: &[&str], delay: Duration) -> bool {
    let mut child = env.cmd(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();
    false
}

/// Run strata and measure it.
fn timed(env: &Env, args: &[&str]) -> Duration {
    let start = Instant::now();
    env.ok(args);
    start.elapsed()
}

/// The delay of kill point `i` of [`POINTS`] over a run that takes `full`.
fn point(full: Duration, i: usize) -> Duration {
    full.mul_f64((i as f64 + 0.5) / POINTS as f64)
}

fn verify(env: &Env, what: &str) {
    let out = env.cmd(&["store", "verify", "--full"]).output().unwrap();
    assert!(
        out.status.success(),
        "{what}: verify --full failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fsck(repo: &Path, what: &str) {
    if !repo.join("config").exists() {
        return; // killed before the repository was made
    }
    let out = Command::new("ostree").arg("fsck").arg("--repo").arg(repo).output().unwrap();
    assert!(out.status.success(), "{what}: ostree fsck: {}", String::from_utf8_lossy(&out.stderr));
}

/// After a run that completed: no commit is left marked partial (fsck skips partial commits).
fn no_partial_commit(repo: &Path, what: &str) {
    let partial: Vec<_> = fs_err::read_dir(repo.join("state"))
        .map(|d| {
            d.flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().ends_with(".commitpartial")).collect()
        })
        .unwrap_or_default();
    assert!(partial.is_empty(), "{what}: commits left partial: {partial:?}");
}

fn manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_string()
}

fn rev(repo: &Path, reference: &str) -> String {
    sh(&format!("ostree rev-parse --repo={} {reference}", repo.display())).trim().to_string()
}

fn oci_args(layout: &Path) -> Vec<String> {
    ["export", "images/work", "--format", "oci", "--output"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("oci:{}:work", layout.display())])
        .collect()
}

fn ostree_args(repo: &Path) -> Vec<String> {
    ["export", "images/work", "--format", "ostree", "--no-layout", "--ref", "work", "--repo"]
        .iter()
        .map(|s| s.to_string())
        .chain([repo.to_str().unwrap().to_string()])
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn builds_exports_and_gc_killed_at_many_points_leave_a_sound_store_and_finish_the_same() {
    let (_work, desc, bb) = setup();
    let d = desc.to_str().unwrap();

    // A run nothing disturbs: its tree, manifest and commit, and how long each command takes.
    let reference = store_with_base(&bb);
    let start = Instant::now();
    let tree = reference.json(&["build", d])["rootfs"]["tree"].as_str().unwrap().to_string();
    let build_time = start.elapsed();
    let layout = reference.path("layout");
    let oci_time = timed(&reference, &strs(&oci_args(&layout)));
    let digest = manifest_digest(&layout);
    let repo = reference.path("repo");
    let ostree_time = timed(&reference, &strs(&ostree_args(&repo)));
    let commit = rev(&repo, "work");

    // build: each point in a new store (the whole build is ahead of it), then built again.
    let mut interrupted = 0;
    for i in 0..POINTS {
        let env = store_with_base(&bb);
        let delay = point(build_time, i);
        interrupted += usize::from(!kill_after(&env, &["build", d], delay));
        let what = format!("build killed after {delay:?}");
        verify(&env, &what);
        let again = env.json(&["build", d]);
        assert_eq!(again["rootfs"]["tree"].as_str().unwrap(), tree, "{what}: another tree");
    }
    assert!(interrupted >= POINTS / 2, "only {interrupted} of {POINTS} builds were interrupted");

    // export: one store with the image built; each point into a new layout and repository.
    let env = store_with_base(&bb);
    env.ok(&["build", d]);
    let mut interrupted = 0;
    for i in 0..POINTS {
        let layout = env.path(&format!("layout-{i}"));
        let delay = point(oci_time, i);
        interrupted += usize::from(!kill_after(&env, &strs(&oci_args(&layout)), delay));
        let what = format!("OCI export killed after {delay:?}");
        verify(&env, &what);
        env.ok(&strs(&oci_args(&layout)));
        assert_eq!(manifest_digest(&layout), digest, "{what}: another manifest");

        let repo = env.path(&format!("repo-{i}"));
        let delay = point(ostree_time, i);
        interrupted += usize::from(!kill_after(&env, &strs(&ostree_args(&repo)), delay));
        let what = format!("OSTree export killed after {delay:?}");
        verify(&env, &what);
        fsck(&repo, &what);
        env.ok(&strs(&ostree_args(&repo)));
        assert_eq!(rev(&repo, "work"), commit, "{what}: another commit");
        fsck(&repo, &what);
        no_partial_commit(&repo, &what);
    }
    assert!(interrupted >= POINTS / 2, "only {interrupted} of {} exports were interrupted", 2 * POINTS);
    // A stock client reads the last layout whole (every blob against its digest).
    let last = env.path(&format!("layout-{}", POINTS - 1));
    let copy = env.path("copied");
    sh(&format!("skopeo copy --quiet oci:{}:work oci:{}:work", last.display(), copy.display()));
    verify(&env, "exports");

    // gc: before each point, a new generation (root/ changed, so the script runs again) and its
    // commit in a repository; gc keeps the newest generation and is killed, then the store and
    // the repository check and the newest generation is whole.
    let repo = env.path("repo-gc");
    let mut gc_time = None;
    let mut interrupted = 0;
    for i in 0..=POINTS {
        write(&desc.join("root/etc/work.conf"), &format!("work = {}\n", i + 2));
        env.ok(&["build", d]);
        env.ok(&strs(&ostree_args(&repo)));
        let Some(full) = gc_time else {
            // The first round measures a whole gc.
            gc_time = Some(timed(&env, &["gc", "--keep-last", "1"]));
            continue;
        };
        let delay = point(full, i - 1);
        interrupted += usize::from(!kill_after(&env, &["gc", "--keep-last", "1"], delay));
        let what = format!("gc killed after {delay:?}");
        verify(&env, &what);
        fsck(&repo, &what);
        env.ok(&strs(&ostree_args(&repo)));
        no_partial_commit(&repo, &what);
        let again = env.json(&["build", d]);
        assert_eq!(again["steps"]["built"], 0, "{what}: the newest generation lost a step: {again}");
    }
    assert!(interrupted >= POINTS / 2, "only {interrupted} of {POINTS} gc runs were interrupted");
    env.ok(&["gc", "--keep-last", "1"]);
    verify(&env, "gc");
    fsck(&repo, "gc");
}

/// A small file system of its own, loop-mounted at `dir` (removed when dropped).
struct SmallFs {
    dir: PathBuf,
    image: PathBuf,
}

impl SmallFs {
    fn new(env: &Env, name: &str, megabytes: u64) -> SmallFs {
        let (dir, image) = (env.path(name), env.path(&format!("{name}.img")));
        fs_err::create_dir_all(&dir).unwrap();
        sh(&format!(
            "truncate -s {megabytes}M {i} && mkfs.ext4 -q -F {i} && mount -o loop {i} {d}",
            i = image.display(),
            d = dir.display()
        ));
        SmallFs { dir, image }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = fs_err::remove_file(&self.image);
    }
}

#[test]
fn a_full_disk_a_damaged_database_and_a_read_only_store_get_one_clear_error() {
    let (work, desc, bb) = setup();
    let d = desc.to_str().unwrap();

    // The store on a file system too small for the image (busybox's 2 MB, the archive's 4 MB
    // and the script's 3 MB, in 8 MB): the build fails with one clear error, the store verifies,
    // and nothing of the image is recorded.
    let small = SmallFs::new(&work, "small", 8);
    let store = small.dir.join("store");
    let on_small = |args: &[&str]| {
        let mut c = Command::new(common::bin());
        c.arg("--store").arg(&store).args(args).env_remove("STRATA_STORE");
        c.output().unwrap()
    };
    assert!(on_small(&["store", "add", bb.to_str().unwrap(), "--root", "tags/bb"]).status.success());
    let out = on_small(&["build", d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build fit in 8 MB");
    assert!(
        err.contains("No space left on device") || err.contains("filling the store's file system"),
        "not a clear error: {err}"
    );
    assert_eq!(err.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    let verified = on_small(&["store", "verify", "--full"]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    assert!(!on_small(&["store", "show", "images/work"]).status.success(), "a half image was recorded");
    drop(small);

    // An export onto a full file system: one clear error, and the layout and repository hold
    // nothing half-written (no blob that is not its digest; the repository checks).
    let env = store_with_base(&bb);
    env.ok(&["build", d]);
    let small = SmallFs::new(&work, "exports", 6);
    let layout = small.dir.join("layout");
    let mut args = oci_args(&layout);
    args.extend(["--compression".into(), "none".into()]);
    let err = env.fail(&strs(&args));
    assert!(err.contains("No space left on device"), "{err}");
    if layout.join("blobs/sha256").exists() {
        for blob in fs_err::read_dir(layout.join("blobs/sha256")).unwrap() {
            let blob = blob.unwrap().path();
            let name = blob.file_name().unwrap().to_str().unwrap().to_string();
            let sum = sh(&format!("sha256sum {}", blob.display()));
            assert!(sum.starts_with(&name), "a half-written blob {name} in the layout");
        }
    }
    let repo = small.dir.join("repo");
    let mut args = ostree_args(&repo);
    args.extend(["--mode".into(), "bare".into()]);
    let err = env.fail(&strs(&args));
    assert!(err.contains("No space left on device") || err.contains("space"), "{err}");
    fsck(&repo, "OSTree export onto a full disk");
    verify(&env, "exports onto a full disk");
    drop(small);

    // A damaged database: a clear error that names it and what to do.
    let db = env.store().join("db.sqlite");
    let mut bytes = fs_err::read(&db).unwrap();
    for b in bytes.iter_mut().skip(4096).take(4096) {
        *b = 0x5a;
    }
    let saved = fs_err::read(&db).unwrap();
    fs_err::write(&db, &bytes).unwrap();
    let err = env.fail(&["build", d]);
    assert!(
        err.contains("the store's database") && err.contains("db.sqlite is damaged") && err.contains(".recover"),
        "{err}"
    );
    fs_err::write(&db, &saved).unwrap();
    env.ok(&["store", "verify"]);

    // A read-only store (a read-only bind mount of it): a clear error naming the store.
    write(&desc.join("root/etc/work.conf"), "work = changed\n");
    let s = env.store();
    sh(&format!("mount --bind {0} {0} && mount -o remount,bind,ro {0}", s.display()));
    let err = env.fail(&["build", d]);
    sh(&format!("umount {}", s.display()));
    assert!(err.contains(&format!("the store {} is on a read-only file system", s.display())), "{err}");
    assert_eq!(err.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    verify(&env, "a read-only store");
}
