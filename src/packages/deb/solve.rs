//! Dependency resolution for Debian packages with `resolvo`, a CDCL SAT solver.
//!
//! Mapping from Debian relations to the solver:
//! - each package version in the indexes is a solvable of its name (one version per name);
//! - `Depends`/`Pre-Depends` groups are requirements; alternatives (`a | b`) and virtual packages
//!   become a union of version sets, tried in order: the named package first, then its providers
//!   (a versioned dependency is satisfied only by a versioned `Provides`, as in apt);
//! - `Conflicts`/`Breaks` become constraints: no installed version of the other package may match;
//!   for a virtual package, on every provider except the package itself;
//! - candidates are tried newest first; excluded packages stay in the problem with a reason, so an
//!   unsatisfiable request explains itself through them.
//!
//! Architecture qualifiers (`:any`, `:native`) are accepted and ignored: one architecture is
//! solved at a time (`all` packages included).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;

use resolvo::utils::{Pool, VersionSet};
use resolvo::{
    Candidates, Condition, ConditionId, Dependencies, DependencyProvider, HintDependenciesAvailable, Interner,
    KnownDependencies, NameId, Problem, Requirement, SolvableId, Solver, SolverCache, StringId, UnsolvableOrCancelled,
    VersionSetId, VersionSetUnionId,
};

use super::relation::{Dep, Group, Op};
use super::repo::PackageRecord;
use super::version::Version;

/// A set of versions of one name, as the solver sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Set {
    /// Versions of the package itself matching the constraint (all, without one).
    Real(Option<(Op, Version)>),
    /// Versions of the package itself NOT matching the constraint (for versioned conflicts).
    RealNot(Option<(Op, Version)>),
    /// Versions of a provider whose `Provides` names `virt` and satisfies the constraint.
    Provides(String, Option<(Op, Version)>),
    /// Versions of a provider whose `Provides` does not name `virt` (for conflicts).
    NotProviding(String),
}

impl VersionSet for Set {
    type V = usize;
}

/// What to install.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Package names (or virtual names) to install.
    pub install: Vec<String>,
    /// Also install every package with `Priority: required` or `Essential: yes` (a Debian base).
    pub required: bool,
    /// Names that must not be installed.
    pub exclude: Vec<String>,
    /// Packages that must keep this exact version if installed (those of a base image).
    pub locked: std::collections::BTreeMap<String, String>,
}

struct Provider<'a> {
    pool: Pool<Set>,
    records: &'a [PackageRecord],
    by_name: HashMap<NameId, Vec<SolvableId>>,
    record_of: HashMap<SolvableId, usize>,
    /// virtual name -> providing record indexes.
    providers: HashMap<&'a str, Vec<usize>>,
    excluded: BTreeSet<&'a str>,
    locked: &'a std::collections::BTreeMap<String, String>,
}

