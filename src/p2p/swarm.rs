//! The node's BitTorrent side: one librqbit session, torrents for cached blobs, and the
//! tracker that introduces peers.
//!
//! Torrents are **activated on demand**: a complete blob joins the session when someone
//! asks for it (its .torrent, a tracker announce, a peer's fill), and leaves after
//! `idle_after` without peers. Joining costs one SHA-1 pass over the blob (librqbit checks
//! every piece on add, about 0.5 s/GiB), which keeps a restart O(1) whatever the cache
//! holds and costs no CPU or memory for blobs nobody wants. An active seed holds a store
//! lease, so a blob being uploaded is never evicted.
//!
//! Must not: talk to the public internet (DHT, LSD and UPnP are off), or seed a blob whose
//! pieces do not check out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use librqbit::api::TorrentIdOrHash;
use librqbit::storage::StorageFactoryExt;
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ListenerMode, ListenerOptions,
    ManagedTorrent, Session, SessionOptions,
};

use super::storage::{CompleteBlob, OnPiece, PartialBlob, WriteGate};
use super::torrent::{PieceHasher, TorrentInfo};
use super::tracker::{self, Swarms};
use crate::oci::Digest;
use crate::stats::Stats;
use crate::store::{BlobLease, Store};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often a download re-announces to the holders' trackers, so that nodes pulling the
/// same blob at once find each other within a few seconds.
const DOWNLOAD_ANNOUNCE_EVERY: Duration = Duration::from_secs(3);
type ManagedTorrentHandle = Arc<ManagedTorrent>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start BitTorrent on {addr}")]
    Start {
        addr: SocketAddr,
        #[source]
        source: BoxError,
    },
    #[error("cannot seed blob {digest}")]
    Seed {
        digest: Digest,
        #[source]
        source: BoxError,
    },
    #[error("seeding blob {digest} did not start within {after:?}")]
    Timeout { digest: Digest, after: Duration },
    #[error("store lookup failed")]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Torrent(#[from] super::torrent::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// TCP address for BitTorrent peers.
    pub listen: SocketAddr,
    /// An active torrent with no peer for this long leaves the session.
    pub idle_after: Duration,
    /// Where librqbit may keep its own files (it writes none with shoal's storage).
    pub work_dir: PathBuf,
    /// Upload and download caps, bytes per second.
    pub upload_limit: Option<u32>,
    pub download_limit: Option<u32>,
}

/// One active seed.
pub struct Seed {
    pub info: TorrentInfo,
    pub infohash: [u8; 20],
    handle: ManagedTorrentHandle,
    last_busy: Mutex<Instant>,
    _lease: BlobLease,
}

pub struct Swarm {
    session: Arc<Session>,
    store: Store,
    stats: Arc<Stats>,
    listen: SocketAddr,
    idle_after: Duration,
    active: Mutex<HashMap<Digest, Arc<tokio::sync::OnceCell<Arc<Seed>>>>>,
    swarms: Swarms,
    /// The session's cumulative upload counter, as last added to `stats.seeded_bytes`.
    uploaded_counted: AtomicU64,
    /// Downloads from peers in progress, for the admin listing.
    downloads: Mutex<HashMap<Digest, ManagedTorrentHandle>>,
}

