//! `strata plan/build/why/describe` and `images` end to end.
//!
//! The first test needs no network: a fixture description derives from an imported tree. The
//! second builds the three example descriptions in descriptions/ from the Debian mirror the build
//! host's apt uses (downloads cached in /var/cache/strata-tests), then derives an image that adds
//! a package built here, served from a signed repository on 127.0.0.1.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{chroot, env_with_cache, make_key, sh, simple_deb, write, Env, Server};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn steps(v: &serde_json::Value) -> (u64, u64, u64) {
    let s = &v["steps"];
    (s["total"].as_u64().unwrap(), s["cached"].as_u64().unwrap(), s["built"].as_u64().unwrap())
}

/// The fixture: an image derived from `root:tags/minimal` with a root/ overlay, file attributes
/// and preferences (no package manager, no scripts: it builds without network or a shell).
fn fixture(dir: &Path) {
    write(
        &dir.join("image.toml"),
        r#"[image]
name = "app"
derived-from = "root:tags/minimal"
locale = "C.UTF-8"
keytable = "de-latin1"

[packages]
archives = ["extra.tar.gz"]

[files."/etc/app.conf"]
owner = "app"
group = "app"
mode = "0640"

[files."/etc/motd"]
mode = "0600"
"#,
    );
    write(&dir.join("root/etc/app.conf"), "level = 1\n");
    write(&dir.join("root/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:4242:4243::/:/bin/sh\n");
    write(&dir.join("root/etc/group"), "root:x:0:\napp:x:4243:\n");
    write(&dir.join("root/usr/bin/app"), "#!/bin/sh\necho app\n");
    sh(&format!("chmod 755 {0}/root/usr/bin/app && chown -R 65534:65534 {0}/root", dir.display()));
    // An archive keeps the owners and modes it records.
    write(&dir.join("extra/opt/extra/data"), "extra\n");
    sh(&format!(
        "cd {0}/extra && tar --sort=name --owner=123 --group=45 --mode=go-w --mtime=@0 -czf ../extra.tar.gz opt && rm -r {0}/extra",
        dir.display()
    ));
}

#[test]
fn a_fixture_description_plans_builds_explains_and_keeps_generations() {
    let env = Env::new();
    // The base tree with owners and modes that do not depend on the checkout or the umask.
    let minimal = env.path("minimal");
    sh(&format!(
        "cp -a {} {m} && chown -R 0:0 {m} && chmod -R u=rwX,go=rX {m} && chmod 755 {m}/usr/bin/hello",
        project().join("descriptions/minimal/root").display(),
        m = minimal.display()
    ));
    env.ok(&["store", "add", minimal.to_str().unwrap(), "--root", "tags/minimal"]);
    let desc = env.path("app");
    fixture(&desc);
    let d = desc.to_str().unwrap();

    let plan = env.json(&["plan", d]);
    let states: Vec<(&str, &str)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("base", "cached"),
            ("archive", "missing"),
            ("files", "pending"),
            ("preferences", "pending"),
            ("image", "pending")
        ]
    );

    let first = env.json(&["build", d]);
    assert_eq!(first["image"], "app");
    assert_eq!(first["generation"], 1);
    assert_eq!(steps(&first), (5, 1, 4));
    // The same description and inputs give this tree on any machine: owners come from the
    // description, not from whoever checked it out; no time or host path enters it.
    assert_eq!(first["rootfs"]["tree"], "512e92e1dd99929e72dea56881fcaa0320ddeafbdb76161c0ec104d50277ed53");

    // A lock of an image on a store root holds the root's tree: when the root moves, a locked
    // build says so instead of building on another base, and `lock --update` names the change.
    let pinned = env.path("pinned");
    write(&pinned.join("image.toml"), "[image]\nname = \"pinned\"\nderived-from = \"root:tags/minimal\"\n");
    let p = pinned.to_str().unwrap();
    let lock = env.json(&["lock", p]);
    assert_eq!(lock["bases"][0]["name"], "root:tags/minimal");
    assert_eq!(lock["images"].as_array().unwrap().len(), 0, "no packages: {lock}");
    let locked_tree = env.json(&["build", p, "--locked"])["rootfs"]["tree"].clone();
    let roots = env.json(&["roots", "ls"]);
    let minimal_entry = roots.as_array().unwrap().iter().find(|r| r["name"] == "tags/minimal").unwrap()["entry"]
        .as_str()
        .unwrap()
        .to_string();
    let other = env.path("other-base");
    write(&other.join("etc/hostname"), "other\n");
    env.ok(&["store", "add", other.to_str().unwrap(), "--root", "tags/other"]);
    env.ok(&["roots", "add", "tags/minimal", "tags/other"]);
    let err = env.fail(&["build", p, "--locked"]);
    assert!(err.contains("derived-from root:tags/minimal is tree") && err.contains("the base changed"), "{err}");
    let err = env.fail(&["lock", p]);
    assert!(err.contains("strata.lock exists") && err.contains("strata lock --update"), "{err}");
    let updated = env.json(&["lock", p, "--update"]);
    let changes = updated["changes"].as_array().unwrap();
    assert!(
        changes.len() == 1 && changes[0].as_str().unwrap().starts_with("base root:tags/minimal: tree "),
        "{updated}"
    );
    assert_ne!(env.json(&["build", p, "--locked"])["rootfs"]["tree"], locked_tree);
    env.ok(&["roots", "add", "tags/minimal", &minimal_entry]);

    let again = env.json(&["build", d]);
    assert_eq!(steps(&again), (5, 5, 0));
    assert_eq!(again["generation"], 1);
    assert_eq!(again["rootfs"], first["rootfs"]);

    let co = env.path("co");
    env.ok(&["store", "checkout", "images/app", co.to_str().unwrap()]);
    let conf = fs_err::metadata(co.join("etc/app.conf")).unwrap();
    assert_eq!((conf.uid(), conf.gid(), conf.mode() & 0o7777), (4242, 4243, 0o640));
    let motd = fs_err::metadata(co.join("etc/motd")).unwrap();
    assert_eq!((motd.uid(), motd.mode() & 0o7777), (0, 0o600), "a base file's mode changes, its owner stays");
    let app = fs_err::metadata(co.join("usr/bin/app")).unwrap();
    assert_eq!((app.uid(), app.gid(), app.mode() & 0o777), (0, 0, 0o755), "overlay files are root's, modes kept");
    assert_eq!(fs_err::read_to_string(co.join("etc/vconsole.conf")).unwrap(), "KEYMAP=de-latin1\n");
    assert_eq!(fs_err::read_to_string(co.join("etc/default/locale")).unwrap(), "LANG=C.UTF-8\n");
    assert_eq!(fs_err::read_to_string(co.join("etc/hostname")).unwrap(), "minimal\n", "base files stay");
    let extra = fs_err::metadata(co.join("opt/extra/data")).unwrap();
    assert_eq!((extra.uid(), extra.gid()), (123, 45), "archive owners are kept");

    // An edit: `why` names the file; the build makes generation 2.
    write(&desc.join("root/etc/app.conf"), "level = 2\n");
    let why = env.ok(&["why", d]);
    assert!(why.contains("compared with generation 1"), "{why}");
    assert!(why.contains("root/etc/app.conf changed"), "{why}");
    assert!(why.contains("preferences locale: follows a step that rebuilds"), "{why}");
    let why_json = env.json(&["why", d]);
    let files = why_json["steps"].as_array().unwrap().iter().find(|s| s["kind"] == "files").unwrap();
    assert!(files["changes"].as_array().unwrap().iter().any(|c| c["name"] == "root/etc/app.conf"), "{why_json}");
    let second = env.json(&["build", d]);
    assert_eq!(second["generation"], 2);
    assert_eq!(steps(&second), (5, 2, 3));
    let history = env.json(&["images", "history", "app"]);
    let h = history.as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert!(h[1]["changes"].as_array().unwrap().iter().any(|c| c["name"] == "app: root/etc/app.conf"), "{history}");
    let ls = env.json(&["images", "ls"]);
    assert_eq!(ls[0]["generation"], 2);
    let co2 = env.path("co2");
    env.ok(&["store", "checkout", "images/app", co2.to_str().unwrap()]);
    assert_eq!(fs_err::read_to_string(co2.join("etc/app.conf")).unwrap(), "level = 2\n", "images/NAME is the newest");
    env.ok(&["store", "checkout", "images/app/1", env.path("co1").to_str().unwrap()]);
    assert_eq!(fs_err::read_to_string(env.path("co1/etc/app.conf")).unwrap(), "level = 1\n");

    // Dropping a generation's root lets gc collect it; history still lists it, marked.
    env.ok(&["roots", "rm", "images/app/1"]);
    env.ok(&["gc"]);
    let history = env.json(&["images", "history", "app"]);
    assert_eq!((history[0]["collected"].as_bool(), history[1]["collected"].as_bool()), (Some(true), Some(false)));
    env.ok(&["store", "verify", "--full"]);
    env.ok(&["store", "checkout", "images/app", env.path("co3").to_str().unwrap()]);

    // The XML form of the same description builds the same tree.
    let xml = env.ok(&["describe", d, "--format", "xml"]);
    assert!(xml.contains("<derived from=\"root:tags/minimal\"/>") && xml.contains("mode=\"0640\""), "{xml}");
    let xml_dir = env.path("app-xml");
    fs_err::create_dir(&xml_dir).unwrap();
    sh(&format!("cp -a {d}/root {d}/extra.tar.gz {}/", xml_dir.display()));
    write(&xml_dir.join("appliance.kiwi"), &xml);
    let from_xml = env.json(&["build", xml_dir.to_str().unwrap()]);
    assert_eq!(from_xml["rootfs"]["tree"], second["rootfs"]["tree"]);
    assert_eq!(env.ok(&["describe", xml_dir.to_str().unwrap(), "--format", "toml"]), env.ok(&["describe", d]));

    // Errors name the file and what is wrong, and change nothing.
    let bad = env.path("bad");
    write(&bad.join("image.toml"), "[image]\nname = \"bad\"\n[packages]\ninstal = [\"x\"]\n");
    let err = env.fail(&["build", bad.to_str().unwrap()]);
    assert!(
        err.contains(&format!(
            "{}/image.toml: line 4, column 1: key `packages.instal`: unknown field `instal`",
            bad.canonicalize().unwrap().display()
        )),
        "{err}"
    );
    write(
        &bad.join("image.toml"),
        "[image]\nname = \"bad\"\nderived-from = \"root:tags/minimal\"\ntimezone = \"Mars/Base\"\n",
    );
    let err = env.fail(&["build", bad.to_str().unwrap()]);
    assert!(err.contains("timezone `Mars/Base`: the image has no /usr/share/zoneinfo/Mars/Base"), "{err}");
    fs_err::remove_file(bad.join("image.toml")).unwrap();
    write(&bad.join("config.xml"), "<?xml version=\"1.0\"?>\n<image schemaversion=\"7.4\" name=\"bad\">\n  <derived from=\"root:tags/minimal\"/>\n  <drivers/>\n</image>\n");
    let err = env.fail(&["plan", bad.to_str().unwrap()]);
    assert!(err.contains("config.xml: line 4, column 3: <drivers> in <image> is not supported by strata yet"), "{err}");
    let images: Vec<String> =
        env.json(&["images", "ls"]).as_array().unwrap().iter().map(|i| i["image"].to_string()).collect();
    assert_eq!(images, ["\"app\"", "\"pinned\""], "failed builds add no image");
    let err = env.fail(&["images", "history", "bad"]);
    assert!(err.contains("no image `bad` has been built"), "{err}");
}

