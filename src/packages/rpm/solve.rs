//! Dependency resolution for RPM packages with `resolvo`, as for Debian ([`crate::packages::deb::solve`]).
//!
//! Mapping to the solver:
//! - each package version is a solvable of its name;
//! - a requirement names a capability: a package name, a virtual `Provides`, a soname such as
//!   `libc.so.6()(64bit)` or a file path (`/bin/sh`, matched against the files `primary.xml`
//!   lists). It becomes the union, over every package that provides it, of that package's
//!   versions whose provide satisfies the constraint; the package named like the capability is
//!   tried first;
//! - rich dependencies: `and` becomes several requirements, `or` one union;
//! - `Conflicts` become constraints on every provider, `Obsoletes` on the named package;
//! - candidates are tried newest first; excluded packages stay in the problem with a reason.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;

use resolvo::utils::{Pool, VersionSet};
use resolvo::{
    Candidates, Condition, ConditionId, ConditionalRequirement, Dependencies, DependencyProvider,
    HintDependenciesAvailable, Interner, KnownDependencies, NameId, Problem, Requirement, SolvableId, Solver,
    SolverCache, StringId, UnsolvableOrCancelled, VersionSetId, VersionSetUnionId,
};

use super::repo::{Cap, Flag, Req, RpmRecord};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Set {
    /// Versions of a package that provide the capability.
    Provides(Cap),
    /// Versions of a package that do not provide it (conflicts).
    NotProviding(Cap),
    /// Versions of the package itself that the constraint does not match (obsoletes).
    NotNamed(Cap),
}

impl VersionSet for Set {
    type V = usize;
}

/// What to install.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Capabilities (usually package names) to install.
    pub install: Vec<String>,
    /// Package names that must not be installed.
    pub exclude: Vec<String>,
    /// Packages that must keep this version if installed (those of a base image).
    pub locked: std::collections::BTreeMap<String, super::version::Evr>,
}

struct Provider<'a> {
    pool: Pool<Set>,
    records: &'a [RpmRecord],
    by_name: HashMap<NameId, Vec<SolvableId>>,
    record_of: HashMap<SolvableId, usize>,
    /// capability name (provide, package name or file) -> providing record indexes.
    providers: HashMap<&'a str, Vec<usize>>,
    excluded: BTreeSet<&'a str>,
    locked: &'a std::collections::BTreeMap<String, super::version::Evr>,
}

