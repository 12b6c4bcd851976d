use proptest::prelude::*;

use super::*;

const KIWI_HEAD: &str = "<?xml version=\"1.0\"?>\n<image schemaversion=\"7.4\" name=\"t\">\n<description type=\"system\"><author>a</author><contact>c</contact><specification>s</specification></description>\n";

fn xml(body: &str) -> String {
    format!("{KIWI_HEAD}{body}</image>\n")
}

fn xml_err(doc: &str) -> String {
    let e = match kiwi::parse(doc, &[]) {
        Ok(d) => validate(&d).expect_err("document was accepted"),
        Err(e) => e.into(),
    };
    format!("{e:#}")
}

fn toml_err(doc: &str) -> String {
    let e = match toml_form::parse(doc) {
        Ok(d) => validate(&d).expect_err("document was accepted"),
        Err(e) => e,
    };
    format!("{e:#}")
}

/// Every document of `table` fails with exactly its error; all mismatches are shown at once.
fn check_table(table: &[(&str, &str)], error: fn(&str) -> String) {
    let wrong: Vec<String> = table
        .iter()
        .filter_map(|(doc, want)| {
            let got = error(doc);
            (got != *want).then(|| format!("document:\n{doc}\nwant: {want}\ngot:  {got}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn kiwi_document_reads_into_the_model() {
    let doc = xml(
        r#"<profiles><profile name="big" description="more" import="true"/><profile name="small" description="less"/></profiles>
<preferences>
  <version>1.2.3</version><packagemanager>apt</packagemanager><timezone>UTC</timezone>
  <type image="oem" filesystem="ext4" firmware="efi"><size unit="G">4</size></type>
</preferences>
<preferences profiles="small"><locale>de_DE</locale></preferences>
<users><user name="tux" password="secret" pwdformat="plain" home="/home/tux" groups="users,adm" id="1000"/></users>
<users group="staff"><user name="ops" shell="/bin/bash"/></users>
<repository type="apt-deb" distribution="bookworm" components="main contrib" alias="debian">
  <source path="http://deb.example/debian"><signing key="file:///usr/share/keyrings/debian-archive-keyring.gpg"/></source>
</repository>
<repository><source path="obsrepositories:/"/></repository>
<packages type="bootstrap"><package name="apt"/><ignore name="usrmerge"/></packages>
<packages type="image"><package name="systemd"/><package name="grub-pc" arch="aarch64"/><archive name="extra.tar.gz"/></packages>
<packages type="image" profiles="big"><package name="nginx"/></packages>
<packages type="image" profiles="small"><package name="dropbear"/></packages>
<packages type="delete"><package name="man-db"/></packages>
"#,
    );
    let d = kiwi::parse(&doc, &[]).unwrap();
    validate(&d).unwrap();
    assert_eq!(d.name, "t");
    assert_eq!(d.preferences.version.as_deref(), Some("1.2.3"));
    assert_eq!(d.preferences.locale, None, "profile `small` is not selected");
    let disk = &d.preferences.targets[&TargetKind::Disk];
    assert_eq!(disk["filesystem"], "ext4");
    assert_eq!(disk["disksize"], "4G");
    assert_eq!(d.users[0].password, Some(Password::Plain("secret".into())));
    assert_eq!(d.users[0].groups, ["users", "adm"]);
    assert_eq!(d.users[1].groups, ["staff"]);
    let Repository::Apt(a) = &d.repositories[0] else { panic!() };
    assert_eq!(
        a.source_line(),
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.example/debian bookworm main contrib"
    );
    assert_eq!(d.repositories[1], Repository::Host);
    assert_eq!(d.packages.bootstrap, ["apt"]);
    assert_eq!(d.packages.exclude, ["usrmerge"]);
    assert_eq!(d.packages.install, ["systemd", "nginx"], "other arch and unselected profile left out");
    assert_eq!(d.packages.delete, ["man-db"]);
    assert_eq!(d.archives, ["extra.tar.gz"]);

    let small = kiwi::parse(&doc, &["small".to_string()]).unwrap();
    assert_eq!(small.packages.install, ["systemd", "dropbear"]);
    assert_eq!(small.preferences.locale.as_deref(), Some("de_DE"));
}

#[test]
fn invalid_kiwi_documents_fail_with_their_exact_error() {
    let table: &[(&str, &str)] = &[
        (
            "<?xml version=\"1.0\"?>\n<!DOCTYPE image [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n<image/>",
            "line 1, column 1: a DOCTYPE declaration: DTDs and external entities are refused in descriptions",
        ),
        ("<image schemaversion=\"7.4\" name=\"t\">", "line 1, column 1: not well-formed XML: the root node was opened but never closed"),
        ("<img/>", "line 1, column 1: the document element is <img>, expected <image>"),
        ("<image schemaversion=\"6.2\" name=\"t\"/>", "line 1, column 1: schemaversion `6.2`: strata reads KIWI schema 7.x and 8.x"),
        (
            "<image schemaversion=\"7.4\" name=\"t\"/>",
            "line 1, column 1: <image> needs a <description type=\"system\"> with <author>, <contact> and <specification>",
        ),
        (&xml("<drivers><file name=\"x\"/></drivers>"), "line 4, column 1: <drivers> in <image> is not supported by strata yet"),
        (&xml("<retention/>"), "line 4, column 1: <retention> needs keep-last=\"N\", keep-younger-than=\"30d\" or both"),
        (&xml("<retention keep-last=\"0\"/>"), "line 4, column 1: keep-last=\"0\": expected a number of generations, 1 or more"),
        (&xml("<retention keep-younger-than=\"soon\"/>"), "line 4, column 1: keep-younger-than: invalid duration `soon`: expected a number with s, m, h, d or w (`30d`)"),
        (&xml("<retention keep-last=\"2\"/><retention keep-last=\"3\"/>"), "line 4, column 27: a second <retention>"),
        (
            &xml("<preferences><rpm-check-signatures>false</rpm-check-signatures></preferences>"),
            "line 4, column 14: <rpm-check-signatures> in <preferences> is not supported by strata yet",
        ),
        (
            &xml("<preferences><packagemanager>pacman</packagemanager></preferences>"),
            "line 4, column 14: packagemanager `pacman`: expected one of apt, zypper, dnf, dnf4, dnf5, microdnf, yum",
        ),
        (
            &xml("<preferences><type image=\"pxe\"/></preferences>"),
            "line 4, column 14: <type image=\"pxe\"> is not supported by strata yet: it builds disks (oem), live ISOs (iso) and OCI images (docker, oci)",
        ),
        (
            &xml("<preferences><type image=\"docker\" rootfs_label=\"x\"/></preferences>"),
            "line 4, column 14: attribute `rootfs_label` of <type> is not supported by strata (supported: image, primary, derived_from)",
        ),
        (
            &xml("<preferences><type image=\"oci\" derived_from=\"obsrepositories:/x#1\"/></preferences>"),
            "line 4, column 14: derived_from=\"obsrepositories:/x#1\": strata derives from docker://HOST/REPO:TAG, oci:DIR:TAG or oci-archive:FILE:TAG images, or ostree-container: before one of them",
        ),
        (
            &xml("<preferences><type image=\"oci\"><containerconfig name=\"x\"><entrypoint/></containerconfig></type></preferences>"),
            "line 4, column 58: <entrypoint> needs execute=\"PROGRAM\" or clear=\"true\"",
        ),
        (
            &xml("<preferences><type image=\"oci\"><containerconfig name=\"x\"><expose><port number=\"http\"/></expose></containerconfig></type></preferences>"),
            "line 4, column 14: container: port `http`: expected a number from 1 to 65535, optionally /tcp, /udp or /sctp",
        ),
        (
            &xml("<preferences><type image=\"oci\"><containerconfig name=\"x\"><history launcher=\"wsl\"/></containerconfig></type></preferences>"),
            "line 4, column 58: attribute `launcher` of <history> is not supported by strata (supported: author, created_by)",
        ),
        (
            &xml("<preferences><type image=\"oem\" luks=\"x\"/></preferences>"),
            "line 4, column 14: attribute `luks` of <type> is not supported by strata (supported: image, primary, filesystem, firmware, kernelcmdline, bootloader, format, volid, flags)",
        ),
        (
            &xml("<packages type=\"image\">\n  <namedCollection name=\"base\"/>\n</packages>"),
            "line 5, column 3: <namedCollection> (package patterns) has no apt equivalent: list the packages instead",
        ),
        (
            &xml("<packages type=\"image\"><package name=\"vim\" bootinclude=\"true\"/></packages>"),
            "line 4, column 24: attribute `bootinclude` of <package> is not supported by strata (supported: name, arch)",
        ),
        (
            &xml("<packages type=\"image\"><package name=\"vim\"/><package name=\"vim\"/></packages>"),
            "line 4, column 45: package `vim` is listed twice",
        ),
        (&xml("<packages type=\"product\"/>"), "line 4, column 1: <packages type=\"product\"> is not supported by strata yet (bootstrap, image, uninstall, delete)"),
        (
            &xml("<repository type=\"rpm-md\"><source path=\"http://x/\"/></repository>"),
            "line 4, column 27: an rpm-md repository needs a <signing key=\"file:///…\"/> (or repository_gpgcheck=\"false\")",
        ),
        (
            &xml("<repository type=\"yast2\"><source path=\"http://x/\"/></repository>"),
            "line 4, column 1: repository type `yast2` is not supported by strata (expected apt-deb or rpm-md)",
        ),
        (
            &xml("<repository type=\"rpm-md\" distribution=\"x\" repository_gpgcheck=\"false\"><source path=\"http://x/\"/></repository>"),
            "line 4, column 1: `distribution` is for apt-deb repositories, not rpm-md",
        ),
        (
            &xml("<repository distribution=\"bookworm\"><source path=\"http://x/\"/></repository>"),
            "line 4, column 1: a repository with a distribution needs `components`",
        ),
        (
            &xml("<repository repository_gpgcheck=\"false\"><source path=\"http://x/\"/></repository>"),
            "line 4, column 1: repository_gpgcheck=\"false\": apt repositories are always verified",
        ),
        (
            &xml("<repository><source path=\"ftp://x/\"/></repository>"),
            "line 4, column 13: source path `ftp://x/`: expected an http://, https:// or file:/ URI",
        ),
        (
            &xml("<repository><source path=\"http://x/\"><signing key=\"https://k\"/></source></repository>"),
            "line 4, column 38: signing key `https://k`: expected file:///absolute/path",
        ),
        (
            &xml("<users><user name=\"x\" pwdformat=\"md5\" password=\"p\"/></users>"),
            "line 4, column 8: pwdformat `md5`: expected `encrypted` or `plain`",
        ),
        (&xml("<users><user name=\"x\" id=\"-1\"/></users>"), "line 4, column 8: user id `-1`: expected a number"),
        (&xml("<packages type=\"image\" profiles=\"nope\"/>"), "line 4, column 1: profile `nope` is not declared in <profiles>"),
        (&xml("<derived from=\"a\"/><derived from=\"b\"/>"), "line 4, column 20: a second <derived>: an image derives from one base"),
        (&xml("<files><file path=\"/etc/x\" mode=\"999\"/></files>"), "line 4, column 8: mode `999`: expected octal permission bits such as 0644"),
        (&xml("<preferences>text</preferences>"), "line 4, column 14: unexpected text in <preferences>"),
        // Checks shared with TOML.
        (&xml("<packages type=\"image\"><package name=\"Bad_Name\"/></packages>"), "packages install: `Bad_Name` is not a package name (lower-case letters, digits and `+-.`)"),
        (
            &xml("<packages type=\"image\"><package name=\"vim\"/></packages><packages type=\"uninstall\"><package name=\"vim\"/></packages>"),
            "package `vim` is both installed and removed",
        ),
        (&xml("<users><user name=\"Root\"/></users>"), "user `Root`: expected a name of lower-case letters, digits, `_` and `-`, starting with a letter or `_`"),
        (&xml("<users><user name=\"x\" home=\"home\"/></users>"), "user `x`: home `home` must be an absolute path without `:`"),
        (&xml("<files><file path=\"etc/x\"/></files>"), "files: `etc/x` must be an absolute path in the image without `..`"),
        (&xml("<packages type=\"image\"><archive name=\"../x.tar\"/></packages>"), "archive: `../x.tar` must be a path inside the description directory"),
        ("<image schemaversion=\"8.0\" name=\"a b\"><derived from=\"x\"/></image>", "image name `a b`: expected letters, digits and `._+-`"),
    ];
    check_table(table, xml_err);
}

#[test]
fn unknown_profiles_on_the_command_line_are_named() {
    let e = kiwi::parse(&xml(""), &["web".to_string()]).unwrap_err();
    assert_eq!(e.to_string(), "line 1, column 1: profile `web` is not declared in <profiles> (declared: none)");
}

#[test]
fn invalid_toml_documents_fail_with_their_exact_error() {
    let table: &[(&str, &str)] = &[
        ("[image]\nname = \"t\"\n[packages]\ninstal = [\"x\"]\n", "line 4, column 1: key `packages.instal`: unknown field `instal`, expected one of `bootstrap`, `install`, `remove`, `delete`, `exclude`, `archives`"),
        ("[image]\nname = \"t\"\n[packages]\ninstall = \"nginx\"\n", "line 4, column 11: key `packages.install`: invalid type: string \"nginx\", expected a sequence"),
        ("[image]\nname = \"t\"\nname = \"u\"\n", "line 3, column 1: duplicate key"),
        ("[image]\nnam = \"t\"\n", "line 2, column 1: key `image.nam`: unknown field `nam`, expected one of `name`, `derived-from`, `version`, `author`, `contact`, `specification`, `packagemanager`, `locale`, `keytable`, `timezone`"),
        ("[packages]\ninstall = []\n", "line 1, column 1: missing field `image`"),
        ("[image]\nname = \"t\"\n[[user]]\nname = \"x\"\nuid = \"1000\"\n", "line 5, column 7: key `user[0].uid`: invalid type: string \"1000\", expected u32"),
        ("[image]\nname = \"t\"\n[[user]]\nname = \"x\"\npassword-format = \"plain\"\n", "key `user[0].password-format`: given without a password"),
        ("[image]\nname = \"t\"\n[[repository]]\ndistribution = \"bookworm\"\n", "key `repository[0]`: expected `uri = \"…\"` or `host-sources = true`"),
        ("[image]\nname = \"t\"\n[[repository]]\nhost-sources = true\nuri = \"http://x/\"\n", "key `repository[0]`: `host-sources = true` takes no uri, distribution, components or signed-by"),
        ("[image]\nname = \"t\"\n[[repository]]\nuri = \"http://x/\"\ndistribution = \"b\"\ncomponents = [\"main\"]\nsigned-by = [\"k.gpg\"]\n", "key `repository[0].signed-by`: `k.gpg`: expected an absolute path to a keyring"),
        ("[image]\nname = \"t\"\n[target.disk]\nsize = \"4G\"\n", "key `target.disk.size`: unknown attribute; expected one of primary, filesystem, firmware, kernelcmdline, bootloader, format, volid, flags, disksize"),
        ("[image]\nname = \"t\"\n[target.vm]\n", "line 3, column 9: key `target.vm`: unknown field `vm`, expected one of `disk`, `iso`, `container`"),
        ("[image]\nname = \"t\"\n[files.\"/etc/x\"]\nmode = \"rw\"\n", "key `files.\"/etc/x\".mode`: mode `rw`: expected octal permission bits such as 0644"),
        ("[image]\nname = \"t\"\npackagemanager = \"dnf\"\n[[repository]]\nhost-sources = true\n", "packagemanager `dnf` does not fit the repositories: apt installs from apt-deb repositories, dnf from rpm-md ones"),
        ("[image]\nname = \"t\"\n[packages]\ninstall = [\"a1\", \"a1\"]\n", "packages install: `a1` is listed twice"),
        ("[image]\nname = \"t\"\n[scripts]\nconfig = \"/etc/passwd\"\n", "scripts config: `/etc/passwd` must be a path inside the description directory"),
        ("[image]\nname = \"t\"\n[retention]\nkeep-last = 0\n", "key `retention.keep-last`: 0 would keep nothing; expected 1 or more (the newest is always kept)"),
        ("[image]\nname = \"t\"\n[retention]\nkeep-younger-than = \"a month\"\n", "key `retention.keep-younger-than`: invalid duration `a month`: expected a number with s, m, h, d or w (`30d`)"),
        ("[image]\nname = \"t\"\n[retention]\n", "key `retention`: expected `keep-last = N`, `keep-younger-than = \"30d\"` or both"),
        ("[image]\nname = \"t\"\n[retention]\nkeep = 3\n", "line 4, column 1: key `retention.keep`: unknown field `keep`, expected `keep-last` or `keep-younger-than`"),
    ];
    check_table(table, toml_err);
}

#[test]
fn base_references_parse() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::create_dir(dir.path().join("base")).unwrap();
    assert_eq!(parse_base("root:images/base", dir.path()).unwrap(), Base::Root("images/base".into()));
    assert_eq!(
        parse_base("ostree:repo#os/x86_64", dir.path()).unwrap(),
        Base::Ostree { repo: dir.path().join("repo"), reference: "os/x86_64".into() }
    );
    assert_eq!(
        parse_base("base", dir.path()).unwrap(),
        Base::Description(dir.path().join("base").canonicalize().unwrap())
    );
    assert!(format!("{:#}", parse_base("missing", dir.path()).unwrap_err()).starts_with("base description `missing`"));
    assert_eq!(
        parse_base("ostree:repo", dir.path()).unwrap_err().to_string(),
        "`ostree:repo`: expected `ostree:REPO#REF`"
    );
    // Ostree-native containers, in strata's form and in ostree's.
    let registry = |spec: &str| ImageReference::parse(spec).unwrap();
    assert_eq!(
        parse_base("ostree-container:oci:layout:1", dir.path()).unwrap(),
        Base::OstreeContainer(Box::new(Base::Oci { dir: dir.path().join("layout"), tag: Some("1".into()) }))
    );
    assert_eq!(
        parse_base("ostree-unverified-registry:r.example/os:1", dir.path()).unwrap(),
        Base::OstreeContainer(Box::new(Base::Registry(registry("docker://r.example/os:1"))))
    );
    assert_eq!(
        parse_base("ostree-unverified-image:docker://r.example/os", dir.path()).unwrap(),
        Base::OstreeContainer(Box::new(Base::Registry(registry("docker://r.example/os"))))
    );
    assert_eq!(
        parse_base("ostree-unverified-image:registry:r.example/os:2", dir.path()).unwrap(),
        Base::OstreeContainer(Box::new(Base::Registry(registry("docker://r.example/os:2"))))
    );
    assert!(parse_base("ostree-container:containers-storage:os", dir.path())
        .unwrap_err()
        .to_string()
        .contains("expected an oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://HOST/REPO[:TAG] image"));
    assert!(parse_base("ostree-remote-image:fedora:docker://r.example/os", dir.path())
        .unwrap_err()
        .to_string()
        .contains("signed ostree container references are not supported"));
}

#[test]
fn a_derivation_cycle_is_reported_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    for (name, from) in [("a", "../b"), ("b", "../c"), ("c", "../a")] {
        let d = dir.path().join(name);
        fs_err::create_dir(&d).unwrap();
        fs_err::write(d.join("image.toml"), format!("[image]\nname = \"{name}\"\nderived-from = \"{from}\"\n"))
            .unwrap();
    }
    let e = load_chain(&dir.path().join("a"), &[]).unwrap_err().to_string();
    let root = dir.path().canonicalize().unwrap();
    let p = |n: &str| root.join(n).display().to_string();
    assert_eq!(
        e,
        format!("descriptions derive from each other in a cycle: {} => {} => {} => {}", p("a"), p("b"), p("c"), p("a"))
    );
}

#[test]
fn a_derived_image_inherits_its_nearest_bases_targets_unless_it_declares_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let d = dir.path().join(name);
        fs_err::create_dir(&d).unwrap();
        fs_err::write(d.join("image.toml"), text).unwrap();
    };
    write(
        "base",
        "[image]\nname = \"base\"\n[target.disk]\nformat = \"qcow2\"\nprimary = true\n[target.iso]\nvolid = \"BASE\"\n",
    );
    write("mid", "[image]\nname = \"mid\"\nderived-from = \"../base\"\n");
    write("top", "[image]\nname = \"top\"\nderived-from = \"../mid\"\n");
    write("own", "[image]\nname = \"own\"\nderived-from = \"../mid\"\n[target.iso]\nvolid = \"OWN\"\n");
    let base = load_chain(&dir.path().join("base"), &[]).unwrap();
    let top = load_chain(&dir.path().join("top"), &[]).unwrap();
    assert_eq!(top.targets(), base.targets(), "two levels down, the base's targets whole");
    assert_eq!(top.targets()[&TargetKind::Disk]["format"], "qcow2");
    assert_eq!(top.preferences().targets, *top.targets());
    let own = load_chain(&dir.path().join("own"), &[]).unwrap();
    assert_eq!(own.targets().keys().copied().collect::<Vec<_>>(), [TargetKind::Iso], "its own replace them all");
    assert_eq!(own.targets()[&TargetKind::Iso]["volid"], "OWN");
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        "[a-zA-Z0-9 _./<>&\"'-]{1,12}".prop_map(|s| s.trim().to_string()).prop_filter("non-empty", |s| !s.is_empty()),
    )
}

