//! A read cache over a store: hot leaves stay in memory and indirect blocks stay
//! decoded, so a read costs a few binary searches and the copies of the bytes it
//! returns. Sequential readers get the following leaves fetched ahead.

use crate::block::BlockRef;
use crate::error::{Error, Result};
use crate::hash::{HashAlg, HashCode};
use crate::read::{self, MAX_TREE_DEPTH};
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// An indirect block, decoded: its children and where each ends.
#[derive(Debug)]
struct Indirect {
    children: Vec<BlockRef>,
    ends: Vec<u64>,
}

/// What the cache holds for a hash.
#[derive(Debug, Clone)]
enum Entry {
    /// A block's bytes.
    Bytes(Arc<Vec<u8>>),
    /// An indirect block's decoded children.
    Node(Arc<Indirect>),
}

impl Entry {
    /// Roughly the memory it takes.
    fn weight(&self) -> u64 {
        match self {
            Entry::Bytes(b) => b.len() as u64,
            Entry::Node(n) => (n.children.len() * 56) as u64,
        }
    }
}

/// Two generations of entries: lookups promote from `old` to `new`; when `new`
/// outgrows half the budget it becomes `old` and the previous `old` is dropped.
/// That gives LRU-like behaviour with O(1) work per operation.
#[derive(Debug, Default)]
struct Generations {
    new: HashMap<HashCode, Entry>,
    old: HashMap<HashCode, Entry>,
    new_bytes: u64,
    /// Buffers of dropped leaves, reused for the next misses (no allocation, no zeroing).
    spare: Vec<Vec<u8>>,
}

/// Spare leaf buffers kept for reuse.
const SPARES: usize = 64;

/// A store wrapper caching the blocks it reads. Writes pass through.
#[derive(Debug)]
pub struct CachedStore {
    inner: Arc<dyn Store>,
    budget: u64,
    gens: Mutex<Generations>,
}

