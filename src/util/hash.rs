//! Digests of files named by path (SHA-256, as package indexes give them).

use std::path::Path;

use anyhow::Context;

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let mut file = fs_err::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("failed to read `{}`", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}
