//! apt repositories: sources, signed Release files, and Packages indexes.
//!
//! Trust flows one way: `InRelease` (or `Release` + `Release.gpg`) is verified with `gpgv`
//! against the keyrings the source names, and only the text `gpgv` prints as signed is parsed.
//! Every index is then checked against the SHA-256 and size in that text (and fetched by hash
//! when the repository offers it), and every package against the SHA-256 in its index.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::deb822::{self, Paragraph};
use super::relation::{self, Dep, Group};
use super::version::Version;
use crate::packages::fetch::{Fetcher, Want};
use crate::util::progress::Progress;

/// One `deb` line: where, which suite and components, and which keyrings sign it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    /// A suite (`bookworm`), or for a flat repository a path ending in `/` (`./`).
    pub suite: String,
    pub components: Vec<String>,
    /// Keyrings that may sign the Release file; empty means apt's trusted keyrings.
    pub signed_by: Vec<PathBuf>,
}

impl AptSource {
    pub fn is_flat(&self) -> bool {
        self.suite.ends_with('/')
    }

    /// The directory holding the Release files.
    fn dist_url(&self) -> String {
        let uri = self.uri.trim_end_matches('/');
        if self.is_flat() {
            format!("{uri}/{}", self.suite.trim_end_matches('/')).trim_end_matches("/.").to_string()
        } else {
            format!("{uri}/dists/{}", self.suite)
        }
    }

    /// The keyrings that verify this source's Release: `signed-by`, else apt's trusted ones.
    pub(crate) fn keyrings(&self) -> Vec<PathBuf> {
        if !self.signed_by.is_empty() {
            return self.signed_by.clone();
        }
        let mut out: Vec<PathBuf> = fs_err::read_dir("/etc/apt/trusted.gpg.d")
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "gpg")).collect())
            .unwrap_or_default();
        if Path::new("/etc/apt/trusted.gpg").exists() {
            out.push("/etc/apt/trusted.gpg".into());
        }
        out.sort();
        out
    }
}

