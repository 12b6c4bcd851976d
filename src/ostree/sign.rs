//! Signing commits and summaries: ed25519 (as `ostree sign` does) and GPG (libostree's gpgme).
//!
//! An ed25519 key file holds one line, the base64 of the 64-byte secret key (seed then public
//! key, libsodium's layout), which is what `ostree sign --keys-file` reads. Clients verify with
//! the public key: `ostree remote add --sign-verify=ed25519=inline:PUBLIC …`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// An ed25519 key pair, base64-encoded as OSTree reads them.
#[derive(Clone)]
pub struct Ed25519Key {
    secret: String,
    public: String,
}

/// Shows the public key only: a secret never reaches logs.
impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Key").field("public", &self.public).finish_non_exhaustive()
    }
}

impl Ed25519Key {
    /// A new key pair from the kernel's random numbers.
    pub fn generate() -> anyhow::Result<Ed25519Key> {
        let mut seed = [0u8; 32];
        fs_err::File::open("/dev/urandom")?.read_exact(&mut seed)?;
        Ok(Ed25519Key::from_seed(&seed))
    }

    fn from_seed(seed: &[u8; 32]) -> Ed25519Key {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        Ed25519Key {
            secret: glib::base64_encode(&key.to_keypair_bytes()).to_string(),
            public: glib::base64_encode(key.verifying_key().as_bytes()).to_string(),
        }
    }

    /// Read a secret key file; errors name the file and what was expected.
    pub fn load(path: &Path) -> anyhow::Result<Ed25519Key> {
        let text = fs_err::read_to_string(path)?;
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
        let expected =
            "expected one line with the base64 of a 64-byte ed25519 secret key (`strata key generate` writes one)";
        let valid =
            !line.is_empty() && line.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        let bytes = if valid { glib::base64_decode(line) } else { vec![] };
        let Ok(pair) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            bail!("{}: not an ed25519 secret key: {expected}", path.display());
        };
        let seed: [u8; 32] = pair[..32].try_into().expect("32 bytes");
        let key = Ed25519Key::from_seed(&seed);
        if key.secret != glib::base64_encode(&pair).as_str() {
            bail!("{}: the public half of the key does not match its seed: {expected}", path.display());
        }
        Ok(key)
    }

    /// Write the secret key to `path` (mode 0600, refusing to overwrite).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the key file `{}`", path.display()))?;
        writeln!(f, "{}", self.secret)?;
        f.sync_all()?;
        Ok(())
    }

    pub fn public(&self) -> &str {
        &self.public
    }

    fn signer(&self) -> anyhow::Result<ostree::Sign> {
        let sign = ostree::Sign::by_name("ed25519").context("this libostree has no ed25519 support")?;
        sign.set_sk(&self.secret.to_variant())?;
        Ok(sign)
    }
}

/// One way of signing.
#[derive(Clone)]
pub enum Signer {
    Ed25519(Ed25519Key),
    Gpg { key_id: String, homedir: Option<PathBuf> },
}

impl Signer {
    pub fn describe(&self) -> String {
        match self {
            Signer::Ed25519(k) => format!("ed25519:{}", k.public()),
            Signer::Gpg { key_id, .. } => format!("gpg:{key_id}"),
        }
    }
}

/// Sign `commit` with every signer (detached metadata: the commit checksum does not change).
pub fn sign_commit(repo: &ostree::Repo, commit: &str, signers: &[Signer]) -> anyhow::Result<()> {
    for signer in signers {
        match signer {
            Signer::Ed25519(key) => {
                let sign = key.signer()?;
                // Exporting an unchanged tree again must not stack a second signature.
                sign.add_pk(&key.public.to_variant())?;
                if sign.commit_verify(repo, commit, gio::Cancellable::NONE).is_ok() {
                    continue;
                }
                sign.commit(repo, commit, gio::Cancellable::NONE).context("cannot sign the commit with ed25519")?;
            }
            Signer::Gpg { key_id, homedir } => {
                let home = homedir.as_ref().map(|h| h.to_string_lossy().into_owned());
                match repo.sign_commit(commit, key_id, home.as_deref(), gio::Cancellable::NONE) {
                    Ok(()) => {}
                    // Signing twice with the same key is refused by libostree: already signed.
                    Err(e) if e.matches(gio::IOErrorEnum::Exists) => {}
                    Err(e) => return Err(e).with_context(|| format!("cannot sign the commit with GPG key {key_id}")),
                }
            }
        }
    }
    Ok(())
}

/// Rewrite the repository's summary (refs, their commits, static deltas) and sign it.
pub fn update_summary(repo: &ostree::Repo, signers: &[Signer]) -> anyhow::Result<()> {
    repo.regenerate_summary(None, gio::Cancellable::NONE).context("cannot write the summary")?;
    for signer in signers {
        match signer {
            Signer::Ed25519(key) => {
                let sign = key.signer()?;
                let keys = vec![key.secret.clone()].to_variant();
                sign.summary(repo, &keys, gio::Cancellable::NONE).context("cannot sign the summary with ed25519")?;
            }
            Signer::Gpg { key_id, homedir } => {
                let home = homedir.as_ref().map(|h| h.to_string_lossy().into_owned());
                repo.add_gpg_signature_summary(&[key_id.as_str()], home.as_deref(), gio::Cancellable::NONE)
                    .with_context(|| format!("cannot sign the summary with GPG key {key_id}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = Ed25519Key::generate().unwrap();
        let path = dir.path().join("key");
        key.save(&path).unwrap();
        assert!(key.save(&path).is_err(), "never overwrites a key");
        let back = Ed25519Key::load(&path).unwrap();
        assert_eq!(back.public(), key.public());
        assert_eq!(glib::base64_decode(key.public()).len(), 32);

        for bad in ["", "not base64 !!\n", "aGVsbG8=\n"] {
            fs_err::write(dir.path().join("bad"), bad).unwrap();
            let e = Ed25519Key::load(&dir.path().join("bad")).unwrap_err().to_string();
            assert!(e.contains("bad: not an ed25519 secret key"), "{e}");
        }
        // A secret whose public half belongs to another key.
        let other = Ed25519Key::generate().unwrap();
        let mut pair = glib::base64_decode(&key.secret);
        pair[32..].copy_from_slice(&glib::base64_decode(other.public()));
        fs_err::write(dir.path().join("mixed"), glib::base64_encode(&pair).as_str()).unwrap();
        assert!(Ed25519Key::load(&dir.path().join("mixed")).unwrap_err().to_string().contains("does not match"));
    }
}
