//! The HTTP front: a hyper server (HTTP/1.1 and h2c), a tower stack, routing and handlers.
//!
//! Tower stack, outermost first: `TraceLayer` (one span per request, its status and
//! latency logged at the end), then the router (`handle`).
//!
//! Must not: touch the store, upstream or caches directly; everything goes through
//! `mirror::Mirror`. Errors become answers only in `error.rs`.

mod admin;
mod error;
mod p2p;
mod registry;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

use crate::mirror::Mirror;
use crate::oci::{parse_route, Route};
use crate::p2p::{Peers, Swarm};
use error::{HttpError, RequestShape, Subject};

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// How long open connections may finish after shutdown begins.
const GRACE: Duration = Duration::from_secs(10);

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
    pub started: Instant,
}

/// The two ends of a request's connection.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// Serves until `shutdown` resolves, then lets open connections finish for a while.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
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
        let svc = service(state.clone(), Conn { peer, local });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(GRACE) => tracing::warn!("closing connections still open after {GRACE:?}"),
    }
    Ok(())
}

fn service(
    state: Arc<State>,
    conn: Conn,
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
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(state, req, conn).await) }
        });
    hyper_util::service::TowerToHyperService::new(svc)
}

async fn handle(state: Arc<State>, req: Request<Incoming>, conn: Conn) -> Response<Body> {
    let route = parse_route(req.uri().path());
    let shape = RequestShape {
        ranged: req.headers().contains_key(http::header::RANGE),
        head: req.method() == Method::HEAD,
        subject: match &route {
            Ok(Route::Manifest { .. }) => Subject::Manifest,
            Ok(Route::Blob { .. }) => Subject::Blob,
            _ => Subject::Other,
        },
    };
    let result = match route {
        Err(e) => Err(HttpError::from(e)),
        Ok(route) => dispatch(&state, req, route, conn).await,
    };
    result.unwrap_or_else(|e| e.into_response(shape))
}

async fn dispatch(
    state: &State,
    req: Request<Incoming>,
    route: Route,
    conn: Conn,
) -> Result<Response<Body>, HttpError> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return Err(HttpError::Method(method));
    }
    match route {
        Route::Base => Ok(registry::base()),
        Route::Manifest { name, reference } => {
            registry::manifest(state, &req, &name, &reference).await
        }
        Route::Blob { name, digest } => registry::blob(state, &req, &name, &digest).await,
        Route::Health => Ok(admin::health()),
        Route::Stats => Ok(admin::stats(state)),
        Route::Torrent { digest } => p2p::torrent(state, &req, &digest, conn).await,
        Route::Announce { key } => Ok(p2p::announce(state, &req, key.as_deref(), conn).await),
        Route::Catalog => p2p::catalog(state, &req, conn).await,
        Route::Peers => p2p::peers(state).await,
        Route::Torrents => Ok(p2p::torrents(state)),
    }
}
