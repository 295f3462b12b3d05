//! kill -9 in the middle of a fill: on restart the partial is discarded, complete blobs
//! are intact, and nothing unverified is ever served as complete. Runs the real binary.

mod support;

use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;

async fn stats(url: &str) -> serde_json::Value {
    get(&format!("{url}/_shoal/v1/stats"), &[]).await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_fill_then_restart() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let done = blob_bytes(MIB, 21);
        let done_digest = up.add_blob(done.clone());
        let big = blob_bytes(8 * MIB, 22);
        let big_digest = up.add_blob(big.clone());
        let data = tempfile::tempdir().unwrap();

        let proc1 = spawn_shoal(data.path(), &up.url(), free_port()).await;
        let url = proc1.url.clone();
        let r = get(&format!("{url}/v2/library/x/blobs/{done_digest}"), &[]).await;
        assert_eq!(r.body, done);
        assert!(
            eventually(Duration::from_secs(10), async || stats(&url).await["blobs"]
                == 1)
            .await
        );

        // Every CDN GET of the big blob now sends 1 MiB and hangs: the fill is stuck half way.
        up.faults
            .lock()
            .unwrap()
            .stall
            .insert(big_digest[7..].to_owned(), (1000, MIB as u64));
        let r = get(
            &format!("{url}/v2/library/x/blobs/{big_digest}"),
            &[("range", "bytes=0-1023")],
        )
        .await;
        assert_eq!(&r.body[..], &big[..1024]);
        let partial = data
            .path()
            .join(format!("tmp/{}.partial", &big_digest[7..]));
        assert!(partial.exists(), "a fill is in progress");

        drop(proc1); // SIGKILL

        up.faults.lock().unwrap().stall.clear();
        let proc2 = spawn_shoal(data.path(), &up.url(), free_port()).await;
        let url = proc2.url.clone();
        assert!(!partial.exists(), "the partial was discarded on restart");
        let s = stats(&url).await;
        assert_eq!(s["blobs"], 1, "only the verified blob is complete: {s}");
        let r = get(&format!("{url}/v2/library/x/blobs/{done_digest}"), &[]).await;
        assert_eq!(r.body, done);
        // The interrupted blob is fetched again, whole and right.
        let r = get(&format!("{url}/v2/library/x/blobs/{big_digest}"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, big);
    })
    .await
    .expect("test timed out");
}
