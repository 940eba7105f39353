//! cs.vt's rolling-hash chunker (FORMAT-csvt §3), reproduced boundary for boundary.
//!
//! For each byte: `h = ((h & 0x1fffff) << 7) | ((b & 0x7f) ^ ((b & 0x80) >> 7))`;
//! then, with `n` the bytes already in the current chunk, cut *before* the byte when
//! `n >= 80 && (n >= 16383 || h % 4093 == 4091)`. `h` starts at 0 and is never reset
//! at a cut. Because `h` keeps 28 bits, it depends only on the last four bytes, which
//! lets a scan skip the first 80 bytes of each chunk and resume anywhere.

/// Smallest chunk (but the stream's last one).
pub const CSVT_MIN: usize = 80;
/// Largest chunk.
pub const CSVT_MAX: usize = 16383;
/// The hash is taken modulo this...
pub const CSVT_MODULUS: u32 = 4093;
/// ...and a boundary falls where the remainder equals this.
pub const CSVT_TARGET: u32 = 4091;

/// One step of the rolling hash.
#[inline(always)]
fn step(h: u32, b: u8) -> u32 {
    ((h & 0x001f_ffff) << 7) | u32::from((b & 0x7f) ^ (b >> 7))
}

/// cs.vt's chunker with streaming state; see [`super::StreamChunker::next_cut`].
#[derive(Debug, Clone, Default)]
pub struct CsvtChunker {
    /// Bytes already in the current chunk.
    n: usize,
    /// Hash after the last byte consumed.
    h: u32,
}

impl CsvtChunker {
    /// A chunker at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all state.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// See [`super::StreamChunker::next_cut`].
    pub fn next_cut(&mut self, data: &[u8]) -> Option<usize> {
        let n0 = self.n;
        // First index where the chunk would already hold CSVT_MIN bytes.
        let start = CSVT_MIN.saturating_sub(n0).min(data.len());
        // Index where the chunk reaches CSVT_MAX bytes: a forced cut.
        let forced = CSVT_MAX - n0;
        let end = forced.min(data.len());
        let cut = find_hit(self.h, data, start, end).or((forced < data.len()).then_some(forced));
        match cut {
            Some(at) => {
                // The next call re-reads data[at], so keep h as it was before it.
                self.h = hash_before(self.h, data, at);
                self.n = 0;
                Some(at)
            }
            None => {
                self.h = hash_before(self.h, data, data.len());
                self.n = n0 + data.len();
                None
            }
        }
    }
}

/// The rolling hash's input for one byte.
#[inline(always)]
fn fold(b: u8) -> u32 {
    u32::from((b & 0x7f) ^ (b >> 7))
}

/// The hash after `data[..i]`, given `h0` before `data`: only four bytes matter.
fn hash_before(h0: u32, data: &[u8], i: usize) -> u32 {
    data[i.saturating_sub(4)..i]
        .iter()
        .fold(h0, |h, &b| step(h, b))
}

/// Modular inverse of CSVT_MODULUS mod 2^32 (Newton's iteration).
const INVERSE: u32 = {
    let d = CSVT_MODULUS;
    let mut x = d;
    let mut k = 0;
    while k < 5 {
        x = x.wrapping_mul(2u32.wrapping_sub(d.wrapping_mul(x)));
        k += 1;
    }
    x
};

/// `h % 4093 == 4091`, as "4093 divides h + 2" with one multiply: for odd `d` and
/// `x < 2^32`, `d | x` iff `x * d^-1 mod 2^32 <= (2^32 - 1) / d`.
#[inline(always)]
fn is_cut_hash(h: u32) -> bool {
    (h + (CSVT_MODULUS - CSVT_TARGET)).wrapping_mul(INVERSE) <= u32::MAX / CSVT_MODULUS
}

/// Positions scanned per block in [`find_hit`].
const BLOCK: usize = 32;

/// The first `i` in `start..end` whose hash (after `data[i]`) marks a cut.
fn find_hit(h0: u32, data: &[u8], start: usize, end: usize) -> Option<usize> {
    let mut i = start;
    let mut h = hash_before(h0, data, i);
    // The first three positions need the carried hash; later ones are computed
    // from their four bytes directly, which lets blocks of positions vectorize.
    while i < end && i < 3 {
        h = step(h, data[i]);
        if is_cut_hash(h) {
            return Some(i);
        }
        i += 1;
    }
    while i + BLOCK <= end {
        if let Ok(w) = <&[u8; BLOCK + 3]>::try_from(&data[i - 3..i + BLOCK]) {
            let mut hits = 0u32;
            for j in 0..BLOCK {
                let h =
                    fold(w[j]) << 21 | fold(w[j + 1]) << 14 | fold(w[j + 2]) << 7 | fold(w[j + 3]);
                hits |= u32::from(is_cut_hash(h)) << j;
            }
            if hits != 0 {
                return Some(i + hits.trailing_zeros() as usize);
            }
        }
        i += BLOCK;
    }
    let mut h = hash_before(h0, data, i);
    while i < end {
        h = step(h, data[i]);
        if is_cut_hash(h) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Python reference, transcribed literally.
    fn reference_cuts(data: &[u8]) -> Vec<usize> {
        let (mut h, mut size, mut out) = (0u32, 0usize, Vec::new());
        for (i, &b) in data.iter().enumerate() {
            h = ((h & 0x1fffff) << 7) | u32::from((b & 0x7f) ^ ((b & 0x80) >> 7));
            if size >= CSVT_MIN && (size >= CSVT_MAX || h % 4093 == 4091) {
                out.push(i);
                size = 0;
            }
            size += 1;
        }
        out
    }

    #[test]
    fn matches_reference_on_mixed_data() {
        let mut data = Vec::new();
        let mut x = 12345u32;
        for i in 0..300_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // Stretches of zeros and of text-like bytes exercise forced cuts too.
            data.push(match (i / 40_000) % 3 {
                0 => (x >> 16) as u8,
                1 => 0,
                _ => b"abc def\n"[(x >> 16) as usize % 8],
            });
        }
        let got = super::super::cut_offsets(super::super::ChunkerKind::Csvt, &data);
        assert_eq!(got, reference_cuts(&data));
    }

    #[test]
    fn divisibility_test_matches_modulo() {
        for h in (0..1u32 << 28).step_by(997).chain(4091..20_000) {
            assert_eq!(is_cut_hash(h), h % 4093 == 4091, "h = {h}");
        }
    }

    #[test]
    fn forced_cut_at_buffer_end_is_reported_next_call() {
        let mut c = CsvtChunker::new();
        let zeros = vec![0u8; CSVT_MAX];
        assert_eq!(c.next_cut(&zeros), None);
        assert_eq!(c.next_cut(&[]), None);
        assert_eq!(c.next_cut(&[0, 0]), Some(0));
        assert_eq!(c.next_cut(&[0, 0]), None);
    }
}
