//! Other shoal nodes and what they hold. Each node serves its catalog (digest → infohash,
//! size, plus its BitTorrent address) at `/_shoal/v1/catalog`; this module fetches the
//! catalogs of known peers on an interval and keeps them in the index, so "who on the LAN
//! holds this digest" is a local lookup.
//!
//! Peers come from `--peer` (static) and LAN discovery. A catalog is a hint, never trusted:
//! whatever a peer sends is verified by sha256 before it is cached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::USER_AGENT;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use serde::{Deserialize, Serialize};

use super::torrent::TorrentInfo;
use crate::config::PeerUrl;
use crate::oci::Digest;
use crate::store::{CatalogEntry, Holder, PeerRow, Store};

/// Header that carries the swarm key, when one is configured.
pub const SWARM_KEY_HEADER: &str = "x-shoal-swarm-key";
const CATALOG_TIMEOUT: Duration = Duration::from_secs(10);
/// Refuse absurd catalogs: at about 150 bytes per blob, 64 MiB lists some 400,000 blobs,
/// far beyond any site's cache, and bounds what one peer can make this node hold.
const MAX_CATALOG: usize = 64 << 20;
/// After this many failed fetches in a row a peer's catalog is dropped.
const FORGET_AFTER: u64 = 4;

/// What `/_shoal/v1/catalog` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    pub node_id: String,
    /// Where to reach this node over BitTorrent, as seen by the asker.
    pub bt_addr: SocketAddr,
    pub blobs: Vec<CatalogEntry>,
}

impl Catalog {
    /// Reads a peer's catalog. Its entries are only leads (every blob is verified when
    /// fetched), but its node id is checked like any the LAN sends.
    pub fn read(body: &[u8]) -> Result<Catalog, String> {
        let c: Catalog = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if !super::valid_node_id(&c.node_id) {
            return Err("its node id is not one shoal makes".to_owned());
        }
        Ok(c)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("fetching the catalog of {url} failed: {what}")]
    Fetch { url: String, what: String },
    #[error("store operation failed")]
    Store(#[from] crate::store::Error),
}

pub struct Peers {
    store: Store,
    node_id: String,
    swarm_key: Option<String>,
    /// This node's HTTP port, for the news it sends.
    http_port: u16,
    client: crate::net::PlainClient,
    news_client: crate::net::PostClient,
    /// Fills other nodes said they started.
    fills: super::lan::HeardFills,
    /// (peer, digest) pairs whose bytes failed verification: not asked again for that blob.
    distrusted: std::sync::Mutex<std::collections::HashSet<(String, Digest)>>,
    /// Nodes heard by discovery, and when: a node is (re)contacted at most once a minute.
    heard: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl Peers {
    pub async fn new(
        store: Store,
        static_peers: &[PeerUrl],
        swarm_key: Option<String>,
        http_port: u16,
    ) -> Result<Arc<Peers>, Error> {
        let node_id = store.node_id().await?;
        for url in static_peers {
            store.add_peer(url.to_string(), "static").await?;
        }
        Ok(Arc::new(Peers {
            store,
            node_id,
            swarm_key,
            http_port,
            // Peers are on the LAN: one that does not answer in 3 s is not there.
            client: crate::net::plain_client(Duration::from_secs(3)),
            news_client: crate::net::plain_client(Duration::from_secs(3)),
            fills: Default::default(),
            distrusted: Default::default(),
            heard: Default::default(),
        }))
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn swarm_key(&self) -> Option<&str> {
        self.swarm_key.as_deref()
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn client(&self) -> &crate::net::PlainClient {
        &self.client
    }

    pub(super) fn news_client(&self) -> &crate::net::PostClient {
        &self.news_client
    }

    pub(super) fn heard_fills(&self) -> &super::lan::HeardFills {
        &self.fills
    }

    /// This node's catalog, as served to a peer that reached it at `local`.
    pub async fn catalog(&self, bt_addr: SocketAddr) -> Result<Catalog, Error> {
        Ok(Catalog {
            node_id: self.node_id.clone(),
            bt_addr,
            blobs: self.store.catalog().await?,
        })
    }

    /// Peers holding `digest`, freshest catalog first, without those whose bytes for it
    /// failed verification.
    pub async fn holders(&self, digest: &Digest) -> Result<Vec<Holder>, Error> {
        let all = self.store.holders(*digest).await?;
        let distrusted = self.distrusted.lock().unwrap_or_else(|p| p.into_inner());
        Ok(all
            .into_iter()
            .filter(|h| !distrusted.contains(&(h.peer_url.clone(), *digest)))
            .collect())
    }

    /// Whether `peer`'s bytes for `digest` failed verification before.
    pub fn distrusts(&self, peer: &str, digest: &Digest) -> bool {
        self.distrusted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(peer.to_owned(), *digest))
    }

    /// Remembers that `peer`'s bytes for `digest` were bad.
    pub fn distrust(&self, peer: &str, digest: &Digest) {
        tracing::warn!(%peer, %digest, "peer sent data that failed verification; not using it for this blob again");
        self.distrusted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((peer.to_owned(), *digest));
    }

    /// The torrent a holder offers for `digest`, checked against the rule and its catalog.
    pub async fn fetch_torrent(
        &self,
        holder: &Holder,
        digest: &Digest,
    ) -> Result<TorrentInfo, Error> {
        let url = format!("{}/_shoal/v1/blobs/{digest}/torrent", holder.peer_url);
        let body = self.get(&url, 1 << 20).await?;
        super::torrent::parse_torrent_file(&body, *digest, holder.infohash).map_err(|e| {
            Error::Fetch {
                url,
                what: e.to_string(),
            }
        })
    }

    pub async fn list(&self) -> Result<Vec<PeerRow>, Error> {
        Ok(self.store.peers().await?)
    }

    /// Notes a discovery beacon from `node`; true when it is new or has not been heard for
    /// a while (then its catalog is worth fetching now).
    pub fn note_beacon(&self, node: &str) -> bool {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let fresh = heard
            .get(node)
            .is_none_or(|t| now.duration_since(*t) > Duration::from_secs(60));
        if fresh {
            heard.insert(node.to_owned(), now);
        }
        fresh
    }

    /// A node found by discovery: remembered, and its catalog fetched at once.
    pub async fn discovered(&self, url: String) {
        if let Err(e) = self.store.add_peer(url.clone(), "discovered").await {
            tracing::error!(error = %crate::telemetry::chain(&e), "cannot record a discovered peer");
            return;
        }
        self.sync_peer(&url).await;
    }

    /// Fetches every known peer's catalog once (concurrently).
    pub async fn sync_all(&self) {
        let peers = match self.store.peers().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "cannot list peers");
                return;
            }
        };
        futures_util::future::join_all(peers.iter().map(|p| self.sync_peer(&p.url))).await;
    }

