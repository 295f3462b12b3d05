//! One fill: a blob on its way from upstream into the store, shared by every client that
//! asks for it while it lasts (single flight) and independent of all of them (a client
//! that goes away does not stop it).
//!
//! A driver task probes the blob, creates the sparse partial file and runs N workers (one
//! upstream connection each, jobs from `Sched`) and a hasher that follows the contiguous
//! landed prefix. When the hash is complete it must match the digest; only then is the
//! file committed to the store. Readers wait on `landed` and read whatever has landed.
//!
//! Must not: talk to clients, or mark anything complete before the digest matched.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};
use url::Url;

use super::sched::{Job, Sched};
use super::{BlobSource, ErrorKind, Mirror};
use crate::oci::{Digest, RepoName};
use crate::p2p::torrent::PieceHasher;
use crate::stats::Stats;
use crate::store::Holder;
use crate::upstream::{self, BlobProbe, ClientMeta};

/// Bytes a worker gathers before one write; also how soon readers see them.
pub(crate) const FLUSH: usize = 1 << 20;
/// A demand this close ahead of a worker is left to it rather than given its own.
const LOOKAHEAD: u64 = 2 << 20;
const HASH_CHUNK: usize = 4 << 20;

/// Why a fill failed, shared by all its readers.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    fn upstream(e: &upstream::Error) -> Failure {
        let kind = if e.is_not_found() {
            ErrorKind::NotFound
        } else if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Upstream
        };
        Failure::new(kind, crate::telemetry::chain(e))
    }

    fn store(e: &crate::store::Error) -> Failure {
        let kind = if e.is_disk_full() {
            ErrorKind::Storage
        } else {
            ErrorKind::Internal
        };
        Failure::new(kind, crate::telemetry::chain(e))
    }

    fn io(what: &str, e: &std::io::Error) -> Failure {
        let kind = if crate::store::is_disk_full(e) {
            ErrorKind::Storage
        } else {
            ErrorKind::Internal
        };
        Failure::new(kind, format!("{what}: {e}"))
    }
}

/// What readers need once the size is known.
#[derive(Clone)]
pub struct Info {
    pub size: u64,
    pub file: Arc<File>,
}

enum Outcome {
    Running,
    Verified,
    Failed(Failure),
}

struct State {
    info: Option<Info>,
    sched: Option<Sched>,
    /// Demands that arrived before the size was known.
    early: BTreeMap<u64, usize>,
    outcome: Outcome,
    last_progress: Instant,
    /// Bytes reserved against the cache limit, given back when the fill ends.
    reserved: u64,
    /// Peers whose bytes went into this fill.
    peers_used: Vec<String>,
    /// Where the bytes come from now: peers first, upstream once it takes over.
    source: BlobSource,
}

/// Where a fill's bytes come from first.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Upstream, as probed before the fill started.
    Upstream(BlobProbe),
    /// Peers whose catalogs list the blob; upstream takes over if they stall.
    Peers { size: u64, holders: Vec<Holder> },
}

impl Origin {
    pub fn size(&self) -> u64 {
        match self {
            Origin::Upstream(p) => p.size,
            Origin::Peers { size, .. } => *size,
        }
    }
}

pub struct Fill {
    pub digest: Digest,
    repo: RepoName,
    meta: ClientMeta,
    origin: Origin,
    state: Mutex<State>,
    /// Bumped whenever bytes land or the outcome changes: readers and the hasher wait on it.
    landed_tx: watch::Sender<u64>,
    /// Bumped on scheduling changes: idle or preempted workers wait on it.
    sched_tx: watch::Sender<u64>,
    /// One write at a time: the kernel serializes writes to one file anyway (ext4's inode
    /// lock), and 16 workers contending for it spent a tenth of shoal's CPU spinning.
    write_turn: tokio::sync::Mutex<()>,
}

/// A reader waiting at an offset; dropping it withdraws the demand.
pub struct DemandGuard {
    fill: Arc<Fill>,
    pos: u64,
}

