//! Finding and mending damaged blobs with no client asking: `shoal verify` hashes every
//! cached blob now, and the scrub hashes each one again within `scrub.period`, at the
//! slowest rate that does it. (Damage a client meets is handled where it reads:
//! `read.rs` and `store::check`.)
//!
//! A blob that fails is dropped (the LAN hears it is gone) and fetched again the way a
//! client's request would fetch it, from LAN peers or upstream, verified as always.
//! Upstream needs a repository to name: the one the blob was fetched for, else one whose
//! cached manifest names it.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Mirror;
use crate::oci::{Digest, RepoName};
use crate::stats::Stats;
use crate::upstream::ClientMeta;

/// The scrub never hashes slower than this, so a small cache is not stretched over the
/// whole period (and a pass still costs well under 1 % of one core).
const MIN_SCRUB_RATE: f64 = (1 << 20) as f64;
/// How long the scrub waits before looking again when nothing is due.
const IDLE: Duration = Duration::from_secs(60);

/// Runs a check off the runtime: a paced one (the scrub) on a thread of its own at the
/// lowest CPU priority, so that serving always comes first; an unpaced one (`verify`, which
/// an admin waits for) on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    low: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if !low {
        return tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| e.to_string());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("shoal-scrub".into())
        .spawn(move || {
            // On Linux this sets the calling thread's nice value only. Failing leaves the
            // thread at normal priority, still paced.
            if let Err(e) = rustix::process::setpriority_process(None, 19) {
                tracing::debug!(error = %e, "cannot lower the scrub thread's priority");
            }
            let _ = tx.send(f());
        })
        .map_err(|e| e.to_string())?;
    rx.await.map_err(|e| e.to_string())
}

/// What checking one blob found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sound,
    /// Damaged, dropped and fetched again.
    Mended,
    /// Damaged and dropped; fetching it again failed for this reason.
    Unmended(String),
    /// Not held any more (evicted or dropped meanwhile).
    Gone,
    /// Stopped before the check finished.
    Stopped,
}

impl Mirror {
    /// Hashes one cached blob now (at most `rate` bytes a second when given; stopping
    /// early on `stop`), and mends it if it fails.
    pub async fn verify_blob(
        &self,
        digest: Digest,
        rate: Option<f64>,
        stop: &CancellationToken,
    ) -> Verdict {
        let store = &self.inner.store;
        let Some(lease) = store.acquire_quietly(&digest) else {
            return Verdict::Gone;
        };
        let halt = stop.clone();
        let checked = off_runtime(rate.is_some(), move || {
            let started = Instant::now();
            let mut hashed = 0usize;
            let r = lease.check_bytes(|n| {
                hashed += n;
                if let Some(rate) = rate {
                    let due = Duration::from_secs_f64(hashed as f64 / rate);
                    // In short naps, so that a shutdown is not held up.
                    while started.elapsed() < due && !halt.is_cancelled() {
                        std::thread::sleep(
                            (due - started.elapsed()).min(Duration::from_millis(100)),
                        );
                    }
                }
                !halt.is_cancelled()
            });
            (lease, r)
        })
        .await;
        let (lease, result) = match checked {
            Ok(c) => c,
            Err(e) => return Verdict::Unmended(format!("the check did not finish: {e}")),
        };
        let damage = match result {
            Ok(true) => {
                Stats::add(&self.inner.stats.verified_blobs, 1);
                Stats::add(&self.inner.stats.verified_bytes, lease.size());
                return Verdict::Sound;
            }
            Ok(false) => return Verdict::Stopped,
            Err(damage) => damage,
        };
        // Asked before the drop, which takes the blob's row (and its repository) away.
        let repo = self.inner.store.repo_of(digest).await.ok().flatten();
        let dropped = tokio::task::spawn_blocking(move || lease.drop_damaged(&damage))
            .await
            .unwrap_or(false);
        if dropped {
            Stats::add(&self.inner.stats.damaged_blobs, 1);
        }
        // The mender (`mend_dropped`) fetches it too, and counts it; both wait for the one
        // fill.
        match self.mend(digest, repo).await {
            Ok(()) => Verdict::Mended,
            Err(why) => Verdict::Unmended(why),
        }
    }

