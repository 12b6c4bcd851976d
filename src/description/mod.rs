//! Image descriptions: one model read from KIWI XML ([`kiwi`]) or TOML ([`toml_form`]), and the
//! chain of bases a derived description names.
//!
//! A description is a directory, as in KIWI: the document (`appliance.kiwi`, `config.kiwi`,
//! `config.xml` or `image.toml`), an optional `root/` overlay tree, `config.sh`, `images.sh` and
//! `config-overlay/`. A derived description holds only its delta: packages added and removed,
//! files overlaid, scripts appended, users merged by name, preferences and target attributes
//! overridden field by field. [`load_chain`] reads a description and its bases, base first, and
//! reports a cycle as `a => b => a` before any work starts.

pub mod kiwi;
pub mod toml_form;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The document names a description directory may hold, in the order they are looked for.
pub const DOCUMENT_NAMES: &[&str] = &["appliance.kiwi", "config.kiwi", "config.xml", "image.toml"];

/// One image description, as written (a derived description holds only its delta).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Description {
    pub name: String,
    pub info: Info,
    /// The base this description derives from, as written.
    pub derived_from: Option<String>,
    pub preferences: Preferences,
    pub repositories: Vec<Repository>,
    pub packages: Packages,
    /// Tar archives (relative to the description directory) unpacked over the root.
    pub archives: Vec<String>,
    pub users: Vec<User>,
    /// Owners and modes for files of the `root/` overlay, by absolute path in the image.
    pub files: BTreeMap<String, FileAttrs>,
    pub scripts: Scripts,
    /// Which generations of this image `strata gc` keeps (TOML `[retention]`).
    pub retention: Option<Retention>,
    /// The OCI image configuration (KIWI `<containerconfig>`, TOML `[container]`).
    pub container: Option<Container>,
}

/// The OCI image configuration a description gives its image (KIWI `<containerconfig>`, TOML
/// `[container]`): what a container runtime starts, as whom and where. A derived description's
/// settings go over its base's ([`Container::merge`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Container {
    /// The repository name (KIWI `name`): the default name of exported archives.
    pub name: Option<String>,
    /// The default tag of exports (KIWI `tag`).
    pub tag: Option<String>,
    pub maintainer: Option<String>,
    /// `USER[:GROUP]` or a numeric id.
    pub user: Option<String>,
    /// An absolute path.
    pub workingdir: Option<String>,
    /// The program and its arguments; `Some(vec![])` clears the base's.
    pub entrypoint: Option<Vec<String>>,
    /// The default arguments (KIWI `<subcommand>`); `Some(vec![])` clears the base's.
    pub cmd: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Ports as `N/tcp` or `N/udp` (a bare `N` is read as tcp).
    pub expose: Vec<String>,
    /// Absolute paths.
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    /// More tags for the same image (KIWI `additionalnames`: `:TAG` or `NAME:TAG`, only the tag
    /// is used).
    pub additional_tags: Vec<String>,
    /// The config's `author` (KIWI `<history author>`; else the maintainer).
    pub author: Option<String>,
    /// The image's own history entry (KIWI `<history created_by>` and its text).
    pub created_by: Option<String>,
    pub comment: Option<String>,
}

