//! The store through the real binary: exact round trips, output shapes, errors, gc and roots.

mod common;

use common::{manifest, object_files, special_fixture, Env};

#[test]
fn every_kind_of_node_round_trips_in_every_link_mode() {
    let env = Env::new();
    let src = env.path("src");
    special_fixture(&src);
    let added = env.json(&["store", "add", src.to_str().unwrap(), "--root", "tags/fixture"]);
    assert_eq!(added["files"], 12, "{added}");
    let want = manifest(&src);
    for mode in ["copy", "hardlink", "auto"] {
        let dest = env.path(&format!("co-{mode}"));
        let report = env.json(&["store", "checkout", "tags/fixture", dest.to_str().unwrap(), "--link", mode]);
        let expected_method = if mode == "auto" { "hardlink" } else { mode }; // the test file system is ext4
        assert_eq!(report["method"], expected_method);
        let got = manifest(&dest);
        if expected_method == "hardlink" {
            // Every file is a link to its object, so identical files (same content and metadata)
            // share an inode even where the source had two: documented for hardlink checkouts.
            assert_eq!(strip_link_groups(&got), strip_link_groups(&want), "checkout with --link {mode} differs");
            assert!(got["usr/share/same-as-a"].contains("link-group 1"));
        } else {
            assert_eq!(got, want, "checkout with --link {mode} differs from the source");
        }
    }
    env.ok(&["store", "verify", "--full"]);
}

fn strip_link_groups(m: &std::collections::BTreeMap<String, String>) -> std::collections::BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.replace("link-group 1", "link-group 0"))).collect()
}

