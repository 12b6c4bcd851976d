//! Lifecycle: retention policies, pins and `images rm` against a store with several images and
//! generations (small trees built from descriptions, no network), the OSTree repositories gc
//! prunes with them, and `strata du` with its picture.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{sh, write, Env};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A store with `tags/minimal` and descriptions `NAME` deriving from it.
fn setup(env: &Env, images: &[&str]) {
    let minimal = env.path("minimal");
    sh(&format!(
        "cp -a {} {m} && chown -R 0:0 {m} && chmod -R u=rwX,go=rX {m}",
        project().join("descriptions/minimal/root").display(),
        m = minimal.display()
    ));
    env.ok(&["store", "add", minimal.to_str().unwrap(), "--root", "tags/minimal"]);
    for name in images {
        write(
            &env.path(name).join("image.toml"),
            &format!("[image]\nname = \"{name}\"\nderived-from = \"root:tags/minimal\"\n"),
        );
    }
}

/// Build a new generation of `name` whose own file holds `size` bytes; returns its number.
fn generation(env: &Env, name: &str, n: usize, size: usize) -> u64 {
    let dir = env.path(name);
    write(&dir.join("root/etc/generation"), &format!("{name} {n}\n"));
    let pattern = format!("{name}-{n}-");
    let blob: String = pattern.repeat(size / pattern.len() + 1)[..size].to_string();
    write(&dir.join("root/var/lib/blob"), &blob);
    env.json(&["build", dir.to_str().unwrap()])["generation"].as_u64().unwrap()
}

