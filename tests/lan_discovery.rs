//! Two shoal boxes on one LAN, set up with nothing but their defaults: each in its own
//! network namespace, joined by a bridge. The second finds the first by multicast
//! discovery alone (no --peer) and pulls the blob the first cached without the internet.
//! Needs root (ip netns); multicast stays on the test's own bridge.

mod support;

use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_boxes_find_each_other_and_share_a_blob() {
    let Some(lan) = Lan::or_skip(2, "lan_discovery") else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = lan.upstream().await;
        let data = blob_bytes(6 * MIB + 9, 91);
        let digest = up.add_blob(data.clone());

        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let _a = lan.node(0, da.path(), &up.url());
        let _b = lan.node(1, db.path(), &up.url());
        let (a, b) = (lan.url(0), lan.url(1));
        for url in [&a, &b] {
            let up = eventually(Duration::from_secs(20), async || {
                try_request(http::Method::GET, &format!("{url}/_shoal/v1/health"), &[])
                    .await
                    .is_ok_and(|r| r.status == 200)
            })
            .await;
            assert!(up, "{url} did not start");
        }

        // A caches the blob from upstream.
        let r = get(&format!("{a}/v2/library/x/blobs/{digest}"), &[]).await;
        assert!(r.body == data);

        // B finds A by multicast alone, and learns what it holds.
        let found = eventually(Duration::from_secs(30), async || {
            let v = get(&format!("{b}/_shoal/v1/peers"), &[]).await.json();
            v["peers"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["url"] == a.as_str() && p["source"] == "discovered" && p["blobs"] == 1
                })
            })
        })
        .await;
        assert!(
            found,
            "B never discovered A: {}",
            get(&format!("{b}/_shoal/v1/peers"), &[]).await.json()
        );

        // B pulls it without the internet. (When A cached it, the LAN's tree may have
        // had B fetch it from upstream for A: either way the blob crossed once.)
        let cdn_before = up.counts.cdn_gets.load(std::sync::atomic::Ordering::SeqCst);
        let pulled = ollama_blob(&b, "library/x", &digest, PullOptions::default())
            .await
            .expect("B pulls");
        assert!(pulled.data == data);
        assert_eq!(
            up.counts.cdn_gets.load(std::sync::atomic::Ordering::SeqCst),
            cdn_before
        );
        let (sa, sb) = (
            get(&format!("{a}/_shoal/v1/stats"), &[]).await.json(),
            get(&format!("{b}/_shoal/v1/stats"), &[]).await.json(),
        );
        let from_upstream =
            sa["upstream_bytes"].as_u64().unwrap() + sb["upstream_bytes"].as_u64().unwrap();
        assert_eq!(from_upstream, data.len() as u64, "A: {sa}\nB: {sb}");
    })
    .await
    .expect("test timed out");
}
