//! Debian packages into store entries: packages built here with the real `dpkg-deb`, compared
//! with what `dpkg-deb` itself extracts, and hand-made hostile packages that must fail cleanly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{manifest, object_files, Env};

/// Build a package with `dpkg-deb --build` from a staged tree; returns the .deb path.
fn build_deb(env: &Env, name: &str, version: &str, compression: &str, extra: impl Fn(&Path)) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = env.path(&format!("build-{name}-{version}-{compression}"));
    let w = |p: &str, content: &str, mode: u32| {
        let path = root.join(p);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, content).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    w(
        "DEBIAN/control",
        &format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: Tests <t@example.org>\nDescription: test package\n multi-line\n"
        ),
        0o644,
    );
    w("DEBIAN/postinst", "#!/bin/sh\nset -e\necho configured\n", 0o755);
    w("DEBIAN/conffiles", &format!("/etc/{name}.conf\n"), 0o644);
    w(&format!("etc/{name}.conf"), "setting = 1\n", 0o644);
    w(&format!("usr/bin/{name}"), "#!/bin/sh\necho hello\n", 0o755);
    w(&format!("usr/bin/{name}-suid"), "pretend setuid binary\n", 0o4755);
    w(&format!("usr/share/doc/{name}/copyright"), "public domain\n", 0o644);
    w("usr/share/common/shared.txt", "the same in every package\n", 0o644);
    std::os::unix::fs::symlink(name, root.join(format!("usr/bin/{name}-alias"))).unwrap();
    fs_err::hard_link(root.join(format!("usr/bin/{name}")), root.join(format!("usr/bin/{name}-hardlink"))).unwrap();
    fs_err::create_dir_all(root.join(format!("var/lib/{name}"))).unwrap();
    nix::unistd::chown(&root.join(format!("var/lib/{name}")), Some(100.into()), Some(101.into())).unwrap();
    extra(&root);
    let deb = env.path(&format!("{name}_{version}_{compression}.deb"));
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Z", compression, "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&out.stderr));
    deb
}

/// What `dpkg-deb` itself extracts (with owners, as root).
fn dpkg_extract(env: &Env, deb: &Path) -> PathBuf {
    let dir = env.path(&format!("x-{}", deb.file_name().unwrap().to_string_lossy()));
    fs_err::create_dir_all(&dir).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("dpkg-deb --fsys-tarfile '{}' | tar -x --same-owner -p -C '{}'", deb.display(), dir.display()))
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

#[test]
fn packages_in_every_compression_match_dpkg_deb() {
    let env = Env::new();
    for compression in ["gzip", "xz", "zstd", "none"] {
        let deb = build_deb(&env, "hello", "1.0-1", compression, |_| {});
        let r = env.json(&["package", "unpack", deb.to_str().unwrap()]);
        let r = &r[0];
        assert_eq!(
            (r["package"].as_str(), r["version"].as_str(), r["architecture"].as_str()),
            (Some("hello"), Some("1.0-1"), Some("amd64"))
        );
        let out = env.path(&format!("co-{compression}"));
        env.ok(&["store", "checkout", r["key"].as_str().unwrap(), out.to_str().unwrap(), "--link", "copy"]);
        let want = manifest(&dpkg_extract(&env, &deb));
        assert_eq!(manifest(&out.join("data")), want, "{compression}: data/ differs from dpkg-deb's extraction");
        assert_eq!(fs_err::read_to_string(out.join("control/conffiles")).unwrap(), "/etc/hello.conf\n");
        assert!(fs_err::read_to_string(out.join("control/control")).unwrap().contains("Package: hello"));
        assert!(fs_err::read_to_string(out.join("control/postinst")).unwrap().contains("configured"));
        assert!(manifest(&out.join("data"))["usr/bin/hello-suid"].contains("mode 4755"));
        assert!(manifest(&out.join("data"))["usr/bin/hello-hardlink"].contains("link-group 1"));
    }
    env.ok(&["store", "verify", "--full"]);
}

