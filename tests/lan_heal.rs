//! A LAN that heals: a holder's copy of a blob rots on disk, and another box pulls that
//! blob right after. Boxes in network namespaces, each a real `shoal serve` with its
//! defaults (discovery on, no --peer). Needs root (ip netns).

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;

/// The puller's client gets the right bytes without a stall; the holder finds its copy
/// bad, drops it, tells the LAN, and mends only its bad piece; both end with sound copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotten_holder_and_its_puller_both_end_sound() {
    let Some(lan) = Lan::or_skip(2, "lan_heal") else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = lan.upstream().await;
        let data = blob_bytes(6 * MIB + 5, 111);
        let digest = up.add_blob(data.clone());
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let spawn = |i: usize| lan.node(i, dirs[i].path(), &up.url());
        let urls: Vec<String> = (0..2).map(|i| lan.url(i)).collect();

        // The first box caches the blob alone (with two, the blob's LAN owner could be the
        // other one, which would then hold it too).
        let _first = spawn(0);
        wait_lan(&urls[..1]).await;
        let r = get(&format!("{}/v2/library/x/blobs/{digest}", urls[0]), &[]).await;
        assert!(r.body == data);
        committed(&urls[0], 1).await;
        let _second = spawn(1);
        wait_lan(&urls).await;
        let sent = up.counts.cdn_bytes.load(SeqCst);

        // Rot in the holder's copy, as a failing disk leaves it.
        let hex = &digest[7..];
        let file = dirs[0]
            .path()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex);
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&file)
                .unwrap();
            let mut b = [0u8];
            f.read_exact_at(&mut b, 3 * MIB as u64).unwrap();
            f.write_all_at(&[!b[0]], 3 * MIB as u64).unwrap();
        }

        // The other box pulls it as ollama does: whole and right, with no stall.
        let pulled = ollama_blob(&urls[1], "library/x", &digest, PullOptions::default())
            .await
            .expect("the pull succeeds");
        assert!(pulled.data == data, "the right bytes");

        // Both end holding it sound, the holder having dropped and mended its copy.
        let sound = eventually(Duration::from_secs(60), async || {
            let (a, b) = (node_stats(&urls[0]).await, node_stats(&urls[1]).await);
            a["blobs"] == 1
                && b["blobs"] == 1
                && a["fills_running"] == 0
                && std::fs::read(&file).is_ok_and(|f| f == data)
        })
        .await;
        let a = node_stats(&urls[0]).await;
        assert!(sound, "holder: {a}");
        assert_eq!(a["damaged_blobs"], 1, "{a}");
        for url in &urls {
            let r = get(&format!("{url}/v2/library/x/blobs/{digest}"), &[]).await;
            assert!(r.body == data, "{url} serves it whole");
        }
        // The puller, turned away by the holder, may fetch it whole from upstream while
        // the holder mends its one bad piece (1 MiB) at the same moment: no more than that
        // (and a fill's first probe of a few bytes).
        let more = up.counts.cdn_bytes.load(SeqCst) - sent;
        assert!(
            more <= (data.len() + MIB + 1024) as u64,
            "upstream sent {more} bytes more for a {}-byte blob",
            data.len()
        );
    })
    .await
    .expect("test timed out");
}
