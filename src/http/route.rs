//! Request paths → endpoints: the registry API (parsed by `oci::parse_route`) and shoal's
//! own endpoints (`/_shoal/v1/...`, the tracker at `/announce`).
//!
//! Must not: touch the file system, or accept a path it cannot name exactly.

use crate::oci::{parse_route, Digest, Route, RouteError};

#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/...`: manifests and blobs.
    Registry(Route),
    Health,
    Stats,
    /// `GET /_shoal/v1/blobs/sha256:<hex>/torrent`
    Torrent {
        digest: Digest,
    },
    /// `GET /_shoal/v1/blobs/sha256:<hex>`: what this node has of a blob (a peer asks).
    BlobState {
        digest: Digest,
    },
    /// `POST /_shoal/v1/news`: a peer cached a blob or started fetching one.
    News,
    /// `GET /announce` or `/announce/<swarm key>`: the BitTorrent tracker.
    Announce {
        key: Option<String>,
    },
    /// `GET /scrape` or `/scrape/<swarm key>`: the tracker's counts (BEP 48).
    Scrape {
        key: Option<String>,
    },
    /// `GET /_shoal/v1/catalog`: what this node holds, for its peers.
    Catalog,
    /// `GET /_shoal/v1/peers`: known peers and their state.
    Peers,
    /// `GET /_shoal/v1/torrents`: torrents in the BitTorrent session.
    Torrents,
    /// `GET /_shoal/v1/ca.pem`: the CA certificate clients trust for interception.
    CaPem,
    /// `POST /_shoal/v1/verify`: hash every cached blob now, mend what fails.
    Verify,
    /// `GET /metrics`: Prometheus.
    Metrics,
    /// `GET /_shoal/v1/models`: the cached models (tags) and what of them is held.
    Models,
    /// `DELETE /_shoal/v1/models/<name>` (admin token): remove a cached model.
    Model {
        name: String,
    },
    /// `PUT`/`DELETE /_shoal/v1/models/<name>/pin` (admin token): pin or unpin it.
    ModelPin {
        name: String,
    },
    /// `POST /_shoal/v1/models/<name>/prefetch` (admin token): fetch it now.
    ModelPrefetch {
        name: String,
    },
    /// `GET /_shoal/`: the dashboard.
    Dashboard,
    /// `GET /`: redirects to the dashboard.
    Root,
    /// `GET /_shoal/v1/history`: saved bytes and hits over time, for the dashboard.
    History,
}

impl Endpoint {
    /// The kind of endpoint, for metrics labels (never the path: names and digests are
    /// unbounded).
    pub fn kind(&self) -> &'static str {
        match self {
            Endpoint::Registry(Route::Base) => "base",
            Endpoint::Registry(Route::Manifest { .. }) => "manifest",
            Endpoint::Registry(Route::Blob { .. }) => "blob",
            Endpoint::Registry(Route::Tags { .. }) => "tags",
            Endpoint::Registry(Route::Token) => "token",
            Endpoint::Health => "health",
            Endpoint::Stats => "stats",
            Endpoint::Torrent { .. } => "torrent",
            Endpoint::BlobState { .. } => "blob_state",
            Endpoint::News => "news",
            Endpoint::Announce { .. } => "announce",
            Endpoint::Scrape { .. } => "scrape",
            Endpoint::Catalog => "catalog",
            Endpoint::Peers => "peers",
            Endpoint::Torrents => "torrents",
            Endpoint::CaPem => "ca",
            Endpoint::Verify => "verify",
            Endpoint::Metrics => "metrics",
            Endpoint::Models => "models",
            Endpoint::Model { .. } => "model",
            Endpoint::ModelPin { .. } => "model_pin",
            Endpoint::ModelPrefetch { .. } => "model_prefetch",
            Endpoint::Dashboard => "dashboard",
            Endpoint::Root => "root",
            Endpoint::History => "history",
        }
    }
}

/// The longest swarm key a tracker URL may carry.
const MAX_KEY: usize = 128;
/// The longest model name an admin URL may carry (host, repository and tag).
const MAX_MODEL_NAME: usize = 512;

