//! The fill driven with fake sources: a CDN that counts what it sends and can stall, end
//! early, lie or refuse; and a peer-like source that delivers part of the blob and stops.
//! Real store (SQLite and files in a temp dir), real hashers, real workers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use super::upstream::{FetchError, RangeBody, RangeFetch};
use super::*;
use crate::p2p::torrent::PieceHasher;

const MIB: u64 = 1 << 20;

fn blob(size: usize, seed: u64) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    Bytes::from((0..size).map(|_| rng.u8(..)).collect::<Vec<u8>>())
}

#[derive(Default)]
struct Faults {
    /// The next N requests send this many bytes, then nothing.
    stall: Option<(usize, u64)>,
    /// Every request stops sending at this offset of the blob.
    stall_from: Option<u64>,
    /// The next N requests end after this many bytes.
    short: Option<(usize, u64)>,
    /// The next N requests are refused (an expired location).
    refuse: usize,
    /// Bytes served instead of the real ones.
    lie: Option<Bytes>,
    /// Ignore `Range`: send the whole blob from byte 0.
    whole: bool,
}

/// A CDN in memory that counts the bytes it sends, as a real one bills them.
#[derive(Default)]
struct FakeCdn {
    data: Bytes,
    faults: Mutex<Faults>,
    sent: Arc<AtomicU64>,
    requests: Mutex<Vec<(u64, u64)>>,
    refreshes: AtomicUsize,
}

impl FakeCdn {
    fn new(data: Bytes) -> Arc<FakeCdn> {
        Arc::new(FakeCdn {
            data,
            ..Default::default()
        })
    }

    fn sent(&self) -> u64 {
        self.sent.load(SeqCst)
    }
}

fn take(n: &mut Option<(usize, u64)>) -> Option<u64> {
    match n {
        Some((k, v)) if *k > 0 => {
            *k -= 1;
            Some(*v)
        }
        _ => None,
    }
}

impl RangeFetch for FakeCdn {
    fn prepare(&self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }

    fn single_stream(&self) -> bool {
        self.faults.lock().unwrap().whole
    }

    fn get(&self, start: u64, end: u64) -> BoxFuture<'static, Result<RangeBody, FetchError>> {
        let mut f = self.faults.lock().unwrap();
        let (start, end) = if f.whole {
            (0, self.data.len() as u64)
        } else {
            (start, end)
        };
        self.requests.lock().unwrap().push((start, end));
        let refused = f.refuse > 0;
        f.refuse = f.refuse.saturating_sub(1);
        let stall = take(&mut f.stall);
        let short = take(&mut f.short);
        let stall_from = f.stall_from;
        let data = f.lie.clone().unwrap_or_else(|| self.data.clone());
        let sent = self.sent.clone();
        Box::pin(async move {
            if refused {
                return Err(FetchError::Retry {
                    error: "403".into(),
                    refused: true,
                    generation: 0,
                });
            }
            let mut stop_at = short.or(stall).map_or(end, |n| (start + n).min(end));
            let stall = match stall_from {
                Some(at) if at < stop_at => {
                    stop_at = at.max(start);
                    Some(0)
                }
                _ => stall,
            };
            let chunks: Vec<Bytes> = (start..stop_at)
                .step_by(64 << 10)
                .map(|a| data.slice(a as usize..(a + (64 << 10)).min(stop_at) as usize))
                .collect();
            let counted = stream::iter(chunks).map(move |c| {
                sent.fetch_add(c.len() as u64, SeqCst);
                Ok(c)
            });
            let chunks = match stall {
                Some(_) => counted.chain(stream::pending()).boxed(),
                None => counted.boxed(),
            };
            Ok(RangeBody {
                chunks,
                url: "fake-cdn".into(),
                generation: 0,
            })
        })
    }

    fn refresh(&self, _generation: u64) -> BoxFuture<'_, Result<(), Failure>> {
        self.refreshes.fetch_add(1, SeqCst);
        Box::pin(async { Ok(()) })
    }
}

/// A peer-like source: lands `[0, upto)` of the right bytes, then gives up.
struct PartSource {
    data: Bytes,
    upto: u64,
}

impl Source for PartSource {
    fn kind(&self) -> BlobSource {
        BlobSource::Peers
    }

