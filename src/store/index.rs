//! The SQLite index. Blocking calls only: `Store` runs them on the blocking pool.

use std::path::Path;
use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension};
use rusqlite_migration::{Migrations, M};

use super::{BlobRow, CatalogEntry, Holder, PeerRow, StoredManifest, TagKey, TagRow, TorrentRow};
use crate::oci::Digest;
use crate::stats::Counters;

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("../../migrations/0001_init.sql")),
        M::up(include_str!("../../migrations/0002_torrents.sql")),
        M::up(include_str!("../../migrations/0003_peers.sql")),
        M::up(include_str!("../../migrations/0004_blob_stamps.sql")),
        M::up(include_str!("../../migrations/0005_pins.sql")),
        M::up(include_str!("../../migrations/0006_private.sql")),
    ])
});

pub(super) fn open(path: &Path) -> Result<Connection, rusqlite_migration::Error> {
    let mut conn = Connection::open(path)?;
    configure(&mut conn)?;
    MIGRATIONS.to_latest(&mut conn)?;
    Ok(conn)
}

/// A private blob turned out to be public (upstream served it without credentials).
pub(super) fn set_public(conn: &Connection, d: &Digest) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE blobs SET private = 0 WHERE digest = ?1",
        [d.to_string()],
    )?;
    Ok(())
}

#[cfg(test)]
pub(super) fn open_in_memory() -> Result<Connection, rusqlite_migration::Error> {
    let mut conn = Connection::open_in_memory()?;
    configure(&mut conn)?;
    MIGRATIONS.to_latest(&mut conn)?;
    Ok(conn)
}

fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    // WAL + NORMAL: a crash may lose the last commits but never corrupts the index, and
    // blob files are fsynced before their row is written anyway.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// A 20-byte infohash column.
fn infohash_col(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<[u8; 20]> {
    let v: Vec<u8> = r.get(idx)?;
    v.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Blob,
            "infohash is not 20 bytes".into(),
        )
    })
}

fn digest_col(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn load_blobs(conn: &Connection) -> rusqlite::Result<Vec<BlobRow>> {
    let mut stmt = conn.prepare(
        "SELECT digest, size, last_access_ms, hits, stamp, verified_ms, private FROM blobs",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(BlobRow {
            digest: digest_col(r.get(0)?)?,
            size: r.get::<_, i64>(1)? as u64,
            last_access_ms: r.get(2)?,
            hits: r.get::<_, i64>(3)? as u64,
            stamp: r.get(4)?,
            verified_ms: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
            private: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// Records what a blob's file looks like now that its bytes are known good.
pub(super) fn set_stamp(conn: &Connection, d: &Digest, stamp: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE blobs SET stamp = ?2 WHERE digest = ?1",
        params![d.to_string(), stamp],
    )?;
    Ok(())
}

/// Records that a blob's bytes were hashed and found good at `at_ms`, as `stamp`.
pub(super) fn set_verified(
    conn: &Connection,
    d: &Digest,
    stamp: &str,
    at_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE blobs SET stamp = ?2, verified_ms = ?3 WHERE digest = ?1",
        params![d.to_string(), stamp, at_ms],
    )?;
    Ok(())
}

pub(super) fn set_repo(conn: &Connection, d: &Digest, repo: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE blobs SET repo = ?2 WHERE digest = ?1",
        params![d.to_string(), repo],
    )?;
    Ok(())
}

/// A repository `d` can be fetched from upstream with: the one it was fetched for, else
/// one whose cached tag's manifest names it.
pub(super) fn repo_of(conn: &Connection, d: &Digest) -> rusqlite::Result<Option<String>> {
    let own: Option<String> = conn
        .query_row(
            "SELECT repo FROM blobs WHERE digest = ?1",
            [d.to_string()],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    if own.is_some() {
        return Ok(own);
    }
    conn.query_row(
        "SELECT t.repo FROM tags t JOIN manifests m ON m.digest = t.digest
         WHERE instr(m.body, ?1) > 0 LIMIT 1",
        [d.to_string()],
        |r| r.get(0),
    )
    .optional()
}

pub(super) fn insert_blob(conn: &Connection, row: &BlobRow) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO blobs (digest, size, created_ms, last_access_ms, hits, stamp, verified_ms, private)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(digest) DO UPDATE SET size = excluded.size,
             last_access_ms = excluded.last_access_ms, stamp = excluded.stamp,
             verified_ms = excluded.verified_ms, private = excluded.private",
        params![
            row.digest.to_string(),
            row.size as i64,
            row.last_access_ms,
            row.hits as i64,
            row.stamp,
            row.verified_ms,
            row.private
        ],
    )?;
    Ok(())
}

pub(super) fn insert_torrent(conn: &Connection, t: &TorrentRow) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO torrents (digest, infohash, piece_length, pieces) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(digest) DO UPDATE SET infohash = excluded.infohash,
             piece_length = excluded.piece_length, pieces = excluded.pieces",
        params![
            t.digest.to_string(),
            &t.infohash[..],
            t.piece_length as i64,
            &t.pieces
        ],
    )?;
    Ok(())
}

