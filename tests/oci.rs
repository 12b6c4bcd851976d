//! OCI export: images as OCI image layouts that stock tools read. `skopeo` inspects and copies
//! them (verifying every digest), `umoci` unpacks them, and what it unpacks must equal strata's
//! own checkout: content, modes, owners, xattrs, hardlinks, devices, links and odd names.

mod common;

use std::path::{Path, PathBuf};

use common::{manifest, sh, special_fixture, write, Env};

/// dpkg file lists for the fixture, so that its first layer is cut by package: busybox (with
/// paths through the merged-/usr link `/bin`), login (one member of a hardlink group whose first
/// member no package owns), tools (a device, an owned empty directory).
fn dpkg_lists(root: &Path) {
    let info = root.join("var/lib/dpkg/info");
    write(&info.join("busybox.list"), "/.\n/usr\n/usr/bin\n/usr/bin/busybox\n/bin/sh\n/bin/rm\n");
    write(&info.join("login.list"), "/usr/bin/su\n/usr/bin/wall\n/etc/shadow\n/usr/lib/a\n");
    write(&info.join("tools.list"), "/usr/bin/ping\n/dev/null\n/usr/share/empty\n/var/cache/owned-empty\n");
    fs_err::create_dir_all(root.join("var/cache/owned-empty")).unwrap();
}

/// The fixture every kind of node, plus a static busybox as `/bin/sh` and what the script
/// sandbox mounts over, with dpkg file lists, as the root `tags/base`.
fn base(env: &Env) -> PathBuf {
    let root = env.path("base");
    special_fixture(&root);
    let long = "usr/share/a-directory-name-that-is-long-enough/to-push-the-whole-path-beyond-the-one-hundred-bytes-of-a-ustar-name/file";
    write(&root.join(long), "a long path\n");
    sh(&format!(
        "cd {r} && mkdir -p usr/bin proc sys run root var/lib/gone/deep etc/replaced etc/opaque && cp /bin/busybox usr/bin/ \
         && for a in sh rm mkdir echo cat; do ln -s busybox usr/bin/$a; done && ln -s usr/bin bin \
         && echo old > var/lib/gone/deep/file && echo old > etc/replaced/file \
         && echo one > etc/opaque/one && echo two > etc/opaque/two && echo keep > etc/kept",
        r = root.display()
    ));
    dpkg_lists(&root);
    env.ok(&["store", "add", root.to_str().unwrap(), "--root", "tags/base"]);
    root
}

/// A description deriving from `tags/base` whose script removes, replaces and empties things.
fn derived(env: &Env, name: &str, extra: &str) -> PathBuf {
    let dir = env.path(name);
    write(
        &dir.join("image.toml"),
        &format!("[image]\nname = \"{name}\"\nderived-from = \"root:tags/base\"\nversion = \"1.0\"\n"),
    );
    write(&dir.join("root/etc/motd"), &format!("welcome to {name}\n{extra}"));
    write(
        &dir.join("config.sh"),
        "#!/bin/sh\nset -e\nrm -r /var/lib/gone\nrm -r /etc/replaced && echo now-a-file > /etc/replaced\n\
         rm /etc/opaque/one /etc/opaque/two && echo three > /etc/opaque/three\nrm /etc/kept\n",
    );
    dir
}

/// Unpack `image` (`DIR:TAG`) with umoci and return its root.
fn umoci_unpack(env: &Env, image: &str, name: &str) -> PathBuf {
    let bundle = env.path(name);
    sh(&format!("umoci unpack --image {image} {} 2>&1", bundle.display()));
    bundle.join("rootfs")
}

fn checkout(env: &Env, spec: &str, name: &str) -> PathBuf {
    let out = env.path(name);
    env.ok(&["store", "checkout", spec, out.to_str().unwrap(), "--link", "copy"]);
    out
}

/// `a` (unpacked by umoci) and `b` (strata's checkout) hold the same. umoci leaves
/// `security.selinux` out on purpose (a label belongs to the host's policy), so it is not
/// compared; that the layer carries it is checked on the tar itself.
fn same_tree(a: &Path, b: &Path) {
    let strip = |m: std::collections::BTreeMap<String, String>| -> std::collections::BTreeMap<String, String> {
        let re = |v: &str| -> String {
            let Some(at) = v.find("security.selinux=") else { return v.to_string() };
            let end = v[at..].find([' ', ']']).map_or(v.len(), |e| at + e);
            let end = if v[end..].starts_with(' ') { end + 1 } else { end };
            format!("{}{}", &v[..at], &v[end..])
        };
        m.into_iter().map(|(k, v)| (k, re(&v))).collect()
    };
    let (ma, mb) = (strip(manifest(a)), strip(manifest(b)));
    let diff: Vec<String> = ma
        .iter()
        .filter(|(k, v)| mb.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v} vs {:?}", mb.get(k)))
        .chain(mb.keys().filter(|k| !ma.contains_key(*k)).map(|k| format!("{k}: only in {}", b.display())))
        .collect();
    assert!(diff.is_empty(), "{} and {} differ:\n{}", a.display(), b.display(), diff.join("\n"));
}

fn layers(report: &serde_json::Value) -> Vec<(String, bool)> {
    report["report"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["digest"].as_str().unwrap().to_string(), l["written"].as_bool().unwrap()))
        .collect()
}

