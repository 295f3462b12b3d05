//! The blob path and the manifest path: memory → disk → (a running fill) → upstream.
//!
//! - `open_blob`: a complete blob is read from the store; otherwise the client joins the
//!   one fill for that digest (starting it if needed) and is served bytes as they land.
//! - `blob_size`: for HEAD; never starts a fill.
//! - `manifest`: by digest from the store (verified on the way in), by tag with a TTL and
//!   revalidation upstream, stale-if-error when upstream is down.
//!
//! Errors carry an `ErrorKind` chosen where they arise; `http::error` maps kinds to
//! statuses. Must not: know about HTTP requests, responses or headers.

mod fill;
mod manifests;
mod ranges;
mod read;
mod sched;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cache::Cache;
use crate::config::FetchConfig;
use crate::oci::{Digest, RangeSpec, RepoName};
use crate::p2p::{Peers, Swarm};
use crate::stats::Stats;
use crate::store::{self, Store};
use crate::upstream::{self, BlobProbe, ClientMeta, Upstream};

pub use manifests::{ManifestOutcome, ManifestReply};
pub use read::{BlobRead, BlobSource, BlobStream};

use fill::{Fill, Origin};

/// The BitTorrent side, as the blob path uses it.
#[derive(Clone)]
pub struct P2p {
    pub swarm: Arc<Swarm>,
    pub peers: Arc<Peers>,
}