impl<'a> Provider<'a> {
    fn new(records: &'a [PackageRecord], request: &'a Request) -> Provider<'a> {
        let exclude = &request.exclude;
        let pool = Pool::new();
        let mut by_name: HashMap<NameId, Vec<SolvableId>> = HashMap::new();
        let mut record_of = HashMap::new();
        let mut providers: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for (i, r) in records.iter().enumerate() {
            // The same name and version from two sources: the first one wins.
            if !seen.insert((r.name.as_str(), r.version.clone())) {
                continue;
            }
            let name = pool.intern_package_name(r.name.as_str());
            let s = pool.intern_solvable(name, i);
            by_name.entry(name).or_default().push(s);
            record_of.insert(s, i);
            for p in &r.provides {
                providers.entry(p.name.as_str()).or_default().push(i);
            }
        }
        Provider {
            pool,
            records,
            by_name,
            record_of,
            providers,
            excluded: exclude.iter().map(String::as_str).collect(),
            locked: &request.locked,
        }
    }

    fn record(&self, s: SolvableId) -> &PackageRecord {
        &self.records[self.record_of[&s]]
    }

    /// The version sets that satisfy one alternative: the package itself, then its providers.
    fn sets_for(&self, dep: &Dep) -> Vec<VersionSetId> {
        let name = self.pool.intern_package_name(dep.name.as_str());
        let mut out = vec![self.pool.intern_version_set(name, Set::Real(dep.constraint.clone()))];
        let mut provider_names = BTreeSet::new();
        for &i in self.providers.get(dep.name.as_str()).into_iter().flatten() {
            provider_names.insert(self.records[i].name.as_str());
        }
        for p in provider_names {
            let pn = self.pool.intern_package_name(p);
            out.push(self.pool.intern_version_set(pn, Set::Provides(dep.name.clone(), dep.constraint.clone())));
        }
        out
    }

    fn requirement(&self, group: &Group) -> Option<Requirement> {
        let sets: Vec<VersionSetId> = group.iter().flat_map(|d| self.sets_for(d)).collect();
        let (first, rest) = sets.split_first()?;
        Some(if rest.is_empty() {
            (*first).into()
        } else {
            self.pool.intern_version_set_union(*first, rest.iter().copied()).into()
        })
    }

    fn matches(&self, s: SolvableId, set: &Set) -> bool {
        let r = self.record(s);
        let provides = |virt: &str, c: &Option<(Op, Version)>| {
            r.provides.iter().any(|p| {
                p.name == virt
                    && match (c, &p.constraint) {
                        (None, _) => true,
                        (Some((op, want)), Some((Op::Eq, have))) => op.matches(have, want),
                        (Some(_), _) => false,
                    }
            })
        };
        match set {
            Set::Real(None) => true,
            Set::Real(Some((op, v))) => op.matches(&r.version, v),
            Set::RealNot(None) => false,
            Set::RealNot(Some((op, v))) => !op.matches(&r.version, v),
            Set::Provides(virt, c) => provides(virt, c),
            Set::NotProviding(virt) => !provides(virt, &None),
        }
    }
}

impl Interner for Provider<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, s: SolvableId) -> impl Display + '_ {
        // The solver prints the name before it.
        self.record(s).version.to_string()
    }
    fn display_name(&self, n: NameId) -> impl Display + '_ {
        self.pool.resolve_package_name(n).clone()
    }
    fn display_version_set(&self, vs: VersionSetId) -> impl Display + '_ {
        let c =
            |c: &Option<(Op, Version)>| c.as_ref().map(|(op, v)| format!(" ({} {v})", op.as_str())).unwrap_or_default();
        match self.pool.resolve_version_set(vs) {
            Set::Real(x) => c(x).trim().to_string(),
            Set::RealNot(None) => "(no version: a conflict)".to_string(),
            Set::RealNot(Some((op, v))) => format!("(not {} {v}: a conflict)", op.as_str()),
            Set::Provides(virt, x) => format!("providing {virt}{}", c(x)),
            Set::NotProviding(virt) => format!("not providing {virt}"),
        }
    }
    fn display_string(&self, id: StringId) -> impl Display + '_ {
        self.pool.resolve_string(id).to_owned()
    }
    fn version_set_name(&self, vs: VersionSetId) -> NameId {
        self.pool.resolve_version_set_package_name(vs)
    }
    fn solvable_name(&self, s: SolvableId) -> NameId {
        self.pool.resolve_solvable(s).name
    }
    fn version_sets_in_union(&self, u: VersionSetUnionId) -> impl Iterator<Item = VersionSetId> {
        self.pool.resolve_version_set_union(u)
    }
    fn resolve_condition(&self, c: ConditionId) -> Condition {
        self.pool.resolve_condition(c).clone()
    }
}