    /// The mender, until `stop`: every blob dropped as damaged, wherever that was found (a
    /// client's read, the scrub, `verify`, the BitTorrent side's piece check), is fetched
    /// again at once, so the next pull finds it whole. One that a client's request is
    /// already fetching again is only waited for.
    pub async fn mend_dropped(
        &self,
        mut damaged: tokio::sync::broadcast::Receiver<(Digest, Option<String>)>,
        stop: CancellationToken,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let (digest, repo) = tokio::select! {
                _ = stop.cancelled() => return,
                got = damaged.recv() => match got {
                    Ok(d) => d,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the mender fell behind; those blobs are fetched again by the next pull that needs them");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                },
            };
            let mirror = self.clone();
            // One task per blob: a slow fetch must not hold up the others.
            crate::task::spawn("mend", async move {
                match mirror.mend(digest, repo).await {
                    Ok(()) => {
                        Stats::add(&mirror.inner.stats.mended_blobs, 1);
                        tracing::info!(%digest, "damaged blob fetched again");
                    }
                    Err(why) => {
                        tracing::warn!(%digest, %why, "damaged blob dropped, not fetched again; the next pull that needs it fetches it");
                    }
                }
                Ok::<(), std::convert::Infallible>(())
            });
        }
    }

    /// Fetches a blob that is not held, as a client's GET would (LAN first), and waits
    /// until it is verified and held; joins a fill already running for it.
    async fn mend(&self, digest: Digest, repo: Option<String>) -> Result<(), String> {
        if let Some(fill) = self.inner.fills.get(&digest) {
            return fill
                .verified()
                .await
                .map_err(|f| crate::telemetry::chain(&super::Error::from_fill(digest, f)));
        }
        if self.inner.store.blob_size(&digest).is_some() {
            return Ok(());
        }
        let Some(repo) = repo else {
            return Err("no repository is known for it (no cached manifest names it)".into());
        };
        let repo: RepoName = repo
            .parse()
            .map_err(|e| format!("its repository {repo:?} is not valid: {e}"))?;
        // Starts the fill as a client's GET would; the fill goes on without a reader (and
        // nothing is counted as served).
        drop(
            self.open_blob(&repo, &digest, None, &ClientMeta::default())
                .await
                .map_err(|e| crate::telemetry::chain(&e))?,
        );
        if let Some(fill) = self.inner.fills.get(&digest) {
            fill.verified()
                .await
                .map_err(|f| crate::telemetry::chain(&super::Error::from_fill(digest, f)))?;
        }
        match self.inner.store.blob_size(&digest) {
            Some(_) => Ok(()),
            None => Err("fetched, but not held afterwards".into()),
        }
    }

    /// The background scrub, until `stop`: takes the blob hashed longest ago; once it is
    /// due (last hashed a `period` ago), hashes it at the rate that gets through the whole
    /// cache in half a period (so a pass fits in one, however the blobs' ages fall).
    pub async fn scrub(&self, period: Duration, stop: CancellationToken) {
        tracing::info!(
            ?period,
            "scrub on: every cached blob is hashed again within each period"
        );
        loop {
            let next = self.inner.store.oldest_verified();
            let wait = match next {
                None => IDLE.min(period),
                Some((digest, verified_ms)) => {
                    let age = Duration::from_millis(
                        crate::store::now_ms().saturating_sub(verified_ms).max(0) as u64,
                    );
                    if age >= period {
                        let (_, total) = self.inner.store.totals();
                        let rate = (2.0 * total as f64 / period.as_secs_f64().max(1e-3))
                            .max(MIN_SCRUB_RATE);
                        if self.verify_blob(digest, Some(rate), &stop).await == Verdict::Stopped {
                            return;
                        }
                        continue;
                    }
                    (period - age).min(IDLE)
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
