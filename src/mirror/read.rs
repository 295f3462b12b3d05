//! Blob bodies: chunks read with `pread` off the runtime, from a complete file or from a
//! fill as its bytes land. Memory per reader is one chunk, whatever the blob size.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};

use super::fill::Fill;
use super::{Error, Result};
use crate::oci::{ByteRange, Digest, RangeSpec};
use crate::stats::Stats;
use crate::store::BlobLease;

const CHUNK: u64 = 512 * 1024;

pub type BlobStream = BoxStream<'static, Result<Bytes>>;

/// An opened blob: what the response headers need, and the body.
pub struct BlobRead {
    pub digest: Digest,
    pub size: u64,
    /// `Some` for a satisfiable `Range` request (answered 206), `None` for the whole blob.
    pub range: Option<ByteRange>,
    pub body: BlobStream,
}

enum Source {
    /// Held so the blob is not evicted while it is read.
    Store(#[allow(dead_code)] BlobLease),
    Fill(Arc<Fill>),
}

struct Reader {
    digest: Digest,
    source: Source,
    file: Arc<File>,
    size: u64,
    pos: u64,
    end: u64,
    /// The whole blob was asked for: its last chunk is held back until the digest matched,
    /// so a plain GET never completes with bad bytes.
    whole: bool,
    stats: Arc<Stats>,
    /// The demand registered before the size was known; dropped once bytes flow.
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

pub(super) async fn from_store(
    stats: Arc<Stats>,
    digest: Digest,
    lease: BlobLease,
    range: Option<RangeSpec>,
) -> Result<BlobRead> {
    let size = lease.size();
    let (range, start, end) = resolve(digest, size, range)?;
    let (lease, file) = tokio::task::spawn_blocking(move || {
        let f = lease.open();
        (lease, f)
    })
    .await
    .map_err(|e| Error::Read {
        digest,
        source: std::io::Error::other(e),
    })?;
    let file = file.map_err(|source| Error::Read { digest, source })?;
    Ok(make(
        Reader {
            digest,
            source: Source::Store(lease),
            file: Arc::new(file),
            size,
            pos: start,
            end,
            whole: false,
            stats,
            early: None,
            done: false,
        },
        range,
    ))
}

pub(super) async fn from_fill(
    stats: Arc<Stats>,
    fill: Arc<Fill>,
    range: Option<RangeSpec>,
) -> Result<BlobRead> {
    let digest = fill.digest;
    // Say where this reader will start before the size is even known, so the first
    // workers go there.
    let early_pos = match range {
        None => Some(0),
        Some(RangeSpec::FromTo(a, _)) | Some(RangeSpec::From(a)) => Some(a),
        Some(RangeSpec::Suffix(_)) => None,
    };
    let early = early_pos.map(|p| fill.demand(p));
    let info = fill.info().await.map_err(|f| Error::fill(digest, f))?;
    let (range_out, start, end) = resolve(digest, info.size, range)?;
    Ok(make(
        Reader {
            digest,
            whole: range_out.is_none(),
            source: Source::Fill(fill),
            file: info.file,
            size: info.size,
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
    let body = stream::unfold(reader, |mut r| async move {
        let item = r.next().await?;
        Some((item, r))
    })
    .boxed();
    BlobRead {
        digest,
        size,
        range,
        body,
    }
}

impl Reader {
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
                .map_err(|f| Error::fill(self.digest, f))?;
            self.early = None;
            limit = limit.min(landed_to);
            if self.whole && limit == self.size {
                fill.verified()
                    .await
                    .map_err(|f| Error::fill(self.digest, f))?;
            }
        }
        let n = (limit - self.pos) as usize;
        let at = self.pos;
        let file = self.file.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(n);
            file.read_exact_at(&mut buf, at).map(|_| buf.freeze())
        })
        .await
        .map_err(|e| Error::Read {
            digest: self.digest,
            source: std::io::Error::other(e),
        })?
        .map_err(|source| Error::Read {
            digest: self.digest,
            source,
        })?;
        self.pos += n as u64;
        Stats::add(&self.stats.served_bytes, n as u64);
        Ok(bytes)
    }
}
