//! A client of a running shoal's own HTTP API, for the commands that talk to one:
//! `shoal health` (the container's health check), `shoal prefetch`, `shoal verify`,
//! `shoal ls` and `shoal status`.
//!
//! Plain HTTP to the listen address, as any other client of the cache would use it.
//! `prefetch` warms the cache by pulling a model through the server's own fill engine.
//! Must not: reach into the store, the mirror or upstream directly; everything it knows
//! comes from the server's answers.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;

mod prefetch;
mod report;
mod verify;

pub use prefetch::{prefetch, BlobReport, Platforms, PrefetchError, Report, Source};
pub use report::{ls_table, model_action, models, models_with_lan, status, Model, ModelAction};
pub use verify::{verify, VerifyReport};

/// Where `shoal serve` listens by default, as seen from the same box.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:9200";
/// The whole health check, connect included: a Docker HEALTHCHECK must answer quickly.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Admin answers are a few hundred bytes; anything much bigger is not one.
const MAX_SMALL_BODY: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("server url {url:?} is invalid: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("cannot reach shoal at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("{url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url} answered {status}{}", detail_suffix(.detail))]
    Status {
        url: String,
        status: StatusCode,
        /// The OCI error message or the start of the body, if any.
        detail: Option<String>,
    },
    #[error("reading the answer of {url} failed")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("the answer of {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("the answer of {url} is not what shoal sends: {what}")]
    BadAnswer { url: String, what: String },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Validates a server URL and returns it as `http://host[:port]`, no trailing slash.
/// A bare `host:port` is taken as plain HTTP, the only scheme the listen address speaks.
pub fn server_base(s: &str) -> Result<String> {
    let bad = |reason| Error::BadUrl {
        url: s.to_owned(),
        reason,
    };
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    };
    let uri: Uri = with_scheme.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("use the plain-HTTP listen address (http://)")),
        _ => return Err(bad("the scheme must be http")),
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(bad("it has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("it must not carry credentials"));
    }
    if uri.query().is_some() || !matches!(uri.path(), "" | "/") {
        return Err(bad("give only scheme, host and port"));
    }
    Ok(format!("http://{authority}"))
}

/// An HTTP/1.1 client for one server.
#[derive(Clone)]
pub struct ServerClient {
    base: String,
    client: crate::net::PlainClient,
}

impl ServerClient {
    /// `base` as returned by `server_base`.
    pub fn new(base: String, connect_timeout: Duration) -> ServerClient {
        ServerClient {
            base,
            client: crate::net::plain_client(connect_timeout),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a GET with `headers` and returns the answer with its body unread.
    pub async fn get(
        &self,
        path: &str,
        headers: &[(http::HeaderName, &str)],
    ) -> Result<http::Response<Incoming>> {
        self.send(http::Method::GET, path, headers).await
    }

    /// Sends a request without a body and returns the answer with its body unread.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(http::HeaderName, &str)],
    ) -> Result<http::Response<Incoming>> {
        let url = self.url(path);
        let mut req = Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            req = req.header(k, *v);
        }
        let req = req.body(Empty::new()).map_err(|_| Error::BadUrl {
            url: url.clone(),
            reason: "cannot build a request for it",
        })?;
        self.client
            .request(req)
            .await
            .map_err(|source| Error::Unreachable { url, source })
    }

    /// A GET whose whole (small) body is read, within `timeout`.
    pub async fn get_small(
        &self,
        path: &str,
        headers: &[(http::HeaderName, &str)],
        timeout: Duration,
    ) -> Result<(http::response::Parts, Bytes)> {
        self.get_bytes(path, headers, timeout, MAX_SMALL_BODY).await
    }

    /// A GET whose whole body, at most `limit` bytes, is read within `timeout`.
    pub async fn get_bytes(
        &self,
        path: &str,
        headers: &[(http::HeaderName, &str)],
        timeout: Duration,
        limit: usize,
    ) -> Result<(http::response::Parts, Bytes)> {
        let url = self.url(path);
        let work = async {
            let resp = self.get(path, headers).await?;
            let (parts, body) = resp.into_parts();
            let body = http_body_util::Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(source) => Error::Body {
                        url: url.clone(),
                        source: *source,
                    },
                    Err(_) => Error::TooLarge {
                        url: url.clone(),
                        limit,
                    },
                })?
                .to_bytes();
            Ok((parts, body))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| Error::Timeout {
                url: url.clone(),
                after: timeout,
            })?
    }
}

/// What an error answer says, for messages: the OCI error message, else the body's start.
pub fn error_detail(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Oci {
        errors: Vec<OciError>,
    }
    #[derive(serde::Deserialize)]
    struct OciError {
        message: Option<String>,
        code: Option<String>,
    }
    if let Ok(oci) = serde_json::from_slice::<Oci>(body) {
        if let Some(e) = oci.errors.into_iter().next() {
            return e.message.or(e.code).filter(|m| !m.is_empty());
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    (!line.is_empty()).then(|| line.chars().take(200).collect())
}

/// What a healthy server says about itself.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Health {
    /// The registry it mirrors (`scheme://host[:port]`); older servers do not say.
    #[serde(default)]
    pub upstream: Option<String>,
    /// The other registries it caches, by name (`hf.co`, ...); older servers do not say.
    #[serde(default)]
    pub registries: Vec<String>,
}

impl ServerClient {
    /// `GET /_shoal/v1/health` within `timeout`: Ok when it answers 200.
    pub async fn health(&self, timeout: Duration) -> Result<Health> {
        let path = "/_shoal/v1/health";
        let (parts, body) = self.get_small(path, &[], timeout).await?;
        if parts.status != StatusCode::OK {
            return Err(Error::Status {
                url: self.url(path),
                status: parts.status,
                detail: error_detail(&body),
            });
        }
        // 200 is the answer that counts; the body only adds detail.
        Ok(serde_json::from_slice(&body).unwrap_or_default())
    }
}

/// The health check of `shoal health`: connect and answer within `HEALTH_TIMEOUT`.
pub async fn health(base: &str) -> Result<Health> {
    ServerClient::new(base.to_owned(), HEALTH_TIMEOUT)
        .health(HEALTH_TIMEOUT)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        for (input, want) in [
            ("http://127.0.0.1:9200", "http://127.0.0.1:9200"),
            ("http://127.0.0.1:9200/", "http://127.0.0.1:9200"),
            ("shoal.lan:9200", "http://shoal.lan:9200"),
            ("http://[::1]:9200", "http://[::1]:9200"),
            ("http://shoal.lan", "http://shoal.lan"),
        ] {
            assert_eq!(server_base(input).unwrap(), want, "{input}");
        }
        for bad in [
            "",
            "https://shoal.lan:9200",
            "ftp://shoal.lan",
            "http://",
            "http://user:pw@shoal.lan",
            "http://shoal.lan/v2/",
            "http://shoal.lan?x=1",
            "not a url",
        ] {
            assert!(
                matches!(server_base(bad), Err(Error::BadUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_details() {
        let oci = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(error_detail(oci).as_deref(), Some("manifest unknown"));
        let code_only = br#"{"errors":[{"code":"DENIED"}]}"#;
        assert_eq!(error_detail(code_only).as_deref(), Some("DENIED"));
        assert_eq!(
            error_detail(b"404 page not found\nmore").as_deref(),
            Some("404 page not found")
        );
        assert_eq!(error_detail(b""), None);
    }
}
