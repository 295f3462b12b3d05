//! The dashboard at `/_shoal/` (`/` redirects there): one page embedded in the binary
//! (`dashboard/index.html`, no build step, no CDN), which reads the JSON endpoints, and the
//! history of what was saved that its chart draws (`/_shoal/v1/history`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};
use serde::Serialize;

use super::admin::json;
use super::error::HttpError;
use super::{empty, full, Body, State};
use crate::stats::Counters;

const PAGE: &str = include_str!("dashboard/index.html");
/// A day of points, one a minute.
pub const HISTORY_EVERY: Duration = Duration::from_secs(60);
const HISTORY_POINTS: usize = 24 * 60;

pub fn page() -> Result<Response<Body>, HttpError> {
    Ok(Response::builder()
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .header(CACHE_CONTROL, "no-cache")
        .body(full(PAGE))?)
}

/// `/` is not part of the registry API; a browser that opens the box's address gets the
/// dashboard.
pub fn to_dashboard() -> Result<Response<Body>, HttpError> {
    Ok(Response::builder()
        .status(StatusCode::FOUND)
        .header(LOCATION, "/_shoal/")
        .body(empty())?)
}

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub t_ms: i64,
    pub served_bytes: u64,
    pub upstream_bytes: u64,
    pub blob_hits: u64,
    pub blob_misses: u64,
}

/// The last day of points, since this start.
#[derive(Debug, Default)]
pub struct History(Mutex<VecDeque<Point>>);

impl History {
    pub fn record(&self, c: &Counters) {
        let mut points = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if points.len() >= HISTORY_POINTS {
            points.pop_front();
        }
        points.push_back(Point {
            t_ms: crate::store::now_ms(),
            served_bytes: c.served_bytes,
            upstream_bytes: c.upstream_bytes,
            blob_hits: c.blob_hits,
            blob_misses: c.blob_misses,
        });
    }

    fn points(&self) -> Vec<Point> {
        let points = self.0.lock().unwrap_or_else(|p| p.into_inner());
        points.iter().copied().collect()
    }
}

pub fn history(state: &State) -> Result<Response<Body>, HttpError> {
    json(&serde_json::json!({
        "every_secs": HISTORY_EVERY.as_secs(),
        "points": state.history.points(),
    }))
}
