//! Who may read what was fetched with a client's own credentials (a private blob or
//! manifest): whoever upstream says may, asked with that client's credentials (or none).
//! Upstream's yes is kept briefly per credential, so the parts of one pull cost one
//! question; a no is never kept (the client may log in and come back at once).
//!
//! Must not: know about HTTP; decide what is private (the store records that).

use std::time::Duration;

use crate::oci::{Digest, RepoName};
use crate::upstream::ClientMeta;

/// How long upstream's yes stands: short, so that revoked access ends soon.
const CONFIRMED_FOR: Duration = Duration::from_secs(60);

/// Whose access to what upstream confirmed: (credential fingerprint or anonymous, the
/// repository as the client named it, the blob or manifest).
type Key = (Option<[u8; 32]>, String, Digest);

pub struct Confirmed {
    cache: moka::future::Cache<Key, ()>,
}

impl Default for Confirmed {
    fn default() -> Self {
        Confirmed {
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CONFIRMED_FOR)
                .build(),
        }
    }
}

impl Confirmed {
    fn key(repo: &RepoName, digest: &Digest, meta: &ClientMeta) -> Key {
        (meta.credential(), repo.to_string(), *digest)
    }

    /// Records that upstream served `digest` of `repo` to this client.
    pub async fn insert(&self, repo: &RepoName, digest: &Digest, meta: &ClientMeta) {
        self.cache.insert(Self::key(repo, digest, meta), ()).await;
    }

    pub fn contains(&self, repo: &RepoName, digest: &Digest, meta: &ClientMeta) -> bool {
        self.cache.contains_key(&Self::key(repo, digest, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[tokio::test]
    async fn a_yes_is_per_credential_repository_and_digest() {
        let c = Confirmed::default();
        let repo: RepoName = "owner/app".parse().unwrap();
        let other: RepoName = "owner/other".parse().unwrap();
        let d = Digest::of(b"layer");
        let alice = ClientMeta {
            authorization: Some(HeaderValue::from_static("Basic YWxpY2U6c2VjcmV0")),
            ..Default::default()
        };
        let bob = ClientMeta {
            authorization: Some(HeaderValue::from_static("Basic Ym9iOnNlY3JldA==")),
            ..Default::default()
        };
        c.insert(&repo, &d, &alice).await;
        assert!(c.contains(&repo, &d, &alice));
        assert!(!c.contains(&repo, &d, &bob), "another credential");
        assert!(
            !c.contains(&repo, &d, &ClientMeta::default()),
            "no credential"
        );
        assert!(!c.contains(&other, &d, &alice), "another repository");
        assert!(
            !c.contains(&repo, &Digest::of(b"x"), &alice),
            "another blob"
        );
    }
}
