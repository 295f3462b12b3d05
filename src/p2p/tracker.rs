//! A BitTorrent HTTP tracker (BEP 3, compact peer lists per BEP 23, scrape per BEP 48) for
//! the blobs this node knows, so that standard clients and late joiners find every holder.
//! In memory: peers re-announce every `INTERVAL`, and entries not refreshed in
//! `3 × INTERVAL` expire.
//!
//! Parsing and encoding are pure; `Swarms` holds the table. Must not: trust a peer's
//! claim about what it holds (the tracker only introduces peers; pieces are verified by
//! the BitTorrent layer and blobs by sha256).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often clients are told to re-announce.
pub const INTERVAL: Duration = Duration::from_secs(60);
const EXPIRY: Duration = Duration::from_secs(3 * 60);
const DEFAULT_NUMWANT: usize = 50;
const MAX_NUMWANT: usize = 200;
/// Bounds memory however many announces arrive.
const MAX_PEERS_PER_TORRENT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    Completed,
    Stopped,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    /// Bytes the peer still needs; 0 means it seeds.
    pub left: Option<u64>,
    pub event: Event,
    pub numwant: usize,
    /// An address the peer asked to be listed under (`ip=`).
    pub ip: Option<IpAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnounceError {
    #[error("missing parameter {0}")]
    Missing(&'static str),
    #[error("parameter {0} is invalid")]
    Invalid(&'static str),
}

fn decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

/// Parses an announce query string. `info_hash` and `peer_id` are raw bytes,
/// percent-encoded; they are not text.
pub fn parse_announce(query: &str) -> Result<Announce, AnnounceError> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let mut left = None;
    let mut event = Event::None;
    let mut numwant = DEFAULT_NUMWANT;
    let mut ip = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let text = || String::from_utf8(decode(v)).ok();
        match k {
            "info_hash" => {
                info_hash = Some(
                    <[u8; 20]>::try_from(decode(v))
                        .map_err(|_| AnnounceError::Invalid("info_hash"))?,
                )
            }
            "peer_id" => {
                peer_id = Some(
                    <[u8; 20]>::try_from(decode(v))
                        .map_err(|_| AnnounceError::Invalid("peer_id"))?,
                )
            }
            "port" => {
                port = Some(
                    text()
                        .and_then(|t| t.parse::<u16>().ok())
                        .filter(|p| *p != 0)
                        .ok_or(AnnounceError::Invalid("port"))?,
                )
            }
            "left" => left = text().and_then(|t| t.parse().ok()),
            "event" => {
                event = match text().as_deref() {
                    Some("started") => Event::Started,
                    Some("completed") => Event::Completed,
                    Some("stopped") => Event::Stopped,
                    Some("") | Some("empty") | None => Event::None,
                    Some(_) => return Err(AnnounceError::Invalid("event")),
                }
            }
            "numwant" => {
                numwant = text()
                    .and_then(|t| t.parse::<usize>().ok())
                    .unwrap_or(DEFAULT_NUMWANT)
                    .min(MAX_NUMWANT)
            }
            "ip" => ip = text().and_then(|t| t.parse().ok()),
            _ => {}
        }
    }
    Ok(Announce {
        info_hash: info_hash.ok_or(AnnounceError::Missing("info_hash"))?,
        peer_id: peer_id.ok_or(AnnounceError::Missing("peer_id"))?,
        port: port.ok_or(AnnounceError::Missing("port"))?,
        left,
        event,
        numwant,
        ip,
    })
}

/// The info hashes of a scrape query (`info_hash` may repeat); none means "all", which
/// this tracker does not list.
pub fn parse_scrape(query: &str) -> Result<Vec<[u8; 20]>, AnnounceError> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "info_hash" {
            out.push(
                <[u8; 20]>::try_from(decode(v)).map_err(|_| AnnounceError::Invalid("info_hash"))?,
            );
            if out.len() > MAX_SCRAPE {
                return Err(AnnounceError::Invalid("info_hash"));
            }
        }
    }
    if out.is_empty() {
        return Err(AnnounceError::Missing("info_hash"));
    }
    Ok(out)
}

/// Most torrents one scrape may ask about.
const MAX_SCRAPE: usize = 100;