impl DependencyProvider for Provider<'_> {
    async fn filter_candidates(&self, cands: &[SolvableId], vs: VersionSetId, inverse: bool) -> Vec<SolvableId> {
        let set = self.pool.resolve_version_set(vs);
        cands.iter().copied().filter(|&s| self.matches(s, set) != inverse).collect()
    }

    async fn get_candidates(&self, name: NameId) -> Option<Candidates> {
        let candidates = self.by_name.get(&name)?.clone();
        let excluded = if self.excluded.contains(self.pool.resolve_package_name(name).as_str()) {
            let why = self.pool.intern_string("the request excludes it");
            candidates.iter().map(|&s| (s, why)).collect()
        } else {
            vec![]
        };
        // A locked name may only take its locked version (that of the base image).
        let name_str = self.pool.resolve_package_name(name);
        let locked = self
            .locked
            .get(name_str.as_str())
            .and_then(|v| candidates.iter().copied().find(|&s| self.record(s).version.to_string() == *v));
        Some(Candidates {
            candidates,
            excluded,
            locked,
            hint_dependencies_available: HintDependenciesAvailable::All,
            ..Default::default()
        })
    }

    async fn sort_candidates(&self, _: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        solvables.sort_by(|a, b| self.record(*b).version.cmp(&self.record(*a).version));
    }

    async fn get_dependencies(&self, s: SolvableId) -> Dependencies {
        let r = self.record(s);
        let mut known = KnownDependencies::default();
        for group in r.pre_depends.iter().chain(&r.depends) {
            if let Some(req) = self.requirement(group) {
                known.requirements.push(req.into());
            }
        }
        for dep in r.conflicts.iter().chain(&r.breaks).flatten() {
            if dep.name != r.name {
                let name = self.pool.intern_package_name(dep.name.as_str());
                known.constrains.push(self.pool.intern_version_set(name, Set::RealNot(dep.constraint.clone())));
            }
            // Conflicting with a virtual package: every other provider must not provide it.
            let providers: BTreeSet<&str> = self
                .providers
                .get(dep.name.as_str())
                .into_iter()
                .flatten()
                .map(|&i| self.records[i].name.as_str())
                .collect();
            for p in providers.into_iter().filter(|p| *p != r.name && dep.constraint.is_none()) {
                let pn = self.pool.intern_package_name(p);
                known.constrains.push(self.pool.intern_version_set(pn, Set::NotProviding(dep.name.clone())));
            }
        }
        Dependencies::Known(known)
    }
}

