//! Lock files (`strata.lock` beside a description): the exact package set of an image and of
//! each base it derives from, so that a build months later, or on another machine, installs the
//! same packages and gives the same tree.
//!
//! A lock holds, per description of the chain that installs packages: its repositories (apt
//! source lines, or `rpm-md …` lines), the repository metadata the set was resolved against
//! (for apt, every file of apt's lists the image gets: the signed `InRelease` or `Release` and
//! the `Packages` indexes; for rpm-md, each `repomd.xml`), each by URL, size and SHA-256, and
//! every package chosen (name, version, architecture, the fields later steps read, and the
//! package file by URL, size and SHA-256; rpm-md packages in install order). It also holds the
//! tree of a base that is a store root or an OSTree commit.
//!
//! Invariants: a locked build reads nothing from a repository that the lock does not name by
//! checksum, so it never sees newer metadata; every file comes from the download cache or its
//! URL and is verified against the lock before use; what is no longer available is reported
//! whole, not one file per run. The lock file is TOML and written atomically.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::packages::deb::packages::Resolved;
use crate::packages::deb::repo::{parse_source_line, ListContent, ListFile, PackageRecord};
use crate::packages::deb::version::Version;
use crate::packages::fetch::{Fetcher, Want};
use crate::packages::rpm;
use crate::packages::rpm::repo::RpmRecord;
use crate::packages::rpm::version::Evr;
use crate::util::progress::Progress;

/// Which kind of repositories an image's set comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    #[default]
    Apt,
    RpmMd,
}

/// The lock file's name, in the description's directory.
pub const FILE_NAME: &str = "strata.lock";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    /// The tree the chain starts from when it derives from a store root or an OSTree commit.
    #[serde(default, rename = "base")]
    pub bases: Vec<LockedBase>,
    /// One per description of the chain that installs packages, base first.
    #[serde(default, rename = "image")]
    pub images: Vec<LockedImage>,
}

