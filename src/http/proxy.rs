//! HTTPS-proxy mode: `CONNECT host:port` on the plain listener.
//!
//! ollama (Go's net/http) sends `CONNECT registry.ollama.ai:443` when `HTTPS_PROXY` names
//! shoal. For an intercepted host shoal answers 200, terminates TLS with a leaf minted by its
//! CA and serves the registry API from the cache over the tunnel, HTTP/2 or HTTP/1.1 as
//! ALPN settled, exactly as on the plain listener. An allowlisted host gets a blind tunnel;
//! anything else is refused, so shoal is never an open proxy.
//!
//! Both learn the name from the ClientHello's SNI (a tunnel to registry.ollama.ai may carry
//! SNI for its CDN host); DNS mode (`accept_tls`) is the same minus the `CONNECT`.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::error::HttpError;
use super::{empty, serve_io, Body, Conn, State};
use crate::tls::Decision;

/// A client that connects and says nothing is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(
    state: Arc<State>,
    req: Request<Incoming>,
    conn: Conn,
    watcher: Option<Watcher>,
) -> Result<Response<Body>, HttpError> {
    let authority = req
        .uri()
        .authority()
        .ok_or_else(|| HttpError::ConnectTarget(req.uri().to_string()))?;
    let host = authority.host().trim_matches(['[', ']']).to_owned();
    let port = authority.port_u16().unwrap_or(443);
    // Inside an intercepted tunnel there is no second level of proxying.
    let Some(watcher) = watcher else {
        return Err(HttpError::ProxyRefused { host, port });
    };
    match state.tls.policy().decide(&host, port) {
        Decision::Refuse => {
            tracing::warn!(peer = %conn.peer, %host, port, "CONNECT refused");
            Err(HttpError::ProxyRefused { host, port })
        }
        Decision::Tunnel => {
            let upstream = tokio::time::timeout(
                TUNNEL_CONNECT_TIMEOUT,
                TcpStream::connect((host.as_str(), port)),
            )
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            .map_err(|source| HttpError::Tunnel {
                host: host.clone(),
                port,
                source,
            })?;
            tracing::info!(peer = %conn.peer, %host, port, "CONNECT tunnelled (not intercepted)");
            tokio::spawn(async move {
                let _watcher = watcher;
                let mut upstream = upstream;
                match hyper::upgrade::on(req).await {
                    Ok(upgraded) => {
                        let mut client = TokioIo::new(upgraded);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
            Ok(Response::new(empty()))
        }
        Decision::Intercept => {
            tracing::debug!(peer = %conn.peer, %host, port, "CONNECT intercepted");
            tokio::spawn(async move {
                let upgraded = match hyper::upgrade::on(req).await {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::debug!(error = %e, "CONNECT upgrade failed");
                        return;
                    }
                };
                // The tunnel outlives the connection it came on, so it takes a place of
                // its own under the connection limit.
                let Ok(slot) = state.slots.clone().try_acquire_owned() else {
                    tracing::warn!(peer = %conn.peer, %host, "connection limit reached; intercepted tunnel dropped");
                    return;
                };
                let io = TokioIo::new(upgraded);
                match handshake(&state, io, conn, Some(&host), &[port]).await {
                    Ok((tls, name)) => serve_io(
                        TokioIo::new(tls),
                        state,
                        conn,
                        Some(name),
                        watcher,
                        None,
                        slot,
                    ),
                    Err(e) => {
                        tracing::debug!(peer = %conn.peer, %host, error = %e, "intercepted tunnel dropped")
                    }
                }
            });
            Ok(Response::new(empty()))
        }
    }
}

/// The usual reason is a client that does not trust shoal's CA: say so where the admin looks.
fn handshake_failed(conn: Conn, host: &str, e: &std::io::Error) {
    tracing::warn!(
        peer = %conn.peer,
        %host,
        error = %e,
        "TLS handshake with a client failed; does it trust shoal's CA (`shoal ca`, /_shoal/v1/ca.pem)?"
    );
}

pub type TlsError = Box<dyn std::error::Error + Send + Sync>;

/// DNS mode: TLS straight on the listener. The registry is port 443 to clients whatever
/// port this listener has behind a forward; either counts.
pub async fn accept_tls(
    state: &State,
    stream: TcpStream,
    conn: Conn,
) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, Arc<str>), TlsError> {
    let fallback = state.tls.policy().default_host().map(str::to_owned);
    handshake(
        state,
        stream,
        conn,
        fallback.as_deref(),
        &[443, conn.local.port()],
    )
    .await
}

/// Reads the ClientHello and completes the handshake with a leaf for the name it asks for
/// (SNI; `fallback` when it sends none), only if that name is intercepted on one of
/// `ports`. Returns the stream and that name.
async fn handshake<IO>(
    state: &State,
    io: IO,
    conn: Conn,
    fallback: Option<&str>,
    ports: &[u16],
) -> Result<(tokio_rustls::server::TlsStream<IO>, Arc<str>), TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let lazy = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = tokio::time::timeout(HANDSHAKE_TIMEOUT, lazy)
        .await
        .map_err(|_| "TLS handshake timed out")??;
    let policy = state.tls.policy();
    let host = match (start.client_hello().server_name(), fallback) {
        (Some(name), _) => name.to_owned(),
        (None, Some(f)) => f.to_owned(),
        (None, None) => return Err("the client sent no server name".into()),
    };
    if !ports
        .iter()
        .any(|port| policy.decide(&host, *port) == Decision::Intercept)
    {
        return Err(format!("{host} is not an intercepted host").into());
    }
    let config = state.tls.server_config(&host)?;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(config)).await {
        Ok(Ok(tls)) => Ok((tls, host.into())),
        Ok(Err(e)) => {
            handshake_failed(conn, &host, &e);
            Err(e.into())
        }
        Err(_) => Err("TLS handshake timed out".into()),
    }
}
