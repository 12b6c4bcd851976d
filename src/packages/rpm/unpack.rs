//! Unpacking an RPM package (`.rpm`) straight into the store as a `package` entry.
//!
//! The main header is the authority on every file: its path, mode, owner and group names, link
//! target, device number and capabilities. The cpio payload only supplies content, and each of
//! its members must be a file the header lists, of the same type. Files the header lists that
//! the payload lacks are made from the header when they carry no content (directories,
//! symlinks, empty files) and are an error otherwise; `%ghost` files are not made, as rpm does.
//!
//! The entry's tree: `data/` (the files, owned by root: owner *names* are mapped to numbers when
//! packages are merged into an image, against that image's `/etc/passwd` and `/etc/group`) and
//! `rpm/header` (the main header's bytes: scriptlets, triggers and owner names are read from it
//! later). Its key comes from the package file's SHA-256.
//!
//! Package contents are untrusted: the same limits and path rules as for `.deb` apply, and
//! every error names the package file and the offending member.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};

use super::cpio;
use super::header::{self, tag, FileInfo, Header, FILE_GHOST};
use crate::packages::{member_path, Limits, PackageReport};
use crate::store::batch::Batch;
use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::meta::Meta;
use crate::store::tree::{Name, Node};
use crate::store::tree_builder::{implicit_dir_meta, TreeBuilder};
use crate::store::Backend;
use crate::util::hash::sha256_file;
use crate::util::text::escape_path;

/// The entry key of the package whose file has this SHA-256.
pub fn package_key(sha256_hex: &str) -> Digest {
    entry_key(EntryKind::Package, &[("format", b"rpm"), ("sha256", sha256_hex.as_bytes())], &[])
}

/// The entry of the package whose file has this SHA-256, if it was unpacked before.
pub fn cached(store: &Store, sha256: &str) -> anyhow::Result<Option<PackageReport>> {
    let key = package_key(sha256);
    Ok(store.entry(&key)?.map(|e| PackageReport::cached(key, &e, sha256, split_nevra(&e.name))))
}

/// `name-version-release.arch` back into its parts (the name may contain `-`).
fn split_nevra(nevra: &str) -> (String, String, String) {
    let (rest, arch) = nevra.rsplit_once('.').unwrap_or((nevra, ""));
    let mut parts = rest.rsplitn(3, '-');
    let release = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    (name.to_string(), format!("{version}-{release}"), arch.to_string())
}

/// Unpack `path` into the store (or find it there) and return its entry.
pub fn unpack(store: &mut Store, path: &Path, limits: &Limits) -> anyhow::Result<PackageReport> {
    let sha256 = sha256_file(path)?;
    if let Some(report) = cached(store, &sha256)? {
        return Ok(report);
    }
    let key = package_key(&sha256);
    let ctx = || format!("bad package `{}`", path.display());
    let mut batch = Batch::new();
    let (h, data, files, bytes) = read_rpm(store, &mut batch, path, limits).with_context(ctx)?;
    let name = h.string(tag::NAME).with_context(ctx)?.unwrap_or_default();
    let version = h.string(tag::VERSION).with_context(ctx)?.unwrap_or_default();
    let release = h.string(tag::RELEASE).with_context(ctx)?.unwrap_or_default();
    let arch = h.string(tag::ARCH).with_context(ctx)?.unwrap_or_default();
    if [&name, &version, &release, &arch].iter().any(|s| s.is_empty() || s.contains(['/', '\n'])) {
        bail!("bad package `{}`: the header lacks a valid name, version, release or arch", path.display());
    }
    let header_node = batch.put_bytes(store, &h.raw, Meta { mode: 0o644, uid: 0, gid: 0, xattrs: Vec::new() })?;
    let mut rpm = TreeBuilder::new(implicit_dir_meta());
    rpm.insert(&[Name::new("header").expect("name")], header_node).expect("fresh tree");
    let mut top = TreeBuilder::new(implicit_dir_meta());
    let rpm_id = rpm.finish(&mut batch.trees);
    let data_id = data.finish(&mut batch.trees);
    top.insert_tree(Name::new("data").expect("name"), data_id);
    top.insert_tree(Name::new("rpm").expect("name"), rpm_id);
    let tree = top.finish(&mut batch.trees);
    let version = match h.int(tag::EPOCH).with_context(ctx)? {
        // As `Evr` shows it: epoch 0 is no epoch.
        Some(epoch) if epoch != 0 => format!("{epoch}:{version}-{release}"),
        _ => format!("{version}-{release}"),
    };
    let entry_name = format!("{name}-{version}.{arch}");
    let new_objects = batch.new_objects();
    Memo::with_key(EntryKind::Package, entry_name, key)
        .record(store, Built::in_batch(tree, batch).totals(files, bytes))?;
    Ok(PackageReport {
        key,
        tree,
        package: name,
        version,
        architecture: arch,
        sha256,
        files,
        bytes,
        new_objects,
        cached: false,
    })
}

