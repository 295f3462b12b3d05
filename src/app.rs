//! Composition root: opens the store, builds the upstream client and the mirror, binds the
//! listener, spawns the server and housekeeping, and owns shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::mirror::{Mirror, MirrorConfig, P2p};
use crate::p2p::{Peers, Swarm, SwarmConfig};
use crate::stats::Stats;
use crate::store::Store;
use crate::upstream::Registries;

/// How often access times and counters are written to the index.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the data dir")]
    Store(#[from] crate::store::Error),
    #[error("cannot set up the upstream client")]
    Upstream(#[from] crate::upstream::Error),
    #[error("cannot start BitTorrent")]
    Swarm(#[from] crate::p2p::Error),
    #[error("cannot set up peers")]
    Peers(#[from] crate::p2p::PeersError),
    #[error("cannot set up shoal's CA")]
    Ca(#[from] crate::tls::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("serving failed")]
    Serve(#[source] std::io::Error),
    #[error("cannot make or read the admin token {path}")]
    AdminToken {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running shoal. Tests start several in one process.
pub struct App {
    addr: SocketAddr,
    mirror: Mirror,
    swarm: Arc<Swarm>,
    store: Store,
    stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    tls_server: Option<JoinHandle<std::io::Result<()>>>,
    housekeeping: JoinHandle<()>,
    background: tokio_util::sync::CancellationToken,
}

pub async fn start(cfg: Config) -> Result<App, Error> {
    let store = Store::open(&cfg.data_dir).await?;
    let admin_token = match &cfg.admin.token {
        Some(t) => t.clone(),
        None => {
            crate::token::load_or_create(&cfg.data_dir).map_err(|source| Error::AdminToken {
                path: crate::token::path(&cfg.data_dir),
                source,
            })?
        }
    };
    let stats = Arc::new(Stats::default());
    stats.restore(&store.load_counters().await?);
    let registries = Registries::new(
        &cfg.upstream,
        &cfg.registry_list(),
        &cfg.fetch,
        &cfg.resolve,
    )?;
    registries.restore(&store.load_registry_bytes().await?);
    let ca = crate::tls::Ca::load_or_create(&cfg.data_dir)?;
    // Every registry's name is intercepted (ollama's CONNECT hf.co:443), then their URLs'
    // hosts, the default's last (the name assumed without SNI).
    let mut intercept = cfg.proxy.intercept.clone();
    intercept.extend(
        cfg.registries
            .keys()
            .filter_map(|n| n.as_str().parse().ok()),
    );
    let policy = crate::tls::Policy::new(
        &intercept,
        &cfg.proxy.allow,
        registries.all().into_iter().rev().map(|u| u.base_url()),
    );
    let tls = Arc::new(crate::tls::Interceptor::new(ca, policy)?);
    let swarm = Swarm::start(
        SwarmConfig {
            listen: cfg.bt_listen,
            idle_after: cfg.p2p.idle_after,
            work_dir: cfg.data_dir.join("bt"),
            upload_limit: cfg.p2p.upload_limit.map(|l| l.as_u64() as u32),
            download_limit: cfg.p2p.download_limit.map(|l| l.as_u64() as u32),
        },
        store.clone(),
        stats.clone(),
    )
    .await?;
    if let Some(limit) = cfg.max_cache_size {
        let keep = crate::mirror::pinned_blobs(&store).await?;
        let evicted = store.evict_to(limit.as_u64(), 0, &keep).await?;
        if !evicted.is_empty() {
            tracing::info!(
                count = evicted.len(),
                "evicted blobs over max_cache_size at start-up"
            );
        }
    }
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let tls_listener = match cfg.tls_listen {
        None => None,
        Some(tls_addr) => {
            Some(
                TcpListener::bind(tls_addr)
                    .await
                    .map_err(|source| Error::Bind {
                        addr: tls_addr,
                        source,
                    })?,
            )
        }
    };
    let fd_limit = raise_fd_limit();
    let max_connections = crate::http::connection_limit(fd_limit);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let (blobs, bytes) = store.totals();
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), upstream = %cfg.upstream, blobs, bytes, max_connections, "shoal serving");

    let (stop, stopped) = oneshot::channel::<()>();
    let peers = Peers::new(
        store.clone(),
        &cfg.peers,
        cfg.p2p.swarm_key.clone(),
        addr.port(),
    )
    .await?;
    let mirror = Mirror::new(
        store.clone(),
        registries,
        stats.clone(),
        MirrorConfig {
            fetch: cfg.fetch.clone(),
            tag_ttl: cfg.manifests.tag_ttl,
            max_cache_size: cfg.max_cache_size.map(|s| s.as_u64()),
            peer_stall: cfg.p2p.stall_timeout,
        },
        Some(P2p {
            swarm: swarm.clone(),
            peers: peers.clone(),
        }),
    );
    let background = tokio_util::sync::CancellationToken::new();
    crate::task::spawn("catalogs", {
        let run = peers
            .clone()
            .run(cfg.p2p.catalog_interval, background.child_token());
        async move {
            run.await;
            Ok::<(), std::convert::Infallible>(())
        }
    });
    crate::task::spawn("mender", {
        let (mirror, damaged, stop) = (mirror.clone(), store.damaged(), background.child_token());
        async move {
            mirror.mend_dropped(damaged, stop).await;
            Ok::<(), std::convert::Infallible>(())
        }
    });
    if !cfg.scrub.period.is_zero() {
        let (mirror, stop, period) = (mirror.clone(), background.child_token(), cfg.scrub.period);
        crate::task::spawn("scrub", async move {
            mirror.scrub(period, stop).await;
            Ok::<(), std::convert::Infallible>(())
        });
    }
    crate::task::spawn("news of dropped blobs", {
        let (peers, dropped, stop) = (peers.clone(), store.dropped(), background.child_token());
        async move {
            peers.tell_dropped(dropped, stop).await;
            Ok::<(), std::convert::Infallible>(())
        }
    });
    if cfg.p2p.discovery {
        // The interface: the one the HTTP listener is bound to, if it names one.
        let interface = match cfg.listen.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_loopback() => ip,
            _ => std::net::Ipv4Addr::UNSPECIFIED,
        };
        let (peers, stop, port) = (peers.clone(), background.child_token(), addr.port());
        // Its failure (no multicast on this host) is logged once; LAN discovery is off then.
        crate::task::spawn(
            "discovery",
            crate::p2p::discovery::run(peers, port, interface, stop),
        );
    }
    let state = Arc::new(crate::http::State {
        mirror: mirror.clone(),
        swarm: swarm.clone(),
        peers: peers.clone(),
        tls,
        started: Instant::now(),
        slots,
        admin_token: Arc::from(admin_token.as_str()),
        requests: Default::default(),
        listen: addr,
        prefetches: Default::default(),
        history: Default::default(),
        token_on_reads: cfg.admin.token_on_reads,
        caps: crate::http::Caps {
            fetch_rate_limit: cfg.fetch.rate_limit.map(|l| l.as_u64()),
            p2p_upload_limit: cfg.p2p.upload_limit.map(|l| l.as_u64()),
            p2p_download_limit: cfg.p2p.download_limit.map(|l| l.as_u64()),
        },
    });
    {
        // The dashboard's chart: the counters now, then once a minute.
        let (state, stop) = (state.clone(), background.child_token());
        crate::task::spawn("history", async move {
            let mut tick = tokio::time::interval(crate::http::HISTORY_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok::<(), std::convert::Infallible>(()),
                    _ = tick.tick() => state.history.record(&state.mirror.stats().counters()),
                }
            }
        });
    }
    let tls_server = match tls_listener {
        None => None,
        Some(l) => {
            let tls_addr = l.local_addr().map_err(Error::Serve)?;
            tracing::info!(%tls_addr, "serving TLS for the intercepted hosts (DNS mode)");
            let stop = background.child_token();
            Some(tokio::spawn(crate::http::serve_tls(
                l,
                state.clone(),
                async move { stop.cancelled().await },
            )))
        }
    };
    let server = tokio::spawn(crate::http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let housekeeping = crate::task::spawn("housekeeping", {
        let (store, stats, swarm) = (store.clone(), stats.clone(), swarm.clone());
        let registries = mirror.registries().clone();
        async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tick.tick().await;
                swarm.tick().await;
                persist(&store, &stats, &registries).await;
            }
            #[allow(unreachable_code)]
            Ok::<(), std::convert::Infallible>(())
        }
    });
    Ok(App {
        addr,
        mirror,
        swarm,
        store,
        stats,
        stop: Some(stop),
        server,
        tls_server,
        housekeeping,
        background,
    })
}

/// Raises the soft limit on open files to the hard one (as Go programs do at start), and
/// returns it: connections, blob files, partials and sockets to peers all count.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if setrlimit(Resource::Nofile, l).is_err() {
            l = getrlimit(Resource::Nofile);
        }
    }
    l.current.unwrap_or(u64::MAX)
}

