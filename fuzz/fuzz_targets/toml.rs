//! TOML descriptions: parse and validate; what parses is written back and must parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::description::{toml_form, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(d) = toml_form::parse(text) else { return };
    if validate(&d).is_ok() {
        let again = toml_form::write(&d);
        if let Err(e) = toml_form::parse(&again) {
            panic!("a valid description does not read back: {e:#}\n{again}");
        }
    }
});
