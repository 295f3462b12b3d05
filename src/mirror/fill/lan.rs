//! The LAN source: a blob's bytes from this node's parent in the LAN's tree for the blob
//! (`p2p::lan::parent`; the root fetches it from upstream). The upstream workers' ranged
//! GETs go to that node instead of upstream; it serves them from its own fill as bytes
//! land, so this node's clients stream throughout.
//!
//! If the parent stops delivering (it died, stalls, or is cut off), the tree is built
//! again from the nodes that still answer: a node that finds itself the new root hands
//! over to its next source (upstream) for the missing ranges only, and the others follow
//! the new tree. So the missing part crosses the internet once, not once per node.
//!
//! Must not: be asked by a request that itself came from a peer (no relay chains).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::upstream::{FetchError, RangeBody, RangeFetch, UpstreamSource, WorkerConfig};
use super::{Failure, Fill, FillCtx, Source};
use crate::mirror::BlobSource;
use crate::oci::{Digest, RepoName};
use crate::p2p::Peers;
use crate::upstream::ClientMeta;

/// Parents tried before this node fetches upstream itself.
const MAX_PARENTS: usize = 3;

pub struct LanSource {
    peers: Arc<Peers>,
    parent: String,
    repo: RepoName,
    digest: Digest,
    meta: ClientMeta,
    cfg: WorkerConfig,
    /// A parent that delivers nothing for this long is given up.
    give_up: Duration,
    /// The nodes whose bytes went into the fill.
    used: std::sync::Mutex<Vec<String>>,
}

impl LanSource {
    pub fn new(
        peers: Arc<Peers>,
        parent: String,
        repo: RepoName,
        digest: Digest,
        meta: ClientMeta,
        cfg: WorkerConfig,
        give_up: Duration,
    ) -> LanSource {
        LanSource {
            peers,
            parent,
            repo,
            digest,
            meta,
            cfg,
            give_up,
            used: Default::default(),
        }
    }

    /// After a parent failed: the node to follow now, `None` when this node is the root
    /// of the tree among the nodes that still answer.
    async fn next_parent(&self, failed: &[String]) -> Option<String> {
        let view = self.peers.ask(&self.digest).await;
        if let Some(h) = view.holders.iter().find(|h| !failed.contains(&h.peer_url)) {
            return Some(h.peer_url.clone());
        }
        let answered: Vec<&(String, String)> = view
            .answered
            .iter()
            .filter(|(url, _)| !failed.contains(url))
            .collect();
        let others: Vec<&str> = answered.iter().map(|(_, id)| id.as_str()).collect();
        let root = view
            .fetcher_id
            .as_deref()
            .and_then(|id| others.iter().position(|o| *o == id));
        crate::p2p::lan::parent(&self.digest, self.peers.node_id(), &others, root)
            .map(|i| answered[i].0.clone())
    }
}

impl Source for LanSource {
    fn kind(&self) -> BlobSource {
        BlobSource::Peers
    }

    /// The blob failed its digest: the nodes it came from sent bad bytes (or relayed a
    /// lying upstream); they are not asked for this blob again.
    fn blame(&self, digest: &Digest) {
        for peer in self
            .used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            self.peers.distrust(&peer, digest);
        }
    }

    fn run<'a>(
        &'a self,
        fill: &'a Arc<Fill>,
        ctx: &'a FillCtx,
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<bool, Failure>> {
        Box::pin(async move {
            let mut parent = self.parent.clone();
            let mut failed = Vec::new();
            loop {
                self.used
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(parent.clone());
                fill.fed_by(Some(&parent));
                let blob = PeerBlob::new(
                    self.peers.clone(),
                    parent.clone(),
                    self.repo.clone(),
                    self.digest,
                    self.meta.clone(),
                );
                let relay = UpstreamSource::from_peer(blob, self.cfg.clone(), self.give_up);
                if relay.run(fill, ctx, stop).await? {
                    return Ok(true);
                }
                failed.push(parent);
                if failed.len() >= MAX_PARENTS || stop.is_cancelled() {
                    return Ok(false);
                }
                match self.next_parent(&failed).await {
                    Some(next) => {
                        tracing::info!(digest = %self.digest, peer = %next, "taking the blob from another node of the LAN now");
                        fill.touch();
                        parent = next;
                    }
                    None => {
                        tracing::info!(digest = %self.digest, "this node fetches the blob for the LAN now; the missing ranges come from upstream");
                        return Ok(false);
                    }
                }
            }
        })
    }
}

pub struct PeerBlob {
    peers: Arc<Peers>,
    peer: String,
    repo: RepoName,
    digest: Digest,
    meta: ClientMeta,
}

impl PeerBlob {
    pub fn new(
        peers: Arc<Peers>,
        peer: String,
        repo: RepoName,
        digest: Digest,
        meta: ClientMeta,
    ) -> Arc<PeerBlob> {
        Arc::new(PeerBlob {
            peers,
            peer,
            repo,
            digest,
            meta,
        })
    }
}

impl RangeFetch for PeerBlob {
    fn prepare(&self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }

    fn single_stream(&self) -> bool {
        false
    }

    fn get(&self, start: u64, end: u64) -> BoxFuture<'static, Result<RangeBody, FetchError>> {
        let (peers, peer, repo, digest) = (
            self.peers.clone(),
            self.peer.clone(),
            self.repo.clone(),
            self.digest,
        );
        let ua = self.meta.user_agent.clone();
        Box::pin(async move {
            let body = peers
                .blob_range(&peer, repo.as_str(), &digest, (start, end), ua.as_ref())
                .await
                .map_err(|error| FetchError::Retry {
                    error,
                    refused: false,
                    generation: 0,
                })?;
            Ok(RangeBody::from_http(body, peer, 0))
        })
    }

    fn refresh(&self, _generation: u64) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }
}
