//! One step of the build graph, as `plan` and `build` both walk it: what it is ([`Step`]), where
//! the build stands ([`Cur`]), and the two generic step kinds, on any store [`Backend`].
//!
//! A tree step is keyed by its kind, its named inputs and the tree it starts from, never by the
//! keys of earlier steps: a step that runs again and yields the same tree leaves every later
//! step a hit (early cutoff). In [`Mode::Plan`] nothing is built: a step whose key is known and
//! not recorded is `missing`, and every step after it is `pending`.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::entry::{entry_key, EntryKind};
use crate::store::memo::{Built, Memo};
use crate::store::Backend;

/// Bump when a step's logic changes, so that old results are not reused.
const STEP_VERSION: &[u8] = b"1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Compute keys and look them up; build nothing.
    Plan,
    Build,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The step's entry is in the store.
    Cached,
    /// The step ran in this build.
    Built,
    /// The key is known and not in the store: a build runs it.
    Missing,
    /// The key depends on the output of an earlier step that is not built yet.
    Pending,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Cached => "cached",
            State::Built => "built",
            State::Missing => "missing",
            State::Pending => "pending",
        }
    }
}

/// A named input of a step (a file digest, a package version, an attribute), for `why`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    pub value: String,
}

pub(crate) fn input(name: impl Into<String>, value: impl Into<String>) -> Input {
    Input { name: name.into(), value: value.into() }
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The description (image name) the step belongs to.
    pub image: String,
    pub kind: String,
    pub name: String,
    pub key: Option<Digest>,
    pub tree: Option<Digest>,
    pub state: State,
    /// How many package entries this step stands for (the `unpack` step), else 1.
    pub count: u64,
    pub cached_count: u64,
    pub inputs: Vec<Input>,
}

impl Step {
    /// A step not looked at yet.
    pub fn new(image: &str, kind: &str, name: &str, inputs: Vec<Input>) -> Step {
        Step {
            image: image.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            key: None,
            tree: None,
            state: State::Pending,
            count: 1,
            cached_count: 0,
            inputs,
        }
    }
}

/// Where the build stands between steps.
#[derive(Clone, Debug)]
pub(crate) enum Cur {
    /// Nothing yet: the first description installs from scratch.
    Empty,
    /// A tree, with the entry that holds it.
    Known(EntryRow),
    /// Not built yet (plan mode).
    Unknown,
}

/// A tree step (see the module doc): found, built by `build` from the current tree (a tree
/// recorded already, and the log of what ran, if anything did), or in plan mode reported
/// `missing`. Returns the step as reported and where the build stands after it.
pub(crate) fn tree_step<B: Backend + ?Sized>(
    store: &mut B,
    mode: Mode,
    mut step: Step,
    cur: Cur,
    build: impl FnOnce(&mut B, &Digest) -> anyhow::Result<Built>,
) -> anyhow::Result<(Step, Cur)> {
    let base = match cur {
        Cur::Known(e) => e,
        Cur::Unknown => return Ok((step, Cur::Unknown)),
        Cur::Empty => bail!("{}: the {} step needs a tree to start from", step.image, step.kind),
    };
    let (image, kind, name) = (step.image.clone(), step.kind.clone(), step.name.clone());
    let _span = tracing::debug_span!("step", kind, name).entered();
    let mut params: Vec<(String, Vec<u8>)> =
        vec![("step".into(), kind.as_bytes().to_vec()), ("version".into(), STEP_VERSION.to_vec())];
    params.extend(step.inputs.iter().map(|i| (i.name.clone(), i.value.clone().into_bytes())));
    let params: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    // Named for people (`strata log IMAGE config.sh`); the name is not part of the key.
    let memo = Memo::new(EntryKind::Step, format!("{image}/{kind} {name}"), &params, &[base.tree]);
    step.key = Some(memo.key);
    if let Some(e) = memo.lookup(store)? {
        step.state = State::Cached;
        step.cached_count = 1;
        step.tree = Some(e.tree);
        return Ok((step, Cur::Known(e)));
    }
    if mode == Mode::Plan {
        step.state = State::Missing;
        return Ok((step, Cur::Unknown));
    }
    let built = build(store, &base.tree).with_context(|| format!("{image}: step {kind} {name}"))?;
    let tree = built.tree;
    let entry = memo.record(store, built.refs([base.key]))?;
    step.state = State::Built;
    step.tree = Some(tree);
    Ok((step, Cur::Known(entry)))
}

