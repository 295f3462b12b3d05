//! The caps an admin sets: `max_cache_size` (least recently used blobs go first; a blob
//! being read stays) and `fetch.rate_limit`.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lru_eviction_spares_blobs_in_use() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let blobs: Vec<(String, Vec<u8>)> = (0..4)
            .map(|i| {
                let b = blob_bytes(16 * MIB, 40 + i);
                (up.add_blob(b.clone()), b)
            })
            .collect();
        let shoal = Shoal::start_with(&up.url(), |c| {
            c.max_cache_size = Some(bytesize::ByteSize::mib(40));
        })
        .await;
        let url = |i: usize| format!("{}/v2/library/x/blobs/{}", shoal.url(), blobs[i].0);
        let cached = async |n: u64| {
            eventually(Duration::from_secs(20), async || {
                shoal.stats().await["blobs"] == n
            })
            .await
        };

        for (i, (_, data)) in blobs.iter().enumerate().take(2) {
            assert_eq!(&get(&url(i), &[]).await.body[..], &data[..]);
        }
        assert!(cached(2).await);

        // Blob 0 (the oldest) is being read by a slow client that holds its response open.
        let mut slow = std::net::TcpStream::connect(shoal.addr()).unwrap();
        write!(
            slow,
            "GET /v2/library/x/blobs/{} HTTP/1.1\r\nHost: x\r\n\r\n",
            blobs[0].0
        )
        .unwrap();
        let mut first = [0u8; 64];
        slow.read_exact(&mut first).unwrap();

        // Blob 2 pushes the cache over 40 MiB: blob 1 goes, not blob 0.
        assert_eq!(get(&url(2), &[]).await.body, blobs[2].1);
        assert!(cached(2).await);
        let stats = shoal.stats().await;
        assert_eq!(stats["evictions"], 1);
        assert!(stats["cache_bytes"].as_u64().unwrap() <= 40 * MIB as u64);
        let before = up.counts.cdn_gets.load(std::sync::atomic::Ordering::SeqCst);
        let r = get(&url(0), &[("range", "bytes=0-9")]).await;
        assert_eq!(&r.body[..], &blobs[0].1[..10]);
        assert_eq!(
            up.counts.cdn_gets.load(std::sync::atomic::Ordering::SeqCst),
            before,
            "blob 0 stayed cached while it was being read"
        );
        drop(slow);

        // Blob 1 was evicted: asking for it fetches it again.
        assert_eq!(get(&url(1), &[]).await.body, blobs[1].1);
        assert!(up.counts.cdn_gets.load(std::sync::atomic::Ordering::SeqCst) > before);
    })
    .await
    .expect("test timed out");
}

/// `fetch.rate_limit` caps upstream fetching: a 4 MiB blob at 1 MiB/s cannot fill in less
/// than about 3 s (a second's allowance is free), whatever the machine; and the stats say
/// the cap, for the dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fetch_rate_limit_caps_upstream() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(4 * MIB, 48);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start_with(&up.url(), |c| {
            c.fetch.rate_limit = Some(bytesize::ByteSize::mib(1));
        })
        .await;
        let t0 = std::time::Instant::now();
        let r = get(&format!("{}/v2/library/x/blobs/{digest}", shoal.url()), &[]).await;
        let took = t0.elapsed();
        assert_eq!(r.body, data);
        assert!(
            took >= Duration::from_millis(2500),
            "4 MiB at 1 MiB/s in {took:?}"
        );
        let stats = shoal.stats().await;
        assert_eq!(stats["caps"]["fetch_rate_limit"], MIB as u64, "{stats}");
        assert_eq!(stats["caps"]["p2p_upload_limit"], serde_json::Value::Null);
    })
    .await
    .expect("test timed out");
}
