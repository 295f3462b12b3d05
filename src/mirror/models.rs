//! The models (and images) the cache holds, as an admin thinks of them: one entry per
//! cached tag, with the blobs its manifest names, how much of them is held here, how they
//! are used, and which LAN nodes hold all of them (`GET /_shoal/v1/models`, `shoal ls`).

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::Mirror;
use crate::oci::{Digest, ManifestContent, DEFAULT_NAMESPACE};
use crate::store::{self, Store};

/// A child manifest of a list larger than this is not read from the blob store.
const MAX_CHILD: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModelInfo {
    /// As ollama names it: `granite-code:8b` for the default registry's library, else
    /// `host/repo:tag`.
    pub name: String,
    pub registry: String,
    pub repo: String,
    pub tag: String,
    /// The manifest the tag last resolved to.
    pub digest: Digest,
    /// Bytes of the blobs its manifest names (config and layers; every platform's for a
    /// list or index), and how many of those bytes and blobs this node holds.
    pub size: u64,
    pub held_bytes: u64,
    pub blobs: usize,
    pub held_blobs: usize,
    /// Requests that read its largest blob (a ranged pull counts each part).
    pub hits: u64,
    /// The last time one of its blobs was read, or its tag fetched (ms since the epoch).
    pub last_used_ms: i64,
    /// Other shoal nodes whose catalogs list every one of its blobs.
    pub lan: Vec<String>,
}

impl Mirror {
    /// Every cached tag as a model, by name.
    pub async fn models(&self) -> store::Result<Vec<ModelInfo>> {
        let store = &self.inner.store;
        let default_registry = self.registry().to_owned();
        let mut out = Vec::new();
        for (key, row) in store.tags().await? {
            let Some(blobs) = blobs_of(store, row.digest).await? else {
                continue;
            };
            let mut info = ModelInfo {
                name: display_name(&key.registry, &key.repo, &key.tag, &default_registry),
                registry: key.registry,
                repo: key.repo,
                tag: key.tag,
                digest: row.digest,
                size: blobs.values().sum(),
                held_bytes: 0,
                blobs: blobs.len(),
                held_blobs: 0,
                hits: 0,
                last_used_ms: row.fetched_ms,
                lan: Vec::new(),
            };
            let mut largest = 0;
            let mut everywhere: Option<BTreeSet<String>> = None;
            for (d, size) in &blobs {
                if let Some(u) = store.blob_use(d) {
                    info.held_bytes += u.size;
                    info.held_blobs += 1;
                    info.last_used_ms = info.last_used_ms.max(u.last_access_ms);
                    if u.size >= largest {
                        (largest, info.hits) = (u.size, u.hits);
                    }
                }
                let here: BTreeSet<String> = store
                    .holders(*d)
                    .await?
                    .into_iter()
                    .filter(|h| h.size == *size)
                    .map(|h| h.peer_url)
                    .collect();
                everywhere = Some(match everywhere {
                    None => here,
                    Some(all) => all.intersection(&here).cloned().collect(),
                });
            }
            info.lan = everywhere.unwrap_or_default().into_iter().collect();
            out.push(info);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// The blobs (digest → size) a manifest names, reading through lists and indexes to the
/// manifests they name: from the manifest table, else (ollama's lists name them as
/// blobs) from the blob store. `None` when the manifest itself is not cached or not
/// readable.
async fn blobs_of(store: &Store, digest: Digest) -> store::Result<Option<HashMap<Digest, u64>>> {
    let Some(m) = store.manifest(digest).await? else {
        return Ok(None);
    };
    let mut blobs = HashMap::new();
    match ManifestContent::parse(&m.body) {
        Err(_) => return Ok(None),
        Ok(ManifestContent::Image { config, layers }) => {
            for d in config.iter().chain(&layers) {
                blobs.insert(d.digest, d.size);
            }
        }
        Ok(ManifestContent::Index(children)) => {
            for child in children {
                let body = match store.manifest(child.digest).await? {
                    Some(c) => Some(c.body.to_vec()),
                    None if child.size <= MAX_CHILD && store.blob_size(&child.digest).is_some() => {
                        let path = store.blob_path(&child.digest);
                        tokio::fs::read(&path).await.ok()
                    }
                    None => None,
                };
                // The child itself is a blob to fetch (ollama), or a manifest (OCI).
                if store.manifest(child.digest).await?.is_none() {
                    blobs.insert(child.digest, child.size);
                }
                if let Some(Ok(ManifestContent::Image { config, layers })) =
                    body.map(|b| ManifestContent::parse(&b))
                {
                    for d in config.iter().chain(&layers) {
                        blobs.insert(d.digest, d.size);
                    }
                }
            }
        }
    }
    Ok(Some(blobs))
}

/// ollama's short name where it has one: `granite-code:8b` for the default registry's
/// `library/`, `user/model:tag` for its other namespaces, else `host/repo:tag`.
fn display_name(registry: &str, repo: &str, tag: &str, default_registry: &str) -> String {
    if registry == default_registry {
        let short = repo
            .strip_prefix(DEFAULT_NAMESPACE)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(repo);
        format!("{short}:{tag}")
    } else {
        format!("{registry}/{repo}:{tag}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_ollama_shows_them() {
        let d = "registry.ollama.ai";
        assert_eq!(
            display_name(d, "library/granite-code", "8b", d),
            "granite-code:8b"
        );
        assert_eq!(display_name(d, "jmorgan/m", "q4", d), "jmorgan/m:q4");
        assert_eq!(
            display_name("ghcr.io", "library/x", "1", d),
            "ghcr.io/library/x:1"
        );
    }
}
