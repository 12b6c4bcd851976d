//! apt repositories end to end: packages built here, indexed by `apt-ftparchive`, signed with a
//! key generated here, served by a real HTTP server on 127.0.0.1, resolved, downloaded and unpacked.

mod common;

use std::path::{Path, PathBuf};

use common::{make_key, sh, simple_deb, Env, Server};

/// A repository with a `dists/test/main/binary-amd64` index and a flat copy under `flat/`.
fn make_repo(env: &Env, gnupg: &Path) -> PathBuf {
    let repo = env.path("repo");
    let pool = repo.join("pool/main");
    fs_err::create_dir_all(&pool).unwrap();
    simple_deb(&pool, "alpha", "1.0", "Depends: beta (>= 2) | gamma, libc-stub", &[("usr/bin/alpha", "alpha\n")]);
    simple_deb(&pool, "beta", "1.0", "", &[("usr/bin/beta", "beta 1\n")]);
    simple_deb(&pool, "beta", "2.0", "Depends: virt-thing", &[("usr/bin/beta", "beta 2\n")]);
    simple_deb(&pool, "gamma", "1.0", "", &[("usr/bin/gamma", "gamma\n")]);
    simple_deb(&pool, "provider-a", "1.0", "Provides: virt-thing", &[("usr/lib/a", "a\n")]);
    simple_deb(&pool, "provider-b", "1.0", "Provides: virt-thing", &[("usr/lib/b", "b\n")]);
    simple_deb(&pool, "libc-stub", "2.36", "Priority: required", &[("usr/lib/libc-stub", "libc\n")]);
    simple_deb(&pool, "base-stub", "1", "Essential: yes\nPriority: required", &[("etc/base", "base\n")]);
    simple_deb(&pool, "delta", "1.0", "Conflicts: beta\nDepends: alpha", &[("usr/bin/delta", "delta\n")]);
    let r = repo.display();
    let g = gnupg.display();
    sh(&format!(
        "cd {r} && mkdir -p dists/test/main/binary-amd64 && apt-ftparchive packages pool > dists/test/main/binary-amd64/Packages \
         && xz -k dists/test/main/binary-amd64/Packages \
         && apt-ftparchive -o APT::FTPArchive::Release::Suite=test -o APT::FTPArchive::Release::Codename=test release dists/test > Release.tmp \
         && mv Release.tmp dists/test/Release \
         && GNUPGHOME={g} gpg --batch --quiet --yes --clearsign -o dists/test/InRelease dists/test/Release"
    ));
    // Flat repository: Packages and a detached-signature Release at its root.
    sh(&format!(
        "mkdir -p {r}/flat && cp {r}/pool/main/gamma_1.0_amd64.deb {r}/flat/ && cd {r}/flat \
         && apt-ftparchive packages . > Packages && apt-ftparchive release . > Release.tmp && mv Release.tmp Release \
         && GNUPGHOME={g} gpg --batch --quiet --yes --detach-sign -o Release.gpg Release"
    ));
    repo
}

fn resolve(env: &Env, line: &str, args: &[&str]) -> Result<Vec<String>, String> {
    let mut a = vec!["--json", "package", "resolve", "--repo", line];
    a.extend_from_slice(args);
    let out = env.cmd(&a).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(v.as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} {}", p["package"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect())
}

#[test]
fn signed_repository_over_http_resolves_downloads_and_unpacks() {
    let env = Env::new();
    let (gnupg, keyring) = make_key(&env, "archive");
    let repo = make_repo(&env, &gnupg);
    let server = Server::start(&repo);
    let line = format!("deb [signed-by={}] http://127.0.0.1:{}/ test main", keyring.display(), server.port);

    // Alternatives take the first satisfiable one (beta 2), which needs a virtual package.
    assert_eq!(
        resolve(&env, &line, &["alpha"]).unwrap(),
        ["alpha 1.0", "beta 2.0", "libc-stub 2.36", "provider-a 1.0"]
    );
    assert_eq!(resolve(&env, &line, &["--required"]).unwrap(), ["base-stub 1", "libc-stub 2.36"]);
    // delta conflicts with beta, so alpha's dependency falls back to gamma.
    assert_eq!(resolve(&env, &line, &["delta"]).unwrap(), ["alpha 1.0", "delta 1.0", "gamma 1.0", "libc-stub 2.36"]);
    // Excluding both alternatives is impossible, and the error says why.
    let err = resolve(&env, &line, &["alpha", "--exclude", "gamma", "--exclude", "beta"]).unwrap_err();
    assert!(err.contains("cannot install alpha") && err.contains("beta") && err.contains("gamma"), "{err}");

    // Fetch: downloads, verifies and unpacks; the second run is all cache hits.
    let first = env.json(&["package", "fetch", "--repo", &line, "alpha"]);
    assert_eq!(first.as_array().unwrap().len(), 4);
    assert!(first.as_array().unwrap().iter().all(|r| r["cached"] == false));
    let again = env.json(&["package", "fetch", "--repo", &line, "alpha"]);
    assert!(again.as_array().unwrap().iter().all(|r| r["cached"] == true));
    let names = env.entry_names();
    assert_eq!(names, ["alpha_1.0_amd64", "beta_2.0_amd64", "libc-stub_2.36_amd64", "provider-a_1.0_amd64"]);

    // A flat repository with Release + Release.gpg.
    let flat = format!("deb [signed-by={}] http://127.0.0.1:{}/flat ./", keyring.display(), server.port);
    assert_eq!(resolve(&env, &flat, &["gamma"]).unwrap(), ["gamma 1.0"]);
    env.ok(&["store", "verify", "--full"]);
}