fn torrent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TorrentRow> {
    Ok(TorrentRow {
        digest: digest_col(r.get(0)?)?,
        infohash: infohash_col(r, 1)?,
        piece_length: r.get::<_, i64>(2)? as u64,
        pieces: r.get(3)?,
    })
}

pub(super) fn torrent(conn: &Connection, d: &Digest) -> rusqlite::Result<Option<TorrentRow>> {
    conn.query_row(
        "SELECT digest, infohash, piece_length, pieces FROM torrents WHERE digest = ?1",
        [d.to_string()],
        torrent_row,
    )
    .optional()
}

pub(super) fn digest_by_infohash(
    conn: &Connection,
    infohash: &[u8; 20],
) -> rusqlite::Result<Option<Digest>> {
    conn.query_row(
        "SELECT digest FROM torrents WHERE infohash = ?1",
        [&infohash[..]],
        |r| digest_col(r.get(0)?),
    )
    .optional()
}

/// Every torrent, for start-up (infohash lookups and seeding are served from memory).
pub(super) fn load_torrents(conn: &Connection) -> rusqlite::Result<Vec<TorrentRow>> {
    let mut stmt = conn.prepare("SELECT digest, infohash, piece_length, pieces FROM torrents")?;
    let rows = stmt.query_map([], torrent_row)?;
    rows.collect()
}

pub(super) fn delete_blobs(conn: &mut Connection, digests: &[Digest]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare("DELETE FROM blobs WHERE digest = ?1")?;
        for d in digests {
            stmt.execute([d.to_string()])?;
        }
    }
    tx.commit()
}

pub(super) fn update_access(conn: &mut Connection, rows: &[BlobRow]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt =
            tx.prepare("UPDATE blobs SET last_access_ms = ?2, hits = ?3 WHERE digest = ?1")?;
        for r in rows {
            stmt.execute(params![
                r.digest.to_string(),
                r.last_access_ms,
                r.hits as i64
            ])?;
        }
    }
    tx.commit()
}

pub(super) fn manifest(conn: &Connection, d: &Digest) -> rusqlite::Result<Option<StoredManifest>> {
    conn.query_row(
        "SELECT media_type, body, private FROM manifests WHERE digest = ?1",
        [d.to_string()],
        |r| {
            Ok(StoredManifest {
                digest: *d,
                media_type: r.get(0)?,
                body: r.get::<_, Vec<u8>>(1)?.into(),
                private: r.get(2)?,
            })
        },
    )
    .optional()
}

pub(super) fn tag(conn: &Connection, key: &TagKey) -> rusqlite::Result<Option<TagRow>> {
    conn.query_row(
        "SELECT digest, fetched_ms FROM tags WHERE registry = ?1 AND repo = ?2 AND tag = ?3 AND accept = ?4",
        params![key.registry, key.repo, key.tag, key.accept],
        |r| {
            Ok(TagRow {
                digest: digest_col(r.get(0)?)?,
                fetched_ms: r.get(1)?,
            })
        },
    )
    .optional()
}

/// Every tag, once per (registry, repository, tag): the manifest it last resolved to.
pub(super) fn tags(conn: &Connection) -> rusqlite::Result<Vec<(TagKey, TagRow)>> {
    // SQLite takes the bare columns of the row with the max() in a GROUP BY.
    let mut stmt = conn.prepare(
        "SELECT registry, repo, tag, accept, digest, max(fetched_ms) FROM tags
         GROUP BY registry, repo, tag ORDER BY registry, repo, tag",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            TagKey {
                registry: r.get(0)?,
                repo: r.get(1)?,
                tag: r.get(2)?,
                accept: r.get(3)?,
            },
            TagRow {
                digest: digest_col(r.get(4)?)?,
                fetched_ms: r.get(5)?,
            },
        ))
    })?;
    rows.collect()
}

