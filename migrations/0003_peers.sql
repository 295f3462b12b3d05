-- This node's identity (a random id, so it recognises itself among discovered peers).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Other shoal nodes: named with --peer, or found by LAN discovery.
CREATE TABLE peers (
    url         TEXT PRIMARY KEY NOT NULL,   -- http://host:port
    node_id     TEXT,                        -- from its catalog
    bt_addr     TEXT,                        -- its BitTorrent address, as it told us
    source      TEXT NOT NULL,               -- 'static' or 'discovered'
    last_ok_ms  INTEGER,
    last_error  TEXT,
    failures    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Their catalogs: which blobs each peer holds. Hints only: whatever comes from a peer is
-- verified by sha256 before it is cached.
CREATE TABLE peer_blobs (
    peer_url  TEXT NOT NULL REFERENCES peers(url) ON DELETE CASCADE,
    digest    TEXT NOT NULL,
    size      INTEGER NOT NULL,
    infohash  BLOB NOT NULL,
    PRIMARY KEY (peer_url, digest)
) WITHOUT ROWID;
CREATE INDEX peer_blobs_digest ON peer_blobs(digest);
