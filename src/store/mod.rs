//! The store: immutable, content-addressed objects and trees, entries that memoize build steps,
//! and the roots that keep them alive.

pub mod batch;
pub mod checkout;
pub mod db;
pub mod digest;
pub mod entry;
pub mod error;
pub mod gc;
pub mod import;
pub mod local;
pub mod lock;
pub mod lowers;
pub mod meta;
pub mod object;
pub mod tree;
pub mod tree_builder;
pub mod verify;
pub mod walk;