/// A model: registry, repository, tag.
pub type ModelKey = (String, String, String);

pub(super) fn pin(conn: &Connection, m: &ModelKey, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO pins (registry, repo, tag, pinned_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
        params![m.0, m.1, m.2, now_ms],
    )?;
    Ok(())
}

/// Whether it was pinned.
pub(super) fn unpin(conn: &Connection, m: &ModelKey) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "DELETE FROM pins WHERE registry = ?1 AND repo = ?2 AND tag = ?3",
        params![m.0, m.1, m.2],
    )?;
    Ok(n > 0)
}

pub(super) fn pins(conn: &Connection) -> rusqlite::Result<Vec<ModelKey>> {
    let mut stmt = conn.prepare("SELECT registry, repo, tag FROM pins")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// The manifests a tag resolved to, under every Accept it was cached with.
pub(super) fn tag_digests(conn: &Connection, m: &ModelKey) -> rusqlite::Result<Vec<Digest>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT digest FROM tags WHERE registry = ?1 AND repo = ?2 AND tag = ?3",
    )?;
    let rows = stmt.query_map(params![m.0, m.1, m.2], |r| digest_col(r.get(0)?))?;
    rows.collect()
}

/// Forgets a tag (every Accept it was cached under). The manifests stay: they are small,
/// and another tag may name them.
pub(super) fn delete_tag(conn: &Connection, m: &ModelKey) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "DELETE FROM tags WHERE registry = ?1 AND repo = ?2 AND tag = ?3",
        params![m.0, m.1, m.2],
    )?;
    Ok(n > 0)
}

pub(super) fn put_manifest(
    conn: &mut Connection,
    m: &StoredManifest,
    tag: Option<&TagKey>,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO manifests (digest, media_type, body, created_ms, last_access_ms, private) VALUES (?1, ?2, ?3, ?4, ?4, ?5)
         ON CONFLICT(digest) DO UPDATE SET last_access_ms = excluded.last_access_ms, hits = hits + 1,
             private = min(private, excluded.private)",
        params![m.digest.to_string(), m.media_type, &m.body[..], now_ms, m.private],
    )?;
    if let Some(k) = tag {
        tx.execute(
            "INSERT INTO tags (registry, repo, tag, accept, digest, fetched_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(registry, repo, tag, accept) DO UPDATE SET digest = excluded.digest, fetched_ms = excluded.fetched_ms",
            params![k.registry, k.repo, k.tag, k.accept, m.digest.to_string(), now_ms],
        )?;
    }
    tx.commit()
}

pub(super) fn load_counters(conn: &Connection) -> rusqlite::Result<Counters> {
    let mut c = Counters::default();
    let mut stmt = conn.prepare("SELECT name, value FROM counters")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (name, value) = row?;
        c.set(&name, value.max(0) as u64);
    }
    Ok(c)
}

pub(super) fn save_counters(conn: &mut Connection, c: &Counters) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        )?;
        for name in crate::stats::Stats::names() {
            stmt.execute(params![name, c.get(name).unwrap_or(0) as i64])?;
        }
    }
    tx.commit()
}

/// Per-registry counters share the counters table, named `upstream_bytes@<registry>`.
const REGISTRY_BYTES: &str = "upstream_bytes@";

pub(super) fn load_registry_bytes(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare("SELECT name, value FROM counters WHERE name LIKE ?1")?;
    let rows = stmt.query_map([format!("{REGISTRY_BYTES}%")], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, value) = row?;
        if let Some(registry) = name.strip_prefix(REGISTRY_BYTES) {
            out.push((registry.to_owned(), value.max(0) as u64));
        }
    }
    Ok(out)
}

pub(super) fn save_registry_bytes(
    conn: &mut Connection,
    list: &[(String, u64)],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        )?;
        for (registry, n) in list {
            stmt.execute(params![format!("{REGISTRY_BYTES}{registry}"), *n as i64])?;
        }
    }
    tx.commit()
}

