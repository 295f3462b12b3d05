//! The HTTP front: a hyper server (HTTP/1.1 and h2c), a tower stack, routing and handlers.
//! The same service answers on the plain listener, inside `CONNECT` tunnels it intercepts
//! (`proxy.rs`, HTTPS-proxy mode) and on the TLS listener (`serve_tls`, DNS mode).
//!
//! Tower stack, outermost first: `TraceLayer` (one span per request, its status and
//! latency logged at the end), then the router (`handle`).
//!
//! Must not: touch the store, upstream or caches directly; everything goes through
//! `mirror::Mirror`. Errors become answers only in `error.rs`.

mod admin;
mod dashboard;
mod error;
mod metrics;
mod p2p;
mod proxy;
mod registry;
pub mod route;

pub use dashboard::HISTORY_EVERY;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

use crate::mirror::Mirror;
use crate::oci::Route;
use crate::p2p::{Peers, Swarm};
use crate::tls::Interceptor;
use error::{HttpError, RequestShape, Subject};
use route::{endpoint, Endpoint};

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// How long open connections may finish after shutdown begins.
const GRACE: Duration = Duration::from_secs(10);
/// A connection must send a whole request head within this, from when it is accepted or
/// last answered; a half-sent request or an idle keep-alive connection is closed after it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);

pub fn empty() -> Body {
    Empty::new()
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

/// What handlers can reach.
pub struct State {
    pub mirror: Mirror,
    pub swarm: Arc<Swarm>,
    pub peers: Arc<Peers>,
    pub tls: Arc<Interceptor>,
    pub started: Instant,
    /// Places for client connections (`connection_limit`), shared by every listener and
    /// by intercepted tunnels.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// What admin requests that change something must carry (`token.rs`).
    pub admin_token: Arc<str>,
    /// Requests answered, for `/metrics`.
    pub requests: metrics::Requests,
    /// Where the plain listener is bound: prefetches asked through the API pull through it.
    pub listen: SocketAddr,
    /// Prefetches asked through the API (`admin::prefetch`), by model name.
    pub prefetches: admin::Prefetches,
    /// Counters once a minute, for the dashboard's chart.
    pub history: dashboard::History,
    /// Bandwidth caps in force, bytes per second (shown by the stats and the dashboard).
    pub caps: Caps,
    /// `admin.token_on_reads`: the admin reads need the token too.
    pub token_on_reads: bool,
}

/// Bandwidth caps, bytes per second; `None` is no cap.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Caps {
    pub fetch_rate_limit: Option<u64>,
    pub p2p_upload_limit: Option<u64>,
    pub p2p_download_limit: Option<u64>,
}

impl State {
    /// Refuses a request without the admin token.
    fn admin_only(&self, req: &Request<Incoming>) -> Result<(), HttpError> {
        let header = req.headers().get(http::header::AUTHORIZATION);
        match crate::token::authorizes(header.map(|h| h.as_bytes()), &self.admin_token) {
            true => Ok(()),
            false => Err(HttpError::AdminToken),
        }
    }
}

/// The two ends of a request's connection.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// At most this many client connections at once (each can hold a blob file too), so that
/// a crowd of idle connections cannot use up the process's file descriptors. Further ones
/// wait in the listen backlog until one closes.
pub fn connection_limit(fd_limit: u64) -> usize {
    (fd_limit.saturating_sub(256) / 2).clamp(64, 16_384) as usize
}

/// One accepted connection's place under the connection limit.
pub type Slot = tokio::sync::OwnedSemaphorePermit;

/// Serves until `shutdown` resolves, then lets open connections finish for a while.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = state.slots.clone();
    accept_loop(listener, slots, shutdown, |stream, conn, graceful, slot| {
        // A second watcher, for the one tunnel a `CONNECT` may turn this connection into.
        let tunnel = Some(graceful.watcher());
        serve_io(
            TokioIo::new(stream),
            state.clone(),
            conn,
            None,
            graceful.watcher(),
            tunnel,
            slot,
        );
    })
    .await
}

/// DNS mode: TLS for the intercepted hosts, named by SNI (a client without SNI gets the
/// upstream's name), then the same service as the plain listener.
pub async fn serve_tls(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = state.slots.clone();
    accept_loop(listener, slots, shutdown, |stream, conn, graceful, slot| {
        let (state, watcher) = (state.clone(), graceful.watcher());
        tokio::spawn(async move {
            match proxy::accept_tls(&state, stream, conn).await {
                Ok((tls, host)) => serve_io(
                    TokioIo::new(tls),
                    state,
                    conn,
                    Some(host),
                    watcher,
                    None,
                    slot,
                ),
                Err(e) => tracing::debug!(peer = %conn.peer, error = %e, "TLS connection dropped"),
            }
        });
    })
    .await
}

