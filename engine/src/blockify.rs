//! Blockify: a byte stream → leaf blocks → an indirect tree → one top [`BlockRef`].
//!
//! Leaves: chunks of at most [`LITERAL_MAX`] bytes become literal references; in the
//! default mode a chunk of one repeated octet becomes an RLE reference (and runs of
//! such RLE leaves with the same octet merge, so holes stay holes); every other chunk
//! is hashed and written to the [`BlockSink`].
//!
//! Tree (FORMAT-csvt §3, in both modes): consecutive references are packed into an
//! indirect block while their concatenated encodings total at most
//! [`MAX_INDIRECT_LEN`] bytes; a group of one reference is passed up unwrapped; this
//! repeats level by level until one reference remains. No data → [`BlockRef::empty`].
//!
//! Large inputs run as a pipeline: a reader/chunker thread, `threads` workers that
//! hash leaves and call the sink (which may compress, so it runs in parallel), and
//! the calling thread reassembling leaves in order and building the tree.

use crate::block::BlockRef;
use crate::chunk::{ChunkerKind, StreamChunker};
use crate::error::{Error, IoContext, Result};
use crate::hash::{HashAlg, HashCode};
use crate::store::Store;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;

/// Largest encoded size of an indirect block's children.
pub const MAX_INDIRECT_LEN: usize = 16383;

/// Chunks of at most this many bytes become literal references.
pub const LITERAL_MAX: usize = 32;

/// Bytes handed to a worker at a time (several chunks).
const BATCH_LEN: usize = 1 << 20;

/// Where blockify writes blocks: one method, called from several threads at once.
pub trait BlockSink: Sync {
    /// Stores `data`, whose hashcode (computed by the caller) is `hash`.
    /// Fails when the underlying store does.
    fn put(&self, hash: HashCode, data: &[u8]) -> Result<()>;
}

impl<S: Store + ?Sized> BlockSink for S {
    fn put(&self, hash: HashCode, data: &[u8]) -> Result<()> {
        self.add_hashed(hash, data).map(|_| ())
    }
}

/// How to blockify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockifyOptions {
    /// The chunking algorithm.
    pub chunker: ChunkerKind,
    /// The hash algorithm for leaves and indirect blocks.
    pub hash_alg: HashAlg,
    /// Worker threads hashing and storing leaves; 0 or 1 runs everything on the
    /// calling thread.
    pub threads: usize,
}