    fn run<'a>(
        &'a self,
        fill: &'a Arc<Fill>,
        _ctx: &'a FillCtx,
        _stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<bool, Failure>> {
        Box::pin(async move {
            let file = fill.file()?;
            file.write_all_at(&self.data[..self.upto as usize], 0)
                .map_err(|e| Failure::io("write", &e))?;
            fill.land(0, self.upto, None);
            Ok(false)
        })
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    ctx: FillCtx,
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        Rig::at(dir).await
    }

    async fn at(dir: tempfile::TempDir) -> Rig {
        let store = Store::open(dir.path()).await.unwrap();
        Rig {
            _dir: dir,
            ctx: FillCtx {
                store,
                stats: Arc::new(Stats::default()),
                tasks: TaskTracker::new(),
                drain: CancellationToken::new(),
                cancel: CancellationToken::new(),
                give_up_after: Duration::from_secs(20),
            },
        }
    }

    /// Stops it as shutdown does, and opens the same data dir again.
    async fn restart(self) -> Rig {
        self.ctx.tasks.close();
        self.ctx.drain.cancel();
        self.ctx.cancel.cancel();
        self.ctx.tasks.wait().await;
        let Rig { _dir, ctx } = self;
        drop(ctx);
        Rig::at(_dir).await
    }

    fn upstream(cdn: &Arc<FakeCdn>, stall: Duration) -> Box<dyn Source> {
        Box::new(UpstreamSource::new(
            cdn.clone(),
            WorkerConfig {
                stall_timeout: stall,
                from_peers: false,
                rate: None,
            },
        ))
    }

    fn fill(&self, data: &Bytes, slots: usize) -> Arc<Fill> {
        Fill::new(Digest::of(data), data.len() as u64, slots, MIB)
    }

    /// Runs a fill to its end on the rig's tasks, with readers waiting at `reads`.
    async fn run(&self, fill: &Arc<Fill>, sources: Vec<Box<dyn Source>>, reads: &[u64]) {
        let readers: Vec<_> = reads
            .iter()
            .map(|&p| {
                let f = fill.clone();
                tokio::spawn(async move { f.available(p).await })
            })
            .collect();
        let (f, ctx) = (fill.clone(), self.ctx.clone());
        self.ctx
            .tasks
            .spawn(async move { f.run(&ctx, sources).await })
            .await
            .unwrap();
        for r in readers {
            let _ = r.await.unwrap();
        }
    }

    fn stored(&self, d: &Digest) -> Option<Vec<u8>> {
        self.ctx.store.blob_size(d)?;
        std::fs::read(self.ctx.store.blob_path(d)).ok()
    }
}

/// Every test here ends within this, or fails.
const TIMEOUT: Duration = Duration::from_secs(60);