#[test]
fn a_package_is_unpacked_once_and_shares_objects_with_others() {
    let env = Env::new();
    let a = build_deb(&env, "alpha", "1", "xz", |_| {});
    let b = build_deb(&env, "beta", "1", "xz", |_| {});
    let first = env.json(&["package", "unpack", a.to_str().unwrap()]);
    assert_eq!(first[0]["cached"], false);
    let objects = object_files(&env.store());
    let again = env.json(&["package", "unpack", a.to_str().unwrap()]);
    assert_eq!(again[0]["cached"], true);
    assert_eq!(again[0]["key"], first[0]["key"]);
    assert_eq!(object_files(&env.store()), objects);
    // beta's files have the same contents and modes as alpha's (only names differ), and so does
    // its postinst: only its `control` and `conffiles` are new objects.
    let beta = env.json(&["package", "unpack", b.to_str().unwrap()]);
    assert_eq!(beta[0]["new_objects"], 2);
    let ls = env.json(&["store", "ls"]);
    let names: Vec<&str> = ls.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha_1_amd64", "beta_1_amd64"]);
    assert!(ls.as_array().unwrap().iter().all(|e| e["kind"] == "package"));
}

/// One tar member for a hand-made hostile archive: raw name bytes, type, content, link target.
struct Member<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    content: &'a [u8],
    link: &'a [u8],
}

fn m<'a>(name: &'a [u8], kind: tar::EntryType, content: &'a [u8], link: &'a [u8]) -> Member<'a> {
    Member { name, kind, content, link }
}

