//! Trees: the Merkle directories of the store, and their canonical binary encoding.
//!
//! A [`Tree`] is one directory: its own [`Meta`] and its entries sorted by name. A child directory
//! is referenced by its tree id, so identical subtrees are stored once. A regular file carries its
//! metadata, size and content digest; the id of the object that holds it is derived from those
//! ([`object_id`]), so the tree tells a content change from a metadata change without reading
//! the object.
//!
//! Hardlinks inside an imported tree are kept as link groups: every file of a group carries the same
//! non-zero `link` number, numbered 1, 2, … in the order their first member appears in a sorted
//! depth-first walk of the whole imported tree. Files without other links inside the tree have 0.
//!
//! Encoding (all integers little-endian, version in the magic):
//! ```text
//! tree    := "strata-tree\0" u8:version meta u32:count entry*
//! meta    := u32:mode u32:uid u32:gid u32:n (u32:len name u32:len value)*      xattrs sorted by name
//! entry   := u32:len name u8:kind body                                       entries sorted by name
//! body    := dir: tree-id[32] | file: meta u64:size content[32] u32:link
//!          | symlink: meta u32:len target | chardev/blockdev: meta u64:rdev | fifo: meta
//! ```
//! Decoding is strict: wrong order, duplicate names, invalid names, unknown kinds, bits outside
//! `0o7777` or trailing bytes are errors, so a tree has exactly one encoding and one id.

use std::fmt;

use crate::store::digest::Digest;
use crate::store::meta::Meta;

const MAGIC: &[u8] = b"strata-tree\0";
const VERSION: u8 = 1;
const OBJECT_MAGIC: &[u8] = b"strata-object\0";

/// Encoded trees waiting to be recorded: (tree id, canonical encoding).
#[derive(Clone, Debug, Default)]
pub struct TreeRows(Vec<(Digest, Vec<u8>)>);

impl TreeRows {
    pub fn new() -> TreeRows {
        TreeRows::default()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, (Digest, Vec<u8>)> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Add the rows of `other` (encoded elsewhere, as by a worker thread).
    pub fn append(&mut self, other: &mut TreeRows) {
        self.0.append(&mut other.0);
    }
}

impl<'a> IntoIterator for &'a TreeRows {
    type Item = &'a (Digest, Vec<u8>);
    type IntoIter = std::slice::Iter<'a, (Digest, Vec<u8>)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for TreeRows {
    type Item = (Digest, Vec<u8>);
    type IntoIter = std::vec::IntoIter<(Digest, Vec<u8>)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// One path component: non-empty, not `.` or `..`, no `/` and no NUL, at most 255 bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Vec<u8>);

/// Why a byte string is not a valid [`Name`].
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("empty file name")]
    Empty,
    #[error("`.` and `..` are not file names")]
    Dot,
    #[error("file name contains `/` or NUL")]
    BadByte,
    #[error("file name is longer than 255 bytes")]
    TooLong,
}

