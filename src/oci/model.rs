//! Model and image names as users type them: `granite-code:8b`, `library/granite-code`,
//! `registry.ollama.ai/library/granite-code:8b`, `ghcr.io/owner/app/sub@sha256:...`.
//!
//! Read the way ollama's `ParseName` reads them (one part is a model in `library`, two are
//! namespace and model, the tag defaults to `latest`, a `scheme://` prefix is dropped), and
//! deeper repository paths the way Docker reads them: the first part is a host when it has
//! a dot or a port or is `localhost`, else it belongs to the repository. Every part is
//! checked with `RepoName`, `Reference` and `Digest`, and an error names the part at fault.

use std::fmt;

use super::digest::DigestError;
use super::name::{Reference, RepoName};

pub const DEFAULT_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";

/// Registries where a one-part name means `library/<name>` (ollama's and Docker Hub's).
const LIBRARY_HOSTS: &[&str] = &[
    "registry.ollama.ai",
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
];

/// A parsed name: which registry (if the name says), repository and tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// `host[:port]`, lowercased; `None` when the name gives none.
    pub host: Option<String>,
    pub repo: RepoName,
    pub reference: Reference,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelRefError {
    #[error("model name is empty")]
    Empty,
    #[error("model name {name:?}: host {host:?} is invalid")]
    Host { name: String, host: String },
    #[error("model name {name:?}: {part} {value:?} is invalid")]
    Part {
        name: String,
        part: &'static str,
        value: String,
    },
    #[error("model name {name:?}: tag {tag:?} is invalid")]
    Tag { name: String, tag: String },
    #[error("model name {name:?}: digest is invalid")]
    Digest {
        name: String,
        #[source]
        source: DigestError,
    },
}

/// `host[:port]`: DNS labels or an IPv4 address, or a bracketed IPv6 address.
fn host_ok(h: &str) -> bool {
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after)) => {
                if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return false;
                }
                match after {
                    "" => return true,
                    p => ("x", p.strip_prefix(':').unwrap_or("-")),
                }
            }
            None => return false,
        }
    } else {
        match h.split_once(':') {
            Some((n, p)) => (n, p),
            None => (h, "0"),
        }
    };
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    port_ok && name_ok
}

/// Docker's rule for whether the first part of a name is a registry host.
fn looks_like_host(part: &str) -> bool {
    part.contains('.') || part.contains(':') || part == "localhost"
}

impl ModelRef {
    pub fn parse(name: &str) -> Result<ModelRef, ModelRefError> {
        let full = name;
        let part_err = |part, value: &str| ModelRefError::Part {
            name: full.to_owned(),
            part,
            value: value.to_owned(),
        };
        let s = name.split_once("://").map_or(name, |(_, rest)| rest);
        if s.is_empty() {
            return Err(ModelRefError::Empty);
        }
        let (s, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (`host:5000/model` has none).
        let last = s.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match s[last..].find(':') {
            Some(i) => (&s[..last + i], Some(&s[last + i + 1..])),
            None => (s, None),
        };
        let mut parts: Vec<&str> = path.split('/').collect();
        let host = if parts.len() >= 2 && looks_like_host(parts[0]) {
            let h = parts.remove(0);
            if !host_ok(h) {
                return Err(ModelRefError::Host {
                    name: full.to_owned(),
                    host: h.to_owned(),
                });
            }
            Some(h.to_ascii_lowercase())
        } else {
            None
        };
        let names: &[&'static str] = match parts.len() {
            1 => &["model"],
            2 => &["namespace", "model"],
            _ => &[],
        };
        for (i, p) in parts.iter().enumerate() {
            let what = names.get(i).copied().unwrap_or("repository part");
            // One component at a time, so the error can say which one is wrong.
            if p.parse::<RepoName>().is_err() {
                return Err(part_err(what, p));
            }
        }
        let library = parts.len() == 1
            && host
                .as_deref()
                .is_none_or(|h| LIBRARY_HOSTS.contains(&h.split(':').next().unwrap_or(h)));
        let repo = if library {
            format!("{DEFAULT_NAMESPACE}/{}", parts[0])
        } else {
            parts.join("/")
        };
        let repo: RepoName = repo.parse().map_err(|_| part_err("repository", &repo))?;
        let reference = match (digest, tag) {
            // Docker's `name:tag@digest` pulls by digest; the tag is only a label.
            (Some(d), _) => {
                Reference::Digest(d.parse().map_err(|source| ModelRefError::Digest {
                    name: full.to_owned(),
                    source,
                })?)
            }
            (None, tag) => match tag.unwrap_or(DEFAULT_TAG).parse::<Reference>() {
                Ok(r @ Reference::Tag(_)) => r,
                // `model:sha256:...` is not a tag; a digest goes after '@'.
                Ok(Reference::Digest(_)) | Err(_) => {
                    return Err(ModelRefError::Tag {
                        name: full.to_owned(),
                        tag: tag.unwrap_or_default().to_owned(),
                    })
                }
            },
        };
        Ok(ModelRef {
            host,
            repo,
            reference,
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.host {
            write!(f, "{h}/")?;
        }
        match &self.reference {
            Reference::Tag(t) => write!(f, "{}:{t}", self.repo),
            Reference::Digest(d) => write!(f, "{}@{d}", self.repo),
        }
    }
}

#[cfg(test)]
mod tests;
