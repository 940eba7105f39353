//! Reading a [`BlockRef`]'s content back through a [`Store`]: whole, by range,
//! streaming ([`BlockReader`]) or written out with parallel prefetch ([`write_to`]).
//!
//! Every fetched block is checked against the span its reference claims: a stored
//! block of the wrong length, or an indirect block whose children's spans do not
//! add up, is [`Error::Corrupt`]; a missing block is [`Error::NotFound`].

use crate::block::BlockRef;
use crate::error::{Error, IoContext, Result};
use crate::hash::HashCode;
use crate::store::Store;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// Deepest indirect nesting accepted; real trees are a handful of levels deep.
pub const MAX_TREE_DEPTH: usize = 48;

/// Ranges at least this long are written with parallel prefetch.
const PARALLEL_MIN: u64 = 1 << 20;

/// Jobs (about [`JOB_BYTES`] each) fetched ahead of the writer in [`write_to`].
const PREFETCH_WINDOW: usize = 4;

/// Threads fetching leaves in [`write_to`].
const FETCH_THREADS: usize = 2;

/// A stored leaf block, checked to hold exactly `span` bytes.
///
/// Fails with [`Error::NotFound`] when absent, [`Error::Corrupt`] on a length mismatch.
pub fn fetch_leaf(store: &dyn Store, hash: &HashCode, span: u64) -> Result<Vec<u8>> {
    let data = store.get_required(hash)?;
    check_leaf_len(hash, data.len(), span)?;
    Ok(data)
}

/// Fails with [`Error::Corrupt`] unless the block `hash`, `len` bytes long, has the
/// length `span` its reference claims.
pub fn check_leaf_len(hash: &HashCode, len: usize, span: u64) -> Result<()> {
    if len as u64 != span {
        return Err(Error::corrupt(
            hash.to_string(),
            0,
            format!("block holds {len} bytes, its reference says {span}"),
        ));
    }
    Ok(())
}

/// The children of an indirect block, checked to add up to `span`.
///
/// Fails with [`Error::NotFound`] when absent, [`Error::Corrupt`] when the block
/// does not decode or its children's spans do not total `span`.
pub fn fetch_children(store: &dyn Store, hash: &HashCode, span: u64) -> Result<Vec<BlockRef>> {
    let data = store.get_required(hash)?;
    let children = BlockRef::decode_all(&data)
        .map_err(|e| Error::corrupt(hash.to_string(), 0, format!("indirect block: {e}")))?;
    let total = children
        .iter()
        .try_fold(0u64, |acc, c| acc.checked_add(c.span()));
    if total != Some(span) {
        return Err(Error::corrupt(
            hash.to_string(),
            0,
            format!("indirect block children total {total:?} bytes, its reference says {span}"),
        ));
    }
    Ok(children)
}

/// Most hole ranges [`zero_spans`] appends while listing one tree (each indirect block's
/// own list is built once, then copied wherever the block recurs). A real sparse file
/// has a handful of holes; a tree built to repeat a small hole through shared indirect
/// blocks could otherwise describe more ranges than there are atoms.
pub const MAX_ZERO_SPAN_WORK: usize = 1 << 22;

/// The byte ranges of `r` that are runs of zeros stored as RLE references (holes),
/// sorted, disjoint and with neighbours merged. Only indirect blocks are fetched, never
/// leaves, and each distinct indirect block once, so this costs a few reads even for a
/// large file. Fails as [`fetch_children`], or with [`Error::Corrupt`] for a tree
/// nested too deeply or listing more than [`MAX_ZERO_SPAN_WORK`] ranges.
pub fn zero_spans(store: &dyn Store, r: &BlockRef) -> Result<Vec<std::ops::Range<u64>>> {
    let mut z = ZeroSpans {
        store,
        known: HashMap::new(),
        work: 0,
    };
    let mut out = Vec::new();
    z.append(r, 0, 0, &mut out)?;
    Ok(out)
}

/// State of one [`zero_spans`] listing.
struct ZeroSpans<'s> {
    store: &'s dyn Store,
    /// Each indirect block's holes, relative to its start, by hashcode and the span
    /// its reference claims (a reference with another span is checked anew).
    known: HashMap<(HashCode, u64), Arc<[std::ops::Range<u64>]>>,
    /// Ranges appended so far.
    work: usize,
}

