//! Splitting a Debian root tree into layers by package, so that adding or changing one package
//! changes one layer, not the whole package set's.
//!
//! The first layer of an image whose tree has dpkg file lists (`var/lib/dpkg/info/*.list`) is
//! cut into [`BUCKETS`] layers of packages, then layers of what no package owns, by what changes
//! together ([`UNOWNED`]: the dpkg database, which every added package changes; apt's lists,
//! which follow the mirror; `/boot`, which kernel updates remake; the rest). A package goes to the bucket its name hashes
//! to (blake3, so the same on every machine); each layer is a tree holding only its bucket's
//! files, with their directories (metadata as in the whole tree), written as a layer of its own
//! (from nothing): its bytes depend only on its own packages' files. Laid over each other, the
//! layers give the whole tree exactly.
//!
//! Invariants: every path of the tree is in exactly one layer, directories excepted (they repeat,
//! always with the same metadata); a hardlink group is never split (it goes where its first
//! member does) and is numbered anew in its chunk tree; paths of merged-/usr links (`/bin/ls` for `/usr/bin/ls`) are followed. The cut
//! is recorded per tree (`oci_chunks`), and its trees are made again when gc removed them.

use std::collections::HashMap;

use rusqlite::params;

use crate::store::batch::Batch;
use crate::store::digest::Digest;
use crate::store::doomed::Kind;
use crate::store::local::Store;
use crate::store::tree::{Node, Tree, TreeRows};

/// Buckets of packages. With the layers of later steps, an image stays far below the 127 layers
/// container runtimes stack.
pub const BUCKETS: usize = 24;
/// The cut's version: part of every recorded cut's key.
const FORMAT: i64 = 1;
/// The layers of files no package owns, after the package buckets: (name, path prefixes); the
/// last one takes everything else.
const UNOWNED: &[(&str, &[&str])] = &[
    ("the dpkg and debconf databases", &["var/lib/dpkg/", "var/cache/debconf/"]),
    ("apt's package lists", &["var/lib/apt/", "var/cache/apt/"]),
    ("/boot", &["boot/"]),
    ("other files no package owns", &[]),
];
/// Buckets in all.
pub const ALL: usize = BUCKETS + UNOWNED.len();
/// Top-level names a merged-/usr system keeps as links into `/usr`.
pub const MERGED: &[&[u8]] = &[b"bin", b"sbin", b"lib", b"lib32", b"lib64", b"libx32"];

/// One layer of the cut: the tree holding its files, and what it holds.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub tree: Digest,
    pub label: String,
}

/// The layers `tree` is cut into, or `None` when it has no dpkg file lists (or only one layer
/// would come out). The chunk trees are in the store when this returns.
pub fn chunks(store: &mut Store, tree: &Digest) -> anyhow::Result<Option<Vec<Chunk>>> {
    let recorded = recorded(store, tree)?;
    if let Some(list) = &recorded {
        // No entry holds the chunk trees: a gc may have doomed or collected them. Revived, they
        // are used; gone, they are made again (the same trees).
        let rows: Vec<(Kind, Digest)> = list.iter().map(|c| (Kind::Tree, c.tree)).collect();
        if store.db().revive(&rows)?.is_empty() {
            return Ok(Some(list.clone()).filter(|l| l.len() > 1));
        }
    }
    let Some(owners) = owners(store, tree)? else {
        record(store, tree, &[])?;
        return Ok(None);
    };
    let mut cut = Cut { store, owners, links: HashMap::new(), groups: vec![0; ALL], rows: TreeRows::new() };
    let root = cut.store.tree(tree)?;
    let parts = cut.dir(&mut Vec::new(), &root)?;
    let Cut { rows, owners, .. } = cut;
    let mut batch = Batch::new();
    batch.trees = rows;
    batch.commit(store, None)?;
    let list: Vec<Chunk> = parts
        .into_iter()
        .enumerate()
        .filter_map(|(b, t)| t.map(|t| (b, t)))
        .map(|(b, t)| Chunk { tree: t, label: owners.label(b) })
        .collect();
    record(store, tree, &list)?;
    Ok(Some(list).filter(|l| l.len() > 1))
}

