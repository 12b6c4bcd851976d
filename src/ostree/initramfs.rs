//! Looking inside an initramfs: does it carry a given file (OSTree's `ostree-prepare-root`)?
//!
//! An initramfs is one or more cpio archives in the `newc` format, concatenated: typically an
//! uncompressed early archive (CPU microcode) followed by a compressed main archive. This reader
//! walks uncompressed archives entry by entry and decompresses gzip, zstd and xz segments; other
//! compressions are reported as unknown rather than guessed at. The input is untrusted: every
//! length is checked against the data before it is used.

use std::io::Read;

/// What a look inside an initramfs found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found,
    Missing,
    /// A segment compressed in a format this reader does not decompress (named).
    Unknown(&'static str),
}

const HEADER: usize = 110;
/// Decompressed segments larger than this are refused (a real initramfs is well below).
const MAX_DECOMPRESSED: u64 = 4 << 30;

/// Whether the initramfs `data` holds a file at any of `paths` (relative, without a leading `/`).
pub fn contains(data: &[u8], paths: &[&str]) -> anyhow::Result<Lookup> {
    let mut pos = 0;
    loop {
        while pos < data.len() && data[pos] == 0 {
            pos += 1;
        }
        let rest = &data[pos..];
        if rest.is_empty() {
            return Ok(Lookup::Missing);
        }
        if rest.starts_with(b"070701") || rest.starts_with(b"070702") {
            let (found, used) =
                scan_archive(rest, paths).map_err(|e| anyhow::anyhow!("cpio archive at byte {pos}: {e}"))?;
            if found {
                return Ok(Lookup::Found);
            }
            pos += used;
            continue;
        }
        // A compressed segment runs to the end of the file.
        let plain = match decompress(rest)? {
            Ok(plain) => plain,
            Err(format) => return Ok(Lookup::Unknown(format)),
        };
        return contains(&plain, paths);
    }
}

/// Decompress `data`; `Err(name)` for a format this reader does not handle.
fn decompress(data: &[u8]) -> anyhow::Result<Result<Vec<u8>, &'static str>> {
    let mut out = Vec::new();
    let limit = MAX_DECOMPRESSED + 1;
    let read = if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(data).take(limit).read_to_end(&mut out)
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(data)?.take(limit).read_to_end(&mut out)
    } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        xz2::read::XzDecoder::new_multi_decoder(data).take(limit).read_to_end(&mut out)
    } else if data.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        return Ok(Err("lz4"));
    } else if data.starts_with(b"BZh") {
        return Ok(Err("bzip2"));
    } else if data.starts_with(&[0x5d, 0, 0]) {
        return Ok(Err("lzma"));
    } else {
        anyhow::bail!(
            "neither a cpio archive nor a known compression (starts with {:02x?})",
            &data[..data.len().min(6)]
        );
    };
    read.map_err(|e| anyhow::anyhow!("corrupt compressed segment: {e}"))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        anyhow::bail!("a segment decompresses to more than {} GiB", MAX_DECOMPRESSED >> 30);
    }
    Ok(Ok(out))
}

fn hex_field(header: &[u8], index: usize) -> Result<usize, String> {
    let field = &header[6 + index * 8..6 + (index + 1) * 8];
    let text = std::str::from_utf8(field).map_err(|_| "header field is not ASCII".to_string())?;
    usize::from_str_radix(text, 16).map_err(|_| format!("header field `{text}` is not hexadecimal"))
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Walk one `newc` archive; returns whether a wanted path is in it and the bytes it spans.
fn scan_archive(data: &[u8], paths: &[&str]) -> Result<(bool, usize), String> {
    let mut pos = 0;
    loop {
        let header = data.get(pos..pos + HEADER).ok_or("archive ends inside an entry header")?;
        if !header.starts_with(b"070701") && !header.starts_with(b"070702") {
            return Err(format!("bad entry magic at offset {pos}"));
        }
        let size = hex_field(header, 6)?;
        let name_size = hex_field(header, 11)?;
        let name_start = pos + HEADER;
        let name_end = name_start.checked_add(name_size).ok_or("name size overflows")?;
        let name = data.get(name_start..name_end).ok_or("archive ends inside an entry name")?;
        let name = name.strip_suffix(&[0]).ok_or("entry name is not NUL-terminated")?;
        let data_start = align4(name_end);
        let next = data_start.checked_add(size).map(align4).ok_or("entry size overflows")?;
        if next > data.len() && name != b"TRAILER!!!" {
            return Err("archive ends inside an entry's data".into());
        }
        if name == b"TRAILER!!!" {
            return Ok((false, next.min(data.len())));
        }
        let name = name.strip_prefix(b"./").unwrap_or(name);
        let name = name.strip_prefix(b"/").unwrap_or(name);
        if paths.iter().any(|p| p.as_bytes() == name) {
            return Ok((true, next));
        }
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entry(out: &mut Vec<u8>, name: &str, data: &[u8]) {
        let name_size = name.len() + 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            0o100644,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name_size,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn archive(names: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in names {
            entry(&mut out, n, b"data");
        }
        entry(&mut out, "TRAILER!!!", b"");
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    const WANT: &[&str] = &["usr/lib/ostree/ostree-prepare-root"];

    #[test]
    fn early_archive_then_compressed_main_archive() {
        let mut data = archive(&["kernel/x86/microcode/GenuineIntel.bin"]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&archive(&["usr", "usr/lib/ostree/ostree-prepare-root"])).unwrap();
        data.extend(gz.finish().unwrap());
        assert_eq!(contains(&data, WANT).unwrap(), Lookup::Found);

        let mut data = archive(&["early"]);
        data.extend(zstd::encode_all(&archive(&["./usr/bin/sh"])[..], 1).unwrap());
        assert_eq!(contains(&data, WANT).unwrap(), Lookup::Missing);
    }

    #[test]
    fn unknown_compression_and_garbage() {
        let mut data = archive(&["early"]);
        data.extend(b"BZh91AY&SY");
        assert_eq!(contains(&data, WANT).unwrap(), Lookup::Unknown("bzip2"));
        assert!(contains(b"not an initramfs", WANT).is_err());
        let mut cut = archive(&["usr/lib/ostree/ostree-prepare-root"]);
        cut.truncate(120);
        assert!(contains(&cut, WANT).is_err());
        // A name size that points past the end.
        let mut bad = archive(&["a"]);
        bad[6 + 11 * 8..6 + 12 * 8].copy_from_slice(b"ffffffff");
        assert!(contains(&bad, WANT).is_err());
    }

    proptest::proptest! {
        /// The initramfs comes from the image (untrusted): damaged archives and compressed
        /// segments are reported or refused, never a panic.
        #[test]
        fn damaged_initramfs_never_panics(
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 0..6),
            cut in 0usize..4096,
            compress in 0u8..3,
        ) {
            let mut data = archive(&["early"]);
            let main = archive(&["usr", "usr/lib/ostree/ostree-prepare-root"]);
            match compress {
                0 => data.extend(&main),
                1 => {
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(&main).unwrap();
                    data.extend(gz.finish().unwrap());
                }
                _ => data.extend(zstd::encode_all(&main[..], 1).unwrap()),
            }
            for (at, byte) in flips {
                let i = at % data.len();
                data[i] = byte;
            }
            data.truncate(cut.min(data.len()));
            let _ = contains(&data, WANT);
        }
    }
}
