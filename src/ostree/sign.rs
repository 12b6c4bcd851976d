//! Signing commits and summaries: ed25519 (in the format of `ostree sign`) and GPG (libostree's
//! gpgme).
//!
//! An ed25519 key file holds one line, the base64 of the 64-byte secret key (seed then public
//! key, libsodium's layout), which is what `ostree sign --keys-file` reads. strata signs itself
//! (libostree builds without libsodium, such as Debian 12's, cannot): the signature of a commit
//! is over the commit object's bytes and goes into its detached metadata under
//! `ostree.sign.ed25519` (`aay`); the signature of the summary goes into `summary.sig` under
//! the same key. Clients whose libostree has ed25519 verify with the public key:
//! `ostree remote add --sign-verify=ed25519=inline:PUBLIC …`. GPG signatures are made by
//! libostree and verified by every stock client (`ostree remote add --gpg-import=KEY.asc`).

use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, Verifier as _};

use anyhow::{bail, Context};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// An ed25519 key pair, base64-encoded as OSTree reads them.
#[derive(Clone)]
pub struct Ed25519Key {
    pair: [u8; 64],
    secret: String,
    public: String,
}

/// Where OSTree keeps ed25519 signatures in detached metadata and `summary.sig`.
const ED25519_METADATA_KEY: &str = "ostree.sign.ed25519";

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
            pair: key.to_keypair_bytes(),
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

    fn sign(&self, data: &[u8]) -> [u8; 64] {
        let key = ed25519_dalek::SigningKey::from_keypair_bytes(&self.pair).expect("checked when loaded");
        key.sign(data).to_bytes()
    }
}

/// Whether one of the ed25519 signatures in the `a{sv}` `metadata` is `public`'s over `data`.
pub fn ed25519_verifies(metadata: Option<&glib::Variant>, data: &[u8], public: &str) -> anyhow::Result<bool> {
    let Ok(public) = <[u8; 32]>::try_from(glib::base64_decode(public).as_slice()) else {
        bail!("`{public}` is not a base64 ed25519 public key (32 bytes)");
    };
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public).context("invalid ed25519 public key")?;
    Ok(ed25519_signatures(metadata).iter().any(|sig| {
        <[u8; 64]>::try_from(sig.as_slice())
            .is_ok_and(|sig| key.verify(data, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok())
    }))
}

fn ed25519_signatures(metadata: Option<&glib::Variant>) -> Vec<Vec<u8>> {
    let dict = glib::VariantDict::new(metadata);
    dict.lookup_value(ED25519_METADATA_KEY, Some(glib::VariantTy::new("aay").expect("valid type")))
        .and_then(|v| v.get::<Vec<Vec<u8>>>())
        .unwrap_or_default()
}

/// `metadata` with `sig` added to its ed25519 signatures; `None` when it is there already.
fn with_ed25519(metadata: Option<&glib::Variant>, sig: &[u8; 64]) -> Option<glib::Variant> {
    let mut sigs = ed25519_signatures(metadata);
    if sigs.iter().any(|s| s.as_slice() == sig) {
        return None;
    }
    sigs.push(sig.to_vec());
    let dict = glib::VariantDict::new(metadata);
    dict.insert_value(ED25519_METADATA_KEY, &sigs.to_variant());
    Some(dict.end())
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
                let data = repo.load_variant(ostree::ObjectType::Commit, commit)?.data_as_bytes();
                let old = repo.read_commit_detached_metadata(commit, gio::Cancellable::NONE)?;
                // ed25519 signatures are deterministic: signing the same commit again adds nothing.
                if let Some(new) = with_ed25519(old.as_ref(), &key.sign(&data)) {
                    repo.write_commit_detached_metadata(commit, Some(&new), gio::Cancellable::NONE)
                        .context("cannot write the commit's ed25519 signature")?;
                }
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
    // GPG first: libostree rewrites summary.sig, keeping what else it holds.
    for signer in signers {
        if let Signer::Gpg { key_id, homedir } = signer {
            let home = homedir.as_ref().map(|h| h.to_string_lossy().into_owned());
            repo.add_gpg_signature_summary(&[key_id.as_str()], home.as_deref(), gio::Cancellable::NONE)
                .with_context(|| format!("cannot sign the summary with GPG key {key_id}"))?;
        }
    }
    let keys: Vec<&Ed25519Key> = signers
        .iter()
        .filter_map(|s| match s {
            Signer::Ed25519(k) => Some(k),
            Signer::Gpg { .. } => None,
        })
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let dir = repo.path().path().context("the repository has no local path")?;
    let summary = fs_err::read(dir.join("summary"))?;
    let mut sig = read_vardict(&dir.join("summary.sig"))?;
    for key in keys {
        if let Some(new) = with_ed25519(sig.as_ref(), &key.sign(&summary)) {
            sig = Some(new);
        }
    }
    let sig = sig.expect("at least one signature");
    let tmp = dir.join("tmp/summary.sig.strata");
    fs_err::write(&tmp, sig.data_as_bytes())?;
    fs_err::File::open(&tmp)?.sync_all()?;
    fs_err::rename(&tmp, dir.join("summary.sig"))?;
    Ok(())
}

/// An `a{sv}` file (summary.sig), if it exists.
pub fn read_vardict(path: &Path) -> anyhow::Result<Option<glib::Variant>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = glib::Bytes::from_owned(fs_err::read(path)?);
    let v = glib::Variant::from_bytes_with_type(&bytes, glib::VariantTy::VARDICT);
    Ok(Some(v.normal_form()))
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

        let sig = key.sign(b"data");
        let meta = with_ed25519(None, &sig).unwrap();
        assert!(with_ed25519(Some(&meta), &sig).is_none(), "the same signature is not added twice");
        assert!(ed25519_verifies(Some(&meta), b"data", key.public()).unwrap());
        assert!(!ed25519_verifies(Some(&meta), b"other", key.public()).unwrap());
        let other = Ed25519Key::generate().unwrap();
        assert!(!ed25519_verifies(Some(&meta), b"data", other.public()).unwrap());

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
