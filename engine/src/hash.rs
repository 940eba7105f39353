//! Hashcodes: a digest together with the algorithm that made it.

use crate::codec::{put_bsuint, Reader};
use crate::error::{Error, Result};
use std::fmt;

/// Hash algorithms, with cs.vt's numbering (`hashenum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlg {
    /// SHA-1, hashenum 0, 20-byte digest (legacy).
    Sha1,
    /// SHA-256, hashenum 1.
    Sha256,
    /// BLAKE3, hashenum 2: the default.
    Blake3,
}

impl HashAlg {
    /// The default algorithm for new stores.
    pub const DEFAULT: HashAlg = HashAlg::Blake3;

    /// cs.vt's numeric code.
    pub fn hashenum(self) -> u64 {
        match self {
            HashAlg::Sha1 => 0,
            HashAlg::Sha256 => 1,
            HashAlg::Blake3 => 2,
        }
    }

    /// The algorithm with numeric code `n`; fails for unknown codes.
    pub fn from_hashenum(n: u64) -> Result<Self> {
        match n {
            0 => Ok(HashAlg::Sha1),
            1 => Ok(HashAlg::Sha256),
            2 => Ok(HashAlg::Blake3),
            _ => Err(Error::bad(format!("unknown hashenum {n}"))),
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            _ => 32,
        }
    }

    /// The name used in transcriptions (`sha1`, `sha256`, `blake3`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Blake3 => "blake3",
        }
    }

    /// Parses a name as written by [`HashAlg::name`].
    pub fn from_name(s: &str) -> Result<Self> {
        match s {
            "sha1" => Ok(HashAlg::Sha1),
            "sha256" => Ok(HashAlg::Sha256),
            "blake3" => Ok(HashAlg::Blake3),
            _ => Err(Error::bad(format!("unknown hash algorithm {s:?}"))),
        }
    }

    /// Hashes `data` with this algorithm.
    pub fn hash(self, data: &[u8]) -> HashCode {
        let mut d = [0u8; 32];
        match self {
            HashAlg::Blake3 => d.copy_from_slice(blake3::hash(data).as_bytes()),
            HashAlg::Sha256 => {
                use sha2::Digest;
                d.copy_from_slice(&sha2::Sha256::digest(data));
            }
            HashAlg::Sha1 => {
                use sha1::Digest;
                d[..20].copy_from_slice(&sha1::Sha1::digest(data));
            }
        }
        HashCode {
            alg: self,
            digest: d,
        }
    }
}

/// A block's hashcode: algorithm plus digest. Ordered by digest bytes, as in cs.vt.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashCode {
    alg: HashAlg,
    /// Digest bytes; for SHA-1 only the first 20 are used, the rest are zero.
    digest: [u8; 32],
}

impl HashCode {
    /// Builds a hashcode from raw digest bytes; fails if the length is wrong.
    pub fn from_digest(alg: HashAlg, digest: &[u8]) -> Result<Self> {
        if digest.len() != alg.digest_len() {
            return Err(Error::bad(format!(
                "{} digest must be {} bytes, got {}",
                alg.name(),
                alg.digest_len(),
                digest.len()
            )));
        }
        let mut d = [0u8; 32];
        d[..digest.len()].copy_from_slice(digest);
        Ok(HashCode { alg, digest: d })
    }

    /// The algorithm.
    pub fn alg(&self) -> HashAlg {
        self.alg
    }

    /// The raw digest.
    pub fn digest(&self) -> &[u8] {
        &self.digest[..self.alg.digest_len()]
    }

    /// True when `data` hashes to this hashcode.
    pub fn matches(&self, data: &[u8]) -> bool {
        self.alg.hash(data) == *self
    }

    /// Lowercase hex of the digest.
    pub fn hex(&self) -> String {
        hex(self.digest())
    }

    /// Appends the binary hashcode record: BSUInt hashenum + digest.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_bsuint(out, self.alg.hashenum());
        out.extend_from_slice(self.digest());
    }

    /// The binary hashcode record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(33);
        self.encode_into(&mut v);
        v
    }

    /// Decodes a binary hashcode record.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let alg = HashAlg::from_hashenum(r.bsuint()?)?;
        HashCode::from_digest(alg, r.take(alg.digest_len())?)
    }

    /// Parses `alg:hex` (the inside of `H{...}`).
    pub fn parse_inner(s: &str) -> Result<Self> {
        let (name, hx) = s
            .split_once(':')
            .ok_or_else(|| Error::bad(format!("hashcode {s:?} lacks 'alg:'")))?;
        let alg = HashAlg::from_name(name)?;
        HashCode::from_digest(alg, &unhex(hx)?)
    }

    /// Parses the transcription `H{alg:hex}`.
    pub fn parse(s: &str) -> Result<Self> {
        let inner = s
            .strip_prefix("H{")
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| Error::bad(format!("hashcode {s:?} is not H{{alg:hex}}")))?;
        Self::parse_inner(inner)
    }
}

impl PartialOrd for HashCode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HashCode {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.digest()
            .cmp(other.digest())
            .then(self.alg.cmp(&other.alg))
    }
}

impl fmt::Display for HashCode {
    /// The transcription `H{alg:hex}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "H{{{}:{}}}", self.alg.name(), self.hex())
    }
}

impl fmt::Debug for HashCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Lowercase hex of bytes.
pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

/// Decodes hex (either case); fails on odd length or a non-hex character.
pub fn unhex(s: &str) -> Result<Vec<u8>> {
    fn nib(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(Error::bad(format!("hex {s:?} has odd length")));
    }
    b.chunks(2)
        .map(|p| match (nib(p[0]), nib(p[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(Error::bad(format!("bad hex in {s:?}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            HashAlg::Sha1.hash(b"abc").hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            HashAlg::Blake3.hash(b"").hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn ordering_is_by_digest() {
        let a = HashCode::from_digest(HashAlg::Blake3, &[1; 32]).unwrap();
        let b = HashCode::from_digest(HashAlg::Sha256, &[2; 32]).unwrap();
        assert!(a < b);
    }

    proptest! {
        #[test]
        fn record_and_text_roundtrip(d in proptest::collection::vec(any::<u8>(), 32), e in 0u64..3) {
            let alg = HashAlg::from_hashenum(e).unwrap();
            let h = HashCode::from_digest(alg, &d[..alg.digest_len()]).unwrap();
            let enc = h.encode();
            prop_assert_eq!(HashCode::decode_from(&mut Reader::new(&enc)).unwrap(), h);
            prop_assert_eq!(HashCode::parse(&h.to_string()).unwrap(), h);
        }

        #[test]
        fn garbage_record_is_error_not_panic(d in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = HashCode::decode_from(&mut Reader::new(&d));
            let _ = HashCode::parse(&String::from_utf8_lossy(&d));
        }
    }
}
