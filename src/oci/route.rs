//! Registry API paths (`/v2/...`) → what they ask for. The registry API puts slashes
//! inside repository names (`/v2/library/granite-code/blobs/sha256:...`), so routing is a
//! parse from the right, not a pattern table. shoal's own endpoints are routed in `http`.

use super::digest::{Digest, DigestError};
use super::name::{NameError, Reference, RepoName};

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/`: API version check.
    Base,
    Manifest {
        name: RepoName,
        reference: Reference,
    },
    Blob {
        name: RepoName,
        digest: Digest,
    },
    /// `GET /v2/<name>/tags/list` (`n` and `last` are in the query).
    Tags {
        name: RepoName,
    },
    /// `GET /v2/token`: a registry's token endpoint, as the realm of its challenges names
    /// it (hf.co's is `https://huggingface.co/v2/token`).
    Token,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("path {0:?} contains percent-encoding, which registry paths never need")]
    Encoded(String),
    #[error("{0} is not supported by a pull-through cache")]
    Unsupported(&'static str),
    #[error("no such endpoint")]
    NotFound,
}

/// Parses a request path (without query) under `/v2`. Never touches the file system.
pub fn parse_route(path: &str) -> Result<Route, RouteError> {
    if path.contains('%') {
        return Err(RouteError::Encoded(path.to_owned()));
    }
    if path == "/v2" || path == "/v2/" {
        return Ok(Route::Base);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Err(RouteError::NotFound);
    };
    if rest == "_catalog" {
        return Err(RouteError::Unsupported("the catalog"));
    }
    if rest == "token" {
        return Ok(Route::Token);
    }
    // <name>/<kind>/<last>, where <name> itself may contain slashes.
    let (head, last) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    let (name, kind) = head.rsplit_once('/').ok_or(RouteError::NotFound)?;
    match kind {
        "manifests" => Ok(Route::Manifest {
            name: name.parse()?,
            reference: last.parse()?,
        }),
        "blobs" if last == "uploads" => Err(RouteError::Unsupported("pushing")),
        "blobs" => Ok(Route::Blob {
            name: name.parse()?,
            digest: last.parse()?,
        }),
        "uploads" if name.ends_with("/blobs") => Err(RouteError::Unsupported("pushing")),
        "tags" if last == "list" => Ok(Route::Tags {
            name: name.parse()?,
        }),
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn routes() {
        assert_eq!(parse_route("/v2/"), Ok(Route::Base));
        assert_eq!(parse_route("/v2"), Ok(Route::Base));
        assert_eq!(parse_route("/v2/token"), Ok(Route::Token));
        assert_eq!(parse_route("/v2/token/x"), Err(RouteError::NotFound));
        assert_eq!(parse_route("/_shoal/v1/health"), Err(RouteError::NotFound));
        match parse_route("/v2/library/granite-code/manifests/8b") {
            Ok(Route::Manifest { name, reference }) => {
                assert_eq!(name.as_str(), "library/granite-code");
                assert_eq!(reference, Reference::Tag("8b".into()));
            }
            other => panic!("{other:?}"),
        }
        match parse_route(&format!("/v2/a/b/c/blobs/sha256:{HEX}")) {
            Ok(Route::Blob { name, digest }) => {
                assert_eq!(name.as_str(), "a/b/c");
                assert_eq!(digest.hex(), HEX);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_route("/v2/docker.io/library/alpine/tags/list").unwrap(),
            Route::Tags {
                name: "docker.io/library/alpine".parse().unwrap()
            }
        );
        // A repository may itself be called "manifests".
        assert!(matches!(
            parse_route("/v2/x/manifests/manifests/latest"),
            Ok(Route::Manifest { .. })
        ));
    }

    #[test]
    fn refusals() {
        type Check = fn(&RouteError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("/v2/../../etc/passwd/blobs/x", |e| {
                matches!(e, RouteError::Name(_) | RouteError::Digest(_))
            }),
            (&format!("/v2/a/%2e%2e/blobs/sha256:{HEX}"), |e| {
                matches!(e, RouteError::Encoded(_))
            }),
            (&format!("/v2/a/../blobs/sha256:{HEX}"), |e| {
                matches!(e, RouteError::Name(_))
            }),
            ("/v2/a/blobs/sha256:../../x", |e| {
                matches!(e, RouteError::NotFound)
            }),
            ("/v2/a/blobs/sha256:..", |e| {
                matches!(e, RouteError::Digest(_))
            }),
            (&format!("/v2/a/blobs/sha512:{HEX}"), |e| {
                matches!(e, RouteError::Digest(DigestError::UnsupportedAlgorithm(_)))
            }),
            ("/v2/a/manifests/..", |e| matches!(e, RouteError::Name(_))),
            ("/v2/a/blobs/uploads/", |e| {
                matches!(e, RouteError::Unsupported(_))
            }),
            ("/v2/a/blobs/uploads", |e| {
                matches!(e, RouteError::Unsupported(_))
            }),
            ("/v2/a", |e| matches!(e, RouteError::NotFound)),
            ("/v2/manifests/x", |e| matches!(e, RouteError::NotFound)),
            ("/v2//manifests/x", |e| matches!(e, RouteError::Name(_))),
            ("/etc/passwd", |e| matches!(e, RouteError::NotFound)),
            ("/", |e| matches!(e, RouteError::NotFound)),
        ];
        for (path, check) in cases {
            let err = parse_route(path).expect_err(path);
            assert!(check(&err), "{path}: {err:?}");
        }
    }
}
