//! TOML descriptions: the [`Description`] model with readable keys, read strictly (unknown or
//! misspelled keys, wrong types and duplicates are errors naming the key path) and written back.
//!
//! ```toml
//! [image]
//! name = "web"
//! derived-from = "../debian-base"
//! version = "1.0.0"
//! timezone = "Europe/Berlin"
//!
//! [[repository]]
//! host-sources = true
//!
//! [packages]
//! install = ["nginx"]
//! remove = ["vim-tiny"]
//!
//! [[user]]
//! name = "web"
//! groups = ["www-data"]
//!
//! [files."/etc/nginx/sites-enabled/default"]
//! mode = "0644"
//!
//! [target.disk]
//! filesystem = "ext4"
//!
//! [retention]
//! keep-last = 5
//! keep-younger-than = "30d"
//!
//! [container]
//! entrypoint = ["/usr/sbin/nginx", "-g", "daemon off;"]
//! expose = ["80"]
//! env = { LANG = "C.UTF-8" }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::{
    AptRepository, Description, FileAttrs, Info, Packages, Password, Preferences, Repository, RpmRepository, Scripts,
    TargetKind, User,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Doc {
    image: ImageKeys,
    #[serde(default)]
    repository: Vec<RepoKeys>,
    #[serde(default)]
    packages: PackageKeys,
    #[serde(default)]
    user: Vec<UserKeys>,
    #[serde(default)]
    files: BTreeMap<String, FileKeys>,
    #[serde(default)]
    scripts: ScriptKeys,
    #[serde(default)]
    target: TargetKeys,
    retention: Option<RetentionKeys>,
    container: Option<ContainerKeys>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ContainerKeys {
    name: Option<String>,
    tag: Option<String>,
    #[serde(default)]
    additional_tags: Vec<String>,
    maintainer: Option<String>,
    user: Option<String>,
    workingdir: Option<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    expose: Vec<String>,
    #[serde(default)]
    volumes: Vec<String>,
    stop_signal: Option<String>,
    author: Option<String>,
    created_by: Option<String>,
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RetentionKeys {
    keep_last: Option<u64>,
    /// A duration: `30d`, `12h`, `2w`.
    keep_younger_than: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ImageKeys {
    name: String,
    derived_from: Option<String>,
    version: Option<String>,
    author: Option<String>,
    contact: Option<String>,
    specification: Option<String>,
    packagemanager: Option<String>,
    locale: Option<String>,
    keytable: Option<String>,
    timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RepoKeys {
    /// `apt` (the default) or `rpm-md`.
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    host_sources: bool,
    /// rpm-md only: `false` trusts the repository by checksums alone.
    gpgcheck: Option<bool>,
    alias: Option<String>,
    uri: Option<String>,
    distribution: Option<String>,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    signed_by: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PackageKeys {
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default)]
    install: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    delete: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    archives: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum PasswordFormat {
    Encrypted,
    Plain,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct UserKeys {
    name: String,
    password: Option<String>,
    password_format: Option<PasswordFormat>,
    home: Option<String>,
    shell: Option<String>,
    uid: Option<u32>,
    #[serde(default)]
    groups: Vec<String>,
    realname: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileKeys {
    owner: Option<String>,
    group: Option<String>,
    mode: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ScriptKeys {
    config: Option<String>,
    images: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TargetKeys {
    disk: Option<BTreeMap<String, AttrValue>>,
    iso: Option<BTreeMap<String, AttrValue>>,
    container: Option<BTreeMap<String, AttrValue>>,
}

/// Target attributes may be written as strings, booleans or integers.
#[derive(Deserialize)]
#[serde(untagged)]
enum AttrValue {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl AttrValue {
    fn into_string(self) -> String {
        match self {
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Str(s) => s,
        }
    }
}

/// Parse a TOML description; errors name the key path and line.
pub fn parse(text: &str) -> anyhow::Result<Description> {
    let de = toml::Deserializer::parse(text).map_err(|e| located(text, &e, None))?;
    let doc: Doc = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        located(text, e.inner(), Some(path))
    })?;
    convert(doc)
}

fn located(text: &str, e: &toml::de::Error, path: Option<String>) -> anyhow::Error {
    let place = match e.span() {
        Some(span) => {
            let (line, col) = super::line_col(text, span.start);
            format!("line {line}, column {col}: ")
        }
        None => String::new(),
    };
    let key = match path.filter(|p| p != ".") {
        Some(p) => format!("key `{p}`: "),
        None => String::new(),
    };
    anyhow::anyhow!("{place}{key}{}", e.message().trim())
}

fn convert(doc: Doc) -> anyhow::Result<Description> {
    let i = doc.image;
    let repositories =
        doc.repository.into_iter().enumerate().map(|(n, r)| repository(n, r)).collect::<anyhow::Result<Vec<_>>>()?;
    let users = doc.user.into_iter().enumerate().map(|(n, u)| user(n, u)).collect::<anyhow::Result<Vec<_>>>()?;
    let files = files(doc.files)?;
    let targets = targets(doc.target);
    let retention = doc.retention.map(retention).transpose()?;
    let container = doc.container.map(|c| super::Container {
        name: c.name,
        tag: c.tag,
        maintainer: c.maintainer,
        user: c.user,
        workingdir: c.workingdir,
        entrypoint: c.entrypoint,
        cmd: c.cmd,
        env: c.env,
        labels: c.labels,
        expose: c.expose,
        volumes: c.volumes,
        stop_signal: c.stop_signal,
        additional_tags: c.additional_tags,
        author: c.author,
        created_by: c.created_by,
        comment: c.comment,
    });
    let d = Description {
        name: i.name,
        info: Info { author: i.author, contact: i.contact, specification: i.specification },
        derived_from: i.derived_from,
        preferences: Preferences {
            version: i.version,
            packagemanager: i.packagemanager,
            locale: i.locale,
            keytable: i.keytable,
            timezone: i.timezone,
            targets,
        },
        repositories,
        packages: Packages {
            bootstrap: doc.packages.bootstrap,
            install: doc.packages.install,
            remove: doc.packages.remove,
            delete: doc.packages.delete,
            exclude: doc.packages.exclude,
        },
        archives: doc.packages.archives,
        users,
        files,
        scripts: Scripts { config: doc.scripts.config, images: doc.scripts.images },
        retention,
        container,
    };
    check_target_attributes(&d)?;
    Ok(d)
}

/// The repository `[[repository]]` number `n` describes, checked.
fn repository(n: usize, mut r: RepoKeys) -> anyhow::Result<Repository> {
    let at = format!("repository[{n}]");
    if r.host_sources {
        if r.uri.is_some() || r.distribution.is_some() || !r.components.is_empty() || !r.signed_by.is_empty() {
            anyhow::bail!("key `{at}`: `host-sources = true` takes no uri, distribution, components or signed-by");
        }
        return Ok(Repository::Host);
    }
    let uri =
        r.uri.take().ok_or_else(|| anyhow::anyhow!("key `{at}`: expected `uri = \"…\"` or `host-sources = true`"))?;
    if !(uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:/")) {
        anyhow::bail!("key `{at}.uri`: `{uri}`: expected an http://, https:// or file:/ URI");
    }
    match (&r.distribution, r.components.is_empty()) {
        (Some(_), true) => {
            anyhow::bail!("key `{at}.components`: a repository with a distribution needs components")
        }
        (None, false) => anyhow::bail!("key `{at}.components`: components without a distribution"),
        _ => {}
    }
    for k in &r.signed_by {
        if !k.starts_with('/') {
            anyhow::bail!("key `{at}.signed-by`: `{k}`: expected an absolute path to a keyring");
        }
    }
    match r.kind.as_deref() {
        None | Some("apt") | Some("apt-deb") => {
            if r.gpgcheck.is_some() {
                anyhow::bail!("key `{at}.gpgcheck`: apt repositories are always verified");
            }
        }
        Some("rpm-md") => return rpm_repository(&at, r, uri),
        Some(other) => anyhow::bail!("key `{at}.type`: `{other}`: expected \"apt\" or \"rpm-md\""),
    }
    Ok(Repository::Apt(AptRepository {
        alias: r.alias,
        uri,
        distribution: r.distribution,
        components: r.components,
        signed_by: r.signed_by,
    }))
}

/// An rpm-md repository at key `at`, checked: no apt keys, and either keys or `gpgcheck = false`.
fn rpm_repository(at: &str, r: RepoKeys, uri: String) -> anyhow::Result<Repository> {
    if r.distribution.is_some() || !r.components.is_empty() {
        anyhow::bail!("key `{at}`: distribution and components are for apt repositories, not rpm-md");
    }
    let gpgcheck = r.gpgcheck.unwrap_or(true);
    match (gpgcheck, r.signed_by.is_empty()) {
        (true, true) => {
            anyhow::bail!("key `{at}.signed-by`: an rpm-md repository needs a key (or `gpgcheck = false`)")
        }
        (false, false) => anyhow::bail!("key `{at}.gpgcheck`: `false` with signed-by keys: choose one"),
        _ => {}
    }
    Ok(Repository::RpmMd(RpmRepository { alias: r.alias, uri, signed_by: r.signed_by, gpgcheck }))
}

/// The `[retention]` table, checked: at least one rule, and `keep-last` of 1 or more.
fn retention(r: RetentionKeys) -> anyhow::Result<super::Retention> {
    if r.keep_last == Some(0) {
        anyhow::bail!(
            "key `retention.keep-last`: 0 would keep nothing; expected 1 or more (the newest is always kept)"
        );
    }
    let keep_younger_than = match r.keep_younger_than {
        None => None,
        Some(d) => Some(
            crate::util::text::parse_duration(&d)
                .map_err(|e| anyhow::anyhow!("key `retention.keep-younger-than`: {e}"))?,
        ),
    };
    if r.keep_last.is_none() && keep_younger_than.is_none() {
        anyhow::bail!("key `retention`: expected `keep-last = N`, `keep-younger-than = \"30d\"` or both");
    }
    Ok(super::Retention { keep_last: r.keep_last, keep_younger_than })
}

/// The user `[[user]]` number `n` describes, checked.
fn user(n: usize, u: UserKeys) -> anyhow::Result<User> {
    let password = match (u.password, u.password_format) {
        (None, None) => None,
        (None, Some(_)) => anyhow::bail!("key `user[{n}].password-format`: given without a password"),
        (Some(p), None | Some(PasswordFormat::Encrypted)) => Some(Password::Hashed(p)),
        (Some(p), Some(PasswordFormat::Plain)) => Some(Password::Plain(p)),
    };
    Ok(User {
        name: u.name,
        password,
        home: u.home,
        shell: u.shell,
        uid: u.uid,
        groups: u.groups,
        realname: u.realname,
    })
}

/// The `[files."…"]` tables, with their modes parsed.
fn files(files: BTreeMap<String, FileKeys>) -> anyhow::Result<BTreeMap<String, FileAttrs>> {
    let mut out = BTreeMap::new();
    for (path, f) in files {
        let mode = match f.mode {
            None => None,
            Some(m) => {
                Some(super::kiwi::parse_mode(&m).map_err(|e| anyhow::anyhow!("key `files.\"{path}\".mode`: {e}"))?)
            }
        };
        out.insert(path, FileAttrs { owner: f.owner, group: f.group, mode });
    }
    Ok(out)
}

/// The `[target.*]` tables, their values as strings.
fn targets(target: TargetKeys) -> BTreeMap<TargetKind, BTreeMap<String, String>> {
    let mut targets = BTreeMap::new();
    for (kind, attrs) in
        [(TargetKind::Disk, target.disk), (TargetKind::Iso, target.iso), (TargetKind::Container, target.container)]
    {
        if let Some(attrs) = attrs {
            targets.insert(kind, attrs.into_iter().map(|(k, v)| (k, v.into_string())).collect());
        }
    }
    targets
}

/// Refuse target attributes strata does not know.
fn check_target_attributes(d: &Description) -> anyhow::Result<()> {
    for (kind, attrs) in &d.preferences.targets {
        if *kind == TargetKind::Container {
            if let Some(k) = attrs.keys().find(|k| *k != "primary") {
                anyhow::bail!(
                    "key `target.container.{k}`: unknown attribute; a container target has only `primary` (its settings are in [container])"
                );
            }
            continue;
        }
        if let Some((k, _)) = attrs.iter().find(|(k, _)| !super::TARGET_ATTRIBUTES.iter().any(|(n, _)| n == k)) {
            anyhow::bail!(
                "key `target.{}.{k}`: unknown attribute; expected one of {}",
                kind.as_str(),
                super::TARGET_ATTRIBUTES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(())
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

/// Write a description as TOML.
pub fn write(d: &Description) -> String {
    let mut s = String::from("[image]\n");
    write_image(&mut s, d);
    for r in &d.repositories {
        write_repository(&mut s, r);
    }
    write_packages(&mut s, d);
    for u in &d.users {
        write_user(&mut s, u);
    }
    write_files(&mut s, &d.files);
    write_scripts(&mut s, &d.scripts);
    write_targets(&mut s, &d.preferences.targets);
    if let Some(r) = &d.retention {
        s.push_str("\n[retention]\n");
        if let Some(n) = r.keep_last {
            let _ = writeln!(s, "keep-last = {n}");
        }
        if let Some(secs) = r.keep_younger_than {
            let _ = writeln!(s, "keep-younger-than = {}", q(&crate::util::text::duration(secs)));
        }
    }
    if let Some(c) = &d.container {
        write_container(&mut s, c);
    }
    s
}

/// Write `[container]`.
fn write_container(s: &mut String, c: &super::Container) {
    s.push_str("\n[container]\n");
    for (k, v) in [
        ("name", &c.name),
        ("tag", &c.tag),
        ("maintainer", &c.maintainer),
        ("user", &c.user),
        ("workingdir", &c.workingdir),
        ("stop-signal", &c.stop_signal),
        ("author", &c.author),
        ("created-by", &c.created_by),
        ("comment", &c.comment),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "{k} = {}", q(v));
        }
    }
    for (k, v) in [("entrypoint", &c.entrypoint), ("cmd", &c.cmd)] {
        if let Some(v) = v {
            let _ = writeln!(s, "{k} = {}", list(v));
        }
    }
    for (k, v) in [("additional-tags", &c.additional_tags), ("expose", &c.expose), ("volumes", &c.volumes)] {
        if !v.is_empty() {
            let _ = writeln!(s, "{k} = {}", list(v));
        }
    }
    for (k, map) in [("env", &c.env), ("labels", &c.labels)] {
        if !map.is_empty() {
            let items: Vec<String> = map.iter().map(|(k, v)| format!("{} = {}", q(k), q(v))).collect();
            let _ = writeln!(s, "{k} = {{ {} }}", items.join(", "));
        }
    }
}

/// Write the keys of `[image]`.
fn write_image(s: &mut String, d: &Description) {
    let _ = writeln!(s, "name = {}", q(&d.name));
    let p = &d.preferences;
    for (k, v) in [
        ("derived-from", &d.derived_from),
        ("version", &p.version),
        ("author", &d.info.author),
        ("contact", &d.info.contact),
        ("specification", &d.info.specification),
        ("packagemanager", &p.packagemanager),
        ("locale", &p.locale),
        ("keytable", &p.keytable),
        ("timezone", &p.timezone),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "{k} = {}", q(v));
        }
    }
}

/// Write one `[[repository]]` table.
fn write_repository(s: &mut String, r: &Repository) {
    s.push_str("\n[[repository]]\n");
    match r {
        Repository::Host => s.push_str("host-sources = true\n"),
        Repository::RpmMd(r) => {
            s.push_str("type = \"rpm-md\"\n");
            if let Some(alias) = &r.alias {
                let _ = writeln!(s, "alias = {}", q(alias));
            }
            let _ = writeln!(s, "uri = {}", q(&r.uri));
            if r.signed_by.is_empty() {
                s.push_str("gpgcheck = false\n");
            } else {
                let _ = writeln!(s, "signed-by = {}", list(&r.signed_by));
            }
        }
        Repository::Apt(a) => {
            if let Some(alias) = &a.alias {
                let _ = writeln!(s, "alias = {}", q(alias));
            }
            let _ = writeln!(s, "uri = {}", q(&a.uri));
            if let Some(dist) = &a.distribution {
                let _ = writeln!(s, "distribution = {}\ncomponents = {}", q(dist), list(&a.components));
            }
            if !a.signed_by.is_empty() {
                let _ = writeln!(s, "signed-by = {}", list(&a.signed_by));
            }
        }
    }
}

/// Write `[packages]`, when any of its lists is not empty.
fn write_packages(s: &mut String, d: &Description) {
    let pk = &d.packages;
    let lists = [
        ("bootstrap", &pk.bootstrap),
        ("install", &pk.install),
        ("remove", &pk.remove),
        ("delete", &pk.delete),
        ("exclude", &pk.exclude),
        ("archives", &d.archives),
    ];
    if lists.iter().any(|(_, l)| !l.is_empty()) {
        s.push_str("\n[packages]\n");
        for (k, l) in lists.iter().filter(|(_, l)| !l.is_empty()) {
            let _ = writeln!(s, "{k} = {}", list(l));
        }
    }
}

/// Write one `[[user]]` table.
fn write_user(s: &mut String, u: &User) {
    s.push_str("\n[[user]]\n");
    let _ = writeln!(s, "name = {}", q(&u.name));
    match &u.password {
        Some(Password::Hashed(h)) => {
            let _ = writeln!(s, "password = {}", q(h));
        }
        Some(Password::Plain(h)) => {
            let _ = writeln!(s, "password = {}\npassword-format = \"plain\"", q(h));
        }
        None => {}
    }
    for (k, v) in [("home", &u.home), ("shell", &u.shell), ("realname", &u.realname)] {
        if let Some(v) = v {
            let _ = writeln!(s, "{k} = {}", q(v));
        }
    }
    if let Some(id) = u.uid {
        let _ = writeln!(s, "uid = {id}");
    }
    if !u.groups.is_empty() {
        let _ = writeln!(s, "groups = {}", list(&u.groups));
    }
}

/// Write a `[files."…"]` table per file.
fn write_files(s: &mut String, files: &BTreeMap<String, FileAttrs>) {
    for (path, a) in files {
        let _ = writeln!(s, "\n[files.{}]", q(path));
        for (k, v) in [("owner", &a.owner), ("group", &a.group)] {
            if let Some(v) = v {
                let _ = writeln!(s, "{k} = {}", q(v));
            }
        }
        if let Some(m) = a.mode {
            let _ = writeln!(s, "mode = \"{m:04o}\"");
        }
    }
}

/// Write `[scripts]`, when a script is named.
fn write_scripts(s: &mut String, scripts: &Scripts) {
    if scripts.config.is_some() || scripts.images.is_some() {
        s.push_str("\n[scripts]\n");
        for (k, v) in [("config", &scripts.config), ("images", &scripts.images)] {
            if let Some(v) = v {
                let _ = writeln!(s, "{k} = {}", q(v));
            }
        }
    }
}

/// Write a `[target.*]` table per target; booleans stay bare.
fn write_targets(s: &mut String, targets: &BTreeMap<TargetKind, BTreeMap<String, String>>) {
    for (kind, attrs) in targets {
        let _ = writeln!(s, "\n[target.{}]", kind.as_str());
        for (k, v) in attrs {
            let value = match v.as_str() {
                "true" | "false" => v.clone(),
                _ => q(v),
            };
            let _ = writeln!(s, "{k} = {value}");
        }
    }
}
