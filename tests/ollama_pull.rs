//! ollama's pull through shoal: cold, warm, and many at once.

mod support;

use std::sync::atomic::Ordering::SeqCst;

use support::*;

const MIB: usize = 1 << 20;

fn model() -> Model {
    Model::new(vec![blob_bytes(6 * MIB + 12345, 1), blob_bytes(300_000, 2)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_then_warm_pull() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = model();
        up.add_model("library/granite-code", "8b", &m);
        let shoal = Shoal::start(&up.url()).await;
        let total: usize = m.layers.iter().map(|l| l.len()).sum::<usize>() + m.config.len();

        let pull = ollama_pull(
            &shoal.url(),
            "library/granite-code",
            "8b",
            PullOptions::default(),
        )
        .await
        .expect("cold pull");
        assert_eq!(pull.manifest, m.manifest, "manifest must be byte-identical");
        assert_eq!(pull.blobs.len(), 3);
        assert_eq!(pull.blobs[0].data, m.layers[0]);
        assert_eq!(pull.blobs[1].data, m.layers[1]);
        assert_eq!(pull.blobs[2].data, m.config);
        for b in &pull.blobs {
            assert_eq!(
                b.direct_status, 200,
                "direct-URL step answers 200 + Location"
            );
            assert!(
                b.part_statuses.iter().all(|s| *s == 206),
                "{:?}",
                b.part_statuses
            );
        }
        assert!(
            pull.blobs[0].part_statuses.len() >= 16,
            "split like ollama does"
        );

        // One fill per blob, each asking the registry once. Bytes received may exceed the
        // blob by up to one socket read per re-split of an in-flight range.
        let stats = shoal.stats().await;
        assert_eq!(up.counts.blob_redirects.load(SeqCst), 3);
        assert_eq!(stats["fills_started"], 3);
        let received = stats["upstream_bytes"].as_u64().unwrap() as usize;
        assert!(
            received >= total && received < total * 3 / 2,
            "{received} for {total}"
        );
        // Ranged readers do not wait for verification, so the last commit may trail the pull.
        assert!(
            eventually(std::time::Duration::from_secs(10), async || shoal
                .stats()
                .await["blobs"]
                == 3)
            .await
        );
        let stats = shoal.stats().await;
        assert_eq!(stats["cache_bytes"], total as u64);
        assert_eq!(stats["manifest_misses"], 1);

        // Warm: nothing goes upstream for blobs, and the manifest is fresh.
        let before = up.counts.cdn_gets.load(SeqCst);
        let manifests_before = up.counts.manifest_gets.load(SeqCst);
        let pull = ollama_pull(
            &shoal.url(),
            "library/granite-code",
            "8b",
            PullOptions::default(),
        )
        .await
        .expect("warm pull");
        assert_eq!(pull.blobs[0].data, m.layers[0]);
        assert_eq!(up.counts.cdn_gets.load(SeqCst), before);
        assert_eq!(up.counts.manifest_gets.load(SeqCst), manifests_before);
        let stats = shoal.stats().await;
        assert!(stats["blob_hits"].as_u64().unwrap() >= 17, "{stats}");
        assert_eq!(stats["manifest_hits"], 1);
        assert_eq!(stats["upstream_bytes"], received as u64);
        assert!(stats["served_bytes"].as_u64().unwrap() >= 2 * total as u64);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cold_pulls_fetch_once() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let m = Model::new(vec![blob_bytes(12 * MIB, 3)]);
        up.add_model("library/tiny", "1b", &m);
        let shoal = Shoal::start(&up.url()).await;
        let total = m.layers[0].len() + m.config.len();

        let base = shoal.url();
        let pulls =
            (0..6).map(|_| ollama_pull(&base, "library/tiny", "1b", PullOptions::default()));
        for p in futures_util::future::join_all(pulls).await {
            let p = p.expect("pull");
            assert_eq!(p.blobs[0].data, m.layers[0]);
        }
        let stats = shoal.stats().await;
        assert_eq!(stats["fills_started"], 2, "one fill per blob for six pulls");
        assert_eq!(up.counts.blob_redirects.load(SeqCst), 2);
        let received = stats["upstream_bytes"].as_u64().unwrap() as usize;
        assert!(
            received < total * 3 / 2,
            "{received} bytes received for {total}: fills were not shared"
        );
        assert_eq!(
            up.counts.manifest_gets.load(SeqCst),
            1,
            "one manifest revalidation for six simultaneous pulls"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fill_survives_the_client_that_started_it() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(8 * MIB, 9);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start(&up.url()).await;

        // Ask for one small range and leave: the whole blob still gets cached.
        let r = get(
            &format!("{}/v2/library/x/blobs/{digest}", shoal.url()),
            &[("range", "bytes=0-1023")],
        )
        .await;
        assert_eq!(r.status, 206);
        assert_eq!(&r.body[..], &data[..1024]);
        let cached = eventually(std::time::Duration::from_secs(20), async || {
            shoal.stats().await["blobs"] == 1
        })
        .await;
        assert!(cached, "the fill finished without any client");
        let r = get(&format!("{}/v2/library/x/blobs/{digest}", shoal.url()), &[]).await;
        assert_eq!(r.body, data);
    })
    .await
    .expect("test timed out");
}

/// Every blob GET without Range gets the whole body (and a Location), whatever the
/// User-Agent: ollama ≥ 0.40 reads blobs whole with an `ollama/` User-Agent too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_blob_gets_carry_the_body_whatever_the_user_agent() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(3 * (1 << 20) + 5, 141);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start(&up.url()).await;
        let path = format!("/v2/library/x/blobs/{digest}");
        for ua in [
            "ollama/0.40.1 (amd64 linux) Go/go1.22.5",
            "ollama-transfer/1.0",
            "curl/8",
        ] {
            let r = get(&format!("{}{path}", shoal.url()), &[("user-agent", ua)]).await;
            assert_eq!(r.status, 200, "{ua}");
            assert_eq!(r.header("location"), Some(path.as_str()), "{ua}");
            assert_eq!(
                r.header("content-length"),
                Some(data.len().to_string().as_str())
            );
            assert!(r.body == data, "{ua}: the whole body");
        }
    })
    .await
    .expect("test timed out");
}
