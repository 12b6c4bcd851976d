//! An RPM as the unpacker reads it: lead, signature header, main header (files, scriptlets,
//! triggers), then the payload's cpio members.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use strata::packages::rpm::{cpio, header};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    if header::skip_lead_and_signature(&mut r).is_err() {
        return;
    }
    let Ok(h) = header::Header::read(&mut r, false) else { return };
    let _ = h.nevra();
    let _ = h.evr();
    let _ = header::files(&h, 10_000);
    let _ = header::triggers_in(&h);
    for (body, prog) in [(1023, 1085), (1024, 1086), (1025, 1087), (1026, 1088)] {
        let _ = header::scriptlet(&h, body, prog);
    }
    // The payload, here uncompressed: the cpio reader.
    let mut payload = cpio::Reader::new(r);
    let mut members = 0;
    while let Ok(Some(_)) = payload.next_member() {
        let _ = std::io::copy(&mut payload.data().take(1 << 20), &mut std::io::sink());
        members += 1;
        if members > 2000 {
            break;
        }
    }
});