/// The package's main header, without reading its payload.
pub fn read_header(path: &Path) -> anyhow::Result<Header> {
    let mut r = std::io::BufReader::new(fs_err::File::open(path)?);
    header::skip_lead_and_signature(&mut r)?;
    Header::read(&mut r, false).context("main header")
}

fn read_rpm(
    store: &Store,
    batch: &mut Batch,
    path: &Path,
    limits: &Limits,
) -> anyhow::Result<(Header, TreeBuilder, u64, u64)> {
    let mut r = std::io::BufReader::new(fs_err::File::open(path)?);
    header::skip_lead_and_signature(&mut r)?;
    let h = Header::read(&mut r, false).context("main header")?;
    if let Some(format) = h.string(tag::PAYLOADFORMAT)? {
        if format != "cpio" {
            bail!("payload format `{format}` is not supported (expected cpio)");
        }
    }
    let files = header::files(&h, limits.max_members)?;
    let compressor = h.string(tag::PAYLOADCOMPRESSOR)?.unwrap_or_else(|| "gzip".into());
    let payload = decompressor(&compressor, &mut r)?;
    let mut u =
        Unpack { store, batch, files: &files, builder: TreeBuilder::new(implicit_dir_meta()), count: 0, bytes: 0 };
    u.payload(payload, limits).context("payload")?;
    let Unpack { builder, count, bytes, .. } = u;
    Ok((h, builder, count, bytes))
}

fn decompressor<'a>(name: &str, r: &'a mut dyn Read) -> anyhow::Result<Box<dyn Read + 'a>> {
    Ok(match name {
        "gzip" => Box::new(flate2::read::MultiGzDecoder::new(r)),
        "xz" => Box::new(xz2::read::XzDecoder::new_multi_decoder(r)),
        "lzma" => Box::new(xz2::read::XzDecoder::new_stream(r, xz2::stream::Stream::new_lzma_decoder(u64::MAX)?)),
        "zstd" => Box::new(zstd::stream::read::Decoder::new(r)?),
        "identity" => Box::new(r),
        other => bail!("payload compression `{other}` is not supported (expected gzip, xz, lzma or zstd)"),
    })
}

struct Unpack<'a> {
    store: &'a Store,
    batch: &'a mut Batch,
    files: &'a [FileInfo],
    builder: TreeBuilder,
    count: u64,
    bytes: u64,
}

/// File type bits of a mode.
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

/// What reading a payload keeps track of from member to member.
struct PayloadState {
    /// Which of the header's files a member supplied.
    seen: Vec<bool>,
    /// Bytes the package may still take, of `max_bytes`.
    budget: u64,
    max_bytes: u64,
    /// Hardlinked files: rpm writes the content with the last link; the others wait for it.
    pending: HashMap<u32, Vec<(Vec<Name>, Meta)>>,
    group_of: HashMap<u32, u32>,
}

