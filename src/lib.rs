//! strata: operating-system images built from a content-addressed store.
//!
//! The modules follow the pipeline, in the order data flows through it; each layer imports only
//! the layers below it (`docs/layers.txt`, checked by `tests/layers.rs`):
//!
//! ```text
//! cli          arguments in, reports out; nothing else
//! pipeline     description -> image -> commit -> artifact, as commands use it
//! lifecycle    retention, one gc for the store, OSTree repositories and caches; disk usage
//! deploy       disks, live ISOs and boots from an OSTree commit
//! graph        a description chain as cached steps (the build graph), generations
//! ostree       the image tree as an OSTree commit; signing, deltas, push; ostree containers
//! oci          OCI image layouts: an image's steps as layers; OCI images as bases
//! packages     Debian and RPM: repositories, solving, unpacking, bootstrap (deb/, rpm/)
//! description  KIWI XML and TOML image descriptions
//! sandbox      scripts run over a tree, their changes kept as a layer
//! trees        merge, layer, diff and edit stored trees
//! store        objects, trees, entries and roots: the backend boundary and its backends
//! util         progress, text, file hashes
//! ```
//!
//! Start with [`store`] (the boundary, the on-disk layout and its invariants), then
//! [`store::memo`] (how every step is cached) and [`graph`].

pub mod util;

pub mod store;

pub mod trees;

pub mod sandbox;

pub mod description;
pub mod packages;

pub mod oci;

pub mod graph;

pub mod ostree;

pub mod deploy;

/// Retention, the one garbage collector for everything strata writes, and disk usage.
pub mod lifecycle;

pub mod pipeline;

pub mod cli;
