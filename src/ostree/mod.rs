//! OSTree: laying an image out for OSTree, committing it to a repository (through libostree),
//! signing, summaries and static deltas, publishing to other repositories, and carrying commits
//! in ostree-native container images.

pub mod container;
pub mod export;
pub mod initramfs;
pub mod layout;
pub mod mapping;
pub mod publish;
pub mod push;
pub mod retain;
pub mod sign;
pub mod ssh;