impl<'a> Provider<'a> {
    fn new(records: &'a [RpmRecord], request: &'a Request) -> Provider<'a> {
        let pool = Pool::new();
        let mut by_name: HashMap<NameId, Vec<SolvableId>> = HashMap::new();
        let mut record_of = HashMap::new();
        let mut providers: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for (i, r) in records.iter().enumerate() {
            // The same package in two repositories: the first one wins.
            if !seen.insert((r.name.as_str(), r.arch.as_str(), r.evr.clone())) {
                continue;
            }
            let name = pool.intern_package_name(r.name.as_str());
            let s = pool.intern_solvable(name, i);
            by_name.entry(name).or_default().push(s);
            record_of.insert(s, i);
            let caps = std::iter::once(r.name.as_str())
                .chain(r.provides.iter().map(|p| p.name.as_str()))
                .chain(r.files.iter().map(String::as_str));
            for c in caps {
                let list = providers.entry(c).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Provider {
            pool,
            records,
            by_name,
            record_of,
            providers,
            excluded: request.exclude.iter().map(String::as_str).collect(),
            locked: &request.locked,
        }
    }

    fn record(&self, s: SolvableId) -> &RpmRecord {
        &self.records[self.record_of[&s]]
    }

    /// Does record `r` provide `cap`? Its own name and version count, and so do its files.
    fn provides(r: &RpmRecord, cap: &Cap) -> bool {
        if cap.name == r.name {
            let own = Cap { name: r.name.clone(), constraint: Some((Flag::Eq, r.evr.clone())) };
            if cap.satisfied_by(&own) {
                return true;
            }
        }
        if cap.name.starts_with('/') && cap.constraint.is_none() && r.files.contains(&cap.name) {
            return true;
        }
        r.provides.iter().any(|p| cap.satisfied_by(p))
    }

    /// The version sets that satisfy `cap`: its providers' versions, the same-named package first.
    fn sets_for(&self, cap: &Cap) -> Vec<VersionSetId> {
        let mut names: Vec<&str> = Vec::new();
        for &i in self.providers.get(cap.name.as_str()).into_iter().flatten() {
            let n = self.records[i].name.as_str();
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names.sort_by_key(|n| (*n != cap.name, *n));
        if names.is_empty() {
            // Nothing provides it: a set with no candidates, so the solver explains the failure.
            names.push(cap.name.as_str());
        }
        names
            .into_iter()
            .map(|n| {
                let name = self.pool.intern_package_name(n);
                self.pool.intern_version_set(name, Set::Provides(cap.clone()))
            })
            .collect()
    }

    /// The solver's requirements for one `Requires` (several for an `and`).
    fn requirements(&self, req: &Req, out: &mut Vec<Requirement>) -> anyhow::Result<()> {
        match req {
            Req::And(parts) => {
                for p in parts {
                    self.requirements(p, out)?;
                }
            }
            Req::Cap(_) | Req::Or(_) => {
                let mut sets = Vec::new();
                self.union(req, &mut sets)?;
                let (first, rest) = sets.split_first().expect("at least one set");
                out.push(if rest.is_empty() {
                    (*first).into()
                } else {
                    self.pool.intern_version_set_union(*first, rest.iter().copied()).into()
                });
            }
        }
        Ok(())
    }

    fn union(&self, req: &Req, sets: &mut Vec<VersionSetId>) -> anyhow::Result<()> {
        match req {
            Req::Cap(c) => sets.extend(self.sets_for(c)),
            Req::Or(parts) => {
                for p in parts {
                    self.union(p, sets)?;
                }
            }
            Req::And(_) => anyhow::bail!("`{req}` inside an `or` is not supported"),
        }
        Ok(())
    }
}

impl Interner for Provider<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, s: SolvableId) -> impl Display + '_ {
        let r = self.record(s);
        format!("{}.{}", r.evr, r.arch)
    }
    fn display_name(&self, n: NameId) -> impl Display + '_ {
        self.pool.resolve_package_name(n).clone()
    }
    fn display_version_set(&self, vs: VersionSetId) -> impl Display + '_ {
        let name = self.pool.resolve_package_name(self.pool.resolve_version_set_package_name(vs));
        match self.pool.resolve_version_set(vs) {
            Set::Provides(c) if c.name == *name => {
                c.constraint.as_ref().map(|(f, v)| format!("{} {v}", f.as_str())).unwrap_or_default()
            }
            Set::Provides(c) => format!("providing {c}"),
            Set::NotProviding(c) => format!("not providing {c} (a conflict)"),
            Set::NotNamed(c) => format!("not {c} (obsoleted)"),
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
        cands
            .iter()
            .copied()
            .filter(|&s| {
                let r = self.record(s);
                let m = match set {
                    Set::Provides(c) => Self::provides(r, c),
                    Set::NotProviding(c) => !Self::provides(r, c),
                    Set::NotNamed(c) => {
                        let own = Cap { name: r.name.clone(), constraint: Some((Flag::Eq, r.evr.clone())) };
                        !c.satisfied_by(&own)
                    }
                };
                m != inverse
            })
            .collect()
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
            .and_then(|v| candidates.iter().copied().find(|&s| self.record(s).evr == *v));
        Some(Candidates {
            candidates,
            excluded,
            locked,
            hint_dependencies_available: HintDependenciesAvailable::All,
            ..Default::default()
        })
    }

    async fn sort_candidates(&self, _: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        solvables.sort_by(|a, b| self.record(*b).evr.cmp(&self.record(*a).evr));
    }

    async fn get_dependencies(&self, s: SolvableId) -> Dependencies {
        let r = self.record(s);
        if let Some(why) = &r.unsupported {
            return Dependencies::Unknown(self.pool.intern_string(format!("{}: {why}", r.nevra())));
        }
        let mut known = KnownDependencies::default();
        for req in &r.requires {
            let mut reqs = Vec::new();
            if let Err(e) = self.requirements(req, &mut reqs) {
                let why = self.pool.intern_string(format!("{}: {e}", r.nevra()));
                return Dependencies::Unknown(why);
            }
            known.requirements.extend(reqs.into_iter().map(ConditionalRequirement::from));
        }
        for c in &r.conflicts {
            let providers: BTreeSet<&str> = self
                .providers
                .get(c.name.as_str())
                .into_iter()
                .flatten()
                .map(|&i| self.records[i].name.as_str())
                .filter(|n| *n != r.name)
                .collect();
            for p in providers {
                let pn = self.pool.intern_package_name(p);
                known.constrains.push(self.pool.intern_version_set(pn, Set::NotProviding(c.clone())));
            }
        }
        for o in r.obsoletes.iter().filter(|o| o.name != r.name) {
            let pn = self.pool.intern_package_name(o.name.as_str());
            known.constrains.push(self.pool.intern_version_set(pn, Set::NotNamed(o.clone())));
        }
        Dependencies::Known(known)
    }
}

