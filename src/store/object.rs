//! File objects: writing them into `objects/` and reading their on-disk state back.
//!
//! An object file holds the content and carries the object's metadata (owner, mode, xattrs) and
//! mtime 0, so that a hardlinked checkout is already right. Objects are written to a temporary file
//! under `tmp/`, given their metadata, and renamed into place; a rename over an existing object file
//! is harmless because an object id names one content and one metadata. Holes in sparse files are
//! kept. [`ObjectStore`] is a small `Sync` handle so that rayon workers can write objects while the
//! database stays on one thread.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::store::digest::Digest;
use crate::store::meta::Meta;

/// Where objects live, and whether their exact ownership can be applied.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    objects: PathBuf,
    tmp: PathBuf,
    privileged: bool,
}

/// What a file looked like when it was hashed, to notice it changing before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(st: &std::fs::Metadata) -> Stamp {
        Stamp { size: st.len(), mtime: (st.mtime(), st.mtime_nsec()), ctime: (st.ctime(), st.ctime_nsec()) }
    }
}

impl ObjectStore {
    pub fn new(objects: PathBuf, tmp: PathBuf, privileged: bool) -> ObjectStore {
        ObjectStore { objects, tmp, privileged }
    }

    pub fn dir(&self) -> &Path {
        &self.objects
    }

    pub fn path(&self, id: &Digest) -> PathBuf {
        let hex = id.to_hex();
        self.objects.join(&hex[..2]).join(&hex[2..])
    }

    /// The mode an object file gets on disk: exact when privileged; otherwise always readable by
    /// its owner, so the store can read its own objects back.
    pub fn disk_mode(&self, meta: &Meta) -> u32 {
        if self.privileged {
            meta.mode
        } else {
            meta.mode | 0o400
        }
    }

    /// Store the file at `src` as object `id`. `stamp` is what the file looked like when it was
    /// hashed: if it changed since, the import fails instead of storing content under a wrong id.
    pub fn insert_file(&self, id: &Digest, src: &Path, stamp: Stamp, meta: &Meta) -> anyhow::Result<()> {
        let source = open_no_follow(src)?;
        let tmp = tempfile::Builder::new()
            .prefix(".obj-")
            .tempfile_in(&self.tmp)
            .with_context(|| format!("failed to create a temporary file in `{}`", self.tmp.display()))?;
        copy_sparse(source.file(), tmp.as_file(), stamp.size)
            .with_context(|| format!("failed to copy `{}` into the store", src.display()))?;
        let now = Stamp::of(&source.metadata()?);
        if now != stamp {
            anyhow::bail!(
                "`{}` changed while it was being imported; try again when it is not being written",
                src.display()
            );
        }
        self.finish(id, tmp, meta)
    }

    /// Write the content of `reader` (at most `limit` bytes) to a temporary file while hashing it.
    /// The caller asks the database whether the object is known, then [`commit`](Self::commit)s
    /// or drops the result: content from a stream is read exactly once.
    pub fn stage(&self, reader: &mut dyn io::Read, meta: &Meta, limit: u64) -> anyhow::Result<Staged> {
        use std::io::Write;
        let mut tmp = tempfile::Builder::new()
            .prefix(".obj-")
            .tempfile_in(&self.tmp)
            .with_context(|| format!("failed to create a temporary file in `{}`", self.tmp.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 128 * 1024];
        let mut size: u64 = 0;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > limit {
                anyhow::bail!("content is larger than the limit of {limit} bytes");
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).with_context(|| format!("failed to write `{}`", tmp.path().display()))?;
        }
        let content: Digest = hasher.finalize().into();
        Ok(Staged { id: crate::store::tree::object_id(meta, size, &content), size, content, meta: meta.clone(), tmp })
    }

    /// Move a staged object into place.
    pub fn commit(&self, staged: Staged) -> anyhow::Result<()> {
        self.finish(&staged.id, staged.tmp, &staged.meta)
    }

