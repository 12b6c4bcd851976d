//! One OCI layer: the change from one stored tree to the next, as a deterministic tar.
//!
//! Walking both trees in name order, equal subtrees (by id) are skipped unread, so a layer costs
//! the size of its change. What the newer tree adds or changes is written whole (a changed
//! directory is written as its entry, then only its changed children); what it no longer has is a
//! whiteout (`.wh.NAME`). A directory that keeps none of its two or more old names is written
//! opaque (`.wh..wh..opq`, then everything it holds). A node whose kind changed from a directory
//! is whited out before the new node is written.
//!
//! Invariants: the same pair of trees gives the same bytes on any machine: entries in path
//! order, every timestamp the given source date, numeric owners only (no user or group names),
//! POSIX pax records for long paths and link targets and for extended attributes
//! (`SCHILY.xattr.NAME`, as GNU tar and the container tools read them); hardlink groups of the
//! newer tree become tar hardlinks to the group's first member written in the same layer (a new
//! member of a group whose other members are unchanged is written as a file of its own: same
//! content, another inode). A name that starts with `.wh.`, or an extended attribute name a pax
//! record cannot carry, is refused rather than written as something else.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Context;

use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::meta::Meta;
use crate::store::tree::{object_id, Node, Tree};

/// What a layer holds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct LayerCounts {
    pub entries: u64,
    pub whiteouts: u64,
    /// Bytes of file content in the layer.
    pub content_bytes: u64,
}

/// Write the tar of the change from `from` (nothing, for the first layer) to `to` into `out`.
pub fn write<W: Write>(
    store: &Store,
    from: Option<&Digest>,
    to: &Digest,
    mtime: u64,
    out: W,
) -> anyhow::Result<(W, LayerCounts)> {
    let mut w = Writer { store, tar: tar::Builder::new(out), mtime, links: HashMap::new(), counts: Default::default() };
    let new = store.tree(to)?;
    let old = match from {
        Some(f) if f == to => None,
        Some(f) => Some(store.tree(f)?),
        None => None,
    };
    if from != Some(to) {
        if old.as_ref().is_none_or(|o| o.meta != new.meta) {
            w.dir_entry(b"", &new.meta)?;
        }
        w.dir_changes(b"", old.as_ref(), &new)?;
    }
    let counts = w.counts;
    let out = w.tar.into_inner().context("cannot finish the layer's tar stream")?;
    Ok((out, counts))
}

struct Writer<'a, W: Write> {
    store: &'a Store,
    tar: tar::Builder<W>,
    mtime: u64,
    /// Hardlink group of the newer tree -> the path its first member was written at.
    links: HashMap<u32, Vec<u8>>,
    counts: LayerCounts,
}

/// Refuse a name a layer would read as a whiteout.
fn whiteout_name(dir: &[u8], name: &[u8]) -> anyhow::Result<()> {
    if name.starts_with(b".wh.") {
        anyhow::bail!(
            "`/{}`: a name starting with `.wh.` reads as a whiteout in an OCI layer; rename it to export",
            String::from_utf8_lossy(&join(dir, name))
        );
    }
    Ok(())
}

/// A reader of exactly `left` bytes: fewer is an error (a store object shorter than its tree
/// says would make a broken tar).
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the store object is shorter than its tree says",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

