//! The store: content-addressed blob files plus the SQLite index of blobs, manifests, tags
//! and counters. Blocking work (SQLite, fsync, rename) runs on the blocking pool.
//!
//! Layout under the data dir:
//! - `index.sqlite`: the index (schema in `migrations/`, applied at open);
//! - `blobs/sha256/<xx>/<hex>`: complete blobs, each verified before it was renamed here;
//! - `tmp/<hex>.partial` + `tmp/<hex>.journal`: fills in progress, kept across restarts
//!   so they can resume (`partial.rs`); a partial without its journal is discarded at
//!   start-up, and so is one untouched for `PARTIAL_MAX_AGE`;
//! - `lock`: held while a process uses the dir.
//!
//! The set of complete blobs is mirrored in memory, with a reader count per blob, so that
//! lookups on the hot path are synchronous and eviction can never remove a blob between a
//! reader finding it and opening it.
//!
//! Must not: know about HTTP, upstreams or fills.

mod check;
mod index;
mod partial;

pub use check::Damage;
use check::Stamp;
pub use partial::{Journal, Record};

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::Connection;

use crate::oci::Digest;
use crate::stats::Counters;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open index {path}")]
    OpenIndex {
        path: PathBuf,
        #[source]
        source: rusqlite_migration::Error,
    },
    #[error("data dir {path} is in use by another shoal process")]
    Locked { path: PathBuf },
    #[error("index query failed")]
    Index(#[from] rusqlite::Error),
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blocking store task failed")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
        move |source| Error::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// True when the cause is a full disk (or quota), which callers answer with 507.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if is_disk_full(source))
    }
}

pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How many dropped blobs `Store::dropped` keeps for a slow receiver.
const DROPPED_BACKLOG: usize = 1024;

/// A partial nobody resumed for this long is discarded at start-up.
const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// A fill's partial file, and what a previous run left in it.
pub struct Partial {
    pub file: File,
    pub journal: Journal,
    /// Ranges a previous run said had landed; unchecked.
    pub resumed: Vec<Record>,
}

/// A row of the `blobs` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    pub digest: Digest,
    pub size: u64,
    pub last_access_ms: i64,
    pub hits: u64,
    /// The file's `Stamp` when its bytes were last known good (encoded).
    pub stamp: Option<String>,
    /// When its bytes were last hashed (0: not known).
    pub verified_ms: i64,
    /// Fetched with a client's credentials: not offered to peers (`0006_private.sql`).
    pub private: bool,
}

/// A manifest exactly as upstream sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
    /// Fetched with a client's credentials: never an answer to anyone upstream has not
    /// confirmed (`0006_private.sql`).
    pub private: bool,
}

/// Identifies a tag lookup: the same tag may differ per upstream and per `Accept`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagKey {
    pub registry: String,
    pub repo: String,
    pub tag: String,
    pub accept: String,
}

/// A row of the `torrents` table: what defines a complete blob's torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentRow {
    pub digest: Digest,
    pub infohash: [u8; 20],
    pub piece_length: u64,
    pub pieces: Vec<u8>,
}

/// One blob a node offers its peers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CatalogEntry {
    pub digest: Digest,
    pub size: u64,
    #[serde(with = "hex_bytes")]
    pub infohash: [u8; 20],
}

/// A peer that holds a blob, per its last catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub peer_url: String,
    pub bt_addr: String,
    pub size: u64,
    pub infohash: [u8; 20],
}

/// A row of the `peers` table, with the size of its last catalog.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerRow {
    pub url: String,
    pub node_id: Option<String>,
    pub bt_addr: Option<String>,
    pub source: String,
    pub last_ok_ms: Option<i64>,
    pub last_error: Option<String>,
    pub failures: u64,
    pub blobs: u64,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8; 20], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 20], D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        let mut out = [0u8; 20];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

pub use index::ModelKey;

/// How much a held blob is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobUse {
    pub size: u64,
    /// Requests that read it (a ranged pull counts each part).
    pub hits: u64,
    pub last_access_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub digest: Digest,
    pub fetched_ms: i64,
}

