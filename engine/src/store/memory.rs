//! An in-memory store: an LRU cache bounded by the total bytes of its blocks.

use super::Store;
use crate::error::Result;
use crate::hash::{HashAlg, HashCode};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;

/// End of the recency list.
const NIL: usize = usize::MAX;

/// A [`Store`] held in memory, evicting least recently used blocks once the
/// stored bytes exceed its capacity.
///
/// `get` counts as a use; `contains` does not. A block larger than the whole
/// capacity is kept until the next add. Completeness flags are dropped whenever a
/// block is evicted, since an evicted child makes its ancestors incomplete.
#[derive(Debug)]
pub struct MemoryStore {
    alg: HashAlg,
    capacity: u64,
    inner: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    index: HashMap<HashCode, usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Most recently used slot, or NIL.
    head: usize,
    /// Least recently used slot, or NIL.
    tail: usize,
    bytes: u64,
    ordered: BTreeSet<HashCode>,
    complete: HashSet<HashCode>,
}

#[derive(Debug)]
struct Slot {
    hash: HashCode,
    data: Vec<u8>,
    prev: usize,
    next: usize,
}

impl MemoryStore {
    /// An unbounded store hashing with `alg`.
    pub fn new(alg: HashAlg) -> Self {
        Self::with_capacity(alg, u64::MAX)
    }

    /// A store keeping at most about `max_bytes` of block data.
    pub fn with_capacity(alg: HashAlg, max_bytes: u64) -> Self {
        MemoryStore {
            alg,
            capacity: max_bytes,
            inner: Mutex::new(Lru {
                head: NIL,
                tail: NIL,
                ..Lru::default()
            }),
        }
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes of block data currently held.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }
}

