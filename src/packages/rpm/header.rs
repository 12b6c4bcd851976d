//! RPM package files: the lead, the signature header and the main header, read from untrusted
//! bytes.
//!
//! A `.rpm` is a 96-byte lead (magic `ed ab ee db`), a signature header padded to 8 bytes, the
//! main header, then the compressed payload. A header is the magic `8e ad e8 01`, four reserved
//! bytes, the number of index entries and the size of the data store (both big-endian `u32`),
//! the index (16 bytes per entry: tag, type, offset, count) and the data store. Every offset and
//! count is checked against the store before it is used, and sizes are limited, so a damaged
//! header is an error that names the tag, never a panic or a huge allocation.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{bail, Context};

const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// rpm's own limits (`hdrchkTags`, `hdrchkData`).
const MAX_ENTRIES: u32 = 0xffff;
const MAX_DATA: u32 = 256 << 20;
/// The most values one tag may declare (tags may share their data, so counts alone could ask
/// for far more memory than the header's size).
const MAX_VALUES: u32 = 1 << 21;

pub mod tag {
    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const ARCH: u32 = 1022;
    pub const PREIN: u32 = 1023;
    pub const PROVIDENAME: u32 = 1047;
    pub const POSTIN: u32 = 1024;
    pub const FILESIZES: u32 = 1028;
    pub const FILEMODES: u32 = 1030;
    pub const FILERDEVS: u32 = 1033;
    pub const FILELINKTOS: u32 = 1036;
    pub const FILEFLAGS: u32 = 1037;
    pub const FILEUSERNAME: u32 = 1039;
    pub const FILEGROUPNAME: u32 = 1040;
    pub const TRIGGERSCRIPTS: u32 = 1065;
    pub const TRIGGERNAME: u32 = 1066;
    pub const TRIGGERVERSION: u32 = 1067;
    pub const TRIGGERFLAGS: u32 = 1068;
    pub const TRIGGERINDEX: u32 = 1069;
    pub const PREINPROG: u32 = 1085;
    pub const POSTINPROG: u32 = 1086;
    pub const TRIGGERSCRIPTPROG: u32 = 1092;
    pub const DIRINDEXES: u32 = 1116;
    pub const BASENAMES: u32 = 1117;
    pub const DIRNAMES: u32 = 1118;
    pub const PROVIDEFLAGS: u32 = 1112;
    pub const PROVIDEVERSION: u32 = 1113;
    pub const PAYLOADFORMAT: u32 = 1124;
    pub const PAYLOADCOMPRESSOR: u32 = 1125;
    pub const PRETRANS: u32 = 1151;
    pub const POSTTRANS: u32 = 1152;
    pub const PRETRANSPROG: u32 = 1153;
    pub const POSTTRANSPROG: u32 = 1154;
    pub const LONGFILESIZES: u32 = 5008;
    pub const FILECAPS: u32 = 5010;
}

/// `FILEFLAGS` bits.
pub const FILE_CONFIG: u32 = 1;
pub const FILE_GHOST: u32 = 1 << 6;

/// Tag data types.
const T_INT16: u32 = 3;
const T_INT32: u32 = 4;
const T_INT64: u32 = 5;
const T_STRING: u32 = 6;
const T_BIN: u32 = 7;
const T_STRING_ARRAY: u32 = 8;
const T_I18NSTRING: u32 = 9;

/// One parsed header: the raw bytes (as stored in the rpmdb) and its index.
#[derive(Clone, Debug)]
pub struct Header {
    /// The header from its magic to the end of its data store.
    pub raw: Vec<u8>,
    index: HashMap<u32, (u32, u32, u32)>,
    data_start: usize,
}

impl Header {
    /// Read a header from `r`; `pad` reads the signature header's padding to 8 bytes.
    pub fn read(r: &mut impl Read, pad: bool) -> anyhow::Result<Header> {
        let mut intro = [0u8; 16];
        r.read_exact(&mut intro).context("truncated header")?;
        if intro[..4] != HEADER_MAGIC {
            bail!("bad header magic");
        }
        let entries = u32::from_be_bytes(intro[8..12].try_into().expect("4 bytes"));
        let data = u32::from_be_bytes(intro[12..16].try_into().expect("4 bytes"));
        if entries == 0 || entries > MAX_ENTRIES || data > MAX_DATA {
            bail!("header of {entries} entries and {data} bytes is out of range");
        }
        let len = 16 + entries as usize * 16 + data as usize;
        // Read what is there, not what the header claims: a short file allocates little.
        let mut raw = intro.to_vec();
        r.take((len - 16) as u64).read_to_end(&mut raw).context("truncated header")?;
        if raw.len() != len {
            bail!("truncated header");
        }
        if pad {
            let mut padding = [0u8; 8];
            r.read_exact(&mut padding[..(8 - len % 8) % 8]).context("truncated header padding")?;
        }
        Header::parse(raw)
    }