/// How an error should be answered, decided where it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    /// Upstream failed or answered nonsense.
    Upstream,
    Timeout,
    /// Upstream's bytes do not match their digest.
    Integrity,
    /// The disk is full.
    Storage,
    /// shoal is shutting down.
    ShuttingDown,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob {digest} of {repo} is not available upstream")]
    BlobUpstream {
        repo: RepoName,
        digest: Digest,
        #[source]
        source: Arc<upstream::Error>,
    },
    #[error("manifest {reference} of {repo} is not available upstream")]
    ManifestUpstream {
        repo: RepoName,
        reference: String,
        #[source]
        source: Box<upstream::Error>,
    },
    #[error("manifest {want} from upstream hashes to {got}")]
    ManifestMismatch { want: Digest, got: Digest },
    #[error("range is outside blob {digest} of {size} bytes")]
    Unsatisfiable { digest: Digest, size: u64 },
    #[error("fill of blob {digest} failed: {message}")]
    Fill {
        digest: Digest,
        kind: ErrorKind,
        message: String,
    },
    #[error("store operation on {what} failed")]
    Store {
        what: String,
        #[source]
        source: Box<store::Error>,
    },
    #[error("reading blob {digest} failed")]
    Read {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        let upstream_kind = |e: &upstream::Error| {
            if e.is_not_found() {
                ErrorKind::NotFound
            } else if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Upstream
            }
        };
        match self {
            Error::BlobUpstream { source, .. } => upstream_kind(source),
            Error::ManifestUpstream { source, .. } => upstream_kind(source),
            Error::ManifestMismatch { .. } => ErrorKind::Integrity,
            Error::Unsatisfiable { .. } => ErrorKind::NotFound,
            Error::Fill { kind, .. } => *kind,
            Error::Store { source, .. } if source.is_disk_full() => ErrorKind::Storage,
            Error::Store { .. } | Error::Read { .. } => ErrorKind::Internal,
        }
    }

    /// What a client may be told: what failed, never upstream URLs or internal detail
    /// (those go to the log).
    pub fn client_message(&self) -> String {
        let why = |kind: ErrorKind| match kind {
            ErrorKind::NotFound => "it is not known upstream",
            ErrorKind::Timeout => "upstream did not answer in time",
            ErrorKind::Upstream => "upstream is unreachable or failing",
            ErrorKind::Integrity => "upstream sent bytes that do not match the digest",
            ErrorKind::Storage => "the cache's disk is full",
            ErrorKind::ShuttingDown => "shoal is shutting down",
            ErrorKind::Internal => "of an internal error",
        };
        match self {
            Error::BlobUpstream { repo, digest, .. } => {
                format!("cannot get blob {digest} of {repo}: {}", why(self.kind()))
            }
            Error::ManifestUpstream {
                repo, reference, ..
            } => format!(
                "cannot get manifest {reference} of {repo}: {}",
                why(self.kind())
            ),
            Error::Fill { digest, kind, .. } => {
                format!("cannot get blob {digest}: {}", why(*kind))
            }
            Error::ManifestMismatch { .. } | Error::Unsatisfiable { .. } => self.to_string(),
            Error::Store { .. } | Error::Read { .. } => "internal error".to_owned(),
        }
    }

    /// For 416 answers: the blob's size.
    pub fn unsatisfiable_size(&self) -> Option<u64> {
        match self {
            Error::Unsatisfiable { size, .. } => Some(*size),
            _ => None,
        }
    }

    fn fill(digest: Digest, f: fill::Failure) -> Error {
        Error::Fill {
            digest,
            kind: f.kind,
            message: f.message,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub fetch: FetchConfig,
    pub tag_ttl: Duration,
    pub max_cache_size: Option<u64>,
    /// A fill from peers that verifies nothing for this long hands over to upstream.
    pub peer_stall: Duration,
}

struct Inner {
    store: Store,
    upstream: Arc<Upstream>,
    stats: Arc<Stats>,
    cache: Cache,
    fills: Mutex<HashMap<Digest, Arc<Fill>>>,
    tag_locks: Mutex<HashMap<store::TagKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Bytes that running fills will add to the cache.
    reserved: AtomicU64,
    /// Until when tag revalidation is skipped (stale copies served at once) because
    /// upstream just failed: an offline site should not wait on every pull.
    upstream_down_until: Mutex<Option<Instant>>,
    /// Every fill task (drivers, workers, hashers), so shutdown can stop and await them.
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Peers to fill from; told when blobs leave the cache, to stop seeding them.
    p2p: Option<P2p>,
    cfg: MirrorConfig,
}

/// Cheap to clone; clones share fills, caches and the store.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

/// Where a blob read comes from.
enum Lookup {
    Stored(store::BlobLease),
    Filling(Arc<Fill>),
}

impl Mirror {
    pub fn new(
        store: Store,
        upstream: Arc<Upstream>,
        stats: Arc<Stats>,
        cfg: MirrorConfig,
        p2p: Option<P2p>,
    ) -> Mirror {
        Mirror {
            inner: Arc::new(Inner {
                store,
                upstream,
                stats,
                cache: Cache::default(),
                fills: Mutex::new(HashMap::new()),
                tag_locks: Mutex::new(HashMap::new()),
                reserved: AtomicU64::new(0),
                upstream_down_until: Mutex::new(None),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                p2p,
                cfg,
            }),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The one registry this mirror caches, as `scheme://host[:port]` (safe to show: the
    /// base URL carries no credentials, `upstream::parse_base_url` refuses them).
    pub fn upstream_url(&self) -> String {
        let up = &self.inner.upstream;
        format!("{}://{}", up.base_url().scheme(), up.registry())
    }

    /// Digests being filled now.
    pub fn filling(&self) -> usize {
        self.fills().len()
    }

    fn fills(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Fill>>> {
        self.inner.fills.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A complete blob, or the running fill for it. Called with the fills map locked: a
    /// fill commits to the store before it leaves the map, so no request misses both.
    fn find(&self, fills: &HashMap<Digest, Arc<Fill>>, digest: &Digest) -> Option<Lookup> {
        if let Some(lease) = self.inner.store.acquire(digest) {
            return Some(Lookup::Stored(lease));
        }
        fills.get(digest).map(|f| Lookup::Filling(f.clone()))
    }

    fn lookup(&self, digest: &Digest) -> Option<Lookup> {
        self.find(&self.fills(), digest)
    }

    /// As `lookup`, starting the one fill for the digest (from `origin`) if none runs.
    fn lookup_or_start(
        &self,
        repo: &RepoName,
        digest: &Digest,
        meta: &ClientMeta,
        origin: Origin,
    ) -> Lookup {
        let mut fills = self.fills();
        if let Some(found) = self.find(&fills, digest) {
            return found;
        }
        let fill = Fill::new(*digest, repo.clone(), meta.clone(), origin);
        fills.insert(*digest, fill.clone());
        Stats::add(&self.inner.stats.fills_started, 1);
        let span = tracing::info_span!("fill", %digest, %repo);
        self.inner
            .tasks
            .spawn(fill.clone().run(self.clone()).instrument(span));
        Lookup::Filling(fill)
    }

    /// Stops every fill (their clients get an error) and waits until their tasks are gone.
    pub async fn shutdown(&self) {
        self.inner.tasks.close();
        self.inner.cancel.cancel();
        self.inner.tasks.wait().await;
    }

    fn forget_fill(&self, fill: &Arc<Fill>) {
        let mut fills = self.fills();
        if fills
            .get(&fill.digest)
            .is_some_and(|f| Arc::ptr_eq(f, fill))
        {
            fills.remove(&fill.digest);
        }
    }

    /// Size for HEAD: from the store, a running fill, or upstream. Never starts a fill.
    pub async fn blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
        meta: &ClientMeta,
    ) -> Result<u64> {
        if let Some(size) = self.inner.store.blob_size(digest) {
            return Ok(size);
        }
        let running = self.fills().get(digest).cloned();
        if let Some(fill) = running {
            return fill
                .info()
                .await
                .map(|i| i.size)
                .map_err(|f| Error::fill(*digest, f));
        }
        Ok(self.origin(repo, digest, meta).await?.size())
    }

    /// Where a blob that is neither held nor filling would come from: peers that hold it
    /// (no upstream request at all), else upstream.
    async fn origin(&self, repo: &RepoName, digest: &Digest, meta: &ClientMeta) -> Result<Origin> {
        if let Some(p2p) = &self.inner.p2p {
            match p2p.peers.holders(digest).await {
                Ok(holders) if !holders.is_empty() => {
                    return Ok(Origin::Peers {
                        size: holders[0].size,
                        holders,
                    })
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "peer catalog lookup failed")
                }
            }
        }
        let probe = self
            .probe(repo, digest, meta)
            .await
            .map_err(|source| Error::BlobUpstream {
                repo: repo.clone(),
                digest: *digest,
                source,
            })?;
        Ok(Origin::Upstream(probe))
    }

    /// Opens a blob for reading, whole or a range of it. A blob neither held nor filling
    /// is looked up in peers' catalogs, else probed upstream first (one probe however many
    /// ask), so an unknown digest is a plain "not found" and never starts a fill.
    pub async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<RangeSpec>,
        meta: &ClientMeta,
    ) -> Result<BlobRead> {
        let found = match self.lookup(digest) {
            Some(found) => found,
            None => {
                let origin = self.origin(repo, digest, meta).await?;
                self.lookup_or_start(repo, digest, meta, origin)
            }
        };
        match found {
            Lookup::Stored(lease) => {
                Stats::add(&self.inner.stats.blob_hits, 1);
                let stats = self.inner.stats.clone();
                read::from_store(&self.inner.store, stats, *digest, lease, range).await
            }
            Lookup::Filling(fill) => {
                Stats::add(&self.inner.stats.blob_misses, 1);
                let stats = self.inner.stats.clone();
                read::from_fill(&self.inner.store, stats, fill, range).await
            }
        }
    }

    /// Upstream's view of a blob, briefly cached (a HEAD is usually followed by GETs).
    async fn probe(
        &self,
        repo: &RepoName,
        digest: &Digest,
        meta: &ClientMeta,
    ) -> Result<BlobProbe, Arc<upstream::Error>> {
        self.inner
            .cache
            .probe(*digest, self.inner.upstream.probe_blob(repo, digest, meta))
            .await
    }

    /// Makes room for `size` more bytes when a cache limit is set, counting what the
    /// other running fills will add.
    async fn reserve(&self, digest: &Digest, size: u64) {
        let reserved = self.inner.reserved.fetch_add(size, Ordering::Relaxed) + size;
        let Some(limit) = self.inner.cfg.max_cache_size else {
            return;
        };
        if size > limit {
            tracing::warn!(%digest, size, limit, "blob is larger than max_cache_size; it will be evicted early");
        }
        self.evict(limit, reserved).await;
    }

    async fn evict(&self, limit: u64, incoming: u64) {
        match self.inner.store.evict_to(limit, incoming).await {
            Ok(evicted) => {
                for (d, size) in &evicted {
                    tracing::info!(digest = %d, size, "evicted least recently used blob");
                    if let Some(p2p) = &self.inner.p2p {
                        p2p.swarm.retire(d).await;
                    }
                }
                Stats::add(&self.inner.stats.evictions, evicted.len() as u64);
            }
            Err(e) => tracing::error!(error = %crate::telemetry::chain(&e), "eviction failed"),
        }
    }

    /// Called by a fill when it ends, committed or not.
    async fn release(&self, size: u64) {
        self.inner.reserved.fetch_sub(size, Ordering::Relaxed);
        if let Some(limit) = self.inner.cfg.max_cache_size {
            let reserved = self.inner.reserved.load(Ordering::Relaxed);
            self.evict(limit, reserved).await;
        }
    }
}
