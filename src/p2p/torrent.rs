//! Deterministic v1 torrents: the same bytes give the same infohash on every node, so any
//! node holding a blob can seed it and any node can find the swarm from the digest alone.
//! The rule (also in docs/TORRENTS.md; changing it splits every swarm):
//!
//! - one file, v1 info dict with exactly the keys `length`, `name`, `piece length`,
//!   `pieces`, bencoded with sorted keys;
//! - `name` = `sha256-<64 lowercase hex>` of the blob;
//! - `piece length` = max(1 MiB, the next power of two ≥ ceil(size / 2000)), at most 16 MiB;
//! - `pieces` = SHA-1 of each piece, the last piece possibly short, none for an empty blob.
//!
//! Pure: no I/O. `PieceHasher` takes the blob's bytes in order (the fill feeds it as the
//! verified prefix grows), so a blob is never read twice to make its torrent.

use sha1::{Digest as _, Sha1};

use crate::oci::Digest;
use crate::store::TorrentRow;

const MIB: u64 = 1 << 20;
const MIN_PIECE: u64 = MIB;
const MAX_PIECE: u64 = 16 * MIB;
/// Aim for at most this many pieces (until the piece length hits its cap).
const TARGET_PIECES: u64 = 2000;

/// The piece length for a blob of `size` bytes.
pub fn piece_length(size: u64) -> u64 {
    size.div_ceil(TARGET_PIECES)
        .checked_next_power_of_two()
        .unwrap_or(MAX_PIECE)
        .clamp(MIN_PIECE, MAX_PIECE)
}

/// Everything that defines a blob's torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentInfo {
    pub digest: Digest,
    pub size: u64,
    pub piece_length: u64,
    /// SHA-1 of each piece, 20 bytes each.
    pub pieces: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot encode the torrent of {digest}: {reason}")]
    Encode { digest: Digest, reason: String },
    #[error("torrent of {digest} has {got} piece hashes, the rule gives {want}")]
    PieceCount {
        digest: Digest,
        got: usize,
        want: u64,
    },
    #[error("torrent offered for {digest} is invalid: {reason}")]
    Invalid { digest: Digest, reason: String },
}

impl TorrentInfo {
    /// Checks that the piece hashes fit the rule for this size.
    pub fn check(&self) -> Result<(), Error> {
        // The rule's piece length is never 0, so a peer's 0 fails here, before dividing.
        let rule = piece_length(self.size);
        let want = self.size.div_ceil(rule);
        let got = self.pieces.len() / 20;
        if self.piece_length != rule || !self.pieces.len().is_multiple_of(20) || got as u64 != want
        {
            return Err(Error::PieceCount {
                digest: self.digest,
                got,
                want,
            });
        }
        Ok(())
    }

    pub fn name(&self) -> String {
        format!("sha256-{}", self.digest.hex())
    }

    /// The index row for this torrent; none for an empty blob (nothing to share).
    pub fn into_row(self) -> Option<TorrentRow> {
        if self.size == 0 {
            return None;
        }
        match self.infohash() {
            Ok(infohash) => Some(TorrentRow {
                digest: self.digest,
                infohash,
                piece_length: self.piece_length,
                pieces: self.pieces,
            }),
            Err(e) => {
                // Only an encoder failure; the blob is still good, it just won't be seeded.
                tracing::error!(error = %e, "cannot build the blob's torrent");
                None
            }
        }
    }