#[test]
fn the_example_descriptions_build_reuse_their_base_and_explain_rebuilds() {
    let env = env_with_cache();
    let descriptions = project().join("descriptions");
    let desc = |n: &str| descriptions.join(n).to_str().unwrap().to_string();

    // The base: packages, users, root/, preferences and config.sh.
    let base = env.json(&["build", &desc("debian-base")]);
    let (base_total, _, _) = steps(&base);
    let root = env.path("base");
    env.ok(&["store", "checkout", "images/debian-base", root.to_str().unwrap()]);
    let (ok, out) = chroot(&root, "dpkg --audit && dpkg -V");
    assert!(ok && out.trim().is_empty(), "dpkg: {out}");
    let (ok, out) = chroot(
        &root,
        "perl -e '@u = getpwnam(\"debian\"); print crypt(\"debian\", $u[1]) eq $u[1] ? \"ok\" : \"bad\"'",
    );
    assert!(ok && out == "ok", "the user's password does not check with crypt(3): {out}");
    let (ok, out) = chroot(&root, "id debian && getent shadow debian | cut -d: -f3");
    assert!(ok && out.contains("(sudo)") && out.trim_end().ends_with("\n19723"), "user: {out}");
    assert!(root.join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service").is_symlink());
    assert_eq!(fs_err::read_to_string(root.join("etc/hostname")).unwrap(), "debian\n");
    assert_eq!(fs_err::read_link(root.join("etc/localtime")).unwrap(), Path::new("/usr/share/zoneinfo/UTC"));

    // Every step that ran something kept what it printed.
    let logs = env.json(&["log", "images/debian-base", "--list"]);
    let names: Vec<&str> = logs.as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    for step in ["debian-maintainer-scripts", "debian-base/users users", "debian-base/script config.sh"] {
        assert!(names.contains(&step), "{step} in {names:?}");
    }
    assert!(logs[0].get("log").is_none(), "--list lists: {logs}");
    let config = env.ok(&["log", "debian-base", "config.sh"]);
    assert!(config.starts_with("==> debian-base/script config.sh (") && config.contains("Created symlink"), "{config}");
    let dpkg = env.ok(&["log", "debian-base", "debian-maintainer-scripts"]);
    assert!(dpkg.contains("Setting up systemd "), "{dpkg}");
    let err = env.fail(&["log", "debian-base", "no-such-step"]);
    assert!(err.contains("no step `no-such-step` kept a log; the steps with logs: "), "{err}");

    // A lock of the base (in a copy: a lock names the mirror, and the repository never does).
    let locked = env.path("base-locked");
    sh(&format!("cp -a {} {}", desc("debian-base"), locked.display()));
    let l = locked.to_str().unwrap();
    let err = env.fail(&["build", l, "--locked"]);
    assert!(err.contains("strata.lock does not exist: write it with `strata lock"), "{err}");
    let lock = env.json(&["lock", l]);
    assert_eq!(lock["images"][0]["name"], "debian-base");
    assert!(lock["images"][0]["packages"].as_u64().unwrap() > 100, "{lock}");
    let lock_text = fs_err::read_to_string(locked.join("strata.lock")).unwrap();
    assert!(lock_text.contains("name = \"systemd\"") && lock_text.contains("InRelease"), "{lock_text}");
    let err = env.fail(&["lock", l]);
    assert!(err.contains("strata.lock exists") && err.contains("--update"), "{err}");
    let from_lock = env.json(&["build", l, "--locked"]);
    assert_eq!(steps(&from_lock).2, 0, "locked as built: every step a hit: {from_lock}");
    // An edited lock is refused, nothing built: a package taken out (the description still
    // names it), or a package the locked indexes do not offer.
    let without_less: Vec<&str> =
        lock_text.split("[[image.package]]").filter(|block| !block.contains("\nname = \"less\"\n")).collect();
    write(&locked.join("strata.lock"), &without_less.join("[[image.package]]"));
    let err = env.fail(&["build", l, "--locked"]);
    assert!(err.contains("asks for less, which no locked package is or provides"), "{err}");
    let other_less: Vec<String> = lock_text
        .split("[[image.package]]")
        .map(|b| {
            if b.contains("\nname = \"less\"\n") {
                b.replace("\nversion = \"", "\nversion = \"9:")
            } else {
                b.to_string()
            }
        })
        .collect();
    write(&locked.join("strata.lock"), &other_less.join("[[image.package]]"));
    let err = env.fail(&["build", l, "--locked"]);
    assert!(
        err.contains("1 locked packages are not in the repository metadata the lock holds") && err.contains("less 9:"),
        "{err}"
    );
    write(&locked.join("strata.lock"), &lock_text);

    // Again: every step is a hit.
    let again = env.json(&["build", &desc("debian-base")]);
    assert_eq!(steps(&again), (base_total, base_total, 0));
    assert_eq!(again["rootfs"], base["rootfs"]);

    // Derived images reuse every step of the base.
    let web = env.json(&["build", &desc("debian-web")]);
    let (total, cached, built) = steps(&web);
    assert_eq!(cached, base_total, "debian-web must reuse every base step");
    assert!(built > 0 && built < 40 && total == cached + built, "{web}");
    let root = env.path("web");
    env.ok(&["store", "checkout", "images/debian-web", root.to_str().unwrap()]);
    let (ok, out) = chroot(&root, "dpkg -s nginx-light curl | grep '^Status' && dpkg --audit");
    assert!(ok && out.matches("install ok installed").count() == 2, "{out}");
    let index = fs_err::metadata(root.join("var/www/html/index.html")).unwrap();
    let (_, www) = chroot(&root, "id -u www-data");
    assert_eq!(index.uid().to_string(), www.trim());
    assert!(!root.join("var/www/html/index.nginx-debian.html").exists(), "config.sh ran");
    assert!(root.join("etc/systemd/system/multi-user.target.wants/nginx.service").is_symlink());

    let slim = env.json(&["build", &desc("debian-slim")]);
    assert_eq!(steps(&slim).1, base_total, "debian-slim must reuse every base step");

    // Pictures: the plan of a derived image, and the images of the store with what they share.
    // Graphviz writes `-` as `&#45;` in SVG text.
    let svg = env.ok(&["plan", &desc("debian-web"), "--format", "svg"]).replace("&#45;", "-");
    for text in ["debian-base (base)", "debian-web (the image)", "shared with debian-base", "script config.sh"] {
        assert!(svg.contains(text), "{text} in the plan's picture");
    }
    common::rendered(&env, &svg, "plan", 5000);
    let svg = env.ok(&["images", "graph"]).replace("&#45;", "-");
    for text in ["image debian-base (generation", "image debian-web (generation", "image debian-slim (generation"] {
        assert!(svg.contains(text), "{text} in the images' picture");
    }
    assert!(svg.contains("shared by 3 images") && svg.contains("debian-maintainer-scripts"), "{svg}");
    common::rendered(&env, &svg, "images", 5000);
    let dot = env.ok(&["images", "graph", "--format", "dot"]);
    assert!(dot.starts_with("digraph images {"), "{dot}");
    let root = env.path("slim");
    env.ok(&["store", "checkout", "images/debian-slim", root.to_str().unwrap()]);
    let (ok, out) = chroot(&root, "dpkg -s nano less iproute2 2>&1; dpkg --audit");
    assert!(out.matches("is not installed").count() == 3, "{ok} {out}");
    assert!(!root.join("usr/bin/nano").exists() && !root.join("usr/bin/ip").exists());
    let (ok, out) = chroot(&root, "id operator");
    assert!(ok && out.contains("uid=1100(operator)"), "{out}");

    // An edit whose effect is identical: `why` names it, the script runs again, and the image
    // step after it is a hit (early cutoff).
    let copy = env.path("web-copy");
    sh(&format!("cp -a {} {}", desc("debian-web"), copy.display()));
    let toml = fs_err::read_to_string(copy.join("image.toml")).unwrap();
    write(&copy.join("image.toml"), &toml.replace("\"../debian-base\"", &format!("\"{}\"", desc("debian-base"))));
    let script = fs_err::read_to_string(copy.join("config.sh")).unwrap();
    write(&copy.join("config.sh"), &format!("{script}# a comment\n"));
    let c = copy.to_str().unwrap();
    let why = env.ok(&["why", c]);
    assert!(why.contains("script config.sh:") && why.contains("config.sh changed"), "{why}");
    let rebuilt = env.json(&["build", c]);
    assert_eq!(steps(&rebuilt).2, 1, "only config.sh runs again: {rebuilt}");
    assert_eq!(rebuilt["rootfs"], web["rootfs"]);
    assert_eq!(rebuilt["generation"], 1);
    let why = env.ok(&["why", c]);
    assert!(why.contains("nothing changed"), "{why}");
    // The steps that were hits kept their logs; the one that ran again has its own.
    let web_dpkg = env.ok(&["log", "debian-web", "debian-maintainer-scripts"]);
    assert!(web_dpkg.starts_with(&dpkg) && web_dpkg.contains("Setting up nginx-light"), "the base's, then its own");
    let web_logs = env.json(&["log", "debian-web", "config.sh"]);
    assert_eq!(web_logs.as_array().unwrap().len(), 2, "the base's config.sh and the rebuilt one: {web_logs}");

    // A failing script: its last lines in the error, its whole log kept under the id it names;
    // with -v its output streams as it comes.
    write(&copy.join("config.sh"), "#!/bin/sh\nfor i in $(seq 1 40); do echo \"line $i\"; done\nexit 3\n");
    let out = env.cmd(&["-v", "build", c]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("| line 1\n"), "streamed with -v: {err}");
    assert!(err.contains("exit status 3") && err.contains("line 40") && !err.contains("\nline 20\n"), "{err}");
    let id = err.split("the whole log: strata log --failed ").nth(1).unwrap().split_whitespace().next().unwrap();
    let whole = env.ok(&["log", "--failed", id]);
    assert!(whole.contains("line 1\n") && whole.contains("line 20\n") && whole.contains("line 40\n"), "{whole}");
    let failed = env.json(&["log", "--failed"]);
    assert_eq!(failed[0]["id"], id);
    write(&copy.join("config.sh"), &format!("{script}# a comment\n"));

    // A package built here, from a signed repository on 127.0.0.1.
    let (gnupg, keyring) = make_key(&env, "local");
    let repo = env.path("repo");
    fs_err::create_dir_all(&repo).unwrap();
    let publish = |version: &str| {
        sh(&format!("rm -f {}/*.deb", repo.display()));
        simple_deb(
            &repo,
            "strata-hello",
            version,
            "Depends: nginx-light",
            &[("usr/share/strata-hello/version", version)],
        );
        // Ships a file of the base's nano: a conflict, until 2.0 declares Replaces.
        let replaces = if version == "1.0" { "" } else { "Replaces: nano" };
        simple_deb(&repo, "strata-clash", version, replaces, &[("bin/nano", "not nano\n")]);
        sh(&format!(
            "cd {} && apt-ftparchive packages . > Packages && apt-ftparchive release . > Release.tmp && mv Release.tmp Release \
             && GNUPGHOME={} gpg --batch --quiet --yes --detach-sign -o Release.gpg Release",
            repo.display(),
            gnupg.display()
        ));
    };
    publish("1.0");
    let server = Server::start(&repo);
    let line = format!("deb [signed-by={}] http://127.0.0.1:{}/ ./", keyring.display(), server.port);
    // A description `name` that derives from `base` and installs `package`.
    let adding = |name: &str, base: &str, package: &str| {
        let dir = env.path(name);
        let text =
            format!("[image]\nname = \"{name}\"\nderived-from = \"{base}\"\n\n[packages]\ninstall = [\"{package}\"]\n");
        write(&dir.join("image.toml"), &text);
        dir
    };
    let hello = adding("hello", &desc("debian-web"), "strata-hello");
    let h = hello.to_str().unwrap();
    let plan = env.json(&["plan", h, "--add-repo", &line]);
    let unpack = plan["steps"].as_array().unwrap().iter().rfind(|s| s["kind"] == "unpack").unwrap();
    assert_eq!(
        (unpack["image"].as_str(), unpack["count"].as_u64(), unpack["state"].as_str()),
        (Some("hello"), Some(1), Some("missing"))
    );
    let built = env.json(&["build", h, "--add-repo", &line]);
    assert_eq!(steps(&built).1, total, "hello reuses every step of debian-web");
    publish("1.1");
    let why = env.ok(&["why", h, "--add-repo", &line]);
    assert!(why.contains("package strata-hello changed: 1.0 -> 1.1"), "{why}");
    let next = env.json(&["build", h, "--add-repo", &line]);
    assert_eq!(next["generation"], 2);
    let root = env.path("hello-co");
    env.ok(&["store", "checkout", "images/hello", root.to_str().unwrap()]);
    assert_eq!(fs_err::read_to_string(root.join("usr/share/strata-hello/version")).unwrap(), "1.1");

    // A package that overwrites a file another package of the base owns: refused, with the path
    // and both packages, unless it declares Replaces (as dpkg decides).
    let clash = adding("clash", &desc("debian-base"), "strata-clash");
    let cl = clash.to_str().unwrap();
    publish("1.0");
    let err = env.fail(&["build", cl, "--add-repo", &line]);
    assert!(err.contains("1 file conflicts: `/usr/bin/nano` (nano (in the base), strata-clash)"), "{err}");
    publish("2.0");
    env.ok(&["build", cl, "--add-repo", &line]);
    let root = env.path("clash-co");
    env.ok(&["store", "checkout", "images/clash", root.to_str().unwrap()]);
    assert_eq!(fs_err::read_to_string(root.join("usr/bin/nano")).unwrap(), "not nano\n");

    // A derived image's lock holds its base's set too.
    let web_lock = env.json(&["lock", c]);
    let names: Vec<&str> = web_lock["images"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["debian-base", "debian-web"]);

    // Another store, the same lock: the same tree (the mirror may have moved on since).
    let other = env_with_cache();
    let base2 = other.json(&["build", l, "--locked"]);
    assert_eq!(base2["rootfs"]["tree"], from_lock["rootfs"]["tree"], "a locked build is not reproducible");
}

#[test]
fn an_image_derives_from_an_ostree_commit() {
    let env = Env::new();
    let repo = env.path("repo");
    let tree = env.path("tree");
    write(&tree.join("usr/share/base/marker"), "from ostree\n");
    write(&tree.join("etc/os-release"), "ID=fixture\n");
    sh(&format!(
        "ostree --repo={r} init --mode=bare && ostree --repo={r} commit --branch=fixture/base --tree=dir={t} --owner-uid=0 --owner-gid=0 >/dev/null",
        r = repo.display(),
        t = tree.display()
    ));
    let desc = env.path("desc");
    write(&desc.join("image.toml"), "[image]\nname = \"on-ostree\"\nderived-from = \"ostree:../repo#fixture/base\"\n");
    write(&desc.join("root/etc/motd"), "hello\n");
    let d = desc.to_str().unwrap();

    let plan = env.json(&["plan", d]);
    assert_eq!(plan["steps"][0]["kind"], "base");
    assert_eq!(plan["steps"][0]["state"], "missing", "{plan}");
    let built = env.json(&["build", d]);
    assert_eq!(steps(&built), (3, 0, 3));
    let again = env.json(&["build", d]);
    assert_eq!(steps(&again), (3, 3, 0), "the commit is imported once");
    let co = env.path("co");
    env.ok(&["store", "checkout", "images/on-ostree", co.to_str().unwrap()]);
    assert_eq!(fs_err::read_to_string(co.join("usr/share/base/marker")).unwrap(), "from ostree\n");
    assert_eq!(fs_err::read_to_string(co.join("etc/motd")).unwrap(), "hello\n");

    let missing = env.path("missing");
    write(&missing.join("image.toml"), "[image]\nname = \"m\"\nderived-from = \"ostree:../repo#no/such/ref\"\n");
    let err = env.fail(&["build", missing.to_str().unwrap()]);
    assert!(err.contains("derived-from ostree:") && err.contains("no/such/ref"), "{err}");
}
