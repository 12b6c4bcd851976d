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
//! It also holds what the description asked (repositories, packages named, excludes): a locked
//! build of a description that asks something else is refused, naming every difference.
//!
//! Invariants: a locked build reads nothing from a repository that the lock does not name by
//! checksum, so it never sees newer metadata; every file comes from the download cache or its
//! URL and is checked against the lock; the lock's metadata is then verified as a fresh
//! resolution verifies what it fetched (the apt Release or rpm-md `repomd.xml` signature with
//! the description's keys, each index by its signed checksum), and every locked package must be
//! one that metadata offers, with the same checksum. A lock file is untrusted input: it can pin
//! an older set, never bring in a package its repositories' keys did not sign for. What is no
//! longer available is reported whole, not one file per run. The file is TOML, written
//! atomically.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::packages::deb::packages::Resolved;
use crate::packages::deb::repo::{parse_source_line, verify_lists, AptSource, ListContent, ListFile, PackageRecord};
use crate::packages::deb::version::Version;
use crate::packages::fetch::{Fetcher, Want};
use crate::packages::rpm;
use crate::packages::rpm::repo::{RpmRecord, RpmSource};
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
    /// The packages the description named (bootstrap and install), sorted.
    #[serde(default)]
    pub install: Vec<String>,
    /// The packages the chain excludes, sorted.
    #[serde(default)]
    pub exclude: Vec<String>,
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
                if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    problems.push(format!(
                        "image {}: {name}: `{sha}` is not a SHA-256 checksum (64 lower-case hex digits)",
                        image.name
                    ));
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

    /// The locked set of image `name`, checked against what its description asks
    /// ([`LockedImage::check`]); an error when the lock holds none.
    pub fn section(&self, name: &str, family: Family, arch: &str, asked: &Asked) -> anyhow::Result<&LockedImage> {
        let locked = self
            .image(name)
            .with_context(|| format!("the lock holds no package set for image `{name}`: run `strata lock --update`"))?;
        locked.check(family, arch, asked)?;
        Ok(locked)
    }

    /// The locked set of image `name`.
    pub fn image(&self, name: &str) -> Option<&LockedImage> {
        self.images.iter().find(|i| i.name == name)
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
            let prefix = format!("{}: ", image.name);
            let old_lists = older.image(&image.name).map(|i| &i.lists);
            if old_lists.is_some_and(|l| l != &image.lists) && !out.iter().any(|l| l.starts_with(&prefix)) {
                out.push(format!("{prefix}repository metadata changed"));
            }
        }
        for old in &older.images {
            if self.image(&old.name).is_none() {
                out.push(format!("{}: no longer installs packages", old.name));
            }
        }
        for old in &older.bases {
            if !self.bases.iter().any(|b| b.name == old.name) {
                out.push(format!("base {}: no longer a base", old.name));
            }
        }
        out
    }
}

fn one_line(e: &toml::de::Error) -> String {
    e.to_string().lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" ")
}

/// What a description asks of its packages step: the lock holds it, and a locked build refuses
/// a description that asks something else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    /// Repository lines, as the lock writes them.
    pub sources: Vec<String>,
    /// The packages named (bootstrap and install), sorted.
    pub install: Vec<String>,
    /// The packages excluded by the chain, sorted.
    pub exclude: Vec<String>,
}

impl Asked {
    pub fn new(sources: Vec<String>, install: &[String], exclude: &[String]) -> Asked {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        Asked { sources, install: sorted(install), exclude: sorted(exclude) }
    }
}

impl LockedImage {
    /// The locked form of an apt resolution. Lists fetched without a known checksum (the
    /// signed Release) are kept in `fetcher`'s cache, so that this machine can build the lock
    /// after the repository publishes a new one.
    pub fn of_apt(
        name: &str,
        arch: &str,
        asked: Asked,
        resolved: &Resolved,
        fetcher: &Fetcher,
    ) -> anyhow::Result<LockedImage> {
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
        let Asked { sources, install, exclude } = asked;
        Ok(LockedImage {
            name: name.to_string(),
            family: Family::Apt,
            arch: arch.to_string(),
            sources,
            install,
            exclude,
            lists,
            packages,
        })
    }

