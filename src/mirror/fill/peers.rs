//! The peers source: other shoal nodes that hold the blob, over BitTorrent. librqbit writes
//! verified pieces straight into the fill's partial file and reports each one, with the
//! SHA-1 it was checked against.
//!
//! It gives up (and the next source, upstream, takes the missing ranges) when nothing
//! verifies for `p2p.stall_timeout`.
//!
//! Must not: land a piece librqbit did not verify.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{Failure, Fill, FillCtx, Source};
use crate::mirror::{BlobSource, P2p};
use crate::oci::Digest;
use crate::store::Holder;

/// How soon steering is tried again when librqbit could not open a stream.
const STEER_RETRY: Duration = Duration::from_millis(200);

pub struct PeerSource {
    p2p: P2p,
    holders: Vec<Holder>,
    /// Nothing verified for this long: hand over to the next source.
    stall: Duration,
    /// Peers whose bytes went into the fill.
    used: Mutex<Vec<String>>,
}

impl PeerSource {
    pub fn new(p2p: P2p, holders: Vec<Holder>, stall: Duration) -> PeerSource {
        PeerSource {
            p2p,
            holders,
            stall,
            used: Mutex::new(Vec::new()),
        }
    }
}

impl Source for PeerSource {
    fn kind(&self) -> BlobSource {
        BlobSource::Peers
    }

    fn run<'a>(
        &'a self,
        fill: &'a Arc<Fill>,
        ctx: &'a FillCtx,
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<bool, Failure>> {
        Box::pin(self.fetch(fill, ctx, stop))
    }

    /// Peers' bytes are checked piece by piece against a torrent a peer offered; if the
    /// whole is wrong, that torrent and its data were wrong: do not ask them again.
    fn blame(&self, digest: &Digest) {
        let used = std::mem::take(&mut *self.used.lock().unwrap_or_else(|p| p.into_inner()));
        for peer in &used {
            self.p2p.peers.distrust(peer, digest);
        }
    }
}

impl PeerSource {
    async fn fetch(
        &self,
        fill: &Arc<Fill>,
        ctx: &FillCtx,
        stop: &CancellationToken,
    ) -> Result<bool, Failure> {
        let p2p = &self.p2p;
        let digest = fill.digest;
        // The torrent, from the first holder that offers a valid one.
        let mut chosen = None;
        for h in self.holders.iter().take(3) {
            match p2p.peers.fetch_torrent(h, &digest).await {
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
        let (urls, addrs): (Vec<String>, Vec<SocketAddr>) = self
            .holders
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
        for u in &urls {
            fill.fed_by(Some(u));
        }
        *self.used.lock().unwrap_or_else(|p| p.into_inner()) = urls;
        let file = fill.file()?;
        let weak = Arc::downgrade(fill);
        let stats = ctx.stats.clone();
        let pieces = info.pieces.clone();
        let piece_length = info.piece_length;
        let on_piece: crate::p2p::OnPiece = Arc::new(move |start, end| {
            if let Some(fill) = weak.upgrade() {
                let i = (start / piece_length) as usize;
                let sha1 = pieces
                    .get(i * 20..i * 20 + 20)
                    .and_then(|h| <[u8; 20]>::try_from(h).ok());
                fill.land(start, end, sha1);
                crate::stats::Stats::add(&stats.peer_bytes, end - start);
            }
        });
        let dl = match p2p
            .swarm
            .download(&info, file, addrs.clone(), trackers, on_piece)
            .await
        {
            Ok(dl) => dl,
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "cannot download from peers");
                return Ok(false);
            }
        };
        tracing::info!(%digest, peers = ?addrs, "filling from peers over BitTorrent");
        fill.touch();
        let mut rx = fill.landed_tx.subscribe();
        // Steer librqbit to where clients wait (it fetches the 32 MiB after each such
        // place first). Nodes pulling together need no other steering to have pieces to
        // trade: each asks a seeder first for its own share of the pieces (docs/LIBRQBIT.md).
        // A place of each node's own, tried before the share-out, made its stream sit at
        // other nodes' pieces and fetch them from the seeder once overdue.
        let mut steered = Vec::new();
        let complete = loop {
            if fill.is_complete() {
                break true;
            }
            let idle = fill.idle();
            let want = fill.waiting_demands();
            // A stream librqbit could not open yet (the torrent still initialising, its
            // worker permits taken) is tried again soon: unsteered, a client's piece comes
            // only in rarest-first order, after this node's share (tens of seconds).
            let mut wake = self.stall.saturating_sub(idle);
            if want != steered {
                if p2p.swarm.steer(&dl, &want).await {
                    steered = want;
                } else {
                    wake = wake.min(STEER_RETRY);
                }
            }
            if idle >= self.stall {
                tracing::warn!(%digest, live_peers = p2p.swarm.live_peers(&dl),
                    "peers delivered nothing for {:?}; upstream takes over the missing ranges", self.stall);
                break false;
            }
            tokio::select! {
                _ = rx.changed() => {}
                () = tokio::time::sleep(wake) => {}
                () = stop.cancelled() => break false,
                () = ctx.drain.cancelled() => break false,
            }
        };
        p2p.swarm.end_download(dl).await;
        Ok(complete)
    }
}
