//! `/_shoal/v1/` admin endpoints: health, stats, the CA, verify.

use http::header::CONTENT_TYPE;
use http::Response;

use super::error::HttpError;
use super::{full, Body, BodyError, State};
use crate::mirror::Verdict;

/// Also says which registries are cached: `shoal prefetch` checks a model's host against
/// them.
pub fn health(state: &State) -> Result<Response<Body>, HttpError> {
    json(&serde_json::json!({
        "status": "ok",
        "upstream": state.mirror.upstream_url(),
        "registries": state.mirror.registries().names(),
    }))
}

pub fn stats(state: &State) -> Result<Response<Body>, HttpError> {
    let counters = state.mirror.stats().counters();
    let (blobs, cache_bytes) = state.mirror.store().totals();
    let mut v = serde_json::to_value(&counters)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("blobs".into(), blobs.into());
        obj.insert("cache_bytes".into(), cache_bytes.into());
        obj.insert(
            "cache_limit_bytes".into(),
            state.mirror.cache_limit().into(),
        );
        obj.insert("caps".into(), serde_json::to_value(&state.caps)?);
        let registries: serde_json::Map<String, serde_json::Value> = state
            .mirror
            .registries()
            .all()
            .into_iter()
            .map(|u| {
                let bytes = u.fetched_bytes.load(std::sync::atomic::Ordering::Relaxed);
                let entry = serde_json::json!({ "url": u.shown_url(), "upstream_bytes": bytes });
                (u.registry().to_owned(), entry)
            })
            .collect();
        obj.insert("registries".into(), registries.into());
        obj.insert(
            "fills_running".into(),
            (state.mirror.filling() as u64).into(),
        );
        // What clients got that did not cross the internet.
        let saved = counters
            .served_bytes
            .saturating_sub(counters.upstream_bytes);
        obj.insert("saved_bytes".into(), saved.into());
        obj.insert(
            "uptime_secs".into(),
            state.started.elapsed().as_secs().into(),
        );
    }
    json(&v)
}

/// The cached models, by name (what `shoal ls` and the dashboard show).
pub async fn models(state: &State) -> Result<Response<Body>, HttpError> {
    let models = state.mirror.models().await.map_err(HttpError::Models)?;
    json(&serde_json::json!({ "models": models, "prefetches": state.prefetches.list() }))
}

/// A prefetch asked through the API, as the dashboard shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PrefetchState {
    pub name: String,
    /// "running", "done" or "failed".
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub bytes: u64,
    pub started_ms: i64,
}

/// The last prefetches asked through the API (at most `MAX_PREFETCHES`, oldest dropped).
#[derive(Debug, Default, Clone)]
pub struct Prefetches(std::sync::Arc<std::sync::Mutex<Vec<PrefetchState>>>);

const MAX_PREFETCHES: usize = 20;

impl Prefetches {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PrefetchState>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new prefetch of `name`; false when one is running already.
    fn start(&self, name: &str) -> bool {
        let mut all = self.lock();
        if all.iter().any(|p| p.name == name && p.state == "running") {
            return false;
        }
        if all.len() >= MAX_PREFETCHES {
            all.remove(0);
        }
        all.push(PrefetchState {
            name: name.to_owned(),
            state: "running",
            error: None,
            bytes: 0,
            started_ms: crate::store::now_ms(),
        });
        true
    }

    fn finish(&self, name: &str, result: &Result<u64, String>) {
        let mut all = self.lock();
        if let Some(p) = all.iter_mut().rev().find(|p| p.name == name) {
            match result {
                Ok(bytes) => (p.state, p.bytes) = ("done", *bytes),
                Err(e) => (p.state, p.error) = ("failed", Some(e.clone())),
            }
        }
    }

    pub fn list(&self) -> Vec<PrefetchState> {
        self.lock().clone()
    }
}

