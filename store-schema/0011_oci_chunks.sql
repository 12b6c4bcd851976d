-- strata store schema, version 11: how the first tree of an image is cut into layers by package
-- (src/oci/chunk.rs).

-- Row n of a tree is its n-th layer: `subtree` holds the files of that layer. A tree that is not
-- cut has one row with n = -1. `format` is the cut's version. The subtrees may be collected by
-- gc (no entry holds them); they are made again, identical, when a layer must be written.
CREATE TABLE oci_chunks (
    tree    BLOB NOT NULL,
    format  INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    subtree BLOB NOT NULL,
    label   TEXT NOT NULL,
    PRIMARY KEY (tree, format, n)
) WITHOUT ROWID;
