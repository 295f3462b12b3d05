//! The upstream source: N workers, each one connection's worth of parallelism, taking jobs
//! from the fill's scheduler and fetching them as bounded ranged GETs.
//!
//! **Each byte asked for once.** A worker asks for its span in bounded requests
//! (`Sched::ask`), never open-ended, and nothing cuts a span inside a request already
//! sent. So the CDN sends each byte of the blob once, whatever splits, steals and
//! preemptions happen meanwhile. Before a request ends, the worker sends the next one
//! (on a second connection), so no gap opens between them. Requests aim at about
//! `REQUEST_SECS` of transfer at the rate the last one ran at.
//!
//! **Never silent for long.** Every read has a stall timer (`fetch.stall_timeout`): a
//! silent connection is dropped and the worker's span goes back to the pool. A 4xx from
//! the blob location (an expired presigned URL) triggers one re-probe for all workers.
//!
//! The HTTP side sits behind `RangeFetch`, so the workers are tested with fakes.
//!
//! Must not: write a byte it did not ask for.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;

use super::{Failure, Fill, FillCtx, Source, FLUSH};
use crate::cache::Cache;
use crate::mirror::sched::Job;
use crate::mirror::{BlobSource, ErrorKind};
use crate::oci::{Digest, RepoName};
use crate::stats::Stats;
use crate::upstream::{BlobProbe, ClientMeta, Upstream};

/// The first request of a span, before its rate is known.
const FIRST_REQUEST: u64 = 2 << 20;
const MIN_REQUEST: u64 = 1 << 20;
const MAX_REQUEST: u64 = 64 << 20;
/// Requests are sized to last about this long at the last measured rate: long enough
/// that a connection is rarely new, short enough that a far demand rarely waits.
const REQUEST_SECS: f64 = 2.0;
/// The next request is sent when the current one has this little left, at least.
const MIN_LEAD: u64 = 256 << 10;

/// One ranged response: its body as it arrives.
pub struct RangeBody {
    pub chunks: BoxStream<'static, Result<Bytes, String>>,
    /// For messages (no query string).
    pub url: String,
    /// The location's generation it was sent to (see `RangeFetch::refresh`).
    pub generation: u64,
}

impl RangeBody {
    /// A hyper response body, as a stream of its data.
    pub fn from_http(body: hyper::body::Incoming, url: String, generation: u64) -> RangeBody {
        let chunks = http_body_util::BodyStream::new(body)
            .filter_map(|frame| async move {
                match frame {
                    Ok(f) => f.into_data().ok().map(Ok),
                    Err(e) => Some(Err(e.to_string())),
                }
            })
            .boxed();
        RangeBody {
            chunks,
            url,
            generation,
        }
    }
}

pub enum FetchError {
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

/// Where the workers' bytes come from.
pub trait RangeFetch: Send + Sync + 'static {
    /// Gets ready to fetch (e.g. finds where the blob is upstream).
    fn prepare(&self) -> BoxFuture<'_, Result<(), Failure>>;
    /// The location ignores `Range`: one stream from byte 0 is all there is.
    fn single_stream(&self) -> bool;
    /// Sends a GET for `[start, end)` (the whole blob when single-stream); resolves when
    /// the response headers are in.
    fn get(&self, start: u64, end: u64) -> BoxFuture<'static, Result<RangeBody, FetchError>>;
    /// The location of `generation` refused a request: find a fresh one, unless another
    /// worker already did.
    fn refresh(&self, generation: u64) -> BoxFuture<'_, Result<(), Failure>>;
    /// `n` bytes arrived (counted per registry by those that have one).
    fn arrived(&self, _n: u64) {}
}

/// Worker settings, from `fetch.*`.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub stall_timeout: Duration,
    /// Count what arrives as bytes from peers (another node), not from upstream.
    pub from_peers: bool,
    /// `fetch.rate_limit`, shared by every upstream worker (not by fetches from peers).
    pub rate: Option<Arc<super::RateLimit>>,
}

pub struct UpstreamSource {
    fetch: Arc<dyn RangeFetch>,
    cfg: WorkerConfig,
    kind: BlobSource,
    /// For a source that is not the last resort (another node): it gives up, and the next
    /// source takes over, when nothing lands for this long or a request fails outright.
    give_up: Option<Duration>,
}

impl UpstreamSource {
    pub fn new(fetch: Arc<dyn RangeFetch>, cfg: WorkerConfig) -> UpstreamSource {
        UpstreamSource {
            fetch,
            cfg,
            kind: BlobSource::Upstream,
            give_up: None,
        }
    }

