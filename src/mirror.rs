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

mod access;
mod budget;
mod fill;
mod flight;
mod heal;
mod manifests;
mod models;
mod ranges;
mod read;
mod sched;

use std::collections::HashMap;
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
use crate::upstream::{self, BlobProbe, ClientMeta, Registries};

pub use manifests::{ManifestOutcome, ManifestReply};

/// How long shutdown lets fills finish the requests they have sent. Well under the 10 s
/// that `docker stop` waits before it kills.
const DRAIN: Duration = Duration::from_secs(5);
pub use read::{BlobRead, BlobSource, BlobStream};

pub use heal::Verdict;
pub use models::{pinned_blobs, ModelError, ModelInfo, Removed};

use budget::Budget;
use fill::{
    Fill, FillCtx, LanSource, PeerSource, Source, UpstreamBlob, UpstreamSource, WorkerConfig,
};
use flight::{Flights, Found};

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
    /// Upstream refused the client's credentials (or their absence): 401 or 403.
    Denied,
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
    #[error("the token request to {registry} failed")]
    Token {
        registry: String,
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
            if e.denied().is_some() {
                ErrorKind::Denied
            } else if e.is_not_found() {
                ErrorKind::NotFound
            } else if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Upstream
            }
        };
        match self {
            Error::BlobUpstream { source, .. } => upstream_kind(source),
            Error::ManifestUpstream { source, .. } | Error::Token { source, .. } => {
                upstream_kind(source)
            }
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
            ErrorKind::Denied => "upstream refused these credentials (or their absence)",
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
            Error::Token { registry, .. } => {
                format!("cannot get a token from {registry}: {}", why(self.kind()))
            }
            Error::ManifestMismatch { .. } | Error::Unsatisfiable { .. } => self.to_string(),
            Error::Store { .. } | Error::Read { .. } => "internal error".to_owned(),
        }
    }

    /// Upstream's refusal of the client's credentials: whether it was a 401 (else a 403),
    /// and its challenge, which the client answers with its own credentials.
    pub fn denial(&self) -> Option<(bool, Option<http::HeaderValue>)> {
        let e = match self {
            Error::BlobUpstream { source, .. } => &**source,
            Error::ManifestUpstream { source, .. } => &**source,
            _ => return None,
        };
        e.denied()
            .map(|(status, ch)| (status == http::StatusCode::UNAUTHORIZED, ch.cloned()))
    }

    /// For 416 answers: the blob's size.
    pub fn unsatisfiable_size(&self) -> Option<u64> {
        match self {
            Error::Unsatisfiable { size, .. } => Some(*size),
            _ => None,
        }
    }

    fn from_fill(digest: Digest, f: fill::Failure) -> Error {
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
    registries: Arc<Registries>,
    stats: Arc<Stats>,
    cache: Cache,
    fills: Flights<Digest, Fill>,
    /// The last fills that ended, newest last, for `/_shoal/v1/torrents`.
    recent: Mutex<std::collections::VecDeque<fill::Report>>,
    tag_locks: Mutex<HashMap<store::TagKey, Arc<tokio::sync::Mutex<()>>>>,
    budget: Arc<Budget>,
    /// Until when tag revalidation is skipped (stale copies served at once) because
    /// upstream just failed: an offline site should not wait on every pull.
    upstream_down_until: Mutex<HashMap<String, Instant>>,
    /// What every fill gets: the store, stats, the task tracker and the shutdown token.
    fill_ctx: FillCtx,
    /// Peers to fill from.
    p2p: Option<P2p>,
    /// `fetch.rate_limit`, shared by every fill's upstream workers.
    rate: Option<Arc<fill::RateLimit>>,
    /// Upstream's recent yes to a client for a private blob or manifest.
    confirmed: access::Confirmed,
    cfg: MirrorConfig,
}

/// Cheap to clone; clones share fills, caches and the store.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

/// Where a blob's bytes would come from when it is neither held nor filling.
enum Origin {
    /// Upstream, as probed: this node fetches it for the LAN.
    Upstream(upstream::BlobProbe),
    /// Peers that hold it (size from them), over BitTorrent; upstream if they stall.
    Peers {
        size: u64,
        holders: Vec<store::Holder>,
    },
    /// The node that fetches it from upstream for the LAN, as its bytes land there;
    /// upstream if that node goes away.
    Lan {
        peer: String,
        probe: upstream::BlobProbe,
    },
}

