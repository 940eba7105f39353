//! Mark: everything reachable from the roots, in memory bounded by the index size.
//!
//! The mark set is a bitmap over the index's keys at GC start, each key represented by
//! its first 8 digest bytes in a sorted `Vec<u64>`: 8 bytes plus 1 bit per block (about
//! 81 MB for 10M blocks), instead of a set of 33-byte keys. Two keys sharing a prefix are
//! marked together, which can only keep a dead block. Decisions that *skip* work (an
//! interior block or directory already walked) use exact keys, kept only for interior
//! blocks and directories, a small fraction of the store.
//!
//! Only interior blocks (indirect blocks and directory contents) are read; leaves are
//! marked from their references alone, so no leaf is re-verified.

use crate::block::BlockRef;
use crate::codec::Reader;
use crate::dir::{Dirent, DirentKind};
use crate::error::{Error, Result};
use crate::gc::roots::RootRef;
use crate::hash::HashCode;
use crate::index::{key_of, IndexKey};
use crate::read::MAX_TREE_DEPTH;
use crate::store::datadir::DataDir;
use crate::store::Store;
use std::collections::HashSet;

/// Counters of a mark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarkStats {
    /// Index entries at GC start.
    pub indexed: u64,
    /// Of those, marked live.
    pub marked: u64,
    /// Interior blocks (indirect blocks, directory contents) read.
    pub interiors_read: u64,
    /// Interior blocks referenced but absent: their subtrees could not be marked.
    pub missing: u64,
    /// Interior blocks that did not decode.
    pub damaged: u64,
}

/// The mark set.
#[derive(Debug)]
pub struct Marks {
    prefixes: Vec<u64>,
    /// `buckets[b]` is the first position whose prefix's top `bucket_bits` bits are `>= b`:
    /// a lookup binary-searches one bucket (about 8 to 16 prefixes, one or two cache
    /// misses) instead of the whole array (about 24 steps at 10M blocks).
    buckets: Vec<u32>,
    bucket_bits: u32,
    bits: Vec<u64>,
    walked: HashSet<IndexKey>,
    dirs: HashSet<IndexKey>,
    /// Counters.
    pub stats: MarkStats,
}

fn prefix(key: &IndexKey) -> u64 {
    u64::from_be_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ])
}

impl Marks {
    /// An empty mark set over `keys` (any order).
    pub fn over(mut prefixes: Vec<u64>) -> Self {
        prefixes.sort_unstable();
        let n = prefixes.len();
        // About 8 to 16 prefixes per bucket: 4 bytes per bucket, under half a byte per block.
        let bucket_bits = (n.max(1).ilog2()).saturating_sub(3).min(28);
        let mut buckets = vec![0u32; (1usize << bucket_bits) + 1];
        let mut i = 0usize;
        for (b, slot) in buckets.iter_mut().enumerate() {
            while i < n && Self::bucket_of(prefixes[i], bucket_bits) < b {
                i += 1;
            }
            // Positions fit in u32: an index of 4G blocks is far beyond a DataDir's reach,
            // and saturating only widens a search.
            *slot = u32::try_from(i).unwrap_or(u32::MAX);
        }
        Marks {
            prefixes,
            buckets,
            bucket_bits,
            bits: vec![0; n.div_ceil(64)],
            walked: HashSet::new(),
            dirs: HashSet::new(),
            stats: MarkStats {
                indexed: n as u64,
                ..MarkStats::default()
            },
        }
    }

    /// An empty mark set over the committed index of `store`.
    pub fn from_store(store: &DataDir) -> Result<Self> {
        let mut prefixes = Vec::with_capacity(store.index.counters()?.blocks as usize);
        store.index.for_each(|k, _| {
            prefixes.push(prefix(&k));
            Ok(())
        })?;
        Ok(Self::over(prefixes))
    }

    fn bucket_of(p: u64, bits: u32) -> usize {
        // `bits` is at most 28; a shift by 64 (no bits) would overflow.
        p.checked_shr(64 - bits).unwrap_or(0) as usize
    }

    /// The first position whose prefix is `>= p`.
    fn position(&self, p: u64) -> usize {
        let b = Self::bucket_of(p, self.bucket_bits);
        let n = self.prefixes.len();
        let lo = (self.buckets[b] as usize).min(n);
        let hi = (self.buckets[b + 1] as usize).clamp(lo, n);
        lo + self.prefixes[lo..hi].partition_point(|&x| x < p)
    }

    /// Marks `key` (every index key sharing its prefix). Returns false when the key was
    /// not indexed at GC start.
    pub fn mark(&mut self, key: &IndexKey) -> bool {
        let p = prefix(key);
        let start = self.position(p);
        let mut i = start;
        while i < self.prefixes.len() && self.prefixes[i] == p {
            let (w, b) = (i / 64, 1u64 << (i % 64));
            if self.bits[w] & b == 0 {
                self.bits[w] |= b;
                self.stats.marked += 1;
            }
            i += 1;
        }
        i > start
    }

