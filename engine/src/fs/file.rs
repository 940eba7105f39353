//! Write-back buffer of one file: modified pages over the stored content, turned
//! back into a block reference ("committed") on flush, fsync, close or when the
//! buffer grows too large.
//!
//! Committing keeps the stored leaves that lie wholly before the first change and
//! chunks only from there on, so an append re-reads at most one leaf of the old
//! content, and long sequential writes cost time linear in their length.
//!
//! Runs of zeros that are known without reading (holes: past the stored
//! content, or zero RLE leaves of it, with no modified page) are not chunked
//! byte by byte. The chunker restarts at every cut, so within such a run it
//! cuts at a fixed length; those whole chunks are pushed as one RLE leaf, as
//! the tree builder would merge them. Extending a file to a terabyte costs
//! no more than a few chunks.
//!
//! When a commit only overwrote bytes (the size is unchanged), chunking stops
//! at the first cut after the last modified page that is also a leaf boundary
//! of the stored content: from there on, the stored leaves are what chunking
//! would give again, and they are reused. Rewriting a few pages of a large
//! file costs a few chunks, not the rest of the file.

use crate::block::BlockRef;
use crate::blockify::{blockify_reader_onto, leaf_ref, BlockifyOptions, TreeBuilder};
use crate::chunk::ChunkerKind;
use crate::error::Result;
use crate::read;
use crate::store::{Store, StoreSink};
use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Size of a write-back page.
pub const PAGE: u64 = 64 * 1024;

/// A modified page and the write generation that last changed it.
#[derive(Debug, Clone)]
struct Page {
    /// `PAGE` bytes, shared with snapshots until written again.
    data: Arc<PageBuf>,
    gen: u64,
}

/// Buffers of `PAGE` bytes kept for reuse, up to a bound.
#[derive(Debug)]
struct PagePool {
    free: parking_lot::Mutex<Vec<Vec<u8>>>,
    max: usize,
    /// Buffers handed out so far, and that count at the last idle check.
    taken: AtomicU64,
    seen: AtomicU64,
}

impl PagePool {
    const fn new(max: usize) -> PagePool {
        PagePool {
            free: parking_lot::Mutex::new(Vec::new()),
            max,
            taken: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        }
    }
    /// A buffer holding a copy of `data` (`PAGE` bytes), reusing a kept one if any.
    fn copy_of(&self, data: &[u8]) -> Vec<u8> {
        debug_assert_eq!(
            data.len(),
            PAGE as usize,
            "a page buffer holds a whole page"
        );
        self.taken.fetch_add(1, Ordering::Relaxed);
        let kept = self.free.lock().pop();
        let mut v = kept.unwrap_or_else(|| Vec::with_capacity(PAGE as usize));
        v.clear();
        v.extend_from_slice(data);
        v
    }
    /// Keeps `v` for reuse if it is a page buffer and the pool has room.
    fn give(&self, v: Vec<u8>) {
        if v.capacity() == PAGE as usize {
            let mut free = self.free.lock();
            if free.len() < self.max {
                free.push(v);
            }
        }
    }
    /// Releases the kept buffers if none was handed out since the last call.
    fn trim_if_idle(&self) -> usize {
        let taken = self.taken.load(Ordering::Relaxed);
        if self.seen.swap(taken, Ordering::Relaxed) != taken {
            return 0;
        }
        std::mem::take(&mut *self.free.lock()).len()
    }
}

/// The page buffers of every file: a long write reuses the memory of the pages its
/// earlier commits released instead of faulting in fresh memory for each page (and
/// having the kernel zero it): `cp` of 1 GiB into a mount took 13–15 % less time. Up
/// to 64 MiB (the default dirty limit) is kept, until [`trim_idle_page_pool`] finds
/// the writes have stopped.
static POOL: PagePool = PagePool::new(1024);

/// Releases the page buffers kept for reuse (see [`POOL`]) when no page was written
/// since the last call; returns how many. Called at intervals (`vt mount` every
/// 200 ms), it frees them soon after a stream of writes ends, and never during one.
pub fn trim_idle_page_pool() -> usize {
    POOL.trim_if_idle()
}