/// A base that is not a description: `root:NAME` or `ostree:REPO#REF`, and its tree id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedBase {
    pub name: String,
    pub tree: String,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Apt => "apt",
            Family::RpmMd => "rpm-md",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedImage {
    pub name: String,
    #[serde(default)]
    pub family: Family,
    pub arch: String,
    /// apt source lines, or `rpm-md …` lines as `--add-repo` takes them.
    pub sources: Vec<String>,
    #[serde(default, rename = "list")]
    pub lists: Vec<LockedList>,
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedList {
    /// apt's file name under `/var/lib/apt/lists`; `repomd.xml` for rpm-md.
    pub name: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    /// For an index: the name it was fetched under (`main/binary-amd64/Packages.xz`), which
    /// says how to decompress it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub essential: bool,
    pub url: String,
    pub size: u64,
    pub sha256: String,
}

impl Lock {
    /// Read and check a lock file.
    pub fn read(path: &Path) -> anyhow::Result<Lock> {
        let text = fs_err::read_to_string(path)?;
        let lock: Lock = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), one_line(&e)))?;
        if lock.version != VERSION {
            bail!("{}: lock format version {}; this strata reads version {VERSION}", path.display(), lock.version);
        }
        let mut problems = Vec::new();
        for image in &lock.images {
            for s in &image.sources {
                let bad = match image.family {
                    Family::Apt => parse_source_line(s).err(),
                    Family::RpmMd => (!s.starts_with("rpm-md ")).then(|| anyhow::anyhow!("expected `rpm-md …`")),
                };
                if let Some(e) = bad {
                    problems.push(format!("image {}: source `{s}`: {e:#}", image.name));
                }
            }
            let checks = image
                .lists
                .iter()
                .map(|l| (&l.name, &l.sha256))
                .chain(image.packages.iter().map(|p| (&p.name, &p.sha256)));
            for (name, sha) in checks {
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    problems.push(format!("image {}: {name}: `{sha}` is not a SHA-256 checksum", image.name));
                }
            }
            for p in &image.packages {
                let bad = match image.family {
                    Family::Apt => Version::parse(&p.version).err().map(|e| format!("{e:#}")),
                    Family::RpmMd => Evr::parse(&p.version).err().map(|e| e.to_string()),
                };
                if let Some(e) = bad {
                    problems.push(format!("image {}: package {}: version `{}`: {e}", image.name, p.name, p.version));
                }
            }
        }
        if !problems.is_empty() {
            bail!("{}: {} problems: {}", path.display(), problems.len(), problems.join("; "));
        }
        Ok(lock)
    }

    /// The lock as written: TOML with a comment saying what it is.
    pub fn to_text(&self) -> anyhow::Result<String> {
        let body = toml::to_string(self)?;
        Ok(format!(
            "# The exact package set of this description and its bases, written by `strata lock`.\n\
             # `strata build --locked` installs exactly this; `strata lock --update` refreshes it.\n{body}"
        ))
    }

    /// Write the lock to `path` atomically.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("lock.tmp");
        fs_err::write(&tmp, self.to_text()?)?;
        fs_err::rename(&tmp, path)?;
        Ok(())
    }

    /// Check that base `name` (`root:…`, `ostree:…`) is still the tree the lock holds.
    pub fn check_base(&self, name: &str, tree: &str) -> anyhow::Result<()> {
        match self.bases.iter().find(|b| b.name == name) {
            Some(b) if b.tree == tree => Ok(()),
            Some(b) => bail!(
                "derived-from {name} is tree {tree}, the lock holds {}: the base changed; `strata lock --update` locks it as it is now",
                b.tree
            ),
            None => bail!("the lock holds no tree for the base {name}: run `strata lock --update`"),
        }
    }

    /// The locked set of image `name`.
    pub fn image(&self, name: &str) -> Option<&LockedImage> {
        self.images.iter().find(|i| i.name == name)
    }

    /// Add or replace the locked set of an image.
    pub fn set(&mut self, image: LockedImage) {
        match self.images.iter_mut().find(|i| i.name == image.name) {
            Some(old) => *old = image,
            None => self.images.push(image),
        }
    }

    /// What differs from `older`, one line per base tree or package added, removed or changed.
    pub fn changes_since(&self, older: &Lock) -> Vec<String> {
        let mut out = Vec::new();
        for b in &self.bases {
            match older.bases.iter().find(|o| o.name == b.name) {
                Some(o) if o.tree != b.tree => out.push(format!("base {}: tree {} -> {}", b.name, o.tree, b.tree)),
                None => out.push(format!("base {}: tree {} added", b.name, b.tree)),
                _ => {}
            }
        }
        for image in &self.images {
            let before: BTreeMap<&str, &str> = older
                .image(&image.name)
                .map(|i| i.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect())
                .unwrap_or_default();
            let now: BTreeMap<&str, &str> =
                image.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
            for (name, v) in &now {
                match before.get(name) {
                    None => out.push(format!("{}: {name} {v} added", image.name)),
                    Some(b) if b != v => out.push(format!("{}: {name} {b} -> {v}", image.name)),
                    _ => {}
                }
            }
            for (name, v) in &before {
                if !now.contains_key(name) {
                    out.push(format!("{}: {name} {v} removed", image.name));
                }
            }
            let old_lists = older.image(&image.name).map(|i| &i.lists);
            if old_lists.is_some_and(|l| l != &image.lists) && !out.iter().any(|l| l.starts_with(&image.name)) {
                out.push(format!("{}: repository indexes changed", image.name));
            }
        }
        out
    }
}

fn one_line(e: &toml::de::Error) -> String {
    e.to_string().lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" ")
}