impl ZeroSpans<'_> {
    /// Appends the holes of `r`, placed at `at`, to `out` (merging with its last range).
    fn append(
        &mut self,
        r: &BlockRef,
        at: u64,
        depth: usize,
        out: &mut Vec<std::ops::Range<u64>>,
    ) -> Result<()> {
        match r {
            BlockRef::Indirect { hash, span } if *span > 0 => {
                for h in self.holes(hash, *span, depth)?.iter() {
                    self.push(out, at + h.start..at + h.end)?;
                }
                Ok(())
            }
            BlockRef::Rle { octet: 0, span } if *span > 0 => self.push(out, at..at + span),
            _ => Ok(()),
        }
    }

    /// The holes of the indirect block `hash`, relative to its start.
    fn holes(
        &mut self,
        hash: &HashCode,
        span: u64,
        depth: usize,
    ) -> Result<Arc<[std::ops::Range<u64>]>> {
        if let Some(h) = self.known.get(&(*hash, span)) {
            return Ok(h.clone());
        }
        if depth >= MAX_TREE_DEPTH {
            return Err(Error::corrupt(
                hash.to_string(),
                0,
                "indirect tree too deep",
            ));
        }
        let mut list = Vec::new();
        let mut at = 0;
        for c in fetch_children(self.store, hash, span)? {
            self.append(&c, at, depth + 1, &mut list)?;
            at += c.span();
        }
        let list: Arc<[std::ops::Range<u64>]> = list.into();
        self.known.insert((*hash, span), list.clone());
        Ok(list)
    }

    fn push(&mut self, out: &mut Vec<std::ops::Range<u64>>, r: std::ops::Range<u64>) -> Result<()> {
        self.work += 1;
        if self.work > MAX_ZERO_SPAN_WORK {
            return Err(Error::corrupt(
                "block tree",
                0,
                format!("lists more than {MAX_ZERO_SPAN_WORK} runs of zeros"),
            ));
        }
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
        Ok(())
    }
}

/// The whole content of `r`. Fails as [`write_to`] does.
pub fn read_all(store: &dyn Store, r: &BlockRef) -> Result<Vec<u8>> {
    read_range(store, r, 0, r.span())
}

/// Up to `len` bytes of `r`'s content from `offset`, fetching only the leaves that
/// overlap the range. Like `pread`, the range is clipped to the content's end.
///
/// Fails with [`Error::NotFound`] for a missing block or [`Error::Corrupt`] for one
/// that does not match its reference.
pub fn read_range(store: &dyn Store, r: &BlockRef, offset: u64, len: u64) -> Result<Vec<u8>> {
    let (start, end) = clip(r, offset, len);
    // A hostile reference may claim an absurd span: grow as data arrives.
    let mut out = Vec::with_capacity((end - start).min(64 << 20) as usize);
    write_range_to(store, r, start, end - start, &mut out)?;
    Ok(out)
}

/// Writes the whole content of `r` to `w`, returning the bytes written.
///
/// Large contents are fetched by background threads a few leaves ahead, so fetching
/// (and decompressing) leaf N+1 overlaps writing leaf N. Fails on a missing or
/// corrupt block, or when `w` fails.
pub fn write_to<W: Write + ?Sized>(store: &dyn Store, r: &BlockRef, w: &mut W) -> Result<u64> {
    write_range_to(store, r, 0, r.span(), w)
}

/// Writes up to `len` bytes of `r`'s content from `offset` to `w`; see [`write_to`].
pub fn write_range_to<W: Write + ?Sized>(
    store: &dyn Store,
    r: &BlockRef,
    offset: u64,
    len: u64,
    w: &mut W,
) -> Result<u64> {
    let (start, end) = clip(r, offset, len);
    if end - start < PARALLEL_MIN || !matches!(r, BlockRef::Indirect { .. } | BlockRef::Sub { .. })
    {
        let mut written = 0;
        walk(store, r, start, end, 0, &mut |piece| {
            written += write_piece(store, &piece, w)?;
            Ok(())
        })?;
        return Ok(written);
    }
    write_parallel(store, r, start, end, w)
}

/// `[offset, offset + len)` clipped to `r`'s content.
fn clip(r: &BlockRef, offset: u64, len: u64) -> (u64, u64) {
    let span = r.span();
    let start = offset.min(span);
    (start, start.saturating_add(len).min(span))
}

