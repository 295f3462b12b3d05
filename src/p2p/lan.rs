//! Fresh knowledge of the LAN, beside the catalogs polled every `p2p.catalog_interval`
//! (which stay as the backstop):
//! - **news**: a node that caches a blob, or starts fetching one from upstream, tells every
//!   peer at once (`POST /_shoal/v1/news`), so the LAN knows within a round trip;
//! - **questions**: a node that misses a blob asks every peer that answers
//!   (`GET /_shoal/v1/blobs/<digest>`), with a short bound, before it asks upstream;
//! - **the tree**: when nobody holds a blob, one node fetches it from upstream for the whole
//!   LAN (the one already doing so, else the highest rendezvous score among the nodes that
//!   answered), and the others take it from their parent in a binary tree under it, as
//!   bytes land. Nodes that miss a blob at the same moment build the same tree without a
//!   round of agreement; no node uploads more than two copies.
//!
//! Everything a peer says is a hint: bytes are verified whatever their source.
//!
//! Must not: wait on a peer longer than `ASK_TIMEOUT` on a client's path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::peers::{Peers, SWARM_KEY_HEADER};
use crate::oci::Digest;
use crate::store::{CatalogEntry, Holder};

/// How long a miss waits for the LAN's answers. Peers on a LAN answer in milliseconds; this
/// only bounds what a peer that is gone can cost a pull.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(300);
/// News is best effort; a peer that misses it learns from its next catalog fetch.
const NEWS_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest news a node accepts.
pub const MAX_NEWS: usize = 64 << 10;
/// Most blobs one piece of news may name.
const MAX_NEWS_ITEMS: usize = 256;
/// A fill heard of is forgotten after this (its node's news of the result may be lost).
const FILL_NEWS_TTL: Duration = Duration::from_secs(600);
/// Header on requests one node makes to another for a blob's bytes: such a request is
/// never relayed to a third node.
pub const PEER_HEADER: &str = "x-shoal-peer";
/// How long a node waits for a peer to start sending a blob's bytes (it may probe
/// upstream first).
const RELAY_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node says when it caches a blob or starts fetching one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct News {
    pub node_id: String,
    /// Its HTTP port (the address is the one the news came from).
    pub http_port: u16,
    #[serde(default)]
    pub have: Vec<CatalogEntry>,
    #[serde(default)]
    pub filling: Vec<Filling>,
    /// Blobs it no longer holds (evicted, or dropped as damaged).
    #[serde(default)]
    pub gone: Vec<Digest>,
}

impl News {
    /// Reads news a peer posted: checked and cut to the bounds, since any LAN host can post.
    pub fn read(body: &[u8]) -> Result<News, String> {
        let mut news: News = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if !super::valid_node_id(&news.node_id) {
            return Err("its node id is not one shoal makes".to_owned());
        }
        news.have.truncate(MAX_NEWS_ITEMS);
        news.filling.truncate(MAX_NEWS_ITEMS);
        news.gone.truncate(MAX_NEWS_ITEMS);
        Ok(news)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filling {
    pub digest: Digest,
    pub size: u64,
}

/// A node's answer to "what about this blob?".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobState {
    pub node_id: String,
    /// "held", "filling" (from upstream, or from another node) or "none".
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For "held": its torrent, and where to reach it over BitTorrent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infohash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bt_addr: Option<SocketAddr>,
    /// For "filling": whether its bytes come from upstream (else from the LAN).
    #[serde(default)]
    pub upstream: bool,
}

/// What the LAN said about a blob.
#[derive(Debug, Default)]
pub struct LanView {
    /// Nodes that hold it whole.
    pub holders: Vec<Holder>,
    /// A node fetching it from upstream now, and the size it said.
    pub fetcher: Option<(String, u64)>,
    /// That node's id, when it answered (news names only its URL).
    pub fetcher_id: Option<String>,
    /// Every node that answered, `(url, node id)`.
    pub answered: Vec<(String, String)>,
}

/// Fills other nodes told us about.
#[derive(Default)]
pub(super) struct HeardFills {
    map: Mutex<HashMap<Digest, (String, u64, Instant)>>,
}

impl HeardFills {
    fn note(&self, digest: Digest, url: String, size: u64) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (_, _, t)| t.elapsed() < FILL_NEWS_TTL);
        m.insert(digest, (url, size, Instant::now()));
    }

    fn forget(&self, digest: &Digest) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
    }

    fn get(&self, digest: &Digest) -> Option<(String, u64)> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(digest)
            .filter(|(_, _, t)| t.elapsed() < FILL_NEWS_TTL)
            .map(|(u, s, _)| (u.clone(), *s))
    }
}

