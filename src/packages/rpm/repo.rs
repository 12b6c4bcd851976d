//! rpm-md repositories (what `createrepo_c` writes and dnf and zypper read).
//!
//! `repodata/repomd.xml` names the metadata files with their SHA-256 and size; it is signed by
//! `repodata/repomd.xml.asc` (a detached OpenPGP signature), verified with `gpgv` against the
//! keys the description names. A repository without keys is accepted only when its
//! description says so (`gpgcheck = false`), and is then verified by checksums alone. The
//! `primary` metadata (gzip, xz, zstd or plain) lists every package: name, architecture,
//! epoch-version-release, checksum, location, and its provides, requires, conflicts and
//! obsoletes, plus the files of the well-known directories (for file requirements such as
//! `/bin/sh`).
//!
//! All of it is untrusted: each error names the repository and the package or element.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::version::Evr;
use crate::packages::fetch::{Fetcher, Want};
use crate::util::progress::Progress;

/// The largest uncompressed `primary.xml` read.
const MAX_PRIMARY: u64 = 4 << 30;

/// A repository as the description names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpmSource {
    pub uri: String,
    /// Key files (armored or binary) `repomd.xml` must be signed by; empty when `gpgcheck` is off.
    pub keys: Vec<PathBuf>,
}

impl RpmSource {
    fn base(&self) -> &str {
        self.uri.trim_end_matches('/')
    }
}

/// A comparison in a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Flag {
    fn parse(s: &str) -> Option<Flag> {
        Some(match s {
            "LT" | "<" => Flag::Lt,
            "LE" | "<=" => Flag::Le,
            "EQ" | "=" | "==" => Flag::Eq,
            "GE" | ">=" => Flag::Ge,
            "GT" | ">" => Flag::Gt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Lt => "<",
            Flag::Le => "<=",
            Flag::Eq => "=",
            Flag::Ge => ">=",
            Flag::Gt => ">",
        }
    }

    pub fn matches(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        matches!(
            (self, ord),
            (Flag::Lt, Less)
                | (Flag::Le, Less | Equal)
                | (Flag::Eq, Equal)
                | (Flag::Ge, Greater | Equal)
                | (Flag::Gt, Greater)
        )
    }
}

/// A capability with an optional version constraint: `libfoo.so.1()(64bit)`, `bar >= 2.0`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cap {
    pub name: String,
    pub constraint: Option<(Flag, Evr)>,
}

impl Cap {
    /// Does a provide satisfy this requirement? Both ranges must overlap; rpm's rule reduced to
    /// what repositories publish: a provide is unversioned or `=`.
    pub fn satisfied_by(&self, provide: &Cap) -> bool {
        if self.name != provide.name {
            return false;
        }
        match (&self.constraint, &provide.constraint) {
            (None, _) => true,
            (Some(_), None) => true,
            (Some((want_flag, want)), Some((Flag::Eq, have))) => want_flag.matches(have.cmp_for_requirement(want)),
            // A ranged provide (rare): satisfied when the ranges overlap at the provided bound.
            (Some((want_flag, want)), Some((_, have))) => want_flag.matches(have.cmp_for_requirement(want)),
        }
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some((flag, evr)) = &self.constraint {
            write!(f, " {} {evr}", flag.as_str())?;
        }
        Ok(())
    }
}

/// A requirement: a capability, or a rich dependency's `and`/`or` of requirements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Req {
    Cap(Cap),
    And(Vec<Req>),
    Or(Vec<Req>),
}

impl std::fmt::Display for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |f: &mut std::fmt::Formatter<'_>, parts: &[Req], op: &str| {
            let text: Vec<String> = parts.iter().map(Req::to_string).collect();
            write!(f, "({})", text.join(op))
        };
        match self {
            Req::Cap(c) => c.fmt(f),
            Req::And(p) => join(f, p, " and "),
            Req::Or(p) => join(f, p, " or "),
        }
    }
}

