//! Content-defined chunkers: pure functions over bytes, with streaming state.
//!
//! Every chunker here is *split-invariant*: feeding a stream in any buffer sizes
//! yields the same boundaries as feeding it at once. The streaming protocol is
//! [`StreamChunker::next_cut`]: hand it the next bytes of the stream; it returns
//! where the current chunk ends inside them, or `None` when all of them belong to
//! the current chunk (its state is carried to the next call).
//!
//! Two chunkers:
//! - [`GearChunker`], the default: FastCDC-style gear hash with normalized chunking
//!   and configurable [`ChunkerParams`];
//! - [`CsvtChunker`]: cs.vt's rolling hash (FORMAT-csvt §3), boundary for boundary.

mod csvt;
mod gear;

pub use csvt::{CsvtChunker, CSVT_MAX, CSVT_MIN, CSVT_MODULUS, CSVT_TARGET};
pub use gear::{GearChunker, GEAR};

use crate::error::{Error, Result};

/// Size limits of the default (gear) chunker, in bytes.
///
/// Chunks are at least `min` bytes (except the last one of a stream) and at most
/// `max`; boundaries are tuned so the mean lands near `avg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkerParams {
    /// Smallest chunk (the stream's last chunk may be shorter).
    pub min: usize,
    /// Target mean chunk size.
    pub avg: usize,
    /// Largest chunk.
    pub max: usize,
}

impl ChunkerParams {
    /// The default limits: 16 KiB / 64 KiB / 256 KiB.
    pub const DEFAULT: ChunkerParams = ChunkerParams {
        min: 16 << 10,
        avg: 64 << 10,
        max: 256 << 10,
    };

    /// Checked limits; fails unless `64 <= min < avg < max <= 1 GiB`.
    pub fn new(min: usize, avg: usize, max: usize) -> Result<Self> {
        if !(64 <= min && min < avg && avg < max && max <= 1 << 30) {
            return Err(Error::bad(format!(
                "chunker sizes must satisfy 64 <= min < avg < max <= 1 GiB, got {min}/{avg}/{max}"
            )));
        }
        Ok(ChunkerParams { min, avg, max })
    }
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which chunking algorithm to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkerKind {
    /// The gear-hash chunker with the given limits.
    Default(ChunkerParams),
    /// cs.vt's rolling-hash chunker (80..=16383-byte chunks).
    Csvt,
}

impl Default for ChunkerKind {
    fn default() -> Self {
        ChunkerKind::Default(ChunkerParams::DEFAULT)
    }
}

impl ChunkerKind {
    /// A fresh streaming chunker of this kind.
    pub fn chunker(&self) -> StreamChunker {
        match self {
            ChunkerKind::Default(p) => StreamChunker::Gear(GearChunker::new(*p)),
            ChunkerKind::Csvt => StreamChunker::Csvt(CsvtChunker::new()),
        }
    }

    /// The largest chunk this kind produces.
    pub fn max_chunk(&self) -> usize {
        match self {
            ChunkerKind::Default(p) => p.max,
            ChunkerKind::Csvt => CSVT_MAX,
        }
    }

    /// True for the cs.vt-compatible mode.
    pub fn is_csvt(&self) -> bool {
        matches!(self, ChunkerKind::Csvt)
    }
}

/// A streaming chunker of any kind (enum dispatch, no allocation).
#[derive(Debug, Clone)]
pub enum StreamChunker {
    /// The default gear chunker.
    Gear(GearChunker),
    /// The cs.vt rolling-hash chunker.
    Csvt(CsvtChunker),
}

impl StreamChunker {
    /// Scans `data`, the next bytes of the stream.
    ///
    /// Returns `Some(k)` when the current chunk ends before `data[k]` (`k` may be 0:
    /// the chunk ended exactly at the previous buffer's end); the chunker then starts
    /// a new chunk and the caller continues with `data[k..]`. Returns `None` when all
    /// of `data` belongs to the current chunk. The stream's end always ends a chunk.
    #[inline]
    pub fn next_cut(&mut self, data: &[u8]) -> Option<usize> {
        match self {
            StreamChunker::Gear(c) => c.next_cut(data),
            StreamChunker::Csvt(c) => c.next_cut(data),
        }
    }

