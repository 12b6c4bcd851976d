-- strata store schema, version 7: gc while builds run (src/store/doomed.rs, docs/design.md).

-- One row per gc run that doomed rows: its blockers are the sessions of the same boot that
-- started before `clock` (CLOCK_BOOTTIME ns, stamped just after the run's mark committed;
-- NULL until then, and a later run stamps a NULL it finds with its own, later, clock).
CREATE TABLE gc_runs (
    epoch INTEGER PRIMARY KEY NOT NULL,
    boot  TEXT NOT NULL,
    clock INTEGER
);

-- Rows gc found dead; deleted once their run's blockers have ended. A process that uses a
-- doomed row first deletes its mark (revival). epoch -1: being deleted (dying).
CREATE TABLE doomed (
    kind  INTEGER NOT NULL,      -- 0 object, 1 tree, 2 entry
    id    BLOB NOT NULL,         -- objects.id, trees.id or entries.key
    epoch INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX doomed_epoch ON doomed (epoch);