/// One package of a repository.
#[derive(Clone, Debug)]
pub struct RpmRecord {
    pub name: String,
    pub arch: String,
    pub evr: Evr,
    pub provides: Vec<Cap>,
    pub requires: Vec<Req>,
    pub conflicts: Vec<Cap>,
    pub obsoletes: Vec<Cap>,
    /// Files primary.xml lists (those of `/etc`, `*bin/` and `/usr/lib/sendmail`).
    pub files: Vec<String>,
    pub want: Want,
    /// Why this package cannot be installed, if it cannot (a rich dependency strata does not
    /// solve): the repository stays usable, and the solver reports it if the package is needed.
    pub unsupported: Option<String>,
    /// Installed in the base image (made from its rpm database): never fetched.
    pub installed: bool,
}

impl RpmRecord {
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name, self.evr, self.arch)
    }
}

/// Parse a rich dependency, `(a or (b and c >= 2))`. `if`, `unless`, `with` and `without` are
/// refused with a message: a silently wrong reading would install the wrong packages.
pub fn parse_rich(text: &str) -> Result<Req, String> {
    let tokens = tokenize(text);
    let mut pos = 0;
    let req = rich(&tokens, &mut pos, text, 0)?;
    if pos != tokens.len() {
        return Err(format!("rich dependency `{text}`: unexpected `{}`", tokens[pos]));
    }
    Ok(req)
}

fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' if cur.is_empty() => out.push("(".to_string()),
            '(' => {
                // Part of a name, such as `libc.so.6()(64bit)`.
                depth += 1;
                cur.push(c);
            }
            ')' if depth > 0 => {
                depth -= 1;
                cur.push(c);
            }
            ')' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(")".to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// How deeply rich dependencies may nest (rpm's own are a few levels deep).
const MAX_RICH_DEPTH: usize = 32;

fn rich(tokens: &[String], pos: &mut usize, text: &str, depth: usize) -> Result<Req, String> {
    let bad = |why: &str| format!("rich dependency `{text}`: {why}");
    if depth > MAX_RICH_DEPTH {
        return Err(bad(&format!("nested more than {MAX_RICH_DEPTH} levels deep")));
    }
    if tokens.get(*pos).map(String::as_str) != Some("(") {
        // A plain capability: `name [op evr]`.
        let name = tokens.get(*pos).ok_or_else(|| bad("ends early"))?.clone();
        *pos += 1;
        let constraint = match tokens.get(*pos).and_then(|t| Flag::parse(t)) {
            Some(flag) => {
                let v = tokens.get(*pos + 1).ok_or_else(|| bad("a comparison without a version"))?;
                *pos += 2;
                Some((flag, Evr::parse(v)?))
            }
            None => None,
        };
        return Ok(Req::Cap(Cap { name, constraint }));
    }
    *pos += 1;
    let mut parts = vec![rich(tokens, pos, text, depth + 1)?];
    let mut op: Option<String> = None;
    loop {
        match tokens.get(*pos).map(String::as_str) {
            Some(")") => {
                *pos += 1;
                break;
            }
            Some(o @ ("and" | "or")) => {
                if op.as_deref().is_some_and(|p| p != o) {
                    return Err(bad("`and` and `or` mixed without parentheses"));
                }
                op = Some(o.to_string());
                *pos += 1;
                parts.push(rich(tokens, pos, text, depth + 1)?);
            }
            Some(o @ ("if" | "unless" | "with" | "without" | "else")) => {
                return Err(bad(&format!("the operator `{o}` is not supported (and, or are)")));
            }
            Some(t) => return Err(bad(&format!("unexpected `{t}`"))),
            None => return Err(bad("missing `)`")),
        }
    }
    Ok(match op.as_deref() {
        None => parts.remove(0),
        Some("and") => Req::And(parts),
        _ => Req::Or(parts),
    })
}

/// A metadata file as fetched: its URL and its bytes.
pub type FetchedFile = (String, Vec<u8>);

/// Fetch and verify `repomd.xml` of every source, then fetch and parse its primary metadata.
/// Returns the packages offered and each `repomd.xml`.
pub fn load(
    fetcher: &Fetcher,
    sources: &[RpmSource],
    arch: &str,
    progress: &Progress,
) -> anyhow::Result<(Vec<RpmRecord>, Vec<FetchedFile>)> {
    let mut out = Vec::new();
    let mut repomds = Vec::new();
    for source in sources {
        let base = source.base();
        let repomd = fetcher
            .get_small(&format!("{base}/repodata/repomd.xml"))
            .with_context(|| format!("rpm-md repository {base}"))?
            .with_context(|| format!("{base}: no repodata/repomd.xml: not an rpm-md repository"))?;
        let sig = load_one(fetcher, source, (&repomd, None), arch, progress, &mut out)?;
        repomds.push((format!("{base}/repodata/repomd.xml"), repomd));
        if let Some(sig) = sig {
            repomds.push((format!("{base}/repodata/repomd.xml.asc"), sig));
        }
    }
    Ok((out, repomds))
}

/// Verify `repomd` with its signature (given, or fetched) when the source names keys, fetch
/// the primary metadata it lists (by checksum) and parse it into `out`; returns the signature.
fn load_one(
    fetcher: &Fetcher,
    source: &RpmSource,
    (repomd, sig): (&[u8], Option<&[u8]>),
    arch: &str,
    progress: &Progress,
    out: &mut Vec<RpmRecord>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let base = source.base();
    let sig = match source.keys.is_empty() {
        true => None,
        false => {
            Some(verify_signature(fetcher, source, repomd, sig).with_context(|| format!("rpm-md repository {base}"))?)
        }
    };
    let text = std::str::from_utf8(repomd).map_err(|_| anyhow::anyhow!("{base}/repodata/repomd.xml: not UTF-8"))?;
    let want = primary_want(text, base).with_context(|| format!("{base}/repodata/repomd.xml"))?;
    let path = fetcher.get_all(std::slice::from_ref(&want), progress)?.remove(0);
    let xml = read_compressed(&path, &want.url)?;
    parse_primary(&xml, base, arch, out).with_context(|| want.url.clone())?;
    Ok(sig)
}

/// The packages a lock's `repomd.xml` files offer, checked as a fresh resolution checks them:
/// each signature (kept in the lock) verified with the source's keys, the primary metadata
/// fetched by the checksum `repomd.xml` gives.
pub fn verify_locked(
    fetcher: &Fetcher,
    sources: &[RpmSource],
    repomds: &[FetchedFile],
    arch: &str,
    progress: &Progress,
) -> anyhow::Result<Vec<RpmRecord>> {
    let mut out = Vec::new();
    for source in sources {
        let url = format!("{}/repodata/repomd.xml", source.base());
        let find = |url: &str| repomds.iter().find(|(u, _)| u == url).map(|(_, b)| b.as_slice());
        let repomd = find(&url).with_context(|| format!("the lock holds no {url}"))?;
        let sig = find(&format!("{url}.asc"));
        if !source.keys.is_empty() && sig.is_none() {
            bail!("the lock holds no {url}.asc, and {} names keys", source.uri);
        }
        load_one(fetcher, source, (repomd, sig), arch, progress, &mut out)?;
    }
    Ok(out)
}

/// Verify `repomd` with `sig` (fetched from the repository when not given); returns the
/// signature used.
fn verify_signature(
    fetcher: &Fetcher,
    source: &RpmSource,
    repomd: &[u8],
    sig: Option<&[u8]>,
) -> anyhow::Result<Vec<u8>> {
    let base = source.base();
    let sig = match sig {
        Some(sig) => sig.to_vec(),
        None => fetcher.get_small(&format!("{base}/repodata/repomd.xml.asc"))?.with_context(|| {
            format!("{base}/repodata/repomd.xml is not signed (no repomd.xml.asc) but keys are named")
        })?,
    };
    let work = tempfile::tempdir()?;
    let (sig_file, data_file) = (work.path().join("repomd.xml.asc"), work.path().join("repomd.xml"));
    fs_err::write(&sig_file, &sig)?;
    fs_err::write(&data_file, repomd)?;
    let keyrings = source
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| binary_keyring(k, &work.path().join(format!("key{i}.gpg"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::packages::deb::repo::gpgv(&keyrings, &[&sig_file, &data_file], &format!("{base}/repodata/repomd.xml"))?;
    Ok(sig)
}

/// gpgv reads binary keyrings only: an armored key (`RPM-GPG-KEY-*`) is converted first.
fn binary_keyring(key: &Path, scratch: &Path) -> anyhow::Result<PathBuf> {
    let bytes = fs_err::read(key).with_context(|| format!("signing key `{}`", key.display()))?;
    if !bytes.starts_with(b"-----BEGIN PGP") {
        return Ok(key.to_path_buf());
    }
    let out = crate::util::process::command("gpg")
        .args(["--batch", "--dearmor", "--output"])
        .arg(scratch)
        .arg(key)
        .output()
        .context("cannot run gpg (install gnupg)")?;
    if !out.status.success() {
        bail!("signing key `{}`: {}", key.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(scratch.to_path_buf())
}

/// Where `repomd.xml` says the primary package list is, with its size and SHA-256.
pub fn primary_want(repomd: &str, base: &str) -> anyhow::Result<Want> {
    let doc = roxmltree::Document::parse(repomd).context("not XML")?;
    let data = doc
        .root_element()
        .children()
        .find(|n| n.tag_name().name() == "data" && n.attribute("type") == Some("primary"))
        .context("no <data type=\"primary\">")?;
    let child = |name: &str| data.children().find(|n| n.tag_name().name() == name);
    let checksum = child("checksum").context("primary: no <checksum>")?;
    let kind = checksum.attribute("type").unwrap_or("");
    if kind != "sha256" {
        bail!("primary: checksum type `{kind}` is not supported (sha256 expected)");
    }
    let sha256 = checksum.text().unwrap_or("").trim().to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("primary: bad checksum `{sha256}`");
    }
    let href = child("location").and_then(|n| n.attribute("href")).context("primary: no <location href>")?;
    let size: u64 =
        child("size").and_then(|n| n.text()).and_then(|t| t.trim().parse().ok()).context("primary: no <size>")?;
    Ok(Want { url: join(base, href)?, size, sha256 })
}

/// A location inside the repository; never outside it.
fn join(base: &str, href: &str) -> anyhow::Result<String> {
    if href.starts_with('/') || href.contains("://") || href.split('/').any(|p| p == "..") {
        bail!("location `{href}` leaves the repository");
    }
    Ok(format!("{base}/{href}"))
}

fn read_compressed(path: &Path, url: &str) -> anyhow::Result<String> {
    let file = fs_err::File::open(path)?;
    let reader: Box<dyn Read> = if url.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if url.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(file))
    } else if url.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file)?)
    } else if url.ends_with(".xml") {
        Box::new(file)
    } else {
        bail!("{url}: compression not supported (expected .gz, .xz, .zst or plain .xml)");
    };
    let mut text = String::new();
    reader.take(MAX_PRIMARY + 1).read_to_string(&mut text).with_context(|| format!("{url}: cannot decompress"))?;
    if text.len() as u64 > MAX_PRIMARY {
        bail!("{url}: larger than {MAX_PRIMARY} bytes uncompressed");
    }
    Ok(text)
}