/// Resolve `request` against `records`: the chosen records (indexes), sorted by name, or an
/// explanation of why no solution exists.
pub fn solve(records: &[RpmRecord], request: &Request) -> anyhow::Result<Vec<usize>> {
    let provider = Provider::new(records, request);
    let mut names: Vec<&str> = request.install.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut requirements = Vec::new();
    for name in &names {
        let cap = Cap { name: name.to_string(), constraint: None };
        let mut reqs = Vec::new();
        provider.requirements(&Req::Cap(cap), &mut reqs)?;
        requirements.extend(reqs.into_iter().map(ConditionalRequirement::from));
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

/// The order rpm would install `chosen` in: what a package requires comes before it (cycles are
/// broken by name), so each `%pre` and `%post` finds its dependencies installed.
pub fn install_order(records: &[RpmRecord], chosen: &[usize]) -> Vec<usize> {
    let mut caps: Vec<&Cap> = Vec::new();
    let mut deps: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    for &i in chosen {
        let mut set = BTreeSet::new();
        for req in &records[i].requires {
            caps.clear();
            flatten(req, &mut caps);
            for cap in &caps {
                if let Some(&j) = chosen.iter().find(|&&j| j != i && Provider::provides(&records[j], cap)) {
                    set.insert(j);
                }
            }
        }
        deps.insert(i, set);
    }
    let mut left: BTreeSet<(&str, usize)> = chosen.iter().map(|&i| (records[i].name.as_str(), i)).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    // Can `from` reach `to` through dependencies not installed yet?
    let reaches = |from: usize, to: usize, done: &BTreeSet<usize>| {
        let (mut stack, mut seen) = (vec![from], BTreeSet::new());
        while let Some(x) = stack.pop() {
            if x == to {
                return true;
            }
            if seen.insert(x) {
                stack.extend(deps[&x].iter().filter(|d| !done.contains(*d)));
            }
        }
        false
    };
    while !left.is_empty() {
        let ready = left.iter().find(|(_, i)| deps[i].iter().all(|d| done.contains(d))).copied();
        // A cycle: a package on it whose missing dependencies all lead back to it (so nothing
        // outside the cycle is skipped), the first by name.
        let (name, i) = ready.unwrap_or_else(|| {
            let unmet = |i: usize| deps[&i].iter().filter(|d| !done.contains(*d)).copied().collect::<Vec<_>>();
            left.iter()
                .copied()
                .find(|&(_, i)| unmet(i).iter().all(|&d| reaches(d, i, &done)))
                .unwrap_or_else(|| *left.iter().next().expect("not empty"))
        });
        left.remove(&(name, i));
        done.insert(i);
        out.push(i);
    }
    out
}

fn flatten<'r>(req: &'r Req, out: &mut Vec<&'r Cap>) {
    match req {
        Req::Cap(c) => out.push(c),
        Req::And(p) | Req::Or(p) => p.iter().for_each(|r| flatten(r, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::fetch::Want;
    use crate::packages::rpm::repo::parse_rich;
    use crate::packages::rpm::version::Evr;

    fn pkg(
        name: &str,
        evr: &str,
        requires: &[&str],
        provides: &[&str],
        conflicts: &[&str],
        files: &[&str],
    ) -> RpmRecord {
        let cap = |s: &&str| match parse_rich(s).unwrap() {
            Req::Cap(c) => c,
            other => panic!("{other}"),
        };
        RpmRecord {
            name: name.into(),
            arch: "x86_64".into(),
            evr: Evr::parse(evr).unwrap(),
            provides: provides.iter().map(cap).collect(),
            requires: requires.iter().map(|r| parse_rich(r).unwrap()).collect(),
            conflicts: conflicts.iter().map(cap).collect(),
            obsoletes: vec![],
            files: files.iter().map(|f| f.to_string()).collect(),
            want: Want { url: String::new(), size: 0, sha256: String::new() },
            unsupported: None,
            installed: false,
        }
    }

    fn run(records: &[RpmRecord], install: &[&str], exclude: &[&str]) -> Result<Vec<String>, String> {
        let req = Request {
            install: install.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            locked: Default::default(),
        };
        solve(records, &req)
            .map(|ids| ids.iter().map(|&i| format!("{}-{}", records[i].name, records[i].evr)).collect())
            .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn resolution_table() {
        let repo = vec![
            pkg("glibc", "2.38-1", &[], &["libc.so.6()(64bit)"], &[], &[]),
            pkg("glibc", "2.39-1", &[], &["libc.so.6()(64bit)"], &[], &[]),
            pkg("bash", "5.2-1", &["libc.so.6()(64bit)"], &[], &[], &["/bin/sh", "/usr/bin/bash"]),
            pkg("app", "1.0-1", &["/bin/sh", "(postfix or exim)", "glibc >= 2.39"], &[], &[], &[]),
            pkg("exim", "4.0-1", &[], &["MTA"], &[], &[]),
            pkg("postfix", "3.0-1", &[], &["MTA"], &["MTA"], &[]),
            pkg("old", "1.0-1", &["glibc < 2.0"], &[], &[], &[]),
            pkg("fights", "1.0-1", &["app"], &[], &["bash"], &[]),
            pkg("both", "1.0-1", &["(exim and bash)"], &[], &[], &[]),
        ];
        assert_eq!(
            run(&repo, &["app"], &[]).unwrap(),
            ["app-1.0-1", "bash-5.2-1", "glibc-2.39-1", "postfix-3.0-1"],
            "file provides, rich or (first alternative), newest version"
        );
        assert_eq!(
            run(&repo, &["app"], &["postfix"]).unwrap(),
            ["app-1.0-1", "bash-5.2-1", "exim-4.0-1", "glibc-2.39-1"]
        );
        assert_eq!(run(&repo, &["both"], &[]).unwrap(), ["bash-5.2-1", "both-1.0-1", "exim-4.0-1", "glibc-2.39-1"]);
        assert_eq!(run(&repo, &["MTA"], &[]).unwrap(), ["exim-4.0-1"], "a virtual capability");
        for (install, exclude, mentions) in [
            (&["old"][..], &[][..], &["old", "glibc"][..]),
            (&["fights"], &[], &["fights", "bash"]),
            (&["nothing"], &[], &["nothing"]),
            (&["app"], &["bash"], &["bash", "excluded"]),
        ] {
            let err = run(&repo, install, exclude).unwrap_err();
            for m in mentions {
                assert!(err.contains(m), "{install:?}: `{m}` not in:\n{err}");
            }
        }
    }

    #[test]
    fn dependencies_install_first() {
        let repo = vec![
            pkg("app", "1-1", &["lib", "/bin/sh"], &[], &[], &[]),
            pkg("lib", "1-1", &["base"], &[], &[], &[]),
            pkg("base", "1-1", &[], &[], &[], &["/bin/sh"]),
            pkg("loop-a", "1-1", &["loop-b"], &[], &[], &[]),
            pkg("loop-b", "1-1", &["loop-a"], &[], &[], &[]),
            // Sorts before the cycle it needs, and must still come after it.
            pkg("aaa", "1-1", &["loop-b"], &[], &[], &[]),
        ];
        let order: Vec<&str> =
            install_order(&repo, &[0, 1, 2, 3, 4, 5]).iter().map(|&i| repo[i].name.as_str()).collect();
        assert_eq!(order, ["base", "lib", "app", "loop-a", "loop-b", "aaa"]);
    }
}
