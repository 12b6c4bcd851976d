//! Retention: which generations of each image stay in the store.
//!
//! A generation is alive while its root `images/NAME/N` exists. Retention decides, per image,
//! which of the alive generations keep their roots; `gc` removes the others' roots and then
//! deletes whatever no root holds. Invariants:
//! - the newest generation of an image is never dropped by a policy (only `images rm` names it);
//! - a pinned generation is never dropped, not even by `images rm` (unpin it first);
//! - a generation is kept when any rule keeps it: one of the newest `keep_last`, built less than
//!   `keep_younger_than` ago, pinned, newest;
//! - the policy of an image is the first of: the command line's, its own in the store (`images
//!   keep NAME`), the one its description sets (`[retention]`, recorded by each build), the
//!   store's default `*`; an image with none keeps every generation;
//! - a dropped generation's row stays: `images history` shows it as collected.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use rusqlite::params;
use serde::Serialize;

use crate::graph::generations::{self, now, root_name, GenerationRow};
use crate::store::local::Store;

/// The image name that stands for every image without a policy of its own.
pub const DEFAULT: &str = "*";

/// What to keep; `None` means no rule of that kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub keep_last: Option<u64>,
    /// Seconds.
    pub keep_younger_than: Option<u64>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none() && self.keep_younger_than.is_none()
    }

    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if let Some(n) = self.keep_last {
            parts.push(format!("keep the last {n}"));
        }
        if let Some(s) = self.keep_younger_than {
            parts.push(format!("keep those younger than {}", crate::util::text::duration(s)));
        }
        if parts.is_empty() {
            "keep every generation".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Why a generation stays or goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Newest,
    Pinned,
    KeepLast,
    YoungerThan,
    NoPolicy,
    /// Dropped: no rule keeps it.
    Dropped,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Newest => "newest",
            Reason::Pinned => "pinned",
            Reason::KeepLast => "keep-last",
            Reason::YoungerThan => "younger-than",
            Reason::NoPolicy => "no policy",
            Reason::Dropped => "dropped",
        }
    }
}

/// The fate of one alive generation.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub image: String,
    pub generation: u64,
    pub created: i64,
    pub keep: bool,
    pub reason: Reason,
}

/// A policy from columns `keep_last, keep_younger_than` starting at `first`.
fn policy_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Policy> {
    Ok(Policy {
        keep_last: r.get::<_, Option<i64>>(first)?.map(|n| n as u64),
        keep_younger_than: r.get::<_, Option<i64>>(first + 1)?.map(|n| n as u64),
    })
}

