//! `strata export`, `push`, `remote` and `key` end to end, against real libostree repositories
//! checked with `ostree fsck`, and a stock `ostree` client pulling over HTTP from 127.0.0.1.
//!
//! The fixture is a small bootable-looking tree made here: merged /usr, a kernel and an
//! initramfs (a real newc cpio, gzip-compressed) that carries ostree-prepare-root, /var and
//! /home content, a device node and a fifo, hardlinks, an xattr and a setuid file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{make_key, manifest, many_files, sh, write, Env, Server};

const KVER: &str = "6.1.0-test";
const EPOCH: &str = "1700000000";

/// A gzip-compressed newc archive holding `names` (empty files).
fn initramfs(names: &[&str]) -> Vec<u8> {
    let mut cpio = Vec::new();
    let mut entry = |name: &str, mode: u32| {
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            mode,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        cpio.extend_from_slice(header.as_bytes());
        cpio.extend_from_slice(name.as_bytes());
        cpio.push(0);
        while cpio.len() % 4 != 0 {
            cpio.push(0);
        }
    };
    for n in names {
        entry(n, 0o100755);
    }
    entry("TRAILER!!!", 0);
    gzip_stored(&cpio)
}

/// `data` as a gzip file of stored (uncompressed) deflate blocks, written here byte by byte so
/// that the fixture, and the commit pinned below, do not depend on a compressor's choices.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(65535).collect() };
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// The fixture tree at `root`; `hook` puts ostree-prepare-root into the initramfs.
fn fixture(root: &Path, hook: bool) {
    for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        fs_err::create_dir_all(root.join(target)).unwrap();
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    write(&root.join("etc/os-release"), "ID=fixture\nVERSION_ID=1\n");
    write(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:4242:4242::/var/lib/app:/bin/sh\n");
    write(&root.join("usr/bin/app"), "#!/bin/sh\necho app\n");
    write(&root.join("usr/bin/su"), "setuid\n");
    write(&root.join("usr/share/doc/app/README"), "read me\n");
    fs_err::hard_link(root.join("usr/share/doc/app/README"), root.join("usr/share/doc/app/README.link")).unwrap();
    write(&root.join("usr/lib/modules").join(KVER).join("modules.dep"), "");
    write(&root.join("var/lib/app/state"), "state\n");
    std::os::unix::fs::symlink("state", root.join("var/lib/app/current")).unwrap();
    fs_err::create_dir_all(root.join("var/log/app")).unwrap();
    fs_err::create_dir_all(root.join("var/opt")).unwrap();
    write(&root.join("home/user/.profile"), "PATH=/usr/bin\n");
    write(&root.join("root/.bashrc"), "# root\n");
    write(&root.join("opt/vendor/tool"), "tool\n");
    write(&root.join("boot").join(format!("vmlinuz-{KVER}")), "kernel image\n");
    write(&root.join("boot").join(format!("config-{KVER}")), "CONFIG_X=y\n");
    write(&root.join("boot/grub/grub.cfg"), "menuentry\n");
    let names: &[&str] = if hook { &["usr", "usr/lib/ostree/ostree-prepare-root"] } else { &["usr", "usr/bin/sh"] };
    fs_err::write(root.join("boot").join(format!("initrd.img-{KVER}")), initramfs(names)).unwrap();
    std::os::unix::fs::symlink(format!("boot/vmlinuz-{KVER}"), root.join("vmlinuz")).unwrap();
    fs_err::create_dir_all(root.join("dev")).unwrap();
    fs_err::create_dir_all(root.join("run")).unwrap();
    let r = root.display();
    sh(&format!(
        "chown -R 0:0 {r} && chmod -R u=rwX,go=rX {r} && chmod 1777 {r}/run && \
         chown -R 4242:4242 {r}/var/lib/app && chmod 0750 {r}/var/lib/app && \
         chown -R 1000:1000 {r}/home/user && chmod 0700 {r}/root && chmod 0600 {r}/root/.bashrc && \
         chmod 4755 {r}/usr/bin/su && chmod 755 {r}/usr/bin/app && \
         setfattr -n user.origin -v fixture {r}/usr/bin/app && \
         mknod -m 666 {r}/dev/null c 1 3 && mkfifo -m 600 {r}/run/fifo"
    ));
}

/// Import `dir` as root `tags/NAME`.
fn import(env: &Env, dir: &Path, name: &str) {
    env.ok(&["store", "add", dir.to_str().unwrap(), "--name", name, "--root", &format!("tags/{name}")]);
}

/// `strata export` onto `fixture/x86_64` (unless `extra` names another ref).
fn export(env: &Env, source: &str, repo: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "export", source, "--repo", repo.to_str().unwrap()];
    if !extra.contains(&"--ref") {
        args.extend_from_slice(&["--ref", "fixture/x86_64"]);
    }
    args.extend_from_slice(extra);
    let out = env.cmd(&args).env("SOURCE_DATE_EPOCH", EPOCH).output().unwrap();
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn export_fails(env: &Env, source: &str, repo: &Path, extra: &[&str]) -> String {
    let mut args = vec!["export", source, "--repo", repo.to_str().unwrap(), "--ref", "fixture/x86_64"];
    args.extend_from_slice(extra);
    let out = env.cmd(&args).output().unwrap();
    assert!(!out.status.success(), "export of {source} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn ostree(repo: &Path, args: &str) -> String {
    sh(&format!("ostree --repo={} {args}", repo.display()))
}

fn fsck(repo: &Path) {
    let out = ostree(repo, "fsck 2>&1");
    assert!(out.contains("no errors found"), "fsck of {}: {out}", repo.display());
}

/// The dirtree and dirmeta checksums of `/` in `rev` (`ostree ls -C -d`).
fn root_checksums(repo: &Path, rev: &str) -> String {
    let line = ostree(repo, &format!("ls -C -d {rev} /"));
    line.split_whitespace().skip(4).take(2).collect::<Vec<_>>().join(" ")
}

/// A manifest without hardlink groups.
fn without_link_groups(m: BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter()
        .map(|(k, v)| match v.find(" link-group ") {
            Some(i) => {
                let rest = &v[i + " link-group ".len()..];
                let after = &rest[rest.find(' ').unwrap()..];
                (k, format!("{}{after}", &v[..i]))
            }
            None => (k, v),
        })
        .collect()
}

/// The refs file of a repository (what a client without the summary reads).
fn ref_of(repo: &Path) -> Option<String> {
    fs_err::read_to_string(repo.join("refs/heads/fixture/x86_64")).ok().map(|s| s.trim().to_string())
}

#[test]
fn an_image_is_laid_out_committed_reproducibly_and_incrementally() {
    let env = Env::new();
    let tree = env.path("tree");
    fixture(&tree, true);
    import(&env, &tree, "fixture");
    let repo = env.path("repo");

    // Fifos and device nodes: refused on request, naming the path; nothing is written.
    let err = export_fails(&env, "tags/fixture", &repo, &["--special-files", "fail"]);
    assert!(err.contains("/dev/null is a char-device") && err.contains("--special-files skip"), "{err}");
    assert!(!repo.join("refs/heads/fixture").exists());

    let first = export(&env, "tags/fixture", &repo, &["--mode", "bare"]);
    let commit = first["commit"].as_str().unwrap().to_string();
    assert_eq!(first["new_commit"], true);
    assert_eq!(first["ref"], "fixture/x86_64");
    assert!(first["objects_written"].as_u64().unwrap() > 20, "{first}");
    let report = &first["layout"]["report"];
    assert_eq!(report["kernel"], KVER);
    assert_eq!(report["initramfs_checked"], true);
    let left: Vec<&str> = report["left_out"].as_array().unwrap().iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(left, ["/boot/grub", "/dev/null", "/run/fifo"], "{report}");
    fsck(&repo);
    // Pinned: the commit depends only on the tree, the metadata and the source date.
    assert_eq!(
        commit, "59d30eb228dd542f20851dc224463d14c36102ead03d27f444543e58670eea18",
        "the commit checksum of the fixture changed"
    );

    // What a stock client checks out is the laid-out tree, exactly (but for hardlinks: OSTree
    // links every file with the same content and metadata, not only the tree's link groups).
    let layout_tree = first["layout"]["tree"].as_str().unwrap();
    let ours = env.path("ours");
    env.ok(&["store", "checkout", layout_tree, ours.to_str().unwrap(), "--link", "copy"]);
    let theirs = env.path("theirs");
    ostree(&repo, &format!("checkout --force-copy {commit} {}", theirs.display()));
    assert_eq!(without_link_groups(manifest(&ours)), without_link_groups(manifest(&theirs)));
    let listing = ostree(&repo, &format!("ls -C {commit} /usr/share/doc/app"));
    let sums: Vec<&str> =
        listing.lines().filter(|l| l.contains("README")).map(|l| l.split_whitespace().nth(4).unwrap()).collect();
    assert_eq!(sums.len(), 2);
    assert_eq!(sums[0], sums[1], "hardlinked files are one object");
    // A live ISO needs dracut's live module in the image; the fixture has no dracut.
    let spec = format!("ostree:{}#fixture/x86_64", repo.display());
    let iso = env.path("fixture.iso");
    let err = env.fail(&["deploy", &spec, "--format", "iso", "--output", iso.to_str().unwrap()]);
    assert!(err.contains("fixture has no dracut") && err.contains("dracut-live"), "{err}");
    assert!(!iso.exists());
    // The layout, as a deployment expects it.
    assert!(!theirs.join("etc").exists());
    assert_eq!(fs_err::read_to_string(theirs.join("usr/etc/os-release")).unwrap(), "ID=fixture\nVERSION_ID=1\n");
    for (link, target) in
        [("home", "var/home"), ("root", "var/roothome"), ("opt", "var/opt"), ("ostree", "sysroot/ostree")]
    {
        assert_eq!(fs_err::read_link(theirs.join(link)).unwrap(), PathBuf::from(target), "/{link}");
    }
    assert_eq!(fs_err::read_link(theirs.join("usr/local")).unwrap(), PathBuf::from("../var/usrlocal"));
    assert_eq!(fs_err::read_dir(theirs.join("var")).unwrap().count(), 0, "/var is empty in the commit");
    assert_eq!(fs_err::read_dir(theirs.join("boot")).unwrap().count(), 0, "OSTree manages /boot");
    assert!(theirs.join("sysroot").is_dir() && !theirs.join("vmlinuz").exists());
    let modules = theirs.join("usr/lib/modules").join(KVER);
    assert_eq!(fs_err::read_to_string(modules.join("vmlinuz")).unwrap(), "kernel image\n");
    assert_eq!(fs_err::read_to_string(modules.join("config")).unwrap(), "CONFIG_X=y\n");
    assert!(modules.join("initramfs.img").is_file());
    let factory = theirs.join("usr/share/factory/var");
    assert_eq!(fs_err::read_to_string(factory.join("lib/app/state")).unwrap(), "state\n");
    assert_eq!(fs_err::read_to_string(factory.join("opt/vendor/tool")).unwrap(), "tool\n", "/opt moved into var");
    assert_eq!(fs_err::read_to_string(factory.join("home/user/.profile")).unwrap(), "PATH=/usr/bin\n");
    let tmpfiles = fs_err::read_to_string(theirs.join("usr/lib/tmpfiles.d/strata-var.conf")).unwrap();
    for line in [
        "d /var/lib/app 0750 4242 4242 - -",
        "C /var/lib/app/state - - - - -",
        "L /var/lib/app/current - - - - state",
        "d /var/roothome 0700 0 0 - -",
        "d /var/home/user 0755 1000 1000 - -",
        "C /var/home/user/.profile - - - - -",
    ] {
        assert!(tmpfiles.lines().any(|l| l == line), "missing `{line}` in:\n{tmpfiles}");
    }
    let meta = ostree(&repo, &format!("show --print-metadata-key=ostree.linux {commit}"));
    assert_eq!(meta.trim(), format!("'{KVER}'"));
    let meta = ostree(&repo, &format!("show --print-metadata-key=strata.entry {commit}"));
    assert!(meta.contains(first["entry"].as_str().unwrap()), "{meta}");

    // The same tree from `ostree commit` of a checkout has the same dirtree and dirmeta.
    let peer = env.path("peer");
    ostree(&peer, "init --mode=bare");
    ostree(&peer, &format!("commit --branch=peer --tree=dir={} >/dev/null", ours.display()));
    assert_eq!(root_checksums(&repo, &commit), root_checksums(&peer, "peer"));

    // Unchanged: nothing is hashed or written, the ref stays.
    let again = export(&env, "tags/fixture", &repo, &[]);
    assert_eq!(again["commit"], commit.as_str());
    assert_eq!(again["new_commit"], false);
    assert_eq!(again["objects_written"], 0);
    assert_eq!(again["files_hashed"], 0);
    assert_eq!(again["layout"]["cached"], true);

    // Another store and repository ("another machine"): the same commit.
    let env2 = Env::new();
    import(&env2, &tree, "fixture");
    let other = export(&env2, "tags/fixture", &env2.path("repo"), &["--mode", "archive"]);
    assert_eq!(other["commit"], commit.as_str());
    fsck(&env2.path("repo"));

    // One changed file: only it is hashed; the parent is the previous commit.
    write(&tree.join("usr/bin/app"), "#!/bin/sh\necho app 2\n");
    sh(&format!("chmod 755 {0}/usr/bin/app && setfattr -n user.origin -v fixture {0}/usr/bin/app", tree.display()));
    import(&env, &tree, "fixture");
    let second = export(&env, "tags/fixture", &repo, &[]);
    assert_eq!(second["new_commit"], true);
    assert_eq!(second["parent"], commit.as_str());
    assert_eq!(second["files_hashed"], 1, "{second}");
    assert!(second["trees_reused"].as_u64().unwrap() > 3, "{second}");
    fsck(&repo);
    let log = ostree(&repo, "log fixture/x86_64");
    assert_eq!(log.lines().filter(|l| l.starts_with("commit ")).count(), 2, "{log}");

    // Trees that cannot boot under OSTree are refused with the reason, and change nothing.
    let head = ref_of(&repo);
    let nokernel = env.path("nokernel");
    fixture(&nokernel, true);
    sh(&format!("rm {0}/boot/vmlinuz-{KVER} {0}/vmlinuz", nokernel.display()));
    import(&env, &nokernel, "nokernel");
    let err = export_fails(&env, "tags/nokernel", &repo, &[]);
    assert!(err.contains("no kernel") && err.contains("linux-image"), "{err}");
    let nohook = env.path("nohook");
    fixture(&nohook, false);
    import(&env, &nohook, "nohook");
    let err = export_fails(&env, "tags/nohook", &repo, &[]);
    assert!(
        err.contains(&format!("/boot/initrd.img-{KVER} has no ostree-prepare-root")) && err.contains("dracut"),
        "{err}"
    );
    assert_eq!(ref_of(&repo), head);
    fsck(&repo);
}

#[test]
fn a_signed_commit_is_pushed_and_pulled_by_a_stock_client_over_http() {
    let env = Env::new();
    let tree = env.path("tree");
    fixture(&tree, true);
    many_files(&tree.join("usr/share/data"), 1500);
    import(&env, &tree, "fixture");
    let (gnupg, _) = make_key(&env, "publisher");
    let gnupg = gnupg.to_str().unwrap().to_string();
    let key_id = sh(&format!("GNUPGHOME={gnupg} gpg --list-keys --with-colons | awk -F: '/^fpr/{{print $10; exit}}'"));
    let key_id = key_id.trim();
    let public_asc = env.path("publisher.asc");
    sh(&format!("GNUPGHOME={gnupg} gpg --batch --export --armor > {}", public_asc.display()));
    let ed_key = env.path("signing.key");
    let ed_public = env.ok(&["key", "generate", ed_key.to_str().unwrap()]).trim().to_string();
    let sign: Vec<&str> = vec!["--sign-key", ed_key.to_str().unwrap(), "--gpg-sign", key_id, "--gpg-homedir", &gnupg];

    let repo = env.path("repo");
    let first = export(&env, "tags/fixture", &repo, &[&["--mode", "archive"][..], &sign].concat());
    let c1 = first["commit"].as_str().unwrap().to_string();
    assert_eq!(first["signed_by"].as_array().unwrap().len(), 2);
    fsck(&repo);
    // The ed25519 signature is OSTree's: over the commit object, in `ostree.sign.ed25519`.
    let commit_bytes = fs_err::read(repo.join(format!("objects/{}/{}.commit", &c1[..2], &c1[2..]))).unwrap();
    let sigs = ostree(&repo, &format!("show --print-detached-metadata-key=ostree.sign.ed25519 {c1}"));
    assert!(sigs.contains("0x") || sigs.contains("b'"), "stock ostree shows the signature: {sigs}");
    // Checked on the detached metadata itself: its text form prints a signature that happens to
    // end in one zero byte as a byte string, which a text parser would miss.
    let meta = repo.join(format!("objects/{}/{}.commitmeta", &c1[..2], &c1[2..]));
    let meta = strata::ostree::sign::read_vardict(&meta).unwrap();
    assert!(strata::ostree::sign::ed25519_verifies(meta.as_ref(), &commit_bytes, &ed_public).unwrap(), "{sigs}");
    let again = export(&env, "tags/fixture", &repo, &sign);
    assert_eq!(again["new_commit"], false);
    let sigs_again = ostree(&repo, &format!("show --print-detached-metadata-key=ostree.sign.ed25519 {c1}"));
    assert_eq!(sigs, sigs_again, "signing again adds no second signature");

    env.ok(&["remote", "add", "public", env.path("public").to_str().unwrap()]);
    let remotes = env.json(&["remote", "ls"]);
    assert_eq!(remotes[0]["name"], "public");
    let err = env.fail(&["remote", "add", "public", "/elsewhere"]);
    assert!(err.contains("exists"), "{err}");
    let pushed: serde_json::Value = serde_json::from_str(
        &env.ok(&[
            &["--json", "push", "fixture/x86_64", "--repo", repo.to_str().unwrap(), "--to", "public"][..],
            &sign,
        ]
        .concat()),
    )
    .unwrap();
    assert_eq!(pushed["commit"], c1.as_str());
    let public = env.path("public");
    fsck(&public);
    let summary = fs_err::read(public.join("summary")).unwrap();
    let summary_sig = strata::ostree::sign::read_vardict(&public.join("summary.sig")).unwrap();
    assert!(strata::ostree::sign::ed25519_verifies(summary_sig.as_ref(), &summary, &ed_public).unwrap());

    let server = Server::start(&public);
    let url = format!("http://127.0.0.1:{}/", server.port);
    let client = env.path("client");
    // A system's repository (static deltas apply to bare repositories only).
    ostree(&client, "init --mode=bare");
    ostree(
        &client,
        &format!("remote add --set=gpg-verify-summary=true --gpg-import={} origin {url}", public_asc.display()),
    );
    ostree(&client, "pull origin fixture/x86_64 2>&1");
    assert_eq!(ostree(&client, "rev-parse origin:fixture/x86_64").trim(), c1);
    fsck(&client);

    // A client that trusts another key refuses the commit.
    let (other_home, _) = make_key(&env, "stranger");
    let stranger_asc = env.path("stranger.asc");
    sh(&format!("GNUPGHOME={} gpg --batch --export --armor > {}", other_home.display(), stranger_asc.display()));
    let wary = env.path("wary");
    ostree(&wary, "init --mode=archive");
    ostree(&wary, &format!("remote add --gpg-import={} origin {url}", stranger_asc.display()));
    let out = Command::new("ostree")
        .arg(format!("--repo={}", wary.display()))
        .args(["pull", "origin", "fixture/x86_64"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a pull trusting the wrong key must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).to_lowercase().contains("signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A second commit with a static delta from the first: the client updates through it.
    write(&tree.join("usr/bin/app"), "#!/bin/sh\necho app 2\n");
    sh(&format!("chmod 755 {0}/usr/bin/app", tree.display()));
    import(&env, &tree, "fixture");
    let second = export(&env, "tags/fixture", &repo, &[&["--deltas", "1"][..], &sign].concat());
    let c2 = second["commit"].as_str().unwrap().to_string();
    assert_eq!(second["deltas"][0], format!("{c1}-{c2}"));
    let pushed = env
        .json(&[&["push", "fixture/x86_64", "--repo", repo.to_str().unwrap(), "--to", "public"][..], &sign].concat());
    assert_eq!(pushed["deltas_copied"], 1, "{pushed}");
    assert!(pushed["objects_copied"].as_u64().unwrap() < 10, "only the new objects: {pushed}");
    fsck(&public);
    let out = ostree(&client, "pull --require-static-deltas origin fixture/x86_64 2>&1");
    assert!(out.contains("delta parts"), "{out}");
    assert_eq!(ostree(&client, "rev-parse origin:fixture/x86_64").trim(), c2);
    fsck(&client);
    drop(server);

    // History depth: keep one commit.
    let third_tree = env.path("tree");
    write(&third_tree.join("usr/bin/app"), "#!/bin/sh\necho app 3\n");
    sh(&format!("chmod 755 {0}/usr/bin/app", third_tree.display()));
    import(&env, &third_tree, "fixture");
    let third = export(&env, "tags/fixture", &repo, &["--history", "1"]);
    assert!(third["pruned"]["objects"].as_u64().unwrap() > 0, "{third}");
    let log = ostree(&repo, "log fixture/x86_64");
    assert_eq!(log.lines().filter(|l| l.starts_with("commit ")).count(), 1, "{log}");
    fsck(&repo);
}

#[test]
fn an_interrupted_push_leaves_the_destination_serving_the_old_commit() {
    let env = Env::new();
    let tree = env.path("tree");
    fixture(&tree, true);
    many_files(&tree.join("usr/share/data"), 3000);
    import(&env, &tree, "fixture");
    let repo = env.path("repo");
    let dest = env.path("dest");
    let c1 = export(&env, "tags/fixture", &repo, &["--mode", "archive"])["commit"].as_str().unwrap().to_string();
    env.ok(&["push", "fixture/x86_64", "--repo", repo.to_str().unwrap(), "--to", dest.to_str().unwrap()]);
    // The second commit changes every data file.
    sh(&format!("find {}/usr/share/data -type f -exec sh -c 'echo changed >> \"$1\"' _ {{}} \\;", tree.display()));
    import(&env, &tree, "fixture");
    let c2 = export(&env, "tags/fixture", &repo, &[])["commit"].as_str().unwrap().to_string();

    let mut interrupted = 0;
    for delay_ms in [0u64, 5, 10, 20, 40, 60, 90, 130, 200, 300] {
        let mut child = env
            .cmd(&["-q", "push", "fixture/x86_64", "--repo", repo.to_str().unwrap(), "--to", dest.to_str().unwrap()])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        interrupted += usize::from(!status.success());
        let served = ref_of(&dest).unwrap();
        assert!(served == c1 || served == c2, "after {delay_ms} ms: ref at {served}");
        fsck(&dest);
        assert!(ostree(&dest, &format!("ls -R {served} / | wc -l")).trim().parse::<u64>().unwrap() > 3000);
        if served == c2 {
            break;
        }
    }
    assert!(interrupted > 0, "no push was interrupted: the fixture is too small to test this");
    env.ok(&["push", "fixture/x86_64", "--repo", repo.to_str().unwrap(), "--to", dest.to_str().unwrap()]);
    assert_eq!(ref_of(&dest).unwrap(), c2);
    fsck(&dest);
    let leftovers: Vec<_> = fs_err::read_dir(dest.join("tmp"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("strata-push-"))
        .collect();
    assert!(leftovers.is_empty(), "a completed push cleans up after interrupted ones");
}

/// The example in descriptions/ (from the build host's Debian mirror): built, exported signed,
/// pushed, and pulled by a stock client over HTTP, which checks the GPG signatures of the commit
/// and the summary; then deployed-style checks on what the client has.
#[test]
fn the_debian_base_example_is_exported_pushed_and_pulled() {
    let env = common::env_with_cache();
    let desc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("descriptions/debian-base");
    let (gnupg, _) = make_key(&env, "publisher");
    let gnupg = gnupg.to_str().unwrap().to_string();
    let key_id = sh(&format!("GNUPGHOME={gnupg} gpg --list-keys --with-colons | awk -F: '/^fpr/{{print $10; exit}}'"));
    let public_asc = env.path("publisher.asc");
    sh(&format!("GNUPGHOME={gnupg} gpg --batch --export --armor > {}", public_asc.display()));
    let ed_key = env.path("signing.key");
    env.ok(&["key", "generate", ed_key.to_str().unwrap()]);
    let sign = ["--sign-key", ed_key.to_str().unwrap(), "--gpg-sign", key_id.trim(), "--gpg-homedir", &gnupg];

    let repo = env.path("repo");
    let mut args = vec!["--json", "export", desc.to_str().unwrap(), "--repo", repo.to_str().unwrap()];
    args.extend_from_slice(&sign);
    let out: serde_json::Value = serde_json::from_str(&env.ok(&args)).unwrap();
    let commit = out["commit"].as_str().unwrap().to_string();
    assert_eq!(out["ref"], "debian-base/x86_64");
    assert_eq!(out["layout"]["report"]["initramfs_checked"], true, "{out}");
    assert!(out["layout"]["report"]["kernel"].as_str().unwrap().ends_with("-amd64"));
    fsck(&repo);
    assert_eq!(ostree(&repo, &format!("show --print-metadata-key=version {commit}")).trim(), "'12.0.1'");

    let public = env.path("public");
    let mut args =
        vec!["push", "debian-base/x86_64", "--repo", repo.to_str().unwrap(), "--to", public.to_str().unwrap()];
    args.extend_from_slice(&sign);
    env.ok(&args);
    fsck(&public);
    let server = Server::start(&public);
    let client = env.path("client");
    ostree(&client, "init --mode=bare");
    ostree(
        &client,
        &format!(
            "remote add --set=gpg-verify-summary=true --gpg-import={} os http://127.0.0.1:{}/",
            public_asc.display(),
            server.port
        ),
    );
    ostree(&client, "pull os debian-base/x86_64 2>&1");
    assert_eq!(ostree(&client, "rev-parse os:debian-base/x86_64").trim(), commit);
    fsck(&client);
    drop(server);
    // What a deployment of it boots: the kernel and its initramfs, /usr/etc, the var snippet.
    let co = env.path("co");
    ostree(&client, &format!("checkout {commit} {}", co.display()));
    let modules: Vec<_> = fs_err::read_dir(co.join("usr/lib/modules")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(modules.len(), 1);
    assert!(modules[0].join("vmlinuz").is_file() && modules[0].join("initramfs.img").is_file());
    assert!(co.join("usr/etc/passwd").is_file() && !co.join("etc").exists());
    let tmpfiles = fs_err::read_to_string(co.join("usr/lib/tmpfiles.d/strata-var.conf")).unwrap();
    assert!(co.join("usr/lib/sysimage/dpkg/status").is_file(), "the package database lives in /usr");
    assert!(tmpfiles.lines().any(|l| l == "L /var/lib/dpkg - - - - ../../usr/lib/sysimage/dpkg"), "{tmpfiles}");
    assert!(tmpfiles.lines().any(|l| l.starts_with("d /var/home/debian ")), "{tmpfiles}");
}

/// A real sshd on 127.0.0.1 that lets in one key; stopped on drop.
struct Sshd {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Sshd {
    fn start(env: &Env) -> Sshd {
        let dir = env.path("sshd");
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::create_dir_all("/run/sshd").unwrap();
        let d = dir.display();
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {d}/host_key && ssh-keygen -q -t ed25519 -N '' -f {d}/client_key && \
             cp {d}/client_key.pub {d}/authorized_keys && chmod 600 {d}/authorized_keys"
        ));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        write(
            &dir.join("config"),
            &format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 StrictModes no\nUsePAM no\nPidFile {d}/pid\n"
            ),
        );
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("config"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Sshd { child, port, dir };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("sshd did not start");
    }

    fn command(&self) -> String {
        format!(
            "ssh -i {}/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
            self.dir.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_push_over_ssh_publishes_in_order_and_keeps_other_refs() {
    let env = Env::new();
    let tree = env.path("tree");
    fixture(&tree, true);
    import(&env, &tree, "fixture");
    let repo = env.path("repo");
    let ed_key = env.path("signing.key");
    let ed_public = env.ok(&["key", "generate", ed_key.to_str().unwrap()]).trim().to_string();
    let c1 = export(&env, "tags/fixture", &repo, &["--mode", "archive"])["commit"].as_str().unwrap().to_string();
    let sshd = Sshd::start(&env);
    let far = env.path("far/ostree");
    let url = format!("ssh://root@127.0.0.1:{}{}", sshd.port, far.display());
    env.ok(&["remote", "add", "far", &url]);
    let err = env.fail(&["remote", "add", "bad", "ssh://host/a b"]);
    assert!(err.contains("invalid path"), "{err}");

    let push = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--json", "push", "fixture/x86_64", "--repo", repo.to_str().unwrap(), "--to", "far"];
        args.extend_from_slice(extra);
        let out = env.cmd(&args).env("STRATA_SSH_COMMAND", sshd.command()).output().unwrap();
        assert!(out.status.success(), "push over ssh failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = push(&["--sign-key", ed_key.to_str().unwrap()]);
    assert_eq!(first["commit"], c1.as_str());
    assert_eq!(ref_of(&far).unwrap(), c1);
    fsck(&far);
    let summary = fs_err::read(far.join("summary")).unwrap();
    let sig = strata::ostree::sign::read_vardict(&far.join("summary.sig")).unwrap();
    assert!(strata::ostree::sign::ed25519_verifies(sig.as_ref(), &summary, &ed_public).unwrap());

    // Someone else publishes another ref there; our next push keeps it in the summary.
    let other = env.path("other");
    let c_other = export(&env, "tags/fixture", &other, &["--mode", "archive", "--ref", "other/x86_64"])["commit"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["push", "other/x86_64", "--repo", other.to_str().unwrap(), "--to", far.to_str().unwrap()]);

    write(&tree.join("usr/bin/app"), "#!/bin/sh\necho app 2\n");
    sh(&format!("chmod 755 {}/usr/bin/app", tree.display()));
    import(&env, &tree, "fixture");
    let c2 = export(&env, "tags/fixture", &repo, &["--deltas", "1"])["commit"].as_str().unwrap().to_string();
    let second = push(&["--sign-key", ed_key.to_str().unwrap()]);
    assert_eq!(second["commit"], c2.as_str());
    assert_eq!(ref_of(&far).unwrap(), c2);
    fsck(&far);
    assert!(far.join("deltas").is_dir(), "the static delta is published");

    // A stock client sees both refs in the summary, and updates through the delta.
    let server = Server::start(&far);
    let client = env.path("client");
    ostree(&client, "init --mode=bare");
    ostree(&client, &format!("remote add --no-gpg-verify origin http://127.0.0.1:{}/", server.port));
    let refs = ostree(&client, "remote refs origin");
    assert!(refs.contains("origin:fixture/x86_64") && refs.contains("origin:other/x86_64"), "{refs}");
    ostree(&client, &format!("pull origin fixture/x86_64@{c1} 2>&1"));
    let out = ostree(&client, "pull --require-static-deltas origin fixture/x86_64 2>&1");
    assert!(out.contains("delta parts"), "{out}");
    assert_eq!(ostree(&client, "rev-parse origin:fixture/x86_64").trim(), c2);
    ostree(&client, "pull origin other/x86_64 2>&1");
    assert_eq!(ostree(&client, "rev-parse origin:other/x86_64").trim(), c_other);

    // gc trims the local mirror to what a push fetches back from the far side anyway; the next
    // push still publishes a whole commit.
    let mirrors = env.store().join("cache/ostree-mirrors");
    let count = |pattern: &str| sh(&format!("find {} -name '{pattern}' | wc -l", mirrors.display())).trim().to_string();
    assert_ne!(count("*.filez"), "0");
    let gc = env.json(&["gc"]);
    assert_eq!(gc["mirrors"]["mirrors"], 1, "{gc}");
    assert!(gc["mirrors"]["files"].as_u64().unwrap() > 0 && gc["mirrors"]["bytes"].as_u64().unwrap() > 0, "{gc}");
    assert_eq!(count("*.filez"), "0");
    assert_ne!(count("*.commit"), "0");
    write(&tree.join("usr/bin/app"), "#!/bin/sh\necho app 3\n");
    import(&env, &tree, "fixture");
    let c3 = export(&env, "tags/fixture", &repo, &["--deltas", "1"])["commit"].as_str().unwrap().to_string();
    assert_eq!(push(&[])["commit"], c3.as_str());
    fsck(&far);
    ostree(&client, "pull origin fixture/x86_64 2>&1");
    assert_eq!(ostree(&client, "rev-parse origin:fixture/x86_64").trim(), c3);
    ostree(&client, "fsck 2>&1");
}

/// `strata` with `SOURCE_DATE_EPOCH` set, its JSON output.
fn json_at_epoch(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = env.cmd(&all).env("SOURCE_DATE_EPOCH", EPOCH).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The JSON of blob `digest` in the layout at `dir`.
fn blob_json(dir: &Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap()).unwrap()
}

/// Store `bytes` as a blob of the layout at `dir`; returns its digest.
fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    fs_err::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

/// Copy the layout `from` to `to`, letting `edit` change the (uncompressed) layers and the
/// config, and rewrite the digests so that only what `edit` did is wrong.
fn edited_layout(
    from: &Path,
    to: &Path,
    edit: impl Fn(&mut Vec<Vec<u8>>, &mut serde_json::Value, &mut Vec<serde_json::Value>),
) {
    use std::io::{Read, Write};
    sh(&format!("rm -rf {1} && cp -a {0} {1}", from.display(), to.display()));
    let index: serde_json::Value = serde_json::from_slice(&fs_err::read(to.join("index.json")).unwrap()).unwrap();
    let mut manifest = blob_json(to, index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = blob_json(to, manifest["config"]["digest"].as_str().unwrap());
    let mut descs: Vec<serde_json::Value> = manifest["layers"].as_array().unwrap().clone();
    let mut tars: Vec<Vec<u8>> = descs
        .iter()
        .map(|d| {
            let gz = fs_err::read(to.join("blobs/sha256").join(&d["digest"].as_str().unwrap()[7..])).unwrap();
            let mut tar = vec![];
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut tar).unwrap();
            tar
        })
        .collect();
    edit(&mut tars, &mut config, &mut descs);
    let mut diff_ids = vec![];
    for (tar, d) in tars.iter().zip(descs.iter_mut()) {
        let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let gz = gz.finish().unwrap();
        d["digest"] = put_blob(to, &gz).into();
        d["size"] = gz.len().into();
        use sha2::Digest as _;
        diff_ids.push(format!("sha256:{}", hex::encode(sha2::Sha256::digest(tar))));
    }
    let old_final = config["config"]["Labels"]["ostree.final-diffid"].as_str().unwrap().to_string();
    let old_ids: Vec<String> =
        config["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
    if let Some(i) = old_ids.iter().position(|d| *d == old_final) {
        config["config"]["Labels"]["ostree.final-diffid"] = diff_ids[i.min(diff_ids.len() - 1)].clone().into();
    }
    config["rootfs"]["diff_ids"] = diff_ids.into();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put_blob(to, &config_bytes).into();
    manifest["config"]["size"] = config_bytes.len().into();
    manifest["layers"] = descs.into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let mut index = index;
    index["manifests"][0]["digest"] = put_blob(to, &manifest_bytes).into();
    index["manifests"][0]["size"] = manifest_bytes.len().into();
    fs_err::write(to.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn an_image_travels_as_an_ostree_native_container_and_comes_back_the_same_commit() {
    let env = Env::new();
    let tree = env.path("tree");
    fixture(&tree, true);
    // dpkg file lists, so that the files go into layers by package.
    let info = tree.join("var/lib/dpkg/info");
    write(
        &info.join("app.list"),
        "/usr/bin/app\n/usr/share/doc/app/README\n/usr/share/doc/app/README.link\n/etc/os-release\n",
    );
    write(&info.join("login.list"), "/usr/bin/su\n/etc/passwd\n");
    write(
        &info.join("linux-image.list"),
        &format!("/boot/vmlinuz-{KVER}\n/boot/config-{KVER}\n/usr/lib/modules/{KVER}/modules.dep\n"),
    );
    // A file bigger than what goes to a repository in one call.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs_err::write(tree.join("usr/lib/big.bin"), big).unwrap();
    import(&env, &tree, "fixture");
    let repo = env.path("repo");
    let layout = env.path("layout");
    let spec = format!("oci:{}:1", layout.display());

    // The commit goes into --repo, then into the image.
    // `strata export tags/fixture --format ostree-container` into `repo` and `spec`, with `extra`.
    let to_container = |extra: &[&str]| -> serde_json::Value {
        let repo = repo.to_str().unwrap();
        let mut args = vec!["export", "tags/fixture", "--format", "ostree-container", "--repo", repo];
        args.extend_from_slice(&["--ref", "fixture/x86_64", "--output", &spec]);
        args.extend_from_slice(extra);
        json_at_epoch(&env, &args)
    };
    let out = to_container(&["--mode", "bare"]);
    let report = &out["report"];
    let commit = ostree(&repo, "rev-parse fixture/x86_64").trim().to_string();
    let plain = export(&env, "tags/fixture", &repo, &["--mode", "bare"]);
    assert_eq!(plain["commit"], commit.as_str(), "the same commit as --format ostree");
    let layers = report["layers"].as_array().unwrap();
    assert!(layers.len() >= 3, "the commit layer and layers by package: {report}");
    assert!(layers.iter().all(|l| l["written"] == true));

    // What skopeo reads: the labels ostree's tools need, and every digest verified on copy.
    let inspect: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --config oci:{}:1", layout.display()))).unwrap();
    let labels = &inspect["config"]["Labels"];
    assert_eq!(labels["ostree.commit"], commit.as_str());
    assert_eq!(labels["ostree.bootable"], "true");
    assert_eq!(labels["containers.bootc"], "1");
    assert_eq!(labels["ostree.linux"], KVER);
    let diff_ids = inspect["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(labels["ostree.final-diffid"], *diff_ids.last().unwrap());
    let raw: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --raw oci:{}:1", layout.display()))).unwrap();
    let components: Vec<&str> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["annotations"]["ostree.components"].as_str())
        .collect();
    assert!(components.iter().any(|c| c.contains("linux-image")), "{raw}");
    sh(&format!("skopeo copy --quiet oci:{}:1 oci:{}:copy", layout.display(), env.path("copy").display()));

    // What a container runtime sees: the tree with /usr/etc as /etc; and inside it, the
    // repository, which stock ostree checks object by object and checks out exactly.
    let bundle = env.path("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:1", layout.display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
    let rootfs = bundle.join("rootfs");
    assert_eq!(fs_err::read_to_string(rootfs.join("etc/os-release")).unwrap(), "ID=fixture\nVERSION_ID=1\n");
    assert!(!rootfs.join("usr/etc").exists());
    assert!(rootfs.join("var/tmp").is_dir());
    assert_eq!(
        fs_err::read_to_string(rootfs.join("usr/lib/modules").join(KVER).join("vmlinuz")).unwrap(),
        "kernel image\n"
    );
    let inner = rootfs.join("sysroot/ostree/repo");
    fsck(&inner);
    assert_eq!(
        fs_err::read_to_string(inner.join("config")).unwrap(),
        "[core]\nrepo_version=1\nmode=bare-split-xattrs\n"
    );
    let theirs = env.path("theirs");
    ostree(&inner, &format!("checkout --force-copy {commit} {}", theirs.display()));
    let ours = env.path("ours");
    ostree(&repo, &format!("checkout --force-copy {commit} {}", ours.display()));
    assert_eq!(without_link_groups(manifest(&theirs)), without_link_groups(manifest(&ours)));

    // Unchanged: nothing is written again.
    let again = to_container(&[]);
    assert_eq!(again["report"]["bytes_written"], 0, "{again}");
    assert_eq!(again["report"]["manifest"], report["manifest"]);
    // Signed afterwards: the same commit, its signature in layer 0, which alone is made again.
    let key = env.path("signing.key");
    env.ok(&["key", "generate", key.to_str().unwrap()]);
    let signed = to_container(&["--sign-key", key.to_str().unwrap()]);
    assert_eq!(signed["commit"], commit.as_str());
    let written: Vec<bool> =
        signed["report"]["layers"].as_array().unwrap().iter().map(|l| l["written"].as_bool().unwrap()).collect();
    assert!(written[0] && written[1..].iter().all(|w| !w), "{signed}");

    // Back into another repository: the same commit, every object checked.
    let back = env.path("back");
    let got = env.json(&[
        "export",
        &format!("ostree-container:{spec}"),
        "--repo",
        back.to_str().unwrap(),
        "--ref",
        "os/x86_64",
        "--mode",
        "archive",
    ]);
    assert_eq!(got["commit"], commit.as_str(), "{got}");
    assert_eq!(ostree(&back, "rev-parse os/x86_64").trim(), commit);
    fsck(&back);

    // Derived from the image: its tree is what a container sees (/etc, and /var as the image
    // had it), laid out again it is the same commit tree; with a file added, only that differs.
    let same = env.path("same");
    write(&same.join("image.toml"), &format!("[image]\nname = \"same\"\nderived-from = \"ostree-container:{spec}\"\n"));
    let built = env.json(&["build", same.to_str().unwrap()]);
    assert!(built["steps"]["built"].as_u64().unwrap() >= 1, "{built}");
    let view = env.path("view");
    env.ok(&["store", "checkout", "images/same", view.to_str().unwrap(), "--link", "copy"]);
    assert_eq!(fs_err::read_to_string(view.join("etc/os-release")).unwrap(), "ID=fixture\nVERSION_ID=1\n");
    assert_eq!(fs_err::read_to_string(view.join("var/lib/app/state")).unwrap(), "state\n");
    assert!(!view.join("usr/etc").exists() && !view.join("usr/share/factory/var").exists());
    let relaid = export(&env, same.to_str().unwrap(), &repo, &["--ref", "same/x86_64"]);
    assert_eq!(root_checksums(&repo, relaid["commit"].as_str().unwrap()), root_checksums(&repo, &commit));

    let plus = env.path("plus");
    write(&plus.join("image.toml"), &format!("[image]\nname = \"plus\"\nderived-from = \"ostree-container:{spec}\"\n"));
    write(&plus.join("root/etc/motd"), "derived\n");
    let built = env.json(&["build", plus.to_str().unwrap()]);
    assert_eq!(built["steps"]["built"], 2, "the image is imported once; root/ and the image: {built}");
    let derived = export(&env, plus.to_str().unwrap(), &repo, &["--ref", "plus/x86_64"]);
    let diff = ostree(&repo, &format!("diff {commit} {}", derived["commit"].as_str().unwrap()));
    assert_eq!(diff.trim(), "A    /usr/etc/motd", "{diff}");
    // As an ostree container next to the image it derives from: the commit layer and the layer
    // of files no package owns (where /etc/motd goes) are new; every other layer is the base's.
    let out = env.json(&[
        "export",
        plus.to_str().unwrap(),
        "--format",
        "ostree-container",
        "--output",
        &format!("oci:{}:plus", layout.display()),
    ]);
    let written: Vec<bool> =
        out["report"]["layers"].as_array().unwrap().iter().map(|l| l["written"].as_bool().unwrap()).collect();
    assert_eq!(written.iter().filter(|w| **w).count(), 2, "{out}");
    assert!(written[0], "{out}");
    // As a plain OCI image it keeps the base's labels but those of the ostree commit.
    let plain = env.path("plain");
    env.ok(&["export", plus.to_str().unwrap(), "--format", "oci", "--output", &format!("oci:{}:1", plain.display())]);
    let config: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --config oci:{}:1", plain.display()))).unwrap();
    let labels = config["config"]["Labels"].as_object().unwrap();
    assert!(labels.keys().all(|k| !k.starts_with("ostree.") && k != "containers.bootc"), "{config}");

    // A container build on top (a plain layer after the commit's): laid over the commit's tree,
    // whiteouts honoured; the commit itself is still the one exported.
    let built_on = env.path("built-on");
    edited_layout(&layout, &built_on, |tars, _, descs| {
        let mut b = tar::Builder::new(vec![]);
        for (path, data) in [("etc/extra", &b"extra\n"[..]), ("etc/.wh.passwd", &b""[..])] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, path, data).unwrap();
        }
        tars.push(b.into_inner().unwrap());
        descs.push(descs[0].clone());
    });
    let on = env.path("on");
    write(
        &on.join("image.toml"),
        &format!("[image]\nname = \"on\"\nderived-from = \"ostree-container:oci:{}:1\"\n", built_on.display()),
    );
    env.ok(&["build", on.to_str().unwrap()]);
    let on_tree = env.path("on-tree");
    env.ok(&["store", "checkout", "images/on", on_tree.to_str().unwrap(), "--link", "copy"]);
    assert_eq!(fs_err::read_to_string(on_tree.join("etc/extra")).unwrap(), "extra\n");
    assert!(!on_tree.join("etc/passwd").exists() && on_tree.join("etc/os-release").is_file());
    let back2 = env.path("back2");
    let got = env.json(&[
        "export",
        &format!("ostree-container:oci:{}:1", built_on.display()),
        "--repo",
        back2.to_str().unwrap(),
    ]);
    assert_eq!(got["commit"], commit.as_str());
    assert_eq!(got["derived_layers_left_out"], 1, "{got}");
}

#[test]
fn bad_ostree_containers_are_refused_by_object_and_nothing_is_imported() {
    let env = Env::new();
    let tree = env.path("tree");
    fixture(&tree, true);
    write(&tree.join("var/lib/dpkg/info/linux-image.list"), &format!("/boot/vmlinuz-{KVER}\n"));
    import(&env, &tree, "fixture");
    let good = env.path("good");
    json_at_epoch(
        &env,
        &["export", "tags/fixture", "--format", "ostree-container", "--output", &format!("oci:{}:1", good.display())],
    );
    let build = |name: &str, layout: &Path| -> String {
        let dir = env.path(&format!("desc-{name}"));
        write(
            &dir.join("image.toml"),
            &format!("[image]\nname = \"{name}\"\nderived-from = \"ostree-container:oci:{}:1\"\n", layout.display()),
        );
        env.fail(&["build", dir.to_str().unwrap()])
    };

    // A file object whose bytes changed (its layer's digests made to match): libostree's
    // checksum of the object refuses it, naming the object.
    let tampered = env.path("tampered");
    edited_layout(&good, &tampered, |tars, _, _| {
        let tar = tars.iter_mut().find(|t| t.windows(13).any(|w| w == b"kernel image\n")).expect("the kernel's layer");
        let at = tar.windows(13).position(|w| w == b"kernel image\n").unwrap();
        tar[at + 11] = b'X';
    });
    let err = build("tampered", &tampered);
    assert!(err.contains("sysroot/ostree/repo/objects/") && err.contains(".file") && err.contains("checksum"), "{err}");

    // A layer left out: the commit reaches objects the image does not carry.
    let short = env.path("short");
    edited_layout(&good, &short, |tars, _, descs| {
        tars.pop();
        descs.pop();
    });
    let err = build("short", &short);
    assert!(err.contains("the image lacks the content object"), "{err}");

    // A label naming another commit, and an image that is no ostree container at all.
    let other = env.path("other");
    edited_layout(&good, &other, |_, config, _| {
        config["config"]["Labels"]["ostree.commit"] = "0".repeat(64).into();
    });
    let err = build("other", &other);
    assert!(err.contains("layer 0 carries commit") && err.contains(&"0".repeat(64)), "{err}");
    let plain = env.path("plain");
    edited_layout(&good, &plain, |_, config, _| {
        config["config"]["Labels"].as_object_mut().unwrap().remove("ostree.commit");
    });
    let err = build("plain", &plain);
    assert!(err.contains("not an ostree-native container"), "{err}");

    // Nothing of them was recorded; the good image imports.
    let ls = env.json(&["store", "ls"]);
    assert!(!ls.to_string().contains("ostree-container:"), "{ls}");
    let dir = env.path("desc-good");
    write(
        &dir.join("image.toml"),
        &format!("[image]\nname = \"good\"\nderived-from = \"ostree-container:oci:{}:1\"\n", good.display()),
    );
    env.ok(&["build", dir.to_str().unwrap()]);

    // References strata does not take, each with what to write instead.
    let err =
        env.fail(&["export", "ostree-image-signed:docker://r.example/os:1", "--repo", env.path("r").to_str().unwrap()]);
    assert!(err.contains("signed ostree container references are not supported"), "{err}");
    let err = env.fail(&["export", &format!("ostree-container:oci:{}:1", good.display())]);
    assert!(err.contains("give --repo PATH"), "{err}");
    let err = env.fail(&["export", "tags/fixture", "--format", "ostree-container"]);
    assert!(err.contains("needs --output"), "{err}");
    let good_spec = format!("oci:{}:2", good.display());
    let err =
        env.fail(&["export", "tags/fixture", "--format", "ostree-container", "--history", "2", "--output", &good_spec]);
    assert!(err.contains("give --repo PATH"), "{err}");
}
