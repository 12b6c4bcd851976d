//! The shell scripts build steps run in the sandbox: package removal, users and groups, and the
//! description's own `config.sh` / `images.sh`.
//!
//! Scripts are generated deterministically from the description (password hashes use a salt
//! derived from the image, user and password), so the same description gives the same script,
//! the same step key and the same tree.

use super::{input, Input};
use crate::description::{Password, User};
use crate::util::text::sq;

/// Files that record when or how often tools ran, removed after package operations so that the
/// same operations give the same tree.
const VOLATILE: &str = "rm -f /var/log/dpkg.log /var/log/alternatives.log /var/log/apt/history.log \
/var/log/apt/term.log /var/log/apt/eipp.log.xz /var/cache/ldconfig/aux-cache /var/cache/apt/pkgcache.bin \
/var/cache/apt/srcpkgcache.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old\n";

/// Remove packages: `remove` with the packages that depend on them, `delete` alone.
pub fn remove_script(remove: &[String], delete: &[String]) -> String {
    let mut s = String::from(
        "# strata: remove packages\n\
         printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d\n\
         chmod 755 /usr/sbin/policy-rc.d\n",
    );
    if !remove.is_empty() {
        s.push_str(&format!(
            "apt-get -y -o APT::Get::Purge=true -o Dpkg::Options::=--force-confdef purge {}\n",
            remove.iter().map(|p| sq(p)).collect::<Vec<_>>().join(" ")
        ));
    }
    if !delete.is_empty() {
        s.push_str(&format!(
            "dpkg --purge --force-depends --force-remove-essential {}\n",
            delete.iter().map(|p| sq(p)).collect::<Vec<_>>().join(" ")
        ));
    }
    s.push_str("rm -f /usr/sbin/policy-rc.d\n");
    s.push_str(VOLATILE);
    s
}

/// A SHA-512 crypt hash with a salt derived from the image, the user and the password.
pub fn hash_password(image: &str, user: &str, password: &str) -> String {
    let seed = blake3::hash(format!("strata-salt\0{image}\0{user}\0{password}").as_bytes());
    let salt: String = seed.as_bytes()[..16].iter().map(|b| CRYPT_ALPHABET[(*b as usize) % 64] as char).collect();
    crypt_sha512(password, &salt)
}

/// The alphabet of crypt(3)'s base-64 encoding.
const CRYPT_ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// crypt(3)'s SHA-512 method (`$6$`, default 5000 rounds) with the salt given (at most 16
/// characters of the crypt alphabet): the digest in the method's byte order and encoding.
fn crypt_sha512(password: &str, salt: &str) -> String {
    let b = sha_crypt::sha512_crypt(password.as_bytes(), salt.as_bytes(), sha_crypt::Params::RECOMMENDED);
    let mut out = format!("$6${salt}$");
    let mut push = |b2: u8, b1: u8, b0: u8, n: usize| {
        let mut w = (u32::from(b2) << 16) | (u32::from(b1) << 8) | u32::from(b0);
        for _ in 0..n {
            out.push(CRYPT_ALPHABET[(w & 0x3f) as usize] as char);
            w >>= 6;
        }
    };
    // Each group: three digest bytes, in the order the SHA-crypt specification fixes.
    for i in 0..21 {
        let (a, c, d) = (i, i + 21, i + 42);
        match i % 3 {
            0 => push(b[a], b[c], b[d], 4),
            1 => push(b[c], b[d], b[a], 4),
            _ => push(b[d], b[a], b[c], 4),
        }
    }
    push(0, 0, b[63], 2);
    out
}

