//! Transmission (transmission-cli 3.00), given the .torrent a shoal node serves, downloads
//! the blob from that node. Transmission never connects to a peer on 127.x, so the node
//! and Transmission each run in a network namespace of an emulated LAN (needs root and
//! iproute2; tests/support/lan.rs).
//!
//! Transmission keeps the defaults that matter here: uTP on and encryption preferred.
//! It dials a tracker's peers over uTP only, which shoal does not speak, and on a LAN
//! without DHT it never falls back to TCP: it gets the blob because the node's seed dials
//! it when it announces (src/p2p/swarm.rs, `dial_back`).

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use support::*;

const MIB: usize = 1 << 20;

/// transmission-cli in a namespace, with its own config dir; killed on drop.
struct Transmission {
    child: Child,
    dir: tempfile::TempDir,
}

impl Transmission {
    fn start(ns: &str, torrent: &[u8]) -> Transmission {
        let dir = tempfile::tempdir().unwrap();
        let (config, out) = (dir.path().join("config"), dir.path().join("out"));
        std::fs::create_dir_all(&config).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        // Quiet and self-contained: no DHT, LPD or port mapping (none has anything to
        // reach on this LAN). uTP and encryption keep their defaults.
        std::fs::write(
            config.join("settings.json"),
            r#"{"dht-enabled": false, "lpd-enabled": false, "port-forwarding-enabled": false}"#,
        )
        .unwrap();
        let file = dir.path().join("blob.torrent");
        std::fs::write(&file, torrent).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        // `ip netns exec` execs transmission-cli: the child is Transmission itself.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "transmission-cli", "-g"])
            .arg(&config)
            .arg("-w")
            .arg(&out)
            .arg(&file)
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .expect("ip netns exec transmission-cli");
        Transmission { child, dir }
    }

    /// The downloaded file, once it is complete (Transmission names it `<name>.part`
    /// until then).
    fn file(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join("out").join(name)).ok()
    }

    /// Still running, or its exit status and the tail of its output.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().unwrap()?;
        Some(format!(
            "transmission-cli exited ({status}): {}",
            self.log()
        ))
    }

    /// Its last progress line and the end of its log.
    fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        let stdout = read("stdout");
        let progress = stdout.split(['\r', '\n']).rfind(|l| l.contains('%'));
        let stderr = read("stderr");
        let log: Vec<&str> = stderr.lines().collect();
        format!(
            "{}\n{}",
            progress.unwrap_or("(no progress line)").trim(),
            log[log.len().saturating_sub(15)..].join("\n")
        )
    }
}

impl Drop for Transmission {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transmission_downloads_from_shoal() {
    let install = "apt-get install transmission-cli";
    if !registry::tool_available("transmission", "transmission-cli", install) {
        return;
    }
    let Some(lan) = Lan::or_skip(2, "transmission") else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let up = lan.upstream().await;
        let data = blob_bytes(5 * MIB + 77, 71);
        let digest = up.add_blob(data.clone());
        let dir = tempfile::tempdir().unwrap();
        let _node = lan.node(0, dir.path(), &up.url());
        let url = lan.url(0);
        wait_lan(std::slice::from_ref(&url)).await;
        let r = get(&format!("{url}/v2/library/x/blobs/{digest}"), &[]).await;
        assert!(r.body == data);
        committed(&url, 1).await;
        let cdn_before = up.counts.cdn_bytes.load(SeqCst);

        let r = get(&format!("{url}/_shoal/v1/blobs/{digest}/torrent"), &[]).await;
        assert_eq!(r.status, 200);
        let started = Instant::now();
        let mut tr = Transmission::start(&lan.namespaces[1], &r.body);
        let name = format!("sha256-{}", &digest[7..]);
        let mut failed = None;
        let done = eventually(Duration::from_secs(60), async || {
            if let Some(why) = tr.exited() {
                failed = Some(why);
                return true;
            }
            tr.file(&name).is_some_and(|got| got.len() == data.len())
        })
        .await;
        let took = started.elapsed();
        if let Some(why) = failed {
            panic!("{why}");
        }
        assert!(done, "Transmission did not finish in 60 s: {}", tr.log());
        assert!(
            tr.file(&name).unwrap() == data,
            "Transmission's copy differs"
        );
        // Its first announce comes about 3 s after start, and it says it is interested in
        // a peer on its next 10 s rechoke round.
        assert!(
            took < Duration::from_secs(30),
            "Transmission took {took:?} to download 5 MiB on a LAN"
        );

        // The bytes came from the node's seed, not from upstream.
        assert_eq!(
            up.counts.cdn_bytes.load(SeqCst),
            cdn_before,
            "upstream sent nothing more"
        );
        let torrents = get(&format!("{url}/_shoal/v1/torrents"), &[]).await.json();
        let seed = &torrents["torrents"][0];
        assert_eq!(seed["digest"], digest, "{torrents}");
        assert!(
            seed["uploaded_bytes"].as_u64().unwrap_or(0) >= data.len() as u64,
            "{torrents}"
        );
        eprintln!("transmission: downloaded 5 MiB from shoal in {took:?}");
    })
    .await
    .expect("test timed out");
}
