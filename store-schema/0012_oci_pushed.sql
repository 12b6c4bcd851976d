-- strata store schema, version 12: which repositories of which registries strata pushed blobs
-- to (src/oci/registry.rs), so that a push to another repository of the same registry asks it
-- to mount the blob from there instead of uploading it again.
CREATE TABLE oci_pushed (
    registry TEXT NOT NULL,   -- HOST[:PORT]
    digest   TEXT NOT NULL,   -- sha256:HEX
    repo     TEXT NOT NULL,
    PRIMARY KEY (registry, digest, repo)
) WITHOUT ROWID;
