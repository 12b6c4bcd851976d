-- strata store schema, version 1.
-- Applied once, in order, by src/db.rs; never edit a landed file: add the next number instead.

-- One row per file object under objects/: written only after the object file is synced.
CREATE TABLE objects (
    id   BLOB PRIMARY KEY NOT NULL,   -- 32-byte object id (metadata header + content digest)
    size INTEGER NOT NULL             -- content length in bytes
) WITHOUT ROWID;

-- Canonical tree encodings (src/tree.rs); a tree row is written in the same transaction as the
-- object and child tree rows it references.
CREATE TABLE trees (
    id   BLOB PRIMARY KEY NOT NULL,   -- blake3 of data
    data BLOB NOT NULL
) WITHOUT ROWID;

-- Results of build steps.
CREATE TABLE entries (
    key     BLOB PRIMARY KEY NOT NULL,             -- input key of the step
    kind    TEXT NOT NULL,                         -- import, package, merge, layer, rootfs, commit, artifact
    name    TEXT NOT NULL,
    tree    BLOB NOT NULL REFERENCES trees (id),   -- content address of the output
    files   INTEGER NOT NULL,                      -- regular files in the tree
    bytes   INTEGER NOT NULL,                      -- their total size
    created INTEGER NOT NULL                       -- unix seconds
) WITHOUT ROWID;

-- Entry-to-entry references: an entry keeps the entries it was built from alive.
CREATE TABLE entry_refs (
    entry  BLOB NOT NULL REFERENCES entries (key) ON DELETE CASCADE,
    target BLOB NOT NULL REFERENCES entries (key),
    PRIMARY KEY (entry, target)
) WITHOUT ROWID;

-- Names that keep entries alive for gc.
CREATE TABLE roots (
    name    TEXT PRIMARY KEY NOT NULL,
    entry   BLOB NOT NULL REFERENCES entries (key),
    updated INTEGER NOT NULL
);
CREATE INDEX roots_entry ON roots (entry);
