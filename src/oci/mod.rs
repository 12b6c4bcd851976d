//! OCI images in image layouts (`oci:DIR[:TAG]`), archives (`oci-archive:FILE[:TAG]`) and
//! registries (`docker://HOST/REPO:TAG`): an image's steps written as the layers of an OCI
//! image, and OCI images read back as the base of a derived image.
//!
//! [`layer`] turns the change between two stored trees into a deterministic tar, [`layout`]
//! writes content-addressed blobs and the index of an image layout, and [`image`] puts them
//! together: one layer per step that changed the root tree, the config and the manifest.
//! [`import`] goes the other way: a manifest's layers, checked and laid over each other, as an
//! entry. [`registry`] speaks the distribution API, [`archive`] reads and writes archives.

pub mod archive;
pub mod cache;
pub mod chunk;
pub mod gzip;
pub mod image;
pub mod import;
pub mod layer;
pub mod layout;
pub mod registry;
