//! The block index: redb tables mapping hashcodes to record locations, plus an
//! in-memory negative filter so lookups of absent blocks rarely touch the B-tree.
//!
//! Tables (layouts in `docs/format.md`):
//! - `blocks`: [`IndexKey`] (33 bytes) → [`Location`] (24 bytes);
//! - `segments`: segment id (u32) → [`SegmentInfo`];
//! - `meta`: name → bytes (format version, hash algorithm, counters).

use crate::error::{Error, Result};
use crate::hash::{HashAlg, HashCode};
use crate::io::IndexBackend;
use crate::segment::{Codec, SegmentFormat};
use parking_lot::RwLock;
use redb::{
    ConcurrencyMode, Database, Durability, ReadOnlyDatabase, ReadOnlyTable, ReadableDatabase,
    ReadableTable, TableDefinition, TableError,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Index key: the digest zero-padded to 32 bytes, then the hashenum, so byte order is
/// hashcode order (digest first).
pub type IndexKey = [u8; KEY_LEN];
/// Length of an [`IndexKey`].
pub const KEY_LEN: usize = 33;
/// Length of an encoded [`Location`].
pub const LOCATION_LEN: usize = 24;

const BLOCKS: TableDefinition<IndexKey, [u8; LOCATION_LEN]> = TableDefinition::new("blocks");
const SEGMENTS: TableDefinition<u32, &[u8]> = TableDefinition::new("segments");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Version of the index layout (tables and encodings) this code reads and writes.
pub const INDEX_VERSION: u64 = 1;
/// `meta` key: index layout version (u64 LE).
pub const META_VERSION: &str = "index_version";
/// `meta` key: the store's hash algorithm name.
pub const META_HASH_ALG: &str = "hash_alg";
/// `meta` key: counters (blocks, stored bytes, logical bytes, generation), 4 × u64 LE.
pub const META_COUNTERS: &str = "counters";

/// Location flag bits 0..3: the payload [`Codec`].
pub const FLAG_CODEC_MASK: u16 = 0x000f;
/// Location flag: the record is a legacy cs.vt record; `offset` points at its payload.
pub const FLAG_LEGACY: u16 = 0x0010;
/// Location flag: the block is an indirect block whose whole tree is present.
pub const FLAG_INDIRECT_COMPLETE: u16 = 0x0020;

/// The key of a hashcode.
pub fn key_of(hash: &HashCode) -> IndexKey {
    let mut k = [0u8; KEY_LEN];
    let d = hash.digest();
    k[..d.len()].copy_from_slice(d);
    k[32] = hash.alg().hashenum() as u8;
    k
}

/// The hashcode of a key; fails for an unknown hashenum.
pub fn hash_of_key(k: &IndexKey) -> Result<HashCode> {
    let alg = HashAlg::from_hashenum(u64::from(k[32]))?;
    HashCode::from_digest(alg, &k[..alg.digest_len()])
}

/// A segment's number, unique within a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub u32);

/// Where a block's record lives, and its index flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The segment holding the record.
    pub segment: SegmentId,
    /// Record start (version 1) or payload start (legacy).
    pub offset: u64,
    /// Payload bytes on disk.
    pub stored_len: u32,
    /// Block length.
    pub raw_len: u32,
    /// Codec and `FLAG_*` bits.
    pub flags: u16,
    /// The commit generation that indexed the record (for GC grace periods).
    pub generation: u32,
}

impl Location {
    /// The payload codec.
    pub fn codec(&self) -> Result<Codec> {
        let c = (self.flags & FLAG_CODEC_MASK) as u8;
        Codec::from_u8(c).ok_or_else(|| Error::Index(format!("unknown codec {c} in index entry")))
    }

    /// The 24-byte value: segment u32, offset u48, stored u32, raw u32, flags u16, generation u32 (all LE).
    pub fn encode(&self) -> [u8; LOCATION_LEN] {
        let mut v = [0u8; LOCATION_LEN];
        v[0..4].copy_from_slice(&self.segment.0.to_le_bytes());
        v[4..10].copy_from_slice(&self.offset.to_le_bytes()[..6]);
        v[10..14].copy_from_slice(&self.stored_len.to_le_bytes());
        v[14..18].copy_from_slice(&self.raw_len.to_le_bytes());
        v[18..20].copy_from_slice(&self.flags.to_le_bytes());
        v[20..24].copy_from_slice(&self.generation.to_le_bytes());
        v
    }