impl std::fmt::Display for AptSource {
    /// The one-line form, as `sources.list` has it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deb ")?;
        if !self.signed_by.is_empty() {
            let keys: Vec<String> = self.signed_by.iter().map(|k| k.display().to_string()).collect();
            write!(f, "[signed-by={}] ", keys.join(","))?;
        }
        write!(f, "{} {}", self.uri, self.suite)?;
        for c in &self.components {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// Parse a one-line source: `deb [signed-by=/k.gpg] http://host/debian bookworm main contrib`.
pub fn parse_source_line(line: &str) -> anyhow::Result<AptSource> {
    let err = |why: &str| anyhow::anyhow!("invalid apt source `{line}`: {why}");
    let rest = line.trim().strip_prefix("deb ").ok_or_else(|| err("expected it to start with `deb `"))?;
    let mut rest = rest.trim_start();
    let mut signed_by = Vec::new();
    if let Some(opts) = rest.strip_prefix('[') {
        let (opts, after) = opts.split_once(']').ok_or_else(|| err("`[` without `]`"))?;
        for opt in opts.split_whitespace() {
            match opt.split_once('=') {
                Some(("signed-by", v)) => signed_by.extend(v.split(',').map(PathBuf::from)),
                Some(("arch" | "trusted" | "lang" | "target" | "check-valid-until", _)) => {}
                _ => return Err(err(&format!("unsupported option `{opt}`"))),
            }
        }
        rest = after;
    }
    let mut words = rest.split_whitespace();
    let uri = words.next().ok_or_else(|| err("no URI"))?.to_string();
    let suite = words.next().ok_or_else(|| err("no suite"))?.to_string();
    let components: Vec<String> = words.map(str::to_string).collect();
    let source = AptSource { uri, suite, components, signed_by };
    if source.is_flat() != source.components.is_empty() {
        return Err(err("a suite ending in `/` (flat repository) takes no components; any other suite needs one"));
    }
    Ok(source)
}

/// The build host's configured sources (`/etc/apt/sources.list`, `sources.list.d/*.list` and
/// deb822 `*.sources`), `deb` types only.
pub fn host_sources() -> anyhow::Result<Vec<AptSource>> {
    let mut out = Vec::new();
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = fs_err::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs_err::read_to_string(&file) else { continue };
        let ctx = || format!("in `{}`", file.display());
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => {
                for p in deb822::parse(&text).with_context(ctx)? {
                    out.extend(sources_from_deb822(&p).with_context(ctx)?);
                }
            }
            Some("list") | None
                if file.file_name().is_some_and(|n| n == "sources.list") || file.extension().is_some() =>
            {
                for (i, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if line.starts_with("deb ") {
                        out.push(parse_source_line(line).with_context(|| format!("line {} {}", i + 1, ctx()))?);
                    }
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        bail!("the build host has no `deb` sources in /etc/apt/sources.list or /etc/apt/sources.list.d");
    }
    Ok(out)
}

fn sources_from_deb822(p: &Paragraph) -> anyhow::Result<Vec<AptSource>> {
    if p.get("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
        return Ok(vec![]);
    }
    if !p.get("Types").unwrap_or("").split_whitespace().any(|t| t == "deb") {
        return Ok(vec![]);
    }
    let words = |f: &str| -> Vec<String> { p.get(f).unwrap_or("").split_whitespace().map(str::to_string).collect() };
    let signed_by: Vec<PathBuf> = match p.get("Signed-By") {
        Some(v) if v.contains("BEGIN PGP") => bail!("inline Signed-By keys are not supported; use a keyring file"),
        Some(v) => v.split_whitespace().map(PathBuf::from).collect(),
        None => vec![],
    };
    let mut out = Vec::new();
    for uri in words("URIs") {
        for suite in words("Suites") {
            out.push(AptSource {
                uri: uri.clone(),
                suite,
                components: words("Components"),
                signed_by: signed_by.clone(),
            });
        }
    }
    Ok(out)
}

/// One binary package as an index describes it.
#[derive(Clone, Debug)]
pub struct PackageRecord {
    pub name: String,
    pub version: Version,
    pub architecture: String,
    pub multi_arch: Option<String>,
    pub priority: Option<String>,
    pub essential: bool,
    pub depends: Vec<Group>,
    pub pre_depends: Vec<Group>,
    pub provides: Vec<Dep>,
    pub conflicts: Vec<Group>,
    pub breaks: Vec<Group>,
    /// The package file: URL and checksum.
    pub want: Want,
}

/// A verified, parsed Release file.
#[derive(Debug)]
pub struct Release {
    /// Index path -> (size, sha256).
    pub files: BTreeMap<String, (u64, String)>,
    pub by_hash: bool,
}

/// Parse the signed text of a Release file.
pub fn parse_release(text: &str) -> anyhow::Result<Release> {
    let paras = deb822::parse(text)?;
    let p = paras.first().ok_or_else(|| anyhow::anyhow!("empty Release file"))?;
    let sums = p.get("SHA256").ok_or_else(|| anyhow::anyhow!("Release file has no SHA256 field"))?;
    let mut files = BTreeMap::new();
    for (i, line) in sums.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [sha, size, path] = parts[..] else {
            bail!("SHA256 line {}: expected `SHA256 SIZE PATH`, found `{line}`", i + 1);
        };
        let size = size.parse().with_context(|| format!("SHA256 line {}: size `{size}`", i + 1))?;
        files.insert(path.to_string(), (size, sha.to_ascii_lowercase()));
    }
    Ok(Release { files, by_hash: p.get("Acquire-By-Hash").is_some_and(|v| v.eq_ignore_ascii_case("yes")) })
}

/// A verified Release: its signed text, and the files as fetched (for apt's lists directory).
pub struct FetchedRelease {
    pub source: AptSource,
    pub text: String,
    raw: Vec<(&'static str, Vec<u8>)>,
}

/// Refuse a verified Release that is for another suite or has expired, as apt does: a valid
/// signature alone does not stop a mirror from replaying an old or different Release.
fn check_release(source: &AptSource, text: &str, now: i64) -> anyhow::Result<()> {
    let base = source.dist_url();
    let p = deb822::parse(text)?.into_iter().next().unwrap_or_default();
    if !source.is_flat() {
        let names = [p.get("Suite"), p.get("Codename")];
        if names.iter().all(|n| n.is_some_and(|n| n != source.suite)) {
            bail!(
                "{base}: the Release file is for `{}` (codename `{}`), not `{}`",
                names[0].unwrap_or(""),
                names[1].unwrap_or(""),
                source.suite
            );
        }
    }
    if let Some(until) = p.get("Valid-Until") {
        let until_secs = parse_rfc2822(until).with_context(|| format!("{base}: Valid-Until `{until}`"))?;
        if now > until_secs {
            bail!("{base}: the Release file expired on {until}: the mirror is stale or replays an old Release");
        }
    }
    Ok(())
}

/// Seconds since the epoch of a Release date: `Tue, 01 Dec 2026 00:34:33 UTC`.
fn parse_rfc2822(s: &str) -> anyhow::Result<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, zone] = parts[..] else { bail!("expected `Day, DD Mon YYYY HH:MM:SS UTC`") };
    if !matches!(zone, "UTC" | "GMT" | "+0000" | "Z") {
        bail!("only UTC dates are supported");
    }
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m =
        MONTHS.iter().position(|x| *x == month).ok_or_else(|| anyhow::anyhow!("unknown month `{month}`"))? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse()?, year.parse()?);
    let hms: Vec<i64> = time.split(':').map(str::parse).collect::<Result<_, _>>()?;
    let [hh, mm, ss] = hms[..] else { bail!("bad time `{time}`") };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Fetch and verify the Release file of every source.
pub fn fetch_releases(fetcher: &Fetcher, sources: &[AptSource]) -> anyhow::Result<Vec<FetchedRelease>> {
    let work = tempfile::tempdir()?;
    sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let dir = work.path().join(i.to_string());
            fs_err::create_dir_all(&dir)?;
            fetch_release(fetcher, source, &dir)
        })
        .collect()
}