#[derive(Debug)]
struct BlobMeta {
    size: u64,
    last_access_ms: i64,
    hits: u64,
    readers: usize,
    dirty: bool,
    /// What the file looked like when its bytes were last known good; `None` (or another
    /// stamp on disk) means it must be hashed before it is served again.
    stamp: Option<Stamp>,
    /// When its bytes were last hashed (0: not known); the scrub takes the oldest first.
    verified_ms: i64,
    /// Tells this copy from a later one of the same digest, so that dropping a damaged
    /// copy never drops the one that replaced it.
    generation: u64,
    /// Fetched with a client's credentials (`BlobRow::private`).
    private: bool,
}

#[derive(Default)]
struct Blobs {
    map: HashMap<Digest, BlobMeta>,
    total: u64,
    generations: u64,
}

impl Blobs {
    fn insert(&mut self, row: &BlobRow, stamp: Option<Stamp>) {
        self.generations += 1;
        let (d, size) = (row.digest, row.size);
        let meta = BlobMeta {
            size,
            last_access_ms: row.last_access_ms,
            hits: row.hits,
            readers: 0,
            dirty: false,
            stamp,
            verified_ms: row.verified_ms,
            generation: self.generations,
            private: row.private,
        };
        if let Some(old) = self.map.insert(d, meta) {
            self.total -= old.size;
        }
        self.total += size;
    }
}

struct Inner {
    root: PathBuf,
    db: Mutex<Connection>,
    blobs: Mutex<Blobs>,
    /// One hash check at a time per blob: the parts of one pull arrive together.
    checks: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    /// Blobs that stopped being held (evicted, or dropped as damaged).
    dropped: tokio::sync::broadcast::Sender<Digest>,
    /// Blobs dropped as damaged, with a repository they were fetched for.
    damaged: tokio::sync::broadcast::Sender<(Digest, Option<String>)>,
    _lock: File,
}

/// Cheap to clone; all clones share one index and one in-memory view.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A reader's hold on a complete blob: while it lives the blob is not evicted.
pub struct BlobLease {
    inner: Arc<Inner>,
    digest: Digest,
    size: u64,
    generation: u64,
}

impl BlobLease {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn open(&self) -> io::Result<File> {
        File::open(blob_path(&self.inner.root, &self.digest))
    }
}

impl Drop for BlobLease {
    fn drop(&mut self) {
        let mut blobs = lock(&self.inner.blobs);
        if let Some(m) = blobs.map.get_mut(&self.digest) {
            m.readers = m.readers.saturating_sub(1);
        }
    }
}

/// Poisoning only means another thread panicked mid-update of plain counters; the data is
/// still usable, so recover rather than spread the panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn blob_path(root: &Path, d: &Digest) -> PathBuf {
    let hex = d.hex();
    root.join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// A fill's partial file, and the journal of what landed in it.
fn partial_path(root: &Path, d: &Digest) -> PathBuf {
    root.join("tmp").join(format!("{}.partial", d.hex()))
}

fn journal_path(root: &Path, d: &Digest) -> PathBuf {
    root.join("tmp").join(format!("{}.journal", d.hex()))
}

impl Store {
    /// Opens (creating if needed) the data dir: takes its lock, applies migrations,
    /// discards partial files and reconciles the index with the blob files.
    pub async fn open(root: &Path) -> Result<Store> {
        let root = root.to_owned();
        tokio::task::spawn_blocking(move || Store::open_blocking(&root)).await?
    }

