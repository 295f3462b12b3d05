//! A fill interrupted by kill -9 or SIGTERM resumes on restart: the bytes it had are
//! re-checked and kept, only the rest is fetched, and nothing unverified is ever served
//! as complete. Runs the real binary; counts bytes as the fake CDN sent them.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;
/// The blob in these tests: 16 pieces of 1 MiB (the torrent rule for this size).
const SIZE: usize = 16 * MIB;

async fn stats(url: &str) -> serde_json::Value {
    get(&format!("{url}/_shoal/v1/stats"), &[]).await.json()
}

fn journal_records(data: &Path, hex: &str) -> u64 {
    let len = std::fs::metadata(data.join(format!("tmp/{hex}.journal")))
        .map(|m| m.len())
        .unwrap_or(0);
    len.saturating_sub(32) / 36
}

/// Starts a fill that can only get the bytes before `stop_at`, and waits until `pieces`
/// pieces are in its journal. Returns the running process.
async fn fill_up_to(
    up: &FakeUpstream,
    data: &Path,
    digest: &str,
    stop_at: u64,
    pieces: u64,
) -> ShoalProcess {
    let hex = &digest[7..];
    up.faults
        .lock()
        .unwrap()
        .stall_from
        .insert(hex.to_owned(), stop_at);
    let p = spawn_shoal(data, &up.url(), free_port()).await;
    // A reader that waits for the first KiB starts the fill; it does not wait for the rest.
    let r = get(
        &format!("{}/v2/library/x/blobs/{digest}", p.url),
        &[("range", "bytes=0-1023")],
    )
    .await;
    assert_eq!(r.status, 206);
    let journaled = eventually(Duration::from_secs(30), async || {
        journal_records(data, hex) >= pieces
    })
    .await;
    assert!(
        journaled,
        "the journal holds {} records, not {pieces}",
        journal_records(data, hex)
    );
    p
}

/// Restarts with the fault gone and pulls the whole blob; returns what the CDN sent in all.
/// `blobs` is how many complete blobs the data dir holds after it.
async fn resume(up: &FakeUpstream, data: &Path, digest: &str, blob: &[u8], blobs: u64) -> u64 {
    up.faults.lock().unwrap().stall_from.clear();
    let p = spawn_shoal(data, &up.url(), free_port()).await;
    let r = get(&format!("{}/v2/library/x/blobs/{digest}", p.url), &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body == blob, "the resumed blob is the right one");
    assert!(
        eventually(Duration::from_secs(10), async || stats(&p.url).await
            ["blobs"]
            == blobs)
        .await
    );
    assert!(!data.join(format!("tmp/{}.partial", &digest[7..])).exists());
    up.counts.cdn_bytes.load(SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_several_points_then_resume() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        for (i, &quarter_eighths) in [2usize, 4, 7].iter().enumerate() {
            let up = FakeUpstream::start().await;
            let blob = blob_bytes(SIZE, 30 + i as u64);
            let digest = up.add_blob(blob.clone());
            let dir = tempfile::tempdir().unwrap();
            // Killed once `eighths`/8 of the blob is in and journaled.
            let stop_at = (SIZE / 8 * quarter_eighths) as u64;
            let p = fill_up_to(&up, dir.path(), &digest, stop_at, stop_at / MIB as u64).await;
            drop(p); // SIGKILL

            let sent = resume(&up, dir.path(), &digest, &blob, 1).await;
            let ratio = sent as f64 / SIZE as f64;
            assert!(
                ratio <= 1.1,
                "killed at {quarter_eighths}/8: the CDN sent {ratio:.3} of the blob"
            );
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_fill_keeps_every_byte() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let blob = blob_bytes(SIZE, 40);
        let digest = up.add_blob(blob.clone());
        let dir = tempfile::tempdir().unwrap();
        // Not on a piece boundary: the piece in progress is kept too.
        let stop_at = (SIZE / 2 + 300_000) as u64;
        let mut p = fill_up_to(&up, dir.path(), &digest, stop_at, 8).await;
        let term = std::process::Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let exited = eventually(Duration::from_secs(20), async || {
            p.child.try_wait().unwrap().is_some()
        })
        .await;
        assert!(exited, "shoal stops on SIGTERM");
        drop(p);

        let sent = resume(&up, dir.path(), &digest, &blob, 1).await;
        let ratio = sent as f64 / SIZE as f64;
        assert!(ratio <= 1.02, "the CDN sent {ratio:.3} of the blob");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotten_byte_in_a_kept_partial_is_fetched_again() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let done = blob_bytes(MIB, 21);
        let done_digest = up.add_blob(done.clone());
        let blob = blob_bytes(SIZE, 41);
        let digest = up.add_blob(blob.clone());
        let dir = tempfile::tempdir().unwrap();
        {
            // A complete blob first: it must come through the crash intact.
            let p = spawn_shoal(dir.path(), &up.url(), free_port()).await;
            let r = get(&format!("{}/v2/library/x/blobs/{done_digest}", p.url), &[]).await;
            assert_eq!(r.body, done);
            assert!(
                eventually(Duration::from_secs(10), async || stats(&p.url).await
                    ["blobs"]
                    == 1)
                .await
            );
        }
        let before = up.counts.cdn_bytes.load(SeqCst);
        let p = fill_up_to(&up, dir.path(), &digest, (SIZE / 2) as u64, 8).await;
        drop(p); // SIGKILL

        // A byte of a journaled piece rots while shoal is down.
        let partial = dir.path().join(format!("tmp/{}.partial", &digest[7..]));
        let mut bytes = std::fs::read(&partial).unwrap();
        bytes[3 * MIB + 5] ^= 0x40;
        std::fs::write(&partial, &bytes).unwrap();

        let p = spawn_shoal(dir.path(), &up.url(), free_port()).await;
        let s = stats(&p.url).await;
        assert_eq!(s["blobs"], 1, "only the verified blob is complete: {s}");
        let r = get(&format!("{}/v2/library/x/blobs/{done_digest}", p.url), &[]).await;
        assert_eq!(r.body, done);
        drop(p);
        up.counts.cdn_bytes.fetch_sub(before, SeqCst);
        let sent = resume(&up, dir.path(), &digest, &blob, 2).await;
        // The blob once, plus the rotten piece fetched again.
        assert!(
            sent <= (SIZE + MIB) as u64 + 64 * 1024,
            "the CDN sent {sent} bytes"
        );
    })
    .await
    .expect("test timed out");
}
