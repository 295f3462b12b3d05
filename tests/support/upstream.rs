//! A fake upstream with registry.ollama.ai's quirks:
//! - `GET /v2/` is 404;
//! - manifests are served as `text/plain` and gated on the User-Agent (412 unless it
//!   starts with `ollama/`);
//! - blob GET/HEAD answer 307 to a presigned URL on another host (127.0.0.2), which
//!   honours `Range` and refuses expired signatures with 403.
//!
//! Faults can be switched on per blob: corrupt bytes, stalls, refused connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest as _, Sha256};

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[derive(Default)]
pub struct Faults {
    /// Serve these bytes instead of the real ones (same length) for this blob hex.
    pub corrupt: HashMap<String, Vec<u8>>,
    /// For this blob hex, the first N CDN GETs send `after` bytes and then stall.
    pub stall: HashMap<String, (usize, u64)>,
    /// For this blob hex, every CDN GET stops sending at this offset of the blob and
    /// stalls: a fill gets exactly the bytes before it.
    pub stall_from: HashMap<String, u64>,
    /// Signatures issued before this generation are refused (presigned URL expiry).
    pub min_sig_generation: u64,
    /// Registry answers 503 to everything.
    pub registry_503: bool,
    /// Registry requires a Bearer token from its `/token` endpoint, as Docker Hub does.
    pub require_token: bool,
    /// Repositories (by prefix) that only a client sending this exact `Authorization`
    /// may read; others get 401 with a Basic challenge, as `docker-registry` with
    /// htpasswd answers.
    pub private: Option<(String, String)>,
    /// The CDN ignores `Range` and always sends the whole blob with 200.
    pub ignore_range: bool,
    /// Blob redirects go to a signed bridge URL first, which redirects to the CDN, as
    /// hf.co's registry does (307 to a signed huggingface.co URL, then 302 to its CDN).
    pub bridge: bool,
}

#[derive(Default)]
pub struct Counters {
    pub manifest_gets: AtomicUsize,
    pub tag_lists: AtomicUsize,
    pub blob_redirects: AtomicUsize,
    pub cdn_gets: AtomicUsize,
    pub cdn_heads: AtomicUsize,
    pub cdn_bytes: AtomicU64,
    pub refused_sigs: AtomicUsize,
    pub token_requests: AtomicUsize,
    /// CDN requests that carried an Authorization header (credentials must not leak there).
    pub cdn_auth_headers: AtomicUsize,
    /// Requests refused for a private repository (`Faults::private`).
    pub denied: AtomicUsize,
}

pub struct Repo {
    pub manifests: HashMap<String, Bytes>,
}

#[derive(Default)]
pub struct Content {
    pub repos: HashMap<String, Repo>,
    pub blobs: HashMap<String, Bytes>,
}

pub struct FakeUpstream {
    pub registry: SocketAddr,
    pub cdn: SocketAddr,
    pub content: Arc<Mutex<Content>>,
    pub faults: Arc<Mutex<Faults>>,
    pub counts: Arc<Counters>,
    sig_generation: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// An ollama-style model: a manifest naming one config and some layers.
pub struct Model {
    pub manifest: Bytes,
    pub layers: Vec<Bytes>,
    pub config: Bytes,
}

impl Model {
    pub fn new(layers: Vec<Vec<u8>>) -> Model {
        Self::with_config(
            layers,
            Bytes::from_static(br#"{"model_format":"gguf","model_family":"granite"}"#),
        )
    }

    /// A model whose config blob is `config` (models that share one share that blob).
    pub fn with_config(layers: Vec<Vec<u8>>, config: Bytes) -> Model {
        let layer_json: Vec<String> = layers
            .iter()
            .map(|l| {
                format!(
                    r#"{{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{}","size":{}}}"#,
                    sha256_hex(l),
                    l.len()
                )
            })
            .collect();
        // Formatted the way ollama's registry does it; its exact bytes are the model ID.
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{}","size":{}}},"layers":[{}]}}"#,
            sha256_hex(&config),
            config.len(),
            layer_json.join(",")
        );
        Model {
            manifest: Bytes::from(manifest),
            layers: layers.into_iter().map(Bytes::from).collect(),
            config,
        }
    }

    pub fn layer_digest(&self, i: usize) -> String {
        format!("sha256:{}", sha256_hex(&self.layers[i]))
    }