    fn open_blocking(root: &Path) -> Result<Store> {
        for dir in [root.join("blobs/sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        }
        let lock_path = root.join("lock");
        let lock_file = File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
        if lock_file.try_lock().is_err() {
            return Err(Error::Locked {
                path: root.to_owned(),
            });
        }
        let db_path = root.join("index.sqlite");
        let mut conn = index::open(&db_path).map_err(|source| Error::OpenIndex {
            path: db_path.clone(),
            source,
        })?;

        reconcile_partials(&root.join("tmp"))?;

        let mut blobs = Blobs::default();
        let mut stale = Vec::new();
        let mut unstamped = Vec::new();
        for row in index::load_blobs(&conn)? {
            let path = blob_path(root, &row.digest);
            match fs::metadata(&path) {
                Ok(m) if m.len() == row.size => {
                    let now = Stamp::of(&m);
                    let stamp = match row.stamp.as_deref().map(Stamp::decode) {
                        // From before stamps were kept: what is there now is taken as good.
                        None => {
                            unstamped.push((row.digest, now));
                            Some(now)
                        }
                        Some(Some(s)) if s == now => Some(s),
                        Some(_) => {
                            tracing::warn!(digest = %row.digest, "blob file changed on disk since it was cached; it is hashed again before it is served");
                            None
                        }
                    };
                    blobs.insert(&row, stamp);
                }
                other => {
                    tracing::warn!(digest = %row.digest, found = ?other.map(|m| m.len()).ok(),
                        expected = row.size, "indexed blob file missing or wrong size; dropping it");
                    let _ = fs::remove_file(&path);
                    stale.push(row.digest);
                }
            }
        }
        index::delete_blobs(&mut conn, &stale)?;
        for (d, stamp) in unstamped {
            index::set_stamp(&conn, &d, &stamp.encode())?;
        }

        // Files without a row: a crash between rename and insert. Adopt them only if their
        // bytes still hash to their name.
        for path in walk_blob_files(root)? {
            let Some(digest) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
            else {
                continue;
            };
            if blobs.map.contains_key(&digest) {
                continue;
            }
            match sha256_file(&path) {
                Ok((got, size)) if got == digest => {
                    tracing::info!(%digest, size, "adopting verified blob file missing from the index");
                    let stamp = fs::metadata(&path).ok().map(|m| Stamp::of(&m));
                    let row = BlobRow {
                        digest,
                        size,
                        last_access_ms: now_ms(),
                        hits: 0,
                        stamp: stamp.map(|s| s.encode()),
                        verified_ms: now_ms(),
                        // It may be a private blob whose row a crash lost (right after the
                        // rename): kept from peers until upstream serves it to anyone.
                        private: true,
                    };
                    index::insert_blob(&conn, &row)?;
                    blobs.insert(&row, stamp);
                }
                other => {
                    tracing::warn!(%digest, result = ?other.map(|(d, _)| d), "removing unindexed blob file that fails verification");
                    fs::remove_file(&path).map_err(Error::io("remove", &path))?;
                }
            }
        }

        Ok(Store {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                db: Mutex::new(conn),
                blobs: Mutex::new(blobs),
                checks: Mutex::default(),
                dropped: tokio::sync::broadcast::channel(DROPPED_BACKLOG).0,
                damaged: tokio::sync::broadcast::channel(DROPPED_BACKLOG).0,
                _lock: lock_file,
            }),
        })
    }

    async fn with_db<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        Ok(tokio::task::spawn_blocking(move || f(&mut lock(&inner.db))).await??)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Size, hits and last use of a complete blob, if held.
    pub fn blob_use(&self, d: &Digest) -> Option<BlobUse> {
        lock(&self.inner.blobs).map.get(d).map(|m| BlobUse {
            size: m.size,
            hits: m.hits,
            last_access_ms: m.last_access_ms,
        })
    }

    /// Whether a held blob is private (fetched with a client's credentials).
    pub fn is_private(&self, d: &Digest) -> bool {
        lock(&self.inner.blobs)
            .map
            .get(d)
            .is_some_and(|m| m.private)
    }

    /// Makes a private blob public: upstream served it without credentials.
    pub async fn set_public(&self, d: Digest) -> Result<()> {
        self.with_db(move |c| index::set_public(c, &d)).await?;
        if let Some(m) = lock(&self.inner.blobs).map.get_mut(&d) {
            m.private = false;
        }
        Ok(())
    }

