//! OCI images: an image's steps as the layers of an OCI image, written to an image layout
//! (`oci:DIR[:TAG]`).
//!
//! [`layer`] turns the change between two stored trees into a deterministic tar, [`layout`]
//! writes content-addressed blobs and the index of an image layout, and [`image`] puts them
//! together: one layer per step that changed the root tree, the config and the manifest.

pub mod image;
pub mod layer;
pub mod layout;