/// The part `[off, off + len)` of one leaf.
#[derive(Debug)]
enum Piece {
    Stored {
        hash: HashCode,
        span: u64,
        off: u64,
        len: u64,
    },
    Fill {
        octet: u8,
        len: u64,
    },
    Literal {
        data: Arc<[u8]>,
        off: u64,
        len: u64,
    },
}

/// Calls `f` with the leaf pieces covering `[start, end)` of `r`, in order.
fn walk(
    store: &dyn Store,
    r: &BlockRef,
    start: u64,
    end: u64,
    depth: usize,
    f: &mut dyn FnMut(Piece) -> Result<()>,
) -> Result<()> {
    if start >= end {
        return Ok(());
    }
    if depth > MAX_TREE_DEPTH {
        return Err(Error::corrupt(
            format!("{r}"),
            0,
            "block tree nests too deeply",
        ));
    }
    let len = end - start;
    match r {
        BlockRef::Hash { hash, span } => f(Piece::Stored {
            hash: *hash,
            span: *span,
            off: start,
            len,
        }),
        BlockRef::Rle { octet, .. } => f(Piece::Fill { octet: *octet, len }),
        BlockRef::Literal(d) => f(Piece::Literal {
            data: d.clone(),
            off: start,
            len,
        }),
        BlockRef::Sub {
            block,
            offset,
            span,
        } => {
            BlockRef::check_sub(block, *offset, *span)?;
            walk(store, block, offset + start, offset + end, depth + 1, f)
        }
        BlockRef::Indirect { hash, span } => {
            let mut base = 0u64;
            for child in fetch_children(store, hash, *span)? {
                let (cs, ce) = (base, base + child.span());
                base = ce;
                if ce <= start || cs == ce {
                    continue;
                }
                if cs >= end {
                    break;
                }
                walk(
                    store,
                    &child,
                    start.max(cs) - cs,
                    end.min(ce) - cs,
                    depth + 1,
                    f,
                )?;
            }
            Ok(())
        }
    }
}

/// The bytes of a piece that are not a fill.
fn piece_bytes(store: &dyn Store, piece: &Piece) -> Result<Vec<u8>> {
    match piece {
        Piece::Stored {
            hash,
            span,
            off,
            len,
        } => {
            let mut data = fetch_leaf(store, hash, *span)?;
            if *off == 0 && *len == *span {
                return Ok(data);
            }
            data.truncate((off + len) as usize);
            data.drain(..*off as usize);
            Ok(data)
        }
        Piece::Literal { data, off, len } => Ok(data[*off as usize..(off + len) as usize].to_vec()),
        Piece::Fill { octet, len } => Ok(vec![*octet; *len as usize]),
    }
}

fn write_fill<W: Write + ?Sized>(octet: u8, mut len: u64, w: &mut W) -> Result<u64> {
    let buf = [octet; 64 << 10];
    let total = len;
    while len > 0 {
        let n = len.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n])
            .ctx(|| "writing block content".to_string())?;
        len -= n as u64;
    }
    Ok(total)
}

fn write_piece<W: Write + ?Sized>(store: &dyn Store, piece: &Piece, w: &mut W) -> Result<u64> {
    if let Piece::Fill { octet, len } = piece {
        return write_fill(*octet, *len, w);
    }
    let data = piece_bytes(store, piece)?;
    w.write_all(&data)
        .ctx(|| "writing block content".to_string())?;
    Ok(data.len() as u64)
}

/// One written piece of a fetched job.
enum Fetched {
    /// `buf[range]` of the job's buffer.
    Bytes(std::ops::Range<usize>),
    /// Bytes fetched on their own (literals, and every piece after a failed batch).
    Owned(Vec<u8>),
    Fill {
        octet: u8,
        len: u64,
    },
}

/// A job's fetched pieces; `buf` goes back to the fetchers once written.
struct FetchedJob {
    buf: Vec<u8>,
    pieces: Vec<Fetched>,
}