impl Seed {
    /// Has the seed connect to `addr` (over TCP, with a plain handshake), unless it is
    /// connected to it or trying already.
    fn dial(&self, addr: SocketAddr) {
        let Some(live) = self.handle.live() else {
            return;
        };
        match live.connect_to_peer(addr) {
            Ok(true) => {
                tracing::debug!(%addr, infohash = %hex::encode(self.infohash), "dialling an announcer")
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(%addr, error = %e, "cannot dial an announcer"),
        }
    }
}

/// Whether a seed should dial a client that announced: one that still wants the blob and
/// is not a shoal node. Transmission 3.00 (defaults: uTP on) dials a tracker's peers over
/// uTP only. Its uTP timers start with the first UDP datagram it receives, which on a LAN
/// without DHT never comes, so its SYN to this TCP-only node is never retried nor timed out;
/// and where the attempt does fail, its fallback to TCP drops the connection it opens. It
/// then leaves the peer alone for 15 minutes, but takes the seed's TCP connection at once
/// (docs/TORRENTS.md). Shoal nodes (librqbit's peer id starts with "-rQ") dial the
/// holders themselves; one connection per pair of nodes is what the swarm is tuned for.
fn dial_back(a: &tracker::Announce) -> bool {
    a.left != Some(0)
        && !matches!(a.event, tracker::Event::Stopped | tracker::Event::Completed)
        && !a.peer_id.starts_with(b"-rQ")
}

/// One line of `/_shoal/v1/torrents`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TorrentStatus {
    pub digest: Digest,
    pub infohash: String,
    /// "seeding" or "downloading".
    pub role: &'static str,
    /// librqbit's state: initializing, live, paused, error.
    pub state: String,
    pub size: u64,
    pub have_bytes: u64,
    pub uploaded_bytes: u64,
    pub peers: u64,
    pub download_mbps: f64,
    pub upload_mbps: f64,
}

