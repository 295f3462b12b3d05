//! Nodes learn what their peers hold from each other's catalogs; a swarm key keeps boxes
//! outside the swarm from reading them.

mod support;

use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;

async fn peer_state(node: &Shoal) -> serde_json::Value {
    get(&format!("{}/_shoal/v1/peers", node.url()), &[])
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogs_are_exchanged() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(2 * MIB, 71);
        let digest = up.add_blob(data.clone());
        let a = Shoal::start(&up.url()).await;
        let b = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;

        // A caches a blob; B learns it from A's catalog.
        assert_eq!(
            get(&format!("{}/v2/x/blobs/{digest}", a.url()), &[])
                .await
                .body,
            data
        );
        let learned = eventually(Duration::from_secs(10), async || {
            peer_state(&b).await["peers"][0]["blobs"] == 1
        })
        .await;
        assert!(learned, "{}", peer_state(&b).await);
        let p = &peer_state(&b).await["peers"][0];
        assert_eq!(p["url"], a.url());
        assert_eq!(p["source"], "static");
        let a_bt = a.app.as_ref().unwrap().swarm().listen_addr();
        assert_eq!(p["bt_addr"], a_bt.to_string());
        assert_eq!(p["node_id"], peer_state(&a).await["node_id"]);

        // A's catalog itself.
        let cat = get(&format!("{}/_shoal/v1/catalog", a.url()), &[])
            .await
            .json();
        assert_eq!(cat["blobs"][0]["digest"], digest);
        assert_eq!(cat["blobs"][0]["size"], data.len());
        assert_eq!(cat["blobs"][0]["infohash"].as_str().unwrap().len(), 40);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swarm_key_gates_catalog_torrent_and_tracker() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(MIB, 72);
        let digest = up.add_blob(data.clone());
        let key = "lan-swarm-key-1";
        let a = Shoal::start_with(&up.url(), |c| c.p2p.swarm_key = Some(key.into())).await;
        assert_eq!(
            get(&format!("{}/v2/x/blobs/{digest}", a.url()), &[])
                .await
                .status,
            200
        );

        for path in [
            "/_shoal/v1/catalog".to_owned(),
            format!("/_shoal/v1/blobs/{digest}/torrent"),
        ] {
            let r = get(&format!("{}{path}", a.url()), &[]).await;
            assert_eq!((r.status, r.oci_code().as_str()), (403, "DENIED"), "{path}");
            let r = get(
                &format!("{}{path}", a.url()),
                &[("x-shoal-swarm-key", "wrong-key-00")],
            )
            .await;
            assert_eq!(r.status, 403, "{path}");
            let r = get(&format!("{}{path}", a.url()), &[("x-shoal-swarm-key", key)]).await;
            assert_eq!(r.status, 200, "{path}");
        }
        // The .torrent names the keyed tracker; the bare one refuses.
        let t = get(
            &format!("{}/_shoal/v1/blobs/{digest}/torrent", a.url()),
            &[("x-shoal-swarm-key", key)],
        )
        .await;
        assert!(String::from_utf8_lossy(&t.body).contains(&format!("/announce/{key}")));
        let r = get(&format!("{}/announce?info_hash=x", a.url()), &[]).await;
        assert!(String::from_utf8_lossy(&r.body).contains("swarm key"));

        // Registry pulls never need the key.
        assert_eq!(
            get(&format!("{}/v2/x/blobs/{digest}", a.url()), &[])
                .await
                .status,
            200
        );

        // A peer without the key is refused; one with it gets the catalog.
        let outsider = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;
        let member = Shoal::start_with(&up.url(), |c| {
            c.peers = vec![a.peer_url()];
            c.p2p.swarm_key = Some(key.into());
        })
        .await;
        assert!(
            eventually(Duration::from_secs(10), async || {
                peer_state(&member).await["peers"][0]["blobs"] == 1
            })
            .await
        );
        assert!(
            eventually(Duration::from_secs(10), async || {
                peer_state(&outsider).await["peers"][0]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("403"))
            })
            .await,
            "{}",
            peer_state(&outsider).await
        );
        assert_eq!(peer_state(&outsider).await["peers"][0]["blobs"], 0);
    })
    .await
    .expect("test timed out");
}