impl Drop for DemandGuard {
    fn drop(&mut self) {
        let mut st = self.fill.lock();
        match st.sched.as_mut() {
            Some(s) => s.remove_demand(self.pos),
            None => {
                if let Some(n) = st.early.get_mut(&self.pos) {
                    *n -= 1;
                    if *n == 0 {
                        st.early.remove(&self.pos);
                    }
                }
            }
        }
    }
}

enum FetchError {
    Fatal(Failure),
    Retry {
        error: String,
        /// A 4xx from the location: its presigned URL may have expired.
        refused: bool,
        generation: u64,
    },
}

impl FetchError {
    fn retry(error: impl Into<String>, generation: u64) -> FetchError {
        FetchError::Retry {
            error: error.into(),
            refused: false,
            generation,
        }
    }
}

/// The blob's current location; refreshed (once, however many workers ask) when it starts
/// refusing, because presigned URLs expire.
struct Location {
    current: Mutex<(Url, u64)>,
    refreshing: tokio::sync::Mutex<()>,
    single_stream: bool,
}

impl Location {
    fn get(&self) -> (Url, u64) {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Fill {
    pub fn new(digest: Digest, repo: RepoName, meta: ClientMeta, origin: Origin) -> Arc<Fill> {
        let source = match &origin {
            Origin::Upstream(_) => BlobSource::Upstream,
            Origin::Peers { .. } => BlobSource::Peers,
        };
        Arc::new(Fill {
            digest,
            repo,
            meta,
            origin,
            state: Mutex::new(State {
                info: None,
                sched: None,
                early: BTreeMap::new(),
                outcome: Outcome::Running,
                last_progress: Instant::now(),
                reserved: 0,
                peers_used: Vec::new(),
                source,
            }),
            landed_tx: watch::Sender::new(0),
            sched_tx: watch::Sender::new(0),
            write_turn: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where this fill's bytes come from at the moment.
    pub fn source(&self) -> BlobSource {
        self.lock().source
    }

    fn bump_landed(&self) {
        self.landed_tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn bump_sched(&self) {
        self.sched_tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Registers a reader waiting at `pos`, before or after the size is known.
    pub fn demand(self: &Arc<Self>, pos: u64) -> DemandGuard {
        let wake = {
            let mut st = self.lock();
            match st.sched.as_mut() {
                Some(s) => s.add_demand(pos),
                None => {
                    *st.early.entry(pos).or_default() += 1;
                    false
                }
            }
        };
        if wake {
            self.bump_sched();
        }
        DemandGuard {
            fill: self.clone(),
            pos,
        }
    }

    /// Waits until the size is known.
    pub async fn info(&self) -> Result<Info, Failure> {
        let mut rx = self.landed_tx.subscribe();
        loop {
            {
                let st = self.lock();
                if let Outcome::Failed(f) = &st.outcome {
                    return Err(f.clone());
                }
                if let Some(info) = &st.info {
                    return Ok(info.clone());
                }
            }
            if rx.changed().await.is_err() {
                return Err(Failure::new(ErrorKind::Internal, "fill vanished"));
            }
        }
    }

    /// Waits until the byte at `pos` has landed; returns the end of the landed run from
    /// there. A reader that has to wait registers a demand, so a worker comes to it.
    pub async fn available(self: &Arc<Self>, pos: u64) -> Result<u64, Failure> {
        let mut rx = self.landed_tx.subscribe();
        let mut demand = None;
        loop {
            {
                let st = self.lock();
                if let Some(end) = st.sched.as_ref().and_then(|s| s.landed().run_end(pos)) {
                    return Ok(end);
                }
                if let Outcome::Failed(f) = &st.outcome {
                    return Err(f.clone());
                }
            }
            if demand.is_none() {
                demand = Some(self.demand(pos));
                continue; // the demand may have changed nothing; re-check before sleeping
            }
            if rx.changed().await.is_err() {
                return Err(Failure::new(ErrorKind::Internal, "fill vanished"));
            }
        }
    }

    /// Waits until the blob is verified and committed (or the fill fails).
    pub async fn verified(&self) -> Result<(), Failure> {
        let mut rx = self.landed_tx.subscribe();
        loop {
            match &self.lock().outcome {
                Outcome::Verified => return Ok(()),
                Outcome::Failed(f) => return Err(f.clone()),
                Outcome::Running => {}
            }
            if rx.changed().await.is_err() {
                return Err(Failure::new(ErrorKind::Internal, "fill vanished"));
            }
        }
    }

    /// The driver: runs the fill to its end and publishes the outcome.
    pub(super) async fn run(self: Arc<Self>, m: Mirror) {
        let started = Instant::now();
        let result = self.fill(&m).await;
        let outcome = match result {
            Ok(size) => {
                tracing::info!(digest = %self.digest, size, secs = started.elapsed().as_secs_f64(), "blob cached");
                Outcome::Verified
            }
            Err(f) => {
                tracing::error!(digest = %self.digest, kind = ?f.kind, error = %f.message, "fill failed; nothing cached");
                Stats::add(&m.inner.stats.fills_failed, 1);
                m.inner.store.discard_partial(&self.digest);
                Outcome::Failed(f)
            }
        };
        let reserved = {
            let mut st = self.lock();
            st.outcome = outcome;
            std::mem::take(&mut st.reserved)
        };
        m.forget_fill(&self);
        self.bump_landed();
        self.bump_sched();
        m.release(reserved).await;
    }

    async fn fill(self: &Arc<Self>, m: &Mirror) -> Result<u64, Failure> {
        let cfg = &m.inner.cfg.fetch;
        let size = self.origin.size();
        self.lock().reserved = size;
        m.reserve(&self.digest, size).await;

        let store = m.inner.store.clone();
        let digest = self.digest;
        let file = tokio::task::spawn_blocking(move || store.create_partial(&digest, size))
            .await
            .map_err(|e| Failure::new(ErrorKind::Internal, e.to_string()))?
            .map_err(|e| Failure::store(&e))?;
        let file = Arc::new(file);

        let min_span = cfg.min_span.as_u64();
        let single_stream = matches!(&self.origin, Origin::Upstream(p) if !p.ranges);
        let workers = if single_stream {
            1
        } else {
            (size.div_ceil(min_span) as usize).clamp(1, cfg.connections)
        };
        {
            let mut st = self.lock();
            let mut sched = Sched::new(size, workers, min_span, LOOKAHEAD, single_stream);
            for (&pos, &n) in &st.early {
                for _ in 0..n {
                    sched.add_demand(pos);
                }
            }
            st.early.clear();
            st.sched = Some(sched);
            st.info = Some(Info {
                size,
                file: file.clone(),
            });
            st.last_progress = Instant::now();
        }
        self.bump_landed();
        tracing::debug!(digest = %self.digest, size, workers, "fill started");

        // Workers and the hasher end with this fill, whichever way it ends; shutdown
        // (the parent token) ends the fill.
        let stop = m.inner.cancel.child_token();
        let _stop_on_exit = stop.clone().drop_guard();
        let shutting_down = || Failure::new(ErrorKind::ShuttingDown, "shoal is shutting down");
        // The hasher follows whatever lands, from peers or upstream.
        let mut hasher = {
            let hash = self.clone().hash(size, file.clone());
            let stop = stop.clone();
            m.inner.tasks.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => Err(shutting_down()),
                    r = hash => r,
                }
            })
        };

        // Peers first; upstream for whatever they do not deliver.
        let probe = match &self.origin {
            Origin::Upstream(p) => Some(p.clone()),
            Origin::Peers { holders, .. } => {
                if self.from_peers(m, holders, &file, &stop).await? {
                    None
                } else {
                    let probe = self.upstream_after_peers(m, size).await?;
                    self.lock().source = BlobSource::Upstream;
                    Some(probe)
                }
            }
        };

        let (fatal_tx, mut fatal_rx) = mpsc::channel::<Failure>(workers);
        if let Some(probe) = probe {
            let location = Arc::new(Location {
                current: Mutex::new((probe.location, 0)),
                refreshing: tokio::sync::Mutex::new(()),
                single_stream,
            });
            for w in 0..workers {
                let work = self
                    .clone()
                    .worker(w, m.clone(), location.clone(), fatal_tx.clone());
                let stop = stop.clone();
                m.inner.tasks.spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = work => {}
                    }
                });
            }
        }
        drop(fatal_tx);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (got, pieces) = loop {
            tokio::select! {
                r = &mut hasher => {
                    break r.map_err(|e| Failure::new(ErrorKind::Internal, e.to_string()))??;
                }
                Some(f) = fatal_rx.recv() => return Err(f),
                () = stop.cancelled() => return Err(shutting_down()),
                _ = tick.tick() => {
                    let idle = self.lock().last_progress.elapsed();
                    if idle > cfg.give_up_after {
                        return Err(Failure::new(ErrorKind::Timeout, format!(
                            "upstream delivered no bytes for {}",
                            humantime::format_duration(Duration::from_secs(idle.as_secs()))
                        )));
                    }
                }
            }
        };
        if got != self.digest {
            // Peers' bytes are checked piece by piece against a torrent a peer offered; if
            // the whole is wrong, that torrent and its data were wrong: do not ask them again.
            let used = std::mem::take(&mut self.lock().peers_used);
            if let Some(p2p) = &m.inner.p2p {
                for peer in &used {
                    p2p.peers.distrust(peer, &self.digest);
                }
            }
            return Err(Failure::new(
                ErrorKind::Integrity,
                format!(
                    "digest mismatch: the {size} bytes received hash to {got}, not {}",
                    self.digest
                ),
            ));
        }
        let torrent = pieces.finish(self.digest, size).into_row();
        m.inner
            .store
            .commit(self.digest, size, file, torrent)
            .await
            .map_err(|e| Failure::store(&e))?;
        Ok(size)
    }

    /// Fetches from peers over BitTorrent until the blob is complete (true) or the swarm
    /// stops delivering for `p2p.stall_timeout` (false: upstream takes over the gaps).
    async fn from_peers(
        self: &Arc<Self>,
        m: &Mirror,
        holders: &[Holder],
        file: &Arc<File>,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<bool, Failure> {
        let Some(p2p) = &m.inner.p2p else {
            return Ok(false);
        };
        // The torrent, from the first holder that offers a valid one.
        let mut chosen = None;
        for h in holders.iter().take(3) {
            match p2p.peers.fetch_torrent(h, &self.digest).await {
                Ok(t) => {
                    chosen = Some((t, h.infohash));
                    break;
                }
                Err(e) => {
                    tracing::warn!(peer = %h.peer_url, error = %crate::telemetry::chain(&e), "no usable torrent from peer")
                }
            }
        }
        let Some((info, infohash)) = chosen else {
            return Ok(false);
        };
        let (urls, addrs): (Vec<String>, Vec<SocketAddr>) = holders
            .iter()
            .filter(|h| h.infohash == infohash)
            .filter_map(|h| Some((h.peer_url.clone(), h.bt_addr.parse::<SocketAddr>().ok()?)))
            .unzip();
        let trackers: Vec<String> = urls
            .iter()
            .map(|u| match p2p.peers.swarm_key() {
                Some(key) => format!("{u}/announce/{key}"),
                None => format!("{u}/announce"),
            })
            .collect();
        self.lock().peers_used = urls;
        let weak = Arc::downgrade(self);
        let stats = m.inner.stats.clone();
        let on_piece: crate::p2p::OnPiece = Arc::new(move |start, end| {
            if let Some(fill) = weak.upgrade() {
                fill.land_from_peers(start, end, &stats);
            }
        });
        let dl = match p2p
            .swarm
            .download(&info, file.clone(), addrs.clone(), trackers, on_piece)
            .await
        {
            Ok(dl) => dl,
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "cannot download from peers");
                return Ok(false);
            }
        };
        tracing::info!(digest = %self.digest, peers = ?addrs, "filling from peers over BitTorrent");
        let stall = m.inner.cfg.peer_stall;
        self.lock().last_progress = Instant::now();
        let mut rx = self.landed_tx.subscribe();
        // librqbit fetches pieces in order. Steer it: first where clients wait, then from
        // a place of this node's own, so that nodes pulling together start in different
        // places and have pieces to trade.
        let own_start = fastrand::u64(0..info.size.max(1)) / info.piece_length * info.piece_length;
        let mut steered = Vec::new();
        let complete = loop {
            let (done, idle, mut want) = {
                let st = self.lock();
                let sched = st.sched.as_ref();
                (
                    sched.is_some_and(|s| s.complete()),
                    st.last_progress.elapsed(),
                    sched.map(|s| s.waiting_demands()).unwrap_or_default(),
                )
            };
            if done {
                break true;
            }
            if let Some(next) = self
                .lock()
                .sched
                .as_ref()
                .and_then(|s| s.next_missing(own_start))
            {
                want.push(next / info.piece_length * info.piece_length);
            }
            if want != steered {
                p2p.swarm.steer(&dl, &want).await;
                steered = want;
            }
            if idle >= stall {
                tracing::warn!(digest = %self.digest, live_peers = p2p.swarm.live_peers(&dl),
                    "peers delivered nothing for {stall:?}; upstream takes over the missing ranges");
                break false;
            }
            tokio::select! {
                _ = rx.changed() => {}
                () = tokio::time::sleep(stall - idle) => {}
                () = stop.cancelled() => break false,
            }
        };
        p2p.swarm.end_download(dl).await;
        Ok(complete)
    }

