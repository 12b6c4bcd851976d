//! A layer of an ostree-native container as the import reads it: the input is the commit
//! checksum the image's label names (64 hex digits) followed by the layer's tar; the layout
//! around it is made here, and the objects go into a scratch archive repository through
//! libostree, each checked against its name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use strata::oci::layout::Descriptor;
use strata::ostree::container::unencapsulate;
use strata::packages::Limits;

struct Scratch {
    _dir: tempfile::TempDir,
    layout: std::path::PathBuf,
    repo: ostree::Repo,
}

fn scratch() -> Scratch {
    let dir = tempfile::Builder::new().prefix("strata-fuzz-").tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let repo = ostree::Repo::new_for_path(dir.path().join("repo"));
    repo.create(ostree::RepoMode::Archive, ostree::gio::Cancellable::NONE).unwrap();
    Scratch { _dir: dir, layout, repo }
}

thread_local! {
    // libFuzzer runs the target on one thread; libostree's objects stay on it.
    static SCRATCH: Scratch = scratch();
}

fn blob(layout: &std::path::Path, bytes: &[u8]) -> (String, u64) {
    let hex = format!("{:x}", Sha256::digest(bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len() as u64)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 64 || !data[..64].iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return;
    }
    let (commit, layer) = (std::str::from_utf8(&data[..64]).unwrap(), &data[64..]);
    SCRATCH.with(|s| run(s, commit, layer));
});

fn run(s: &Scratch, commit: &str, layer: &[u8]) {
    let (layer_digest, layer_size) = blob(&s.layout, layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"ostree.commit": commit, "ostree.final-diffid": layer_digest}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = blob(&s.layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (digest, size) = blob(&s.layout, manifest.to_string().as_bytes());
    let desc = Descriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest,
        size,
        annotations: Default::default(),
    };
    let limits = Limits { max_bytes: 16 << 20, max_members: 10_000, max_control_bytes: 1 << 20 };
    let _ = unencapsulate(&s.repo, &s.layout, &desc, &manifest, &limits);
}
