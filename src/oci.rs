//! Pure registry types: digests, repository names, references, byte ranges, request paths
//! and OCI error codes. Everything here is parsing and formatting; no I/O, no async.
//!
//! Parsing is strict on purpose: these values end up in upstream URLs and file paths, so
//! anything that is not plainly valid (percent-encoding, `..`, other digest algorithms)
//! is refused here, before it can reach the store or the network.

mod digest;
mod error;
mod manifest;
mod model;
mod name;
mod range;
mod route;

pub use digest::{Digest, DigestError};
pub use error::ErrorCode;
pub use manifest::{
    manifest_media_type, Descriptor, ManifestContent, ManifestError, Platform, ANY_MANIFEST_ACCEPT,
    OLLAMA_LIST_TYPE, OLLAMA_MANIFEST_ACCEPT, OLLAMA_V040_ACCEPT_KEY,
};
pub use model::{ModelRef, ModelRefError, DEFAULT_NAMESPACE, DEFAULT_TAG};
pub use name::{NameError, Reference, RepoName};
pub use range::{ByteRange, RangeError, RangeSpec};
pub use route::{parse_route, Route, RouteError};