impl LockedImage {
    /// The locked form of a resolution. Lists fetched without a known checksum (the signed
    /// Release) are kept in `fetcher`'s cache, so that this machine can build the lock after the
    /// repository publishes a new one.
    pub fn of_apt(name: &str, arch: &str, resolved: &Resolved, fetcher: &Fetcher) -> anyhow::Result<LockedImage> {
        let lists = resolved
            .lists
            .iter()
            .map(|l| -> anyhow::Result<LockedList> {
                let (size, sha256, index) = match &l.content {
                    ListContent::Bytes(b) => (b.len() as u64, fetcher.keep(b)?, None),
                    ListContent::Index { path, compressed_name } => {
                        // Cached downloads are named by their SHA-256, checked when fetched.
                        let sha = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                        (fs_err::metadata(path)?.len(), sha, Some(compressed_name.clone()))
                    }
                };
                Ok(LockedList { name: l.name.clone(), url: l.url.clone(), size, sha256, index })
            })
            .collect::<anyhow::Result<_>>()?;
        let mut packages: Vec<LockedPackage> = resolved
            .chosen()
            .map(|r| LockedPackage {
                name: r.name.clone(),
                version: r.version.to_string(),
                architecture: r.architecture.clone(),
                multi_arch: r.multi_arch.clone(),
                priority: r.priority.clone(),
                essential: r.essential,
                url: r.want.url.clone(),
                size: r.want.size,
                sha256: r.want.sha256.clone(),
            })
            .collect();
        packages.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
        Ok(LockedImage {
            name: name.to_string(),
            family: Family::Apt,
            arch: arch.to_string(),
            sources: resolved.sources.iter().map(ToString::to_string).collect(),
            lists,
            packages,
        })
    }