fn boxed(e: anyhow::Error) -> BoxError {
    e.into()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A port to announce must be known before the session starts; for port 0 one is picked.
fn concrete_port(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = std::net::TcpListener::bind(addr)?;
    probe.local_addr()
}

impl Swarm {
    pub async fn start(cfg: SwarmConfig, store: Store, stats: Arc<Stats>) -> Result<Arc<Swarm>> {
        let start_err = |source: BoxError| Error::Start {
            addr: cfg.listen,
            source,
        };
        let listen = concrete_port(cfg.listen).map_err(|e| start_err(e.into()))?;
        let opts = SessionOptions {
            dht: None,
            disable_local_service_discovery: true,
            listen: Some(ListenerOptions {
                mode: ListenerMode::TcpOnly,
                listen_addr: listen,
                // librqbit would say port 4240 in announces when listening on loopback.
                announce_port: Some(listen.port()),
                enable_upnp_port_forwarding: false,
                ..Default::default()
            }),
            persistence: None,
            fastresume: false,
            // librqbit's permits for disk work; each steering stream holds one for its life.
            runtime_worker_threads: Some(64),
            ratelimits: librqbit::limits::LimitsConfig {
                upload_bps: cfg.upload_limit.and_then(std::num::NonZeroU32::new),
                download_bps: cfg.download_limit.and_then(std::num::NonZeroU32::new),
            },
            ..Default::default()
        };
        std::fs::create_dir_all(&cfg.work_dir).map_err(|e| start_err(e.into()))?;
        let session = Session::new_with_opts(cfg.work_dir.clone(), opts)
            .await
            .map_err(|e| start_err(boxed(e)))?;
        let listen = session.listen_addr().unwrap_or(listen);
        tracing::info!(%listen, "BitTorrent listening (DHT, LSD and UPnP off)");
        Ok(Arc::new(Swarm {
            session,
            store,
            stats,
            listen,
            idle_after: cfg.idle_after,
            active: Mutex::new(HashMap::new()),
            swarms: Swarms::default(),
            uploaded_counted: AtomicU64::new(0),
            downloads: Mutex::new(HashMap::new()),
        }))
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The address peers should dial: the listen address, or when it is unspecified, the
    /// local address the asking peer reached this node on.
    pub fn advertised(&self, local: SocketAddr) -> SocketAddr {
        if self.listen.ip().is_unspecified() {
            SocketAddr::new(local.ip(), self.listen.port())
        } else {
            self.listen
        }
    }

    /// Makes sure a held blob is seeded; `None` when the blob is not held.
    pub async fn activate(&self, digest: &Digest) -> Result<Option<Arc<Seed>>> {
        let cell = lock(&self.active).entry(*digest).or_default().clone();
        match cell.get_or_try_init(|| self.add(*digest)).await {
            Ok(seed) => {
                *lock(&seed.last_busy) = Instant::now();
                Ok(Some(seed.clone()))
            }
            Err(e) => {
                let mut active = lock(&self.active);
                if active.get(digest).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                    active.remove(digest);
                }
                match e {
                    AddError::NotHeld => Ok(None),
                    AddError::Failed(e) => Err(e),
                }
            }
        }
    }

    async fn add(&self, digest: Digest) -> std::result::Result<Arc<Seed>, AddError> {
        let lease = self.store.acquire(&digest).ok_or(AddError::NotHeld)?;
        // A private blob (fetched with a client's credentials) is not the swarm's.
        if lease.size() == 0 || self.store.is_private(&digest) {
            return Err(AddError::NotHeld);
        }
        let info = self.torrent_info(digest, &lease).await?;
        let infohash = info.infohash()?;
        let mut bytes = b"d4:info".to_vec();
        bytes.extend_from_slice(&info.info_bytes()?);
        bytes.push(b'e');
        let seed_err = |e: anyhow::Error| Error::Seed {
            digest,
            source: boxed(e),
        };
        let added = self
            .session
            .add_torrent(
                AddTorrent::from_bytes(bytes),
                Some(AddTorrentOptions {
                    storage_factory: Some(
                        CompleteBlob {
                            path: self.store.blob_path(&digest),
                        }
                        .boxed(),
                    ),
                    ..Default::default()
                }),
            )
            .await
            .map_err(seed_err)?;
        let handle = match added {
            AddTorrentResponse::Added(_, h) | AddTorrentResponse::AlreadyManaged(_, h) => h,
            AddTorrentResponse::ListOnly(_) => {
                return Err(seed_err(anyhow::anyhow!("added as list-only")).into())
            }
        };
        // librqbit checks every piece on add: ~0.5 s/GiB, plus slack for a busy disk.
        let budget = Duration::from_secs(30 + info.size / (100 << 20));
        match tokio::time::timeout(budget, handle.wait_until_initialized()).await {
            Err(_) => {
                self.drop_torrent(&handle).await;
                return Err(Error::Timeout {
                    digest,
                    after: budget,
                }
                .into());
            }
            Ok(Err(e)) => {
                self.drop_torrent(&handle).await;
                return Err(seed_err(e).into());
            }
            Ok(Ok(())) => {}
        }
        if !handle.stats().finished {
            // Rotten on disk: not seeded, and no longer held (peers get 404 and look
            // elsewhere; the next request here fetches it again).
            self.drop_torrent(&handle).await;
            tracing::error!(%digest, "cached blob fails its torrent's piece check");
            let damage = crate::store::Damage::Corrupt;
            let dropped = tokio::task::spawn_blocking(move || lease.drop_damaged(&damage))
                .await
                .unwrap_or(false);
            if dropped {
                Stats::add(&self.stats.damaged_blobs, 1);
            }
            return Err(AddError::NotHeld);
        }
        tracing::info!(%digest, infohash = %hex::encode(infohash), "seeding");
        Ok(Arc::new(Seed {
            info,
            infohash,
            handle,
            last_busy: Mutex::new(Instant::now()),
            _lease: lease,
        }))
    }

    /// The blob's torrent from the index, or computed now (for blobs that came without
    /// one: adopted after a crash, or cached before torrents existed) and recorded.
    async fn torrent_info(&self, digest: Digest, lease: &BlobLease) -> Result<TorrentInfo> {
        let size = lease.size();
        if let Some(row) = self.store.torrent(digest).await? {
            let info = TorrentInfo {
                digest,
                size,
                piece_length: row.piece_length,
                pieces: row.pieces,
            };
            if info.check().is_ok() {
                return Ok(info);
            }
            tracing::warn!(%digest, "stored torrent does not fit the rule; recomputing");
        }
        let path = self.store.blob_path(&digest);
        // Its digest is checked on the way: piece hashes of rotten bytes must never be
        // recorded as the blob's torrent.
        let info = tokio::task::spawn_blocking(move || -> std::io::Result<TorrentInfo> {
            use sha2::Digest as _;
            let mut hasher = PieceHasher::new(size);
            let mut sha = sha2::Sha256::new();
            crate::store::stream_file(&path, |b| {
                hasher.update(b);
                sha.update(b);
            })?;
            if Digest::from_bytes(sha.finalize().into()) != digest {
                return Err(std::io::Error::other(crate::store::Damage::Corrupt));
            }
            Ok(hasher.finish(digest, size))
        })
        .await
        .map_err(|e| Error::Seed {
            digest,
            source: e.into(),
        })?
        .map_err(|e| Error::Seed {
            digest,
            source: e.into(),
        })?;
        if let Some(row) = info.clone().into_row() {
            self.store.put_torrent(row).await?;
        }
        Ok(info)
    }

    async fn drop_torrent(&self, handle: &ManagedTorrentHandle) {
        if let Err(e) = self
            .session
            .delete(TorrentIdOrHash::Id(handle.id()), false)
            .await
        {
            tracing::warn!(error = %e, "cannot remove a torrent from the session");
        }
    }

    /// Stops seeding a blob (evicted, or idle).
    pub async fn retire(&self, digest: &Digest) {
        let cell = lock(&self.active).remove(digest);
        if let Some(seed) = cell.and_then(|c| c.get().cloned()) {
            self.drop_torrent(&seed.handle).await;
            tracing::info!(%digest, "stopped seeding");
        }
    }

    /// Housekeeping: count uploads into `seeded_bytes`, and retire seeds that have had no
    /// peer for `idle_after`.
    pub async fn tick(&self) {
        let uploaded = self.session.stats_snapshot().counters.uploaded_bytes;
        let before = self.uploaded_counted.swap(uploaded, Ordering::Relaxed);
        Stats::add(&self.stats.seeded_bytes, uploaded.saturating_sub(before));

        let seeds: Vec<(Digest, Arc<Seed>)> = lock(&self.active)
            .iter()
            .filter_map(|(d, c)| c.get().map(|s| (*d, s.clone())))
            .collect();
        let mut idle = Vec::new();
        for (digest, seed) in seeds {
            let peers = seed
                .handle
                .stats()
                .live
                .map_or(0, |l| l.snapshot.peer_stats.live);
            let mut last = lock(&seed.last_busy);
            if peers > 0 {
                *last = Instant::now();
            } else if last.elapsed() > self.idle_after {
                idle.push(digest);
            }
        }
        for digest in idle {
            self.retire(&digest).await;
        }
    }

    /// The .torrent of a held blob, announcing to `trackers`; `None` when not held.
    pub async fn torrent_file(
        &self,
        digest: &Digest,
        trackers: &[String],
    ) -> Result<Option<Vec<u8>>> {
        match self.activate(digest).await? {
            Some(seed) => Ok(Some(seed.info.torrent_file(trackers)?)),
            None => Ok(None),
        }
    }

    /// Answers a tracker announce from `peer`, which reached this node at `local`.
    /// Always a bencoded body (trackers report refusals in-band).
    pub async fn announce(&self, query: &str, peer: SocketAddr, local: SocketAddr) -> Vec<u8> {
        let a = match tracker::parse_announce(query) {
            Ok(a) => a,
            Err(e) => return tracker::encode_failure(&e.to_string()),
        };
        let lookup = async {
            let held = self.store.digest_by_infohash(a.info_hash).await?;
            let holders = self.store.peers_with_infohash(a.info_hash).await?;
            Ok::<_, crate::store::Error>((held, holders))
        };
        let (held, holders) = match lookup.await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "tracker lookup failed");
                return tracker::encode_failure("internal error");
            }
        };
        if held.is_none() && holders.is_empty() {
            return tracker::encode_failure("unknown torrent");
        }
        let seed = match held {
            None => None,
            Some(digest) => match self.activate(&digest).await {
                Ok(seed) => seed,
                Err(e) => {
                    tracing::error!(%digest, error = %crate::telemetry::chain(&e), "cannot seed for a tracker announce");
                    None
                }
            },
        };
        let me = seed.as_ref().map(|_| self.advertised(local));
        // Other shoal nodes whose catalogs list it, so late joiners find every holder.
        let holders: Vec<SocketAddr> = holders.iter().filter_map(|h| h.parse().ok()).collect();
        // The connection's address, not a claimed `ip=`: a tracker must not be usable to
        // point a swarm at someone else.
        let from = SocketAddr::new(peer.ip(), a.port);
        let (mut peers, mut seeders, leechers) = self.swarms.announce(&a, from);
        if let Some(seed) = seed.filter(|_| dial_back(&a)) {
            seed.dial(from);
        }
        for seed in me.into_iter().chain(holders).rev() {
            if seed != from && !peers.contains(&seed) {
                peers.insert(0, seed);
                seeders += 1;
            }
        }
        peers.truncate(a.numwant.max(1));
        tracker::encode_peers(&peers, seeders, leechers)
    }

    /// Answers a tracker scrape: per info hash, seeders (this node if it holds the blob,
    /// the peers whose catalogs list it, and announcers that seed) and leechers.
    pub async fn scrape(&self, query: &str) -> Vec<u8> {
        let hashes = match tracker::parse_scrape(query) {
            Ok(h) => h,
            Err(e) => return tracker::encode_failure(&e.to_string()),
        };
        let mut files = Vec::with_capacity(hashes.len());
        for ih in hashes {
            let held = matches!(self.store.digest_by_infohash(ih).await, Ok(Some(_)));
            let holders = self
                .store
                .peers_with_infohash(ih)
                .await
                .map_or(0, |h| h.len());
            let (seeders, leechers) = self.swarms.counts(&ih);
            if held || holders > 0 || seeders + leechers > 0 {
                files.push((ih, usize::from(held) + holders + seeders, leechers));
            }
        }
        tracker::encode_scrape(&files)
    }

    /// Stops the session (about a second: librqbit pauses every torrent first).
    pub async fn shutdown(&self) {
        self.tick().await;
        self.session.stop().await;
    }
}

