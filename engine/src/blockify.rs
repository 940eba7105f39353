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
//! Large inputs run as a pipeline: a reader thread, `threads` workers that find chunk
//! boundaries in read buffers (in parallel, see [`ParallelReader`]), hash leaves and
//! call the sink (which may compress, so it runs in parallel), and the calling thread
//! reassembling leaves in order and building the tree.

use crate::block::BlockRef;
use crate::chunk::{ChunkerKind, StreamChunker};
use crate::error::{Error, IoContext, Result};
use crate::hash::{HashAlg, HashCode};
use crate::store::Store;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

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
    let leaf = leaf_plan(chunk, kind, alg);
    store_leaf(&leaf, chunk, sink)?;
    Ok(leaf)
}

/// The leaf reference for one chunk, without storing anything.
fn leaf_plan(chunk: &[u8], kind: ChunkerKind, alg: HashAlg) -> BlockRef {
    if chunk.len() <= LITERAL_MAX {
        return BlockRef::literal(chunk);
    }
    if !kind.is_csvt() && is_one_octet(chunk) {
        return BlockRef::Rle {
            span: chunk.len() as u64,
            octet: chunk[0],
        };
    }
    BlockRef::Hash {
        hash: alg.hash(chunk),
        span: chunk.len() as u64,
    }
}

