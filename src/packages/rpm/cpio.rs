//! The `newc` cpio archives that carry RPM payloads, read as a stream.
//!
//! Each member is a 110-byte ASCII header (`070701` and thirteen 8-digit hex fields), its name
//! (NUL-terminated, padded with the header to 4 bytes) and its data (padded to 4 bytes); the
//! member `TRAILER!!!` ends the archive. Names and sizes are checked before anything is read.

use std::io::Read;

use anyhow::{bail, Context};

/// The longest member name accepted (Linux's `PATH_MAX`).
const MAX_NAME: u64 = 4096;

/// One member's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: Vec<u8>,
    pub ino: u32,
    pub mode: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

pub struct Reader<R> {
    inner: R,
    /// Data bytes of the current member not read yet, and its padding.
    left: u64,
    pad: u64,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Reader<R> {
        Reader { inner, left: 0, pad: 0 }
    }

    /// The next member's header, or `None` at the trailer. The member's data is then read
    /// through [`Reader::data`]; whatever is left of it is skipped.
    pub fn next_member(&mut self) -> anyhow::Result<Option<Member>> {
        let skip = self.left + self.pad;
        let skipped = std::io::copy(&mut (&mut self.inner).take(skip), &mut std::io::sink())?;
        if skipped != skip {
            bail!("truncated archive");
        }
        self.left = 0;
        self.pad = 0;
        let mut h = [0u8; 110];
        self.inner.read_exact(&mut h).context("truncated archive (no trailer)")?;
        match &h[..6] {
            b"070701" | b"070702" => {}
            b"07070X" => bail!("the stripped cpio format (packages with files over 4 GiB) is not supported"),
            m => bail!("bad cpio magic `{}`", String::from_utf8_lossy(m)),
        }
        let field = |i: usize| -> anyhow::Result<u32> {
            let text = std::str::from_utf8(&h[6 + i * 8..14 + i * 8]).ok();
            text.and_then(|t| u32::from_str_radix(t, 16).ok()).context("bad cpio header field")
        };
        let name_size = field(11)? as u64;
        if name_size == 0 || name_size > MAX_NAME {
            bail!("cpio member name of {name_size} bytes");
        }
        let mut name = vec![0u8; name_size as usize];
        self.inner.read_exact(&mut name).context("truncated member name")?;
        if name.pop() != Some(0) || name.contains(&0) {
            bail!("cpio member name is not NUL-terminated");
        }
        let name_pad = (4 - (110 + name_size) % 4) % 4;
        if std::io::copy(&mut (&mut self.inner).take(name_pad), &mut std::io::sink())? != name_pad {
            bail!("truncated archive");
        }
        let size = field(6)? as u64;
        if name == b"TRAILER!!!" {
            return Ok(None);
        }
        self.left = size;
        self.pad = (4 - size % 4) % 4;
        Ok(Some(Member {
            name,
            ino: field(0)?,
            mode: field(1)?,
            nlink: field(4)?,
            size,
            rdev_major: field(9)?,
            rdev_minor: field(10)?,
        }))
    }

    /// The current member's data.
    pub fn data(&mut self) -> impl Read + '_ {
        DataReader { r: self }
    }
}

struct DataReader<'a, R> {
    r: &'a mut Reader<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.r.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.r.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated member data"));
        }
        self.r.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A newc archive of `(name, mode, data)` members, as rpm writes them.
    pub(crate) fn archive(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |name: &str, mode: u32, data: &[u8], ino: u32| {
            let header = format!(
                "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                0,
                0,
                name.len() + 1,
                0
            );
            out.extend(header.as_bytes());
            out.extend(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        for (i, (name, mode, data)) in members.iter().enumerate() {
            put(name, *mode, data, i as u32 + 1);
        }
        put("TRAILER!!!", 0, b"", 0);
        out
    }

    #[test]
    fn members_and_data_in_order_with_unread_data_skipped() {
        let bytes = archive(&[("./usr", 0o40755, b""), ("./usr/a", 0o100644, b"hello"), ("./usr/b", 0o100600, b"xyz")]);
        let mut r = Reader::new(bytes.as_slice());
        let m = r.next_member().unwrap().unwrap();
        assert_eq!((m.name.as_slice(), m.mode), (&b"./usr"[..], 0o40755));
        let m = r.next_member().unwrap().unwrap();
        assert_eq!(m.size, 5);
        // Not read: skipped by the next call.
        let m = r.next_member().unwrap().unwrap();
        let mut data = String::new();
        r.data().read_to_string(&mut data).unwrap();
        assert_eq!((m.name.as_slice(), data.as_str()), (&b"./usr/b"[..], "xyz"));
        assert!(r.next_member().unwrap().is_none());
    }

    #[test]
    fn damaged_archives_are_errors() {
        let good = archive(&[("./a", 0o100644, b"hello world")]);
        // Cut anywhere: an error, never a panic or a member past the end.
        for cut in 0..good.len() - 1 {
            let mut r = Reader::new(&good[..cut]);
            let result = (|| -> anyhow::Result<()> {
                while r.next_member()?.is_some() {
                    std::io::copy(&mut r.data(), &mut std::io::sink())?;
                }
                Ok(())
            })();
            assert!(result.is_err(), "cut at {cut}");
        }
        let mut bad = good.clone();
        bad[0] = b'1';
        assert!(Reader::new(bad.as_slice()).next_member().unwrap_err().to_string().contains("magic"));
        let mut huge_name = good;
        huge_name[6 + 11 * 8..14 + 11 * 8].copy_from_slice(b"7fffffff");
        assert!(Reader::new(huge_name.as_slice()).next_member().is_err());
    }
}
