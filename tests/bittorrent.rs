//! Every cached blob is a torrent: its .torrent is served, the node's tracker introduces
//! peers, and a standard client (aria2c) downloads the blob from shoal over BitTorrent.

mod support;

use std::process::Command;
use std::time::Duration;

use sha1::{Digest as _, Sha1};
use support::*;

const MIB: usize = 1 << 20;

/// Caches `data` in `shoal` through a plain GET and waits for the commit.
async fn cache(shoal: &Shoal, digest: &str, data: &[u8]) {
    let r = get(&format!("{}/v2/library/x/blobs/{digest}", shoal.url()), &[]).await;
    assert_eq!(r.body, data);
    let committed = eventually(Duration::from_secs(10), async || {
        shoal.stats().await["fills_running"] == 0
    })
    .await;
    assert!(committed, "the fill did not finish");
}

/// The info dict and infohash, recomputed here from the rule in docs/TORRENTS.md.
fn expected_info(data: &[u8]) -> (Vec<u8>, [u8; 20]) {
    let size = data.len() as u64;
    let piece = size
        .div_ceil(2000)
        .next_power_of_two()
        .clamp(1 << 20, 16 << 20);
    let pieces: Vec<u8> = data
        .chunks(piece as usize)
        .flat_map(|c| Sha1::digest(c).to_vec())
        .collect();
    let name = format!("sha256-{}", sha256_hex(data));
    let mut info = format!(
        "d6:lengthi{size}e4:name{}:{name}12:piece lengthi{piece}e6:pieces{}:",
        name.len(),
        pieces.len()
    )
    .into_bytes();
    info.extend_from_slice(&pieces);
    info.push(b'e');
    let ih = Sha1::digest(&info).into();
    (info, ih)
}