    /// The same workers, fetching from another node that gives up after `give_up`.
    pub fn from_peer(fetch: Arc<dyn RangeFetch>, cfg: WorkerConfig, give_up: Duration) -> Self {
        UpstreamSource {
            fetch,
            cfg: WorkerConfig {
                from_peers: true,
                rate: None,
                ..cfg
            },
            kind: BlobSource::Peers,
            give_up: Some(give_up),
        }
    }
}

impl Source for UpstreamSource {
    fn kind(&self) -> BlobSource {
        self.kind
    }

    fn run<'a>(
        &'a self,
        fill: &'a Arc<Fill>,
        ctx: &'a FillCtx,
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<bool, Failure>> {
        Box::pin(async move {
            self.fetch.prepare().await?;
            if self.give_up.is_none() {
                fill.fed_by(None);
            }
            let single = self.fetch.single_stream();
            let workers = {
                let mut st = fill.lock();
                st.sched.set_single_stream(single);
                st.sched.workers()
            };
            // This source's workers end when it returns, whichever way.
            let mine = stop.child_token();
            let _stop_on_exit = mine.clone().drop_guard();
            let (fatal_tx, mut fatal_rx) = mpsc::channel::<Failure>(workers);
            let mut handles = Vec::with_capacity(workers);
            for w in 0..workers {
                let work = worker(
                    fill.clone(),
                    w,
                    self.fetch.clone(),
                    self.cfg.clone(),
                    ctx.stats.clone(),
                    fatal_tx.clone(),
                );
                let mine = mine.clone();
                let span = tracing::debug_span!("worker", w);
                handles.push(
                    ctx.tasks.spawn(
                        async move {
                            tokio::select! {
                                () = mine.cancelled() => {}
                                () = work => {}
                            }
                        }
                        .instrument(span),
                    ),
                );
            }
            drop(fatal_tx);
            let stalled = async {
                let Some(limit) = self.give_up else {
                    return std::future::pending().await;
                };
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    if fill.idle() > limit {
                        return limit;
                    }
                }
            };
            tokio::select! {
                _ = futures_util::future::join_all(handles) => Ok(fill.is_complete()),
                Some(f) = fatal_rx.recv() => match self.give_up {
                    None => Err(f),
                    Some(_) => {
                        tracing::warn!(digest = %fill.digest, error = %f.message, "the peer cannot deliver the blob; upstream takes over");
                        Ok(false)
                    }
                },
                limit = stalled => {
                    tracing::warn!(digest = %fill.digest, "the peer delivered nothing for {limit:?}; upstream takes over the missing ranges");
                    Ok(false)
                }
            }
        })
    }
}

