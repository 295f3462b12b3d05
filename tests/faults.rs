//! An upstream that lies, stalls, expires its URLs or goes away: shoal never caches bad
//! bytes, switches before ollama's 30 s stall timer, and keeps serving what it has.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use support::*;

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_upstream_blob_is_never_cached() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(3 * MIB, 11)]);
        up.add_model("library/bad", "1", &m);
        let hex = m.layer_digest(0)[7..].to_owned();
        let mut bad = m.layers[0].to_vec();
        bad[MIB] ^= 0xff;
        up.faults.lock().unwrap().corrupt.insert(hex.clone(), bad);
        let shoal = Shoal::start(&up.url()).await;

        // ollama's own check fails; shoal caches nothing.
        let err = ollama_pull(&shoal.url(), "library/bad", "1", PullOptions::default())
            .await
            .unwrap_err();
        assert!(err.contains("digest mismatch"), "{err}");
        let failed = eventually(Duration::from_secs(10), async || {
            shoal.stats().await["fills_failed"] == 1
        })
        .await;
        assert!(failed, "the fill failed its digest check");
        let stats = shoal.stats().await;
        assert_eq!(stats["blobs"], 0);

        // A plain GET never completes with the bad bytes: the body is cut short.
        let url = format!("{}/v2/library/bad/blobs/{}", shoal.url(), m.layer_digest(0));
        let r = try_request(http::Method::GET, &url, &[]).await;
        assert!(
            r.is_err(),
            "whole-blob GET of a corrupt blob must not complete"
        );
        assert!(
            eventually(Duration::from_secs(10), async || shoal.stats().await
                ["fills_failed"]
                == 2)
            .await
        );
        assert_eq!(shoal.stats().await["blobs"], 0);
        assert!(
            !std::fs::read_dir(shoal.dir.path().join("tmp"))
                .unwrap()
                .any(|_| true),
            "the partial file is removed"
        );

        // Once upstream is fixed, the next pull fetches afresh and succeeds.
        up.faults.lock().unwrap().corrupt.clear();
        let pull = ollama_pull(&shoal.url(), "library/bad", "1", PullOptions::default())
            .await
            .expect("pull after the fix");
        assert_eq!(pull.blobs[0].data, m.layers[0]);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_upstream_ranges_are_refetched() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(4 * MIB, 12)]);
        up.add_model("library/slow", "1", &m);
        let hex = m.layer_digest(0)[7..].to_owned();
        // The first three CDN GETs (the probe is one) send a little and then hang.
        up.faults.lock().unwrap().stall.insert(hex, (3, 200_000));
        let shoal = Shoal::start(&up.url()).await;

        let t = Instant::now();
        let pull = ollama_pull(&shoal.url(), "library/slow", "1", PullOptions::default())
            .await
            .expect("pull despite stalls");
        assert_eq!(pull.blobs[0].data, m.layers[0]);
        // Test config: stall_timeout 2s. Well under ollama's 30 s.
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "took {:?}",
            t.elapsed()
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_presigned_urls_are_refreshed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(2 * MIB, 13);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start(&up.url()).await;
        let url = format!("{}/v2/library/x/blobs/{digest}", shoal.url());

        // The HEAD caches a location; then every URL issued so far expires.
        assert_eq!(head(&url, &[]).await.status, 200);
        up.expire_signatures();
        let r = get(&url, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, data);
        assert!(
            up.counts.refused_sigs.load(SeqCst) >= 1,
            "the old URL was tried and refused"
        );
        assert_eq!(up.counts.blob_redirects.load(SeqCst), 2, "one refresh");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_with_upstream_down_still_serves_the_cache() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(2 * MIB, 14), blob_bytes(1000, 15)]);
        up.add_model("library/kept", "7b", &m);
        let shoal = Shoal::start(&up.url()).await;
        ollama_pull(&shoal.url(), "library/kept", "7b", PullOptions::default())
            .await
            .expect("first pull");
        assert!(
            eventually(Duration::from_secs(10), async || shoal.stats().await
                ["blobs"]
                == 3)
            .await
        );
        let served_before = shoal.stats().await["served_bytes"].as_u64().unwrap();
        let dir = shoal.stop().await;
        // The upstream goes away (same address, connections refused).
        let upstream_url = up.url();
        drop(up);

        // Same data dir, upstream gone, and a TTL so short that every tag revalidates.
        let shoal = Shoal::start_in(dir, &upstream_url, |c| {
            c.manifests.tag_ttl = Duration::from_millis(1);
        })
        .await;
        let pull = ollama_pull(&shoal.url(), "library/kept", "7b", PullOptions::default())
            .await
            .expect("pull while upstream is down");
        assert_eq!(pull.manifest, m.manifest);
        assert_eq!(pull.blobs[0].data, m.layers[0]);
        let stats = shoal.stats().await;
        assert_eq!(stats["manifest_stale"], 1);
        assert_eq!(stats["blobs"], 3);
        assert!(
            stats["served_bytes"].as_u64().unwrap() > served_before,
            "counters persist across restarts"
        );

        // What was never cached fails clearly: 502 with an OCI body, empty when ranged.
        let r = get(
            &format!("{}/v2/library/other/manifests/1", shoal.url()),
            &[("user-agent", OLLAMA_UA)],
        )
        .await;
        assert_eq!(r.status, 502);
        assert_eq!(r.oci_code(), "UNAVAILABLE");
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = get(&format!("{}/v2/library/other/blobs/{d}", shoal.url()), &[]).await;
        assert_eq!(r.status, 502);
        let r = get(
            &format!("{}/v2/library/other/blobs/{d}", shoal.url()),
            &[("range", "bytes=0-99")],
        )
        .await;
        assert_eq!(r.status, 502);
        assert!(r.body.is_empty());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_registry_gets_stale_manifests() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        up.add_manifest("library/s", "1", r#"{"schemaVersion":2,"layers":[]}"#);
        let shoal = Shoal::start_with(&up.url(), |c| {
            c.manifests.tag_ttl = Duration::from_millis(1);
        })
        .await;
        let url = format!("{}/v2/library/s/manifests/1", shoal.url());
        let ua = [("user-agent", OLLAMA_UA), ("accept", OLLAMA_ACCEPT)];
        assert_eq!(get(&url, &ua).await.status, 200);
        up.faults.lock().unwrap().registry_503 = true;
        let r = get(&url, &ua).await;
        assert_eq!(r.status, 200, "stale-if-error");
        assert_eq!(&r.body[..], br#"{"schemaVersion":2,"layers":[]}"#);
        // A tag never seen has nothing to fall back on.
        let r = get(&format!("{}/v2/library/s/manifests/2", shoal.url()), &ua).await;
        assert_eq!(r.status, 502);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manifest_that_does_not_match_its_digest_is_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let body = r#"{"schemaVersion":2}"#;
        let claimed = format!("sha256:{}", "cd".repeat(32));
        up.add_manifest("library/liar", "1", body);
        up.content
            .lock()
            .unwrap()
            .repos
            .get_mut("library/liar")
            .unwrap()
            .manifests
            .insert(claimed.clone(), bytes::Bytes::from(body));
        let shoal = Shoal::start(&up.url()).await;
        let r = get(
            &format!("{}/v2/library/liar/manifests/{claimed}", shoal.url()),
            &[("user-agent", OLLAMA_UA)],
        )
        .await;
        assert_eq!(r.status, 502);
        assert!(String::from_utf8_lossy(&r.body).contains("hashes to"));
        assert!(
            !String::from_utf8_lossy(&r.body).contains("127.0.0."),
            "no upstream URLs"
        );
        // By its real digest it is fine, and carries Docker-Content-Digest.
        let real = format!("sha256:{}", sha256_hex(body.as_bytes()));
        let r = get(
            &format!("{}/v2/library/liar/manifests/{real}", shoal.url()),
            &[("user-agent", OLLAMA_UA)],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("docker-content-digest"), Some(real.as_str()));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_stops_running_fills() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let digest = up.add_blob(blob_bytes(8 * MIB, 16));
        // A slow fill: every CDN GET sends 100 KB and hangs.
        up.faults
            .lock()
            .unwrap()
            .stall
            .insert(digest[7..].to_owned(), (1000, 100_000));
        let shoal = Shoal::start(&up.url()).await;
        let r = get(
            &format!("{}/v2/library/x/blobs/{digest}", shoal.url()),
            &[("range", "bytes=0-1023")],
        )
        .await;
        assert_eq!(r.status, 206);
        assert_eq!(shoal.stats().await["fills_running"], 1);

        let t = Instant::now();
        let dir = shoal.stop().await;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "stop took {:?}",
            t.elapsed()
        );
        // Nothing of the fill is left running: upstream sees no more requests ...
        let gets = up.counts.cdn_gets.load(SeqCst);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            up.counts.cdn_gets.load(SeqCst),
            gets,
            "a fill kept fetching after stop"
        );
        // ... and the data dir is free again, with no partial left.
        up.faults.lock().unwrap().stall.clear();
        let shoal = Shoal::start_in(dir, &up.url(), |_| {}).await;
        assert_eq!(shoal.stats().await["blobs"], 0);
        let r = get(&format!("{}/v2/library/x/blobs/{digest}", shoal.url()), &[]).await;
        assert_eq!(r.status, 200);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_that_ignores_range_is_streamed_front_to_back() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        up.faults.lock().unwrap().ignore_range = true;
        let m = Model::new(vec![blob_bytes(3 * MIB, 17)]);
        up.add_model("library/norange", "1", &m);
        let shoal = Shoal::start(&up.url()).await;
        let pull = ollama_pull(&shoal.url(), "library/norange", "1", PullOptions::default())
            .await
            .expect("pull from an upstream without Range support");
        assert_eq!(pull.blobs[0].data, m.layers[0]);
        assert!(
            pull.blobs[0].part_statuses.iter().all(|s| *s == 206),
            "shoal still serves ranges"
        );
        assert!(
            eventually(Duration::from_secs(10), async || shoal.stats().await
                ["blobs"]
                == 2)
            .await
        );
    })
    .await
    .expect("test timed out");
}