    /// Decodes [`Location::encode`].
    pub fn decode(v: &[u8; LOCATION_LEN]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
        let mut off = [0u8; 8];
        off[..6].copy_from_slice(&v[4..10]);
        Location {
            segment: SegmentId(u32_at(0)),
            offset: u64::from_le_bytes(off),
            stored_len: u32_at(10),
            raw_len: u32_at(14),
            flags: u16::from_le_bytes([v[18], v[19]]),
            generation: u32_at(20),
        }
    }
}

/// A row of the `segments` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// File name under `data/`.
    pub name: String,
    /// Format of the file.
    pub format: SegmentFormat,
    /// Every record before this offset is indexed (or a known duplicate).
    pub indexed_end: u64,
}

impl SegmentInfo {
    /// `indexed_end` u64 LE, format u8, then the file name (UTF-8).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + self.name.len());
        v.extend_from_slice(&self.indexed_end.to_le_bytes());
        v.push(self.format.code());
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    /// Decodes [`SegmentInfo::encode`].
    pub fn decode(v: &[u8]) -> Result<Self> {
        let bad = || Error::Index("malformed segments row".into());
        let end = v.get(..8).ok_or_else(bad)?;
        let format = SegmentFormat::from_code(*v.get(8).ok_or_else(bad)?).ok_or_else(bad)?;
        let name = std::str::from_utf8(&v[9..]).map_err(|_| bad())?.to_string();
        let indexed_end = u64::from_le_bytes(end.try_into().map_err(|_| bad())?);
        Ok(SegmentInfo {
            name,
            format,
            indexed_end,
        })
    }
}

/// Store-wide counters kept in the `meta` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Distinct blocks indexed.
    pub blocks: u64,
    /// Payload bytes on disk of indexed blocks.
    pub stored_bytes: u64,
    /// Total length of indexed blocks.
    pub logical_bytes: u64,
    /// Number of index commits.
    pub generation: u64,
}

impl Counters {
    fn encode(&self) -> [u8; 32] {
        let mut v = [0u8; 32];
        for (i, n) in [
            self.blocks,
            self.stored_bytes,
            self.logical_bytes,
            self.generation,
        ]
        .iter()
        .enumerate()
        {
            v[i * 8..i * 8 + 8].copy_from_slice(&n.to_le_bytes());
        }
        v
    }
    fn decode(v: &[u8]) -> Self {
        let at = |i: usize| {
            v.get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        Counters {
            blocks: at(0),
            stored_bytes: at(1),
            logical_bytes: at(2),
            generation: at(3),
        }
    }
}

/// One index transaction's changes, applied by [`Index::commit`].
#[derive(Debug, Default)]
pub struct Batch {
    /// New entries; sorted by key before insertion (sorted inserts touch each leaf once).
    pub blocks: Vec<(IndexKey, Location)>,
    /// Keys already indexed that gain [`FLAG_INDIRECT_COMPLETE`].
    pub set_complete: Vec<IndexKey>,
    /// Segment rows to write.
    pub segments: Vec<(SegmentId, SegmentInfo)>,
    /// `meta` rows to write.
    pub meta: Vec<(&'static str, Vec<u8>)>,
    /// Remove every block entry first (reindex).
    pub clear_blocks: bool,
}

type BlocksTable = Arc<ReadOnlyTable<IndexKey, [u8; LOCATION_LEN]>>;

enum Db {
    Rw(Database),
    Ro(ReadOnlyDatabase),
}

/// The redb index of one store.
pub struct Index {
    db: Db,
    /// A cached snapshot of the `blocks` table, replaced after each commit; `None` when stale.
    /// Opening a read transaction per lookup would cost more than the lookup itself.
    snapshot: RwLock<Option<(u64, BlocksTable)>>,
    /// Bumped after every commit; a snapshot taken under an older value is stale.
    commits: AtomicU64,
    /// Read-only handles follow another process's commits, so they never cache snapshots.
    cache_snapshots: bool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("writable", &matches!(self.db, Db::Rw(_)))
            .finish()
    }
}

fn missing_ok<T>(r: std::result::Result<T, TableError>) -> Result<Option<T>> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Index {
    /// Opens (or creates) a writable index over `backend` with `cache_bytes` of page cache.
    pub fn open_writable(
        backend: IndexBackend,
        mode: ConcurrencyMode,
        cache_bytes: usize,
    ) -> Result<Self> {
        let db = Database::builder()
            .set_concurrency_mode(mode)
            .set_cache_size(cache_bytes)
            .create_with_backend(backend)?;
        Ok(Index {
            db: Db::Rw(db),
            snapshot: RwLock::new(None),
            commits: AtomicU64::new(0),
            cache_snapshots: true,
        })
    }

    /// Opens an existing index read-only (it follows a writer process in `SingleWriter` mode).
    pub fn open_read_only(backend: IndexBackend, mode: ConcurrencyMode) -> Result<Self> {
        let db = Database::builder()
            .set_concurrency_mode(mode)
            .open_read_only_with_backend(backend)?;
        Ok(Index {
            db: Db::Ro(db),
            snapshot: RwLock::new(None),
            commits: AtomicU64::new(0),
            cache_snapshots: false,
        })
    }

    /// A writable index held in memory (for scanning a store that cannot be written).
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Ok(Index {
            db: Db::Rw(db),
            snapshot: RwLock::new(None),
            commits: AtomicU64::new(0),
            cache_snapshots: true,
        })
    }

