//! Parallel gzip for layers: the stream is cut into fixed chunks, each compressed on its own as
//! a gzip member, the members written in order.
//!
//! A file of several gzip members is one gzip file (RFC 1952, section 2.2): `gzip -d`, Go's
//! `compress/gzip` (which container tools use), Python and flate2's `MultiGzDecoder` read it
//! whole. Invariant: the output depends only on the input bytes (fixed chunk size, fixed level,
//! members in input order, no timestamps or names in the headers), not on the number of cores.

use std::io::Write;

use rayon::prelude::*;

/// Bytes per member: large enough that the restarted dictionary costs little.
const CHUNK: usize = 1 << 20;

/// A writer that gzips what it is given, `batch` chunks at a time in parallel, into `inner`.
pub struct ParGz<W: Write> {
    inner: W,
    pending: Vec<u8>,
    batch: usize,
    /// Whether a member was written.
    wrote: bool,
}

impl<W: Write> ParGz<W> {
    pub fn new(inner: W) -> Self {
        let batch = 2 * rayon::current_num_threads().max(1);
        ParGz { inner, pending: Vec::with_capacity(CHUNK * batch), batch, wrote: false }
    }

    /// Compress the whole chunks pending (all of them, with `last`), in parallel, in order.
    fn flush_chunks(&mut self, last: bool) -> std::io::Result<()> {
        let whole = if last { self.pending.len() } else { self.pending.len() / CHUNK * CHUNK };
        if whole == 0 {
            return Ok(());
        }
        let members: Vec<std::io::Result<Vec<u8>>> = self.pending[..whole]
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::with_capacity(chunk.len() / 2), flate2::Compression::default());
                gz.write_all(chunk)?;
                gz.finish()
            })
            .collect();
        for m in members {
            self.inner.write_all(&m?)?;
            self.wrote = true;
        }
        self.pending.drain(..whole);
        Ok(())
    }

    /// Write what is left and return the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.pending.is_empty() && !self.wrote {
            // An empty stream is still one (empty) member: a file of no members is not gzip.
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            self.inner.write_all(&gz.finish()?)?;
        }
        self.flush_chunks(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= CHUNK * self.batch {
            self.flush_chunks(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_read_back_whole_and_do_not_depend_on_cores() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345)).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect();
        let mut a = ParGz::new(Vec::new());
        for piece in data.chunks(77_777) {
            a.write_all(piece).unwrap();
        }
        let a = a.finish().unwrap();
        let mut one = ParGz { inner: Vec::new(), pending: Vec::new(), batch: 1, wrote: false };
        one.write_all(&data).unwrap();
        assert_eq!(one.finish().unwrap(), a, "the same bytes whatever the batch");
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&a[..]), &mut back).unwrap();
        assert_eq!(back, data);
        let empty = ParGz::new(Vec::new()).finish().unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&empty[..]), &mut back).unwrap();
        assert!(back.is_empty() && !empty.is_empty());
    }
}
