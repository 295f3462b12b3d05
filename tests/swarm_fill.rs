//! Nodes fetch blobs from each other over BitTorrent: zero upstream bytes for what the LAN
//! holds, several pullers at once, a holder that dies or sends corrupt pieces, and the same
//! infohash on every node.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;

/// Waits until `node` lists `peer` with at least `blobs` blobs in its catalog.
async fn knows(node: &Shoal, blobs: u64) {
    let ok = eventually(Duration::from_secs(15), async || {
        let v = get(&format!("{}/_shoal/v1/peers", node.url()), &[])
            .await
            .json();
        v["peers"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["blobs"].as_u64() >= Some(blobs)))
    })
    .await;
    assert!(ok, "peer catalog never arrived");
}

/// A node that has fetched `data` (the blob `digest`) from upstream and committed it.
async fn holder(
    up: &FakeUpstream,
    digest: &str,
    data: &[u8],
    tweak: impl FnOnce(&mut shoal::config::Config),
) -> Shoal {
    let a = Shoal::start_with(&up.url(), tweak).await;
    let got = get(&format!("{}/v2/x/blobs/{digest}", a.url()), &[]).await;
    assert!(got.body == data, "the holder's own cold fetch");
    committed(&a, 1).await;
    a
}

async fn committed(node: &Shoal, blobs: u64) {
    let ok = eventually(Duration::from_secs(30), async || {
        let s = node.stats().await;
        s["blobs"] == blobs && s["fills_running"] == 0
    })
    .await;
    assert!(ok, "{}", node.stats().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulls_what_a_peer_holds_without_upstream_bytes() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(12 * MIB + 3, 81), blob_bytes(700_000, 82)]);
        up.add_model("library/granite-code", "8b", &m);
        let a = Shoal::start(&up.url()).await;
        ollama_pull(
            &a.url(),
            "library/granite-code",
            "8b",
            PullOptions::default(),
        )
        .await
        .expect("A pulls from upstream");
        committed(&a, 3).await;

        let b = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;
        knows(&b, 3).await;
        let cdn_before = up.counts.cdn_gets.load(SeqCst);
        let redirects_before = up.counts.blob_redirects.load(SeqCst);
        let pull = ollama_pull(
            &b.url(),
            "library/granite-code",
            "8b",
            PullOptions::default(),
        )
        .await
        .expect("B pulls through its peer");
        assert_eq!(pull.manifest, m.manifest);
        assert_eq!(pull.blobs[0].data, m.layers[0]);
        assert_eq!(pull.blobs[1].data, m.layers[1]);
        assert_eq!(pull.blobs[2].data, m.config);
        committed(&b, 3).await;
        let s = b.stats().await;
        assert_eq!(s["upstream_bytes"], 0, "{s}");
        let total = m.layers.iter().map(|l| l.len()).sum::<usize>() + m.config.len();
        assert_eq!(s["peer_bytes"], total as u64, "{s}");
        assert_eq!(
            up.counts.cdn_gets.load(SeqCst),
            cdn_before,
            "no blob byte from upstream"
        );
        assert_eq!(
            up.counts.blob_redirects.load(SeqCst),
            redirects_before,
            "upstream not even asked"
        );
        // A counts what it uploaded.
        assert!(
            eventually(Duration::from_secs(15), async || {
                a.stats().await["seeded_bytes"].as_u64() >= Some(total as u64)
            })
            .await,
            "{}",
            a.stats().await
        );
        // Same bytes, same torrent: B's infohash for the layer equals A's.
        let cat = |n: &Shoal| {
            let url = format!("{}/_shoal/v1/catalog", n.url());
            async move { get(&url, &[]).await.json() }
        };
        let (ca, cb) = (cat(&a).await, cat(&b).await);
        let ih = |c: &serde_json::Value, d: &str| {
            c["blobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["digest"] == d)
                .map(|e| e["infohash"].clone())
        };
        let d0 = m.layer_digest(0);
        assert!(ih(&ca, &d0).is_some());
        assert_eq!(ih(&ca, &d0), ih(&cb, &d0), "infohash differs between nodes");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_pull_from_one_holder_at_once() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(16 * MIB, 83);
        let digest = up.add_blob(data.clone());
        let a = holder(&up, &digest, &data, |_| {}).await;
        let b = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;
        let c = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;
        knows(&b, 1).await;
        knows(&c, 1).await;
        let cdn_before = up.counts.cdn_gets.load(SeqCst);
        let (bu, cu) = (b.url(), c.url());
        let (rb, rc) = tokio::join!(
            ollama_blob(&bu, "x", &digest, PullOptions::default()),
            ollama_blob(&cu, "x", &digest, PullOptions::default()),
        );
        assert_eq!(rb.expect("B").data, data);
        assert_eq!(rc.expect("C").data, data);
        assert_eq!(up.counts.cdn_gets.load(SeqCst), cdn_before);
        for n in [&b, &c] {
            committed(n, 1).await;
            assert_eq!(n.stats().await["upstream_bytes"], 0);
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holder_dies_mid_transfer_and_upstream_finishes() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(24 * MIB, 84);
        let digest = up.add_blob(data.clone());
        // A uploads slowly, so that it can be stopped half way.
        let a = Shoal::start_with(&up.url(), |c| {
            c.p2p.upload_limit = Some(bytesize::ByteSize::mib(4));
        })
        .await;
        let cold = get(&format!("{}/v2/x/blobs/{digest}", a.url()), &[]).await;
        assert_eq!(cold.body, data);
        assert_eq!(cold.header("x-shoal-source"), Some("upstream"));
        committed(&a, 1).await;
        let b = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;
        knows(&b, 1).await;
        let url = format!("{}/v2/x/blobs/{digest}", b.url());
        let pull = tokio::spawn(async move { try_request(http::Method::GET, &url, &[]).await });
        let started = eventually(Duration::from_secs(20), async || {
            b.stats().await["peer_bytes"].as_u64() >= Some(8 * MIB as u64)
        })
        .await;
        assert!(started, "the swarm never delivered: {}", b.stats().await);
        a.stop().await;

        let r = pull.await.unwrap().expect("B's client gets the whole blob");
        assert_eq!(r.status, 200);
        assert!(r.body == data, "wrong bytes");
        // Said as the answer started, when the bytes were coming from A.
        assert_eq!(r.header("x-shoal-source"), Some("peers"));
        committed(&b, 1).await;
        let warm = get(&format!("{}/v2/x/blobs/{digest}", b.url()), &[]).await;
        assert_eq!(warm.header("x-shoal-source"), Some("cache"));
        let s = b.stats().await;
        let (peer, upstream) = (
            s["peer_bytes"].as_u64().unwrap(),
            s["upstream_bytes"].as_u64().unwrap(),
        );
        assert!(peer > 0 && upstream > 0, "{s}");
        // Only the missing part came from upstream (plus at most one short read per
        // re-split range).
        let missing = data.len() as u64 - peer;
        assert!(
            upstream <= missing + 2 * MIB as u64,
            "upstream fetched {upstream} for {missing} missing bytes: {s}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_pieces_from_a_peer_are_never_cached() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(8 * MIB, 85);
        let digest = up.add_blob(data.clone());
        let a = holder(&up, &digest, &data, |_| {}).await;
        // A starts seeding (its pieces check out), then its file goes bad on disk.
        let t = get(
            &format!("{}/_shoal/v1/blobs/{digest}/torrent", a.url()),
            &[],
        )
        .await;
        assert_eq!(t.status, 200);
        let path = a
            .dir
            .path()
            .join(format!("blobs/sha256/{}/{}", &digest[7..9], &digest[7..]));
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            for mib in 0..8u64 {
                f.write_all_at(b"garbage!", mib * MIB as u64 + 4096)
                    .unwrap();
            }
        }
        let b = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;
        knows(&b, 1).await;
        let r = get(&format!("{}/v2/x/blobs/{digest}", b.url()), &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.body == data, "B served bad bytes");
        committed(&b, 1).await;
        let s = b.stats().await;
        assert_eq!(s["peer_bytes"], 0, "no corrupt piece was accepted: {s}");
        assert!(s["upstream_bytes"].as_u64().unwrap() >= data.len() as u64);
    })
    .await
    .expect("test timed out");
}

