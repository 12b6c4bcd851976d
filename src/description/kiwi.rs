//! KIWI XML descriptions (schemaversion 7.x and 8.x), read into the [`Description`] model and
//! written back.
//!
//! Every element and attribute is either understood or an error naming it with its line and
//! column: nothing is skipped silently. DTDs (and so external entities) are refused. Profiles are
//! resolved while reading: a section with `profiles="a,b"` is used when one of its profiles is
//! selected, and without a selection the profiles marked `import="true"` are.
//!
//! Beyond KIWI: `<derived from="…"/>` under `<image>` names the base of a derived image, and
//! `<files><file path="/etc/x" owner="root" group="adm" mode="0640"/></files>` sets owners and
//! modes of `root/` overlay files, and `<retention keep-last="5" keep-younger-than="30d"/>` the
//! generations `strata gc` keeps of the image.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use roxmltree::{Document, Node, ParsingOptions};

use super::{
    AptRepository, Container, Description, FileAttrs, Info, Packages, Password, Preferences, Repository, Retention,
    RpmRepository, TargetKind, User, KNOWN_PACKAGE_MANAGERS, TARGET_ATTRIBUTES,
};

/// The `<source path>` that stands for the build host's apt sources (KIWI's build-service form).
pub const HOST_SOURCES_PATH: &str = "obsrepositories:/";

/// An error with its position in the document.
#[derive(Debug, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct XmlError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

struct Parser<'a, 'i> {
    doc: &'a Document<'i>,
    selected: BTreeSet<String>,
}

type Result<T> = std::result::Result<T, XmlError>;

/// Parse a KIWI document, using the sections of the selected `profiles`.
pub fn parse(text: &str, profiles: &[String]) -> Result<Description> {
    let opts = ParsingOptions { allow_dtd: false, nodes_limit: 1_000_000, ..ParsingOptions::default() };
    let doc = Document::parse_with_options(text, opts).map_err(|e| {
        let pos = e.pos();
        let message = match e {
            roxmltree::Error::DtdDetected => {
                "a DOCTYPE declaration: DTDs and external entities are refused in descriptions".to_string()
            }
            other => format!("not well-formed XML: {other}"),
        };
        XmlError { line: pos.row, column: pos.col, message }
    })?;
    let mut p = Parser { doc: &doc, selected: BTreeSet::new() };
    p.image(doc.root_element(), profiles)
}

impl<'a, 'i> Parser<'a, 'i> {
    fn err(&self, node: Node<'_, '_>, message: impl Into<String>) -> XmlError {
        let pos = self.doc.text_pos_at(node.range().start);
        XmlError { line: pos.row, column: pos.col, message: message.into() }
    }

    /// Elements of `node`; text other than whitespace is an error.
    fn children(&self, node: Node<'a, 'i>) -> Result<Vec<Node<'a, 'i>>> {
        let mut out = Vec::new();
        for c in node.children() {
            if c.is_element() {
                out.push(c);
            } else if c.is_text() && !c.text().unwrap_or("").trim().is_empty() {
                return Err(self.err(c, format!("unexpected text in <{}>", node.tag_name().name())));
            }
        }
        Ok(out)
    }