/// A scrape answer: per info hash, `(complete, incomplete)`.
pub fn encode_scrape(files: &[([u8; 20], usize, usize)]) -> Vec<u8> {
    let mut sorted = files.to_vec();
    sorted.sort_by_key(|f| f.0);
    let mut out = vec![b'd'];
    bytes(&mut out, b"files");
    out.push(b'd');
    for (ih, complete, incomplete) in sorted {
        bytes(&mut out, &ih);
        out.push(b'd');
        bytes(&mut out, b"complete");
        int(&mut out, complete as u64);
        bytes(&mut out, b"downloaded");
        int(&mut out, 0);
        bytes(&mut out, b"incomplete");
        int(&mut out, incomplete as u64);
        out.push(b'e');
    }
    out.push(b'e');
    out.push(b'e');
    out
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

fn int(out: &mut Vec<u8>, n: u64) {
    out.push(b'i');
    out.extend_from_slice(n.to_string().as_bytes());
    out.push(b'e');
}

/// A successful answer: compact IPv4 peers in `peers`, IPv6 ones in `peers6` (BEP 7).
pub fn encode_peers(peers: &[SocketAddr], complete: usize, incomplete: usize) -> Vec<u8> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for p in peers {
        match p {
            SocketAddr::V4(a) => {
                v4.extend_from_slice(&a.ip().octets());
                v4.extend_from_slice(&a.port().to_be_bytes());
            }
            SocketAddr::V6(a) => {
                v6.extend_from_slice(&a.ip().octets());
                v6.extend_from_slice(&a.port().to_be_bytes());
            }
        }
    }
    // Keys in sorted order: complete, incomplete, interval, peers, peers6.
    let mut out = vec![b'd'];
    bytes(&mut out, b"complete");
    int(&mut out, complete as u64);
    bytes(&mut out, b"incomplete");
    int(&mut out, incomplete as u64);
    bytes(&mut out, b"interval");
    int(&mut out, INTERVAL.as_secs());
    bytes(&mut out, b"peers");
    bytes(&mut out, &v4);
    if !v6.is_empty() {
        bytes(&mut out, b"peers6");
        bytes(&mut out, &v6);
    }
    out.push(b'e');
    out
}