/// Fetches a job's stored leaves with one batched store call into `buf` (reused: no
/// allocation or zeroing once it has grown). When the batch fails, the pieces are
/// fetched one at a time so that everything before the failing piece is still written.
fn fetch_job(
    store: &dyn Store,
    pieces: Vec<Piece>,
    mut buf: Vec<u8>,
) -> (FetchedJob, Option<Error>) {
    let hashes: Vec<HashCode> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Stored { hash, .. } => Some(*hash),
            _ => None,
        })
        .collect();
    let mut ranges = Vec::with_capacity(hashes.len());
    let batched = hashes.is_empty() || store.get_many_into(&hashes, &mut buf, &mut ranges).is_ok();
    let mut out = Vec::with_capacity(pieces.len());
    let mut ranges = ranges.into_iter();
    for p in pieces {
        let fetched = match (&p, batched) {
            (Piece::Fill { octet, len }, _) => Ok(Fetched::Fill {
                octet: *octet,
                len: *len,
            }),
            (
                Piece::Stored {
                    hash,
                    span,
                    off,
                    len,
                },
                true,
            ) => stored_range(hash, *span, *off, *len, ranges.next()).map(Fetched::Bytes),
            _ => piece_bytes(store, &p).map(Fetched::Owned),
        };
        match fetched {
            Ok(f) => out.push(f),
            Err(e) => return (FetchedJob { buf, pieces: out }, Some(e)),
        }
    }
    (FetchedJob { buf, pieces: out }, None)
}

/// The part `[off, off + len)` of a stored leaf fetched at `range`, checked to be `span` long.
fn stored_range(
    hash: &HashCode,
    span: u64,
    off: u64,
    len: u64,
    range: Option<std::ops::Range<usize>>,
) -> Result<std::ops::Range<usize>> {
    let range = range.ok_or_else(|| Error::bad("batched read lost a block"))?;
    if range.len() as u64 != span {
        return Err(Error::corrupt(
            hash.to_string(),
            0,
            format!(
                "block holds {} bytes, its reference says {span}",
                range.len()
            ),
        ));
    }
    Ok(range.start + off as usize..range.start + (off + len) as usize)
}

/// Consecutive pieces, then the error that ended the walk or the fetching, if any.
/// Batching keeps thread hand-offs to a few per MiB rather than one per leaf.
type Job = (u64, Vec<Piece>, Option<Error>);
type Done = (u64, FetchedJob, Option<Error>);

/// Content bytes per job: large enough to amortize hand-offs (and read neighbouring
/// records with one call), small enough that the few job buffers in flight stay in
/// the CPU cache between the read, the checksum and the write.
const JOB_BYTES: u64 = 256 << 10;

/// Most pieces per job (many small leaves still make short jobs).
const JOB_PIECES: usize = 64;

fn piece_len(p: &Piece) -> u64 {
    match p {
        Piece::Stored { len, .. } | Piece::Fill { len, .. } | Piece::Literal { len, .. } => *len,
    }
}

/// [`write_range_to`] with a tree-walking thread, fetch threads and the calling
/// thread writing pieces in order; `credits` keeps the walker a bounded window ahead.
fn write_parallel<W: Write + ?Sized>(
    store: &dyn Store,
    r: &BlockRef,
    start: u64,
    end: u64,
    w: &mut W,
) -> Result<u64> {
    let (job_tx, job_rx) = bounded::<Job>(PREFETCH_WINDOW);
    let (done_tx, done_rx) = bounded::<Done>(PREFETCH_WINDOW);
    let (credit_tx, credit_rx) = bounded::<()>(PREFETCH_WINDOW);
    // Written job buffers go back to the fetchers.
    let (spare_tx, spare_rx) = bounded::<Vec<u8>>(PREFETCH_WINDOW + FETCH_THREADS);
    for _ in 0..PREFETCH_WINDOW {
        let _ = credit_tx.send(());
    }
    std::thread::scope(|s| {
        s.spawn(move || walk_jobs(store, r, start, end, &job_tx, &credit_rx));
        for _ in 0..FETCH_THREADS {
            let (rx, tx, spare) = (job_rx.clone(), done_tx.clone(), spare_rx.clone());
            s.spawn(move || fetch_jobs(store, &rx, &tx, &spare));
        }
        drop((job_rx, done_tx, spare_rx));
        let written = write_in_order(&done_rx, &credit_tx, &spare_tx, w);
        // On an early error, closing these unblocks the walker and the fetchers.
        drop((done_rx, credit_tx));
        written
    })
}