/// Fetch and verify the Release file of `source`.
fn fetch_release(fetcher: &Fetcher, source: &AptSource, work: &Path) -> anyhow::Result<FetchedRelease> {
    let base = source.dist_url();
    let keyrings = source.keyrings();
    if keyrings.is_empty() {
        bail!("no keyring to verify {base}: name one with signed-by=");
    }
    if let Some(inrelease) = fetcher.get_small(&format!("{base}/InRelease"))? {
        let file = work.join("InRelease");
        fs_err::write(&file, &inrelease)?;
        let text = gpgv(&keyrings, &[&file], &format!("{base}/InRelease"))?;
        check_release(source, &text, now())?;
        return Ok(FetchedRelease { source: source.clone(), text, raw: vec![("InRelease", inrelease)] });
    }
    let release = fetcher
        .get_small(&format!("{base}/Release"))?
        .ok_or_else(|| anyhow::anyhow!("{base}: no InRelease or Release file"))?;
    let sig = fetcher
        .get_small(&format!("{base}/Release.gpg"))?
        .ok_or_else(|| anyhow::anyhow!("{base}/Release is not signed (no Release.gpg)"))?;
    let (rel_file, sig_file) = (work.join("Release"), work.join("Release.gpg"));
    fs_err::write(&rel_file, &release)?;
    fs_err::write(&sig_file, &sig)?;
    let text = gpgv(&keyrings, &[&sig_file, &rel_file], &format!("{base}/Release"))?;
    check_release(source, &text, now())?;
    Ok(FetchedRelease { source: source.clone(), text, raw: vec![("Release", release), ("Release.gpg", sig)] })
}

