//! One fill: a blob on its way into the store, shared by every client that asks for it
//! while it lasts (single flight, `flight.rs`) and independent of all of them (a client
//! that goes away does not stop it).
//!
//! The parts, each changeable without reading the others:
//! - `Fill` (this file): what every party shares — the scheduler (`sched.rs`), which bytes
//!   have landed, the piece hashes, the outcome — and the driver, which runs the fill's
//!   sources in turn, then verifies and commits.
//! - `Source`: where bytes come from. `upstream.rs` (parallel, bounded ranged GETs; each
//!   byte asked for once) and `peers.rs` (BitTorrent from other nodes). A source that
//!   stalls hands the missing ranges to the next one.
//! - `hash.rs`: the SHA-256 of the whole blob (it must match the digest) and the SHA-1 of
//!   each torrent piece as it completes, which is also what the partial's journal records,
//!   so that a fill stopped by a crash or a restart resumes instead of starting over.
//!
//! Readers wait on `landed` and read whatever has landed; a reader that waits registers a
//! demand, so that a worker comes to it first.
//!
//! Must not: talk to clients, call back into the mirror, or mark anything complete before
//! the digest matched.

mod hash;
mod lan;
mod peers;
mod rate;
mod upstream;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::sched::{Job, Sched};
use super::{BlobSource, ErrorKind};
use crate::oci::Digest;
use crate::p2p::torrent::{piece_length, TorrentInfo};
use crate::stats::Stats;
use crate::store::Store;

pub use lan::LanSource;
pub use peers::PeerSource;
pub use rate::RateLimit;
pub use upstream::{UpstreamBlob, UpstreamSource, WorkerConfig};

/// Bytes a worker gathers before one write; also how soon readers see them.
pub(crate) const FLUSH: usize = 1 << 20;
/// A demand this close ahead of a worker is left to it rather than given its own.
const LOOKAHEAD: u64 = 2 << 20;

/// Why a fill failed, shared by all its readers.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    pub fn upstream(e: &crate::upstream::Error) -> Failure {
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

    fn internal(e: impl std::fmt::Display) -> Failure {
        Failure::new(ErrorKind::Internal, e.to_string())
    }

    fn shutting_down() -> Failure {
        Failure::new(ErrorKind::ShuttingDown, "shoal is shutting down")
    }
}

enum Outcome {
    Running,
    Verified,
    Failed(Failure),
}

/// Where a piece's SHA-1 stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// Not all its bytes have landed.
    Missing,
    /// All landed; queued for the piece hasher.
    Queued,
    Known([u8; 20]),
}

struct State {
    sched: Sched,
    outcome: Outcome,
    last_progress: Instant,
    /// Where the bytes come from now.
    source: BlobSource,
    pieces: Vec<Piece>,
    /// Pieces whose bytes have all landed, for the piece hasher: with their SHA-1 when a
    /// source already verified it (peers), else to be hashed.
    ready: VecDeque<(usize, Option<[u8; 20]>)>,
    /// Told when a piece is queued in `ready`.
    ready_wake: Arc<Notify>,
    /// Tasks waiting for the byte at an offset (readers, the SHA-256 hasher). A landing
    /// wakes only those it concerns: with 16 readers on 16 parts, waking every reader on
    /// every write cost more than the writes.
    waiters: Vec<(u64, Arc<Notify>)>,
}

impl State {
    /// Wakes every waiter (the outcome changed).
    fn wake_all(&mut self) {
        for (_, w) in self.waiters.drain(..) {
            w.notify_one();
        }
    }

    /// Wakes the waiters for bytes in `[start, end)` and queues the pieces it completed.
    fn note_landed(&mut self, start: u64, end: u64, piece_length: u64, known: Option<[u8; 20]>) {
        if start >= end {
            return;
        }
        // Waiters whose task is gone (only this list holds their Notify) go too.
        self.waiters.retain(|(pos, w)| {
            if start <= *pos && *pos < end {
                w.notify_one();
                false
            } else {
                Arc::strong_count(w) > 1
            }
        });
        let queued = self.ready.len();
        let size = self.sched.size();
        let first = (start / piece_length) as usize;
        let last = ((end - 1) / piece_length) as usize;
        for i in first..=last.min(self.pieces.len().saturating_sub(1)) {
            if self.pieces[i] != Piece::Missing {
                continue;
            }
            let (ps, pe) = piece_bounds(i, piece_length, size);
            if self.sched.landed().run_end(ps).is_some_and(|e| e >= pe) {
                self.pieces[i] = Piece::Queued;
                // A verified SHA-1 only holds for exactly the piece it was given for.
                let hash = known.filter(|_| ps == start && pe == end);
                self.ready.push_back((i, hash));
            }
        }
        if self.ready.len() > queued {
            self.ready_wake.notify_one();
        }
    }
}

