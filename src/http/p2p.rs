//! BitTorrent over HTTP: a blob's .torrent, the tracker, and what peers exchange.
//!
//! With a swarm key configured, the catalog and .torrent files need it in the
//! `X-Shoal-Swarm-Key` header, and the tracker lives at `/announce/<key>` (the URL
//! standard clients find in the .torrent). Registry pulls never need it.

use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HOST};
use http::{Request, Response};
use hyper::body::Incoming;

use super::admin::json;
use super::error::HttpError;
use super::{full, Body, Conn, State};
use http_body_util::BodyExt;

use crate::mirror::Here;
use crate::oci::Digest;
use crate::p2p::lan::{BlobState, News, MAX_NEWS};
use crate::p2p::SWARM_KEY_HEADER;

/// Same-length comparison that looks at every byte, so the key is not guessable by timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request may see swarm data: no key configured, or the right one sent.
fn admitted(state: &State, req: &Request<Incoming>) -> bool {
    match state.peers.swarm_key() {
        None => true,
        Some(key) => req
            .headers()
            .get(SWARM_KEY_HEADER)
            .is_some_and(|v| same(v.as_bytes(), key.as_bytes())),
    }
}

/// `host[:port]` as the client addressed this node, for URLs handed back to it; the local
/// address when the Host header is missing or not a plain host.
fn authority(req: &Request<Incoming>, conn: Conn) -> String {
    let plain = |h: &str| {
        !h.is_empty()
            && h.len() < 256
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    };
    match req.headers().get(HOST).and_then(|v| v.to_str().ok()) {
        Some(h) if plain(h) => h.to_owned(),
        _ => conn.local.to_string(),
    }
}

pub async fn torrent(
    state: &State,
    req: &Request<Incoming>,
    digest: &Digest,
    conn: Conn,
) -> Result<Response<Body>, HttpError> {
    if !admitted(state, req) {
        return Err(HttpError::SwarmKey);
    }
    let tracker = match state.peers.swarm_key() {
        Some(key) => format!("http://{}/announce/{key}", authority(req, conn)),
        None => format!("http://{}/announce", authority(req, conn)),
    };
    match state.swarm.torrent_file(digest, &[tracker]).await? {
        Some(bytes) => Ok(Response::builder()
            .header(CONTENT_TYPE, "application/x-bittorrent")
            .header(
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"sha256-{}.torrent\"", digest.hex()),
            )
            .body(full(bytes))?),
        None => Err(HttpError::NotHeld(*digest)),
    }
}

/// Whether a tracker URL's key (`/announce/<key>`) is the one this node needs; else the
/// bencoded refusal to answer with.
fn tracker_key(state: &State, key: Option<&str>) -> Result<(), Vec<u8>> {
    match (state.peers.swarm_key(), key) {
        (Some(want), Some(got)) if same(want.as_bytes(), got.as_bytes()) => Ok(()),
        (None, None) => Ok(()),
        (Some(_), _) => Err(crate::p2p::tracker::encode_failure(
            "this tracker needs the swarm key",
        )),
        (None, Some(_)) => Err(crate::p2p::tracker::encode_failure("no such tracker")),
    }
}

fn bencoded(body: Vec<u8>) -> Result<Response<Body>, HttpError> {
    Ok(Response::builder()
        .header(CONTENT_TYPE, "text/plain")
        .body(full(body))?)
}

pub async fn announce(
    state: &State,
    req: &Request<Incoming>,
    key: Option<&str>,
    conn: Conn,
) -> Result<Response<Body>, HttpError> {
    let query = req.uri().query().unwrap_or("");
    bencoded(match tracker_key(state, key) {
        Ok(()) => state.swarm.announce(query, conn.peer, conn.local).await,
        Err(refusal) => refusal,
    })
}

pub async fn scrape(
    state: &State,
    req: &Request<Incoming>,
    key: Option<&str>,
) -> Result<Response<Body>, HttpError> {
    let query = req.uri().query().unwrap_or("");
    bencoded(match tracker_key(state, key) {
        Ok(()) => state.swarm.scrape(query).await,
        Err(refusal) => refusal,
    })
}

pub async fn catalog(
    state: &State,
    req: &Request<Incoming>,
    conn: Conn,
) -> Result<Response<Body>, HttpError> {
    if !admitted(state, req) {
        return Err(HttpError::SwarmKey);
    }
    let catalog = state
        .peers
        .catalog(state.swarm.advertised(conn.local))
        .await?;
    json(&catalog)
}

pub async fn peers(state: &State) -> Result<Response<Body>, HttpError> {
    let peers = state.peers.list().await?;
    json(&serde_json::json!({
        "node_id": state.peers.node_id(),
        "bt_listen": state.swarm.listen_addr().to_string(),
        "peers": peers,
    }))
}

/// The BitTorrent session's torrents, and the fills (running, then recent): for each,
/// whether this node fetched upstream and which nodes fed it.
pub fn torrents(state: &State) -> Result<Response<Body>, HttpError> {
    json(&serde_json::json!({
        "torrents": state.swarm.list(),
        "fills": state.mirror.fills_report(),
    }))
}

/// A peer asks what this node has of a blob (LAN single flight, `p2p::lan`).
pub async fn blob_state(
    state: &State,
    req: &Request<Incoming>,
    digest: &Digest,
    conn: Conn,
) -> Result<Response<Body>, HttpError> {
    if !admitted(state, req) {
        return Err(HttpError::SwarmKey);
    }
    let node_id = state.peers.node_id().to_owned();
    let answer = match state.mirror.here(digest).await {
        Here::Held { size, infohash } => BlobState {
            node_id,
            state: "held".into(),
            size: Some(size),
            infohash: infohash.map(hex::encode),
            bt_addr: Some(state.swarm.advertised(conn.local)),
            upstream: false,
        },
        Here::Filling { size, upstream } => BlobState {
            node_id,
            state: "filling".into(),
            size: Some(size),
            infohash: None,
            bt_addr: None,
            upstream,
        },
        Here::Nothing => BlobState {
            node_id,
            state: "none".into(),
            size: None,
            infohash: None,
            bt_addr: None,
            upstream: false,
        },
    };
    json(&answer)
}

/// A peer's news: it cached a blob, or started fetching one from upstream.
pub async fn news(
    state: &State,
    req: Request<Incoming>,
    conn: Conn,
) -> Result<Response<Body>, HttpError> {
    if !admitted(state, &req) {
        return Err(HttpError::SwarmKey);
    }
    let body = http_body_util::Limited::new(req.into_body(), MAX_NEWS)
        .collect()
        .await
        .map_err(|e| HttpError::BadBody(e.to_string()))?
        .to_bytes();
    let news = News::read(&body).map_err(HttpError::BadBody)?;
    state.peers.heard(news, conn.peer).await;
    Ok(Response::builder()
        .status(http::StatusCode::NO_CONTENT)
        .body(super::empty())?)
}
