//! The upstream registry client: hyper + rustls, redirects followed here (presigned CDN
//! URLs never reach clients), anonymous Bearer tokens, timeouts and bounded retries.
//!
//! Blob bytes are fetched as ranges by the fill engine (`mirror`), which decides how many
//! and which; this module only makes single requests. HTTP/1.1 only, on purpose: a CDN
//! caps each connection, and over HTTP/2 every parallel range would share one.
//!
//! Must not: cache anything but tokens, or know about the store or clients' connections.

mod auth;
mod registries;
mod resolve;

pub use registries::{Registries, UnknownRegistry};

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, LOCATION, RANGE, USER_AGENT, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use url::Url;

use crate::config::{FetchConfig, Pin, RegistryUrl};
use crate::oci::{Digest, Reference, RepoName};
use resolve::PinnedResolver;

const MAX_REDIRECTS: usize = 10;
/// distribution refuses manifests over 4 MiB; so does shoal, to bound memory.
const MAX_MANIFEST: usize = 4 << 20;
const MAX_ERROR_BODY: usize = 64 << 10;
/// Budget for revalidating a manifest that is already cached.
const QUICK_TIMEOUT: Duration = Duration::from_secs(5);
const SHOAL_UA: &str = concat!("shoal/", env!("CARGO_PKG_VERSION"));
/// What to accept when a client sent no Accept header: every manifest kind.
const DEFAULT_ACCEPT: &str = crate::oci::ANY_MANIFEST_ACCEPT;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("upstream url {url:?} is invalid: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("cannot set up TLS for upstream")]
    Tls(#[source] std::io::Error),
    #[error("request to {url} failed")]
    Connect {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("{url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url} answered 404")]
    NotFound { url: String },
    #[error("{url}: {what}")]
    Invalid { url: String, what: String },
    #[error("too many redirects from {url}")]
    Redirects { url: String },
    #[error("token request to {realm} failed: {what}")]
    Token { realm: String, what: String },
    /// 401 or 403: the credentials sent (or none) do not reach this. `challenge` is
    /// upstream's `WWW-Authenticate`, for the client to answer with its own credentials.
    #[error("{url} answered {status}: not allowed with the credentials given")]
    Denied {
        url: String,
        status: StatusCode,
        challenge: Option<HeaderValue>,
    },
    #[error("reading the body from {url} failed")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
}

impl Error {
    /// Worth another attempt: the network, a timeout, or a 5xx/429.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } | Error::Body { .. } => true,
            Error::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// A 4xx from a blob location other than 404: typically a presigned URL that expired,
    /// which a fresh redirect from the registry cures.
    pub fn is_refused(&self) -> bool {
        matches!(self, Error::Status { status, .. } if status.is_client_error())
            || matches!(self, Error::Denied { .. })
    }

    /// Upstream refused these credentials (or their absence): 401 or 403.
    pub fn denied(&self) -> Option<(StatusCode, Option<&HeaderValue>)> {
        match self {
            Error::Denied {
                status, challenge, ..
            } => Some((*status, challenge.as_ref())),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Scheme, host and port, without userinfo, query or fragment; error text without secrets.
fn redact(u: &Url) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(p) = u.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(u.path());
    s
}

/// What the client sent that upstream must see: ollama's registry gates manifests on the
/// User-Agent, and Accept selects the manifest kind.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub user_agent: Option<HeaderValue>,
    pub accept: Vec<HeaderValue>,
    /// The request came from another shoal node (it is never relayed to a third).
    pub from_peer: bool,
    /// The client's own credentials, forwarded to the registry (never to a CDN it
    /// redirects to). What they fetch is private to those who upstream lets see it.
    pub authorization: Option<HeaderValue>,
}

impl ClientMeta {
    /// A fingerprint of the client's credentials (SHA-256 of its `Authorization`), to key
    /// what upstream confirmed for them without keeping the secret; `None` for anonymous.
    pub fn credential(&self) -> Option<[u8; 32]> {
        use sha2::Digest as _;
        self.authorization
            .as_ref()
            .map(|a| sha2::Sha256::digest(a.as_bytes()).into())
    }

    /// The key under which a tag's answer is cached: the media types the client accepts,
    /// as a sorted set without parameters, so that order (Docker sends the same types in
    /// several orders) and `;q=` do not split the cache or bypass it when upstream is down.
    pub fn accept_key(&self) -> String {
        accept_key(
            self.accept
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(",")
                .as_str(),
        )
    }
}

/// The normal form of an Accept header's media types (see `ClientMeta::accept_key`).
fn accept_key(accept: &str) -> String {
    let mut types: Vec<String> = accept
        .split(',')
        .filter_map(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if types.is_empty() {
        return accept_key(DEFAULT_ACCEPT);
    }
    types.sort();
    types.dedup();
    types.join(", ")
}

/// Upstream's answer to a manifest request.
#[derive(Debug)]
pub enum ManifestAnswer {
    Found {
        body: Bytes,
        content_type: Option<String>,
    },
    /// A 4xx, passed through to the client as it came (404, 412 "requires a newer version").
    Refused {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
        /// Upstream's `WWW-Authenticate` on a 401.
        challenge: Option<HeaderValue>,
    },
}

/// One page of a repository's tags, as upstream sent it.
#[derive(Debug, Clone)]
pub struct TagList {
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    /// The query of the next page (`n=...&last=...`), from upstream's `Link`.
    pub next: Option<String>,
}

/// An answer passed back to the client as upstream gave it.
#[derive(Debug)]
pub struct Passed {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// Where a blob's bytes are and how big it is.
#[derive(Debug, Clone)]
pub struct BlobProbe {
    pub size: u64,
    /// The final URL after redirects (a presigned CDN URL for registry.ollama.ai).
    pub location: Url,
    /// False when the location ignores `Range`: then only one front-to-back stream works.
    pub ranges: bool,
}

/// A ranged GET in flight.
pub struct RangeResponse {
    pub body: Incoming,
    pub url: String,
}

struct Token {
    value: HeaderValue,
    expires: Instant,
}

pub struct Upstream {
    base: Url,
    registry: String,
    /// Blob bytes this registry (and the CDN it sends to) sent, counted as they arrive.
    pub fetched_bytes: std::sync::atomic::AtomicU64,
    client: Client<HttpsConnector<HttpConnector<PinnedResolver>>, Empty<Bytes>>,
    tokens: Mutex<HashMap<String, Token>>,
    cfg: FetchConfig,
}

impl Upstream {
    /// `registry` is the name it is known by; `pins` bypass DNS for their hosts (DNS mode:
    /// the registry's real address).
    pub fn new(
        registry: String,
        base: &RegistryUrl,
        cfg: &FetchConfig,
        pins: &[Pin],
    ) -> Result<Arc<Upstream>> {
        let base = base.url().clone();
        let pins = pins.iter().map(|p| (p.host.clone(), p.addr)).collect();
        let mut http = crate::net::connector(
            HttpConnector::new_with_resolver(PinnedResolver::new(pins)),
            cfg.connect_timeout,
        );
        http.enforce_http(false);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| Error::Tls(std::io::Error::other(e)))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = crate::net::builder()
            .pool_max_idle_per_host(64)
            // Bounds each body frame. When another worker takes the tail of a range, the
            // worker reading it stops at its next frame: a smaller frame wastes less.
            .http1_max_buf_size(64 * 1024)
            .build(https);
        Ok(Arc::new(Upstream {
            base,
            registry,
            fetched_bytes: Default::default(),
            client,
            tokens: Mutex::new(HashMap::new()),
            cfg: cfg.clone(),
        }))
    }

    /// The upstream's base URL, as configured.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `scheme://host[:port]`, safe to show (`RegistryUrl` refuses credentials in URLs).
    pub fn shown_url(&self) -> String {
        format!("{}://{}", self.base.scheme(), self.base.authority())
    }

    /// The name it is known by (`hf.co`; `host[:port]` of the default), the namespace of
    /// its cached tags.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(path);
        u
    }

    /// Fetches a manifest with the client's User-Agent and Accept. `quick` is for
    /// revalidating something already cached: one short attempt, since the stale copy is
    /// a good answer and a client should not wait on an upstream that is gone.
    pub async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        meta: &ClientMeta,
        quick: bool,
    ) -> Result<ManifestAnswer> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let (attempts, timeout) = if quick {
            (1, self.cfg.request_timeout.min(QUICK_TIMEOUT))
        } else {
            (self.cfg.retries, self.cfg.request_timeout)
        };
        self.retrying(attempts, || async {
            let mut headers = self.client_headers(meta);
            if meta.accept.is_empty() {
                headers.insert(ACCEPT, HeaderValue::from_static(DEFAULT_ACCEPT));
            } else {
                for a in &meta.accept {
                    headers.append(ACCEPT, a.clone());
                }
            }
            let deadline = Instant::now() + timeout;
            let (resp, at) = self
                .send(Method::GET, url.clone(), headers, repo, meta, timeout)
                .await?;
            let status = resp.status();
            let content_type = resp.headers().get(CONTENT_TYPE).cloned();
            let challenge = resp.headers().get(WWW_AUTHENTICATE).cloned();
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(Error::Status {
                    url: redact(&at),
                    status,
                });
            }
            let limit = if status == StatusCode::OK {
                MAX_MANIFEST
            } else {
                MAX_ERROR_BODY
            };
            let body = read_limited(resp.into_body(), limit, deadline, &at).await?;
            if status == StatusCode::OK {
                Ok(ManifestAnswer::Found {
                    body,
                    content_type: content_type.and_then(|v| v.to_str().ok().map(str::to_owned)),
                })
            } else if status.is_client_error() {
                Ok(ManifestAnswer::Refused {
                    status,
                    content_type,
                    body,
                    challenge,
                })
            } else {
                Err(Error::Status {
                    url: redact(&at),
                    status,
                })
            }
        })
        .await
    }

    /// Lists a repository's tags (`query` is the checked `n`/`last`, possibly empty). A
    /// `Link` to the next page comes back as its query alone, to be put on the path the
    /// client used.
    pub async fn tag_list(
        &self,
        repo: &RepoName,
        query: &str,
        meta: &ClientMeta,
    ) -> Result<TagList> {
        let mut url = self.url(&format!("/v2/{repo}/tags/list"));
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        self.retrying(self.cfg.retries, || async {
            let timeout = self.cfg.request_timeout;
            let deadline = Instant::now() + timeout;
            let (resp, at) = self
                .send(
                    Method::GET,
                    url.clone(),
                    self.client_headers(meta),
                    repo,
                    meta,
                    timeout,
                )
                .await?;
            let status = resp.status();
            if let Some(e) = self.denied(status, resp.headers(), &at) {
                return Err(e);
            }
            match status {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Err(Error::NotFound { url: redact(&at) }),
                status => {
                    return Err(Error::Status {
                        url: redact(&at),
                        status,
                    })
                }
            }
            let content_type = resp.headers().get(CONTENT_TYPE).cloned();
            let next = header_str(resp.headers(), &http::header::LINK)
                .and_then(|l| l.split_once('<')?.1.split_once('>'))
                .and_then(|(target, _)| target.split_once('?'))
                .map(|(_, q)| q.to_owned());
            let body = read_limited(resp.into_body(), MAX_MANIFEST, deadline, &at).await?;
            Ok(TagList {
                body,
                content_type,
                next,
            })
        })
        .await
    }

    /// Passes a client's token request to the registry's own token endpoint (`/v2/token`
    /// with the client's query and credentials: ollama's signed key, a Basic login), and
    /// its answer back, untouched and kept nowhere.
    pub async fn token(&self, query: Option<&str>, meta: &ClientMeta) -> Result<Passed> {
        let mut url = self.url("/v2/token");
        url.set_query(query);
        let timeout = self.cfg.request_timeout;
        // `send` keys shoal's own anonymous tokens by repository; the token endpoint has
        // none, and this name keeps whatever it might get apart from real repositories'.
        let repo: RepoName = "token".parse().map_err(|_| Error::Invalid {
            url: redact(&url),
            what: "token".into(),
        })?;
        let (resp, at) = self
            .send(
                Method::GET,
                url,
                self.client_headers(meta),
                &repo,
                meta,
                timeout,
            )
            .await?;
        let status = resp.status();
        let content_type = resp.headers().get(CONTENT_TYPE).cloned();
        let body = read_limited(
            resp.into_body(),
            MAX_ERROR_BODY,
            Instant::now() + timeout,
            &at,
        )
        .await?;
        Ok(Passed {
            status,
            content_type,
            body,
        })
    }

    /// Whether the registry serves a blob to this client: a `HEAD` with its credentials (or
    /// none), answered by the registry itself (a `200`, or a redirect to its storage,
    /// which is not followed). `Denied` or `NotFound` when it will not.
    pub async fn check_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        meta: &ClientMeta,
    ) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        self.retrying(self.cfg.retries, || async {
            let timeout = self.cfg.request_timeout;
            let headers = self.client_headers(meta);
            let (resp, at) = self
                .send(Method::HEAD, url.clone(), headers, repo, meta, timeout)
                .await?;
            let status = resp.status();
            if let Some(e) = self.denied(status, resp.headers(), &at) {
                return Err(e);
            }
            match status {
                s if s.is_success() || s.is_redirection() => Ok(()),
                StatusCode::NOT_FOUND => Err(Error::NotFound { url: redact(&at) }),
                status => Err(Error::Status {
                    url: redact(&at),
                    status,
                }),
            }
        })
        .await
    }

    /// Finds a blob's size and final location with one `Range: bytes=0-0` GET, following
    /// redirects. (A HEAD would do for size, but presigned URLs are often signed for GET
    /// only, and the GET also tells whether the location honours ranges.)
    pub async fn probe_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        meta: &ClientMeta,
    ) -> Result<BlobProbe> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        self.retrying(self.cfg.retries, || async {
            let mut headers = self.client_headers(meta);
            headers.insert(RANGE, HeaderValue::from_static("bytes=0-0"));
            let (resp, at) = self
                .send(
                    Method::GET,
                    url.clone(),
                    headers,
                    repo,
                    meta,
                    self.cfg.request_timeout,
                )
                .await?;
            let status = resp.status();
            let h = resp.headers();
            if let Some(e) = self.denied(status, h, &at) {
                return Err(e);
            }
            let invalid = |what: &str| Error::Invalid {
                url: redact(&at),
                what: what.to_owned(),
            };
            let (size, ranges) = match status {
                StatusCode::PARTIAL_CONTENT => {
                    let cr = header_str(h, &CONTENT_RANGE)
                        .and_then(parse_content_range)
                        .ok_or_else(|| invalid("206 without a valid Content-Range"))?;
                    if cr.start != 0 {
                        return Err(invalid("206 for bytes=0-0 does not start at 0"));
                    }
                    (cr.total, true)
                }
                StatusCode::OK => (
                    header_str(h, &CONTENT_LENGTH)
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| invalid("200 without a Content-Length"))?,
                    false,
                ),
                StatusCode::RANGE_NOT_SATISFIABLE => (
                    header_str(h, &CONTENT_RANGE)
                        .and_then(|v| v.strip_prefix("bytes */"))
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| invalid("416 without the total in Content-Range"))?,
                    true,
                ),
                StatusCode::NOT_FOUND => return Err(Error::NotFound { url: redact(&at) }),
                status => {
                    return Err(Error::Status {
                        url: redact(&at),
                        status,
                    })
                }
            };
            Ok(BlobProbe {
                size,
                location: at,
                ranges,
            })
        })
        .await
    }

    /// Starts a GET of `span` at a blob location (`whole`: of all of it, for a location
    /// that ignores ranges). The caller reads the body with its own stall timer; `timeout`
    /// bounds the wait for response headers. `meta`'s credentials go only to the registry.
    pub async fn get_range(
        &self,
        (repo, meta): (&RepoName, &ClientMeta),
        location: &Url,
        span: std::ops::Range<u64>,
        whole: bool,
        timeout: Duration,
    ) -> Result<RangeResponse> {
        let std::ops::Range { start, end } = span;
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, HeaderValue::from_static(SHOAL_UA));
        if !whole {
            let v = format!("bytes={start}-{}", end.saturating_sub(1));
            headers.insert(
                RANGE,
                HeaderValue::from_str(&v).map_err(|_| Error::Invalid {
                    url: redact(location),
                    what: "bad range".into(),
                })?,
            );
        }
        let (resp, at) = self
            .send(Method::GET, location.clone(), headers, repo, meta, timeout)
            .await?;
        let url = redact(&at);
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if !whole => {
                let cr = header_str(resp.headers(), &CONTENT_RANGE).and_then(parse_content_range);
                match cr {
                    Some(cr) if cr.start == start => Ok(RangeResponse {
                        body: resp.into_body(),
                        url,
                    }),
                    _ => Err(Error::Invalid {
                        url,
                        what: format!("206 whose Content-Range does not start at {start}"),
                    }),
                }
            }
            StatusCode::OK if start == 0 => Ok(RangeResponse {
                body: resp.into_body(),
                url,
            }),
            StatusCode::OK => Err(Error::Invalid {
                url,
                what: "ignored the Range header".into(),
            }),
            StatusCode::NOT_FOUND => Err(Error::NotFound { url }),
            status => Err(Error::Status { url, status }),
        }
    }

    fn client_headers(&self, meta: &ClientMeta) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            USER_AGENT,
            meta.user_agent
                .clone()
                .unwrap_or(HeaderValue::from_static(SHOAL_UA)),
        );
        h
    }

    async fn retrying<T, F, Fut>(&self, attempts: u32, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let attempts = attempts.max(1);
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < attempts => {
                    let wait = backoff(attempt);
                    tracing::warn!(error = %crate::telemetry::chain(&e), attempt, ?wait, "upstream request failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One request, following redirects. Returns the response and the URL that gave it.
    ///
    /// The client's own `Authorization` goes to the registry as it came, and a 401 comes
    /// back for the client to answer. Without one, a Bearer challenge is answered once
    /// with an anonymous token of shoal's own.
    async fn send(
        &self,
        method: Method,
        mut url: Url,
        headers: HeaderMap,
        repo: &RepoName,
        meta: &ClientMeta,
        timeout: Duration,
    ) -> Result<(Response<Incoming>, Url)> {
        let mut tried_token = false;
        let mut hops = 0;
        loop {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(url.as_str())
                .body(Empty::<Bytes>::new())
                .map_err(|e| Error::Invalid {
                    url: redact(&url),
                    what: e.to_string(),
                })?;
            *req.headers_mut() = headers.clone();
            // Credentials only ever go to the registry itself, never to a CDN it redirects to.
            let to_registry = self.is_registry(&url);
            if to_registry {
                let auth = match &meta.authorization {
                    Some(a) => Some(a.clone()),
                    None => self.cached_token(repo),
                };
                if let Some(a) = auth {
                    req.headers_mut().insert(AUTHORIZATION, a);
                }
            }
            let resp = match tokio::time::timeout(timeout, self.client.request(req)).await {
                Err(_) => {
                    return Err(Error::Timeout {
                        url: redact(&url),
                        after: timeout,
                    })
                }
                Ok(Err(source)) => {
                    return Err(Error::Connect {
                        url: redact(&url),
                        source,
                    })
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            // A HEAD asks the registry itself (`check_blob`): its redirect is the answer.
            if status.is_redirection()
                && status != StatusCode::NOT_MODIFIED
                && method != Method::HEAD
            {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(Error::Redirects { url: redact(&url) });
                }
                let next = header_str(resp.headers(), &LOCATION)
                    .and_then(|l| url.join(l).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| Error::Invalid {
                        url: redact(&url),
                        what: format!("{status} without a usable Location"),
                    })?;
                url = next;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED
                && to_registry
                && !tried_token
                && meta.authorization.is_none()
            {
                tried_token = true;
                if let Some(ch) =
                    header_str(resp.headers(), &WWW_AUTHENTICATE).and_then(auth::parse_challenge)
                {
                    self.fetch_token(repo, &ch, timeout).await?;
                    continue;
                }
            }
            return Ok((resp, url));
        }
    }

    /// A 401 or 403 from the registry itself as `Error::Denied`, else `None`. Only the
    /// registry judges credentials: a CDN's 403 (a presigned URL refused) is upstream
    /// failing, whoever asked.
    fn denied(&self, status: StatusCode, headers: &HeaderMap, at: &Url) -> Option<Error> {
        let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
        (refused && self.is_registry(at)).then(|| Error::Denied {
            url: redact(at),
            status,
            challenge: headers.get(WWW_AUTHENTICATE).cloned(),
        })
    }

    fn is_registry(&self, u: &Url) -> bool {
        u.host_str() == self.base.host_str()
            && u.port_or_known_default() == self.base.port_or_known_default()
    }

    fn cached_token(&self, repo: &RepoName) -> Option<HeaderValue> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(repo.as_str())
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.value.clone())
    }

    async fn fetch_token(
        &self,
        repo: &RepoName,
        ch: &auth::Challenge,
        timeout: Duration,
    ) -> Result<()> {
        let err = |what: String| Error::Token {
            realm: ch.realm.clone(),
            what,
        };
        let mut url = Url::parse(&ch.realm).map_err(|_| err("realm is not a URL".into()))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &ch.service {
                q.append_pair("service", s);
            }
            q.append_pair(
                "scope",
                ch.scope
                    .as_deref()
                    .unwrap_or(&format!("repository:{repo}:pull")),
            );
        }
        let req = Request::get(url.as_str())
            .header(USER_AGENT, SHOAL_UA)
            .body(Empty::<Bytes>::new())
            .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(timeout, self.client.request(req))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(crate::telemetry::chain(&e)))?;
        if !resp.status().is_success() {
            return Err(err(format!("answered {}", resp.status())));
        }
        let body = read_limited(
            resp.into_body(),
            MAX_ERROR_BODY,
            Instant::now() + timeout,
            &url,
        )
        .await?;
        let parsed: auth::TokenResponse =
            serde_json::from_slice(&body).map_err(|e| err(format!("bad JSON: {e}")))?;
        let expires_in = parsed.expires_in.unwrap_or(60).max(10);
        let token = parsed
            .into_token()
            .ok_or_else(|| err("no token in the answer".into()))?;
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| err("token is not a valid header value".into()))?;
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                repo.as_str().to_owned(),
                Token {
                    value,
                    // Renew a little early so a token never expires mid-request.
                    expires: Instant::now() + Duration::from_secs(expires_in.saturating_sub(5)),
                },
            );
        Ok(())
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = 250u64 << attempt.min(5);
    Duration::from_millis(base + fastrand::u64(0..=base / 2))
}

