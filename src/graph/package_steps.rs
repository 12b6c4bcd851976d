//! The steps of installing packages as `plan` and `build` report them, for apt and rpm-md
//! images alike: one `unpack` step counting the package entries, then `merge`, `layer` and
//! `rootfs`, each cached or not.

use super::{Cur, Input, Mode, State, Step, Walker};
use crate::store::digest::Digest;
use crate::store::Backend;

pub(super) struct PackageSteps {
    unpack: Step,
    sub: Vec<Step>,
    rootfs: Digest,
}

impl Walker<'_> {
    /// The states of the package steps: `inputs` name the repositories and packages,
    /// `package_keys` are the entries to unpack, `steps` the (kind, key) of merge, layer and rootfs.
    pub(super) fn package_steps(
        &self,
        image: &str,
        family: &str,
        inputs: Vec<Input>,
        package_keys: &[Digest],
        steps: [(&'static str, Digest); 3],
    ) -> anyhow::Result<PackageSteps> {
        let mut unpacked = 0u64;
        for k in package_keys {
            unpacked += self.store.entry(k)?.is_some() as u64;
        }
        let total = package_keys.len() as u64;
        let unpack = Step {
            image: image.to_string(),
            kind: "unpack".into(),
            name: format!("{total} packages"),
            key: None,
            tree: None,
            state: if unpacked == total { State::Cached } else { State::Missing },
            count: total,
            cached_count: unpacked,
            inputs,
        };
        let sub = steps
            .iter()
            .map(|(kind, key)| -> anyhow::Result<Step> {
                let e = self.store.entry(key)?;
                Ok(Step {
                    image: image.to_string(),
                    kind: (*kind).into(),
                    name: family.into(),
                    key: Some(*key),
                    tree: e.as_ref().map(|e| e.tree),
                    state: if e.is_some() { State::Cached } else { State::Missing },
                    count: 1,
                    cached_count: e.is_some() as u64,
                    inputs: vec![],
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(PackageSteps { unpack, sub, rootfs: steps[2].1 })
    }

    /// When planning, or when the rootfs is cached: the steps are reported and their result
    /// returned without building anything.
    pub(super) fn known_package_steps(&mut self, ps: &PackageSteps) -> anyhow::Result<Option<Cur>> {
        if self.mode != Mode::Plan && !ps.sub.last().is_some_and(|s| s.state == State::Cached) {
            return Ok(None);
        }
        let out = match self.store.entry(&ps.rootfs)? {
            Some(e) => Cur::Known(e),
            None => Cur::Unknown,
        };
        self.push(ps.unpack.clone());
        for s in &ps.sub {
            self.push(s.clone());
        }
        Ok(Some(out))
    }

    /// Report the steps once built: `done` holds each sub step's tree and whether it was cached.
    pub(super) fn built_package_steps(
        &mut self,
        ps: PackageSteps,
        done: impl IntoIterator<Item = (Digest, bool)>,
    ) -> anyhow::Result<Cur> {
        let PackageSteps { mut unpack, mut sub, rootfs } = ps;
        if unpack.state == State::Missing {
            unpack.state = State::Built;
        }
        self.push(unpack);
        for (s, (tree, cached)) in sub.iter_mut().zip(done) {
            s.tree = Some(tree);
            if !cached {
                s.state = State::Built;
            }
        }
        for s in sub {
            self.push(s);
        }
        let e = self.store.entry(&rootfs)?.expect("the rootfs step recorded its entry");
        Ok(Cur::Known(e))
    }
}
