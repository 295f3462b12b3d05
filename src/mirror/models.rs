//! The models (and images) the cache holds, as an admin thinks of them: one entry per
//! cached tag, with the blobs its manifest names, how much of them is held here, how they
//! are used, and which LAN nodes hold all of them (`GET /_shoal/v1/models`, `shoal ls`).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::Mirror;
use crate::oci::{Digest, ManifestContent, ModelRef, Reference, DEFAULT_NAMESPACE};
use crate::store::{self, ModelKey, Store};

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
    /// Pinned models' blobs are never evicted.
    pub pinned: bool,
}

/// What removing a model did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Removed {
    /// Its blobs that no other model uses, deleted now, and their bytes.
    pub blobs: usize,
    pub bytes: u64,
    /// Its blobs kept because another cached or pinned model names them.
    pub shared: usize,
    /// Its blobs kept because they were being read, fetched or seeded; they go the usual
    /// way (eviction) once nothing uses them.
    pub busy: usize,
}

/// Why an admin action on a model was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Name(String),
    #[error("{0} is not cached here")]
    NotCached(String),
    #[error("{0} is pinned; unpin it first")]
    Pinned(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Mirror {
    /// Every cached tag as a model, by name.
    pub async fn models(&self) -> store::Result<Vec<ModelInfo>> {
        let store = &self.inner.store;
        let default_registry = self.registry().to_owned();
        let pins: HashSet<ModelKey> = store.pins().await?.into_iter().collect();
        let mut out = Vec::new();
        for (key, row) in store.tags().await? {
            let pinned = pins.contains(&(key.registry.clone(), key.repo.clone(), key.tag.clone()));
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
                pinned,
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

impl Mirror {
    /// The model a name means here (`granite-code:8b`, `library/granite-code:8b`,
    /// `host/repo:tag`; no host is the registry this node mirrors).
    fn model_key(&self, name: &str) -> Result<ModelKey, ModelError> {
        let m = ModelRef::parse(name).map_err(|e| ModelError::Name(e.to_string()))?;
        let Reference::Tag(tag) = m.reference else {
            return Err(ModelError::Name(format!(
                "model name {name:?} names a digest; name a tag"
            )));
        };
        let registry = m.host.unwrap_or_else(|| self.registry().to_owned());
        Ok((registry, m.repo.as_str().to_owned(), tag))
    }

    /// The model's key, if its tag is cached here, with the manifests it resolved to.
    async fn cached(&self, name: &str) -> Result<(ModelKey, Vec<Digest>), ModelError> {
        let key = self.model_key(name)?;
        match self.inner.store.tag_digests(key.clone()).await? {
            d if d.is_empty() => Err(ModelError::NotCached(name.to_owned())),
            d => Ok((key, d)),
        }
    }

    /// Pins a cached model: its blobs are never evicted.
    pub async fn pin(&self, name: &str) -> Result<(), ModelError> {
        let (key, _) = self.cached(name).await?;
        self.inner.store.pin(key).await?;
        tracing::info!(model = name, "model pinned");
        Ok(())
    }

    /// Unpins a model; `NotCached` when it was not pinned.
    pub async fn unpin(&self, name: &str) -> Result<(), ModelError> {
        let key = self.model_key(name)?;
        match self.inner.store.unpin(key).await? {
            true => {
                tracing::info!(model = name, "model unpinned");
                Ok(())
            }
            false => Err(ModelError::NotCached(format!("a pin of {name}"))),
        }
    }

    /// Removes a cached model: forgets its tag and deletes its blobs that no other cached
    /// or pinned model names, except any being read, fetched or seeded now.
    pub async fn remove_model(&self, name: &str) -> Result<Removed, ModelError> {
        let store = &self.inner.store;
        let (key, manifests) = self.cached(name).await?;
        if store.pins().await?.contains(&key) {
            return Err(ModelError::Pinned(name.to_owned()));
        }
        let mine = blobs_of_all(store, manifests).await?;
        let mut others = pinned_blobs(store).await?;
        for (k, row) in store.tags().await? {
            if (&k.registry, &k.repo, &k.tag) == (&key.0, &key.1, &key.2) {
                continue;
            }
            others.insert(row.digest);
            if let Some(b) = blobs_of(store, row.digest).await? {
                others.extend(b.into_keys());
            }
        }
        store.delete_tag(key).await?;
        let held: Vec<Digest> = mine
            .iter()
            .filter(|d| store.blob_size(d).is_some())
            .copied()
            .collect();
        let (shared, free): (Vec<Digest>, Vec<Digest>) =
            held.into_iter().partition(|d| others.contains(d));
        let free: Vec<Digest> = free
            .into_iter()
            .filter(|d| self.inner.fills.get(d).is_none())
            .collect();
        let removed = self.inner.budget.free(&free).await?;
        let report = Removed {
            blobs: removed.len(),
            bytes: removed.iter().map(|(_, s)| s).sum(),
            shared: shared.len(),
            busy: free.len() - removed.len(),
        };
        tracing::info!(
            model = name,
            blobs = report.blobs,
            bytes = report.bytes,
            shared = report.shared,
            busy = report.busy,
            "model removed"
        );
        Ok(report)
    }
}

/// The blobs of every pinned model, and their manifests: never evicted.
pub async fn pinned_blobs(store: &Store) -> store::Result<HashSet<Digest>> {
    let mut keep = HashSet::new();
    for key in store.pins().await? {
        keep.extend(blobs_of_all(store, store.tag_digests(key).await?).await?);
    }
    Ok(keep)
}

/// These manifests and every blob they name.
async fn blobs_of_all(store: &Store, manifests: Vec<Digest>) -> store::Result<HashSet<Digest>> {
    let mut all = HashSet::new();
    for d in manifests {
        all.insert(d);
        if let Some(b) = blobs_of(store, d).await? {
            all.extend(b.into_keys());
        }
    }
    Ok(all)
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
                // The child is a manifest (OCI), or a blob to fetch (ollama's lists).
                let body = match store.manifest(child.digest).await? {
                    Some(c) => Some(c.body.to_vec()),
                    None => {
                        blobs.insert(child.digest, child.size);
                        match child.size <= MAX_CHILD && store.blob_size(&child.digest).is_some() {
                            true => tokio::fs::read(store.blob_path(&child.digest)).await.ok(),
                            false => None,
                        }
                    }
                };
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
