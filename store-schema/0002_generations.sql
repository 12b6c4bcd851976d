-- strata store schema, version 2: image generations.
-- Every successful `strata build` that yields a new root tree adds a generation of its image,
-- numbered from 1; the root `images/<image>/<number>` keeps its entry alive. A generation row
-- outlives its entry (after `roots rm` and gc): history still shows it, marked as collected.

CREATE TABLE generations (
    image       TEXT NOT NULL,
    number      INTEGER NOT NULL,
    entry       BLOB NOT NULL,      -- the image's final rootfs entry (not a foreign key: see above)
    tree        BLOB NOT NULL,      -- its tree id
    created     INTEGER NOT NULL,   -- unix seconds
    description TEXT NOT NULL,      -- path of the description document it was built from
    inputs      TEXT NOT NULL,      -- JSON: the steps and their named inputs, for `strata why`
    PRIMARY KEY (image, number)
) WITHOUT ROWID;