impl Lru {
    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slots[i].prev, self.slots[i].next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n].prev = prev,
        }
    }

    fn push_front(&mut self, i: usize) {
        self.slots[i].prev = NIL;
        self.slots[i].next = self.head;
        match self.head {
            NIL => self.tail = i,
            h => self.slots[h].prev = i,
        }
        self.head = i;
    }

    fn touch(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn insert(&mut self, hash: HashCode, data: Vec<u8>) -> usize {
        self.bytes += data.len() as u64;
        let slot = Slot {
            hash,
            data,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.push_front(i);
        self.index.insert(hash, i);
        self.ordered.insert(hash);
        i
    }

    /// Evicts from the cold end until within `capacity`, sparing slot `keep`.
    fn evict_to(&mut self, capacity: u64, keep: usize) {
        while self.bytes > capacity && self.tail != NIL && self.tail != keep {
            let i = self.tail;
            self.unlink(i);
            let data = std::mem::take(&mut self.slots[i].data);
            self.bytes -= data.len() as u64;
            let hash = self.slots[i].hash;
            self.index.remove(&hash);
            self.ordered.remove(&hash);
            self.free.push(i);
            self.complete.clear();
        }
    }
}

impl Store for MemoryStore {
    fn hash_alg(&self) -> HashAlg {
        self.alg
    }

    fn add_hashed(&self, hash: HashCode, data: &[u8]) -> Result<bool> {
        let mut lru = self.inner.lock();
        if let Some(&i) = lru.index.get(&hash) {
            lru.touch(i);
            return Ok(false);
        }
        let i = lru.insert(hash, data.to_vec());
        lru.evict_to(self.capacity, i);
        Ok(true)
    }

    fn get(&self, hash: &HashCode) -> Result<Option<Vec<u8>>> {
        let mut lru = self.inner.lock();
        let Some(&i) = lru.index.get(hash) else {
            return Ok(None);
        };
        lru.touch(i);
        Ok(Some(lru.slots[i].data.clone()))
    }

    fn contains(&self, hash: &HashCode) -> Result<bool> {
        Ok(self.inner.lock().index.contains_key(hash))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn hashcodes(
        &self,
        start: Option<&HashCode>,
        after: bool,
        limit: usize,
    ) -> Result<Vec<HashCode>> {
        let lru = self.inner.lock();
        let lower = match start {
            None => Bound::Unbounded,
            Some(h) if after => Bound::Excluded(*h),
            Some(h) => Bound::Included(*h),
        };
        Ok(lru
            .ordered
            .range((lower, Bound::Unbounded))
            .take(limit)
            .copied()
            .collect())
    }

    fn len(&self) -> Result<u64> {
        Ok(self.inner.lock().index.len() as u64)
    }

    fn is_complete(&self, hash: &HashCode) -> Result<bool> {
        Ok(self.inner.lock().complete.contains(hash))
    }

    fn set_complete(&self, hash: &HashCode) -> Result<()> {
        let mut lru = self.inner.lock();
        if lru.index.contains_key(hash) {
            lru.complete.insert(*hash);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(i: u32, len: usize) -> Vec<u8> {
        let mut v = i.to_be_bytes().to_vec();
        v.resize(len, b'x');
        v
    }

    #[test]
    fn add_get_contains_dedup() {
        let s = MemoryStore::new(HashAlg::Blake3);
        let h = s.add(b"hello").unwrap();
        assert_eq!(h, HashAlg::Blake3.hash(b"hello"));
        assert!(!s.add_hashed(h, b"hello").unwrap());
        assert_eq!(s.get(&h).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(s.contains(&h).unwrap());
        assert_eq!(s.len().unwrap(), 1);
        assert_eq!(s.bytes(), 5);
        let missing = HashAlg::Blake3.hash(b"nope");
        assert_eq!(s.get(&missing).unwrap(), None);
        assert!(matches!(
            s.get_required(&missing),
            Err(crate::Error::NotFound(_))
        ));
    }

    #[test]
    fn evicts_least_recently_used() {
        let s = MemoryStore::with_capacity(HashAlg::Blake3, 300);
        let hs: Vec<_> = (0..3).map(|i| s.add(&block(i, 100)).unwrap()).collect();
        // Use block 0 so block 1 is the coldest.
        assert!(s.get(&hs[0]).unwrap().is_some());
        let h3 = s.add(&block(3, 100)).unwrap();
        assert!(s.contains(&hs[0]).unwrap());
        assert!(!s.contains(&hs[1]).unwrap());
        assert!(s.contains(&hs[2]).unwrap());
        assert!(s.contains(&h3).unwrap());
        assert_eq!(s.bytes(), 300);
        assert_eq!(s.len().unwrap(), 3);
        assert_eq!(s.hashcodes(None, false, 10).unwrap().len(), 3);
    }

    #[test]
    fn oversized_block_survives_until_next_add() {
        let s = MemoryStore::with_capacity(HashAlg::Blake3, 100);
        let a = s.add(&block(0, 50)).unwrap();
        let big = s.add(&block(1, 500)).unwrap();
        assert!(!s.contains(&a).unwrap());
        assert!(s.contains(&big).unwrap());
        let c = s.add(&block(2, 50)).unwrap();
        assert!(!s.contains(&big).unwrap());
        assert!(s.contains(&c).unwrap());
    }

    #[test]
    fn completeness_dropped_on_eviction() {
        let s = MemoryStore::with_capacity(HashAlg::Blake3, 200);
        let a = s.add(&block(0, 100)).unwrap();
        s.set_complete(&a).unwrap();
        assert!(s.is_complete(&a).unwrap());
        s.add(&block(1, 50)).unwrap();
        assert!(s.is_complete(&a).unwrap());
        s.add(&block(2, 100)).unwrap();
        assert!(!s.is_complete(&a).unwrap());
        let absent = HashAlg::Blake3.hash(b"absent");
        s.set_complete(&absent).unwrap();
        assert!(!s.is_complete(&absent).unwrap());
    }

    #[test]
    fn hashcodes_are_ordered_and_paged() {
        let s = MemoryStore::new(HashAlg::Sha256);
        for i in 0..50 {
            s.add(&block(i, 10)).unwrap();
        }
        let all = s.hashcodes(None, false, usize::MAX).unwrap();
        assert_eq!(all.len(), 50);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        let page = s.hashcodes(Some(&all[10]), false, 5).unwrap();
        assert_eq!(page, all[10..15]);
        let page = s.hashcodes(Some(&all[10]), true, 5).unwrap();
        assert_eq!(page, all[11..16]);
    }

    proptest! {
        /// The LRU agrees with a naive model under random adds and gets.
        #[test]
        fn matches_naive_model(ops in proptest::collection::vec((any::<bool>(), 0u32..20, 1usize..60), 1..200)) {
            let cap = 200u64;
            let s = MemoryStore::with_capacity(HashAlg::Blake3, cap);
            // Model: most recent last.
            let mut model: Vec<(HashCode, usize)> = Vec::new();
            for (is_get, id, len) in ops {
                let data = block(id, len);
                let h = HashAlg::Blake3.hash(&data);
                let pos = model.iter().position(|(m, _)| *m == h);
                if is_get {
                    prop_assert_eq!(s.get(&h).unwrap().is_some(), pos.is_some());
                    if let Some(p) = pos {
                        let e = model.remove(p);
                        model.push(e);
                    }
                } else {
                    s.add(&data).unwrap();
                    match pos {
                        Some(p) => { let e = model.remove(p); model.push(e); }
                        None => {
                            model.push((h, len));
                            while model.iter().map(|e| e.1 as u64).sum::<u64>() > cap && model.len() > 1 {
                                model.remove(0);
                            }
                        }
                    }
                }
                prop_assert_eq!(s.len().unwrap(), model.len() as u64);
                prop_assert_eq!(s.bytes(), model.iter().map(|e| e.1 as u64).sum::<u64>());
                for (m, _) in &model {
                    prop_assert!(s.contains(m).unwrap());
                }
            }
        }
    }
}
