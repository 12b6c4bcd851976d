//! Image generations: each build that yields a new root tree becomes generation N of its image,
//! kept alive by the root `images/<image>/<N>`, with the inputs of every step recorded so that
//! [`why`] can say what changed since.

use serde::{Deserialize, Serialize};

use super::{Input, Outcome, State};
use rusqlite::{params, OptionalExtension};

use crate::store::db::{digest_col, Tx};
use crate::store::digest::Digest;
use crate::store::local::Store;

/// The root name of a generation.
pub fn root_name(image: &str, number: u64) -> String {
    format!("images/{image}/{number}")
}

/// A step as recorded with a generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedStep {
    pub image: String,
    pub kind: String,
    pub name: String,
    pub inputs: Vec<Input>,
}

/// Record the outcome of a build as a generation, unless it equals the newest one. Returns the
/// generation number and whether it is new.
pub fn record(store: &mut Store, outcome: &Outcome) -> anyhow::Result<(u64, bool)> {
    let rootfs = outcome.rootfs.as_ref().ok_or_else(|| anyhow::anyhow!("the build produced no root tree"))?;
    let steps: Vec<RecordedStep> = outcome
        .steps
        .iter()
        .map(|s| RecordedStep {
            image: s.image.clone(),
            kind: s.kind.clone(),
            name: s.name.clone(),
            inputs: s.inputs.clone(),
        })
        .collect();
    let inputs = serde_json::to_string(&steps)?;
    // Read and written in one (immediate) transaction: two builds of one image at once get
    // consecutive numbers.
    let tx = store.db_mut().transaction()?;
    record_described(&tx, &outcome.image, outcome.retention.as_ref(), &outcome.document)?;
    let last = last_generation(&tx, &outcome.image)?;
    if let Some((number, entry)) = last {
        if entry == rootfs.key {
            // The same image: keep the generation, with the inputs of this build, which `why`
            // compares against (an edit whose effect was identical is no longer news). A
            // generation removed by `images rm` or retention is alive again.
            set_generation_inputs(&tx, &outcome.image, number, &inputs)?;
            tx.sql().execute(
                "INSERT OR IGNORE INTO roots (name, entry, updated) VALUES (?1, ?2, ?3)",
                params![root_name(&outcome.image, number), rootfs.key.as_bytes(), now()],
            )?;
            tx.commit()?;
            return Ok((number, false));
        }
    }
    let number = last.map_or(1, |(n, _)| n + 1);
    let row = GenerationRow {
        image: outcome.image.clone(),
        number,
        entry: rootfs.key,
        tree: rootfs.tree,
        created: now(),
        description: outcome.document.clone(),
        inputs,
    };
    insert_generation(&tx, &row)?;
    tx.set_root(&root_name(&outcome.image, number), &rootfs.key)?;
    tx.commit()?;
    Ok((number, true))
}

/// Unix seconds now (the time generations, pins and retention record).
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// One input that differs between two builds.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub name: String,
    pub before: Option<String>,
    pub now: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepWhy {
    pub image: String,
    pub kind: String,
    pub name: String,
    pub state: State,
    /// The step did not exist in the last generation.
    pub new: bool,
    pub changes: Vec<Change>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Why {
    pub image: String,
    /// The generation compared with.
    pub generation: Option<u64>,
    pub tree: Option<Digest>,
    pub steps: Vec<StepWhy>,
    /// Steps of the last generation that the description no longer has.
    pub dropped: Vec<String>,
}

fn diff_inputs(before: &[Input], now: &[Input]) -> Vec<Change> {
    let old: std::collections::BTreeMap<&str, &str> =
        before.iter().map(|i| (i.name.as_str(), i.value.as_str())).collect();
    let new: std::collections::BTreeMap<&str, &str> = now.iter().map(|i| (i.name.as_str(), i.value.as_str())).collect();
    let mut out = Vec::new();
    for (k, v) in &new {
        match old.get(k) {
            Some(o) if o == v => {}
            o => out.push(Change { name: k.to_string(), before: o.map(|s| s.to_string()), now: Some(v.to_string()) }),
        }
    }
    for (k, o) in &old {
        if !new.contains_key(k) {
            out.push(Change { name: k.to_string(), before: Some(o.to_string()), now: None });
        }
    }
    out
}

/// Compare a plan with the newest generation of its image.
pub fn why(store: &Store, plan: &Outcome) -> anyhow::Result<Why> {
    let gens = generations(store, Some(&plan.image))?;
    let last = gens.last();
    let recorded: Vec<RecordedStep> = match last {
        Some(g) => serde_json::from_str(&g.inputs)?,
        None => vec![],
    };
    let id = |image: &str, kind: &str, name: &str| format!("{image}: {kind} {name}");
    // The unpack step is named by its package count, which changes with the set: match by kind.
    let same = |r: &RecordedStep, image: &str, kind: &str, name: &str| {
        r.image == image && r.kind == kind && (r.name == name || kind == "unpack" || kind == "packages")
    };
    let mut steps = Vec::new();
    for s in &plan.steps {
        let before = recorded.iter().find(|r| same(r, &s.image, &s.kind, &s.name));
        steps.push(StepWhy {
            image: s.image.clone(),
            kind: s.kind.clone(),
            name: s.name.clone(),
            state: s.state,
            new: before.is_none() && last.is_some(),
            changes: before.map(|b| diff_inputs(&b.inputs, &s.inputs)).unwrap_or_default(),
        });
    }
    let dropped = recorded
        .iter()
        .filter(|r| !plan.steps.iter().any(|s| same(r, &s.image, &s.kind, &s.name)))
        .map(|r| id(&r.image, &r.kind, &r.name))
        .collect();
    Ok(Why {
        image: plan.image.clone(),
        generation: last.map(|g| g.number),
        tree: last.map(|g| g.tree),
        steps,
        dropped,
    })
}

/// Generations of an image, with what changed between each and the one before.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryItem {
    pub generation: u64,
    pub created: i64,
    pub entry: Digest,
    pub tree: Digest,
    pub description: String,
    /// The entry is gone (its root was removed and gc ran).
    pub collected: bool,
    pub changes: Vec<Change>,
}