impl Name {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Name, NameError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if bytes == b"." || bytes == b".." {
            return Err(NameError::Dot);
        }
        if bytes.iter().any(|&b| b == b'/' || b == 0) {
            return Err(NameError::BadByte);
        }
        if bytes.len() > 255 {
            return Err(NameError::TooLong);
        }
        Ok(Name(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_os_str(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// What a tree entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A subdirectory; its metadata lives in the child tree.
    Directory {
        tree: Digest,
    },
    /// A regular file stored as the object [`object_id`]`(meta, size, content)`.
    File {
        meta: Meta,
        size: u64,
        content: Digest,
        link: u32,
    },
    /// A symbolic link; `meta.mode` is always `0o777`.
    Symlink {
        meta: Meta,
        target: Vec<u8>,
    },
    CharDevice {
        meta: Meta,
        rdev: u64,
    },
    BlockDevice {
        meta: Meta,
        rdev: u64,
    },
    Fifo {
        meta: Meta,
    },
}

impl Node {
    fn kind_byte(&self) -> u8 {
        match self {
            Node::Directory { .. } => 1,
            Node::File { .. } => 2,
            Node::Symlink { .. } => 3,
            Node::CharDevice { .. } => 4,
            Node::BlockDevice { .. } => 5,
            Node::Fifo { .. } => 6,
        }
    }

    /// A short word for the node's kind, as shown by `store diff`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::Directory { .. } => "directory",
            Node::File { .. } => "file",
            Node::Symlink { .. } => "symlink",
            Node::CharDevice { .. } => "char-device",
            Node::BlockDevice { .. } => "block-device",
            Node::Fifo { .. } => "fifo",
        }
    }

    /// The node's own metadata, if it carries it (directories carry theirs in the child tree).
    pub fn meta(&self) -> Option<&Meta> {
        match self {
            Node::Directory { .. } => None,
            Node::File { meta, .. }
            | Node::Symlink { meta, .. }
            | Node::CharDevice { meta, .. }
            | Node::BlockDevice { meta, .. }
            | Node::Fifo { meta } => Some(meta),
        }
    }
}

/// One directory of the store.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tree {
    pub meta: Meta,
    /// Sorted by name, names unique.
    pub entries: Vec<(Name, Node)>,
}

/// Why bytes are not a canonical tree encoding.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a strata tree (bad magic or version)")]
    Magic,
    #[error("tree encoding ends early")]
    Truncated,
    #[error("tree encoding has {0} trailing bytes")]
    Trailing(usize),
    #[error("entry names are not strictly sorted at {0:?}")]
    Unsorted(Name),
    #[error("invalid entry name: {0}")]
    Name(#[from] NameError),
    #[error("unknown entry kind {0}")]
    Kind(u8),
    #[error("mode {0:#o} has bits outside 0o7777")]
    Mode(u32),
    #[error("extended attributes are not strictly sorted")]
    Xattrs,
    #[error("symlink mode must be 0o777")]
    SymlinkMode,
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 96);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        put_meta(&mut out, &self.meta);
        put_u32(&mut out, self.entries.len() as u32);
        for (name, node) in &self.entries {
            put_bytes(&mut out, name.as_bytes());
            out.push(node.kind_byte());
            match node {
                Node::Directory { tree } => out.extend_from_slice(tree.as_bytes()),
                Node::File { meta, size, content, link } => {
                    put_meta(&mut out, meta);
                    out.extend_from_slice(&size.to_le_bytes());
                    out.extend_from_slice(content.as_bytes());
                    put_u32(&mut out, *link);
                }
                Node::Symlink { meta, target } => {
                    put_meta(&mut out, meta);
                    put_bytes(&mut out, target);
                }
                Node::CharDevice { meta, rdev } | Node::BlockDevice { meta, rdev } => {
                    put_meta(&mut out, meta);
                    out.extend_from_slice(&rdev.to_le_bytes());
                }
                Node::Fifo { meta } => put_meta(&mut out, meta),
            }
        }
        out
    }

    /// Encode, push (id, encoding) to `out` (rows to record), and return the id.
    pub fn encode_into(&self, out: &mut TreeRows) -> Digest {
        let data = self.encode();
        let id = Digest::of(&data);
        out.0.push((id, data));
        id
    }

    /// The tree id: blake3 of the canonical encoding.
    pub fn id(&self) -> Digest {
        Digest::of(&self.encode())
    }

    pub fn decode(bytes: &[u8]) -> Result<Tree, DecodeError> {
        let mut r = Reader { buf: bytes };
        if r.take(MAGIC.len())? != MAGIC || r.u8()? != VERSION {
            return Err(DecodeError::Magic);
        }
        let meta = r.meta()?;
        let count = r.u32()? as usize;
        let mut entries: Vec<(Name, Node)> = Vec::with_capacity(count.min(bytes.len() / 8));
        for _ in 0..count {
            let name = Name::new(r.bytes()?.to_vec())?;
            if let Some((prev, _)) = entries.last() {
                if *prev >= name {
                    return Err(DecodeError::Unsorted(name));
                }
            }
            let node = match r.u8()? {
                1 => Node::Directory { tree: r.digest()? },
                2 => Node::File { meta: r.meta()?, size: r.u64()?, content: r.digest()?, link: r.u32()? },
                3 => {
                    let meta = r.meta()?;
                    if meta.mode != 0o777 {
                        return Err(DecodeError::SymlinkMode);
                    }
                    Node::Symlink { meta, target: r.bytes()?.to_vec() }
                }
                4 => Node::CharDevice { meta: r.meta()?, rdev: r.u64()? },
                5 => Node::BlockDevice { meta: r.meta()?, rdev: r.u64()? },
                6 => Node::Fifo { meta: r.meta()? },
                k => return Err(DecodeError::Kind(k)),
            };
            entries.push((name, node));
        }
        if !r.buf.is_empty() {
            return Err(DecodeError::Trailing(r.buf.len()));
        }
        Ok(Tree { meta, entries })
    }

    /// Look up an entry by name.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.entries.binary_search_by(|(n, _)| n.as_bytes().cmp(name)).ok().map(|i| &self.entries[i].1)
    }
}