    /// True when `key` is marked (or shares its prefix with a marked key).
    pub fn is_marked(&self, key: &IndexKey) -> bool {
        let p = prefix(key);
        let i = self.position(p);
        i < self.prefixes.len() && self.prefixes[i] == p && self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Bytes of memory the mark set holds (approximate for the exact set).
    pub fn memory_bytes(&self) -> usize {
        self.prefixes.capacity() * 8
            + self.buckets.capacity() * 4
            + self.bits.capacity() * 8
            + (self.walked.capacity() + self.dirs.capacity()) * 48
    }
}

/// Walks trees from roots, marking and reading interiors through a store.
pub(crate) struct Marker<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) marks: &'a mut Marks,
    /// Every key reached (for the final rescue); `None` when not wanted.
    pub(crate) reached: Option<Vec<IndexKey>>,
}

impl Marker<'_> {
    fn visit(&mut self, hash: &HashCode) -> IndexKey {
        let key = key_of(hash);
        self.marks.mark(&key);
        if let Some(r) = &mut self.reached {
            r.push(key);
        }
        key
    }

    /// Reads an interior block once; `None` when already walked, missing or unreadable.
    fn interior(&mut self, hash: &HashCode) -> Result<Option<Vec<u8>>> {
        let key = self.visit(hash);
        if !self.marks.walked.insert(key) {
            return Ok(None);
        }
        self.marks.stats.interiors_read += 1;
        match self.store.get(hash) {
            Ok(Some(d)) => Ok(Some(d)),
            Ok(None) => {
                self.marks.stats.missing += 1;
                Ok(None)
            }
            Err(Error::Corrupt { .. }) => {
                self.marks.stats.damaged += 1;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Marks the block tree of `r`.
    pub(crate) fn block(&mut self, r: &BlockRef, depth: usize) -> Result<()> {
        if depth > MAX_TREE_DEPTH {
            self.marks.stats.damaged += 1;
            return Ok(());
        }
        match r {
            BlockRef::Hash { hash, .. } => {
                self.visit(hash);
            }
            BlockRef::Indirect { hash, .. } => {
                let Some(data) = self.interior(hash)? else {
                    return Ok(());
                };
                match BlockRef::decode_all(&data) {
                    Ok(children) => {
                        for c in &children {
                            self.block(c, depth + 1)?;
                        }
                    }
                    Err(_) => self.marks.stats.damaged += 1,
                }
            }
            BlockRef::Sub { block, .. } => self.block(block, depth + 1)?,
            BlockRef::Rle { .. } | BlockRef::Literal(_) => {}
        }
        Ok(())
    }

    /// Marks a dirent's tree: its blocks and, for a directory, every entry below it.
    /// `prev` links are not followed: history lives in the archives.
    pub(crate) fn dirent(&mut self, root: &Dirent) -> Result<()> {
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Some(b) = &d.block else { continue };
            self.block(b, 0)?;
            if d.kind != DirentKind::Dir {
                continue;
            }
            // Each directory content is walked once (exact keys: skipping is not safe
            // on a prefix match).
            if let Some(h) = b.hashcode() {
                if !self.marks.dirs.insert(key_of(&h)) {
                    continue;
                }
            }
            let content = match crate::read::read_all(self.store, b) {
                Ok(c) => c,
                Err(Error::NotFound(_)) => {
                    self.marks.stats.missing += 1;
                    continue;
                }
                Err(Error::Corrupt { .. }) | Err(Error::BadInput(_)) => {
                    self.marks.stats.damaged += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.entries(&content, &mut stack);
        }
        Ok(())
    }

    /// Decodes a directory's entries leniently: the ones before a bad entry still count.
    fn entries(&mut self, content: &[u8], stack: &mut Vec<Dirent>) {
        let mut r = Reader::new(content);
        while !r.is_empty() {
            match Dirent::decode_from(&mut r) {
                Ok(e) => stack.push(e),
                Err(_) => {
                    self.marks.stats.damaged += 1;
                    return;
                }
            }
        }
    }

    /// Marks a root.
    pub(crate) fn root(&mut self, r: &RootRef) -> Result<()> {
        match r {
            RootRef::Dirent(d) => self.dirent(d),
            RootRef::Block(b) => self.block(b, 0),
        }
    }

    /// Marks what a re-referenced key may stand for when its kind is unknown: the key
    /// itself, and, when its content decodes as block references, their trees.
    pub(crate) fn untyped(&mut self, key: &IndexKey) -> Result<()> {
        let hash = crate::index::hash_of_key(key)?;
        if self.marks.walked.contains(key) {
            self.visit(&hash);
            return Ok(());
        }
        let Some(data) = self.interior(&hash)? else {
            return Ok(());
        };
        // A leaf that happens to decode only makes GC keep a few more blocks.
        if let Ok(children) = BlockRef::decode_all(&data) {
            for c in &children {
                self.block(c, 1)?;
            }
        }
        Ok(())
    }
}

/// Marks everything reachable from `roots` in `store`.
pub fn mark(store: &DataDir, roots: &[RootRef]) -> Result<Marks> {
    let mut marks = Marks::from_store(store)?;
    let mut m = Marker {
        store,
        marks: &mut marks,
        reached: None,
    };
    for r in roots {
        m.root(r)?;
    }
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u64) -> IndexKey {
        key_of(&crate::hash::HashAlg::Blake3.hash(&n.to_le_bytes()))
    }

    #[test]
    fn colliding_prefixes_mark_together() {
        let mut a = key(1);
        let mut b = a;
        b[20] ^= 1;
        a[32] = 1;
        let m0 = Marks::over(vec![prefix(&a), prefix(&b), prefix(&key(2))]);
        let mut m = m0;
        assert!(!m.is_marked(&a));
        assert!(m.mark(&a));
        assert!(m.is_marked(&b), "a prefix collision keeps the other block");
        assert!(!m.is_marked(&key(2)));
        assert_eq!(m.stats.marked, 2);
        assert!(!m.mark(&key(3)));
    }

    /// Memory is bounded by the structure, not by what is marked: 8 bytes of prefix and one
    /// bit per indexed block, plus exact keys for interior blocks only. A set holding a key
    /// per marked block (33 bytes or more each) would break the bound.
    #[test]
    fn mark_memory_is_bounded_by_structure() {
        use crate::store::datadir::DataDirOptions;
        let dir = tempfile::tempdir().unwrap();
        let opts = DataDirOptions {
            compression_level: 0,
            index_cache_bytes: 4 << 20,
            ..DataDirOptions::default()
        };
        let store = DataDir::create(dir.path().join("s"), opts).unwrap();
        // 20,000 leaves; nine in ten under indirect blocks of 100 children, under one root.
        let mut leaves = Vec::new();
        for i in 0..20_000u64 {
            let hash = store.add(&i.to_le_bytes()).unwrap();
            if i % 10 != 9 {
                leaves.push(BlockRef::Hash { hash, span: 8 });
            }
        }
        let indirect = |children: &[BlockRef]| {
            let mut buf = Vec::new();
            children.iter().for_each(|c| c.encode_into(&mut buf));
            let span = children.iter().map(BlockRef::span).sum();
            BlockRef::Indirect {
                hash: store.add(&buf).unwrap(),
                span,
            }
        };
        let mids: Vec<BlockRef> = leaves.chunks(100).map(indirect).collect();
        let root = indirect(&mids);
        store.flush().unwrap();

        let marks = mark(&store, &[RootRef::Block(root)]).unwrap();
        let interiors = mids.len() as u64 + 1;
        let n = 20_000 + interiors;
        assert_eq!(marks.stats.indexed, n);
        assert_eq!(marks.stats.marked, 18_000 + interiors);
        assert_eq!(marks.stats.interiors_read, interiors);
        assert_eq!(marks.walked.len() as u64, interiors);
        assert!(marks.dirs.is_empty());
        assert_eq!(marks.prefixes.len() as u64, n);
        assert_eq!(marks.bits.len() as u64, n.div_ceil(64));
        let bound = n * 9 + 64 + 256 * interiors;
        assert!(
            (marks.memory_bytes() as u64) <= bound,
            "{} > {bound}",
            marks.memory_bytes()
        );
        assert!(
            33 * marks.stats.marked > bound,
            "the bound tells the designs apart"
        );
    }

    proptest! {
        #[test]
        fn bucketed_lookup_matches_a_full_binary_search(
            mut ps in proptest::collection::vec(any::<u64>(), 0..3000),
            small in proptest::collection::vec(0u64..64, 0..200),
            queries in proptest::collection::vec(any::<u64>(), 1..100),
        ) {
            // Clustered and duplicated prefixes as well as spread ones.
            ps.extend(small.iter().map(|x| x << 58));
            ps.extend(small.iter().copied());
            let m = Marks::over(ps);
            let all = queries.iter().copied().chain(m.prefixes.iter().copied().take(50));
            for q in all {
                prop_assert_eq!(m.position(q), m.prefixes.partition_point(|&x| x < q));
            }
        }

        #[test]
        fn marks_are_exactly_the_marked_prefixes(n in 1u64..300, pick in proptest::collection::vec(any::<u16>(), 0..50)) {
            let keys: Vec<IndexKey> = (0..n).map(key).collect();
            let mut m = Marks::over(keys.iter().map(prefix).collect());
            let chosen: HashSet<usize> = pick.iter().map(|p| *p as usize % n as usize).collect();
            for &i in &chosen {
                prop_assert!(m.mark(&keys[i]));
            }
            for (i, k) in keys.iter().enumerate() {
                prop_assert_eq!(m.is_marked(k), chosen.contains(&i));
            }
        }
    }
}
