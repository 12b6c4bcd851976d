//! rpm-md repository metadata: `repomd.xml`, `primary.xml`, rich dependencies and EVRs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::packages::rpm::{repo, version::Evr};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = repo::primary_want(text, "http://127.0.0.1/repo");
    let mut out = Vec::new();
    let _ = repo::parse_primary(text, "http://127.0.0.1/repo", "x86_64", &mut out);
    for line in text.lines().take(64) {
        let _ = repo::parse_rich(line);
        let _ = Evr::parse(line);
    }
});