impl Container {
    /// `over`'s settings over these: values replace, maps are merged key by key, ports and
    /// volumes are added; a new entrypoint drops the command unless `over` gives one too.
    pub fn merge(&mut self, over: &Container) {
        for (dst, src) in [
            (&mut self.name, &over.name),
            (&mut self.tag, &over.tag),
            (&mut self.maintainer, &over.maintainer),
            (&mut self.user, &over.user),
            (&mut self.workingdir, &over.workingdir),
            (&mut self.stop_signal, &over.stop_signal),
            (&mut self.author, &over.author),
            (&mut self.created_by, &over.created_by),
            (&mut self.comment, &over.comment),
        ] {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        // As with a Dockerfile's ENTRYPOINT: a new entrypoint drops the base's command, whose
        // arguments were meant for the base's entrypoint.
        if over.entrypoint.is_some() {
            self.entrypoint.clone_from(&over.entrypoint);
            self.cmd = None;
        }
        if over.cmd.is_some() {
            self.cmd.clone_from(&over.cmd);
        }
        self.env.extend(over.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.labels.extend(over.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (dst, src) in [
            (&mut self.expose, &over.expose),
            (&mut self.volumes, &over.volumes),
            (&mut self.additional_tags, &over.additional_tags),
        ] {
            for x in src {
                if !dst.contains(x) {
                    dst.push(x.clone());
                }
            }
        }
    }

    /// A port as the image config writes it: `80` is `80/tcp`.
    pub fn port(spec: &str) -> anyhow::Result<String> {
        let (n, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
        if !matches!(proto, "tcp" | "udp" | "sctp") || n.parse::<u16>().map_or(true, |n| n == 0) {
            bail!("port `{spec}`: expected a number from 1 to 65535, optionally /tcp, /udp or /sctp");
        }
        Ok(format!("{}/{proto}", n.parse::<u16>().unwrap_or_default()))
    }

    /// Every problem of the settings, in one message.
    pub fn check(&self) -> anyhow::Result<()> {
        let mut problems = vec![];
        for p in &self.expose {
            if let Err(e) = Container::port(p) {
                problems.push(e.to_string());
            }
        }
        for v in self.volumes.iter().chain(self.workingdir.as_ref()) {
            if !v.starts_with('/') {
                problems.push(format!("`{v}`: expected an absolute path"));
            }
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                problems.push(format!("environment variable `{k}`: a name without `=`"));
            }
        }
        for t in self.tag.iter().chain(&self.additional_tags) {
            if !valid_oci_tag(t) {
                problems.push(format!("tag `{t}`: expected letters, digits, `_`, `.` and `-`"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("container: {}", problems.join("; "))
        }
    }
}

/// A retention policy a description sets for its image: a generation is kept when either rule
/// keeps it (and the newest, pinned ones always are). At least one rule is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the newest N generations (N >= 1).
    pub keep_last: Option<u64>,
    /// Keep generations built less than this many seconds ago.
    pub keep_younger_than: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub author: Option<String>,
    pub contact: Option<String>,
    pub specification: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preferences {
    pub version: Option<String>,
    /// Only `apt` is supported so far.
    pub packagemanager: Option<String>,
    pub locale: Option<String>,
    pub keytable: Option<String>,
    pub timezone: Option<String>,
    /// Build targets by kind (`disk`, `iso`): KIWI `<type image="oem|iso">` attributes.
    pub targets: BTreeMap<TargetKind, BTreeMap<String, String>>,
}

/// The artifact kinds a description can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    Disk,
    Iso,
    /// An OCI image (an OCI archive from `strata deploy`).
    Container,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [TargetKind::Disk, TargetKind::Iso, TargetKind::Container];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Disk => "disk",
            TargetKind::Iso => "iso",
            TargetKind::Container => "container",
        }
    }

    /// The KIWI `<type image=…>` value.
    pub fn kiwi_image(self) -> &'static str {
        match self {
            TargetKind::Disk => "oem",
            TargetKind::Iso => "iso",
            TargetKind::Container => "oci",
        }
    }
}

/// Target (type) attributes strata understands, with what each means. Anything else is an error.
pub const TARGET_ATTRIBUTES: &[(&str, &str)] = &[
    ("primary", "`true` for the target built by default"),
    ("filesystem", "root filesystem: ext4 or xfs"),
    ("firmware", "bios, efi or uefi"),
    ("kernelcmdline", "extra kernel arguments"),
    ("bootloader", "grub2"),
    ("format", "disk image format: raw or qcow2"),
    ("volid", "ISO volume id"),
    ("flags", "live ISO flags (overlay, dmsquash)"),
    ("disksize", "disk size, e.g. 4G"),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repository {
    /// The build host's configured apt sources and their keyrings (KIWI: `obsrepositories:/`).
    Host,
    Apt(AptRepository),
    RpmMd(RpmRepository),
}

/// An rpm-md repository (KIWI `type="rpm-md"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RpmRepository {
    pub alias: Option<String>,
    pub uri: String,
    /// Key files `repodata/repomd.xml` must be signed by (absolute paths).
    pub signed_by: Vec<String>,
    /// `false` only when the description says so: the repository is then trusted by checksums
    /// alone (a local repository a test or a build made).
    pub gpgcheck: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AptRepository {
    pub alias: Option<String>,
    pub uri: String,
    /// Suite (`bookworm`); `None` for a flat repository.
    pub distribution: Option<String>,
    pub components: Vec<String>,
    /// Keyring files the Release file must be signed by (absolute paths).
    pub signed_by: Vec<String>,
}

impl AptRepository {
    /// The repository as an apt one-line source.
    pub fn source_line(&self) -> String {
        let opts = if self.signed_by.is_empty() {
            String::new()
        } else {
            format!("[signed-by={}] ", self.signed_by.join(","))
        };
        match &self.distribution {
            Some(d) => format!("deb {opts}{} {d} {}", self.uri, self.components.join(" ")),
            None => format!("deb {opts}{} ./", self.uri),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packages {
    /// Installed first (KIWI `type="bootstrap"`); strata resolves them with `install` as one set.
    pub bootstrap: Vec<String>,
    pub install: Vec<String>,
    /// Removed with the packages that depend on them (KIWI `type="uninstall"`).
    pub remove: Vec<String>,
    /// Removed alone, ignoring dependencies (KIWI `type="delete"`).
    pub delete: Vec<String>,
    /// Never installed (KIWI `<ignore>`).
    pub exclude: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: Option<Password>,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub uid: Option<u32>,
    /// The first group is the primary group; missing groups are created.
    pub groups: Vec<String>,
    pub realname: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Password {
    /// A crypt(3) hash, written as is.
    Hashed(String),
    /// A clear-text password, hashed (SHA-512 crypt) when the image is built.
    Plain(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileAttrs {
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Octal permission bits (`0640`).
    pub mode: Option<u32>,
}

/// Script files, relative to the description directory. `None` means the KIWI convention:
/// `config.sh` / `images.sh` when present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scripts {
    pub config: Option<String>,
    pub images: Option<String>,
}

/// Where a document came from, for error messages.
#[derive(Clone, Debug)]
pub struct Source {
    pub dir: PathBuf,
    pub file: PathBuf,
}

/// A description read from its directory.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub source: Source,
    pub description: Description,
}

/// What a derived description builds on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// Another description directory (resolved to a canonical path).
    Description(PathBuf),
    /// A store root or entry id (`root:images/base`).
    Root(String),
    /// An OSTree commit (`ostree:REPO#REF`).
    Ostree { repo: PathBuf, reference: String },
    /// An OCI image in an image layout (`oci:DIR[:TAG]`).
    Oci { dir: PathBuf, tag: Option<String> },
    /// An OCI image in an archive (`oci-archive:FILE[:TAG]`).
    OciArchive { file: PathBuf, tag: Option<String> },
    /// An OCI image in a registry (`docker://HOST/REPO[:TAG|@DIGEST]`).
    Registry(ImageReference),
    /// An ostree-native container image: `ostree-container:` (or ostree's own prefixes
    /// `ostree-unverified-image:`, `ostree-unverified-registry:HOST/REPO[:TAG]`) before an
    /// `oci:`, `oci-archive:` or `docker://` image, held here as [`Base::Oci`],
    /// [`Base::OciArchive`] or [`Base::Registry`].
    OstreeContainer(Box<Base>),
}

/// An image in a registry: `docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]`.
///
/// The host is always written out (strata has no default registry): the first path component
/// is the host when it holds a `.` or a `:` or is `localhost`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// `HOST[:PORT]`.
    pub host: String,
    /// The repository path (`team/os`).
    pub repo: String,
    /// The tag, when given (a manifest request without tag or digest asks for `latest`).
    pub tag: Option<String>,
    /// `sha256:HEX`, when the reference pins a manifest.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parse `docker://HOST/REPO[:TAG|@DIGEST]`.
    pub fn parse(spec: &str) -> anyhow::Result<ImageReference> {
        let Some(rest) = spec.strip_prefix("docker://") else {
            bail!("`{spec}`: expected docker://HOST/REPO[:TAG]");
        };
        let Some((host, path)) = rest.split_once('/') else {
            bail!("`{spec}`: expected docker://HOST/REPO[:TAG], with the registry's host");
        };
        if !(host.contains('.') || host.contains(':') || host == "localhost") || host.contains('@') {
            bail!("`{spec}`: `{host}` is not a registry host: write docker://HOST[:PORT]/REPO[:TAG] (strata has no default registry)");
        }
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => {
                let ok = d
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
                if !ok {
                    bail!("`{spec}`: digest `{d}`: expected sha256: and 64 lowercase hex digits");
                }
                (p, Some(d.to_string()))
            }
            None => (path, None),
        };
        let (repo, tag) = match path.rsplit_once(':') {
            Some((r, t)) => {
                if !valid_oci_tag(t) {
                    bail!("`{spec}`: tag `{t}`: expected letters, digits, `_`, `.` and `-` (at most 128, not starting with `.` or `-`)");
                }
                (r, Some(t.to_string()))
            }
            None => (path, None),
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        };
        if repo.is_empty() || !repo.split('/').all(component_ok) {
            bail!("`{spec}`: repository `{repo}`: expected lowercase letters, digits, `.`, `_` and `-` between `/`");
        }
        Ok(ImageReference { host: host.to_string(), repo: repo.to_string(), tag, digest })
    }

    /// What a manifest request names: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }
}

impl std::fmt::Display for ImageReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "docker://{}/{}", self.host, self.repo)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A tag as the OCI distribution specification allows it.
pub fn valid_oci_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `oci:DIR[:TAG]` as (DIR, TAG): the last `:` starts the tag.
pub fn oci_reference(spec: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    let Some(rest) = spec.strip_prefix("oci:") else {
        bail!("`{spec}`: expected oci:DIR[:TAG], an OCI image layout directory");
    };
    if rest.is_empty() {
        bail!("`{spec}`: the layout directory is missing (oci:DIR[:TAG])");
    }
    split_tag(spec, rest)
}

/// `oci-archive:FILE[:TAG]` as (FILE, TAG): the last `:` starts the tag.
pub fn oci_archive_reference(spec: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    let Some(rest) = spec.strip_prefix("oci-archive:") else {
        bail!("`{spec}`: expected oci-archive:FILE[:TAG], an OCI archive");
    };
    if rest.is_empty() {
        bail!("`{spec}`: the archive file is missing (oci-archive:FILE[:TAG])");
    }
    split_tag(spec, rest)
}

/// `PATH[:TAG]` (`rest` of `spec`) as (PATH, TAG).
fn split_tag(spec: &str, rest: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    match rest.rsplit_once(':') {
        Some((dir, tag)) if !dir.is_empty() => {
            if !valid_oci_tag(tag) {
                bail!("`{spec}`: tag `{tag}`: expected letters, digits, `_`, `.` and `-` (at most 128, not starting with `.` or `-`)");
            }
            Ok((PathBuf::from(dir), Some(tag.to_string())))
        }
        _ => Ok((PathBuf::from(rest), None)),
    }
}

/// The image an ostree-native container reference names (`ostree-container:IMAGE`, or ostree's
/// `ostree-unverified-image:IMAGE` and `ostree-unverified-registry:HOST/REPO[:TAG]`; IMAGE may
/// use ostree's `registry:HOST/REPO[:TAG]` for `docker://HOST/REPO[:TAG]`), or `None`
/// for another kind of reference. Signed forms (`ostree-image-signed:`, `ostree-remote-image:`)
/// are refused: strata verifies the commit's checksums, not its signatures.
pub fn ostree_container_image(value: &str) -> anyhow::Result<Option<String>> {
    if let Some(rest) =
        value.strip_prefix("ostree-container:").or_else(|| value.strip_prefix("ostree-unverified-image:"))
    {
        // ostree's tools name the registry transport `registry:`.
        if let Some(image) = rest.strip_prefix("registry:") {
            return Ok(Some(format!("docker://{image}")));
        }
        if !["oci:", "oci-archive:", "docker://"].iter().any(|p| rest.starts_with(p)) {
            bail!("`{value}`: expected an oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://HOST/REPO[:TAG] image after the `:`");
        }
        return Ok(Some(rest.to_string()));
    }
    if let Some(rest) = value.strip_prefix("ostree-unverified-registry:") {
        return Ok(Some(format!("docker://{rest}")));
    }
    if value.starts_with("ostree-image-signed:") || value.starts_with("ostree-remote-image:") {
        bail!("`{value}`: signed ostree container references are not supported; strata checks every object's checksum but not the commit's signature (write ostree-container:IMAGE)");
    }
    Ok(None)
}

/// Parse a `derived-from` value; `dir` is the deriving description's directory.
pub fn parse_base(value: &str, dir: &Path) -> anyhow::Result<Base> {
    if let Some(root) = value.strip_prefix("root:") {
        if root.is_empty() {
            bail!("`{value}`: expected `root:NAME` with a store root name or entry id");
        }
        return Ok(Base::Root(root.to_string()));
    }
    if let Some(rest) = value.strip_prefix("ostree:") {
        return match rest.rsplit_once('#') {
            Some((repo, reference)) if !repo.is_empty() && !reference.is_empty() => {
                Ok(Base::Ostree { repo: dir.join(repo), reference: reference.to_string() })
            }
            _ => bail!("`{value}`: expected `ostree:REPO#REF`"),
        };
    }
    if value.starts_with("oci:") {
        let (layout, tag) = oci_reference(value)?;
        return Ok(Base::Oci { dir: dir.join(layout), tag });
    }
    if value.starts_with("oci-archive:") {
        let (file, tag) = oci_archive_reference(value)?;
        return Ok(Base::OciArchive { file: dir.join(file), tag });
    }
    if value.starts_with("docker://") {
        return Ok(Base::Registry(ImageReference::parse(value)?));
    }
    if let Some(image) = ostree_container_image(value)? {
        return match parse_base(&image, dir)? {
            b @ (Base::Oci { .. } | Base::OciArchive { .. } | Base::Registry(_)) => {
                Ok(Base::OstreeContainer(Box::new(b)))
            }
            _ => bail!("`{value}`: expected ostree-container:oci:DIR[:TAG], ostree-container:oci-archive:FILE[:TAG] or ostree-container:docker://HOST/REPO[:TAG]"),
        };
    }
    if value.contains(':') && !value.starts_with('.') && !value.starts_with('/') {
        bail!("`{value}`: expected a description directory, `root:NAME`, `ostree:REPO#REF`, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker://HOST/REPO[:TAG]` or `ostree-container:` before one of the last three");
    }
    let path = dir.join(value);
    let canonical =
        path.canonicalize().with_context(|| format!("base description `{value}` (looked for `{}`)", path.display()))?;
    Ok(Base::Description(canonical))
}

/// Find the document in a description directory (or take the file given).
pub fn document_path(path: &Path) -> anyhow::Result<Source> {
    if path.is_file() {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        return Ok(Source { dir: dir.canonicalize()?, file: path.canonicalize()? });
    }
    if !path.is_dir() {
        bail!("`{}`: no such description directory or file", path.display());
    }
    let found: Vec<PathBuf> = DOCUMENT_NAMES.iter().map(|n| path.join(n)).filter(|p| p.is_file()).collect();
    match found.as_slice() {
        [one] => Ok(Source { dir: path.canonicalize()?, file: one.canonicalize()? }),
        [] => bail!("`{}` holds no image description: expected one of {}", path.display(), DOCUMENT_NAMES.join(", ")),
        many => bail!(
            "`{}` holds more than one image description ({}): keep one",
            path.display(),
            many.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Read one description (no bases). `profiles` selects KIWI profiles (XML only).
pub fn load(path: &Path, profiles: &[String]) -> anyhow::Result<Loaded> {
    let source = document_path(path)?;
    let text = fs_err::read_to_string(&source.file)?;
    let shown = source.file.display().to_string();
    let description = if source.file.extension().is_some_and(|e| e == "toml") {
        if !profiles.is_empty() {
            bail!("{shown}: profiles are a KIWI XML feature; a TOML description has none to select");
        }
        toml_form::parse(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?
    } else {
        kiwi::parse(&text, profiles).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?
    };
    validate(&description).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    Ok(Loaded { source, description })
}

/// A description and its bases, base first.
#[derive(Clone, Debug)]
pub struct Chain {
    /// Where the first description starts when it is not built from packages.
    pub origin: Option<Base>,
    /// Base first; the last is the description asked for.
    pub layers: Vec<Loaded>,
}

impl Chain {
    pub fn image(&self) -> &Loaded {
        self.layers.last().expect("a chain has at least one description")
    }

    /// Preferences with every layer's fields overriding its base's.
    pub fn preferences(&self) -> Preferences {
        let mut out = Preferences::default();
        for l in &self.layers {
            let p = &l.description.preferences;
            for (dst, src) in [
                (&mut out.version, &p.version),
                (&mut out.packagemanager, &p.packagemanager),
                (&mut out.locale, &p.locale),
                (&mut out.keytable, &p.keytable),
                (&mut out.timezone, &p.timezone),
            ] {
                if src.is_some() {
                    dst.clone_from(src);
                }
            }
        }
        out.targets = self.targets().clone();
        out
    }

    /// The targets the image is made into: its own when it declares any, else those of its
    /// nearest base that does (a derived image inherits its base's targets whole; declaring one
    /// target replaces them all, so a disk-only image never inherits a base's ISO).
    /// The container configuration: every layer's over its base's; `None` when no layer sets one.
    pub fn container(&self) -> Option<Container> {
        let mut out: Option<Container> = None;
        for l in &self.layers {
            if let Some(c) = &l.description.container {
                out.get_or_insert_with(Container::default).merge(c);
            }
        }
        out
    }

    pub fn targets(&self) -> &BTreeMap<TargetKind, BTreeMap<String, String>> {
        static NONE: BTreeMap<TargetKind, BTreeMap<String, String>> = BTreeMap::new();
        self.layers.iter().rev().map(|l| &l.description.preferences.targets).find(|t| !t.is_empty()).unwrap_or(&NONE)
    }

    /// Repositories of every layer, base first, without repeats.
    pub fn repositories(&self) -> Vec<Repository> {
        let mut out: Vec<Repository> = Vec::new();
        for l in &self.layers {
            for r in &l.description.repositories {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
        out
    }
}

/// Read `path` and the descriptions it derives from. A cycle is an error naming every step.
pub fn load_chain(path: &Path, profiles: &[String]) -> anyhow::Result<Chain> {
    let mut layers = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut next = Some(Base::Description(document_path(path)?.dir));
    let mut origin = None;
    while let Some(base) = next.take() {
        let dir = match base {
            Base::Description(dir) => dir,
            other => {
                origin = Some(other);
                break;
            }
        };
        if let Some(pos) = seen.iter().position(|d| *d == dir) {
            let names: Vec<String> = seen[pos..].iter().chain([&dir]).map(|d| d.display().to_string()).collect();
            bail!("descriptions derive from each other in a cycle: {}", names.join(" => "));
        }
        seen.push(dir.clone());
        // Profiles select within the description asked for; bases are read with their defaults.
        let loaded = load(&dir, if layers.is_empty() { profiles } else { &[] })?;
        if let Some(from) = &loaded.description.derived_from {
            next = Some(
                parse_base(from, &loaded.source.dir)
                    .with_context(|| format!("{}: derived-from", loaded.source.file.display()))?,
            );
        }
        layers.push(loaded);
    }
    layers.reverse();
    Ok(Chain { origin, layers })
}

/// Package managers KIWI names: apt for apt-deb repositories, the others for rpm-md. strata
/// installs packages itself; the name only has to fit the repositories.
pub const KNOWN_PACKAGE_MANAGERS: &[&str] = &["apt", "zypper", "dnf", "dnf4", "dnf5", "microdnf", "yum"];

/// Checks shared by both document formats.
pub fn validate(d: &Description) -> anyhow::Result<()> {
    if let Some(c) = &d.container {
        c.check()?;
    }
    if d.name.is_empty() || !d.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b)) {
        bail!("image name `{}`: expected letters, digits and `._+-`", d.name);
    }
    if let Some(pm) = &d.preferences.packagemanager {
        if !KNOWN_PACKAGE_MANAGERS.contains(&pm.as_str()) {
            bail!("packagemanager `{pm}`: expected one of {}", KNOWN_PACKAGE_MANAGERS.join(", "));
        }
        let rpm = d.repositories.iter().any(|r| matches!(r, Repository::RpmMd(_)));
        let apt = d.repositories.iter().any(|r| !matches!(r, Repository::RpmMd(_)));
        if (pm == "apt" && rpm) || (pm != "apt" && apt) {
            bail!(
                "packagemanager `{pm}` does not fit the repositories: apt installs from apt-deb repositories, {pm} from rpm-md ones"
            );
        }
    }
    let lists = [
        ("bootstrap", &d.packages.bootstrap),
        ("install", &d.packages.install),
        ("remove", &d.packages.remove),
        ("delete", &d.packages.delete),
        ("exclude", &d.packages.exclude),
    ];
    for (what, list) in lists {
        let mut seen = std::collections::BTreeSet::new();
        for p in list {
            if !valid_package_name(p) {
                bail!("packages {what}: `{p}` is not a package name (lower-case letters, digits and `+-.`)");
            }
            if !seen.insert(p) {
                bail!("packages {what}: `{p}` is listed twice");
            }
        }
    }
    for p in d.packages.install.iter().chain(&d.packages.bootstrap) {
        if d.packages.remove.contains(p) || d.packages.delete.contains(p) {
            bail!("package `{p}` is both installed and removed");
        }
    }
    let mut users = std::collections::BTreeSet::new();
    for u in &d.users {
        if !valid_user_name(&u.name) {
            bail!(
                "user `{}`: expected a name of lower-case letters, digits, `_` and `-`, starting with a letter or `_`",
                u.name
            );
        }
        if !users.insert(&u.name) {
            bail!("user `{}` is listed twice", u.name);
        }
        for g in &u.groups {
            if !valid_user_name(g) {
                bail!("user `{}`: group `{g}` is not a valid group name", u.name);
            }
        }
        for (what, v) in [("home", &u.home), ("shell", &u.shell)] {
            if let Some(v) = v {
                if !v.starts_with('/') || v.contains(':') || v.contains('\n') {
                    bail!("user `{}`: {what} `{v}` must be an absolute path without `:`", u.name);
                }
            }
        }
        if let Some(r) = &u.realname {
            if r.contains(':') || r.contains('\n') {
                bail!("user `{}`: realname must not contain `:` or a newline", u.name);
            }
        }
        if let Some(Password::Hashed(h)) = &u.password {
            if h.contains(':') || h.contains('\n') {
                bail!("user `{}`: a password hash cannot contain `:` or a newline", u.name);
            }
        }
    }
    for path in d.files.keys() {
        if !path.starts_with('/') || path.split('/').any(|p| p == "..") || path.contains('\n') {
            bail!("files: `{path}` must be an absolute path in the image without `..`");
        }
    }
    for (what, s) in [("config", &d.scripts.config), ("images", &d.scripts.images)] {
        if let Some(s) = s {
            relative_file(s).with_context(|| format!("scripts {what}"))?;
        }
    }
    for a in &d.archives {
        relative_file(a).context("archive")?;
    }
    for (kind, attrs) in &d.preferences.targets {
        for (k, v) in attrs {
            if !TARGET_ATTRIBUTES.iter().any(|(name, _)| name == k) {
                bail!(
                    "target {}: unknown attribute `{k}`; strata understands {}",
                    kind.as_str(),
                    TARGET_ATTRIBUTES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                );
            }
            if v.contains('\n') {
                bail!("target {}: attribute `{k}` holds a newline", kind.as_str());
            }
        }
    }
    Ok(())
}

/// A path relative to the description directory that stays inside it.
fn relative_file(s: &str) -> anyhow::Result<()> {
    if s.is_empty() || s.starts_with('/') || s.split('/').any(|p| p == "..") {
        bail!("`{s}` must be a path inside the description directory");
    }
    Ok(())
}

pub fn valid_package_name(p: &str) -> bool {
    p.len() >= 2
        && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
        && p.as_bytes()[0].is_ascii_alphanumeric()
}

pub fn valid_user_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && (n.as_bytes()[0].is_ascii_lowercase() || n.as_bytes()[0] == b'_')
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
}

/// A line and column (1-based) of a byte offset, for error messages.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
