-- strata store schema, version 9: OCI layers written before (src/oci/image.rs).

-- A layer is the tar of the change from one tree to the next, compressed; the same pair gives
-- the same bytes, so its digests are known without writing it again. `from_tree` is empty for a
-- first layer. `format` is the layer writer's version: a change to the tar format bumps it.
-- `source_date` is every entry's timestamp, so it is part of the key too.
CREATE TABLE oci_layers (
    from_tree   BLOB NOT NULL,
    to_tree     BLOB NOT NULL,
    compression TEXT NOT NULL,
    format      INTEGER NOT NULL,
    source_date INTEGER NOT NULL,
    diff_id     TEXT NOT NULL,            -- sha256:HEX of the tar
    digest      TEXT NOT NULL,            -- sha256:HEX of the compressed blob
    size        INTEGER NOT NULL,         -- bytes of the compressed blob
    PRIMARY KEY (from_tree, to_tree, compression, format, source_date)
) WITHOUT ROWID;
