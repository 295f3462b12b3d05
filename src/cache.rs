//! Hot metadata in memory (moka): manifests by digest, tag resolutions, blob probes and
//! tag lists.
//! Everything here is also derivable from the store or upstream; losing it costs a lookup.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::oci::Digest;
use crate::store::{StoredManifest, TagKey, TagRow};
use crate::upstream::{BlobProbe, TagList};

/// Presigned blob locations expire; a probe is reused only briefly.
const PROBE_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Cache {
    manifests: moka::future::Cache<Digest, Arc<StoredManifest>>,
    tags: moka::future::Cache<TagKey, TagRow>,
    probes: moka::future::Cache<Digest, BlobProbe>,
    tag_lists: moka::future::Cache<TagListKey, (Instant, TagList)>,
}

/// A page of tags: registry, repository as it names it, and the query.
pub type TagListKey = (String, String, String);

impl Default for Cache {
    fn default() -> Self {
        Cache {
            manifests: moka::future::Cache::builder()
                .weigher(|_, m: &Arc<StoredManifest>| m.body.len().try_into().unwrap_or(u32::MAX))
                .max_capacity(64 << 20)
                .build(),
            tags: moka::future::Cache::new(100_000),
            probes: moka::future::Cache::builder()
                .time_to_live(PROBE_TTL)
                .max_capacity(10_000)
                .build(),
            tag_lists: moka::future::Cache::new(10_000),
        }
    }
}

impl Cache {
    pub async fn manifest(&self, d: &Digest) -> Option<Arc<StoredManifest>> {
        self.manifests.get(d).await
    }

    pub async fn put_manifest(&self, m: Arc<StoredManifest>) {
        self.manifests.insert(m.digest, m).await;
    }

    pub async fn tag(&self, k: &TagKey) -> Option<TagRow> {
        self.tags.get(k).await
    }

    pub async fn put_tag(&self, k: TagKey, row: TagRow) {
        self.tags.insert(k, row).await;
    }

    /// The cached probe for `d`, or the result of `fetch`. Concurrent callers for the same
    /// digest share one `fetch` (a HEAD from every client of a classroom costs one request).
    pub async fn probe<E, F>(&self, d: Digest, fetch: F) -> Result<BlobProbe, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: std::future::Future<Output = Result<BlobProbe, E>>,
    {
        self.probes.try_get_with(d, fetch).await
    }

    /// A page of tags and when it was fetched (kept however old: it answers when upstream
    /// is down).
    pub async fn tag_list(&self, k: &TagListKey) -> Option<(Instant, TagList)> {
        self.tag_lists.get(k).await
    }

    pub async fn put_tag_list(&self, k: TagListKey, list: TagList) {
        self.tag_lists.insert(k, (Instant::now(), list)).await;
    }

    /// Replaces the cached probe (after a refreshed location).
    pub async fn put_probe(&self, d: Digest, p: BlobProbe) {
        self.probes.insert(d, p).await;
    }
}