/// A download from peers into a fill's partial file.
pub struct Download {
    digest: Digest,
    handle: ManagedTorrentHandle,
    gate: Arc<WriteGate>,
    /// File streams that are never read, only positioned: librqbit fetches the 32 MiB
    /// after each stream's position before anything else, which is the only say it gives
    /// over which pieces come first.
    steering: tokio::sync::Mutex<Vec<std::pin::Pin<Box<dyn tokio::io::AsyncSeek + Send>>>>,
}

/// Most steering streams per download (each holds one of librqbit's worker permits).
const MAX_STEERING: usize = 8;

impl Swarm {
    /// Starts downloading a blob from `peers` into `file` (the fill's preallocated partial).
    /// `on_piece` gets the byte range of every piece that verified.
    /// `trackers` are the holders' own trackers: announcing there (every few seconds)
    /// lets nodes downloading the same blob at once find each other and trade pieces,
    /// instead of each taking a whole copy from the holder.
    pub async fn download(
        &self,
        info: &TorrentInfo,
        file: Arc<std::fs::File>,
        peers: Vec<SocketAddr>,
        trackers: Vec<String>,
        on_piece: OnPiece,
    ) -> Result<Download> {
        let digest = info.digest;
        let seed_err = |e: anyhow::Error| Error::Seed {
            digest,
            source: boxed(e),
        };
        let gate = Arc::new(WriteGate::default());
        let storage = PartialBlob {
            file,
            size: info.size,
            piece_length: info.piece_length,
            gate: gate.clone(),
            on_piece,
        };
        let bytes = info.torrent_file(&trackers)?;
        let added = self
            .session
            .add_torrent(
                AddTorrent::from_bytes(bytes),
                Some(AddTorrentOptions {
                    storage_factory: Some(storage.boxed()),
                    initial_peers: Some(peers),
                    force_tracker_interval: Some(DOWNLOAD_ANNOUNCE_EVERY),
                    ..Default::default()
                }),
            )
            .await
            .map_err(seed_err)?;
        match added {
            AddTorrentResponse::Added(_, handle) => {
                lock(&self.downloads).insert(digest, handle.clone());
                Ok(Download {
                    digest,
                    handle,
                    gate,
                    steering: tokio::sync::Mutex::new(Vec::new()),
                })
            }
            AddTorrentResponse::AlreadyManaged(..) | AddTorrentResponse::ListOnly(_) => Err(
                seed_err(anyhow::anyhow!("the torrent is already in the session")),
            ),
        }
    }

