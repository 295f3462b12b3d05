//! Two shoal boxes on one LAN, set up with nothing but their defaults: each in its own
//! network namespace, joined by a bridge. The second finds the first by multicast
//! discovery alone (no --peer) and pulls its blob over BitTorrent, with zero upstream
//! bytes. Needs root (ip netns); multicast stays on the test's own bridge.

mod support;

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

const MIB: usize = 1 << 20;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(args: &[&str]) {
    assert!(ip(args), "ip {}", args.join(" "));
}

/// Node namespaces on a bridge, removed on drop. The bridge lives in a namespace of its
/// own ("the switch"): the host's firewall (Docker sets FORWARD to DROP, and bridged frames
/// pass through it) never sees the LAN, and its multicast has no way out. The test
/// process reaches the LAN through one more veth, as the upstream's host.
struct Lan {
    switch: String,
    namespaces: Vec<String>,
    root_link: String,
    subnet: String,
}

impl Lan {
    fn new(n: usize) -> Option<Lan> {
        let id = std::process::id() % 200 + 20;
        let subnet = format!("10.77.{id}");
        let switch = format!("shoal{id}sw");
        if !ip(&["netns", "add", &switch]) {
            return None;
        }
        let mut lan = Lan {
            switch: switch.clone(),
            namespaces: Vec::new(),
            root_link: format!("shv{id}r"),
            subnet: subnet.clone(),
        };
        let sw = |args: &[&str]| {
            let mut all = vec!["-n", switch.as_str()];
            all.extend_from_slice(args);
            must(&all);
        };
        sw(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        sw(&["link", "set", "br0", "up"]);
        // The test process's own port on the LAN: the upstream's two host addresses.
        let (root, root_peer) = (lan.root_link.clone(), format!("shv{id}rb"));
        must(&[
            "link", "add", &root, "type", "veth", "peer", "name", &root_peer,
        ]);
        must(&["link", "set", &root_peer, "netns", &switch]);
        sw(&["link", "set", &root_peer, "master", "br0", "up"]);
        must(&["addr", "add", &format!("{subnet}.254/24"), "dev", &root]);
        must(&["addr", "add", &format!("{subnet}.253/24"), "dev", &root]);
        must(&["link", "set", &root, "up"]);
        for i in 0..n {
            let ns = format!("shoal{id}n{i}");
            let (inner, outer) = (format!("shv{id}n{i}"), format!("shv{id}b{i}"));
            must(&["netns", "add", &ns]);
            lan.namespaces.push(ns.clone());
            must(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]);
            must(&["link", "set", &inner, "netns", &ns]);
            must(&["link", "set", &outer, "netns", &switch]);
            sw(&["link", "set", &outer, "master", "br0", "up"]);
            let addr = format!("{subnet}.{}/24", i + 1);
            must(&["-n", &ns, "addr", "add", &addr, "dev", &inner]);
            must(&["-n", &ns, "link", "set", &inner, "up"]);
            must(&["-n", &ns, "link", "set", "lo", "up"]);
            must(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", &inner]);
        }
        Some(lan)
    }

    fn host(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            ip(&["netns", "del", ns]);
        }
        ip(&["link", "del", &self.root_link]);
        ip(&["netns", "del", &self.switch]);
    }
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `shoal serve` with its defaults (discovery on), inside namespace `ns`.
fn spawn_in(ns: &str, host: &str, data: &std::path::Path, upstream: &str) -> Node {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_shoal"), "serve"])
        .args(["--listen", &format!("{host}:9200")])
        .args(["--bt-listen", &format!("{host}:6881")])
        .arg("--data-dir")
        .arg(data)
        .args(["--upstream", upstream])
        .env("SHOAL_P2P__CATALOG_INTERVAL", "1s")
        .env("RUST_LOG", "shoal=info,warn")
        .stdout(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHOAL_") && k != "SHOAL_P2P__CATALOG_INTERVAL" {
            cmd.env_remove(k);
        }
    }
    Node(cmd.spawn().expect("ip netns exec shoal"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_boxes_find_each_other_and_share_a_blob() {
    let Some(lan) = Lan::new(2) else {
        let msg = "lan_discovery: cannot create network namespaces and a bridge (needs root and iproute2)";
        if std::env::var("REQUIRE_E2E_TOOLS").as_deref() == Ok("1") {
            panic!("{msg}; REQUIRE_E2E_TOOLS=1 makes this a failure");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let reg: IpAddr = format!("{}.254", lan.subnet).parse().unwrap();
        let cdn: IpAddr = format!("{}.253", lan.subnet).parse().unwrap();
        let up = FakeUpstream::start_on(reg, cdn).await;
        let data = blob_bytes(6 * MIB + 9, 91);
        let digest = up.add_blob(data.clone());

        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let _a = spawn_in(&lan.namespaces[0], &lan.host(0), da.path(), &up.url());
        let _b = spawn_in(&lan.namespaces[1], &lan.host(1), db.path(), &up.url());
        let (a, b) = (
            format!("http://{}:9200", lan.host(0)),
            format!("http://{}:9200", lan.host(1)),
        );
        for url in [&a, &b] {
            let up = eventually(Duration::from_secs(20), async || {
                try_request(http::Method::GET, &format!("{url}/_shoal/v1/health"), &[])
                    .await
                    .is_ok_and(|r| r.status == 200)
            })
            .await;
            assert!(up, "{url} did not start");
        }

        // A caches the blob from upstream.
        let r = get(&format!("{a}/v2/library/x/blobs/{digest}"), &[]).await;
        assert!(r.body == data);

        // B finds A by multicast alone, and learns what it holds.
        let found = eventually(Duration::from_secs(30), async || {
            let v = get(&format!("{b}/_shoal/v1/peers"), &[]).await.json();
            v["peers"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["url"] == a.as_str() && p["source"] == "discovered" && p["blobs"] == 1
                })
            })
        })
        .await;
        assert!(
            found,
            "B never discovered A: {}",
            get(&format!("{b}/_shoal/v1/peers"), &[]).await.json()
        );

        // B pulls it from A over BitTorrent.
        let cdn_before = up.counts.cdn_gets.load(std::sync::atomic::Ordering::SeqCst);
        let pulled = ollama_blob(&b, "library/x", &digest, PullOptions::default())
            .await
            .expect("B pulls");
        assert!(pulled.data == data);
        let stats = get(&format!("{b}/_shoal/v1/stats"), &[]).await.json();
        assert_eq!(stats["upstream_bytes"], 0, "{stats}");
        assert_eq!(stats["peer_bytes"], data.len() as u64, "{stats}");
        assert_eq!(
            up.counts.cdn_gets.load(std::sync::atomic::Ordering::SeqCst),
            cdn_before
        );
    })
    .await
    .expect("test timed out");
}