pub(super) fn setting(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
}

pub(super) fn set_setting(conn: &Connection, name: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )?;
    Ok(())
}

/// The complete blobs with their infohash: what this node offers its peers.
pub(super) fn catalog(conn: &Connection) -> rusqlite::Result<Vec<CatalogEntry>> {
    let mut stmt = conn.prepare(
        "SELECT b.digest, b.size, t.infohash FROM blobs b JOIN torrents t ON t.digest = b.digest
         WHERE b.private = 0",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(CatalogEntry {
            digest: digest_col(r.get(0)?)?,
            size: r.get::<_, i64>(1)? as u64,
            infohash: infohash_col(r, 2)?,
        })
    })?;
    rows.collect()
}

pub(super) fn upsert_peer(conn: &Connection, url: &str, source: &str) -> rusqlite::Result<()> {
    // A peer named with --peer stays 'static' even when discovery also finds it.
    conn.execute(
        "INSERT INTO peers (url, source) VALUES (?1, ?2)
         ON CONFLICT(url) DO UPDATE SET source = CASE WHEN peers.source = 'static' THEN 'static' ELSE excluded.source END",
        params![url, source],
    )?;
    Ok(())
}

pub(super) fn peers(conn: &Connection) -> rusqlite::Result<Vec<PeerRow>> {
    let mut stmt = conn.prepare(
        "SELECT p.url, p.node_id, p.bt_addr, p.source, p.last_ok_ms, p.last_error, p.failures,
                (SELECT COUNT(*) FROM peer_blobs pb WHERE pb.peer_url = p.url)
         FROM peers p ORDER BY p.url",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PeerRow {
            url: r.get(0)?,
            node_id: r.get(1)?,
            bt_addr: r.get(2)?,
            source: r.get(3)?,
            last_ok_ms: r.get(4)?,
            last_error: r.get(5)?,
            failures: r.get::<_, i64>(6)? as u64,
            blobs: r.get::<_, i64>(7)? as u64,
        })
    })?;
    rows.collect()
}

/// Replaces a peer's catalog after a successful fetch.
pub(super) fn replace_catalog(
    conn: &mut Connection,
    url: &str,
    node_id: &str,
    bt_addr: &str,
    entries: &[CatalogEntry],
    now_ms: i64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE peers SET node_id = ?2, bt_addr = ?3, last_ok_ms = ?4, last_error = NULL, failures = 0 WHERE url = ?1",
        params![url, node_id, bt_addr, now_ms],
    )?;
    tx.execute("DELETE FROM peer_blobs WHERE peer_url = ?1", [url])?;
    {
        let mut stmt = tx.prepare(
            "INSERT OR REPLACE INTO peer_blobs (peer_url, digest, size, infohash) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for e in entries {
            stmt.execute(params![
                url,
                e.digest.to_string(),
                e.size as i64,
                &e.infohash[..]
            ])?;
        }
    }
    tx.commit()
}

/// Adds to `url`'s catalog what it says it holds now (its news), without the whole catalog.
pub(super) fn add_peer_blobs(
    conn: &mut Connection,
    url: &str,
    entries: &[CatalogEntry],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT OR REPLACE INTO peer_blobs (peer_url, digest, size, infohash)
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM peers WHERE url = ?1)",
        )?;
        for e in entries {
            stmt.execute(params![
                url,
                e.digest.to_string(),
                e.size as i64,
                &e.infohash[..]
            ])?;
        }
    }
    tx.commit()
}

/// Drops blobs from `url`'s catalog (it no longer holds them).
pub(super) fn remove_peer_blobs(
    conn: &mut Connection,
    url: &str,
    digests: &[Digest],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare("DELETE FROM peer_blobs WHERE peer_url = ?1 AND digest = ?2")?;
        for d in digests {
            stmt.execute(params![url, d.to_string()])?;
        }
    }
    tx.commit()
}

/// The URL under which the node `node_id` is known, if it is.
pub(super) fn peer_by_node(conn: &Connection, node_id: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT url FROM peers WHERE node_id = ?1 ORDER BY last_ok_ms DESC LIMIT 1",
        [node_id],
        |r| r.get(0),
    )
    .optional()
}