    /// Records a piece that peers delivered and librqbit verified.
    fn land_from_peers(&self, start: u64, end: u64, stats: &Stats) {
        {
            let mut st = self.lock();
            st.last_progress = Instant::now();
            if let Some(s) = st.sched.as_mut() {
                s.land_external(start, end);
            }
        }
        Stats::add(&stats.peer_bytes, end - start);
        self.bump_landed();
    }

    /// Where upstream has this blob now (its size and a fresh location).
    async fn probe_upstream(&self, m: &Mirror) -> Result<BlobProbe, Failure> {
        m.inner
            .upstream
            .probe_blob(&self.repo, &self.digest, &self.meta)
            .await
            .map_err(|e| Failure::upstream(&e))
    }

    /// After peers stalled: where upstream has the blob, for the missing ranges.
    async fn upstream_after_peers(&self, m: &Mirror, size: u64) -> Result<BlobProbe, Failure> {
        let probe = self.probe_upstream(m).await?;
        if probe.size != size {
            return Err(Failure::new(
                ErrorKind::Integrity,
                format!(
                    "peers say {} is {size} bytes, upstream says {}",
                    self.digest, probe.size
                ),
            ));
        }
        if !probe.ranges {
            return Err(Failure::new(
                ErrorKind::Upstream,
                "upstream does not serve ranges, so it cannot finish a partial download from peers",
            ));
        }
        Ok(probe)
    }

