//! Keeping a repository fit to serve: static deltas from earlier commits, and history pruning
//! (as `ostree prune --refs-only --depth` does).

use anyhow::Context;
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// Generate static deltas to `commit` from each of its last `n` ancestors that the repository
/// has; returns the delta names (`FROM-TO`). Existing deltas are kept.
pub fn generate_deltas(repo: &ostree::Repo, commit: &str, n: u32) -> anyhow::Result<Vec<String>> {
    let existing: Vec<String> =
        repo.list_static_delta_names(gio::Cancellable::NONE)?.iter().map(|s| s.to_string()).collect();
    let mut made = Vec::new();
    let mut from = parent_of(repo, commit)?;
    for _ in 0..n {
        let Some(parent) = from else { break };
        let name = format!("{parent}-{commit}");
        if !existing.contains(&name) {
            let _span = tracing::debug_span!("static delta", from = %parent).entered();
            let params = glib::VariantDict::new(None);
            // Whole files below this size (MiB) go into the delta rather than being fetched.
            params.insert_value("min-fallback-size", &4u32.to_variant());
            repo.static_delta_generate(
                ostree::StaticDeltaGenerateOpt::Major,
                Some(&parent),
                commit,
                None,
                Some(&params.end()),
                gio::Cancellable::NONE,
            )
            .with_context(|| format!("cannot generate the static delta from {parent}"))?;
        }
        made.push(name);
        from = parent_of(repo, &parent)?;
    }
    Ok(made)
}

/// The parent of `commit`, if the repository holds it.
pub fn parent_of(repo: &ostree::Repo, commit: &str) -> anyhow::Result<Option<String>> {
    let (variant, _) = repo.load_commit(commit)?;
    let Some(parent) = ostree::commit_get_parent(&variant) else { return Ok(None) };
    let present = repo.has_object(ostree::ObjectType::Commit, &parent, gio::Cancellable::NONE)?;
    Ok(present.then(|| parent.to_string()))
}

/// What pruning removed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Pruned {
    pub objects: u64,
    pub bytes: u64,
}

/// Keep the newest `keep` commits of every ref (at least 1) and delete unreachable objects,
/// then the static deltas that lead to deleted commits.
pub fn prune(repo: &ostree::Repo, keep: u32) -> anyhow::Result<Pruned> {
    let depth = keep.max(1) as i32 - 1;
    let (_, pruned, bytes) = repo
        .prune(ostree::RepoPruneFlags::REFS_ONLY, depth, gio::Cancellable::NONE)
        .context("cannot prune the repository")?;
    repo.prune_static_deltas(None, gio::Cancellable::NONE).context("cannot prune static deltas")?;
    Ok(Pruned { objects: pruned.max(0) as u64, bytes })
}
