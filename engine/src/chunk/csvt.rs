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
        // h only remembers four bytes, so rebuild it from the bytes just before `start`.
        let mut h = data[start.saturating_sub(4)..start]
            .iter()
            .fold(self.h, |h, &b| step(h, b));
        // Index where the chunk reaches CSVT_MAX bytes: a forced cut.
        let forced = CSVT_MAX - n0;
        let end = forced.min(data.len());
        for (i, &b) in data[start..end].iter().enumerate() {
            let next = step(h, b);
            if next % CSVT_MODULUS == CSVT_TARGET {
                // The next call re-reads this byte, so keep h as it was before it.
                return Some(self.cut(h, start + i));
            }
            h = next;
        }
        if forced < data.len() {
            return Some(self.cut(h, forced));
        }
        self.n = n0 + data.len();
        self.h = h;
        None
    }

    fn cut(&mut self, h: u32, at: usize) -> usize {
        self.n = 0;
        self.h = h;
        at
    }
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
    fn forced_cut_at_buffer_end_is_reported_next_call() {
        let mut c = CsvtChunker::new();
        let zeros = vec![0u8; CSVT_MAX];
        assert_eq!(c.next_cut(&zeros), None);
        assert_eq!(c.next_cut(&[]), None);
        assert_eq!(c.next_cut(&[0, 0]), Some(0));
        assert_eq!(c.next_cut(&[0, 0]), None);
    }
}
