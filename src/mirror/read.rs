//! Blob bodies: chunks read off the runtime, from a complete file or from a fill as its
//! bytes land. Memory per reader is one chunk, whatever the blob size.
//!
//! Each reader has its own file handle and reads front to back, by offset, into a buffer
//! allocated on the async side. Two reasons: no zero-filling of every chunk, and glibc
//! gives every thread that allocates its own arena, so allocating chunks on tokio's many
//! blocking threads multiplied the heap (measured: 109 MB peak RSS serving 16 ranges,
//! 138 MB with 64).
//!
//! A chunk the page cache holds is read on the runtime thread (`RWF_NOWAIT`, which never
//! waits for the disk); only the rest goes to the blocking pool. With every chunk sent
//! there, the hand-off between threads cost more than the copy: warm 16-range reads took
//! 0.43-0.56 CPU-s per GiB, 0.34-0.35 without (bench/run, docs/BENCHMARKS.md).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::fill::Fill;
use super::{Error, Result};
use crate::oci::{ByteRange, Digest, RangeSpec};
use crate::stats::Stats;
use crate::store::{self, BlobLease, Store};

const CHUNK: u64 = 512 * 1024;

pub type BlobStream = BoxStream<'static, Result<Bytes>>;

/// Where a read's bytes come from, as it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobSource {
    /// A complete, verified blob in the store.
    Cache,
    /// A fill fetching from upstream.
    Upstream,
    /// A fill fetching from other nodes over BitTorrent.
    Peers,
}

/// An opened blob: what the response headers need, and the body.
pub struct BlobRead {
    pub digest: Digest,
    pub size: u64,
    /// `Some` for a satisfiable `Range` request (answered 206), `None` for the whole blob.
    pub range: Option<ByteRange>,
    pub source: BlobSource,
    pub body: BlobStream,
}

enum Source {
    /// Held so the blob is not evicted while it is read.
    Store(BlobLease),
    Fill(Arc<Fill>),
    /// The store's blob, found damaged under this reader (which ends with an error).
    Gone,
}

struct Reader {
    digest: Digest,
    source: Source,
    /// Read by offset (`pos`), never through its cursor; lent to the blocking pool when a
    /// read must wait for the disk.
    file: Option<File>,
    size: u64,
    pos: u64,
    end: u64,
    /// The whole blob was asked for: its last chunk is held back until the digest matched,
    /// so a plain GET never completes with bad bytes.
    whole: bool,
    stats: Arc<Stats>,
    /// The demand registered before the partial was open; dropped once bytes flow.
    early: Option<super::fill::DemandGuard>,
    done: bool,
}

fn resolve(
    digest: Digest,
    size: u64,
    range: Option<RangeSpec>,
) -> Result<(Option<ByteRange>, u64, u64)> {
    match range {
        None => Ok((None, 0, size)),
        Some(spec) => match spec.resolve(size) {
            Some(r) => Ok((Some(r), r.start, r.end)),
            None => Err(Error::Unsatisfiable { digest, size }),
        },
    }
}

/// Opens the first of `paths` that exists, off the runtime.
async fn open_first(digest: Digest, paths: Vec<PathBuf>) -> Result<File> {
    tokio::task::spawn_blocking(move || {
        let mut last = std::io::Error::from(std::io::ErrorKind::NotFound);
        for p in paths {
            match File::open(&p) {
                Ok(f) => return Ok(f),
                Err(e) => last = e,
            }
        }
        Err(last)
    })
    .await
    .map_err(|e| Error::Read {
        digest,
        source: std::io::Error::other(e),
    })?
    .map_err(|source| Error::Read { digest, source })
}

/// A complete blob from the store; `None` when its file turned out damaged (missing, cut
/// short or changed: see `store::check`), in which case it was dropped from the store and
/// the caller should treat the request as a miss.
pub(super) async fn from_store(
    stats: Arc<Stats>,
    digest: Digest,
    lease: BlobLease,
    range: Option<RangeSpec>,
) -> Result<Option<BlobRead>> {
    let size = lease.size();
    let (range, start, end) = resolve(digest, size, range)?;
    let (lease, opened) = tokio::task::spawn_blocking(move || {
        let opened = lease.open_checked(start);
        (lease, opened)
    })
    .await
    .map_err(|e| Error::Read {
        digest,
        source: std::io::Error::other(e),
    })?;
    let file = match opened {
        Ok(f) => f,
        Err(damage) => {
            damaged(&stats, lease, damage).await;
            return Ok(None);
        }
    };
    Ok(Some(make(
        Reader {
            digest,
            source: Source::Store(lease),
            file: Some(file),
            size,
            pos: start,
            end,
            whole: false,
            stats,
            early: None,
            done: false,
        },
        range,
    )))
}