/// A tar stream with names written raw into the header (the tar crate's own builder refuses `..`).
fn raw_tar(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for mem in members {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..mem.name.len()].copy_from_slice(mem.name);
        h.as_old_mut().linkname[..mem.link.len()].copy_from_slice(mem.link);
        h.set_entry_type(mem.kind);
        h.set_mode(if mem.kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(mem.content.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(mem.content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn raw_deb(path: &Path, members: &[(&str, Vec<u8>)]) {
    let file = fs_err::File::create(path).unwrap();
    let mut ar = ar::Builder::new(file);
    for (name, data) in members {
        ar.append(&ar::Header::new(name.as_bytes().to_vec(), data.len() as u64), data.as_slice()).unwrap();
    }
}

/// The members of an ar archive: (name, content).
type ArMembers<'a> = Vec<(&'a str, Vec<u8>)>;

fn control_tar() -> Vec<u8> {
    raw_tar(&[m(b"./control", tar::EntryType::Regular, b"Package: evil\nVersion: 1\nArchitecture: all\n", b"")])
}

#[test]
fn a_chain_of_tar_hardlinks_stays_one_group() {
    use tar::EntryType::{Link as H, Regular as F};
    let env = Env::new();
    let deb = env.path("chain.deb");
    raw_deb(
        &deb,
        &[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar", control_tar()),
            (
                "data.tar",
                raw_tar(&[m(b"./a", F, b"same inode", b""), m(b"./b", H, b"", b"./a"), m(b"./c", H, b"", b"./b")]),
            ),
        ],
    );
    let r = env.json(&["package", "unpack", deb.to_str().unwrap()]);
    let out = env.path("out");
    env.ok(&["store", "checkout", r[0]["key"].as_str().unwrap(), out.to_str().unwrap(), "--link", "copy"]);
    let m = manifest(&out.join("data"));
    assert!(["a", "b", "c"].iter().all(|p| m[*p].contains("link-group 1")), "{m:?}");
}

#[test]
fn hostile_packages_fail_with_the_member_named_and_the_store_still_verifies() {
    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};
    let env = Env::new();
    let good = build_deb(&env, "good", "1", "gzip", |_| {});
    env.ok(&["package", "unpack", good.to_str().unwrap()]);
    let before = env.ok(&["store", "ls", "--json"]);
    let cases: Vec<(&str, ArMembers, &str)> = vec![
        (
            "dotdot",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
                ("data.tar", raw_tar(&[m(b"./../../etc/evil", F, b"x", b"")])),
            ],
            "member `data.tar`: entry `./../../etc/evil`: path contains `..`",
        ),
        (
            "newline",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
                ("data.tar", raw_tar(&[m(b"./usr/", D, b"", b""), m(b"./usr/bad\nname", F, b"x", b"")])),
            ],
            "member `data.tar`: entry `./usr/bad\\nname`: the name holds a newline",
        ),
        (
            "absolute",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
                ("data.tar", raw_tar(&[m(b"/etc/evil", F, b"x", b"")])),
            ],
            "entry `/etc/evil`: absolute path",
        ),
        (
            "through-symlink",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
                ("data.tar", raw_tar(&[m(b"./lib", S, b"", b"/etc"), m(b"./lib/passwd", F, b"x", b"")])),
            ],
            "entry `./lib/passwd`: `/lib/passwd` would be created through the symlink `/lib`",
        ),
        (
            "hardlink-to-nothing",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
                ("data.tar", raw_tar(&[m(b"./x", H, b"", b"./etc/shadow")])),
            ],
            "hardlink to `./etc/shadow`, which is not an earlier regular file",
        ),
        (
            "duplicate",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
                ("data.tar", raw_tar(&[m(b"./a", F, b"1", b""), m(b"./a", F, b"2", b"")])),
            ],
            "entry `./a`: `/a` appears twice",
        ),
        (
            "file-over-dir",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
                ("data.tar", raw_tar(&[m(b"./usr/", D, b"", b""), m(b"./usr", F, b"2", b"")])),
            ],
            "`/usr` replaces a directory with a non-directory",
        ),
        (
            "no-control",
            vec![("debian-binary", b"2.0\n".to_vec()), ("data.tar", raw_tar(&[]))],
            "member `data.tar` comes before the control archive",
        ),
        ("bad-version", vec![("debian-binary", b"3.0\n".to_vec())], "format `3.0` is not supported"),
        (
            "bz2",
            vec![("debian-binary", b"2.0\n".to_vec()), ("control.tar.bz2", vec![1, 2, 3])],
            "member `control.tar.bz2`: compression `.bz2` is not supported",
        ),
        (
            "bad-control",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", raw_tar(&[m(b"./control", F, b"Package evil\n", b"")])),
            ],
            "file `control`: line 1: expected `Field: value`",
        ),
        (
            "pax-bomb",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
                (
                    "data.tar",
                    raw_tar(&[
                        m(b"./@PaxHeader", tar::EntryType::XHeader, &vec![b'9'; 1 << 20], b""),
                        m(b"./a", F, b"x", b""),
                    ]),
                ),
            ],
            "a tar metadata entry of 1048576 bytes",
        ),
        ("ar-long-name", vec![("debian-binary", b"2.0\n".to_vec()), ("/99", vec![])], "long-name extension"),
        (
            "bomb",
            vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
                ("data.tar.gz", {
                    use std::io::Write;
                    let tar = raw_tar(&[m(b"./zeros", F, &vec![0u8; 4 << 20], b"")]);
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                    gz.write_all(&tar).unwrap();
                    gz.finish().unwrap()
                }),
            ],
            "larger than the limit of 1048576 bytes",
        ),
    ];
    for (name, members, expected) in cases {
        let deb = env.path(&format!("{name}.deb"));
        raw_deb(&deb, &members);
        let err = env.fail(&["package", "unpack", deb.to_str().unwrap(), "--max-bytes", "1048576"]);
        assert!(err.contains(&format!("bad package `{}`", deb.display())), "{name}: {err}");
        assert!(err.contains(expected), "{name}: expected `{expected}` in: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert_eq!(env.ok(&["store", "ls", "--json"]), before, "{name} changed the store's entries");
    }
    let not_ar = env.path("not-a-deb.deb");
    fs_err::write(&not_ar, "just text").unwrap();
    assert!(env.fail(&["package", "unpack", not_ar.to_str().unwrap()]).contains("not an ar archive"));
    env.ok(&["store", "verify", "--full"]);
    // Objects a failed unpack moved into place have no rows; gc removes them.
    env.ok(&["gc"]);
    assert_eq!(env.json(&["store", "verify"])["orphan_files"], 0);
}
