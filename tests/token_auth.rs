//! Docker-style registries answer 401 with a Bearer challenge; shoal fetches an anonymous
//! token, retries, reuses the token, and never sends it to the CDN.

mod support;

use std::sync::atomic::Ordering::SeqCst;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_bearer_tokens() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        up.faults.lock().unwrap().require_token = true;
        let m = Model::new(vec![blob_bytes(1 << 20, 31)]);
        up.add_model("library/private", "1", &m);
        let shoal = Shoal::start(&up.url()).await;

        let pull = ollama_pull(&shoal.url(), "library/private", "1", PullOptions::default())
            .await
            .expect("pull through a token-protected registry");
        assert_eq!(pull.manifest, m.manifest);
        assert_eq!(pull.blobs[0].data, m.layers[0]);
        assert_eq!(
            up.counts.token_requests.load(SeqCst),
            1,
            "one token per repository, reused"
        );
        assert_eq!(
            up.counts.cdn_auth_headers.load(SeqCst),
            0,
            "no credentials to the CDN"
        );
    })
    .await
    .expect("test timed out");
}