/// Drops a damaged blob from the store (off the runtime) and counts it once.
async fn damaged(stats: &Stats, lease: BlobLease, damage: store::Damage) {
    let dropped = tokio::task::spawn_blocking(move || lease.drop_damaged(&damage))
        .await
        .unwrap_or(false);
    if dropped {
        Stats::add(&stats.damaged_blobs, 1);
    }
}

pub(super) async fn from_fill(
    store: &Store,
    stats: Arc<Stats>,
    fill: Arc<Fill>,
    range: Option<RangeSpec>,
) -> Result<BlobRead> {
    let digest = fill.digest;
    let size = fill.size();
    let (range_out, start, end) = resolve(digest, size, range)?;
    // Say where this reader starts before the partial is even open, so the first workers
    // go there.
    let early = (start < end).then(|| fill.demand(start));
    fill.opened()
        .await
        .map_err(|f| Error::from_fill(digest, f))?;
    // The partial, or the complete file if the fill committed (renamed it) meanwhile.
    let paths = vec![store.partial_path(&digest), store.blob_path(&digest)];
    let file = open_first(digest, paths).await?;
    Ok(make(
        Reader {
            digest,
            whole: range_out.is_none(),
            source: Source::Fill(fill),
            file: Some(file),
            size,
            pos: start,
            end,
            stats,
            early,
            done: false,
        },
        range_out,
    ))
}

fn make(reader: Reader, range: Option<ByteRange>) -> BlobRead {
    let (digest, size) = (reader.digest, reader.size);
    let source = match &reader.source {
        Source::Store(_) | Source::Gone => BlobSource::Cache,
        Source::Fill(fill) => fill.source(),
    };
    let body = stream::unfold(reader, |mut r| async move {
        let item = r.next().await?;
        Some((item, r))
    })
    .boxed();
    BlobRead {
        digest,
        size,
        range,
        source,
        body,
    }
}

impl Reader {
    /// A complete blob's file failed under this reader: the rest of the body cannot be
    /// sent (the connection is cut, never padded), and the next request must not find the
    /// blob held. Returns `e` for the body.
    async fn fail(&mut self, e: Error, damage: store::Damage) -> Error {
        if let Source::Store(lease) = std::mem::replace(&mut self.source, Source::Gone) {
            damaged(&self.stats, lease, damage).await;
        }
        e
    }

    async fn next(&mut self) -> Option<Result<Bytes>> {
        if self.done || self.pos >= self.end {
            return None;
        }
        let result = self.read_chunk().await;
        if result.is_err() {
            self.done = true;
        }
        Some(result)
    }

    async fn read_chunk(&mut self) -> Result<Bytes> {
        let mut limit = self.end.min(self.pos + CHUNK);
        if let Source::Fill(fill) = &self.source {
            let landed_to = fill
                .available(self.pos)
                .await
                .map_err(|f| Error::from_fill(self.digest, f))?;
            self.early = None;
            limit = limit.min(landed_to);
            if self.whole && limit == self.size {
                fill.verified()
                    .await
                    .map_err(|f| Error::from_fill(self.digest, f))?;
            }
        }
        let n = (limit - self.pos) as usize;
        let (pos, digest) = (self.pos, self.digest);
        let read_error = move |source| Error::Read { digest, source };
        let file = self
            .file
            .take()
            .ok_or_else(|| read_error(std::io::Error::other("reader has no file")))?;
        // Allocated here, on a runtime thread (see the module comment).
        let mut buf = Vec::with_capacity(n);
        // What the page cache holds (a warm blob, the bytes a fill just wrote) is read right
        // here; only the rest goes to the blocking pool, a hand-off between threads that
        // cost more CPU than the copy itself when every chunk took it.
        // Any error here (not cached: EAGAIN; no RWF_NOWAIT on this file system) only
        // means the blocking read below does the work, and reports real errors.
        let _ = pread_append(&file, &mut buf, n, pos, true);
        let (file, result) = if buf.len() == n {
            (file, Ok(buf))
        } else {
            tokio::task::spawn_blocking(move || {
                let r = read_at(&file, buf, n, pos);
                (file, r)
            })
            .await
            .map_err(|e| read_error(std::io::Error::other(e)))?
        };
        self.file = Some(file);
        let buf = match result {
            Ok(buf) if buf.len() == n => buf,
            // The read stopped at the end of the file: it is this long.
            Ok(buf) => {
                let found = self.pos + buf.len() as u64;
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("file ended {} bytes early", self.size - found),
                );
                let damage = store::Damage::Size {
                    found,
                    expected: self.size,
                };
                return Err(self.fail(read_error(e), damage).await);
            }
            Err(e) => {
                let damage =
                    store::Damage::Unreadable(std::io::Error::new(e.kind(), e.to_string()));
                return Err(self.fail(read_error(e), damage).await);
            }
        };
        // The scrub, `shoal verify` or another reader may have found the file damaged
        // while this one read it: then nothing more of it is sent (the connection is cut).
        if let Source::Store(lease) = &self.source {
            if !lease.is_held() {
                self.source = Source::Gone;
                return Err(read_error(std::io::Error::other(
                    "the blob was found damaged while it was being read",
                )));
            }
        }
        let bytes = Bytes::from(buf);
        self.pos += n as u64;
        Stats::add(&self.stats.served_bytes, n as u64);
        let by_source = match &self.source {
            Source::Store(_) | Source::Gone => &self.stats.served_cache_bytes,
            Source::Fill(fill) => match fill.source() {
                BlobSource::Peers => &self.stats.served_peers_bytes,
                _ => &self.stats.served_upstream_bytes,
            },
        };
        Stats::add(by_source, n as u64);
        Ok(bytes)
    }
}

