//! A read cache over a store: hot blocks (leaves and indirect blocks) stay in
//! memory, and sequential readers get the following leaves fetched ahead.

use crate::block::BlockRef;
use crate::error::Result;
use crate::hash::{HashAlg, HashCode};
use crate::read;
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Two generations of blocks: lookups promote from `old` to `new`; when `new`
/// outgrows half the budget it becomes `old` and the previous `old` is dropped.
/// That gives LRU-like behaviour with O(1) work per operation.
#[derive(Debug, Default)]
struct Generations {
    new: HashMap<HashCode, Arc<Vec<u8>>>,
    old: HashMap<HashCode, Arc<Vec<u8>>>,
    new_bytes: u64,
}

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

    fn lookup(&self, hash: &HashCode) -> Option<Arc<Vec<u8>>> {
        let mut g = self.gens.lock();
        if let Some(d) = g.new.get(hash) {
            return Some(d.clone());
        }
        let d = g.old.remove(hash)?;
        self.insert_locked(&mut g, *hash, d.clone());
        Some(d)
    }

    fn insert_locked(&self, g: &mut Generations, hash: HashCode, data: Arc<Vec<u8>>) {
        g.new_bytes += data.len() as u64;
        g.new.insert(hash, data);
        if g.new_bytes > self.budget / 2 {
            g.old = std::mem::take(&mut g.new);
            g.new_bytes = 0;
        }
    }
}

impl Store for CachedStore {
    fn hash_alg(&self) -> HashAlg {
        self.inner.hash_alg()
    }
    fn add_hashed(&self, hash: HashCode, data: &[u8]) -> Result<bool> {
        self.inner.add_hashed(hash, data)
    }
    fn get(&self, hash: &HashCode) -> Result<Option<Vec<u8>>> {
        if let Some(d) = self.lookup(hash) {
            return Ok(Some(d.as_ref().clone()));
        }
        let got = self.inner.get(hash)?;
        if let Some(d) = &got {
            if (d.len() as u64) < self.budget / 8 {
                self.insert_locked(&mut self.gens.lock(), *hash, Arc::new(d.clone()));
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

/// A background thread warming the cache with ranges a sequential reader will
/// want next. Requests are dropped when the thread is busy: read-ahead is a hint.
#[derive(Debug)]
pub struct ReadAhead {
    tx: crossbeam_channel::Sender<(BlockRef, u64, u64)>,
}

impl ReadAhead {
    /// Starts the thread over `store`.
    pub fn start(store: Arc<CachedStore>) -> Self {
        let (tx, rx) = crossbeam_channel::bounded::<(BlockRef, u64, u64)>(4);
        let spawned = std::thread::Builder::new()
            .name("vt-readahead".into())
            .spawn(move || {
                for (r, off, len) in rx {
                    // Errors surface when the reader itself gets there.
                    let _ = read::read_range(store.as_ref(), &r, off, len);
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
        let _ = self.tx.try_send((r.clone(), off, len));
    }
}
