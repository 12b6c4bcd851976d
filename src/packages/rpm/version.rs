//! RPM versions: `[epoch:]version[-release]`, compared as rpm compares them (`rpmvercmp`).
//!
//! Each string is split into runs of digits and runs of letters (anything else separates);
//! digit runs compare as numbers and beat letter runs; `~` sorts before everything, even the
//! end (pre-releases), `^` after the end but before any further run (post-release snapshots).

use std::cmp::Ordering;
use std::fmt;

/// An epoch-version-release; `release` is `None` when a requirement names only the version, and
/// then any release matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Evr {
    pub epoch: u64,
    pub version: String,
    pub release: Option<String>,
}

impl Evr {
    /// Parse `[epoch:]version[-release]`.
    pub fn parse(s: &str) -> Result<Evr, String> {
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => (e.parse::<u64>().map_err(|_| format!("bad epoch in version `{s}`"))?, rest),
            None => (0, s),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v, Some(r.to_string())),
            None => (rest, None),
        };
        if version.is_empty() || release.as_deref() == Some("") {
            return Err(format!("bad version `{s}`"));
        }
        Ok(Evr { epoch, version: version.to_string(), release })
    }

    /// Compare as a requirement does: a missing release on either side matches any release.
    pub fn cmp_for_requirement(&self, other: &Evr) -> Ordering {
        self.epoch.cmp(&other.epoch).then_with(|| vercmp(&self.version, &other.version)).then_with(|| {
            match (&self.release, &other.release) {
                (Some(a), Some(b)) => vercmp(a, b),
                _ => Ordering::Equal,
            }
        })
    }
}

impl Ord for Evr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| vercmp(&self.version, &other.version))
            .then_with(|| vercmp(self.release.as_deref().unwrap_or(""), other.release.as_deref().unwrap_or("")))
    }
}

impl PartialOrd for Evr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.version)?;
        if let Some(r) = &self.release {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

/// rpm's `rpmvercmp` on one version or release string.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while let Some((&c, rest)) = a.split_first().filter(|(c, _)| sep(**c)) {
            let _ = c;
            a = rest;
        }
        while let Some((_, rest)) = b.split_first().filter(|(c, _)| sep(**c)) {
            b = rest;
        }
        // Tilde: sorts before everything.
        match (a.first() == Some(&b'~'), b.first() == Some(&b'~')) {
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // Caret: like the end, but after it.
        match (a.first() == Some(&b'^'), b.first() == Some(&b'^')) {
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (true, false) => return if b.is_empty() { Ordering::Greater } else { Ordering::Less },
            (false, true) => return if a.is_empty() { Ordering::Less } else { Ordering::Greater },
            _ => {}
        }
        if a.is_empty() || b.is_empty() {
            break;
        }
        let numeric = a[0].is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter().take_while(|c| if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() }).count()
        };
        let (la, lb) = (run(a), run(b));
        let (ra, rb) = (&a[..la], &b[..lb]);
        if lb == 0 {
            // Different kinds of run: numbers are newer.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let ord = if numeric {
            let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
            let (ta, tb) = (&ra[strip(ra)..], &rb[strip(rb)..]);
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            ra.cmp(rb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        a = &a[la..];
        b = &b[lb..];
    }
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rpmvercmp_table() {
        // Cases from rpm's own test suite (rpmvercmp.at).
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("a", "1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("001", "1", Equal),
            ("1.002", "1.1", Greater),
        ] {
            assert_eq!(vercmp(a, b), want, "{a} vs {b}");
            assert_eq!(vercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn evr_order_and_requirements() {
        let e = |s| Evr::parse(s).unwrap();
        assert!(e("1:1.0-1") > e("2.0-1"));
        assert!(e("1.0-2") > e("1.0-1"));
        assert_eq!(e("1.0").cmp_for_requirement(&e("1.0-5")), Equal);
        assert_eq!(e("2:1.0-1").to_string(), "2:1.0-1");
        assert!(Evr::parse("x:1").is_err() && Evr::parse("1.0-").is_err());
    }
}