    /// Size of a complete blob, if held.
    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        lock(&self.inner.blobs).map.get(d).map(|m| m.size)
    }

    /// Pins a complete blob for reading and records the access (for LRU and hit counts).
    pub fn acquire(&self, d: &Digest) -> Option<BlobLease> {
        self.lease(d, true)
    }

    /// Pins a complete blob without counting a use (the scrub and `verify` read it).
    pub fn acquire_quietly(&self, d: &Digest) -> Option<BlobLease> {
        self.lease(d, false)
    }

    fn lease(&self, d: &Digest, used: bool) -> Option<BlobLease> {
        let mut blobs = lock(&self.inner.blobs);
        let m = blobs.map.get_mut(d)?;
        m.readers += 1;
        if used {
            m.hits += 1;
            m.last_access_ms = now_ms();
            m.dirty = true;
        }
        Some(BlobLease {
            inner: self.inner.clone(),
            digest: *d,
            size: m.size,
            generation: m.generation,
        })
    }

    /// Every complete blob with its size, the longest unhashed first.
    pub fn by_verification_age(&self) -> Vec<(Digest, u64)> {
        let blobs = lock(&self.inner.blobs);
        let mut v: Vec<(i64, Digest, u64)> = blobs
            .map
            .iter()
            .map(|(d, m)| (m.verified_ms, *d, m.size))
            .collect();
        v.sort();
        v.into_iter().map(|(_, d, s)| (d, s)).collect()
    }

    /// The blob hashed longest ago, with when (ms since the epoch; 0: not known).
    pub fn oldest_verified(&self) -> Option<(Digest, i64)> {
        let blobs = lock(&self.inner.blobs);
        blobs
            .map
            .iter()
            .map(|(d, m)| (m.verified_ms, *d))
            .min()
            .map(|(t, d)| (d, t))
    }

    /// Remembers a repository that `d` was fetched for (to fetch it again if damaged).
    pub async fn set_repo(&self, d: Digest, repo: String) -> Result<()> {
        self.with_db(move |c| index::set_repo(c, &d, &repo)).await
    }

    /// A repository `d` can be fetched from upstream with, if one is known.
    pub async fn repo_of(&self, d: Digest) -> Result<Option<String>> {
        self.with_db(move |c| index::repo_of(c, &d)).await
    }

    /// Tells of every blob dropped as damaged from now on, with a repository it was
    /// fetched for (to fetch it again), if one is known.
    pub fn damaged(&self) -> tokio::sync::broadcast::Receiver<(Digest, Option<String>)> {
        self.inner.damaged.subscribe()
    }

    /// Tells of every blob that stops being held from now on (evicted, or dropped as
    /// damaged). A receiver that falls more than `DROPPED_BACKLOG` behind misses some.
    pub fn dropped(&self) -> tokio::sync::broadcast::Receiver<Digest> {
        self.inner.dropped.subscribe()
    }

    /// (complete blobs, their total bytes)
    pub fn totals(&self) -> (u64, u64) {
        let blobs = lock(&self.inner.blobs);
        (blobs.map.len() as u64, blobs.total)
    }

    /// Where a complete blob's file is (whether or not it is there).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        blob_path(&self.inner.root, d)
    }

    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        partial_path(&self.inner.root, d)
    }

    fn journal_path(&self, d: &Digest) -> PathBuf {
        journal_path(&self.inner.root, d)
    }

    /// The partial file for a fill of `size` bytes, with its journal: the one a previous
    /// run left, if it was for the same size, else a new one (blocking; call off the
    /// runtime).
    pub fn open_partial(&self, d: &Digest, size: u64) -> Result<Partial> {
        let path = self.partial_path(d);
        let jpath = self.journal_path(d);
        let same_size = fs::metadata(&path).is_ok_and(|m| m.len() == size);
        if same_size {
            if let Some((journal, resumed)) =
                Journal::resume(&jpath, size).map_err(Error::io("read", &jpath))?
            {
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(Error::io("open", &path))?;
                return Ok(Partial {
                    file,
                    journal,
                    resumed,
                });
            }
        }
        let file = self.create_partial(d, size)?;
        let journal = Journal::create(&jpath, size).map_err(Error::io("create", &jpath))?;
        Ok(Partial {
            file,
            journal,
            resumed: Vec::new(),
        })
    }

    /// Creates the partial file for a fill, with its space allocated up front (blocking;
    /// call off the runtime). A full disk then fails here, before a client got any header,
    /// instead of in the middle of a body. Filesystems without `fallocate` get a sparse file.
    pub fn create_partial(&self, d: &Digest, size: u64) -> Result<File> {
        let path = self.partial_path(d);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(Error::io("create", &path))?;
        let allocated = match size {
            0 => Ok(()),
            _ => rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size),
        };
        match allocated {
            Ok(()) => {}
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {
                file.set_len(size).map_err(Error::io("size", &path))?
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(Error::io("allocate", &path)(e.into()));
            }
        }
        Ok(file)
    }

    /// Removes a partial and its journal (blocking).
    pub fn discard_partial(&self, d: &Digest) {
        for path in [self.journal_path(d), self.partial_path(d)] {
            if let Err(e) = partial::remove_if_present(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove partial blob");
            }
        }
    }

    /// Makes a verified partial a complete blob: fsync, rename into place, fsync the
    /// directory, then the index rows (blob and torrent, in one transaction). Only after
    /// all of that is it visible to readers. A `private` blob (fetched with a client's
    /// credentials) is never offered to peers.
    pub async fn commit(
        &self,
        d: Digest,
        size: u64,
        file: Arc<File>,
        torrent: Option<TorrentRow>,
        private: bool,
    ) -> Result<()> {
        let inner = self.inner.clone();
        let from = self.partial_path(&d);
        let journal = self.journal_path(&d);
        tokio::task::spawn_blocking(move || -> Result<()> {
            file.sync_all().map_err(Error::io("fsync", &from))?;
            let to = blob_path(&inner.root, &d);
            let dir = to.parent().unwrap_or(&inner.root).to_owned();
            fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
            fs::rename(&from, &to).map_err(Error::io("rename", &from))?;
            File::open(&dir)
                .and_then(|f| f.sync_all())
                .map_err(Error::io("fsync", &dir))?;
            record_complete(&inner, d, size, torrent.as_ref(), private)?;
            // A journal left behind (a crash right here) is removed at the next start.
            if let Err(e) = partial::remove_if_present(&journal) {
                tracing::warn!(path = %journal.display(), error = %e, "cannot remove a journal");
            }
            Ok(())
        })
        .await?
    }

    /// Takes in a complete blob that already exists as a file elsewhere (`shoal import`):
    /// hard-linked into place when `from` is on the same filesystem, else copied. The
    /// caller has verified its digest. Returns whether it was linked (no bytes copied).
    pub async fn adopt(
        &self,
        d: Digest,
        size: u64,
        from: PathBuf,
        torrent: Option<TorrentRow>,
    ) -> Result<bool> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || -> Result<bool> {
            let to = blob_path(&inner.root, &d);
            let dir = to.parent().unwrap_or(&inner.root).to_owned();
            fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
            let linked = match fs::hard_link(&from, &to) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => true,
                Err(_) => {
                    // Another filesystem (or one without hard links): copy, then fsync,
                    // through a partial so a crash never leaves a short "complete" file.
                    let tmp = inner.root.join("tmp").join(format!("{}.partial", d.hex()));
                    fs::copy(&from, &tmp).map_err(Error::io("copy", &from))?;
                    File::open(&tmp)
                        .and_then(|f| f.sync_all())
                        .map_err(Error::io("fsync", &tmp))?;
                    fs::rename(&tmp, &to).map_err(Error::io("rename", &tmp))?;
                    false
                }
            };
            File::open(&dir)
                .and_then(|f| f.sync_all())
                .map_err(Error::io("fsync", &dir))?;
            record_complete(&inner, d, size, torrent.as_ref(), false)?;
            Ok(linked)
        })
        .await?
    }

    /// Whether the cache plus `incoming` bytes stays within `limit`.
    pub fn fits(&self, limit: u64, incoming: u64) -> bool {
        lock(&self.inner.blobs).total + incoming <= limit
    }

    /// Evicts least-recently-used blobs that nobody is reading, and none in `keep`, until
    /// the cache plus `incoming` bytes fits in `limit`. Returns what was evicted. Blobs
    /// being read (or still filling, which are not in the cache yet) are never touched.
    pub async fn evict_to(
        &self,
        limit: u64,
        incoming: u64,
        keep: &HashSet<Digest>,
    ) -> Result<Vec<(Digest, u64)>> {
        let victims = {
            let mut blobs = lock(&self.inner.blobs);
            if blobs.total + incoming <= limit {
                return Ok(Vec::new());
            }
            let mut candidates: Vec<(i64, Digest, u64)> = blobs
                .map
                .iter()
                .filter(|(d, m)| m.readers == 0 && !keep.contains(d))
                .map(|(d, m)| (m.last_access_ms, *d, m.size))
                .collect();
            candidates.sort();
            let mut victims = Vec::new();
            for (_, d, size) in candidates {
                if blobs.total + incoming <= limit {
                    break;
                }
                blobs.map.remove(&d);
                blobs.total -= size;
                victims.push((d, size));
            }
            victims
        };
        self.remove_files(victims).await
    }

    /// Removes these blobs, except any being read or seeded now; returns those removed.
    pub async fn remove(&self, digests: &[Digest]) -> Result<Vec<(Digest, u64)>> {
        let victims = {
            let mut blobs = lock(&self.inner.blobs);
            let mut victims = Vec::new();
            for d in digests {
                if blobs.map.get(d).is_some_and(|m| m.readers == 0) {
                    if let Some(m) = blobs.map.remove(d) {
                        blobs.total -= m.size;
                        victims.push((*d, m.size));
                    }
                }
            }
            victims
        };
        self.remove_files(victims).await
    }

    /// Deletes the files and rows of blobs already taken out of the in-memory set, and
    /// tells whoever listens that they are gone.
    async fn remove_files(&self, victims: Vec<(Digest, u64)>) -> Result<Vec<(Digest, u64)>> {
        if victims.is_empty() {
            return Ok(victims);
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<(Digest, u64)>> {
            for (d, _) in &victims {
                let path = blob_path(&inner.root, d);
                if let Err(e) = fs::remove_file(&path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        return Err(Error::io("remove", &path)(e));
                    }
                }
            }
            let digests: Vec<Digest> = victims.iter().map(|(d, _)| *d).collect();
            index::delete_blobs(&mut lock(&inner.db), &digests)?;
            for d in digests {
                let _ = inner.dropped.send(d); // no receiver: nobody to tell
            }
            Ok(victims)
        })
        .await?
    }

    /// Writes access times and hit counts gathered in memory to the index.
    pub async fn flush_access(&self) -> Result<()> {
        let rows: Vec<BlobRow> = {
            let mut blobs = lock(&self.inner.blobs);
            blobs
                .map
                .iter_mut()
                .filter(|(_, m)| m.dirty)
                .map(|(d, m)| {
                    m.dirty = false;
                    BlobRow {
                        digest: *d,
                        size: m.size,
                        last_access_ms: m.last_access_ms,
                        hits: m.hits,
                        // Not written by update_access.
                        stamp: None,
                        verified_ms: 0,
                        private: m.private,
                    }
                })
                .collect()
        };
        if rows.is_empty() {
            return Ok(());
        }
        self.with_db(move |c| index::update_access(c, &rows)).await
    }

    pub async fn torrent(&self, d: Digest) -> Result<Option<TorrentRow>> {
        self.with_db(move |c| index::torrent(c, &d)).await
    }

    pub async fn digest_by_infohash(&self, infohash: [u8; 20]) -> Result<Option<Digest>> {
        self.with_db(move |c| index::digest_by_infohash(c, &infohash))
            .await
    }

    pub async fn torrents(&self) -> Result<Vec<TorrentRow>> {
        self.with_db(|c| index::load_torrents(c)).await
    }

    /// Records the torrent of a complete blob made without one (adopted or imported).
    pub async fn put_torrent(&self, t: TorrentRow) -> Result<()> {
        self.with_db(move |c| index::insert_torrent(c, &t)).await
    }

    /// This node's id: random, made once, kept in the index.
    pub async fn node_id(&self) -> Result<String> {
        self.with_db(|c| {
            if let Some(id) = index::setting(c, "node_id")? {
                return Ok(id);
            }
            let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            index::set_setting(c, "node_id", &id)?;
            Ok(id)
        })
        .await
    }

    pub async fn catalog(&self) -> Result<Vec<CatalogEntry>> {
        self.with_db(|c| index::catalog(c)).await
    }

    pub async fn add_peer(&self, url: String, source: &'static str) -> Result<()> {
        self.with_db(move |c| index::upsert_peer(c, &url, source))
            .await
    }

    pub async fn peers(&self) -> Result<Vec<PeerRow>> {
        self.with_db(|c| index::peers(c)).await
    }

    pub async fn replace_catalog(
        &self,
        url: String,
        node_id: String,
        bt_addr: String,
        entries: Vec<CatalogEntry>,
    ) -> Result<()> {
        let now = now_ms();
        self.with_db(move |c| index::replace_catalog(c, &url, &node_id, &bt_addr, &entries, now))
            .await
    }

    pub async fn peer_failed(&self, url: String, error: String, forget_after: u64) -> Result<()> {
        self.with_db(move |c| index::peer_failed(c, &url, &error, forget_after))
            .await
    }

    pub async fn add_peer_blobs(&self, url: String, entries: Vec<CatalogEntry>) -> Result<()> {
        self.with_db(move |c| index::add_peer_blobs(c, &url, &entries))
            .await
    }

    pub async fn remove_peer_blobs(&self, url: String, digests: Vec<Digest>) -> Result<()> {
        self.with_db(move |c| index::remove_peer_blobs(c, &url, &digests))
            .await
    }

    pub async fn peer_by_node(&self, node_id: String) -> Result<Option<String>> {
        self.with_db(move |c| index::peer_by_node(c, &node_id))
            .await
    }

    pub async fn peers_with_infohash(&self, infohash: [u8; 20]) -> Result<Vec<String>> {
        self.with_db(move |c| index::peers_with_infohash(c, &infohash))
            .await
    }

    pub async fn holders(&self, d: Digest) -> Result<Vec<Holder>> {
        self.with_db(move |c| index::holders(c, &d)).await
    }

    pub async fn manifest(&self, d: Digest) -> Result<Option<StoredManifest>> {
        self.with_db(move |c| index::manifest(c, &d)).await
    }

    /// Pins a model (its blobs are never evicted).
    pub async fn pin(&self, m: ModelKey) -> Result<()> {
        self.with_db(move |c| index::pin(c, &m, now_ms())).await
    }

    /// Unpins a model; false when it was not pinned.
    pub async fn unpin(&self, m: ModelKey) -> Result<bool> {
        self.with_db(move |c| index::unpin(c, &m)).await
    }

    pub async fn pins(&self) -> Result<Vec<ModelKey>> {
        self.with_db(|c| index::pins(c)).await
    }

    /// The manifests a cached tag resolved to, under every Accept.
    pub async fn tag_digests(&self, m: ModelKey) -> Result<Vec<Digest>> {
        self.with_db(move |c| index::tag_digests(c, &m)).await
    }

    /// Forgets a cached tag; false when there was none.
    pub async fn delete_tag(&self, m: ModelKey) -> Result<bool> {
        self.with_db(move |c| index::delete_tag(c, &m)).await
    }

    /// Every cached tag, once per registry, repository and tag.
    pub async fn tags(&self) -> Result<Vec<(TagKey, TagRow)>> {
        self.with_db(|c| index::tags(c)).await
    }

    pub async fn tag(&self, key: TagKey) -> Result<Option<TagRow>> {
        self.with_db(move |c| index::tag(c, &key)).await
    }

    pub async fn put_manifest(
        &self,
        m: StoredManifest,
        tag: Option<TagKey>,
        now_ms: i64,
    ) -> Result<()> {
        self.with_db(move |c| index::put_manifest(c, &m, tag.as_ref(), now_ms))
            .await
    }

    pub async fn load_counters(&self) -> Result<Counters> {
        self.with_db(|c| index::load_counters(c)).await
    }

    pub async fn save_counters(&self, counters: Counters) -> Result<()> {
        self.with_db(move |c| index::save_counters(c, &counters))
            .await
    }

    /// Bytes fetched from each registry, by its name.
    pub async fn load_registry_bytes(&self) -> Result<Vec<(String, u64)>> {
        self.with_db(|c| index::load_registry_bytes(c)).await
    }

    pub async fn save_registry_bytes(&self, list: Vec<(String, u64)>) -> Result<()> {
        self.with_db(move |c| index::save_registry_bytes(c, &list))
            .await
    }
}