/// Alive generations per image.
fn alive(env: &Env) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in env.json(&["roots", "ls"]).as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        if let Some(rest) = name.strip_prefix("images/") {
            let (image, n) = rest.rsplit_once('/').unwrap();
            out.entry(image.to_string()).or_default().push(n.parse().unwrap());
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn gens(pairs: &[(&str, &[u64])]) -> BTreeMap<String, Vec<u64>> {
    pairs.iter().map(|(i, g)| (i.to_string(), g.to_vec())).collect()
}

/// Make generation `n` of `image` look `days` old.
fn age(env: &Env, image: &str, n: u64, days: i64) {
    let db = rusqlite::Connection::open(env.store().join("db.sqlite")).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    db.execute(
        "UPDATE generations SET created = ?1 WHERE image = ?2 AND number = ?3",
        rusqlite::params![now - days * 86400, image, n as i64],
    )
    .unwrap();
}

/// The commits on `reference` in `repo`, newest first, as their `strata.entry`.
fn commits(repo: &Path, reference: &str) -> Vec<String> {
    let log = sh(&format!("ostree --repo={} log {reference}", repo.display()));
    log.lines().filter(|l| l.starts_with("commit ")).map(|l| l[7..].to_string()).collect()
}

fn fsck(repo: &Path) {
    let out = sh(&format!("ostree fsck --repo={} 2>&1", repo.display()));
    assert!(out.contains("no errors found"), "{out}");
}

#[test]
fn retention_pins_and_rm_keep_exactly_the_expected_generations_commits_and_bytes() {
    let env = Env::new();
    setup(&env, &["a", "b", "c"]);
    let repo = env.path("repo");
    let r = repo.to_str().unwrap();
    for n in 1..=6 {
        for image in ["a", "b", "c"] {
            assert_eq!(generation(&env, image, n, 20_000), n as u64);
        }
        // Every generation of `a` is exported, with a delta from the one before.
        env.ok(&["export", env.path("a").to_str().unwrap(), "--no-layout", "--repo", r, "--deltas", "1"]);
        for image in ["a", "b", "c"] {
            age(&env, image, n as u64, 10 - n as i64);
        }
    }
    assert_eq!(commits(&repo, "a/x86_64").len(), 6);
    let all: &[u64] = &[1, 2, 3, 4, 5, 6];
    assert_eq!(alive(&env), gens(&[("a", all), ("b", all), ("c", all)]));

    // No policy: gc keeps every generation.
    let r0 = env.json(&["gc"]);
    assert_eq!(r0["generations"].as_array().unwrap().len(), 0, "{r0}");
    assert_eq!(alive(&env), gens(&[("a", all), ("b", all), ("c", all)]));

    // The same decisions with --dry-run and without; a dry run changes nothing.
    env.ok(&["images", "pin", "a/2"]);
    let dry = env.json(&["gc", "--dry-run", "--keep-last", "2", "--image", "a"]);
    let dropped: Vec<String> = dry["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{}/{}", d["image"].as_str().unwrap(), d["generation"]))
        .collect();
    assert_eq!(dropped, ["a/1", "a/3", "a/4"]);
    assert_eq!(dry["repos"][0]["commits"], 1, "only a/1 is older than the oldest kept commit: {dry}");
    assert_eq!(alive(&env)["a"], all);
    let real = env.json(&["gc", "--keep-last", "2", "--image", "a"]);
    assert_eq!(real["generations"], dry["generations"]);
    assert_eq!(real["store"]["objects"], dry["store"]["objects"], "dry run and run agree: {dry} {real}");
    assert_eq!(real["store"]["bytes"], dry["store"]["bytes"]);
    assert_eq!(real["repos"][0]["objects"], dry["repos"][0]["objects"], "{dry} {real}");
    assert!(dry["repos"][0]["objects"].as_u64().unwrap() > 1, "{dry}");
    assert_eq!(real["repos"][0]["bytes"], dry["repos"][0]["bytes"], "{dry} {real}");
    assert_eq!(alive(&env)["a"], [2, 5, 6]);
    // History is contiguous down to the oldest kept generation (2, pinned): 1 went, with its delta.
    assert_eq!(commits(&repo, "a/x86_64").len(), 5);
    fsck(&repo);
    // Deltas from a removed commit to a kept one stay (a client still on it uses them).
    let deltas = sh(&format!("ostree --repo={r} static-delta list"));
    assert_eq!(deltas.lines().count(), 5, "{deltas}");

    // Stored policies: a default and one per image; the command line overrides both.
    env.ok(&["images", "keep", "--keep-last", "3"]);
    env.ok(&["images", "keep", "c", "--keep-younger-than", "6d"]);
    let policies = env.json(&["images", "keep"]);
    assert_eq!(policies.as_array().unwrap().len(), 2, "{policies}");
    env.ok(&["gc"]);
    // a: its newest 3 (2 is one of them); b: the newest 3 (default); c: younger than 6 days
    // (generations 6, 5, 4 are 4, 5, 6 days old and a little more).
    assert_eq!(alive(&env), gens(&[("a", &[2, 5, 6]), ("b", &[4, 5, 6]), ("c", &[5, 6])]));

    // Removing: a pinned generation is refused, by name; the newest goes only when asked.
    let err = env.fail(&["images", "rm", "a"]);
    assert!(err.contains("a/2 pinned") && err.contains("strata images unpin a/2"), "{err}");
    env.ok(&["images", "rm", "b/6"]);
    assert_eq!(alive(&env)["b"], [4, 5]);
    let err = env.fail(&["images", "pin", "b/6"]);
    assert!(err.contains("b/6 was removed"), "{err}");
    // Building the same description again brings the generation back, under its number.
    let again = env.json(&["build", env.path("b").to_str().unwrap()]);
    assert_eq!(again["generation"], 6);
    assert_eq!(alive(&env)["b"], [4, 5, 6]);
    env.ok(&["images", "unpin", "a/2"]);
    env.ok(&["images", "rm", "c"]);
    env.ok(&["gc", "--keep-last", "2", "--image", "a"]);
    assert_eq!(alive(&env), gens(&[("a", &[5, 6]), ("b", &[4, 5, 6])]));
    let history = env.json(&["images", "history", "c"]);
    assert!(history.as_array().unwrap().iter().all(|h| h["collected"] == true), "{history}");
    assert_eq!(commits(&repo, "a/x86_64").len(), 2);
    fsck(&repo);
    // The deltas to removed commits went: 4->5 and 5->6 remain.
    let deltas = sh(&format!("ostree --repo={r} static-delta list"));
    assert_eq!(deltas.lines().count(), 2, "{deltas}");
    let verify = env.json(&["store", "verify", "--full"]);
    assert_eq!(verify["problems"].as_array().map_or(0, |p| p.len()), 0, "{verify}");

    // Usage: each generation's own blob is unique to it; the base is shared by both images.
    let du = env.json(&["du"]);
    let images = du["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for (img, count) in images.iter().zip([2u64, 3]) {
        let g = img["generations"].as_array().unwrap();
        assert_eq!(g.len() as u64, count, "{img}");
        for gen in g {
            // The blob, and the generation file (`a 4\n`).
            assert_eq!(gen["unique_bytes"], 20_000 + 4, "{gen}");
            let newest_steps = gen["steps"].as_array().unwrap();
            let own = newest_steps.iter().find(|s| s["name"].as_str().unwrap().ends_with("/files root")).unwrap();
            assert_eq!(own["bytes"], 20_004, "{gen}");
        }
        assert!(img["shared_bytes"].as_u64().unwrap() > 0, "the base is shared: {img}");
        assert_eq!(img["unique_bytes"].as_u64().unwrap(), count * 20_004, "{img}");
    }
    assert_eq!(du["other_bytes"], 0, "after gc, images hold every object: {du}");
    let one = env.json(&["du", "a"]);
    assert_eq!(one["images"].as_array().unwrap().len(), 1);
    let err = env.fail(&["du", "c"]);
    assert!(err.contains("no alive generation of `c`"), "{err}");
    let svg = env.ok(&["du", "--format", "svg"]);
    assert!(svg.contains("<svg") && svg.contains(">a</text>") && svg.contains("a/6: "), "{svg}");
    common::rendered(&env, &svg, "du", 3000);
}