#[test]
fn wrong_key_tampered_index_and_tampered_package_are_refused() {
    let env = Env::new();
    let (gnupg, keyring) = make_key(&env, "archive");
    let (_, other_keyring) = make_key(&env, "stranger");
    let repo = make_repo(&env, &gnupg);
    let server = Server::start(&repo);
    let url = format!("http://127.0.0.1:{}/", server.port);

    let wrong = format!("deb [signed-by={}] {url} test main", other_keyring.display());
    let err = resolve(&env, &wrong, &["alpha"]).unwrap_err();
    assert!(err.contains("InRelease: signature verification failed") && err.contains("stranger.gpg"), "{err}");

    // A package replaced after indexing: the download is refused and nothing is unpacked.
    let line = format!("deb [signed-by={}] {url} test main", keyring.display());
    let gamma = repo.join("pool/main/gamma_1.0_amd64.deb");
    let saved = fs_err::read(&gamma).unwrap();
    simple_deb(&env.path(""), "gamma", "1.0", "", &[("usr/bin/gamma", "EVIL\n")]);
    fs_err::copy(env.path("gamma_1.0_amd64.deb"), &gamma).unwrap();
    let out = env.cmd(&["package", "fetch", "--repo", &line, "gamma"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("gamma_1.0_amd64.deb") && err.contains("the file was discarded"),
        "{err}"
    );
    assert_eq!(env.json(&["store", "ls"]), serde_json::json!([]));
    fs_err::write(&gamma, saved).unwrap();
    env.ok(&["package", "fetch", "--repo", &line, "gamma"]);

    // An index changed after signing: refused by checksum.
    let index = repo.join("dists/test/main/binary-amd64/Packages.xz");
    sh(&format!("xz -dc {0} | sed 's/^Version: 1.0$/Version: 9.0/' | xz > {0}.new && mv {0}.new {0}", index.display()));
    let fresh = Env::new();
    let err = fresh.fail(&["package", "resolve", "--repo", &line, "alpha"]);
    assert!(err.contains("Packages.xz") && err.contains("SHA-256"), "{err}");
}

#[test]
fn interrupted_downloads_resume_and_bad_partials_are_discarded() {
    let env = Env::new();
    let (gnupg, keyring) = make_key(&env, "archive");
    let repo = make_repo(&env, &gnupg);
    let line = format!("deb [signed-by={}] file://{} test main", keyring.display(), repo.display());
    let gamma = fs_err::read(repo.join("pool/main/gamma_1.0_amd64.deb")).unwrap();
    let sha = sh(&format!("sha256sum {}/pool/main/gamma_1.0_amd64.deb", repo.display()));
    let sha = sha.split_whitespace().next().unwrap();
    env.ok(&["store", "ls"]);
    let partial = env.store().join("cache/downloads/partial").join(sha);
    fs_err::create_dir_all(partial.parent().unwrap()).unwrap();

    // A partial file with wrong bytes: the completed file does not verify and is thrown away.
    fs_err::write(&partial, vec![b'X'; gamma.len() / 2]).unwrap();
    let err = env.fail(&["package", "fetch", "--repo", &line, "gamma"]);
    assert!(err.contains("the file was discarded"), "{err}");
    assert!(!partial.exists() && !env.store().join("cache/downloads/sha256").join(sha).exists());

    // A correct partial file is resumed from where it stopped.
    fs_err::write(&partial, &gamma[..gamma.len() / 2]).unwrap();
    let r = env.json(&["package", "fetch", "--repo", &line, "gamma"]);
    assert_eq!(r[0]["package"], "gamma");
    assert_eq!(fs_err::read(env.store().join("cache/downloads/sha256").join(sha)).unwrap(), gamma);
}
