//! Repository names (`library/granite-code`) and manifest references (tags or digests).
//!
//! The grammar is the OCI distribution one, loosened the way ollama's model names are:
//! components may hold uppercase letters and may start with `_`. What stays out is
//! anything that could change a URL's or path's meaning: empty components, `.`/`..`,
//! percent-encoding, backslashes and control characters.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("repository name {0:?} is invalid")]
    Repo(String),
    #[error("tag {0:?} is invalid")]
    Tag(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A validated repository name, e.g. `library/granite-code`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

fn component_ok(c: &str) -> bool {
    let mut bytes = c.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !c.contains("..")
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(component_ok) {
            return Err(NameError::Repo(s.to_owned()));
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What follows `/manifests/`: a tag (mutable, revalidated) or a digest (immutable).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            return Ok(Reference::Digest(s.parse()?));
        }
        let mut bytes = s.bytes();
        let ok = s.len() <= MAX_TAG_LEN
            && bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(Reference::Tag(s.to_owned()))
        } else {
            Err(NameError::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        for ok in [
            "library/granite-code",
            "granite-code",
            "a/b/c/d",
            "Library/Model_X",
            "_private/x",
            "ns/model.v1",
            "ns/a__b",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/x",
            "x/",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            ".hidden",
            "a/%2e%2e/b",
            "a%2fb",
            "a\\b",
            "a b",
            "a/b\n",
            "-x",
            "a/b..c",
            &"x".repeat(256),
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn references() {
        assert_eq!("8b".parse::<Reference>(), Ok(Reference::Tag("8b".into())));
        assert_eq!(
            "latest".parse::<Reference>(),
            Ok(Reference::Tag("latest".into()))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        for bad in ["", ".x", "-x", "a/b", "a%2e", &"t".repeat(129), "sha1:abc"] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?}");
        }
    }
}
