-- What a blob file looked like on disk when its bytes were last known to hash to its digest
-- ("<inode>:<ctime seconds>.<ctime nanoseconds>"). Any write, truncation or replacement of
-- the file changes one of them (no user can set a ctime back), so a file whose stamp
-- differs is hashed again before it is served. NULL: rows from before this migration; the
-- file's stamp at the next start is taken as good.
ALTER TABLE blobs ADD COLUMN stamp TEXT;