/// The description's final `rootfs` entry, named after it: the tree the steps ended with.
pub(crate) fn image_step<B: Backend + ?Sized>(
    store: &mut B,
    mode: Mode,
    image: &str,
    cur: Cur,
) -> anyhow::Result<(Step, Cur)> {
    let mut step = Step::new(image, "image", image, vec![]);
    let Cur::Known(base) = cur else { return Ok((step, Cur::Unknown)) };
    let _span = tracing::debug_span!("image step", image).entered();
    let key = entry_key(EntryKind::Rootfs, &[("image", image.as_bytes())], &[base.tree]);
    let memo = Memo::with_key(EntryKind::Rootfs, image, key);
    step.key = Some(key);
    step.tree = Some(base.tree);
    let e = match memo.lookup(store)? {
        Some(e) => {
            step.state = State::Cached;
            step.cached_count = 1;
            e
        }
        None if mode == Mode::Plan => {
            step.state = State::Missing;
            return Ok((step, Cur::Unknown));
        }
        None => {
            step.state = State::Built;
            memo.record(store, Built::recorded(base.tree).refs([base.key]))?
        }
    };
    Ok((step, Cur::Known(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::batch::Batch;
    use crate::store::memory::MemoryStore;
    use crate::store::meta::Meta;
    use crate::store::tree::{Name, Tree};

    /// A tree holding one file `name` with `content`, recorded.
    fn record_tree<B: Backend + ?Sized>(store: &mut B, name: &str, content: &[u8]) -> Digest {
        let mut batch = Batch::new();
        let meta = Meta { mode: 0o644, uid: 0, gid: 0, xattrs: vec![] };
        let node = batch.put_bytes(store, content, meta.clone()).unwrap();
        let tree = batch
            .put_tree(&Tree { meta: Meta { mode: 0o755, ..meta }, entries: vec![(Name::new(name).unwrap(), node)] });
        batch.commit(store, None).unwrap();
        tree
    }

    /// A store with a base image entry to build on.
    fn with_base() -> (MemoryStore, Cur) {
        let mut store = MemoryStore::new();
        let tree = record_tree(&mut store, "base", b"base");
        let memo = Memo::new(EntryKind::Import, "base", &[], &[tree]);
        let e = memo.record(&mut store, Built::recorded(tree)).unwrap();
        (store, Cur::Known(e))
    }

    /// Two steps in a row, as a description's files and script steps: `a` writes `a_content`,
    /// `b` writes "b". Returns the steps as reported and how many builds ran.
    fn walk(store: &mut MemoryStore, mode: Mode, base: &Cur, a_input: &str, a_content: &[u8]) -> (Vec<Step>, u32) {
        let mut runs = 0;
        let a = Step::new("img", "files", "root", vec![input("version", a_input)]);
        let (a, cur) = tree_step(store, mode, a, base.clone(), |s, _| {
            runs += 1;
            Ok(Built::recorded(record_tree(s, "a", a_content)))
        })
        .unwrap();
        let b = Step::new("img", "script", "config.sh", vec![input("config.sh", "1")]);
        let (b, cur) = tree_step(store, mode, b, cur, |s, _| {
            runs += 1;
            Ok(Built::recorded(record_tree(s, "b", b"b")).log("b ran\n"))
        })
        .unwrap();
        let (image, _) = image_step(store, mode, "img", cur).unwrap();
        (vec![a, b, image], runs)
    }

    fn states(steps: &[Step]) -> Vec<State> {
        steps.iter().map(|s| s.state).collect()
    }

    #[test]
    fn plan_builds_nothing_then_build_then_everything_is_cached() {
        let (mut store, base) = with_base();
        let (plan, runs) = walk(&mut store, Mode::Plan, &base, "1", b"a");
        assert_eq!(states(&plan), [State::Missing, State::Pending, State::Pending]);
        assert_eq!(runs, 0);
        assert!(plan[0].key.is_some() && plan[1].key.is_none(), "a pending step has no key yet");
        let (built, runs) = walk(&mut store, Mode::Build, &base, "1", b"a");
        assert_eq!(states(&built), [State::Built, State::Built, State::Built]);
        assert_eq!(runs, 2);
        assert_eq!(built[2].tree, built[1].tree, "the image is the tree the steps ended with");
        let (again, runs) = walk(&mut store, Mode::Build, &base, "1", b"a");
        assert_eq!(states(&again), [State::Cached, State::Cached, State::Cached]);
        assert_eq!(runs, 0);
        let (plan, _) = walk(&mut store, Mode::Plan, &base, "1", b"a");
        assert_eq!(states(&plan), [State::Cached, State::Cached, State::Cached]);
        assert_eq!(plan.iter().map(|s| s.key).collect::<Vec<_>>(), again.iter().map(|s| s.key).collect::<Vec<_>>());
        let image = store.entry(&built[2].key.unwrap()).unwrap().unwrap();
        assert_eq!((image.kind.as_str(), image.name.as_str()), ("rootfs", "img"));
        let a = store.entry(&built[0].key.unwrap()).unwrap().unwrap();
        assert_eq!((a.kind.as_str(), a.name.as_str(), a.files, a.bytes), ("step", "img/files root", 1, 1));
        assert_eq!(store.entry_log(&built[1].key.unwrap()).unwrap().unwrap(), b"b ran\n", "the step's log is kept");
        assert_eq!(store.entry_log(&built[0].key.unwrap()).unwrap(), None);
    }

    #[test]
    fn a_step_that_yields_the_same_tree_leaves_later_steps_cached() {
        let (mut store, base) = with_base();
        walk(&mut store, Mode::Build, &base, "1", b"a");
        // The first step's input changes, its output does not: only it runs again.
        let (steps, runs) = walk(&mut store, Mode::Build, &base, "2", b"a");
        assert_eq!(states(&steps), [State::Built, State::Cached, State::Cached]);
        assert_eq!(runs, 1);
        // Its output changes too: the next step runs; it writes the tree it wrote before (it
        // does not read its base), so the cutoff comes one step later.
        let (steps, runs) = walk(&mut store, Mode::Build, &base, "3", b"other");
        assert_eq!(states(&steps), [State::Built, State::Built, State::Cached]);
        assert_eq!(runs, 2);
    }

    #[test]
    fn a_failed_step_records_nothing_and_says_which() {
        let (mut store, base) = with_base();
        let step = Step::new("img", "script", "config.sh", vec![]);
        let err =
            tree_step(&mut store, Mode::Build, step, base.clone(), |_, _| anyhow::bail!("exit status 1")).unwrap_err();
        assert_eq!(format!("{err:#}"), "img: step script config.sh: exit status 1");
        let step = Step::new("img", "script", "config.sh", vec![]);
        let (plan, _) = tree_step(&mut store, Mode::Plan, step, base, |_, _| unreachable!()).unwrap();
        assert_eq!(plan.state, State::Missing);
    }

    #[test]
    fn a_tree_step_needs_a_tree() {
        let mut store = MemoryStore::new();
        let step = Step::new("img", "files", "root", vec![]);
        let err = tree_step(&mut store, Mode::Build, step, Cur::Empty, |_, _| unreachable!()).unwrap_err();
        assert_eq!(err.to_string(), "img: the files step needs a tree to start from");
        let (image, cur) = image_step(&mut store, Mode::Build, "img", Cur::Empty).unwrap();
        assert_eq!(image.state, State::Pending);
        assert!(matches!(cur, Cur::Unknown));
    }
}