impl Origin {
    fn size(&self) -> u64 {
        match self {
            Origin::Upstream(p) | Origin::Lan { probe: p, .. } => p.size,
            Origin::Peers { size, .. } => *size,
        }
    }
}

/// What this node has of a blob, for a peer that asks.
pub enum Here {
    /// Cached whole, with its torrent's infohash.
    Held {
        size: u64,
        infohash: Option<[u8; 20]>,
    },
    /// Being filled; `upstream` when this node fetches it from upstream.
    Filling {
        size: u64,
        upstream: bool,
    },
    Nothing,
}

impl Mirror {
    pub fn new(
        store: Store,
        registries: Arc<Registries>,
        stats: Arc<Stats>,
        cfg: MirrorConfig,
        p2p: Option<P2p>,
    ) -> Mirror {
        let budget = Budget::new(
            store.clone(),
            stats.clone(),
            p2p.as_ref().map(|p| p.swarm.clone()),
            cfg.max_cache_size,
        );
        let fill_ctx = FillCtx {
            store: store.clone(),
            stats: stats.clone(),
            tasks: TaskTracker::new(),
            drain: CancellationToken::new(),
            cancel: CancellationToken::new(),
            give_up_after: cfg.fetch.give_up_after,
        };
        Mirror {
            inner: Arc::new(Inner {
                store,
                registries,
                stats,
                cache: Cache::default(),
                fills: Flights::default(),
                recent: Mutex::new(std::collections::VecDeque::new()),
                tag_locks: Mutex::new(HashMap::new()),
                budget,
                upstream_down_until: Mutex::new(HashMap::new()),
                fill_ctx,
                p2p,
                rate: cfg
                    .fetch
                    .rate_limit
                    .map(|r| Arc::new(fill::RateLimit::new(r.as_u64()))),
                confirmed: access::Confirmed::default(),
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

    /// The default registry, as `scheme://host[:port]`.
    pub fn upstream_url(&self) -> String {
        self.inner.registries.default_registry().shown_url()
    }

    /// Every registry this node caches.
    pub fn registries(&self) -> &Arc<Registries> {
        &self.inner.registries
    }

    /// Digests being filled now.
    /// The host of the registry this mirror caches (a metrics label).
    pub fn registry(&self) -> &str {
        self.inner.registries.default_registry().registry()
    }

    /// `fetch.rate_limit` in bytes per second, if set.
    pub fn fetch_rate_limit(&self) -> Option<u64> {
        self.inner.rate.as_ref().map(|r| r.bytes_per_sec())
    }

    /// `max_cache_size`, if set.
    pub fn cache_limit(&self) -> Option<u64> {
        self.inner.budget.limit()
    }

    pub fn filling(&self) -> usize {
        self.inner.fills.len()
    }

    /// Fills running now, then the last ones that ended: where each one's bytes came
    /// from (this node fetching upstream, or which nodes fed it).
    pub fn fills_report(&self) -> Vec<fill::Report> {
        let mut out: Vec<fill::Report> =
            self.inner.fills.all().iter().map(|f| f.report()).collect();
        out.extend(
            self.inner
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .rev()
                .cloned(),
        );
        out
    }

    /// What this node has of `digest` (a peer's question).
    pub async fn here(&self, digest: &Digest) -> Here {
        // Private blobs are not the LAN's (`access`): peers never hear of them.
        if let Some(size) = self.inner.store.blob_size(digest) {
            if self.inner.store.is_private(digest) {
                return Here::Nothing;
            }
            let infohash = match self.inner.store.torrent(*digest).await {
                Ok(t) => t.map(|t| t.infohash),
                Err(_) => None,
            };
            return Here::Held { size, infohash };
        }
        match self.inner.fills.get(digest) {
            Some(fill) if !fill.is_private() => Here::Filling {
                size: fill.size(),
                upstream: fill.source() == BlobSource::Upstream,
            },
            _ => Here::Nothing,
        }
    }

    /// Starts the fill that `lookup` found to be needed: reserves its space, runs its
    /// sources, and frees the digest (`permit`) only once the outcome is published, so
    /// the blob is in the store before a new request can miss it there.
    fn start_fill(
        &self,
        fill: Arc<Fill>,
        permit: flight::Permit<Digest, Fill>,
        repo: &RepoName,
        meta: &ClientMeta,
        origin: Origin,
    ) {
        let inner = &self.inner;
        let digest = fill.digest;
        let size = fill.size();
        let worker_cfg = WorkerConfig {
            stall_timeout: inner.cfg.fetch.stall_timeout,
            from_peers: false,
            rate: inner.rate.clone(),
        };
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        let probe = match origin {
            Origin::Upstream(probe) => Some(probe),
            Origin::Peers { holders, .. } => {
                if let Some(p2p) = &inner.p2p {
                    sources.push(Box::new(PeerSource::new(
                        p2p.clone(),
                        holders,
                        inner.cfg.peer_stall,
                    )));
                }
                None
            }
            Origin::Lan { peer, probe } => {
                if let Some(p2p) = &inner.p2p {
                    tracing::info!(%digest, %peer, "another node fetches this blob for the LAN; taking its bytes as they land");
                    sources.push(Box::new(LanSource::new(
                        p2p.peers.clone(),
                        peer,
                        repo.clone(),
                        digest,
                        meta.clone(),
                        worker_cfg.clone(),
                        inner.cfg.peer_stall,
                    )));
                }
                Some(probe)
            }
        };
        let (upstream, upstream_repo) = inner.registries.resolve(repo);
        let blob = UpstreamBlob::new(
            upstream.clone(),
            inner.cache.clone(),
            upstream_repo,
            digest,
            size,
            meta.clone(),
            inner.cfg.fetch.stall_timeout,
            probe,
        );
        sources.push(Box::new(UpstreamSource::new(blob, worker_cfg)));
        // Readers say where their bytes come from as they start, before the fill runs.
        let first = sources[0].kind();
        fill.set_source(first);
        // A private fill is this node's alone: the LAN hears neither that it runs nor
        // that it is cached.
        let news = (!fill.is_private())
            .then(|| inner.p2p.as_ref().map(|p| p.peers.clone()))
            .flatten();
        if let (Some(peers), BlobSource::Upstream) = (&news, first) {
            // This node fetches it from upstream: the LAN should come here for it.
            let peers = peers.clone();
            tokio::spawn(async move {
                peers.announce(peers.news_filling(digest, size)).await;
            });
        }
        Stats::add(&inner.stats.fills_started, 1);
        let (ctx, budget) = (inner.fill_ctx.clone(), inner.budget.clone());
        let mirror = self.clone();
        let span = tracing::info_span!("fill", %digest, %repo);
        let repo = repo.to_string();
        inner.fill_ctx.tasks.spawn(
            async move {
                let reservation = budget.reserve(&digest, size).await;
                fill.run(&ctx, sources).await;
                mirror.record(&fill);
                drop(permit);
                drop(reservation);
                if fill.verified().await.is_ok() {
                    // So that it can be fetched again if it is ever found damaged.
                    if let Err(e) = ctx.store.set_repo(digest, repo).await {
                        tracing::warn!(error = %crate::telemetry::chain(&e), "cannot record a blob's repository");
                    }
                }
                if let (Some(peers), Ok(())) = (news, fill.verified().await) {
                    // Cached: every node on the LAN may take it from here now.
                    if let Ok(Some(t)) = ctx.store.torrent(digest).await {
                        let entry = store::CatalogEntry {
                            digest,
                            size,
                            infohash: t.infohash,
                        };
                        tokio::spawn(async move { peers.announce(peers.news_have(entry)).await });
                    }
                }
                budget.enforce().await;
            }
            .instrument(span),
        );
    }

    /// Keeps an ended fill in the recent list and counts where it came from.
    fn record(&self, fill: &Fill) {
        const KEEP: usize = 50;
        let report = fill.report();
        if report.state == "cached" {
            let counter = if report.fed.upstream {
                &self.inner.stats.fills_from_upstream
            } else {
                &self.inner.stats.fills_from_peers
            };
            Stats::add(counter, 1);
        }
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEEP {
            recent.pop_front();
        }
        recent.push_back(report);
    }

    /// Stops every fill and waits until their tasks are gone. Fills first take the bytes
    /// they already asked for (so the CDN's bytes are not wasted; at most `DRAIN`), then
    /// keep their partial to resume; their clients get an error.
    pub async fn shutdown(&self) {
        let ctx = &self.inner.fill_ctx;
        ctx.tasks.close();
        ctx.drain.cancel();
        if tokio::time::timeout(DRAIN, ctx.tasks.wait()).await.is_err() {
            tracing::warn!("fills still running after {DRAIN:?}; stopping them");
        }
        ctx.cancel.cancel();
        ctx.tasks.wait().await;
    }

    /// Size for HEAD: from the store, a running fill, or upstream. Never starts a fill.
    pub async fn blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
        meta: &ClientMeta,
    ) -> Result<u64> {
        if let Some(size) = self.inner.store.blob_size(digest) {
            if self.inner.store.is_private(digest) {
                self.confirm(repo, digest, meta).await?;
            }
            return Ok(size);
        }
        if let Some(fill) = self.inner.fills.get(digest) {
            if fill.is_private() {
                self.confirm(repo, digest, meta).await?;
            }
            return Ok(fill.size());
        }
        Ok(self.origin(repo, digest, meta).await?.size())
    }

    /// Lets a client read a private blob only once upstream serves it to that client (its
    /// credentials, or none): a `HEAD` at the registry, whose yes is kept briefly
    /// (`access`). A yes without credentials makes the blob public, so the LAN may have it
    /// from then on.
    async fn confirm(&self, repo: &RepoName, digest: &Digest, meta: &ClientMeta) -> Result<()> {
        let inner = &self.inner;
        if inner.confirmed.contains(repo, digest, meta) {
            return Ok(());
        }
        let (upstream, upstream_repo) = inner.registries.resolve(repo);
        let blob_error = |source: upstream::Error| Error::BlobUpstream {
            repo: repo.clone(),
            digest: *digest,
            source: Arc::new(source),
        };
        upstream
            .check_blob(&upstream_repo, digest, meta)
            .await
            .map_err(blob_error)?;
        inner.confirmed.insert(repo, digest, meta).await;
        if meta.authorization.is_none() && inner.store.is_private(digest) {
            tracing::info!(%digest, %repo, "upstream serves this private blob without credentials: it is public now");
            if let Err(e) = inner.store.set_public(*digest).await {
                tracing::warn!(error = %crate::telemetry::chain(&e), "cannot record a blob as public");
            }
        }
        Ok(())
    }

    /// Where a blob that is neither held nor filling would come from, the LAN first:
    /// 1. peers known to hold it (catalogs, news), or that say so when asked now: over
    ///    BitTorrent, with no upstream request at all;
    /// 2. else (upstream probed for its size and location) this node's parent in the LAN's
    ///    tree for the blob (`p2p::lan::parent`, rooted at the node fetching it from
    ///    upstream): its bytes as they land there;
    /// 3. else (this node is the root) upstream, from here.
    ///
    /// A request from another node (a child in the tree) is answered the same way: this
    /// node takes the blob from its own parent. Parents come first in a fixed order, so the
    /// relays never form a loop.
    ///
    /// A client with credentials takes a blob peers hold (public bytes, whoever asks), but
    /// else fetches it from upstream itself, privately: no LAN questions, no LAN tree.
    async fn origin(&self, repo: &RepoName, digest: &Digest, meta: &ClientMeta) -> Result<Origin> {
        let p2p = self.inner.p2p.as_ref();
        let private = meta.authorization.is_some();
        let mut view = None;
        if let Some(p2p) = p2p {
            let mut holders = match p2p.peers.holders(digest).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "peer catalog lookup failed");
                    Vec::new()
                }
            };
            if holders.is_empty() && !private {
                let asked = p2p.peers.ask(digest).await;
                holders = asked.holders.clone();
                view = Some(asked);
            }
            if let Some(h) = holders.first() {
                return Ok(Origin::Peers {
                    size: h.size,
                    holders,
                });
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
        if private {
            self.inner.confirmed.insert(repo, digest, meta).await;
        }
        let (Some(p2p), Some(view)) = (p2p, view) else {
            return Ok(Origin::Upstream(probe));
        };
        // The node fetching it from upstream now, if any, is the root of the LAN's tree
        // for this blob; else the tree is rooted at the blob's owner. This node takes the
        // blob from its parent in that tree, or fetches it from upstream if it is the root.
        let others: Vec<&str> = view.answered.iter().map(|(_, id)| id.as_str()).collect();
        let root = match (&view.fetcher, &view.fetcher_id) {
            (Some((_, size)), _) if *size != probe.size => None,
            (Some(_), Some(id)) => others.iter().position(|o| o == id),
            // Heard of in news, but not among those who answered: take it from there.
            (Some((peer, _)), None) => {
                return Ok(Origin::Lan {
                    peer: peer.clone(),
                    probe,
                })
            }
            (None, _) => None,
        };
        match crate::p2p::lan::parent(digest, p2p.peers.node_id(), &others, root) {
            Some(i) => Ok(Origin::Lan {
                peer: view.answered[i].0.clone(),
                probe,
            }),
            None => Ok(Origin::Upstream(probe)),
        }
    }

    /// Opens a blob for reading, whole or a range of it. A blob neither held nor filling
    /// is looked up in peers' catalogs, else probed upstream first (one probe however many
    /// ask), so an unknown digest is a plain "not found" and never starts a fill.
    ///
    /// A held blob whose file turns out damaged (`store::check`) is dropped, and the
    /// request becomes a miss: the client streams it as on a cold pull.
    pub async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<RangeSpec>,
        meta: &ClientMeta,
    ) -> Result<BlobRead> {
        if let Some(read) = self.try_open_blob(repo, digest, range, meta).await? {
            return Ok(read);
        }
        match self.try_open_blob(repo, digest, range, meta).await? {
            Some(read) => Ok(read),
            // Dropped, fetched again and damaged again at once: the disk is failing.
            None => Err(Error::Read {
                digest: *digest,
                source: std::io::Error::other(
                    "the blob's file was damaged again as soon as it was fetched",
                ),
            }),
        }
    }

    /// `open_blob`, once: `None` when the held blob was found damaged (and dropped).
    async fn try_open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<RangeSpec>,
        meta: &ClientMeta,
    ) -> Result<Option<BlobRead>> {
        let inner = &self.inner;
        let held = || inner.store.acquire(digest);
        let found = match inner.fills.find(digest, held) {
            Some(found) => found,
            None => {
                let origin = self.origin(repo, digest, meta).await?;
                let slots = {
                    let f = &inner.cfg.fetch;
                    (origin.size().div_ceil(f.min_span.as_u64().max(1)) as usize)
                        .clamp(1, f.connections.max(1))
                };
                let min_span = inner.cfg.fetch.min_span.as_u64();
                let size = origin.size();
                let private = meta.authorization.is_some() && matches!(origin, Origin::Upstream(_));
                let new_fill = || {
                    let fill = Fill::new(*digest, size, slots, min_span);
                    if private {
                        fill.mark_private();
                    }
                    fill
                };
                match inner.fills.find_or_start(digest, held, new_fill) {
                    Found::Started(fill, permit) => {
                        self.start_fill(fill.clone(), permit, repo, meta, origin);
                        Found::Running(fill)
                    }
                    other => other,
                }
            }
        };
        let private = match &found {
            Found::Done(_) => inner.store.is_private(digest),
            Found::Running(fill) | Found::Started(fill, _) => fill.is_private(),
        };
        if private {
            self.confirm(repo, digest, meta).await?;
        }
        match found {
            Found::Done(lease) => {
                let stats = inner.stats.clone();
                let read = read::from_store(stats, *digest, lease, range).await?;
                if read.is_some() {
                    Stats::add(&inner.stats.blob_hits, 1);
                }
                Ok(read)
            }
            Found::Running(fill) | Found::Started(fill, _) => {
                Stats::add(&inner.stats.blob_misses, 1);
                let stats = inner.stats.clone();
                read::from_fill(&inner.store, stats, fill, range)
                    .await
                    .map(Some)
            }
        }
    }

    /// A client's token request on an intercepted registry host (`host`), passed to that
    /// registry as it came (`Upstream::token`).
    pub async fn token(
        &self,
        host: &str,
        query: Option<&str>,
        meta: &ClientMeta,
    ) -> Result<upstream::Passed> {
        let up = self.inner.registries.by_host(host);
        up.token(query, meta).await.map_err(|e| Error::Token {
            registry: up.registry().to_owned(),
            source: Box::new(e),
        })
    }

    /// Upstream's view of a blob, briefly cached (a HEAD is usually followed by GETs).
    async fn probe(
        &self,
        repo: &RepoName,
        digest: &Digest,
        meta: &ClientMeta,
    ) -> Result<BlobProbe, Arc<upstream::Error>> {
        let fetch = async {
            let (upstream, repo) = self.inner.registries.resolve(repo);
            upstream.probe_blob(&repo, digest, meta).await
        };
        if meta.authorization.is_some() {
            // Its answer is this client's alone.
            return fetch.await.map_err(Arc::new);
        }
        self.inner.cache.probe(*digest, fetch).await
    }
}
