//! Manifests: bytes exactly as upstream sent them (ollama hashes them into the model ID).
//! By digest they are immutable and verified on the way in. By tag they are served for
//! `tag_ttl`, then revalidated upstream with the client's User-Agent and Accept; when
//! upstream is unreachable the last copy is served (stale-if-error). Upstream 4xx answers
//! (404, 412 "requires a newer version") pass through untouched and are not cached.
//!
//! A client with credentials (`Authorization`) is answered by upstream with them: its tags
//! are never taken from or written to the shared tag cache, and the manifests it fetched
//! are stored private, served again only to a client upstream served them to (`access`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Error, Mirror, Result};
use crate::oci::{manifest_media_type as media_type, Digest, Reference, RepoName};
use crate::stats::Stats;
use crate::store::{now_ms, StoredManifest, TagKey, TagRow};
use crate::upstream::{ClientMeta, ManifestAnswer, TagList};

/// After upstream fails, cached tags are served without revalidation for this long.
const UPSTREAM_DOWN_PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ManifestReply {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
}

#[derive(Debug)]
pub enum ManifestOutcome {
    Found(ManifestReply),
    /// Upstream's own 4xx answer, to pass through.
    Refused {
        status: u16,
        content_type: Option<String>,
        body: Bytes,
        /// Upstream's `WWW-Authenticate` on a 401, for the client to answer.
        challenge: Option<String>,
    },
}

impl From<&StoredManifest> for ManifestReply {
    fn from(m: &StoredManifest) -> Self {
        ManifestReply {
            digest: m.digest,
            media_type: m.media_type.clone(),
            body: m.body.clone(),
        }
    }
}

