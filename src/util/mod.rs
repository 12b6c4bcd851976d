//! Small helpers every layer may use: progress reporting, text for humans and shells, file
//! hashes. Nothing here knows about the store, packages or images.

pub mod hash;
pub mod progress;
pub mod text;
