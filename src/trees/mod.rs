//! Operations on stored trees that make new trees: merging package trees with ownership,
//! applying and recording layers, comparing trees, and editing a tree by path. Everything here
//! reads and writes through the store; nothing is checked out.

pub mod diff;
pub mod edit;
pub mod layer;
pub mod merge;