    /// Hashes the landed prefix as it grows: sha256 for the digest, and in the same pass
    /// the SHA-1 of each torrent piece. Reads back from the page cache, so that bytes
    /// landing out of order need no buffering here.
    async fn hash(
        self: Arc<Self>,
        size: u64,
        file: Arc<File>,
    ) -> Result<(Digest, PieceHasher), Failure> {
        let mut rx = self.landed_tx.subscribe();
        let mut hasher = (Sha256::new(), PieceHasher::new(size));
        let mut buf = vec![0u8; HASH_CHUNK];
        let mut hashed = 0u64;
        while hashed < size {
            rx.borrow_and_update();
            let avail = self
                .lock()
                .sched
                .as_ref()
                .and_then(|s| s.landed().run_end(hashed));
            let Some(end) = avail else {
                if rx.changed().await.is_err() {
                    return Err(Failure::new(ErrorKind::Internal, "fill vanished"));
                }
                continue;
            };
            let n = (end - hashed).min(HASH_CHUNK as u64) as usize;
            let f = file.clone();
            let at = hashed;
            let (h, b, res) = tokio::task::spawn_blocking(move || {
                let res = f.read_exact_at(&mut buf[..n], at);
                if res.is_ok() {
                    hasher.0.update(&buf[..n]);
                    hasher.1.update(&buf[..n]);
                }
                (hasher, buf, res)
            })
            .await
            .map_err(|e| Failure::new(ErrorKind::Internal, e.to_string()))?;
            res.map_err(|e| Failure::io("reading back the partial blob", &e))?;
            (hasher, buf) = (h, b);
            hashed += n as u64;
        }
        Ok((Digest::from_bytes(hasher.0.finalize().into()), hasher.1))
    }