fn score(digest: &Digest, node: &str) -> u64 {
    let h = Sha256::new()
        .chain_update(digest.to_string())
        .chain_update(b"\0")
        .chain_update(node)
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_be_bytes(b)
}

/// Where `me` takes `digest` from on the LAN: its parent in a binary tree of `me` and
/// `others` (node ids), as an index into `others`; `None` when `me` is the root, which
/// fetches it from upstream. The root is `root` (a node already fetching it from upstream)
/// when given, else the highest rendezvous score; the rest follow in score order, and node
/// k of that order takes the blob from node (k-1)/2 as its bytes land there.
///
/// Every node computes the same tree from the same set, with no round of agreement. No
/// node uploads more than two copies (a star around the root would make its uplink carry
/// one per node), and a parent always comes before its child in the order, so whatever
/// each node's view, nobody ever ends up taking the blob from itself through others.
pub fn parent(digest: &Digest, me: &str, others: &[&str], root: Option<usize>) -> Option<usize> {
    let mut order: Vec<Option<usize>> = std::iter::once(None)
        .chain((0..others.len()).map(Some))
        .filter(|i| i.is_none() || *i != root)
        .collect();
    let name = |i: &Option<usize>| match i {
        None => me,
        Some(i) => others[*i],
    };
    order.sort_by_key(|i| std::cmp::Reverse((score(digest, name(i)), name(i))));
    if let Some(r) = root {
        order.insert(0, Some(r));
    }
    let k = order.iter().position(|i| i.is_none())?;
    if k == 0 {
        return None;
    }
    order[(k - 1) / 2]
}

impl Peers {
    /// News: this node fetches `digest` from upstream now.
    pub fn news_filling(&self, digest: Digest, size: u64) -> News {
        News {
            node_id: self.node_id().to_owned(),
            http_port: self.http_port(),
            filling: vec![Filling { digest, size }],
            ..News::default()
        }
    }

    /// News: this node holds a blob now.
    pub fn news_have(&self, entry: CatalogEntry) -> News {
        News {
            node_id: self.node_id().to_owned(),
            http_port: self.http_port(),
            have: vec![entry],
            ..News::default()
        }
    }

