//! kill -9 in the middle of a fill: on restart the partial is discarded, complete blobs
//! are intact, and nothing unverified is ever served as complete. Runs the real binary.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn_shoal(data: &Path, upstream: &str) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--upstream", upstream])
        .env("SHOAL_FETCH__STALL_TIMEOUT", "2s")
        .env("SHOAL_FETCH__MIN_SPAN", "256KiB")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("shoal binary runs");
    let url = format!("http://127.0.0.1:{port}");
    let ready = eventually(Duration::from_secs(20), async || {
        try_request(http::Method::GET, &format!("{url}/_shoal/v1/health"), &[])
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(ready, "shoal did not become healthy");
    (Proc(child), url)
}

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

        let (proc1, url) = spawn_shoal(data.path(), &up.url()).await;
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
        let (_proc2, url) = spawn_shoal(data.path(), &up.url()).await;
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
