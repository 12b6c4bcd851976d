//! Unpacking a Debian binary package (`.deb`) straight into the store as a `package` entry.
//!
//! A `.deb` is an `ar` archive: `debian-binary` (format `2.x`), `control.tar[.gz|.xz|.zst]`, then
//! `data.tar[.gz|.xz|.zst]`. Both tar streams are read once: each regular file is written to
//! `tmp/` while it is hashed and kept only if the store does not have that object yet. Nothing is
//! ever written to a real directory, so no member can escape ([`crate::packages::tar`]: the tree
//! is built in memory by [`TreeBuilder`], which refuses `..`, members below symlinks or files, and
//! duplicates).
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

use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::local::Store;
use crate::store::memo::{Built, Memo};
use crate::store::tree::Name;
use crate::store::tree_builder::{implicit_dir_meta, TreeBuilder};
use crate::store::Backend;

use crate::packages::tar::{decompressor, TarReader};
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
    let mut unpacked = Unpacker { tar: TarReader::new(store) };
    let (control, data, fields) = unpacked.read_deb(path, limits).with_context(ctx)?;
    let TarReader { mut batch, files, bytes, .. } = unpacked.tar;

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
    tar: TarReader<'s>,
}

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
        let builder = self.tar.read(reader, limits.max_control_bytes, 10_000, Some(&mut keep_control))?;
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
        self.tar.read(reader, max_bytes, max_members, None)
    }
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
