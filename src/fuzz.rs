//! Entry points of the fuzz targets (`fuzz/`, run by `bench/fuzz`), one per parser that
//! takes bytes from outside. They live in the library so that `cargo test` replays the
//! committed corpus and crashes (`tests/fuzz_corpus.rs`) on a stable toolchain.
//!
//! Each feeds the input to the parser exactly as shoal does, then checks what a parse that
//! succeeded must satisfy (a round trip, a bound), so the fuzzer finds wrong answers as well
//! as panics. A panic here is a bug in shoal, never in the input.

use std::net::SocketAddr;

use crate::config::Config;
use crate::http::route::{endpoint, Endpoint};
use crate::oci::{
    manifest_media_type, parse_route, Digest, ManifestContent, ModelRef, RangeSpec, Reference,
    RepoName, Route,
};
use crate::p2p::lan::{BlobState, News};
use crate::p2p::{discovery, torrent, tracker, Catalog};

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target, by the name its corpus directory has.
pub const TARGETS: &[(&str, Target)] = &[
    ("route", route),
    ("digest", digest),
    ("range", range),
    ("manifest", manifest),
    ("torrent", torrent),
    ("lan", lan),
    ("datagram", datagram),
    ("announce", announce),
    ("config", config),
];

/// Request paths (registry routes, shoal's own endpoints) and the names in them.
pub fn route(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    match endpoint(path) {
        Ok(Endpoint::Registry(Route::Blob { name, digest })) => {
            assert!(path.ends_with(&digest.to_string()));
            assert_eq!(name.as_str().parse::<RepoName>().ok(), Some(name.clone()));
        }
        Ok(Endpoint::Registry(Route::Manifest { name, reference })) => {
            assert!(path.ends_with(&reference.to_string()));
            assert_eq!(name.as_str().parse::<RepoName>().ok(), Some(name.clone()));
        }
        Ok(Endpoint::Announce { key: Some(k) } | Endpoint::Scrape { key: Some(k) }) => {
            assert!(path.ends_with(&k));
        }
        _ => {}
    }
    let _ = parse_route(path);
    if let Ok(r) = path.parse::<Reference>() {
        assert_eq!(r.to_string().parse::<Reference>().ok(), Some(r));
    }
    if let Ok(m) = ModelRef::parse(path) {
        assert!(!m.repo.as_str().is_empty());
    }
}

/// Digests, as they come in paths, manifests and catalogs.
pub fn digest(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::from_bytes(*d.as_bytes()), d);
    }
}

/// `Range` header values, resolved against sizes around the ones they name.
pub fn range(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Some(spec)) = RangeSpec::parse(s) else {
        return;
    };
    let named = match spec {
        RangeSpec::FromTo(a, b) => [a, b],
        RangeSpec::From(a) => [a, a],
        RangeSpec::Suffix(n) => [n, n],
    };
    let sizes = [0, 1, u64::MAX].into_iter().chain(
        named
            .into_iter()
            .flat_map(|n| [n, n.saturating_add(1), n.saturating_sub(1)]),
    );
    for size in sizes {
        if let Some(r) = spec.resolve(size) {
            assert!(r.start < r.end && r.end <= size, "{spec:?} in {size}: {r}");
            assert!(!r.content_range(size).is_empty());
        }
    }
}

/// Manifests, image indexes and manifest lists, as an upstream sends them.
pub fn manifest(data: &[u8]) {
    let _ = manifest_media_type(None, data);
    let _ = manifest_media_type(Some("text/plain"), data);
    match ManifestContent::parse(data) {
        Ok(ManifestContent::Image { config, layers }) => {
            for d in config.iter().chain(&layers) {
                assert_eq!(d.digest.to_string().parse::<Digest>().ok(), Some(d.digest));
            }
        }
        Ok(ManifestContent::Index(children)) => {
            for d in &children {
                assert_eq!(d.digest.to_string().parse::<Digest>().ok(), Some(d.digest));
            }
        }
        Err(_) => {}
    }
}

/// `.torrent` files (bencode) a peer offers for a blob.
pub fn torrent(data: &[u8]) {
    let digest = Digest::of(b"shoal fuzz");
    let Ok(info) = torrent::read_torrent_file(data, digest) else {
        return;
    };
    // What was accepted encodes back to a file that reads the same, under its own hash.
    let file = info.torrent_file(&[]).expect("an accepted torrent encodes");
    let hash = info.infohash().expect("an accepted torrent hashes");
    let again = torrent::parse_torrent_file(&file, digest, hash).expect("it reads back");
    assert_eq!(again.pieces, info.pieces);
    assert_eq!(
        (again.size, again.piece_length),
        (info.size, info.piece_length)
    );
}

/// What peers send over HTTP: catalogs, news, and answers about one blob.
pub fn lan(data: &[u8]) {
    if let Ok(c) = Catalog::read(data) {
        let body = serde_json::to_vec(&c).expect("a catalog encodes");
        let again = Catalog::read(&body).expect("a catalog reads back");
        assert_eq!(again.blobs.len(), c.blobs.len());
    }
    if let Ok(n) = News::read(data) {
        assert!(n.have.len() <= 256 && n.filling.len() <= 256 && n.gone.len() <= 256);
    }
    let _ = serde_json::from_slice::<BlobState>(data);
}

/// Discovery datagrams, as anyone on the LAN can send them to the group.
pub fn datagram(data: &[u8]) {
    for tag in ["", "0123456789abcdef"] {
        if let Some(b) = discovery::read_beacon(data, "me", tag) {
            assert!(b.node != "me" && b.http_port != 0);
        }
    }
}

/// Tracker announce and scrape query strings, answered from an in-memory table.
pub fn announce(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = tracker::parse_announce(query) {
        assert!(a.port != 0);
        let swarms = tracker::Swarms::default();
        let me: SocketAddr = ([192, 0, 2, 1], a.port).into();
        let other: SocketAddr = ([192, 0, 2, 2], 6881).into();
        swarms.announce(&a, other);
        let (peers, seeders, leechers) = swarms.announce(&a, me);
        assert!(peers.len() <= a.numwant && !peers.contains(&me));
        let _ = tracker::encode_peers(&peers, seeders, leechers);
    }
    if let Ok(hashes) = tracker::parse_scrape(query) {
        assert!(!hashes.is_empty());
    }
}

/// Config files.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::from_toml(text) {
        // What shoal accepted, it prints (`--check-config`) as a file it accepts again.
        let printed = c.to_toml();
        if let Err(e) = Config::from_toml(&printed) {
            panic!("--check-config prints a config it refuses: {e}\n{printed}");
        }
    }
}
