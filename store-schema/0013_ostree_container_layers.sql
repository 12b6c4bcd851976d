-- strata store schema, version 13: layers of ostree-native container images written before
-- (src/ostree/container.rs).

-- Layer `n` (0: the commit layer) of the image of a commit depends only on the commit, the
-- compression and the writer's version (`format`): its digests are known without writing it again.
CREATE TABLE ostree_container_layers (
    commit_checksum TEXT NOT NULL,      -- the OSTree commit, hex; for layer 0 followed by `/` and the
                                        -- sha256 of its detached metadata when it has some
    n               INTEGER NOT NULL,
    compression     TEXT NOT NULL,
    format          INTEGER NOT NULL,
    diff_id         TEXT NOT NULL,      -- sha256:HEX of the tar
    digest          TEXT NOT NULL,      -- sha256:HEX of the compressed blob
    size            INTEGER NOT NULL,
    PRIMARY KEY (commit_checksum, n, compression, format)
) WITHOUT ROWID;