    /// Forgets all state: the next byte starts a new stream.
    pub fn reset(&mut self) {
        match self {
            StreamChunker::Gear(c) => c.reset(),
            StreamChunker::Csvt(c) => c.reset(),
        }
    }
}

/// Chunk boundaries of `data`: the offset where each chunk after the first starts
/// (0 and `data.len()` are not listed), as in the cs.vt `*.offsets` fixtures.
pub fn cut_offsets(kind: ChunkerKind, data: &[u8]) -> Vec<usize> {
    let mut chunker = kind.chunker();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(k) = chunker.next_cut(&data[pos..]) {
        pos += k;
        // A cut at the very start (k == 0 on the first call) cannot happen: every
        // chunker needs `min` bytes first. Guard anyway so chunks are never empty.
        if pos > 0 && out.last() != Some(&pos) {
            out.push(pos);
        }
        if pos == data.len() {
            break;
        }
    }
    out
}

/// The chunks of `data`, in order; empty input gives no chunks.
pub fn chunks(kind: ChunkerKind, data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in cut_offsets(kind, data).into_iter().chain([data.len()]) {
        if end > start {
            out.push(&data[start..end]);
            start = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small_params() -> ChunkerParams {
        ChunkerParams::new(256, 1024, 4096).unwrap()
    }

    /// Offsets found by feeding `data` in pieces whose sizes cycle through `sizes`.
    fn streamed_offsets(kind: ChunkerKind, data: &[u8], sizes: &[usize]) -> Vec<usize> {
        let mut c = kind.chunker();
        let mut out = Vec::new();
        let (mut pos, mut i) = (0, 0);
        while pos < data.len() {
            let end = (pos + sizes[i % sizes.len()].max(1)).min(data.len());
            i += 1;
            let mut p = pos;
            while let Some(k) = c.next_cut(&data[p..end]) {
                p += k;
                if p > 0 && out.last() != Some(&p) {
                    out.push(p);
                }
                if p == end {
                    break;
                }
            }
            pos = end;
        }
        // A cut exactly at EOF is not a chunk start.
        if out.last() == Some(&data.len()) {
            out.pop();
        }
        out
    }

    /// [`cut_offsets`] without a cut exactly at EOF (a forced cut when the length is
    /// a multiple of the maximum), which starts no chunk: as [`streamed_offsets`] does.
    fn whole_offsets(kind: ChunkerKind, data: &[u8]) -> Vec<usize> {
        let mut whole = cut_offsets(kind, data);
        if whole.last() == Some(&data.len()) {
            whole.pop();
        }
        whole
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn params_validate() {
        assert!(ChunkerParams::new(16, 64, 256).is_err());
        assert!(ChunkerParams::new(1024, 1024, 4096).is_err());
        assert!(ChunkerParams::new(1024, 2048, 2048).is_err());
        assert!(ChunkerParams::new(1024, 2048, 4096).is_ok());
    }

    #[test]
    fn empty_and_tiny_inputs_have_no_cuts() {
        for kind in [ChunkerKind::Csvt, ChunkerKind::default()] {
            assert!(cut_offsets(kind, b"").is_empty());
            assert!(chunks(kind, b"").is_empty());
            assert_eq!(chunks(kind, b"x"), vec![&b"x"[..]]);
        }
    }

    #[test]
    fn gear_sizes_respect_limits_and_mean() {
        let p = small_params();
        let data = pseudo_random(1 << 20, 7);
        let cs = chunks(ChunkerKind::Default(p), &data);
        let (last, body) = cs.split_last().unwrap();
        assert!(last.len() <= p.max);
        for c in body {
            assert!(c.len() > p.min && c.len() <= p.max, "chunk of {}", c.len());
        }
        let mean = data.len() / cs.len();
        assert!(mean > p.avg / 2 && mean < p.avg * 2, "mean {mean}");
    }

    #[test]
    fn gear_default_mean_is_near_avg() {
        let data = pseudo_random(16 << 20, 11);
        let n = chunks(ChunkerKind::default(), &data).len();
        let mean = data.len() / n;
        let avg = ChunkerParams::DEFAULT.avg;
        assert!(mean > avg * 3 / 4 && mean < avg * 5 / 4, "mean {mean}");
    }

    #[test]
    fn zeros_give_max_or_min_chunks() {
        let data = vec![0u8; 100_000];
        let cs = chunks(ChunkerKind::Csvt, &data);
        assert!(cs[..cs.len() - 1].iter().all(|c| c.len() == CSVT_MAX));
    }

    #[test]
    fn content_defined_after_insertion() {
        // Boundaries resynchronise after a prefix is inserted.
        let p = small_params();
        let data = pseudo_random(200_000, 3);
        let mut shifted = b"inserted prefix".to_vec();
        shifted.extend_from_slice(&data);
        for kind in [ChunkerKind::Csvt, ChunkerKind::Default(p)] {
            let a = cut_offsets(kind, &data);
            let b: Vec<usize> = cut_offsets(kind, &shifted).iter().map(|o| o - 15).collect();
            let common = a.iter().filter(|o| b.contains(o)).count();
            assert!(
                common * 10 > a.len() * 9,
                "{kind:?}: {common} of {}",
                a.len()
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn split_invariant(
            seed in any::<u64>(),
            len in 0usize..40_000,
            sizes in proptest::collection::vec(1usize..5000, 1..8),
            zeros in any::<bool>(),
        ) {
            let data = if zeros { vec![0u8; len] } else { pseudo_random(len, seed) };
            for kind in [ChunkerKind::Csvt, ChunkerKind::Default(small_params())] {
                let whole = whole_offsets(kind, &data);
                prop_assert_eq!(streamed_offsets(kind, &data, &sizes), whole.clone());
                prop_assert_eq!(streamed_offsets(kind, &data, &[1]), whole);
            }
        }

        #[test]
        fn low_entropy_split_invariant(
            data in proptest::collection::vec(0u8..3, 0..20_000),
            sizes in proptest::collection::vec(1usize..3000, 1..6),
        ) {
            for kind in [ChunkerKind::Csvt, ChunkerKind::Default(small_params())] {
                prop_assert_eq!(streamed_offsets(kind, &data, &sizes), whole_offsets(kind, &data));
            }
        }
    }
}
