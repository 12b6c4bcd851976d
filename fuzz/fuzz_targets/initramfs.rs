//! The initramfs reader: concatenated cpio archives, compressed or not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata::ostree::initramfs::contains(data, &["usr/lib/systemd/systemd", "sysroot", "etc/initrd-release"]);
});
