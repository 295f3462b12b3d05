//! The LAN as one cache, whatever the timing: boxes in network namespaces, each a real
//! `shoal serve` with its defaults (discovery on, no --peer, catalogs polled every 30 s),
//! and a fake upstream that counts the bytes its CDN sends. Needs root (ip netns).

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;

/// A box pulls a blob a moment after another cached it: no catalog has been polled yet,
/// but the news (or the LAN question) says who holds it, and upstream sends nothing more.
/// (The first pull itself may have been fetched by the blob's LAN owner, another box.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pull_right_after_another_box_cached_it_takes_nothing_from_upstream() {
    let Some(lan) = Lan::or_skip(3, "lan_single_flight") else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = lan.upstream().await;
        let data = blob_bytes(5 * MIB + 3, 101);
        let digest = up.add_blob(data.clone());
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let _nodes: Vec<Node> = (0..3)
            .map(|i| lan.node(i, dirs[i].path(), &up.url()))
            .collect();
        let urls: Vec<String> = (0..3).map(|i| lan.url(i)).collect();
        wait_lan(&urls).await;

        let r = get(&format!("{}/v2/library/x/blobs/{digest}", urls[0]), &[]).await;
        assert!(r.body == data);
        committed(&urls[0], 1).await;
        let sent = up.counts.cdn_bytes.load(SeqCst);

        // At once, two other boxes pull it the way ollama does.
        for url in &urls[1..] {
            let pulled = ollama_blob(url, "library/x", &digest, PullOptions::default())
                .await
                .expect("pull");
            assert!(pulled.data == data);
        }
        let mut from_upstream = 0;
        for url in &urls {
            committed(url, 1).await;
            from_upstream += node_stats(url).await["upstream_bytes"].as_u64().unwrap();
        }
        assert_eq!(
            up.counts.cdn_bytes.load(SeqCst),
            sent,
            "the CDN sent nothing more"
        );
        assert_eq!(
            from_upstream,
            data.len() as u64,
            "the blob crossed once in all"
        );
    })
    .await
    .expect("test timed out");
}

/// Four boxes miss one uncached blob at the same moment: one of them fetches it from
/// upstream, the others stream it from that one as it lands. The CDN sends it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boxes_that_miss_at_once_fetch_from_upstream_once() {
    let Some(lan) = Lan::or_skip(4, "lan_single_flight") else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = lan.upstream().await;
        let data = blob_bytes(24 * MIB + 5, 102);
        let digest = up.add_blob(data.clone());
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let _nodes: Vec<Node> = (0..4)
            .map(|i| lan.node(i, dirs[i].path(), &up.url()))
            .collect();
        let urls: Vec<String> = (0..4).map(|i| lan.url(i)).collect();
        wait_lan(&urls).await;

        let pulls = urls.iter().map(|url| {
            let digest = digest.clone();
            async move { ollama_blob(url, "library/x", &digest, PullOptions::default()).await }
        });
        for p in futures_util::future::join_all(pulls).await {
            assert!(p.expect("pull").data == data);
        }
        let mut from_upstream = 0;
        let (mut fetchers, mut fed) = (Vec::new(), 0);
        for url in &urls {
            committed(url, 1).await;
            let s = node_stats(url).await;
            from_upstream += s["upstream_bytes"].as_u64().unwrap();
            // Each node says where its fill came from.
            let fills = get(&format!("{url}/_shoal/v1/torrents"), &[]).await.json();
            let f = &fills["fills"][0];
            assert_eq!(f["state"], "cached", "{url}: {fills}");
            if f["upstream"] == true {
                fetchers.push(url.clone());
                assert_eq!(s["fills_from_upstream"], 1, "{url}: {s}");
            } else {
                fed += 1;
                assert_eq!(s["fills_from_peers"], 1, "{url}: {s}");
                assert!(
                    f["peers"].as_array().is_some_and(|p| !p.is_empty()),
                    "{fills}"
                );
            }
        }
        assert_eq!(
            fetchers.len(),
            1,
            "one node fetched from upstream: {fetchers:?}"
        );
        assert_eq!(fed, 3);
        let sent = up.counts.cdn_bytes.load(SeqCst);
        // Each box probes upstream for the size (one byte each); the blob crosses once.
        assert!(
            sent <= data.len() as u64 + 64,
            "the CDN sent {sent} bytes for a {} byte blob",
            data.len()
        );
        assert_eq!(from_upstream, data.len() as u64, "one box fetched it");
    })
    .await
    .expect("test timed out");
}

/// The box fetching for the LAN is killed half-way: the others choose a new one among
/// themselves, which fetches only the missing half from upstream; everyone completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fetching_box_dies_and_the_rest_fetch_only_the_missing_part() {
    let Some(lan) = Lan::or_skip(3, "lan_single_flight") else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = lan.upstream().await;
        let size = 16 * MIB;
        let data = blob_bytes(size, 103);
        let digest = up.add_blob(data.clone());
        // Upstream sends the first half, then stalls: the fetching box gets stuck there.
        up.faults
            .lock()
            .unwrap()
            .stall_from
            .insert(digest[7..].to_owned(), (size / 2) as u64);
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes: Vec<Option<Node>> = (0..3)
            .map(|i| Some(lan.node(i, dirs[i].path(), &up.url())))
            .collect();
        let urls: Vec<String> = (0..3).map(|i| lan.url(i)).collect();
        wait_lan(&urls).await;

        // All three pull at once (plain GETs, which stream as bytes land).
        let pulls: Vec<_> = urls
            .iter()
            .map(|url| {
                let url = format!("{url}/v2/library/x/blobs/{digest}");
                tokio::spawn(async move { try_request(http::Method::GET, &url, &[]).await })
            })
            .collect();
        // Wait until the half is in upstream's hands, and find who fetched it.
        let owner = loop {
            let mut found = None;
            for (i, url) in urls.iter().enumerate() {
                if node_stats(url).await["upstream_bytes"].as_u64() >= Some((size / 2) as u64) {
                    found = Some(i);
                }
            }
            if let Some(i) = found {
                break i;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The others have the half too, from the owner.
        for (i, url) in urls.iter().enumerate() {
            if i != owner {
                let got = eventually(Duration::from_secs(20), async || {
                    node_stats(url).await["peer_bytes"].as_u64() >= Some((size / 2) as u64)
                })
                .await;
                assert!(got, "{url} did not get the first half from the owner");
            }
        }
        let sent_before = up.counts.cdn_bytes.load(SeqCst);
        nodes[owner] = None; // SIGKILL
        up.faults.lock().unwrap().stall_from.clear();

        for (i, p) in pulls.into_iter().enumerate() {
            let r = p.await.unwrap();
            if i != owner {
                let r = r.expect("the survivors' clients get the whole blob");
                assert_eq!(r.status, 200);
                assert!(r.body == data, "node {i} got the right bytes");
            }
        }
        let mut from_upstream = 0;
        for (i, url) in urls.iter().enumerate() {
            if i != owner {
                committed(url, 1).await;
                from_upstream += node_stats(url).await["upstream_bytes"].as_u64().unwrap();
            }
        }
        let after = up.counts.cdn_bytes.load(SeqCst) - sent_before;
        assert!(
            after <= (size / 2 + size / 16) as u64,
            "after the owner died the CDN sent {after} bytes; the missing half is {}",
            size / 2
        );
        assert!(
            from_upstream <= (size / 2 + size / 16) as u64,
            "the survivors fetched {from_upstream} bytes from upstream"
        );
    })
    .await
    .expect("test timed out");
}
