//! OCI image indexes and manifests (JSON), and a layer tar as the import reads it (names with
//! newlines allowed, whiteouts are names).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use strata::oci::import::{manifest_layers, platform_manifest};
use strata::oci::layout::Descriptor;
use strata::packages::tar::TarReader;

fuzz_target!(|data: &[u8]| {
    let _ = platform_manifest(data, "sha256:0000", "amd64");
    if let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(data) {
        let desc = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: "sha256:0000".into(),
            size: data.len() as u64,
            annotations: Default::default(),
        };
        let _ = manifest_layers(&desc, &manifest);
    }
    let store = common::store().lock().unwrap();
    let mut tar = TarReader::new(&store);
    tar.newlines = true;
    let _ = tar.read(Box::new(data), common::MAX_BYTES, common::MAX_MEMBERS, None);
});