    /// Peers currently connected to a download.
    pub fn live_peers(&self, d: &Download) -> usize {
        d.handle
            .stats()
            .live
            .map_or(0, |l| l.snapshot.peer_stats.live as usize)
    }

    /// Points librqbit at the byte offsets wanted first (where clients wait). False when
    /// a stream could not be opened yet (the torrent still initialising, or librqbit's
    /// worker permits all taken): the caller tries again.
    pub async fn steer(&self, d: &Download, positions: &[u64]) -> bool {
        let positions = &positions[..positions.len().min(MAX_STEERING)];
        let mut streams = d.steering.lock().await;
        streams.truncate(positions.len());
        while streams.len() < positions.len() {
            let opened =
                tokio::time::timeout(Duration::from_secs(1), d.handle.clone().stream(0)).await;
            match opened {
                Ok(Ok(stream)) => streams.push(Box::pin(stream)),
                _ => break,
            }
        }
        for (stream, pos) in streams.iter_mut().zip(positions) {
            // Setting the position is all a seek does here; it cannot fail in range.
            let _ = stream.as_mut().start_seek(std::io::SeekFrom::Start(*pos));
        }
        streams.len() == positions.len()
    }

    /// Ends a download: no write lands after this returns.
    pub async fn end_download(&self, d: Download) {
        d.steering.lock().await.clear();
        d.gate.close();
        lock(&self.downloads).remove(&d.digest);
        self.drop_torrent(&d.handle).await;
    }