#[test]
fn golden_tree_id_of_fixture_is_stable() {
    let env = Env::new();
    let src = env.path("src");
    special_fixture(&src);
    // The root directory's own metadata is part of the id: pin it.
    nix::unistd::chown(&src, Some(0.into()), Some(0.into())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["etc", "usr", "usr/bin", "usr/lib", "dev"] {
        fs_err::set_permissions(src.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs_err::set_permissions(src.join("usr/share"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let added = env.json(&["store", "add", src.to_str().unwrap()]);
    assert_eq!(added["tree"], "e413575f4b75eb6f177992051af7ad09c46ce7554de8c5a625c0919de6051e66");
}

#[test]
fn re_adding_writes_nothing_and_keeps_the_key() {
    let env = Env::new();
    let src = env.path("src");
    common::many_files(&src, 300);
    let first = env.json(&["store", "add", src.to_str().unwrap()]);
    assert_eq!(first["new_objects"], 300);
    let objects = object_files(&env.store());
    let second = env.json(&["store", "add", src.to_str().unwrap()]);
    assert_eq!(second["new_objects"], 0);
    assert_eq!(second["key"], first["key"]);
    assert_eq!(second["tree"], first["tree"]);
    assert_eq!(object_files(&env.store()), objects);
    // JSON shape of `store add`, as documented.
    let keys: Vec<_> = first.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["bytes", "files", "key", "new_objects", "tree"]);
}

#[test]
fn diff_names_what_changed() {
    let env = Env::new();
    let a = env.path("a");
    special_fixture(&a);
    env.ok(&["store", "add", a.to_str().unwrap(), "--root", "tags/a"]);
    fs_err::write(a.join("etc/hostname"), "changed\n").unwrap();
    xattr::set(a.join("etc/hostname"), "user.comment", b"from the fixture").unwrap();
    xattr::set(a.join("etc/hostname"), "security.selinux", b"system_u:object_r:etc_t:s0\0").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(a.join("usr/bin/wall"), std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(&a.join("etc/motd-new").with_file_name("shadow"), Some(7.into()), None).unwrap();
    xattr::remove(a.join("usr/bin/ping"), "security.capability").unwrap();
    fs_err::remove_file(a.join("etc/su-link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", a.join("etc/su-link")).unwrap();
    fs_err::remove_file(a.join("dev/initctl")).unwrap();
    fs_err::write(a.join("etc/new-file"), "new").unwrap();
    env.ok(&["store", "add", a.to_str().unwrap(), "--root", "tags/b"]);
    let changes = env.json(&["store", "diff", "tags/a", "tags/b"]);
    let lines: Vec<String> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let what: Vec<&str> = c["what"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
            format!("{} {} {}", c["change"].as_str().unwrap(), c["path"].as_str().unwrap(), what.join(","))
        })
        .collect();
    assert_eq!(
        lines,
        [
            "removed /dev/initctl ",
            "changed /etc/hostname content",
            "added /etc/new-file ",
            "changed /etc/shadow owner",
            "changed /etc/su-link target",
            "changed /usr/bin/ping xattrs",
            "changed /usr/bin/wall mode",
        ]
    );
}

#[test]
fn ls_show_roots_and_prefixes() {
    let env = Env::new();
    let src = env.path("src");
    common::many_files(&src, 10);
    let added = env.json(&["store", "add", src.to_str().unwrap(), "--name", "ten"]);
    let key = added["key"].as_str().unwrap().to_string();
    let ls = env.json(&["store", "ls"]);
    assert_eq!(ls[0]["name"], "ten");
    assert_eq!(ls[0]["roots"], serde_json::json!([]));
    // Abbreviated key, root name and tree id all resolve.
    let show = env.json(&["store", "show", &key[..8]]);
    assert_eq!(show["key"], key.as_str());
    env.ok(&["roots", "add", "tags/ten", &key[..6]]);
    assert_eq!(env.json(&["store", "show", "tags/ten"])["key"], key.as_str());
    let tree = added["tree"].as_str().unwrap();
    assert_eq!(env.json(&["store", "show", &tree[..10]])["type"], "tree");
    let roots = env.json(&["roots", "ls"]);
    assert_eq!(roots[0]["name"], "tags/ten");
    assert_eq!(roots[0]["entry"], key.as_str());
    // Errors: too short, unknown, bad root names, removing a missing root.
    assert!(env.fail(&["store", "show", "ab"]).contains("too short"));
    assert!(env.fail(&["store", "show", "tags/nope"]).contains("no entry, tree or root named `tags/nope`"));
    assert!(env.fail(&["roots", "add", "bad name", &key]).contains("invalid root name"));
    assert!(env.fail(&["roots", "add", "cafe", &key]).contains("hex digits"));
    assert!(env.fail(&["roots", "rm", "tags/nope"]).contains("no root named `tags/nope`"));
    env.ok(&["roots", "rm", "tags/ten"]);
    assert_eq!(env.json(&["roots", "ls"]), serde_json::json!([]));
}

#[test]
fn gc_keeps_rooted_entries_and_frees_the_rest() {
    let env = Env::new();
    let keep = env.path("keep");
    let drop = env.path("drop");
    common::many_files(&keep, 50);
    common::many_files(&drop, 80); // shares its first 50 files with `keep`
    fs_err::write(drop.join("only-here"), "x".repeat(1000)).unwrap();
    env.ok(&["store", "add", keep.to_str().unwrap(), "--root", "tags/keep"]);
    env.ok(&["store", "add", drop.to_str().unwrap()]);
    let dry = env.json(&["gc", "--dry-run"])["store"].clone();
    assert_eq!(dry["entries"], 1);
    assert_eq!(dry["objects"], 31);
    assert_eq!(object_files(&env.store()), 81);
    let done = env.json(&["gc"])["store"].clone();
    assert_eq!(done["entries"], 1);
    assert_eq!(done["objects"], 31);
    assert_eq!(done["deferred"]["objects"], 0, "no other process: everything dead goes at once");
    assert_eq!(object_files(&env.store()), 50);
    env.ok(&["store", "verify", "--full"]);
    let out = env.path("out");
    env.ok(&["store", "checkout", "tags/keep", out.to_str().unwrap()]);
    assert_eq!(manifest(&out), manifest(&keep));
    // Nothing left to collect.
    assert_eq!(env.json(&["gc"])["store"]["objects"], 0);
}

#[test]
fn verify_names_the_bad_object_and_its_entries() {
    let env = Env::new();
    let src = env.path("src");
    common::many_files(&src, 5);
    env.ok(&["store", "add", src.to_str().unwrap(), "--name", "five", "--root", "tags/five"]);
    // Corrupt one object in place (same size), and delete another.
    let mut files = Vec::new();
    for d in fs_err::read_dir(env.store().join("objects")).unwrap() {
        for f in fs_err::read_dir(d.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    let len = fs_err::metadata(&files[0]).unwrap().len() as usize;
    fs_err::write(&files[0], "Z".repeat(len)).unwrap();
    fs_err::remove_file(&files[1]).unwrap();
    // Fast mode sees the missing object, not the same-size corruption.
    let fast = env.cmd(&["--json", "store", "verify"]).output().unwrap();
    assert!(!fast.status.success());
    let fast: serde_json::Value = serde_json::from_slice(&fast.stdout).unwrap();
    assert_eq!(fast["problems"].as_array().unwrap().len(), 1);
    assert_eq!(fast["problems"][0]["problem"], "object file is missing");
    let full = env.cmd(&["--json", "store", "verify", "--full"]).output().unwrap();
    assert!(!full.status.success());
    let full: serde_json::Value = serde_json::from_slice(&full.stdout).unwrap();
    let problems = full["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{full}");
    for p in problems {
        assert_eq!(p["entries"][0]["name"], "five");
    }
    let text = String::from_utf8(env.cmd(&["store", "verify", "--full"]).output().unwrap().stdout).unwrap();
    assert!(text.contains("content does not match its digest") && text.contains("(five)"), "{text}");
}

#[test]
fn bad_input_fails_cleanly_or_round_trips() {
    let env = Env::new();
    // A tree that imports fine first, so that "unchanged" has something to compare.
    let good = env.path("good");
    common::many_files(&good, 5);
    env.ok(&["store", "add", good.to_str().unwrap(), "--root", "tags/good"]);
    let before = (env.ok(&["store", "ls", "--json"]), object_files(&env.store()));

    // Missing path.
    let err = env.fail(&["store", "add", env.path("nope").to_str().unwrap()]);
    assert!(err.starts_with("error: ") && err.contains("nope") && err.lines().count() == 1, "{err}");
    // A regular file is not a directory.
    let err = env.fail(&["store", "add", good.join("d00/e00/f0").to_str().unwrap()]);
    assert!(err.contains("is not a directory"), "{err}");
    // A socket deep inside, after many files that would otherwise be stored.
    let sock = env.path("sock");
    common::many_files(&sock, 40);
    let _listener = std::os::unix::net::UnixListener::bind(sock.join("zz.sock")).unwrap();
    let err = env.fail(&["store", "add", sock.to_str().unwrap()]);
    assert!(err.contains("zz.sock") && err.contains("is a socket"), "{err}");
    assert_eq!((env.ok(&["store", "ls", "--json"]), object_files(&env.store())), before);
    env.ok(&["store", "verify", "--full"]);

    // A 4 GiB sparse file, a symlink loop and a name with a newline round-trip.
    let odd = env.path("odd");
    fs_err::create_dir_all(&odd).unwrap();
    let f = fs_err::File::create(odd.join("sparse")).unwrap();
    f.set_len(4 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    f.file().write_all_at(b"data in the middle", 2 << 30).unwrap();
    drop(f);
    std::os::unix::fs::symlink("loop2", odd.join("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", odd.join("loop2")).unwrap();
    fs_err::write(odd.join("new\nline"), "x").unwrap();
    let added = env.json(&["store", "add", odd.to_str().unwrap(), "--root", "tags/odd"]);
    assert_eq!(added["bytes"], (4u64 << 30) + 1);
    use std::os::unix::fs::MetadataExt;
    let out = env.path("odd-out");
    env.ok(&["store", "checkout", "tags/odd", out.to_str().unwrap(), "--link", "copy"]);
    let st = fs_err::metadata(out.join("sparse")).unwrap();
    assert_eq!(st.len(), 4 << 30);
    assert!(st.blocks() * 512 < 1 << 20, "the sparse file was expanded to {} bytes on disk", st.blocks() * 512);
    let mut buf = [0u8; 18];
    fs_err::File::open(out.join("sparse")).unwrap().file().read_exact_at(&mut buf, 2 << 30).unwrap();
    assert_eq!(&buf, b"data in the middle");
    assert_eq!(fs_err::read_link(out.join("loop1")).unwrap().to_str(), Some("loop2"));
    assert_eq!(fs_err::read(out.join("new\nline")).unwrap(), b"x");
    env.ok(&["store", "verify"]);
}

#[test]
fn unreadable_file_fails_for_a_normal_user_and_changes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    common::many_files(&src, 20);
    let secret = src.join("d00/secret");
    fs_err::write(&secret, "no").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Everything belongs to nobody, so only the mode-000 file is unreadable for them.
    let status = std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(env.dir.path()).status().unwrap();
    assert!(status.success());
    fs_err::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(common::bin())
            .arg("--store")
            .arg(env.store())
            .args(args)
            .env("HOME", env.dir.path())
            .output()
            .unwrap()
    };
    let out = as_nobody(&["store", "add", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("secret") && err.contains("Permission denied"), "{err}");
    let ls = as_nobody(&["--json", "store", "ls"]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), "[]");
    // Once readable, the unprivileged store imports and checks out the tree.
    fs_err::set_permissions(&secret, std::fs::Permissions::from_mode(0o400)).unwrap();
    let out = as_nobody(&["store", "add", src.to_str().unwrap(), "--root", "tags/src"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dest = env.path("out");
    let out = as_nobody(&["store", "checkout", "tags/src", dest.to_str().unwrap(), "--link", "copy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(manifest(&dest), manifest(&src));
    assert!(as_nobody(&["store", "verify", "--full"]).status.success());
}

#[test]
fn store_layout_and_lock_errors() {
    let env = Env::new();
    env.ok(&["store", "ls"]);
    // A newer layout is refused.
    let meta = env.store().join("meta.json");
    let saved = fs_err::read_to_string(&meta).unwrap();
    fs_err::write(&meta, r#"{"format": "strata-store", "layout": 99, "features": []}"#).unwrap();
    let err = env.fail(&["store", "ls"]);
    assert!(err.contains("layout version 99") && err.contains("upgrade strata"), "{err}");
    fs_err::write(&meta, saved).unwrap();
    // A foreign, non-empty directory is not taken over.
    let foreign = env.path("foreign");
    fs_err::create_dir_all(&foreign).unwrap();
    fs_err::write(foreign.join("precious.txt"), "keep me").unwrap();
    let err = env.cmd(&["store", "ls"]).arg("--store").arg(&foreign).output().unwrap();
    let err = String::from_utf8(err.stderr).unwrap();
    assert!(err.contains("is not a strata store") && err.contains("precious.txt"), "{err}");
    assert_eq!(fs_err::read_dir(&foreign).unwrap().count(), 1);
    // A store locked by gc (exclusive) makes others wait, then fail with a clear message.
    let mut holder = std::process::Command::new("flock")
        .args(["-x", "-o"])
        .arg(env.store().join("lock"))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let err = env.fail(&["--lock-wait", "1", "store", "ls"]);
    assert!(err.contains("is locked by another strata process"), "{err}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    env.ok(&["--lock-wait", "1", "store", "ls"]);
}

#[test]
fn checkout_refuses_a_non_empty_destination_and_leaves_nothing_on_failure() {
    let env = Env::new();
    let src = env.path("src");
    common::many_files(&src, 5);
    env.ok(&["store", "add", src.to_str().unwrap(), "--root", "tags/t"]);
    let dest = env.path("dest");
    fs_err::create_dir_all(&dest).unwrap();
    fs_err::write(dest.join("x"), "").unwrap();
    let err = env.fail(&["store", "checkout", "tags/t", dest.to_str().unwrap()]);
    assert!(err.contains("already exists and is not an empty directory"), "{err}");
    // An empty directory is fine.
    let empty = env.path("empty");
    fs_err::create_dir_all(&empty).unwrap();
    env.ok(&["store", "checkout", "tags/t", empty.to_str().unwrap()]);
    assert_eq!(manifest(&empty), manifest(&src));
    // Reflink on ext4 is refused with the reason, and leaves no staging directory behind.
    let r = env.path("reflinked");
    let err = env.fail(&["store", "checkout", "tags/t", r.to_str().unwrap(), "--link", "reflink"]);
    assert!(err.contains("cannot reflink"), "{err}");
    let leftovers: Vec<_> = fs_err::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("strata-"))
        .collect();
    assert!(leftovers.is_empty() && !r.exists(), "{leftovers:?}");
}

#[test]
fn help_completions_and_man_page() {
    let env = Env::new();
    for cmd in [
        vec!["--help"],
        vec!["store", "add", "--help"],
        vec!["store", "checkout", "--help"],
        vec!["store", "verify", "--help"],
        vec!["roots", "add", "--help"],
        vec!["gc", "--help"],
    ] {
        let out = env.ok(&cmd);
        assert!(out.contains("Examples:"), "{cmd:?} --help has no example:\n{out}");
    }
    assert!(env.ok(&["completions", "bash"]).contains("strata"));
    let man = env.ok(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH strata"), "{}", &man[..200.min(man.len())]);
    let dir = env.path("man");
    env.ok(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(dir.join("strata-store-add.1").exists());
}

#[test]
fn concurrent_adds_of_overlapping_trees_both_land() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    common::many_files(&a, 400);
    common::many_files(&b, 600); // the first 400 files are the same objects as in `a`
    env.ok(&["store", "ls"]); // create the store first
    let spawn = |p: &std::path::Path, root: &str| {
        env.cmd(&["--json", "store", "add", p.to_str().unwrap(), "--root", root]).output().unwrap()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&a, "tags/a"));
        let hb = s.spawn(|| spawn(&b, "tags/b"));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert!(ra.status.success(), "{}", String::from_utf8_lossy(&ra.stderr));
    assert!(rb.status.success(), "{}", String::from_utf8_lossy(&rb.stderr));
    env.ok(&["store", "verify", "--full"]);
    assert_eq!(object_files(&env.store()), 600);
    for (root, src) in [("tags/a", &a), ("tags/b", &b)] {
        let out = env.path(&format!("out-{}", &root[5..]));
        env.ok(&["store", "checkout", root, out.to_str().unwrap(), "--link", "copy"]);
        assert_eq!(manifest(&out), manifest(src));
    }
}

#[test]
fn hardlink_checkouts_past_the_link_limit_fall_back_to_copies() {
    // ext4 allows 65,000 links per inode; three checkouts of 22,000 identical empty files need more.
    let env = Env::new();
    let src = env.path("src");
    for d in 0..22 {
        let dir = src.join(format!("pkg{d}"));
        fs_err::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            fs_err::File::create(dir.join(format!("__init__{f}.py"))).unwrap();
        }
    }
    env.ok(&["store", "add", src.to_str().unwrap(), "--root", "tags/empty"]);
    let mut copied = 0;
    for i in 0..3 {
        let dest = env.path(&format!("co{i}"));
        let r = env.json(&["store", "checkout", "tags/empty", dest.to_str().unwrap(), "--link", "hardlink"]);
        assert_eq!(r["method"], "hardlink");
        copied += r["copied_at_link_limit"].as_u64().unwrap();
        assert_eq!(fs_err::read_dir(dest.join("pkg21")).unwrap().count(), 1000);
    }
    assert!(copied >= 1000, "expected the third checkout to copy past the link limit, copied {copied}");
    env.ok(&["store", "verify", "--full"]);
}

/// Objects keep setuid bits (checkouts must be exact), so the store root is its owner's alone:
/// another local user cannot reach an object, not even to run it.
#[test]
fn the_store_root_is_private_so_setuid_objects_cannot_be_run_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    fs_err::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = env.path("src");
    common::write(&src.join("bin/tool"), "#!/bin/sh\necho ran\n");
    fs_err::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    env.ok(&["store", "add", src.to_str().unwrap(), "--root", "tags/suid"]);
    let mode = |p: &std::path::Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&env.store()), 0o700);
    let object = walkdir(&env.store().join("objects"))
        .into_iter()
        .find(|p| mode(p) & 0o4000 != 0)
        .expect("the setuid object is stored with its bit");
    let as_nobody = |cmd: &str| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", cmd])
            .output()
            .unwrap()
    };
    let out = as_nobody(&format!("{}", object.display()));
    assert!(!out.status.success(), "another user ran a setuid object: {}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    // A store made before stores were private is made private when opened.
    fs_err::set_permissions(env.store(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(&["store", "ls"]);
    assert_eq!(mode(&env.store()), 0o700);
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs_err::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}