async fn accept_loop(
    listener: TcpListener,
    slots: Arc<tokio::sync::Semaphore>,
    shutdown: impl Future<Output = ()>,
    mut each: impl FnMut(tokio::net::TcpStream, Conn, &GracefulShutdown, Slot),
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut warned = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !warned {
                    tracing::warn!(
                        "connection limit reached; new connections wait until one closes"
                    );
                    warned = true;
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        each(stream, Conn { peer, local }, &graceful, slot);
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(GRACE) => tracing::warn!("closing connections still open after {GRACE:?}"),
    }
    Ok(())
}

/// The one tunnel a connection's `CONNECT` may start, and the watcher that keeps graceful
/// shutdown waiting for it. `None` inside a tunnel: no proxying through the proxy.
type TunnelSlot = Arc<Mutex<Option<Watcher>>>;

/// Serves one connection, HTTP/1.1 or HTTP/2 (by preface), on its own task.
/// `via` is the host a TLS client asked for (SNI) when shoal intercepted it: the registry
/// its requests mean. `None` on the plain listener.
fn serve_io<I>(
    io: TokioIo<I>,
    state: Arc<State>,
    conn: Conn,
    via: Option<Arc<str>>,
    watcher: Watcher,
    tunnel: Option<Watcher>,
    slot: Slot,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// One server configuration for every connection, plain or TLS.
    static BUILDER: std::sync::LazyLock<auto::Builder<TokioExecutor>> =
        std::sync::LazyLock::new(|| {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            builder
        });
    let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let svc = service(
        state,
        conn,
        via,
        Arc::new(Mutex::new(tunnel)),
        asked.clone(),
    );
    tokio::spawn(async move {
        let _slot = slot;
        let conn_fut = watcher.watch(BUILDER.serve_connection_with_upgrades(io, svc).into_owned());
        // hyper times out request heads, but not the bytes before it knows whether the
        // connection speaks HTTP/1.1 or HTTP/2: a connection that has sent no whole
        // request by then is closed here.
        let first_request = async {
            tokio::time::sleep(HEADER_TIMEOUT).await;
            if !asked.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            r = conn_fut => if let Err(e) = r {
                tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
            },
            () = first_request => {
                tracing::debug!(peer = %conn.peer, "closing a connection that sent no request in {HEADER_TIMEOUT:?}");
            }
        }
    });
}

fn service(
    state: Arc<State>,
    conn: Conn,
    via: Option<Arc<str>>,
    tunnel: TunnelSlot,
    asked: Arc<std::sync::atomic::AtomicBool>,
) -> hyper_util::service::TowerToHyperService<
    impl tower::Service<
            Request<Incoming>,
            Response = Response<
                impl http_body::Body<Data = Bytes, Error = BodyError> + Send + 'static,
            >,
            Error = Infallible,
            Future = impl Send,
        > + Clone,
> {
    let svc = ServiceBuilder::new()
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |req: &Request<Incoming>| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), peer = %conn.peer)
                })
                .on_request(())
                .on_response(
                    |resp: &Response<Body>, latency: Duration, _: &tracing::Span| {
                        tracing::info!(status = resp.status().as_u16(), ms = latency.as_millis() as u64, "answered");
                    },
                )
                .on_failure(()),
        )
        .service_fn(move |req| {
            asked.store(true, std::sync::atomic::Ordering::Relaxed);
            let (state, tunnel, via) = (state.clone(), tunnel.clone(), via.clone());
            async move { Ok::<_, Infallible>(handle(state, req, conn, via, tunnel).await) }
        });
    hyper_util::service::TowerToHyperService::new(svc)
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    conn: Conn,
    via: Option<Arc<str>>,
    tunnel: TunnelSlot,
) -> Response<Body> {
    if req.method() == Method::CONNECT {
        let taken = tunnel.lock().ok().and_then(|mut t| t.take());
        let requests = state.clone();
        let resp = proxy::connect(state, req, conn, taken)
            .await
            .unwrap_or_else(|e| {
                e.into_response(RequestShape {
                    ranged: false,
                    head: false,
                    subject: Subject::Other,
                })
            });
        requests.requests.count("connect", resp.status().as_u16());
        return resp;
    }
    let route = endpoint(req.uri().path());
    let shape = RequestShape {
        ranged: req.headers().contains_key(http::header::RANGE),
        head: req.method() == Method::HEAD,
        subject: match &route {
            Ok(Endpoint::Registry(Route::Manifest { .. })) => Subject::Manifest,
            Ok(Endpoint::Registry(Route::Blob { .. })) => Subject::Blob,
            Ok(Endpoint::Registry(Route::Tags { .. })) => Subject::Tags,
            _ => Subject::Other,
        },
    };
    let kind = route.as_ref().map_or("invalid", Endpoint::kind);
    let result = match route {
        Err(e) => Err(HttpError::from(e)),
        Ok(route) => dispatch(&state, req, route, conn, via.as_deref()).await,
    };
    let resp = result.unwrap_or_else(|e| e.into_response(shape));
    state.requests.count(kind, resp.status().as_u16());
    resp
}

