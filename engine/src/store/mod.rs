//! The `Store` trait and its implementations.
//!
//! A store maps hashcodes to bytes. Contracts shared by every implementation:
//! - `add` never overwrites: adding a block that is present writes nothing;
//! - `get` returns exactly the bytes that hash to the hashcode, or an error;
//! - `flush` is a barrier: everything added before it returns is durable
//!   (for persistent stores) and visible to other handles;
//! - a store is `Send + Sync` and may be used from many threads at once.

pub mod memory;

pub use memory::MemoryStore;

use crate::error::{Error, Result};
use crate::hash::{HashAlg, HashCode};

pub mod datadir;
pub(crate) mod datadir_gc;
mod datadir_group;
mod datadir_read;
pub use datadir::{DataDir, DataDirOptions};

/// A mapping hashcode → bytes.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The algorithm this store hashes new blocks with.
    fn hash_alg(&self) -> HashAlg;

    /// Stores `data` and returns its hashcode. Fails on I/O errors or a closed store.
    fn add(&self, data: &[u8]) -> Result<HashCode> {
        let hash = self.hash_alg().hash(data);
        self.add_hashed(hash, data)?;
        Ok(hash)
    }

    /// Stores `data` under `hash`, which the caller computed over `data`.
    ///
    /// Returns true when the block was new. Stores may re-check the hash.
    fn add_hashed(&self, hash: HashCode, data: &[u8]) -> Result<bool>;

    /// The block's bytes, or `None` when absent. Fails when stored bytes are corrupt.
    fn get(&self, hash: &HashCode) -> Result<Option<Vec<u8>>>;

    /// True when the block is present.
    fn contains(&self, hash: &HashCode) -> Result<bool>;

    /// Makes every earlier add durable and visible (commits the open transaction).
    fn flush(&self) -> Result<()>;

    /// Up to `limit` hashcodes in ascending order, starting at `start`
    /// (inclusive, or exclusive when `after`), or from the lowest when `start` is `None`.
    fn hashcodes(
        &self,
        start: Option<&HashCode>,
        after: bool,
        limit: usize,
    ) -> Result<Vec<HashCode>>;

    /// Number of distinct blocks stored.
    fn len(&self) -> Result<u64>;

    /// True when the store holds no blocks.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// True when `hash` names an indirect block known to have its whole tree present.
    fn is_complete(&self, _hash: &HashCode) -> Result<bool> {
        Ok(false)
    }

    /// Records that the indirect block `hash` has its whole tree present.
    fn set_complete(&self, _hash: &HashCode) -> Result<()> {
        Ok(())
    }

    /// The block's bytes; fails with [`Error::NotFound`] when absent.
    fn get_required(&self, hash: &HashCode) -> Result<Vec<u8>> {
        self.get(hash)?.ok_or(Error::NotFound(*hash))
    }

    /// Reads the block into the front of `buf`, growing it when shorter, and returns the
    /// block's length, or `None` when absent. Bytes past the block are left as they were,
    /// so a buffer reused across calls costs no allocation or zeroing (stores that can,
    /// read straight into it). Fails as [`get`](Store::get) does.
    fn get_into(&self, hash: &HashCode, buf: &mut Vec<u8>) -> Result<Option<usize>> {
        let Some(data) = self.get(hash)? else {
            return Ok(None);
        };
        if buf.len() < data.len() {
            buf.resize(data.len(), 0);
        }
        buf[..data.len()].copy_from_slice(&data);
        Ok(Some(data.len()))
    }

    /// Reads the blocks `hashes` into `buf` and sets `ranges` to where each one is, in
    /// order. `buf` is scratch: it grows when needed and is never shrunk or zeroed, so a
    /// reused buffer costs no allocation. Stores that can fetch neighbouring blocks with
    /// one read. Every block is verified as [`get`](Store::get) does; a missing one fails
    /// with [`Error::NotFound`].
    fn get_many_into(
        &self,
        hashes: &[HashCode],
        buf: &mut Vec<u8>,
        ranges: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<()> {
        ranges.clear();
        let mut pos = 0;
        for h in hashes {
            let data = self.get_required(h)?;
            let end = pos + data.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[pos..end].copy_from_slice(&data);
            ranges.push(pos..end);
            pos = end;
        }
        Ok(())
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn hash_alg(&self) -> HashAlg {
        (**self).hash_alg()
    }
    fn add(&self, data: &[u8]) -> Result<HashCode> {
        (**self).add(data)
    }
    fn add_hashed(&self, hash: HashCode, data: &[u8]) -> Result<bool> {
        (**self).add_hashed(hash, data)
    }
    fn get(&self, hash: &HashCode) -> Result<Option<Vec<u8>>> {
        (**self).get(hash)
    }
    fn get_into(&self, hash: &HashCode, buf: &mut Vec<u8>) -> Result<Option<usize>> {
        (**self).get_into(hash, buf)
    }
    fn get_many_into(
        &self,
        hashes: &[HashCode],
        buf: &mut Vec<u8>,
        ranges: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<()> {
        (**self).get_many_into(hashes, buf, ranges)
    }
    fn contains(&self, hash: &HashCode) -> Result<bool> {
        (**self).contains(hash)
    }
    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
    fn hashcodes(
        &self,
        start: Option<&HashCode>,
        after: bool,
        limit: usize,
    ) -> Result<Vec<HashCode>> {
        (**self).hashcodes(start, after, limit)
    }
    fn len(&self) -> Result<u64> {
        (**self).len()
    }
    fn is_complete(&self, hash: &HashCode) -> Result<bool> {
        (**self).is_complete(hash)
    }
    fn set_complete(&self, hash: &HashCode) -> Result<()> {
        (**self).set_complete(hash)
    }
}

/// Lets a `&dyn Store` serve as blockify's sink (trait objects cannot be re-cast).
#[derive(Debug, Clone, Copy)]
pub struct StoreSink<'a>(pub &'a dyn Store);

impl crate::blockify::BlockSink for StoreSink<'_> {
    fn put(&self, hash: HashCode, data: &[u8]) -> Result<()> {
        self.0.add_hashed(hash, data).map(|_| ())
    }
}