/// A data dir on a 4 MiB tmpfs: a bigger blob fails with 507 and a clear message, nothing is
/// cached, no partial is left, and what fits still works. Needs root (for mount).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disk_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("full_disk_fails_cleanly: SKIPPED, cannot mount a tmpfs (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(dir.path().to_owned());
    let data = dir.path().join("data");
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let big = up.add_blob(blob_bytes(6 * MIB, 18));
        let small_bytes = blob_bytes(100_000, 19);
        let small = up.add_blob(small_bytes.clone());
        let mut cfg = test_config(&up.url(), data.clone());
        cfg.fetch.give_up_after = Duration::from_secs(5);
        let app = shoal::app::start(cfg).await.unwrap();
        let base = format!("http://{}", app.local_addr());

        // Space is allocated before any byte is fetched: a clear 507 before any header.
        let r = get(&format!("{base}/v2/library/x/blobs/{big}"), &[]).await;
        assert_eq!(r.status, 507);
        let msg = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(msg.contains("disk is full"), "{msg}");
        let r = get(
            &format!("{base}/v2/library/x/blobs/{big}"),
            &[("range", "bytes=0-99")],
        )
        .await;
        assert_eq!(r.status, 507);
        assert!(r.body.is_empty(), "no error body on a ranged GET");
        let stats = get(&format!("{base}/_shoal/v1/stats"), &[]).await.json();
        assert_eq!(stats["blobs"], 0);
        assert_eq!(stats["fills_failed"], 2);
        assert!(
            !std::fs::read_dir(data.join("tmp")).unwrap().any(|_| true),
            "no partial left"
        );
        // A blob that fits is still served and cached.
        let r = get(&format!("{base}/v2/library/x/blobs/{small}"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, small_bytes);
        app.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}