    /// True when the index can be written.
    pub fn is_writable(&self) -> bool {
        matches!(self.db, Db::Rw(_))
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        Ok(match &self.db {
            Db::Rw(db) => db.begin_read()?,
            Db::Ro(db) => db.begin_read()?,
        })
    }

    fn blocks_table(&self) -> Result<Option<BlocksTable>> {
        let gen = self.commits.load(Ordering::Acquire);
        if let Some((g, t)) = self.snapshot.read().as_ref() {
            if *g == gen {
                return Ok(Some(t.clone()));
            }
        }
        let Some(t) = missing_ok(self.begin_read()?.open_table(BLOCKS))? else {
            return Ok(None);
        };
        let t = Arc::new(t);
        if self.cache_snapshots {
            let mut slot = self.snapshot.write();
            // A commit since `gen` was read may predate this read transaction or not: don't cache.
            if self.commits.load(Ordering::Acquire) == gen {
                *slot = Some((gen, t.clone()));
            }
        }
        Ok(Some(t))
    }

    /// The location of `key`, if indexed.
    pub fn get(&self, key: &IndexKey) -> Result<Option<Location>> {
        let Some(t) = self.blocks_table()? else {
            return Ok(None);
        };
        let v = t.get(key)?;
        Ok(v.map(|g| Location::decode(&g.value())))
    }

    /// Up to `limit` keys in order from `start` (exclusive when `after`).
    pub fn keys_from(
        &self,
        start: Option<&IndexKey>,
        after: bool,
        limit: usize,
    ) -> Result<Vec<IndexKey>> {
        let Some(t) = self.blocks_table()? else {
            return Ok(Vec::new());
        };
        let range = match start {
            None => t.range::<IndexKey>(..)?,
            Some(s) => t.range::<IndexKey>(*s..)?,
        };
        let mut out = Vec::with_capacity(limit.min(4096));
        for item in range {
            let k = item?.0.value();
            if after && Some(&k) == start {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(k);
        }
        Ok(out)
    }

    /// Calls `f` for every entry, in key order.
    pub fn for_each(&self, mut f: impl FnMut(IndexKey, Location) -> Result<()>) -> Result<()> {
        let Some(t) = missing_ok(self.begin_read()?.open_table(BLOCKS))? else {
            return Ok(());
        };
        for item in t.range::<IndexKey>(..)? {
            let (k, v) = item?;
            f(k.value(), Location::decode(&v.value()))?;
        }
        Ok(())
    }

    /// Every row of the `segments` table.
    pub fn segments(&self) -> Result<Vec<(SegmentId, SegmentInfo)>> {
        let Some(t) = missing_ok(self.begin_read()?.open_table(SEGMENTS))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in t.range::<u32>(..)? {
            let (k, v) = item?;
            out.push((SegmentId(k.value()), SegmentInfo::decode(v.value())?));
        }
        Ok(out)
    }

    /// A `meta` value.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(t) = missing_ok(self.begin_read()?.open_table(META))? else {
            return Ok(None);
        };
        let v = t.get(name)?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    /// The store counters.
    pub fn counters(&self) -> Result<Counters> {
        Ok(self
            .meta(META_COUNTERS)?
            .map(|v| Counters::decode(&v))
            .unwrap_or_default())
    }

