//! Unpacking a Debian binary package (`.deb`) straight into the store as a `package` entry.
//!
//! A `.deb` is an `ar` archive: `debian-binary` (format `2.x`), `control.tar[.gz|.xz|.zst]`, then
//! `data.tar[.gz|.xz|.zst]`. Both tar streams are read once: each regular file is written to
//! `tmp/` while it is hashed and kept only if the store does not have that object yet. Nothing is
//! ever written to a real directory, so no member can escape: the tree is built in memory by
//! [`TreeBuilder`], which refuses `..`, members below symlinks or files, and duplicates.
//!
//! The entry's tree has two top-level directories: `control/` (the control archive: `control`,
//! `md5sums`, `conffiles`, maintainer scripts) and `data/` (the files the package installs).
//! Its key is computed from the package file's SHA-256 (the checksum repositories publish), so a
//! second image that needs the same package unpacks nothing.
//!
//! Package contents are untrusted: sizes and member counts are limited ([`Limits`]), and every
//! error names the package file, the archive member and the offending entry.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};

use crate::store::batch::Batch;
use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::meta::Meta;
use crate::store::object::ObjectStore;
use crate::store::tree::{Name, Node};
use crate::store::tree_builder::{implicit_dir_meta, TreeBuilder};
use crate::store::Backend;
use crate::util::text::escape_path;

pub use crate::packages::{member_path, Limits, PackageReport};
pub use crate::util::hash::sha256_file;

/// The entry key of the package whose file has this SHA-256.
pub fn package_key(sha256_hex: &str) -> Digest {
    entry_key(EntryKind::Package, &[("format", b"deb"), ("sha256", sha256_hex.as_bytes())], &[])
}

/// Unpack `path` into the store (or find it there) and return its entry.
pub fn unpack(store: &mut Store, path: &Path, limits: &Limits) -> anyhow::Result<PackageReport> {
    let sha256 = sha256_file(path)?;
    let key = package_key(&sha256);
    if let Some(report) = cached(store, &sha256)? {
        return Ok(report);
    }
    let ctx = || format!("bad package `{}`", path.display());
    let mut unpacked = Unpacker { store, batch: Batch::new(), files: 0, bytes: 0 };
    let (control, data, fields) = unpacked.read_deb(path, limits).with_context(ctx)?;
    let Unpacker { store, mut batch, files, bytes } = unpacked;

    let mut top = TreeBuilder::new(implicit_dir_meta());
    let control_id = control.finish(&mut batch.trees);
    let data_id = data.finish(&mut batch.trees);
    top.insert_tree(Name::new("control").expect("name"), control_id);
    top.insert_tree(Name::new("data").expect("name"), data_id);
    let tree = top.finish(&mut batch.trees);

    let package = fields.get("Package").unwrap_or_default().to_string();
    let version = fields.get("Version").unwrap_or_default().to_string();
    let architecture = fields.get("Architecture").unwrap_or_default().to_string();
    if package.is_empty() || version.is_empty() || architecture.is_empty() {
        bail!("bad package `{}`: control file lacks Package, Version or Architecture", path.display());
    }
    let name = format!("{package}_{version}_{architecture}");
    let new_objects = batch.new_objects();
    Memo::with_key(EntryKind::Package, name, key).record(store, Built::in_batch(tree, batch).totals(files, bytes))?;
    Ok(PackageReport { key, tree, package, version, architecture, sha256, files, bytes, new_objects, cached: false })
}

/// The entry of the package whose file has this SHA-256, if it was unpacked before (no file is
/// read).
pub fn cached(store: &Store, sha256: &str) -> anyhow::Result<Option<PackageReport>> {
    let key = package_key(sha256);
    Ok(store.entry(&key)?.map(|e| PackageReport::cached(key, &e, sha256, split_name(&e.name))))
}

fn split_name(name: &str) -> (String, String, String) {
    let mut parts = name.splitn(3, '_').map(str::to_string);
    (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default())
}

struct Unpacker<'s> {
    store: &'s mut Store,
    batch: Batch,
    files: u64,
    bytes: u64,
}

