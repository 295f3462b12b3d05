//! A fill's hashers. Both read back from the partial file (from the page cache), so bytes
//! that land out of order need no buffering:
//! - `sha256` follows the contiguous landed prefix; the result must match the digest.
//! - `pieces` first re-checks what a previous run left (ranges where readers wait first),
//!   then takes the SHA-1 of each torrent piece as soon as all its bytes have landed,
//!   whichever source they came from, and appends it to the journal. So a crash loses at
//!   most the pieces that were in flight, and the torrent is ready at commit.
//!
//! Must not: land bytes it has not checked.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::{piece_bounds, Failure, Fill, Piece};
use crate::mirror::ranges::RangeSet;
use crate::oci::Digest;
use crate::store::{Journal, Record};

const CHUNK: usize = 4 << 20;
/// Records written at shutdown are cut to this, so that one bad byte costs little.
const MAX_RECORD: u64 = 16 << 20;

/// The journal, and which ranges it vouches for.
pub struct Ledger {
    journal: Journal,
    recorded: RangeSet,
}

pub fn lock(l: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ledger {
    pub fn new(journal: Journal) -> Ledger {
        Ledger {
            journal,
            recorded: RangeSet::new(),
        }
    }

    fn append(&mut self, start: u64, end: u64, sha1: [u8; 20]) -> std::io::Result<()> {
        if self.recorded.run_end(start).is_some_and(|e| e >= end) {
            return Ok(());
        }
        self.journal.append(&Record { start, end, sha1 })?;
        self.recorded.insert(start, end);
        Ok(())
    }

    /// Records every landed byte the journal does not vouch for yet (blocking). Returns
    /// how many bytes that was.
    pub fn record_all(&mut self, landed: &RangeSet, file: &File) -> std::io::Result<u64> {
        let mut missing = Vec::new();
        for &(s, e) in landed.runs() {
            let mut at = s;
            for (rs, re) in self.recorded.runs_within(s, e) {
                if at < rs {
                    missing.push((at, rs));
                }
                at = re;
            }
            if at < e {
                missing.push((at, e));
            }
        }
        let mut total = 0;
        let mut buf = vec![0u8; CHUNK];
        for (s, e) in missing {
            let mut at = s;
            while at < e {
                let end = e.min(at + MAX_RECORD);
                let sha1 = sha1_of(file, at, end, &mut buf)?;
                self.append(at, end, sha1)?;
                total += end - at;
                at = end;
            }
        }
        Ok(total)
    }
}

fn sha1_of(file: &File, start: u64, end: u64, buf: &mut [u8]) -> std::io::Result<[u8; 20]> {
    let mut h = Sha1::new();
    let mut at = start;
    while at < end {
        let n = ((end - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize().into())
}

/// The SHA-256 of the whole blob, as its bytes land.
pub async fn sha256(fill: Arc<Fill>, file: Arc<File>) -> Result<Digest, Failure> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut hashed = 0u64;
    while hashed < fill.size {
        let end = fill.landed_at(hashed, false).await?;
        let n = (end - hashed).min(CHUNK as u64) as usize;
        let (f, at) = (file.clone(), hashed);
        let (h, b, res) = tokio::task::spawn_blocking(move || {
            let res = f.read_exact_at(&mut buf[..n], at);
            if res.is_ok() {
                hasher.update(&buf[..n]);
            }
            (hasher, buf, res)
        })
        .await
        .map_err(Failure::internal)?;
        res.map_err(|e| Failure::io("reading back the partial blob", &e))?;
        (hasher, buf) = (h, b);
        hashed += n as u64;
    }
    Ok(Digest::from_bytes(hasher.finalize().into()))
}

/// Re-checks `resumed`, then hashes every piece as it completes. Returns the pieces'
/// SHA-1s, in order, once all are known.
pub async fn pieces(
    fill: Arc<Fill>,
    file: Arc<File>,
    ledger: Arc<Mutex<Ledger>>,
    resumed: Vec<Record>,
) -> Result<Vec<u8>, Failure> {
    recheck(&fill, &file, &ledger, resumed).await?;
    let wake = fill.lock().ready_wake.clone();
    let mut buf = Some(vec![0u8; CHUNK]);
    loop {
        let next = {
            let mut st = fill.lock();
            match st.ready.pop_front() {
                Some(p) => Some(p),
                None if st.pieces.iter().all(|p| matches!(p, Piece::Known(_))) => {
                    let mut out = Vec::with_capacity(st.pieces.len() * 20);
                    for p in &st.pieces {
                        if let Piece::Known(h) = p {
                            out.extend_from_slice(h);
                        }
                    }
                    return Ok(out);
                }
                None => None,
            }
        };
        let Some((i, known)) = next else {
            wake.notified().await;
            continue;
        };
        let (start, end) = piece_bounds(i, fill.piece_length, fill.size);
        let (f, l, mut b) = (file.clone(), ledger.clone(), buf.take().unwrap_or_default());
        let (b, res) = tokio::task::spawn_blocking(move || {
            let res = match known {
                Some(h) => Ok(h),
                None => sha1_of(&f, start, end, &mut b),
            };
            let res = res.and_then(|h| lock(&l).append(start, end, h).map(|()| h));
            (b, res)
        })
        .await
        .map_err(Failure::internal)?;
        buf = Some(b);
        let h = res.map_err(|e| Failure::io("hashing a piece of the partial blob", &e))?;
        fill.lock().pieces[i] = Piece::Known(h);
    }
}

/// Checks what a previous run recorded against the bytes in the partial, ranges where
/// readers wait first. Good ranges land; bad ones are let go, for a source to fetch.
async fn recheck(
    fill: &Arc<Fill>,
    file: &Arc<File>,
    ledger: &Arc<Mutex<Ledger>>,
    mut todo: Vec<Record>,
) -> Result<(), Failure> {
    todo.sort_by_key(|r| r.start);
    let (mut kept, mut dropped) = (0u64, 0u64);
    let mut buf = Some(vec![0u8; CHUNK]);
    while !todo.is_empty() {
        let demands = fill.waiting_demands();
        let pick = demands
            .iter()
            .find_map(|&d| todo.iter().position(|r| r.start <= d && d < r.end))
            .unwrap_or(0);
        let r = todo.remove(pick);
        let (f, mut b) = (file.clone(), buf.take().unwrap_or_default());
        let (b, got) = tokio::task::spawn_blocking(move || {
            let got = sha1_of(&f, r.start, r.end, &mut b);
            (b, got)
        })
        .await
        .map_err(Failure::internal)?;
        buf = Some(b);
        match got {
            Ok(h) if h == r.sha1 => {
                lock(ledger).recorded.insert(r.start, r.end);
                fill.land(r.start, r.end, Some(h));
                kept += r.end - r.start;
            }
            other => {
                if let Err(e) = other {
                    tracing::warn!(digest = %fill.digest, error = %e, "cannot read back a resumed range");
                }
                // Only what no other record still vouches for goes back to the sources.
                let mut pending = RangeSet::new();
                for o in &todo {
                    pending.insert(o.start, o.end);
                }
                let mut at = r.start;
                let mut st = fill.lock();
                for (s, e) in pending.runs_within(r.start, r.end) {
                    if at < s {
                        st.sched.let_go(at, s);
                    }
                    at = e;
                }
                if at < r.end {
                    st.sched.let_go(at, r.end);
                }
                drop(st);
                fill.bump_sched();
                dropped += r.end - r.start;
            }
        }
    }
    if kept + dropped > 0 {
        tracing::info!(digest = %fill.digest, kept, dropped, "resumed bytes re-checked");
    }
    Ok(())
}