/// A refusal, as trackers give it: 200 with `failure reason`.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut out = vec![b'd'];
    bytes(&mut out, b"failure reason");
    bytes(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

struct Entry {
    seeding: bool,
    seen: Instant,
}

/// Who announced what, in memory.
#[derive(Default)]
pub struct Swarms {
    torrents: Mutex<HashMap<[u8; 20], HashMap<SocketAddr, Entry>>>,
}

impl Swarms {
    /// `(seeders, leechers)` that announced `info_hash` and have not expired.
    pub fn counts(&self, info_hash: &[u8; 20]) -> (usize, usize) {
        let now = Instant::now();
        let torrents = self.torrents.lock().unwrap_or_else(|p| p.into_inner());
        let Some(peers) = torrents.get(info_hash) else {
            return (0, 0);
        };
        let live = peers
            .values()
            .filter(|e| now.duration_since(e.seen) < EXPIRY);
        let (mut s, mut l) = (0, 0);
        for e in live {
            if e.seeding {
                s += 1;
            } else {
                l += 1;
            }
        }
        (s, l)
    }

    /// Records an announce from `addr` and returns peers for it (never itself), seeders
    /// first, plus the (seeders, leechers) counts.
    pub fn announce(&self, a: &Announce, addr: SocketAddr) -> (Vec<SocketAddr>, usize, usize) {
        let now = Instant::now();
        let mut torrents = self.torrents.lock().unwrap_or_else(|p| p.into_inner());
        let peers = torrents.entry(a.info_hash).or_default();
        peers.retain(|_, e| now.duration_since(e.seen) < EXPIRY);
        if a.event == Event::Stopped {
            peers.remove(&addr);
        } else if peers.len() < MAX_PEERS_PER_TORRENT || peers.contains_key(&addr) {
            peers.insert(
                addr,
                Entry {
                    seeding: a.left == Some(0) || a.event == Event::Completed,
                    seen: now,
                },
            );
        }
        let seeders = peers.values().filter(|e| e.seeding).count();
        let leechers = peers.len() - seeders;
        let mut list: Vec<(bool, SocketAddr)> = peers
            .iter()
            .filter(|(p, _)| **p != addr)
            .map(|(p, e)| (!e.seeding, *p))
            .collect();
        list.sort();
        let out = list.into_iter().take(a.numwant).map(|(_, p)| p).collect();
        if peers.is_empty() {
            torrents.remove(&a.info_hash);
        }
        (out, seeders, leechers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(ih: &[u8; 20], extra: &str) -> String {
        let enc = |b: &[u8]| {
            percent_encoding::percent_encode(b, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        format!(
            "info_hash={}&peer_id={}&port=6881{extra}",
            enc(ih),
            enc(b"-AR1360-abcdefghijkl")
        )
    }

    #[test]
    fn parses_binary_info_hash() {
        let ih: [u8; 20] = std::array::from_fn(|i| (i * 13) as u8 | 0x80);
        let a = parse_announce(&q(&ih, "&left=0&event=started&compact=1&numwant=500")).unwrap();
        assert_eq!(a.info_hash, ih);
        assert_eq!(a.port, 6881);
        assert_eq!(a.left, Some(0));
        assert_eq!(a.event, Event::Started);
        assert_eq!(a.numwant, MAX_NUMWANT);
        // aria2 sends some bytes unencoded: "%41%42" and "AB" are the same.
        let raw = "info_hash=AB%43DEFGHIJKLMNOPQRST&peer_id=-AR1360-abcdefghijkl&port=1";
        assert_eq!(
            &parse_announce(raw).unwrap().info_hash,
            b"ABCDEFGHIJKLMNOPQRST"
        );
    }

    #[test]
    fn refusals() {
        let ih = [1u8; 20];
        assert_eq!(
            parse_announce("port=1"),
            Err(AnnounceError::Missing("info_hash"))
        );
        assert_eq!(
            parse_announce("info_hash=abc&peer_id=x&port=1"),
            Err(AnnounceError::Invalid("info_hash"))
        );
        assert!(parse_announce(&q(&ih, "").replace("port=6881", "port=0")).is_err());
        assert!(parse_announce(&q(&ih, "").replace("port=6881", "port=99999")).is_err());
        assert!(parse_announce(&q(&ih, "&event=bogus")).is_err());
    }

    #[test]
    fn scrapes() {
        let a = [1u8; 20];
        let b = [2u8; 20];
        let enc = |b: &[u8]| {
            percent_encoding::percent_encode(b, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let q = format!("info_hash={}&info_hash={}", enc(&b), enc(&a));
        assert_eq!(parse_scrape(&q).unwrap(), vec![b, a]);
        assert_eq!(parse_scrape(""), Err(AnnounceError::Missing("info_hash")));
        assert!(parse_scrape("info_hash=short").is_err());
        let many: Vec<String> = (0..=MAX_SCRAPE)
            .map(|_| format!("info_hash={}", enc(&a)))
            .collect();
        assert!(parse_scrape(&many.join("&")).is_err());
        let out = encode_scrape(&[(b, 0, 3), (a, 2, 1)]);
        let mut want = b"d5:filesd20:".to_vec();
        want.extend_from_slice(&a);
        want.extend_from_slice(b"d8:completei2e10:downloadedi0e10:incompletei1ee20:");
        want.extend_from_slice(&b);
        want.extend_from_slice(b"d8:completei0e10:downloadedi0e10:incompletei3eeee");
        assert_eq!(out, want);
    }

    #[test]
    fn compact_encoding() {
        let peers: Vec<SocketAddr> = vec![
            "10.0.0.1:6881".parse().unwrap(),
            "[::1]:7000".parse().unwrap(),
        ];
        let out = encode_peers(&peers, 1, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("d8:completei1e10:incompletei0e8:intervali60e5:peers6:"),
            "{text}"
        );
        let p = out.windows(9).position(|w| w == b"5:peers6:").unwrap() + 9;
        assert_eq!(&out[p..p + 6], &[10, 0, 0, 1, 0x1a, 0xe1]);
        assert!(
            out.windows(9).any(|w| w == b"6:peers61"),
            "IPv6 peers in peers6"
        );
        assert_eq!(encode_failure("no"), b"d14:failure reason2:noe");
    }

    #[test]
    fn swarm_lists_others_seeders_first() {
        let s = Swarms::default();
        let ih = [2u8; 20];
        let a = |left, event| Announce {
            info_hash: ih,
            peer_id: [0; 20],
            port: 1,
            left: Some(left),
            event,
            numwant: 10,
            ip: None,
        };
        let seeder: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let leecher: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let me: SocketAddr = "10.0.0.3:1".parse().unwrap();
        s.announce(&a(100, Event::Started), leecher);
        s.announce(&a(0, Event::Started), seeder);
        let (peers, seeders, leechers) = s.announce(&a(100, Event::Started), me);
        assert_eq!(peers, vec![seeder, leecher]);
        assert_eq!((seeders, leechers), (1, 2));
        let (peers, _, _) = s.announce(&a(100, Event::Stopped), leecher);
        assert_eq!(peers, vec![seeder, me]);
        let (peers, seeders, leechers) = s.announce(&a(0, Event::None), me);
        assert_eq!(peers, vec![seeder]);
        assert_eq!((seeders, leechers), (2, 0));
    }
}
