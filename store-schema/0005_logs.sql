-- What a step printed (its scripts' combined output), zstd-compressed, kept with the step's
-- entry: recorded in the same transaction as the entry, and gone when the entry goes.

CREATE TABLE logs (
    entry BLOB PRIMARY KEY NOT NULL REFERENCES entries (key) ON DELETE CASCADE,
    size INTEGER NOT NULL,
    zstd BLOB NOT NULL
) WITHOUT ROWID;
