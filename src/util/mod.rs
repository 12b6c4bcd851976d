//! Small helpers every layer may use: progress reporting, text for humans and shells, file
//! hashes, child processes. Nothing here knows about the store, packages or images.

pub mod hash;
pub mod process;
pub mod progress;
pub mod text;