/// Parse `primary.xml`, keeping packages of `arch` and `noarch`.
pub fn parse_primary(xml: &str, base: &str, arch: &str, out: &mut Vec<RpmRecord>) -> anyhow::Result<()> {
    let doc = roxmltree::Document::parse_with_options(
        xml,
        roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: u32::MAX, ..Default::default() },
    )
    .context("not XML")?;
    for pkg in doc.root_element().children().filter(|n| n.tag_name().name() == "package") {
        let text = |name: &str| child(pkg, name).and_then(|n| n.text()).unwrap_or("").trim().to_string();
        let name = text("name");
        let at = |what: &str| format!("package `{name}`: {what}");
        let pkg_arch = text("arch");
        if name.is_empty() {
            bail!("a <package> without a <name> (line {})", doc.text_pos_at(pkg.range().start).row);
        }
        if pkg_arch != arch && pkg_arch != "noarch" {
            continue;
        }
        let version = child(pkg, "version").with_context(|| at("no <version>"))?;
        let evr = evr_of(version).with_context(|| at("bad <version>"))?;
        let checksum = child(pkg, "checksum").with_context(|| at("no <checksum>"))?;
        if checksum.attribute("type") != Some("sha256") {
            bail!(at(&format!(
                "checksum type `{}` is not supported (sha256 expected)",
                checksum.attribute("type").unwrap_or("")
            )));
        }
        let sha256 = checksum.text().unwrap_or("").trim().to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(at("bad checksum"));
        }
        let href = child(pkg, "location").and_then(|n| n.attribute("href")).with_context(|| at("no <location>"))?;
        let size: u64 = child(pkg, "size")
            .and_then(|n| n.attribute("package"))
            .and_then(|s| s.parse().ok())
            .with_context(|| at("no <size package=…>"))?;
        let format = child(pkg, "format").with_context(|| at("no <format>"))?;
        let caps = |list: &str| -> anyhow::Result<Vec<(Cap, String)>> {
            let Some(l) = child(format, list) else { return Ok(Vec::new()) };
            l.children()
                .filter(|e| e.tag_name().name() == "entry")
                .map(|e| {
                    let n = e.attribute("name").unwrap_or("").to_string();
                    let constraint = match e.attribute("flags") {
                        Some(f) => {
                            let flag = Flag::parse(f).with_context(|| at(&format!("{list}: flag `{f}`")))?;
                            Some((flag, evr_of(e).with_context(|| at(&format!("{list}: `{n}`")))?))
                        }
                        None => None,
                    };
                    Ok((Cap { name: n.clone(), constraint }, n))
                })
                .collect()
        };
        let provides: Vec<Cap> = caps("provides")?.into_iter().map(|(c, _)| c).collect();
        let mut requires = Vec::new();
        let mut unsupported = None;
        for (cap, raw) in caps("requires")? {
            // Satisfied by rpm itself.
            if raw.starts_with("rpmlib(") {
                continue;
            }
            if raw.starts_with('(') {
                match parse_rich(&raw) {
                    Ok(req) => requires.push(req),
                    Err(e) => unsupported = Some(e),
                }
            } else {
                requires.push(Req::Cap(cap));
            }
        }
        let conflicts = caps("conflicts")?.into_iter().map(|(c, _)| c).filter(|c| !c.name.starts_with('(')).collect();
        let obsoletes = caps("obsoletes")?.into_iter().map(|(c, _)| c).collect();
        let files = format
            .children()
            .filter(|n| n.tag_name().name() == "file")
            .filter_map(|n| n.text().map(str::to_string))
            .collect();
        out.push(RpmRecord {
            want: Want { url: join(base, href).with_context(|| at("location"))?, size, sha256 },
            name,
            arch: pkg_arch,
            evr,
            provides,
            requires,
            conflicts,
            obsoletes,
            files,
            unsupported,
            installed: false,
        });
    }
    Ok(())
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.tag_name().name() == name)
}