impl Mirror {
    pub async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        meta: &ClientMeta,
    ) -> Result<ManifestOutcome> {
        match reference {
            Reference::Digest(d) => self.manifest_by_digest(repo, d, meta).await,
            Reference::Tag(t) => self.manifest_by_tag(repo, t, meta).await,
        }
    }

    async fn stored_manifest(&self, d: &Digest) -> Result<Option<Arc<StoredManifest>>> {
        if let Some(m) = self.inner.cache.manifest(d).await {
            return Ok(Some(m));
        }
        let found = self
            .inner
            .store
            .manifest(*d)
            .await
            .map_err(|source| Error::Store {
                what: format!("manifest {d}"),
                source: Box::new(source),
            })?;
        let Some(m) = found else { return Ok(None) };
        let m = Arc::new(m);
        self.inner.cache.put_manifest(m.clone()).await;
        Ok(Some(m))
    }

    async fn save(&self, mut m: StoredManifest, tag: Option<(TagKey, TagRow)>) {
        // Once served without credentials it is public, whoever fetches it again (the
        // store keeps the same rule).
        if m.private
            && self
                .inner
                .cache
                .manifest(&m.digest)
                .await
                .is_some_and(|old| !old.private)
        {
            m.private = false;
        }
        let m = Arc::new(m);
        self.inner.cache.put_manifest(m.clone()).await;
        if let Some((k, row)) = &tag {
            self.inner.cache.put_tag(k.clone(), row.clone()).await;
        }
        let now = tag.as_ref().map_or_else(now_ms, |(_, r)| r.fetched_ms);
        if let Err(e) = self
            .inner
            .store
            .put_manifest((*m).clone(), tag.map(|(k, _)| k), now)
            .await
        {
            // Still served from memory; it just won't survive a restart.
            tracing::error!(digest = %m.digest, error = %crate::telemetry::chain(&e), "cannot store manifest");
        }
    }

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        d: &Digest,
        meta: &ClientMeta,
    ) -> Result<ManifestOutcome> {
        if let Some(m) = self.stored_manifest(d).await? {
            // A private one only for a client upstream served it to; anyone else asks
            // upstream, which answers them as it would without shoal.
            if !m.private || self.inner.confirmed.contains(repo, d, meta) {
                Stats::add(&self.inner.stats.manifest_hits, 1);
                return Ok(ManifestOutcome::Found((&*m).into()));
            }
        }
        Stats::add(&self.inner.stats.manifest_misses, 1);
        let (upstream, upstream_repo) = self.inner.registries.resolve(repo);
        let answer = upstream
            .manifest(&upstream_repo, &Reference::Digest(*d), meta, false)
            .await
            .map_err(|source| Error::ManifestUpstream {
                repo: repo.clone(),
                reference: d.to_string(),
                source: Box::new(source),
            })?;
        match answer {
            ManifestAnswer::Found { body, content_type } => {
                let m = from_upstream(body, content_type, meta.authorization.is_some());
                if m.digest != *d {
                    return Err(Error::ManifestMismatch {
                        want: *d,
                        got: m.digest,
                    });
                }
                if m.private {
                    self.inner.confirmed.insert(repo, d, meta).await;
                }
                let reply = (&m).into();
                self.save(m, None).await;
                Ok(ManifestOutcome::Found(reply))
            }
            refused => Ok(refused_outcome(refused)),
        }
    }

    async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &str,
        meta: &ClientMeta,
    ) -> Result<ManifestOutcome> {
        if meta.authorization.is_some() {
            return self.private_manifest_by_tag(repo, tag, meta).await;
        }
        // Tags are kept by registry and the repository as that registry names it.
        let (upstream, upstream_repo) = self.inner.registries.resolve(repo);
        let key = TagKey {
            registry: upstream.registry().to_owned(),
            repo: upstream_repo.to_string(),
            tag: tag.to_owned(),
            accept: meta.accept_key(),
        };
        let ttl_ms = self.inner.cfg.tag_ttl.as_millis() as i64;

        // One revalidation per tag at a time: a classroom pulling at once costs one request.
        let _flight = self.tag_lock(&key).await;
        let cached = match self.inner.cache.tag(&key).await {
            Some(row) => Some(row),
            None => {
                let row =
                    self.inner
                        .store
                        .tag(key.clone())
                        .await
                        .map_err(|source| Error::Store {
                            what: format!("tag {repo}:{tag}"),
                            source: Box::new(source),
                        })?;
                if let Some(r) = &row {
                    self.inner.cache.put_tag(key.clone(), r.clone()).await;
                }
                row
            }
        };
        let cached_manifest = match &cached {
            Some(row) => self.stored_manifest(&row.digest).await?,
            None => None,
        };
        if let (Some(row), Some(m)) = (&cached, &cached_manifest) {
            if now_ms() - row.fetched_ms < ttl_ms {
                Stats::add(&self.inner.stats.manifest_hits, 1);
                return Ok(ManifestOutcome::Found((&**m).into()));
            }
        }

        // Upstream failed moments ago: serve the cached copy without waiting on it again.
        if let Some(m) = &cached_manifest {
            if self.upstream_recently_down(upstream.registry()) {
                Stats::add(&self.inner.stats.manifest_stale, 1);
                return Ok(ManifestOutcome::Found((&**m).into()));
            }
        }
        let reference = Reference::Tag(tag.to_owned());
        let quick = cached_manifest.is_some();
        let answer = upstream
            .manifest(&upstream_repo, &reference, meta, quick)
            .await;
        if let Err(e) = &answer {
            if e.is_transient() {
                self.mark_upstream_down(upstream.registry());
            }
        }
        match answer {
            Ok(ManifestAnswer::Found { body, content_type }) => {
                Stats::add(&self.inner.stats.manifest_misses, 1);
                let m = from_upstream(body, content_type, false);
                let reply = (&m).into();
                let row = TagRow {
                    digest: m.digest,
                    fetched_ms: now_ms(),
                };
                self.save(m, Some((key, row))).await;
                Ok(ManifestOutcome::Found(reply))
            }
            Ok(refused) => Ok(refused_outcome(refused)),
            Err(source) => match cached_manifest {
                Some(m) => {
                    tracing::warn!(%repo, tag, error = %crate::telemetry::chain(&source),
                        "upstream unavailable; serving the cached manifest");
                    Stats::add(&self.inner.stats.manifest_stale, 1);
                    Ok(ManifestOutcome::Found((&*m).into()))
                }
                None => Err(Error::ManifestUpstream {
                    repo: repo.clone(),
                    reference: tag.to_owned(),
                    source: Box::new(source),
                }),
            },
        }
    }

    /// A tag asked with credentials: always upstream's answer to them (there is no stale
    /// copy to fall back on), its manifest kept private and confirmed for this client, so
    /// that the by-digest requests that follow are served from the store.
    async fn private_manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &str,
        meta: &ClientMeta,
    ) -> Result<ManifestOutcome> {
        let (upstream, upstream_repo) = self.inner.registries.resolve(repo);
        let reference = Reference::Tag(tag.to_owned());
        let answer = upstream
            .manifest(&upstream_repo, &reference, meta, false)
            .await
            .map_err(|source| Error::ManifestUpstream {
                repo: repo.clone(),
                reference: tag.to_owned(),
                source: Box::new(source),
            })?;
        match answer {
            ManifestAnswer::Found { body, content_type } => {
                Stats::add(&self.inner.stats.manifest_misses, 1);
                let m = from_upstream(body, content_type, true);
                self.inner.confirmed.insert(repo, &m.digest, meta).await;
                let reply = (&m).into();
                self.save(m, None).await;
                Ok(ManifestOutcome::Found(reply))
            }
            refused => Ok(refused_outcome(refused)),
        }
    }

    /// A page of a repository's tags (`skopeo inspect` lists them): passed through from
    /// upstream, kept for `tag_ttl`, and served however old when upstream fails. With
    /// credentials, upstream's answer to them, kept for no one.
    pub async fn tag_list(
        &self,
        repo: &RepoName,
        query: &str,
        meta: &ClientMeta,
    ) -> Result<TagList> {
        let (upstream, upstream_repo) = self.inner.registries.resolve(repo);
        if meta.authorization.is_some() {
            return upstream
                .tag_list(&upstream_repo, query, meta)
                .await
                .map_err(|e| Error::ManifestUpstream {
                    repo: repo.clone(),
                    reference: "tags/list".to_owned(),
                    source: Box::new(e),
                });
        }
        let key = (
            upstream.registry().to_owned(),
            upstream_repo.to_string(),
            query.to_owned(),
        );
        let cached = self.inner.cache.tag_list(&key).await;
        if let Some((at, list)) = &cached {
            if at.elapsed() < self.inner.cfg.tag_ttl
                || self.upstream_recently_down(upstream.registry())
            {
                return Ok(list.clone());
            }
        }
        match upstream.tag_list(&upstream_repo, query, meta).await {
            Ok(list) => {
                self.inner.cache.put_tag_list(key, list.clone()).await;
                Ok(list)
            }
            Err(e) => match cached {
                Some((_, list)) if e.is_transient() => {
                    self.mark_upstream_down(upstream.registry());
                    tracing::warn!(%repo, error = %crate::telemetry::chain(&e),
                        "upstream unavailable; serving the cached tag list");
                    Ok(list)
                }
                _ => Err(Error::ManifestUpstream {
                    repo: repo.clone(),
                    reference: "tags/list".to_owned(),
                    source: Box::new(e),
                }),
            },
        }
    }

    /// Whether `registry` failed within `UPSTREAM_DOWN_PAUSE` (each registry on its own:
    /// hf.co being down says nothing of the others).
    fn upstream_recently_down(&self, registry: &str) -> bool {
        let down = self
            .inner
            .upstream_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        down.get(registry).is_some_and(|t| Instant::now() < *t)
    }

    fn mark_upstream_down(&self, registry: &str) {
        let mut down = self
            .inner
            .upstream_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        down.retain(|_, t| Instant::now() < *t);
        down.insert(registry.to_owned(), Instant::now() + UPSTREAM_DOWN_PAUSE);
    }

    async fn tag_lock(&self, key: &TagKey) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .inner
                .tag_locks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(key.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// A manifest exactly as upstream sent it, under the digest of its bytes; `private` when
/// fetched with a client's credentials.
fn from_upstream(body: Bytes, content_type: Option<String>, private: bool) -> StoredManifest {
    StoredManifest {
        digest: Digest::of(&body),
        media_type: media_type(content_type.as_deref(), &body),
        body,
        private,
    }
}

fn refused_outcome(answer: ManifestAnswer) -> ManifestOutcome {
    match answer {
        ManifestAnswer::Refused {
            status,
            content_type,
            body,
            challenge,
        } => ManifestOutcome::Refused {
            status: status.as_u16(),
            content_type: content_type.and_then(|v| v.to_str().ok().map(str::to_owned)),
            body,
            challenge: challenge.and_then(|v| v.to_str().ok().map(str::to_owned)),
        },
        ManifestAnswer::Found { .. } => ManifestOutcome::Refused {
            status: 502,
            content_type: None,
            body: Bytes::new(),
            challenge: None,
        },
    }
}