/// Stores `chunk` through `sink` when its leaf reference is a hash.
fn store_leaf(leaf: &BlockRef, chunk: &[u8], sink: &dyn BlockSink) -> Result<()> {
    match leaf {
        BlockRef::Hash { hash, .. } => sink.put(*hash, chunk),
        _ => Ok(()),
    }
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
    if opts.threads <= 1 || data.len() <= BATCH_LEN {
        return blockify_sequential(data, sink, opts);
    }
    let mut chunker = opts.chunker.chunker();
    run_pipeline(sink, opts, |tx, _| {
        let (mut start, mut scanned, mut seq) = (0, 0, 0);
        while scanned < data.len() {
            let window = (scanned + BATCH_LEN).min(data.len());
            let (ends, _) = scan_cuts(&mut chunker, data, scanned, window, window == data.len());
            scanned = window;
            let Some(&last) = ends.last() else { continue };
            let ends = ends.iter().map(|e| e - start).collect();
            let batch = Batch {
                seq,
                head: Vec::new(),
                data: BatchData::Borrowed(&data[start..last]),
                start: 0,
                ends,
                known: Vec::new(),
            };
            if tx.send(Work::Leaves(batch)).is_err() {
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
    mut r: R,
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<BlockRef> {
    let mut first = Vec::new();
    let mut held = 0;
    let eof = fill(&mut r, &mut first, &mut held, BATCH_LEN)?;
    first.truncate(held);
    if eof || opts.threads <= 1 {
        if eof {
            return blockify_sequential(&first, sink, opts);
        }
        return blockify_reader_sequential(r, first, sink, opts);
    }
    blockify_parallel(r, first, sink, opts, READ_LEN)
}

/// The pipeline of [`blockify_reader`] with read buffers of `read_len` bytes, `first`
/// holding the input's first bytes.
fn blockify_parallel<R: Read + Send>(
    r: R,
    first: Vec<u8>,
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
    read_len: usize,
) -> Result<BlockRef> {
    run_pipeline(sink, opts, move |tx, scanned| {
        ParallelReader::new(r, opts.chunker, read_len).run(first, tx, scanned)
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

/// Blockifies `data` on the calling thread.
fn blockify_sequential(
    data: &[u8],
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<BlockRef> {
    let mut tree = TreeBuilder::new(sink, opts.hash_alg, opts.chunker);
    for chunk in crate::chunk::chunks(opts.chunker, data) {
        tree.push(leaf_ref(chunk, opts.chunker, opts.hash_alg, sink)?)?;
    }
    tree.finish()
}

/// Blockifies a reader on the calling thread, `buf` holding its first bytes.
fn blockify_reader_sequential<R: Read>(
    mut r: R,
    mut buf: Vec<u8>,
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<BlockRef> {
    let mut tree = TreeBuilder::new(sink, opts.hash_alg, opts.chunker);
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

/// A read buffer that goes back to the reader's free list when the last batch using
/// it is done, so buffers are reused instead of allocated (and page-faulted) afresh.
#[derive(Default)]
struct ReadBuf {
    data: Vec<u8>,
    home: Option<Arc<FreeList>>,
}

/// Free read buffers, most recently freed last: reusing it first keeps the
/// buffers in the CPU cache.
type FreeList = parking_lot::Mutex<Vec<Vec<u8>>>;

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if let Some(home) = &self.home {
            let mut free = home.lock();
            // A full free list just drops the buffer.
            if free.len() < FREE_BUFFERS {
                free.push(std::mem::take(&mut self.data));
            }
        }
    }
}

/// The bytes of a [`Batch`].
enum BatchData<'a> {
    /// Part of the caller's buffer ([`blockify_bytes`]).
    Borrowed(&'a [u8]),
    /// A read buffer shared with other batches and the reader's pool.
    Shared(Arc<ReadBuf>),
}

impl BatchData<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            BatchData::Borrowed(b) => b,
            BatchData::Shared(b) => b,
        }
    }
}

/// Consecutive chunks handed to a worker.
struct Batch<'a> {
    seq: u64,
    /// A chunk assembled from the end of one read buffer and the start of the next
    /// (empty when none); it comes before the chunks in `data`.
    head: Vec<u8>,
    data: BatchData<'a>,
    /// The first chunk in `data` starts here.
    start: usize,
    /// End offset of each chunk within `data`, in order.
    ends: Vec<usize>,
    /// Leaf references already computed for the chunks of `ends` (missing or `None`:
    /// to compute).
    known: Vec<Option<BlockRef>>,
}

/// What the workers are given: leaves to hash and store, or a read buffer to scan for
/// chunk boundaries as if a chunk started at its first byte (see [`ParallelReader`]).
enum Work<'a> {
    Leaves(Batch<'a>),
    Scan(u64, Arc<ReadBuf>, usize),
}

/// A scanned read buffer: its sequence number, the cuts found (offsets in it, in
/// order), the leaf reference of the chunk ending at each cut (as if the buffer began
/// a chunk), and the chunker's state after its last byte.
type Scanned = (u64, Vec<usize>, Vec<BlockRef>, StreamChunker);

type Leaves = (u64, Result<Vec<BlockRef>>);

/// Runs `produce` (sending work) on a thread, workers scanning buffers and turning
/// batches into leaf references, and the tree builder on the calling thread. Scan
/// results go back to the producer through the receiver it is given.
fn run_pipeline<'a, P>(sink: &dyn BlockSink, opts: &BlockifyOptions, produce: P) -> Result<BlockRef>
where
    P: FnOnce(&Sender<Work<'a>>, &Receiver<Scanned>) -> Result<()> + Send,
{
    let workers = opts.threads.max(1);
    let (work_tx, work_rx) = bounded::<Work<'a>>(workers * 2);
    let (leaf_tx, leaf_rx) = bounded::<Leaves>(workers * 2);
    // Never full: the producer has at most SCAN_AHEAD scans outstanding.
    let (scan_tx, scan_rx) = bounded::<Scanned>(SCAN_AHEAD + 1);
    std::thread::scope(|s| {
        let producer = s.spawn(move || produce(&work_tx, &scan_rx));
        for _ in 0..workers {
            let (rx, tx, scanned) = (work_rx.clone(), leaf_tx.clone(), scan_tx.clone());
            s.spawn(move || worker(&rx, &tx, &scanned, sink, opts));
        }
        drop((work_rx, leaf_tx, scan_tx));
        let top = assemble(&leaf_rx, sink, opts);
        drop(leaf_rx);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Error::bad("blockify reader thread panicked")));
        produced?;
        top
    })
}

fn worker(
    rx: &Receiver<Work<'_>>,
    tx: &Sender<Leaves>,
    scanned: &Sender<Scanned>,
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) {
    for work in rx {
        let sent = match work {
            Work::Scan(seq, buf, len) => {
                let mut chunker = opts.chunker.chunker();
                let (cuts, leaves) = scan_and_hash(&mut chunker, &buf[..len], opts);
                drop(buf);
                scanned.send((seq, cuts, leaves, chunker)).is_ok()
            }
            Work::Leaves(batch) => tx
                .send((batch.seq, batch_leaves(&batch, sink, opts)))
                .is_ok(),
        };
        if !sent {
            return;
        }
    }
}

/// The leaf references of a batch's chunks, storing them through `sink`.
fn batch_leaves(
    batch: &Batch<'_>,
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<Vec<BlockRef>> {
    let data = batch.data.bytes();
    let mut leaves = Vec::with_capacity(batch.ends.len() + 1);
    if !batch.head.is_empty() {
        leaves.push(leaf_ref(&batch.head, opts.chunker, opts.hash_alg, sink)?);
    }
    let mut start = batch.start;
    for (i, &end) in batch.ends.iter().enumerate() {
        let chunk = &data[start..end];
        leaves.push(match batch.known.get(i) {
            Some(Some(leaf)) => {
                store_leaf(leaf, chunk, sink)?;
                leaf.clone()
            }
            _ => leaf_ref(chunk, opts.chunker, opts.hash_alg, sink)?,
        });
        start = end;
    }
    Ok(leaves)
}

/// Every cut `chunker` finds in `data` (offsets in it, in order; a cut may fall at
/// `data.len()`), leaving it in its state after the last byte, and the leaf reference
/// of the chunk ending at each cut, computed while the chunk is still in the cache.
fn scan_and_hash(
    chunker: &mut StreamChunker,
    data: &[u8],
    opts: &BlockifyOptions,
) -> (Vec<usize>, Vec<BlockRef>) {
    let (mut cuts, mut leaves) = (Vec::new(), Vec::new());
    let mut pos = 0;
    while pos < data.len() {
        let Some(k) = chunker.next_cut(&data[pos..]) else {
            break;
        };
        let start = pos;
        pos += k;
        if pos > start {
            leaves.push(leaf_plan(&data[start..pos], opts.chunker, opts.hash_alg));
            cuts.push(pos);
        }
    }
    (cuts, leaves)
}

/// For each chunk `[previous end or start, end)` of `ends`, the scan's leaf reference
/// when the scan found exactly that chunk.
fn known_leaves(
    start: usize,
    ends: &[usize],
    cuts: &[usize],
    leaves: &[BlockRef],
) -> Vec<Option<BlockRef>> {
    let mut from = start;
    ends.iter()
        .map(|&end| {
            let chunk_start = std::mem::replace(&mut from, end);
            let i = cuts.binary_search(&end).ok()?;
            let scan_start = if i == 0 { 0 } else { cuts[i - 1] };
            (chunk_start == scan_start)
                .then(|| leaves.get(i).cloned())
                .flatten()
        })
        .collect()
}

/// Bytes read per buffer by the parallel reader.
const READ_LEN: usize = 1 << 20;

/// Free read buffers kept for reuse.
const FREE_BUFFERS: usize = 8;

/// Read buffers scanned ahead of the one being stitched.
const SCAN_AHEAD: usize = 2;

/// Reads a stream in fixed-size buffers and chunks them on the workers in parallel,
/// giving exactly the sequential chunker's boundaries.
///
/// Every chunker here forgets everything at a cut (the state after a cut is a fresh
/// chunker's, whatever came before). So a worker scans each buffer as if a chunk began
/// at its first byte; the reader then "stitches": it continues the true chunker state
/// from the previous buffer into this one until the true chunker cuts where the
/// scan did (or at the buffer's start). From that cut on, the scan's cuts and final
/// state are the true ones. Usually that takes a chunk or two; on data where the two
/// never agree (e.g. a long run cut only at the maximum size) the reader chunks the
/// whole buffer itself, which is still correct.
struct ParallelReader<R> {
    r: R,
    read_len: usize,
    /// Buffers no batch holds any more, and where batches return them.
    free: Arc<FreeList>,
    /// The true chunker state at the end of the stitched input.
    chunker: StreamChunker,
    /// Bytes of the open chunk that lie in earlier buffers.
    carry: Vec<u8>,
    /// True when the last stitched byte ended a chunk.
    at_cut: bool,
    seq: u64,
}

impl<R: Read> ParallelReader<R> {
    fn new(r: R, kind: ChunkerKind, read_len: usize) -> Self {
        ParallelReader {
            r,
            read_len: read_len.max(1),
            free: Arc::default(),
            chunker: kind.chunker(),
            carry: Vec::new(),
            at_cut: true,
            seq: 0,
        }
    }

    /// Reads everything (`first` is already read), sending scans and leaf batches.
    fn run(
        mut self,
        first: Vec<u8>,
        tx: &Sender<Work<'_>>,
        scanned: &Receiver<Scanned>,
    ) -> Result<()> {
        let mut queued = std::collections::VecDeque::new();
        let mut results = BTreeMap::new();
        let (mut next_scan, mut eof) = (0u64, false);
        let mut pending_first = Some(first).filter(|f| !f.is_empty());
        loop {
            while queued.len() < SCAN_AHEAD && !eof {
                let (buf, len, end) = match pending_first.take() {
                    Some(f) => {
                        let len = f.len();
                        (self.wrap(f), len, false)
                    }
                    None => self.read_buffer()?,
                };
                eof = end;
                if len == 0 {
                    break;
                }
                if tx.send(Work::Scan(next_scan, buf.clone(), len)).is_err() {
                    return Ok(());
                }
                queued.push_back((next_scan, buf, len));
                next_scan += 1;
            }
            let Some((seq, buf, len)) = queued.pop_front() else {
                break;
            };
            let (cuts, leaves, end_state) = loop {
                if let Some(r) = results.remove(&seq) {
                    break r;
                }
                match scanned.recv() {
                    Ok((s, cuts, leaves, st)) => results.insert(s, (cuts, leaves, st)),
                    // The workers stopped: the assembler reports why.
                    Err(_) => return Ok(()),
                };
            };
            if !self.stitch(&buf, len, (&cuts, &leaves), end_state, tx) {
                return Ok(());
            }
        }
        if !self.carry.is_empty() {
            let head = std::mem::take(&mut self.carry);
            let _ = self.send(tx, head, None, 0, Vec::new(), Vec::new());
        }
        Ok(())
    }

    /// A buffer of `read_len` bytes (fewer at the end), reusing one no batch holds.
    /// Returns it, the bytes read, and whether the input ended.
    fn read_buffer(&mut self) -> Result<(Arc<ReadBuf>, usize, bool)> {
        let mut buf = self.free.lock().pop().unwrap_or_default();
        let mut held = 0;
        let eof = fill(&mut self.r, &mut buf, &mut held, self.read_len)?;
        Ok((self.wrap(buf), held, eof))
    }

    fn wrap(&self, data: Vec<u8>) -> Arc<ReadBuf> {
        Arc::new(ReadBuf {
            data,
            home: Some(self.free.clone()),
        })
    }

    /// Finds the true cuts in `buf[..len]` given the scan's `cuts` and `end_state`, and
    /// sends the chunks they complete. Returns false when the workers have stopped.
    fn stitch(
        &mut self,
        buf: &Arc<ReadBuf>,
        len: usize,
        (cuts, leaves): (&[usize], &[BlockRef]),
        end_state: StreamChunker,
        tx: &Sender<Work<'_>>,
    ) -> bool {
        let data = &buf[..len];
        let mut truth = Vec::new();
        let mut synced = self.at_cut;
        let mut pos = 0;
        while !synced && pos < len {
            let Some(k) = self.chunker.next_cut(&data[pos..]) else {
                break;
            };
            pos += k;
            if truth.last() != Some(&pos) {
                truth.push(pos);
            }
            synced = pos == 0 || cuts.binary_search(&pos).is_ok();
        }
        if synced {
            let from = truth.last().copied().unwrap_or(0);
            truth.extend(cuts.iter().copied().filter(|&c| c > from));
            self.chunker = end_state;
        }
        self.at_cut = truth.last() == Some(&len);
        // The open chunk's earlier bytes complete with the first cut.
        let (head, start, ends) = match truth.split_first() {
            None => {
                self.carry.extend_from_slice(data);
                return true;
            }
            Some((&first, rest)) => {
                let mut head = std::mem::take(&mut self.carry);
                let start = if head.is_empty() {
                    0
                } else {
                    head.extend_from_slice(&data[..first]);
                    first
                };
                let ends = if start == 0 {
                    truth.clone()
                } else {
                    rest.to_vec()
                };
                (head, start, ends)
            }
        };
        let last = truth.last().copied().unwrap_or(0);
        self.carry.extend_from_slice(&data[last..]);
        let known = known_leaves(start, &ends, cuts, leaves);
        self.send(tx, head, Some(buf.clone()), start, ends, known)
    }

    /// Sends a batch; false when the workers have stopped.
    fn send(
        &mut self,
        tx: &Sender<Work<'_>>,
        head: Vec<u8>,
        data: Option<Arc<ReadBuf>>,
        start: usize,
        ends: Vec<usize>,
        known: Vec<Option<BlockRef>>,
    ) -> bool {
        let data = BatchData::Shared(data.unwrap_or_default());
        let batch = Batch {
            seq: self.seq,
            head,
            data,
            start,
            ends,
            known,
        };
        self.seq += 1;
        tx.send(Work::Leaves(batch)).is_ok()
    }
}

/// Feeds leaves to the tree builder in batch order.
fn assemble(
    rx: &Receiver<Leaves>,
    sink: &dyn BlockSink,
    opts: &BlockifyOptions,
) -> Result<BlockRef> {
    let mut tree = TreeBuilder::new(sink, opts.hash_alg, opts.chunker);
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

    /// Random bytes with runs of one octet (where the parallel scan and the true
    /// chunker may never agree) and repeats.
    fn input(seed: u64, len: usize, runs: &[(usize, usize, u8)]) -> Vec<u8> {
        let mut x = seed | 1;
        let mut data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for &(at, n, octet) in runs {
            let at = at % len.max(1);
            let end = (at + n).min(len);
            data[at..end].fill(octet);
        }
        data
    }

    fn opts(kind: ChunkerKind) -> BlockifyOptions {
        BlockifyOptions {
            chunker: kind,
            hash_alg: HashAlg::Blake3,
            threads: 2,
        }
    }

    /// The top reference of a sequential (single-threaded) run.
    fn reference(data: &[u8], kind: ChunkerKind) -> BlockRef {
        let store = MemoryStore::new(HashAlg::Blake3);
        let sequential = BlockifyOptions {
            threads: 1,
            ..opts(kind)
        };
        blockify_bytes(data, &store, &sequential).unwrap()
    }

    fn kinds() -> [ChunkerKind; 2] {
        [
            ChunkerKind::Default(ChunkerParams::new(64, 256, 1024).unwrap()),
            ChunkerKind::Csvt,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Parallel chunking with any read-buffer size and first-read length gives the
        /// sequential chunker's boundaries, hence the same top reference.
        #[test]
        fn parallel_chunking_matches_sequential(
            seed in any::<u64>(),
            len in 0usize..60_000,
            read_len in 1usize..9_000,
            first_len in 0usize..5_000,
            runs in proptest::collection::vec((any::<usize>(), 0usize..20_000, any::<u8>()), 0..3),
        ) {
            let data = input(seed, len, &runs);
            for kind in kinds() {
                let expect = reference(&data, kind);
                let first = data[..first_len.min(len)].to_vec();
                let rest = &data[first.len()..];
                let store = MemoryStore::new(HashAlg::Blake3);
                let top = blockify_parallel(rest, first, &store, &opts(kind), read_len).unwrap();
                prop_assert_eq!(top, expect);
            }
        }
    }

    #[test]
    fn parallel_reader_is_used_for_large_inputs_and_agrees() {
        let data = input(
            7,
            5 * READ_LEN + 12_345,
            &[(3 * READ_LEN - 100, 600_000, 0)],
        );
        for kind in [ChunkerKind::default(), ChunkerKind::Csvt] {
            let store = MemoryStore::new(HashAlg::Blake3);
            let top = blockify_reader(&data[..], &store, &opts(kind)).unwrap();
            assert_eq!(top, reference(&data, kind));
            assert_eq!(crate::read::read_all(&store, &top).unwrap(), data);
        }
    }
}