/// A page's `PAGE` bytes; given back to [`POOL`] when dropped.
#[derive(Debug)]
struct PageBuf(Vec<u8>);

impl PageBuf {
    /// A copy of `data`, which is `PAGE` bytes.
    fn copy_of(data: &[u8]) -> PageBuf {
        PageBuf(POOL.copy_of(data))
    }
}

impl Clone for PageBuf {
    fn clone(&self) -> Self {
        PageBuf::copy_of(&self.0)
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        POOL.give(std::mem::take(&mut self.0));
    }
}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// A file's content: a stored base plus modified pages.
///
/// Pages are shared copy-on-write with [`Snapshot`]s, so a snapshot can be
/// committed while writes go on; [`FileBuf::install`] then keeps exactly the
/// changes made after the snapshot.
#[derive(Debug, Clone)]
pub struct FileBuf {
    /// The stored content the pages overlay.
    base: BlockRef,
    /// How much of `base` is still visible (less after a shrinking truncate).
    base_len: u64,
    /// The file size.
    size: u64,
    /// Modified pages by index; each is `PAGE` bytes, zero past `size`.
    pages: BTreeMap<u64, Page>,
    /// Counts writes and truncates; never goes back.
    gen: u64,
    /// The generation of the last snapshot.
    snap_gen: u64,
    /// Smallest size since the last snapshot (base bytes past it are gone).
    low: u64,
    /// Pages first modified since the last snapshot.
    fresh: u64,
    /// The holes (zero RLE ranges) of `base`, found once per base on first use.
    base_holes: OnceLock<Arc<[Range<u64>]>>,
}

/// A file's content frozen at some generation, to be committed outside the
/// filesystem lock and installed with [`FileBuf::install`].
#[derive(Debug)]
pub struct Snapshot {
    buf: FileBuf,
}

impl Snapshot {
    /// Stores the snapshot's content; returns its reference.
    pub fn commit(&self, store: &dyn Store, opts: &BlockifyOptions) -> Result<BlockRef> {
        self.buf.commit_content(store, opts)
    }
}

impl FileBuf {
    /// A clean buffer over `base`.
    pub fn new(base: BlockRef) -> Self {
        let n = base.span();
        FileBuf {
            base,
            base_len: n,
            size: n,
            pages: BTreeMap::new(),
            gen: 0,
            snap_gen: 0,
            low: n,
            fresh: 0,
            base_holes: OnceLock::new(),
        }
    }

    /// The file size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The committed content reference; meaningful when not dirty.
    pub fn base(&self) -> &BlockRef {
        &self.base
    }

    /// True when [`FileBuf::data_bytes`] needs no store reads for `base`: its
    /// holes are known or it has no indirect blocks to look for them in.
    pub fn holes_known(&self) -> bool {
        self.base_holes.get().is_some() || !matches!(self.base, BlockRef::Indirect { .. })
    }

    /// True when the content differs from `base`.
    pub fn is_dirty(&self) -> bool {
        !self.pages.is_empty() || self.size != self.base.span() || self.base_len != self.size
    }

    /// Bytes held in modified pages (including those a snapshot still shares).
    pub fn dirty_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// Bytes of pages first modified since the last snapshot.
    pub fn fresh_bytes(&self) -> u64 {
        self.fresh * PAGE
    }

    /// Reads `[off, off + len)` of the base, zeros past `base_len`.
    fn base_read(&self, store: &dyn Store, off: u64, len: u64) -> Result<Vec<u8>> {
        let avail = self.base_len.saturating_sub(off).min(len);
        let mut v = if avail > 0 {
            read::read_range(store, &self.base, off, avail)?
        } else {
            Vec::new()
        };
        v.resize(len as usize, 0);
        Ok(v)
    }