async fn worker(
    fill: Arc<Fill>,
    w: usize,
    fetch: Arc<dyn RangeFetch>,
    cfg: WorkerConfig,
    stats: Arc<Stats>,
    fatal: mpsc::Sender<Failure>,
) {
    let mut sched_rx = fill.sched_tx.subscribe();
    let mut failures = 0u32;
    loop {
        sched_rx.borrow_and_update();
        match fill.next_job(w) {
            Job::Done => return,
            Job::Wait => {
                if sched_rx.changed().await.is_err() {
                    return;
                }
            }
            Job::Fetch { start, end } => {
                // Idle workers may steal from the new span.
                fill.bump_sched();
                let began = Instant::now();
                tracing::debug!(worker = w, start, end, "job");
                match fetch_span(&fill, w, &fetch, &cfg, &stats).await {
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
                        fill.release(w);
                        let from = if cfg.from_peers { "peer" } else { "upstream" };
                        tracing::warn!(digest = %fill.digest, worker = w, start, error, failures, "{from} range failed; retrying");
                        if refused {
                            if let Err(f) = fetch.refresh(generation).await {
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

/// A request whose body is being read.
struct Req {
    start: u64,
    end: u64,
    body: RangeBody,
    sent: Instant,
    first_byte: Option<Instant>,
    received: u64,
}

impl Req {
    async fn send(fetch: &Arc<dyn RangeFetch>, start: u64, end: u64) -> Result<Req, FetchError> {
        let sent = Instant::now();
        let body = fetch.get(start, end).await?;
        Ok(Req {
            start,
            end,
            body,
            sent,
            first_byte: None,
            received: 0,
        })
    }

    /// Bytes per second since the first byte, once there is something to go by.
    fn rate(&self) -> Option<f64> {
        let secs = self.first_byte?.elapsed().as_secs_f64();
        (secs > 0.05 && self.received > 0).then(|| self.received as f64 / secs)
    }

    /// How early to send the next request: three times the bytes that arrive while a
    /// request waits for its first byte, so the next one starts as this one ends. No
    /// earlier: the next response's bytes wait unread in the socket until then, and are
    /// lost (though the CDN sent them) if the fill stops.
    fn lead(&self) -> u64 {
        let ttfb = self
            .first_byte
            .map(|t| t.duration_since(self.sent).as_secs_f64())
            .unwrap_or(0.0);
        let by_latency = self.rate().map_or(0, |r| (r * ttfb * 3.0) as u64);
        by_latency.max(MIN_LEAD).min(self.end - self.start)
    }

    /// The size of the request after this one.
    fn next_len(&self) -> u64 {
        match self.rate() {
            Some(r) => ((r * REQUEST_SECS) as u64).clamp(MIN_REQUEST, MAX_REQUEST),
            None => ((self.end - self.start) * 2).clamp(MIN_REQUEST, MAX_REQUEST),
        }
    }
}

/// The next request, sent while the current one still runs; aborted if dropped.
struct Ahead(tokio::task::JoinHandle<Result<Req, FetchError>>);

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fetches worker `w`'s span, request by request, until it ends.
async fn fetch_span(
    fill: &Arc<Fill>,
    w: usize,
    fetch: &Arc<dyn RangeFetch>,
    cfg: &WorkerConfig,
    stats: &Stats,
) -> Result<(), FetchError> {
    let single = fetch.single_stream();
    let Some((start, end)) = fill.ask(w, FIRST_REQUEST) else {
        return Ok(());
    };
    let mut req = Req::send(fetch, start, end).await?;
    // A single stream starts at byte 0 whatever we ask: skip what is already held.
    let mut skip = if single { start } else { 0 };
    let mut off = start;
    let mut buf = BytesMut::with_capacity(FLUSH);
    let mut ahead: Option<Ahead> = None;
    loop {
        if ahead.is_none() && !single && req.end - (off + buf.len() as u64) <= req.lead() {
            if let Some((a, b)) = fill.ask(w, req.next_len()) {
                let fetch = fetch.clone();
                ahead = Some(Ahead(tokio::spawn(
                    async move { Req::send(&fetch, a, b).await },
                )));
            }
        }
        let generation = req.body.generation;
        let chunk = match req.body.chunks.next().now_or_never() {
            Some(c) => c,
            None => {
                // Nothing more right now: hand what we have to readers before waiting.
                flush(fill, w, &mut off, &mut buf).await?;
                tokio::time::timeout(cfg.stall_timeout, req.body.chunks.next())
                    .await
                    .map_err(|_| {
                        FetchError::retry(
                            format!("no bytes for {:?} from {}", cfg.stall_timeout, req.body.url),
                            generation,
                        )
                    })?
            }
        };
        match chunk {
            Some(Ok(mut data)) => {
                let counter = if cfg.from_peers {
                    &stats.peer_bytes
                } else {
                    &stats.upstream_bytes
                };
                Stats::add(counter, data.len() as u64);
                fetch.arrived(data.len() as u64);
                if let Some(rate) = &cfg.rate {
                    rate.take(data.len()).await;
                }
                req.first_byte.get_or_insert_with(Instant::now);
                req.received += data.len() as u64;
                if skip > 0 {
                    let k = skip.min(data.len() as u64) as usize;
                    data.advance(k);
                    skip -= k as u64;
                }
                // Never past what was asked for, whatever the server sends.
                let room = req.end - (off + buf.len() as u64);
                let take = (data.len() as u64).min(room) as usize;
                buf.extend_from_slice(&data[..take]);
                if buf.len() >= FLUSH || off + buf.len() as u64 >= req.end {
                    flush(fill, w, &mut off, &mut buf).await?;
                }
                if off < req.end {
                    continue;
                }
                // Let the client see the end of the body, so the connection is reused.
                let _ = req.body.chunks.next().now_or_never();
            }
            Some(Err(e)) => {
                flush(fill, w, &mut off, &mut buf).await?;
                return Err(FetchError::retry(
                    format!("reading from {}: {e}", req.body.url),
                    generation,
                ));
            }
            None => {
                flush(fill, w, &mut off, &mut buf).await?;
                if off < req.end {
                    return Err(FetchError::retry(
                        format!(
                            "body from {} ended at {off}, before {}",
                            req.body.url, req.end
                        ),
                        generation,
                    ));
                }
            }
        }
        // This request is done: on to the next one, already under way.
        match ahead.take() {
            Some(mut next) => {
                req = (&mut next.0)
                    .await
                    .map_err(|e| FetchError::Fatal(Failure::internal(e)))??;
                off = req.start;
            }
            None => return Ok(()),
        }
    }
}

/// Writes and lands what `buf` holds at `off`.
async fn flush(fill: &Fill, w: usize, off: &mut u64, buf: &mut BytesMut) -> Result<(), FetchError> {
    if buf.is_empty() {
        return Ok(());
    }
    let data = buf.split().freeze();
    let (n, _more) = fill.write(w, *off, data).await.map_err(FetchError::Fatal)?;
    *off += n;
    Ok(())
}

/// A blob on the upstream registry: its location (found by a probe, refreshed when it
/// expires) and ranged GETs there.
pub struct UpstreamBlob {
    upstream: Arc<Upstream>,
    cache: Cache,
    repo: RepoName,
    digest: Digest,
    size: u64,
    meta: ClientMeta,
    stall_timeout: Duration,
    location: Mutex<Option<Location>>,
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Location {
    url: Url,
    generation: u64,
    ranges: bool,
}

impl UpstreamBlob {
    /// `probe` is where the blob is, when already known; `size` is what the fill expects.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        upstream: Arc<Upstream>,
        cache: Cache,
        repo: RepoName,
        digest: Digest,
        size: u64,
        meta: ClientMeta,
        stall_timeout: Duration,
        probe: Option<BlobProbe>,
    ) -> Arc<UpstreamBlob> {
        Arc::new(UpstreamBlob {
            upstream,
            cache,
            repo,
            digest,
            size,
            meta,
            stall_timeout,
            location: Mutex::new(probe.map(|p| Location {
                url: p.location,
                generation: 0,
                ranges: p.ranges,
            })),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    fn location(&self) -> Option<Location> {
        self.location
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Probes upstream for a location; the size must be what the fill expects.
    async fn probe(&self, generation: u64) -> Result<(), Failure> {
        let size = self.size;
        let probe = self
            .upstream
            .probe_blob(&self.repo, &self.digest, &self.meta)
            .await
            .map_err(|e| Failure::upstream(&e))?;
        if probe.size != size {
            return Err(Failure::new(
                ErrorKind::Integrity,
                format!(
                    "upstream says {} is {} bytes, not {size}",
                    self.digest, probe.size
                ),
            ));
        }
        self.cache.put_probe(self.digest, probe.clone()).await;
        *self.location.lock().unwrap_or_else(|p| p.into_inner()) = Some(Location {
            url: probe.location,
            generation,
            ranges: probe.ranges,
        });
        Ok(())
    }
}

impl RangeFetch for UpstreamBlob {
    fn arrived(&self, n: u64) {
        Stats::add(&self.upstream.fetched_bytes, n);
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async move {
            if self.location().is_some() {
                return Ok(());
            }
            let _one_at_a_time = self.refreshing.lock().await;
            if self.location().is_some() {
                return Ok(());
            }
            self.probe(0).await
        })
    }

    fn single_stream(&self) -> bool {
        self.location().is_some_and(|l| !l.ranges)
    }

    fn get(&self, start: u64, end: u64) -> BoxFuture<'static, Result<RangeBody, FetchError>> {
        let (upstream, repo, meta, timeout) = (
            self.upstream.clone(),
            self.repo.clone(),
            self.meta.clone(),
            self.stall_timeout,
        );
        let location = self.location();
        Box::pin(async move {
            let Some(loc) = location else {
                return Err(FetchError::Fatal(Failure::internal(
                    "no upstream location for the blob",
                )));
            };
            let resp = upstream
                .get_range((&repo, &meta), &loc.url, start..end, !loc.ranges, timeout)
                .await
                .map_err(|e| {
                    if e.is_not_found() {
                        FetchError::Fatal(Failure::upstream(&e))
                    } else {
                        FetchError::Retry {
                            error: crate::telemetry::chain(&e),
                            refused: e.is_refused(),
                            generation: loc.generation,
                        }
                    }
                })?;
            Ok(RangeBody::from_http(resp.body, resp.url, loc.generation))
        })
    }

    fn refresh(&self, generation: u64) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async move {
            let _one_at_a_time = self.refreshing.lock().await;
            if self.location().is_some_and(|l| l.generation != generation) {
                return Ok(());
            }
            tracing::info!(digest = %self.digest, "refreshing the blob's upstream location");
            self.probe(generation + 1).await
        })
    }
}
