//! Entries: the results of build steps, and how their input keys are computed.
//!
//! An entry's key is blake3 over its kind, its parameters and the ids of its inputs, never over
//! anything that varies between runs (times, temporary paths). The entry's tree id is the content
//! address of what the step produced; two steps with different keys may produce the same tree.

use crate::store::digest::Digest;

/// What kind of step produced an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory imported with `strata store add`.
    Import,
    Package,
    Merge,
    Layer,
    Rootfs,
    /// An intermediate tree of an image build (after users, files, scripts…).
    Step,
    Commit,
    Artifact,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Import => "import",
            EntryKind::Package => "package",
            EntryKind::Merge => "merge",
            EntryKind::Layer => "layer",
            EntryKind::Rootfs => "rootfs",
            EntryKind::Step => "step",
            EntryKind::Commit => "commit",
            EntryKind::Artifact => "artifact",
        }
    }
}

/// The input key of a step: kind, named parameters (in the caller's fixed order) and input ids.
pub fn entry_key(kind: EntryKind, params: &[(&str, &[u8])], inputs: &[Digest]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"strata-entry\0");
    h.update(kind.as_str().as_bytes());
    h.update(&[0]);
    for (name, value) in params {
        h.update(&(name.len() as u32).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(value.len() as u64).to_le_bytes());
        h.update(value);
    }
    h.update(&(inputs.len() as u32).to_le_bytes());
    for input in inputs {
        h.update(input.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_kinds_params_and_inputs() {
        let t = Digest::of(b"tree");
        let keys = [
            entry_key(EntryKind::Import, &[], &[t]),
            entry_key(EntryKind::Layer, &[], &[t]),
            entry_key(EntryKind::Import, &[("a", b"b")], &[t]),
            entry_key(EntryKind::Import, &[("ab", b"")], &[t]),
            entry_key(EntryKind::Import, &[], &[]),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            entry_key(EntryKind::Import, &[], &[t]).to_hex(),
            "10d88403de7c0fdf522c1bf89eb978a6526d1f9952d3bd577525bb3be577fd3c"
        );
    }
}
