-- Complete, verified blobs. A row exists only after the file was fsynced and renamed into
-- blobs/sha256/<xx>/<hex>; rows without files are dropped at start-up.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY NOT NULL,   -- "sha256:<hex>"
    size        INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    last_access_ms INTEGER NOT NULL,
    hits        INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX blobs_lru ON blobs(last_access_ms);

-- Manifests by content digest, bytes exactly as upstream sent them.
CREATE TABLE manifests (
    digest      TEXT PRIMARY KEY NOT NULL,
    media_type  TEXT NOT NULL,
    body        BLOB NOT NULL,
    created_ms  INTEGER NOT NULL,
    last_access_ms INTEGER NOT NULL,
    hits        INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Tag → manifest, per upstream registry and per Accept header (the same tag can resolve to
-- an index or to a single manifest depending on what the client accepts).
CREATE TABLE tags (
    registry    TEXT NOT NULL,
    repo        TEXT NOT NULL,
    tag         TEXT NOT NULL,
    accept      TEXT NOT NULL,
    digest      TEXT NOT NULL REFERENCES manifests(digest) ON DELETE CASCADE,
    fetched_ms  INTEGER NOT NULL,
    PRIMARY KEY (registry, repo, tag, accept)
) WITHOUT ROWID;

-- Cumulative counters (upstream_bytes, served_bytes, ...), flushed periodically.
CREATE TABLE counters (
    name        TEXT PRIMARY KEY NOT NULL,
    value       INTEGER NOT NULL
) WITHOUT ROWID;