/// Fills `buf` (empty or partly read) up to `n` bytes read from `pos` on; shorter only
/// where the file ends.
fn read_at(file: &File, mut buf: Vec<u8>, n: usize, pos: u64) -> std::io::Result<Vec<u8>> {
    while buf.len() < n {
        let (at, want) = (pos + buf.len() as u64, n - buf.len());
        match pread_append(file, &mut buf, want, at, false) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// One `preadv2` of up to `want` bytes at `pos`, appended to `buf` without zero-filling
/// its spare room first; with `nowait`, only what is already in the page cache
/// (`RWF_NOWAIT`: it never waits for the disk, so it may run on a runtime thread).
fn pread_append(
    file: &File,
    buf: &mut Vec<u8>,
    want: usize,
    pos: u64,
    nowait: bool,
) -> std::io::Result<usize> {
    let offset = libc::off_t::try_from(pos).map_err(std::io::Error::other)?;
    buf.reserve(want);
    let spare = &mut buf.spare_capacity_mut()[..want];
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
    // SAFETY: `iov` spans `want` bytes of `buf`'s spare capacity, which `buf` owns and
    // nothing else refers to while the call runs; the kernel writes at most that many.
    let got = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, flags) };
    let got = usize::try_from(got).map_err(|_| std::io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first `got` (≤ `want`) bytes of the spare room.
    unsafe { buf.set_len(buf.len() + got) };
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        f.flush().expect("flush");
        let file = File::open(f.path()).expect("open");
        (f, file)
    }

    #[test]
    fn reads_a_range_by_offset_whatever_the_cursor() {
        let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let (_keep, file) = file_of(&data);
        let got = read_at(&file, Vec::new(), 100_000, 150_000).expect("read");
        assert_eq!(got, data[150_000..250_000]);
        // Appends to what an earlier read already has.
        let mut buf = Vec::new();
        let first = pread_append(&file, &mut buf, 10, 5, false).expect("pread");
        assert_eq!(first, 10);
        let got = read_at(&file, buf, 30, 5).expect("read");
        assert_eq!(got, data[5..35]);
    }

    #[test]
    fn a_file_cut_short_reads_short_never_padded() {
        let (_keep, file) = file_of(b"0123456789");
        let got = read_at(&file, Vec::new(), 8, 6).expect("read");
        assert_eq!(got, b"6789");
        assert!(read_at(&file, Vec::new(), 8, 20).expect("read").is_empty());
    }

    #[test]
    fn nowait_reads_what_the_page_cache_holds_and_never_more_than_asked() {
        let (_keep, file) = file_of(b"abcdefghij");
        let mut buf = Vec::with_capacity(64);
        // Just written, so cached; an error (no RWF_NOWAIT here) leaves the buffer empty.
        match pread_append(&file, &mut buf, 4, 3, true) {
            Ok(n) => assert_eq!(&buf[..n], &b"defg"[..n]),
            Err(_) => assert!(buf.is_empty()),
        }
        assert!(buf.len() <= 4);
    }
}
