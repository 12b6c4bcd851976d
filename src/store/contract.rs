//! The [`Backend`] contract, as tests that run against every backend (see `store/mod.rs`).
//! A new backend adds one line to [`backends`] and must pass all of them.

use crate::store::batch::Batch;
use crate::store::db::NewEntry;
use crate::store::digest::Digest;
use crate::store::error::StoreError;
use crate::store::local::{OpenOptions, Store};
use crate::store::memory::MemoryStore;
use crate::store::meta::Meta;
use crate::store::tree::{Name, Node, Tree};
use crate::store::Backend;

/// Each backend, fresh, with what keeps it alive (the local store's directory).
fn backends() -> Vec<(&'static str, Box<dyn Backend>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let local = Store::open(&dir.path().join("store"), &OpenOptions::default(), || {}).unwrap();
    vec![("local", Box::new(local), Some(dir)), ("memory", Box::new(MemoryStore::new()), None)]
}

fn meta(mode: u32) -> Meta {
    Meta { mode, uid: 0, gid: 0, xattrs: vec![] }
}

/// A tree with one file holding `content`, its objects and tree in `batch`.
fn one_file(store: &dyn Backend, batch: &mut Batch, content: &[u8]) -> Digest {
    let node = batch.put_bytes(store, content, meta(0o644)).unwrap();
    let tree = Tree { meta: meta(0o755), entries: vec![(Name::new("f").unwrap(), node)] };
    batch.put_tree(&tree)
}

fn entry<'a>(key: Digest, tree: Digest, refs: &'a [Digest]) -> NewEntry<'a> {
    NewEntry { key, kind: "layer", name: "n", tree, files: 1, bytes: 2, refs, log: None }
}

fn store_error(e: &anyhow::Error) -> Option<&StoreError> {
    e.downcast_ref::<StoreError>()
}

#[test]
fn missing_things_are_misses_or_typed_errors() {
    for (name, store, _keep) in backends() {
        let id = Digest::of(b"nothing");
        assert_eq!(store.has_objects(&[id]).unwrap(), vec![false], "{name}");
        assert_eq!(store_error(&store.read_object(&id).unwrap_err()), Some(&StoreError::ObjectMissing(id)), "{name}");
        assert!(store.tree_data(&id).unwrap().is_none(), "{name}");
        assert_eq!(store_error(&store.tree(&id).unwrap_err()), Some(&StoreError::TreeMissing(id)), "{name}");
        assert!(store.entry(&id).unwrap().is_none(), "{name}");
        assert!(store.entry_refs(&id).unwrap().is_empty(), "{name}");
        assert!(store.root("tags/x").unwrap().is_none(), "{name}");
    }
}

#[test]
fn writes_are_invisible_until_committed_then_read_back() {
    for (name, mut store, _keep) in backends() {
        let mut batch = Batch::new();
        let tree = one_file(&*store, &mut batch, b"hello");
        let Node::File { meta: m, size, content, .. } = store_tree_node(&batch, &tree) else { unreachable!() };
        let object = crate::store::tree::object_id(&m, size, &content);
        assert_eq!(content, Digest::of(b"hello"), "{name}: content is blake3");
        assert_eq!(store.has_objects(&[object]).unwrap(), vec![false], "{name}: written, not committed");
        assert!(store.tree_data(&tree).unwrap().is_none(), "{name}");
        store.commit(batch, None).unwrap();
        assert_eq!(store.has_objects(&[object]).unwrap(), vec![true], "{name}");
        assert_eq!(store.read_object(&object).unwrap(), b"hello", "{name}");
        let t = store.tree(&tree).unwrap();
        assert_eq!(t.id(), tree, "{name}: the tree reads back under its id");
        assert_eq!(store.read_file(t.get(b"f").unwrap()).unwrap(), b"hello", "{name}");
        assert_eq!(store.lookup(&tree, &[b"f"]).unwrap(), t.get(b"f").cloned(), "{name}");
        assert!(store.lookup(&tree, &[b"f", b"below"]).unwrap().is_none(), "{name}");
    }
}

/// The node of `tree`'s single file, read from the batch before it is committed.
fn store_tree_node(batch: &Batch, tree: &Digest) -> Node {
    let (_, data) = batch.trees.iter().find(|(id, _)| id == tree).unwrap();
    Tree::decode(data).unwrap().entries[0].1.clone()
}

#[test]
fn writing_a_recorded_object_again_is_harmless_and_not_new() {
    for (name, mut store, _keep) in backends() {
        let w = store.write_object(&mut &b"same"[..], &meta(0o644), 100).unwrap();
        assert!(w.new, "{name}");
        let mut batch = Batch::new();
        batch.record_placed(w.id, w.size);
        store.commit(batch, None).unwrap();
        let again = store.write_object(&mut &b"same"[..], &meta(0o644), 100).unwrap();
        assert_eq!((again.id, again.content, again.size, again.new), (w.id, w.content, w.size, false), "{name}");
        assert_eq!(store.read_object(&w.id).unwrap(), b"same", "{name}");
        // The same content with other metadata is another object.
        let other = store.write_object(&mut &b"same"[..], &meta(0o600), 100).unwrap();
        assert!(other.new && other.id != w.id && other.content == w.content, "{name}");
    }
}

#[test]
fn an_object_over_its_limit_is_refused() {
    for (name, store, _keep) in backends() {
        let err = store.write_object(&mut &b"0123456789"[..], &meta(0o644), 9).unwrap_err();
        assert!(err.to_string().contains("larger than the limit of 9 bytes"), "{name}: {err}");
        assert!(store.write_object(&mut &b"0123456789"[..], &meta(0o644), 10).is_ok(), "{name}");
    }
}

