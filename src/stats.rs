//! Process-wide counters behind `/_shoal/v1/stats`. A leaf: plain atomics, no I/O.
//! Cumulative values are persisted by `app` through the store, so "what it saved" survives
//! restarts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Counters; every field is cumulative since the data dir was created.
        #[derive(Debug, Default)]
        pub struct Stats {
            $(pub $name: AtomicU64,)*
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
    // Blobs hashed again and found sound (the scrub, `shoal verify`), and damaged ones
    // fetched again with no client asking.
    verified_blobs,
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