    async fn worker(
        self: Arc<Self>,
        w: usize,
        m: Mirror,
        location: Arc<Location>,
        fatal: mpsc::Sender<Failure>,
    ) {
        let mut sched_rx = self.sched_tx.subscribe();
        let mut failures = 0u32;
        loop {
            sched_rx.borrow_and_update();
            let job = match self.lock().sched.as_mut() {
                Some(s) => s.next_job(w),
                None => Job::Done,
            };
            match job {
                Job::Done => return,
                Job::Wait => {
                    if sched_rx.changed().await.is_err() {
                        return;
                    }
                }
                Job::Fetch { start, end } => {
                    // Idle workers may steal from the new span.
                    self.bump_sched();
                    let began = Instant::now();
                    tracing::debug!(worker = w, start, end, "job");
                    match self
                        .fetch(w, start, end, &m, &location, &mut sched_rx)
                        .await
                    {
                        Ok(()) => {
                            failures = 0;
                            tracing::debug!(
                                worker = w,
                                start,
                                secs = began.elapsed().as_secs_f64(),
                                "job done"
                            );
                        }
                        Err(FetchError::Fatal(f)) => {
                            let _ = fatal.send(f).await;
                            return;
                        }
                        Err(FetchError::Retry {
                            error,
                            refused,
                            generation,
                        }) => {
                            failures += 1;
                            if let Some(s) = self.lock().sched.as_mut() {
                                s.release(w);
                            }
                            self.bump_sched();
                            tracing::warn!(digest = %self.digest, worker = w, start, error, failures, "upstream range failed; retrying");
                            if refused {
                                if let Err(f) = self.refresh(&m, &location, generation).await {
                                    let _ = fatal.send(f).await;
                                    return;
                                }
                            }
                            let base = 100u64 << failures.min(6);
                            let wait = Duration::from_millis(base + fastrand::u64(0..=base));
                            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                        }
                    }
                }
            }
        }
    }