fn piece_bounds(i: usize, piece_length: u64, size: u64) -> (u64, u64) {
    let start = i as u64 * piece_length;
    (start, (start + piece_length).min(size))
}

pub struct Fill {
    pub digest: Digest,
    size: u64,
    piece_length: u64,
    state: Mutex<State>,
    /// Set once the partial file is open.
    file: OnceLock<Arc<File>>,
    /// Bumped whenever bytes land or the outcome changes: readers and hashers wait on it.
    landed_tx: watch::Sender<u64>,
    /// Bumped on scheduling changes: idle or preempted workers wait on it.
    sched_tx: watch::Sender<u64>,
    /// One write at a time: the kernel serializes writes to one file anyway (ext4's inode
    /// lock), and 16 workers contending for it spent a tenth of shoal's CPU spinning.
    write_turn: tokio::sync::Mutex<()>,
    /// Where the bytes came from, for the record (`report`).
    fed: Mutex<Fed>,
    /// Fetched with a client's credentials: committed private, never offered to peers.
    private: std::sync::atomic::AtomicBool,
}

/// Who fed a fill.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Fed {
    /// This node fetched bytes from upstream.
    pub upstream: bool,
    /// Other nodes whose bytes went in: holders over BitTorrent, or the node that fetched
    /// it from upstream for the LAN.
    pub peers: Vec<String>,
}

/// A fill as `/_shoal/v1/torrents` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub digest: Digest,
    pub size: u64,
    pub landed: u64,
    /// "upstream" or "peers" (BitTorrent, or the LAN's owner of the blob).
    pub source: &'static str,
    /// "running", "cached", "failed" or "stopped".
    pub state: &'static str,
    /// Fetched with a client's credentials: this node's alone (never offered to peers).
    pub private: bool,
    #[serde(flatten)]
    pub fed: Fed,
}

/// A reader waiting at an offset; dropping it withdraws the demand.
pub struct DemandGuard {
    fill: Arc<Fill>,
    pos: u64,
}

impl Drop for DemandGuard {
    fn drop(&mut self) {
        self.fill.lock().sched.remove_demand(self.pos);
    }
}

/// Spawns one of a fill's tasks, ended by `stop`.
fn spawn_until<T: Send + 'static>(
    ctx: &FillCtx,
    stop: &CancellationToken,
    fut: impl std::future::Future<Output = Result<T, Failure>> + Send + 'static,
) -> tokio::task::JoinHandle<Result<T, Failure>> {
    let stop = stop.clone();
    ctx.tasks.spawn(
        async move {
            tokio::select! {
                () = stop.cancelled() => Err(Failure::shutting_down()),
                r = fut => r,
            }
        }
        .in_current_span(),
    )
}

/// What a fill needs from around it (never the mirror itself).
#[derive(Clone)]
pub struct FillCtx {
    pub store: Store,
    pub stats: Arc<Stats>,
    /// Every task of every fill, so shutdown can stop and await them.
    pub tasks: TaskTracker,
    /// Cancelled first at shutdown: fills take the bytes already asked for, keep their
    /// partial and stop.
    pub drain: CancellationToken,
    /// Cancelled when shutdown stops waiting: everything stops at once.
    pub cancel: CancellationToken,
    /// A fill that lands nothing for this long fails.
    pub give_up_after: Duration,
}

/// Where a fill's bytes come from. Sources run one after another: each gets the bytes
/// that have not landed yet, and either completes the blob or gives up (stalls), leaving
/// the rest to the next.
pub trait Source: Send + Sync {
    fn kind(&self) -> BlobSource;

    /// Fetches missing bytes into `fill` until it is complete (`Ok(true)`) or this source
    /// can do no more (`Ok(false)`). Stops promptly when `stop` is cancelled.
    fn run<'a>(
        &'a self,
        fill: &'a Arc<Fill>,
        ctx: &'a FillCtx,
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<bool, Failure>>;

    /// The blob failed its digest after this source delivered bytes to it.
    fn blame(&self, _digest: &Digest) {}
}

