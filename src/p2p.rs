//! BitTorrent between shoal nodes: deterministic torrents for cached blobs (this module),
//! and later the librqbit session, tracker, catalog and discovery.
//!
//! Must not: reach the public internet (no DHT), or accept a blob it did not verify.

pub mod discovery;
pub mod lan;
mod peers;
mod storage;
mod swarm;
pub mod torrent;
pub mod tracker;

pub use peers::{Catalog, Error as PeersError, Peers, SWARM_KEY_HEADER};
pub use storage::OnPiece;
pub use swarm::{Download, Error, Seed, Swarm, SwarmConfig, TorrentStatus};

/// The longest node id accepted from the LAN (shoal's own are 32 hex digits).
const MAX_NODE_ID: usize = 64;

/// Whether a node id heard from the LAN (a beacon, news, a catalog) is one shoal could
/// have made: short, and plain ASCII, so it is safe in logs, URLs and the index.
pub(crate) fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NODE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