/// Which package owns each path (relative, `/`-separated, merged-/usr paths under `usr/`), and
/// the packages seen per bucket.
pub struct Owners {
    map: HashMap<Vec<u8>, String>,
    names: Vec<Vec<String>>,
}

impl Owners {
    /// From dpkg file lists `(package, content of its .list)`, in name order (the first list that
    /// names a path owns it); `merged` are the top-level names that link into `/usr`.
    pub fn from_lists(lists: impl IntoIterator<Item = (String, Vec<u8>)>, merged: &[&[u8]]) -> Owners {
        let mut map = HashMap::new();
        for (package, text) in lists {
            for line in text.split(|b| *b == b'\n') {
                let path = line.strip_prefix(b"/").unwrap_or(line);
                if path.is_empty() || path == b"." {
                    continue;
                }
                let first = path.split(|b| *b == b'/').next().unwrap_or(path);
                let path = if merged.contains(&first) { [b"usr/".as_slice(), path].concat() } else { path.to_vec() };
                map.entry(path).or_insert_with(|| package.clone());
            }
        }
        Owners { map, names: vec![vec![]; ALL] }
    }

    /// The bucket of `path` (as the file lists name it), noting its package.
    pub fn bucket_of(&mut self, path: &[u8]) -> usize {
        match self.map.get(path) {
            Some(p) => {
                let b = bucket(p);
                if self.names[b].last() != Some(p) {
                    self.names[b].push(p.clone());
                }
                b
            }
            None => {
                let n = UNOWNED
                    .iter()
                    .position(|(_, prefixes)| {
                        prefixes.is_empty()
                            || prefixes.iter().any(|p| {
                                let p = p.as_bytes();
                                path.starts_with(p) || path == &p[..p.len() - 1]
                            })
                    })
                    .unwrap_or(UNOWNED.len() - 1);
                BUCKETS + n
            }
        }
    }

    /// What bucket `b` holds, for its layer's history entry.
    pub fn label(&self, b: usize) -> String {
        label(b, &self.names[b])
    }

    /// The packages seen in bucket `b`, sorted.
    pub fn packages(&self, b: usize) -> Vec<String> {
        let mut names = self.names[b].clone();
        names.sort();
        names.dedup();
        names
    }
}

/// What a layer holds, for its history entry.
fn label(bucket: usize, names: &[String]) -> String {
    if bucket >= BUCKETS {
        return UNOWNED[bucket - BUCKETS].0.to_string();
    }
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    format!(
        "packages {}{} (bucket {} of {BUCKETS})",
        shown.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() },
        bucket + 1
    )
}

/// The bucket of a package (its name without `:ARCH`).
fn bucket(package: &str) -> usize {
    let name = package.split(':').next().unwrap_or(package);
    let h = blake3::hash(name.as_bytes());
    (u32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes")) as usize) % BUCKETS
}

/// The owners of the paths of `tree`, from its dpkg file lists; `None` without them.
fn owners(store: &Store, tree: &Digest) -> anyhow::Result<Option<Owners>> {
    let Some(Node::Directory { tree: info }) = store.lookup(tree, &[b"var", b"lib", b"dpkg", b"info"])? else {
        return Ok(None);
    };
    let root = store.tree(tree)?;
    let merged: Vec<&[u8]> =
        MERGED.iter().copied().filter(|m| matches!(root.get(m), Some(Node::Symlink { .. }))).collect();
    let mut lists = vec![];
    for (name, node) in &store.tree(&info)?.entries {
        let Some(package) = name.as_bytes().strip_suffix(b".list") else { continue };
        if matches!(node, Node::File { .. }) {
            lists.push((String::from_utf8_lossy(package).into_owned(), store.read_file(node)?));
        }
    }
    Ok(Some(Owners::from_lists(lists, &merged)))
}

struct Cut<'a> {
    store: &'a Store,
    owners: Owners,
    /// Hardlink group -> the bucket of its first member, and its number in that bucket's tree
    /// (groups are numbered 1, 2, … per chunk tree, in walk order, so that a chunk tree's id
    /// depends only on its own files).
    links: HashMap<u32, (usize, u32)>,
    /// Groups numbered so far, per bucket.
    groups: Vec<u32>,
    rows: TreeRows,
}