/// The id of the object holding a regular file: blake3 over a canonical header (metadata and
/// size) and the content digest. Two files share an object exactly when content and metadata match.
pub fn object_id(meta: &Meta, size: u64, content: &Digest) -> Digest {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(OBJECT_MAGIC);
    put_meta(&mut buf, meta);
    buf.extend_from_slice(&size.to_le_bytes());
    buf.extend_from_slice(content.as_bytes());
    Digest::of(&buf)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn put_meta(out: &mut Vec<u8>, m: &Meta) {
    put_u32(out, m.mode);
    put_u32(out, m.uid);
    put_u32(out, m.gid);
    put_u32(out, m.xattrs.len() as u32);
    for (k, v) in &m.xattrs {
        put_bytes(out, k);
        put_bytes(out, v);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn digest(&mut self) -> Result<Digest, DecodeError> {
        Ok(Digest(self.take(32)?.try_into().expect("32 bytes")))
    }
    fn meta(&mut self) -> Result<Meta, DecodeError> {
        let mode = self.u32()?;
        if mode & !0o7777 != 0 {
            return Err(DecodeError::Mode(mode));
        }
        let uid = self.u32()?;
        let gid = self.u32()?;
        let n = self.u32()? as usize;
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let k = self.bytes()?.to_vec();
            let v = self.bytes()?.to_vec();
            if xattrs.last().is_some_and(|(pk, _)| *pk >= k) {
                return Err(DecodeError::Xattrs);
            }
            xattrs.push((k, v));
        }
        Ok(Meta { mode, uid, gid, xattrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(mode: u32) -> Meta {
        Meta { mode, uid: 0, gid: 0, xattrs: vec![] }
    }

    /// Digest stability: this tree's id must never change, or every existing store breaks.
    #[test]
    fn golden_tree_id() {
        let file_meta = Meta {
            mode: 0o4755,
            uid: 0,
            gid: 0,
            xattrs: vec![(
                b"security.capability".to_vec(),
                vec![1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            )],
        };
        let child = Tree { meta: meta(0o755), entries: vec![] };
        let tree = Tree {
            meta: meta(0o755),
            entries: vec![
                (Name::new("bin").unwrap(), Node::Directory { tree: child.id() }),
                (Name::new("dev-null").unwrap(), Node::CharDevice { meta: meta(0o666), rdev: (1 << 8) | 3 }),
                (
                    Name::new("ping").unwrap(),
                    Node::File { meta: file_meta, size: 5, content: Digest::of(b"hello"), link: 0 },
                ),
                (Name::new("sh").unwrap(), Node::Symlink { meta: meta(0o777), target: b"bash".to_vec() }),
            ],
        };
        assert_eq!(tree.id().to_hex(), "ce1b8764ccb2ff454a1b35a53e79f7dc93368189cee2fd881dd680e14048b363");
    }

    #[test]
    fn name_table() {
        let cases: &[(&[u8], Result<(), NameError>)] = &[
            (b"a", Ok(())),
            (b"with\nnewline", Ok(())),
            (b"\xff\xfe", Ok(())),
            (b"", Err(NameError::Empty)),
            (b".", Err(NameError::Dot)),
            (b"..", Err(NameError::Dot)),
            (b"a/b", Err(NameError::BadByte)),
            (b"a\0b", Err(NameError::BadByte)),
            (&[b'x'; 256], Err(NameError::TooLong)),
        ];
        for (input, expected) in cases {
            assert_eq!(Name::new(input.to_vec()).map(|_| ()), *expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn decode_rejects_table() {
        let good = Tree {
            meta: meta(0o755),
            entries: vec![
                (Name::new("a").unwrap(), Node::Fifo { meta: meta(0o644) }),
                (Name::new("b").unwrap(), Node::Fifo { meta: meta(0o644) }),
            ],
        };
        let enc = good.encode();
        assert_eq!(Tree::decode(&enc).unwrap(), good);
        let mut trailing = enc.clone();
        trailing.push(0);
        let mut unsorted = good.clone();
        unsorted.entries.swap(0, 1);
        let mut badkind = enc.clone();
        let kind_at = MAGIC.len() + 1 + 16 + 4 + 4 + 1;
        badkind[kind_at] = 9;
        let mut badmode = good.clone();
        badmode.meta.mode = 0o40755;
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (b"nope".to_vec(), DecodeError::Truncated),
            (b"strata-tree\0\x02".to_vec(), DecodeError::Magic),
            (enc[..enc.len() - 1].to_vec(), DecodeError::Truncated),
            (trailing, DecodeError::Trailing(1)),
            (unsorted.encode(), DecodeError::Unsorted(Name::new("a").unwrap())),
            (badkind, DecodeError::Kind(9)),
            (badmode.encode(), DecodeError::Mode(0o40755)),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Tree::decode(&bytes), Err(expected.clone()), "{expected}");
        }
    }

    fn arb_meta() -> impl Strategy<Value = Meta> {
        (
            0u32..0o7777,
            any::<u32>(),
            any::<u32>(),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 1..12),
                proptest::collection::vec(any::<u8>(), 0..12),
                0..3,
            ),
        )
            .prop_map(|(mode, uid, gid, x)| Meta { mode, uid, gid, xattrs: x.into_iter().collect() })
    }

    fn arb_node() -> impl Strategy<Value = Node> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(|d| Node::Directory { tree: Digest(d) }),
            (arb_meta(), any::<u64>(), any::<[u8; 32]>(), any::<u32>()).prop_map(|(meta, size, c, link)| Node::File {
                meta,
                size,
                content: Digest(c),
                link
            }),
            (arb_meta(), proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(mut meta, target)| {
                meta.mode = 0o777;
                Node::Symlink { meta, target }
            }),
            (arb_meta(), any::<u64>()).prop_map(|(meta, rdev)| Node::CharDevice { meta, rdev }),
            (arb_meta(), any::<u64>()).prop_map(|(meta, rdev)| Node::BlockDevice { meta, rdev }),
            arb_meta().prop_map(|meta| Node::Fifo { meta }),
        ]
    }

    fn arb_tree() -> impl Strategy<Value = Tree> {
        let name = proptest::collection::vec(any::<u8>(), 1..20).prop_filter_map("valid name", |b| Name::new(b).ok());
        (arb_meta(), proptest::collection::btree_map(name, arb_node(), 0..8))
            .prop_map(|(meta, entries)| Tree { meta, entries: entries.into_iter().collect() })
    }

    proptest! {
        #[test]
        fn encoding_round_trips(tree in arb_tree()) {
            let bytes = tree.encode();
            let back = Tree::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &tree);
            prop_assert_eq!(back.encode(), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Tree::decode(&bytes);
        }
    }
}