    /// Parse a header held in memory (as read by [`Header::read`], or from an entry).
    pub fn parse(raw: Vec<u8>) -> anyhow::Result<Header> {
        if raw.len() < 16 || raw[..4] != HEADER_MAGIC {
            bail!("bad header magic");
        }
        let entries = u32::from_be_bytes(raw[8..12].try_into().expect("4 bytes")) as usize;
        let data = u32::from_be_bytes(raw[12..16].try_into().expect("4 bytes")) as usize;
        let data_start = 16 + entries * 16;
        if raw.len() != data_start + data {
            bail!("header size does not match its index");
        }
        let mut index = HashMap::new();
        for i in 0..entries {
            let e = &raw[16 + i * 16..32 + i * 16];
            let word = |k: usize| u32::from_be_bytes(e[k * 4..k * 4 + 4].try_into().expect("4 bytes"));
            let (t, ty, offset, count) = (word(0), word(1), word(2), word(3));
            if offset as usize > data || count as usize > data + 1 {
                bail!("tag {t}: offset {offset} or count {count} beyond the data store of {data} bytes");
            }
            index.insert(t, (ty, offset, count));
        }
        Ok(Header { raw, index, data_start })
    }

    pub fn has(&self, t: u32) -> bool {
        self.index.contains_key(&t)
    }

    /// The number of values a tag declares (0 when absent), without decoding them.
    pub fn count(&self, t: u32) -> usize {
        self.index.get(&t).map_or(0, |&(ty, _, count)| if ty == T_STRING { 1 } else { count as usize })
    }

    fn data(&self) -> &[u8] {
        &self.raw[self.data_start..]
    }

    fn entry(&self, t: u32, types: &[u32]) -> anyhow::Result<Option<(u32, &[u8], usize)>> {
        let Some(&(ty, offset, count)) = self.index.get(&t) else { return Ok(None) };
        if count > MAX_VALUES {
            bail!("tag {t} declares {count} values, more than {MAX_VALUES}");
        }
        if !types.contains(&ty) {
            bail!("tag {t} has type {ty}, expected one of {types:?}");
        }
        Ok(Some((ty, &self.data()[offset as usize..], count as usize)))
    }

    /// Strings of a string-array tag (or a single string as one element).
    pub fn strings(&self, t: u32) -> anyhow::Result<Vec<String>> {
        let Some((ty, mut bytes, count)) = self.entry(t, &[T_STRING, T_STRING_ARRAY, T_I18NSTRING])? else {
            return Ok(Vec::new());
        };
        let count = if ty == T_STRING { 1 } else { count };
        let mut out = Vec::with_capacity(count.min(bytes.len()));
        for _ in 0..count {
            let end = bytes.iter().position(|&b| b == 0).with_context(|| format!("tag {t}: unterminated string"))?;
            out.push(String::from_utf8(bytes[..end].to_vec()).with_context(|| format!("tag {t}: not UTF-8"))?);
            bytes = &bytes[end + 1..];
        }
        Ok(out)
    }

    pub fn string(&self, t: u32) -> anyhow::Result<Option<String>> {
        Ok(self.strings(t)?.into_iter().next())
    }

    /// Integers of an integer tag of any width, widened.
    pub fn ints(&self, t: u32) -> anyhow::Result<Vec<u64>> {
        let Some((ty, bytes, count)) = self.entry(t, &[T_INT16, T_INT32, T_INT64])? else { return Ok(Vec::new()) };
        let width = match ty {
            T_INT16 => 2,
            T_INT32 => 4,
            _ => 8,
        };
        let bytes = bytes.get(..count * width).with_context(|| format!("tag {t}: {count} values beyond the data"))?;
        Ok(bytes
            .chunks_exact(width)
            .map(|c| match width {
                2 => u16::from_be_bytes([c[0], c[1]]) as u64,
                4 => u32::from_be_bytes(c.try_into().expect("4 bytes")) as u64,
                _ => u64::from_be_bytes(c.try_into().expect("8 bytes")),
            })
            .collect())
    }

    pub fn int(&self, t: u32) -> anyhow::Result<Option<u64>> {
        Ok(self.ints(t)?.into_iter().next())
    }

