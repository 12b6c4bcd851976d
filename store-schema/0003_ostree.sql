-- strata store schema, version 3: OSTree export.

-- The layout step's report for each entry it produced (kernel, files left out), so a cached
-- step reports what the first run did. Removed with its entry.
CREATE TABLE ostree_layouts (
    entry  BLOB PRIMARY KEY NOT NULL REFERENCES entries (key) ON DELETE CASCADE,
    report TEXT NOT NULL                  -- JSON, see src/ostree/layout.rs
) WITHOUT ROWID;

-- OSTree content checksum of each store file object. An OSTree content object covers the same
-- things as a store object id (owner, mode, xattrs, content), so the mapping holds for every
-- repository; whether a repository has the object is asked of the repository itself.
CREATE TABLE ostree_files (
    object   BLOB PRIMARY KEY NOT NULL,   -- store object id
    checksum BLOB NOT NULL                -- sha256 of the OSTree content object
) WITHOUT ROWID;

-- Store trees a repository holds completely, as OSTree dirtree + dirmeta objects. Written only
-- after the repository transaction that wrote them committed.
CREATE TABLE ostree_trees (
    repo    TEXT NOT NULL,                -- canonical path of the repository
    tree    BLOB NOT NULL,                -- store tree id
    dirtree BLOB NOT NULL,                -- sha256 of the dirtree object
    dirmeta BLOB NOT NULL,                -- sha256 of the dirmeta object
    PRIMARY KEY (repo, tree)
) WITHOUT ROWID;

-- Named destinations for `strata push`.
CREATE TABLE ostree_remotes (
    name    TEXT PRIMARY KEY NOT NULL,
    url     TEXT NOT NULL,                -- a local path or ssh://host/path
    created INTEGER NOT NULL
);
