//! Reading a tar stream into a tree, straight into the store, every member checked.
//!
//! Nothing is written to a real directory, so no member can escape: the tree is built in memory
//! by [`TreeBuilder`], which refuses `..`, absolute paths, members below symlinks or files, and
//! duplicates ([`crate::packages::member_path`]). Regular files are hashed while they are read
//! and kept only if the store does not have that object yet. GNU long names and pax records
//! (long paths and link targets, numeric ids, `SCHILY.xattr.*`) are read here, bounded, not by
//! the tar crate, which would read any size into memory. Sizes and member counts are limited by
//! the caller, and every error names the offending entry.
//!
//! Used for the data and control archives of `.deb` packages and for the layers of OCI images.

use std::io::Read;

use anyhow::{bail, Context};

use crate::store::batch::Batch;
use crate::store::local::Store;
use crate::store::meta::Meta;
use crate::store::object::ObjectStore;
use crate::store::tree::{Name, Node};
use crate::store::tree_builder::{implicit_dir_meta, TreeBuilder};
use crate::util::text::escape_path;

use super::{member_path, tree_path};

/// Sees each regular file (read into memory) with its content: for small archives whose files
/// the caller reads too (a `.deb`'s control archive).
pub type SmallFiles<'a> = dyn FnMut(&[Name], &[u8]) + 'a;

/// Reads tar streams into trees of one store; the objects written go into [`TarReader::batch`].
pub struct TarReader<'s> {
    pub store: &'s Store,
    pub batch: Batch,
    /// Regular files and their bytes read so far (hardlinks count as files).
    pub files: u64,
    pub bytes: u64,
    /// The metadata of the root and of directories the archive does not list itself.
    pub implicit_dirs: Meta,
    /// Accept names with a newline (container layers; packages refuse them, as dpkg does).
    pub newlines: bool,
}

impl<'s> TarReader<'s> {
    pub fn new(store: &'s Store) -> TarReader<'s> {
        TarReader {
            store,
            batch: Batch::new(),
            files: 0,
            bytes: 0,
            implicit_dirs: implicit_dir_meta(),
            newlines: false,
        }
    }

    /// Read a tar stream into a tree. With `small` (the control archive), regular files are read
    /// into memory (bounded by `max_bytes`) and shown to it; otherwise content streams into objects.
    pub fn read(
        &mut self,
        reader: Box<dyn Read + '_>,
        max_bytes: u64,
        max_members: u64,
        mut small: Option<&mut SmallFiles<'_>>,
    ) -> anyhow::Result<TreeBuilder> {
        let objects = self.store.object_store();
        let mut builder = TreeBuilder::with_implicit(self.implicit_dirs.clone(), self.implicit_dirs.clone());
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
            let mut m = pending.member(&header, self.newlines)?;
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
        let target_path = if self.newlines { tree_path(&target) } else { member_path(&target) }.with_context(ectx)?;
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
    fn member(&mut self, header: &tar::Header, newlines: bool) -> anyhow::Result<Member> {
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
        let path = if newlines { tree_path(&raw) } else { member_path(&raw) }.with_context(ectx)?;
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
                // `strata.*` names are strata's own markers (layers, imports): never from input.
                if crate::store::meta::recorded_xattr(name) && !name.starts_with(b"strata.") {
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
pub fn decompressor<'a>(suffix: &str, r: &'a mut dyn Read) -> anyhow::Result<Box<dyn Read + 'a>> {
    Ok(match suffix {
        "" => Box::new(r),
        ".gz" => Box::new(flate2::read::MultiGzDecoder::new(r)),
        ".xz" => Box::new(xz2::read::XzDecoder::new_multi_decoder(r)),
        ".zst" => Box::new(zstd::stream::read::Decoder::new(r)?),
        other => bail!("compression `{other}` is not supported (expected none, .gz, .xz or .zst)"),
    })
}