#[test]
fn images_export_as_oci_layouts_that_skopeo_and_umoci_read_exactly() {
    common::require_root();
    let env = Env::new();
    base(&env);
    let web = derived(&env, "web", "");
    let w = web.to_str().unwrap();
    env.ok(&["build", w]);
    let layout = env.path("layout");
    let l = layout.to_str().unwrap();

    // The base alone: cut by package (dpkg's file lists) into a layer per bucket of packages
    // and one of what no package owns; together, every kind of node.
    let b = env.json(&["export", "tags/base", "--format", "oci", "--output", &format!("oci:{l}:base")]);
    let nb = layers(&b).len();
    assert!(nb >= 2, "{b}");
    let steps: Vec<&str> =
        b["report"]["layers"].as_array().unwrap().iter().map(|l| l["step"].as_str().unwrap()).collect();
    assert!(steps.last().unwrap().ends_with("files no package owns"), "{steps:?}");
    assert!(steps.iter().any(|s| s.contains("busybox")), "{steps:?}");
    let mut tar = String::new();
    for (digest, _) in layers(&b) {
        let blob = layout.join("blobs/sha256").join(&digest[7..]);
        tar += &sh(&format!("zcat {} | tar --xattrs --xattrs-include='*' -tvvf - 2>&1", blob.display()));
    }
    assert!(tar.contains("security.selinux") && tar.contains("security.capability"), "{tar}");
    same_tree(&umoci_unpack(&env, &format!("{l}:base"), "u-base"), &checkout(&env, "tags/base", "c-base"));

    // One more package: only its bucket's layer and the last one (dpkg's lists) change.
    let more = env.path("base-more");
    sh(&format!("cp -a {}/. {}", env.path("base").display(), more.display()));
    write(&more.join("usr/share/doc/extra/README"), "one more package\n");
    write(&more.join("var/lib/dpkg/info/extra.list"), "/usr/share/doc/extra\n/usr/share/doc/extra/README\n");
    env.ok(&["store", "add", more.to_str().unwrap(), "--root", "tags/base-more"]);
    let m = env.json(&["export", "tags/base-more", "--format", "oci", "--output", &format!("oci:{l}:base-more")]);
    let (base_layers, more_layers) = (layers(&b), layers(&m));
    let changed: Vec<_> = more_layers.iter().filter(|(d, _)| !base_layers.iter().any(|(x, _)| x == d)).collect();
    assert!(!changed.is_empty() && changed.len() <= 2 && more_layers.len() <= nb + 1, "{b}\n{m}");
    assert_eq!(more_layers.iter().filter(|(_, written)| *written).count(), changed.len(), "{m}");
    same_tree(&umoci_unpack(&env, &format!("{l}:base-more"), "u-more"), &checkout(&env, "tags/base-more", "c-more"));

    // The derived image: the base's layer first, shared, then its own steps; the tag defaults
    // to the version.
    let first = env.json(&["export", w, "--format", "oci", "--output", &format!("oci:{l}")]);
    assert_eq!(first["report"]["tag"], "1.0");
    let web_layers = layers(&first);
    assert!(web_layers.len() >= nb + 2, "base, the files of root/, config.sh: {first}");
    for (w, b) in web_layers.iter().zip(layers(&b)) {
        assert_eq!(*w, (b.0, false), "the base's layers are shared: {first}");
    }
    let unpacked = umoci_unpack(&env, &format!("{l}:1.0"), "u-web");
    same_tree(&unpacked, &checkout(&env, "images/web", "c-web"));
    assert_eq!(fs_err::read_to_string(unpacked.join("etc/replaced")).unwrap(), "now-a-file\n");
    assert!(!unpacked.join("var/lib/gone").exists() && !unpacked.join("etc/kept").exists());
    // Removals are whiteouts, an emptied directory is opaque.
    let script_layer = &web_layers.last().unwrap().0;
    let listing = sh(&format!("tar tzf {}", layout.join("blobs/sha256").join(&script_layer[7..]).display()));
    for want in ["var/lib/.wh.gone", "etc/.wh.kept", "etc/opaque/.wh..wh..opq", "etc/.wh.replaced"] {
        assert!(listing.lines().any(|x| x == want), "{want} in\n{listing}");
    }

    // skopeo reads the layout, and copying it verifies every digest.
    let inspect: serde_json::Value = serde_json::from_str(&sh(&format!("skopeo inspect oci:{l}:1.0"))).unwrap();
    let digests: Vec<&str> = inspect["Layers"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(digests, web_layers.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Labels"]["org.opencontainers.image.version"], "1.0");
    let copy = env.path("copy");
    sh(&format!("skopeo copy --quiet oci:{l}:1.0 oci:{}:web", copy.display()));

    // Unchanged: a lookup, nothing written, the same manifest.
    let again = env.json(&["export", w, "--format", "oci", "--output", &format!("oci:{l}:1.0")]);
    assert_eq!(again["report"]["manifest"], first["report"]["manifest"]);
    assert!(layers(&again).iter().all(|(_, written)| !written), "{again}");
    assert_eq!(again["report"]["bytes_written"], 0);

    // Another source date is another image: every layer written anew, with its timestamps.
    let dated = env.json(&[
        "export",
        w,
        "--format",
        "oci",
        "--source-date-epoch",
        "1700000000",
        "--output",
        &format!("oci:{l}:dated"),
    ]);
    assert_ne!(dated["report"]["manifest"], first["report"]["manifest"]);
    assert!(layers(&dated).iter().all(|(d, written)| *written && !web_layers.iter().any(|(w, _)| w == d)), "{dated}");

    // A change in root/: the layers before it are the same blobs, not written again; its own
    // layer is new; config.sh's change is the same as before (the same bytes, from another pair
    // of trees), so its blob is there already.
    write(&web.join("root/etc/motd"), "welcome to web\nchanged\n");
    let changed = env.json(&["export", w, "--format", "oci", "--output", &format!("oci:{l}:next")]);
    let changed_layers = layers(&changed);
    assert_eq!(changed_layers.len(), web_layers.len());
    assert_eq!(changed_layers[..nb], web_layers[..nb]);
    assert!(changed_layers[nb].1 && changed_layers[nb].0 != web_layers[nb].0, "{changed}");
    assert_eq!(*changed_layers.last().unwrap(), (web_layers.last().unwrap().0.clone(), false), "{changed}");
    same_tree(&umoci_unpack(&env, &format!("{l}:next"), "u-next"), &checkout(&env, "images/web", "c-next"));
    // Both tags stay in the index.
    let index: serde_json::Value = serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 5, "{index}");

    // The same image from another store, on "another machine": the same digests.
    let other = Env::new();
    base(&other);
    let web2 = derived(&other, "web", "");
    let second = other.json(&[
        "export",
        web2.to_str().unwrap(),
        "--format",
        "oci",
        "--output",
        &format!("oci:{}", other.path("layout").display()),
    ]);
    assert_eq!(second["report"]["manifest"], first["report"]["manifest"], "{first}\n{second}");

    // zstd layers: skopeo copies them, checking their digests.
    let z = env.path("zstd");
    let zs = env.json(&[
        "export",
        "images/web",
        "--format",
        "oci",
        "--compression",
        "zstd",
        "--output",
        &format!("oci:{}:z", z.display()),
    ]);
    assert!(layers(&zs).iter().all(|(d, _)| !web_layers.iter().any(|(w, _)| w == d)));
    let m: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --raw oci:{}:z", z.display()))).unwrap();
    assert!(m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"));
    sh(&format!("skopeo copy --quiet oci:{}:z dir:{}", z.display(), env.path("zstd-dir").display()));
    env.ok(&["store", "verify", "--full"]);
}

#[test]
fn oci_export_arguments_are_checked_before_anything_is_written() {
    let env = Env::new();
    let tree = env.path("tree");
    write(&tree.join("etc/hostname"), "x\n");
    env.ok(&["store", "add", tree.to_str().unwrap(), "--root", "tags/x"]);
    let err =
        env.fail(&["export", "tags/x", "--format", "oci", "--output", "oci:/tmp/x", "--repo", "r", "--deltas", "1"]);
    assert!(err.contains("--repo, --deltas apply to OSTree commits, not to --format oci"), "{err}");
    let err = env.fail(&["export", "tags/x", "--format", "oci"]);
    assert!(err.contains("--format oci needs --output oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://"), "{err}");
    let err = env.fail(&["export", "tags/x", "--format", "oci", "--output", "docker://x:1"]);
    assert!(err.contains("expected docker://HOST/REPO[:TAG], with the registry's host"), "{err}");
    let err = env.fail(&["export", "tags/x", "--format", "oci", "--output", "docker://h.example/x@sha256:00"]);
    assert!(err.contains("digest `sha256:00`"), "{err}");
    let err = env.fail(&["export", "tags/x", "--format", "oci", "--output", "oci-archive:/nonexistent/dir/x.tar"]);
    assert!(err.contains("the directory `/nonexistent/dir` does not exist"), "{err}");
    let err = env.fail(&["export", "tags/x", "--format", "oci", "--output", "oci:/tmp/x:-bad"]);
    assert!(err.contains("tag `-bad`"), "{err}");
    let err = env.fail(&["export", "tags/x"]);
    assert!(err.contains("give --repo PATH"), "{err}");
    // A directory that is not a layout is not written into.
    let busy = env.path("busy");
    write(&busy.join("notes.txt"), "mine\n");
    let err = env.fail(&["export", "tags/x", "--format", "oci", "--output", &format!("oci:{}", busy.display())]);
    assert!(err.contains("is not an OCI image layout"), "{err}");
    assert_eq!(fs_err::read_dir(&busy).unwrap().count(), 1);
}

/// A blob into the layout at `dir`; returns its digest.
fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    fs_err::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs_err::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

/// An image layout at `dir` made by hand: one image of `layers` (uncompressed tars), tagged
/// `t`; with `platform`, behind an image index that offers only that architecture.
fn hand_layout(dir: &Path, layers: &[Vec<u8>], platform: Option<&str>) {
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|_| "sha256:0").collect::<Vec<_>>()}});
    let config = serde_json::to_vec(&config).unwrap();
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put_blob(dir, l), "size": l.len()}))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put_blob(dir, &config), "size": config.len()},
        "layers": layer_descs}))
    .unwrap();
    let mut top = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put_blob(dir, &manifest), "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "t"}});
    if let Some(arch) = platform {
        let mut entry = top.clone();
        entry["annotations"] = serde_json::json!({});
        entry["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}))
        .unwrap();
        top = serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": put_blob(dir, &index), "size": index.len(), "annotations": {"org.opencontainers.image.ref.name": "t"}});
    }
    fs_err::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs_err::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
}