/// Records a failed fetch; a peer that keeps failing loses its catalog (it is gone), and a
/// discovered one is forgotten altogether.
pub(super) fn peer_failed(
    conn: &mut Connection,
    url: &str,
    error: &str,
    forget_after: u64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE peers SET last_error = ?2, failures = failures + 1 WHERE url = ?1",
        params![url, error],
    )?;
    let failures: i64 = tx
        .query_row("SELECT failures FROM peers WHERE url = ?1", [url], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    if failures as u64 >= forget_after {
        tx.execute("DELETE FROM peer_blobs WHERE peer_url = ?1", [url])?;
        tx.execute(
            "DELETE FROM peers WHERE url = ?1 AND source = 'discovered'",
            [url],
        )?;
    }
    tx.commit()
}

/// Who holds a digest, per the last catalogs.
pub(super) fn holders(conn: &Connection, d: &Digest) -> rusqlite::Result<Vec<Holder>> {
    let mut stmt = conn.prepare(
        "SELECT p.url, p.bt_addr, pb.size, pb.infohash FROM peer_blobs pb JOIN peers p ON p.url = pb.peer_url
         WHERE pb.digest = ?1 AND p.bt_addr IS NOT NULL ORDER BY p.last_ok_ms DESC",
    )?;
    let rows = stmt.query_map([d.to_string()], |r| {
        Ok(Holder {
            peer_url: r.get(0)?,
            bt_addr: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            infohash: infohash_col(r, 3)?,
        })
    })?;
    rows.collect()
}

/// BitTorrent addresses of peers whose catalogs list `infohash`.
pub(super) fn peers_with_infohash(
    conn: &Connection,
    infohash: &[u8; 20],
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT p.bt_addr FROM peer_blobs pb JOIN peers p ON p.url = pb.peer_url
         WHERE pb.infohash = ?1 AND p.bt_addr IS NOT NULL",
    )?;
    let rows = stmt.query_map([&infohash[..]], |r| r.get(0))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }

    #[test]
    fn roundtrips_in_memory() {
        let mut conn = open_in_memory().unwrap();
        let d = Digest::of(b"x");
        let row = BlobRow {
            digest: d,
            size: 1,
            last_access_ms: 5,
            hits: 0,
            stamp: Some("1:2.3".into()),
            verified_ms: 4,
            private: false,
        };
        insert_blob(&conn, &row).unwrap();
        update_access(
            &mut conn,
            &[BlobRow {
                hits: 3,
                last_access_ms: 9,
                ..row.clone()
            }],
        )
        .unwrap();
        let rows = load_blobs(&conn).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].hits, rows[0].last_access_ms), (3, 9));
        assert_eq!(rows[0].stamp.as_deref(), Some("1:2.3"));
        set_stamp(&conn, &d, "4:5.6").unwrap();
        assert_eq!(
            load_blobs(&conn).unwrap()[0].stamp.as_deref(),
            Some("4:5.6")
        );
        delete_blobs(&mut conn, &[d]).unwrap();
        assert!(load_blobs(&conn).unwrap().is_empty());

        let m = StoredManifest {
            digest: Digest::of(b"{}"),
            media_type: "application/json".into(),
            body: bytes::Bytes::from_static(b"{}"),
            private: false,
        };
        let key = TagKey {
            registry: "r".into(),
            repo: "a/b".into(),
            tag: "t".into(),
            accept: "x".into(),
        };
        put_manifest(&mut conn, &m, Some(&key), 7).unwrap();
        assert_eq!(manifest(&conn, &m.digest).unwrap(), Some(m.clone()));
        assert_eq!(
            tag(&conn, &key).unwrap(),
            Some(TagRow {
                digest: m.digest,
                fetched_ms: 7
            })
        );

        let mut c = Counters::default();
        c.set("served_bytes", 42);
        save_counters(&mut conn, &c).unwrap();
        assert_eq!(load_counters(&conn).unwrap(), c);
        let per = vec![("hf.co".to_owned(), 7), ("127.0.0.1:5000".to_owned(), 9)];
        save_registry_bytes(&mut conn, &per).unwrap();
        let mut got = load_registry_bytes(&conn).unwrap();
        got.sort();
        assert_eq!(got, [per[1].clone(), per[0].clone()]);
        assert_eq!(
            load_counters(&conn).unwrap(),
            c,
            "apart from the plain counters"
        );
    }
}
