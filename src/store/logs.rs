//! The logs kept with entries (see [`Backend::entry_log`]), gathered for an image: every entry
//! the image's entry reaches through its references, bases first, that kept a log.
//!
//! Order: an entry's references come before it (a step's base before the step), siblings by
//! creation time then key; each entry once. So an image's logs read in the order its steps ran,
//! its bases' steps first.

use std::collections::HashSet;

use crate::store::db::EntryRow;
use crate::store::digest::Digest;
use crate::store::Backend;

/// One entry's kept log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepLog {
    pub entry: EntryRow,
    pub log: String,
}

impl StepLog {
    /// Whether `what` names this step: its key (or a prefix of at least 4 hex digits), its entry
    /// name, the part after the image name (`script config.sh`), or the step's own name
    /// (`config.sh`), or its kind.
    pub fn is_named(&self, what: &str) -> bool {
        let name = self.entry.name.as_str();
        let after_image = name.split_once('/').map_or(name, |(_, rest)| rest);
        let (kind, own) = after_image.split_once(' ').unwrap_or((after_image, after_image));
        (what.len() >= 4 && self.entry.key.to_hex().starts_with(what)) || [name, after_image, own, kind].contains(&what)
    }
}

/// The logs of the entries `top` reaches, `top` included, in the order the module doc gives.
pub fn reachable<B: Backend + ?Sized>(store: &B, top: &Digest) -> anyhow::Result<Vec<StepLog>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    // Depth first, post-order, without recursion (chains of hundreds of steps).
    let mut stack: Vec<(Digest, bool)> = vec![(*top, false)];
    while let Some((key, expanded)) = stack.pop() {
        if expanded {
            if let (Some(log), Some(entry)) = (store.entry_log(&key)?, store.entry(&key)?) {
                out.push(StepLog { entry, log: String::from_utf8_lossy(&log).into_owned() });
            }
            continue;
        }
        if !seen.insert(key) {
            continue;
        }
        stack.push((key, true));
        let mut refs = Vec::new();
        for r in store.entry_refs(&key)? {
            if !seen.contains(&r) {
                let created = store.entry(&r)?.map_or(0, |e| e.created);
                refs.push((created, r));
            }
        }
        // Pushed newest first, so the oldest is visited (and listed) first.
        refs.sort();
        for (_, r) in refs.into_iter().rev() {
            stack.push((r, false));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::batch::Batch;
    use crate::store::db::NewEntry;
    use crate::store::memory::MemoryStore;
    use crate::store::meta::Meta;
    use crate::store::tree::Tree;

    #[test]
    fn an_images_logs_come_bases_first_each_once() {
        let mut store = MemoryStore::new();
        let mut batch = Batch::new();
        let tree =
            batch.put_tree(&Tree { meta: Meta { mode: 0o755, uid: 0, gid: 0, xattrs: vec![] }, entries: vec![] });
        store.commit(batch, None).unwrap();
        // base (log) <- merge (no log) <- scripts (log) <- image (no log); a diamond through
        // `other`, which also reaches base.
        let mut record = |name: &str, refs: &[Digest], log: Option<&str>| {
            let key = Digest::of(name.as_bytes());
            let e = NewEntry { key, kind: "step", name, tree, files: 0, bytes: 0, refs, log: log.map(str::as_bytes) };
            store.commit(Batch::new(), Some(&e)).unwrap();
            key
        };
        let base = record("base/script config.sh", &[], Some("base ran\n"));
        let merge = record("img/merge", &[base], None);
        let other = record("img/script images.sh", &[base], Some("images ran\n"));
        let scripts = record("img/script config.sh", &[merge, other], Some("config ran\n"));
        let image = record("img", &[scripts], None);
        let logs = reachable(&store, &image).unwrap();
        let names: Vec<&str> = logs.iter().map(|l| l.entry.name.as_str()).collect();
        assert_eq!(names, ["base/script config.sh", "img/script images.sh", "img/script config.sh"]);
        assert_eq!(logs[2].log, "config ran\n");
        let named = |what: &str| logs.iter().filter(|l| l.is_named(what)).count();
        assert_eq!((named("config.sh"), named("script"), named("script images.sh")), (2, 3, 1));
        assert_eq!(named(&scripts.to_hex()[..6]), 1);
        assert_eq!(named("nothing"), 0);
    }
}
