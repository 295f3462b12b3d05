-- Blobs and manifests fetched with a client's own credentials (issue 9). A private blob is
-- served only to clients upstream confirms (a HEAD with their credentials), and never
-- offered to peers: not in the catalog, not seeded. It becomes public (0) once upstream
-- serves it without credentials, or it is fetched again without them.
ALTER TABLE blobs ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
ALTER TABLE manifests ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
