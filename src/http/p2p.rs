//! BitTorrent over HTTP: a blob's .torrent, and the tracker.

use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HOST};
use http::{Request, Response};
use hyper::body::Incoming;

use super::error::HttpError;
use super::{empty, full, Body, Conn, State};
use crate::oci::Digest;

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
    let tracker = format!("http://{}/announce", authority(req, conn));
    match state.swarm.torrent_file(digest, &[tracker]).await? {
        Some(bytes) => Ok(Response::builder()
            .header(CONTENT_TYPE, "application/x-bittorrent")
            .header(
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"sha256-{}.torrent\"", digest.hex()),
            )
            .body(full(bytes))
            .unwrap_or_else(|_| Response::new(empty()))),
        None => Err(HttpError::NotHeld(*digest)),
    }
}

pub async fn announce(state: &State, req: &Request<Incoming>, conn: Conn) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let body = state.swarm.announce(query, conn.peer, conn.local).await;
    Response::builder()
        .header(CONTENT_TYPE, "text/plain")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(empty()))
}
