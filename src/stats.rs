//! Process-wide counters behind `/_shoal/v1/stats`. A leaf: plain atomics, no I/O.
//! Cumulative values are persisted by `app` through the store, so "what it saved" survives
//! restarts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;

/// Fill durations, from a small blob on the LAN to a big model over a slow link.
const FILL_SECONDS_BUCKETS: &[f64] = &[
    0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0, 3600.0,
];

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Counters; every field is cumulative since the data dir was created.
        #[derive(Debug)]
        pub struct Stats {
            $(pub $name: AtomicU64,)*
            /// How long each fill that cached a blob took (since this start only).
            pub fill_seconds: Histogram,
        }

        impl Default for Stats {
            fn default() -> Stats {
                Stats {
                    $($name: AtomicU64::default(),)*
                    fill_seconds: Histogram::new(FILL_SECONDS_BUCKETS.iter().copied()),
                }
            }
        }

        /// A point-in-time copy, as served in JSON.
        #[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
        pub struct Counters {
            $(pub $name: u64,)*
        }

        impl Stats {
            pub fn counters(&self) -> Counters {
                Counters { $($name: self.$name.load(Relaxed),)* }
            }

            /// Adds persisted totals at start-up.
            pub fn restore(&self, c: &Counters) {
                $(self.$name.fetch_add(c.$name, Relaxed);)*
            }

            pub fn names() -> &'static [&'static str] {
                &[$(stringify!($name),)*]
            }
        }

        impl Counters {
            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $(stringify!($name) => Some(self.$name),)*
                    _ => None,
                }
            }

            pub fn set(&mut self, name: &str, value: u64) {
                match name {
                    $(stringify!($name) => self.$name = value,)*
                    _ => {}
                }
            }
        }
    };
}

counters!(
    upstream_bytes,
    peer_bytes,
    served_bytes,
    // served_bytes by where the bytes came from: the store, a fill from upstream, a fill
    // from LAN peers.
    served_cache_bytes,
    served_upstream_bytes,
    served_peers_bytes,
    seeded_bytes,
    blob_hits,
    blob_misses,
    manifest_hits,
    manifest_misses,
    manifest_stale,
    fills_started,
    fills_failed,
    // Cached fills this node fetched (at least partly) from upstream, and those that came
    // wholly from other nodes (BitTorrent, or the node that fetched it for the LAN).
    fills_from_upstream,
    fills_from_peers,
    evictions,
    // Complete blobs found missing, cut short or changed on disk, dropped and fetched
    // again.
    damaged_blobs,
    // Blobs hashed again and found sound (the scrub, `shoal verify`), and their bytes; and
    // damaged ones fetched again with no client asking.
    verified_blobs,
    verified_bytes,
    mended_blobs,
);

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_and_names() {
        let s = Stats::default();
        Stats::add(&s.served_bytes, 5);
        let mut c = Counters::default();
        c.set("served_bytes", 10);
        c.set("upstream_bytes", 3);
        s.restore(&c);
        let now = s.counters();
        assert_eq!(now.served_bytes, 15);
        assert_eq!(now.get("upstream_bytes"), Some(3));
        assert!(Stats::names().contains(&"evictions"));
    }
}
