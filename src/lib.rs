//! shoal: a pull-through cache for the Ollama registry and OCI registries.
//!
//! Layout (dependencies point down; only `app` uses everything):
//! - `app`: composition root, shutdown.
//! - `http`: hyper/tower server, routing, handlers; `http::error` maps errors to answers.
//! - `mirror`: the blob path (store → running fill → upstream), single-flight fills,
//!   demand-first scheduling, digest verification; manifests with TTL and stale-if-error.
//! - `upstream`: registry client (rustls, redirects, tokens, ranges).
//! - `store`: blob files + SQLite index (`migrations/`).
//! - `cache`: moka caches of hot metadata.
//! - `oci`: pure types (digests, names, ranges, routes, error codes).
//! - `tls`: shoal's CA, minted leaf certificates, the intercept/allow policy.
//! - `client`: a client of a running shoal's HTTP API (`shoal health`, `shoal prefetch`).
//! - `fuzz`: the fuzz targets' entry points (over `oci`, `p2p`, `config` and `http::route`).
//! - `token`: the admin token (config, or `<data-dir>/admin.token`).
//! - `config`, `stats`, `telemetry`, `task` (the one way to spawn a named task), `net` (the
//!   one way to build an HTTP client): leaves.

pub mod app;
pub mod cache;
pub mod client;
pub mod config;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod import;
pub mod mirror;
pub mod net;
pub mod oci;
pub mod p2p;
pub mod stats;
pub mod store;
pub mod task;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod upstream;