/// Resolve `request` against `records`: the chosen records (indexes into `records`), sorted by
/// name, or an explanation of why no solution exists.
pub fn solve(records: &[PackageRecord], request: &Request) -> anyhow::Result<Vec<usize>> {
    let provider = Provider::new(records, request);
    let mut names: Vec<&str> = request.install.iter().map(String::as_str).collect();
    if request.required {
        for r in records {
            if r.essential || r.priority.as_deref() == Some("required") {
                names.push(r.name.as_str());
            }
        }
    }
    names.sort_unstable();
    names.dedup();
    let mut requirements = Vec::new();
    for name in &names {
        let dep = Dep { name: name.to_string(), arch: None, constraint: None };
        if let Some(req) = provider.requirement(&vec![dep]) {
            requirements.push(req.into());
        }
    }
    let mut solver = Solver::new(provider);
    match solver.solve(Problem::new().requirements(requirements)) {
        Ok(solution) => {
            let p = solver.provider();
            let mut out: Vec<usize> = solution.iter().map(|s| p.record_of[s]).collect();
            out.sort_by(|a, b| records[*a].name.cmp(&records[*b].name));
            Ok(out)
        }
        Err(UnsolvableOrCancelled::Unsolvable(conflict)) => {
            anyhow::bail!("cannot install {}:\n{}", names.join(", "), conflict.display_user_friendly(&solver))
        }
        Err(UnsolvableOrCancelled::Cancelled(_)) => anyhow::bail!("dependency resolution was cancelled"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::deb::relation::parse;
    use crate::packages::fetch::Want;

    fn pkg(name: &str, version: &str, fields: &[(&str, &str)]) -> PackageRecord {
        let f = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v).unwrap_or("");
        PackageRecord {
            name: name.into(),
            version: Version::parse(version).unwrap(),
            architecture: "amd64".into(),
            multi_arch: None,
            priority: Some(f("Priority")).filter(|p| !p.is_empty()).map(str::to_string),
            essential: f("Essential") == "yes",
            depends: parse(f("Depends")).unwrap(),
            pre_depends: parse(f("Pre-Depends")).unwrap(),
            provides: parse(f("Provides")).unwrap().into_iter().flatten().collect(),
            conflicts: parse(f("Conflicts")).unwrap(),
            breaks: parse(f("Breaks")).unwrap(),
            want: Want { url: String::new(), size: 0, sha256: String::new() },
        }
    }

    fn run(
        records: &[PackageRecord],
        install: &[&str],
        exclude: &[&str],
        required: bool,
    ) -> Result<Vec<String>, String> {
        let req = Request {
            install: install.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            required,
            locked: Default::default(),
        };
        solve(records, &req)
            .map(|ids| ids.iter().map(|&i| format!("{} {}", records[i].name, records[i].version)).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn resolution_table() {
        let repo = vec![
            pkg("libc6", "2.36-9", &[("Priority", "required")]),
            pkg("libc6", "2.36-9+deb12u4", &[("Priority", "required")]),
            pkg("base-files", "12.4", &[("Essential", "yes"), ("Priority", "required")]),
            pkg("app", "1.0", &[("Depends", "libc6 (>= 2.36-9+deb12u1), mta | exim4"), ("Pre-Depends", "dpkg")]),
            pkg("dpkg", "1.21", &[]),
            pkg("postfix", "3.7", &[("Provides", "mail-transport-agent, mta"), ("Conflicts", "mta")]),
            pkg("exim4", "4.96", &[("Provides", "mta")]),
            pkg("old-app", "1.0", &[("Depends", "libc6 (<< 2.0)")]),
            pkg("versioned", "1.0", &[("Depends", "virt (>= 2)")]),
            pkg("virt-old", "1.0", &[("Provides", "virt (= 1)")]),
            pkg("virt-new", "1.0", &[("Provides", "virt (= 2)")]),
            pkg("fights", "1.0", &[("Depends", "app"), ("Conflicts", "dpkg")]),
            pkg("breaks-new", "1.0", &[("Breaks", "libc6 (>= 2.36-9+deb12u1)")]),
        ];
        // Newest version; first alternative satisfied through the first provider (sorted by name).
        assert_eq!(
            run(&repo, &["app"], &[], false).unwrap(),
            ["app 1.0", "dpkg 1.21", "exim4 4.96", "libc6 2.36-9+deb12u4"]
        );
        // Priority: required / Essential base.
        assert_eq!(run(&repo, &[], &[], true).unwrap(), ["base-files 12.4", "libc6 2.36-9+deb12u4"]);
        // A versioned dependency needs a versioned Provides that satisfies it.
        assert_eq!(run(&repo, &["versioned"], &[], false).unwrap(), ["versioned 1.0", "virt-new 1.0"]);
        // Breaks pushes to an older version when that satisfies everything.
        assert_eq!(run(&repo, &["breaks-new", "libc6"], &[], false).unwrap(), ["breaks-new 1.0", "libc6 2.36-9"]);
        // Excluding the chosen provider falls back to the other one.
        assert_eq!(
            run(&repo, &["app"], &["exim4"], false).unwrap(),
            ["app 1.0", "dpkg 1.21", "libc6 2.36-9+deb12u4", "postfix 3.7"]
        );
        // Unsatisfiable requests explain themselves, naming the packages involved.
        for (install, exclude, mentions) in [
            (&["old-app"][..], &[][..], &["old-app", "libc6"][..]),
            (&["fights"], &[], &["fights", "dpkg"]),
            (&["nonexistent"], &[], &["nonexistent"]),
            (&["app"], &["dpkg"], &["dpkg", "excluded"]),
        ] {
            let err = run(&repo, install, exclude, false).unwrap_err();
            for m in mentions {
                assert!(err.contains(m), "{install:?}: `{m}` not in:\n{err}");
            }
        }
    }
}