/// Check the apt lists of a lock as a fresh resolution would check what it fetched: each
/// source's Release verified with the source's keyrings (no expiry check: a lock pins a past
/// Release on purpose), each index the SHA-256 its signed Release lists. Returns the packages
/// the indexes offer, for the lock's packages to be found in.
pub fn verify_lists(sources: &[AptSource], lists: &[ListFile], arch: &str) -> anyhow::Result<Vec<PackageRecord>> {
    let work = tempfile::tempdir()?;
    let mut out = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let base = source.dist_url();
        let keyrings = source.keyrings();
        if keyrings.is_empty() {
            bail!("no keyring to verify {base}: name one with signed-by=");
        }
        let find = |name: &str| lists.iter().find(|l| l.url == format!("{base}/{name}"));
        let write = |name: &str, list: &ListFile| -> anyhow::Result<PathBuf> {
            let file = work.path().join(format!("{i}-{name}"));
            fs_err::write(&file, list.content.read()?)?;
            Ok(file)
        };
        let text = match (find("InRelease"), find("Release"), find("Release.gpg")) {
            (Some(l), _, _) => gpgv(&keyrings, &[&write("InRelease", l)?], &l.url)?,
            (None, Some(r), Some(sig)) => {
                gpgv(&keyrings, &[&write("Release.gpg", sig)?, &write("Release", r)?], &r.url)?
            }
            _ => bail!("{base}: the lock holds no signed Release file"),
        };
        let release = parse_release(&text).with_context(|| format!("bad Release file at {base}"))?;
        let prefix = format!("{base}/");
        for l in lists.iter().filter(|l| l.url.starts_with(&prefix)) {
            let ListContent::Index { path, compressed_name } = &l.content else { continue };
            let sha = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if release.files.get(compressed_name).map(|(_, s)| s.as_str()) != Some(sha) {
                bail!("{}: the lock's index {compressed_name} is not the one its signed Release lists", l.url);
            }
            let text = decompress_index(path, compressed_name).with_context(|| format!("index {}", l.url))?;
            parse_packages(&text, source, arch, &mut out).with_context(|| format!("index {}", l.url))?;
        }
    }
    Ok(out)
}

/// A file for the image's `/var/lib/apt/lists`, so that apt inside it knows the same packages.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ListFile {
    /// apt's file name for it (`host_debian_dists_bookworm_InRelease`).
    pub name: String,
    /// Where it was fetched from (for lock files).
    pub url: String,
    pub content: ListContent,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum ListContent {
    Bytes(Vec<u8>),
    /// A cached index, decompressed when written.
    Index {
        path: PathBuf,
        compressed_name: String,
    },
}

impl ListContent {
    pub fn read(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            ListContent::Bytes(b) => Ok(b.clone()),
            ListContent::Index { path, compressed_name } => Ok(decompress_index(path, compressed_name)?.into_bytes()),
        }
    }
}

