//! Making package steps again for repair: an object no copy restores may still come out of the
//! package it was unpacked from, when the download cache still holds that package.
//!
//! A package entry is keyed by its file's SHA-256 and format, and the download cache names files
//! by their SHA-256 (`cache/downloads/sha256/<hex>`, `kept/<hex>`), so the entry a cached file
//! would make is known without reading it. On the first object asked for, the trees of those
//! package entries are walked once to learn which objects each holds. A package that holds the
//! object is unpacked again into a scratch store under the store's `tmp/` (never into the store
//! being repaired, whose records still claim the lost objects); the rebuilt tree must be the
//! entry's recorded tree, file for file, before any of its objects is offered. Each package is
//! unpacked at most once per repair, and the scratch store goes with the rebuilder.
//!
//! Invariant: every byte offered was produced by unpacking a cached package whose SHA-256 is its
//! name and whose unpacked tree equals the damaged entry's tree; the caller still checks the
//! content digest of what it takes.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::packages::Limits;
use crate::store::digest::Digest;
use crate::store::local::{OpenOptions, Store};
use crate::store::tree::{object_id, Node};

/// A package file in the download cache and the entry it unpacks to.
#[derive(Clone, Debug)]
struct Cached {
    path: PathBuf,
    sha256: String,
    rpm: bool,
}

/// Package entries with their packages in the download cache, unpacked again on demand.
pub struct Rebuilder {
    /// Entry key -> the package file that makes it.
    packages: HashMap<Digest, Cached>,
    /// Object id -> package entries whose trees hold it (walked on first use).
    holders: RefCell<Option<HashMap<Digest, Vec<Digest>>>>,
    /// Package entries unpacked again: whether the rebuilt tree matched.
    done: RefCell<HashMap<Digest, bool>>,
    scratch: RefCell<Option<(tempfile::TempDir, Store)>>,
}

impl Rebuilder {
    /// The packages under `downloads` (the store's `cache/downloads`); names that are not a
    /// SHA-256 are ignored.
    pub fn new(downloads: &Path) -> anyhow::Result<Rebuilder> {
        let mut packages = HashMap::new();
        for sub in ["sha256", "kept"] {
            let Ok(dir) = fs_err::read_dir(downloads.join(sub)) else { continue };
            for e in dir {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.len() != 64 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    continue;
                }
                let path = e.path();
                for rpm in [false, true] {
                    let key = if rpm {
                        crate::packages::rpm::unpack::package_key(&name)
                    } else {
                        crate::packages::deb::unpack::package_key(&name)
                    };
                    packages.entry(key).or_insert_with(|| Cached { path: path.clone(), sha256: name.clone(), rpm });
                }
            }
        }
        Ok(Rebuilder {
            packages,
            holders: RefCell::new(None),
            done: RefCell::new(HashMap::new()),
            scratch: RefCell::new(None),
        })
    }

    /// The content of object `oid`, unpacked again from a cached package whose entry holds it,
    /// with where it came from.
    pub fn object(&self, store: &Store, oid: &Digest) -> Option<(Vec<u8>, String)> {
        if self.packages.is_empty() {
            return None;
        }
        if self.holders.borrow().is_none() {
            let map = self.walk(store).ok()?;
            *self.holders.borrow_mut() = Some(map);
        }
        let holders = self.holders.borrow().as_ref()?.get(oid).cloned().unwrap_or_default();
        for key in holders {
            let Ok(Some(entry)) = store.db().peek_entry(&key) else { continue };
            if !self.rebuilt(store, &key, &entry.tree) {
                continue;
            }
            let scratch = self.scratch.borrow();
            let (_, scratch) = scratch.as_ref()?;
            if let Ok(bytes) = fs_err::read(scratch.object_store().path(oid)) {
                let c = &self.packages[&key];
                let from =
                    format!("package {} unpacked again from the download cache ({}…)", entry.name, &c.sha256[..12]);
                return Some((bytes, from));
            }
        }
        None
    }

    /// Which cached packages' entries hold which objects.
    fn walk(&self, store: &Store) -> anyhow::Result<HashMap<Digest, Vec<Digest>>> {
        let mut out: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for key in self.packages.keys() {
            let Some(entry) = store.db().peek_entry(key)? else { continue };
            let mut seen = HashSet::new();
            let mut stack = vec![entry.tree];
            while let Some(id) = stack.pop() {
                let Ok(tree) = store.tree(&id) else { continue };
                for (_, node) in &tree.entries {
                    match node {
                        Node::Directory { tree } => stack.push(*tree),
                        Node::File { meta, size, content, .. } => {
                            let oid = object_id(meta, *size, content);
                            if seen.insert(oid) {
                                out.entry(oid).or_default().push(*key);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(out)
    }

    /// Unpack the package of entry `key` into the scratch store once; whether its tree is
    /// `tree`.
    fn rebuilt(&self, store: &Store, key: &Digest, tree: &Digest) -> bool {
        if let Some(ok) = self.done.borrow().get(key) {
            return *ok;
        }
        let ok = self.unpack(store, key).is_ok_and(|t| t == *tree);
        self.done.borrow_mut().insert(*key, ok);
        ok
    }

    fn unpack(&self, store: &Store, key: &Digest) -> anyhow::Result<Digest> {
        let c = &self.packages[key];
        if crate::util::hash::sha256_file(&c.path)? != c.sha256 {
            anyhow::bail!("`{}` is not the file its name says", c.path.display());
        }
        let mut scratch = self.scratch.borrow_mut();
        if scratch.is_none() {
            let dir = tempfile::Builder::new().prefix("repair-").tempdir_in(store.tmp_dir())?;
            let s = Store::open(dir.path(), &OpenOptions::default(), || {})?;
            *scratch = Some((dir, s));
        }
        let (_, s) = scratch.as_mut().expect("made above");
        let limits = Limits::default();
        let report = if c.rpm {
            crate::packages::rpm::unpack::unpack(s, &c.path, &limits)?
        } else {
            crate::packages::deb::unpack::unpack(s, &c.path, &limits)?
        };
        Ok(report.tree)
    }
}

impl Drop for Rebuilder {
    fn drop(&mut self) {
        // The store handle goes before its directory.
        if let Some((dir, store)) = self.scratch.get_mut().take() {
            drop(store);
            drop(dir);
        }
    }
}
