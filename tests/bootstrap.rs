//! Debian root trees from the real archive (the mirror the build host's apt uses), checked with
//! dpkg and apt inside the tree; maintainer scripts in the sandbox; file conflicts.
//!
//! Downloads are kept across runs in /var/cache/strata-tests (the store's download cache is a
//! link to it), so CI on the same machine fetches each package once. Not reaching the mirror is a
//! failure, not a skip.

mod common;

use std::path::PathBuf;

use common::{chroot, env_with_cache, sh, simple_deb, Env};

const BASE: &[&str] = &["--required", "apt", "--exclude", "usrmerge"];

fn bootstrap(env: &Env, extra: &[&str]) -> Result<serde_json::Value, String> {
    let mut args = vec!["--json", "package", "bootstrap", "--host-sources"];
    args.extend_from_slice(BASE);
    args.extend_from_slice(extra);
    let out = env.cmd(&args).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

fn checkout(env: &Env, root: &str, dest: &str) -> PathBuf {
    let dest = env.path(dest);
    env.ok(&["store", "checkout", root, dest.to_str().unwrap(), "--link", "copy"]);
    dest
}

#[test]
fn bookworm_with_systemd_and_a_kernel_passes_dpkg_and_apt_checks() {
    let env = env_with_cache();
    let pkgs = ["systemd", "systemd-sysv", "linux-image-amd64", "udev", "kmod", "dbus", "--root", "tags/base"];
    let first = bootstrap(&env, &pkgs).unwrap_or_else(|e| panic!("bootstrap failed: {e}"));
    let root = checkout(&env, "tags/base", "rootfs");
    let (ok, out) = chroot(&root, "dpkg --audit");
    assert!(ok && out.trim().is_empty(), "dpkg --audit: {out}");
    let (ok, out) = chroot(&root, "dpkg -V");
    assert!(ok && out.trim().is_empty(), "dpkg -V: {out}");
    let (ok, out) = chroot(&root, "dpkg-query -W -f '${db:Status-Abbrev}\\n' | sort | uniq -c");
    assert!(ok && out.lines().count() == 1 && out.trim_end().ends_with(" ii"), "not every package is installed: {out}");
    let (ok, out) = chroot(&root, "apt-get install --simulate -y nginx openssh-server");
    assert!(ok && out.contains("Inst nginx "), "apt-get install --simulate: {out}");
    assert!(fs_err::read_dir(root.join("boot")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("initrd.img-")));
    assert!(fs_err::symlink_metadata(root.join("bin")).unwrap().is_symlink(), "/bin is not merged into /usr");
    assert_eq!(fs_err::read_to_string(root.join("etc/machine-id")).unwrap(), "");

    // The same package set again: every package and every step is a cache hit.
    let again = bootstrap(&env, &pkgs).unwrap();
    assert_eq!(again["packages_cached"], again["packages"]);
    assert!(again["steps"].as_array().unwrap().iter().all(|s| s["cached"] == true));
    assert_eq!(again["rootfs"]["cached"], true);
    assert_eq!(again["rootfs"]["tree"], first["rootfs"]["tree"]);
    env.ok(&["store", "verify"]);

    // Reproducible: a second store builds the identical tree.
    let other = env_with_cache();
    let third = bootstrap(&other, &pkgs).unwrap();
    assert_eq!(third["rootfs"]["tree"], first["rootfs"]["tree"], "two builds of the same set differ");
}

/// A test package: name, extra control fields, files (path, content), postinst body.
type TestPackage<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

/// A local repository of test packages with maintainer scripts, next to the real archive.
fn local_repo(env: &Env, packages: &[TestPackage<'_>]) -> String {
    let repo = env.path("local");
    let pool = repo.join("pool");
    fs_err::create_dir_all(&pool).unwrap();
    for (name, fields, files, postinst) in packages {
        let deb = simple_deb(&pool, name, "1.0", fields, files);
        if !postinst.is_empty() {
            // Rebuild with a postinst: unpack, add the script, pack again.
            let dir = env.path(&format!("re-{name}"));
            sh(&format!("dpkg-deb -R {} {}", deb.display(), dir.display()));
            fs_err::write(dir.join("DEBIAN/postinst"), format!("#!/bin/sh\nset -e\n{postinst}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(dir.join("DEBIAN/postinst"), std::fs::Permissions::from_mode(0o755)).unwrap();
            sh(&format!("dpkg-deb --root-owner-group --build {} {}", dir.display(), deb.display()));
        }
    }
    let home = env.path("gnupg");
    fs_err::create_dir_all(&home).unwrap();
    let (h, r) = (home.display(), repo.display());
    sh(&format!(
        "chmod 700 {h} && GNUPGHOME={h} gpg --batch --quiet --passphrase '' --quick-gen-key 'local <l@example.org>' ed25519 sign never \
         && GNUPGHOME={h} gpg --batch --quiet --export > {r}/key.gpg \
         && cd {r} && apt-ftparchive packages pool > Packages && apt-ftparchive release . > Release.tmp && mv Release.tmp Release \
         && GNUPGHOME={h} gpg --batch --quiet --yes --clearsign -o InRelease Release"
    ));
    format!("deb [signed-by={r}/key.gpg] file://{r} ./")
}

#[test]
fn maintainer_scripts_run_sandboxed_and_failures_name_the_package() {
    let env = env_with_cache();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port_no = port.local_addr().unwrap().port();
    // A host path (not under /tmp, which the sandbox mounts over) that scripts try to write.
    let escape = PathBuf::from(format!("/srv/strata-escape-{port_no}"));
    let repo = local_repo(
        &env,
        &[
            ("net-probe", "Depends: bash", &[], &format!(
                "if bash -c 'echo hi > /dev/tcp/127.0.0.1/{port_no}' 2>/dev/null; then echo reached > /var/lib/net-probe; else echo unreachable > /var/lib/net-probe; fi\n\
                 mkdir -p {0} && echo out > {0}/file\n\
                 (sleep 600 &)\n\
                 echo $$ > /var/lib/net-probe.pid", escape.display())),
            ("fails", "", &[], "echo 'something went wrong' >&2; exit 3"),
            ("hangs", "", &[], "sleep 600"),
            ("owner-a", "", &[("usr/share/same", "from a\n")], ""),
            ("owner-b", "", &[("usr/share/same", "from b\n")], ""),
            ("owner-c", "Replaces: owner-a", &[("usr/share/same", "from c\n")], ""),
            (
                "trig-watcher",
                "",
                &[("DEBIAN/triggers", "interest-noawait /usr/share/trig-watch\ninterest trig-name\n")],
                "if [ \"$1\" = triggered ]; then echo \"triggered $2\" >> /var/lib/trig-watcher.log; fi",
            ),
            ("trig-file", "", &[("usr/share/trig-watch/item", "x\n")], ""),
            (
                "div-owner",
                "",
                &[("usr/share/div/file", "owner\n")],
                "dpkg-divert --package div-owner --add --no-rename --divert /usr/share/div/file.distrib /usr/share/div/file",
            ),
            ("div-victim", "", &[("usr/share/div/file", "victim\n")], ""),
            ("trig-activator", "", &[("DEBIAN/triggers", "activate-noawait trig-name\n"), ("usr/share/trig-a", "a\n")], ""),
        ],
    );
    // No network, no writes outside the image, leftover processes do not keep the build waiting.
    let start = std::time::Instant::now();
    bootstrap(&env, &["--repo", &repo, "net-probe", "--root", "tags/probe", "--script-timeout", "300"]).unwrap();
    assert!(start.elapsed().as_secs() < 300, "the build waited for a leftover process");
    let root = checkout(&env, "tags/probe", "probe");
    assert_eq!(fs_err::read_to_string(root.join("var/lib/net-probe")).unwrap(), "unreachable\n");
    assert!(!escape.exists(), "a maintainer script wrote outside the image");
    assert_eq!(fs_err::read_to_string(root.join(escape.strip_prefix("/").unwrap()).join("file")).unwrap(), "out\n");

    // A failing script names its package; a hung one is killed at the timeout.
    let err = bootstrap(&env, &["--repo", &repo, "fails"]).unwrap_err();
    assert!(
        err.contains("maintainer scripts failed") && err.contains("fails") && err.contains("something went wrong"),
        "{err}"
    );
    let err = bootstrap(&env, &["--repo", &repo, "hangs", "--script-timeout", "20"]).unwrap_err();
    assert!(err.contains("timed out after 20 s"), "{err}");

    // File conflicts are found before any script runs; Replaces settles them.
    let err = bootstrap(&env, &["--repo", &repo, "owner-a", "owner-b"]).unwrap_err();
    assert!(
        err.contains("file conflicts") && err.contains("/usr/share/same (owner-a, owner-b)")
            || err.contains("`/usr/share/same` (owner-a, owner-b)"),
        "{err}"
    );
    bootstrap(&env, &["--repo", &repo, "owner-a", "owner-c", "--root", "tags/replaced"]).unwrap();
    let root = checkout(&env, "tags/replaced", "replaced");
    assert_eq!(fs_err::read_to_string(root.join("usr/share/same")).unwrap(), "from c\n");
    let (ok, out) = chroot(&root, "dpkg --audit && dpkg -V owner-c");
    assert!(ok && out.trim().is_empty(), "{out}");

    // Triggers: the image records every interest (dpkg inside it runs them later), and packages
    // added on a base set off the base's triggers, a file trigger and a named one.
    bootstrap(&env, &["--repo", &repo, "trig-watcher", "--root", "tags/trig-base"]).unwrap();
    bootstrap(
        &env,
        &["--repo", &repo, "--base", "tags/trig-base", "trig-file", "trig-activator", "--root", "tags/trig"],
    )
    .unwrap();
    let root = checkout(&env, "tags/trig", "trig");
    assert_eq!(
        fs_err::read_to_string(root.join("var/lib/trig-watcher.log")).unwrap(),
        "triggered trig-name\ntriggered /usr/share/trig-watch\n",
        "dpkg runs the named trigger while configuring, strata the file trigger after"
    );
    let file = fs_err::read_to_string(root.join("var/lib/dpkg/triggers/File")).unwrap();
    assert!(file.contains("/usr/share/trig-watch trig-watcher/noawait\n"), "{file}");
    assert!(
        file.contains("/usr/share/debianutils/shells.d debianutils/noawait\n"),
        "the base's interests stay: {file}"
    );
    assert_eq!(fs_err::read_to_string(root.join("var/lib/dpkg/triggers/trig-name")).unwrap(), "trig-watcher\n");
    let (ok, out) = chroot(&root, "dpkg --audit");
    assert!(ok && out.trim().is_empty(), "{out}");

    // Diversions: a package added on a base that diverts one of its files installs it under the
    // diverted name, as dpkg does, instead of conflicting with the diverting package.
    bootstrap(&env, &["--repo", &repo, "div-owner", "--root", "tags/div-base"]).unwrap();
    bootstrap(&env, &["--repo", &repo, "--base", "tags/div-base", "div-victim", "--root", "tags/div"]).unwrap();
    let root = checkout(&env, "tags/div", "div");
    assert_eq!(fs_err::read_to_string(root.join("usr/share/div/file")).unwrap(), "owner\n");
    assert_eq!(fs_err::read_to_string(root.join("usr/share/div/file.distrib")).unwrap(), "victim\n");
    let (ok, out) = chroot(&root, "dpkg --audit && dpkg -V div-owner div-victim");
    assert!(ok && out.trim().is_empty(), "{out}");
    drop(port);
}
