-- What the OSTree mapping knows of a store object or tree goes when the object or tree does
-- (garbage collection deletes them; the store's own code does not know the OSTree tables).

CREATE TRIGGER ostree_files_follow_objects AFTER DELETE ON objects
BEGIN
    DELETE FROM ostree_files WHERE object = OLD.id;
END;

CREATE TRIGGER ostree_trees_follow_trees AFTER DELETE ON trees
BEGIN
    DELETE FROM ostree_trees WHERE tree = OLD.id;
END;
