//! RPM packages: `.rpm` headers and cpio payloads, rpm-md repositories, versions, dependency
//! resolution, and root trees with their scriptlets and rpm database.
//!
//! As for Debian ([`crate::packages::deb`]), everything that reads package or repository data treats
//! it as untrusted input, and errors name the file, package or member.

pub mod cpio;
pub mod header;
pub mod packages;
pub mod repo;
pub mod rootfs;
pub mod rpmdb;
pub mod solve;
pub mod unpack;
pub mod version;