/// Create or change users and their groups; returns the script and its named inputs.
pub fn users_script(image: &str, users: &[User], epoch: u64) -> (String, Vec<Input>) {
    let days = epoch / 86_400;
    let mut s = String::from("# strata: users and groups\n");
    let mut inputs = Vec::new();
    for u in users {
        let mut groups = u.groups.clone();
        for g in &groups {
            s.push_str(&format!("getent group {g} >/dev/null || groupadd {g}\n"));
        }
        let mut opts = Vec::new();
        if let Some(uid) = u.uid {
            opts.push(format!("-u {uid}"));
        }
        if !groups.is_empty() {
            opts.push(format!("-g {}", groups.remove(0)));
        }
        if !groups.is_empty() {
            opts.push(format!("-G {}", groups.join(",")));
        }
        for (flag, v) in [("-d", &u.home), ("-s", &u.shell), ("-c", &u.realname)] {
            if let Some(v) = v {
                opts.push(format!("{flag} {}", sq(v)));
            }
        }
        let opts = opts.join(" ");
        let name = &u.name;
        s.push_str(&format!(
            "if getent passwd {name} >/dev/null; then usermod {opts} {name}; else useradd -m {opts} {name}; fi\n"
        ));
        let hash = match &u.password {
            Some(Password::Hashed(h)) => Some(h.clone()),
            Some(Password::Plain(p)) => Some(hash_password(image, name, p)),
            None => None,
        };
        if let Some(h) = &hash {
            s.push_str(&format!("printf '%s\\n' {} | chpasswd -e\n", sq(&format!("{name}:{h}"))));
        }
        // The password's last change: the build's epoch, not the clock (and not day 0, which
        // would force a change at first login).
        s.push_str(&format!("chage -d {days} {name}\n"));
        let fields = format!("{opts}\0{}", hash.unwrap_or_default());
        inputs.push(input(format!("user {name}"), blake3::hash(fields.as_bytes()).to_hex().to_string()));
    }
    s.push_str("rm -f /etc/passwd- /etc/shadow- /etc/group- /etc/gshadow- /etc/subuid- /etc/subgid-\n");
    inputs.push(input("epoch", epoch.to_string()));
    (s, inputs)
}

/// Run a description script (`config.sh`) the way KIWI does: from `/`, with its interpreter line
/// or `/bin/sh`, with the image name and version in the environment.
pub fn description_script(image: &str, version: &str, name: &str, text: &str) -> String {
    let marker = format!("STRATA_{}", &blake3::hash(text.as_bytes()).to_hex()[..16]);
    let name = name.replace('/', "_");
    let mut body = text.to_string();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    format!(
        "# strata: {name}\n\
         export kiwi_iname={img} kiwi_iversion={ver} STRATA_IMAGE={img} STRATA_IMAGE_VERSION={ver}\n\
         cat > /tmp/.strata-{name} <<'{marker}'\n{body}{marker}\n\
         chmod 0755 /tmp/.strata-{name}\n\
         cd /\n\
         if [ \"$(head -c 2 /tmp/.strata-{name})\" = '#!' ]; then /tmp/.strata-{name}; else /bin/sh /tmp/.strata-{name}; fi\n",
        img = sq(image),
        ver = sq(version),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_are_sha512_crypt_and_stable() {
        let h = hash_password("img", "tux", "secret");
        assert!(h.starts_with("$6$") && h.len() > 90, "{h}");
        assert_eq!(h, hash_password("img", "tux", "secret"));
        assert_ne!(h, hash_password("img", "root", "secret"));
        assert_eq!(h.split('$').nth(2).unwrap().len(), 16);
    }

    #[test]
    fn password_hash_matches_the_c_library() {
        // From glibc: crypt("secret", "$6$abcdefghijklmnop$").
        let want = "$6$abcdefghijklmnop$J/AWykHqo2Tx5UtavGnFc3ytI33la50JpzLTarSWVhkIXK6wOjNwwZjsrIw2UgmrER2EKrSHCeQyAINEEXAk1/";
        assert_eq!(crypt_sha512("secret", "abcdefghijklmnop"), want);
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sq("it's"), "'it'\\''s'");
    }
}
