//! HTTP `Range: bytes=...` parsing and resolution against a blob size (RFC 9110 §14).

use std::fmt;

/// A single byte-range request as sent by the client, before the size is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=a-b`, both inclusive.
    FromTo(u64, u64),
    /// `bytes=a-`
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// A resolved, non-empty, half-open range `[start, end)` inside a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    #[error("range header {0:?} is malformed")]
    Malformed(String),
}

impl RangeSpec {
    /// Parses a `Range` header value. `Ok(None)` means the header is to be ignored and the
    /// whole blob served, as RFC 9110 allows: other units, and multi-range requests (which
    /// no registry client sends).
    pub fn parse(header: &str) -> Result<Option<RangeSpec>, RangeError> {
        let malformed = || RangeError::Malformed(header.to_owned());
        let (unit, set) = header.trim().split_once('=').ok_or_else(malformed)?;
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return Ok(None);
        }
        if set.contains(',') {
            return Ok(None);
        }
        let (first, last) = set.trim().split_once('-').ok_or_else(malformed)?;
        let num = |s: &str| -> Result<u64, RangeError> {
            // Digits only: u64::from_str would accept a leading '+'.
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            s.parse().map_err(|_| malformed())
        };
        let (first, last) = (first.trim(), last.trim());
        match (first.is_empty(), last.is_empty()) {
            (true, true) => Err(malformed()),
            (true, false) => Ok(Some(RangeSpec::Suffix(num(last)?))),
            (false, true) => Ok(Some(RangeSpec::From(num(first)?))),
            (false, false) => {
                let (a, b) = (num(first)?, num(last)?);
                if b < a {
                    return Err(malformed());
                }
                Ok(Some(RangeSpec::FromTo(a, b)))
            }
        }
    }

    /// The bytes this spec selects in a blob of `size` bytes, or `None` when it selects
    /// none (answered with 416).
    pub fn resolve(self, size: u64) -> Option<ByteRange> {
        let (start, end) = match self {
            RangeSpec::FromTo(a, b) => (a, b.saturating_add(1).min(size)),
            RangeSpec::From(a) => (a, size),
            RangeSpec::Suffix(n) => (size.saturating_sub(n), size),
        };
        (start < end).then_some(ByteRange { start, end })
    }
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The `Content-Range` value for this range of a blob of `size` bytes.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end - 1, size)
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        use RangeSpec::*;
        let ok = [
            ("bytes=0-0", Some(FromTo(0, 0))),
            ("bytes=0-99", Some(FromTo(0, 99))),
            ("Bytes = 5 - 9", Some(FromTo(5, 9))),
            ("bytes=100-", Some(From(100))),
            ("bytes=-500", Some(Suffix(500))),
            ("bytes=0-1,5-9", None),
            ("items=0-5", None),
        ];
        for (h, want) in ok {
            assert_eq!(RangeSpec::parse(h), Ok(want), "{h}");
        }
        for bad in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=5-1",
            "bytes=1--2",
            "bytes=99999999999999999999-",
            "0-5",
        ] {
            assert!(RangeSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolve_table() {
        use RangeSpec::*;
        let r = |s, e| Some(ByteRange { start: s, end: e });
        let cases = [
            (FromTo(0, 0), 10, r(0, 1)),
            (FromTo(0, 9), 10, r(0, 10)),
            (FromTo(5, 100), 10, r(5, 10)),
            (FromTo(10, 12), 10, None),
            (From(9), 10, r(9, 10)),
            (From(10), 10, None),
            (Suffix(3), 10, r(7, 10)),
            (Suffix(30), 10, r(0, 10)),
            (Suffix(0), 10, None),
            (From(0), 0, None),
            (FromTo(0, u64::MAX), 10, r(0, 10)),
        ];
        for (spec, size, want) in cases {
            assert_eq!(spec.resolve(size), want, "{spec:?} of {size}");
        }
        assert_eq!(
            ByteRange { start: 0, end: 10 }.content_range(10),
            "bytes 0-9/10"
        );
    }
}
