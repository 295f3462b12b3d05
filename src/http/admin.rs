//! `/_shoal/v1/` admin endpoints: health and stats.

use http::header::CONTENT_TYPE;
use http::Response;

use super::error::HttpError;
use super::{full, Body, State};

/// Also says which registry is mirrored: `shoal prefetch` checks a model's host against it.
pub fn health(state: &State) -> Result<Response<Body>, HttpError> {
    json(&serde_json::json!({ "status": "ok", "upstream": state.mirror.upstream_url() }))
}

pub fn stats(state: &State) -> Result<Response<Body>, HttpError> {
    let counters = state.mirror.stats().counters();
    let (blobs, cache_bytes) = state.mirror.store().totals();
    let mut v = serde_json::to_value(&counters)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("blobs".into(), blobs.into());
        obj.insert("cache_bytes".into(), cache_bytes.into());
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
