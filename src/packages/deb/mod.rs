//! Debian packages: control data, versions and relations, `.deb` archives, apt repositories.
//!
//! Everything here that reads package or repository data treats it as untrusted input: parsers
//! are pure functions over bytes or text, and their errors name the file, line or member.

pub mod ar;
pub mod bootstrap;
pub mod deb822;
pub mod packages;
pub mod relation;
pub mod repo;
pub mod solve;
pub mod unpack;
pub mod version;