#[test]
fn bad_retention_arguments_are_refused_with_what_was_expected() {
    let env = Env::new();
    setup(&env, &["a"]);
    generation(&env, "a", 1, 10);
    for (args, expect) in [
        (&["gc", "--keep-last", "0"][..], "--keep-last 0 would keep nothing"),
        (&["gc", "--keep-younger-than", "3y"][..], "expected a number with s, m, h, d or w"),
        (&["gc", "--max-download-cache", "lots"][..], "invalid size `lots`"),
        (&["gc", "--keep-last", "1", "--image", "nope"][..], "no alive generation of `nope`"),
        (&["images", "pin", "a"][..], "expected IMAGE/GENERATION"),
        (&["images", "pin", "a/7"][..], "image `a` has no generation 7"),
        (&["images", "rm", "nope"][..], "no image `nope` has been built"),
        (&["images", "keep", "a", "--keep-last", "0"][..], "--keep-last 0 would keep nothing"),
    ] {
        let err = env.fail(args);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(alive(&env)["a"], [1], "nothing changed");
}

/// Write `n` files under `root/data` whose content rotates among three variants per round, so
/// that a build reuses objects of generations a gc has just dropped.
fn data_round(dir: &Path, image: &str, round: usize, n: usize) -> BTreeMap<String, String> {
    let data = dir.join("root/data");
    let _ = fs_err::remove_dir_all(&data);
    let mut files = BTreeMap::new();
    for i in 0..n {
        let rel = format!("d{:02}/f{i}", i % 23);
        let body = format!("{image} {i} variant {}\n", (round + i) % 3).repeat(1 + i % 7);
        write(&data.join(&rel), &body);
        files.insert(rel, body);
    }
    // One file only this round has.
    let own = format!("{image} round {round}\n");
    write(&data.join("round"), &own);
    files.insert("round".into(), own);
    files
}

/// Every file of `expected` under `dir/data`, and nothing else.
fn same_data(dir: &Path, expected: &BTreeMap<String, String>, what: &str) {
    let mut found = BTreeMap::new();
    let data = dir.join("data");
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&data).unwrap().to_string_lossy().into_owned();
                found.insert(rel, fs_err::read_to_string(&p).unwrap());
            }
        }
    }
    assert!(
        found == *expected,
        "{what}: the checkout differs from what was built ({} files, {} expected)",
        found.len(),
        expected.len()
    );
}

