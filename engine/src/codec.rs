//! Primitive binary encodings of cs.vt: BSUInt, BSData, BSString, BSSFloat.
//!
//! Decoders work on a [`Reader`] over a byte slice and never panic or allocate
//! more than the input holds: every length is checked against what remains.

use crate::error::{Error, Result};

/// Largest number of octets a BSUInt may occupy when it fits in a u64.
pub const BSUINT_MAX_LEN: usize = 10;

/// Appends the BSUInt encoding of `n` (big-endian base 128, 0x80 on all but the last octet).
pub fn put_bsuint(out: &mut Vec<u8>, n: u64) {
    let mut tmp = [0u8; BSUINT_MAX_LEN];
    let mut i = BSUINT_MAX_LEN - 1;
    tmp[i] = (n & 0x7f) as u8;
    let mut v = n >> 7;
    while v > 0 {
        i -= 1;
        tmp[i] = 0x80 | (v & 0x7f) as u8;
        v >>= 7;
    }
    out.extend_from_slice(&tmp[i..]);
}

/// The number of octets [`put_bsuint`] writes for `n`.
pub fn bsuint_len(n: u64) -> usize {
    let bits = 64 - n.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends a BSData: BSUInt length then the bytes.
pub fn put_bsdata(out: &mut Vec<u8>, data: &[u8]) {
    put_bsuint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Appends a BSString (BSData of UTF-8 text).
pub fn put_bsstring(out: &mut Vec<u8>, s: &str) {
    put_bsdata(out, s.as_bytes());
}

/// Appends a BSSFloat: a BSString of the float's shortest decimal text, Python style.
pub fn put_bssfloat(out: &mut Vec<u8>, f: f64) {
    put_bsstring(out, &python_float_repr(f));
}

/// Python's `str(float)`: shortest round-trip digits, always with a `.` or exponent.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Python switches to exponent form: 1e+22, 1.5e-05.
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// A cursor over bytes being decoded.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unconsumed bytes.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Reads one octet; fails at end of input.
    pub fn u8(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| Error::bad(format!("truncated: need 1 byte at offset {}", self.pos)))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads exactly `n` bytes; fails when fewer remain.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::bad(format!(
                "truncated: need {n} bytes at offset {}, {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads a BSUInt; fails on truncation or a value beyond u64.
    pub fn bsuint(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut n: u64 = 0;
        loop {
            let b = self.u8()?;
            if n > (u64::MAX >> 7) {
                return Err(Error::bad(format!(
                    "BSUInt at offset {start} overflows 64 bits"
                )));
            }
            n = (n << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
    }

    /// Reads a BSUInt that must fit in `usize` and not exceed the remaining input.
    pub fn length(&mut self) -> Result<usize> {
        let at = self.pos;
        let n = self.bsuint()?;
        if n > self.remaining() as u64 {
            return Err(Error::bad(format!(
                "length {n} at offset {at} exceeds the {} bytes remaining",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    /// Reads a BSData and returns its payload.
    pub fn bsdata(&mut self) -> Result<&'a [u8]> {
        let n = self.length()?;
        self.take(n)
    }

    /// Reads a BSString; fails on invalid UTF-8.
    pub fn bsstring(&mut self) -> Result<&'a str> {
        let at = self.pos;
        let b = self.bsdata()?;
        std::str::from_utf8(b)
            .map_err(|_| Error::bad(format!("BSString at offset {at} is not UTF-8")))
    }

    /// Reads a BSSFloat.
    pub fn bssfloat(&mut self) -> Result<f64> {
        let at = self.pos;
        let s = self.bsstring()?;
        s.trim()
            .parse::<f64>()
            .map_err(|_| Error::bad(format!("BSSFloat at offset {at}: {s:?} is not a number")))
    }
}

/// Decodes one BSUInt from the start of `buf`, returning it and its length.
pub fn get_bsuint(buf: &[u8]) -> Result<(u64, usize)> {
    let mut r = Reader::new(buf);
    let n = r.bsuint()?;
    Ok((n, r.position()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bsuint_documented_vectors() {
        for (n, hex) in [
            (0u64, "00"),
            (127, "7f"),
            (128, "8100"),
            (16383, "ff7f"),
            (16384, "818000"),
        ] {
            let mut v = Vec::new();
            put_bsuint(&mut v, n);
            assert_eq!(hex_of(&v), hex, "{n}");
            assert_eq!(bsuint_len(n), v.len());
        }
    }

    #[test]
    fn bsuint_overflow_is_an_error() {
        let too_big = [0x82u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert!(get_bsuint(&too_big).is_err());
        assert!(get_bsuint(&[0x80; 3]).is_err());
    }

    #[test]
    fn hostile_length_does_not_allocate() {
        let mut v = Vec::new();
        put_bsuint(&mut v, u64::MAX);
        v.push(1);
        assert!(Reader::new(&v).bsdata().is_err());
    }

    #[test]
    fn python_floats() {
        assert_eq!(python_float_repr(1767225600.0), "1767225600.0");
        assert_eq!(python_float_repr(0.1), "0.1");
        assert_eq!(python_float_repr(1e22), "1e+22");
        assert_eq!(python_float_repr(1.5e-5), "1.5e-05");
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    proptest! {
        #[test]
        fn bsuint_roundtrip(n in any::<u64>()) {
            let mut v = Vec::new();
            put_bsuint(&mut v, n);
            prop_assert_eq!(get_bsuint(&v).unwrap(), (n, v.len()));
        }

        #[test]
        fn bsdata_roundtrip(d in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut v = Vec::new();
            put_bsdata(&mut v, &d);
            let mut r = Reader::new(&v);
            prop_assert_eq!(r.bsdata().unwrap(), &d[..]);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn garbage_never_panics(d in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&d);
            let _ = r.bsdata();
            let mut r = Reader::new(&d);
            let _ = r.bsstring();
            let mut r = Reader::new(&d);
            let _ = r.bssfloat();
        }
    }
}