    /// Up to `len` bytes from `off`, clipped to the size.
    pub fn read(&self, store: &dyn Store, off: u64, len: u64) -> Result<Vec<u8>> {
        let end = off.saturating_add(len).min(self.size);
        let mut out = vec![0; end.saturating_sub(off) as usize];
        self.read_slice(store, off, &mut out)?;
        Ok(out)
    }

    /// Fills `out` with the bytes from `off` (which must lie within the size).
    fn read_slice(&self, store: &dyn Store, off: u64, out: &mut [u8]) -> Result<()> {
        let end = off + out.len() as u64;
        let mut pos = off;
        while pos < end {
            let idx = pos / PAGE;
            let in_page = pos % PAGE;
            let n = (PAGE - in_page).min(end - pos);
            let at = (pos - off) as usize;
            match self.pages.get(&idx) {
                Some(p) => out[at..at + n as usize]
                    .copy_from_slice(&p.data[in_page as usize..(in_page + n) as usize]),
                None => {
                    // Read the whole run of clean pages in one go.
                    let mut run_end = pos + n;
                    while run_end < end && !self.pages.contains_key(&(run_end / PAGE)) {
                        run_end = (run_end + PAGE).min(end);
                    }
                    let v = self.base_read(store, pos, run_end - pos)?;
                    out[at..at + v.len()].copy_from_slice(&v);
                    pos = run_end;
                    continue;
                }
            }
            pos += n;
        }
        Ok(())
    }

    /// The page `idx` for writing at generation `self.gen`, loading it from the
    /// base when first modified and unsharing it from snapshots.
    fn page_mut(&mut self, store: &dyn Store, idx: u64) -> Result<&mut [u8]> {
        if !self.pages.contains_key(&idx) {
            let start = idx * PAGE;
            let visible = self.size.min(self.base_len).saturating_sub(start).min(PAGE);
            let mut p = self.base_read(store, start, visible)?;
            p.resize(PAGE as usize, 0);
            let page = Page {
                data: Arc::new(PageBuf(p)),
                gen: 0,
            };
            self.pages.insert(idx, page);
        }
        Ok(self.held_page_mut(idx))
    }

    /// [`Self::page_mut`] for a page that is held (empty if it is not).
    fn held_page_mut(&mut self, idx: u64) -> &mut [u8] {
        let (gen, snap_gen) = (self.gen, self.snap_gen);
        let Some(page) = self.pages.get_mut(&idx) else {
            return &mut [];
        };
        if page.gen <= snap_gen {
            self.fresh += 1;
        }
        page.gen = gen;
        &mut Arc::make_mut(&mut page.data)[..]
    }

    /// Writes `data` at `off`, growing the file as needed.
    pub fn write(&mut self, store: &dyn Store, off: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.gen += 1;
        let mut pos = off;
        let mut rest = data;
        while !rest.is_empty() {
            let idx = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = (PAGE as usize - in_page).min(rest.len());
            if n == PAGE as usize && !self.pages.contains_key(&idx) {
                // A whole new page is the data itself: nothing of the base shows
                // through, so it is neither read nor zeroed first.
                let data = Arc::new(PageBuf::copy_of(&rest[..n]));
                self.pages.insert(idx, Page { data, gen: 0 });
                // Counts it as fresh and stamps it, as for any written page.
                self.held_page_mut(idx);
            } else {
                let page = self.page_mut(store, idx)?;
                page[in_page..in_page + n].copy_from_slice(&rest[..n]);
            }
            rest = &rest[n..];
            pos += n as u64;
        }
        self.size = self.size.max(pos);
        Ok(())
    }

