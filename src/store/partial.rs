//! Partial blobs that survive a restart: `tmp/<hex>.partial` holds the bytes of a fill in
//! progress, and `tmp/<hex>.journal` says which ranges of it had landed, each with the
//! SHA-1 of its bytes.
//!
//! The journal is append-only and never fsynced: a record is written after its bytes, and
//! a process that dies keeps both in the page cache. After a power cut either may be
//! missing or stale, so a record is only a claim: whoever resumes re-hashes each range and
//! keeps those that match. A torn last record is ignored.
//!
//! Format (little endian): a 32-byte header `MAGIC`, blob size (u64), zeros (u64); then
//! records of `RECORD` bytes: start (u64), end (u64), SHA-1 of `[start, end)` (20 bytes).
//!
//! Must not: trust a record it has not been asked to check (that is the fill's job).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"shoal-partial-v1";
const HEADER: usize = 32;
const RECORD: usize = 36;

/// A range a previous run said had landed, and the SHA-1 its bytes had then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub start: u64,
    pub end: u64,
    pub sha1: [u8; 20],
}

/// The journal of one partial, open for appending.
pub struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
}

fn header(size: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..16].copy_from_slice(MAGIC);
    h[16..24].copy_from_slice(&size.to_le_bytes());
    h
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The blob size a journal was written for, if its header is sound.
pub fn size_of(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= HEADER && &bytes[..16] == MAGIC).then(|| u64_at(bytes, 16))
}

/// The records of a journal for a blob of `size` bytes. A header for another size, or no
/// header at all, gives none; records outside the blob and a torn tail are skipped.
pub fn decode(bytes: &[u8], size: u64) -> Vec<Record> {
    if size_of(bytes) != Some(size) {
        return Vec::new();
    }
    bytes[HEADER..]
        .chunks_exact(RECORD)
        .filter_map(|r| {
            let (start, end) = (u64_at(r, 0), u64_at(r, 8));
            let mut sha1 = [0u8; 20];
            sha1.copy_from_slice(&r[16..36]);
            (start < end && end <= size).then_some(Record { start, end, sha1 })
        })
        .collect()
}

pub fn encode(r: &Record) -> [u8; RECORD] {
    let mut b = [0u8; RECORD];
    b[..8].copy_from_slice(&r.start.to_le_bytes());
    b[8..16].copy_from_slice(&r.end.to_le_bytes());
    b[16..].copy_from_slice(&r.sha1);
    b
}

impl Journal {
    /// Starts a fresh journal for a blob of `size` bytes (replacing any old one).
    pub fn create(path: &Path, size: u64) -> io::Result<Journal> {
        let mut file = File::create(path)?;
        file.write_all(&header(size))?;
        Ok(Journal {
            file,
            path: path.to_owned(),
            len: HEADER as u64,
        })
    }

    /// Opens an existing journal to append to, with the records it holds for `size`.
    /// `None` when there is none, or it was written for another size.
    pub fn resume(path: &Path, size: u64) -> io::Result<Option<(Journal, Vec<Record>)>> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => f.read_to_end(&mut bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if size_of(&bytes) != Some(size) {
            return Ok(None);
        }
        let records = decode(&bytes, size);
        // Appends go after the last whole record, over a torn one.
        let len = (HEADER + (bytes.len() - HEADER) / RECORD * RECORD) as u64;
        let file = File::options().write(true).open(path)?;
        file.set_len(len)?;
        Ok(Some((
            Journal {
                file,
                path: path.to_owned(),
                len,
            },
            records,
        )))
    }

    pub fn append(&mut self, r: &Record) -> io::Result<()> {
        self.file.write_all_at(&encode(r), self.len)?;
        self.len += RECORD as u64;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes a file that may not exist.
pub fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(start: u64, end: u64, b: u8) -> Record {
        Record {
            start,
            end,
            sha1: [b; 20],
        }
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.journal");
        let mut j = Journal::create(&path, 1000).unwrap();
        j.append(&rec(0, 100, 1)).unwrap();
        j.append(&rec(500, 1000, 2)).unwrap();
        drop(j);
        // A torn third record: half written.
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&encode(&rec(100, 200, 3))[..20]);
        fs::write(&path, &bytes).unwrap();

        let (mut j, records) = Journal::resume(&path, 1000).unwrap().unwrap();
        assert_eq!(records, vec![rec(0, 100, 1), rec(500, 1000, 2)]);
        // Appending after a torn record overwrites it.
        j.append(&rec(100, 200, 3)).unwrap();
        drop(j);
        let (_, records) = Journal::resume(&path, 1000).unwrap().unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2], rec(100, 200, 3));
    }

    #[test]
    fn bad_journals_give_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.journal");
        assert!(Journal::resume(&path, 10).unwrap().is_none(), "missing");
        Journal::create(&path, 10).unwrap();
        assert!(
            Journal::resume(&path, 11).unwrap().is_none(),
            "another size"
        );
        fs::write(&path, b"garbage that is long enough to be a header...").unwrap();
        assert!(Journal::resume(&path, 10).unwrap().is_none(), "no magic");
        // Records that point outside the blob, or are empty, are skipped.
        let mut bytes = header(10).to_vec();
        bytes.extend_from_slice(&encode(&rec(5, 20, 1)));
        bytes.extend_from_slice(&encode(&rec(5, 5, 1)));
        bytes.extend_from_slice(&encode(&rec(0, 10, 1)));
        assert_eq!(decode(&bytes, 10), vec![rec(0, 10, 1)]);
        assert_eq!(decode(&bytes[..10], 10), vec![]);
    }
}