impl Unpack<'_> {
    /// Read the cpio payload into the tree: members checked against the header, then what it lacks.
    fn payload(&mut self, payload: Box<dyn Read + '_>, limits: &Limits) -> anyhow::Result<()> {
        let by_path = self.header_paths()?;
        let mut state = PayloadState {
            seen: vec![false; self.files.len()],
            budget: limits.max_bytes,
            max_bytes: limits.max_bytes,
            pending: HashMap::new(),
            group_of: HashMap::new(),
        };
        let mut cpio = cpio::Reader::new(payload);
        let mut members = 0u64;
        while let Some(m) = cpio.next_member()? {
            members += 1;
            if members > limits.max_members {
                bail!("more than {} members", limits.max_members);
            }
            self.member(&m, &mut cpio, &by_path, &mut state)?;
        }
        // Hardlinked empty files: no member carried content.
        self.add_empty_links(state.pending)?;
        // Listed but not in the payload: made from the header when nothing is missing.
        self.add_unshipped(&state.seen)
    }

    /// The header's files by path, without the leading `/` (cpio names are `./usr/...`).
    fn header_paths(&self) -> anyhow::Result<HashMap<Vec<Name>, usize>> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let rel = f.path.strip_prefix('/').unwrap_or(&f.path);
                member_path(rel.as_bytes()).map(|p| (p, i)).with_context(|| format!("file `{}`", f.path))
            })
            .collect::<anyhow::Result<_>>()
    }

    /// Add a payload member, which must be a file the header lists, of the same type.
    fn member(
        &mut self,
        m: &cpio::Member,
        cpio: &mut cpio::Reader<Box<dyn Read + '_>>,
        by_path: &HashMap<Vec<Name>, usize>,
        state: &mut PayloadState,
    ) -> anyhow::Result<()> {
        let shown = escape_path(&m.name);
        let ectx = || format!("member `{shown}`");
        let path = member_path(&m.name).with_context(ectx)?;
        let &i = by_path.get(&path).with_context(|| format!("member `{shown}` is not in the header's file list"))?;
        let f = &self.files[i];
        if state.seen[i] {
            bail!("member `{shown}` appears twice");
        }
        state.seen[i] = true;
        if f.mode & S_IFMT != m.mode & S_IFMT {
            bail!("member `{shown}`: its type in the payload ({:o}) is not the header's ({:o})", m.mode, f.mode);
        }
        let meta = meta_of(f).with_context(ectx)?;
        match f.mode & S_IFMT {
            S_IFREG => self.regular(m, cpio, path, meta, state)?,
            S_IFDIR => self.builder.mkdir(&path, meta).with_context(ectx)?,
            S_IFLNK => {
                let mut target = Vec::new();
                cpio.data().take(4096).read_to_end(&mut target).with_context(ectx)?;
                if target != f.link_to.as_bytes() {
                    bail!("member `{shown}`: symlink target differs from the header's `{}`", f.link_to);
                }
                self.add(&path, Node::Symlink { meta: Meta { mode: 0o777, ..meta }, target })?;
            }
            S_IFCHR | S_IFBLK => {
                let rdev = nix::sys::stat::makedev(m.rdev_major.into(), m.rdev_minor.into());
                let node = if f.mode & S_IFMT == S_IFCHR {
                    Node::CharDevice { meta, rdev }
                } else {
                    Node::BlockDevice { meta, rdev }
                };
                self.add(&path, node).with_context(ectx)?;
            }
            S_IFIFO => self.add(&path, Node::Fifo { meta }).with_context(ectx)?,
            other => bail!("member `{shown}`: file type {other:o} is not supported"),
        }
        Ok(())
    }

    /// Add a regular file member with its content, and the earlier links that waited for it.
    fn regular(
        &mut self,
        m: &cpio::Member,
        cpio: &mut cpio::Reader<Box<dyn Read + '_>>,
        path: Vec<Name>,
        meta: Meta,
        state: &mut PayloadState,
    ) -> anyhow::Result<()> {
        let shown = escape_path(&m.name);
        let ectx = || format!("member `{shown}`");
        if m.size > state.budget {
            bail!("member `{shown}`: the package is larger than the limit of {} bytes", state.max_bytes);
        }
        if m.nlink > 1 && m.size == 0 {
            state.pending.entry(m.ino).or_default().push((path, meta));
            return Ok(());
        }
        let staged = self.store.object_store().stage(&mut cpio.data(), &meta, state.budget).with_context(ectx)?;
        state.budget -= staged.size;
        let (size, content) = (staged.size, staged.content);
        self.store.keep(self.batch, staged)?;
        let mut link = 0;
        let waiting = state.pending.remove(&m.ino).unwrap_or_default();
        if m.nlink > 1 {
            let next = state.group_of.len() as u32 + 1;
            link = *state.group_of.entry(m.ino).or_insert(next);
        }
        for (p, meta) in waiting.into_iter().chain([(path, meta)]) {
            let node = Node::File { meta: meta.clone(), size, content, link };
            self.add(&p, node).with_context(ectx)?;
            self.bytes += size;
        }
        Ok(())
    }

    /// Add the hardlinked empty files that are still waiting: no member carried content.
    fn add_empty_links(&mut self, pending: HashMap<u32, Vec<(Vec<Name>, Meta)>>) -> anyhow::Result<()> {
        for (_, waiting) in pending {
            for (p, meta) in waiting {
                let staged = self.store.object_store().stage(&mut &b""[..], &meta, 0)?;
                let content = staged.content;
                self.store.keep(self.batch, staged)?;
                self.add(&p, Node::File { meta, size: 0, content, link: 0 })?;
            }
        }
        Ok(())
    }

    /// Make the listed files the payload lacks from the header, when nothing is missing.
    fn add_unshipped(&mut self, seen: &[bool]) -> anyhow::Result<()> {
        for (i, f) in self.files.iter().enumerate() {
            if seen[i] || f.flags & FILE_GHOST != 0 {
                continue;
            }
            let fctx = || format!("file `{}`", f.path);
            let path = member_path(f.path.strip_prefix('/').unwrap_or(&f.path).as_bytes())?;
            let meta = meta_of(f).with_context(fctx)?;
            match f.mode & S_IFMT {
                S_IFDIR => self.builder.mkdir(&path, meta).with_context(fctx)?,
                S_IFLNK => self
                    .add(
                        &path,
                        Node::Symlink { meta: Meta { mode: 0o777, ..meta }, target: f.link_to.clone().into_bytes() },
                    )
                    .with_context(fctx)?,
                S_IFREG if f.size == 0 => {
                    let staged = self.store.object_store().stage(&mut &b""[..], &meta, 0)?;
                    let content = staged.content;
                    self.store.keep(self.batch, staged)?;
                    self.add(&path, Node::File { meta, size: 0, content, link: 0 }).with_context(fctx)?;
                }
                _ => bail!("file `{}` is in the header but missing from the payload", f.path),
            }
        }
        Ok(())
    }

    fn add(&mut self, path: &[Name], node: Node) -> anyhow::Result<()> {
        self.count += 1;
        self.builder.insert(path, node)?;
        Ok(())
    }
}

