//! A sha256 digest as a typed value: parsed once at the edge, shown as lowercase hex.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The sha256 of some bytes (an image's content address).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest a running hasher has reached.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// Text that is not a sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sha256 digest (expected 64 hex digits, optionally prefixed by sha256:)")]
pub struct BadDigest(pub String);

impl FromStr for Sha256Digest {
    type Err = BadDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let text = text.strip_prefix("sha256:").unwrap_or(text);
        let mut bytes = [0u8; 32];
        if text.len() != 64 {
            return Err(BadDigest(s.to_string()));
        }
        hex::decode_to_slice(text, &mut bytes).map_err(|_| BadDigest(s.to_string()))?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let digest = Sha256Digest::of(b"abc");
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(digest.to_string(), hex);
        assert_eq!(hex.parse::<Sha256Digest>(), Ok(digest));
        assert_eq!(
            format!("sha256:{}", hex.to_uppercase()).parse::<Sha256Digest>(),
            Ok(digest)
        );
        for bad in ["", "abc", &hex[1..], &format!("{}g", &hex[1..])] {
            assert!(bad.parse::<Sha256Digest>().is_err(), "{bad:?} parsed");
        }
    }
}