/// Sees each regular file of a control archive with its content.
type SmallFiles<'a> = dyn FnMut(&[Name], &[u8]) + 'a;

/// The control file's fields, looked up by name.
struct Fields(crate::packages::deb::deb822::Paragraph);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)
    }
}

impl Unpacker<'_> {
    fn read_deb(&mut self, path: &Path, limits: &Limits) -> anyhow::Result<(TreeBuilder, TreeBuilder, Fields)> {
        let file = fs_err::File::open(path)?;
        let len = file.metadata()?.len();
        let mut ar = super::ar::ArReader::new(std::io::BufReader::new(file), len)?;
        let mut seen_version = false;
        let mut control: Option<(TreeBuilder, Fields)> = None;
        let mut data: Option<TreeBuilder> = None;
        while let Some((name, mut member)) = ar.next_member()? {
            let mctx = || format!("member `{name}`");
            if !seen_version {
                if name != "debian-binary" {
                    bail!("the first member is `{name}`, expected `debian-binary`");
                }
                let mut v = String::new();
                member.by_ref().take(64).read_to_string(&mut v).with_context(mctx)?;
                if !v.starts_with("2.") {
                    bail!("member `debian-binary`: format `{}` is not supported (expected 2.x)", v.trim());
                }
                seen_version = true;
            } else if let Some(comp) = name.strip_prefix("control.tar") {
                if control.is_some() {
                    bail!("member `{name}`: a second control archive");
                }
                let reader = decompressor(comp, &mut member).with_context(mctx)?;
                let (builder, fields) = self.read_control(reader, limits).with_context(mctx)?;
                control = Some((builder, fields));
            } else if let Some(comp) = name.strip_prefix("data.tar") {
                if control.is_none() {
                    bail!("member `{name}` comes before the control archive");
                }
                if data.is_some() {
                    bail!("member `{name}`: a second data archive");
                }
                let reader = decompressor(comp, &mut member).with_context(mctx)?;
                data = Some(self.read_tar(reader, limits.max_bytes, limits.max_members).with_context(mctx)?);
            } else if name.starts_with('_') {
                // Reserved for local additions; dpkg ignores them too.
            } else {
                bail!("unexpected member `{name}`");
            }
        }
        let Some((control, fields)) = control else { bail!("no control archive (control.tar.*)") };
        let Some(data) = data else { bail!("no data archive (data.tar.*)") };
        Ok((control, data, fields))
    }

    fn read_control(&mut self, reader: Box<dyn Read + '_>, limits: &Limits) -> anyhow::Result<(TreeBuilder, Fields)> {
        let mut control_text = None;
        let mut keep_control = |path: &[Name], content: &[u8]| {
            if path.len() == 1 && path[0].as_bytes() == b"control" {
                control_text = Some(content.to_vec());
            }
        };
        let builder = self.read_tar_with(reader, limits.max_control_bytes, 10_000, Some(&mut keep_control))?;
        let text = control_text.ok_or_else(|| anyhow::anyhow!("no `control` file in the control archive"))?;
        let text = String::from_utf8(text).map_err(|_| anyhow::anyhow!("file `control` is not UTF-8"))?;
        let mut paras = crate::packages::deb::deb822::parse(&text).context("file `control`")?;
        if paras.len() != 1 {
            bail!("file `control` has {} paragraphs, expected 1", paras.len());
        }
        Ok((builder, Fields(paras.remove(0))))
    }

    fn read_tar(
        &mut self,
        reader: Box<dyn Read + '_>,
        max_bytes: u64,
        max_members: u64,
    ) -> anyhow::Result<TreeBuilder> {
        self.read_tar_with(reader, max_bytes, max_members, None)
    }

    /// Read a tar stream into a tree. With `small` (the control archive), regular files are read
    /// into memory (bounded by `max_bytes`) and shown to it; otherwise content streams into objects.
    fn read_tar_with(
        &mut self,
        reader: Box<dyn Read + '_>,
        max_bytes: u64,
        max_members: u64,
        mut small: Option<&mut SmallFiles<'_>>,
    ) -> anyhow::Result<TreeBuilder> {
        let objects = self.store.object_store();
        let mut builder = TreeBuilder::new(implicit_dir_meta());
        let mut archive = tar::Archive::new(reader);
        let mut members: u64 = 0;
        let mut budget = max_bytes;
        let mut next_group: u32 = 0;
        // Metadata entries (pax headers, GNU long names) are read here, bounded, not by the tar
        // crate, which would read any size into memory.
        let mut pending = PendingMeta::default();
        for entry in archive.entries().context("not a tar archive")?.raw(true) {
            let mut entry = entry.context("damaged tar archive")?;
            members += 1;
            if members > max_members {
                bail!("more than {max_members} entries");
            }
            let header = entry.header().clone();
            let kind = header.entry_type();
            if pending.read(kind, &mut entry, &header)? {
                continue;
            }
            let mut m = pending.member(&header)?;
            let ectx = || format!("entry `{}`", m.shown);
            use tar::EntryType as T;
            match kind {
                T::Directory => builder.mkdir(&m.path, m.meta).with_context(ectx)?,
                T::Regular | T::Continuous => {
                    let size = header.size().with_context(ectx)?;
                    if size > budget {
                        bail!("entry `{}`: the package is larger than the limit of {max_bytes} bytes", m.shown);
                    }
                    let small = small.as_deref_mut();
                    self.add_file(&objects, &mut builder, &mut entry, m, &mut budget, small)?;
                }
                T::Symlink => {
                    let target =
                        m.link_target.ok_or_else(|| anyhow::anyhow!("symlink without a target")).with_context(ectx)?;
                    m.meta.mode = 0o777;
                    builder.insert(&m.path, Node::Symlink { meta: m.meta, target }).with_context(ectx)?;
                }
                T::Link => self.add_hardlink(&mut builder, m, &mut next_group)?,
                T::Char | T::Block => {
                    let node = device_node(&header, kind, m.meta, &m.shown)?;
                    builder.insert(&m.path, node).with_context(ectx)?;
                }
                T::Fifo => builder.insert(&m.path, Node::Fifo { meta: m.meta }).with_context(ectx)?,
                other => bail!("entry `{}`: unsupported tar entry type {:?}", m.shown, other.as_byte() as char),
            }
        }
        Ok(builder)
    }

    /// Stage a regular file's content (shown to `small` first, if given) and add it to `builder`.
    fn add_file(
        &mut self,
        objects: &ObjectStore,
        builder: &mut TreeBuilder,
        entry: &mut impl Read,
        m: Member,
        budget: &mut u64,
        small: Option<&mut SmallFiles<'_>>,
    ) -> anyhow::Result<()> {
        let Member { path, meta, shown, .. } = m;
        let ectx = || format!("entry `{shown}`");
        let staged = match small {
            Some(small) => {
                let mut content = Vec::new();
                (&mut *entry).take(*budget + 1).read_to_end(&mut content).with_context(ectx)?;
                small(&path, &content);
                objects.stage(&mut content.as_slice(), &meta, *budget).with_context(ectx)?
            }
            None => objects.stage(entry, &meta, *budget).with_context(ectx)?,
        };
        *budget -= staged.size;
        self.files += 1;
        self.bytes += staged.size;
        let node = Node::File { meta, size: staged.size, content: staged.content, link: 0 };
        self.store.keep(&mut self.batch, staged)?;
        builder.insert(&path, node).with_context(ectx)?;
        Ok(())
    }

    /// Add a hardlink to an earlier regular file, both in one link group.
    fn add_hardlink(&mut self, builder: &mut TreeBuilder, m: Member, next_group: &mut u32) -> anyhow::Result<()> {
        let Member { path, link_target, shown, .. } = m;
        let ectx = || format!("entry `{shown}`");
        let target = link_target.ok_or_else(|| anyhow::anyhow!("hardlink without a target")).with_context(ectx)?;
        let target_path = member_path(&target).with_context(ectx)?;
        let node = match builder.get(&target_path) {
            Some(node @ Node::File { .. }) => node.clone(),
            _ => bail!("entry `{shown}`: hardlink to `{}`, which is not an earlier regular file", escape_path(&target)),
        };
        // A link to a link joins the existing group.
        let group = match node {
            Node::File { link, .. } if link != 0 => link,
            _ => {
                *next_group += 1;
                *next_group
            }
        };
        builder.set_link(&target_path, group);
        builder.insert(&path, node).with_context(ectx)?;
        builder.set_link(&path, group);
        if let Some(Node::File { size, .. }) = builder.get(&path) {
            self.files += 1;
            self.bytes += size;
        }
        Ok(())
    }
}