fn walk_jobs(
    store: &dyn Store,
    r: &BlockRef,
    start: u64,
    end: u64,
    tx: &Sender<Job>,
    credits: &Receiver<()>,
) {
    let mut seq = 0;
    let mut send = |pieces: Vec<Piece>, err: Option<Error>| -> Result<()> {
        credits.recv().map_err(|_| Error::Closed)?;
        tx.send((seq, pieces, err)).map_err(|_| Error::Closed)?;
        seq += 1;
        Ok(())
    };
    let (mut pieces, mut bytes) = (Vec::new(), 0);
    let walked = walk(store, r, start, end, 0, &mut |piece| {
        bytes += piece_len(&piece);
        pieces.push(piece);
        if bytes >= JOB_BYTES || pieces.len() >= JOB_PIECES {
            bytes = 0;
            send(std::mem::take(&mut pieces), None)?;
        }
        Ok(())
    });
    // The writer reports a walk error after writing everything before it.
    let err = walked.err().filter(|e| !matches!(e, Error::Closed));
    if !pieces.is_empty() || err.is_some() {
        let _ = send(pieces, err);
    }
}

fn fetch_jobs(store: &dyn Store, rx: &Receiver<Job>, tx: &Sender<Done>, spare: &Receiver<Vec<u8>>) {
    for (seq, pieces, err) in rx {
        let buf = spare.try_recv().unwrap_or_default();
        let (job, fetch_err) = fetch_job(store, pieces, buf);
        // A walk error comes after the job's pieces; a fetch error ends the job early.
        if tx.send((seq, job, fetch_err.or(err))).is_err() {
            return;
        }
    }
}

fn write_in_order<W: Write + ?Sized>(
    rx: &Receiver<Done>,
    credits: &Sender<()>,
    spare: &Sender<Vec<u8>>,
    w: &mut W,
) -> Result<u64> {
    let mut waiting = BTreeMap::new();
    let (mut next, mut written) = (0u64, 0u64);
    for (seq, job, err) in rx {
        waiting.insert(seq, (job, err));
        while let Some((job, err)) = waiting.remove(&next) {
            for f in &job.pieces {
                let bytes = match f {
                    Fetched::Bytes(r) => &job.buf[r.clone()],
                    Fetched::Owned(v) => v.as_slice(),
                    Fetched::Fill { octet, len } => {
                        written += write_fill(*octet, *len, w)?;
                        continue;
                    }
                };
                w.write_all(bytes)
                    .ctx(|| "writing block content".to_string())?;
                written += bytes.len() as u64;
            }
            // A full spare queue just drops the buffer.
            let _ = spare.try_send(job.buf);
            if let Some(e) = err {
                return Err(e);
            }
            next += 1;
            let _ = credits.send(());
        }
    }
    Ok(written)
}

/// Checks that the whole tree under `r` is present, marking each verified indirect
/// block complete in the store (and skipping blocks already marked).
///
/// Returns false when some block is missing. Fails when a present indirect block is
/// corrupt or the store fails.
pub fn ensure_complete(store: &dyn Store, r: &BlockRef) -> Result<bool> {
    complete_at(store, r, 0)
}

fn complete_at(store: &dyn Store, r: &BlockRef, depth: usize) -> Result<bool> {
    if depth > MAX_TREE_DEPTH {
        return Err(Error::corrupt(
            format!("{r}"),
            0,
            "block tree nests too deeply",
        ));
    }
    match r {
        BlockRef::Hash { hash, .. } => store.contains(hash),
        BlockRef::Rle { .. } | BlockRef::Literal(_) => Ok(true),
        BlockRef::Sub { block, .. } => complete_at(store, block, depth + 1),
        BlockRef::Indirect { hash, span } => {
            if store.is_complete(hash)? {
                return Ok(true);
            }
            let children = match fetch_children(store, hash, *span) {
                Err(Error::NotFound(_)) => return Ok(false),
                other => other?,
            };
            for child in &children {
                if !complete_at(store, child, depth + 1)? {
                    return Ok(false);
                }
            }
            store.set_complete(hash)?;
            Ok(true)
        }
    }
}

/// A decoded indirect block: its children and where each starts.
#[derive(Debug)]
struct Node {
    children: Vec<BlockRef>,
    starts: Vec<u64>,
}

/// The leaf holding the current position, in the reader's coordinates.
#[derive(Debug)]
struct Leaf {
    start: u64,
    end: u64,
    data: LeafData,
}

#[derive(Debug)]
enum LeafData {
    Fill(u8),
    /// `buf[skip]` is the byte at `start`.
    Bytes {
        buf: Arc<[u8]>,
        skip: usize,
    },
}

