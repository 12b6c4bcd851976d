//! Errors of the store boundary that a caller branches on (a missing tree, a busy lock, a layout
//! too new). Everything else travels as `anyhow::Error` with context that names the path or id
//! involved; callers find these with `downcast_ref::<StoreError>()`.

use std::path::PathBuf;

use crate::store::digest::Digest;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("`{path}` is not a strata store: {reason}")]
    NotAStore { path: PathBuf, reason: String },
    #[error("store `{path}` has layout version {found}; this strata understands up to {supported}: upgrade strata")]
    LayoutTooNew { path: PathBuf, found: u32, supported: u32 },
    #[error(
        "store database `{path}` has schema version {found}; this strata understands up to {supported}: upgrade strata"
    )]
    SchemaTooNew { path: PathBuf, found: u32, supported: u32 },
    #[error("store `{path}` is locked by another strata process ({held}); waited {waited_secs} s (see --lock-wait)")]
    LockBusy { path: PathBuf, held: &'static str, waited_secs: u64 },
    #[error("no entry, tree or root named `{0}` in the store (see `strata store ls` and `strata roots ls`)")]
    NotFound(String),
    #[error("`{prefix}` is ambiguous: it matches {}", candidates.join(", "))]
    Ambiguous { prefix: String, candidates: Vec<String> },
    #[error("object {0} is missing from the store")]
    ObjectMissing(Digest),
    #[error("tree {0} is missing from the store")]
    TreeMissing(Digest),
    #[error("tree {id} in the store is corrupt: {reason}")]
    CorruptTree { id: Digest, reason: String },
    #[error("entry {0} is not in the store")]
    EntryMissing(Digest),
    #[error("the log of entry {key} in the store is corrupt: {reason}")]
    CorruptLog { key: Digest, reason: String },
}