/// A holder whose copy rotted drops it when it finds out (here: a peer asks for its
/// torrent and the piece check fails): it answers 404, and tells its peers at once that
/// it no longer holds the blob (B polls catalogs only hourly here, so only news can).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotten_holder_drops_the_blob_and_tells_its_peers() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(2 * MIB, 72);
        let digest = up.add_blob(data.clone());
        let hourly = Duration::from_secs(3600);
        let b = Shoal::start_with(&up.url(), |c| c.p2p.catalog_interval = hourly).await;
        let a = Shoal::start_with(&up.url(), |c| {
            c.peers = vec![b.peer_url()];
            c.p2p.catalog_interval = hourly;
        })
        .await;
        let blob_url = format!("{}/v2/x/blobs/{digest}", a.url());
        assert_eq!(get(&blob_url, &[]).await.body, data);
        let holds = async |n: u64| {
            eventually(Duration::from_secs(10), async || {
                peer_state(&b).await["peers"][0]["blobs"] == n
            })
            .await
        };
        assert!(
            holds(1).await,
            "B heard A cached it: {}",
            peer_state(&b).await
        );

        // Rot: one byte flipped in A's file.
        let hex = &digest[7..];
        let file = a.dir.path().join("blobs/sha256").join(&hex[..2]).join(hex);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[MIB] ^= 1;
        std::fs::write(&file, bytes).unwrap();

        // Upstream away for now, so that A cannot mend it at once (and B can see it gone).
        up.set_down(true);
        let torrent = get(
            &format!("{}/_shoal/v1/blobs/{digest}/torrent", a.url()),
            &[],
        )
        .await;
        assert_eq!(torrent.status, 404, "not seeded, not held");
        let stats = a.stats().await;
        assert_eq!(stats["damaged_blobs"], 1, "{stats}");
        assert_eq!(stats["blobs"], 0, "{stats}");
        assert!(
            holds(0).await,
            "B heard A dropped it: {}",
            peer_state(&b).await
        );

        // With upstream back, A's next client gets the right bytes, fetched again.
        up.set_down(false);
        assert_eq!(get(&blob_url, &[]).await.body, data);
    })
    .await
    .expect("test timed out");
}

/// The LAN case: a holder's copy rots, a peer pulls it, and both end with sound
/// copies: the peer's pull completes (from upstream once the holder refuses), and the
/// holder fetches its own copy again with no client asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotten_holder_and_its_puller_both_end_sound() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(4 * MIB, 73);
        let digest = up.add_blob(data.clone());
        let a = Shoal::start(&up.url()).await;
        assert_eq!(
            get(&format!("{}/v2/x/blobs/{digest}", a.url()), &[])
                .await
                .body,
            data
        );
        let b = Shoal::start_with(&up.url(), |c| c.peers = vec![a.peer_url()]).await;
        let learned = eventually(Duration::from_secs(10), async || {
            peer_state(&b).await["peers"][0]["blobs"] == 1
        })
        .await;
        assert!(learned, "{}", peer_state(&b).await);

        let hex = &digest[7..];
        let file = a.dir.path().join("blobs/sha256").join(&hex[..2]).join(hex);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[3 * MIB] ^= 0x40;
        std::fs::write(&file, bytes).unwrap();

        let got = get(&format!("{}/v2/x/blobs/{digest}", b.url()), &[]).await;
        assert_eq!(got.status, 200);
        assert!(got.body == data, "the puller got the right bytes");
        let mended = eventually(Duration::from_secs(20), async || {
            a.stats().await["mended_blobs"] == 1
        })
        .await;
        let stats = a.stats().await;
        assert!(mended, "the holder fetched its copy again: {stats}");
        assert_eq!(stats["damaged_blobs"], 1, "{stats}");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            data,
            "the holder's copy is sound"
        );
    })
    .await
    .expect("test timed out");
}