fn names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z][a-z0-9+.-]{1,8}", 0..4).prop_map(|s| s.into_iter().collect())
}

fn description() -> impl Strategy<Value = Description> {
    let repo = prop_oneof![
        Just(Repository::Host),
        ("[a-z]{1,8}", proptest::option::of("[a-z]{1,8}"), proptest::collection::vec("/[a-z]{1,8}\\.gpg", 0..2))
            .prop_map(|(host, dist, keys)| Repository::Apt(AptRepository {
                alias: None,
                uri: format!("http://{host}/debian"),
                components: if dist.is_some() { vec!["main".into()] } else { vec![] },
                distribution: dist,
                signed_by: keys,
            })),
        ("[a-z]{1,8}", proptest::option::of("[a-z]{1,8}"), proptest::collection::vec("/[a-z]{1,8}\\.asc", 0..2))
            .prop_map(|(host, alias, keys)| Repository::RpmMd(RpmRepository {
                alias,
                uri: format!("http://{host}/fedora"),
                gpgcheck: !keys.is_empty(),
                signed_by: keys,
            })),
    ];
    let user = (
        "[a-z][a-z0-9_-]{0,8}",
        proptest::option::of(prop_oneof![
            "[a-zA-Z0-9$./]{1,20}".prop_map(Password::Hashed),
            "[a-zA-Z0-9 !]{1,12}".prop_map(Password::Plain)
        ]),
        proptest::option::of("/[a-z]{1,8}"),
        proptest::option::of(0u32..70000),
        proptest::collection::vec("[a-z]{1,6}", 0..3),
    )
        .prop_map(|(name, password, home, uid, groups)| User {
            name,
            password,
            home,
            shell: None,
            uid,
            groups,
            realname: None,
        });
    let target = proptest::collection::btree_map(
        prop_oneof![
            Just("filesystem".to_string()),
            Just("firmware".to_string()),
            Just("primary".to_string()),
            Just("disksize".to_string())
        ],
        prop_oneof![Just("true".to_string()), Just("4G".to_string()), "[a-z0-9]{1,6}"],
        0..3,
    )
    .prop_map(|mut m| {
        // `disksize` is a size in KIWI: a number and a unit.
        if m.contains_key("disksize") {
            m.insert("disksize".into(), "20G".into());
        }
        m
    });
    (
        "[a-z][a-z0-9.-]{0,10}",
        (opt_text(), opt_text(), opt_text()),
        proptest::option::of("\\.\\./[a-z]{1,8}"),
        (opt_text(), proptest::option::of(Just("apt".to_string())), opt_text(), opt_text()),
        proptest::collection::vec(repo, 0..3),
        (names(), names(), names(), names()),
        proptest::collection::vec(user, 0..3),
        proptest::collection::btree_map("/etc/[a-z]{1,8}", (opt_text(), proptest::option::of(0u32..0o7777)), 0..3),
        proptest::option::of(target),
    )
        .prop_map(|(name, info, derived_from, prefs, repositories, pk, users, files, target)| {
            let mut users = users;
            users.dedup_by(|a, b| a.name == b.name);
            let mut seen = std::collections::BTreeSet::new();
            users.retain(|u| seen.insert(u.name.clone()));
            let (bootstrap, install, remove, exclude) = pk;
            let remove = remove.into_iter().filter(|p| !install.contains(p) && !bootstrap.contains(p)).collect();
            Description {
                name,
                info: Info { author: info.0, contact: info.1, specification: info.2 },
                derived_from,
                preferences: Preferences {
                    version: prefs.0,
                    packagemanager: prefs.1,
                    locale: prefs.2,
                    keytable: prefs.3,
                    timezone: None,
                    targets: target.map(|t| [(TargetKind::Disk, t)].into_iter().collect()).unwrap_or_default(),
                },
                repositories,
                packages: Packages { bootstrap, install, remove, delete: vec![], exclude },
                archives: vec![],
                users,
                files: files
                    .into_iter()
                    .map(|(k, (owner, mode))| {
                        (k, FileAttrs { owner: owner.map(|o| o.replace(' ', "")), group: None, mode })
                    })
                    .collect(),
                scripts: Scripts::default(),
                retention: None,
                container: None,
            }
        })
}