    /// Applies `batch` in one transaction, durably when `durable`, updating the counters.
    /// Fails on a read-only index.
    pub fn commit(&self, mut batch: Batch, durable: bool) -> Result<Counters> {
        let Db::Rw(db) = &self.db else {
            return Err(Error::Unsupported("index is read-only".into()));
        };
        let mut counters = if batch.clear_blocks {
            Counters {
                generation: self.counters()?.generation,
                ..Counters::default()
            }
        } else {
            self.counters()?
        };
        counters.generation += 1;
        batch.blocks.sort_unstable_by_key(|e| e.0);
        let mut txn = db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(|e| Error::Index(e.to_string()))?;
        {
            let mut blocks = txn.open_table(BLOCKS)?;
            if batch.clear_blocks {
                blocks.retain(|_, _| false)?;
            }
            for (k, loc) in &batch.blocks {
                let mut loc = *loc;
                loc.generation = counters.generation as u32;
                if blocks.insert(k, loc.encode())?.is_none() {
                    counters.blocks += 1;
                    counters.stored_bytes += u64::from(loc.stored_len);
                    counters.logical_bytes += u64::from(loc.raw_len);
                }
            }
            batch.set_complete.sort_unstable();
            for k in &batch.set_complete {
                let old = blocks.get(k)?.map(|g| Location::decode(&g.value()));
                if let Some(mut loc) = old {
                    loc.flags |= FLAG_INDIRECT_COMPLETE;
                    blocks.insert(k, loc.encode())?;
                }
            }
            let mut segs = txn.open_table(SEGMENTS)?;
            for (id, info) in &batch.segments {
                segs.insert(id.0, info.encode().as_slice())?;
            }
            let mut meta = txn.open_table(META)?;
            for (name, v) in &batch.meta {
                meta.insert(*name, v.as_slice())?;
            }
            meta.insert(META_COUNTERS, counters.encode().as_slice())?;
        }
        txn.commit()?;
        self.commits.fetch_add(1, Ordering::AcqRel);
        *self.snapshot.write() = None;
        Ok(counters)
    }
}

/// Bits per key of each filter stage: ~0.5% false positives with 7 probes per 512-bit block.
pub const FILTER_BITS_PER_KEY: usize = 12;
/// Capacity of the first filter stage when the store is small.
pub const FILTER_MIN_CAPACITY: usize = 1 << 20;
const FILTER_PROBES: u32 = 7;

/// One blocked Bloom filter: each key sets bits within one 512-bit (cache-line) block.
#[derive(Debug)]
struct BloomStage {
    words: Vec<AtomicU64>,
    blocks: u64,
    capacity: usize,
    count: AtomicU64,
}

impl BloomStage {
    fn new(capacity: usize) -> Self {
        let blocks = (capacity * FILTER_BITS_PER_KEY).div_ceil(512).max(1);
        BloomStage {
            words: (0..blocks * 8).map(|_| AtomicU64::new(0)).collect(),
            blocks: blocks as u64,
            capacity,
            count: AtomicU64::new(0),
        }
    }

    /// Keys are cryptographic digests, so their bytes serve as the hash bits directly.
    fn probes(&self, key: &IndexKey) -> impl Iterator<Item = (usize, u64)> {
        let h1 = u64::from_le_bytes(key[0..8].try_into().unwrap_or_default());
        let h2 = u64::from_le_bytes(key[8..16].try_into().unwrap_or_default());
        let block = ((u128::from(h1) * u128::from(self.blocks)) >> 64) as usize;
        (0..FILTER_PROBES).map(move |i| {
            let bit = (h2 >> (i * 9)) & 511;
            (block * 8 + (bit >> 6) as usize, 1u64 << (bit & 63))
        })
    }