    pub fn manifest_digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.manifest))
    }
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        Self::start_on("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()).await
    }

    /// The registry on one address and its CDN on another (a different host name).
    pub async fn start_on(registry: std::net::IpAddr, cdn: std::net::IpAddr) -> FakeUpstream {
        let reg_l = tokio::net::TcpListener::bind((registry, 0)).await.unwrap();
        let cdn_l = tokio::net::TcpListener::bind((cdn, 0)).await.unwrap();
        let mut up = FakeUpstream {
            registry: reg_l.local_addr().unwrap(),
            cdn: cdn_l.local_addr().unwrap(),
            content: Default::default(),
            faults: Default::default(),
            counts: Default::default(),
            sig_generation: Default::default(),
            stopped: Default::default(),
            tasks: Vec::new(),
        };
        let shared = Shared {
            cdn: up.cdn,
            content: up.content.clone(),
            faults: up.faults.clone(),
            counts: up.counts.clone(),
            sig_generation: up.sig_generation.clone(),
            stopped: up.stopped.clone(),
        };
        up.tasks
            .push(tokio::spawn(accept_loop(reg_l, shared.clone(), true)));
        up.tasks
            .push(tokio::spawn(accept_loop(cdn_l, shared, false)));
        up
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.registry)
    }

    pub fn add_blob(&self, data: impl Into<Bytes>) -> String {
        let data = data.into();
        let hex = sha256_hex(&data);
        self.content.lock().unwrap().blobs.insert(hex.clone(), data);
        format!("sha256:{hex}")
    }

    pub fn add_manifest(&self, repo: &str, tag: &str, body: impl Into<Bytes>) {
        let body = body.into();
        let mut c = self.content.lock().unwrap();
        let r = c.repos.entry(repo.to_owned()).or_insert_with(|| Repo {
            manifests: HashMap::new(),
        });
        r.manifests
            .insert(format!("sha256:{}", sha256_hex(&body)), body.clone());
        r.manifests.insert(tag.to_owned(), body);
    }

    pub fn add_model(&self, repo: &str, tag: &str, model: &Model) {
        for l in &model.layers {
            self.add_blob(l.clone());
        }
        self.add_blob(model.config.clone());
        self.add_manifest(repo, tag, model.manifest.clone());
    }

    /// Presigned URLs issued so far stop working.
    pub fn expire_signatures(&self) {
        let g = self.sig_generation.fetch_add(1, SeqCst) + 1;
        self.faults.lock().unwrap().min_sig_generation = g;
    }

    /// Connections are accepted and dropped at once: an upstream that is gone.
    pub fn set_down(&self, down: bool) {
        self.stopped.store(down, SeqCst);
    }
}

