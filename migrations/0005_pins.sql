-- Models an admin pinned (`shoal pin`): the blobs their cached manifests name are never
-- evicted. Keyed like tags, without the Accept.
CREATE TABLE pins (
    registry   TEXT NOT NULL,
    repo       TEXT NOT NULL,
    tag        TEXT NOT NULL,
    pinned_ms  INTEGER NOT NULL,
    PRIMARY KEY (registry, repo, tag)
) WITHOUT ROWID;
