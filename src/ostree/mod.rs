//! OSTree: laying an image out for OSTree, committing it to a repository (through libostree),
//! signing, summaries and static deltas, and publishing to other repositories.

pub mod export;
pub mod initramfs;
pub mod layout;
pub mod mapping;
pub mod publish;
pub mod push;
pub mod retain;
pub mod sign;
pub mod ssh;