    /// Makes `[off, off + len)` (clipped to the size) read as zeros. Modified
    /// pages past the visible base are dropped; a range reaching the end of the
    /// visible base cuts the base there; only zeros over stored bytes that
    /// stay visible take modified pages.
    pub fn zero_range(&mut self, store: &dyn Store, off: u64, len: u64) -> Result<()> {
        let end = off.saturating_add(len).min(self.size);
        if off >= end {
            return Ok(());
        }
        // Partial pages at both edges are written; whole pages in between are
        // handled without writing.
        let first_whole = off.div_ceil(PAGE);
        let end_whole = end / PAGE;
        if first_whole >= end_whole {
            return self.write(store, off, &vec![0; (end - off) as usize]);
        }
        self.write(store, off, &vec![0; (first_whole * PAGE - off) as usize])?;
        self.write(
            store,
            end_whole * PAGE,
            &vec![0; (end - end_whole * PAGE) as usize],
        )?;
        let (lo, hi) = (first_whole * PAGE, end_whole * PAGE);
        if end >= self.base_len {
            // Every stored byte from `lo` on is zeroed or on the last edge page.
            self.base_len = self.base_len.min(lo);
            // Like a truncation: a snapshot being committed must not show those
            // stored bytes again when it is installed.
            self.low = self.low.min(lo);
        }
        let whole: Vec<u64> = self
            .pages
            .range(first_whole..end_whole)
            .map(|(i, _)| *i)
            .collect();
        for i in whole {
            self.pages.remove(&i);
        }
        // Whole pages over stored bytes that stay visible: explicit zero pages.
        self.gen += 1;
        let mut at = lo;
        // They carry a new generation, so installing a snapshot taken
        // before keeps them.
        while at < hi.min(self.base_len) {
            let page = Page {
                data: Arc::new(PageBuf(vec![0; PAGE as usize])),
                gen: self.gen,
            };
            self.pages.insert(at / PAGE, page);
            self.fresh += 1;
            at += PAGE;
        }
        Ok(())
    }

    /// Sets the size; bytes past a shrunk end read as zeros if it grows again.
    pub fn truncate(&mut self, size: u64) {
        self.gen += 1;
        if size < self.size {
            let first_gone = size.div_ceil(PAGE);
            self.pages.split_off(&first_gone);
            if !size.is_multiple_of(PAGE) && self.pages.contains_key(&(size / PAGE)) {
                self.held_page_mut(size / PAGE)[(size % PAGE) as usize..].fill(0);
            }
            self.base_len = self.base_len.min(size);
            self.low = self.low.min(size);
        }
        self.size = size;
    }

    /// Freezes the current content for committing; the buffer goes on taking writes.
    pub fn snapshot(&mut self) -> Snapshot {
        self.snap_gen = self.gen;
        self.low = self.size;
        self.fresh = 0;
        Snapshot { buf: self.clone() }
    }

    /// Makes `top`, the committed content of `snap`, the new base, keeping the
    /// pages changed after the snapshot and hiding base bytes truncated since.
    pub fn install(&mut self, snap: &Snapshot, top: BlockRef) {
        let at = snap.buf.gen;
        self.pages.retain(|_, p| p.gen > at);
        self.base_len = snap.buf.size.min(self.low);
        if top != self.base {
            self.base = top;
            self.base_holes = OnceLock::new();
        }
    }

    /// The ranges of `[0, size)` that hold data, sorted and disjoint: the visible base
    /// outside its holes, and every modified page. The rest reads as zeros without
    /// being stored (`SEEK_HOLE`, `st_blocks`). Fetches the base's indirect blocks
    /// the first time (not its leaves).
    pub fn data_ranges(&self, store: &dyn Store) -> Result<Vec<Range<u64>>> {
        let holes = self.base_holes(store)?;
        let visible = self.base_len.min(self.size);
        let mut base = Vec::new();
        let mut at = 0;
        for h in holes.iter().take_while(|h| h.start < visible) {
            if h.start > at {
                base.push(at..h.start);
            }
            at = h.end;
        }
        if at < visible {
            base.push(at..visible);
        }
        let pages = self
            .pages
            .keys()
            .map(|i| i * PAGE..((i + 1) * PAGE).min(self.size));
        Ok(union(base.into_iter(), pages))
    }

    /// The holes of `base`, found on first use and kept with it.
    fn base_holes(&self, store: &dyn Store) -> Result<Arc<[Range<u64>]>> {
        if let Some(h) = self.base_holes.get() {
            return Ok(h.clone());
        }
        let h: Arc<[Range<u64>]> = read::zero_spans(store, &self.base)?.into();
        Ok(self.base_holes.get_or_init(|| h).clone())
    }

