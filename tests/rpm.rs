//! RPM images end to end: packages the test builds itself with `rpmbuild` (dependencies, a rich
//! `or`, file provides, scriptlets and a trigger, `%config`, setuid and `%caps` files, hardlinks,
//! symlinks, owners that exist only once a `%pre` has made them), published as an rpm-md
//! repository by `createrepo_c`, signed with a test key and served over HTTP on 127.0.0.1. The
//! image is checked with the build host's rpm: `rpm -qa` and `rpm -Va`. Then the errors a user
//! meets: file conflicts, a failing scriptlet, a bad signature, a tampered package, an
//! unsatisfiable request.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{make_key, sh, write, Env, Server};

/// The fixture's base: busybox as `/bin/sh`, the directories the sandbox mounts over, and
/// passwd/group that `%pre` scriptlets extend (verified as Fedora's `setup` package has them).
const FILESYSTEM: &str = r#"Name: fixture-filesystem
Version: 1.0
Release: 1
Summary: base
License: MIT
AutoReqProv: no
Provides: /bin/sh
%description
base
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc %{buildroot}/var/log %{buildroot}/tmp %{buildroot}/root
mkdir -p %{buildroot}/proc %{buildroot}/dev %{buildroot}/sys %{buildroot}/run
cp /bin/busybox %{buildroot}/usr/bin/busybox
ln -s usr/bin %{buildroot}/bin
for a in sh chown cat echo rm mkdir id env; do ln -s busybox %{buildroot}/usr/bin/$a; done
printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:2:2:daemon:/:/bin/sh\n' > %{buildroot}/etc/passwd
printf 'root:x:0:\ndaemon:x:2:\n' > %{buildroot}/etc/group
%files
%dir /usr
%dir /usr/bin
/usr/bin/*
/bin
%dir /etc
%dir /var
%dir /var/log
%dir /proc
%dir /dev
%dir /sys
%dir /run
%dir %attr(1777,root,root) /tmp
%dir %attr(0700,root,root) /root
%verify(not md5 size mtime) %config(noreplace) /etc/passwd
%verify(not md5 size mtime) %config(noreplace) /etc/group
%triggerin -- fixture-extra
echo "base trigger extra" >> /var/log/fixture.log
"#;

const APP: &str = r#"Name: fixture-app
Version: VERSION
Release: 1
Summary: app
License: MIT
AutoReqProv: no
Requires: fixture-lib >= 1.0
Requires: (fixture-mta or fixture-exim)
Requires(pre): /bin/sh
%description
app
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc %{buildroot}/var/lib/fixture
printf '#!/bin/sh\necho app VERSION\n' > %{buildroot}/usr/bin/fixture-app
chmod 755 %{buildroot}/usr/bin/fixture-app
ln %{buildroot}/usr/bin/fixture-app %{buildroot}/usr/bin/fixture-app2
ln -s fixture-app %{buildroot}/usr/bin/fa
printf 'su\n' > %{buildroot}/usr/bin/fixture-su
printf 'ping\n' > %{buildroot}/usr/bin/fixture-ping
printf 'grp\n' > %{buildroot}/usr/bin/fixture-grp
echo 'x=1' > %{buildroot}/etc/fixture.conf
echo state > %{buildroot}/var/lib/fixture/state
echo d > %{buildroot}/var/lib/fixture/daemon-file
%files
/usr/bin/fixture-app
/usr/bin/fixture-app2
/usr/bin/fa
%attr(4755,root,root) /usr/bin/fixture-su
%caps(cap_net_raw=ep) %attr(0755,root,root) /usr/bin/fixture-ping
%attr(2755,root,appuser) /usr/bin/fixture-grp
%config(noreplace) /etc/fixture.conf
%dir /var/lib/fixture
%attr(0640,appuser,appuser) /var/lib/fixture/state
%attr(0644,daemon,daemon) /var/lib/fixture/daemon-file
%pre
echo appuser:x:1200:1200::/:/bin/sh >> /etc/passwd
echo appuser:x:1200: >> /etc/group
%post
echo "post $1" >> /var/log/fixture.log
%posttrans
echo posttrans >> /var/log/fixture.log
%triggerin -- fixture-mta
echo "trigger mta" >> /var/log/fixture.log
%triggerin -- fixture-mta < 1.0
echo "trigger for an older fixture-mta" >> /var/log/fixture.log
"#;

fn simple(name: &str, extra: &str, files: &[(&str, &str)], scripts: &str) -> String {
    let mut install = String::new();
    let mut list = String::new();
    for (path, content) in files {
        let dir = Path::new(path).parent().unwrap().display().to_string();
        install.push_str(&format!("mkdir -p %{{buildroot}}{dir}\nprintf '{content}' > %{{buildroot}}{path}\n"));
        list.push_str(&format!("{path}\n"));
    }
    format!(
        "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: {name}\nLicense: MIT\nBuildArch: noarch\nAutoReqProv: no\n{extra}\n%description\n{name}\n%install\n{install}%files\n{list}{scripts}"
    )
}

/// Build the fixture packages into `<dir>/repo`.
fn build_packages(dir: &Path) -> PathBuf {
    let specs = [
        ("fixture-filesystem", FILESYSTEM.to_string()),
        ("fixture-app", APP.replace("VERSION", "2.0")),
        ("fixture-app-old", APP.replace("VERSION", "1.5")),
        (
            "fixture-lib",
            simple(
                "fixture-lib",
                "Requires: fixture-filesystem\nProvides: libfixture.so.1()(64bit)",
                &[("/usr/lib64/libfixture.so.1", "lib")],
                // A program without a body: rpm runs it alone (an argument would make env fail).
                "%post -p /usr/bin/env\n",
            ),
        ),
        (
            "fixture-iffy",
            simple("fixture-iffy", "Requires: (fixture-mta if fixture-exim)", &[("/usr/share/iffy", "i")], ""),
        ),
        ("fixture-mta", simple("fixture-mta", "Provides: MTA", &[("/usr/sbin/sendmail", "mta")], "")),
        ("fixture-exim", simple("fixture-exim", "Provides: MTA", &[("/usr/sbin/exim", "exim")], "")),
        ("fixture-conflict", simple("fixture-conflict", "", &[("/etc/fixture.conf", "other")], "")),
        (
            "fixture-broken",
            simple(
                "fixture-broken",
                "Requires: fixture-filesystem",
                &[("/usr/share/broken", "b")],
                "%post\necho about to fail\nexit 3\n",
            ),
        ),
        (
            "fixture-extra",
            simple(
                "fixture-extra",
                "Requires: fixture-app",
                &[("/usr/share/extra", "extra")],
                "%post\necho \"extra post $1\" >> /var/log/fixture.log\n",
            ),
        ),
        (
            "fixture-impossible",
            simple("fixture-impossible", "Requires: nothing-provides-this >= 2", &[("/usr/share/impossible", "i")], ""),
        ),
    ];
    let top = dir.join("rpmbuild");
    for (name, spec) in specs {
        let file = top.join(format!("SPECS/{name}.spec"));
        write(&file, &spec);
        sh(&format!(
            "rpmbuild --quiet --define '_topdir {}' --define '_build_id_links none' -bb {} >/dev/null",
            top.display(),
            file.display()
        ));
    }
    let repo = dir.join("repo");
    fs_err::create_dir_all(&repo).unwrap();
    sh(&format!("cp {}/RPMS/*/*.rpm {}/", top.display(), repo.display()));
    sh(&format!("createrepo_c --quiet {}", repo.display()));
    repo
}