/// apt's name for a file under `/var/lib/apt/lists` (its `URItoFileName`).
pub fn apt_list_name(url: &str) -> String {
    let no_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let mut out = String::new();
    for c in no_scheme.chars() {
        match c {
            '/' => out.push('_'),
            c if "\\|{}[]<>\"^~_=!@#$%^&*".contains(c) => out.push_str(&format!("%{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The indexes of a set of sources: the packages they offer, and apt's view of them.
pub struct Indexes {
    pub records: Vec<PackageRecord>,
    pub lists: Vec<ListFile>,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Verify with `gpgv` and return the signed text (for a detached signature, the data file).
pub(crate) fn gpgv(keyrings: &[PathBuf], args: &[&Path], what: &str) -> anyhow::Result<String> {
    let mut cmd = crate::util::process::command("gpgv");
    cmd.arg("--quiet");
    for k in keyrings {
        cmd.arg("--keyring").arg(k);
    }
    let detached = args.len() == 2;
    if !detached {
        cmd.args(["--output", "-"]);
    }
    cmd.args(args);
    let out = cmd.output().context("failed to run gpgv (install the `gpgv` package)")?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("; ");
        let rings: Vec<String> = keyrings.iter().map(|k| k.display().to_string()).collect();
        bail!("{what}: signature verification failed against {}: {why}", rings.join(", "));
    }
    let text = if detached { fs_err::read(args[1])? } else { out.stdout };
    String::from_utf8(text).map_err(|_| anyhow::anyhow!("{what}: signed text is not UTF-8"))
}

/// Fetch the Packages indexes the verified `releases` list for `arch` (and `all`) and parse them.
pub fn load_indexes(
    fetcher: &Fetcher,
    releases: &[FetchedRelease],
    arch: &str,
    progress: &Progress,
) -> anyhow::Result<Indexes> {
    let mut wants = Vec::new();
    let mut lists = Vec::new();
    for fetched in releases {
        let source = &fetched.source;
        for (name, bytes) in &fetched.raw {
            let url = format!("{}/{name}", source.dist_url());
            lists.push(ListFile { name: apt_list_name(&url), url, content: ListContent::Bytes(bytes.clone()) });
        }
        let release =
            parse_release(&fetched.text).with_context(|| format!("bad Release file at {}", source.dist_url()))?;
        let components: Vec<String> = if source.is_flat() { vec![String::new()] } else { source.components.clone() };
        for comp in components {
            let dir = if comp.is_empty() { String::new() } else { format!("{comp}/binary-{arch}/") };
            let pick = ["Packages.xz", "Packages.gz", "Packages"]
                .iter()
                .map(|f| format!("{dir}{f}"))
                .find(|p| release.files.contains_key(p))
                .ok_or_else(|| {
                    anyhow::anyhow!("{}: the Release file lists no {dir}Packages index", source.dist_url())
                })?;
            let (size, sha) = release.files[&pick].clone();
            let url = if release.by_hash {
                format!("{}/{dir}by-hash/SHA256/{sha}", source.dist_url())
            } else {
                format!("{}/{pick}", source.dist_url())
            };
            wants.push((source.clone(), pick, Want { url, size, sha256: sha }));
        }
    }
    let paths = fetcher.get_all(&wants.iter().map(|w| w.2.clone()).collect::<Vec<_>>(), progress)?;
    let mut out = Vec::new();
    for ((source, name, want), path) in wants.iter().zip(paths) {
        let text = {
            let _span = tracing::debug_span!("decompress index", url = %want.url).entered();
            decompress_index(&path, name).with_context(|| format!("index {}", want.url))?
        };
        let _span = tracing::debug_span!("parse index", url = %want.url).entered();
        parse_packages(&text, source, arch, &mut out).with_context(|| format!("index {}", want.url))?;
        let plain = name.trim_end_matches(".xz").trim_end_matches(".gz");
        lists.push(ListFile {
            name: apt_list_name(&format!("{}/{plain}", source.dist_url())),
            url: want.url.clone(),
            content: ListContent::Index { path, compressed_name: name.clone() },
        });
    }
    Ok(Indexes { records: out, lists })
}

/// The index text; the decompressed text is kept next to the download (named after it), so that
/// later resolutions against the same index read it instead of decompressing again.
fn decompress_index(path: &Path, name: &str) -> anyhow::Result<String> {
    let plain = path.with_extension("plain");
    if plain != path {
        if let Ok(text) = fs_err::read_to_string(&plain) {
            return Ok(text);
        }
    }
    let text = decompress(path, name)?;
    if plain != path && (name.ends_with(".xz") || name.ends_with(".gz")) {
        let tmp = path.with_extension(format!("plain.{}.tmp", std::process::id()));
        if fs_err::write(&tmp, &text).and_then(|()| fs_err::rename(&tmp, &plain)).is_err() {
            let _ = fs_err::remove_file(&tmp);
        }
    }
    Ok(text)
}

fn decompress(path: &Path, name: &str) -> anyhow::Result<String> {
    let file = fs_err::File::open(path)?;
    let mut reader: Box<dyn Read> = if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(file))
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut text = String::new();
    reader.by_ref().take(2 << 30).read_to_string(&mut text).context("not UTF-8 text or damaged")?;
    Ok(text)
}

/// Parse a Packages index, keeping packages for `arch` and `all`; large indexes are parsed in
/// parallel pieces split at paragraph boundaries (the order of records is kept).
pub fn parse_packages(text: &str, source: &AptSource, arch: &str, out: &mut Vec<PackageRecord>) -> anyhow::Result<()> {
    const PIECE: usize = 4 << 20;
    if text.len() < 2 * PIECE {
        return parse_piece(text, source, arch, out);
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > PIECE {
        let cut = match rest[PIECE..].find("\n\n") {
            Some(i) => PIECE + i + 2,
            None => rest.len(),
        };
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    use rayon::prelude::*;
    let parsed: Vec<Vec<PackageRecord>> = pieces
        .par_iter()
        .map(|p| {
            let mut v = Vec::new();
            parse_piece(p, source, arch, &mut v).map(|()| v)
        })
        .collect::<anyhow::Result<_>>()?;
    out.extend(parsed.into_iter().flatten());
    Ok(())
}

fn parse_piece(text: &str, source: &AptSource, arch: &str, out: &mut Vec<PackageRecord>) -> anyhow::Result<()> {
    let base = source.uri.trim_end_matches('/').to_string();
    let flat_dir =
        if source.is_flat() { format!("{base}/{}", source.suite.trim_end_matches('/')) } else { base.clone() };
    deb822::for_each(text, |p: Paragraph| -> anyhow::Result<()> {
        let name = p.get("Package").ok_or_else(|| anyhow::anyhow!("a paragraph without Package"))?;
        let ctx = || format!("package `{name}`");
        // Debian policy 5.6.1; the name reaches file names and scripts.
        let valid = name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !valid {
            bail!("{}: not a valid package name", ctx());
        }
        let architecture = p.get("Architecture").unwrap_or("");
        if architecture != arch && architecture != "all" {
            return Ok(());
        }
        let field = |f: &str| -> anyhow::Result<Vec<Group>> {
            relation::parse(p.get(f).unwrap_or("")).with_context(|| format!("{}: field {f}", ctx()))
        };
        let filename = p.get("Filename").ok_or_else(|| anyhow::anyhow!("no Filename")).with_context(ctx)?;
        if filename.split('/').any(|c| c == "..") || filename.starts_with('/') {
            bail!("{}: Filename `{filename}` leaves the repository", ctx());
        }
        let root = if source.is_flat() { &flat_dir } else { &base };
        let want = Want {
            url: format!("{root}/{}", filename.trim_start_matches("./")),
            size: p
                .get("Size")
                .ok_or_else(|| anyhow::anyhow!("no Size"))
                .with_context(ctx)?
                .parse()
                .context("bad Size")
                .with_context(ctx)?,
            sha256: p.get("SHA256").ok_or_else(|| anyhow::anyhow!("no SHA256")).with_context(ctx)?.to_ascii_lowercase(),
        };
        let provides = field("Provides")?.into_iter().flatten().collect();
        out.push(PackageRecord {
            name: name.to_string(),
            version: Version::parse(p.get("Version").unwrap_or("")).with_context(ctx)?,
            architecture: architecture.to_string(),
            multi_arch: p.get("Multi-Arch").map(str::to_string),
            priority: p.get("Priority").map(str::to_string),
            essential: p.get("Essential").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            depends: field("Depends")?,
            pre_depends: field("Pre-Depends")?,
            provides,
            conflicts: field("Conflicts")?,
            breaks: field("Breaks")?,
            want,
        });
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_line_table() {
        let s = parse_source_line("deb [signed-by=/k.gpg arch=amd64] http://h/debian bookworm main contrib").unwrap();
        assert_eq!(s.uri, "http://h/debian");
        assert_eq!(s.components, ["main", "contrib"]);
        assert_eq!(s.signed_by, [PathBuf::from("/k.gpg")]);
        assert_eq!(s.dist_url(), "http://h/debian/dists/bookworm");
        assert_eq!(s.to_string(), "deb [signed-by=/k.gpg] http://h/debian bookworm main contrib");
        let flat = parse_source_line("deb [signed-by=/k.gpg] file:///srv/repo ./").unwrap();
        assert!(flat.is_flat());
        assert_eq!(flat.dist_url(), "file:///srv/repo");
        for (bad, why) in [
            ("deb-src http://h/debian bookworm main", "start with `deb `"),
            ("deb http://h/debian", "no suite"),
            ("deb http://h/debian bookworm", "needs one"),
            ("deb [foo=bar] http://h/debian bookworm main", "unsupported option `foo=bar`"),
            ("deb [signed-by=/k http://h bookworm main", "`[` without `]`"),
        ] {
            let err = parse_source_line(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn release_checks_table() {
        assert_eq!(parse_rfc2822("Tue, 01 Dec 2026 00:34:33 UTC").unwrap(), 1_796_085_273);
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 UTC").unwrap(), 0);
        assert!(parse_rfc2822("Tue, 01 Dec 2026 00:34:33 +0100").is_err());
        let src = parse_source_line("deb http://h/debian bookworm main").unwrap();
        let rel = |extra: &str| format!("Suite: oldstable\nCodename: bookworm\n{extra}");
        let now = 1_796_000_000;
        assert!(check_release(&src, &rel(""), now).is_ok());
        assert!(check_release(&src, &rel("Valid-Until: Tue, 01 Dec 2026 00:34:33 UTC\n"), now).is_ok());
        let err = check_release(&src, &rel("Valid-Until: Tue, 01 Dec 2026 00:34:33 UTC\n"), now + 100_000).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let err = check_release(&src, "Suite: stable\nCodename: trixie\n", now).unwrap_err();
        assert!(err.to_string().contains("not `bookworm`"), "{err}");
        let by_suite = parse_source_line("deb http://h/debian oldstable main").unwrap();
        assert!(check_release(&by_suite, &rel(""), now).is_ok());
    }

    #[test]
    fn apt_list_names() {
        assert_eq!(
            apt_list_name("http://deb.example.org/debian/dists/bookworm/main/binary-amd64/Packages"),
            "deb.example.org_debian_dists_bookworm_main_binary-amd64_Packages"
        );
        assert_eq!(apt_list_name("http://127.0.0.1:8080/my_repo/InRelease"), "127.0.0.1:8080_my%5frepo_InRelease");
    }

    #[test]
    fn release_and_packages_parse() {
        let rel = parse_release(
            "Origin: Test\nAcquire-By-Hash: yes\nSHA256:\n 0123abcd 10 main/binary-amd64/Packages\n ffee 20 main/binary-amd64/Packages.xz\n",
        )
        .unwrap();
        assert!(rel.by_hash);
        assert_eq!(rel.files["main/binary-amd64/Packages.xz"], (20, "ffee".to_string()));
        assert!(parse_release("Origin: x\nSHA256:\n abc notanumber path\n").is_err());

        let source = parse_source_line("deb http://h/debian bookworm main").unwrap();
        let index = "Package: aa\nVersion: 1.0-1\nArchitecture: amd64\nDepends: bb (>= 2) | cc\nProvides: virt\nFilename: pool/main/a/aa.deb\nSize: 10\nSHA256: AB\n\n\
Package: other-arch\nVersion: 1\nArchitecture: arm64\nFilename: x\nSize: 1\nSHA256: 00\n";
        let mut out = Vec::new();
        parse_packages(index, &source, "amd64", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].want.url, "http://h/debian/pool/main/a/aa.deb");
        assert_eq!(out[0].want.sha256, "ab");
        assert_eq!(out[0].depends[0].len(), 2);
        assert_eq!(out[0].provides[0].name, "virt");
        let bad_name = "Package: x;rm -rf\nVersion: 1\nArchitecture: all\nFilename: x\nSize: 1\nSHA256: 00\n";
        let err = parse_packages(bad_name, &source, "amd64", &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("not a valid package name"), "{err:#}");
        let evil = "Package: aa\nVersion: 1\nArchitecture: all\nFilename: ../../etc/passwd\nSize: 1\nSHA256: 00\n";
        let err = parse_packages(evil, &source, "amd64", &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("leaves the repository"), "{err:#}");
    }
}