/// What the metadata entries before a tar member said about it: GNU long names and pax records.
#[derive(Default)]
struct PendingMeta {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A tar member's name, link target and metadata, from its header and the metadata entries.
struct Member {
    path: Vec<Name>,
    /// The raw name, escaped for messages.
    shown: String,
    link_target: Option<Vec<u8>>,
    meta: Meta,
}

impl PendingMeta {
    /// Read `entry` if it is a metadata entry (true) for the member that follows it.
    fn read(&mut self, kind: tar::EntryType, entry: &mut impl Read, header: &tar::Header) -> anyhow::Result<bool> {
        use tar::EntryType as T;
        match kind {
            T::GNULongName => self.long_name = Some(read_meta_entry(entry, header)?),
            T::GNULongLink => self.long_link = Some(read_meta_entry(entry, header)?),
            T::XHeader => self.pax = parse_pax(&read_meta_entry(entry, header)?)?,
            T::XGlobalHeader => {
                read_meta_entry(entry, header)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The member described by `header`, using up the pending metadata.
    fn member(&mut self, header: &tar::Header) -> anyhow::Result<Member> {
        let pax = &self.pax;
        let pax_value = |key: &[u8]| pax.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let raw = pax_value(b"path").or(self.long_name.take()).unwrap_or_else(|| header.path_bytes().into_owned());
        let link_target = pax_value(b"linkpath")
            .or(self.long_link.take())
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        let shown = escape_path(&raw);
        let ectx = || format!("entry `{shown}`");
        if pax_value(b"size").is_some() {
            bail!("entry `{shown}`: pax size records (files over 8 GiB) are not supported");
        }
        let path = member_path(&raw).with_context(ectx)?;
        let id = |key: &[u8], from_header: std::io::Result<u64>| -> anyhow::Result<u32> {
            let v = match pax_value(key) {
                Some(v) => String::from_utf8_lossy(&v).parse::<u64>().context("bad pax id")?,
                None => from_header?,
            };
            u32::try_from(v).context("id out of range")
        };
        let mut meta = Meta {
            mode: header.mode().with_context(ectx)? & 0o7777,
            uid: id(b"uid", header.uid()).with_context(ectx)?,
            gid: id(b"gid", header.gid()).with_context(ectx)?,
            xattrs: Vec::new(),
        };
        for (key, value) in std::mem::take(&mut self.pax) {
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                if crate::store::meta::recorded_xattr(name) {
                    meta.xattrs.push((name.to_vec(), value));
                }
            }
        }
        meta.xattrs.sort();
        meta.xattrs.dedup_by(|a, b| a.0 == b.0);
        Ok(Member { path, shown, link_target, meta })
    }
}

/// The node of a character or block device entry.
fn device_node(header: &tar::Header, kind: tar::EntryType, meta: Meta, shown: &str) -> anyhow::Result<Node> {
    let ectx = || format!("entry `{shown}`");
    let major = header.device_major().with_context(ectx)?.unwrap_or(0);
    let minor = header.device_minor().with_context(ectx)?.unwrap_or(0);
    let rdev = nix::sys::stat::makedev(major.into(), minor.into());
    Ok(if kind == tar::EntryType::Char { Node::CharDevice { meta, rdev } } else { Node::BlockDevice { meta, rdev } })
}

/// The largest pax header or GNU long name accepted.
const MAX_META_ENTRY: u64 = 64 << 10;

/// Read a metadata entry (pax header, GNU long name), refusing large ones.
fn read_meta_entry(entry: &mut impl Read, header: &tar::Header) -> anyhow::Result<Vec<u8>> {
    let size = header.size()?;
    if size > MAX_META_ENTRY {
        bail!("a tar metadata entry of {size} bytes (more than {MAX_META_ENTRY})");
    }
    let mut buf = Vec::with_capacity(size as usize);
    entry.take(size).read_to_end(&mut buf)?;
    // GNU long names end with NUL.
    while buf.last() == Some(&0) {
        buf.pop();
    }
    Ok(buf)
}

/// Parse pax records: `LEN key=value\n`, LEN counting the whole record.
fn parse_pax(data: &[u8]) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let damaged = || anyhow::anyhow!("damaged pax header");
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(damaged)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l: &usize| l > space + 1 && l <= rest.len())
            .ok_or_else(damaged)?;
        let record = rest[space + 1..len].strip_suffix(b"\n").ok_or_else(damaged)?;
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(damaged)?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// The decompressing reader for a member name suffix (`""`, `.gz`, `.xz`, `.zst`).
fn decompressor<'a>(suffix: &str, r: &'a mut dyn Read) -> anyhow::Result<Box<dyn Read + 'a>> {
    Ok(match suffix {
        "" => Box::new(r),
        ".gz" => Box::new(flate2::read::MultiGzDecoder::new(r)),
        ".xz" => Box::new(xz2::read::XzDecoder::new_multi_decoder(r)),
        ".zst" => Box::new(zstd::stream::read::Decoder::new(r)?),
        other => bail!("compression `{other}` is not supported (expected none, .gz, .xz or .zst)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_path_table() {
        let ok: &[(&[u8], &[&str])] = &[
            (b"./usr/bin/x", &["usr", "bin", "x"]),
            (b"usr//lib/./a", &["usr", "lib", "a"]),
            (b"./", &[]),
            (b".", &[]),
        ];
        for (raw, want) in ok {
            let got: Vec<String> =
                member_path(raw).unwrap().iter().map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned()).collect();
            assert_eq!(got, *want);
        }
        for raw in [&b"/etc/passwd"[..], b"./../etc/passwd", b"usr/../../x", b"..", b"./bad\nname", b"usr/\n/x"] {
            assert!(member_path(raw).is_err(), "{}", String::from_utf8_lossy(raw));
        }
    }

    fn tar_gz(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, data, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_path(path).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            tar.append(&h, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn ar(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = b"!<arch>\n".to_vec();
        for (name, data) in members {
            out.extend(format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", 0, 0, 0, 100644, data.len()).into_bytes());
            out.extend(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    /// Damaged packages (random bytes changed, cut short) are unpacked or refused, never a
    /// panic, and the store still verifies afterwards: nothing half-written is left behind.
    #[test]
    fn damaged_packages_fail_cleanly_and_leave_the_store_sound() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            Store::open(&dir.path().join("store"), &crate::store::local::OpenOptions::default(), || {}).unwrap();
        let control = tar_gz(&[("./control", b"Package: p\nVersion: 1\nArchitecture: all\n", 0o644)]);
        let data = tar_gz(&[
            ("./usr/bin/p", b"#!/bin/sh\necho p\n", 0o755),
            ("./etc/p.conf", b"x=1\n", 0o644),
            ("./usr/share/doc/p/README", &[b'r'; 3000], 0o644),
        ]);
        let good = ar(&[("debian-binary", b"2.0\n".to_vec()), ("control.tar.gz", control), ("data.tar.gz", data)]);
        let file = dir.path().join("p.deb");
        fs_err::write(&file, &good).unwrap();
        if let Err(e) = unpack(&mut store, &file, &Limits::default()) {
            panic!("the intact package unpacks: {e:#}");
        }

        // A small xorshift generator: the cases are the same on every run.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut refused, mut unpacked) = (0, 0);
        for case in 0..300 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            if case % 3 == 0 {
                bytes.truncate((next() as usize) % bytes.len());
            }
            fs_err::write(&file, &bytes).unwrap();
            match unpack(&mut store, &file, &Limits::default()) {
                Ok(_) => unpacked += 1,
                Err(e) => {
                    assert!(e.to_string().contains("p.deb"), "the error names the package: {e:#}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 100, "most damaged packages are refused ({refused} of 300, {unpacked} unpacked)");
        let report = crate::store::verify::verify(&store, true, &crate::util::progress::Progress::hidden()).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }
}