/// Indexes a blob whose file is in place (blob and torrent rows in one transaction), then
/// makes it visible to readers. Blocking.
fn record_complete(
    inner: &Inner,
    d: Digest,
    size: u64,
    torrent: Option<&TorrentRow>,
    private: bool,
) -> Result<()> {
    // The file as it is now, its bytes just verified (or adopted verified).
    let path = blob_path(&inner.root, &d);
    let stamp = Stamp::of(&fs::metadata(&path).map_err(Error::io("stat", &path))?);
    let row = BlobRow {
        digest: d,
        size,
        last_access_ms: now_ms(),
        hits: 0,
        stamp: Some(stamp.encode()),
        verified_ms: now_ms(),
        private,
    };
    {
        let mut db = lock(&inner.db);
        let tx = db.transaction()?;
        index::insert_blob(&tx, &row)?;
        if let Some(t) = torrent {
            index::insert_torrent(&tx, t)?;
        }
        tx.commit()?;
    }
    lock(&inner.blobs).insert(&row, Some(stamp));
    Ok(())
}

/// Keeps the partials that can resume (a journal for their size, touched recently) and
/// removes everything else in `tmp/`.
fn reconcile_partials(tmp: &Path) -> Result<()> {
    let mut files = Vec::new();
    for entry in fs::read_dir(tmp).map_err(Error::io("list", tmp))? {
        files.push(entry.map_err(Error::io("list", tmp))?.path());
    }
    let resumable = |partial: &Path| -> bool {
        let journal = partial.with_extension("journal");
        let Ok(meta) = fs::metadata(partial) else {
            return false;
        };
        let fresh = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age < PARTIAL_MAX_AGE);
        let mut head = [0u8; 32];
        let sized = File::open(&journal)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok_and(|()| partial::size_of(&head) == Some(meta.len()));
        fresh && sized
    };
    for path in &files {
        let keep = match path.extension().and_then(|e| e.to_str()) {
            Some("partial") => resumable(path),
            Some("journal") => resumable(&path.with_extension("partial")),
            _ => false,
        };
        if keep {
            if path.extension().is_some_and(|e| e == "partial") {
                tracing::info!(path = %path.display(), "keeping a partial blob to resume");
            }
            continue;
        }
        tracing::info!(path = %path.display(), "discarding a partial blob that cannot resume");
        partial::remove_if_present(path).map_err(Error::io("remove", path))?;
    }
    Ok(())
}

