//! A `.deb` as dpkg-deb reads it: the ar archive, then its control and data tars (plain, gzip,
//! xz or zstd) as the unpacker reads them, and the control file as deb822.
#![no_main]

#[path = "common.rs"]
mod common;

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use strata::packages::deb::{ar::ArReader, deb822};
use strata::packages::tar::{decompressor, TarReader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut ar) = ArReader::new(data, data.len() as u64) else { return };
    let store = common::store().lock().unwrap();
    while let Ok(Some((name, mut member))) = ar.next_member() {
        let suffix = match name.strip_prefix("control.tar").or_else(|| name.strip_prefix("data.tar")) {
            Some(s) => s.to_string(),
            None => {
                let mut text = Vec::new();
                let _ = (&mut member).take(common::MAX_BYTES).read_to_end(&mut text);
                if let Ok(text) = std::str::from_utf8(&text) {
                    let _ = deb822::parse(text);
                }
                continue;
            }
        };
        let Ok(reader) = decompressor(&suffix, &mut member) else { continue };
        let mut tar = TarReader::new(&store);
        let _ = tar.read(reader, common::MAX_BYTES, common::MAX_MEMBERS, None);
    }
});
