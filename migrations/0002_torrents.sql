-- The torrent of each complete blob (docs/TORRENTS.md): enough to rebuild its info dict
-- byte for byte. Goes with its blob (eviction deletes both).
CREATE TABLE torrents (
    digest       TEXT PRIMARY KEY NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,
    infohash     BLOB NOT NULL UNIQUE,      -- SHA-1 of the bencoded info dict, 20 bytes
    piece_length INTEGER NOT NULL,
    pieces       BLOB NOT NULL              -- SHA-1 of each piece, 20 bytes each
) WITHOUT ROWID;