#[test]
fn gc_runs_while_builds_run_and_every_live_entry_stays_whole() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let env = Env::new();
    let images = ["a", "b", "c"];
    setup(&env, &images);
    // A small deterministic sequence (no clock or randomness in what is checked).
    let mut seed: u64 = 0x5eed;
    let mut next = move |m: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let mut overlaps = 0;
    let mut deferred_runs = 0;
    let start = Instant::now();
    for round in 0..20 {
        let mut expected = BTreeMap::new();
        for image in images {
            expected.insert(image, data_round(&env.path(image), image, round, 150));
        }
        // Builds of the three images and two aggressive gcs, started in a shuffled order with
        // small gaps.
        let mut jobs: Vec<(&str, Vec<String>)> = images
            .iter()
            .map(|i| ("build", vec!["build".to_string(), env.path(i).to_str().unwrap().to_string()]))
            .collect();
        jobs.push(("gc", vec!["--json".into(), "gc".into(), "--keep-last".into(), "1".into()]));
        jobs.push(("gc", vec!["--json".into(), "gc".into(), "--keep-last".into(), "1".into()]));
        for i in (1..jobs.len()).rev() {
            jobs.swap(i, next(i as u64 + 1) as usize);
        }
        let mut running = vec![];
        for (kind, args) in jobs {
            std::thread::sleep(Duration::from_millis(next(120)));
            let child = env
                .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            running.push((kind, args, start.elapsed(), child));
        }
        let mut spans = vec![];
        for (kind, args, began, child) in running {
            let out = child.wait_with_output().unwrap();
            let ended = start.elapsed();
            assert!(
                out.status.success(),
                "round {round}: strata {args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if kind == "gc" {
                let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                if r["store"]["deferred"]["objects"].as_u64().unwrap() > 0 {
                    deferred_runs += 1;
                }
            }
            spans.push((kind, began, ended));
        }
        // A gc that finished while a build ran (the build started before and ended after).
        if spans.iter().any(|(k, _, gc_end)| {
            *k == "gc" && spans.iter().any(|(b, b_start, b_end)| *b == "build" && b_start < gc_end && b_end > gc_end)
        }) {
            overlaps += 1;
        }
        let verify = env.cmd(&["--json", "store", "verify", "--full"]).output().unwrap();
        assert!(verify.status.success(), "round {round}: {}", String::from_utf8_lossy(&verify.stdout));
        for image in images {
            let out = env.path(&format!("check-{image}-{round}"));
            env.ok(&["store", "checkout", &format!("images/{image}"), out.to_str().unwrap()]);
            same_data(&out, &expected[image], &format!("round {round}, image {image}"));
            fs_err::remove_dir_all(&out).unwrap();
        }
        // Every alive generation checks out (older ones a deferred gc left, too).
        for r in env.json(&["roots", "ls"]).as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            let out = env.path("check-any");
            env.ok(&["store", "checkout", name, out.to_str().unwrap()]);
            fs_err::remove_dir_all(&out).unwrap();
        }
    }
    eprintln!("overlaps {overlaps}, deferred {deferred_runs}");
    assert!(overlaps >= 5, "a gc finished while a build ran in only {overlaps} of 20 rounds");
    assert!(deferred_runs >= 1, "no gc ever had to leave something for a running build");
    // Once nothing runs, one gc deletes everything dead, and retention left the newest only.
    let last = env.json(&["gc", "--keep-last", "1"]);
    assert_eq!(last["store"]["deferred"]["objects"], 0, "{last}");
    let alive = alive(&env);
    assert!(alive.values().all(|g| g.len() == 1), "{alive:?}");
    env.ok(&["store", "verify", "--full"]);
    assert_eq!(env.json(&["gc"])["store"]["objects"], 0, "nothing left to collect");
}