async fn dispatch(
    state: &State,
    req: Request<Incoming>,
    route: Endpoint,
    conn: Conn,
    via: Option<&str>,
) -> Result<Response<Body>, HttpError> {
    let method = req.method().clone();
    let allowed = match route {
        Endpoint::News | Endpoint::Verify => method == Method::POST,
        Endpoint::Model { .. } => method == Method::DELETE,
        Endpoint::ModelPrefetch { .. } => method == Method::POST,
        Endpoint::ModelPin { .. } => method == Method::PUT || method == Method::DELETE,
        _ => method == Method::GET || method == Method::HEAD,
    };
    if !allowed {
        return Err(HttpError::Method(method));
    }
    let admin_read = matches!(
        route,
        Endpoint::Stats
            | Endpoint::Models
            | Endpoint::Peers
            | Endpoint::Torrents
            | Endpoint::History
            | Endpoint::Metrics
    );
    if admin_read && state.token_on_reads {
        state.admin_only(&req)?;
    }
    match route {
        Endpoint::Registry(Route::Base) => registry::base(),
        Endpoint::Registry(Route::Token) => registry::token(state, &req, via).await,
        Endpoint::Registry(Route::Manifest { name, reference }) => {
            let name = registry::qualify(state, &req, via, name)?;
            registry::manifest(state, &req, &name, &reference).await
        }
        Endpoint::Registry(Route::Blob { name, digest }) => {
            let name = registry::qualify(state, &req, via, name)?;
            registry::blob(state, &req, &name, &digest).await
        }
        Endpoint::Registry(Route::Tags { name }) => {
            let name = registry::qualify(state, &req, via, name)?;
            registry::tags(state, &req, &name).await
        }
        Endpoint::Health => admin::health(state),
        Endpoint::Stats => admin::stats(state),
        Endpoint::Torrent { digest } => p2p::torrent(state, &req, &digest, conn).await,
        Endpoint::Announce { key } => p2p::announce(state, &req, key.as_deref(), conn).await,
        Endpoint::Scrape { key } => p2p::scrape(state, &req, key.as_deref()).await,
        Endpoint::Catalog => p2p::catalog(state, &req, conn).await,
        Endpoint::BlobState { digest } => p2p::blob_state(state, &req, &digest, conn).await,
        Endpoint::News => p2p::news(state, req, conn).await,
        Endpoint::Peers => p2p::peers(state).await,
        Endpoint::Torrents => p2p::torrents(state),
        Endpoint::CaPem => admin::ca_pem(state),
        Endpoint::Verify => {
            state.admin_only(&req)?;
            admin::verify(state)
        }
        Endpoint::Metrics => metrics::metrics(state).await,
        Endpoint::Models => admin::models(state).await,
        Endpoint::Dashboard => dashboard::page(),
        Endpoint::Root => dashboard::to_dashboard(),
        Endpoint::History => dashboard::history(state),
        Endpoint::ModelPrefetch { name } => {
            state.admin_only(&req)?;
            admin::prefetch(state, &name)
        }
        Endpoint::Model { name } => {
            state.admin_only(&req)?;
            admin::remove_model(state, &name).await
        }
        Endpoint::ModelPin { name } => {
            state.admin_only(&req)?;
            admin::pin(state, &name, method == Method::PUT).await
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connection_limit_leaves_room_for_files_and_upstream() {
        assert_eq!(super::connection_limit(1024), 384);
        assert_eq!(super::connection_limit(20_000), 9_872);
        assert_eq!(super::connection_limit(100), 64, "never below 64");
        assert_eq!(
            super::connection_limit(u64::MAX),
            16_384,
            "never above 16384"
        );
    }
}