impl CachedStore {
    /// Caches up to about `budget` bytes of blocks read from `inner`.
    pub fn new(inner: Arc<dyn Store>, budget: u64) -> Self {
        CachedStore {
            inner,
            budget,
            gens: Mutex::new(Generations::default()),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn lookup(&self, hash: &HashCode) -> Option<Entry> {
        let mut g = self.gens.lock();
        if let Some(d) = g.new.get(hash) {
            return Some(d.clone());
        }
        let d = g.old.remove(hash)?;
        self.insert_locked(&mut g, *hash, d.clone());
        Some(d)
    }

    fn insert(&self, hash: HashCode, e: Entry) {
        if e.weight() < self.budget / 8 {
            self.insert_locked(&mut self.gens.lock(), hash, e);
        }
    }

    fn insert_locked(&self, g: &mut Generations, hash: HashCode, e: Entry) {
        g.new_bytes += e.weight();
        g.new.insert(hash, e);
        if g.new_bytes > self.budget / 2 {
            let dropped = std::mem::replace(&mut g.old, std::mem::take(&mut g.new));
            g.new_bytes = 0;
            for e in dropped.into_values() {
                if g.spare.len() >= SPARES {
                    break;
                }
                if let Entry::Bytes(b) = e {
                    if let Ok(v) = Arc::try_unwrap(b) {
                        g.spare.push(v);
                    }
                }
            }
        }
    }

    /// The leaf `hash`, checked to hold `span` bytes.
    fn leaf(&self, hash: &HashCode, span: u64) -> Result<Arc<Vec<u8>>> {
        let data = match self.lookup(hash) {
            Some(Entry::Bytes(b)) => b,
            _ => {
                let mut buf = self.gens.lock().spare.pop().unwrap_or_default();
                let n = self
                    .inner
                    .get_into(hash, &mut buf)?
                    .ok_or(Error::NotFound(*hash))?;
                buf.truncate(n);
                let b = Arc::new(buf);
                self.insert(*hash, Entry::Bytes(b.clone()));
                b
            }
        };
        read::check_leaf_len(hash, data.len(), span)?;
        Ok(data)
    }

    /// The indirect block `hash`, decoded and checked to span `span` bytes.
    fn node(&self, hash: &HashCode, span: u64) -> Result<Arc<Indirect>> {
        if let Some(Entry::Node(n)) = self.lookup(hash) {
            return Ok(n);
        }
        let children = read::fetch_children(self.inner.as_ref(), hash, span)?;
        let mut ends = Vec::with_capacity(children.len());
        let mut at = 0;
        for c in &children {
            at += c.span();
            ends.push(at);
        }
        let n = Arc::new(Indirect { children, ends });
        self.insert(*hash, Entry::Node(n.clone()));
        Ok(n)
    }

    /// Appends up to `len` bytes of `r`'s content from `offset` to `out` (clipped to
    /// the content's end, like `pread`). Fails on a missing or corrupt block.
    pub fn read_range(&self, r: &BlockRef, offset: u64, len: u64, out: &mut Vec<u8>) -> Result<()> {
        let span = r.span();
        let start = offset.min(span);
        let end = start.saturating_add(len).min(span);
        out.reserve((end - start) as usize);
        self.visit(r, start, end, 0, &mut |piece| {
            match piece {
                Piece::Bytes(b) => out.extend_from_slice(b),
                Piece::Fill(octet, n) => out.resize(out.len() + n as usize, octet),
            }
            Ok(())
        })
    }

    /// Loads the leaves of `[offset, offset + len)` of `r` into the cache.
    pub fn prefetch(&self, r: &BlockRef, offset: u64, len: u64) -> Result<()> {
        let span = r.span();
        let start = offset.min(span);
        let end = start.saturating_add(len).min(span);
        self.visit(r, start, end, 0, &mut |_| Ok(()))
    }

    /// Calls `f` with the pieces of `[start, end)` of `r` in order (`end <= span`).
    fn visit(
        &self,
        r: &BlockRef,
        start: u64,
        end: u64,
        depth: usize,
        f: &mut dyn FnMut(Piece<'_>) -> Result<()>,
    ) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        if depth > MAX_TREE_DEPTH {
            return Err(Error::corrupt(
                r.to_string(),
                0,
                "block tree nests too deeply",
            ));
        }
        match r {
            BlockRef::Hash { hash, span } => {
                let leaf = self.leaf(hash, *span)?;
                f(Piece::Bytes(&leaf[start as usize..end as usize]))
            }
            BlockRef::Rle { octet, .. } => f(Piece::Fill(*octet, end - start)),
            BlockRef::Literal(d) => f(Piece::Bytes(&d[start as usize..end as usize])),
            BlockRef::Sub { block, offset, .. } => {
                self.visit(block, offset + start, offset + end, depth + 1, f)
            }
            BlockRef::Indirect { hash, span } => {
                let node = self.node(hash, *span)?;
                // The first child ending after `start`, then on until `end`.
                let first = node.ends.partition_point(|&e| e <= start);
                for (c, &ce) in node.children[first..].iter().zip(&node.ends[first..]) {
                    let cs = ce - c.span();
                    if cs >= end {
                        break;
                    }
                    self.visit(c, start.max(cs) - cs, end.min(ce) - cs, depth + 1, f)?;
                }
                Ok(())
            }
        }
    }
}

/// Part of a read: bytes of a leaf, or a run of one octet.
enum Piece<'a> {
    Bytes(&'a [u8]),
    Fill(u8, u64),
}

impl Store for CachedStore {
    fn hash_alg(&self) -> HashAlg {
        self.inner.hash_alg()
    }
    fn add_hashed(&self, hash: HashCode, data: &[u8]) -> Result<bool> {
        self.inner.add_hashed(hash, data)
    }
    fn get(&self, hash: &HashCode) -> Result<Option<Vec<u8>>> {
        if let Some(Entry::Bytes(d)) = self.lookup(hash) {
            return Ok(Some(d.as_ref().clone()));
        }
        let got = self.inner.get(hash)?;
        if let Some(d) = &got {
            if (d.len() as u64) < self.budget / 8 {
                self.insert(*hash, Entry::Bytes(Arc::new(d.clone())));
            }
        }
        Ok(got)
    }
    fn contains(&self, hash: &HashCode) -> Result<bool> {
        if self.gens.lock().new.contains_key(hash) {
            return Ok(true);
        }
        self.inner.contains(hash)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn hashcodes(
        &self,
        start: Option<&HashCode>,
        after: bool,
        limit: usize,
    ) -> Result<Vec<HashCode>> {
        self.inner.hashcodes(start, after, limit)
    }
    fn len(&self) -> Result<u64> {
        self.inner.len()
    }
    fn is_complete(&self, hash: &HashCode) -> Result<bool> {
        self.inner.is_complete(hash)
    }
    fn set_complete(&self, hash: &HashCode) -> Result<()> {
        self.inner.set_complete(hash)
    }
}

/// What the read-ahead thread fetches.
#[derive(Debug)]
enum Job {
    /// `[offset, offset + len)` of a file's content.
    Range(BlockRef, u64, u64),
    /// Whole blocks: directories and indirect blocks a listing will want next.
    Blocks(Vec<HashCode>),
}

/// A background thread warming the cache with ranges a sequential reader will
/// want next, and with the blocks a recursive listing will decode next.
/// Requests are dropped when the thread is busy: read-ahead is a hint.
#[derive(Debug)]
pub struct ReadAhead {
    tx: crossbeam_channel::Sender<Job>,
}

impl ReadAhead {
    /// Starts the thread over `store`.
    pub fn start(store: Arc<CachedStore>) -> Self {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(4);
        let spawned = std::thread::Builder::new()
            .name("vt-readahead".into())
            .spawn(move || {
                // Errors surface when the reader itself gets there.
                for job in rx {
                    match job {
                        Job::Range(r, off, len) => {
                            let _ = store.prefetch(&r, off, len);
                        }
                        Job::Blocks(hashes) => {
                            for h in &hashes {
                                if store.lookup(h).is_none() {
                                    let _ = store.get(h);
                                }
                            }
                        }
                    }
                }
            });
        if spawned.is_err() {
            // Without the thread, requests are simply dropped.
            let (tx, _) = crossbeam_channel::bounded(0);
            return ReadAhead { tx };
        }
        ReadAhead { tx }
    }

    /// Asks for `[off, off + len)` of `r` to be fetched into the cache.
    pub fn hint(&self, r: &BlockRef, off: u64, len: u64) {
        let _ = self.tx.try_send(Job::Range(r.clone(), off, len));
    }

    /// Asks for the blocks `hashes` to be fetched into the cache whole.
    pub fn hint_blocks(&self, hashes: Vec<HashCode>) {
        let _ = self.tx.try_send(Job::Blocks(hashes));
    }
}
