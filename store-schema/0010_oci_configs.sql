-- strata store schema, version 10: the runtime settings of OCI images imported as bases
-- (src/oci/import.rs).

-- The `config` object of the image config (Entrypoint, Cmd, Env, Labels, User, WorkingDir,
-- ExposedPorts, Volumes, StopSignal) of the image an import entry holds, as JSON. An image
-- exported from a description that derives from it starts from these settings. A row whose
-- entry is gone is removed by gc.
CREATE TABLE oci_configs (
    entry  BLOB PRIMARY KEY NOT NULL,
    config TEXT NOT NULL
) WITHOUT ROWID;
