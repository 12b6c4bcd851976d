//! Building trees in memory from nodes that arrive one path at a time (package archives), then
//! encoding them bottom-up.
//!
//! The builder enforces what an untrusted archive must not do: put a node below a symlink or
//! below a non-directory, or name the same non-directory path twice. Missing parent directories
//! are created with root ownership and mode 0755, as `dpkg` does. Hardlink groups get provisional
//! numbers while building and are renumbered in sorted depth-first order by [`TreeBuilder::finish`],
//! so the result does not depend on archive order.

use std::collections::{BTreeMap, HashMap};

use crate::store::digest::Digest;
use crate::store::meta::Meta;
use crate::store::tree::{Name, Node, Tree, TreeRows};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("`{path}` would be created through the symlink `{link}`")]
    ThroughSymlink { path: String, link: String },
    #[error("`{path}` would be created below `{parent}`, which is not a directory")]
    NotADirectory { path: String, parent: String },
    #[error("`{path}` appears twice")]
    Duplicate { path: String },
    #[error("`{path}` replaces a directory with a non-directory")]
    ReplacesDirectory { path: String },
}

#[derive(Default)]
struct Dir {
    meta: Meta,
    entries: BTreeMap<Name, Slot>,
}

enum Slot {
    Dir(Dir),
    Leaf(Node),
}

/// The metadata of a directory an archive did not describe itself.
pub fn implicit_dir_meta() -> Meta {
    Meta { mode: 0o755, uid: 0, gid: 0, xattrs: vec![] }
}

pub struct TreeBuilder {
    root: Dir,
    /// The metadata of parent directories created because a path needed them.
    implicit: Meta,
}