#[derive(Clone)]
struct Shared {
    cdn: SocketAddr,
    content: Arc<Mutex<Content>>,
    faults: Arc<Mutex<Faults>>,
    counts: Arc<Counters>,
    sig_generation: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

async fn accept_loop(l: tokio::net::TcpListener, s: Shared, registry: bool) {
    loop {
        let Ok((stream, _)) = l.accept().await else {
            continue;
        };
        if s.stopped.load(SeqCst) {
            drop(stream);
            continue;
        }
        let s = s.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let s = s.clone();
                async move {
                    Ok::<_, Infallible>(if registry {
                        registry_route(&s, req)
                    } else {
                        cdn_route(&s, req)
                    })
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn status(code: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(body.to_owned()))
        .unwrap()
}

const TOKEN: &str = "anon-token-1";

fn registry_route(s: &Shared, req: Request<Incoming>) -> Response<Body> {
    let (unavailable, require_token, private) = {
        let f = s.faults.lock().unwrap();
        (f.registry_503, f.require_token, f.private.clone())
    };
    if unavailable {
        return status(StatusCode::SERVICE_UNAVAILABLE, r#"{"errors":[]}"#);
    }
    let path = req.uri().path().to_owned();
    if path == "/token" {
        s.counts.token_requests.fetch_add(1, SeqCst);
        let q = req.uri().query().unwrap_or("");
        if !q.contains("scope=repository%3A") || !q.contains("service=fake") {
            return status(StatusCode::BAD_REQUEST, r#"{"details":"bad scope"}"#);
        }
        return status(
            StatusCode::OK,
            &format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#),
        );
    }
    if path == "/v2/token" {
        // A registry's own token endpoint (hf.co's realm is huggingface.co/v2/token):
        // the token names the credentials it was asked with.
        s.counts.token_requests.fetch_add(1, SeqCst);
        let Some(auth) = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        else {
            return status(
                StatusCode::UNAUTHORIZED,
                r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            );
        };
        let q = req.uri().query().unwrap_or("");
        return status(
            StatusCode::OK,
            &serde_json::json!({ "token": format!("for {auth} {q}") }).to_string(),
        );
    }
    if let Some((prefix, credential)) = private {
        let sent = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if path.starts_with(&format!("/v2/{prefix}")) && sent != Some(credential.as_str()) {
            s.counts.denied.fetch_add(1, SeqCst);
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("www-authenticate", r#"Basic realm="fake-private""#)
                .body(full(r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#))
                .unwrap();
        }
    }
    if require_token {
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {TOKEN}"));
        if !ok {
            let repo = path
                .strip_prefix("/v2/")
                .and_then(|r| r.rsplitn(3, '/').nth(2))
                .unwrap_or("");
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(
                    "www-authenticate",
                    format!(
                        r#"Bearer realm="http://{}/token",service="fake",scope="repository:{repo}:pull""#,
                        req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("")
                    ),
                )
                .body(full(r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#))
                .unwrap();
        }
    }
    if path == "/v2/" || path == "/v2" {
        return status(StatusCode::NOT_FOUND, "404 page not found");
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return status(StatusCode::NOT_FOUND, "404 page not found");
    };
    let Some((head, last)) = rest.rsplit_once('/') else {
        return status(StatusCode::NOT_FOUND, "");
    };
    let Some((repo, kind)) = head.rsplit_once('/') else {
        return status(StatusCode::NOT_FOUND, "");
    };
    match kind {
        "tags" if last == "list" => {
            s.counts.tag_lists.fetch_add(1, SeqCst);
            let c = s.content.lock().unwrap();
            let Some(r) = c.repos.get(repo) else {
                return status(
                    StatusCode::NOT_FOUND,
                    r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#,
                );
            };
            let mut tags: Vec<&String> = r
                .manifests
                .keys()
                .filter(|t| !t.starts_with("sha256:"))
                .collect();
            tags.sort();
            // distribution's pagination: after `last`, at most `n`, and a Link when cut.
            let q: HashMap<String, String> = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            if let Some(l) = q.get("last") {
                tags.retain(|t| t.as_str() > l.as_str());
            }
            let n = q
                .get("n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let cut = tags.len() > n;
            tags.truncate(n);
            let body = serde_json::json!({ "name": repo, "tags": tags }).to_string();
            let mut b = Response::builder().header("content-type", "application/json");
            if let (true, Some(l)) = (cut, tags.last()) {
                b = b.header(
                    "link",
                    format!("</v2/{repo}/tags/list?last={l}&n={n}>; rel=\"next\""),
                );
            }
            b.body(full(body)).unwrap()
        }
        "manifests" => {
            s.counts.manifest_gets.fetch_add(1, SeqCst);
            let ua = req
                .headers()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ua.starts_with("ollama/") {
                return status(
                    StatusCode::PRECONDITION_FAILED,
                    r#"{"errors":[{"code":"UNSUPPORTED","message":"this model requires a newer version of Ollama"}]}"#,
                );
            }
            let c = s.content.lock().unwrap();
            match c.repos.get(repo).and_then(|r| r.manifests.get(last)) {
                Some(body) => Response::builder()
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(full(body.clone()))
                    .unwrap(),
                None => status(
                    StatusCode::NOT_FOUND,
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                ),
            }
        }
        "blobs" => {
            let hex = last.strip_prefix("sha256:").unwrap_or("").to_owned();
            if !s.content.lock().unwrap().blobs.contains_key(&hex) {
                return status(
                    StatusCode::NOT_FOUND,
                    r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#,
                );
            }
            s.counts.blob_redirects.fetch_add(1, SeqCst);
            let generation = s.sig_generation.load(SeqCst);
            let hop = if s.faults.lock().unwrap().bridge {
                "bridge"
            } else {
                "r2/blobs"
            };
            Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(
                    "location",
                    format!(
                        "http://{}/{hop}/{hex}?X-Amz-Signature=sig{generation}&X-Amz-Expires=1200",
                        s.cdn
                    ),
                )
                .body(full(""))
                .unwrap()
        }
        _ => status(StatusCode::NOT_FOUND, ""),
    }
}

fn cdn_route(s: &Shared, req: Request<Incoming>) -> Response<Body> {
    if req.headers().contains_key("authorization") {
        s.counts.cdn_auth_headers.fetch_add(1, SeqCst);
    }
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/bridge/") {
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(
                "location",
                format!("/r2/blobs/{rest}?{}", req.uri().query().unwrap_or("")),
            )
            .body(full(""))
            .unwrap();
    }
    let Some(hex) = path.strip_prefix("/r2/blobs/") else {
        return status(StatusCode::NOT_FOUND, "");
    };
    let generation: u64 = req
        .uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("X-Amz-Signature=sig"))
        })
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let (data, stall, stall_from, ignore_range) = {
        let mut f = s.faults.lock().unwrap();
        if generation < f.min_sig_generation {
            s.counts.refused_sigs.fetch_add(1, SeqCst);
            return status(
                StatusCode::FORBIDDEN,
                "<Error><Code>AccessDenied</Code></Error>",
            );
        }
        let c = s.content.lock().unwrap();
        let Some(real) = c.blobs.get(hex) else {
            return status(StatusCode::NOT_FOUND, "");
        };
        let data = match f.corrupt.get(hex) {
            Some(bad) => Bytes::from(bad.clone()),
            None => real.clone(),
        };
        let mut stall = None;
        if req.method() == http::Method::GET {
            if let Some((n, after)) = f.stall.get_mut(hex) {
                if *n > 0 {
                    *n -= 1;
                    stall = Some(*after);
                }
            }
        }
        let stall_from = f.stall_from.get(hex).copied();
        (data, stall, stall_from, f.ignore_range)
    };
    let size = data.len() as u64;
    if req.method() == http::Method::HEAD {
        s.counts.cdn_heads.fetch_add(1, SeqCst);
        return Response::builder()
            .header("content-length", size)
            .header("accept-ranges", "bytes")
            .body(full(""))
            .unwrap();
    }
    s.counts.cdn_gets.fetch_add(1, SeqCst);
    let range = req
        .headers()
        .get("range")
        .filter(|_| !ignore_range)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .map(|(a, b)| {
            let a: u64 = a.parse().unwrap_or(0);
            let b: u64 = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                b.parse().unwrap_or(0)
            };
            (a, b.min(size.saturating_sub(1)))
        });
    let (code, start, end) = match range {
        Some((a, _)) if a >= size => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header("content-range", format!("bytes */{size}"))
                .body(full(""))
                .unwrap()
        }
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        None => (StatusCode::OK, 0, size),
    };
    let stall = match stall_from {
        Some(at) if at < end => Some(at.saturating_sub(start)),
        _ => stall,
    };
    let part = data.slice(start as usize..end as usize);
    let counts = s.counts.clone();
    // Sent in 64 KiB frames, counting bytes as they go out; a stall sends `after` bytes
    // and then nothing for a minute.
    let chunks: Vec<Bytes> = (0..part.len())
        .step_by(64 * 1024)
        .map(|i| part.slice(i..(i + 64 * 1024).min(part.len())))
        .collect();
    let stream = futures_util::stream::unfold((chunks.into_iter(), 0u64), move |(mut it, sent)| {
        let counts = counts.clone();
        async move {
            if let Some(after) = stall {
                if sent >= after {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return None;
                }
            }
            let c = it.next()?;
            counts.cdn_bytes.fetch_add(c.len() as u64, SeqCst);
            let n = c.len() as u64;
            Some((Ok::<_, std::io::Error>(Frame::data(c)), (it, sent + n)))
        }
    });
    let mut b = Response::builder()
        .status(code)
        .header("content-length", end - start)
        .header("accept-ranges", "bytes");
    if code == StatusCode::PARTIAL_CONTENT {
        b = b.header("content-range", format!("bytes {start}-{}/{size}", end - 1));
    }
    b.body(StreamBody::new(stream).boxed_unsync()).unwrap()
}