    /// The locked form of an rpm-md resolution: the packages the image adds, in install order,
    /// and the `repomd.xml` files they were resolved against (kept in `fetcher`'s cache).
    pub fn of_rpm(
        name: &str,
        arch: &str,
        sources: Vec<String>,
        resolved: &rpm::packages::Resolved,
        fetcher: &Fetcher,
    ) -> anyhow::Result<LockedImage> {
        let lists = resolved
            .repomd
            .iter()
            .map(|(url, bytes)| -> anyhow::Result<LockedList> {
                let sha256 = fetcher.keep(bytes)?;
                Ok(LockedList {
                    name: "repomd.xml".into(),
                    url: url.clone(),
                    size: bytes.len() as u64,
                    sha256,
                    index: None,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let packages = resolved
            .chosen()
            .map(|r| LockedPackage {
                name: r.name.clone(),
                version: r.evr.to_string(),
                architecture: r.arch.clone(),
                multi_arch: None,
                priority: None,
                essential: false,
                url: r.want.url.clone(),
                size: r.want.size,
                sha256: r.want.sha256.clone(),
            })
            .collect();
        Ok(LockedImage {
            name: name.to_string(),
            family: Family::RpmMd,
            arch: arch.to_string(),
            sources,
            lists,
            packages,
        })
    }

    /// Refuse the lock's set for an image of another family or architecture.
    pub fn check_kind(&self, family: Family, arch: &str) -> anyhow::Result<()> {
        if self.family != family {
            bail!(
                "image {}: the lock holds a {} package set, the description installs from {} repositories: run `strata lock --update`",
                self.name,
                self.family.as_str(),
                family.as_str()
            );
        }
        if self.arch != arch {
            bail!("image {}: the lock is for {}, the build for {arch}", self.name, self.arch);
        }
        Ok(())
    }

    /// Name the packages the description asks for that neither the lock nor the base holds.
    fn check_wanted<'a>(&self, wanted: &[String], also: impl IntoIterator<Item = &'a str>) -> anyhow::Result<()> {
        let mut names: std::collections::BTreeSet<&str> = also.into_iter().collect();
        names.extend(self.packages.iter().map(|p| p.name.as_str()));
        let unlocked: Vec<&str> = wanted.iter().map(String::as_str).filter(|w| !names.contains(w)).collect();
        if !unlocked.is_empty() {
            bail!(
                "image {}: the description asks for {}, which the lock does not hold: run `strata lock --update`",
                self.name,
                unlocked.join(", ")
            );
        }
        Ok(())
    }

    /// The package files of the lock and its metadata files: all fetched, or all named.
    fn fetch(&self, fetcher: &Fetcher, progress: &Progress) -> anyhow::Result<()> {
        let wants: Vec<Want> = self
            .lists
            .iter()
            .map(|l| Want { url: l.url.clone(), size: l.size, sha256: l.sha256.clone() })
            .chain(self.packages.iter().map(|p| Want { url: p.url.clone(), size: p.size, sha256: p.sha256.clone() }))
            .collect();
        fetch_all_or_list(fetcher, &wants, progress).with_context(|| format!("image {}: locked files", self.name))
    }

    /// The rpm-md resolution the lock records on top of the base's `installed` packages, its
    /// files fetched and verified.
    pub fn rpm_resolved(
        &self,
        fetcher: &Fetcher,
        installed: Vec<RpmRecord>,
        wanted: &[String],
        progress: &Progress,
    ) -> anyhow::Result<rpm::packages::Resolved> {
        self.check_wanted(wanted, installed.iter().map(|r| r.name.as_str()))?;
        self.fetch(fetcher, progress)?;
        let mut records = installed;
        let first = records.len();
        for p in &self.packages {
            records.push(RpmRecord {
                name: p.name.clone(),
                arch: p.architecture.clone(),
                evr: Evr::parse(&p.version).map_err(|e| anyhow::anyhow!("package {}: {e}", p.name))?,
                provides: vec![],
                requires: vec![],
                conflicts: vec![],
                obsoletes: vec![],
                files: vec![],
                want: Want { url: p.url.clone(), size: p.size, sha256: p.sha256.clone() },
                unsupported: None,
                installed: false,
            });
        }
        let order = (first..records.len()).collect();
        let repomd = self
            .lists
            .iter()
            .map(|l| Ok((l.url.clone(), fs_err::read(fetcher.cached_path(&l.sha256))?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(rpm::packages::Resolved { records, order, repomd })
    }

    /// The apt resolution the lock records, its files fetched (from the download cache, or their
    /// URLs) and verified. `wanted` are the packages the description asks for: each must be in
    /// the lock. Everything missing is reported at once.
    pub fn apt_resolved(&self, fetcher: &Fetcher, wanted: &[String], progress: &Progress) -> anyhow::Result<Resolved> {
        self.check_wanted(wanted, [])?;
        let sources = self.sources.iter().map(|s| parse_source_line(s)).collect::<anyhow::Result<Vec<_>>>()?;
        self.fetch(fetcher, progress)?;
        let mut lists = Vec::new();
        for l in &self.lists {
            let path = fetcher.cached_path(&l.sha256);
            let content = match &l.index {
                Some(name) => ListContent::Index { path, compressed_name: name.clone() },
                None => ListContent::Bytes(fs_err::read(&path)?),
            };
            lists.push(ListFile { name: l.name.clone(), url: l.url.clone(), content });
        }
        let records = self
            .packages
            .iter()
            .map(|p| -> anyhow::Result<PackageRecord> {
                Ok(PackageRecord {
                    name: p.name.clone(),
                    version: Version::parse(&p.version)?,
                    architecture: p.architecture.clone(),
                    multi_arch: p.multi_arch.clone(),
                    priority: p.priority.clone(),
                    essential: p.essential,
                    depends: vec![],
                    pre_depends: vec![],
                    provides: vec![],
                    conflicts: vec![],
                    breaks: vec![],
                    want: Want { url: p.url.clone(), size: p.size, sha256: p.sha256.clone() },
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let chosen = (0..records.len()).collect();
        Ok(Resolved { records, chosen, lists, sources })
    }
}

/// Fetch every file not in the cache; when any fails, try each so that the error lists every
/// file that is no longer available.
fn fetch_all_or_list(fetcher: &Fetcher, wants: &[Want], progress: &Progress) -> anyhow::Result<()> {
    let missing: Vec<Want> = wants.iter().filter(|w| !fetcher.cached_path(&w.sha256).exists()).cloned().collect();
    if missing.is_empty() || fetcher.get_all(&missing, progress).is_ok() {
        return Ok(());
    }
    let gone: Vec<String> = missing
        .iter()
        .filter_map(|w| fetcher.get(w).err().map(|e| format!("{} ({})", w.url, one_line_err(&e))))
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    bail!(
        "{} files of the lock are no longer available (not in the download cache, and their repository no longer serves them): {}; \
         `strata lock --update` locks what the repositories offer now",
        gone.len(),
        gone.join(", ")
    )
}

fn one_line_err(e: &anyhow::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        Lock {
            version: VERSION,
            bases: vec![LockedBase { name: "root:tags/minimal".into(), tree: "c".repeat(64) }],
            images: vec![LockedImage {
                name: "base".into(),
                family: Family::Apt,
                arch: "amd64".into(),
                sources: vec!["deb [signed-by=/k.gpg] http://127.0.0.1:1/debian bookworm main".into()],
                lists: vec![LockedList {
                    name: "127.0.0.1:1_debian_dists_bookworm_InRelease".into(),
                    url: "http://127.0.0.1:1/debian/dists/bookworm/InRelease".into(),
                    size: 3,
                    sha256: "a".repeat(64),
                    index: None,
                }],
                packages: vec![LockedPackage {
                    name: "hello".into(),
                    version: "2.10-3".into(),
                    architecture: "amd64".into(),
                    multi_arch: None,
                    priority: Some("optional".into()),
                    essential: false,
                    url: "http://127.0.0.1:1/debian/pool/h/hello.deb".into(),
                    size: 10,
                    sha256: "b".repeat(64),
                }],
            }],
        }
    }

    #[test]
    fn a_lock_round_trips_and_says_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let lock = sample();
        lock.write(&path).unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(text.starts_with("# The exact package set") && text.contains("[[image.package]]"), "{text}");
        assert_eq!(Lock::read(&path).unwrap(), lock);
        let mut newer = lock.clone();
        newer.images[0].packages[0].version = "2.10-4".into();
        assert_eq!(newer.changes_since(&lock), ["base: hello 2.10-3 -> 2.10-4"]);
        assert!(lock.changes_since(&lock).is_empty());
        assert!(lock.check_base("root:tags/minimal", &"c".repeat(64)).is_ok());
        let err = lock.check_base("root:tags/minimal", &"d".repeat(64)).unwrap_err().to_string();
        assert!(err.contains("the base changed"), "{err}");
        assert!(lock.check_base("root:tags/other", "x").unwrap_err().to_string().contains("no tree for the base"));
    }

    #[test]
    fn every_problem_of_a_lock_is_named_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut lock = sample();
        lock.images[0].packages[0].sha256 = "nope".into();
        lock.images[0].packages[0].version = "".into();
        lock.images[0].sources[0] = "deb".into();
        fs_err::write(&path, lock.to_text().unwrap()).unwrap();
        let err = format!("{:#}", Lock::read(&path).unwrap_err());
        assert!(
            err.contains("3 problems") && err.contains("`nope` is not a SHA-256") && err.contains("source `deb`"),
            "{err}"
        );
        fs_err::write(&path, "version = 1\n[[image]]\nname = \"x\"\nmirror = 1\n").unwrap();
        let err = format!("{:#}", Lock::read(&path).unwrap_err());
        assert!(err.contains("unknown field `mirror`") && !err.contains('\n'), "{err}");
        fs_err::write(&path, "version = 9\n").unwrap();
        assert!(Lock::read(&path).unwrap_err().to_string().contains("lock format version 9"));
    }

    #[test]
    fn every_file_no_longer_served_is_named_in_one_error() {
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
        let err = format!("{:#}", fetch_all_or_list(&fetcher, &wants, &Progress::hidden()).unwrap_err());
        assert!(err.starts_with("2 files of the lock are no longer available"), "{err}");
        assert!(err.contains("gone/a.deb") && err.contains("gone/b.deb") && !err.contains("served.deb"), "{err}");
        assert!(fetcher.cached_path(&wants[0].sha256).exists(), "what is still served is fetched");
    }

    #[test]
    fn a_package_the_lock_lacks_is_named_before_anything_is_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(dir.path()).unwrap();
        let lock = sample();
        let err =
            lock.images[0].apt_resolved(&fetcher, &["hello".into(), "nano".into()], &Progress::hidden()).err().unwrap();
        assert!(err.to_string().contains("asks for nano, which the lock does not hold"), "{err}");
    }
}
