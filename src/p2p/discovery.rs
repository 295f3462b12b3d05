//! LAN discovery: every node multicasts a small beacon (its id and HTTP port) and listens
//! for others', so a second box on the LAN finds the first with no configuration. What a
//! beacon says is only a lead: the node's catalog is then fetched over HTTP like any
//! peer's, and its blobs are verified like any peer's.
//!
//! Beacons go to a site-local group with TTL 1, so they never leave the LAN segment. A
//! node with a swarm key sends a tag derived from it (never the key itself) and ignores
//! beacons with another tag.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::peers::Peers;

/// Administratively scoped (RFC 2365), so routers keep it inside the site.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 74);
pub const PORT: u16 = 7774;
const EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Beacon {
    /// Always "shoal/1": anything else on the group is ignored.
    shoal: String,
    pub node: String,
    pub http_port: u16,
    /// Hex of the first 8 bytes of sha256("shoal swarm " + key), or empty without a key.
    swarm: String,
}

fn swarm_tag(key: Option<&str>) -> String {
    key.map(|k| hex::encode(&Sha256::digest(format!("shoal swarm {k}"))[..8]))
        .unwrap_or_default()
}

/// A datagram from the group, if it is another shoal node's beacon for this swarm. Anyone
/// on the LAN can send to the group, so everything in it is checked.
pub(crate) fn read_beacon(datagram: &[u8], me: &str, tag: &str) -> Option<Beacon> {
    let b: Beacon = serde_json::from_slice(datagram).ok()?;
    (b.shoal == "shoal/1"
        && b.node != me
        && super::valid_node_id(&b.node)
        && b.swarm == tag
        && b.http_port != 0)
        .then_some(b)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up LAN discovery on {group}:{port}")]
pub struct Error {
    group: Ipv4Addr,
    port: u16,
    #[source]
    source: std::io::Error,
}

fn socket(interface: Ipv4Addr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Several nodes on one host (tests, or containers sharing the host network).
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT)).into())?;
    s.join_multicast_v4(&GROUP, &interface)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(true)?;
    if !interface.is_unspecified() {
        s.set_multicast_if_v4(&interface)?;
    }
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Beacons every few seconds and feeds heard nodes to `peers`, until `stop`. `interface`
/// picks the LAN interface (its IPv4 address); unspecified lets the kernel choose.
pub async fn run(
    peers: Arc<Peers>,
    http_port: u16,
    interface: Ipv4Addr,
    stop: CancellationToken,
) -> Result<(), Error> {
    let sock = socket(interface).map_err(|source| Error {
        group: GROUP,
        port: PORT,
        source,
    })?;
    let tag = swarm_tag(peers.swarm_key());
    let beacon = serde_json::to_vec(&Beacon {
        shoal: "shoal/1".into(),
        node: peers.node_id().to_owned(),
        http_port,
        swarm: tag.clone(),
    })
    .unwrap_or_default();
    tracing::info!(group = %GROUP, port = PORT, "LAN discovery on");
    let mut tick = tokio::time::interval(EVERY);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if let Err(e) = sock.send_to(&beacon, (GROUP, PORT)).await {
                    tracing::debug!(error = %e, "cannot send a discovery beacon");
                }
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if n == buf.len() {
                    // Beacons are about 120 bytes; this one was cut to the buffer.
                    tracing::debug!(%from, "dropped an oversized datagram on the discovery group");
                    continue;
                }
                let Some(b) = read_beacon(&buf[..n], peers.node_id(), &tag) else { continue };
                let url = match from {
                    SocketAddr::V4(a) => format!("http://{}:{}", a.ip(), b.http_port),
                    SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), b.http_port),
                };
                if peers.note_beacon(&b.node) {
                    tracing::info!(%url, node = %b.node, "found a shoal node on the LAN");
                    let peers = peers.clone();
                    tokio::spawn(async move { peers.discovered(url).await });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_hide_the_key() {
        assert_eq!(swarm_tag(None), "");
        let t = swarm_tag(Some("lan-swarm-key-1"));
        assert_eq!(t.len(), 16);
        assert!(!t.contains("lan"));
        assert_ne!(t, swarm_tag(Some("lan-swarm-key-2")));
    }
}
