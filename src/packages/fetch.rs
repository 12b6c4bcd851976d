//! Downloads into the store's checksum-keyed cache (`cache/downloads/sha256/<hex>`).
//!
//! A file is downloaded to `cache/downloads/partial/<hex>`, resumed with an HTTP range request
//! when a partial file exists, and moved into place only after its size and SHA-256 match what the
//! (signed) index promised: a partial or mismatching file is never used. `file://` URLs are read
//! from the local file system through the same checks. Several files download in parallel. A file
//! found in the cache is marked used (its mtime), for `strata gc --max-download-cache`; files kept
//! for lock files ([`Fetcher::keep`]) have a second name under `kept/` and are never trimmed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::util::progress::Progress;

/// How many downloads run at once.
const PARALLEL: usize = 6;
/// The largest file fetched without a known checksum (Release, InRelease, signatures).
const MAX_UNVERIFIED: u64 = 64 << 20;

/// A file to fetch, with what the index says about it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Want {
    pub url: String,
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

pub struct Fetcher {
    dir: PathBuf,
    agent: ureq::Agent,
}

impl Fetcher {
    /// A fetcher caching under `dir` (the store's `cache/downloads`).
    pub fn new(dir: &Path) -> anyhow::Result<Fetcher> {
        fs_err::create_dir_all(dir.join("sha256"))?;
        fs_err::create_dir_all(dir.join("partial"))?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(120))
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Fetcher { dir: dir.to_path_buf(), agent })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache path of a file with this SHA-256 (present or not).
    pub fn cached_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("sha256").join(sha256)
    }

    /// Fetch a small file whose checksum is not known in advance (it is verified by signature).
    /// Returns `None` for HTTP 404 / a missing local file.
    pub fn get_small(&self, url: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut reader = match self.open(url, 0)? {
            Some((r, _)) => r,
            None => return Ok(None),
        };
        let mut buf = Vec::new();
        reader
            .by_ref()
            .take(MAX_UNVERIFIED + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("failed to read {url}"))?;
        if buf.len() as u64 > MAX_UNVERIFIED {
            bail!("{url} is larger than {MAX_UNVERIFIED} bytes");
        }
        Ok(Some(buf))
    }

    /// Fetch one verified file into the cache (or find it there) and return its path.
    pub fn get(&self, want: &Want) -> anyhow::Result<PathBuf> {
        let sha = want.sha256.to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{}: `{}` is not a SHA-256 checksum", want.url, want.sha256);
        }
        let done = self.cached_path(&sha);
        if done.exists() {
            return Ok(done);
        }
        // One downloader per file, across threads and processes: the others wait, then find it done.
        let lock_file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("partial").join(format!("{sha}.lock")))?;
        let _lock = nix::fcntl::Flock::lock(lock_file.into_parts().0, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::Error::new(e).context(format!("failed to lock the download of {}", want.url)))?;
        if done.exists() {
            return Ok(done);
        }
        let partial = self.dir.join("partial").join(&sha);
        let have = fs_err::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        let have = if have >= want.size { 0 } else { have };
        let (mut reader, resumed) =
            self.open(&want.url, have)?.ok_or_else(|| anyhow::anyhow!("{}: not found (404)", want.url))?;
        let mut file = if resumed {
            fs_err::OpenOptions::new().append(true).open(&partial)?
        } else {
            fs_err::File::create(&partial)?
        };
        let limit = want.size - if resumed { have } else { 0 };
        let copied = std::io::copy(&mut reader.by_ref().take(limit + 1), &mut file)
            .with_context(|| format!("download of {} was interrupted; run again to resume", want.url))?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        let total = if resumed { have + copied } else { copied };
        let actual = crate::util::hash::sha256_file(&partial)?;
        if total != want.size || actual != sha {
            fs_err::remove_file(&partial)?;
            bail!(
                "{}: expected {} bytes with SHA-256 {sha}, got {total} bytes with SHA-256 {actual}; the file was discarded",
                want.url,
                want.size
            );
        }
        fs_err::rename(&partial, &done)?;
        Ok(done)
    }

    /// Keep `bytes` (verified by other means, as a signed Release is) in the cache under their
    /// SHA-256, which is returned: later fetches by that checksum find them there.
    pub fn keep(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let sha = crate::util::hash::sha256_bytes(bytes);
        let done = self.cached_path(&sha);
        if !done.exists() {
            let tmp = self.dir.join("partial").join(format!("{sha}.{}.kept", std::process::id()));
            fs_err::write(&tmp, bytes)?;
            fs_err::rename(&tmp, &done)?;
        }
        // A second name under `kept/` keeps it from the cache's trimming (`strata gc`).
        let kept = self.dir.join("kept");
        fs_err::create_dir_all(&kept)?;
        match fs_err::hard_link(&done, kept.join(&sha)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        Ok(sha)
    }

    /// Fetch many files, several at a time; paths come back in the order of `wants`.
    pub fn get_all(&self, wants: &[Want], progress: &Progress) -> anyhow::Result<Vec<PathBuf>> {
        // The same file wanted twice (two sources listing one index) is fetched once.
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<Want> = wants.iter().filter(|w| seen.insert(w.sha256.to_ascii_lowercase())).cloned().collect();
        self.get_unique(&unique, progress)?;
        // A verified file's path follows from its checksum.
        let paths: Vec<PathBuf> = wants.iter().map(|w| self.cached_path(&w.sha256.to_ascii_lowercase())).collect();
        // Marked used: the cache's trimming removes the least recently used first.
        let now = std::time::SystemTime::now();
        for p in &paths {
            if let Ok(f) = std::fs::File::options().write(true).open(p) {
                let _ = f.set_modified(now);
            }
        }
        Ok(paths)
    }

    fn get_unique(&self, wants: &[Want], progress: &Progress) -> anyhow::Result<()> {
        let total: u64 = wants.iter().filter(|w| !self.cached_path(&w.sha256).exists()).map(|w| w.size).sum();
        let bar = progress.bytes(total, "downloading");
        let next = AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<anyhow::Result<PathBuf>>>> =
            wants.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..PARALLEL.min(wants.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(want) = wants.get(i) else { break };
                    let cached = self.cached_path(&want.sha256).exists();
                    let r = self.get(want);
                    if !cached {
                        bar.inc(want.size);
                    }
                    *results[i].lock().expect("lock") = Some(r);
                });
            }
        });
        bar.finish_and_clear();
        // Every failure at once: a run that fixes one missing file should not find the next.
        let mut failed: Vec<anyhow::Error> = results
            .into_iter()
            .filter_map(|r| r.into_inner().expect("lock").expect("every file tried").err())
            .collect();
        match failed.len() {
            0 => Ok(()),
            1 => Err(failed.remove(0)),
            n => {
                let each: Vec<String> = failed.iter().map(|e| format!("{e:#}").replace('\n', " ")).collect();
                bail!("{n} downloads failed: {}", each.join("; "))
            }
        }
    }

    /// Open `url` from byte `from`; returns the reader and whether it starts at `from` (resumed).
    fn open(&self, url: &str, from: u64) -> anyhow::Result<Option<(Box<dyn Read + Send>, bool)>> {
        if let Some(path) = url.strip_prefix("file://") {
            let mut file = match fs_err::File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if from > 0 {
                use std::io::Seek;
                file.seek(std::io::SeekFrom::Start(from))?;
            }
            return Ok(Some((Box::new(file), from > 0)));
        }
        if !url.starts_with("http://") && !url.starts_with("https://") {
            bail!("{url}: only http://, https:// and file:// URLs are supported");
        }
        let mut req = self.agent.get(url);
        if from > 0 {
            req = req.set("Range", &format!("bytes={from}-"));
        }
        match req.call() {
            Ok(resp) => {
                let resumed = from > 0 && resp.status() == 206;
                Ok(Some((Box::new(resp.into_reader()), resumed)))
            }
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(ureq::Error::Status(code, resp)) => bail!("{url}: HTTP {code} {}", resp.status_text()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("failed to fetch {url}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_that_cannot_be_fetched_is_named_in_one_error() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(&dir.path().join("cache")).unwrap();
        let served = dir.path().join("served.deb");
        fs_err::write(&served, b"still here").unwrap();
        let want = |url: String, bytes: &[u8]| Want {
            url,
            size: bytes.len() as u64,
            sha256: crate::util::hash::sha256_bytes(bytes),
        };
        let gone = dir.path().join("gone");
        let wants = [
            want(format!("file://{}", served.display()), b"still here"),
            want(format!("file://{}/a.deb", gone.display()), b"a"),
            want(format!("file://{}/b.deb", gone.display()), b"b"),
        ];
        let err = format!("{:#}", fetcher.get_all(&wants, &Progress::hidden()).unwrap_err());
        assert!(err.starts_with("2 downloads failed: "), "{err}");
        assert!(err.contains("gone/a.deb") && err.contains("gone/b.deb") && !err.contains("served.deb"), "{err}");
        assert!(fetcher.cached_path(&wants[0].sha256).exists(), "what can be fetched is");
    }
}