impl Default for BlockifyOptions {
    fn default() -> Self {
        BlockifyOptions {
            chunker: ChunkerKind::default(),
            hash_alg: HashAlg::DEFAULT,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl BlockifyOptions {
    /// cs.vt-compatible blockifying with `hash_alg` (cs.vt's default is BLAKE3).
    pub fn csvt(hash_alg: HashAlg) -> Self {
        BlockifyOptions {
            chunker: ChunkerKind::Csvt,
            hash_alg,
            ..Self::default()
        }
    }

    /// The default chunker with `hash_alg`, e.g. a store's algorithm.
    pub fn with_hash_alg(hash_alg: HashAlg) -> Self {
        BlockifyOptions {
            hash_alg,
            ..Self::default()
        }
    }
}

/// The leaf reference for one chunk, storing it through `sink` when it is hashed.
///
/// Fails when the sink does.
pub fn leaf_ref(
    chunk: &[u8],
    kind: ChunkerKind,
    alg: HashAlg,
    sink: &dyn BlockSink,
) -> Result<BlockRef> {
    if chunk.len() <= LITERAL_MAX {
        return Ok(BlockRef::literal(chunk));
    }
    if !kind.is_csvt() && is_one_octet(chunk) {
        return Ok(BlockRef::Rle {
            span: chunk.len() as u64,
            octet: chunk[0],
        });
    }
    let hash = alg.hash(chunk);
    sink.put(hash, chunk)?;
    Ok(BlockRef::Hash {
        hash,
        span: chunk.len() as u64,
    })
}

/// True when every byte of the non-empty `data` equals the first.
fn is_one_octet(data: &[u8]) -> bool {
    let Some(&first) = data.first() else {
        return true;
    };
    // Most chunks differ within a few bytes; whole-word compares make runs cheap.
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    let pattern = u64::from_ne_bytes([first; 8]);
    words
        .map(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
        .all(|w| w == pattern)
        && tail.iter().all(|&b| b == first)
}

/// Builds the indirect tree over leaf references pushed in order.
pub struct TreeBuilder<'s> {
    sink: &'s dyn BlockSink,
    alg: HashAlg,
    /// Merge adjacent RLE leaves of the same octet (default mode only).
    merge_rle: bool,
    /// The last leaf, held back so a following RLE leaf can merge into it.
    pending: Option<BlockRef>,
    levels: Vec<Level>,
}

impl std::fmt::Debug for TreeBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeBuilder")
            .field("alg", &self.alg)
            .field("levels", &self.levels.len())
            .finish_non_exhaustive()
    }
}

/// The open group of one tree level.
#[derive(Default)]
struct Level {
    /// Concatenated encodings of the group's references.
    enc: Vec<u8>,
    /// The group's first reference (passed up alone if it stays alone).
    first: Option<BlockRef>,
    count: usize,
    span: u64,
    /// References ever pushed at this level.
    pushed: u64,
}

impl<'s> TreeBuilder<'s> {
    /// A builder writing indirect blocks hashed with `alg` to `sink`.
    pub fn new(sink: &'s dyn BlockSink, alg: HashAlg, kind: ChunkerKind) -> Self {
        TreeBuilder {
            sink,
            alg,
            merge_rle: !kind.is_csvt(),
            pending: None,
            levels: Vec::new(),
        }
    }

    /// Appends the next leaf. Fails when writing an indirect block fails.
    pub fn push(&mut self, leaf: BlockRef) -> Result<()> {
        if self.merge_rle {
            if let (
                Some(BlockRef::Rle { span, octet }),
                BlockRef::Rle {
                    span: s2,
                    octet: o2,
                },
            ) = (&mut self.pending, &leaf)
            {
                if *octet == *o2 {
                    *span += s2;
                    return Ok(());
                }
            }
            return match self.pending.replace(leaf) {
                Some(prev) => self.push_at(0, prev),
                None => Ok(()),
            };
        }
        self.push_at(0, leaf)
    }

    fn push_at(&mut self, level: usize, r: BlockRef) -> Result<()> {
        if self.levels.len() == level {
            self.levels.push(Level::default());
        }
        let enc = r.encode();
        let lv = &self.levels[level];
        if lv.count > 0 && lv.enc.len() + enc.len() > MAX_INDIRECT_LEN {
            let up = self.close_group(level)?;
            self.push_at(level + 1, up)?;
        }
        let lv = &mut self.levels[level];
        lv.enc.extend_from_slice(&enc);
        lv.span += r.span();
        lv.count += 1;
        lv.pushed += 1;
        if lv.first.is_none() {
            lv.first = Some(r);
        }
        Ok(())
    }

    /// Turns the open group of `level` into one reference, storing it if indirect.
    fn close_group(&mut self, level: usize) -> Result<BlockRef> {
        let lv = std::mem::take(&mut self.levels[level]);
        self.levels[level].pushed = lv.pushed;
        if lv.count == 1 {
            return lv
                .first
                .ok_or_else(|| Error::bad("tree level lost its reference"));
        }
        let hash = self.alg.hash(&lv.enc);
        self.sink.put(hash, &lv.enc)?;
        Ok(BlockRef::Indirect {
            hash,
            span: lv.span,
        })
    }

