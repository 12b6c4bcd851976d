-- strata store schema, version 8: retention policies that descriptions set.

-- The policy the description of an image set (`[retention]` in a TOML description), as of its
-- last build; a build of a description without one removes the row. A policy set with
-- `strata images keep NAME` is stronger; this one is stronger than the store's default `*`.
CREATE TABLE retention_described (
    image             TEXT PRIMARY KEY NOT NULL,
    keep_last         INTEGER,           -- NULL: no rule of that kind
    keep_younger_than INTEGER,           -- seconds
    document          TEXT NOT NULL      -- the description file that set it
) WITHOUT ROWID;