impl Cut<'_> {
    /// The directory `dir` at `path`, cut: one tree per bucket that has anything below it.
    fn dir(&mut self, path: &mut Vec<u8>, dir: &Tree) -> anyhow::Result<Vec<Option<Digest>>> {
        let mut parts: Vec<Vec<(crate::store::tree::Name, Node)>> = vec![vec![]; ALL];
        let mut any = vec![false; ALL];
        for (name, node) in &dir.entries {
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name.as_bytes());
            match node {
                Node::Directory { tree } => {
                    let sub = self.store.tree(tree)?;
                    for (b, t) in self.dir(path, &sub)?.into_iter().enumerate() {
                        if let Some(t) = t {
                            parts[b].push((name.clone(), Node::Directory { tree: t }));
                            any[b] = true;
                        }
                    }
                }
                other => {
                    let mut b = self.owners.bucket_of(path);
                    let mut node = other.clone();
                    if let Node::File { link, .. } = &mut node {
                        if *link != 0 {
                            let groups = &mut self.groups;
                            let (bucket, number) = *self.links.entry(*link).or_insert_with(|| {
                                groups[b] += 1;
                                (b, groups[b])
                            });
                            b = bucket;
                            *link = number;
                        }
                    }
                    parts[b].push((name.clone(), node));
                    any[b] = true;
                }
            }
            path.truncate(len);
        }
        // An empty directory goes where its owner's files go.
        if !any.iter().any(|a| *a) {
            let b = self.owners.bucket_of(path);
            any[b] = true;
        }
        Ok(parts
            .into_iter()
            .zip(any)
            .map(|(entries, any)| any.then(|| Tree { meta: dir.meta.clone(), entries }.encode_into(&mut self.rows)))
            .collect())
    }
}

fn recorded(store: &Store, tree: &Digest) -> anyhow::Result<Option<Vec<Chunk>>> {
    let conn = store.db().sql();
    let mut stmt =
        conn.prepare_cached("SELECT n, subtree, label FROM oci_chunks WHERE tree = ?1 AND format = ?2 ORDER BY n")?;
    let rows = stmt.query_map(params![tree.as_bytes(), FORMAT], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
    })?;
    let mut out = vec![];
    let mut found = false;
    for row in rows {
        let (n, subtree, label) = row?;
        found = true;
        if n < 0 {
            // The marker of a tree that has no cut.
            continue;
        }
        let tree = Digest::from_slice(&subtree).ok_or_else(|| anyhow::anyhow!("oci_chunks: a bad tree id"))?;
        out.push(Chunk { tree, label });
    }
    Ok(found.then_some(out))
}

fn record(store: &mut Store, tree: &Digest, list: &[Chunk]) -> anyhow::Result<()> {
    let tx = store.db_mut().transaction()?;
    tx.sql().execute("DELETE FROM oci_chunks WHERE tree = ?1 AND format = ?2", params![tree.as_bytes(), FORMAT])?;
    if list.is_empty() {
        tx.sql().execute(
            "INSERT INTO oci_chunks (tree, format, n, subtree, label) VALUES (?1, ?2, -1, ?1, '')",
            params![tree.as_bytes(), FORMAT],
        )?;
    }
    for (n, c) in list.iter().enumerate() {
        tx.sql().execute(
            "INSERT INTO oci_chunks (tree, format, n, subtree, label) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![tree.as_bytes(), FORMAT, n as i64, c.tree.as_bytes(), c.label],
        )?;
    }
    tx.commit()
}
