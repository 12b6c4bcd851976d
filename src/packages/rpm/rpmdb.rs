//! The rpm database of an image (`/var/lib/rpm`, rpm's sqlite backend): written by the build
//! host's `rpm --justdb` from the package files, and read back (the installed packages' headers)
//! when packages are added to a base image.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::header::Header;
use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::tree::Node;
use crate::util::progress::Progress;

/// Where the rpm database goes inside the image.
pub const DBPATH: &str = "/var/lib/rpm";

/// One package to install: its entry, and its file (for the rpm database).
#[derive(Clone, Debug)]
pub struct Package {
    pub nevra: String,
    pub key: Digest,
    pub tree: Digest,
    pub file: PathBuf,
}

/// Where rpm keeps its database in newer distributions (`/var/lib/rpm` links there).
const SYSIMAGE_DBPATH: &str = "/usr/lib/sysimage/rpm";

/// The rpm database directory of a tree: `/usr/lib/sysimage/rpm` where the image has that
/// directory (Fedora 36 and later, openSUSE), `/var/lib/rpm` otherwise.
pub fn dbpath_in(store: &Store, tree: &Digest) -> anyhow::Result<&'static str> {
    Ok(match store.lookup(tree, &[b"usr", b"lib", b"sysimage", b"rpm"])? {
        Some(Node::Directory { .. }) => SYSIMAGE_DBPATH,
        _ => DBPATH,
    })
}

/// The files of a tree's rpm database directory, by name.
fn db_files(store: &Store, tree: &Digest) -> anyhow::Result<Vec<(String, Node)>> {
    let dbpath = dbpath_in(store, tree)?;
    let parts: Vec<&[u8]> = dbpath.trim_start_matches('/').split('/').map(str::as_bytes).collect();
    let Some(Node::Directory { tree: dir }) = store.lookup(tree, &parts)? else { return Ok(Vec::new()) };
    Ok(store
        .tree(&dir)?
        .entries
        .into_iter()
        .filter(|(_, n)| matches!(n, Node::File { .. }))
        .map(|(name, n)| (String::from_utf8_lossy(name.as_bytes()).into_owned(), n))
        .collect())
}

/// The headers of the packages installed in `tree`, from its rpm database; `None` when the tree
/// has no rpm database (it is not an RPM image).
pub fn installed(store: &Store, tree: &Digest) -> anyhow::Result<Option<Vec<Header>>> {
    let Some((_, node)) = db_files(store, tree)?.into_iter().find(|(n, _)| n == "rpmdb.sqlite") else {
        return Ok(None);
    };
    let work = tempfile::Builder::new().prefix("rpmdb-read-").tempdir_in(store.tmp_dir())?;
    let copy = work.path().join("rpmdb.sqlite");
    fs_err::write(&copy, store.read_file(&node)?)?;
    let db = rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .context("cannot open the base's rpm database")?;
    let mut stmt = db.prepare("SELECT blob FROM Packages ORDER BY hnum").context("the base's rpm database")?;
    let blobs = stmt.query_map([], |row| row.get::<_, Vec<u8>>(0))?.collect::<Result<Vec<_>, _>>()?;
    // The database keeps headers without their magic and reserved bytes.
    let headers = blobs
        .into_iter()
        .map(|blob| Header::parse([&[0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0][..], &blob].concat()))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("a header in the base's rpm database")?;
    Ok(Some(headers))
}

/// The rpm database with `packages` added (to `base`'s, if given), written by the build host's
/// rpm into a scratch root and imported as a tree holding `var/lib/rpm`.
pub fn write(
    store: &mut Store,
    base: Option<&Digest>,
    dbpath: &str,
    packages: &[Package],
    progress: &Progress,
) -> anyhow::Result<Digest> {
    let work = tempfile::Builder::new().prefix("rpmdb-").tempdir_in(store.tmp_dir())?;
    let root = work.path().join("root");
    let dbdir = root.join(dbpath.trim_start_matches('/'));
    fs_err::create_dir_all(&dbdir)?;
    if let Some(tree) = base {
        for (name, node) in db_files(store, tree)? {
            fs_err::write(dbdir.join(name), store.read_file(&node)?)?;
        }
    }
    let out = crate::util::process::command("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", dbpath, "--define", "_db_backend sqlite", "--define", "_pkgverify_level none"])
        .args(["--justdb", "--nodeps", "--noscripts"])
        .args(["--notriggers", "--nosignature", "--nodigest", "--ignorearch", "--ignoreos", "--force", "-i"])
        .args(packages.iter().map(|p| &p.file))
        .output()
        .context("cannot run rpm to write the package database (install rpm)")?;
    if !out.status.success() {
        bail!("rpm --justdb failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    // sqlite's side files hold nothing once rpm has closed the database.
    for side in ["rpmdb.sqlite-shm", "rpmdb.sqlite-wal", ".rpm.lock"] {
        let _ = fs_err::remove_file(dbdir.join(side));
    }
    let (batch, tree, _) =
        crate::store::import::import_tree(store, &root, false, progress).context("importing the rpm database")?;
    batch.commit(store, None)?;
    crate::store::local::make_writable(work.path());
    Ok(tree)
}
