//! `/v2/` handlers: manifests and blobs, GET and HEAD, Range.
//!
//! Every blob GET without `Range` is answered `200` with the exact `Content-Length`, a
//! `Location` (this same URL) and the whole body, whatever the User-Agent (DESIGN §1):
//! - ollama's legacy downloader wants a *direct URL*: it reads only `Location`, hangs up,
//!   and sends ranged GETs there (the fill it started goes on without it);
//! - ollama ≥ 0.40's transfer client, oras, skopeo, containerd and curl read the body.
//!
//! Sniffing the User-Agent to send an empty body broke clients that read it.

use futures_util::TryStreamExt;
use http::header::{
    ACCEPT, ACCEPT_RANGES, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    LOCATION, RANGE, USER_AGENT,
};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};

use super::error::HttpError;
use super::{empty, full, Body, BodyError, State};
use crate::mirror::{BlobSource, ManifestOutcome};
use crate::oci::{Digest, RangeError, RangeSpec, Reference, RepoName};
use crate::upstream::ClientMeta;

const DIGEST_HEADER: &str = "docker-content-digest";
/// Where a blob GET's bytes come from as the answer starts: `cache`, `upstream` or `peers`
/// (shown by `shoal prefetch`).
const SOURCE_HEADER: &str = "x-shoal-source";

fn source_name(s: BlobSource) -> &'static str {
    match s {
        BlobSource::Cache => "cache",
        BlobSource::Upstream => "upstream",
        BlobSource::Peers => "peers",
    }
}

fn client_meta(req: &Request<Incoming>) -> ClientMeta {
    ClientMeta {
        user_agent: req.headers().get(USER_AGENT).cloned(),
        accept: req.headers().get_all(ACCEPT).iter().cloned().collect(),
        from_peer: req.headers().contains_key(crate::p2p::lan::PEER_HEADER),
        authorization: req.headers().get(AUTHORIZATION).cloned(),
    }
}

/// Every header value set here comes from validated input; this keeps that unpanicky.
fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("invalid"))
}

/// The repository a registry request means, qualified with its registry's host unless it
/// is the default's (`Registries::qualify`): by the intercepted host `via`, else the
/// path, else containerd's `?ns=`.
pub fn qualify(
    state: &State,
    req: &Request<Incoming>,
    via: Option<&str>,
    name: RepoName,
) -> Result<RepoName, HttpError> {
    let ns = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "ns")
            .map(|(_, v)| v.into_owned())
    });
    let registries = state.mirror.registries();
    registries.qualify(via, ns.as_deref(), name).map_err(|e| {
        tracing::warn!(error = %e, "request for a registry that is not configured refused");
        e.into()
    })
}

pub fn base() -> Result<Response<Body>, HttpError> {
    Ok(Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .header("docker-distribution-api-version", "registry/2.0")
        .body(full("{}"))?)
}

pub async fn manifest(
    state: &State,
    req: &Request<Incoming>,
    name: &RepoName,
    reference: &Reference,
) -> Result<Response<Body>, HttpError> {
    let head = req.method() == http::Method::HEAD;
    let outcome = state
        .mirror
        .manifest(name, reference, &client_meta(req))
        .await?;
    let resp = match outcome {
        ManifestOutcome::Found(m) => {
            let builder = Response::builder()
                .header(CONTENT_TYPE, hv(&m.media_type))
                .header(CONTENT_LENGTH, m.body.len())
                .header(DIGEST_HEADER, hv(&m.digest.to_string()))
                .header(ETAG, hv(&format!("\"{}\"", m.digest)))
                // A tag answers a list or a plain manifest depending on Accept.
                .header(http::header::VARY, "Accept");
            builder.body(if head { empty() } else { full(m.body) })
        }
        ManifestOutcome::Refused {
            status,
            content_type,
            body,
            challenge,
        } => {
            // A 401 goes back with upstream's challenge, which the client answers with
            // its own credentials (containerd's Basic or Bearer, ollama's signed token);
            // a 401 without one would leave it nothing to do, so it becomes a 403.
            let status = match (StatusCode::from_u16(status), &challenge) {
                (Ok(StatusCode::UNAUTHORIZED), None) | (Err(_), _) => StatusCode::FORBIDDEN,
                (Ok(s), _) => s,
            };
            tracing::debug!(%status, "upstream refused the manifest; passing it through");
            let mut builder = Response::builder()
                .status(status)
                .header(CONTENT_LENGTH, body.len());
            if let Some(ct) = content_type {
                builder = builder.header(CONTENT_TYPE, hv(&ct));
            }
            if let (StatusCode::UNAUTHORIZED, Some(ch)) = (status, &challenge) {
                builder = builder.header(http::header::WWW_AUTHENTICATE, hv(ch));
            }
            builder.body(if head { empty() } else { full(body) })
        }
    };
    Ok(resp?)
}

