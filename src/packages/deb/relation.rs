//! Package relationship fields (`Depends`, `Pre-Depends`, `Provides`, `Conflicts`, `Breaks`,
//! `Replaces`): `a (>= 1.0) | b, c:any`. A field is a conjunction of groups; a group is a
//! disjunction of alternatives.

use std::fmt;

use super::version::{Version, VersionError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le, // `<` and `>` are obsolete spellings of `<=` and `>=`
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }

    /// Whether `have` satisfies `op want`.
    pub fn matches(self, have: &Version, want: &Version) -> bool {
        let o = have.cmp(want);
        match self {
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Eq => o.is_eq(),
            Op::Ge => o.is_ge(),
            Op::Gt => o.is_gt(),
        }
    }
}

/// One alternative: a package name, an optional architecture qualifier and version constraint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dep {
    pub name: String,
    /// `:any`, `:native` or an architecture, when given.
    pub arch: Option<String>,
    pub constraint: Option<(Op, Version)>,
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({} {v})", op.as_str())?;
        }
        Ok(())
    }
}

/// Alternatives, any one of which satisfies the group.
pub type Group = Vec<Dep>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelationError {
    #[error("`{0}`: empty alternative")]
    Empty(String),
    #[error("`{0}`: invalid package name")]
    Name(String),
    #[error("`{0}`: expected `(OP VERSION)` with OP one of << <= = >= >>")]
    Constraint(String),
    #[error(transparent)]
    Version(#[from] VersionError),
}

/// Parse a relationship field. Architecture restrictions (`[amd64]`) and build profiles
/// (`<!nocheck>`) only occur in source packages and are refused here.
pub fn parse(field: &str) -> Result<Vec<Group>, RelationError> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        if group.trim().is_empty() {
            continue; // trailing commas are tolerated, as by dpkg
        }
        let mut alts = Vec::new();
        for alt in group.split('|') {
            alts.push(parse_dep(alt.trim())?);
        }
        groups.push(alts);
    }
    Ok(groups)
}

fn parse_dep(s: &str) -> Result<Dep, RelationError> {
    if s.is_empty() {
        return Err(RelationError::Empty(s.into()));
    }
    let (head, constraint) = match s.find('(') {
        Some(i) => {
            let inner = s[i + 1..].strip_suffix(')').ok_or_else(|| RelationError::Constraint(s.into()))?;
            let inner = inner.trim();
            let split = inner.find(|c: char| !"<=>".contains(c)).ok_or_else(|| RelationError::Constraint(s.into()))?;
            let op = Op::parse(&inner[..split]).ok_or_else(|| RelationError::Constraint(s.into()))?;
            let version = Version::parse(inner[split..].trim())?;
            (s[..i].trim(), Some((op, version)))
        }
        None => (s, None),
    };
    let (name, arch) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a.to_string())),
        None => (head, None),
    };
    let valid = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !valid {
        return Err(RelationError::Name(s.into()));
    }
    Ok(Dep { name: name.to_string(), arch, constraint })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Depends fields are untrusted: any text parses or fails, never panics.
        #[test]
        fn any_field_parses_or_fails(field in "[a-z0-9.+:~ ,|()<>=\\[\\]!-]{0,60}") {
            let _ = parse(&field);
        }
    }

    #[test]
    fn parse_table() {
        let groups = parse("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, perl:any, foo (<< 1:2.0-1),").unwrap();
        let shown: Vec<String> =
            groups.iter().map(|g| g.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | ")).collect();
        assert_eq!(shown, ["libc6 (>= 2.34)", "debconf (>= 0.5) | debconf-2.0", "perl:any", "foo (<< 1:2.0-1)"]);
        let bad = [
            ("a (>= 1.0)", RelationError::Name("a (>= 1.0)".into())),
            ("libfoo (~ 1.0)", RelationError::Constraint("libfoo (~ 1.0)".into())),
            ("libfoo (>= 1.0", RelationError::Constraint("libfoo (>= 1.0".into())),
            ("libfoo | ", RelationError::Empty("".into())),
            ("Upper", RelationError::Name("Upper".into())),
            ("libfoo [amd64]", RelationError::Name("libfoo [amd64]".into())),
        ];
        for (input, want) in bad {
            assert_eq!(parse(input).unwrap_err(), want, "{input}");
        }
    }

    #[test]
    fn op_table() {
        let v = |s| Version::parse(s).unwrap();
        for (have, op, want, ok) in [
            ("1.0", Op::Ge, "1.0", true),
            ("1.0", Op::Gt, "1.0", false),
            ("1.0~rc1", Op::Lt, "1.0", true),
            ("2.0", Op::Eq, "2.0", true),
            ("2.0", Op::Le, "1.9", false),
        ] {
            assert_eq!(op.matches(&v(have), &v(want)), ok, "{have} {} {want}", op.as_str());
        }
    }
}