/// A tar holding regular files with raw names (so that bad ones can be written).
fn raw_tar(files: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append(&h, *data).unwrap();
    }
    tar.into_inner().unwrap()
}

#[test]
fn an_image_derives_from_an_oci_image_that_umoci_made() {
    common::require_root();
    let env = Env::new();
    // A base image that strata did not make: umoci, from a plain directory, in two layers (the
    // second removes a file and a directory and empties another, as whiteouts).
    let layout = env.path("images");
    let bundle = env.path("bundle");
    let (l, b) = (layout.display(), bundle.display());
    sh(&format!("umoci init --layout {l} && umoci new --image {l}:base && umoci unpack --image {l}:base {b} 2>&1"));
    let root = bundle.join("rootfs");
    special_fixture(&root);
    sh(&format!(
        "cd {r} && mkdir -p usr/bin proc sys run root var/lib/old etc/emptied && cp /bin/busybox usr/bin/ \
         && for a in sh rm mkdir echo cat; do ln -s busybox usr/bin/$a; done && ln -s usr/bin bin \
         && echo a > var/lib/old/a && echo b > etc/emptied/b && echo c > etc/emptied/c && echo gone > etc/gone",
        r = root.display()
    ));
    sh(&format!("umoci repack --image {l}:base {b} 2>&1"));
    sh(&format!(
        "cd {} && rm -r var/lib/old etc/gone etc/emptied/b etc/emptied/c && echo new > etc/added",
        root.display()
    ));
    sh(&format!("umoci repack --image {l}:base {b} && rm -rf {b} 2>&1"));
    // Runtime settings of the base image, which an image derived from it starts from.
    sh(&format!(
        "umoci config --image {l}:base --config.env FROM_BASE=1 --config.entrypoint /bin/sh --config.workingdir /root 2>&1"
    ));
    let expected = umoci_unpack(&env, &format!("{l}:base"), "u-base");

    let web = env.path("web");
    write(&web.join("image.toml"), "[image]\nname = \"web\"\nderived-from = \"oci:../images:base\"\n");
    write(&web.join("root/etc/motd"), "on an OCI base\n");
    write(&web.join("config.sh"), "#!/bin/sh\nset -e\necho from-config > /etc/from-config\n");
    let built = env.json(&["build", web.to_str().unwrap()]);
    assert!(built["steps"]["built"].as_u64().unwrap() >= 2, "{built}");
    // The base entry is the image umoci unpacks, whiteouts applied.
    let ls = env.json(&["store", "ls"]);
    let base = ls.as_array().unwrap().iter().find(|e| e["name"].as_str().unwrap().starts_with("oci:")).unwrap();
    same_tree(&expected, &checkout(&env, base["key"].as_str().unwrap(), "c-base"));
    assert!(!expected.join("etc/gone").exists() && !expected.join("var/lib/old").exists());
    // The image on top: the base, root/, and what config.sh wrote with the base's shell.
    let image = checkout(&env, "images/web", "c-web");
    assert_eq!(fs_err::read_to_string(image.join("etc/from-config")).unwrap(), "from-config\n");
    assert_eq!(fs_err::read_to_string(image.join("etc/added")).unwrap(), "new\n");
    // Imported once: the next build finds every step, the base by its manifest digest.
    let again = env.json(&["build", web.to_str().unwrap()]);
    assert_eq!(again["steps"]["built"], 0, "{again}");
    // And back out as an OCI image that umoci reads the same.
    let out = env.path("out");
    env.ok(&["export", "images/web", "--format", "oci", "--output", &format!("oci:{}:web", out.display())]);
    same_tree(&umoci_unpack(&env, &format!("{}:web", out.display()), "u-web"), &image);
    let config: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --config oci:{}:web", out.display()))).unwrap();
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/bin/sh"]), "{config}");
    assert_eq!(config["config"]["WorkingDir"], "/root");
    assert!(config["config"]["Env"].as_array().unwrap().iter().any(|e| e == "FROM_BASE=1"), "{config}");
    env.ok(&["store", "verify", "--full"]);
}