    /// Bytes of data (see [`FileBuf::data_ranges`]). `stat` asks for this on every
    /// getattr, so a file without modified pages is counted without building the map.
    pub fn data_bytes(&self, store: &dyn Store) -> Result<u64> {
        if !self.pages.is_empty() {
            return Ok(self
                .data_ranges(store)?
                .iter()
                .map(|r| r.end - r.start)
                .sum());
        }
        let visible = self.base_len.min(self.size);
        let in_holes: u64 = self
            .base_holes(store)?
            .iter()
            .take_while(|h| h.start < visible)
            .map(|h| h.end.min(visible) - h.start)
            .sum();
        Ok(visible - in_holes)
    }

    /// `lseek` with `SEEK_DATA` (`data`) or `SEEK_HOLE` from `off`: the first byte at or
    /// after `off` that is data, or that is in a hole (the end of the file counts as a
    /// hole). `None` (`ENXIO`) when `off` is at or past the end, or no data follows.
    pub fn seek(&self, store: &dyn Store, off: u64, data: bool) -> Result<Option<u64>> {
        if off >= self.size {
            return Ok(None);
        }
        let ranges = self.data_ranges(store)?;
        let next = ranges.iter().find(|r| r.end > off);
        Ok(match (data, next) {
            (true, Some(r)) => Some(r.start.max(off)),
            (true, None) => None,
            (false, Some(r)) if r.start <= off => Some(r.end),
            (false, _) => Some(off),
        })
    }

    /// How many bytes from `pos` are zeros known without reading content:
    /// past the visible base or in a zero RLE leaf of it, and on no modified page.
    fn zeros_at(&self, store: &dyn Store, pos: u64) -> Result<u64> {
        let page_end = self
            .pages
            .range(pos / PAGE..)
            .next()
            .map_or(u64::MAX, |(i, _)| i * PAGE);
        let end = self.size.min(page_end);
        if pos >= end {
            return Ok(0);
        }
        if pos >= self.base_len {
            return Ok(end - pos);
        }
        let run_end = pos + zero_run_in(store, &self.base, pos, 0)?;
        Ok(if run_end >= self.base_len {
            end - pos
        } else {
            run_end.min(end) - pos
        })
    }

    /// Where the content first differs from the base.
    fn first_change(&self) -> u64 {
        let page = self.pages.keys().next().map_or(u64::MAX, |i| i * PAGE);
        page.min(self.base_len)
    }

    /// Stores the content and makes it the new base. Returns the new reference.
    pub fn commit(&mut self, store: &dyn Store, opts: &BlockifyOptions) -> Result<BlockRef> {
        if !self.is_dirty() {
            return Ok(self.base.clone());
        }
        let snap = self.snapshot();
        let top = snap.commit(store, opts)?;
        self.install(&snap, top.clone());
        Ok(top)
    }

    /// Stores the content (without changing `self`); returns its reference.
    ///
    /// The stored leaves wholly before the first change are kept, except the last
    /// leaf, which was cut by the end of the content rather than by the chunker;
    /// chunking restarts there, so the result equals blockifying the whole content.
    fn commit_content(&self, store: &dyn Store, opts: &BlockifyOptions) -> Result<BlockRef> {
        if !self.is_dirty() {
            return Ok(self.base.clone());
        }
        let sink = StoreSink(store);
        let mut tree = TreeBuilder::new(&sink, opts.hash_alg, opts.chunker);
        let mut kept = 0;
        let limit = self.first_change().min(self.base.span().saturating_sub(1));
        push_leaves_before(store, &self.base, limit, &mut kept, &mut tree)?;
        // Without holes or reusable leaves ahead, chunking is plain and runs
        // in parallel; otherwise the loop below skips holes and reuses leaves.
        let reuse_from = self.reuse_from(opts.chunker);
        if reuse_from.is_none() && !self.known_zeros_in(store, kept, opts.chunker)? {
            let reader = ContentReader {
                buf: self,
                store,
                pos: kept,
            };
            return blockify_reader_onto(tree, reader, &sink, opts);
        }
        self.commit_loop(store, opts, tree, kept, reuse_from)
    }

