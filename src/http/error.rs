//! The one place where errors become HTTP answers: a status, an OCI error code and a body
//! `{"errors":[{"code","message","detail"}]}`. Classification happened where each error
//! arose (`mirror::ErrorKind`, `RouteError`, ...); this only maps it.
//!
//! Two rules from how clients behave:
//! - a request carrying `Range` gets no error body: ollama does not check the status of its
//!   ranged GETs and would write the body into the blob as data;
//! - nothing on the registry API is ever answered 401: ollama would start a signed-token
//!   flow. (Admin requests without the admin token are, as admins' tools expect.)

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use http::{Response, StatusCode};

use super::{empty, full, Body};
use crate::mirror::{self, ErrorKind, ModelError};
use crate::oci::{DigestError, ErrorCode, NameError, RangeError, RouteError};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error("method {0} is not allowed here")]
    Method(http::Method),
    #[error(transparent)]
    Mirror(#[from] mirror::Error),
    #[error("blob {0} is not held by this node")]
    NotHeld(crate::oci::Digest),
    #[error(transparent)]
    Swarm(#[from] crate::p2p::Error),
    #[error("peer catalog unavailable")]
    Peers(#[from] crate::p2p::PeersError),
    #[error("this needs the swarm key (X-Shoal-Swarm-Key)")]
    SwarmKey,
    #[error("this needs the admin token (Authorization: Bearer, from <data-dir>/admin.token or admin.token in the config)")]
    AdminToken,
    #[error("CONNECT needs host:port, not {0:?}")]
    ConnectTarget(String),
    #[error(
        "CONNECT to {host}:{port} refused: shoal intercepts only the registry hosts it caches \
         (proxy.intercept) and tunnels only proxy.allow"
    )]
    ProxyRefused { host: String, port: u16 },
    #[error("cannot reach {host}:{port} for a tunnel")]
    Tunnel {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    /// A response that could not be put together (a header value that is not valid).
    #[error("cannot build the response")]
    Build(#[from] http::Error),
    #[error("cannot encode the answer")]
    Encode(#[from] serde_json::Error),
    #[error("cannot list the cached models")]
    Models(#[source] crate::store::Error),
    #[error(transparent)]
    Model(#[from] crate::mirror::ModelError),
    #[error("cannot write the metrics")]
    Metrics(#[from] std::fmt::Error),
    #[error("the request body is not valid: {0}")]
    BadBody(String),
    #[error(transparent)]
    UnknownRegistry(#[from] crate::upstream::UnknownRegistry),
    #[error("query parameter {0}")]
    Pagination(String),
}

/// What the failing request was about, to pick BLOB_UNKNOWN vs MANIFEST_UNKNOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Blob,
    Manifest,
    /// A repository's tag list.
    Tags,
    Other,
}

/// How the request was made, which decides what the answer may carry.
#[derive(Debug, Clone, Copy)]
pub struct RequestShape {
    pub ranged: bool,
    pub head: bool,
    pub subject: Subject,
}

impl HttpError {
    fn classify(&self, subject: Subject) -> (StatusCode, ErrorCode) {
        use StatusCode as S;
        match self {
            HttpError::Route(RouteError::Name(NameError::Repo(_)) | RouteError::Encoded(_)) => {
                (S::BAD_REQUEST, ErrorCode::NameInvalid)
            }
            HttpError::Route(RouteError::Name(NameError::Tag(_))) => {
                (S::BAD_REQUEST, ErrorCode::TagInvalid)
            }
            HttpError::Route(
                RouteError::Name(NameError::Digest(_))
                | RouteError::Digest(DigestError::Malformed(_)),
            ) => (S::BAD_REQUEST, ErrorCode::DigestInvalid),
            HttpError::Route(RouteError::Digest(DigestError::UnsupportedAlgorithm(_))) => {
                (S::BAD_REQUEST, ErrorCode::DigestInvalid)
            }
            HttpError::Route(RouteError::Unsupported(_)) | HttpError::Method(_) => {
                (S::METHOD_NOT_ALLOWED, ErrorCode::Unsupported)
            }
            HttpError::Route(RouteError::NotFound) => (S::NOT_FOUND, ErrorCode::Unsupported),
            HttpError::Range(_) => (S::BAD_REQUEST, ErrorCode::RangeInvalid),
            HttpError::Mirror(e) if e.unsatisfiable_size().is_some() => {
                (S::RANGE_NOT_SATISFIABLE, ErrorCode::RangeInvalid)
            }
            HttpError::NotHeld(_) => (S::NOT_FOUND, ErrorCode::BlobUnknown),
            HttpError::Swarm(crate::p2p::Error::Timeout { .. }) => {
                (S::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            HttpError::Swarm(_) | HttpError::Peers(_) => {
                (S::INTERNAL_SERVER_ERROR, ErrorCode::Unavailable)
            }
            HttpError::AdminToken => (S::UNAUTHORIZED, ErrorCode::Unauthorized),
            HttpError::Model(e) => match e {
                ModelError::Name(_) => (S::BAD_REQUEST, ErrorCode::NameInvalid),
                ModelError::NotCached(_) => (S::NOT_FOUND, ErrorCode::NameUnknown),
                ModelError::Pinned(_) => (S::CONFLICT, ErrorCode::Denied),
                ModelError::Store(_) => (S::INTERNAL_SERVER_ERROR, ErrorCode::Unavailable),
            },
            HttpError::SwarmKey | HttpError::ProxyRefused { .. } => {
                (S::FORBIDDEN, ErrorCode::Denied)
            }
            HttpError::ConnectTarget(_) | HttpError::BadBody(_) => {
                (S::BAD_REQUEST, ErrorCode::Unsupported)
            }
            HttpError::Tunnel { .. } => (S::BAD_GATEWAY, ErrorCode::Unavailable),
            HttpError::UnknownRegistry(_) => (S::NOT_FOUND, ErrorCode::NameUnknown),
            HttpError::Pagination(_) => (S::BAD_REQUEST, ErrorCode::PaginationNumberInvalid),
            HttpError::Tls(_)
            | HttpError::Build(_)
            | HttpError::Encode(_)
            | HttpError::Metrics(_)
            | HttpError::Models(_) => (S::INTERNAL_SERVER_ERROR, ErrorCode::Unavailable),
            HttpError::Mirror(e) => match e.kind() {
                ErrorKind::Denied => match e.denial() {
                    Some((true, _)) => (S::UNAUTHORIZED, ErrorCode::Unauthorized),
                    _ => (S::FORBIDDEN, ErrorCode::Denied),
                },
                ErrorKind::NotFound => (
                    S::NOT_FOUND,
                    match subject {
                        Subject::Manifest => ErrorCode::ManifestUnknown,
                        Subject::Tags => ErrorCode::NameUnknown,
                        _ => ErrorCode::BlobUnknown,
                    },
                ),
                ErrorKind::Upstream | ErrorKind::Integrity => {
                    (S::BAD_GATEWAY, ErrorCode::Unavailable)
                }
                ErrorKind::Timeout => (S::GATEWAY_TIMEOUT, ErrorCode::Unavailable),
                ErrorKind::Storage => (S::INSUFFICIENT_STORAGE, ErrorCode::Unavailable),
                ErrorKind::ShuttingDown => (S::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
                ErrorKind::Internal => (S::INTERNAL_SERVER_ERROR, ErrorCode::Unavailable),
            },
        }
    }

    pub fn into_response(self, shape: RequestShape) -> Response<Body> {
        let (status, code) = self.classify(shape.subject);
        let chain = crate::telemetry::chain(&self);
        if status.is_server_error() {
            tracing::error!(%status, error = %chain, "request failed");
        } else {
            tracing::debug!(%status, error = %chain, "request refused");
        }
        // Clients learn what failed; upstream URLs and internal detail stay in the log.
        let message = match &self {
            HttpError::Mirror(e) => e.client_message(),
            _ if status == StatusCode::INTERNAL_SERVER_ERROR => "internal error".to_owned(),
            _ => chain,
        };
        let mut builder = Response::builder().status(status);
        if let HttpError::Mirror(e) = &self {
            if let Some(size) = e.unsatisfiable_size() {
                builder = builder.header(CONTENT_RANGE, format!("bytes */{size}"));
            }
            // The client answers upstream's challenge with its own credentials, and
            // asks again (containerd, ollama).
            if let Some((_, Some(challenge))) = e.denial() {
                builder = builder.header(http::header::WWW_AUTHENTICATE, challenge);
            }
        }
        let bodyless = shape.ranged || shape.head || status == StatusCode::RANGE_NOT_SATISFIABLE;
        let body = if bodyless {
            builder = builder.header(CONTENT_LENGTH, 0);
            empty()
        } else {
            let json = serde_json::json!({
                "errors": [{ "code": code.as_str(), "message": message, "detail": null }]
            });
            builder = builder.header(CONTENT_TYPE, "application/json");
            full(json.to_string())
        };
        builder.body(body).unwrap_or_else(|_| fallback())
    }
}

/// Only reachable if a header built above were invalid; kept so nothing here can panic.
fn fallback() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    fn shape(ranged: bool) -> RequestShape {
        RequestShape {
            ranged,
            head: false,
            subject: Subject::Blob,
        }
    }

    #[tokio::test]
    async fn oci_body_unless_ranged() {
        let e = || HttpError::Route(RouteError::Name(NameError::Repo("..".into())));
        let r = e().into_response(shape(false));
        assert_eq!(r.status(), 400);
        let b = body(r).await;
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["errors"][0]["code"], "NAME_INVALID");

        let r = e().into_response(shape(true));
        assert_eq!(r.status(), 400);
        assert_eq!(body(r).await, "");
    }

    #[tokio::test]
    async fn unsatisfiable_carries_size() {
        let e = HttpError::Mirror(mirror::Error::Unsatisfiable {
            digest: crate::oci::Digest::of(b""),
            size: 10,
        });
        let r = e.into_response(shape(true));
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()[CONTENT_RANGE], "bytes */10");
        assert_eq!(body(r).await, "");
    }
}