impl Fill {
    pub fn new(digest: Digest, size: u64, workers: usize, min_span: u64) -> Arc<Fill> {
        let piece_length = piece_length(size);
        let pieces = size.div_ceil(piece_length) as usize;
        Arc::new(Fill {
            digest,
            size,
            piece_length,
            state: Mutex::new(State {
                sched: Sched::new(size, workers, min_span, LOOKAHEAD, false)
                    .with_pieces(piece_length),
                outcome: Outcome::Running,
                last_progress: Instant::now(),
                source: BlobSource::Upstream,
                pieces: vec![Piece::Missing; pieces],
                ready: VecDeque::new(),
                ready_wake: Arc::new(Notify::new()),
                waiters: Vec::new(),
            }),
            file: OnceLock::new(),
            landed_tx: watch::Sender::new(0),
            sched_tx: watch::Sender::new(0),
            write_turn: tokio::sync::Mutex::new(()),
            fed: Mutex::new(Fed::default()),
            private: Default::default(),
        })
    }

    /// Marks a fill that fetches with a client's credentials, before anyone can join it.
    pub fn mark_private(&self) {
        self.private
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_private(&self) -> bool {
        self.private.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes where bytes come from (a source calls this when it starts using a peer, or
    /// upstream).
    fn fed_by(&self, peer: Option<&str>) {
        let mut fed = self.fed.lock().unwrap_or_else(|p| p.into_inner());
        match peer {
            None => fed.upstream = true,
            Some(p) if !fed.peers.iter().any(|q| q == p) => fed.peers.push(p.to_owned()),
            Some(_) => {}
        }
    }

    /// What this fill is, for the listing of fills.
    pub fn report(&self) -> Report {
        let st = self.lock();
        let state = match &st.outcome {
            Outcome::Running => "running",
            Outcome::Verified => "cached",
            Outcome::Failed(f) if f.kind == ErrorKind::ShuttingDown => "stopped",
            Outcome::Failed(_) => "failed",
        };
        Report {
            digest: self.digest,
            size: self.size,
            landed: st.sched.landed().total(),
            source: match st.source {
                BlobSource::Peers => "peers",
                _ => "upstream",
            },
            state,
            private: self.is_private(),
            fed: self.fed.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain bookkeeping; a panic elsewhere leaves it consistent enough to fail cleanly.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn size(&self) -> u64 {
        self.size
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

    /// Registers a reader waiting at `pos`.
    pub fn demand(self: &Arc<Self>, pos: u64) -> DemandGuard {
        if self.lock().sched.add_demand(pos) {
            self.bump_sched();
        }
        DemandGuard {
            fill: self.clone(),
            pos,
        }
    }

    /// Waits until the partial file is open, so that readers can open it too.
    pub async fn opened(&self) -> Result<(), Failure> {
        let mut rx = self.landed_tx.subscribe();
        loop {
            if self.file.get().is_some() {
                return Ok(());
            }
            if let Outcome::Failed(f) = &self.lock().outcome {
                return Err(f.clone());
            }
            if rx.changed().await.is_err() {
                return Err(Failure::internal("fill vanished"));
            }
        }
    }

    /// Waits until the byte at `pos` has landed; returns the end of the landed run from
    /// there. A reader that has to wait registers a demand, so a worker comes to it.
    pub async fn available(self: &Arc<Self>, pos: u64) -> Result<u64, Failure> {
        self.landed_at(pos, true).await
    }

    /// As `available`; `demand` says whether to call a worker (the hasher does not).
    async fn landed_at(self: &Arc<Self>, pos: u64, demand: bool) -> Result<u64, Failure> {
        let wake = Arc::new(Notify::new());
        let mut guard = None;
        loop {
            {
                let mut st = self.lock();
                if let Some(end) = st.sched.landed().run_end(pos) {
                    return Ok(end);
                }
                if let Outcome::Failed(f) = &st.outcome {
                    return Err(f.clone());
                }
                // Registered under the lock that landings take: no wake-up is missed.
                st.waiters.push((pos, wake.clone()));
            }
            if demand && guard.is_none() {
                guard = Some(self.demand(pos));
            }
            wake.notified().await;
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
                return Err(Failure::internal("fill vanished"));
            }
        }
    }

    // ---- for sources ----

    fn file(&self) -> Result<Arc<File>, Failure> {
        self.file
            .get()
            .cloned()
            .ok_or_else(|| Failure::internal("the partial file is not open"))
    }

    fn next_job(&self, w: usize) -> Job {
        self.lock().sched.next_job(w)
    }

    fn ask(&self, w: usize, max: u64) -> Option<(u64, u64)> {
        self.lock().sched.ask(w, max)
    }

    /// Worker `w` gives its span back (error or stall).
    fn release(&self, w: usize) {
        self.lock().sched.release(w);
        self.bump_sched();
    }

    /// Writes the next bytes of worker `w`'s span at `at` and lands them. Returns how many
    /// were written (none beyond what the worker asked for) and whether its span goes on.
    async fn write(&self, w: usize, at: u64, data: bytes::Bytes) -> Result<(u64, bool), Failure> {
        let n = self.lock().sched.claim(w, at, data.len() as u64);
        if n == 0 {
            return Ok((0, false));
        }
        let data = data.slice(..n as usize);
        let file = self.file()?;
        {
            let _turn = self.write_turn.lock().await;
            tokio::task::spawn_blocking(move || file.write_all_at(&data, at))
                .await
                .map_err(Failure::internal)?
                .map_err(|e| Failure::io("writing the partial blob", &e))?;
        }
        let (more, complete) = {
            let mut st = self.lock();
            st.last_progress = Instant::now();
            let more = st.sched.land(w, at + n);
            st.note_landed(at, at + n, self.piece_length, None);
            (more, st.sched.complete())
        };
        self.bump_landed();
        if complete {
            self.bump_sched();
        }
        Ok((n, more))
    }

    /// Records bytes that landed outside the workers: a piece that peers delivered (with
    /// the SHA-1 it was verified against), or re-verified bytes of a previous run.
    fn land(&self, start: u64, end: u64, sha1: Option<[u8; 20]>) {
        let complete = {
            let mut st = self.lock();
            st.last_progress = Instant::now();
            st.sched.land_external(start, end);
            st.note_landed(start, end, self.piece_length, sha1);
            st.sched.complete()
        };
        self.bump_landed();
        if complete {
            self.bump_sched();
        }
    }

    pub fn is_complete(&self) -> bool {
        self.lock().sched.complete()
    }

    /// How long since bytes last landed.
    fn idle(&self) -> Duration {
        self.lock().last_progress.elapsed()
    }

    /// Restarts the idle clock (a new source starts).
    fn touch(&self) {
        self.lock().last_progress = Instant::now();
    }

    /// Offsets where readers wait for bytes that have not landed, lowest first.
    fn waiting_demands(&self) -> Vec<u64> {
        self.lock().sched.waiting_demands()
    }

    pub fn set_source(&self, source: BlobSource) {
        self.lock().source = source;
    }

    // ---- the driver ----

    /// Runs the fill to its end and publishes the outcome. The caller keeps the fill in
    /// the single-flight map until this returns, so the blob is in the store before any
    /// new request can miss it there.
    pub async fn run(self: &Arc<Self>, ctx: &FillCtx, sources: Vec<Box<dyn Source>>) {
        let started = Instant::now();
        let result = self.fill(ctx, &sources).await;
        let outcome = match result {
            Ok(()) => {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(digest = %self.digest, size = self.size, secs, "blob cached");
                ctx.stats.fill_seconds.observe(secs);
                Outcome::Verified
            }
            Err(f) if f.kind == ErrorKind::ShuttingDown => {
                tracing::info!(digest = %self.digest, "fill stopped by shutdown; its partial is kept to resume");
                Outcome::Failed(f)
            }
            Err(f) => {
                tracing::error!(digest = %self.digest, kind = ?f.kind, error = %f.message, "fill failed; nothing cached");
                Stats::add(&ctx.stats.fills_failed, 1);
                let (store, digest) = (ctx.store.clone(), self.digest);
                let _ = tokio::task::spawn_blocking(move || store.discard_partial(&digest)).await;
                Outcome::Failed(f)
            }
        };
        {
            let mut st = self.lock();
            st.outcome = outcome;
            st.wake_all();
        }
        self.bump_landed();
        self.bump_sched();
    }

    async fn fill(
        self: &Arc<Self>,
        ctx: &FillCtx,
        sources: &[Box<dyn Source>],
    ) -> Result<(), Failure> {
        let (store, digest, size) = (ctx.store.clone(), self.digest, self.size);
        let partial = tokio::task::spawn_blocking(move || store.open_partial(&digest, size))
            .await
            .map_err(Failure::internal)?
            .map_err(|e| Failure::store(&e))?;
        let file = Arc::new(partial.file);
        if !partial.resumed.is_empty() {
            let bytes: u64 = partial.resumed.iter().map(|r| r.end - r.start).sum();
            tracing::info!(%digest, records = partial.resumed.len(), bytes, "resuming a partial left by a previous run");
            let mut st = self.lock();
            for r in &partial.resumed {
                st.sched.hold(r.start, r.end);
            }
        }
        let _ = self.file.set(file.clone());
        self.bump_landed();

        // Hashers and sources end with this fill, whichever way it ends; shutdown (the
        // parent token) ends the fill.
        let stop = ctx.cancel.child_token();
        let _stop_on_exit = stop.clone().drop_guard();
        let ledger = Arc::new(Mutex::new(hash::Ledger::new(partial.journal)));
        let sha256 = spawn_until(ctx, &stop, hash::sha256(self.clone(), file.clone()));
        let pieces = spawn_until(
            ctx,
            &stop,
            hash::pieces(self.clone(), file.clone(), ledger.clone(), partial.resumed),
        );

        let sourcing = async {
            for source in sources {
                if self.is_complete() {
                    return Ok(());
                }
                self.set_source(source.kind());
                self.touch();
                if source.run(self, ctx, &stop).await? {
                    return Ok(());
                }
            }
            Err(Failure::new(
                ErrorKind::Upstream,
                "no source could deliver the blob",
            ))
        };
        let watchdog = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let idle = self.idle();
                if idle > ctx.give_up_after {
                    return Failure::new(
                        ErrorKind::Timeout,
                        format!(
                            "no bytes arrived for {}",
                            humantime::format_duration(Duration::from_secs(idle.as_secs()))
                        ),
                    );
                }
            }
        };
        tokio::pin!(sourcing);
        let sourced = tokio::select! {
            r = &mut sourcing => r,
            f = watchdog => Err(f),
            () = ctx.drain.cancelled() => {
                // Shutting down: the bytes already asked for are on their way (the source
                // has sent them), so take them before stopping; nothing new is asked.
                self.lock().sched.drain();
                self.bump_sched();
                let drained = tokio::select! {
                    r = &mut sourcing => r,
                    () = stop.cancelled() => Err(Failure::shutting_down()),
                };
                // A blob that the drain completed is committed; anything else is kept.
                match drained {
                    Err(_) if !self.is_complete() => Err(Failure::shutting_down()),
                    _ => Ok(()),
                }
            }
            () = stop.cancelled() => Err(Failure::shutting_down()),
        };
        // A source that fails because shutdown stopped it can win the race above with its
        // own error: a shutdown still keeps the partial for the next run.
        let shutting_down = ctx.drain.is_cancelled() || stop.is_cancelled();
        let sourced = match sourced {
            Err(f) if shutting_down && !self.is_complete() && f.kind != ErrorKind::ShuttingDown => {
                tracing::debug!(digest = %self.digest, error = %f.message, "a source stopped by shutdown");
                Err(Failure::shutting_down())
            }
            other => other,
        };
        if let Err(f) = sourced {
            if f.kind == ErrorKind::ShuttingDown {
                stop.cancel();
                self.keep_for_resume(&ledger, &file).await;
            }
            return Err(f);
        }

        let got = sha256.await.map_err(Failure::internal)??;
        if got != self.digest {
            for s in sources {
                s.blame(&self.digest);
            }
            return Err(Failure::new(
                ErrorKind::Integrity,
                format!(
                    "digest mismatch: the {} bytes received hash to {got}, not {}",
                    self.size, self.digest
                ),
            ));
        }
        let pieces = pieces.await.map_err(Failure::internal)??;
        let torrent = TorrentInfo {
            digest: self.digest,
            size: self.size,
            piece_length: self.piece_length,
            pieces,
        }
        .into_row();
        ctx.store
            .commit(self.digest, self.size, file, torrent, self.is_private())
            .await
            .map_err(|e| Failure::store(&e))
    }

    /// At shutdown: records every landed range the journal lacks, so a restart resumes
    /// with all of it.
    async fn keep_for_resume(&self, ledger: &Arc<Mutex<hash::Ledger>>, file: &Arc<File>) {
        let landed = self.lock().sched.landed().clone();
        let (ledger, file, digest) = (ledger.clone(), file.clone(), self.digest);
        let kept =
            tokio::task::spawn_blocking(move || hash::lock(&ledger).record_all(&landed, &file))
                .await;
        match kept {
            Ok(Ok(bytes)) => tracing::debug!(%digest, bytes, "journal brought up to date"),
            Ok(Err(e)) => {
                tracing::warn!(%digest, error = %e, "cannot bring the journal up to date; some bytes will be fetched again")
            }
            Err(e) => tracing::warn!(%digest, error = %e, "journal task failed"),
        }
    }
}