fn evr_of(n: roxmltree::Node<'_, '_>) -> anyhow::Result<Evr> {
    let epoch = n.attribute("epoch").unwrap_or("0").parse::<u64>().context("bad epoch")?;
    let version = n.attribute("ver").filter(|v| !v.is_empty()).context("no ver")?.to_string();
    let release = n.attribute("rel").filter(|r| !r.is_empty()).map(str::to_string);
    Ok(Evr { epoch, version, release })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>app</name><arch>x86_64</arch>
  <version epoch="1" ver="2.0" rel="3"/>
  <checksum type="sha256" pkgid="YES">aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</checksum>
  <size package="1234" installed="10" archive="20"/>
  <location href="Packages/app-2.0-3.x86_64.rpm"/>
  <format>
    <rpm:provides><rpm:entry name="app" flags="EQ" epoch="1" ver="2.0" rel="3"/></rpm:provides>
    <rpm:requires>
      <rpm:entry name="/bin/sh" pre="1"/>
      <rpm:entry name="libfoo.so.1()(64bit)"/>
      <rpm:entry name="base" flags="GE" epoch="0" ver="1.0"/>
      <rpm:entry name="rpmlib(CompressedFileNames)" flags="LE" epoch="0" ver="3.0.4" rel="1"/>
      <rpm:entry name="(mta or exim)"/>
    </rpm:requires>
    <file>/usr/bin/app</file>
  </format>
</package>
<package type="rpm">
  <name>other</name><arch>aarch64</arch>
  <version epoch="0" ver="1" rel="1"/>
  <checksum type="sha256">bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb</checksum>
  <size package="1"/><location href="other.rpm"/><format/>
</package>
</metadata>"#;

    #[test]
    fn primary_records() {
        let mut out = Vec::new();
        parse_primary(PRIMARY, "http://r", "x86_64", &mut out).unwrap();
        assert_eq!(out.len(), 1, "other architectures are skipped");
        let r = &out[0];
        assert_eq!(r.nevra(), "app-1:2.0-3.x86_64");
        assert_eq!(r.want.url, "http://r/Packages/app-2.0-3.x86_64.rpm");
        let reqs: Vec<String> = r.requires.iter().map(Req::to_string).collect();
        assert_eq!(reqs, ["/bin/sh", "libfoo.so.1()(64bit)", "base >= 1.0", "(mta or exim)"]);
        assert_eq!(r.files, ["/usr/bin/app"]);
    }

    #[test]
    fn bad_primary_is_named() {
        for (bad, says) in [
            (PRIMARY.replace("Packages/app", "../../etc/app"), "leaves the repository"),
            (PRIMARY.replace("type=\"sha256\" pkgid", "type=\"md5\" pkgid"), "md5"),
            (PRIMARY.replace("flags=\"GE\"", "flags=\"XX\""), "flag `XX`"),
            (PRIMARY.replace("</metadata>", ""), "not XML"),
        ] {
            let err = format!("{:#}", parse_primary(&bad, "http://r", "x86_64", &mut Vec::new()).unwrap_err());
            assert!(err.contains(says), "{says}: {err}");
            assert!(says == "not XML" || err.contains("package `app`"), "{err}");
        }
    }

    #[test]
    fn a_rich_dependency_strata_cannot_solve_marks_only_its_package() {
        let mut out = Vec::new();
        parse_primary(&PRIMARY.replace("(mta or exim)", "(mta if exim)"), "http://r", "x86_64", &mut out).unwrap();
        let why = out[0].unsupported.as_deref().unwrap();
        assert!(why.contains("`if` is not supported"), "{why}");
        let deep = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse_rich(&deep).unwrap_err().contains("nested more than"));
    }

    #[test]
    fn rich_dependencies() {
        assert_eq!(parse_rich("(a or b)").unwrap().to_string(), "(a or b)");
        assert_eq!(parse_rich("(a and (b >= 2 or c))").unwrap().to_string(), "(a and (b >= 2 or c))");
        assert_eq!(parse_rich("(libc.so.6()(64bit) or d)").unwrap().to_string(), "(libc.so.6()(64bit) or d)");
        assert!(parse_rich("(a or b and c)").is_err());
        assert!(parse_rich("(a or b").is_err());
    }

    #[test]
    fn requirement_matching() {
        let cap = |n: &str, c: Option<(Flag, &str)>| Cap {
            name: n.into(),
            constraint: c.map(|(f, v)| (f, Evr::parse(v).unwrap())),
        };
        let provide = cap("x", Some((Flag::Eq, "1.2-3")));
        assert!(cap("x", None).satisfied_by(&provide));
        assert!(cap("x", Some((Flag::Ge, "1.2"))).satisfied_by(&provide));
        assert!(cap("x", Some((Flag::Eq, "1.2"))).satisfied_by(&provide), "no release: any release");
        assert!(!cap("x", Some((Flag::Gt, "1.2-3"))).satisfied_by(&provide));
        assert!(!cap("x", Some((Flag::Gt, "1:0.1"))).satisfied_by(&provide), "epoch 0 is older than 1");
    }
}