/// The stored policies, by image (`*` for the default).
pub fn policies(store: &Store) -> anyhow::Result<BTreeMap<String, Policy>> {
    let mut stmt = store.db().sql().prepare("SELECT image, keep_last, keep_younger_than FROM retention")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, policy_at(r, 1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The policies descriptions set, by image, with the description file that set each.
pub fn described(store: &Store) -> anyhow::Result<BTreeMap<String, (Policy, String)>> {
    let mut stmt =
        store.db().sql().prepare("SELECT image, keep_last, keep_younger_than, document FROM retention_described")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, (policy_at(r, 1)?, r.get::<_, String>(3)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Store `policy` for `image` (or [`DEFAULT`]); an empty policy removes the stored one.
pub fn set_policy(store: &mut Store, image: &str, policy: &Policy) -> anyhow::Result<()> {
    if policy.keep_last == Some(0) {
        bail!("--keep-last 0 would keep nothing: the newest generation is always kept, use 1 or more");
    }
    let tx = store.db_mut().transaction()?;
    if policy.is_empty() {
        tx.sql().execute("DELETE FROM retention WHERE image = ?1", [image])?;
    } else {
        tx.sql().execute(
            "INSERT OR REPLACE INTO retention (image, keep_last, keep_younger_than) VALUES (?1, ?2, ?3)",
            params![image, policy.keep_last.map(|n| n as i64), policy.keep_younger_than.map(|n| n as i64)],
        )?;
    }
    tx.commit()
}

/// Pinned generations.
pub fn pins(store: &Store) -> anyhow::Result<BTreeSet<(String, u64)>> {
    let mut stmt = store.db().sql().prepare("SELECT image, number FROM pins")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Parse `NAME/GEN`.
pub fn parse_generation(spec: &str) -> anyhow::Result<(String, u64)> {
    let spec = spec.strip_prefix("images/").unwrap_or(spec);
    match spec.rsplit_once('/') {
        Some((image, n)) if !image.is_empty() => match n.parse::<u64>() {
            Ok(n) => Ok((image.to_string(), n)),
            Err(_) => bail!("`{spec}`: expected IMAGE/GENERATION, with a generation number (`debian-base/3`)"),
        },
        _ => bail!("`{spec}`: expected IMAGE/GENERATION (`debian-base/3`)"),
    }
}

/// The generation `image/number`, which must be alive.
fn alive(store: &Store, image: &str, number: u64) -> anyhow::Result<GenerationRow> {
    let gens = generations::generations(store, Some(image))?;
    if gens.is_empty() {
        bail!("no image `{image}` has been built in this store (see `strata images ls`)");
    }
    let Some(g) = gens.into_iter().find(|g| g.number == number) else {
        bail!("image `{image}` has no generation {number} (see `strata images history {image}`)");
    };
    if store.db().root(&root_name(image, number))?.is_none() {
        bail!("generation {image}/{number} was removed (its root is gone)");
    }
    Ok(g)
}

/// Pin a generation: retention and `images rm` leave it alone. Returns whether it was new.
pub fn pin(store: &mut Store, image: &str, number: u64) -> anyhow::Result<bool> {
    alive(store, image, number)?;
    let now = now();
    let tx = store.db_mut().transaction()?;
    let n = tx.sql().execute(
        "INSERT OR IGNORE INTO pins (image, number, created) VALUES (?1, ?2, ?3)",
        params![image, number as i64, now],
    )?;
    tx.commit()?;
    Ok(n == 1)
}

/// Unpin a generation; whether it was pinned.
pub fn unpin(store: &mut Store, image: &str, number: u64) -> anyhow::Result<bool> {
    let tx = store.db_mut().transaction()?;
    let n = tx.sql().execute("DELETE FROM pins WHERE image = ?1 AND number = ?2", params![image, number as i64])?;
    tx.commit()?;
    Ok(n == 1)
}

/// Decide every alive generation of `images` (all images when empty) under `over` (the command
/// line's policy) or the stored ones, at time `now` (unix seconds).
pub fn plan(store: &Store, over: Option<&Policy>, images: &[String], now: i64) -> anyhow::Result<Vec<Decision>> {
    let stored = policies(store)?;
    let described = described(store)?;
    let pins = pins(store)?;
    let roots: BTreeSet<String> = store.db().roots()?.into_iter().map(|r| r.name).collect();
    let mut by_image: BTreeMap<String, Vec<GenerationRow>> = BTreeMap::new();
    for g in generations::generations(store, None)? {
        if roots.contains(&root_name(&g.image, g.number)) {
            by_image.entry(g.image.clone()).or_default().push(g);
        }
    }
    let unknown: Vec<&String> = images.iter().filter(|i| !by_image.contains_key(*i)).collect();
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(|i| format!("`{i}`")).collect();
        bail!("no alive generation of {} in this store (see `strata images ls`)", names.join(", "));
    }
    let mut out = Vec::new();
    for (image, gens) in by_image {
        if !images.is_empty() && !images.contains(&image) {
            continue;
        }
        let policy = over.copied().or_else(|| {
            stored
                .get(&image)
                .or_else(|| described.get(&image).map(|(p, _)| p))
                .or_else(|| stored.get(DEFAULT))
                .copied()
        });
        let newest_first: Vec<&GenerationRow> = gens.iter().rev().collect();
        for (rank, g) in newest_first.iter().enumerate() {
            let reason = if rank == 0 {
                Reason::Newest
            } else if pins.contains(&(image.clone(), g.number)) {
                Reason::Pinned
            } else {
                match policy {
                    None => Reason::NoPolicy,
                    Some(p) if p.is_empty() => Reason::NoPolicy,
                    Some(p) => {
                        if p.keep_last.is_some_and(|n| (rank as u64) < n) {
                            Reason::KeepLast
                        } else if p.keep_younger_than.is_some_and(|s| now.saturating_sub(g.created) < s as i64) {
                            Reason::YoungerThan
                        } else {
                            Reason::Dropped
                        }
                    }
                }
            };
            out.push(Decision {
                image: image.clone(),
                generation: g.number,
                created: g.created,
                keep: reason != Reason::Dropped,
                reason,
            });
        }
    }
    out.sort_by(|a, b| (&a.image, a.generation).cmp(&(&b.image, b.generation)));
    Ok(out)
}

/// Remove the roots of the dropped generations, in one transaction.
pub fn apply(store: &mut Store, decisions: &[Decision]) -> anyhow::Result<()> {
    let tx = store.db_mut().transaction()?;
    for d in decisions.iter().filter(|d| !d.keep) {
        tx.remove_root(&root_name(&d.image, d.generation))?;
    }
    tx.commit()
}

/// `images rm`: remove generation `number` of `image`, or every alive generation when `None`.
/// Pinned generations are refused, all named at once. Returns the generations removed.
pub fn remove(store: &mut Store, image: &str, number: Option<u64>) -> anyhow::Result<Vec<u64>> {
    let targets: Vec<u64> = match number {
        Some(n) => vec![alive(store, image, n)?.number],
        None => {
            let gens = generations::generations(store, Some(image))?;
            if gens.is_empty() {
                bail!("no image `{image}` has been built in this store (see `strata images ls`)");
            }
            let mut alive = vec![];
            for g in gens {
                if store.db().root(&root_name(image, g.number))?.is_some() {
                    alive.push(g.number);
                }
            }
            alive
        }
    };
    let pins = pins(store)?;
    let pinned: Vec<String> =
        targets.iter().filter(|n| pins.contains(&(image.to_string(), **n))).map(|n| format!("{image}/{n}")).collect();
    if !pinned.is_empty() {
        bail!(
            "{} pinned: unpin first (`strata images unpin {}`)",
            pinned.join(", "),
            pinned.first().map(String::as_str).unwrap_or_default()
        );
    }
    let tx = store.db_mut().transaction()?;
    for n in &targets {
        tx.remove_root(&root_name(image, *n))?;
    }
    tx.commit()?;
    Ok(targets)
}

/// The generations roots keep alive (image, number, entry), for the collectors of things made
/// from them (OSTree commits, artifacts).
pub fn alive_generations(store: &Store) -> anyhow::Result<Vec<GenerationRow>> {
    let roots: BTreeSet<String> = store.db().roots()?.into_iter().map(|r| r.name).collect();
    Ok(generations::generations(store, None)?
        .into_iter()
        .filter(|g| roots.contains(&root_name(&g.image, g.number)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_specs() {
        assert_eq!(parse_generation("debian-base/3").unwrap(), ("debian-base".into(), 3));
        assert_eq!(parse_generation("images/web/12").unwrap(), ("web".into(), 12));
        assert!(parse_generation("web").unwrap_err().to_string().contains("IMAGE/GENERATION"));
        assert!(parse_generation("web/x").is_err());
        assert!(parse_generation("/3").is_err());
    }

    #[test]
    fn policy_words() {
        assert_eq!(Policy::default().describe(), "keep every generation");
        let p = Policy { keep_last: Some(5), keep_younger_than: Some(30 * 86400) };
        assert_eq!(p.describe(), "keep the last 5, keep those younger than 30d");
    }
}