impl<W: Write> Writer<'_, W> {
    /// The entries of directory `path` that differ from `old` (every entry when `old` is none).
    fn dir_changes(&mut self, path: &[u8], old: Option<&Tree>, new: &Tree) -> anyhow::Result<()> {
        let mut old = old;
        if let Some(o) = old {
            // No old name is left: one opaque marker instead of a whiteout for each.
            let survives = o.entries.iter().any(|(name, _)| new.entries.binary_search_by(|(n, _)| n.cmp(name)).is_ok());
            if o.entries.len() >= 2 && !survives {
                self.whiteout(&join(path, b".wh..wh..opq"))?;
                old = None;
            }
        }
        let empty = Vec::new();
        let old_entries = old.map_or(&empty, |o| &o.entries);
        let (mut i, mut j) = (0, 0);
        while i < old_entries.len() || j < new.entries.len() {
            let ord = match (old_entries.get(i), new.entries.get(j)) {
                (Some((a, _)), Some((b, _))) => a.cmp(b),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    let name = old_entries[i].0.as_bytes();
                    self.whiteout(&join(path, &[b".wh.", name].concat()))?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let (name, node) = &new.entries[j];
                    whiteout_name(path, name.as_bytes())?;
                    self.node(&join(path, name.as_bytes()), None, node)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (name, old_node) = &old_entries[i];
                    let (_, node) = &new.entries[j];
                    if old_node != node {
                        whiteout_name(path, name.as_bytes())?;
                        self.node(&join(path, name.as_bytes()), Some(old_node), node)?;
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Write `node` at `path`, which held `old` (a different node) in the lower layers, if any.
    fn node(&mut self, path: &[u8], old: Option<&Node>, node: &Node) -> anyhow::Result<()> {
        let old_dir = match old {
            Some(Node::Directory { tree }) => Some(*tree),
            _ => None,
        };
        match node {
            Node::Directory { tree } => {
                let new = self.store.tree(tree)?;
                let old_tree = match old_dir {
                    Some(t) => Some(self.store.tree(&t)?),
                    None => None,
                };
                if old_tree.as_ref().is_none_or(|o| o.meta != new.meta) {
                    self.dir_entry(path, &new.meta)?;
                }
                self.dir_changes(path, old_tree.as_ref(), &new)
            }
            other => {
                if old_dir.is_some() {
                    // A directory becomes something else: hide the lower directory first.
                    let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
                        Some(p) => (&path[..p], &path[p + 1..]),
                        None => (&b""[..], path),
                    };
                    self.whiteout(&join(dir, &[b".wh.", name].concat()))?;
                }
                self.leaf(path, other)
            }
        }
    }

    fn dir_entry(&mut self, path: &[u8], meta: &Meta) -> anyhow::Result<()> {
        let mut name = if path.is_empty() { b".".to_vec() } else { path.to_vec() };
        name.push(b'/');
        let mut h = self.header(tar::EntryType::Directory, meta, 0);
        self.append(&mut h, &name, None, &meta.xattrs, std::io::empty())
    }

    fn whiteout(&mut self, path: &[u8]) -> anyhow::Result<()> {
        let meta = Meta { mode: 0o644, uid: 0, gid: 0, xattrs: vec![] };
        let mut h = self.header(tar::EntryType::Regular, &meta, 0);
        self.counts.whiteouts += 1;
        self.append(&mut h, path, None, &[], std::io::empty())
    }

    fn leaf(&mut self, path: &[u8], node: &Node) -> anyhow::Result<()> {
        match node {
            Node::File { meta, size, content, link } => {
                if *link != 0 {
                    if let Some(first) = self.links.get(link).cloned() {
                        let mut h = self.header(tar::EntryType::Link, meta, 0);
                        return self.append(&mut h, path, Some(&first), &[], std::io::empty());
                    }
                    self.links.insert(*link, path.to_vec());
                }
                let object = self.store.object_store().path(&object_id(meta, *size, content));
                let file = fs_err::File::open(&object)
                    .with_context(|| format!("the store lacks the content of `/{}`", String::from_utf8_lossy(path)))?;
                let mut h = self.header(tar::EntryType::Regular, meta, *size);
                self.counts.content_bytes += size;
                // Exactly `size` bytes: a file changed under the store would break the tar.
                self.append(&mut h, path, None, &meta.xattrs, Exact { inner: file, left: *size })
            }
            Node::Symlink { meta, target } => {
                let mut h = self.header(tar::EntryType::Symlink, meta, 0);
                self.append(&mut h, path, Some(target), &meta.xattrs, std::io::empty())
            }
            Node::CharDevice { meta, rdev } | Node::BlockDevice { meta, rdev } => {
                let kind =
                    if matches!(node, Node::CharDevice { .. }) { tar::EntryType::Char } else { tar::EntryType::Block };
                let mut h = self.header(kind, meta, 0);
                h.set_device_major(nix::sys::stat::major(*rdev) as u32)?;
                h.set_device_minor(nix::sys::stat::minor(*rdev) as u32)?;
                self.append(&mut h, path, None, &meta.xattrs, std::io::empty())
            }
            Node::Fifo { meta } => {
                let mut h = self.header(tar::EntryType::Fifo, meta, 0);
                self.append(&mut h, path, None, &meta.xattrs, std::io::empty())
            }
            Node::Directory { .. } => unreachable!("directories are written by `node`"),
        }
    }

    fn header(&self, kind: tar::EntryType, meta: &Meta, size: u64) -> tar::Header {
        header(kind, meta, self.mtime, size)
    }

    fn append(
        &mut self,
        h: &mut tar::Header,
        path: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        data: impl std::io::Read,
    ) -> anyhow::Result<()> {
        append(&mut self.tar, h, path, link, xattrs, data)?;
        self.counts.entries += 1;
        Ok(())
    }
}

/// A ustar header of `kind` with `meta`'s permission bits and numeric owners (no names).
pub fn header(kind: tar::EntryType, meta: &Meta, mtime: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(meta.mode & 0o7777);
    h.set_uid(meta.uid as u64);
    h.set_gid(meta.gid as u64);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

/// Append one entry: pax records first when the path or link target does not fit the ustar
/// header or the node has extended attributes (`SCHILY.xattr.NAME`).
pub fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    h: &mut tar::Header,
    path: &[u8],
    link: Option<&[u8]>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    data: impl std::io::Read,
) -> anyhow::Result<()> {
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let short_path = path.len() <= 100 && path.is_ascii();
    if !short_path {
        pax.push(("path".into(), path.to_vec()));
    }
    let short_link = link.is_none_or(|l| l.len() <= 100 && l.is_ascii());
    if let (false, Some(l)) = (short_link, link) {
        pax.push(("linkpath".into(), l.to_vec()));
    }
    for (name, value) in xattrs {
        let name = std::str::from_utf8(name).ok().filter(|n| !n.contains('=')).ok_or_else(|| {
            anyhow::anyhow!(
                "`/{}`: extended attribute `{}`: a pax record cannot hold a name that is not UTF-8 or holds `=`",
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(name)
            )
        })?;
        pax.push((format!("SCHILY.xattr.{name}"), value.clone()));
    }
    if !pax.is_empty() {
        tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    // The ustar fields hold what fits; a reader takes the pax record over them.
    let cut = |b: &[u8]| -> Vec<u8> { b.iter().copied().filter(u8::is_ascii).take(100).collect() };
    let p = if short_path { path.to_vec() } else { cut(path) };
    h.as_old_mut().name[..p.len()].copy_from_slice(&p);
    if let Some(l) = link {
        let l = if short_link { l.to_vec() } else { cut(l) };
        h.as_old_mut().linkname[..l.len()].copy_from_slice(&l);
    }
    h.set_cksum();
    tar.append(h, data)?;
    Ok(())
}
