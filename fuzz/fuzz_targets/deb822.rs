//! Debian repository indexes: deb822 paragraphs, Release and Packages files, relations and
//! versions, apt source lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::packages::deb::{deb822, relation, repo, version::Version};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = deb822::parse(text);
    let _ = repo::parse_release(text);
    let source = repo::AptSource {
        uri: "http://127.0.0.1/debian/".into(),
        suite: "bookworm".into(),
        components: vec!["main".into()],
        signed_by: vec![],
    };
    let mut out = Vec::new();
    let _ = repo::parse_packages(text, &source, "amd64", &mut out);
    for line in text.lines().take(64) {
        let _ = relation::parse(line);
        let _ = Version::parse(line);
        let _ = repo::parse_source_line(line);
    }
});