    /// Raw bytes of a binary tag.
    pub fn bin(&self, t: u32) -> anyhow::Result<Option<&[u8]>> {
        let Some((_, bytes, count)) = self.entry(t, &[T_BIN])? else { return Ok(None) };
        Ok(Some(bytes.get(..count).with_context(|| format!("tag {t}: beyond the data"))?))
    }

    /// The package's epoch, version and release.
    pub fn evr(&self) -> anyhow::Result<super::version::Evr> {
        Ok(super::version::Evr {
            epoch: self.int(tag::EPOCH)?.unwrap_or(0),
            version: self.string(tag::VERSION)?.unwrap_or_default(),
            release: self.string(tag::RELEASE)?,
        })
    }

    /// `name-[epoch:]version-release.arch`, for messages.
    pub fn nevra(&self) -> String {
        let s = |t| self.string(t).ok().flatten().unwrap_or_default();
        let epoch = match self.int(tag::EPOCH) {
            Ok(Some(e)) => format!("{e}:"),
            _ => String::new(),
        };
        format!("{}-{epoch}{}-{}.{}", s(tag::NAME), s(tag::VERSION), s(tag::RELEASE), s(tag::ARCH))
    }
}

/// Read the lead and the signature header; `r` is then at the main header.
pub fn skip_lead_and_signature(r: &mut impl Read) -> anyhow::Result<()> {
    let mut lead = [0u8; 96];
    r.read_exact(&mut lead).context("truncated lead: not an RPM package")?;
    if lead[..4] != LEAD_MAGIC {
        bail!("not an RPM package (bad lead magic)");
    }
    if lead[4] < 3 {
        bail!("RPM format {} is not supported (expected 3 or 4)", lead[4]);
    }
    Header::read(r, true).context("signature header")?;
    Ok(())
}

/// One file of the package, from the main header's file list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Absolute path, as the header spells it (`/usr/bin/x`).
    pub path: String,
    pub size: u64,
    pub mode: u32,
    pub rdev: u64,
    pub link_to: String,
    pub flags: u32,
    pub user: String,
    pub group: String,
    /// The text form `cap_set_file` takes, empty for none.
    pub caps: String,
}