fn torrent_of(data: &[u8]) -> Vec<u8> {
    let mut h = PieceHasher::new(data.len() as u64);
    h.update(data);
    h.finish(Digest::of(data), data.len() as u64).pieces
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_byte_is_sent_once_whatever_the_readers_do() {
    tokio::time::timeout(TIMEOUT, async {
        let rig = Rig::new().await;
        let data = blob(37 * MIB as usize + 12345, 1);
        let cdn = FakeCdn::new(data.clone());
        let fill = rig.fill(&data, 16);
        let size = data.len() as u64;
        // Readers everywhere, as ollama's 16 parts and a few stragglers would be.
        let reads: Vec<u64> = (0..16)
            .map(|k| k * size / 16)
            .chain([7, size - 1])
            .collect();
        rig.run(
            &fill,
            vec![Rig::upstream(&cdn, Duration::from_secs(5))],
            &reads,
        )
        .await;
        assert_eq!(rig.stored(&fill.digest).as_deref(), Some(&data[..]));
        assert_eq!(cdn.sent(), size, "the CDN sent each byte once");
        let requests = cdn.requests.lock().unwrap().clone();
        let mut asked = crate::mirror::ranges::RangeSet::new();
        for &(a, b) in &requests {
            assert!(asked.runs_within(a, b).is_empty(), "{a}..{b} asked twice");
            asked.insert(a, b);
        }
        assert!(requests.len() > 16, "bounded requests, not open-ended ones");
        let row = rig.ctx.store.torrent(fill.digest).await.unwrap().unwrap();
        assert_eq!(row.pieces, torrent_of(&data), "the torrent's piece hashes");
        assert_eq!(rig.ctx.stats.upstream_bytes.load(SeqCst), size);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_and_short_responses_are_fetched_again() {
    tokio::time::timeout(TIMEOUT, async {
        let rig = Rig::new().await;
        let data = blob(9 * MIB as usize, 2);
        let cdn = FakeCdn::new(data.clone());
        {
            let mut f = cdn.faults.lock().unwrap();
            f.stall = Some((2, 100_000));
            f.short = Some((2, 300_000));
        }
        let fill = rig.fill(&data, 4);
        rig.run(
            &fill,
            vec![Rig::upstream(&cdn, Duration::from_millis(300))],
            &[0, 5 * MIB],
        )
        .await;
        assert_eq!(rig.stored(&fill.digest).as_deref(), Some(&data[..]));
        // What the failed requests sent is all the waste there is.
        assert!(
            cdn.sent() <= data.len() as u64 + 4 * 300_000,
            "sent {}",
            cdn.sent()
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lying_upstream_is_never_cached() {
    tokio::time::timeout(TIMEOUT, async {
        let rig = Rig::new().await;
        let data = blob(3 * MIB as usize, 3);
        let cdn = FakeCdn::new(data.clone());
        let mut lie = data.to_vec();
        lie[2 * MIB as usize] ^= 1;
        cdn.faults.lock().unwrap().lie = Some(Bytes::from(lie));
        let fill = rig.fill(&data, 4);
        rig.run(
            &fill,
            vec![Rig::upstream(&cdn, Duration::from_secs(5))],
            &[0],
        )
        .await;
        let err = fill.verified().await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Integrity, "{}", err.message);
        assert!(rig.stored(&fill.digest).is_none());
        assert!(!rig.ctx.store.partial_path(&fill.digest).exists());
        assert_eq!(rig.ctx.stats.fills_failed.load(SeqCst), 1);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_takes_over_only_what_the_first_source_left() {
    tokio::time::timeout(TIMEOUT, async {
        let rig = Rig::new().await;
        let data = blob(6 * MIB as usize + 7, 4);
        let cdn = FakeCdn::new(data.clone());
        let fill = rig.fill(&data, 4);
        let part = 2 * MIB + 4096; // mid-piece, mid-request
        let sources: Vec<Box<dyn Source>> = vec![
            Box::new(PartSource {
                data: data.clone(),
                upto: part,
            }),
            Rig::upstream(&cdn, Duration::from_secs(5)),
        ];
        rig.run(&fill, sources, &[0, 5 * MIB]).await;
        assert_eq!(rig.stored(&fill.digest).as_deref(), Some(&data[..]));
        assert_eq!(cdn.sent(), data.len() as u64 - part);
        let row = rig.ctx.store.torrent(fill.digest).await.unwrap().unwrap();
        assert_eq!(row.pieces, torrent_of(&data));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_location_is_refreshed_once() {
    tokio::time::timeout(TIMEOUT, async {
        let rig = Rig::new().await;
        let data = blob(2 * MIB as usize, 5);
        let cdn = FakeCdn::new(data.clone());
        cdn.faults.lock().unwrap().refuse = 1;
        let fill = rig.fill(&data, 2);
        rig.run(
            &fill,
            vec![Rig::upstream(&cdn, Duration::from_secs(5))],
            &[0],
        )
        .await;
        assert_eq!(rig.stored(&fill.digest).as_deref(), Some(&data[..]));
        assert_eq!(cdn.refreshes.load(SeqCst), 1);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_location_that_ignores_range_is_streamed_once() {
    tokio::time::timeout(TIMEOUT, async {
        let rig = Rig::new().await;
        let data = blob(5 * MIB as usize, 6);
        let cdn = FakeCdn::new(data.clone());
        cdn.faults.lock().unwrap().whole = true;
        let fill = rig.fill(&data, 8);
        rig.run(
            &fill,
            vec![Rig::upstream(&cdn, Duration::from_secs(5))],
            &[0, 4 * MIB],
        )
        .await;
        assert_eq!(rig.stored(&fill.digest).as_deref(), Some(&data[..]));
        assert_eq!(cdn.requests.lock().unwrap().len(), 1);
        assert_eq!(cdn.sent(), data.len() as u64);
    })
    .await
    .expect("test timed out");
}

/// Half the blob lands, then shutdown: the partial and its journal stay, and the next
/// fill fetches only the other half.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fill_stopped_by_shutdown_resumes_where_it_was() {
    tokio::time::timeout(TIMEOUT, async {
        let rig = Rig::new().await;
        let data = blob(8 * MIB as usize + 99, 7);
        let size = data.len() as u64;
        let cdn = FakeCdn::new(data.clone());
        // Every request sends 1 MiB and then stalls (for longer than the test).
        cdn.faults.lock().unwrap().stall = Some((1000, MIB));
        let fill = rig.fill(&data, 4);
        let f = fill.clone();
        let ctx = rig.ctx.clone();
        let up = Rig::upstream(&cdn, Duration::from_secs(60));
        rig.ctx
            .tasks
            .spawn(async move { f.run(&ctx, vec![up]).await });
        // Wait until three workers have landed their first MiB (a fourth finds nothing
        // worth stealing).
        let landed = loop {
            let n = fill.lock().sched.landed().total();
            if n >= 3 * MIB {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let digest = fill.digest;
        let rig = rig.restart().await;
        assert!(
            rig.ctx.store.partial_path(&digest).exists(),
            "the partial is kept"
        );

        let cdn2 = FakeCdn::new(data.clone());
        let fill = rig.fill(&data, 4);
        rig.run(
            &fill,
            vec![Rig::upstream(&cdn2, Duration::from_secs(5))],
            &[0],
        )
        .await;
        assert_eq!(rig.stored(&digest).as_deref(), Some(&data[..]));
        assert_eq!(
            cdn2.sent(),
            size - landed,
            "only the missing bytes were fetched"
        );
        assert!(!rig.ctx.store.partial_path(&digest).exists());
        let row = rig.ctx.store.torrent(digest).await.unwrap().unwrap();
        assert_eq!(row.pieces, torrent_of(&data));
    })
    .await
    .expect("test timed out");
}

/// A byte of the kept partial rots while shoal is stopped: the record that vouched for it
/// fails its check, and only that range is fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_in_a_kept_partial_is_fetched_again() {
    tokio::time::timeout(TIMEOUT, async {
        let rig = Rig::new().await;
        let data = blob(4 * MIB as usize, 8);
        let cdn = FakeCdn::new(data.clone());
        cdn.faults.lock().unwrap().stall_from = Some(3 * MIB);
        let fill = rig.fill(&data, 1);
        let (f, ctx) = (fill.clone(), rig.ctx.clone());
        let up = Rig::upstream(&cdn, Duration::from_secs(60));
        rig.ctx
            .tasks
            .spawn(async move { f.run(&ctx, vec![up]).await });
        // Until the three pieces that landed are hashed (and journaled).
        while fill
            .lock()
            .pieces
            .iter()
            .filter(|p| matches!(p, Piece::Known(_)))
            .count()
            < 3
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let digest = fill.digest;
        let rig = rig.restart().await;
        let partial = rig.ctx.store.partial_path(&digest);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&partial)
            .unwrap();
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, MIB + 10).unwrap();
        file.write_all_at(&[b[0] ^ 0xff], MIB + 10).unwrap();

        let cdn2 = FakeCdn::new(data.clone());
        let fill = rig.fill(&data, 2);
        rig.run(
            &fill,
            vec![Rig::upstream(&cdn2, Duration::from_secs(5))],
            &[0],
        )
        .await;
        assert_eq!(rig.stored(&digest).as_deref(), Some(&data[..]));
        // The rotten piece (1 MiB) and the MiB never landed.
        assert_eq!(cdn2.sent(), 2 * MIB, "sent {}", cdn2.sent());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fill_that_gets_nothing_gives_up() {
    tokio::time::timeout(TIMEOUT, async {
        let mut rig = Rig::new().await;
        rig.ctx.give_up_after = Duration::from_millis(1500);
        let data = blob(MIB as usize, 9);
        let cdn = FakeCdn::new(data.clone());
        cdn.faults.lock().unwrap().stall = Some((1000, 0));
        let fill = rig.fill(&data, 2);
        rig.run(
            &fill,
            vec![Rig::upstream(&cdn, Duration::from_secs(60))],
            &[0],
        )
        .await;
        let err = fill.verified().await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout, "{}", err.message);
        assert!(rig.stored(&fill.digest).is_none());
    })
    .await
    .expect("test timed out");
}