/// `GET /v2/token` on an intercepted registry host (proxy or DNS mode): the realm of that
/// registry's challenges. A client answering a `401` (ollama signs with its key; hf.co's
/// realm is `huggingface.co/v2/token`) gets its token from the registry itself, through
/// here; shoal keeps none of it. Elsewhere there is no such endpoint.
pub async fn token(
    state: &State,
    req: &Request<Incoming>,
    via: Option<&str>,
) -> Result<Response<Body>, HttpError> {
    let Some(host) = via else {
        return Err(HttpError::Route(crate::oci::RouteError::NotFound));
    };
    let passed = state
        .mirror
        .token(host, req.uri().query(), &client_meta(req))
        .await?;
    let mut builder = Response::builder()
        .status(passed.status)
        .header(CONTENT_LENGTH, passed.body.len())
        .header(http::header::CACHE_CONTROL, "no-store");
    if let Some(ct) = passed.content_type {
        builder = builder.header(CONTENT_TYPE, ct);
    }
    Ok(builder.body(full(passed.body))?)
}

/// `GET /v2/<name>/tags/list[?n=&last=]`: upstream's page, with its `Link` to the next one
/// put on this request's path.
pub async fn tags(
    state: &State,
    req: &Request<Incoming>,
    name: &RepoName,
) -> Result<Response<Body>, HttpError> {
    let query = tag_list_query(req.uri().query().unwrap_or(""))?;
    let list = state
        .mirror
        .tag_list(name, &query, &client_meta(req))
        .await?;
    let mut builder = Response::builder()
        .header(CONTENT_LENGTH, list.body.len())
        .header(
            CONTENT_TYPE,
            list.content_type
                .unwrap_or(HeaderValue::from_static("application/json")),
        );
    if let Some(next) = list.next.as_deref().and_then(|q| tag_list_query(q).ok()) {
        let link = format!("<{}?{next}>; rel=\"next\"", req.uri().path());
        builder = builder.header(http::header::LINK, hv(&link));
    }
    let head = req.method() == http::Method::HEAD;
    Ok(builder.body(if head { empty() } else { full(list.body) })?)
}

/// `n` and `last` of a tag list, checked and in one order (the cache key); anything else
/// is dropped.
fn tag_list_query(query: &str) -> Result<String, HttpError> {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let find = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    if let Some(n) = find("n") {
        let n: u32 = n
            .parse()
            .map_err(|_| HttpError::Pagination(format!("n={n:?} is not a count")))?;
        out.append_pair("n", &n.to_string());
    }
    if let Some(last) = find("last") {
        if last.parse::<Reference>().is_err() {
            return Err(HttpError::Pagination(format!("last={last:?} is not a tag")));
        }
        out.append_pair("last", last);
    }
    Ok(out.finish())
}

pub async fn blob(
    state: &State,
    req: &Request<Incoming>,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response<Body>, HttpError> {
    let meta = client_meta(req);
    let range = match req.headers().get(RANGE) {
        None => None,
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| RangeError::Malformed(String::from_utf8_lossy(v.as_bytes()).into()))?;
            RangeSpec::parse(s)?
        }
    };
    if req.method() == http::Method::HEAD {
        // The exact size: ollama takes Content-Length as the blob size.
        let size = state.mirror.blob_size(name, digest, &meta).await?;
        return Ok(Response::builder()
            .header(DIGEST_HEADER, hv(&digest.to_string()))
            .header(ACCEPT_RANGES, "bytes")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(empty())?);
    }

    let read = state.mirror.open_blob(name, digest, range, &meta).await?;
    let mut builder = Response::builder()
        .header(DIGEST_HEADER, hv(&read.digest.to_string()))
        .header(ACCEPT_RANGES, "bytes")
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(SOURCE_HEADER, source_name(read.source));
    builder = match read.range {
        Some(r) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(CONTENT_RANGE, r.content_range(read.size))
            .header(CONTENT_LENGTH, r.len()),
        // ollama's direct-URL step takes this Location and hangs up.
        None => builder
            .header(CONTENT_LENGTH, read.size)
            .header(LOCATION, hv(req.uri().path())),
    };
    let digest = read.digest;
    // An error mid-body aborts the connection (the client sees a short body, never a
    // complete wrong one); it is logged here, once.
    let body = read
        .body
        .inspect_err(move |e| {
            tracing::error!(%digest, error = %crate::telemetry::chain(e), "blob body aborted");
        })
        .map_ok(Frame::data)
        .map_err(|e| Box::new(e) as BodyError);
    Ok(builder.body(http_body_util::BodyExt::boxed_unsync(StreamBody::new(body)))?)
}
