//! Shoal boxes on an emulated LAN: network namespaces on a bridge (needs root and
//! iproute2), each node a real `shoal serve` with its defaults, LAN discovery on. The
//! test process reaches the LAN as the upstream's host. Multicast stays on the bridge.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, try_request};

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
pub struct Lan {
    switch: String,
    pub namespaces: Vec<String>,
    root_link: String,
    pub subnet: String,
    /// Dropped after the namespaces are gone (`Drop for Lan` runs first).
    _slot: Slot,
}

/// One emulated LAN at a time in a test binary. The tests of a binary run at once, and
/// three LANs of four debug-build nodes on a 2-core machine starve each other's LAN
/// questions past their bounded wait (`p2p::lan::ASK_TIMEOUT`: seen as two nodes fetching
/// what one should), which boxes of a real site, each with its own CPU, never see.
struct Slot;

static LAN_BUSY: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
static LAN_FREED: std::sync::Condvar = std::sync::Condvar::new();

impl Slot {
    fn take() -> Slot {
        let limit = std::time::Duration::from_secs(600);
        let mut busy = LAN_BUSY.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            let (b, waited) = LAN_FREED
                .wait_timeout(busy, limit)
                .unwrap_or_else(|p| p.into_inner());
            busy = b;
            assert!(
                !waited.timed_out() || !*busy,
                "another test held the LAN for {limit:?}"
            );
        }
        *busy = true;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *LAN_BUSY.lock().unwrap_or_else(|p| p.into_inner()) = false;
        LAN_FREED.notify_one();
    }
}

impl Lan {
    pub fn new(n: usize) -> Option<Lan> {
        let slot = Slot::take();
        // Unique per LAN: tests of one binary run at once, in one process.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = 20 + (std::process::id() % 200 + 37 * seq) % 230;
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
            _slot: slot,
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

    pub fn host(&self, i: usize) -> String {
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

pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `shoal serve` with its defaults (discovery on), inside namespace `ns`, plus `env`.
pub fn spawn_in(
    ns: &str,
    host: &str,
    data: &std::path::Path,
    upstream: &str,
    env: &[(&str, &str)],
) -> Node {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_shoal"), "serve"])
        .args(["--listen", &format!("{host}:9200")])
        .args(["--bt-listen", &format!("{host}:6881")])
        .arg("--data-dir")
        .arg(data)
        .args(["--upstream", upstream])
        .env("RUST_LOG", "shoal=info,warn")
        .stdout(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHOAL_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Node(cmd.spawn().expect("ip netns exec shoal"))
}

impl Lan {
    /// The LAN, or `None` (after saying why) when this machine cannot make one and
    /// `REQUIRE_E2E_TOOLS` does not insist.
    pub fn or_skip(n: usize, test: &str) -> Option<Lan> {
        if let Some(lan) = Lan::new(n) {
            return Some(lan);
        }
        let msg = format!(
            "{test}: cannot create network namespaces and a bridge (needs root and iproute2)"
        );
        if std::env::var("REQUIRE_E2E_TOOLS").as_deref() == Ok("1") {
            panic!("{msg}; REQUIRE_E2E_TOOLS=1 makes this a failure");
        }
        eprintln!("SKIPPED: {msg}");
        None
    }

    /// `shoal serve` with its defaults as node `i`, on `data`, caching `upstream`.
    pub fn node(&self, i: usize, data: &std::path::Path, upstream: &str) -> Node {
        spawn_in(&self.namespaces[i], &self.host(i), data, upstream, &[])
    }

    /// A fake upstream on the LAN's upstream addresses (registry and CDN).
    pub async fn upstream(&self) -> super::FakeUpstream {
        let (reg, cdn) = self.upstream_hosts();
        super::FakeUpstream::start_on(reg, cdn).await
    }

    /// Node `i`'s HTTP base URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}:9200", self.host(i))
    }

    /// The upstream's two addresses on the LAN: registry and CDN.
    pub fn upstream_hosts(&self) -> (std::net::IpAddr, std::net::IpAddr) {
        (
            format!("{}.254", self.subnet).parse().unwrap(),
            format!("{}.253", self.subnet).parse().unwrap(),
        )
    }
}

/// Waits until every node answers its health check and lists all the others as peers.
pub async fn wait_lan(urls: &[String]) {
    for url in urls {
        let up = eventually(Duration::from_secs(20), async || {
            try_request(http::Method::GET, &format!("{url}/_shoal/v1/health"), &[])
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(up, "{url} did not start");
    }
    for url in urls {
        let want = urls.len() - 1;
        let all = eventually(Duration::from_secs(30), async || {
            try_request(http::Method::GET, &format!("{url}/_shoal/v1/peers"), &[])
                .await
                .is_ok_and(|r| {
                    r.json()["peers"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().filter(|p| p["failures"] == 0).count() >= want)
                })
        })
        .await;
        assert!(all, "{url} did not find the other {want} nodes");
    }
}

/// A node's `/_shoal/v1/stats`, by its base URL.
pub async fn node_stats(url: &str) -> serde_json::Value {
    super::get(&format!("{url}/_shoal/v1/stats"), &[])
        .await
        .json()
}

/// Waits (up to 30 s) until the node at `url` holds `blobs` blobs and runs no fill.
pub async fn committed(url: &str, blobs: u64) {
    let done = eventually(Duration::from_secs(30), async || {
        let s = node_stats(url).await;
        s["blobs"] == blobs && s["fills_running"] == 0
    })
    .await;
    assert!(done, "{url}: {}", node_stats(url).await);
}
