//! `GET /metrics`: Prometheus (OpenMetrics text), written by `prometheus-client`.
//!
//! The counters are the ones `/_shoal/v1/stats` serves, read at scrape time, so the two
//! always agree (and, like the stats, they are cumulative since the data dir was created:
//! Prometheus sees no reset at a restart). Only requests and fill durations are kept
//! here, since this start. No digest, name or other unbounded value is a label.

use std::sync::atomic::AtomicU64;

use http::header::CONTENT_TYPE;
use http::Response;
use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::error::HttpError;
use super::{full, Body, State};
use crate::stats::Counters;

const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The kind of endpoint (`blob`, `manifest`, `catalog`, ...), never the path.
    pub route: &'static str,
    pub code: u16,
}

/// Requests answered since this start, by endpoint kind and status.
#[derive(Default, Debug)]
pub struct Requests(Family<RequestLabels, Counter>);

impl Requests {
    pub fn count(&self, route: &'static str, code: u16) {
        self.0.get_or_create(&RequestLabels { route, code }).inc();
    }
}

fn counter(v: u64) -> Counter {
    let c = Counter::<u64, AtomicU64>::default();
    c.inc_by(v);
    c
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

pub async fn metrics(state: &State) -> Result<Response<Body>, HttpError> {
    let c: Counters = state.mirror.stats().counters();
    let (blobs, cache_bytes) = state.mirror.store().totals();
    let peers = state.peers.list().await?;
    let mut r = Registry::with_prefix("shoal");

    let upstream = Family::<Vec<(&str, String)>, Counter>::default();
    for (registry, bytes) in state.mirror.registries().fetched() {
        upstream
            .get_or_create(&vec![("registry", registry)])
            .inc_by(bytes);
    }
    r.register_with_unit(
        "upstream",
        "Bytes fetched from upstream registries",
        Unit::Bytes,
        upstream,
    );
    let served = Family::<Vec<(&str, &str)>, Counter>::default();
    for (source, v) in [
        ("cache", c.served_cache_bytes),
        ("upstream", c.served_upstream_bytes),
        ("peers", c.served_peers_bytes),
    ] {
        served.get_or_create(&vec![("source", source)]).inc_by(v);
    }
    r.register_with_unit(
        "served",
        "Blob bytes sent to clients, by where they came from",
        Unit::Bytes,
        served,
    );
    for (name, help, v) in [
        ("peer", "Bytes fetched from other shoal nodes", c.peer_bytes),
        (
            "seeded",
            "Bytes uploaded to BitTorrent peers",
            c.seeded_bytes,
        ),
        (
            "verified",
            "Bytes hashed again and found sound",
            c.verified_bytes,
        ),
    ] {
        r.register_with_unit(name, help, Unit::Bytes, counter(v));
    }
    for (name, help, v) in [
        (
            "blob_hits",
            "Blob requests answered from the cache",
            c.blob_hits,
        ),
        (
            "blob_misses",
            "Blob requests that needed a fill",
            c.blob_misses,
        ),
        (
            "manifest_hits",
            "Manifest requests answered from the cache",
            c.manifest_hits,
        ),
        (
            "manifest_misses",
            "Manifest requests sent upstream",
            c.manifest_misses,
        ),
        (
            "manifest_stale",
            "Manifests served stale because upstream failed",
            c.manifest_stale,
        ),
        ("fills_started", "Fills started", c.fills_started),
        (
            "fills_failed",
            "Fills that failed (nothing cached)",
            c.fills_failed,
        ),
        (
            "fills_from_upstream",
            "Fills that fetched from upstream",
            c.fills_from_upstream,
        ),
        (
            "fills_from_peers",
            "Fills that came wholly from LAN peers",
            c.fills_from_peers,
        ),
        (
            "evictions",
            "Blobs evicted to stay within the cache limit",
            c.evictions,
        ),
        (
            "damaged_blobs",
            "Cached blobs found damaged on disk and dropped",
            c.damaged_blobs,
        ),
        (
            "verified_blobs",
            "Cached blobs hashed again and found sound",
            c.verified_blobs,
        ),
        (
            "mended_blobs",
            "Damaged blobs fetched again with no client asking",
            c.mended_blobs,
        ),
    ] {
        r.register(name, help, counter(v));
    }

    r.register_with_unit(
        "cache",
        "Bytes of complete blobs in the cache",
        Unit::Bytes,
        gauge(cache_bytes),
    );
    // No limit is an infinite one.
    let limit = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    limit.set(
        state
            .mirror
            .cache_limit()
            .map_or(f64::INFINITY, |l| l as f64),
    );
    r.register_with_unit("cache_limit", "The cache's size limit", Unit::Bytes, limit);
    r.register("blobs", "Complete blobs in the cache", gauge(blobs));
    r.register(
        "fills_running",
        "Fills running now",
        gauge(state.mirror.filling() as u64),
    );
    let by_state = Family::<Vec<(&str, &str)>, Gauge>::default();
    let reachable = peers.iter().filter(|p| p.failures == 0).count() as i64;
    by_state
        .get_or_create(&vec![("state", "reachable")])
        .set(reachable);
    by_state
        .get_or_create(&vec![("state", "unreachable")])
        .set(peers.len() as i64 - reachable);
    r.register("peers", "Other shoal nodes this one knows", by_state);
    r.register_with_unit(
        "uptime",
        "Time since this start",
        Unit::Seconds,
        gauge(state.started.elapsed().as_secs()),
    );

    r.register(
        "requests",
        "Requests answered since this start, by endpoint kind and status",
        state.requests.0.clone(),
    );
    r.register_with_unit(
        "fill_duration",
        "How long fills that cached a blob took, since this start",
        Unit::Seconds,
        state.mirror.stats().fill_seconds.clone(),
    );

    let mut text = String::new();
    encode(&mut text, &r)?;
    Ok(Response::builder()
        .header(CONTENT_TYPE, CONTENT)
        .body(full(text))?)
}
