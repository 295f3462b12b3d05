//! Clients as they behave on the wire: plain HTTP helpers, and `ollama_pull`, which
//! replays ollama's pull (manifest with ollama's User-Agent and Accept; per blob a HEAD,
//! the direct-URL step, then up to 16 parallel ranged GETs whose status is not checked;
//! a sha256 check at the end).

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::try_join_all;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use sha2::{Digest as _, Sha256};

pub const OLLAMA_UA: &str = "ollama/0.12.0 (amd64 linux) Go/go1.24.0";
pub const GO_UA: &str = "Go-http-client/1.1";
pub const OLLAMA_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The OCI error code of an error body.
    pub fn oci_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request, no redirects followed. A body cut short comes back as an error.
pub async fn try_request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    request_reading(method, url, headers, true).await
}

/// As `try_request`; with `read_body` false the body is dropped unread once the headers
/// are in (the connection is closed), as ollama's direct-URL step does.
pub async fn request_reading(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    read_body: bool,
) -> Result<Resp, String> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client()
        .request(b.body(Empty::new()).unwrap())
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if !read_body {
        return Ok(Resp {
            status,
            headers,
            body: Bytes::new(),
        });
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: body: {e:?}"))?
        .to_bytes();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

pub async fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Resp {
    try_request(method, url, headers).await.unwrap()
}

/// One request with a body (`Content-Type: application/json`).
pub async fn request_with_body(method: Method, url: &str, body: &str) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = Client::builder(TokioExecutor::new())
        .build_http()
        .request(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    request(Method::GET, url, headers).await
}

pub async fn head(url: &str, headers: &[(&str, &str)]) -> Resp {
    request(Method::HEAD, url, headers).await
}

fn host_of(url: &str) -> String {
    let u: http::Uri = url.parse().unwrap();
    u.host().unwrap_or("").to_owned()
}

fn join(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        let u: http::Uri = base.parse().unwrap();
        format!(
            "{}://{}{}",
            u.scheme_str().unwrap_or("http"),
            u.authority().unwrap(),
            location
        )
    }
}

/// Follows redirects; `same_host_only` stops at the first one to another host, and
/// leaves the final body unread, as ollama's direct-URL step does.
pub async fn follow(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    same_host_only: bool,
) -> Result<(Resp, String), String> {
    let mut url = url.to_owned();
    for _ in 0..10 {
        let r = request_reading(method.clone(), &url, headers, !same_host_only).await?;
        if matches!(r.status, 301 | 302 | 303 | 307 | 308) {
            let loc = r.header("location").ok_or("redirect without Location")?;
            let next = join(&url, loc);
            if same_host_only && host_of(&next) != host_of(&url) {
                return Ok((r, url));
            }
            url = next;
            continue;
        }
        return Ok((r, url));
    }
    Err("too many redirects".into())
}

#[derive(Clone, Copy)]
pub struct PullOptions {
    pub min_part: u64,
    pub max_part: u64,
}

impl Default for PullOptions {
    /// Smaller than ollama's 100 MB..1 GB so that test blobs still split into parts.
    fn default() -> Self {
        PullOptions {
            min_part: 256 * 1024,
            max_part: 1 << 30,
        }
    }
}

#[derive(Debug)]
pub struct PulledBlob {
    pub digest: String,
    pub data: Bytes,
    pub direct_status: u16,
    pub part_statuses: Vec<u16>,
}

#[derive(Debug)]
pub struct Pull {
    pub manifest: Bytes,
    pub blobs: Vec<PulledBlob>,
}

/// ollama's part layout: clamp(size/16, min, max) from 0, the last part taking the rest.
pub fn layout_parts(size: u64, min: u64, max: u64) -> Vec<(u64, u64)> {
    let part = (size / 16).clamp(min, max);
    let mut out = Vec::new();
    let mut off = 0;
    while off < size {
        let len = part.min(size - off);
        out.push((off, len));
        off += len;
    }
    out
}

/// Pulls `repo:tag` from `base` exactly as ollama does.
pub async fn ollama_pull(
    base: &str,
    repo: &str,
    tag: &str,
    opts: PullOptions,
) -> Result<Pull, String> {
    let m = try_request(
        Method::GET,
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        &[("user-agent", OLLAMA_UA), ("accept", OLLAMA_ACCEPT)],
    )
    .await?;
    if m.status != 200 {
        return Err(format!(
            "pull model manifest: {}: {}",
            m.status,
            String::from_utf8_lossy(&m.body)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&m.body).map_err(|e| format!("manifest JSON: {e}"))?;
    let mut digests: Vec<String> = v["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["digest"].as_str().map(str::to_owned))
        .collect();
    if let Some(c) = v["config"]["digest"].as_str() {
        digests.push(c.to_owned());
    }
    let mut blobs = Vec::new();
    for d in digests {
        blobs.push(ollama_blob(base, repo, &d, opts).await?);
    }
    Ok(Pull {
        manifest: m.body,
        blobs,
    })
}

pub async fn ollama_blob(
    base: &str,
    repo: &str,
    digest: &str,
    opts: PullOptions,
) -> Result<PulledBlob, String> {
    let url = format!("{base}/v2/{repo}/blobs/{digest}");
    // HEAD, following redirects: Content-Length is taken as the size.
    let (h, _) = follow(Method::HEAD, &url, &[("user-agent", OLLAMA_UA)], false).await?;
    if h.status >= 400 {
        return Err(format!("HEAD {url}: {}", h.status));
    }
    let size: u64 = h
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or("HEAD without Content-Length")?;
    // Direct URL: same-host redirects only; 307 to another host, or 200 + Location.
    let (d, at) = follow(Method::GET, &url, &[("user-agent", OLLAMA_UA)], true).await?;
    if d.status != 307 && d.status != 200 {
        return Err(format!("direct URL: unexpected status code {}", d.status));
    }
    let loc = d
        .header("location")
        .ok_or("no Location header in response")?;
    let direct = join(&at, loc);
    // Parts in parallel; status codes are not checked, exactly `len` bytes are taken.
    let parts = layout_parts(size, opts.min_part, opts.max_part);
    let fetches = parts.iter().map(|&(off, len)| {
        let direct = direct.clone();
        async move {
            let range = format!("bytes={}-{}", off, off + len - 1);
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                try_request(
                    Method::GET,
                    &direct,
                    &[("user-agent", GO_UA), ("range", &range)],
                ),
            )
            .await
            .map_err(|_| format!("part at {off} timed out"))??;
            if (r.body.len() as u64) < len {
                return Err(format!(
                    "part at {off}: short body {} < {len} (status {})",
                    r.body.len(),
                    r.status
                ));
            }
            Ok::<_, String>((r.status, r.body.slice(..len as usize)))
        }
    });
    let got = try_join_all(fetches).await?;
    let mut data = Vec::with_capacity(size as usize);
    let mut statuses = Vec::new();
    for (status, b) in got {
        statuses.push(status);
        data.extend_from_slice(&b);
    }
    let sum = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    if sum != digest {
        return Err(format!(
            "digest mismatch, file must be downloaded again: want {digest}, got {sum}"
        ));
    }
    Ok(PulledBlob {
        digest: digest.to_owned(),
        data: Bytes::from(data),
        direct_status: d.status,
        part_statuses: statuses,
    })
}

pub fn is_partial(status: u16) -> bool {
    status == StatusCode::PARTIAL_CONTENT.as_u16()
}