    fn insert(&self, key: &IndexKey) {
        for (w, m) in self.probes(key) {
            self.words[w].fetch_or(m, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn may_contain(&self, key: &IndexKey) -> bool {
        self.probes(key)
            .all(|(w, m)| self.words[w].load(Ordering::Relaxed) & m != 0)
    }
}

/// An in-memory filter over every indexed or pending key: "absent" answers are exact,
/// "present" answers are wrong ~0.5% of the time.
///
/// It grows by adding stages of doubling capacity, so it never needs a rescan of the index.
/// Memory: [`FILTER_BITS_PER_KEY`] bits (1.5 bytes) per key of capacity; at most twice the
/// key count plus [`FILTER_MIN_CAPACITY`] keys are provisioned (≈ 75–150 MiB at 50M blocks).
#[derive(Debug)]
pub struct NegativeFilter {
    stages: RwLock<Vec<BloomStage>>,
}

impl NegativeFilter {
    /// An empty filter sized for `expected` keys.
    pub fn new(expected: usize) -> Self {
        let cap = (expected * 2).max(FILTER_MIN_CAPACITY);
        NegativeFilter {
            stages: RwLock::new(vec![BloomStage::new(cap)]),
        }
    }

    /// Adds a key.
    pub fn insert(&self, key: &IndexKey) {
        let stages = self.stages.read();
        if let Some(last) = stages.last() {
            if (last.count.load(Ordering::Relaxed) as usize) < last.capacity {
                last.insert(key);
                return;
            }
        }
        let cap = stages
            .last()
            .map_or(FILTER_MIN_CAPACITY, |s| s.capacity * 2);
        drop(stages);
        let mut stages = self.stages.write();
        let full = stages
            .last()
            .is_none_or(|s| s.count.load(Ordering::Relaxed) as usize >= s.capacity);
        if full {
            stages.push(BloomStage::new(cap));
        }
        if let Some(last) = stages.last() {
            last.insert(key);
        }
    }

    /// False when `key` was certainly never inserted.
    pub fn may_contain(&self, key: &IndexKey) -> bool {
        self.stages.read().iter().any(|s| s.may_contain(key))
    }

    /// Bytes of memory held by the bit arrays.
    pub fn memory_bytes(&self) -> usize {
        self.stages.read().iter().map(|s| s.words.len() * 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn filter_has_no_false_negatives_and_few_false_positives() {
        let f = NegativeFilter::new(1000);
        let keys: Vec<IndexKey> = (0..3_000_000u32)
            .map(|i| key_of(&HashAlg::Blake3.hash(&i.to_le_bytes())))
            .collect();
        for k in &keys[..2_500_000] {
            f.insert(k);
        }
        assert!(keys[..2_500_000].iter().all(|k| f.may_contain(k)));
        let fp = keys[2_500_000..]
            .iter()
            .filter(|k| f.may_contain(k))
            .count();
        assert!(fp < 500_000 / 50, "false positives: {fp}");
    }

    #[test]
    fn key_order_is_hashcode_order() {
        let a = HashAlg::Blake3.hash(b"a");
        let b = HashAlg::Blake3.hash(b"b");
        assert_eq!(key_of(&a).cmp(&key_of(&b)), a.cmp(&b));
        assert_eq!(hash_of_key(&key_of(&a)).unwrap(), a);
        let s = HashAlg::Sha1.hash(b"a");
        assert_eq!(hash_of_key(&key_of(&s)).unwrap(), s);
    }

    #[test]
    fn commit_and_lookup() {
        let idx = Index::in_memory().unwrap();
        let h = HashAlg::Blake3.hash(b"x");
        let loc = Location {
            segment: SegmentId(3),
            offset: 1 << 40,
            stored_len: 5,
            raw_len: 9,
            flags: 2,
            generation: 0,
        };
        let batch = Batch {
            blocks: vec![(key_of(&h), loc)],
            ..Batch::default()
        };
        let c = idx.commit(batch, true).unwrap();
        assert_eq!((c.blocks, c.logical_bytes, c.generation), (1, 9, 1));
        let got = idx.get(&key_of(&h)).unwrap().unwrap();
        assert_eq!(
            got,
            Location {
                generation: 1,
                ..loc
            }
        );
        let batch = Batch {
            set_complete: vec![key_of(&h)],
            ..Batch::default()
        };
        idx.commit(batch, true).unwrap();
        assert_ne!(
            idx.get(&key_of(&h)).unwrap().unwrap().flags & FLAG_INDIRECT_COMPLETE,
            0
        );
    }

    proptest! {
        #[test]
        fn location_roundtrip(seg in any::<u32>(), off in 0u64..(1 << 48), s in any::<u32>(), r in any::<u32>(), fl in any::<u16>(), g in any::<u32>()) {
            let loc = Location { segment: SegmentId(seg), offset: off, stored_len: s, raw_len: r, flags: fl, generation: g };
            prop_assert_eq!(Location::decode(&loc.encode()), loc);
        }

        #[test]
        fn segment_info_garbage_never_panics(v in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = SegmentInfo::decode(&v);
        }
    }
}

// ---- garbage collection ------------------------------------------------------
// Kept apart from the rest of the index so GC's one transaction stays in one place.

/// One GC index switch, applied by [`Index::gc_switch`] in a single transaction.
#[derive(Debug, Default)]
pub struct GcSwitch {
    /// `(key, old segment, new location)`: re-point a block whose entry still lives in the
    /// old segment. Flags (completeness) and generation of the current entry are kept.
    pub moves: Vec<(IndexKey, SegmentId, Location)>,
    /// Remove every entry whose record lives in one of these segments (after the moves),
    /// and drop their `segments` rows.
    pub retire: Vec<SegmentId>,
    /// Segment rows to write (the new segments).
    pub segments: Vec<(SegmentId, SegmentInfo)>,
    /// `meta` rows to write; an empty value removes the row.
    pub meta: Vec<(&'static str, Vec<u8>)>,
}

/// What [`Index::gc_switch`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcSwitched {
    /// Entries re-pointed.
    pub moved: u64,
    /// Entries removed.
    pub removed: u64,
    /// Stored bytes of the removed entries.
    pub removed_stored_bytes: u64,
}

impl Index {
    /// Applies `sw` durably in one transaction and updates the counters. The caller must
    /// keep other index writers out (the counters are read inside this transaction, but
    /// [`Index::commit`] reads them outside its own). Fails on a read-only index.
    pub fn gc_switch(&self, sw: GcSwitch) -> Result<GcSwitched> {
        let Db::Rw(db) = &self.db else {
            return Err(Error::Unsupported("index is read-only".into()));
        };
        let mut done = GcSwitched::default();
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let mut counters = meta
                .get(META_COUNTERS)?
                .map(|g| Counters::decode(g.value()))
                .unwrap_or_default();
            counters.generation += 1;
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut moves = sw.moves;
            moves.sort_unstable_by_key(|m| m.0);
            for (k, old_seg, new) in &moves {
                let cur = blocks.get(k)?.map(|g| Location::decode(&g.value()));
                let Some(cur) = cur.filter(|c| c.segment == *old_seg) else {
                    continue;
                };
                let loc = Location {
                    flags: (new.flags & FLAG_CODEC_MASK) | (cur.flags & !FLAG_CODEC_MASK),
                    generation: cur.generation,
                    ..*new
                };
                counters.stored_bytes = counters
                    .stored_bytes
                    .saturating_sub(u64::from(cur.stored_len))
                    .saturating_add(u64::from(loc.stored_len));
                blocks.insert(k, loc.encode())?;
                done.moved += 1;
            }
            if !sw.retire.is_empty() {
                let retire: std::collections::HashSet<u32> =
                    sw.retire.iter().map(|s| s.0).collect();
                blocks.retain(|_, v| {
                    let loc = Location::decode(&v);
                    let gone = retire.contains(&loc.segment.0);
                    if gone {
                        done.removed += 1;
                        done.removed_stored_bytes += u64::from(loc.stored_len);
                        counters.blocks = counters.blocks.saturating_sub(1);
                        counters.stored_bytes = counters
                            .stored_bytes
                            .saturating_sub(u64::from(loc.stored_len));
                        counters.logical_bytes = counters
                            .logical_bytes
                            .saturating_sub(u64::from(loc.raw_len));
                    }
                    !gone
                })?;
            }
            let mut segs = txn.open_table(SEGMENTS)?;
            for id in &sw.retire {
                segs.remove(id.0)?;
            }
            for (id, info) in &sw.segments {
                segs.insert(id.0, info.encode().as_slice())?;
            }
            for (name, v) in &sw.meta {
                if v.is_empty() {
                    meta.remove(*name)?;
                } else {
                    meta.insert(*name, v.as_slice())?;
                }
            }
            meta.insert(META_COUNTERS, counters.encode().as_slice())?;
        }
        txn.commit()?;
        self.commits.fetch_add(1, Ordering::AcqRel);
        *self.snapshot.write() = None;
        Ok(done)
    }
}
