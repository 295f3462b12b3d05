//! The cache's size limit: fills reserve the size of their blob when they start, and least
//! recently used blobs are evicted to make room (never one that is being read or seeded;
//! fills are not in the store yet, so they are never touched either).
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

    /// Evicts until the cache plus what running fills will add fits the limit.
    pub async fn enforce(&self) {
        let Some(limit) = self.limit else { return };
        let incoming = self.reserved.load(Ordering::Relaxed);
        match self.store.evict_to(limit, incoming).await {
            Ok(evicted) => {
                for (d, size) in &evicted {
                    tracing::info!(digest = %d, size, "evicted least recently used blob");
                    if let Some(swarm) = &self.swarm {
                        swarm.retire(d).await;
                    }
                }
                Stats::add(&self.stats.evictions, evicted.len() as u64);
            }
            Err(e) => tracing::error!(error = %crate::telemetry::chain(&e), "eviction failed"),
        }
    }
}
