//! A strict reader for the `ar` container of `.deb` files.
//!
//! A `.deb` needs only the common format: the `!<arch>\n` magic, then members with 60-byte
//! headers (16-byte name, decimal size) and data padded to an even length. GNU and BSD long-name
//! extensions (`/…`, `//`, `#1/…`) are never used by dpkg and are refused, as is any size that
//! runs past the end of the file, so a crafted archive cannot make the reader allocate or panic.

use std::io::{self, Read};

use anyhow::bail;

const MAGIC: &[u8; 8] = b"!<arch>\n";

pub struct ArReader<R> {
    inner: R,
    /// Bytes of the current member (and its padding) not read yet.
    remaining: u64,
    len: u64,
    pos: u64,
}

impl<R: Read> ArReader<R> {
    /// Start reading; `len` is the file's length, to refuse sizes that cannot fit.
    pub fn new(mut inner: R, len: u64) -> anyhow::Result<ArReader<R>> {
        let mut magic = [0u8; 8];
        if inner.read_exact(&mut magic).is_err() || &magic != MAGIC {
            bail!("not an ar archive (no `!<arch>` magic)");
        }
        Ok(ArReader { inner, remaining: 0, len, pos: 8 })
    }

    /// The next member's name and a reader for its content, or `None` at the end.
    pub fn next_member(&mut self) -> anyhow::Result<Option<(String, Member<'_, R>)>> {
        if self.remaining > 0 {
            io::copy(&mut (&mut self.inner).take(self.remaining), &mut io::sink())?;
            self.pos += self.remaining;
            self.remaining = 0;
        }
        let mut header = [0u8; 60];
        let mut got = 0;
        while got < 60 {
            let n = self.inner.read(&mut header[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            return Ok(None);
        }
        if got < 60 || &header[58..60] != b"`\n" {
            bail!("damaged ar member header at byte {}", self.pos);
        }
        self.pos += 60;
        let name = std::str::from_utf8(&header[..16]).map_err(|_| anyhow::anyhow!("ar member name is not text"))?;
        let name = name.trim_end_matches(' ').trim_end_matches('/');
        if name.is_empty() || name.starts_with('/') || name.starts_with("#1/") {
            bail!("ar member `{name}` uses a long-name extension, which .deb files never do");
        }
        let size = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim_end_matches(' ').parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("ar member `{name}` has an invalid size"))?;
        if size > self.len.saturating_sub(self.pos) {
            bail!("ar member `{name}` claims {size} bytes, more than the file holds");
        }
        // What the caller does not read of this member (and the padding) is skipped next time.
        self.remaining = size + size % 2;
        let name = name.to_string();
        Ok(Some((name, Member { ar: self, left: size })))
    }
}

/// The content of one member.
pub struct Member<'a, R> {
    ar: &'a mut ArReader<R>,
    left: u64,
}

impl<R: Read> Read for Member<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.ar.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        self.ar.remaining -= n as u64;
        self.ar.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", 0, 0, 0, 100644, data.len()).into_bytes();
        h.extend_from_slice(data);
        if data.len() % 2 == 1 {
            h.push(b'\n');
        }
        h
    }

    #[test]
    fn reads_members_and_refuses_extensions() {
        let mut ar = MAGIC.to_vec();
        ar.extend(member("debian-binary", b"2.0\n"));
        ar.extend(member("odd", b"abc"));
        ar.extend(member("last", b"z"));
        let mut r = ArReader::new(ar.as_slice(), ar.len() as u64).unwrap();
        let mut names = vec![];
        while let Some((name, mut data)) = r.next_member().unwrap() {
            if name == "odd" {
                let mut s = String::new();
                data.read_to_string(&mut s).unwrap();
                assert_eq!(s, "abc");
            }
            names.push(name);
        }
        assert_eq!(names, ["debian-binary", "odd", "last"]);

        for (bad, why) in [
            (member("/99", b""), "long-name"),
            (member("//", b""), "long-name"),
            (member("#1/20", b""), "long-name"),
            (
                format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", "data", 0, 0, 0, 100644, 99999999).into_bytes(),
                "more than the file holds",
            ),
            (b"short".to_vec(), "damaged"),
        ] {
            let mut ar = MAGIC.to_vec();
            ar.extend(bad);
            let mut r = ArReader::new(ar.as_slice(), ar.len() as u64).unwrap();
            let err = r.next_member().err().unwrap().to_string();
            assert!(err.contains(why), "{err}");
        }
        assert!(ArReader::new(&b"nope"[..], 4).is_err());
    }

    /// Read every member to the end; errors are fine, panics and runaway reads are not.
    fn read_all(bytes: &[u8]) {
        let Ok(mut r) = ArReader::new(bytes, bytes.len() as u64) else { return };
        let mut total = 0u64;
        while let Ok(Some((_, mut data))) = r.next_member() {
            let mut buf = Vec::new();
            if data.read_to_end(&mut buf).is_err() {
                break;
            }
            total += buf.len() as u64;
        }
        assert!(total <= bytes.len() as u64, "read {total} bytes out of {}", bytes.len());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut ar = MAGIC.to_vec();
            ar.extend_from_slice(&tail);
            read_all(&ar);
            read_all(&tail);
        }

        #[test]
        fn damaged_archives_never_panic(flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..8), cut in 0usize..400) {
            let mut ar = MAGIC.to_vec();
            ar.extend(member("debian-binary", b"2.0\n"));
            ar.extend(member("control.tar", &[7u8; 101]));
            ar.extend(member("data.tar", &[9u8; 150]));
            for (at, byte) in flips {
                let i = at % ar.len();
                ar[i] = byte;
            }
            ar.truncate(cut.max(8).min(ar.len()));
            read_all(&ar);
        }
    }
}