    /// Fetches `[start, end)` (or less, if the span shrinks) over one connection.
    async fn fetch(
        &self,
        w: usize,
        start: u64,
        end: u64,
        m: &Mirror,
        location: &Location,
        sched_rx: &mut watch::Receiver<u64>,
    ) -> Result<(), FetchError> {
        let cfg = &m.inner.cfg.fetch;
        let stats = &m.inner.stats;
        let (url, generation) = location.get();
        let single = location.single_stream;
        let file = match &self.lock().info {
            Some(i) => i.file.clone(),
            None => {
                return Err(FetchError::Fatal(Failure::new(
                    ErrorKind::Internal,
                    "no file",
                )))
            }
        };
        let resp = m
            .inner
            .upstream
            .get_range(&self.repo, &url, start, end, single, cfg.stall_timeout)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    FetchError::Fatal(Failure::upstream(&e))
                } else {
                    FetchError::Retry {
                        error: crate::telemetry::chain(&e),
                        refused: e.is_refused(),
                        generation,
                    }
                }
            })?;
        let mut body = resp.body;
        // A location that ignores Range streams from byte 0: skip what is already held.
        let mut skip = if single { start } else { 0 };
        let mut off = start;
        let mut buf = BytesMut::with_capacity(FLUSH);
        loop {
            let frame = match body.frame().now_or_never() {
                Some(f) => f,
                None => {
                    // Nothing more right now: hand what we have to readers before waiting.
                    if !buf.is_empty() && !self.flush(w, &mut off, &mut buf, &file).await? {
                        return Ok(());
                    }
                    let deadline = tokio::time::Instant::now() + cfg.stall_timeout;
                    loop {
                        tokio::select! {
                            f = tokio::time::timeout_at(deadline, body.frame()) => {
                                break f.map_err(|_| FetchError::retry(format!(
                                    "no bytes for {:?} from {}", cfg.stall_timeout, resp.url), generation))?;
                            }
                            r = sched_rx.changed() => {
                                if r.is_err() || !self.still_mine(w) {
                                    return Ok(());
                                }
                            }
                        }
                    }
                }
            };
            let data = match frame {
                None => {
                    if !buf.is_empty() {
                        self.flush(w, &mut off, &mut buf, &file).await?;
                    }
                    return if self.still_mine(w) {
                        Err(FetchError::retry(
                            format!("body from {} ended at {off}, before {end}", resp.url),
                            generation,
                        ))
                    } else {
                        Ok(())
                    };
                }
                Some(Err(e)) => {
                    if !buf.is_empty() {
                        self.flush(w, &mut off, &mut buf, &file).await?;
                    }
                    return Err(FetchError::retry(
                        format!("reading from {}: {e}", resp.url),
                        generation,
                    ));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => d,
                    Err(_) => continue, // trailers
                },
            };
            Stats::add(&stats.upstream_bytes, data.len() as u64);
            let mut data = data;
            if skip > 0 {
                let k = skip.min(data.len() as u64) as usize;
                data.advance(k);
                skip -= k as u64;
            }
            // Never past what was asked for, whatever the server sends, nor past where the
            // span now ends (another worker may have taken its tail).
            let limit = self.span_end(w).min(end);
            let room = limit.saturating_sub(off + buf.len() as u64);
            let take = (data.len() as u64).min(room) as usize;
            buf.extend_from_slice(&data[..take]);
            if buf.len() >= FLUSH || off + buf.len() as u64 >= limit {
                if !self.flush(w, &mut off, &mut buf, &file).await? {
                    return Ok(());
                }
                if off >= limit {
                    return Ok(());
                }
            }
        }
    }

    /// Claims, writes and lands the buffered bytes. Returns whether to keep reading.
    async fn flush(
        &self,
        w: usize,
        off: &mut u64,
        buf: &mut BytesMut,
        file: &Arc<File>,
    ) -> Result<bool, FetchError> {
        let at = *off;
        let n = match self.lock().sched.as_mut() {
            Some(s) => s.claim(w, at, buf.len() as u64),
            None => 0,
        };
        if n == 0 {
            buf.clear();
            return Ok(false);
        }
        let data = buf.split_to(n as usize).freeze();
        buf.clear();
        let f = file.clone();
        let _turn = self.write_turn.lock().await;
        tokio::task::spawn_blocking(move || f.write_all_at(&data, at))
            .await
            .map_err(|e| FetchError::Fatal(Failure::new(ErrorKind::Internal, e.to_string())))?
            .map_err(|e| FetchError::Fatal(Failure::io("writing the partial blob", &e)))?;
        *off = at + n;
        let (more, complete) = {
            let mut st = self.lock();
            st.last_progress = Instant::now();
            match st.sched.as_mut() {
                Some(s) => (s.land(w, at + n), s.complete()),
                None => (false, false),
            }
        };
        self.bump_landed();
        if complete {
            self.bump_sched();
        }
        Ok(more)
    }

    /// Where worker `w`'s span ends now (0 when it has none).
    fn span_end(&self, w: usize) -> u64 {
        self.lock()
            .sched
            .as_ref()
            .and_then(|s| s.span(w))
            .map_or(0, |s| s.end)
    }

    fn still_mine(&self, w: usize) -> bool {
        self.lock()
            .sched
            .as_ref()
            .and_then(|s| s.span(w))
            .is_some_and(|s| s.pos < s.end)
    }

    /// Asks the registry for a fresh location, unless another worker already did.
    async fn refresh(
        &self,
        m: &Mirror,
        location: &Location,
        generation: u64,
    ) -> Result<(), Failure> {
        let _one_at_a_time = location.refreshing.lock().await;
        if location.get().1 != generation {
            return Ok(());
        }
        let probe = self.probe_upstream(m).await?;
        let size = self.lock().info.as_ref().map(|i| i.size);
        if Some(probe.size) != size {
            return Err(Failure::new(
                ErrorKind::Integrity,
                format!(
                    "upstream changed the size of {} to {}",
                    self.digest, probe.size
                ),
            ));
        }
        tracing::info!(digest = %self.digest, "blob location refreshed");
        m.inner.cache.put_probe(self.digest, probe.clone()).await;
        *location.current.lock().unwrap_or_else(|p| p.into_inner()) =
            (probe.location, generation + 1);
        Ok(())
    }
}
