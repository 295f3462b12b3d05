//! A cap on the bytes per second that all upstream fetching together may take
//! (`fetch.rate_limit`), so a big prefetch does not fill the site's internet link. A token
//! bucket holding at most one second's allowance: each worker takes what a chunk it read
//! cost and, when the bucket ran dry, waits before reading on, which slows its TCP stream.
//! (Small enough not to want a crate: governor's cells are u32 requests, not bytes.)

use std::sync::Mutex;
use std::time::Duration;

// Tokio's clock: the same as the system's, but tests can pause it.
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimit {
    /// Bytes per second.
    rate: f64,
    /// Allowance left (negative: owed) and when it was last topped up.
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        let rate = bytes_per_sec.max(1) as f64;
        RateLimit {
            rate,
            bucket: Mutex::new((rate, Instant::now())),
        }
    }

    pub fn bytes_per_sec(&self) -> u64 {
        self.rate as u64
    }

    /// Takes `n` bytes of allowance; waits while the bucket is in debt.
    pub async fn take(&self, n: usize) {
        let wait = {
            let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(b.1).as_secs_f64() * self.rate;
            b.0 = (b.0 + refill).min(self.rate) - n as f64;
            b.1 = now;
            b.0
        };
        if wait < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-wait / self.rate)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_second_of_burst_then_the_rate() {
        let limit = RateLimit::new(1_000_000);
        let t0 = tokio::time::Instant::now();
        // 5 MB in 64 KiB chunks, as workers read them: the first second's worth is free.
        let mut left = 5_000_000usize;
        while left > 0 {
            let n = left.min(65536);
            limit.take(n).await;
            left -= n;
        }
        let took = t0.elapsed().as_secs_f64();
        assert!((3.9..4.2).contains(&took), "took {took} s");
    }
}
