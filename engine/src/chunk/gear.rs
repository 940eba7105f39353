//! The default chunker: a FastCDC-style gear hash with normalized chunking.
//!
//! `h = (h << 1) + GEAR[b]` over the bytes after the first `min` of a chunk; a chunk
//! ends after a byte where `h & mask == 0`, using a stricter mask before `avg` bytes
//! and a looser one after (normalized chunking, level [`NORMALIZATION`]), and always
//! at `max` bytes. Masks use bits 62 and below: bit `k` of `h` depends on the last
//! `k + 1` bytes, so high bits see a 64-byte window. Keeping bit 63 out of the masks
//! lets the scan consume two bytes per step (FastCDC 2020's pre-shifted table)
//! with results identical to one byte per step, hence independent of buffer splits.
//!
//! The table is part of the chunk format: changing it (or the seed below) changes
//! every boundary and so the dedup against older data.

use super::ChunkerParams;

/// Bits added to (before `avg`) and removed from (after `avg`) the mask width.
pub const NORMALIZATION: u32 = 1;

/// Seed of the gear table ("vt-gear1").
const GEAR_SEED: u64 = 0x7674_2d67_6561_7231;

/// The gear table: 256 splitmix64 outputs from [`GEAR_SEED`].
pub const GEAR: [u64; 256] = gear_table();

/// `GEAR` shifted left by one, for the first byte of each two-byte step.
const GEAR_LS: [u64; 256] = shifted(GEAR);

const fn gear_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut x = GEAR_SEED;
    let mut i = 0;
    while i < 256 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
}

const fn shifted(t: [u64; 256]) -> [u64; 256] {
    let mut s = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        s[i] = t[i] << 1;
        i += 1;
    }
    s
}

/// A mask of `bits` ones ending at bit 62.
fn mask(bits: u32) -> u64 {
    let bits = bits.clamp(1, 62);
    ((1u64 << bits) - 1) << (63 - bits)
}

/// Scans `data` continuing hash `h`; `Ok(i)` when a chunk ends after `data[i]`,
/// else `Err(h)` with the hash after the last byte.
#[inline(always)]
fn scan(data: &[u8], mut h: u64, mask: u64) -> Result<usize, u64> {
    // After the first byte of a pair, `h` holds the true hash shifted left by one,
    // which the shifted mask tests exactly because mask bit 63 is clear.
    let mask_ls = mask << 1;
    let mut pairs = data.chunks_exact(2);
    for (j, p) in (&mut pairs).enumerate() {
        h = (h << 2).wrapping_add(GEAR_LS[p[0] as usize]);
        if h & mask_ls == 0 {
            return Ok(2 * j);
        }
        h = h.wrapping_add(GEAR[p[1] as usize]);
        if h & mask == 0 {
            return Ok(2 * j + 1);
        }
    }
    if let [b] = pairs.remainder() {
        h = (h << 1).wrapping_add(GEAR[*b as usize]);
        if h & mask == 0 {
            return Ok(data.len() - 1);
        }
    }
    Err(h)
}

/// The default chunker with streaming state; see [`super::StreamChunker::next_cut`].
#[derive(Debug, Clone)]
pub struct GearChunker {
    params: ChunkerParams,
    /// Stricter mask, used while the chunk is shorter than `avg`.
    mask_s: u64,
    /// Looser mask, used from `avg` to `max`.
    mask_l: u64,
    /// Bytes already in the current chunk.
    n: usize,
    /// Gear hash of the current chunk's bytes past `min`.
    h: u64,
}

impl GearChunker {
    /// A chunker at the start of a stream.
    pub fn new(params: ChunkerParams) -> Self {
        let bits = params.avg.max(2).ilog2();
        GearChunker {
            params,
            mask_s: mask(bits + NORMALIZATION),
            mask_l: mask(bits.saturating_sub(NORMALIZATION)),
            n: 0,
            h: 0,
        }
    }

    /// Forgets all state.
    pub fn reset(&mut self) {
        self.n = 0;
        self.h = 0;
    }

    /// See [`super::StreamChunker::next_cut`].
    pub fn next_cut(&mut self, data: &[u8]) -> Option<usize> {
        let p = self.params;
        let mut i = 0;
        if self.n < p.min {
            i = (p.min - self.n).min(data.len());
            self.n += i;
        }
        for (limit, mask) in [(p.avg, self.mask_s), (p.max, self.mask_l)] {
            if self.n >= limit {
                continue;
            }
            let end = i + (limit - self.n).min(data.len() - i);
            match scan(&data[i..end], self.h, mask) {
                Ok(k) => return Some(self.cut(i + k + 1)),
                Err(h) => self.h = h,
            }
            self.n += end - i;
            i = end;
        }
        if self.n >= p.max {
            return Some(self.cut(i));
        }
        None
    }

    fn cut(&mut self, at: usize) -> usize {
        self.reset();
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_avoid_bit_63() {
        for bits in 1..40 {
            assert_eq!(mask(bits) >> 63, 0);
            assert_eq!(mask(bits).count_ones(), bits);
        }
    }

    #[test]
    fn two_byte_scan_equals_one_byte_scan() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let m = mask(6);
        let mut h = 0u64;
        let mut expect = None;
        for (i, &b) in data.iter().enumerate() {
            h = (h << 1).wrapping_add(GEAR[b as usize]);
            if h & m == 0 {
                expect = Some(i);
                break;
            }
        }
        assert_eq!(scan(&data, 0, m).ok(), expect);
        assert!(expect.is_some());
    }

    #[test]
    fn max_cut_lands_on_max() {
        let p = ChunkerParams::new(64, 128, 256).unwrap();
        // A byte whose gear-hash fixed point misses both masks forces max-size chunks.
        let b = (0..=255u8)
            .find(|&b| {
                let fixed = GEAR[b as usize].wrapping_neg();
                let mut g = GearChunker::new(p);
                fixed & g.mask_l != 0 && g.next_cut(&vec![b; 1000]) == Some(256)
            })
            .unwrap();
        let mut g = GearChunker::new(p);
        assert_eq!(g.next_cut(&vec![b; 256]), Some(256));
        assert_eq!(g.next_cut(&vec![b; 255]), None);
        assert_eq!(g.next_cut(&[b]), Some(1));
    }
}