/// Indirect blocks kept decoded by a [`BlockReader`].
const NODE_CACHE: usize = 64;

/// A streaming reader over a reference's content: [`Read`] + [`Seek`].
///
/// It fetches one leaf at a time (reads inside the current leaf touch no store) and
/// keeps recently decoded indirect blocks, so sequential reads cost one fetch per
/// leaf and a seek costs one path walk. Store errors surface as `io::Error`s
/// wrapping the engine [`Error`].
#[derive(Debug)]
pub struct BlockReader<'s> {
    store: &'s dyn Store,
    root: BlockRef,
    pos: u64,
    leaf: Option<Leaf>,
    nodes: HashMap<HashCode, Arc<Node>>,
}

impl<'s> BlockReader<'s> {
    /// A reader at offset 0 of `root`'s content.
    pub fn new(store: &'s dyn Store, root: BlockRef) -> Self {
        BlockReader {
            store,
            root,
            pos: 0,
            leaf: None,
            nodes: HashMap::new(),
        }
    }

    /// The content length.
    pub fn len(&self) -> u64 {
        self.root.span()
    }

    /// True when the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current offset.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn node(&mut self, hash: &HashCode, span: u64) -> Result<Arc<Node>> {
        if let Some(n) = self.nodes.get(hash) {
            return Ok(n.clone());
        }
        let children = fetch_children(self.store, hash, span)?;
        let mut starts = Vec::with_capacity(children.len());
        let mut at = 0;
        for c in &children {
            starts.push(at);
            at += c.span();
        }
        if self.nodes.len() >= NODE_CACHE {
            self.nodes.clear();
        }
        let node = Arc::new(Node { children, starts });
        self.nodes.insert(*hash, node.clone());
        Ok(node)
    }

    /// The leaf of `r` holding offset `p` (< `r.span()`), in `r`'s coordinates.
    fn locate(&mut self, r: &BlockRef, p: u64, depth: usize) -> Result<Leaf> {
        if depth > MAX_TREE_DEPTH {
            return Err(Error::corrupt(
                format!("{r}"),
                0,
                "block tree nests too deeply",
            ));
        }
        let span = r.span();
        Ok(match r {
            BlockRef::Hash { hash, span } => {
                let buf = fetch_leaf(self.store, hash, *span)?.into();
                Leaf {
                    start: 0,
                    end: *span,
                    data: LeafData::Bytes { buf, skip: 0 },
                }
            }
            BlockRef::Rle { octet, .. } => Leaf {
                start: 0,
                end: span,
                data: LeafData::Fill(*octet),
            },
            BlockRef::Literal(d) => Leaf {
                start: 0,
                end: span,
                data: LeafData::Bytes {
                    buf: d.clone(),
                    skip: 0,
                },
            },
            BlockRef::Indirect { hash, span } => {
                let node = self.node(hash, *span)?;
                // The last child starting at or before p that is not empty.
                let i = node.starts.partition_point(|&s| s <= p).saturating_sub(1);
                let i = (i..node.children.len())
                    .find(|&j| node.starts[j] + node.children[j].span() > p)
                    .ok_or_else(|| Error::corrupt(hash.to_string(), 0, "offset beyond children"))?;
                let base = node.starts[i];
                let leaf = self.locate(&node.children[i], p - base, depth + 1)?;
                Leaf {
                    start: leaf.start + base,
                    end: leaf.end + base,
                    data: leaf.data,
                }
            }
            BlockRef::Sub {
                block,
                offset,
                span,
            } => {
                BlockRef::check_sub(block, *offset, *span)?;
                let leaf = self.locate(block, offset + p, depth + 1)?;
                let start = leaf.start.max(*offset);
                let data = match leaf.data {
                    LeafData::Bytes { buf, skip } => LeafData::Bytes {
                        buf,
                        skip: skip + (start - leaf.start) as usize,
                    },
                    fill => fill,
                };
                Leaf {
                    start: start - offset,
                    end: leaf.end.min(offset + span) - offset,
                    data,
                }
            }
        })
    }
}