    /// The top reference over everything pushed. Fails when writing a block fails.
    pub fn finish(mut self) -> Result<BlockRef> {
        if let Some(p) = self.pending.take() {
            self.push_at(0, p)?;
        }
        let mut level = 0;
        while level < self.levels.len() {
            if self.levels[level].pushed == 1 {
                let lv = std::mem::take(&mut self.levels[level]);
                return lv
                    .first
                    .ok_or_else(|| Error::bad("tree level lost its reference"));
            }
            let up = self.close_group(level)?;
            self.push_at(level + 1, up)?;
            level += 1;
        }
        Ok(BlockRef::empty())
    }
}

/// Blockifies an in-memory buffer. Fails when the sink does.
pub fn blockify_bytes(
    data: &[u8],
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<BlockRef> {
    let tree = TreeBuilder::new(sink, opts.hash_alg, opts.chunker);
    if opts.threads <= 1 || data.len() <= BATCH_LEN {
        return blockify_sequential(tree, data, sink, opts);
    }
    let mut chunker = opts.chunker.chunker();
    run_pipeline(tree, sink, opts, |tx, _| {
        let (mut start, mut scanned, mut seq) = (0, 0, 0);
        while scanned < data.len() {
            let window = (scanned + BATCH_LEN).min(data.len());
            let (ends, _) = scan_cuts(&mut chunker, data, scanned, window, window == data.len());
            scanned = window;
            let Some(&last) = ends.last() else { continue };
            let ends = ends.iter().map(|e| e - start).collect();
            let batch = Batch {
                seq,
                data: Cow::Borrowed(&data[start..last]),
                ends,
            };
            if tx.send(batch).is_err() {
                return Ok(());
            }
            seq += 1;
            start = last;
        }
        Ok(())
    })
}

/// Blockifies everything `r` yields. Fails on a read error or when the sink does.
pub fn blockify_reader<R: Read + Send>(
    r: R,
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<BlockRef> {
    let tree = TreeBuilder::new(sink, opts.hash_alg, opts.chunker);
    blockify_reader_onto(tree, r, sink, opts)
}

/// Blockifies everything `r` yields as the leaves following those already pushed
/// to `tree` (e.g. the unchanged start of a file), and returns the top reference.
/// Chunking starts afresh at `r`'s first byte. Fails on a read error or when the
/// sink does.
pub fn blockify_reader_onto<'s, R: Read + Send>(
    tree: TreeBuilder<'s>,
    mut r: R,
    sink: &'s dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<BlockRef> {
    let mut first = Vec::new();
    let mut held = 0;
    let eof = fill(&mut r, &mut first, &mut held, BATCH_LEN)?;
    first.truncate(held);
    if eof || opts.threads <= 1 {
        if eof {
            return blockify_sequential(tree, &first, sink, opts);
        }
        return blockify_reader_sequential(tree, r, first, sink, opts);
    }
    let mut chunker = opts.chunker.chunker();
    run_pipeline(tree, sink, opts, move |tx, spare| {
        let mut buf = first;
        let mut held = buf.len();
        let mut scanned = 0;
        let mut seq = 0;
        let mut eof = false;
        loop {
            let (ends, next_scan) = scan_cuts(&mut chunker, &buf[..held], scanned, held, eof);
            let last = ends.last().copied().unwrap_or(0);
            // Workers hand their buffers back: reusing them skips allocating and zeroing.
            let mut next = spare.try_recv().unwrap_or_default();
            let tail = held - last;
            if next.len() < tail {
                next.resize(tail, 0);
            }
            next[..tail].copy_from_slice(&buf[last..held]);
            scanned = next_scan - last;
            if !ends.is_empty() {
                let batch = Batch {
                    seq,
                    data: Cow::Owned(buf),
                    ends,
                };
                if tx.send(batch).is_err() {
                    return Ok(());
                }
                seq += 1;
            }
            if eof {
                return Ok(());
            }
            buf = next;
            held = tail;
            eof = fill(&mut r, &mut buf, &mut held, refill_target(scanned))?;
        }
    })
}

/// How full to make a buffer already holding `held` bytes: about a batch, and
/// always more than it holds, so a chunk longer than a batch still makes progress.
fn refill_target(held: usize) -> usize {
    BATCH_LEN.max(held + BATCH_LEN / 4)
}

/// Reads into `buf[*held..target]`, growing `buf` to `target` bytes if shorter, until
/// it holds `target` bytes; returns true at end of input. Bytes past `*held` are scratch.
fn fill<R: Read>(r: &mut R, buf: &mut Vec<u8>, held: &mut usize, target: usize) -> Result<bool> {
    if buf.len() < target {
        buf.resize(target, 0);
    }
    while *held < target {
        match r.read(&mut buf[*held..target]) {
            Ok(0) => return Ok(true),
            Ok(n) => *held += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).ctx(|| "reading input to blockify".to_string()),
        }
    }
    Ok(false)
}

/// Chunk ends (absolute offsets into `data`) found scanning `data[from..to]`.
///
/// With `eof`, `to` ends the stream and so ends a chunk. Also returns how far the
/// chunker has consumed (always `to`).
fn scan_cuts(
    chunker: &mut StreamChunker,
    data: &[u8],
    from: usize,
    to: usize,
    eof: bool,
) -> (Vec<usize>, usize) {
    let mut ends = Vec::new();
    let mut pos = from;
    let mut last_end = None;
    while pos < to {
        match chunker.next_cut(&data[pos..to]) {
            Some(k) => {
                pos += k;
                if pos > 0 && last_end != Some(pos) {
                    ends.push(pos);
                    last_end = Some(pos);
                }
            }
            None => pos = to,
        }
    }
    if eof && to > 0 && last_end != Some(to) && ends.last() != Some(&to) {
        ends.push(to);
    }
    (ends, to)
}

/// Blockifies `data` onto `tree` on the calling thread.
fn blockify_sequential(
    mut tree: TreeBuilder<'_>,
    data: &[u8],
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<BlockRef> {
    for chunk in crate::chunk::chunks(opts.chunker, data) {
        tree.push(leaf_ref(chunk, opts.chunker, opts.hash_alg, sink)?)?;
    }
    tree.finish()
}

/// Blockifies a reader onto `tree` on the calling thread, `buf` holding its first bytes.
fn blockify_reader_sequential<R: Read>(
    mut tree: TreeBuilder<'_>,
    mut r: R,
    mut buf: Vec<u8>,
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<BlockRef> {
    let mut chunker = opts.chunker.chunker();
    let mut held = buf.len();
    let mut scanned = 0;
    let mut eof = false;
    loop {
        let (ends, _) = scan_cuts(&mut chunker, &buf[..held], scanned, held, eof);
        let mut start = 0;
        for end in ends {
            tree.push(leaf_ref(
                &buf[start..end],
                opts.chunker,
                opts.hash_alg,
                sink,
            )?)?;
            start = end;
        }
        if eof {
            return tree.finish();
        }
        buf.copy_within(start..held, 0);
        held -= start;
        scanned = held;
        eof = fill(&mut r, &mut buf, &mut held, refill_target(scanned))?;
    }
}

/// Consecutive chunks handed to a worker.
struct Batch<'a> {
    seq: u64,
    data: Cow<'a, [u8]>,
    /// End offset of each chunk within `data`; the first starts at 0.
    ends: Vec<usize>,
}

type Leaves = (u64, Result<Vec<BlockRef>>);

/// Runs `produce` (sending batches) on a thread, workers turning batches into leaf
/// references, and the tree builder on the calling thread. Workers return owned
/// batch buffers to the producer through the receiver it is given.
fn run_pipeline<'a, 's, P>(
    tree: TreeBuilder<'s>,
    sink: &'s dyn BlockSink,
    opts: &BlockifyOptions,
    produce: P,
) -> Result<BlockRef>
where
    P: FnOnce(&Sender<Batch<'a>>, &Receiver<Vec<u8>>) -> Result<()> + Send,
{
    let workers = opts.threads.max(1);
    let (batch_tx, batch_rx) = bounded::<Batch<'a>>(workers * 2);
    let (leaf_tx, leaf_rx) = bounded::<Leaves>(workers * 2);
    let (spare_tx, spare_rx) = bounded::<Vec<u8>>(workers * 4);
    std::thread::scope(|s| {
        let producer = s.spawn(move || produce(&batch_tx, &spare_rx));
        for _ in 0..workers {
            let (rx, tx, spare) = (batch_rx.clone(), leaf_tx.clone(), spare_tx.clone());
            s.spawn(move || hash_worker(&rx, &tx, &spare, sink, opts));
        }
        drop((batch_rx, leaf_tx, spare_tx));
        let top = assemble(tree, &leaf_rx);
        drop(leaf_rx);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Error::bad("blockify reader thread panicked")));
        produced?;
        top
    })
}

fn hash_worker(
    rx: &Receiver<Batch<'_>>,
    tx: &Sender<Leaves>,
    spare: &Sender<Vec<u8>>,
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) {
    for batch in rx {
        let mut start = 0;
        let leaves = batch
            .ends
            .iter()
            .map(|&end| {
                let chunk = &batch.data[start..end];
                start = end;
                leaf_ref(chunk, opts.chunker, opts.hash_alg, sink)
            })
            .collect();
        if let Cow::Owned(buf) = batch.data {
            // A full spare queue just drops the buffer.
            let _ = spare.try_send(buf);
        }
        if tx.send((batch.seq, leaves)).is_err() {
            return;
        }
    }
}

/// Feeds leaves to the tree builder in batch order.
fn assemble(mut tree: TreeBuilder<'_>, rx: &Receiver<Leaves>) -> Result<BlockRef> {
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    for (seq, leaves) in rx {
        waiting.insert(seq, leaves?);
        while let Some(leaves) = waiting.remove(&next) {
            for leaf in leaves {
                tree.push(leaf)?;
            }
            next += 1;
        }
    }
    if !waiting.is_empty() {
        return Err(Error::bad("blockify lost a batch of leaves"));
    }
    tree.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkerParams;
    use crate::store::MemoryStore;
    use proptest::prelude::*;

    /// Yields `data` in reads of at most the next of `sizes` (cycling) bytes.
    struct Dribble<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        calls: usize,
    }