/// Nodes pulling the same blob at once trade pieces (they find each other through the
/// holder's tracker and PEX), so the holder uploads well under one copy per puller.
/// (Whether they also diverge enough under real per-link caps is measured by
/// `bench/swarm`'s fan-out, in network namespaces.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pullers_trade_pieces_instead_of_each_taking_a_copy() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(24 * MIB, 86);
        let digest = up.add_blob(data.clone());
        let a = holder(&up, &digest, &data, |c| {
            c.p2p.upload_limit = Some(bytesize::ByteSize::mib(8));
        })
        .await;
        let mut pullers = Vec::new();
        for _ in 0..3 {
            let n = Shoal::start_with(&up.url(), |c| {
                c.peers = vec![a.peer_url()];
                c.p2p.stall_timeout = Duration::from_secs(15);
                c.p2p.download_limit = Some(bytesize::ByteSize::mib(8));
                c.p2p.upload_limit = Some(bytesize::ByteSize::mib(8));
            })
            .await;
            knows(&n, 1).await;
            pullers.push(n);
        }
        let urls: Vec<String> = pullers.iter().map(|n| n.url()).collect();
        let pulls = urls.iter().map(|u| {
            let url = format!("{u}/v2/x/blobs/{digest}");
            async move { get(&url, &[]).await }
        });
        for r in futures_util::future::join_all(pulls).await {
            assert!(r.status == 200 && r.body == data);
        }
        for n in &pullers {
            committed(n, 1).await;
            assert_eq!(n.stats().await["upstream_bytes"], 0);
        }
        // Let the holder's housekeeping count its uploads.
        let counted = eventually(Duration::from_secs(15), async || {
            a.stats().await["seeded_bytes"].as_u64() >= Some(data.len() as u64)
        })
        .await;
        assert!(counted);
        let seeded = a.stats().await["seeded_bytes"].as_u64().unwrap();
        assert!(
            seeded < 2 * data.len() as u64,
            "the holder uploaded {:.1} copies for 3 pullers",
            seeded as f64 / data.len() as f64
        );
    })
    .await
    .expect("test timed out");
}
