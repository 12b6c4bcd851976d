-- strata store schema, version 13: layers of ostree-native container images written before
-- (src/ostree/container.rs).

-- A layer's bytes depend only on what its key names (and the compression and the writer's
-- version, `format`): its digests are known without writing it again. The key of layer 0 is
-- `0/COMMIT[/SHA256 of its detached metadata]`; that of a layer of packages is
-- `objects/SHA256` of its objects' checksums and paths.
CREATE TABLE ostree_container_layers (
    layer_key   TEXT NOT NULL,
    compression TEXT NOT NULL,
    format      INTEGER NOT NULL,
    diff_id     TEXT NOT NULL,      -- sha256:HEX of the tar
    digest      TEXT NOT NULL,      -- sha256:HEX of the compressed blob
    size        INTEGER NOT NULL,
    PRIMARY KEY (layer_key, compression, format)
) WITHOUT ROWID;
