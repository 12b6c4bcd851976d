//! What the targets share: a scratch store under the system's temporary directory (opened once
//! per process and left there at exit: statics are not dropped) and small limits, so that a
//! compression bomb costs megabytes, not the disk.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};

use strata::store::local::{OpenOptions, Store};

pub fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<(tempfile::TempDir, Mutex<Store>)> = OnceLock::new();
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("strata-fuzz-").tempdir().expect("a scratch directory");
        let store = Store::open(&dir.path().join("store"), &OpenOptions::default(), || {}).expect("a scratch store");
        (dir, Mutex::new(store))
    });
    store
}

pub const MAX_BYTES: u64 = 4 << 20;
pub const MAX_MEMBERS: u64 = 2000;