    async fn sync_peer(&self, url: &str) {
        match self.fetch(url).await {
            Ok(c) if c.node_id == self.node_id => {
                // Ourselves (a --peer naming this node, or our own discovery beacon).
                tracing::debug!(%url, "peer is this node; ignoring it");
            }
            Ok(c) => {
                let n = c.blobs.len();
                let r = self
                    .store
                    .replace_catalog(url.to_owned(), c.node_id, c.bt_addr.to_string(), c.blobs)
                    .await;
                match r {
                    Ok(()) => tracing::debug!(%url, blobs = n, "peer catalog updated"),
                    Err(e) => {
                        tracing::error!(%url, error = %crate::telemetry::chain(&e), "cannot store a peer catalog")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%url, error = %crate::telemetry::chain(&e), "peer unreachable");
                if let Err(e) = self
                    .store
                    .peer_failed(url.to_owned(), e.to_string(), FORGET_AFTER)
                    .await
                {
                    tracing::error!(error = %crate::telemetry::chain(&e), "cannot record a peer failure");
                }
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<Catalog, Error> {
        let target = format!("{url}/_shoal/v1/catalog");
        let body = self.get(&target, MAX_CATALOG).await?;
        Catalog::read(&body).map_err(|e| Error::Fetch {
            url: target,
            what: format!("bad catalog: {e}"),
        })
    }

    /// A GET to a peer, with the swarm key, bounded in time and size.
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, Error> {
        let err = |what: String| Error::Fetch {
            url: url.to_owned(),
            what,
        };
        let mut req =
            Request::get(url).header(USER_AGENT, concat!("shoal/", env!("CARGO_PKG_VERSION")));
        if let Some(k) = &self.swarm_key {
            req = req.header(SWARM_KEY_HEADER, k.as_str());
        }
        let req = req.body(Empty::new()).map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(CATALOG_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(crate::telemetry::chain(&e)))?;
        if resp.status() != StatusCode::OK {
            return Err(err(format!("answered {}", resp.status())));
        }
        let body = tokio::time::timeout(
            CATALOG_TIMEOUT,
            Limited::new(resp.into_body(), limit).collect(),
        )
        .await
        .map_err(|_| err("timed out".into()))?
        .map_err(|e| err(e.to_string()))?
        .to_bytes();
        Ok(body)
    }

    /// Fetches all catalogs every `every` until `stop`.
    pub async fn run(self: Arc<Self>, every: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sync_all().await,
                () = stop.cancelled() => return,
            }
        }
    }
}
