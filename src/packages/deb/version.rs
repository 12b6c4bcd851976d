//! Debian package versions (`[epoch:]upstream[-revision]`) and their ordering, as `dpkg` defines
//! it: epochs compare numerically, then upstream and revision with `verrevcmp`, where `~` sorts
//! before everything (even the end of the string), letters before other characters, and runs of
//! digits compare as numbers.

use std::cmp::Ordering;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    pub epoch: u32,
    pub upstream: String,
    pub revision: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid version `{input}`: {reason}")]
pub struct VersionError {
    pub input: String,
    pub reason: &'static str,
}

impl Version {
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        let err = |reason| VersionError { input: s.to_string(), reason };
        let s = s.trim();
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => (e.parse::<u32>().map_err(|_| err("the epoch is not a number"))?, rest),
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(err("the upstream version is empty"));
        }
        if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err("the upstream version must start with a digit"));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !upstream.chars().all(ok) || !revision.chars().all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c)) {
            return Err(err("only letters, digits and `.+~-:` are allowed"));
        }
        Ok(Version { epoch, upstream: upstream.to_string(), revision: revision.to_string() })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch > 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix, character by character.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run, as a number (leading zeros ignored).
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any text parses or fails; parsed versions order consistently.
        #[test]
        fn versions_parse_and_order_consistently(a in "[0-9a-z.+~:-]{0,16}", b in "[0-9a-z.+~:-]{0,16}") {
            if let (Ok(va), Ok(vb)) = (Version::parse(&a), Version::parse(&b)) {
                proptest::prop_assert_eq!(va.cmp(&va), Ordering::Equal);
                proptest::prop_assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
            }
        }
    }

    #[test]
    fn ordering_table() {
        // (a, b, expected a.cmp(b)); cases from dpkg's own test suite and Debian policy.
        let cases = [
            ("1.0", "1.0", Ordering::Equal),
            ("1.0", "1.1", Ordering::Less),
            ("1.10", "1.9", Ordering::Greater),
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.0~~", "1.0~", Ordering::Less),
            ("1.0", "1.0+b1", Ordering::Less),
            ("1.0-1", "1.0-2", Ordering::Less),
            ("1:0.1", "2.0", Ordering::Greater),
            ("2.0a", "2.0.1", Ordering::Less),
            ("2.30-12", "2.30-12+deb12u1", Ordering::Less),
            ("1.001", "1.1", Ordering::Equal),
            ("252.38-1~deb12u1", "252.38-1", Ordering::Less),
            ("0:1.0", "1.0", Ordering::Equal),
            ("1.0-1", "1.0-1.1", Ordering::Less),
            ("9", "10", Ordering::Less),
            ("a", "b", Ordering::Less),
        ];
        for (a, b, want) in cases {
            let (va, vb) = (parse_loose(a), parse_loose(b));
            assert_eq!(va.cmp(&vb), want, "{a} vs {b}");
            assert_eq!(vb.cmp(&va), want.reverse(), "{b} vs {a}");
        }
    }

    /// Parse for ordering tests, allowing upstream versions that do not start with a digit.
    fn parse_loose(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|_| Version { epoch: 0, upstream: s.into(), revision: String::new() })
    }

    #[test]
    fn parse_table() {
        assert_eq!(
            Version::parse("1:2.36-9+deb12u4").unwrap(),
            Version { epoch: 1, upstream: "2.36".into(), revision: "9+deb12u4".into() }
        );
        assert_eq!(Version::parse("1.2-3-4").unwrap().upstream, "1.2-3");
        assert_eq!(Version::parse("1:2.0-1").unwrap().to_string(), "1:2.0-1");
        for (bad, reason) in [
            ("", "the upstream version is empty"),
            ("x:1.0", "the epoch is not a number"),
            ("abc", "the upstream version must start with a digit"),
            ("1.0 beta", "only letters, digits and `.+~-:` are allowed"),
        ] {
            assert_eq!(Version::parse(bad).unwrap_err().reason, reason, "{bad}");
        }
    }
}