    /// Chunks the content from `kept` (a chunk boundary) on, pushing whole
    /// zero chunks of holes as RLE leaves and reusing the stored leaves past
    /// `reuse_from` once chunking meets one of their boundaries.
    fn commit_loop(
        &self,
        store: &dyn Store,
        opts: &BlockifyOptions,
        mut tree: TreeBuilder<'_>,
        kept: u64,
        reuse_from: Option<u64>,
    ) -> Result<BlockRef> {
        let sink = StoreSink(store);
        let mut chunker = opts.chunker.chunker();
        let zero_chunk = zero_chunk_len(opts.chunker);
        // `buf` holds the bytes not yet in a leaf; the chunker has seen `buf[..scanned]`.
        let mut buf: Vec<u8> = Vec::new();
        let mut scanned = 0;
        let old = self.base.clone();
        // At a chunk boundary (the chunker is fresh): skip whole zero chunks.
        let mut pos = self.skip_zeros(store, kept, zero_chunk, &mut tree)?;
        // Read ahead of the chunker in large steps, but not much past where
        // stored leaves may be reused.
        let step = match reuse_from {
            Some(_) => (opts.chunker.max_chunk() as u64).max(PAGE),
            None => 4 << 20,
        };
        'fill: loop {
            let n = step.min(self.size - pos);
            buf.extend(self.read(store, pos, n)?);
            pos += n;
            let mut start = 0;
            while scanned < buf.len() {
                match chunker.next_cut(&buf[scanned..]) {
                    Some(k) => {
                        scanned += k;
                        if scanned > start {
                            let leaf =
                                leaf_ref(&buf[start..scanned], opts.chunker, opts.hash_alg, &sink)?;
                            let zero = matches!(leaf, BlockRef::Rle { octet: 0, .. });
                            tree.push(leaf)?;
                            start = scanned;
                            let at = pos - (buf.len() - scanned) as u64;
                            if reuse_from.is_some_and(|r| at >= r && at < self.size)
                                && leaf_starts_at(store, &old, at, 0)?
                            {
                                push_leaves_from(store, &old, at, &mut tree, 0)?;
                                return tree.finish();
                            }
                            // A zero chunk may start a hole worth skipping.
                            if zero && at < self.size {
                                let next = self.skip_zeros(store, at, zero_chunk, &mut tree)?;
                                if next > at {
                                    buf.clear();
                                    scanned = 0;
                                    pos = next;
                                    if pos >= self.size {
                                        break 'fill;
                                    }
                                    continue 'fill;
                                }
                            }
                        }
                    }
                    None => scanned = buf.len(),
                }
            }
            if pos >= self.size {
                if start < buf.len() {
                    tree.push(leaf_ref(&buf[start..], opts.chunker, opts.hash_alg, &sink)?)?;
                }
                break;
            }
            buf.drain(..start);
            scanned -= start;
        }
        tree.finish()
    }

    /// True when some bytes in `[from, size)` are zeros known without reading
    /// (see [`FileBuf::zeros_at`]) that the commit loop would skip.
    fn known_zeros_in(&self, store: &dyn Store, from: u64, kind: ChunkerKind) -> Result<bool> {
        if zero_chunk_len(kind).is_none() {
            return Ok(false);
        }
        // Walk the gaps between modified pages: each is base content or a hole.
        let mut pos = from;
        while pos < self.size {
            let idx = pos / PAGE;
            if self.pages.contains_key(&idx) {
                pos = (idx + 1) * PAGE;
                continue;
            }
            let gap_end = self
                .pages
                .range(idx..)
                .next()
                .map_or(self.size, |(i, _)| (i * PAGE).min(self.size));
            if gap_end > self.base_len || zero_rle_in(store, &self.base, pos, gap_end, 0)? {
                return Ok(true);
            }
            pos = gap_end;
        }
        Ok(false)
    }

    /// Where stored leaves may be reused: after the last modified page, when
    /// the size and the visible stored content are unchanged.
    fn reuse_from(&self, kind: ChunkerKind) -> Option<u64> {
        let unchanged_size = self.size == self.base_len && self.base_len == self.base.span();
        if kind.is_csvt() || !unchanged_size {
            return None;
        }
        let last = self.pages.keys().next_back()?;
        Some((last + 1) * PAGE)
    }

    /// At a chunk boundary `at`, pushes the whole zero chunks that start there
    /// as one RLE leaf; returns where chunking goes on.
    fn skip_zeros(
        &self,
        store: &dyn Store,
        at: u64,
        zero_chunk: Option<u64>,
        tree: &mut TreeBuilder<'_>,
    ) -> Result<u64> {
        let Some(z) = zero_chunk else {
            return Ok(at);
        };
        let whole = self.zeros_at(store, at)? / z * z;
        if whole > 0 {
            tree.push(BlockRef::Rle {
                span: whole,
                octet: 0,
            })?;
        }
        Ok(at + whole)
    }
}