pub fn endpoint(path: &str) -> Result<Endpoint, RouteError> {
    if path.contains('%') {
        return Err(RouteError::Encoded(path.to_owned()));
    }
    match path {
        "/_shoal/v1/health" => return Ok(Endpoint::Health),
        "/_shoal/v1/stats" => return Ok(Endpoint::Stats),
        "/announce" => return Ok(Endpoint::Announce { key: None }),
        "/scrape" => return Ok(Endpoint::Scrape { key: None }),
        "/_shoal/v1/catalog" => return Ok(Endpoint::Catalog),
        "/_shoal/v1/peers" => return Ok(Endpoint::Peers),
        "/_shoal/v1/torrents" => return Ok(Endpoint::Torrents),
        "/_shoal/v1/ca.pem" => return Ok(Endpoint::CaPem),
        "/_shoal/v1/news" => return Ok(Endpoint::News),
        "/_shoal/v1/verify" => return Ok(Endpoint::Verify),
        "/metrics" => return Ok(Endpoint::Metrics),
        "/_shoal/v1/models" => return Ok(Endpoint::Models),
        "/_shoal/v1/history" => return Ok(Endpoint::History),
        "/_shoal/" | "/_shoal" => return Ok(Endpoint::Dashboard),
        "/" => return Ok(Endpoint::Root),
        _ => {}
    }
    for (prefix, scrape) in [("/announce/", false), ("/scrape/", true)] {
        if let Some(key) = path.strip_prefix(prefix) {
            if key.is_empty() || key.len() > MAX_KEY || key.contains('/') {
                return Err(RouteError::NotFound);
            }
            let key = Some(key.to_owned());
            return Ok(if scrape {
                Endpoint::Scrape { key }
            } else {
                Endpoint::Announce { key }
            });
        }
    }
    if let Some(rest) = path.strip_prefix("/_shoal/v1/models/") {
        // The name keeps its slashes (`library/granite-code:8b`); the mirror parses it.
        let (name, what): (&str, fn(String) -> Endpoint) =
            if let Some(name) = rest.strip_suffix("/pin") {
                (name, |name| Endpoint::ModelPin { name })
            } else if let Some(name) = rest.strip_suffix("/prefetch") {
                (name, |name| Endpoint::ModelPrefetch { name })
            } else {
                (rest, |name| Endpoint::Model { name })
            };
        if name.is_empty() || name.len() > MAX_MODEL_NAME {
            return Err(RouteError::NotFound);
        }
        return Ok(what(name.to_owned()));
    }
    if let Some(rest) = path.strip_prefix("/_shoal/v1/blobs/") {
        return match rest.strip_suffix("/torrent") {
            Some(digest) => Ok(Endpoint::Torrent {
                digest: digest.parse()?,
            }),
            None if !rest.contains('/') => Ok(Endpoint::BlobState {
                digest: rest.parse()?,
            }),
            None => Err(RouteError::NotFound),
        };
    }
    parse_route(path).map(Endpoint::Registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("/v2/"), Ok(Endpoint::Registry(Route::Base)));
        assert_eq!(endpoint("/_shoal/v1/health"), Ok(Endpoint::Health));
        assert_eq!(endpoint("/announce"), Ok(Endpoint::Announce { key: None }));
        assert_eq!(
            endpoint("/announce/s3cret-key"),
            Ok(Endpoint::Announce {
                key: Some("s3cret-key".into())
            })
        );
        assert_eq!(
            endpoint(&format!("/_shoal/v1/blobs/sha256:{HEX}/torrent")),
            Ok(Endpoint::Torrent {
                digest: format!("sha256:{HEX}").parse().unwrap()
            })
        );
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            endpoint("/_shoal/v1/blobs/sha256:../torrent"),
            Err(RouteError::Digest(_))
        ));
        assert_eq!(
            endpoint(&format!("/_shoal/v1/blobs/sha256:{HEX}")),
            Ok(Endpoint::BlobState {
                digest: format!("sha256:{HEX}").parse().unwrap()
            })
        );
        assert_eq!(endpoint("/_shoal/v1/news"), Ok(Endpoint::News));
        assert_eq!(endpoint("/scrape"), Ok(Endpoint::Scrape { key: None }));
        assert_eq!(
            endpoint("/scrape/k3y"),
            Ok(Endpoint::Scrape {
                key: Some("k3y".into())
            })
        );
        for path in [
            format!("/_shoal/v1/blobs/sha256:{HEX}/x"),
            "/announce/".to_owned(),
            "/announce/a/b".to_owned(),
            format!("/announce/{}", "k".repeat(MAX_KEY + 1)),
            "/_shoal/v1/nope".to_owned(),
            "//".to_owned(),
            "/_shoal/v1/models/".to_owned(),
            "/_shoal/v1/models//pin".to_owned(),
            format!("/_shoal/v1/models/{}", "m".repeat(MAX_MODEL_NAME + 1)),
        ] {
            assert_eq!(endpoint(&path), Err(RouteError::NotFound), "{path}");
        }
        // Admin endpoints keep a model name's slashes and colon.
        for (path, want) in [
            ("/", Endpoint::Root),
            ("/_shoal/", Endpoint::Dashboard),
            (
                "/_shoal/v1/models/library/granite-code:8b/pin",
                Endpoint::ModelPin {
                    name: "library/granite-code:8b".into(),
                },
            ),
            (
                "/_shoal/v1/models/granite-code:8b/prefetch",
                Endpoint::ModelPrefetch {
                    name: "granite-code:8b".into(),
                },
            ),
            (
                "/_shoal/v1/models/hf.co/u/r:q4",
                Endpoint::Model {
                    name: "hf.co/u/r:q4".into(),
                },
            ),
        ] {
            assert_eq!(endpoint(path), Ok(want), "{path}");
        }
        assert!(matches!(
            endpoint("/_shoal/v1/h%65alth"),
            Err(RouteError::Encoded(_))
        ));
    }
}
