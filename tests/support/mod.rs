//! Test support: a shoal on 127.0.0.1:0 with a temp data dir, a fake upstream that behaves
//! like registry.ollama.ai, and clients that pull the way ollama and OCI clients do.
//! Each test binary uses a different part of it.
#![allow(dead_code, unused_imports)]

pub mod binary;
pub mod client;
pub mod gopull;
pub mod lan;
pub mod registry;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shoal::app::App;
use shoal::config::Config;

pub use binary::*;
pub use client::*;
pub use gopull::*;
pub use lan::*;
pub use upstream::*;

/// Every test runs under this bound, so a hang fails instead of blocking CI.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "shoal=info,warn".to_owned()))
        .with_test_writer()
        .try_init();
}

/// Configuration suited to tests: loopback, a temp dir, small spans, short timers.
pub fn test_config(upstream: &str, data_dir: PathBuf) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir,
        upstream: upstream.parse().expect("a registry URL"),
        ..Config::default()
    };
    c.bt_listen = "127.0.0.1:0".parse().unwrap();
    c.p2p.catalog_interval = Duration::from_millis(300);
    // Multicast from the root network namespace would leave the machine.
    c.p2p.discovery = false;
    c.p2p.stall_timeout = Duration::from_secs(2);
    c.fetch.min_span = bytesize::ByteSize::kib(256);
    c.fetch.stall_timeout = Duration::from_secs(2);
    c.fetch.give_up_after = Duration::from_secs(10);
    c.fetch.retries = 2;
    c.fetch.request_timeout = Duration::from_secs(5);
    c.fetch.connect_timeout = Duration::from_secs(2);
    c
}

pub struct Shoal {
    pub app: Option<App>,
    pub dir: tempfile::TempDir,
}

impl Shoal {
    pub async fn start(upstream: &str) -> Shoal {
        Self::start_with(upstream, |_| {}).await
    }

    pub async fn start_with(upstream: &str, tweak: impl FnOnce(&mut Config)) -> Shoal {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, upstream, tweak).await
    }

    /// Starts on an existing data dir (for restarts).
    pub async fn start_in(
        dir: tempfile::TempDir,
        upstream: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> Shoal {
        init_tracing();
        let mut cfg = test_config(upstream, dir.path().to_owned());
        tweak(&mut cfg);
        let app = shoal::app::start(cfg).await.expect("shoal starts");
        Shoal {
            app: Some(app),
            dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.app.as_ref().unwrap().local_addr()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// This node as another node's `--peer`.
    pub fn peer_url(&self) -> shoal::config::PeerUrl {
        self.url().parse().expect("a peer URL")
    }

    pub async fn stats(&self) -> serde_json::Value {
        let r = get(&format!("{}/_shoal/v1/stats", self.url()), &[]).await;
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Waits (up to 10 s) until no fill runs: what was fetched is committed.
    pub async fn settle(&self) {
        let idle = eventually(Duration::from_secs(10), async || {
            self.stats().await["fills_running"] == 0
        })
        .await;
        assert!(idle, "fills still running: {}", self.stats().await);
    }

    /// Pulls `repo:tag` as ollama does, then waits until it is committed.
    pub async fn pull(&self, repo: &str, tag: &str) {
        ollama_pull(&self.url(), repo, tag, PullOptions::default())
            .await
            .expect("pull");
        self.settle().await;
    }

    /// Stops gracefully and returns the data dir for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.app.take().unwrap().shutdown().await.unwrap();
        self.dir
    }
}

/// A URL on which nothing listens: an upstream that is down.
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// Deterministic pseudo-random bytes.
pub fn blob_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// Polls `f` until it holds, for at most `limit`. For state that changes in the
/// background (a fill finishing after its last client went away), not for ordering.
pub async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