fn show(path: &[Name]) -> String {
    let mut s = String::new();
    for n in path {
        s.push('/');
        s.push_str(&crate::util::text::escape_path(n.as_bytes()));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

impl TreeBuilder {
    pub fn new(root_meta: Meta) -> TreeBuilder {
        TreeBuilder::with_implicit(root_meta, implicit_dir_meta())
    }

    /// A builder whose missing parent directories get `implicit` (an OCI layer marks them, so
    /// that they keep the metadata of the layers below).
    pub fn with_implicit(root_meta: Meta, implicit: Meta) -> TreeBuilder {
        TreeBuilder { root: Dir { meta: root_meta, entries: BTreeMap::new() }, implicit }
    }

    /// The directory that will hold `path`'s last component, creating missing parents.
    fn parent_mut(&mut self, path: &[Name]) -> Result<&mut Dir, BuildError> {
        let mut dir = &mut self.root;
        for (i, name) in path[..path.len() - 1].iter().enumerate() {
            let slot = dir
                .entries
                .entry(name.clone())
                .or_insert_with(|| Slot::Dir(Dir { meta: self.implicit.clone(), entries: BTreeMap::new() }));
            dir = match slot {
                Slot::Dir(d) => d,
                Slot::Leaf(Node::Symlink { .. }) => {
                    return Err(BuildError::ThroughSymlink { path: show(path), link: show(&path[..=i]) })
                }
                Slot::Leaf(_) => return Err(BuildError::NotADirectory { path: show(path), parent: show(&path[..=i]) }),
            };
        }
        Ok(dir)
    }

    /// Create (or update the metadata of) the directory at `path`; an empty path is the root.
    pub fn mkdir(&mut self, path: &[Name], meta: Meta) -> Result<(), BuildError> {
        let Some(last) = path.last() else {
            self.root.meta = meta;
            return Ok(());
        };
        let parent = self.parent_mut(path)?;
        match parent.entries.get_mut(last) {
            Some(Slot::Dir(d)) => d.meta = meta,
            Some(Slot::Leaf(_)) => return Err(BuildError::Duplicate { path: show(path) }),
            None => {
                parent.entries.insert(last.clone(), Slot::Dir(Dir { meta, entries: BTreeMap::new() }));
            }
        }
        Ok(())
    }

    /// Add a non-directory node at `path` (which must not be empty or exist already).
    pub fn insert(&mut self, path: &[Name], node: Node) -> Result<(), BuildError> {
        assert!(!matches!(node, Node::Directory { .. }), "use mkdir or insert_tree for directories");
        let Some(last) = path.last() else {
            return Err(BuildError::ReplacesDirectory { path: "/".into() });
        };
        let parent = self.parent_mut(path)?;
        match parent.entries.get(last) {
            Some(Slot::Dir(_)) => Err(BuildError::ReplacesDirectory { path: show(path) }),
            Some(Slot::Leaf(_)) => Err(BuildError::Duplicate { path: show(path) }),
            None => {
                parent.entries.insert(last.clone(), Slot::Leaf(node));
                Ok(())
            }
        }
    }

    /// Put an already-stored tree at `path` (a top-level child), e.g. to combine subtrees.
    pub fn insert_tree(&mut self, name: Name, tree: Digest) {
        self.root.entries.insert(name, Slot::Leaf(Node::Directory { tree }));
    }

    /// The node at `path`, if it is a leaf.
    pub fn get(&self, path: &[Name]) -> Option<&Node> {
        let mut dir = &self.root;
        let (last, parents) = path.split_last()?;
        for name in parents {
            match dir.entries.get(name)? {
                Slot::Dir(d) => dir = d,
                Slot::Leaf(_) => return None,
            }
        }
        match dir.entries.get(last)? {
            Slot::Leaf(n) => Some(n),
            Slot::Dir(_) => None,
        }
    }

    /// Mark the file at `path` as a member of provisional hardlink group `group`.
    pub fn set_link(&mut self, path: &[Name], group: u32) {
        let Some((last, parents)) = path.split_last() else { return };
        let mut dir = &mut self.root;
        for name in parents {
            match dir.entries.get_mut(name) {
                Some(Slot::Dir(d)) => dir = d,
                _ => return,
            }
        }
        if let Some(Slot::Leaf(Node::File { link, .. })) = dir.entries.get_mut(last) {
            *link = group;
        }
    }

    /// Encode every directory bottom-up into `out` and return the root tree id.
    pub fn finish(self, out: &mut TreeRows) -> Digest {
        let mut renumber = HashMap::new();
        encode(self.root, out, &mut renumber)
    }
}

fn encode(dir: Dir, out: &mut TreeRows, renumber: &mut HashMap<u32, u32>) -> Digest {
    let mut entries = Vec::with_capacity(dir.entries.len());
    for (name, slot) in dir.entries {
        let node = match slot {
            Slot::Dir(d) => Node::Directory { tree: encode(d, out, renumber) },
            Slot::Leaf(Node::File { meta, size, content, link }) if link != 0 => {
                let next = renumber.len() as u32 + 1;
                Node::File { meta, size, content, link: *renumber.entry(link).or_insert(next) }
            }
            Slot::Leaf(n) => n,
        };
        entries.push((name, node));
    }
    Tree { meta: dir.meta, entries }.encode_into(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Name> {
        s.split('/').filter(|c| !c.is_empty()).map(|c| Name::new(c).unwrap()).collect()
    }

    fn fifo() -> Node {
        Node::Fifo { meta: implicit_dir_meta() }
    }

    fn link(target: &str) -> Node {
        Node::Symlink { meta: Meta { mode: 0o777, ..Meta::default() }, target: target.into() }
    }

    #[test]
    fn refuses_table() {
        let mut b = TreeBuilder::new(implicit_dir_meta());
        b.insert(&p("etc/lnk"), link("/")).unwrap();
        b.insert(&p("etc/file"), fifo()).unwrap();
        b.mkdir(&p("usr/lib"), implicit_dir_meta()).unwrap();
        let cases: Vec<(&str, BuildError)> = vec![
            ("etc/lnk/passwd", BuildError::ThroughSymlink { path: "/etc/lnk/passwd".into(), link: "/etc/lnk".into() }),
            ("etc/file/x", BuildError::NotADirectory { path: "/etc/file/x".into(), parent: "/etc/file".into() }),
            ("etc/file", BuildError::Duplicate { path: "/etc/file".into() }),
            ("usr/lib", BuildError::ReplacesDirectory { path: "/usr/lib".into() }),
        ];
        for (path, expected) in cases {
            assert_eq!(b.insert(&p(path), fifo()), Err(expected), "{path}");
        }
        assert_eq!(
            b.mkdir(&p("etc/file"), implicit_dir_meta()),
            Err(BuildError::Duplicate { path: "/etc/file".into() })
        );
    }

    #[test]
    fn archive_order_does_not_change_the_tree() {
        let build = |order: &[&str]| {
            let mut b = TreeBuilder::new(implicit_dir_meta());
            for (i, path) in order.iter().enumerate() {
                let meta = implicit_dir_meta();
                b.insert(&p(path), Node::File { meta, size: 1, content: Digest::of(b"x"), link: 0 }).unwrap();
                if path.ends_with("hl") {
                    b.set_link(&p(path), 100 + i as u32);
                }
            }
            for path in order.iter().filter(|p| p.ends_with("hl")) {
                b.set_link(&p(path), 7);
            }
            b.finish(&mut crate::store::tree::TreeRows::new())
        };
        assert_eq!(build(&["a/x", "b/hl", "c/hl", "d"]), build(&["d", "c/hl", "b/hl", "a/x"]));
    }
}
