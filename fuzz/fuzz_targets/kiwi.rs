//! KIWI XML descriptions: parse and validate; what parses is written back and must parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::description::{kiwi, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(d) = kiwi::parse(text, &[]) else { return };
    if validate(&d).is_ok() {
        let Ok(again) = kiwi::write(&d) else { return };
        if let Err(e) = kiwi::parse(&again, &[]) {
            panic!("a valid description does not read back: {e}\n{again}");
        }
    }
});
