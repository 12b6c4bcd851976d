//! strata: operating-system images built from a content-addressed store.
//!
//! The library holds all behaviour; `src/cli` only parses arguments and prints. Start with
//! [`store`] (the on-disk layout and its invariants), [`tree`] (the Merkle encoding) and
//! [`import`]/[`checkout`] (moving trees in and out).

pub mod batch;
pub mod boot;
pub mod build;
pub mod checkout;
pub mod cli;
pub mod db;
pub mod debian;
pub mod deploy;
pub mod description;
pub mod diff;
pub mod digest;
pub mod entry;
pub mod error;
pub mod fetch;
pub mod gc;
pub mod import;
pub mod layer;
pub mod lock;
pub mod lowers;
pub mod merge;
pub mod meta;
pub mod object;
pub mod ostree;
pub mod package;
pub mod progress;
pub mod rpm;
pub mod sandbox;
pub mod store;
pub mod tree;
pub mod tree_builder;
pub mod tree_edit;
pub mod verify;
pub mod walk;
