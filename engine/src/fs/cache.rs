//! A read cache over a store: hot leaves stay in memory and indirect blocks stay
//! decoded, so a read costs a few binary searches and the copies of the bytes it
//! returns. Sequential readers get the following leaves fetched ahead.

use crate::block::BlockRef;
use crate::dir::{self, Dirent, DirentKind};
use crate::error::{Error, Result};
use crate::hash::{HashAlg, HashCode};
use crate::read::{self, MAX_TREE_DEPTH};
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
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

    /// Fetches block `hash` into the cache unless it is there (a hint: errors
    /// surface when the block is read).
    fn fetch(&self, hash: &HashCode) {
        if self.lookup(hash).is_none() {
            let _ = self.get(hash);
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
            BlockRef::Sub {
                block,
                offset,
                span,
            } => {
                BlockRef::check_sub(block, *offset, *span)?;
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

/// Directories decoded ahead of use, by their content reference: a recursive
/// listing finds each directory's entries already read and decoded (on the
/// read-ahead thread, outside the filesystem's lock) when it gets there.
/// Bounded: when full, everything held is dropped (the contents are a hint).
#[derive(Debug, Default)]
pub(crate) struct DirCache {
    inner: Mutex<DirCacheInner>,
}

#[derive(Debug, Default)]
struct DirCacheInner {
    dirs: HashMap<BlockRef, DecodedDir>,
    entries: usize,
}

/// A directory block's entries and the BLAKE3 digest of its encoding.
#[derive(Debug)]
pub(crate) struct DecodedDir {
    pub entries: Vec<Dirent>,
    pub digest: [u8; 32],
}

/// At most this many decoded entries wait in a [`DirCache`].
const DIR_CACHE_ENTRIES: usize = 1 << 16;

impl DirCache {
    /// The decoded entries of `block`, if they were decoded ahead. They are
    /// handed over (removed): loading turns them into nodes, and a directory
    /// unloaded later is decoded again by whoever reloads it.
    pub fn take(&self, block: &BlockRef) -> Option<DecodedDir> {
        let mut g = self.inner.lock();
        let d = g.dirs.remove(block)?;
        g.entries -= d.entries.len();
        Some(d)
    }

    fn contains(&self, block: &BlockRef) -> bool {
        self.inner.lock().dirs.contains_key(block)
    }

    fn put(&self, block: BlockRef, d: DecodedDir) {
        let mut g = self.inner.lock();
        if g.entries + d.entries.len() > DIR_CACHE_ENTRIES {
            g.dirs.clear();
            g.entries = 0;
        }
        g.entries += d.entries.len();
        if let Some(old) = g.dirs.insert(block, d) {
            g.entries -= old.entries.len();
        }
    }
}

/// Reads and decodes directory `block`.
pub(crate) fn decode_dir(store: &dyn Store, block: &BlockRef) -> Result<DecodedDir> {
    let bytes = read::read_all(store, block)?;
    let entries = dir::decode_entries(&bytes)?;
    Ok(DecodedDir {
        entries,
        digest: *blake3::hash(&bytes).as_bytes(),
    })
}

/// At most this many directories are decoded ahead per listing hint.
const WALK_DIRS: usize = 4096;
/// The read-ahead thread remembers at most about this many walked directories.
const WALK_SEEN_MAX: usize = 1 << 18;

/// Walks the trees under the directory blocks `roots` in the order a recursive
/// listing needs them: listing a directory loads all of its subdirectories (to
/// count their entries), and the listing goes on depth first by name. So the
/// walk decodes `roots`, then the subdirectories of the first of them, then
/// theirs, and so on, each directory's subdirectories together. Each decoded
/// directory goes into `dirs`, and its files' indirect blocks (read for
/// `st_blocks`) into `store`. Directories walked before (`seen`) are skipped
/// with their subtrees.
fn walk_dirs(
    store: &CachedStore,
    dirs: &DirCache,
    roots: Vec<BlockRef>,
    seen: &mut HashSet<BlockRef>,
) {
    // Groups of sibling directories still to decode, the next on top.
    let mut stack: Vec<Vec<BlockRef>> = vec![roots];
    let mut walked = 0;
    while let Some(group) = stack.pop() {
        let mut below = Vec::new();
        for block in group {
            if walked >= WALK_DIRS {
                return;
            }
            if seen.contains(&block) {
                continue;
            }
            walked += 1;
            // Errors surface when the filesystem itself loads the directory.
            let Ok(d) = decode_dir(store, &block) else {
                continue;
            };
            let mut subdirs = Vec::new();
            for e in &d.entries {
                match (e.kind, &e.block) {
                    (DirentKind::Dir, Some(b)) => subdirs.push(b.clone()),
                    (DirentKind::File, Some(BlockRef::Indirect { hash, .. })) => store.fetch(hash),
                    _ => {}
                }
            }
            if !dirs.contains(&block) {
                dirs.put(block.clone(), d);
            }
            seen.insert(block);
            if !subdirs.is_empty() {
                below.push(subdirs);
            }
        }
        stack.extend(below.into_iter().rev());
    }
}

/// What the read-ahead thread fetches.
#[derive(Debug)]
enum Job {
    /// `[offset, offset + len)` of a file's content.
    Range(BlockRef, u64, u64),
    /// Indirect blocks to fetch, then directories a listing will come to, with
    /// their subtrees (see [`walk_dirs`]).
    Dirs(Vec<BlockRef>, Vec<HashCode>),
}

/// A background thread warming the cache with ranges a sequential reader will
/// want next, and decoding the directories a recursive listing will load next.
/// Requests are dropped when the thread is busy: read-ahead is a hint.
#[derive(Debug)]
pub struct ReadAhead {
    tx: crossbeam_channel::Sender<Job>,
}

impl ReadAhead {
    /// Starts the thread over `store`, decoding directories ahead into `dirs`.
    pub(crate) fn start(store: Arc<CachedStore>, dirs: Arc<DirCache>) -> Self {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(4);
        let spawned = std::thread::Builder::new()
            .name("vt-readahead".into())
            .spawn(move || {
                let mut seen = HashSet::new();
                // Errors surface when the reader itself gets there.
                for job in rx {
                    match job {
                        Job::Range(r, off, len) => {
                            let _ = store.prefetch(&r, off, len);
                        }
                        Job::Dirs(roots, blocks) => {
                            // Bounded memory: forgetting what was walked only means
                            // a directory may be decoded ahead again.
                            if seen.len() > WALK_SEEN_MAX {
                                seen.clear();
                            }
                            for h in &blocks {
                                store.fetch(h);
                            }
                            walk_dirs(&store, &dirs, roots, &mut seen);
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

    /// Asks for the blocks `blocks` to be fetched into the cache, then for the
    /// directories `dirs` and their subtrees to be decoded ahead.
    pub fn hint_dirs(&self, dirs: Vec<BlockRef>, blocks: Vec<HashCode>) {
        let _ = self.tx.try_send(Job::Dirs(dirs, blocks));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockify::{blockify_bytes, BlockifyOptions};
    use crate::dir::encode_entries;
    use crate::hash::HashAlg;
    use crate::store::{MemoryStore, StoreSink};

    fn opts() -> BlockifyOptions {
        BlockifyOptions {
            threads: 1,
            ..BlockifyOptions::default()
        }
    }

    /// Stores a directory holding `entries`; returns its reference.
    fn put_dir(s: &dyn Store, entries: &[Dirent]) -> BlockRef {
        blockify_bytes(&encode_entries(entries).unwrap(), &StoreSink(s), &opts()).unwrap()
    }

    /// A tree of directories: root/{a/{a1/{f}, a2/}, b/{big}}; returns the store,
    /// the directories' references in depth-first name order, and the big file's
    /// indirect block.
    fn tree() -> (Arc<CachedStore>, Vec<BlockRef>, HashCode) {
        let mem: Arc<dyn Store> = Arc::new(MemoryStore::with_capacity(HashAlg::Blake3, 1 << 30));
        let s = mem.as_ref();
        let small = blockify_bytes(b"hello", &StoreSink(s), &opts()).unwrap();
        let pattern: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let big = blockify_bytes(&pattern, &StoreSink(s), &opts()).unwrap();
        let BlockRef::Indirect { hash: big_hash, .. } = big else {
            panic!("3 MiB makes an indirect block");
        };
        let a1 = put_dir(s, &[Dirent::file(b"f", small)]);
        let a2 = put_dir(s, &[Dirent::file(b"g", BlockRef::empty())]);
        let a = put_dir(
            s,
            &[
                Dirent::dir(b"a1", a1.clone()),
                Dirent::dir(b"a2", a2.clone()),
            ],
        );
        let b = put_dir(s, &[Dirent::file(b"big", big.clone())]);
        let root = put_dir(
            s,
            &[Dirent::dir(b"a", a.clone()), Dirent::dir(b"b", b.clone())],
        );
        let cached = Arc::new(CachedStore::new(mem, 64 << 20));
        (cached, vec![root, a, a1, a2, b], big_hash)
    }

    #[test]
    fn walk_decodes_every_directory_below_and_fetches_indirect_blocks() {
        let (store, dirs_in_order, big) = tree();
        let dirs = DirCache::default();
        let mut seen = HashSet::new();
        assert!(store.lookup(&big).is_none());
        walk_dirs(&store, &dirs, vec![dirs_in_order[0].clone()], &mut seen);
        assert!(
            store.lookup(&big).is_some(),
            "the big file's indirect block is fetched"
        );
        for block in &dirs_in_order {
            let got = dirs
                .take(block)
                .unwrap_or_else(|| panic!("{block} decoded ahead"));
            let want = decode_dir(store.as_ref(), block).unwrap();
            assert_eq!(got.entries, want.entries);
            assert_eq!(got.digest, want.digest);
            assert!(dirs.take(block).is_none(), "handed over once");
            assert!(seen.contains(block));
        }
        // A second walk skips what was walked.
        walk_dirs(&store, &dirs, vec![dirs_in_order[0].clone()], &mut seen);
        assert!(dirs_in_order.iter().all(|b| dirs.take(b).is_none()));
    }

    #[test]
    fn walk_skips_unreadable_directories_and_goes_on() {
        let (store, dirs_in_order, _) = tree();
        let missing = BlockRef::Hash {
            hash: HashAlg::Blake3.hash(b"not stored"),
            span: 10,
        };
        let dirs = DirCache::default();
        let mut seen = HashSet::new();
        walk_dirs(
            &store,
            &dirs,
            vec![missing.clone(), dirs_in_order[4].clone()],
            &mut seen,
        );
        assert!(dirs.take(&missing).is_none());
        assert!(
            !seen.contains(&missing),
            "a failed directory is not marked walked"
        );
        assert!(dirs.take(&dirs_in_order[4]).is_some());
    }

    #[test]
    fn dir_cache_stays_bounded() {
        let (store, dirs_in_order, _) = tree();
        let dirs = DirCache::default();
        let one = decode_dir(store.as_ref(), &dirs_in_order[0]).unwrap();
        let many = DecodedDir {
            entries: vec![one.entries[0].clone(); DIR_CACHE_ENTRIES],
            digest: [0; 32],
        };
        dirs.put(dirs_in_order[1].clone(), many);
        dirs.put(dirs_in_order[0].clone(), one);
        // Over the bound: what was held is dropped before the new one goes in.
        assert!(dirs.take(&dirs_in_order[1]).is_none());
        assert!(dirs.take(&dirs_in_order[0]).is_some());
        assert_eq!(dirs.inner.lock().entries, 0);
    }
}
