//! `sha256:<64 lowercase hex>` content digests, the only algorithm shoal stores.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A validated sha256 digest. Cheap to clone (the hex form is kept inline).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    bytes: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form sha256:<64 hex digits>")]
    Malformed(String),
    #[error("digest algorithm {0:?} is not supported (only sha256)")]
    UnsupportedAlgorithm(String),
}

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest {
            bytes: Sha256::digest(data).into(),
        }
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest { bytes }
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The 64 lowercase hex digits, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.bytes)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algo, hex_part)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_owned()));
        };
        if algo != "sha256" {
            // Refuse other algorithms by name so the client learns why, but only when the
            // algorithm itself looks like one (OCI: [a-z0-9]+([+._-][a-z0-9]+)*).
            let plausible = !algo.is_empty()
                && algo
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+._-".contains(&c));
            return Err(if plausible {
                DigestError::UnsupportedAlgorithm(algo.to_owned())
            } else {
                DigestError::Malformed(s.to_owned())
            });
        }
        // Lowercase only: OCI requires it, and it keeps one file name per digest.
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(DigestError::Malformed(s.to_owned()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| DigestError::Malformed(s.to_owned()))?;
        Ok(Digest { bytes })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parsed with the same validation as everywhere else: data from peers is input too.
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = format!("sha256:{HEX}").parse().unwrap();
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
        assert_eq!(d.hex(), HEX);
        assert_eq!(d, Digest::of(b""));
    }

    #[test]
    fn refuses_bad_input() {
        let cases = [
            ("", false),
            ("sha256", false),
            ("sha256:", false),
            ("sha256:abc", false),
            (&format!("sha256:{}", HEX.to_uppercase()), false),
            (&format!("sha256:{HEX}0"), false),
            (&format!("sha256:{}", &HEX[..63]), false),
            (&format!("sha256:{}g", &HEX[..63]), false),
            (&format!("sha256:..%2f{}", &HEX[..58]), false),
            (&format!("sha512:{HEX}{HEX}"), true),
            (&format!("md5:{HEX}"), true),
            (&format!("SHA256:{HEX}"), false),
            (&format!("../:{HEX}"), false),
        ];
        for (input, unsupported) in cases {
            let err = input.parse::<Digest>().unwrap_err();
            assert_eq!(
                matches!(err, DigestError::UnsupportedAlgorithm(_)),
                unsupported,
                "{input}: {err}"
            );
        }
    }
}