    /// Every torrent in the session: active seeds and downloads from peers.
    pub fn list(&self) -> Vec<TorrentStatus> {
        let status = |digest: Digest, role, h: &ManagedTorrentHandle| {
            let st = h.stats();
            let live = st.live.as_ref();
            TorrentStatus {
                digest,
                infohash: h.info_hash().as_string(),
                role,
                state: st.state.to_string(),
                size: st.total_bytes,
                have_bytes: st.progress_bytes,
                uploaded_bytes: st.uploaded_bytes,
                peers: live.map_or(0, |l| l.snapshot.peer_stats.live as u64),
                download_mbps: live.map_or(0.0, |l| l.download_speed.mbps),
                upload_mbps: live.map_or(0.0, |l| l.upload_speed.mbps),
            }
        };
        let mut out: Vec<TorrentStatus> = lock(&self.active)
            .iter()
            .filter_map(|(d, c)| c.get().map(|s| status(*d, "seeding", &s.handle)))
            .collect();
        out.extend(
            lock(&self.downloads)
                .iter()
                .map(|(d, h)| status(*d, "downloading", h)),
        );
        out.sort_by_key(|t| t.digest);
        out
    }
}

enum AddError {
    NotHeld,
    Failed(Error),
}

impl From<Error> for AddError {
    fn from(e: Error) -> Self {
        AddError::Failed(e)
    }
}

impl From<super::torrent::Error> for AddError {
    fn from(e: super::torrent::Error) -> Self {
        AddError::Failed(e.into())
    }
}

impl From<crate::store::Error> for AddError {
    fn from(e: crate::store::Error) -> Self {
        AddError::Failed(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_dial_standard_clients_that_want_the_blob() {
        let q = |peer_id: &str, extra: &str| {
            tracker::parse_announce(&format!(
                "info_hash={}&peer_id={peer_id}&port=51413{extra}",
                "%01".repeat(20)
            ))
            .unwrap()
        };
        let tr = "-TR3000-2ju5x3rm0jb9";
        assert!(dial_back(&q(tr, "&left=100&event=started")));
        assert!(dial_back(&q(tr, "&left=100")));
        assert!(dial_back(&q("-qB4620-abcdefghijkl", "")));
        // Seeders, leavers and shoal nodes are not dialled.
        assert!(!dial_back(&q(tr, "&left=0")));
        assert!(!dial_back(&q(tr, "&left=100&event=stopped")));
        assert!(!dial_back(&q(tr, "&event=completed")));
        let shoal = "-rQ9100-abcdefghijkl";
        assert!(!dial_back(&q(shoal, "&left=100&event=started")));
    }
}