fn header_str<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[derive(Debug, PartialEq, Eq)]
struct ContentRange {
    start: u64,
    end: u64,
    total: u64,
}

/// `bytes a-b/total` (a known total is required: shoal needs the blob size).
fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let cr = ContentRange {
        start: a.trim().parse().ok()?,
        end: b.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    };
    (cr.start <= cr.end && cr.end < cr.total).then_some(cr)
}

async fn read_limited(
    mut body: Incoming,
    limit: usize,
    deadline: Instant,
    url: &Url,
) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), body.frame())
            .await
            .map_err(|_| Error::Timeout {
                url: redact(url),
                after: Duration::ZERO,
            })?;
        let Some(frame) = frame else {
            return Ok(buf.freeze());
        };
        let frame = frame.map_err(|source| Error::Body {
            url: redact(url),
            source,
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(Error::Invalid {
                    url: redact(url),
                    what: format!("body larger than {limit} bytes"),
                });
            }
            buf.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v040_accept_key_is_what_ollama_0_40_sends_normalised() {
        let sent = "application/vnd.ollama.manifest.list.v2+json, \
                    application/vnd.docker.distribution.manifest.v2+json";
        assert_eq!(accept_key(sent), crate::oci::OLLAMA_V040_ACCEPT_KEY);
    }

    #[test]
    fn accept_keys_ignore_order_case_and_parameters() {
        let a = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json;q=0.9";
        let b = "Application/VND.docker.distribution.manifest.v2+json,application/vnd.oci.image.index.v1+json, application/vnd.oci.image.index.v1+json";
        assert_eq!(accept_key(a), accept_key(b));
        assert_eq!(
            accept_key(a),
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json"
        );
        assert_ne!(
            accept_key("application/vnd.ollama.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"),
            accept_key("application/vnd.docker.distribution.manifest.v2+json"),
            "lists and plain manifests stay apart"
        );
        assert_eq!(accept_key(""), accept_key(DEFAULT_ACCEPT));
        let meta = ClientMeta {
            accept: vec![
                HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
                HeaderValue::from_static("application/vnd.docker.distribution.manifest.v2+json"),
            ],
            ..Default::default()
        };
        assert_eq!(
            meta.accept_key(),
            accept_key(a),
            "several Accept headers are one list"
        );
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-0/100"),
            Some(ContentRange {
                start: 0,
                end: 0,
                total: 100
            })
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), None);
        assert_eq!(parse_content_range("bytes 5-4/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn redaction_drops_query() {
        let u = Url::parse("https://cdn.example:8443/blob/x?X-Amz-Signature=secret").unwrap();
        assert_eq!(redact(&u), "https://cdn.example:8443/blob/x");
    }
}