/// A file's metadata from the header: owned by root (names are mapped when merging), with its
/// file capabilities as the `security.capability` attribute.
fn meta_of(f: &FileInfo) -> anyhow::Result<Meta> {
    let mut xattrs = Vec::new();
    if !f.caps.is_empty() {
        xattrs.push((b"security.capability".to_vec(), capability_xattr(&f.caps)?));
    }
    Ok(Meta { mode: f.mode & 0o7777, uid: 0, gid: 0, xattrs })
}

/// Capability names in bit order (linux/capability.h).
const CAPS: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The `security.capability` value (`vfs_cap_data` revision 2) of a capability text such as
/// `cap_net_raw,cap_net_admin=ep` or `cap_setuid+p`, as `%caps` writes it.
pub fn capability_xattr(text: &str) -> anyhow::Result<Vec<u8>> {
    let (mut permitted, mut inheritable, mut effective) = (0u64, 0u64, false);
    for clause in text.split_whitespace() {
        let at = clause.find(['=', '+']).with_context(|| format!("capabilities `{text}`: no `=` or `+`"))?;
        let (names, flags) = (&clause[..at], &clause[at + 1..]);
        let mut mask = 0u64;
        for name in names.split(',').filter(|n| !n.is_empty()) {
            let n = name.to_ascii_lowercase();
            let bare = n.strip_prefix("cap_").unwrap_or(&n);
            let bit = CAPS
                .iter()
                .position(|c| *c == bare)
                .with_context(|| format!("capabilities `{text}`: unknown capability `{name}`"))?;
            mask |= 1 << bit;
        }
        for c in flags.chars() {
            match c {
                'p' => permitted |= mask,
                'i' => inheritable |= mask,
                'e' => effective = true,
                _ => bail!("capabilities `{text}`: unknown flag `{c}` (expected e, i or p)"),
            }
        }
    }
    let mut out = Vec::with_capacity(20);
    out.extend((0x0200_0000u32 | effective as u32).to_le_bytes());
    for half in [0, 32] {
        out.extend(((permitted >> half) as u32).to_le_bytes());
        out.extend(((inheritable >> half) as u32).to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::rpm::cpio::tests::archive;

    /// One file of a hand-made package: its header path, its payload name (`None`: not in the
    /// payload), mode, content or link target.
    struct F<'a>(&'a str, Option<&'a str>, u32, &'a [u8]);

    fn header(entries: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data: Vec<u8> = Vec::new();
        for (tag, ty, count, bytes) in entries {
            while !data.len().is_multiple_of(8) {
                data.push(0);
            }
            for v in [*tag, *ty, data.len() as u32, *count] {
                index.extend(v.to_be_bytes());
            }
            data.extend(bytes);
        }
        let mut out = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
        out.extend((entries.len() as u32).to_be_bytes());
        out.extend((data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    fn strings(items: &[&str]) -> (u32, Vec<u8>) {
        let mut b = Vec::new();
        for i in items {
            b.extend(i.as_bytes());
            b.push(0);
        }
        (items.len() as u32, b)
    }

    /// A `.rpm` as rpm lays it out: lead, signature header, main header, gzip cpio payload.
    fn rpm_bytes(files: &[F<'_>], payload_extra: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut lead = vec![0xed, 0xab, 0xee, 0xdb, 3, 0, 0, 0, 0, 1];
        lead.resize(96, 0);
        let mut out = lead;
        let sig = header(&[(1000, 4, 1, 0u32.to_be_bytes().to_vec())]);
        let pad = (8 - sig.len() % 8) % 8;
        out.extend(sig);
        out.extend(vec![0; pad]);
        let s = |t: u32, v: &str| (t, 6, 1, strings(&[v]).1);
        let arr = |t: u32, v: &[&str]| {
            let (n, b) = strings(v);
            (t, 8, n, b)
        };
        let dirs: Vec<String> = files.iter().map(|f| format!("{}/", f.0.rsplit_once('/').unwrap().0)).collect();
        let bases: Vec<&str> = files.iter().map(|f| f.0.rsplit_once('/').unwrap().1).collect();
        let dir_refs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let n = files.len() as u32;
        let int32 = |v: Vec<u32>| v.into_iter().flat_map(u32::to_be_bytes).collect::<Vec<u8>>();
        let links: Vec<&str> = files
            .iter()
            .map(|f| if f.2 & S_IFMT == S_IFLNK { std::str::from_utf8(f.3).unwrap() } else { "" })
            .collect();
        let roots = vec!["root"; files.len()];
        let mut entries = vec![
            s(tag::NAME, "evil"),
            s(tag::VERSION, "1"),
            s(tag::RELEASE, "1"),
            s(tag::ARCH, "noarch"),
            s(tag::PAYLOADFORMAT, "cpio"),
            s(tag::PAYLOADCOMPRESSOR, "gzip"),
        ];
        if n > 0 {
            entries.extend([
                arr(tag::BASENAMES, &bases),
                arr(tag::DIRNAMES, &dir_refs),
                (tag::DIRINDEXES, 4, n, int32((0..n).collect())),
                (tag::FILESIZES, 4, n, int32(files.iter().map(|f| f.3.len() as u32).collect())),
                (tag::FILEMODES, 3, n, files.iter().flat_map(|f| (f.2 as u16).to_be_bytes()).collect()),
                arr(tag::FILEUSERNAME, &roots),
                arr(tag::FILEGROUPNAME, &roots),
                arr(tag::FILELINKTOS, &links),
                (tag::FILEFLAGS, 4, n, int32(vec![0; files.len()])),
            ]);
        }
        out.extend(header(&entries));
        let mut members: Vec<(String, u32, &[u8])> =
            files.iter().filter_map(|f| f.1.map(|name| (name.to_string(), f.2, f.3))).collect();
        members.extend(payload_extra.iter().map(|(n, m, d)| (n.to_string(), *m, *d)));
        let refs: Vec<(&str, u32, &[u8])> = members.iter().map(|(n, m, d)| (n.as_str(), *m, *d)).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &archive(&refs)).unwrap();
        out.extend(gz.finish().unwrap());
        out
    }

    fn good_files() -> Vec<F<'static>> {
        vec![
            F("/usr", Some("./usr"), 0o40755, b""),
            F("/usr/bin", Some("./usr/bin"), 0o40755, b""),
            F("/usr/bin/tool", Some("./usr/bin/tool"), 0o104755, b"#!/bin/sh\necho tool\n"),
            F("/usr/bin/t", Some("./usr/bin/t"), 0o120777, b"tool"),
            F("/etc/tool.conf", None, 0o100644, b""),
        ]
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&dir.path().join("store"), &crate::store::local::OpenOptions::default(), || {}).unwrap();
        (dir, store)
    }

    #[test]
    fn a_hand_made_package_unpacks_with_the_headers_metadata() {
        let (dir, mut store) = store();
        let file = dir.path().join("evil-1-1.noarch.rpm");
        fs_err::write(&file, rpm_bytes(&good_files(), &[])).unwrap();
        let report = unpack(&mut store, &file, &Limits::default()).unwrap();
        assert_eq!((report.package.as_str(), report.version.as_str(), report.files), ("evil", "1-1", 3));
        let tool = store.lookup(&report.tree, &[b"data", b"usr", b"bin", b"tool"]).unwrap().unwrap();
        assert_eq!(tool.meta().unwrap().mode, 0o4755, "setuid from the header");
        assert!(matches!(
            store.lookup(&report.tree, &[b"data", b"etc", b"tool.conf"]).unwrap(),
            Some(Node::File { size: 0, .. })
        ));
        assert!(store.lookup(&report.tree, &[b"rpm", b"header"]).unwrap().is_some());
        // Cached: the same file is not read again.
        assert!(unpack(&mut store, &file, &Limits::default()).unwrap().cached);
    }

    /// The malicious corpus: each package is refused with its name and the offending member,
    /// and nothing of it reaches the store.
    #[test]
    fn malicious_packages_are_refused_by_member() {
        let (dir, mut store) = store();
        let file = dir.path().join("evil-1-1.noarch.rpm");
        let big = vec![0u8; 3 << 20];
        let cases: Vec<(Vec<u8>, Limits, &str)> = vec![
            (rpm_bytes(&[F("/../etc/evil", Some("./../etc/evil"), 0o100644, b"x")], &[]), Limits::default(), "`..`"),
            (
                rpm_bytes(&good_files(), &[("./etc/cron.d/backdoor", 0o100644, b"* * * * * root sh")]),
                Limits::default(),
                "member `./etc/cron.d/backdoor` is not in the header's file list",
            ),
            (
                rpm_bytes(
                    &[
                        F("/usr/lnk", Some("./usr/lnk"), 0o120777, b"/etc"),
                        F("/usr/lnk/passwd", Some("./usr/lnk/passwd"), 0o100644, b"root::0:0"),
                    ],
                    &[],
                ),
                Limits::default(),
                "usr/lnk/passwd",
            ),
            (
                rpm_bytes(&[F("/usr", Some("./usr"), 0o40755, b"")], &[("./usr", 0o100644, b"")]),
                Limits::default(),
                "appears twice",
            ),
            (
                rpm_bytes(&[F("/usr/big", Some("./usr/big"), 0o100644, &big)], &[]),
                Limits { max_bytes: 1 << 20, ..Limits::default() },
                "larger than the limit",
            ),
            (rpm_bytes(&[F("/usr/x", None, 0o100644, b"content")], &[]), Limits::default(), "missing from the payload"),
        ];
        for (bytes, limits, says) in cases {
            fs_err::write(&file, &bytes).unwrap();
            let err = format!("{:#}", unpack(&mut store, &file, &limits).unwrap_err());
            assert!(err.contains("evil-1-1.noarch.rpm") && err.contains(says), "{says}: {err}");
        }
        assert!(store.entries().unwrap().is_empty(), "no entry was recorded");
        let report = crate::store::verify::verify(&store, true, &crate::util::progress::Progress::hidden()).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }

    /// Tags may share their data: a small header could declare millions of files. The count is
    /// checked against the limit before anything is decoded.
    #[test]
    fn a_header_cannot_declare_more_files_than_the_limit() {
        let (dir, mut store) = store();
        let zeros = vec![0u8; 4096];
        let n = zeros.len() as u32;
        let shared = |t: u32, ty: u32| (t, ty, n, zeros.clone());
        let mut bytes = vec![0xed, 0xab, 0xee, 0xdb, 3, 0];
        bytes.resize(96, 0);
        let sig = header(&[(1000, 4, 1, vec![0; 4])]);
        let pad = (8 - sig.len() % 8) % 8;
        bytes.extend(sig);
        bytes.extend(vec![0; pad]);
        bytes.extend(header(&[
            (tag::NAME, 6, 1, b"evil\0".to_vec()),
            shared(tag::BASENAMES, 8),
            shared(tag::DIRNAMES, 8),
            shared(tag::FILEUSERNAME, 8),
            shared(tag::FILEGROUPNAME, 8),
            (tag::DIRINDEXES, 4, n, vec![0; 4 * n as usize]),
            (tag::FILESIZES, 4, n, vec![0; 4 * n as usize]),
            (tag::FILEMODES, 3, n, vec![0; 2 * n as usize]),
        ]));
        let file = dir.path().join("evil-1-1.noarch.rpm");
        fs_err::write(&file, &bytes).unwrap();
        let err =
            format!("{:#}", unpack(&mut store, &file, &Limits { max_members: 1000, ..Limits::default() }).unwrap_err());
        assert!(err.contains("4096 files, more than the limit of 1000"), "{err}");
    }

    /// Damaged packages (bytes changed, cut short) are unpacked or refused, never a panic, and
    /// the store still verifies afterwards.
    #[test]
    fn damaged_packages_fail_cleanly_and_leave_the_store_sound() {
        let (dir, mut store) = store();
        let good = rpm_bytes(&good_files(), &[]);
        let file = dir.path().join("evil-1-1.noarch.rpm");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut refused = 0;
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
            if let Err(e) = unpack(&mut store, &file, &Limits::default()) {
                assert!(format!("{e:#}").contains("evil-1-1.noarch.rpm"), "the error names the package: {e:#}");
                refused += 1;
            }
        }
        assert!(refused > 100, "most damaged packages are refused ({refused} of 300)");
        let report = crate::store::verify::verify(&store, true, &crate::util::progress::Progress::hidden()).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }

    #[test]
    fn capability_text_to_xattr() {
        let x = capability_xattr("cap_net_raw=ep").unwrap();
        assert_eq!(x.len(), 20);
        assert_eq!(&x[..4], &0x0200_0001u32.to_le_bytes());
        assert_eq!(&x[4..8], &(1u32 << 13).to_le_bytes());
        let x = capability_xattr("cap_setuid,cap_bpf+p").unwrap();
        assert_eq!(&x[..4], &0x0200_0000u32.to_le_bytes());
        assert_eq!(&x[4..8], &(1u32 << 7).to_le_bytes());
        assert_eq!(&x[12..16], &(1u32 << (39 - 32)).to_le_bytes());
        for bad in ["cap_nothing=ep", "cap_net_raw", "cap_net_raw=x"] {
            assert!(capability_xattr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nevra_split() {
        assert_eq!(
            split_nevra("python3-libs-3.12.1-2.fc40.x86_64"),
            ("python3-libs".into(), "3.12.1-2.fc40".into(), "x86_64".into())
        );
    }
}