    impl<'a> Dribble<'a> {
        fn new(data: &'a [u8], sizes: Vec<usize>) -> Self {
            Dribble {
                data,
                sizes,
                calls: 0,
            }
        }
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let size = self.sizes[self.calls % self.sizes.len()];
            self.calls += 1;
            let n = size.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Pseudo-random bytes with runs of one octet, some longer than a batch.
    fn sample(len: usize, seed: u64, run_at: usize, run_len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        let mut data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let run_at = run_at.min(len);
        let run_end = (run_at + run_len).min(len);
        data[run_at..run_end].fill(7);
        data
    }

    fn opts(kind: ChunkerKind, threads: usize) -> BlockifyOptions {
        BlockifyOptions {
            chunker: kind,
            hash_alg: HashAlg::Blake3,
            threads,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Reads of any sizes and any thread count give the top reference of
        /// chunking the whole input in memory: same chunk boundaries, same tree.
        #[test]
        fn reader_matches_in_memory(
            len in 0usize..(3 << 20),
            seed in any::<u64>(),
            run_at in 0usize..(3 << 20),
            run_len in 0usize..1_500_000,
            sizes in proptest::collection::vec(1usize..300_000, 1..5),
            csvt in any::<bool>(),
            big_max in any::<bool>(),
        ) {
            let data = sample(len, seed, run_at, run_len);
            let kind = match (csvt, big_max) {
                (true, _) => ChunkerKind::Csvt,
                // Chunks up to 2 MiB: longer than a batch.
                (false, true) => ChunkerKind::Default(ChunkerParams::new(64, 4096, 2 << 20).unwrap()),
                (false, false) => ChunkerKind::default(),
            };
            let store = MemoryStore::new(HashAlg::Blake3);
            let want = blockify_bytes(&data, &store, &opts(kind, 1)).unwrap();
            for threads in [1, 2, 3] {
                let r = Dribble::new(&data, sizes.clone());
                let store = MemoryStore::new(HashAlg::Blake3);
                let got = blockify_reader(r, &store, &opts(kind, threads)).unwrap();
                prop_assert_eq!(&got, &want, "{} threads", threads);
            }
        }
    }
}