async fn persist(store: &Store, stats: &Stats, registries: &Registries) {
    if let Err(e) = store.flush_access().await {
        tracing::error!(error = %crate::telemetry::chain(&e), "cannot record access times");
    }
    if let Err(e) = store.save_counters(stats.counters()).await {
        tracing::error!(error = %crate::telemetry::chain(&e), "cannot record counters");
    }
    if let Err(e) = store.save_registry_bytes(registries.fetched()).await {
        tracing::error!(error = %crate::telemetry::chain(&e), "cannot record counters");
    }
}

impl App {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    pub fn swarm(&self) -> &Arc<Swarm> {
        &self.swarm
    }

    /// Stops accepting, stops fills (their clients get an error), lets other open requests
    /// finish (bounded), and writes state down once nothing can change it any more.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.background.cancel();
        self.mirror.shutdown().await;
        let served = (&mut self.server).await;
        if let Some(tls) = self.tls_server.take() {
            let _ = tls.await;
        }
        self.housekeeping.abort();
        self.swarm.shutdown().await;
        persist(&self.store, &self.stats, self.mirror.registries()).await;
        served?.map_err(Error::Serve)?;
        tracing::info!("shoal stopped");
        Ok(())
    }
}

/// Runs until `signal` resolves, then shuts down gracefully.
pub async fn run(cfg: Config, signal: impl Future<Output = ()>) -> Result<(), Error> {
    let app = start(cfg).await?;
    signal.await;
    tracing::info!("shutting down");
    app.shutdown().await
}