impl Read for BlockReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.len() {
            return Ok(0);
        }
        let pos = self.pos;
        let hit = self
            .leaf
            .as_ref()
            .is_some_and(|l| l.start <= pos && pos < l.end);
        if !hit {
            let root = self.root.clone();
            let leaf = self.locate(&root, pos, 0).map_err(io::Error::other)?;
            self.leaf = Some(leaf);
        }
        let Some(leaf) = self.leaf.as_ref() else {
            return Ok(0);
        };
        let n = out.len().min((leaf.end - pos) as usize);
        match &leaf.data {
            LeafData::Fill(octet) => out[..n].fill(*octet),
            LeafData::Bytes { buf, skip } => {
                let from = skip + (pos - leaf.start) as usize;
                out[..n].copy_from_slice(&buf[from..from + n]);
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlockReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the content",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockify::{blockify_bytes, BlockifyOptions};
    use crate::hash::HashAlg;
    use crate::store::{DataDir, DataDirOptions, MemoryStore};
    use rand::{RngCore, SeedableRng};

    #[test]
    fn a_sub_block_built_past_its_block_is_refused_by_every_reader() {
        // Decoders refuse such a sub-block; one built by hand reached the readers, which
        // sliced a literal out of range (a panic) or returned short content.
        let store = MemoryStore::new(HashAlg::Blake3);
        let data = b"twelve bytes".to_vec();
        let hash = store.add(&data).unwrap();
        let stored = BlockRef::Hash { hash, span: 12 };
        let indirect_data = [stored.clone(), BlockRef::literal(b"abc")]
            .iter()
            .flat_map(BlockRef::encode)
            .collect::<Vec<u8>>();
        let indirect = BlockRef::Indirect {
            hash: store.add(&indirect_data).unwrap(),
            span: 15,
        };
        for block in [BlockRef::literal(b"abc"), stored, indirect] {
            let bad = BlockRef::Sub {
                block: Arc::new(block.clone()),
                offset: block.span() - 1,
                span: 10,
            };
            let err = read_all(&store, &bad).unwrap_err();
            assert!(err.to_string().contains("exceeds"), "{err}");
            let mut r = BlockReader::new(&store, bad.clone());
            assert!(r.read_to_end(&mut Vec::new()).is_err());
            assert!(bad.sub(0, 1).is_err(), "sub of {bad}");
            // The same range inside the block reads.
            let good = block.sub(block.span() - 1, 1).unwrap();
            assert_eq!(read_all(&store, &good).unwrap().len(), 1);
        }
    }

    /// 6 MiB: random, a zero run (RLE), text (compressed records), random again.
    fn content() -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut data = vec![0u8; 6 << 20];
        rng.fill_bytes(&mut data[..2 << 20]);
        for (i, b) in data[3 << 20..4 << 20].iter_mut().enumerate() {
            *b = b"lorem ipsum dolor sit amet "[i % 27];
        }
        rng.fill_bytes(&mut data[4 << 20..]);
        data
    }

    #[test]
    fn parallel_write_matches_content_for_whole_and_partial_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = DataDir::create(dir.path().join("s"), DataDirOptions::default()).unwrap();
        let data = content();
        let top = blockify_bytes(&data, &store, &BlockifyOptions::default()).unwrap();
        store.commit().unwrap();
        let mut out = Vec::new();
        assert_eq!(write_to(&store, &top, &mut out).unwrap(), data.len() as u64);
        assert!(out == data);
        for (off, len) in [(1, 5 << 20), (123_457, 3 << 20), ((6 << 20) - 9, 100)] {
            let mut out = Vec::new();
            write_range_to(&store, &top, off, len, &mut out).unwrap();
            let end = (off + len).min(data.len() as u64) as usize;
            assert!(out == data[off as usize..end]);
        }
    }

    #[test]
    fn zero_spans_are_the_rle_holes_in_file_order() {
        let store = MemoryStore::new(HashAlg::Blake3);
        let opts = BlockifyOptions::default();
        let data = content();
        let top = blockify_bytes(&data, &store, &opts).unwrap();
        let spans = zero_spans(&store, &top).unwrap();
        for w in spans.windows(2) {
            assert!(
                w[0].end < w[1].start,
                "not sorted, disjoint and merged: {spans:?}"
            );
        }
        for r in &spans {
            assert!(data[r.start as usize..r.end as usize]
                .iter()
                .all(|&b| b == 0));
        }
        // The 1 MiB zero run loses at most a maximum-size chunk at each edge.
        let total: u64 = spans.iter().map(|r| r.end - r.start).sum();
        assert!(total >= (1 << 20) - (512 << 10), "{spans:?}");
        assert!(spans.iter().all(|r| r.start >= 2 << 20 && r.end <= 3 << 20));

        let zeros = blockify_bytes(&vec![0u8; 10 << 20], &store, &opts).unwrap();
        assert_eq!(zero_spans(&store, &zeros).unwrap(), vec![0..10 << 20]);
        let mut random = vec![0u8; 3 << 20];
        rand::rngs::StdRng::seed_from_u64(5).fill_bytes(&mut random);
        let random = blockify_bytes(&random, &store, &opts).unwrap();
        assert!(zero_spans(&store, &random).unwrap().is_empty());
        assert!(zero_spans(&MemoryStore::new(HashAlg::Blake3), &top).is_err());
    }

    /// An indirect block of `n` copies of `child`, stored.
    fn repeated(store: &MemoryStore, child: &[BlockRef], n: usize) -> BlockRef {
        let kids: Vec<BlockRef> = child
            .iter()
            .cloned()
            .cycle()
            .take(n * child.len())
            .collect();
        let enc: Vec<u8> = kids.iter().flat_map(BlockRef::encode).collect();
        BlockRef::Indirect {
            hash: store.add(&enc).unwrap(),
            span: kids.iter().map(BlockRef::span).sum(),
        }
    }

    #[test]
    fn zero_spans_of_shared_indirect_blocks_cost_their_distinct_blocks() {
        // Found by fuzzing: each level repeats the one below eight times, so walking
        // every path costs 8^depth; each distinct block is now listed once.
        let store = MemoryStore::new(HashAlg::Blake3);
        let zero = BlockRef::Rle { span: 1, octet: 0 };
        let mut all_zero = repeated(&store, std::slice::from_ref(&zero), 8);
        let mut empty = repeated(&store, &[], 1);
        for _ in 0..19 {
            all_zero = repeated(&store, &[all_zero], 8);
            empty = repeated(&store, &[empty], 8);
        }
        assert_eq!(all_zero.span(), 1 << 60);
        assert_eq!(zero_spans(&store, &all_zero).unwrap(), vec![0..1 << 60]);
        assert_eq!(empty.span(), 0);
        assert!(zero_spans(&store, &empty).unwrap().is_empty());
        // Holes that do not merge: refused once the listing grows past the bound.
        let mut checker = repeated(&store, &[zero, BlockRef::literal(b"x")], 1);
        for _ in 0..8 {
            checker = repeated(&store, &[checker], 8);
        }
        let err = zero_spans(&store, &checker).unwrap_err();
        assert!(err.to_string().contains("runs of zeros"), "{err}");
        // A reference claiming another span for a block already listed is checked.
        let small = repeated(&store, &[BlockRef::Rle { span: 3, octet: 0 }], 2);
        let BlockRef::Indirect { hash, .. } = small else {
            unreachable!()
        };
        let lying = BlockRef::Indirect { hash, span: 7 };
        let both = repeated(&store, &[small, lying], 1);
        assert!(zero_spans(&store, &both).is_err());
    }

    #[test]
    fn a_missing_leaf_fails_after_writing_everything_before_it() {
        let full = MemoryStore::new(HashAlg::Blake3);
        let data = content();
        let top = blockify_bytes(&data, &full, &BlockifyOptions::default()).unwrap();
        let partial = MemoryStore::new(HashAlg::Blake3);
        let mut leaves = Vec::new();
        walk(&full, &top, 0, top.span(), 0, &mut |p| {
            if let Piece::Stored { hash, span, .. } = p {
                leaves.push((hash, span));
            }
            Ok(())
        })
        .unwrap();
        let (victim, _) = leaves[leaves.len() / 2];
        let before: u64 = leaves[..leaves.len() / 2].iter().map(|l| l.1).sum();
        for h in full.hashcodes(None, false, usize::MAX).unwrap() {
            if h != victim {
                partial
                    .add_hashed(h, &full.get_required(&h).unwrap())
                    .unwrap();
            }
        }
        let mut out = Vec::new();
        let err = write_to(&partial, &top, &mut out).unwrap_err();
        assert!(matches!(err, Error::NotFound(h) if h == victim));
        // Everything up to the missing leaf was written (RLE and literal pieces
        // carry no hash, so the prefix is at least the stored leaves before it).
        assert!(out.len() as u64 >= before);
        assert!(out == data[..out.len()]);
    }
}
