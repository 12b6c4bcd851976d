//! SHA-256 digests of files named by path and of bytes, as package indexes give them.

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

/// SHA-256 of bytes, hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
