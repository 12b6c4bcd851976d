//! Trimming the download cache (`<store>/cache/downloads`).
//!
//! Files live under `sha256/<hex>`; a fetch that finds one marks it used (its mtime), so the
//! oldest mtime is the least recently used file. Invariants: a file the fetcher was asked to
//! keep (signed Release and repomd files a lock names; they are hardlinked under `kept/`) is never
//! trimmed: a lock must stay buildable after the mirror moves on; a download in progress (under
//! `partial/`) is left alone unless untouched for a day; anything trimmed is fetched again when
//! needed, its checksum checked as always.

use std::path::Path;
use std::time::{Duration, SystemTime};

use std::os::unix::fs::MetadataExt;

/// What trimming removed (or would remove), and what stays.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Trimmed {
    pub files: u64,
    pub bytes: u64,
    /// What the cache holds afterwards.
    pub remaining_files: u64,
    pub remaining_bytes: u64,
}

/// Partial downloads untouched this long are abandoned.
const PARTIAL_AGE: Duration = Duration::from_secs(86400);

/// Trim the cache in `dir`: files unused for longer than `max_age` seconds, then the least
/// recently used until it holds at most `max` bytes; with neither, only abandoned partial
/// downloads go.
pub fn trim(dir: &Path, max: Option<u64>, max_age: Option<u64>, dry_run: bool) -> anyhow::Result<Trimmed> {
    let mut out = Trimmed::default();
    let now = SystemTime::now();
    let partial = dir.join("partial");
    if partial.is_dir() {
        for e in fs_err::read_dir(&partial)? {
            let e = e?;
            let meta = e.metadata()?;
            let age = now.duration_since(meta.modified()?).unwrap_or_default();
            if meta.is_file() && age > PARTIAL_AGE {
                out.files += 1;
                out.bytes += meta.len();
                if !dry_run {
                    fs_err::remove_file(e.path())?;
                }
            }
        }
    }
    let files_dir = dir.join("sha256");
    let mut files = Vec::new();
    if files_dir.is_dir() {
        for e in fs_err::read_dir(&files_dir)? {
            let e = e?;
            let meta = e.metadata()?;
            if meta.is_file() {
                files.push((meta.modified()?, meta.len(), meta.nlink() > 1, e.path()));
            }
        }
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    let mut remaining = files.len() as u64;
    if let Some(age) = max_age {
        let mut kept_files = Vec::new();
        for f in files {
            let unused = now.duration_since(f.0).unwrap_or_default();
            if !f.2 && unused > Duration::from_secs(age) {
                total -= f.1;
                remaining -= 1;
                out.files += 1;
                out.bytes += f.1;
                if !dry_run {
                    fs_err::remove_file(&f.3)?;
                }
            } else {
                kept_files.push(f);
            }
        }
        files = kept_files;
    }
    if let Some(max) = max {
        files.sort();
        for (_, len, kept, path) in &files {
            if total <= max {
                break;
            }
            if *kept {
                continue;
            }
            total -= len;
            remaining -= 1;
            out.files += 1;
            out.bytes += len;
            if !dry_run {
                fs_err::remove_file(path)?;
            }
        }
    }
    out.remaining_files = remaining;
    out.remaining_bytes = total;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, len: usize, age_secs: u64) -> std::path::PathBuf {
        let p = dir.join(name);
        fs_err::write(&p, vec![0u8; len]).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_secs)).unwrap();
        p
    }

    #[test]
    fn least_recently_used_go_first_and_kept_files_stay() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["sha256", "partial", "kept"] {
            fs_err::create_dir_all(d.path().join(sub)).unwrap();
        }
        let s = d.path().join("sha256");
        let old = file(&s, "a", 1000, 300);
        let kept = file(&s, "b", 1000, 400);
        fs_err::hard_link(&kept, d.path().join("kept/b")).unwrap();
        let mid = file(&s, "c", 1000, 200);
        let new = file(&s, "d", 1000, 100);
        let stale = file(&d.path().join("partial"), "e", 10, 2 * 86400);
        let fresh = file(&d.path().join("partial"), "f", 10, 60);

        let by_age = trim(d.path(), None, Some(250), true).unwrap();
        assert_eq!((by_age.files, by_age.bytes), (2, 10 + 1000), "the stale partial and `a`; `b` is kept: {by_age:?}");
        let dry = trim(d.path(), Some(2500), None, true).unwrap();
        assert_eq!((dry.files, dry.bytes), (3, 2010), "{dry:?}");
        assert!(old.exists() && stale.exists(), "a dry run removes nothing");

        let t = trim(d.path(), Some(2500), None, false).unwrap();
        assert_eq!((t.files, t.bytes, t.remaining_files, t.remaining_bytes), (3, 2010, 2, 2000), "{t:?}");
        assert!(!old.exists() && !mid.exists() && !stale.exists());
        assert!(kept.exists() && new.exists() && fresh.exists());

        let none = trim(d.path(), None, None, false).unwrap();
        assert_eq!(none.files, 0);
        assert_eq!(none.remaining_bytes, 2000);
    }
}