    /// The bencoded info dict.
    pub fn info_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut enc = bendy::encoding::Encoder::new();
        let name = self.name();
        enc.emit_dict(|mut d| {
            d.emit_pair(b"length", self.size)?;
            d.emit_pair(b"name", name.as_str())?;
            d.emit_pair(b"piece length", self.piece_length)?;
            d.emit_pair_with(b"pieces", |e| e.emit_bytes(&self.pieces))
        })
        .and_then(|()| enc.get_output())
        .map_err(|e| Error::Encode {
            digest: self.digest,
            reason: e.to_string(),
        })
    }

    /// SHA-1 of the bencoded info dict: the torrent's identity.
    pub fn infohash(&self) -> Result<[u8; 20], Error> {
        Ok(Sha1::digest(self.info_bytes()?).into())
    }

    /// A .torrent file announcing to `trackers` (the first is the primary).
    pub fn torrent_file(&self, trackers: &[String]) -> Result<Vec<u8>, Error> {
        let info = self.info_bytes()?;
        // The outer dict is written directly, keys in sorted order, so that the info dict
        // inside is byte for byte the one the infohash was taken of.
        fn string(out: &mut Vec<u8>, s: &[u8]) {
            out.extend_from_slice(s.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(s);
        }
        let mut out = Vec::with_capacity(info.len() + 256);
        out.push(b'd');
        if let Some(first) = trackers.first() {
            string(&mut out, b"announce");
            string(&mut out, first.as_bytes());
            string(&mut out, b"announce-list");
            out.push(b'l');
            for t in trackers {
                out.push(b'l');
                string(&mut out, t.as_bytes());
                out.push(b'e');
            }
            out.push(b'e');
        }
        string(&mut out, b"created by");
        string(
            &mut out,
            concat!("shoal/", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        string(&mut out, b"info");
        out.extend_from_slice(&info);
        out.push(b'e');
        Ok(out)
    }
}

/// Reads a .torrent that a peer offers for `digest` and checks it against the rule: the
/// info dict must decode to exactly what shoal would build for that digest and size, and
/// hash to `infohash`. (Its piece hashes can only be checked against the data, which
/// librqbit does piece by piece and the fill does by sha256 at the end.)
pub fn parse_torrent_file(
    bytes: &[u8],
    digest: Digest,
    infohash: [u8; 20],
) -> Result<TorrentInfo, Error> {
    let t = read_torrent_file(bytes, digest)?;
    if t.infohash()? != infohash {
        return Err(Error::Invalid {
            digest,
            reason: "its infohash differs from the peer's catalog".to_owned(),
        });
    }
    Ok(t)
}

/// The info dict of a .torrent for `digest`, checked against the rule but not yet against
/// an infohash.
pub fn read_torrent_file(bytes: &[u8], digest: Digest) -> Result<TorrentInfo, Error> {
    use bendy::decoding::{Decoder, Object};
    let invalid = |reason: &str| Error::Invalid {
        digest,
        reason: reason.to_owned(),
    };
    let mut dec = Decoder::new(bytes).with_max_depth(4);
    let Ok(Some(Object::Dict(mut top))) = dec.next_object() else {
        return Err(invalid("not a bencoded dict"));
    };
    let mut info: Option<(u64, String, u64, Vec<u8>)> = None;
    while let Some((key, value)) = top.next_pair().map_err(|e| invalid(&e.to_string()))? {
        if key != b"info" {
            continue;
        }
        let Object::Dict(mut d) = value else {
            return Err(invalid("info is not a dict"));
        };
        let (mut length, mut name, mut piece_length, mut pieces) = (None, None, None, None);
        while let Some((k, v)) = d.next_pair().map_err(|e| invalid(&e.to_string()))? {
            match (k, v) {
                (b"length", Object::Integer(n)) => length = n.parse::<u64>().ok(),
                (b"name", Object::Bytes(b)) => name = String::from_utf8(b.to_vec()).ok(),
                (b"piece length", Object::Integer(n)) => piece_length = n.parse::<u64>().ok(),
                (b"pieces", Object::Bytes(b)) => pieces = Some(b.to_vec()),
                _ => return Err(invalid("unexpected key in the info dict")),
            }
        }
        info = match (length, name, piece_length, pieces) {
            (Some(l), Some(n), Some(p), Some(h)) => Some((l, n, p, h)),
            _ => return Err(invalid("info dict is missing a key")),
        };
    }
    let (size, name, piece_length, pieces) = info.ok_or_else(|| invalid("no info dict"))?;
    let t = TorrentInfo {
        digest,
        size,
        piece_length,
        pieces,
    };
    if name != t.name() {
        return Err(invalid("its name is not the digest"));
    }
    t.check()?;
    Ok(t)
}

/// SHA-1 of consecutive pieces, fed the blob's bytes in order.
pub struct PieceHasher {
    piece_length: u64,
    current: Sha1,
    in_piece: u64,
    pieces: Vec<u8>,
}

impl PieceHasher {
    pub fn new(size: u64) -> PieceHasher {
        let piece_length = piece_length(size);
        PieceHasher {
            piece_length,
            current: Sha1::new(),
            in_piece: 0,
            pieces: Vec::with_capacity((size.div_ceil(piece_length) * 20) as usize),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.piece_length - self.in_piece) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.current.update(now);
            self.in_piece += now.len() as u64;
            if self.in_piece == self.piece_length {
                let done = std::mem::take(&mut self.current);
                self.pieces.extend_from_slice(&done.finalize());
                self.in_piece = 0;
            }
            data = rest;
        }
    }

    /// The torrent of the bytes fed, which must be the whole blob named `digest`.
    pub fn finish(mut self, digest: Digest, size: u64) -> TorrentInfo {
        if self.in_piece > 0 {
            self.pieces.extend_from_slice(&self.current.finalize());
        }
        TorrentInfo {
            digest,
            size,
            piece_length: self.piece_length,
            pieces: self.pieces,
        }
    }
}

#[cfg(test)]
mod tests;