#[test]
fn bad_oci_bases_are_refused_by_name_and_nothing_is_imported() {
    let env = Env::new();
    let desc = |name: &str, base: &str| -> String {
        let dir = env.path(name);
        write(&dir.join("image.toml"), &format!("[image]\nname = \"{name}\"\nderived-from = \"{base}\"\n"));
        dir.to_str().unwrap().to_string()
    };
    // A layer that climbs out of the tree.
    let climb = env.path("climb");
    hand_layout(&climb, &[raw_tar(&[(b"etc/ok", b"ok\n"), (b"../../evil", b"evil\n")])], None);
    let err = env.fail(&["build", &desc("a", &format!("oci:{}:t", climb.display()))]);
    assert!(err.contains("layer 0") && err.contains("../../evil"), "{err}");
    // An absolute path.
    let abs = env.path("abs");
    hand_layout(&abs, &[raw_tar(&[(b"/etc/passwd", b"root::0:0::/:/bin/sh\n")])], None);
    let err = env.fail(&["build", &desc("b", &format!("oci:{}:t", abs.display()))]);
    assert!(err.contains("/etc/passwd"), "{err}");
    // A layer whose bytes are not its digest.
    let tampered = env.path("tampered");
    hand_layout(&tampered, &[raw_tar(&[(b"etc/ok", b"ok\n")])], None);
    let blob = fs_err::read_dir(tampered.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs_err::read(p).unwrap().windows(6).any(|w| w == b"etc/ok"))
        .unwrap();
    let mut bytes = fs_err::read(&blob).unwrap();
    bytes[512] ^= 1;
    fs_err::write(&blob, bytes).unwrap();
    let err = env.fail(&["build", &desc("c", &format!("oci:{}:t", tampered.display()))]);
    assert!(err.contains("does not match its descriptor"), "{err}");
    // A blob that is a symlink to a file elsewhere.
    let linked = env.path("linked");
    hand_layout(&linked, &[raw_tar(&[(b"etc/ok", b"ok\n")])], None);
    let index: serde_json::Value = serde_json::from_slice(&fs_err::read(linked.join("index.json")).unwrap()).unwrap();
    let manifest = linked.join("blobs/sha256").join(&index["manifests"][0]["digest"].as_str().unwrap()[7..]);
    fs_err::remove_file(&manifest).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &manifest).unwrap();
    let err = env.fail(&["build", &desc("f", &format!("oci:{}:t", linked.display()))]);
    assert!(err.contains("blob sha256:"), "{err}");
    // An index without this architecture, and a tag that is not there.
    let arm = env.path("arm");
    hand_layout(&arm, &[raw_tar(&[(b"etc/ok", b"ok\n")])], Some("arm64"));
    let err = env.fail(&["build", &desc("d", &format!("oci:{}:t", arm.display()))]);
    assert!(err.contains("no manifest for linux/amd64") && err.contains("linux/arm64"), "{err}");
    let err = env.fail(&["build", &desc("e", &format!("oci:{}:nope", arm.display()))]);
    assert!(err.contains("no tag `nope`") && err.contains("tags: t"), "{err}");
    // Nothing of any of them is in the store.
    assert!(env.entry_names().is_empty(), "{:?}", env.entry_names());
    env.ok(&["store", "verify", "--full"]);
}