    /// Asks every peer that is not known to be down what it has of `digest`, for at most
    /// `ASK_TIMEOUT`; returns as soon as a holder answers. Holders are recorded as if
    /// their catalogs had said so.
    pub async fn ask(&self, digest: &Digest) -> LanView {
        let peers = match self.store().peers().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "cannot list peers");
                return LanView::default();
            }
        };
        let mut pending: futures_util::stream::FuturesUnordered<_> = peers
            .into_iter()
            .filter(|p| p.failures == 0)
            .map(|p| async move {
                let url = format!("{}/_shoal/v1/blobs/{digest}", p.url);
                let answer = self.get_json::<BlobState>(&url, ASK_TIMEOUT).await;
                (p.url, answer)
            })
            .collect();
        let mut view = LanView::default();
        let deadline = tokio::time::sleep(ASK_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            let (url, answer) = tokio::select! {
                next = futures_util::StreamExt::next(&mut pending) => match next {
                    Some(a) => a,
                    None => break,
                },
                () = &mut deadline => break,
            };
            let Ok(a) = answer else { continue };
            // A node whose bytes for this blob were bad before is not asked for them again.
            if a.node_id == self.node_id() || self.distrusts(&url, digest) {
                continue;
            }
            view.answered.push((url.clone(), a.node_id.clone()));
            match a.state.as_str() {
                "held" => {
                    let (Some(size), Some(infohash), Some(bt)) =
                        (a.size, a.infohash.as_deref(), a.bt_addr)
                    else {
                        continue;
                    };
                    let mut ih = [0u8; 20];
                    if hex::decode_to_slice(infohash, &mut ih).is_err() {
                        continue;
                    }
                    let entry = CatalogEntry {
                        digest: *digest,
                        size,
                        infohash: ih,
                    };
                    if let Err(e) = self.store().add_peer_blobs(url.clone(), vec![entry]).await {
                        tracing::warn!(error = %crate::telemetry::chain(&e), "cannot record a holder");
                    }
                    view.holders.push(Holder {
                        peer_url: url,
                        bt_addr: bt.to_string(),
                        size,
                        infohash: ih,
                    });
                    // One holder is enough to start; BitTorrent finds the others.
                    break;
                }
                "filling" if a.upstream => {
                    if let (Some(size), None) = (a.size, &view.fetcher) {
                        view.fetcher = Some((url, size));
                        view.fetcher_id = Some(a.node_id);
                    }
                }
                _ => {}
            }
        }
        if view.fetcher.is_none() {
            view.fetcher = self
                .heard_fills()
                .get(digest)
                .filter(|(url, _)| !self.distrusts(url, digest));
        }
        view
    }

    /// Tells the LAN of every blob the store stops holding, batched, until `stop`. If it
    /// falls behind, the peers' catalog polls catch up.
    pub async fn tell_dropped(
        &self,
        mut dropped: tokio::sync::broadcast::Receiver<Digest>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                d = dropped.recv() => d,
            };
            let mut gone = match first {
                Ok(d) => vec![d],
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            while let Ok(d) = dropped.try_recv() {
                if gone.len() == MAX_NEWS_ITEMS {
                    break;
                }
                gone.push(d);
            }
            self.announce(News {
                node_id: self.node_id().to_owned(),
                http_port: self.http_port(),
                gone,
                ..News::default()
            })
            .await;
        }
    }

    /// Tells every known peer `news` (concurrently, best effort).
    pub async fn announce(&self, news: News) {
        let peers = match self.store().peers().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let body = match serde_json::to_vec(&news) {
            Ok(b) => Bytes::from(b),
            Err(_) => return,
        };
        let sends = peers.into_iter().filter(|p| p.failures == 0).map(|p| {
            let body = body.clone();
            async move {
                let url = format!("{}/_shoal/v1/news", p.url);
                if let Err(e) = self.post(&url, body).await {
                    tracing::debug!(%url, error = %e, "news not delivered");
                }
            }
        });
        futures_util::future::join_all(sends).await;
    }

    /// Applies news that `from` sent.
    /// Acts on news read by `News::read`.
    pub async fn heard(&self, news: News, from: SocketAddr) {
        if news.node_id == self.node_id() {
            return;
        }
        let url = match self.store().peer_by_node(news.node_id.clone()).await {
            Ok(Some(url)) => url,
            _ if news.http_port != 0 => {
                // A node we did not know: remember it, and read its whole catalog.
                let url = match from {
                    SocketAddr::V4(a) => format!("http://{}:{}", a.ip(), news.http_port),
                    SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), news.http_port),
                };
                tracing::info!(%url, node = %news.node_id, "a shoal node introduced itself");
                self.discovered(url.clone()).await;
                url
            }
            _ => return,
        };
        for f in &news.filling {
            tracing::debug!(%url, digest = %f.digest, "peer is fetching a blob from upstream");
            self.heard_fills().note(f.digest, url.clone(), f.size);
        }
        if !news.gone.is_empty() {
            let n = news.gone.len();
            match self.store().remove_peer_blobs(url.clone(), news.gone).await {
                Ok(()) => tracing::debug!(%url, blobs = n, "peer no longer holds blobs"),
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "cannot record a peer's news")
                }
            }
        }
        if !news.have.is_empty() {
            for e in &news.have {
                self.heard_fills().forget(&e.digest);
            }
            let n = news.have.len();
            match self.store().add_peer_blobs(url.clone(), news.have).await {
                Ok(()) => tracing::debug!(%url, blobs = n, "peer cached blobs"),
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "cannot record a peer's news")
                }
            }
        }
    }

    /// Starts a GET of `[start, end)` of a blob at `peer`, which serves it from its cache
    /// or its own fill (never relaying it further: `PEER_HEADER`). Resolves when the
    /// response headers are in.
    pub async fn blob_range(
        &self,
        peer: &str,
        repo: &str,
        digest: &Digest,
        range: (u64, u64),
        user_agent: Option<&http::HeaderValue>,
    ) -> Result<hyper::body::Incoming, String> {
        let url = format!("{peer}/v2/{repo}/blobs/{digest}");
        let mut req = Request::get(&url)
            .header(PEER_HEADER, self.node_id())
            .header(
                http::header::RANGE,
                format!("bytes={}-{}", range.0, range.1.saturating_sub(1)),
            );
        if let Some(ua) = user_agent {
            req = req.header(USER_AGENT, ua);
        }
        if let Some(k) = self.swarm_key() {
            req = req.header(SWARM_KEY_HEADER, k);
        }
        let req = req
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        // The peer may have to find the blob upstream first.
        let resp = tokio::time::timeout(RELAY_HEADERS_TIMEOUT, self.client().request(req))
            .await
            .map_err(|_| format!("{url}: no answer in {RELAY_HEADERS_TIMEOUT:?}"))?
            .map_err(|e| format!("{url}: {}", crate::telemetry::chain(&e)))?;
        let starts_right = resp
            .headers()
            .get(http::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split_once('-'))
            .is_some_and(|(a, _)| a.parse::<u64>().ok() == Some(range.0));
        if resp.status() != StatusCode::PARTIAL_CONTENT || !starts_right {
            return Err(format!(
                "{url}: answered {} for bytes {}-",
                resp.status(),
                range.0
            ));
        }
        Ok(resp.into_body())
    }

    /// The JSON a peer answers at `url`, within `timeout`.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<T, String> {
        let mut req =
            Request::get(url).header(USER_AGENT, concat!("shoal/", env!("CARGO_PKG_VERSION")));
        if let Some(k) = self.swarm_key() {
            req = req.header(SWARM_KEY_HEADER, k);
        }
        let req = req
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let fetch = async {
            let resp = self
                .client()
                .request(req)
                .await
                .map_err(|e| e.to_string())?;
            if resp.status() != StatusCode::OK {
                return Err(format!("answered {}", resp.status()));
            }
            let body = Limited::new(resp.into_body(), MAX_NEWS)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| e.to_string())
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| "timed out".to_owned())?
    }

    async fn post(&self, url: &str, body: Bytes) -> Result<(), String> {
        let mut req = Request::post(url)
            .header(USER_AGENT, concat!("shoal/", env!("CARGO_PKG_VERSION")))
            .header(CONTENT_TYPE, "application/json");
        if let Some(k) = self.swarm_key() {
            req = req.header(SWARM_KEY_HEADER, k);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(NEWS_TIMEOUT, self.news_client().request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_builds_the_same_tree() {
        let nodes = ["aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff", "gggg"];
        let mut roots = [0usize; 7];
        for i in 0..300u32 {
            let d = Digest::of(&i.to_le_bytes());
            // Each node's own view: itself and the others, in any order.
            let parents: Vec<Option<&str>> = nodes
                .iter()
                .map(|me| {
                    let mut others: Vec<&str> = nodes.iter().copied().filter(|n| n != me).collect();
                    others.reverse();
                    parent(&d, me, &others, None).map(|p| others[p])
                })
                .collect();
            // One root; every other node has a parent; nobody has more than two children;
            // following parents always reaches the root.
            let root: Vec<usize> = (0..7).filter(|&i| parents[i].is_none()).collect();
            assert_eq!(root.len(), 1, "{parents:?}");
            roots[root[0]] += 1;
            for n in nodes {
                assert!(parents.iter().filter(|p| **p == Some(n)).count() <= 2);
            }
            for start in 0..7 {
                let mut at = nodes[start];
                for _ in 0..7 {
                    match parents[nodes.iter().position(|n| *n == at).unwrap()] {
                        Some(p) => at = p,
                        None => break,
                    }
                }
                assert_eq!(at, nodes[root[0]], "no cycles");
            }
        }
        assert!(roots.iter().all(|&c| c > 10), "roots spread: {roots:?}");
    }

    #[test]
    fn a_node_fetching_upstream_already_is_the_root() {
        let d = Digest::of(b"blob");
        let all = ["w", "x", "y", "z"];
        for fetcher in all {
            // Every other node, whatever its score, ends up under the fetcher.
            for me in all.iter().copied().filter(|n| *n != fetcher) {
                let mut at = me;
                for _ in 0..4 {
                    if at == fetcher {
                        break;
                    }
                    let others: Vec<&str> = all.iter().copied().filter(|n| *n != at).collect();
                    let root = others.iter().position(|n| *n == fetcher);
                    at = others[parent(&d, at, &others, root).expect("a non-root has a parent")];
                }
                assert_eq!(at, fetcher, "{me} reaches the fetcher");
            }
        }
        assert_eq!(parent(&d, "m", &[], None), None, "alone: fetch it yourself");
    }
}