/// Sign `repodata/repomd.xml` as repositories do: a detached, armored signature.
fn sign(home: &Path, repo: &Path) {
    let md = repo.join("repodata/repomd.xml");
    sh(&format!(
        "rm -f {0}.asc; GNUPGHOME={1} gpg --batch --quiet --armor --detach-sign -o {0}.asc {0}",
        md.display(),
        home.display()
    ));
}

fn kiwi(dir: &Path, url: &str, key: &Path, packages: &[&str]) -> PathBuf {
    let list: String = packages.iter().map(|p| format!("    <package name=\"{p}\"/>\n")).collect();
    let desc = dir.join("appliance.kiwi");
    write(
        &desc,
        &format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="7.4" name="rpm-fixture">
  <description type="system">
    <author>strata tests</author>
    <contact>tests@example.org</contact>
    <specification>an image from a local rpm-md repository</specification>
  </description>
  <preferences>
    <version>1.0.0</version>
    <packagemanager>dnf</packagemanager>
  </preferences>
  <repository type="rpm-md" alias="fixture">
    <source path="{url}">
      <signing key="file://{}"/>
    </source>
  </repository>
  <packages type="image">
{list}  </packages>
</image>
"#,
            key.display()
        ),
    );
    dir.to_path_buf()
}

fn rpm(root: &Path, args: &str) -> (bool, String) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("rpm --root {} --dbpath /var/lib/rpm {args} 2>&1", root.display()))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn an_image_from_an_rpm_md_repository_passes_rpm_verify() {
    let env = Env::new();
    let repo = build_packages(env.dir.path());
    let (home, key) = make_key(&env, "fixture");
    sign(&home, &repo);
    let server = Server::start(&repo);
    let url = format!("http://127.0.0.1:{}/", server.port);
    let desc = kiwi(&env.path("desc"), &url, &key, &["fixture-app"]);
    let d = desc.to_str().unwrap();

    let plan = env.json(&["plan", d]);
    let steps = plan["steps"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> =
        steps.iter().map(|s| (s["kind"].as_str().unwrap(), s["state"].as_str().unwrap())).collect();
    assert_eq!(
        kinds,
        [
            ("unpack", "missing"),
            ("merge", "missing"),
            ("layer", "missing"),
            ("rootfs", "missing"),
            ("image", "pending")
        ],
        "{plan}"
    );
    // fixture-app 2.0 (not 1.5), its library (by a versioned requirement), the first
    // alternative of the rich `or`, the base (by a file requirement).
    let inputs: Vec<String> =
        steps[0]["inputs"].as_array().unwrap().iter().map(|i| format!("{} {}", i["name"], i["value"])).collect();
    for want in ["fixture-app\" \"2.0-1.x86_64\"", "fixture-lib\"", "fixture-mta\"", "fixture-filesystem\""] {
        assert!(inputs.iter().any(|i| i.contains(want)), "{want} in {inputs:?}");
    }
    assert!(!inputs.iter().any(|i| i.contains("fixture-exim")), "{inputs:?}");

    let first = env.json(&["build", d]);
    assert_eq!(first["steps"]["built"], first["steps"]["total"], "{first}");

    let root = env.path("root");
    env.ok(&["store", "checkout", "images/rpm-fixture", root.to_str().unwrap(), "--link", "copy"]);
    let (ok, qa) = rpm(&root, "-qa --qf '%{NAME}-%{VERSION}\\n'");
    assert!(ok, "{qa}");
    let mut names: Vec<&str> = qa.lines().collect();
    names.sort();
    assert_eq!(names, ["fixture-app-2.0", "fixture-filesystem-1.0", "fixture-lib-1.0", "fixture-mta-1.0"]);
    // Every file as its package says: digest, size, mode, owner, group, link target,
    // capabilities. Time stamps are the store's (0, as in OSTree), hence --nomtime.
    let (ok, va) = rpm(&root, "-Va --nomtime");
    assert!(ok && va.trim().is_empty(), "rpm -Va:\n{va}");
    // Scriptlets ran in order: %post, then the trigger set off by fixture-mta (installed
    // before, as a dependency), then %posttrans.
    let log = fs_err::read_to_string(root.join("var/log/fixture.log")).unwrap();
    assert_eq!(log, "post 1\ntrigger mta\nposttrans\n");
    let st = fs_err::metadata(root.join("var/lib/fixture/state")).unwrap();
    assert_eq!((st.uid(), st.gid(), st.mode() & 0o7777), (1200, 1200, 0o640), "owner made by %pre");
    let st = fs_err::metadata(root.join("usr/bin/fixture-grp")).unwrap();
    assert_eq!((st.gid(), st.mode() & 0o7777), (1200, 0o2755), "setgid kept after the group was made by %pre");
    let st = fs_err::metadata(root.join("var/lib/fixture/daemon-file")).unwrap();
    assert_eq!((st.uid(), st.gid()), (2, 2), "owner from the image's passwd, not the host's");
    assert_eq!(fs_err::metadata(root.join("usr/bin/fixture-su")).unwrap().mode() & 0o7777, 0o4755);
    let caps = xattr::get(root.join("usr/bin/fixture-ping"), "security.capability").unwrap().unwrap();
    assert_eq!(caps[..4], 0x0200_0001u32.to_le_bytes(), "effective, revision 2");
    let a = fs_err::metadata(root.join("usr/bin/fixture-app")).unwrap();
    let b = fs_err::metadata(root.join("usr/bin/fixture-app2")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlinks stay linked");
    assert_eq!(fs_err::read_link(root.join("usr/bin/fa")).unwrap(), Path::new("fixture-app"));

    // The same request again: every step is a hit.
    let again = env.json(&["build", d]);
    assert_eq!(again["rootfs"], first["rootfs"]);
    assert_eq!(again["steps"]["cached"], again["steps"]["total"], "{again}");
    let store_check = env.json(&["store", "verify", "--full"]);
    assert_eq!(store_check["problems"], serde_json::json!([]), "{store_check}");

    // A derived image adds a package: the base's steps are reused, the new package's scriptlets
    // and the base's trigger on it run, and the rpm database knows all five packages.
    let derived = env.path("derived");
    write(
        &derived.join("image.toml"),
        "[image]\nname = \"rpm-derived\"\nderived-from = \"../desc\"\nversion = \"1.0.1\"\n\n[packages]\ninstall = [\"fixture-extra\"]\n",
    );
    let out = env.json(&["build", derived.to_str().unwrap()]);
    assert_eq!(out["image"], "rpm-derived", "{out}");
    let droot = env.path("droot");
    env.ok(&["store", "checkout", "images/rpm-derived", droot.to_str().unwrap(), "--link", "copy"]);
    let (ok, qa) = rpm(&droot, "-qa --qf '%{NAME}\\n'");
    assert!(ok && qa.lines().count() == 5 && qa.contains("fixture-extra"), "{qa}");
    let (ok, va) = rpm(&droot, "-Va --nomtime");
    assert!(ok && va.trim().is_empty(), "rpm -Va:\n{va}");
    let log = fs_err::read_to_string(droot.join("var/log/fixture.log")).unwrap();
    assert_eq!(log, "post 1\ntrigger mta\nposttrans\nextra post 1\nbase trigger extra\n");
    let plan = env.json(&["plan", derived.to_str().unwrap()]);
    let cached = plan["steps"].as_array().unwrap().iter().filter(|s| s["state"] == "cached").count();
    assert_eq!(cached, plan["steps"].as_array().unwrap().len(), "{plan}");

    // Locks: the rpm-md sets of the base and of the derived image, in install order, with the
    // repomd.xml they came from; another store builds the same trees from the locks alone.
    let lock = env.json(&["lock", d]);
    assert_eq!(
        (lock["images"][0]["name"].as_str(), lock["images"][0]["packages"].as_u64()),
        (Some("rpm-fixture"), Some(4))
    );
    let text = fs_err::read_to_string(desc.join("strata.lock")).unwrap();
    assert!(
        text.contains("family = \"rpm-md\"") && text.contains("repomd.xml") && text.contains("rpm-md signed-by="),
        "{text}"
    );
    let dlock = env.json(&["lock", derived.to_str().unwrap()]);
    let names: Vec<&str> = dlock["images"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["rpm-fixture", "rpm-derived"]);
    // (The rpm database records each install's time, so whole rpm-md trees differ between
    // builds: compare the package entries and the merged tree, which the lock decides.)
    let other = Env::new();
    other.json(&["build", d, "--locked"]);
    other.json(&["build", derived.to_str().unwrap(), "--locked"]);
    // Per step: its state, and the packages (unpack) or the merged tree (merge, of the base
    // only: the derived image's starts from the base's tree with its rpm database).
    let decided = |env: &Env, dir: &str| -> Vec<(String, String)> {
        let plan = env.json(&["plan", dir, "--locked"]);
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "unpack" || (s["kind"] == "merge" && s["image"] == "rpm-fixture"))
            .map(|s| (s["state"].to_string(), format!("{} {} {} {}", s["kind"], s["inputs"], s["key"], s["tree"])))
            .collect()
    };
    for dir in [d, derived.to_str().unwrap()] {
        let here = decided(&env, dir);
        assert!(here.iter().all(|(state, _)| state == "\"cached\""), "{here:?}");
        assert_eq!(decided(&other, dir), here, "the lock decides the same packages and merge in another store");
    }
    let locked_text = fs_err::read_to_string(derived.join("strata.lock")).unwrap();
    write(&derived.join("strata.lock"), &locked_text.replace("name = \"fixture-extra\"", "name = \"fixture-other\""));
    let err = other.fail(&["build", derived.to_str().unwrap(), "--locked"]);
    assert!(err.contains("1 locked packages are not in the repository metadata the lock holds"), "{err}");
    assert!(err.contains("fixture-other 1.0-1"), "{err}");
    write(&derived.join("strata.lock"), &locked_text);
    // The description now asks for more than the lock holds.
    let toml = fs_err::read_to_string(derived.join("image.toml")).unwrap();
    write(&derived.join("image.toml"), &toml.replace("[\"fixture-extra\"]", "[\"fixture-extra\", \"fixture-lib\"]"));
    let err = other.fail(&["build", derived.to_str().unwrap(), "--locked"]);
    assert!(
        err.contains("asks for other packages than the lock holds (packages: added [fixture-lib], dropped [])"),
        "{err}"
    );
    write(&derived.join("image.toml"), &toml);

    // Errors name what is wrong, and change nothing.
    let with = |dir: &str, pkgs: &[&str]| kiwi(&env.path(dir), &url, &key, pkgs);
    let err = env.fail(&["build", with("conflict", &["fixture-app", "fixture-conflict"]).to_str().unwrap()]);
    assert!(
        err.contains("/etc/fixture.conf")
            && err.contains("fixture-app-2.0-1")
            && err.contains("fixture-conflict-1.0-1"),
        "{err}"
    );
    let err = env.fail(&["build", with("broken", &["fixture-broken"]).to_str().unwrap()]);
    assert!(err.contains("fixture-broken-1.0-1.noarch: its %post scriptlet failed (exit 3)"), "{err}");
    assert!(err.contains("about to fail"), "the scriptlet's output is shown: {err}");
    let err = env.fail(&["build", with("impossible", &["fixture-impossible"]).to_str().unwrap()]);
    assert!(err.contains("nothing-provides-this"), "{err}");
    // A package whose rich dependency strata cannot solve fails alone; the repository, which
    // the image above used, stays usable.
    let err = env.fail(&["build", with("iffy", &["fixture-iffy"]).to_str().unwrap()]);
    assert!(err.contains("fixture-iffy") && err.contains("`if` is not supported"), "{err}");
    let err = env.fail(&["build", with("missing", &["no-such-package"]).to_str().unwrap()]);
    assert!(err.contains("no-such-package"), "{err}");

    // A repository signed by another key.
    let (_, other) = make_key(&env, "other");
    let err = env.fail(&["build", kiwi(&env.path("wrong-key"), &url, &other, &["fixture-app"]).to_str().unwrap()]);
    assert!(err.contains("repomd.xml") && err.contains("signature verification failed"), "{err}");
    // A package changed after the repository was published: its checksum no longer matches.
    let tampered_repo = env.path("tampered");
    sh(&format!("cp -a {} {}", repo.display(), tampered_repo.display()));
    sh(&format!("for f in {}/fixture-exim-*.rpm; do printf x >> $f; done", tampered_repo.display()));
    let server2 = Server::start(&tampered_repo);
    let url2 = format!("http://127.0.0.1:{}/", server2.port);
    let err = env.fail(&["build", kiwi(&env.path("tampered-desc"), &url2, &key, &["fixture-exim"]).to_str().unwrap()]);
    assert!(err.contains("fixture-exim"), "{err}");
    // A repomd.xml changed after signing.
    sh(&format!("sed -i 's/<revision>/<revision>1/' {}/repodata/repomd.xml", tampered_repo.display()));
    let err = env.fail(&["build", kiwi(&env.path("tampered-md"), &url2, &key, &["fixture-app"]).to_str().unwrap()]);
    assert!(err.contains("signature verification failed"), "{err}");
    let store_check = env.json(&["store", "verify", "--full"]);
    assert_eq!(store_check["problems"], serde_json::json!([]), "{store_check}");
}
