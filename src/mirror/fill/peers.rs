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
        // librqbit fetches pieces in order. Steer it: first where clients wait, then from
        // a place of this node's own, so that nodes pulling together start in different
        // places and have pieces to trade.
        let own_start = fastrand::u64(0..info.size.max(1)) / piece_length * piece_length;
        let mut steered = Vec::new();
        let complete = loop {
            if fill.is_complete() {
                break true;
            }
            let idle = fill.idle();
            let mut want = fill.waiting_demands();
            if let Some(next) = fill.next_missing(own_start) {
                want.push(next / piece_length * piece_length);
            }
            if want != steered {
                p2p.swarm.steer(&dl, &want).await;
                steered = want;
            }
            if idle >= self.stall {
                tracing::warn!(%digest, live_peers = p2p.swarm.live_peers(&dl),
                    "peers delivered nothing for {:?}; upstream takes over the missing ranges", self.stall);
                break false;
            }
            tokio::select! {
                _ = rx.changed() => {}
                () = tokio::time::sleep(self.stall - idle) => {}
                () = stop.cancelled() => break false,
                () = ctx.drain.cancelled() => break false,
            }
        };
        p2p.swarm.end_download(dl).await;
        Ok(complete)
    }
}
