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