    /// The locked form of an rpm-md resolution: the packages the image adds, in install order,
    /// and the `repomd.xml` files (and their signatures) they were resolved against, kept in
    /// `fetcher`'s cache.
    pub fn of_rpm(
        name: &str,
        arch: &str,
        asked: Asked,
        resolved: &rpm::packages::Resolved,
        fetcher: &Fetcher,
    ) -> anyhow::Result<LockedImage> {
        let lists = resolved
            .repomd
            .iter()
            .map(|(url, bytes)| -> anyhow::Result<LockedList> {
                let sha256 = fetcher.keep(bytes)?;
                let name = url.rsplit('/').next().unwrap_or(url).to_string();
                Ok(LockedList { name, url: url.clone(), size: bytes.len() as u64, sha256, index: None })
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
        let Asked { sources, install, exclude } = asked;
        Ok(LockedImage {
            name: name.to_string(),
            family: Family::RpmMd,
            arch: arch.to_string(),
            sources,
            install,
            exclude,
            lists,
            packages,
        })
    }

    /// Refuse the lock's set for a description that asks something else of its packages, or
    /// for another family or architecture: every difference named.
    pub fn check(&self, family: Family, arch: &str, asked: &Asked) -> anyhow::Result<()> {
        let mut differ = Vec::new();
        if self.family != family {
            differ.push(format!("repositories of kind {} (the lock: {})", family.as_str(), self.family.as_str()));
        }
        if self.arch != arch {
            differ.push(format!("architecture {arch} (the lock: {})", self.arch));
        }
        let lists = [
            ("repositories", &asked.sources, &self.sources),
            ("packages", &asked.install, &self.install),
            ("excludes", &asked.exclude, &self.exclude),
        ];
        for (what, now, locked) in lists {
            if now != locked {
                let added: Vec<&str> = now.iter().filter(|x| !locked.contains(x)).map(String::as_str).collect();
                let gone: Vec<&str> = locked.iter().filter(|x| !now.contains(x)).map(String::as_str).collect();
                differ.push(format!("{what}: added [{}], dropped [{}]", added.join(", "), gone.join(", ")));
            }
        }
        if !differ.is_empty() {
            bail!(
                "image {}: the description asks for other packages than the lock holds ({}): run `strata lock --update`",
                self.name,
                differ.join("; ")
            );
        }
        Ok(())
    }

    /// The lock's metadata files, fetched (from the download cache, or their URLs) and checked
    /// against the lock; every file no longer available named at once.
    fn fetch_lists(&self, fetcher: &Fetcher, progress: &Progress) -> anyhow::Result<()> {
        let wants: Vec<Want> =
            self.lists.iter().map(|l| Want { url: l.url.clone(), size: l.size, sha256: l.sha256.clone() }).collect();
        fetcher.get_all(&wants, progress).map(drop).with_context(|| {
            format!("image {}: the lock's repository metadata (`strata lock --update` locks what the repositories offer now)", self.name)
        })
    }

    /// The locked packages, each found in what the verified metadata offers (same name,
    /// version, architecture and SHA-256), as the metadata describes them.
    fn found<R: Clone>(
        &self,
        offered: &[R],
        key: impl Fn(&R) -> (String, String, String, String),
    ) -> anyhow::Result<Vec<R>> {
        let by_key: std::collections::HashMap<(String, String, String, String), &R> =
            offered.iter().map(|r| (key(r), r)).collect();
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for p in &self.packages {
            let k = (p.name.clone(), p.version.clone(), p.architecture.clone(), p.sha256.clone());
            match by_key.get(&k) {
                Some(r) => out.push((*r).clone()),
                None => missing.push(format!("{} {} {}", p.name, p.version, p.architecture)),
            }
        }
        if !missing.is_empty() {
            bail!(
                "image {}: {} locked packages are not in the repository metadata the lock holds (the lock was edited?): {}",
                self.name,
                missing.len(),
                missing.join(", ")
            );
        }
        Ok(out)
    }

    /// Every package the description names must be one the lock installs (by name, or by what
    /// a locked package provides): a lock with packages taken out is refused.
    fn check_named(&self, unmet: Vec<&str>) -> anyhow::Result<()> {
        if !unmet.is_empty() {
            bail!(
                "image {}: the description asks for {}, which no locked package is or provides (the lock was edited?): run `strata lock --update`",
                self.name,
                unmet.join(", ")
            );
        }
        Ok(())
    }

    /// Where the verification of this lock section is remembered: a marker named by everything
    /// it depended on (the section itself and the keys' contents), so that an unchanged lock is
    /// not parsed and checked again on every build. `None` when a key cannot be read (then
    /// nothing is remembered and the check runs every time).
    fn verified_marker(
        &self,
        fetcher: &Fetcher,
        keys: &[std::path::PathBuf],
    ) -> anyhow::Result<Option<std::path::PathBuf>> {
        let mut h = blake3::Hasher::new();
        h.update(b"strata-locked-v1\0");
        h.update(toml::to_string(self)?.as_bytes());
        for k in keys {
            let Ok(bytes) = fs_err::read(k) else { return Ok(None) };
            h.update(k.as_os_str().as_encoded_bytes());
            h.update(&[0]);
            h.update(blake3::hash(&bytes).as_bytes());
        }
        let dir = fetcher.dir().parent().unwrap_or(fetcher.dir()).join("resolutions");
        Ok(Some(dir.join(format!("locked-{}", h.finalize().to_hex()))))
    }

    /// The packages as the lock records them (for a section verified before).
    fn apt_records(&self) -> anyhow::Result<Vec<PackageRecord>> {
        self.packages
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
            .collect()
    }

    /// The apt resolution the lock records. Its lists are fetched and verified as a fresh
    /// resolution's are (the Release signature with the sources' keyrings, each index by the
    /// signed Release), and every package must be one the indexes offer.
    pub fn apt_resolved(
        &self,
        fetcher: &Fetcher,
        sources: &[AptSource],
        progress: &Progress,
    ) -> anyhow::Result<Resolved> {
        self.fetch_lists(fetcher, progress)?;
        let mut lists = Vec::new();
        for l in &self.lists {
            let path = fetcher.cached_path(&l.sha256);
            let content = match &l.index {
                Some(name) => ListContent::Index { path, compressed_name: name.clone() },
                None => ListContent::Bytes(fs_err::read(&path)?),
            };
            lists.push(ListFile { name: l.name.clone(), url: l.url.clone(), content });
        }
        let keys: Vec<std::path::PathBuf> = sources.iter().flat_map(|s| s.keyrings()).collect();
        let marker = self.verified_marker(fetcher, &keys)?;
        let records = match marker.as_ref().filter(|m| m.exists()) {
            Some(_) => self.apt_records()?,
            None => {
                let offered = verify_lists(sources, &lists, &self.arch)
                    .with_context(|| format!("image {}: the lock's lists", self.name))?;
                let records: Vec<PackageRecord> = self.found(&offered, |r: &PackageRecord| {
                    (r.name.clone(), r.version.to_string(), r.architecture.clone(), r.want.sha256.clone())
                })?;
                let unmet = self
                    .install
                    .iter()
                    .filter(|n| !records.iter().any(|r| r.name == **n || r.provides.iter().any(|p| p.name == **n)))
                    .map(String::as_str)
                    .collect();
                self.check_named(unmet)?;
                remember(marker.as_deref())?;
                records
            }
        };
        let chosen = (0..records.len()).collect();
        Ok(Resolved { records, chosen, lists, sources: sources.to_vec() })
    }

    /// The rpm-md resolution the lock records, on top of the base's `installed` packages. Each
    /// `repomd.xml` is verified with its kept signature and the sources' keys, the primary
    /// metadata fetched by its checksum, and every package must be one it offers.
    pub fn rpm_resolved(
        &self,
        fetcher: &Fetcher,
        sources: &[RpmSource],
        installed: Vec<RpmRecord>,
        progress: &Progress,
    ) -> anyhow::Result<rpm::packages::Resolved> {
        self.fetch_lists(fetcher, progress)?;
        let repomd = self
            .lists
            .iter()
            .map(|l| Ok((l.url.clone(), fs_err::read(fetcher.cached_path(&l.sha256))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let offered =
            rpm::repo::verify_locked(fetcher, sources, &repomd, crate::packages::uname_arch(&self.arch), progress)
                .with_context(|| format!("image {}: the lock's repository metadata", self.name))?;
        let found = self.found(&offered, |r: &RpmRecord| {
            (r.name.clone(), r.evr.to_string(), r.arch.clone(), r.want.sha256.clone())
        })?;
        let provided = |r: &RpmRecord, n: &str| {
            r.name == n || r.provides.iter().any(|p| p.name == n) || r.files.iter().any(|f| f == n)
        };
        let unmet = self
            .install
            .iter()
            .filter(|n| !found.iter().chain(&installed).any(|r| provided(r, n)))
            .map(String::as_str)
            .collect();
        self.check_named(unmet)?;
        for r in &found {
            if let Some(old) = installed.iter().find(|o| o.name == r.name) {
                bail!("the base has {} but the lock adds {}: adding packages cannot upgrade the base; lock and build it again", old.nevra(), r.nevra());
            }
        }
        let mut records = installed;
        let first = records.len();
        records.extend(found);
        let order = (first..records.len()).collect();
        Ok(rpm::packages::Resolved { records, order, repomd })
    }
}

/// Remember a verification (see [`LockedImage::verified_marker`]).
fn remember(marker: Option<&Path>) -> anyhow::Result<()> {
    if let Some(m) = marker {
        fs_err::create_dir_all(m.parent().expect("a marker has a directory"))?;
        fs_err::write(m, b"")?;
    }
    Ok(())
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
                install: vec!["hello".into()],
                exclude: vec![],
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
    fn a_description_that_asks_for_other_packages_is_refused_with_every_difference() {
        let lock = sample();
        let image = &lock.images[0];
        let same = Asked::new(image.sources.clone(), &["hello".into()], &[]);
        image.check(Family::Apt, "amd64", &same).unwrap();
        let other = Asked::new(image.sources.clone(), &["hello".into(), "nano".into()], &["vim".into()]);
        let err = image.check(Family::RpmMd, "arm64", &other).unwrap_err().to_string();
        for part in [
            "kind rpm-md (the lock: apt)",
            "architecture arm64",
            "packages: added [nano], dropped []",
            "excludes: added [vim]",
            "strata lock --update",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
    }
}