/// `POST /_shoal/v1/models/<name>/prefetch`: starts fetching a model (every platform of a
/// list) and answers 202 at once. It pulls through this node's own listener, exactly as
/// `shoal prefetch` does, so it takes the same path as any client; `GET
/// /_shoal/v1/models` reports how it went under `prefetches`.
pub fn prefetch(state: &State, name: &str) -> Result<Response<Body>, HttpError> {
    let model = crate::oci::ModelRef::parse(name)
        .map_err(|e| crate::mirror::ModelError::Name(e.to_string()))?;
    let ip = match state.listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let base = format!(
        "http://{}",
        std::net::SocketAddr::new(ip, state.listen.port())
    );
    if state.prefetches.start(name) {
        let (prefetches, name) = (state.prefetches.clone(), name.to_owned());
        crate::task::spawn("prefetch", async move {
            let platforms = crate::client::Platforms::All;
            let result = crate::client::prefetch(&base, &model, &platforms, false)
                .await
                .map(|r| r.bytes())
                .map_err(|e| crate::telemetry::chain(&e).to_string());
            match &result {
                Ok(bytes) => tracing::info!(model = %name, bytes, "prefetched"),
                Err(e) => tracing::warn!(model = %name, error = %e, "prefetch failed"),
            }
            prefetches.finish(&name, &result);
            Ok::<(), std::convert::Infallible>(())
        });
    }
    Ok(Response::builder()
        .status(http::StatusCode::ACCEPTED)
        .header(CONTENT_TYPE, "application/json")
        .body(full(serde_json::to_vec(
            &serde_json::json!({ "prefetching": name }),
        )?))?)
}

/// Pins (`pin`) or unpins a model; 204.
pub async fn pin(state: &State, name: &str, pin: bool) -> Result<Response<Body>, HttpError> {
    match pin {
        true => state.mirror.pin(name).await?,
        false => state.mirror.unpin(name).await?,
    }
    Ok(Response::builder()
        .status(http::StatusCode::NO_CONTENT)
        .body(super::empty())?)
}

/// Removes a cached model; answers what was freed.
pub async fn remove_model(state: &State, name: &str) -> Result<Response<Body>, HttpError> {
    let removed = state.mirror.remove_model(name).await?;
    json(&removed)
}

/// shoal's CA certificate, for clients to trust (HTTPS-proxy and DNS modes).
pub fn ca_pem(state: &State) -> Result<Response<Body>, HttpError> {
    Ok(Response::builder()
        .header(CONTENT_TYPE, "application/x-pem-file")
        .header(
            http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"shoal-ca.pem\"",
        )
        .body(full(state.tls.ca_pem().to_owned()))?)
}

/// A JSON answer; every `/_shoal/v1` read endpoint uses this one.
pub fn json(v: &impl serde::Serialize) -> Result<Response<Body>, HttpError> {
    Ok(Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .body(full(serde_json::to_vec(v)?))?)
}

/// `POST /_shoal/v1/verify` (admin token): hashes every cached blob now and mends what
/// fails, answering as it goes with one JSON line per blob (NDJSON), so a CLI can show
/// progress: first `{"blobs","bytes"}`, then `{"digest","size","result"[,"reason"]}` per
/// blob (`sound`, `mended`, `unmended`, `gone`), last `{"done":true, …counts}`. It goes on
/// if the client hangs up: mending is worth finishing.
pub fn verify(state: &State) -> Result<Response<Body>, HttpError> {
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    let mirror = state.mirror.clone();
    let blobs = mirror.store().by_verification_age();
    let (tx, rx) = tokio::sync::mpsc::channel::<serde_json::Value>(16);
    crate::task::spawn("verify", async move {
        let bytes: u64 = blobs.iter().map(|(_, s)| s).sum();
        let _ = tx
            .send(serde_json::json!({ "blobs": blobs.len(), "bytes": bytes }))
            .await;
        let stop = tokio_util::sync::CancellationToken::new();
        let mut counts = std::collections::BTreeMap::<&str, u64>::new();
        for (digest, size) in blobs {
            let verdict = mirror.verify_blob(digest, None, &stop).await;
            let (result, reason) = match verdict {
                Verdict::Sound => ("sound", None),
                Verdict::Mended => ("mended", None),
                Verdict::Unmended(why) => ("unmended", Some(why)),
                Verdict::Gone | Verdict::Stopped => ("gone", None),
            };
            *counts.entry(result).or_default() += 1;
            let mut line = serde_json::json!({ "digest": digest, "size": size, "result": result });
            if let Some(why) = reason {
                line["reason"] = why.into();
            }
            let _ = tx.send(line).await;
        }
        let mut done = serde_json::json!({ "done": true });
        for k in ["sound", "mended", "unmended", "gone"] {
            done[k] = counts.get(k).copied().unwrap_or(0).into();
        }
        let _ = tx.send(done).await;
        Ok::<(), std::convert::Infallible>(())
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Some((
            Ok::<_, BodyError>(Frame::data(bytes::Bytes::from(line))),
            rx,
        ))
    })
    .boxed();
    Ok(Response::builder()
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(StreamBody::new(lines).boxed_unsync())?)
}
