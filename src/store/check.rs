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
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::partial::{Journal, Record};
use super::{blob_path, index, journal_path, lock, now_ms, partial_path, BlobLease, TorrentRow};
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

    /// Whether this copy is still the one the store holds: not dropped as damaged, nor
    /// replaced. A reader asks before each chunk it sends.
    pub fn is_held(&self) -> bool {
        lock(&self.inner.blobs)
            .map
            .get(&self.digest)
            .is_some_and(|m| m.generation == self.generation)
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
        // Read before the rows go: the repository is what fetching it again needs, and the
        // torrent's piece hashes say which of its bytes are still sound.
        let (repo, torrent) = {
            let db = lock(&self.inner.db);
            let repo = index::repo_of(&db, &self.digest).ok().flatten();
            (repo, index::torrent(&db, &self.digest).ok().flatten())
        };
        let path = blob_path(&self.inner.root, &self.digest);
        let kept = match (damage, torrent) {
            (Damage::Corrupt | Damage::Size { .. }, Some(t)) => match self.salvage(&path, &t) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(digest = %self.digest, error = %e, "cannot keep a damaged blob's sound pieces");
                    false
                }
            },
            _ => false,
        };
        if kept {
            tracing::warn!(digest = %self.digest, %damage, "cached blob is damaged; dropped it, the next fetch keeps its sound pieces and fetches the rest");
        } else {
            tracing::warn!(digest = %self.digest, %damage, "cached blob is damaged; dropped it, the next request fetches it again");
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a damaged blob file");
                }
            }
        }
        {
            let mut db = lock(&self.inner.db);
            if let Err(e) = index::delete_blobs(&mut db, &[self.digest]) {
                tracing::warn!(digest = %self.digest, error = %e, "cannot drop a damaged blob from the index");
            }
        }
        // No receiver: nobody to tell.
        let _ = self.inner.dropped.send(self.digest);
        let _ = self.inner.damaged.send((self.digest, repo));
        true
    }

    /// Keeps what is sound of a damaged blob for the fill that mends it: its file becomes
    /// that fill's partial, with a journal that claims every piece with the torrent's own
    /// SHA-1. A fill re-hashes every claim before trusting it (as after a crash), so it
    /// keeps the pieces that still match and fetches only the others; the whole blob is
    /// then verified by SHA-256 and committed as on any fill. Blocking.
    ///
    /// The rename never replaces a partial that is there already (a fill started
    /// meanwhile keeps its own). Readers that still have the file open are cut at their
    /// next chunk (`is_held`), so none sends a byte from it past this point.
    fn salvage(&self, from: &Path, t: &TorrentRow) -> io::Result<()> {
        // A file linked from elsewhere (`shoal import`) is not shoal's to write into.
        if fs::metadata(from)?.nlink() > 1 {
            return Err(io::Error::other("the file has other links"));
        }
        let partial = partial_path(&self.inner.root, &self.digest);
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            from,
            rustix::fs::CWD,
            &partial,
            rustix::fs::RenameFlags::NOREPLACE,
        )?;
        fs::File::options()
            .write(true)
            .open(&partial)?
            .set_len(self.size)?;
        let mut journal =
            Journal::create(&journal_path(&self.inner.root, &self.digest), self.size)?;
        let pl = t.piece_length.max(1);
        for (i, sha1) in t.pieces.chunks_exact(20).enumerate() {
            let start = i as u64 * pl;
            let end = (start + pl).min(self.size);
            if start < end {
                let mut h = [0u8; 20];
                h.copy_from_slice(sha1);
                journal.append(&Record {
                    start,
                    end,
                    sha1: h,
                })?;
            }
        }
        Ok(())
    }
}
