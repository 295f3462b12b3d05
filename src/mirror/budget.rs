//! The cache's size limit: fills reserve the size of their blob when they start, and least
//! recently used blobs are evicted to make room (never one that is being read or seeded,
//! nor a pinned model's; fills are not in the store yet, so they are never touched either).
//!
//! Must not: decide what a fill fetches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::oci::Digest;
use crate::p2p::Swarm;
use crate::stats::Stats;
use crate::store::Store;

pub struct Budget {
    store: Store,
    stats: Arc<Stats>,
    /// Told about evicted blobs, to stop seeding them.
    swarm: Option<Arc<Swarm>>,
    limit: Option<u64>,
    /// Bytes that running fills will add to the cache.
    reserved: AtomicU64,
}

/// Space held for one fill; given back when dropped.
pub struct Reservation {
    budget: Arc<Budget>,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.size, Ordering::Relaxed);
    }
}

impl Budget {
    /// The cache's size limit, if there is one.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub fn new(
        store: Store,
        stats: Arc<Stats>,
        swarm: Option<Arc<Swarm>>,
        limit: Option<u64>,
    ) -> Arc<Budget> {
        Arc::new(Budget {
            store,
            stats,
            swarm,
            limit,
            reserved: AtomicU64::new(0),
        })
    }

    /// Holds `size` bytes for a fill of `digest`, evicting to make room.
    pub async fn reserve(self: &Arc<Self>, digest: &Digest, size: u64) -> Reservation {
        self.reserved.fetch_add(size, Ordering::Relaxed);
        let r = Reservation {
            budget: self.clone(),
            size,
        };
        if let Some(limit) = self.limit {
            if size > limit {
                tracing::warn!(%digest, size, limit, "blob is larger than max_cache_size; it will be evicted early");
            }
        }
        self.enforce().await;
        r
    }

    /// Evicts until the cache plus what running fills will add fits the limit, never a
    /// pinned model's blob.
    pub async fn enforce(&self) {
        let Some(limit) = self.limit else { return };
        let incoming = self.reserved.load(Ordering::Relaxed);
        // Every fill start comes here: work out the pins only when something must go.
        if self.store.fits(limit, incoming) {
            return;
        }
        let evicted = async {
            let keep = super::models::pinned_blobs(&self.store).await?;
            self.store.evict_to(limit, incoming, &keep).await
        };
        match evicted.await {
            Ok(evicted) => {
                for (d, size) in &evicted {
                    tracing::info!(digest = %d, size, "evicted least recently used blob");
                }
                self.retire(&evicted).await;
                Stats::add(&self.stats.evictions, evicted.len() as u64);
            }
            Err(e) => tracing::error!(error = %crate::telemetry::chain(&e), "eviction failed"),
        }
    }

    /// Deletes these blobs now (an admin removed their model), except any in use.
    pub async fn free(&self, digests: &[Digest]) -> crate::store::Result<Vec<(Digest, u64)>> {
        let removed = self.store.remove(digests).await?;
        self.retire(&removed).await;
        Ok(removed)
    }

    /// Stops seeding blobs that are gone.
    async fn retire(&self, gone: &[(Digest, u64)]) {
        if let Some(swarm) = &self.swarm {
            for (d, _) in gone {
                swarm.retire(d).await;
            }
        }
    }
}