    /// Give a written temporary file the object's metadata and move it into place.
    fn finish(&self, id: &Digest, tmp: tempfile::NamedTempFile, meta: &Meta) -> anyhow::Result<()> {
        use nix::sys::stat::{fchmod, futimens, Mode};
        use nix::sys::time::TimeSpec;
        let file = tmp.as_file();
        let fd = file.as_raw_fd();
        let ctx = || format!("failed to set the metadata of object {id}");
        if self.privileged {
            nix::unistd::fchown(fd, Some(meta.uid.into()), Some(meta.gid.into())).with_context(ctx)?;
        }
        fchmod(fd, Mode::from_bits_retain(self.disk_mode(meta))).with_context(ctx)?;
        for (name, value) in &meta.xattrs {
            if !self.privileged && !name.starts_with(b"user.") {
                continue;
            }
            use std::os::unix::ffi::OsStrExt;
            xattr::FileExt::set_xattr(file, std::ffi::OsStr::from_bytes(name), value).with_context(ctx)?;
        }
        futimens(fd, &TimeSpec::new(0, 0), &TimeSpec::new(0, 0)).with_context(ctx)?;
        let dest = self.path(id);
        tmp.persist(&dest)
            .map_err(|e| e.error)
            .with_context(|| format!("failed to move object into `{}`", dest.display()))?;
        Ok(())
    }
}

/// An object written to `tmp/` and hashed, not yet moved into `objects/`. Dropping it deletes it.
pub struct Staged {
    pub id: Digest,
    pub size: u64,
    pub content: Digest,
    meta: Meta,
    tmp: tempfile::NamedTempFile,
}

/// Open a file of a tree being imported for reading, refusing a symlink: a file swapped for a
/// link after the scan must not pull content from outside the tree.
pub fn open_no_follow(path: &Path) -> std::io::Result<fs_err::File> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    fs_err::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path)
}

/// Copy `size` bytes from `src` to `dst`, keeping holes: only data ranges are copied (in the
/// kernel where it can), then the length is set.
pub fn copy_sparse(src: &std::fs::File, dst: &std::fs::File, size: u64) -> io::Result<()> {
    use nix::unistd::{lseek, Whence};
    let mut pos: i64 = 0;
    let end = size as i64;
    while pos < end {
        let data = match lseek(src.as_raw_fd(), pos, Whence::SeekData) {
            Ok(p) => p,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole remains
            Err(nix::errno::Errno::EINVAL) => pos,  // no SEEK_DATA support: copy everything
            Err(e) => return Err(e.into()),
        };
        if data >= end {
            break;
        }
        let hole = match lseek(src.as_raw_fd(), data, Whence::SeekHole) {
            Ok(h) => h.min(end),
            Err(_) => end,
        };
        copy_range(src, dst, data, hole - data)?;
        pos = hole;
    }
    dst.set_len(size)
}

/// Copy one byte range, with `copy_file_range` (which reflinks where the file system can) and a
/// read/write fallback.
fn copy_range(src: &std::fs::File, dst: &std::fs::File, start: i64, len: i64) -> io::Result<()> {
    let mut off_in = start;
    let mut off_out = start;
    let end = start + len;
    while off_in < end {
        let want = (end - off_in).min(1 << 30) as usize;
        match nix::fcntl::copy_file_range(src.as_fd(), Some(&mut off_in), dst.as_fd(), Some(&mut off_out), want) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being copied")),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return copy_range_userspace(src, dst, off_in, end - off_in),
        }
    }
    Ok(())
}

fn copy_range_userspace(src: &std::fs::File, dst: &std::fs::File, start: i64, len: i64) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = start as u64;
    let end = (start + len) as u64;
    while off < end {
        let want = ((end - off) as usize).min(buf.len());
        let n = src.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being copied"));
        }
        dst.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// blake3 of a file's content, read through a large buffer; large files are hashed on all cores.
pub fn hash_file(file: &mut std::fs::File, size: u64) -> io::Result<Digest> {
    use std::io::Read;
    let mut hasher = blake3::Hasher::new();
    if size >= 4 << 20 {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update_rayon(&buf[..n]);
        }
    } else {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sparse_keeps_holes_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let src = fs_err::File::create(&src_path).unwrap();
        src.file().write_all_at(b"head", 0).unwrap();
        src.file().write_all_at(b"tail", 64 << 20).unwrap();
        src.set_len((64 << 20) + 4096).unwrap();
        let dst_path = dir.path().join("dst");
        let dst = fs_err::File::create(&dst_path).unwrap();
        let size = src.metadata().unwrap().len();
        copy_sparse(&fs_err::File::open(&src_path).unwrap().into_parts().0, dst.file(), size).unwrap();
        let a = fs_err::read(&src_path).unwrap();
        let b = fs_err::read(&dst_path).unwrap();
        assert_eq!(a, b);
        assert!(dst.metadata().unwrap().blocks() * 512 < 1 << 20, "destination is not sparse");
    }
}