fn percent(b: &[u8]) -> String {
    b.iter().map(|x| format!("%{x:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn torrent_endpoint_and_tracker() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(3 * MIB + 123, 61);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start(&up.url()).await;
        let url = format!("{}/_shoal/v1/blobs/{digest}/torrent", shoal.url());

        // Not held yet: 404, and the tracker does not know it.
        let r = get(&url, &[]).await;
        assert_eq!((r.status, r.oci_code().as_str()), (404, "BLOB_UNKNOWN"));

        cache(&shoal, &digest, &data).await;
        let r = get(&url, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/x-bittorrent"));
        let (info, ih) = expected_info(&data);
        let tracker = format!("http://{}/announce", shoal.addr());
        let head = format!("d8:announce{}:{tracker}", tracker.len());
        assert!(
            r.body.starts_with(head.as_bytes()),
            "{}",
            String::from_utf8_lossy(&r.body[..80])
        );
        assert!(
            r.body.windows(info.len()).any(|w| w == info.as_slice()),
            "the info dict follows the documented rule byte for byte"
        );
        // Asking for the .torrent activated the seed.
        let list = get(&format!("{}/_shoal/v1/torrents", shoal.url()), &[])
            .await
            .json();
        let t = &list["torrents"][0];
        assert_eq!(t["digest"], digest);
        assert_eq!(t["role"], "seeding");
        assert_eq!(t["infohash"], hex::encode(ih));
        assert_eq!(t["have_bytes"], data.len() as u64);

        // The tracker: garbage and unknown torrents are refused in-band ...
        let base = shoal.url();
        let ann = async |q: String| get(&format!("{base}/announce?{q}"), &[]).await;
        let r = ann("info_hash=xyz".into()).await;
        assert_eq!(r.status, 200);
        assert!(String::from_utf8_lossy(&r.body).contains("failure reason"));
        let r = ann(format!(
            "info_hash={}&peer_id={}&port=7000",
            percent(&[1; 20]),
            percent(b"-TEST00-abcdefghijkl")
        ))
        .await;
        assert!(String::from_utf8_lossy(&r.body).contains("unknown torrent"));
        // ... and a known one lists this node's BitTorrent address first.
        let q = format!(
            "info_hash={}&peer_id={}&port=7000&left=100&compact=1",
            percent(&ih),
            percent(b"-TEST00-abcdefghijkl")
        );
        let r = ann(q.clone()).await;
        let body = r.body.to_vec();
        let p = body
            .windows(9)
            .position(|w| w == b"5:peers6:")
            .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&body)))
            + 9;
        let bt = shoal.app.as_ref().unwrap().swarm().listen_addr();
        assert_eq!(&body[p..p + 4], &[127, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([body[p + 4], body[p + 5]]), bt.port());
        // A second peer sees the first one too.
        let r = ann(q
            .replace("port=7000", "port=7001")
            .replace("abcdefghijkl", "mnopqrstuvwx"))
        .await;
        let text = r.body.to_vec();
        let p = text
            .windows(10)
            .position(|w| w == b"5:peers12:")
            .expect("two peers")
            + 10;
        assert_eq!(u16::from_be_bytes([text[p + 10], text[p + 11]]), 7000);

        // Scrape: this node seeds, the two announcers leech; unknown hashes are left out.
        let r = get(
            &format!(
                "{}/scrape?info_hash={}&info_hash={}",
                shoal.url(),
                percent(&ih),
                percent(&[1; 20])
            ),
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        let mut want = b"d5:filesd20:".to_vec();
        want.extend_from_slice(&ih);
        want.extend_from_slice(b"d8:completei1e10:downloadedi0e10:incompletei2eeee");
        assert_eq!(
            r.body.to_vec(),
            want,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    })
    .await
    .expect("test timed out");
}

/// A standard BitTorrent client downloads a cached blob from shoal with nothing but the
/// .torrent shoal serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aria2c_downloads_from_shoal() {
    if !registry::tool_available("bittorrent", "aria2c", "apt-get install aria2") {
        return;
    }
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(5 * MIB + 77, 62);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start(&up.url()).await;
        cache(&shoal, &digest, &data).await;
        let cdn_before = up.counts.cdn_gets.load(std::sync::atomic::Ordering::SeqCst);

        let dir = tempfile::tempdir().unwrap();
        let torrent = dir.path().join("blob.torrent");
        let r = get(
            &format!("{}/_shoal/v1/blobs/{digest}/torrent", shoal.url()),
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        std::fs::write(&torrent, &r.body).unwrap();
        let out = dir.path().join("out");
        let port = free_port();
        let status = tokio::task::spawn_blocking({
            let (torrent, out) = (torrent.clone(), out.clone());
            move || {
                Command::new("timeout")
                    .arg("90")
                    .arg("aria2c")
                    .arg(format!("--dir={}", out.display()))
                    .args([
                        "--seed-time=0",
                        "--enable-dht=false",
                        "--enable-dht6=false",
                        "--bt-enable-lpd=false",
                        "--enable-peer-exchange=false",
                        "--bt-stop-timeout=60",
                        "--summary-interval=0",
                        "--console-log-level=warn",
                        "--file-allocation=none",
                        "--no-conf=true",
                    ])
                    .arg(format!("--listen-port={port}"))
                    .arg(&torrent)
                    .env_remove("http_proxy")
                    .env_remove("HTTP_PROXY")
                    .env_remove("all_proxy")
                    .status()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(status.success(), "aria2c failed: {status:?}");
        let got = std::fs::read(out.join(format!("sha256-{}", &digest[7..]))).unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "aria2c's copy differs");
        assert_eq!(
            up.counts.cdn_gets.load(std::sync::atomic::Ordering::SeqCst),
            cdn_before,
            "served from the cache, not upstream"
        );
        // Uploads show up in seeded_bytes (counted on the housekeeping tick).
        assert!(
            eventually(Duration::from_secs(15), async || {
                shoal.stats().await["seeded_bytes"].as_u64().unwrap_or(0) >= data.len() as u64
            })
            .await,
            "{}",
            shoal.stats().await
        );
    })
    .await
    .expect("test timed out");
}

/// A seed with no peers leaves the session; an evicted blob is no longer offered at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_seeds_retire_and_evicted_blobs_stop_being_seeded() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let a = blob_bytes(3 * MIB, 63);
        let b = blob_bytes(3 * MIB, 64);
        let (da, db) = (up.add_blob(a.clone()), up.add_blob(b.clone()));
        let shoal = Shoal::start_with(&up.url(), |c| {
            c.p2p.idle_after = Duration::from_millis(500);
            c.max_cache_size = Some(bytesize::ByteSize::mib(5));
        })
        .await;
        cache(&shoal, &da, &a).await;
        let r = get(
            &format!("{}/_shoal/v1/blobs/{da}/torrent", shoal.url()),
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        let (_, ih) = expected_info(&a);
        let torrents = async || {
            get(&format!("{}/_shoal/v1/torrents", shoal.url()), &[])
                .await
                .json()
        };
        assert_eq!(torrents().await["torrents"][0]["digest"], da);

        // No peer came: the seed retires (housekeeping runs every few seconds).
        let retired = eventually(Duration::from_secs(20), async || {
            torrents().await["torrents"]
                .as_array()
                .is_some_and(|t| t.is_empty())
        })
        .await;
        assert!(retired, "{}", torrents().await);

        // B pushes A out of the 5 MiB cache: A is no longer offered anywhere.
        cache(&shoal, &db, &b).await;
        assert!(
            eventually(Duration::from_secs(10), async || shoal.stats().await
                ["evictions"]
                == 1)
            .await
        );
        let r = get(
            &format!("{}/_shoal/v1/blobs/{da}/torrent", shoal.url()),
            &[],
        )
        .await;
        assert_eq!(r.status, 404);
        let q = format!(
            "info_hash={}&peer_id={}&port=7000",
            percent(&ih),
            percent(b"-TEST00-abcdefghijkl")
        );
        let r = get(&format!("{}/announce?{q}", shoal.url()), &[]).await;
        assert!(String::from_utf8_lossy(&r.body).contains("unknown torrent"));
        let cat = get(&format!("{}/_shoal/v1/catalog", shoal.url()), &[])
            .await
            .json();
        assert!(
            !cat.to_string().contains(&da),
            "evicted blob still in the catalog"
        );
    })
    .await
    .expect("test timed out");
}

