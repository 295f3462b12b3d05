-- What a blob file looked like on disk when its bytes were last known to hash to its digest
-- ("<inode>:<ctime seconds>.<ctime nanoseconds>"). Any write, truncation or replacement of
-- the file changes one of them (no user can set a ctime back), so a file whose stamp
-- differs is hashed again before it is served. NULL: rows from before this migration; the
-- file's stamp at the next start is taken as good.
ALTER TABLE blobs ADD COLUMN stamp TEXT;
-- When its bytes were last hashed (commit, a check, the scrub): the scrub takes the
-- oldest first. NULL: never since this migration.
ALTER TABLE blobs ADD COLUMN verified_ms INTEGER;
-- A repository it was fetched for, so that a damaged blob can be fetched again with no
-- client asking (upstream URLs name a repository). NULL: not known.
ALTER TABLE blobs ADD COLUMN repo TEXT;