#[test]
fn entries_keep_their_first_recording_and_their_refs() {
    for (name, mut store, _keep) in backends() {
        let mut batch = Batch::new();
        let tree = one_file(&*store, &mut batch, b"a");
        let (base, top) = (Digest::of(b"base"), Digest::of(b"top"));
        store.commit(batch, Some(&entry(base, tree, &[]))).unwrap();
        store.commit(Batch::new(), Some(&entry(top, tree, &[base]))).unwrap();
        let again = NewEntry { name: "other", files: 9, ..entry(top, tree, &[]) };
        store.commit(Batch::new(), Some(&again)).unwrap();
        let e = store.entry(&top).unwrap().unwrap();
        assert_eq!((e.name.as_str(), e.files, e.bytes, e.tree), ("n", 1, 2, tree), "{name}");
        assert_eq!(store.entry_refs(&top).unwrap(), vec![base], "{name}");
        let all: Vec<Digest> = store.entries().unwrap().iter().map(|e| e.key).collect();
        assert_eq!(all.len(), 2, "{name}");
        assert!(all.contains(&base) && all.contains(&top), "{name}");
    }
}

#[test]
fn a_log_is_kept_with_its_entry_and_only_its_first_recording() {
    for (name, mut store, _keep) in backends() {
        let mut batch = Batch::new();
        let tree = one_file(&*store, &mut batch, b"l");
        let (quiet, loud) = (Digest::of(b"quiet"), Digest::of(b"loud"));
        store.commit(batch, Some(&entry(quiet, tree, &[]))).unwrap();
        let text = "Setting up tzdata (2024a-0+deb12u1) ...\n".repeat(500);
        let refs = [quiet];
        let logged = NewEntry { log: Some(text.as_bytes()), ..entry(loud, tree, &refs) };
        store.commit(Batch::new(), Some(&logged)).unwrap();
        assert_eq!(store.entry_log(&quiet).unwrap(), None, "{name}: a step that ran nothing");
        assert_eq!(store.entry_log(&loud).unwrap().as_deref(), Some(text.as_bytes()), "{name}");
        let again = NewEntry { log: Some(b"another run".as_slice()), ..entry(loud, tree, &refs) };
        store.commit(Batch::new(), Some(&again)).unwrap();
        assert_eq!(store.entry_log(&loud).unwrap().as_deref(), Some(text.as_bytes()), "{name}: the first log stays");
        assert_eq!(store.entry_log(&Digest::of(b"unknown")).unwrap(), None, "{name}");
    }
}

#[test]
fn a_commit_that_breaks_the_contract_records_nothing() {
    for (name, mut store, _keep) in backends() {
        // An entry whose tree is nowhere.
        let mut batch = Batch::new();
        let tree = one_file(&*store, &mut batch, b"lost");
        let missing = Digest::of(b"no tree");
        let err = store.commit(batch, Some(&entry(Digest::of(b"k"), missing, &[]))).unwrap_err();
        assert_eq!(store_error(&err), Some(&StoreError::TreeMissing(missing)), "{name}");
        assert!(store.tree_data(&tree).unwrap().is_none(), "{name}: the batch's tree was not recorded");
        // An entry that references an unknown entry.
        let mut batch = Batch::new();
        let tree = one_file(&*store, &mut batch, b"lost too");
        let unknown = Digest::of(b"unknown");
        let err = store.commit(batch, Some(&entry(Digest::of(b"k"), tree, &[unknown]))).unwrap_err();
        assert_eq!(store_error(&err), Some(&StoreError::EntryMissing(unknown)), "{name}");
        assert!(store.entry(&Digest::of(b"k")).unwrap().is_none(), "{name}");
        assert!(store.tree_data(&tree).unwrap().is_none(), "{name}");
    }
}

#[test]
fn roots_name_recorded_entries() {
    for (name, mut store, _keep) in backends() {
        let mut batch = Batch::new();
        let tree = one_file(&*store, &mut batch, b"r");
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        store.commit(batch, Some(&entry(a, tree, &[]))).unwrap();
        store.commit(Batch::new(), Some(&entry(b, tree, &[]))).unwrap();
        let unknown = Digest::of(b"unknown");
        let err = store.set_root("tags/x", &unknown).unwrap_err();
        assert_eq!(store_error(&err), Some(&StoreError::EntryMissing(unknown)), "{name}");
        assert!(store.set_root("dead", &a).is_err(), "{name}: a hex name is refused");
        store.set_root("tags/z", &a).unwrap();
        store.set_root("tags/x", &a).unwrap();
        store.set_root("tags/x", &b).unwrap();
        assert_eq!(store.root("tags/x").unwrap().unwrap().entry, b, "{name}: a root moves");
        let names: Vec<String> = store.roots().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["tags/x", "tags/z"], "{name}: by name");
        assert!(store.remove_root("tags/x").unwrap(), "{name}");
        assert!(!store.remove_root("tags/x").unwrap(), "{name}");
        assert!(store.root("tags/x").unwrap().is_none(), "{name}");
    }
}

#[test]
fn a_corrupt_tree_is_named() {
    // Only reachable through a backend whose storage was damaged: write rows directly.
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("store"), &OpenOptions::default(), || {}).unwrap();
    let id = Digest::of(b"garbage");
    let tx = store.db_mut().transaction().unwrap();
    tx.insert_tree(&id, b"garbage").unwrap();
    tx.commit().unwrap();
    let err = store.tree(&id).unwrap_err();
    assert!(matches!(store_error(&err), Some(StoreError::CorruptTree { id: i, .. }) if *i == id), "{err:#}");
    assert!(err.to_string().starts_with(&format!("tree {id} in the store is corrupt")), "{err}");
}