/// A loop-mounted ext4 file system of `mib` MiB at `dir`, unmounted on drop.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    fn new(env: &Env, mib: u64) -> SmallFs {
        let image = env.path("small.img");
        let dir = env.path("small");
        fs_err::create_dir_all(&dir).unwrap();
        sh(&format!("truncate -s {mib}M {0} && mkfs.ext4 -q -F {0}", image.display()));
        sh(&format!("mount -o loop {} {}", image.display(), dir.display()));
        SmallFs { dir }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_is_one_clear_error_and_gc_still_frees_space() {
    let env = Env::new();
    let fs = SmallFs::new(&env, 200);
    let store = fs.dir.join("store");
    let run = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .arg("--store")
            .arg(&store)
            .args(args)
            .env_remove("STRATA_STORE")
            .output()
            .unwrap()
    };
    let minimal = env.path("minimal");
    sh(&format!(
        "cp -a {} {m} && chown -R 0:0 {m}",
        project().join("descriptions/minimal/root").display(),
        m = minimal.display()
    ));
    assert!(run(&["store", "add", minimal.to_str().unwrap(), "--root", "tags/minimal"]).status.success());
    for name in ["a", "b"] {
        write(
            &env.path(name).join("image.toml"),
            &format!("[image]\nname = \"{name}\"\nderived-from = \"root:tags/minimal\"\n"),
        );
    }
    // Three generations of `a`, 40 MiB each.
    for n in 0..3 {
        let dir = env.path("a").join("root/var");
        sh(&format!("mkdir -p {0} && rm -f {0}/blob* && head -c 40M /dev/urandom > {0}/blob{n}", dir.display()));
        let out = run(&["build", env.path("a").to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // `b` (50 MiB, which its import stages once more) needs more than the file system has left.
    sh(&format!("mkdir -p {0}/root/var && head -c 50M /dev/urandom > {0}/root/var/big", env.path("b").display()));
    let out = run(&["build", env.path("b").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert!(lines.len() == 1 && lines[0].contains("No space left on device"), "{err}");
    // Nothing half-written: the store checks clean, and holds no trace of `b`.
    let verify = run(&["--json", "store", "verify", "--full"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(v["orphan_files"], 0, "{v}");
    let ls = run(&["--json", "images", "ls"]);
    assert!(!String::from_utf8_lossy(&ls.stdout).contains("\"b\""));
    // gc runs on the full disk and frees the old generations; then `b` fits.
    let gc = run(&["--json", "gc", "--keep-last", "1"]);
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    let g: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert!(g["store"]["bytes"].as_u64().unwrap() >= 80 << 20, "{g}");
    let out = run(&["build", env.path("b").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(run(&["store", "verify", "--full"]).status.success());
}

#[test]
fn repair_restores_what_has_a_copy_and_drops_what_has_none() {
    let env = Env::new();
    setup(&env, &["a", "b"]);
    // `a` and `b` share a file with different modes (two objects, one content); each has one of
    // its own too.
    for (image, mode) in [("a", "644"), ("b", "600")] {
        let dir = env.path(image);
        write(&dir.join("root/etc/shared"), "the same content in both images\n");
        write(&dir.join(format!("root/etc/only-{image}")), &format!("only in {image}\n"));
        sh(&format!("chmod {mode} {}/root/etc/shared", dir.display()));
        env.ok(&["build", dir.to_str().unwrap()]);
    }
    let object_of = |image: &str, path: &str| -> PathBuf {
        let out = env.path(&format!("co-{image}"));
        let _ = fs_err::remove_dir_all(&out);
        env.ok(&["store", "checkout", &format!("images/{image}"), out.to_str().unwrap(), "--link", "hardlink"]);
        let ino = std::os::unix::fs::MetadataExt::ino(&fs_err::metadata(out.join(path)).unwrap());
        let found = sh(&format!("find {} -inum {ino}", env.store().join("objects").display()));
        fs_err::remove_dir_all(&out).unwrap();
        PathBuf::from(found.trim())
    };
    let shared_a = object_of("a", "etc/shared");
    let only_b = object_of("b", "etc/only-b");
    assert!(shared_a.is_file() && only_b.is_file());
    // Damage: one object deleted (its content lives on in b's object), one corrupted (no copy).
    fs_err::remove_file(&shared_a).unwrap();
    sh(&format!("chmod u+w {0} && echo corrupt >> {0}", only_b.display()));
    let bad = env.cmd(&["--json", "store", "verify", "--full"]).output().unwrap();
    assert!(!bad.status.success());

    let r = env.json(&["store", "verify", "--full", "--repair"]);
    assert_eq!(r["before"]["problems"].as_array().unwrap().len(), 2, "{r}");
    let restored = r["restored"].as_array().unwrap();
    assert_eq!(restored.len(), 1, "{r}");
    assert!(restored[0]["from"].as_str().unwrap().starts_with("object "), "{r}");
    let dropped = r["dropped"].as_array().unwrap();
    assert!(!dropped.is_empty(), "{r}");
    let roots: Vec<&str> =
        dropped.iter().flat_map(|d| d["roots"].as_array().unwrap().iter().map(|x| x.as_str().unwrap())).collect();
    assert_eq!(roots, ["images/b/1"], "b's generation held the corrupt object: {r}");
    assert_eq!(r["after"]["problems"].as_array().unwrap().len(), 0, "{r}");
    env.ok(&["store", "verify", "--full"]);
    // `a` is whole again; `b` builds again, making its dropped steps anew.
    let out = env.path("a-after");
    env.ok(&["store", "checkout", "images/a", out.to_str().unwrap()]);
    assert_eq!(fs_err::read_to_string(out.join("etc/shared")).unwrap(), "the same content in both images\n");
    let again = env.json(&["build", env.path("b").to_str().unwrap()]);
    assert!(again["steps"]["built"].as_u64().unwrap() >= 1, "{again}");
    env.ok(&["store", "verify", "--full"]);
}

#[test]
fn repair_unpacks_a_package_again_from_the_download_cache() {
    let env = Env::new();
    let (gnupg, keyring) = common::make_key(&env, "archive");
    let repo = env.path("repo");
    let pool = repo.join("pool/main");
    fs_err::create_dir_all(&pool).unwrap();
    common::simple_deb(&pool, "cached", "1.0", "", &[("usr/share/cached/data", "only its package has this\n")]);
    let gone = common::simple_deb(&pool, "gone", "1.0", "", &[("usr/share/gone/data", "no copy of this anywhere\n")]);
    sh(&format!(
        "cd {r} && mkdir -p dists/test/main/binary-amd64 && apt-ftparchive packages pool > dists/test/main/binary-amd64/Packages \
         && apt-ftparchive -o APT::FTPArchive::Release::Suite=test release dists/test > Release.tmp \
         && mv Release.tmp dists/test/Release \
         && GNUPGHOME={g} gpg --batch --quiet --yes --clearsign -o dists/test/InRelease dists/test/Release",
        r = repo.display(),
        g = gnupg.display()
    ));
    let line = format!("deb [signed-by={}] file://{} test main", keyring.display(), repo.display());
    env.json(&["package", "fetch", "--repo", &line, "cached", "gone"]);
    // The download of `gone` is trimmed away; `cached`'s stays.
    let sha = sh(&format!("sha256sum {}", gone.display()));
    fs_err::remove_file(env.store().join("cache/downloads/sha256").join(&sha[..64])).unwrap();
    let object_with = |text: &str| -> PathBuf {
        let found = sh(&format!("grep -rlF '{text}' {}", env.store().join("objects").display()));
        PathBuf::from(found.trim())
    };
    let cached = object_with("only its package has this");
    let lost = object_with("no copy of this anywhere");
    fs_err::remove_file(&cached).unwrap();
    sh(&format!("chmod u+w {0} && echo corrupt >> {0}", lost.display()));

    let r = env.json(&["store", "verify", "--full", "--repair"]);
    assert_eq!(r["before"]["problems"].as_array().unwrap().len(), 2, "{r}");
    let restored = r["restored"].as_array().unwrap();
    assert_eq!(restored.len(), 1, "{r}");
    let from = restored[0]["from"].as_str().unwrap();
    assert!(from.starts_with("package cached_1.0_amd64 unpacked again from the download cache"), "{r}");
    let dropped: Vec<&str> = r["dropped"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(dropped, ["gone_1.0_amd64"], "{r}");
    assert_eq!(r["after"]["problems"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(fs_err::read_to_string(&cached).unwrap(), "only its package has this\n");
    // The scratch store is gone, and the repaired store is whole.
    assert_eq!(fs_err::read_dir(env.store().join("tmp")).unwrap().count(), 0);
    env.ok(&["store", "verify", "--full"]);
    assert_eq!(env.entry_names(), ["cached_1.0_amd64"]);
}

#[test]
fn a_description_sets_its_images_policy_and_the_store_can_override_it() {
    let env = Env::new();
    setup(&env, &["a"]);
    let doc = env.path("a").join("image.toml");
    let plain = fs_err::read_to_string(&doc).unwrap();
    write(&doc, &format!("{plain}\n[retention]\nkeep-last = 2\n"));
    for n in 1..=4 {
        generation(&env, "a", n, 64);
    }
    let listed = env.json(&["images", "keep"]);
    assert_eq!(listed[0]["image"], "a", "{listed}");
    assert_eq!(listed[0]["set_by"], "description", "{listed}");
    assert_eq!(listed[0]["policy"]["keep_last"], 2, "{listed}");
    let dropped = |r: &serde_json::Value| -> Vec<u64> {
        r["generations"].as_array().unwrap().iter().map(|d| d["generation"].as_u64().unwrap()).collect()
    };
    assert_eq!(dropped(&env.json(&["gc", "--dry-run"])), [1, 2]);
    // The store's own policy for the image is stronger; cleared, the description's applies again.
    env.ok(&["images", "keep", "a", "--keep-last", "3"]);
    assert_eq!(dropped(&env.json(&["gc", "--dry-run"])), [1]);
    env.ok(&["images", "keep", "a", "--clear"]);
    assert_eq!(dropped(&env.json(&["gc"])), [1, 2]);
    assert_eq!(alive(&env), gens(&[("a", &[3, 4])]));
    // A build of the description without `[retention]` takes its policy away.
    write(&doc, &plain);
    env.ok(&["build", env.path("a").to_str().unwrap()]);
    assert_eq!(env.json(&["images", "keep"]).as_array().unwrap().len(), 0);
    env.ok(&["store", "verify", "--full"]);
}
