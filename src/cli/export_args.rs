//! The arguments of `strata export`, shared by its OSTree ([`super::ostree`]) and OCI
//! ([`super::oci`]) halves.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::image::BuildArgs;
use crate::ostree::sign::{Ed25519Key, Signer};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// Compressed objects, for serving over HTTP (the default for a new repository)
    Archive,
    /// Files as they are, with their owners (needs root)
    Bare,
    /// Files owned by the caller, owners kept in an extended attribute
    BareUser,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SpecialArg {
    /// Leave fifos and device nodes out and list them
    Skip,
    /// Fail on the first one, naming it
    Fail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// An OSTree commit (--repo)
    Ostree,
    /// An OCI image: one layer per step that changed the tree (--output oci:DIR[:TAG])
    Oci,
    /// An ostree-native container image, as bootc and rpm-ostree pull them: the commit (made in
    /// --repo, else the store's own repository) in OCI layers (--output oci:DIR[:TAG])
    OstreeContainer,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

#[derive(Args, Debug)]
pub struct SigningArgs {
    /// Sign with this ed25519 secret key file (repeatable; `strata key generate` makes one)
    #[arg(long = "sign-key", value_name = "FILE")]
    pub(crate) sign_keys: Vec<PathBuf>,
    /// Sign with this GPG key (repeatable)
    #[arg(long = "gpg-sign", value_name = "KEY-ID")]
    pub(crate) gpg_keys: Vec<String>,
    /// The GnuPG home directory holding the --gpg-sign keys
    #[arg(long, value_name = "DIR")]
    gpg_homedir: Option<PathBuf>,
}

impl SigningArgs {
    pub(crate) fn signers(&self) -> anyhow::Result<Vec<Signer>> {
        let mut out = Vec::new();
        for path in &self.sign_keys {
            out.push(Signer::Ed25519(Ed25519Key::load(path)?));
        }
        for key_id in &self.gpg_keys {
            out.push(Signer::Gpg { key_id: key_id.clone(), homedir: self.gpg_homedir.clone() });
        }
        Ok(out)
    }
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The image: a description directory (built first, reusing every cached step), a store
    /// entry (`images/NAME`, a root name or a key prefix), or with --format ostree an
    /// ostree-native container (`ostree-container:oci:DIR[:TAG]`, `…:oci-archive:FILE[:TAG]`,
    /// `…:docker://HOST/REPO[:TAG]`, `ostree-unverified-registry:HOST/REPO[:TAG]`)
    #[command(flatten)]
    pub(crate) build: BuildArgs,
    /// What to write: an OSTree commit into --repo, or an OCI image or ostree-native container
    /// to --output
    #[arg(long, value_enum, default_value = "ostree")]
    pub(crate) format: ExportFormat,
    /// The OSTree repository (created when missing); for --format ostree-container, the
    /// store's own repository when not given
    #[arg(long, value_name = "PATH")]
    pub(crate) repo: Option<PathBuf>,
    /// Where the OCI image goes: `oci:DIR[:TAG]` (an image layout, created when missing),
    /// `oci-archive:FILE[:TAG]` or `docker://HOST/REPO[:TAG]`; TAG defaults to the image's
    /// version, else `latest`
    #[arg(long, value_name = "oci:DIR[:TAG]")]
    pub(crate) output: Option<String>,
    /// How OCI layers are compressed
    #[arg(long, value_enum, default_value = "gzip")]
    pub(crate) compression: CompressionArg,
    /// The branch to commit to [default: IMAGE/ARCH, e.g. debian-base/x86_64]
    #[arg(long = "ref", value_name = "REF")]
    pub(crate) reference: Option<String>,
    /// The mode of a new repository; an existing one must match
    #[arg(long, value_enum)]
    pub(crate) mode: Option<ModeArg>,
    #[command(flatten)]
    pub(crate) signing: SigningArgs,
    /// Generate static deltas from the last N commits of the ref
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) deltas: u32,
    /// Keep only the newest N commits of every ref, deleting older ones (ostree prune)
    #[arg(long, value_name = "N")]
    pub(crate) history: Option<u32>,
    /// What to do with fifos and device nodes, which OSTree does not store
    #[arg(long, value_enum, default_value = "skip")]
    pub(crate) special_files: SpecialArg,
    /// Commit the tree as it is, without the OSTree layout step (for trees that are not
    /// bootable systems, or are laid out already)
    #[arg(long)]
    pub(crate) no_layout: bool,
    /// The version to record when exporting a store entry [default: the description's]
    #[arg(long, value_name = "VERSION")]
    pub(crate) version: Option<String>,
}