/// A real registry (Debian's `docker-registry`) on 127.0.0.1, stopped on drop; its storage is
/// `dir/data`. With `tls`, it serves a certificate for 127.0.0.1 signed by its own CA, written
/// as `dir/certs/127.0.0.1:PORT/ca.crt` (the layout of /etc/containers/certs.d); with
/// `password`, it asks for `strata` / that password (htpasswd).
struct Registry {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    /// Start one on a free port; another process can take the port between the check and the
    /// registry's bind, so a registry that exits at once is started again on another port.
    fn start(dir: &Path, tls: bool, password: Option<&str>) -> Registry {
        for _ in 0..5 {
            if let Some(r) = Registry::try_start(dir, tls, password) {
                return r;
            }
        }
        panic!("docker-registry did not start: {}", fs_err::read_to_string(dir.join("log")).unwrap_or_default());
    }

    fn try_start(dir: &Path, tls: bool, password: Option<&str>) -> Option<Registry> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        fs_err::create_dir_all(dir).unwrap();
        let d = dir.display();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\n"
        );
        if tls {
            let certs = dir.join(format!("certs/127.0.0.1:{port}"));
            fs_err::create_dir_all(&certs).unwrap();
            sh(&format!(
                "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=strata-test-ca -keyout ca.key -out ca.crt 2>&1 \
                 && openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>&1 \
                 && printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext \
                 && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt 2>&1 \
                 && cp ca.crt {}/ca.crt",
                certs.display()
            ));
            config += &format!("  tls:\n    certificate: {d}/server.crt\n    key: {d}/server.key\n");
        }
        if let Some(p) = password {
            sh(&format!("htpasswd -Bbn strata '{p}' > {d}/htpasswd"));
            config += &format!("auth:\n  htpasswd:\n    realm: strata-test\n    path: {d}/htpasswd\n");
        }
        write(&dir.join("config.yml"), &config);
        let mut child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(fs_err::File::create(dir.join("log")).unwrap().into_parts().0)
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Registry { child, port, dir: dir.to_path_buf() });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file holding the blob `digest` in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir.join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The state of the base step in a plan report.
fn base_state(plan: &serde_json::Value) -> String {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "base")
        .map(|s| s["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn images_go_to_a_registry_and_come_back_as_bases() {
    common::require_root();
    let env = Env::new();
    base(&env);
    let web = derived(&env, "web", "");
    let w = web.to_str().unwrap();
    env.ok(&["build", w]);
    let registry = Registry::start(&env.path("registry"), false, None);
    let host = registry.host();
    let insecure = format!("--registry-insecure={host}");
    let to = format!("docker://{host}/strata/web:1.0");

    // Pushed: every layer sent; skopeo sees the same manifest and layers.
    let first = env.json(&["export", w, "--format", "oci", "--output", &to, &insecure]);
    let pushed = layers(&first);
    assert!(pushed.len() >= 3 && pushed.iter().all(|(_, sent)| *sent), "{first}");
    assert_eq!(first["report"]["destination"], to.as_str());
    let inspect: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --tls-verify=false docker://{host}/strata/web:1.0")))
            .unwrap();
    assert_eq!(inspect["Digest"], first["report"]["manifest"]);
    let digests: Vec<&str> = inspect["Layers"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(digests, pushed.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>());
    // skopeo copies it out (checking every digest) and umoci unpacks strata's tree.
    let copy = env.path("copy");
    sh(&format!(
        "skopeo copy --quiet --src-tls-verify=false docker://{host}/strata/web:1.0 oci:{}:web",
        copy.display()
    ));
    same_tree(&umoci_unpack(&env, &format!("{}:web", copy.display()), "u-web"), &checkout(&env, "images/web", "c-web"));

    // Unchanged: the registry has every blob, nothing is sent.
    let again = env.json(&["export", w, "--format", "oci", "--output", &to, &insecure]);
    assert_eq!(again["report"]["manifest"], first["report"]["manifest"]);
    assert_eq!(again["report"]["bytes_written"], 0, "{again}");
    // The same image from another machine's store, which never made these layers: they are
    // made (the same bytes) and found in the registry, so nothing is sent either.
    let elsewhere = Env::new();
    base(&elsewhere);
    let web2 = derived(&elsewhere, "web", "");
    let from_elsewhere =
        elsewhere.json(&["export", web2.to_str().unwrap(), "--format", "oci", "--output", &to, &insecure]);
    assert_eq!(from_elsewhere["report"]["manifest"], first["report"]["manifest"]);
    assert_eq!(from_elsewhere["report"]["bytes_written"], 0, "{from_elsewhere}");
    assert!(layers(&from_elsewhere).iter().all(|(_, sent)| !sent), "{from_elsewhere}");
    // Another image on the same base: the base's layer is not sent again.
    let db = derived(&env, "db", "a database\n");
    let other = env.json(&[
        "export",
        db.to_str().unwrap(),
        "--format",
        "oci",
        "--output",
        &format!("docker://{host}/strata/web:db"),
        &insecure,
    ]);
    let other_layers = layers(&other);
    assert_eq!(other_layers[0], (pushed[0].0.clone(), false), "{other}");
    assert!(other["report"]["bytes_written"].as_u64().unwrap() < first["report"]["bytes_written"].as_u64().unwrap());
    // The same image into another repository of the registry: every blob is mounted from the
    // repository strata pushed it to, none uploaded; skopeo copies it out, checking digests.
    let mounted = env.json(&[
        "export",
        db.to_str().unwrap(),
        "--format",
        "oci",
        "--output",
        &format!("docker://{host}/strata/db:1.0"),
        &insecure,
    ]);
    assert_eq!(mounted["report"]["bytes_written"], 0, "{mounted}");
    assert!(layers(&mounted).iter().all(|(_, sent)| !sent), "{mounted}");
    sh(&format!(
        "skopeo copy --quiet --src-tls-verify=false docker://{host}/strata/db:1.0 oci:{}:db",
        env.path("db-copy").display()
    ));

    // A description derives from the pushed image: downloaded, checked, imported once.
    let app = env.path("app");
    write(&app.join("image.toml"), &format!("[image]\nname = \"app\"\nderived-from = \"{to}\"\n"));
    write(&app.join("root/etc/app"), "app\n");
    let a = app.to_str().unwrap();
    let refused = env.fail(&["build", a]);
    assert!(refused.contains(&format!("derived-from {to}")) && refused.contains("--registry-insecure"), "{refused}");
    assert_eq!(base_state(&env.json(&["plan", a, &insecure])), "missing");
    let built = env.json(&["build", a, &insecure]);
    assert_eq!(built["steps"]["built"], 3, "base, root/, image: {built}");
    let ls = env.json(&["store", "ls"]);
    let imported = ls.as_array().unwrap().iter().find(|e| e["name"] == to.as_str()).expect("the imported base");
    same_tree(
        &checkout(&env, imported["key"].as_str().unwrap(), "c-imported"),
        &checkout(&env, "images/web", "c-web2"),
    );
    assert_eq!(fs_err::read_to_string(checkout(&env, "images/app", "c-app").join("etc/app")).unwrap(), "app\n");
    let rebuilt = env.json(&["build", a, &insecure]);
    assert_eq!(rebuilt["steps"]["built"], 0, "{rebuilt}");

    // The same image as an OCI archive: skopeo reads it, with the same manifest digest, and a
    // description deriving from the archive finds the base imported already.
    let archive = env.path("web.tar");
    let arch =
        env.json(&["export", w, "--format", "oci", "--output", &format!("oci-archive:{}:1.0", archive.display())]);
    assert_eq!(arch["report"]["manifest"], first["report"]["manifest"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect oci-archive:{}:1.0", archive.display()))).unwrap();
    assert_eq!(inspect["Digest"], first["report"]["manifest"]);
    write(&app.join("image.toml"), "[image]\nname = \"app\"\nderived-from = \"oci-archive:../web.tar:1.0\"\n");
    let from_archive = env.json(&["plan", a]);
    assert_eq!(base_state(&from_archive), "cached", "{from_archive}");
    // The same image twice makes the same archive, byte for byte.
    let archive2 = env.path("web2.tar");
    env.ok(&["export", w, "--format", "oci", "--output", &format!("oci-archive:{}:1.0", archive2.display())]);
    assert_eq!(fs_err::read(&archive).unwrap(), fs_err::read(&archive2).unwrap());

    // An ostree-native container through the registry (the tree committed as it is): pushed,
    // derived from with ostree's own form of reference, and brought back as the same commit.
    let os_image = format!("{host}/strata/os:1");
    let plain = env.path("plain-os");
    write(&plain.join("etc/motd"), "welcome to os\n");
    write(&plain.join("usr/bin/tool"), "#!/bin/sh\n");
    sh(&format!("chmod 4755 {0}/usr/bin/tool && mkdir {0}/sysroot", plain.display()));
    env.ok(&["store", "add", plain.to_str().unwrap(), "--root", "tags/plain-os"]);
    let oc = env.json(&[
        "export",
        "tags/plain-os",
        "--format",
        "ostree-container",
        "--no-layout",
        "--output",
        &format!("docker://{os_image}"),
        &insecure,
    ]);
    let commit = oc["commit"].as_str().unwrap();
    let os = env.path("os");
    write(
        &os.join("image.toml"),
        &format!("[image]\nname = \"os\"\nderived-from = \"ostree-unverified-registry:{os_image}\"\n"),
    );
    env.ok(&["build", os.to_str().unwrap(), &insecure]);
    let os_tree = checkout(&env, "images/os", "c-os");
    same_tree(&os_tree, &plain);
    let repo = env.path("os-repo");
    let back = env.json(&[
        "export",
        &format!("ostree-container:docker://{os_image}"),
        "--repo",
        repo.to_str().unwrap(),
        &insecure,
    ]);
    assert_eq!(back["commit"], commit, "{back}");
    assert!(sh(&format!("ostree --repo={} fsck 2>&1", repo.display())).contains("no errors found"));

    // What was made for the registry and the archive is kept in the store's blob cache, and gc
    // keeps the layers of trees the store holds (configs and manifests are made anew each time).
    let cache = env.store().join("cache/oci-layers/blobs/sha256");
    assert!(pushed.iter().all(|(d, _)| cache.join(&d[7..]).is_file()), "{pushed:?}");
    let gc = env.json(&["gc"]);
    let trimmed = &gc["oci_blobs"];
    assert!(trimmed["remaining_files"].as_u64().unwrap() >= pushed.len() as u64, "{gc}");
    assert!(trimmed["files"].as_u64().unwrap() >= 2, "configs and manifests: {gc}");
    assert!(pushed.iter().all(|(d, _)| cache.join(&d[7..]).is_file()));

    // The registry goes away: a build that needs it says so, naming it.
    write(&app.join("image.toml"), &format!("[image]\nname = \"app\"\nderived-from = \"{to}\"\n"));
    drop(registry);
    let err = env.fail(&["build", a, &insecure]);
    assert!(err.contains(&format!("registry {host}")) && err.contains("onnect"), "{err}");
    let err = env.fail(&["export", w, "--format", "oci", "--output", &to, &insecure]);
    assert!(err.contains(&format!("registry {host}")), "{err}");
    env.ok(&["store", "verify", "--full"]);
}

#[test]
fn a_registry_with_tls_and_a_password() {
    common::require_root();
    let env = Env::new();
    base(&env);
    let registry = Registry::start(&env.path("registry"), true, Some("s3cret"));
    let host = registry.host();
    let certs = registry.dir.join("certs");
    let cert_dir = format!("--registry-cert-dir={}", certs.display());
    let to = format!("docker://{host}/strata/base:1");
    let auth = |name: &str, password: &str| -> String {
        use base64::Engine as _;
        let path = env.path(name);
        let token = base64::engine::general_purpose::STANDARD.encode(format!("strata:{password}"));
        write(&path, &serde_json::json!({"auths": {host.clone(): {"auth": token}}}).to_string());
        format!("--authfile={}", path.display())
    };
    let push = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["export", "tags/base", "--format", "oci", "--output", &to];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect()
    };
    let run_fail = |args: Vec<String>| env.fail(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Its certificate is signed by a CA nobody trusts yet.
    let err = run_fail(push(&[&auth("good.json", "s3cret")]));
    assert!(err.contains("not trusted") && err.contains("certs.d"), "{err}");
    // Trusted, but without credentials, then with a wrong password.
    write(&env.path("empty.json"), r#"{"auths": {}}"#);
    let err = run_fail(push(&[&cert_dir, &format!("--authfile={}", env.path("empty.json").display())]));
    assert!(err.contains("asks for a user name and password") && err.contains("skopeo login"), "{err}");
    let err = run_fail(push(&[&cert_dir, &auth("wrong.json", "guess")]));
    assert!(err.contains("HTTP 401") && err.contains("credentials"), "{err}");
    // Both: pushed, and skopeo (trusting the same CA) finds it.
    let good = auth("good.json", "s3cret");
    let args = push(&[&cert_dir, &good]);
    let pushed = env.json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let inspect: serde_json::Value = serde_json::from_str(&sh(&format!(
        "skopeo inspect --cert-dir {}/{host} --creds strata:s3cret {to}",
        certs.display()
    )))
    .unwrap();
    assert_eq!(inspect["Digest"], pushed["report"]["manifest"]);
    // A description derives from it, with the certificate directory from the environment.
    let app = env.path("app");
    write(&app.join("image.toml"), &format!("[image]\nname = \"app\"\nderived-from = \"{to}\"\n"));
    write(&app.join("root/etc/app"), "app\n");
    let out = env
        .cmd(&["--json", "build", app.to_str().unwrap(), &good])
        .env("STRATA_REGISTRY_CERT_DIR", &certs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let built: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built["steps"]["built"], 3, "base, root/, image: {built}");
    same_tree(
        &checkout(&env, "images/app", "c-app").join("usr/bin"),
        &checkout(&env, "tags/base", "c-base").join("usr/bin"),
    );
}

#[test]
fn bad_registry_images_are_refused_by_name_and_nothing_is_imported() {
    let env = Env::new();
    let registry = Registry::start(&env.path("registry"), false, None);
    let host = registry.host();
    let insecure = format!("--registry-insecure={host}");
    let desc = |name: &str, base: &str| -> String {
        let dir = env.path(name);
        write(&dir.join("image.toml"), &format!("[image]\nname = \"{name}\"\nderived-from = \"{base}\"\n"));
        dir.to_str().unwrap().to_string()
    };
    // A layer whose bytes changed in the registry's storage after the push.
    let good = env.path("good");
    hand_layout(&good, &[raw_tar(&[(b"etc/ok", b"ok\n")])], None);
    sh(&format!("skopeo copy --quiet --dest-tls-verify=false oci:{}:t docker://{host}/bad/tampered:t", good.display()));
    let manifest: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --raw --tls-verify=false docker://{host}/bad/tampered:t")))
            .unwrap();
    let layer = registry.blob_file(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut bytes = fs_err::read(&layer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs_err::write(&layer, bytes).unwrap();
    let err = env.fail(&["build", &desc("a", &format!("docker://{host}/bad/tampered:t")), &insecure]);
    assert!(err.contains("the registry sent") && err.contains("bad/tampered"), "{err}");
    // An index without this architecture (skopeo copies the whole index).
    let arm = env.path("arm");
    hand_layout(&arm, &[raw_tar(&[(b"etc/ok", b"ok\n")])], Some("arm64"));
    sh(&format!("skopeo copy --quiet --all --dest-tls-verify=false oci:{}:t docker://{host}/bad/arm:t", arm.display()));
    let err = env.fail(&["build", &desc("b", &format!("docker://{host}/bad/arm:t")), &insecure]);
    assert!(err.contains("no manifest for linux/amd64") && err.contains("linux/arm64"), "{err}");
    // A tag the repository does not have, and a layer that climbs out of the tree.
    let err = env.fail(&["build", &desc("c", &format!("docker://{host}/bad/arm:nope")), &insecure]);
    assert!(err.contains("manifest nope") && err.contains("HTTP 404"), "{err}");
    let climb = env.path("climb");
    hand_layout(&climb, &[raw_tar(&[(b"etc/ok", b"ok\n"), (b"../../evil", b"evil\n")])], None);
    sh(&format!("skopeo copy --quiet --dest-tls-verify=false oci:{}:t docker://{host}/bad/climb:t", climb.display()));
    let err = env.fail(&["build", &desc("d", &format!("docker://{host}/bad/climb:t")), &insecure]);
    assert!(err.contains("../../evil"), "{err}");
    // Malformed references are refused before any request.
    let err = env.fail(&["build", &desc("e", "docker://bad/arm:t")]);
    assert!(err.contains("no default registry"), "{err}");
    assert!(env.entry_names().is_empty(), "{:?}", env.entry_names());
    assert!(fs_err::read_dir(env.store().join("tmp")).map(|d| d.count()).unwrap_or(0) == 0, "scratch layouts removed");
    env.ok(&["store", "verify", "--full"]);
}

#[test]
fn container_settings_reach_the_image_config_and_deploy_writes_an_archive() {
    common::require_root();
    let env = Env::new();
    base(&env);
    let svc = env.path("svc");
    write(
        &svc.join("image.toml"),
        r#"[image]
name = "svc"
derived-from = "root:tags/base"
version = "3.1"

[target.container]

[container]
tag = "v1"
additional-tags = ["stable"]
maintainer = "Team <team@example.org>"
user = "1000:1000"
workingdir = "/srv"
entrypoint = ["/usr/bin/busybox", "httpd", "-f"]
cmd = ["-p", "8080"]
env = { GREETING = "hello" }
labels = { "org.example.team" = "web" }
expose = ["8080"]
volumes = ["/srv"]
stop-signal = "SIGQUIT"
"#,
    );
    write(&svc.join("root/srv/index.html"), "hello\n");
    // The description's primary (only) target is a container: deploy writes an OCI archive.
    let archive = env.path("svc.tar");
    let d = env.json(&["deploy", svc.to_str().unwrap(), "--output", archive.to_str().unwrap()]);
    assert_eq!(d["report"]["tag"], "v1", "{d}");
    let a = archive.display();
    let config: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --config oci-archive:{a}:v1"))).unwrap();
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/bin/busybox", "httpd", "-f"]));
    assert_eq!(c["Cmd"], serde_json::json!(["-p", "8080"]));
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(c["Volumes"], serde_json::json!({"/srv": {}}));
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert!(c["Env"].as_array().unwrap().iter().any(|e| e == "GREETING=hello"), "{c}");
    assert!(c["Env"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().starts_with("PATH=")), "{c}");
    assert_eq!(c["Labels"]["org.example.team"], "web");
    assert_eq!(config["author"], "Team <team@example.org>");
    // The additional tag names the same image.
    let digest = |tag: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&sh(&format!("skopeo inspect oci-archive:{a}:{tag}"))).unwrap()
            ["Digest"]
            .clone()
    };
    assert_eq!(digest("stable"), digest("v1"));
    // umoci turns the config into a runtime bundle: the process is the entrypoint and command.
    let layout = env.path("layout");
    sh(&format!("skopeo copy --quiet oci-archive:{a}:v1 oci:{}:v1", layout.display()));
    let bundle = env.path("bundle");
    sh(&format!("umoci unpack --image {}:v1 {} 2>&1", layout.display(), bundle.display()));
    let runtime: serde_json::Value =
        serde_json::from_slice(&fs_err::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(runtime["process"]["args"], serde_json::json!(["/usr/bin/busybox", "httpd", "-f", "-p", "8080"]));
    assert_eq!(runtime["process"]["cwd"], "/srv");
    assert_eq!(
        (runtime["process"]["user"]["uid"].as_u64(), runtime["process"]["user"]["gid"].as_u64()),
        (Some(1000), Some(1000))
    );

    // A derived description's settings go over its base's.
    let more = env.path("more");
    write(
        &more.join("image.toml"),
        "[image]\nname = \"more\"\nderived-from = \"../svc\"\n\n[container]\nuser = \"0\"\nenv = { MORE = \"yes\" }\nexpose = [\"9090/udp\"]\n",
    );
    let out = env.path("more-layout");
    env.ok(&["export", more.to_str().unwrap(), "--format", "oci", "--output", &format!("oci:{}", out.display())]);
    let config: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --config oci:{}:v1", out.display()))).unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], "0");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/bin/busybox", "httpd", "-f"]));
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}, "9090/udp": {}}));
    let envs: Vec<&str> = c["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(envs.contains(&"GREETING=hello") && envs.contains(&"MORE=yes"), "{envs:?}");
    // Disk options make no sense for an archive, and an OSTree commit is no container.
    let err = env.fail(&["deploy", svc.to_str().unwrap(), "--output", archive.to_str().unwrap(), "--size", "4G"]);
    assert!(err.contains("--size is for disk images and ISOs, not for an OCI archive"), "{err}");
}