fn walk_blob_files(root: &Path) -> Result<Vec<PathBuf>> {
    let base = root.join("blobs/sha256");
    let mut out = Vec::new();
    for shard in fs::read_dir(&base).map_err(Error::io("list", &base))? {
        let shard = shard.map_err(Error::io("list", &base))?.path();
        if !shard.is_dir() {
            continue;
        }
        for f in fs::read_dir(&shard).map_err(Error::io("list", &shard))? {
            let p = f.map_err(Error::io("list", &shard))?.path();
            if p.is_file() {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Reads a whole file front to back in 4 MiB chunks, handing each to `each` (blocking):
/// the one way a file is streamed through a hasher. Returns how many bytes it read.
pub fn stream_file(path: &Path, each: impl FnMut(&[u8])) -> io::Result<u64> {
    stream_reader(File::open(path)?, each)
}

/// `stream_file` for an open file (or any reader), from where it stands.
pub fn stream_reader(mut f: impl Read, mut each: impl FnMut(&[u8])) -> io::Result<u64> {
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        each(&buf[..n]);
        total += n as u64;
    }
}

/// The digest and size of a file's bytes.
pub fn sha256_file(path: &Path) -> io::Result<(Digest, u64)> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let total = stream_file(path, |b| h.update(b))?;
    Ok((Digest::from_bytes(h.finalize().into()), total))
}

#[cfg(test)]
mod tests;
