//! Is a complete blob still what was committed? Checked each time a reader opens it, so
//! that a file deleted, cut short or written to under the data dir is found by the next
//! request for it, with no restart: the reader's lease reports the damage and the blob is
//! dropped, and the caller fetches it again as on a miss.
//!
//! The check is cheap when nothing changed: the open file's size, inode and ctime against
//! those recorded when its bytes were last known good (a `Stamp`). Any write, truncation
//! or replacement changes the ctime, and no user can set it back; then the file is hashed
//! before a byte of it is served (once, however many readers ask at the same time). Bits
//! that rot on the medium without a write leave the stamp alone: those are for a scrub.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use super::{blob_path, index, lock, now_ms, BlobLease};
use crate::oci::Digest;

/// What a blob file looked like on disk: its inode and its ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl Stamp {
    pub(super) fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            ino: m.ino(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        }
    }

    /// `"<inode>:<seconds>.<nanoseconds>"`, as the index keeps it.
    pub(super) fn encode(&self) -> String {
        format!("{}:{}.{}", self.ino, self.ctime, self.ctime_nsec)
    }

    pub(super) fn decode(s: &str) -> Option<Stamp> {
        let (ino, ctime) = s.split_once(':')?;
        let (secs, nsecs) = ctime.split_once('.')?;
        Some(Stamp {
            ino: ino.parse().ok()?,
            ctime: secs.parse().ok()?,
            ctime_nsec: nsecs.parse().ok()?,
        })
    }
}

/// Why a held blob can no longer be served.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("its file is missing")]
    Missing,
    #[error("its file is {found} bytes, not {expected}")]
    Size { found: u64, expected: u64 },
    #[error("its file no longer hashes to its digest")]
    Corrupt,
    #[error("its file cannot be read")]
    Unreadable(#[source] io::Error),
}

impl BlobLease {
    /// Opens the blob's file positioned at `pos`, after checking it is still what was
    /// committed (see the module comment). Blocking: call off the runtime. `Err` means
    /// the blob is damaged; the caller reports it with `drop_damaged`.
    pub fn open_checked(&self, pos: u64) -> Result<File, Damage> {
        let path = blob_path(&self.inner.root, &self.digest);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Damage::Missing),
            Err(e) => return Err(Damage::Unreadable(e)),
        };
        let m = f.metadata().map_err(Damage::Unreadable)?;
        if m.len() != self.size {
            return Err(Damage::Size {
                found: m.len(),
                expected: self.size,
            });
        }
        let now = Stamp::of(&m);
        if self.stamp() != Some(now) {
            self.verify(&f, now)?;
        }
        f.seek(SeekFrom::Start(pos)).map_err(Damage::Unreadable)?;
        Ok(f)
    }

    /// The stamp recorded for this copy, `None` if it was dropped meanwhile.
    pub(super) fn stamp(&self) -> Option<Stamp> {
        let blobs = lock(&self.inner.blobs);
        blobs
            .map
            .get(&self.digest)
            .filter(|m| m.generation == self.generation)
            .and_then(|m| m.stamp)
    }

    /// Hashes `f` (whose stamp is `now`) unless another reader just did, and records
    /// `now` as good if it matches.
    fn verify(&self, f: &File, now: Stamp) -> Result<(), Damage> {
        let gate = self.gate();
        let _one_at_a_time = lock(&gate);
        if self.stamp() == Some(now) {
            return Ok(());
        }
        tracing::info!(digest = %self.digest, size = self.size, "blob file changed on disk since its bytes were checked; hashing it before serving it");
        self.hash_and_record(f, now, |_| true).map(|_| ())
    }

    /// Hashes the whole file now, whatever its stamp says (the scrub, `shoal verify`):
    /// finds bits that rotted without a write. `pace` is called after each chunk hashed
    /// with its length (the scrub sleeps there to keep to its rate); when it returns
    /// false the check stops, and `Ok(false)` says it did not finish. Blocking.
    pub fn check_bytes(&self, pace: impl FnMut(usize) -> bool) -> Result<bool, Damage> {
        let path = blob_path(&self.inner.root, &self.digest);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Damage::Missing),
            Err(e) => return Err(Damage::Unreadable(e)),
        };
        let m = f.metadata().map_err(Damage::Unreadable)?;
        if m.len() != self.size {
            return Err(Damage::Size {
                found: m.len(),
                expected: self.size,
            });
        }
        let gate = self.gate();
        let _one_at_a_time = lock(&gate);
        self.hash_and_record(&f, Stamp::of(&m), pace)
    }

    /// The lock that keeps hash checks of this blob one at a time.
    fn gate(&self) -> Arc<Mutex<()>> {
        lock(&self.inner.checks)
            .entry(self.digest)
            .or_insert_with(|| Arc::new(Mutex::new(())))
            .clone()
    }

    /// Hashes `f` (`pace` as for `check_bytes`); if it matches, records `now` as its good
    /// stamp and now as its last check.
    fn hash_and_record(
        &self,
        mut f: &File,
        now: Stamp,
        mut pace: impl FnMut(usize) -> bool,
    ) -> Result<bool, Damage> {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 4 << 20];
        loop {
            let n = f.read(&mut buf).map_err(Damage::Unreadable)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            if !pace(n) {
                return Ok(false);
            }
        }
        if Digest::from_bytes(h.finalize().into()) != self.digest {
            return Err(Damage::Corrupt);
        }
        let at = now_ms();
        {
            let mut blobs = lock(&self.inner.blobs);
            if let Some(m) = blobs.map.get_mut(&self.digest) {
                if m.generation == self.generation {
                    m.stamp = Some(now);
                    m.verified_ms = at;
                }
            }
        }
        let db = lock(&self.inner.db);
        if let Err(e) = index::set_verified(&db, &self.digest, &now.encode(), at) {
            tracing::warn!(digest = %self.digest, error = %e, "cannot record a blob's check");
        }
        Ok(true)
    }

    /// Drops this copy of the blob from the store because of `damage`: from the index at
    /// once (so the next request is a miss and fetches it again), and its file. Readers
    /// that have it open keep their handle. Returns false when it was already dropped (or
    /// replaced by a new copy), so each damage is counted once. Blocking.
    pub fn drop_damaged(&self, damage: &Damage) -> bool {
        {
            let mut blobs = lock(&self.inner.blobs);
            match blobs.map.get(&self.digest) {
                Some(m) if m.generation == self.generation => {}
                _ => return false,
            }
            if let Some(m) = blobs.map.remove(&self.digest) {
                blobs.total -= m.size;
            }
        }
        tracing::warn!(digest = %self.digest, %damage, "cached blob is damaged; dropped it, the next request fetches it again");
        let path = blob_path(&self.inner.root, &self.digest);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a damaged blob file");
            }
        }
        let repo = {
            let mut db = lock(&self.inner.db);
            // Read before the row goes: the repository is what fetching it again needs.
            let repo = index::repo_of(&db, &self.digest).ok().flatten();
            if let Err(e) = index::delete_blobs(&mut db, &[self.digest]) {
                tracing::warn!(digest = %self.digest, error = %e, "cannot drop a damaged blob from the index");
            }
            repo
        };
        // No receiver: nobody to tell.
        let _ = self.inner.dropped.send(self.digest);
        let _ = self.inner.damaged.send((self.digest, repo));
        true
    }
}