/// A retention policy with at least one rule; durations in whole seconds, minutes, hours, days
/// or weeks.
fn retention() -> impl Strategy<Value = Option<Retention>> {
    let duration = (1u64..1000, prop_oneof![Just(1u64), Just(60), Just(3600), Just(86400), Just(7 * 86400)])
        .prop_map(|(n, unit)| n * unit);
    proptest::option::of(
        (proptest::option::of(1u64..100), proptest::option::of(duration))
            .prop_filter("one rule at least", |(n, d)| n.is_some() || d.is_some())
            .prop_map(|(keep_last, keep_younger_than)| Retention { keep_last, keep_younger_than }),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// XML -> model -> TOML -> model is the identity (and so is the way back).
    #[test]
    fn xml_and_toml_forms_round_trip(d in description(), retention in retention()) {
        let mut d = d;
        d.retention = retention;
        let xml = kiwi::write(&d).unwrap();
        let from_xml = kiwi::parse(&xml, &[]).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(&from_xml, &d, "{}", xml);
        let toml = toml_form::write(&from_xml);
        let from_toml = toml_form::parse(&toml).map_err(|e| TestCaseError::fail(format!("{e:#}\n{toml}")))?;
        prop_assert_eq!(&from_toml, &d, "{}", toml);
    }
}

/// Descriptions written in KIWI's published style: the Debian one reads completely, the others
/// stop at their first element strata does not support, named with its line.
#[test]
fn kiwi_style_descriptions_read_or_fail_loudly() {
    let jeos = kiwi::parse(include_str!("../../tests/kiwi/debian-jeos.kiwi"), &[]).unwrap();
    validate(&jeos).unwrap();
    assert_eq!(jeos.name, "Debian-Bookworm-JeOS");
    assert_eq!(jeos.preferences.targets.keys().copied().collect::<Vec<_>>(), [TargetKind::Disk]);
    assert_eq!(jeos.preferences.targets[&TargetKind::Disk]["disksize"], "10G");
    assert_eq!(jeos.packages.install, ["grub2", "linux-image-amd64", "systemd", "openssh-server", "dbus"]);
    assert_eq!(jeos.packages.bootstrap, ["ca-certificates", "apt"]);
    assert_eq!(
        (jeos.packages.exclude.as_slice(), jeos.packages.delete.as_slice()),
        (&["usrmerge".to_string()][..], &["man-db".to_string()][..])
    );
    assert_eq!(jeos.archives, ["root.tar.gz"]);
    assert_eq!(jeos.users[0].password, Some(Password::Hashed("$1$wYJUgpM5$RXMMeASDc035eX.NbYWFl0".into())));
    let live = kiwi::parse(include_str!("../../tests/kiwi/debian-jeos.kiwi"), &["Live".into()]).unwrap();
    assert_eq!(live.preferences.targets.keys().copied().collect::<Vec<_>>(), [TargetKind::Iso]);
    assert!(live.packages.install.contains(&"dracut-live".to_string()));

    let leap = kiwi::parse(include_str!("../../tests/kiwi/leap-jeos.kiwi"), &[]).unwrap_err();
    assert_eq!(
        leap.to_string(),
        "line 15, column 9: <rpm-excludedocs> in <preferences> is not supported by strata yet"
    );
    let container = kiwi::parse(include_str!("../../tests/kiwi/debian-container.kiwi"), &[]).unwrap();
    assert_eq!(container.preferences.targets.keys().copied().collect::<Vec<_>>(), [TargetKind::Container]);
    let c = container.container.unwrap();
    assert_eq!((c.name.as_deref(), c.tag.as_deref()), (Some("debian"), Some("bookworm")));
}

#[test]
fn container_configurations_read_write_and_merge() {
    let doc = xml(r#"<preferences>
  <type image="docker" primary="true" derived_from="docker://registry.example.org/os/base:1">
    <containerconfig name="web" tag="1.0" additionalnames=":latest,other/web:stable" maintainer="Team &lt;t@example.org&gt;" user="www-data" workingdir="/srv">
      <entrypoint execute="/usr/sbin/nginx"><argument name="-g"/><argument name="daemon off;"/></entrypoint>
      <subcommand clear="true"/>
      <expose><port number="80"/><port number="53/udp"/></expose>
      <volumes><volume name="/var/log"/></volumes>
      <stopsignal>SIGQUIT</stopsignal>
      <environment><env name="LANG" value="C.UTF-8"/></environment>
      <labels><label name="org.example.team" value="web"/></labels>
      <history author="tux" created_by="make">a comment</history>
    </containerconfig>
  </type>
</preferences>"#);
    let d = kiwi::parse(&doc, &[]).unwrap();
    validate(&d).unwrap();
    assert_eq!(d.derived_from.as_deref(), Some("docker://registry.example.org/os/base:1"));
    assert_eq!(d.preferences.targets[&TargetKind::Container]["primary"], "true");
    let c = d.container.clone().unwrap();
    assert_eq!(c.entrypoint, Some(vec!["/usr/sbin/nginx".into(), "-g".into(), "daemon off;".into()]));
    assert_eq!(c.cmd, Some(vec![]));
    assert_eq!(
        (c.expose.as_slice(), c.volumes.as_slice()),
        (&["80".to_string(), "53/udp".into()][..], &["/var/log".to_string()][..])
    );
    assert_eq!(c.additional_tags, ["latest", "stable"]);
    assert_eq!(
        (c.author.as_deref(), c.created_by.as_deref(), c.comment.as_deref()),
        (Some("tux"), Some("make"), Some("a comment"))
    );
    assert_eq!(c.maintainer.as_deref(), Some("Team <t@example.org>"));
    // Written as TOML and as KIWI, read back the same.
    let toml_text = toml_form::write(&d);
    assert_eq!(toml_form::parse(&toml_text).unwrap(), d, "{toml_text}");
    let kiwi_text = kiwi::write(&d).unwrap();
    assert_eq!(kiwi::parse(&kiwi_text, &[]).unwrap(), d, "{kiwi_text}");
    // A derived description's settings go over its base's.
    let mut merged = c.clone();
    merged.merge(&Container {
        user: Some("0".into()),
        entrypoint: Some(vec!["/bin/sh".into()]),
        env: [("LANG".to_string(), "C".to_string()), ("TZ".to_string(), "UTC".to_string())].into_iter().collect(),
        expose: vec!["80".into(), "443".into()],
        ..Container::default()
    });
    assert_eq!((merged.user.as_deref(), merged.workingdir.as_deref()), (Some("0"), Some("/srv")));
    assert_eq!(merged.entrypoint, Some(vec!["/bin/sh".to_string()]));
    assert_eq!(merged.cmd, None, "a new entrypoint drops the base's command");
    let mut kept = c.clone();
    kept.merge(&Container { cmd: Some(vec!["-v".into()]), ..Container::default() });
    assert_eq!((kept.entrypoint, kept.cmd), (c.entrypoint.clone(), Some(vec!["-v".to_string()])));
    assert_eq!(merged.env.len(), 2);
    assert_eq!(merged.env["LANG"], "C");
    assert_eq!(merged.expose, ["80", "53/udp", "443"]);
    assert_eq!(Container::port("80").unwrap(), "80/tcp");
    assert_eq!(Container::port("053/udp").unwrap(), "53/udp");
}

#[test]
fn container_tables_are_checked() {
    let head = "[image]\nname = \"c\"\n";
    let err = toml_err(&format!(
        "{head}[container]\nexpose = [\"0\", \"80/xtp\"]\nvolumes = [\"var/log\"]\nworkingdir = \"srv\"\n"
    ));
    assert_eq!(
        err,
        "container: port `0`: expected a number from 1 to 65535, optionally /tcp, /udp or /sctp; port `80/xtp`: expected a number from 1 to 65535, optionally /tcp, /udp or /sctp; `var/log`: expected an absolute path; `srv`: expected an absolute path"
    );
    let err = toml_err(&format!("{head}[container]\nentry-point = [\"/bin/sh\"]\n"));
    assert!(err.contains("unknown field `entry-point`"), "{err}");
    let err = toml_err(&format!("{head}[target.container]\nfilesystem = \"ext4\"\n"));
    assert!(err.contains("key `target.container.filesystem`: unknown attribute"), "{err}");
}

/// Found by the `kiwi` fuzz target: an image that derives from nothing and has no author,
/// contact or specification was written without `<description>`, which reading requires.
#[test]
fn a_description_without_author_is_written_with_its_description_element() {
    let d = toml_form::parse("[image]\nname = \"t\"\n").unwrap();
    let xml = kiwi::write(&d).unwrap();
    assert!(xml.contains("<description type=\"system\">"), "{xml}");
    assert_eq!(kiwi::parse(&xml, &[]).unwrap(), d);
}