    /// Check that `node` only has the `allowed` attributes (and no namespaced ones).
    fn attrs(&self, node: Node<'_, '_>, allowed: &[&str]) -> Result<()> {
        for a in node.attributes() {
            if a.namespace().is_some() || !allowed.contains(&a.name()) {
                return Err(self.err(
                    node,
                    format!(
                        "attribute `{}` of <{}> is not supported by strata{}",
                        a.name(),
                        node.tag_name().name(),
                        if allowed.is_empty() {
                            String::new()
                        } else {
                            format!(" (supported: {})", allowed.join(", "))
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    fn required<'n>(&self, node: Node<'n, '_>, name: &str) -> Result<&'n str> {
        node.attribute(name)
            .ok_or_else(|| self.err(node, format!("<{}> needs a `{name}` attribute", node.tag_name().name())))
    }

    fn unsupported(&self, node: Node<'_, '_>, parent: &str) -> XmlError {
        self.err(node, format!("<{}> in <{parent}> is not supported by strata yet", node.tag_name().name()))
    }

    /// The text of a leaf element.
    fn text(&self, node: Node<'_, '_>) -> Result<String> {
        self.attrs(node, &[])?;
        self.text_of(node)
    }

    fn text_of(&self, node: Node<'_, '_>) -> Result<String> {
        if node.children().any(|c| c.is_element()) {
            return Err(self.err(node, format!("<{}> holds text only", node.tag_name().name())));
        }
        let t = node.text().unwrap_or("").trim();
        if t.is_empty() {
            return Err(self.err(node, format!("<{}> is empty", node.tag_name().name())));
        }
        Ok(t.to_string())
    }

    /// Whether a section applies under the selected profiles.
    fn selected(&self, node: Node<'_, '_>, declared: &BTreeSet<String>) -> Result<bool> {
        let Some(list) = node.attribute("profiles") else { return Ok(true) };
        let mut any = false;
        for p in list.split(',').map(str::trim) {
            if !declared.contains(p) {
                return Err(self.err(node, format!("profile `{p}` is not declared in <profiles>")));
            }
            any |= self.selected.contains(p);
        }
        Ok(any)
    }

    fn image(&mut self, root: Node<'a, 'i>, profiles: &[String]) -> Result<Description> {
        self.check_image(root)?;
        let mut d = Description { name: self.required(root, "name")?.to_string(), ..Default::default() };
        let children = self.children(root)?;

        // Profiles first: sections refer to them.
        let declared = self.select_profiles(&children, profiles)?;

        let mut seen_description = false;
        for c in children {
            self.section(c, &declared, &mut d, &mut seen_description)?;
        }
        if !seen_description && d.derived_from.is_none() {
            return Err(self.err(
                root,
                "<image> needs a <description type=\"system\"> with <author>, <contact> and <specification>",
            ));
        }
        Ok(d)
    }

    /// Check the document element: an `<image>` of a supported schema version.
    fn check_image(&self, root: Node<'a, 'i>) -> Result<()> {
        if root.tag_name().name() != "image" || root.tag_name().namespace().is_some() {
            return Err(
                self.err(root, format!("the document element is <{}>, expected <image>", root.tag_name().name()))
            );
        }
        self.attrs(root, &["name", "displayname", "schemaversion", "id"])?;
        let version = self.required(root, "schemaversion")?;
        let major = version.split('.').next().unwrap_or("");
        if !matches!(major, "7" | "8") || version.split('.').count() != 2 {
            return Err(self.err(root, format!("schemaversion `{version}`: strata reads KIWI schema 7.x and 8.x")));
        }
        Ok(())
    }

    /// Read the `<profiles>` sections and select `profiles` (or the imported ones); returns the declared.
    fn select_profiles(&mut self, children: &[Node<'a, 'i>], profiles: &[String]) -> Result<BTreeSet<String>> {
        let mut declared = BTreeSet::new();
        let mut imported = BTreeSet::new();
        for c in children.iter().filter(|c| c.tag_name().name() == "profiles") {
            self.attrs(*c, &[])?;
            for p in self.children(*c)? {
                if p.tag_name().name() != "profile" {
                    return Err(self.unsupported(p, "profiles"));
                }
                self.attrs(p, &["name", "description", "import", "arch"])?;
                if p.attribute("arch").is_some() {
                    return Err(self.err(p, "profiles limited to an architecture are not supported by strata yet"));
                }
                let name = self.required(p, "name")?.to_string();
                if p.attribute("import") == Some("true") {
                    imported.insert(name.clone());
                }
                declared.insert(name);
            }
        }
        for p in profiles {
            if !declared.contains(p) {
                let known = declared.iter().cloned().collect::<Vec<_>>().join(", ");
                return Err(XmlError {
                    line: 1,
                    column: 1,
                    message: format!(
                        "profile `{p}` is not declared in <profiles> (declared: {})",
                        if known.is_empty() { "none" } else { &known }
                    ),
                });
            }
        }
        self.selected = if profiles.is_empty() { imported } else { profiles.iter().cloned().collect() };
        Ok(declared)
    }

    /// Read one section of `<image>` into `d`.
    fn section(
        &self,
        c: Node<'a, 'i>,
        declared: &BTreeSet<String>,
        d: &mut Description,
        seen_description: &mut bool,
    ) -> Result<()> {
        match c.tag_name().name() {
            "description" => {
                if *seen_description {
                    return Err(self.err(c, "a second <description>"));
                }
                *seen_description = true;
                d.info = self.description(c)?;
            }
            "derived" => {
                self.attrs(c, &["from"])?;
                if d.derived_from.is_some() {
                    return Err(self.err(c, "a second <derived>: an image derives from one base"));
                }
                d.derived_from = Some(self.required(c, "from")?.to_string());
            }
            "profiles" => {}
            "preferences" => {
                self.attrs(c, &["profiles", "arch"])?;
                if c.attribute("arch").is_some() {
                    return Err(self.err(c, "preferences limited to an architecture are not supported by strata yet"));
                }
                if self.selected(c, declared)? {
                    self.preferences(c, d)?;
                }
            }
            "repository" => {
                if self.selected(c, declared)? {
                    d.repositories.push(self.repository(c)?);
                } else {
                    self.attrs(c, REPOSITORY_ATTRS)?;
                }
            }
            "packages" => {
                if self.selected(c, declared)? {
                    self.packages(c, &mut d.packages, &mut d.archives)?;
                }
            }
            "users" => {
                if self.selected(c, declared)? {
                    self.users(c, &mut d.users)?;
                }
            }
            "files" => self.files(c, &mut d.files)?,
            "retention" => {
                self.attrs(c, &["keep-last", "keep-younger-than"])?;
                if d.retention.is_some() {
                    return Err(self.err(c, "a second <retention>"));
                }
                let keep_last = match c.attribute("keep-last") {
                    None => None,
                    Some(v) => match v.parse::<u64>() {
                        Ok(n) if n >= 1 => Some(n),
                        _ => {
                            return Err(
                                self.err(c, format!("keep-last=\"{v}\": expected a number of generations, 1 or more"))
                            )
                        }
                    },
                };
                let keep_younger_than = match c.attribute("keep-younger-than") {
                    None => None,
                    Some(v) => Some(
                        crate::util::text::parse_duration(v)
                            .map_err(|e| self.err(c, format!("keep-younger-than: {e}")))?,
                    ),
                };
                if keep_last.is_none() && keep_younger_than.is_none() {
                    return Err(self.err(c, "<retention> needs keep-last=\"N\", keep-younger-than=\"30d\" or both"));
                }
                d.retention = Some(Retention { keep_last, keep_younger_than });
            }
            _ => return Err(self.unsupported(c, "image")),
        }
        Ok(())
    }

    /// Read `<files>`: owners and modes of overlay files, by path.
    fn files(&self, node: Node<'a, 'i>, files: &mut BTreeMap<String, FileAttrs>) -> Result<()> {
        self.attrs(node, &[])?;
        for f in self.children(node)? {
            if f.tag_name().name() != "file" {
                return Err(self.unsupported(f, "files"));
            }
            self.attrs(f, &["path", "owner", "group", "mode"])?;
            let path = self.required(f, "path")?.to_string();
            let mode = match f.attribute("mode") {
                None => None,
                Some(m) => Some(parse_mode(m).map_err(|e| self.err(f, e))?),
            };
            let attrs = FileAttrs {
                owner: f.attribute("owner").map(str::to_string),
                group: f.attribute("group").map(str::to_string),
                mode,
            };
            if files.insert(path.clone(), attrs).is_some() {
                return Err(self.err(f, format!("file `{path}` is listed twice")));
            }
        }
        Ok(())
    }

    fn description(&self, node: Node<'a, 'i>) -> Result<Info> {
        self.attrs(node, &["type"])?;
        if self.required(node, "type")? != "system" {
            return Err(self.err(node, "<description type> must be `system`"));
        }
        let mut info = Info::default();
        for c in self.children(node)? {
            let slot = match c.tag_name().name() {
                "author" => &mut info.author,
                "contact" => &mut info.contact,
                "specification" => &mut info.specification,
                _ => return Err(self.unsupported(c, "description")),
            };
            *slot = Some(self.text(c)?);
        }
        Ok(info)
    }

    fn preferences(&self, node: Node<'a, 'i>, d: &mut Description) -> Result<()> {
        for c in self.children(node)? {
            let name = c.tag_name().name();
            if name == "type" {
                self.target(c, d)?;
                continue;
            }
            let p = &mut d.preferences;
            let slot = match name {
                "version" => &mut p.version,
                "packagemanager" => &mut p.packagemanager,
                "locale" => &mut p.locale,
                "keytable" => &mut p.keytable,
                "timezone" => &mut p.timezone,
                _ => return Err(self.unsupported(c, "preferences")),
            };
            let value = self.text(c)?;
            if name == "packagemanager" && !KNOWN_PACKAGE_MANAGERS.contains(&value.as_str()) {
                return Err(self.err(
                    c,
                    format!("packagemanager `{value}`: expected one of {}", KNOWN_PACKAGE_MANAGERS.join(", ")),
                ));
            }
            *slot = Some(value);
        }
        Ok(())
    }

    fn target(&self, node: Node<'a, 'i>, d: &mut Description) -> Result<()> {
        let image = self.required(node, "image")?;
        let kind = match image {
            "oem" | "vmx" => TargetKind::Disk,
            "iso" => TargetKind::Iso,
            "docker" | "oci" => return self.container_target(node, d),
            other => {
                return Err(self.err(
                    node,
                    format!("<type image=\"{other}\"> is not supported by strata yet: it builds disks (oem), live ISOs (iso) and OCI images (docker, oci)"),
                ))
            }
        };
        let p = &mut d.preferences;
        let mut attrs = BTreeMap::new();
        for a in node.attributes() {
            if a.name() == "image" {
                continue;
            }
            if a.namespace().is_some()
                || !TARGET_ATTRIBUTES.iter().any(|(n, _)| *n == a.name())
                || a.name() == "disksize"
            {
                return Err(self.err(
                    node,
                    format!(
                        "attribute `{}` of <type> is not supported by strata (supported: image, {})",
                        a.name(),
                        TARGET_ATTRIBUTES
                            .iter()
                            .map(|(n, _)| *n)
                            .filter(|n| *n != "disksize")
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            attrs.insert(a.name().to_string(), a.value().to_string());
        }
        for c in self.children(node)? {
            if c.tag_name().name() != "size" {
                return Err(self.unsupported(c, "type"));
            }
            self.attrs(c, &["unit"])?;
            let unit = c.attribute("unit").unwrap_or("M");
            if !matches!(unit, "M" | "G") {
                return Err(self.err(c, format!("<size unit=\"{unit}\">: expected M or G")));
            }
            let n = self.text_of(c)?;
            if n.parse::<u64>().is_err() {
                return Err(self.err(c, format!("<size> `{n}`: expected a whole number")));
            }
            attrs.insert("disksize".to_string(), format!("{n}{unit}"));
        }
        if p.targets.insert(kind, attrs).is_some() {
            return Err(self.err(node, format!("a second <type image=\"{image}\">: one per target")));
        }
        Ok(())
    }

    /// `<type image="docker|oci">`: a container target, its `<containerconfig>` and the base
    /// it derives from (`derived_from`, a `docker://`, `oci:` or `oci-archive:` image).
    fn container_target(&self, node: Node<'a, 'i>, d: &mut Description) -> Result<()> {
        self.attrs(node, &["image", "primary", "derived_from"])?;
        let mut attrs = BTreeMap::new();
        if let Some(primary) = node.attribute("primary") {
            attrs.insert("primary".to_string(), primary.to_string());
        }
        if let Some(from) = node.attribute("derived_from") {
            let ostree = crate::description::ostree_container_image(from).map_err(|e| self.err(node, e.to_string()))?;
            if ostree.is_none() && !["docker://", "oci:", "oci-archive:"].iter().any(|p| from.starts_with(p)) {
                return Err(self.err(
                    node,
                    format!("derived_from=\"{from}\": strata derives from docker://HOST/REPO:TAG, oci:DIR:TAG or oci-archive:FILE:TAG images, or ostree-container: before one of them"),
                ));
            }
            match &d.derived_from {
                Some(other) if other != from => {
                    return Err(
                        self.err(node, format!("derived_from=\"{from}\": the image already derives from `{other}`"))
                    )
                }
                _ => d.derived_from = Some(from.to_string()),
            }
        }
        let mut container = None;
        for c in self.children(node)? {
            if c.tag_name().name() != "containerconfig" {
                return Err(
                    self.err(c, format!("<{}> in a container <type> is not supported by strata", c.tag_name().name()))
                );
            }
            if container.is_some() {
                return Err(self.err(c, "a second <containerconfig>"));
            }
            container = Some(self.containerconfig(c)?);
        }
        if d.preferences.targets.insert(TargetKind::Container, attrs).is_some() {
            return Err(self.err(node, "a second container <type> (docker or oci): one per image"));
        }
        if let Some(c) = container {
            c.check().map_err(|e| self.err(node, e.to_string()))?;
            d.container = Some(c);
        }
        Ok(())
    }

    /// `<containerconfig>`: what a runtime starts, and how.
    fn containerconfig(&self, node: Node<'a, 'i>) -> Result<Container> {
        self.attrs(node, &["name", "tag", "additionalnames", "additionaltags", "maintainer", "user", "workingdir"])?;
        let text = |n: &str| node.attribute(n).map(str::to_string);
        let mut c = Container {
            name: text("name"),
            tag: text("tag"),
            maintainer: text("maintainer"),
            user: text("user"),
            workingdir: text("workingdir"),
            ..Container::default()
        };
        // `additionalnames` (7.5 on): `NAME:TAG` or `:TAG`; `additionaltags` (before): `TAG`.
        for (attr, names) in [("additionalnames", true), ("additionaltags", false)] {
            for item in node.attribute(attr).unwrap_or("").split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let tag = if names { item.rsplit_once(':').map_or(item, |(_, t)| t) } else { item };
                c.additional_tags.push(tag.to_string());
            }
        }
        let mut seen = BTreeSet::new();
        for child in self.children(node)? {
            let name = child.tag_name().name();
            if !seen.insert(name) {
                return Err(self.err(child, format!("a second <{name}> in <containerconfig>")));
            }
            match name {
                "entrypoint" | "subcommand" => {
                    self.attrs(child, &["execute", "clear"])?;
                    let command = match (child.attribute("execute"), child.attribute("clear")) {
                        (Some(exe), None) => {
                            let mut args = vec![exe.to_string()];
                            for a in self.children(child)? {
                                if a.tag_name().name() != "argument" {
                                    return Err(self.unsupported(a, name));
                                }
                                self.attrs(a, &["name"])?;
                                args.push(self.required(a, "name")?.to_string());
                            }
                            args
                        }
                        (None, Some("true")) => vec![],
                        _ => {
                            return Err(self.err(child, format!("<{name}> needs execute=\"PROGRAM\" or clear=\"true\"")))
                        }
                    };
                    if name == "entrypoint" {
                        c.entrypoint = Some(command);
                    } else {
                        c.cmd = Some(command);
                    }
                }
                "expose" | "volumes" | "environment" | "labels" => {
                    self.attrs(child, &[])?;
                    let (item, attrs): (&str, &[&str]) = match name {
                        "expose" => ("port", &["number"]),
                        "volumes" => ("volume", &["name"]),
                        "environment" => ("env", &["name", "value"]),
                        _ => ("label", &["name", "value"]),
                    };
                    let items = self.children(child)?;
                    if items.is_empty() {
                        return Err(self.err(child, format!("<{name}> holds one <{item}> or more")));
                    }
                    for i in items {
                        if i.tag_name().name() != item {
                            return Err(self.unsupported(i, name));
                        }
                        self.attrs(i, attrs)?;
                        let first = self.required(i, attrs[0])?.to_string();
                        match name {
                            "expose" => c.expose.push(first),
                            "volumes" => c.volumes.push(first),
                            "environment" => {
                                c.env.insert(first, self.required(i, "value")?.to_string());
                            }
                            _ => {
                                c.labels.insert(first, self.required(i, "value")?.to_string());
                            }
                        }
                    }
                }
                "stopsignal" => c.stop_signal = Some(self.text(child)?),
                "history" => {
                    self.attrs(child, &["author", "created_by"])?;
                    c.author = child.attribute("author").map(str::to_string);
                    c.created_by = child.attribute("created_by").map(str::to_string);
                    let comment = child.text().unwrap_or("").trim();
                    if !comment.is_empty() {
                        c.comment = Some(comment.to_string());
                    }
                }
                _ => return Err(self.unsupported(child, "containerconfig")),
            }
        }
        Ok(c)
    }

    fn repository(&self, node: Node<'a, 'i>) -> Result<Repository> {
        self.attrs(node, REPOSITORY_ATTRS)?;
        let kind = node.attribute("type").unwrap_or("apt-deb");
        let children = self.children(node)?;
        let source = match children.as_slice() {
            [one] if one.tag_name().name() == "source" => *one,
            _ => return Err(self.err(node, "<repository> holds exactly one <source path=\"…\">")),
        };
        self.attrs(source, &["path"])?;
        let path = self.required(source, "path")?;
        if path == HOST_SOURCES_PATH {
            return self.host_repository(node, source);
        }
        if kind != "apt-deb" && kind != "rpm-md" {
            return Err(self.err(
                node,
                format!("repository type `{kind}` is not supported by strata (expected apt-deb or rpm-md)"),
            ));
        }
        let gpgcheck = match node.attribute("repository_gpgcheck") {
            None | Some("true") => true,
            Some("false") if kind == "rpm-md" => false,
            Some("false") => {
                return Err(self.err(node, "repository_gpgcheck=\"false\": apt repositories are always verified"))
            }
            Some(v) => return Err(self.err(node, format!("repository_gpgcheck=\"{v}\": expected true or false"))),
        };
        if !(path.starts_with("http://") || path.starts_with("https://") || path.starts_with("file:/")) {
            return Err(self.err(source, format!("source path `{path}`: expected an http://, https:// or file:/ URI")));
        }
        let signed_by = self.signing_keys(source)?;
        if kind == "rpm-md" {
            return self.rpm_repository(node, source, path, signed_by, gpgcheck);
        }
        let distribution = node.attribute("distribution").map(str::to_string);
        let components: Vec<String> =
            node.attribute("components").unwrap_or("").split_whitespace().map(str::to_string).collect();
        match (&distribution, components.is_empty()) {
            (Some(_), true) => return Err(self.err(node, "a repository with a distribution needs `components`")),
            (None, false) => return Err(self.err(node, "`components` without a `distribution`")),
            _ => {}
        }
        Ok(Repository::Apt(AptRepository {
            alias: node.attribute("alias").map(str::to_string),
            uri: path.to_string(),
            distribution,
            components,
            signed_by,
        }))
    }

    /// The build host's sources: a `<repository>` whose `<source>` is [`HOST_SOURCES_PATH`].
    fn host_repository(&self, node: Node<'a, 'i>, source: Node<'a, 'i>) -> Result<Repository> {
        for a in ["alias", "distribution", "components"] {
            if node.attribute(a).is_some() {
                return Err(
                    self.err(node, format!("`{a}` makes no sense with the build host's sources ({HOST_SOURCES_PATH})"))
                );
            }
        }
        if !self.children(source)?.is_empty() {
            return Err(self.err(source, "the build host's sources use the host's keyrings: no <signing> here"));
        }
        Ok(Repository::Host)
    }

    /// The keyring paths of a `<source>`'s `<signing key="file:///…"/>` elements.
    fn signing_keys(&self, source: Node<'a, 'i>) -> Result<Vec<String>> {
        let mut signed_by = Vec::new();
        for s in self.children(source)? {
            if s.tag_name().name() != "signing" {
                return Err(self.unsupported(s, "source"));
            }
            self.attrs(s, &["key"])?;
            let key = self.required(s, "key")?;
            let file = key
                .strip_prefix("file://")
                .filter(|f| f.starts_with('/'))
                .ok_or_else(|| self.err(s, format!("signing key `{key}`: expected file:///absolute/path")))?;
            signed_by.push(file.to_string());
        }
        Ok(signed_by)
    }

    /// An rpm-md repository, checked: no apt attributes, and either keys or `gpgcheck` off.
    fn rpm_repository(
        &self,
        node: Node<'a, 'i>,
        source: Node<'a, 'i>,
        path: &str,
        signed_by: Vec<String>,
        gpgcheck: bool,
    ) -> Result<Repository> {
        for a in ["distribution", "components"] {
            if node.attribute(a).is_some() {
                return Err(self.err(node, format!("`{a}` is for apt-deb repositories, not rpm-md")));
            }
        }
        match (gpgcheck, signed_by.is_empty()) {
            (true, true) => {
                return Err(self.err(
                    source,
                    "an rpm-md repository needs a <signing key=\"file:///…\"/> (or repository_gpgcheck=\"false\")",
                ))
            }
            (false, false) => {
                return Err(self.err(node, "repository_gpgcheck=\"false\" with a <signing> key: choose one"))
            }
            _ => {}
        }
        Ok(Repository::RpmMd(RpmRepository {
            alias: node.attribute("alias").map(str::to_string),
            uri: path.to_string(),
            signed_by,
            gpgcheck,
        }))
    }

    fn packages(&self, node: Node<'a, 'i>, p: &mut Packages, archives: &mut Vec<String>) -> Result<()> {
        self.attrs(node, &["type", "profiles"])?;
        let kind = self.required(node, "type")?;
        let list = match kind {
            "bootstrap" => &mut p.bootstrap,
            "image" => &mut p.install,
            "uninstall" => &mut p.remove,
            "delete" => &mut p.delete,
            other => {
                return Err(self.err(
                    node,
                    format!(
                    "<packages type=\"{other}\"> is not supported by strata yet (bootstrap, image, uninstall, delete)"
                ),
                ))
            }
        };
        for c in self.children(node)? {
            match c.tag_name().name() {
                "package" => {
                    self.attrs(c, &["name", "arch"])?;
                    if !arch_matches(c.attribute("arch")) {
                        continue;
                    }
                    let name = self.required(c, "name")?.to_string();
                    if list.contains(&name) {
                        return Err(self.err(c, format!("package `{name}` is listed twice")));
                    }
                    list.push(name);
                }
                "ignore" if kind != "uninstall" && kind != "delete" => {
                    self.attrs(c, &["name", "arch"])?;
                    if arch_matches(c.attribute("arch")) {
                        p.exclude.push(self.required(c, "name")?.to_string());
                    }
                }
                "archive" if kind == "image" || kind == "bootstrap" => {
                    self.attrs(c, &["name"])?;
                    archives.push(self.required(c, "name")?.to_string());
                }
                "namedCollection" => {
                    return Err(self.err(
                        c,
                        "<namedCollection> (package patterns) has no apt equivalent: list the packages instead",
                    ))
                }
                _ => return Err(self.unsupported(c, "packages")),
            }
        }
        Ok(())
    }

    fn users(&self, node: Node<'a, 'i>, users: &mut Vec<User>) -> Result<()> {
        // KIWI 7.x: <users group="…" id="…">, the group every user of the section belongs to.
        self.attrs(node, &["group", "id", "profiles"])?;
        if node.attribute("id").is_some() {
            return Err(self.err(node, "<users id> (a fixed group id) is not supported by strata yet"));
        }
        let section_group = node.attribute("group");
        for c in self.children(node)? {
            if c.tag_name().name() != "user" {
                return Err(self.unsupported(c, "users"));
            }
            self.attrs(c, &["name", "password", "pwdformat", "home", "shell", "id", "groups", "realname"])?;
            let password = match (c.attribute("password"), c.attribute("pwdformat").unwrap_or("encrypted")) {
                (None, _) => None,
                (Some(p), "encrypted") => Some(Password::Hashed(p.to_string())),
                (Some(p), "plain") => Some(Password::Plain(p.to_string())),
                (Some(_), other) => {
                    return Err(self.err(c, format!("pwdformat `{other}`: expected `encrypted` or `plain`")))
                }
            };
            let uid = match c.attribute("id") {
                None => None,
                Some(v) => {
                    Some(v.parse::<u32>().map_err(|_| self.err(c, format!("user id `{v}`: expected a number")))?)
                }
            };
            let mut groups: Vec<String> = c
                .attribute("groups")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(g) = section_group {
                if !groups.iter().any(|x| x == g) {
                    groups.insert(0, g.to_string());
                }
            }
            let name = self.required(c, "name")?.to_string();
            if users.iter().any(|u| u.name == name) {
                return Err(self.err(c, format!("user `{name}` is listed twice")));
            }
            users.push(User {
                name,
                password,
                home: c.attribute("home").map(str::to_string),
                shell: c.attribute("shell").map(str::to_string),
                uid,
                groups,
                realname: c.attribute("realname").map(str::to_string),
            });
        }
        Ok(())
    }
}

const REPOSITORY_ATTRS: &[&str] =
    &["type", "alias", "distribution", "components", "repository_gpgcheck", "imageinclude", "profiles"];

/// KIWI names architectures as `uname -m` does; a list is comma-separated.
fn arch_matches(arch: Option<&str>) -> bool {
    arch.is_none_or(|list| list.split(',').map(str::trim).any(|a| a == std::env::consts::ARCH))
}

pub fn parse_mode(m: &str) -> std::result::Result<u32, String> {
    match u32::from_str_radix(m, 8) {
        Ok(v) if v <= 0o7777 && !m.is_empty() => Ok(v),
        _ => Err(format!("mode `{m}`: expected octal permission bits such as 0644")),
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}

/// Write a description as a KIWI document (schemaversion 7.4).
pub fn write(d: &Description) -> anyhow::Result<String> {
    check_scripts_have_kiwi_form(d)?;
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ = writeln!(s, "<image schemaversion=\"7.4\" name=\"{}\">", esc(&d.name));
    if let Some(from) = &d.derived_from {
        let _ = writeln!(s, "  <derived from=\"{}\"/>", esc(from));
    }
    write_description(&mut s, &d.info, d.derived_from.is_none());
    write_preferences(&mut s, &d.preferences, d.container.as_ref());
    write_users(&mut s, &d.users);
    for r in &d.repositories {
        write_repository(&mut s, r);
    }
    write_packages(&mut s, d);
    write_files(&mut s, &d.files);
    if let Some(r) = &d.retention {
        s.push_str("  <retention");
        if let Some(n) = r.keep_last {
            let _ = write!(s, " keep-last=\"{n}\"");
        }
        if let Some(secs) = r.keep_younger_than {
            let _ = write!(s, " keep-younger-than=\"{}\"", crate::util::text::duration(secs));
        }
        s.push_str("/>\n");
    }
    s.push_str("</image>\n");
    Ok(s)
}

/// Refuse script names KIWI cannot express (it runs `config.sh` and `images.sh` by convention).
fn check_scripts_have_kiwi_form(d: &Description) -> anyhow::Result<()> {
    for (what, v, conventional) in
        [("config", &d.scripts.config, "config.sh"), ("images", &d.scripts.images, "images.sh")]
    {
        if let Some(v) = v {
            anyhow::bail!(
                "scripts.{what} = `{v}` has no KIWI form: KIWI runs `{conventional}` from the description directory"
            );
        }
    }
    Ok(())
}

/// Write `<description type="system">`, when any of its fields is set, and always for an image
/// that derives from nothing (the parser requires the element there, empty or not).
fn write_description(s: &mut String, info: &Info, required: bool) {
    if required || info.author.is_some() || info.contact.is_some() || info.specification.is_some() {
        s.push_str("  <description type=\"system\">\n");
        for (tag, v) in [("author", &info.author), ("contact", &info.contact), ("specification", &info.specification)] {
            if let Some(v) = v {
                let _ = writeln!(s, "    <{tag}>{}</{tag}>", esc(v));
            }
        }
        s.push_str("  </description>\n");
    }
}

/// Write `<preferences>`: the set values, then one `<type>` per target (a container
/// configuration needs a container `<type>` to live in: one is written when it is missing).
fn write_preferences(s: &mut String, p: &Preferences, container: Option<&Container>) {
    s.push_str("  <preferences>\n");
    for (tag, v) in [
        ("version", &p.version),
        ("packagemanager", &p.packagemanager),
        ("locale", &p.locale),
        ("keytable", &p.keytable),
        ("timezone", &p.timezone),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "    <{tag}>{}</{tag}>", esc(v));
        }
    }
    let mut targets = p.targets.clone();
    if container.is_some() {
        targets.entry(TargetKind::Container).or_default();
    }
    for (kind, attrs) in &targets {
        let _ = write!(s, "    <type image=\"{}\"", kind.kiwi_image());
        if *kind == TargetKind::Container {
            for (k, v) in attrs {
                let _ = write!(s, " {k}=\"{}\"", esc(v));
            }
            match container {
                Some(c) => {
                    s.push_str(">\n");
                    write_containerconfig(s, c);
                    s.push_str("    </type>\n");
                }
                None => s.push_str("/>\n"),
            }
            continue;
        }
        for (k, v) in attrs.iter().filter(|(k, _)| *k != "disksize") {
            let _ = write!(s, " {k}=\"{}\"", esc(v));
        }
        match attrs.get("disksize") {
            Some(size) => {
                let (n, unit) = size.split_at(size.len().saturating_sub(1));
                let _ = write!(s, ">\n      <size unit=\"{}\">{}</size>\n    </type>\n", esc(unit), esc(n));
            }
            None => s.push_str("/>\n"),
        }
    }
    s.push_str("  </preferences>\n");
}

/// Write `<containerconfig>`.
fn write_containerconfig(s: &mut String, c: &Container) {
    s.push_str("      <containerconfig");
    for (k, v) in [
        ("name", &c.name),
        ("tag", &c.tag),
        ("maintainer", &c.maintainer),
        ("user", &c.user),
        ("workingdir", &c.workingdir),
    ] {
        if let Some(v) = v {
            let _ = write!(s, " {k}=\"{}\"", esc(v));
        }
    }
    if !c.additional_tags.is_empty() {
        let names: Vec<String> = c.additional_tags.iter().map(|t| format!(":{t}")).collect();
        let _ = write!(s, " additionalnames=\"{}\"", esc(&names.join(",")));
    }
    s.push_str(">\n");
    for (tag, command) in [("entrypoint", &c.entrypoint), ("subcommand", &c.cmd)] {
        match command.as_deref() {
            None => {}
            Some([]) => {
                let _ = writeln!(s, "        <{tag} clear=\"true\"/>");
            }
            Some([exe, args @ ..]) => {
                let _ = writeln!(s, "        <{tag} execute=\"{}\">", esc(exe));
                for a in args {
                    let _ = writeln!(s, "          <argument name=\"{}\"/>", esc(a));
                }
                let _ = writeln!(s, "        </{tag}>");
            }
        }
    }
    for (outer, inner, items) in [("expose", "port number", &c.expose), ("volumes", "volume name", &c.volumes)] {
        if !items.is_empty() {
            let _ = writeln!(s, "        <{outer}>");
            for i in items {
                let _ = writeln!(s, "          <{inner}=\"{}\"/>", esc(i));
            }
            let _ = writeln!(s, "        </{outer}>");
        }
    }
    if let Some(sig) = &c.stop_signal {
        let _ = writeln!(s, "        <stopsignal>{}</stopsignal>", esc(sig));
    }
    for (outer, inner, map) in [("environment", "env", &c.env), ("labels", "label", &c.labels)] {
        if !map.is_empty() {
            let _ = writeln!(s, "        <{outer}>");
            for (k, v) in map {
                let _ = writeln!(s, "          <{inner} name=\"{}\" value=\"{}\"/>", esc(k), esc(v));
            }
            let _ = writeln!(s, "        </{outer}>");
        }
    }
    if c.author.is_some() || c.created_by.is_some() || c.comment.is_some() {
        s.push_str("        <history");
        for (k, v) in [("author", &c.author), ("created_by", &c.created_by)] {
            if let Some(v) = v {
                let _ = write!(s, " {k}=\"{}\"", esc(v));
            }
        }
        match &c.comment {
            Some(text) => {
                let _ = writeln!(s, ">{}</history>", esc(text));
            }
            None => s.push_str("/>\n"),
        }
    }
    s.push_str("      </containerconfig>\n");
}

/// Write `<users>`, when there are any.
fn write_users(s: &mut String, users: &[User]) {
    if users.is_empty() {
        return;
    }
    s.push_str("  <users>\n");
    for u in users {
        let _ = write!(s, "    <user name=\"{}\"", esc(&u.name));
        match &u.password {
            Some(Password::Hashed(h)) => {
                let _ = write!(s, " password=\"{}\"", esc(h));
            }
            Some(Password::Plain(h)) => {
                let _ = write!(s, " password=\"{}\" pwdformat=\"plain\"", esc(h));
            }
            None => {}
        }
        for (k, v) in [("home", &u.home), ("shell", &u.shell), ("realname", &u.realname)] {
            if let Some(v) = v {
                let _ = write!(s, " {k}=\"{}\"", esc(v));
            }
        }
        if let Some(id) = u.uid {
            let _ = write!(s, " id=\"{id}\"");
        }
        if !u.groups.is_empty() {
            let _ = write!(s, " groups=\"{}\"", esc(&u.groups.join(",")));
        }
        s.push_str("/>\n");
    }
    s.push_str("  </users>\n");
}

/// Write one `<repository>`.
fn write_repository(s: &mut String, r: &Repository) {
    match r {
        Repository::Host => {
            let _ = writeln!(
                s,
                "  <repository type=\"apt-deb\">\n    <source path=\"{HOST_SOURCES_PATH}\"/>\n  </repository>"
            );
        }
        Repository::Apt(a) => {
            s.push_str("  <repository type=\"apt-deb\"");
            if let Some(alias) = &a.alias {
                let _ = write!(s, " alias=\"{}\"", esc(alias));
            }
            if let Some(dist) = &a.distribution {
                let _ = write!(s, " distribution=\"{}\" components=\"{}\"", esc(dist), esc(&a.components.join(" ")));
            }
            s.push_str(" repository_gpgcheck=\"true\">\n");
            write_source(s, &a.uri, &a.signed_by);
            s.push_str("  </repository>\n");
        }
        Repository::RpmMd(r) => {
            s.push_str("  <repository type=\"rpm-md\"");
            if let Some(alias) = &r.alias {
                let _ = write!(s, " alias=\"{}\"", esc(alias));
            }
            let _ = writeln!(s, " repository_gpgcheck=\"{}\">", r.gpgcheck);
            write_source(s, &r.uri, &r.signed_by);
            s.push_str("  </repository>\n");
        }
    }
}

/// Write a repository's `<source>`, with a `<signing>` per keyring.
fn write_source(s: &mut String, uri: &str, signed_by: &[String]) {
    if signed_by.is_empty() {
        let _ = writeln!(s, "    <source path=\"{}\"/>", esc(uri));
    } else {
        let _ = writeln!(s, "    <source path=\"{}\">", esc(uri));
        for k in signed_by {
            let _ = writeln!(s, "      <signing key=\"file://{}\"/>", esc(k));
        }
        s.push_str("    </source>\n");
    }
}

/// Write the `<packages>` sections that have packages, ignores or archives.
fn write_packages(s: &mut String, d: &Description) {
    let pk = &d.packages;
    type Section<'a> = (&'a str, &'a Vec<String>, &'a [String], &'a [String]);
    let sections: [Section; 4] = [
        ("bootstrap", &pk.bootstrap, &[], &[]),
        ("image", &pk.install, &pk.exclude, &d.archives),
        ("uninstall", &pk.remove, &[], &[]),
        ("delete", &pk.delete, &[], &[]),
    ];
    for (kind, list, ignore, archives) in sections {
        if list.is_empty() && ignore.is_empty() && archives.is_empty() {
            continue;
        }
        let _ = writeln!(s, "  <packages type=\"{kind}\">");
        for name in list {
            let _ = writeln!(s, "    <package name=\"{}\"/>", esc(name));
        }
        for name in ignore {
            let _ = writeln!(s, "    <ignore name=\"{}\"/>", esc(name));
        }
        for name in archives {
            let _ = writeln!(s, "    <archive name=\"{}\"/>", esc(name));
        }
        s.push_str("  </packages>\n");
    }
}

/// Write `<files>`, when any file has attributes.
fn write_files(s: &mut String, files: &BTreeMap<String, FileAttrs>) {
    if files.is_empty() {
        return;
    }
    s.push_str("  <files>\n");
    for (path, a) in files {
        let _ = write!(s, "    <file path=\"{}\"", esc(path));
        for (k, v) in [("owner", &a.owner), ("group", &a.group)] {
            if let Some(v) = v {
                let _ = write!(s, " {k}=\"{}\"", esc(v));
            }
        }
        if let Some(m) = a.mode {
            let _ = write!(s, " mode=\"{m:04o}\"");
        }
        s.push_str("/>\n");
    }
    s.push_str("  </files>\n");
}