/// qBittorrent (libtorrent), given the .torrent shoal serves, downloads the blob within
/// seconds (it once waited for its next announce, five minutes later).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn qbittorrent_downloads_from_shoal() {
    let Some(qbt) = Qbittorrent::start() else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = FakeUpstream::start().await;
        let data = blob_bytes(5 * MIB + 77, 63);
        let digest = up.add_blob(data.clone());
        let shoal = Shoal::start(&up.url()).await;
        cache(&shoal, &digest, &data).await;
        let r = get(
            &format!("{}/_shoal/v1/blobs/{digest}/torrent", shoal.url()),
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        let added = std::time::Instant::now();
        qbt.add(&r.body).await;
        let done = eventually(Duration::from_secs(60), async || {
            qbt.progress().await >= 1.0
        })
        .await;
        assert!(
            done,
            "qBittorrent did not finish: progress {}",
            qbt.progress().await
        );
        let took = added.elapsed();
        let got = std::fs::read(qbt.save.path().join(format!("sha256-{}", &digest[7..]))).unwrap();
        assert!(got == data, "qBittorrent's copy differs");
        assert!(
            took < Duration::from_secs(20),
            "qBittorrent took {took:?} to download 5 MiB on loopback"
        );
    })
    .await
    .expect("test timed out");
}

/// A headless qBittorrent with its own profile, driven through its Web API on loopback.
struct Qbittorrent {
    child: std::process::Child,
    api: String,
    _profile: tempfile::TempDir,
    save: tempfile::TempDir,
}

impl Drop for Qbittorrent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Qbittorrent {
    fn start() -> Option<Qbittorrent> {
        let install = "apt-get install qbittorrent-nox";
        if !registry::tool_available("bittorrent", "qbittorrent-nox", install) {
            return None;
        }
        let profile = tempfile::tempdir().unwrap();
        let save = tempfile::tempdir().unwrap();
        let (web, bt) = (free_port(), free_port());
        let conf = profile.path().join("qBittorrent/config");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("qBittorrent.conf"),
            format!(
                "[LegalNotice]\nAccepted=true\n\n\
                 [BitTorrent]\nSession\\DHTEnabled=false\nSession\\PeXEnabled=false\n\
                 Session\\LSDEnabled=false\nSession\\Port={bt}\nSession\\DefaultSavePath={}\n\
                 Session\\AddTorrentPaused=false\n\n\
                 [Preferences]\nWebUI\\Address=127.0.0.1\nWebUI\\Port={web}\n\
                 WebUI\\LocalHostAuth=false\nWebUI\\CSRFProtection=false\n\
                 WebUI\\HostHeaderValidation=false\n",
                save.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("qbittorrent-nox")
            .arg(format!("--profile={}", profile.path().display()))
            .arg(format!("--webui-port={web}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("qbittorrent-nox starts");
        Some(Qbittorrent {
            child,
            api: format!("http://127.0.0.1:{web}/api/v2"),
            _profile: profile,
            save,
        })
    }

    /// Adds a .torrent, once the Web API answers.
    async fn add(&self, torrent: &[u8]) {
        let ready = eventually(Duration::from_secs(20), async || {
            try_request(http::Method::GET, &format!("{}/app/version", self.api), &[])
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(ready, "qBittorrent's Web API did not come up");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), torrent).unwrap();
        let status = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-F"])
            .arg(format!("torrents=@{}", file.path().display()))
            .arg(format!("{}/torrents/add", self.api))
            .status()
            .expect("curl runs");
        assert!(status.success(), "qBittorrent refused the .torrent");
    }

    /// Progress of the (only) torrent, 0 to 1.
    async fn progress(&self) -> f64 {
        let r = get(&format!("{}/torrents/info", self.api), &[]).await;
        r.json()[0]["progress"].as_f64().unwrap_or(0.0)
    }
}