/// The file list of a header (empty for a package without files), of at most `max` files. Every
/// per-file tag must declare one value per file before any is decoded: tags may share their
/// data, so a small header could otherwise declare millions of files.
pub fn files(h: &Header, max: u64) -> anyhow::Result<Vec<FileInfo>> {
    let n = h.count(tag::BASENAMES);
    if n == 0 {
        return Ok(Vec::new());
    }
    if n as u64 > max {
        bail!("the header lists {n} files, more than the limit of {max}");
    }
    let sizes_tag = if h.has(tag::LONGFILESIZES) { tag::LONGFILESIZES } else { tag::FILESIZES };
    for (t, what) in [
        (tag::DIRINDEXES, "DIRINDEXES"),
        (sizes_tag, "FILESIZES"),
        (tag::FILEMODES, "FILEMODES"),
        (tag::FILEUSERNAME, "FILEUSERNAME"),
        (tag::FILEGROUPNAME, "FILEGROUPNAME"),
    ] {
        if h.count(t) != n {
            bail!("the header lists {n} files but {} {what}", h.count(t));
        }
    }
    for (t, what) in [
        (tag::FILERDEVS, "FILERDEVS"),
        (tag::FILELINKTOS, "FILELINKTOS"),
        (tag::FILEFLAGS, "FILEFLAGS"),
        (tag::FILECAPS, "FILECAPS"),
    ] {
        if h.has(t) && h.count(t) != n {
            bail!("the header lists {n} files but {} {what}", h.count(t));
        }
    }
    if h.count(tag::DIRNAMES) > n {
        bail!("the header lists more directories than files");
    }
    let basenames = h.strings(tag::BASENAMES)?;
    let dirnames = h.strings(tag::DIRNAMES)?;
    let dirindexes = h.ints(tag::DIRINDEXES)?;
    let sizes = h.ints(sizes_tag)?;
    let modes = h.ints(tag::FILEMODES)?;
    let rdevs = h.ints(tag::FILERDEVS)?;
    let links = h.strings(tag::FILELINKTOS)?;
    let flags = h.ints(tag::FILEFLAGS)?;
    let users = h.strings(tag::FILEUSERNAME)?;
    let groups = h.strings(tag::FILEGROUPNAME)?;
    let caps = h.strings(tag::FILECAPS)?;
    for (what, len) in [
        ("DIRINDEXES", dirindexes.len()),
        ("FILESIZES", sizes.len()),
        ("FILEMODES", modes.len()),
        ("FILEUSERNAME", users.len()),
        ("FILEGROUPNAME", groups.len()),
    ] {
        if len != n {
            bail!("the header lists {n} files but {len} {what}");
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let dir = dirnames
            .get(dirindexes[i] as usize)
            .with_context(|| format!("file {}: directory index {} out of range", basenames[i], dirindexes[i]))?;
        out.push(FileInfo {
            path: format!("{dir}{}", basenames[i]),
            size: sizes[i],
            mode: modes[i] as u32,
            rdev: rdevs.get(i).copied().unwrap_or(0),
            link_to: links.get(i).cloned().unwrap_or_default(),
            flags: flags.get(i).copied().unwrap_or(0) as u32,
            user: users[i].clone(),
            group: groups[i].clone(),
            caps: caps.get(i).cloned().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// A scriptlet: its interpreter (with arguments) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scriptlet {
    pub interpreter: Vec<String>,
    pub body: String,
}

/// The scriptlet in `body_tag` run by `prog_tag`'s interpreter, if the package has one.
pub fn scriptlet(h: &Header, body_tag: u32, prog_tag: u32) -> anyhow::Result<Option<Scriptlet>> {
    let interpreter = h.strings(prog_tag)?;
    let body = h.string(body_tag)?.unwrap_or_default();
    if interpreter.is_empty() && body.is_empty() {
        return Ok(None);
    }
    let interpreter = if interpreter.is_empty() { vec!["/bin/sh".to_string()] } else { interpreter };
    Ok(Some(Scriptlet { interpreter, body }))
}

/// A `%triggerin` scriptlet: fires when the named package is installed (in a version the
/// constraint matches, if it has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub on: String,
    pub constraint: Option<(super::repo::Flag, super::version::Evr)>,
    pub script: Scriptlet,
}

impl Trigger {
    /// Does installing `name` at `evr` set this trigger off?
    pub fn fires_on(&self, name: &str, evr: &super::version::Evr) -> bool {
        self.on == name
            && self.constraint.as_ref().is_none_or(|(flag, want)| flag.matches(evr.cmp_for_requirement(want)))
    }
}

/// The comparison bits of a dependency or trigger flags word (`RPMSENSE_LESS|GREATER|EQUAL`).
pub fn sense_flag(flags: u64) -> Option<super::repo::Flag> {
    use super::repo::Flag;
    Some(match flags & 0x0e {
        0x02 => Flag::Lt,
        0x0a => Flag::Le,
        0x08 => Flag::Eq,
        0x0c => Flag::Ge,
        0x04 => Flag::Gt,
        _ => return None,
    })
}

/// `TRIGGERFLAGS` bit of `%triggerin`.
const SENSE_TRIGGERIN: u64 = 1 << 16;

/// The package's `%triggerin` scriptlets (others, `%triggerun` and `%triggerpostun`, concern
/// removal, which building an image never does).
pub fn triggers_in(h: &Header) -> anyhow::Result<Vec<Trigger>> {
    let names = h.strings(tag::TRIGGERNAME)?;
    let flags = h.ints(tag::TRIGGERFLAGS)?;
    let index = h.ints(tag::TRIGGERINDEX)?;
    let scripts = h.strings(tag::TRIGGERSCRIPTS)?;
    let progs = h.strings(tag::TRIGGERSCRIPTPROG)?;
    let versions = h.strings(tag::TRIGGERVERSION)?;
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if flags.get(i).is_none_or(|f| f & SENSE_TRIGGERIN == 0) {
            continue;
        }
        let k = *index.get(i).context("trigger without an index")? as usize;
        let body = scripts.get(k).with_context(|| format!("trigger on {name}: script {k} out of range"))?;
        let prog = progs.get(k).cloned().unwrap_or_else(|| "/bin/sh".into());
        let constraint = match (sense_flag(flags[i]), versions.get(i).filter(|v| !v.is_empty())) {
            (Some(flag), Some(v)) => {
                Some((flag, super::version::Evr::parse(v).map_err(|e| anyhow::anyhow!("trigger on {name}: {e}"))?))
            }
            _ => None,
        };
        out.push(Trigger {
            on: name.clone(),
            constraint,
            script: Scriptlet { interpreter: vec![prog], body: body.clone() },
        });
    }
    Ok(out)
}