pub fn history(store: &Store, image: &str) -> anyhow::Result<Vec<HistoryItem>> {
    let gens = generations(store, Some(image))?;
    if gens.is_empty() {
        anyhow::bail!("no image `{image}` has been built in this store (see `strata images ls`)");
    }
    let mut out = Vec::new();
    let mut prev: Vec<RecordedStep> = Vec::new();
    for g in gens {
        let steps: Vec<RecordedStep> = serde_json::from_str(&g.inputs)?;
        let flat = |s: &[RecordedStep]| -> Vec<Input> {
            s.iter()
                .flat_map(|r| {
                    r.inputs
                        .iter()
                        .map(move |i| Input { name: format!("{}: {}", r.image, i.name), value: i.value.clone() })
                })
                .collect()
        };
        let changes = if out.is_empty() { vec![] } else { diff_inputs(&flat(&prev), &flat(&steps)) };
        out.push(HistoryItem {
            generation: g.number,
            created: g.created,
            entry: g.entry,
            tree: g.tree,
            description: g.description,
            collected: store.db().peek_entry(&g.entry)?.is_none(),
            changes,
        });
        prev = steps;
    }
    Ok(out)
}

// The generations table's SQL (store-schema/0002_generations.sql).

/// One generation of an image.
#[derive(Clone, Debug)]
pub struct GenerationRow {
    pub image: String,
    pub number: u64,
    pub entry: Digest,
    pub tree: Digest,
    pub created: i64,
    pub description: String,
    pub inputs: String,
}

/// Generations of `image` (all images when `None`), oldest first.
pub fn generations(store: &Store, image: Option<&str>) -> anyhow::Result<Vec<GenerationRow>> {
    let mut stmt = store.db().sql().prepare(
        "SELECT image, number, entry, tree, created, description, inputs FROM generations \
         WHERE ?1 IS NULL OR image = ?1 ORDER BY image, number",
    )?;
    let rows = stmt.query_map([image], |r| {
        Ok(GenerationRow {
            image: r.get(0)?,
            number: r.get::<_, i64>(1)? as u64,
            entry: digest_col(r, 2)?,
            tree: digest_col(r, 3)?,
            created: r.get(4)?,
            description: r.get(5)?,
            inputs: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest generation of `image`: its number and entry.
pub fn last_generation(tx: &Tx<'_>, image: &str) -> anyhow::Result<Option<(u64, Digest)>> {
    let mut stmt =
        tx.sql().prepare("SELECT number, entry FROM generations WHERE image = ?1 ORDER BY number DESC LIMIT 1")?;
    Ok(stmt.query_row([image], |r| Ok((r.get::<_, i64>(0)? as u64, digest_col(r, 1)?))).optional()?)
}

pub fn insert_generation(tx: &Tx<'_>, g: &GenerationRow) -> anyhow::Result<()> {
    tx.sql().execute(
        "INSERT INTO generations (image, number, entry, tree, created, description, inputs) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![g.image, g.number as i64, g.entry.as_bytes(), g.tree.as_bytes(), g.created, g.description, g.inputs],
    )?;
    Ok(())
}

pub fn set_generation_inputs(tx: &Tx<'_>, image: &str, number: u64, inputs: &str) -> anyhow::Result<()> {
    tx.sql().execute(
        "UPDATE generations SET inputs = ?3 WHERE image = ?1 AND number = ?2",
        params![image, number as i64, inputs],
    )?;
    Ok(())
}

/// Record, in the build's transaction, the policy `image`'s description sets (or that it sets
/// none any more).
pub fn record_described(
    tx: &crate::store::db::Tx<'_>,
    image: &str,
    policy: Option<&crate::description::Retention>,
    document: &str,
) -> anyhow::Result<()> {
    match policy {
        None => {
            tx.sql().execute("DELETE FROM retention_described WHERE image = ?1", [image])?;
        }
        Some(p) => {
            tx.sql().execute(
                "INSERT OR REPLACE INTO retention_described (image, keep_last, keep_younger_than, document) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![image, p.keep_last.map(|n| n as i64), p.keep_younger_than.map(|n| n as i64), document],
            )?;
        }
    }
    Ok(())
}
