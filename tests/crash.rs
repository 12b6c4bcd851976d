//! Crash safety: SIGKILL `store add` and `gc` at many points; afterwards the store must verify
//! clean (`verify --full`) and every committed entry must check out identical to its source.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{manifest, Env};

/// A source tree big enough that an import takes a while: many small files and a few large ones.
/// Every variant's content is its own, so each add writes as much as the first one.
fn source(env: &Env, variant: usize) -> PathBuf {
    let dir = env.path(&format!("src-{variant}"));
    for i in 0..3000 {
        let sub = dir.join(format!("d{:02}/e{:02}", i % 37, i % 11));
        fs_err::create_dir_all(&sub).unwrap();
        fs_err::write(sub.join(format!("f{i}")), format!("variant {variant} file {i}\n").repeat(1 + i % 50)).unwrap();
    }
    for i in 0..4 {
        let body: Vec<u8> = (0..(4 << 20)).map(|j: usize| ((j * 31 + i * 7 + variant) % 251) as u8).collect();
        fs_err::write(dir.join(format!("big-{i}")), body).unwrap();
    }
    for i in 0..200 {
        fs_err::write(dir.join(format!("d00/e00/f{i}")), format!("variant {variant} file {i}")).unwrap();
    }
    dir
}

fn kill_after(env: &Env, args: &[&str], delay: Duration) -> bool {
    let mut child =
        env.cmd(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();
    finished
}

/// Start `args` and SIGKILL it as soon as the store holds `objects` object files (or a little
/// after it has written them all, when `objects` is the total): crash points follow the work
/// done, not the clock, so a slow or busy machine moves them nowhere. Returns whether the
/// process finished before it could be killed.
fn kill_at_objects(env: &Env, args: &[&str], objects: usize, linger: Duration) -> bool {
    let mut child =
        env.cmd(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        if common::object_files(&env.store()) >= objects {
            std::thread::sleep(linger);
            let finished = child.try_wait().unwrap().is_some();
            let _ = child.kill(); // SIGKILL
            child.wait().unwrap();
            return finished;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// verify --full passes, and every entry checks out identical to the source it came from.
fn check_store(env: &Env, sources: &BTreeMap<String, PathBuf>, round: &str) {
    let out = env.cmd(&["store", "verify", "--full"]).output().unwrap();
    assert!(
        out.status.success(),
        "{round}: verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for e in env.json(&["store", "ls"]).as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let dest = env.path(&format!("check-{}", e["key"].as_str().unwrap()));
        env.ok(&["store", "checkout", e["key"].as_str().unwrap(), dest.to_str().unwrap(), "--link", "copy"]);
        assert_eq!(manifest(&dest), manifest(&sources[name]), "{round}: entry {name} differs from its source");
        fs_err::remove_dir_all(&dest).unwrap();
    }
}

fn add_args(src: &Path, name: &str) -> Vec<String> {
    vec!["store".into(), "add".into(), src.to_str().unwrap().into(), "--name".into(), name.into()]
}

#[test]
fn killed_add_and_gc_leave_a_clean_store() {
    let env = Env::new();
    let rounds = 12;
    let mut sources = BTreeMap::new();
    let variants: Vec<PathBuf> = (0..rounds).map(|v| source(&env, v)).collect();
    for (v, dir) in variants.iter().enumerate() {
        sources.insert(format!("v{v}"), dir.clone());
    }

    // How many objects one variant adds (every variant's content is its own).
    let scratch = Env::new();
    scratch.ok(&add_args(&variants[0], "v0").iter().map(String::as_str).collect::<Vec<_>>());
    let per_add = common::object_files(&scratch.store());

    // Kill `store add` while it writes objects (at 1/12 … 10/12 of them), then just after the
    // last object (during the sync and the commit), then at the end of the run.
    let mut killed_mid_way = 0;
    env.ok(&["store", "ls"]); // create the store
    for (v, dir) in variants.iter().enumerate() {
        let before = common::object_files(&env.store());
        let (target, linger) = match v {
            v if v < rounds - 2 => (before + per_add * (v + 1) / (rounds - 1), Duration::ZERO),
            v if v == rounds - 2 => (before + per_add, Duration::ZERO),
            _ => (before + per_add, Duration::from_millis(20)),
        };
        let args = add_args(dir, &format!("v{v}"));
        let finished = kill_at_objects(&env, &args.iter().map(String::as_str).collect::<Vec<_>>(), target, linger);
        killed_mid_way += usize::from(!finished);
        check_store(&env, &sources, &format!("add v{v} killed at {target} objects"));
    }
    assert!(killed_mid_way >= rounds / 2, "only {killed_mid_way} of {rounds} adds were interrupted");

    // Make sure some entries exist, root half of them, then kill gc at many points.
    for (v, dir) in variants.iter().enumerate().take(6) {
        let mut args = add_args(dir, &format!("v{v}"));
        if v % 2 == 0 {
            args.extend(["--root".into(), format!("tags/v{v}")]);
        }
        env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let gc_scratch_time = {
        let start = Instant::now();
        env.ok(&["gc", "--dry-run"]);
        start.elapsed()
    };
    for i in 0..8 {
        let delay = gc_scratch_time.mul_f64(0.2 + i as f64 * 0.4);
        kill_after(&env, &["gc"], delay);
        check_store(&env, &sources, &format!("gc killed after {delay:?}"));
        for v in (0..6).step_by(2) {
            env.ok(&["store", "show", &format!("tags/v{v}")]);
        }
    }
    env.ok(&["gc"]);
    check_store(&env, &sources, "final gc");
    let names = env.entry_names();
    assert!(names.iter().all(|n| ["v0", "v2", "v4"].contains(&n.as_str())), "{names:?}");
    assert_eq!(env.json(&["store", "verify"])["orphan_files"], 0);
}
