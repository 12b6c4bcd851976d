-- strata store schema, version 6: lifecycle (retention, pins, managed OSTree repositories).

-- Generations that retention never removes (`strata images pin NAME/GEN`).
CREATE TABLE pins (
    image   TEXT NOT NULL,
    number  INTEGER NOT NULL,
    created INTEGER NOT NULL,            -- unix seconds
    PRIMARY KEY (image, number)
) WITHOUT ROWID;

-- Retention policies (`strata images keep`): per image, or `*` for every image without its own.
-- NULL means no limit of that kind; a generation is kept when any rule keeps it.
CREATE TABLE retention (
    image             TEXT PRIMARY KEY NOT NULL,
    keep_last         INTEGER,           -- the newest N generations
    keep_younger_than INTEGER            -- seconds: generations built less than this long ago
) WITHOUT ROWID;

-- OSTree repositories strata writes besides <store>/ostree-repo (`strata export --repo`): gc
-- prunes each to the commits of the generations retention keeps.
CREATE TABLE ostree_repos (
    path       TEXT PRIMARY KEY NOT NULL, -- canonical path
    registered INTEGER NOT NULL           -- unix seconds
) WITHOUT ROWID;
