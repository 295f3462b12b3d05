//! The one way shoal builds an HTTP client: the same executor, pool and connection
//! settings for the upstream client, the peer client and the CLI's client. A leaf.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Builder, Client};
use hyper_util::rt::TokioExecutor;

/// A client for plain-HTTP GETs (peers, a running shoal).
pub type PlainClient = Client<HttpConnector, Empty<Bytes>>;
/// The same, for requests with a body.
pub type PostClient = Client<HttpConnector, Full<Bytes>>;

/// A client builder with shoal's pool settings.
pub fn builder() -> Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60));
    b
}

/// A TCP connector: no Nagle delay, the given connect timeout, keep-alive probes on.
pub fn connector<R>(mut http: HttpConnector<R>, connect_timeout: Duration) -> HttpConnector<R> {
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(30)));
    http
}

/// A plain-HTTP client, for bodies of type `B` (`PlainClient`, `PostClient`).
pub fn plain_client<B>(connect_timeout: Duration) -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    builder().build(connector(HttpConnector::new(), connect_timeout))
}