/// Reads a [`FileBuf`]'s content from `pos` on, for blockify.
struct ContentReader<'a> {
    buf: &'a FileBuf,
    store: &'a dyn Store,
    pos: u64,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = (out.len() as u64).min(self.buf.size.saturating_sub(self.pos)) as usize;
        self.buf
            .read_slice(self.store, self.pos, &mut out[..n])
            .map_err(std::io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The length of the chunks the chunker cuts a long run of zeros into, when
/// whole zero chunks become RLE leaves that the tree builder merges (not in
/// the cs.vt mode, whose chunker is left out here too).
fn zero_chunk_len(kind: ChunkerKind) -> Option<u64> {
    if kind.is_csvt() {
        return None;
    }
    let zeros = vec![0u8; kind.max_chunk()];
    let len = kind.chunker().next_cut(&zeros)?;
    // Chunks this short would be literal leaves, which are not merged.
    (len > crate::blockify::LITERAL_MAX).then_some(len as u64)
}

/// True when a leaf of `r` starts at `off`.
fn leaf_starts_at(store: &dyn Store, r: &BlockRef, off: u64, depth: u32) -> Result<bool> {
    if off == 0 {
        return Ok(true);
    }
    let BlockRef::Indirect { hash, span } = r else {
        return Ok(false);
    };
    if depth >= MAX_DEPTH {
        return Ok(false);
    }
    let mut off = off;
    for c in read::fetch_children(store, hash, *span)? {
        if off < c.span() {
            return leaf_starts_at(store, &c, off, depth + 1);
        }
        off -= c.span();
    }
    Ok(false)
}

/// Pushes the leaves of `r` from offset `off`, where a leaf starts.
fn push_leaves_from(
    store: &dyn Store,
    r: &BlockRef,
    off: u64,
    tree: &mut TreeBuilder<'_>,
    depth: u32,
) -> Result<()> {
    if off >= r.span() {
        return Ok(());
    }
    let BlockRef::Indirect { hash, span } = r else {
        return tree.push(r.clone());
    };
    if depth >= MAX_DEPTH {
        return Err(crate::Error::bad(format!("{hash}: block tree too deep")));
    }
    let mut off = off;
    for c in read::fetch_children(store, hash, *span)? {
        if off >= c.span() {
            off -= c.span();
            continue;
        }
        push_leaves_from(store, &c, off, tree, depth + 1)?;
        off = 0;
    }
    Ok(())
}

/// Deepest block tree walked (real trees are a few levels deep).
const MAX_DEPTH: u32 = 64;

/// How many bytes from `off` lie in the zero RLE leaf of `r` holding `off`
/// (0 when that leaf is anything else).
fn zero_run_in(store: &dyn Store, r: &BlockRef, off: u64, depth: u32) -> Result<u64> {
    match r {
        BlockRef::Rle { span, octet: 0 } => Ok(span.saturating_sub(off)),
        BlockRef::Indirect { hash, span } if depth < MAX_DEPTH => {
            let mut off = off;
            for c in read::fetch_children(store, hash, *span)? {
                if off < c.span() {
                    return zero_run_in(store, &c, off, depth + 1);
                }
                off -= c.span();
            }
            Ok(0)
        }
        _ => Ok(0),
    }
}

/// Pushes the leaves of `r` that end at or before `limit` (in content order,
/// stopping at the first that does not), adding their spans to `kept`.
/// Returns false once a leaf past the limit was met.
fn push_leaves_before(
    store: &dyn Store,
    r: &BlockRef,
    limit: u64,
    kept: &mut u64,
    tree: &mut TreeBuilder<'_>,
) -> Result<bool> {
    if r.span() == 0 {
        return Ok(true);
    }
    if *kept + r.span() <= limit && !r.is_indirect() {
        tree.push(r.clone())?;
        *kept += r.span();
        return Ok(true);
    }
    let BlockRef::Indirect { hash, span } = r else {
        return Ok(false);
    };
    if *kept >= limit {
        return Ok(false);
    }
    for c in read::fetch_children(store, hash, *span)? {
        if !push_leaves_before(store, &c, limit, kept, tree)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// True when a zero RLE leaf of `r` overlaps `[from, to)`.
fn zero_rle_in(store: &dyn Store, r: &BlockRef, from: u64, to: u64, depth: u32) -> Result<bool> {
    match r {
        BlockRef::Rle { octet: 0, .. } => Ok(from < to),
        BlockRef::Indirect { hash, span } if depth < MAX_DEPTH => {
            let mut start = 0;
            for c in read::fetch_children(store, hash, *span)? {
                let end = start + c.span();
                if end > from && start < to {
                    let (a, b) = (from.max(start) - start, to.min(end) - start);
                    if zero_rle_in(store, &c, a, b, depth + 1)? {
                        return Ok(true);
                    }
                }
                if end >= to {
                    break;
                }
                start = end;
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// The union of two sorted lists of disjoint ranges, with touching ranges merged.
fn union(
    a: impl Iterator<Item = Range<u64>>,
    b: impl Iterator<Item = Range<u64>>,
) -> Vec<Range<u64>> {
    let mut all: Vec<Range<u64>> = a.chain(b).filter(|r| r.start < r.end).collect();
    all.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    fn page(b: u8) -> Vec<u8> {
        vec![b; PAGE as usize]
    }

    #[test]
    fn a_given_buffer_is_reused_with_exactly_the_new_bytes() {
        let pool = PagePool::new(4);
        let v = pool.copy_of(&page(7));
        let addr = v.as_ptr();
        pool.give(v);
        let w = pool.copy_of(&page(9));
        assert_eq!(w.as_ptr(), addr, "the kept buffer is reused");
        assert_eq!(w, page(9));
        assert_eq!(pool.trim_if_idle(), 0, "nothing kept");
    }

    #[test]
    fn the_pool_keeps_page_buffers_up_to_its_bound_until_writes_stop() {
        let pool = PagePool::new(3);
        for b in 0..5 {
            pool.give(page(b));
        }
        // Not a page buffer: dropped, not kept.
        pool.give(Vec::with_capacity(PAGE as usize * 2));
        assert_eq!(pool.free.lock().len(), 3);
        // Nothing taken since the pool was made: idle, so released.
        assert_eq!(pool.trim_if_idle(), 3);
        pool.give(pool.copy_of(&page(1)));
        pool.give(page(2));
        // A buffer was taken since the last check: writes are going on, kept.
        assert_eq!(pool.trim_if_idle(), 0);
        assert_eq!(pool.free.lock().len(), 2);
        // None taken since: released.
        assert_eq!(pool.trim_if_idle(), 2);
        assert_eq!(pool.trim_if_idle(), 0);
    }
}
