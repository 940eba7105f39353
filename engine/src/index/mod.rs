//! The block index: redb tables mapping hashcodes to record locations, plus an
//! in-memory negative filter so lookups of absent blocks rarely touch a B-tree.
//!
//! Tables (layouts in `docs/format.md`):
//! - `block_rows` (the main table) and `block_rows.run.<id>` (runs): entries ([`IndexKey`],
//!   33 bytes → [`Location`], 24 bytes) packed in rows of about [`rows::ROW_TARGET`],
//!   one row per bucket of the key space (see [`rows`]). Each commit writes its new keys
//!   as a new run; runs are merged with each other and into the main table by streaming
//!   merges that copy rows, so a commit never rewrites pages scattered over the whole
//!   main table, and a merge costs a copy per entry rather than a B-tree insert;
//! - `block_counts`: entries and buckets per block table;
//! - `segments`: segment id (u32) → [`SegmentInfo`];
//! - `meta`: name → bytes (format version, hash algorithm, counters);
//! - `filter` and `run_filters`: the saved negative filter and each run's saved filter
//!   (see [`runfilter`]), loaded by a writable open instead of scanning the tables.
//!
//! Version 1 and 2 files (`blocks`, `blocks.run.<id>`: one B-tree entry per key) are read
//! as they are by read-only handles and converted by the first writable open.

mod rows;
mod runfilter;

use crate::error::{Error, Result};
use crate::hash::{HashAlg, HashCode};
use crate::io::IndexBackend;
use crate::segment::{Codec, SegmentFormat};
use parking_lot::RwLock;
use redb::{
    ConcurrencyMode, CursorError, Database, Durability, ReadOnlyDatabase, ReadOnlyTable,
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    TableHandle, WriteTransaction,
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
/// Fewest bytes of the index file one entry takes (its key and location), whatever the
/// table layout: a bound on the entry counts a file of a given size can hold.
const ENTRY_LEN_MIN: u64 = (KEY_LEN + LOCATION_LEN) as u64;

/// Name of the main block table.
pub const MAIN: &str = "block_rows";
/// Prefix of run table names; the rest is the creating commit's generation (16 hex digits).
pub const RUN_PREFIX: &str = "block_rows.run.";
/// A merge streams into this table, then renames it.
const MERGE_TMP: &str = "block_rows.merging";
/// The main block table of index versions 1 and 2 (one B-tree entry per key).
const LEGACY_MAIN: &str = "blocks";
/// The run prefix of index version 2.
const LEGACY_RUN_PREFIX: &str = "blocks.run.";
/// Entries and buckets per block table.
const COUNTS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("block_counts");
type CountsTable = ReadOnlyTable<&'static str, (u64, u64)>;
/// Runs are merged into the main table when they hold 1/`MAIN_MERGE_DIVISOR` of its entries.
/// With 1 the main table doubles at each merge, so it is rewritten about twice per key
/// (with 4, about five times); lookups skip runs by their filters, so the keys left in
/// runs cost no extra reads.
pub const MAIN_MERGE_DIVISOR: u64 = 1;
/// The newest `RUN_FAN_IN` runs are merged into one when the newer ones together hold at
/// least as many entries as the oldest of them: run sizes grow by about this factor per
/// tier, and a key is copied about log_`RUN_FAN_IN` (runs / commit size) times.
pub const RUN_FAN_IN: usize = 4;
/// How long a read-only follower reuses a read snapshot of the writer's index.
const FOLLOWER_SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_millis(200);

/// At most this many runs are kept; more are merged.
pub const MAX_RUNS: usize = 16;
const SEGMENTS: TableDefinition<u32, &[u8]> = TableDefinition::new("segments");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The negative filter as of the last merge into the main table (see [`NegativeFilter`]).
const FILTER: TableDefinition<u64, &[u8]> = TableDefinition::new("filter");

/// Version of the index layout (tables and encodings) this code reads and writes.
pub const INDEX_VERSION: u64 = 3;
/// Index versions this code opens: 1 and 2 (one B-tree entry per key; version 1 has no
/// runs) are read as they are and converted to version 3 by a writable open.
pub const INDEX_VERSIONS_READ: [u64; 3] = [1, 2, 3];
/// `meta` key: index layout version (u64 LE).
pub const META_VERSION: &str = "index_version";
/// `meta` key: the store's hash algorithm name.
pub const META_HASH_ALG: &str = "hash_alg";
/// `meta` key: entries in the main table when the `filter` table was written (u64 LE).
pub const META_FILTER_MAIN_LEN: &str = "filter_main_len";
/// `meta` key: counters (blocks, stored bytes, logical bytes, generation), 4 × u64 LE.
pub const META_COUNTERS: &str = "counters";

/// Location flag bits 0..3: the payload [`Codec`].
pub const FLAG_CODEC_MASK: u16 = 0x000f;
/// Location flag: the record is a legacy cs.vt record; `offset` points at its payload.
pub const FLAG_LEGACY: u16 = 0x0010;
/// Location flag: the block is an indirect block whose whole tree is present.
pub const FLAG_INDIRECT_COMPLETE: u16 = 0x0020;

/// Location flag: the block is a member of a group record (segment format 2): `offset`
/// is the group record's start, `raw_len` the member's length, `stored_len` its share of
/// the group's payload bytes, and the bits from [`GROUP_MEMBER_SHIFT`] up its number in
/// the group. The codec bits are the group record's codec.
pub const FLAG_GROUP: u16 = 0x0040;
/// A group member's number is `flags >> GROUP_MEMBER_SHIFT` (9 bits).
pub const GROUP_MEMBER_SHIFT: u16 = 7;
const _: () = assert!(crate::segment::MAX_GROUP_MEMBERS << GROUP_MEMBER_SHIFT <= 1 << 16);

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

    /// For a member of a group record, its number in the group.
    pub fn group_member(&self) -> Option<usize> {
        (self.flags & FLAG_GROUP != 0).then_some(usize::from(self.flags >> GROUP_MEMBER_SHIFT))
    }

    /// The flags of member `i` of a group record stored with `codec`.
    pub fn member_flags(codec: Codec, i: usize) -> u16 {
        codec as u16 | FLAG_GROUP | ((i as u16) << GROUP_MEMBER_SHIFT)
    }

    /// This entry once GC copied its record to `new`: `new`'s place, codec and group
    /// bits; this entry's other flags (completeness) and generation.
    pub fn moved_to(&self, new: &Location) -> Location {
        const PLACE: u16 = FLAG_CODEC_MASK | FLAG_GROUP | !((1 << GROUP_MEMBER_SHIFT) - 1);
        Location {
            flags: (new.flags & PLACE) | (self.flags & !PLACE),
            generation: self.generation,
            ..*new
        }
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
    /// Entries to insert or replace: a key already indexed is updated where it lives.
    pub blocks: Vec<(IndexKey, Location)>,
    /// Entries the caller knows are not indexed yet (the fast path: no existence check).
    /// Giving a key that is already indexed here leaves two entries for it until the next
    /// merge; lookups then return either.
    pub new_blocks: Vec<(IndexKey, Location)>,
    /// Keys already indexed that gain [`FLAG_INDIRECT_COMPLETE`].
    pub set_complete: Vec<IndexKey>,
    /// Segment rows to write.
    pub segments: Vec<(SegmentId, SegmentInfo)>,
    /// `meta` rows to write.
    pub meta: Vec<(&'static str, Vec<u8>)>,
    /// Remove every block entry first (reindex).
    pub clear_blocks: bool,
}

/// Sizes of the block tables, from [`Index::layout`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Entries in the main table.
    pub main: u64,
    /// Entries in each run, oldest first.
    pub runs: Vec<u64>,
}

impl Layout {
    /// Entries in all the block tables.
    pub fn total(&self) -> u64 {
        self.main + self.runs.iter().sum::<u64>()
    }
}

/// A block table of versions 1 and 2: one entry per key.
type LegacyTable = ReadOnlyTable<IndexKey, [u8; LOCATION_LEN]>;
type LegacyDef<'a> = TableDefinition<'a, IndexKey, [u8; LOCATION_LEN]>;

fn legacy_def(name: &str) -> LegacyDef<'_> {
    TableDefinition::new(name)
}

/// A block table of a read snapshot.
enum BlockTable {
    /// A packed table and its buckets.
    Rows(ReadOnlyTable<u64, &'static [u8]>, u64),
    Legacy(LegacyTable),
}

type EntryIter<'a> = Box<dyn Iterator<Item = Result<Entry>> + 'a>;

impl BlockTable {
    fn get(&self, key: &IndexKey) -> Result<Option<[u8; LOCATION_LEN]>> {
        match self {
            BlockTable::Rows(t, buckets) => rows::get(t, *buckets, key),
            BlockTable::Legacy(t) => Ok(t.get(key)?.map(|g| g.value())),
        }
    }

    fn entries(&self, start: Option<&IndexKey>) -> Result<EntryIter<'_>> {
        Ok(match self {
            BlockTable::Rows(t, buckets) => Box::new(rows::entries(t, *buckets, start)?),
            BlockTable::Legacy(t) => Box::new(legacy_entries(t, start)?),
        })
    }
}

/// The block tables of one read transaction: main first, then the runs oldest first.
struct Snapshot {
    tables: Vec<BlockTable>,
    /// Each table's name.
    names: Vec<String>,
    /// Each table's entries.
    lens: Vec<u64>,
    /// Each table's run filter, when the handle has one (see [`RunFilters`]).
    filters: Vec<Option<Arc<BloomStage>>>,
}

/// Per-run filters of a writable handle, by run name: a superset of each run's keys, so
/// that a lookup reads only the runs that may hold its key. The main table has none (it
/// is read last). A run's name is the generation of the commit that wrote it, and a
/// merge names its result after the merging commit, so a name never stands for a table
/// with keys its filter lacks: a snapshot that pairs a newer table set with an older map
/// finds no filter for the newer runs and reads them.
type RunFilters = std::collections::HashMap<String, Arc<BloomStage>>;

enum Db {
    Rw(Database),
    Ro(ReadOnlyDatabase),
}

/// The redb index of one store.
pub struct Index {
    db: Db,
    /// A cached snapshot of the block tables, replaced after each commit; `None` when stale.
    /// Opening a read transaction per lookup would cost more than the lookup itself.
    snapshot: RwLock<Option<(u64, std::time::Instant, Arc<Snapshot>)>>,
    /// Bumped after every commit; a snapshot taken under an older value is stale.
    commits: AtomicU64,
    /// Read-only handles follow another process's commits, so they never cache snapshots.
    cache_snapshots: bool,
    /// Writable handles only: a superset of the indexed keys (another process's commits
    /// would make it lie to a read-only handle).
    filter: Option<NegativeFilter>,
    /// Writable handles only: the filter of each run (empty on read-only handles).
    run_filters: RwLock<RunFilters>,
    /// How the writable open got its filters.
    open_stats: FilterOpenStats,
    /// Runs whose keys the negative filter holds only through their run filter (the runs
    /// of the open): a merge that takes them adds their keys to it and the filters go.
    uncovered: parking_lot::Mutex<RunFilters>,
}

/// How a writable open got the run filters, from [`Index::filter_open_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterOpenStats {
    /// Runs whose saved filter was loaded.
    pub runs_loaded: usize,
    /// Runs scanned to rebuild a missing or invalid saved filter.
    pub runs_rebuilt: usize,
    /// Entries read to build filters (rebuilt runs, and the main table without a saved filter).
    pub entries_scanned: u64,
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

fn cursor_err(e: CursorError) -> Error {
    redb::Error::from(e).into()
}

fn run_name(id: u64) -> String {
    format!("{RUN_PREFIX}{id:016x}")
}

/// Names among `names` of runs with the name prefix `prefix`, oldest first.
fn run_names(names: impl Iterator<Item = String>, prefix: &str) -> Vec<String> {
    let mut runs: Vec<(u64, String)> = names
        .filter_map(|n| {
            let id = n.strip_prefix(prefix)?;
            let id = (id.len() == 16).then(|| u64::from_str_radix(id, 16).ok())??;
            Some((id, n))
        })
        .collect();
    runs.sort_unstable();
    runs.into_iter().map(|(_, n)| n).collect()
}

/// Merges sorted entry streams into key order; on equal keys the last stream wins.
struct Merge<I> {
    iters: Vec<I>,
    heads: Vec<Option<(IndexKey, [u8; LOCATION_LEN])>>,
}

type Entry = (IndexKey, [u8; LOCATION_LEN]);

impl<I: Iterator<Item = Result<Entry>>> Merge<I> {
    fn new(mut iters: Vec<I>) -> Result<Self> {
        let heads = iters
            .iter_mut()
            .map(|i| i.next().transpose())
            .collect::<Result<_>>()?;
        Ok(Merge { iters, heads })
    }

    fn next_entry(&mut self) -> Result<Option<Entry>> {
        Ok(self.next_from()?.map(|(_, e)| e))
    }

    /// The next entry and the stream it came from (the newest holding its key).
    fn next_from(&mut self) -> Result<Option<(usize, Entry)>> {
        let mut best: Option<(usize, IndexKey)> = None;
        for (i, h) in self.heads.iter().enumerate() {
            if let Some((k, _)) = h {
                if best.is_none_or(|(_, b)| *k <= b) {
                    best = Some((i, *k));
                }
            }
        }
        let Some((winner, key)) = best else {
            return Ok(None);
        };
        let out = self.heads[winner];
        for i in 0..self.heads.len() {
            if self.heads[i].is_some_and(|(k, _)| k == key) {
                self.heads[i] = self.iters[i].next().transpose()?;
            }
        }
        Ok(out.map(|e| (winner, e)))
    }
}

/// A [`Merge`] as an iterator.
struct MergeIter<I>(Merge<I>);

impl<I: Iterator<Item = Result<Entry>>> Iterator for MergeIter<I> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        self.0.next_entry().transpose()
    }
}

fn legacy_entries<'a, T: ReadableTable<IndexKey, [u8; LOCATION_LEN]>>(
    t: &'a T,
    start: Option<&IndexKey>,
) -> Result<impl Iterator<Item = Result<Entry>> + 'a> {
    let range = match start {
        None => t.range::<IndexKey>(..)?,
        Some(s) => t.range::<IndexKey>(*s..)?,
    };
    Ok(range.map(|item| {
        let (k, v) = item?;
        Ok((k.value(), v.value()))
    }))
}

impl Index {
    fn with_db(db: Db, cache_snapshots: bool) -> Self {
        Index {
            db,
            snapshot: RwLock::new(None),
            commits: AtomicU64::new(0),
            cache_snapshots,
            filter: None,
            run_filters: RwLock::new(RunFilters::new()),
            open_stats: FilterOpenStats::default(),
            uncovered: parking_lot::Mutex::new(RunFilters::new()),
        }
    }

    /// Opens (or creates) a writable index over `backend` with `cache_bytes` of page cache,
    /// and builds its negative filter from the indexed keys.
    pub fn open_writable(
        backend: IndexBackend,
        mode: ConcurrencyMode,
        cache_bytes: usize,
    ) -> Result<Self> {
        // The filters are sized from entry counts read from the file; no table holds more
        // entries than the file has bytes for, so a corrupt count cannot size them.
        let file_len = redb::StorageBackend::len(&backend)
            .map_err(|e| Error::Index(format!("index file size: {e}")))?;
        let db = Database::builder()
            .set_concurrency_mode(mode)
            .set_cache_size(cache_bytes)
            .create_with_backend(backend)?;
        let mut ix = Self::with_db(Db::Rw(db), true);
        ix.convert_legacy()?;
        ix.build_filter(file_len)?;
        Ok(ix)
    }

    /// Converts the block tables of a version 1 or 2 file (one entry per key) into one
    /// packed main table and marks the file version 3, in one transaction.
    fn convert_legacy(&self) -> Result<()> {
        let Db::Rw(db) = &self.db else {
            return Ok(());
        };
        let txn = db.begin_write()?;
        let names: Vec<String> = txn.list_tables()?.map(|h| h.name().to_string()).collect();
        let mut legacy = Vec::new();
        if names.iter().any(|n| n == LEGACY_MAIN) {
            legacy.push(LEGACY_MAIN.to_string());
        }
        legacy.extend(run_names(names.iter().cloned(), LEGACY_RUN_PREFIX));
        if legacy.is_empty() {
            txn.abort()?;
            return Ok(());
        }
        {
            let tables = legacy
                .iter()
                .map(|n| txn.open_table(legacy_def(n)))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let iters = tables
                .iter()
                .map(|t| legacy_entries(t, None))
                .collect::<Result<Vec<_>>>()?;
            // Packed tables are empty in a file of version 1 or 2.
            let most = tables.iter().map(|t| t.len()).sum::<redb::Result<u64>>()?;
            let buckets = rows::buckets_for(most);
            let n = rows::write_sorted(&txn, MAIN, buckets, MergeIter(Merge::new(iters)?))?;
            Self::set_shape(&txn, MAIN, Some((n, buckets)))?;
        }
        for n in &legacy {
            txn.delete_table(legacy_def(n))?;
        }
        // The saved filter covered the old main table; the next merge saves a new one.
        txn.delete_table(FILTER)?;
        {
            let mut meta = txn.open_table(META)?;
            meta.remove(META_FILTER_MAIN_LEN)?;
            meta.insert(META_VERSION, INDEX_VERSION.to_le_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Opens an existing index read-only (it follows a writer process in `SingleWriter` mode).
    pub fn open_read_only(backend: IndexBackend, mode: ConcurrencyMode) -> Result<Self> {
        let db = Database::builder()
            .set_concurrency_mode(mode)
            .open_read_only_with_backend(backend)?;
        Ok(Self::with_db(Db::Ro(db), false))
    }

    /// A writable index held in memory (for scanning a store that cannot be written).
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let mut ix = Self::with_db(Db::Rw(db), true);
        ix.filter = Some(NegativeFilter::new(0));
        Ok(ix)
    }

    /// Loads the filter saved at the last merge into the main table (without a usable one,
    /// scans the main table) and each run's saved filter (without a valid one, scans the run
    /// to rebuild it, then saves it). The negative filter keeps the run filters as stages of
    /// its own instead of the runs' keys, so no run is scanned when its filter was saved.
    ///
    /// Fails when a table claims more entries than the index file (`file_len` bytes when
    /// opened) can hold: its counts are corrupt (no table is changed; a fresh index built
    /// by `vt reindex` replaces it).
    fn build_filter(&mut self, file_len: u64) -> Result<()> {
        let snap = self.open_snapshot()?;
        let max_entries = file_len / ENTRY_LEN_MIN;
        if let Some((name, len)) =
            (snap.names.iter().zip(&snap.lens)).find(|(_, l)| **l > max_entries)
        {
            return Err(Error::Index(format!(
                "corrupt index: table {name:?} claims {len} entries, more than the \
                 {file_len}-byte index file can hold; move the index file aside and run \
                 `vt reindex` to rebuild it from the segments"
            )));
        }
        let saved = self.saved_filter(&snap)?;
        let main_saved = saved.is_some();
        let is_run = |n: &String| n.starts_with(RUN_PREFIX);
        let unsaved: u64 = (snap.names.iter().zip(&snap.lens))
            .filter(|(n, _)| !is_run(n))
            .map(|(_, l)| *l)
            .sum();
        let mut filter = saved.unwrap_or_else(|| NegativeFilter::new(unsaved as usize));
        let txn = self.begin_read()?;
        let saved_runs = missing_ok(txn.open_table(runfilter::RUN_FILTERS))?;
        let mut stats = FilterOpenStats::default();
        let (mut runs, mut rebuilt) = (RunFilters::new(), Vec::new());
        for ((t, name), len) in snap.tables.iter().zip(&snap.names).zip(&snap.lens) {
            if !is_run(name) {
                if !main_saved {
                    for e in t.entries(None)? {
                        filter.insert_owned(&e?.0);
                        stats.entries_scanned += 1;
                    }
                }
                continue;
            }
            let loaded = match &saved_runs {
                Some(s) => runfilter::load(s, name, *len)?,
                None => None,
            };
            let run = match loaded {
                Some(run) => {
                    stats.runs_loaded += 1;
                    Arc::new(run)
                }
                None => {
                    let mut run = BloomStage::with_bits(*len as usize, RUN_FILTER_BITS_PER_KEY);
                    for e in t.entries(None)? {
                        run.insert_owned(&e?.0);
                        stats.entries_scanned += 1;
                    }
                    stats.runs_rebuilt += 1;
                    let run = Arc::new(run);
                    rebuilt.push((name.clone(), *len, run.clone()));
                    run
                }
            };
            filter.add_run_filter(run.clone());
            self.uncovered.get_mut().insert(name.clone(), run.clone());
            runs.insert(name.clone(), run);
        }
        let orphans = match &saved_runs {
            Some(s) => runfilter::names(s)?
                .into_iter()
                .filter(|n| !runs.contains_key(n))
                .collect(),
            None => Vec::new(),
        };
        drop((saved_runs, txn, snap));
        self.save_run_filters(&rebuilt, &orphans)?;
        self.filter = Some(filter);
        *self.run_filters.write() = runs;
        self.open_stats = stats;
        Ok(())
    }

    /// Saves the run filters an open rebuilt (`(run, entries, filter)`) and removes the
    /// saved filters of runs that no longer exist (left by a binary that did not save run
    /// filters and so did not remove them), in one transaction, if there is anything to do.
    fn save_run_filters(
        &self,
        rebuilt: &[(String, u64, Arc<BloomStage>)],
        orphans: &[String],
    ) -> Result<()> {
        let Db::Rw(db) = &self.db else {
            return Ok(());
        };
        if rebuilt.is_empty() && orphans.is_empty() {
            return Ok(());
        }
        let txn = db.begin_write()?;
        for name in orphans {
            runfilter::remove(&txn, name)?;
        }
        for (name, entries, filter) in rebuilt {
            // Nothing else writes during the open; checked all the same.
            if Self::shape(&txn, name)?.0 == *entries {
                runfilter::save(&txn, name, *entries, filter)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// How the writable open got its filters (all zero for other handles).
    pub fn filter_open_stats(&self) -> FilterOpenStats {
        self.open_stats
    }

    /// The saved filter, if it covers the main table of `snap` (the first table).
    fn saved_filter(&self, snap: &Snapshot) -> Result<Option<NegativeFilter>> {
        if !matches!(snap.tables.first(), Some(BlockTable::Rows(..))) {
            return Ok(None);
        }
        let txn = self.begin_read()?;
        let main = Self::shape_in(&Self::counts_in(&txn)?, MAIN)?.0;
        let saved_len = self.meta(META_FILTER_MAIN_LEN)?;
        if saved_len.as_deref() != Some(&main.to_le_bytes()[..]) {
            return Ok(None);
        }
        let Some(t) = missing_ok(txn.open_table(FILTER))? else {
            return Ok(None);
        };
        NegativeFilter::from_rows(|k| Ok(t.get(k)?.map(|g| g.value().to_vec())))
    }

    /// True when the index can be written.
    pub fn is_writable(&self) -> bool {
        matches!(self.db, Db::Rw(_))
    }

    /// The negative filter of a writable index: a superset of the indexed keys. A writer
    /// may [`NegativeFilter::insert`] keys it is about to commit, so that one filter
    /// answers for both.
    pub fn filter(&self) -> Option<&NegativeFilter> {
        self.filter.as_ref()
    }

    /// False when `key` is certainly not indexed (true for read-only handles, which have no filter).
    pub fn may_contain(&self, key: &IndexKey) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_contain(key))
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        Ok(match &self.db {
            Db::Rw(db) => db.begin_read()?,
            Db::Ro(db) => db.begin_read()?,
        })
    }

    fn open_snapshot(&self) -> Result<Snapshot> {
        let txn = self.begin_read()?;
        let names: Vec<String> = txn.list_tables()?.map(|h| h.name().to_string()).collect();
        let mut tables = Vec::new();
        // Legacy tables exist only in a version 1 or 2 file (read-only here).
        if let Some(t) = missing_ok(txn.open_table(legacy_def(LEGACY_MAIN)))? {
            tables.push(BlockTable::Legacy(t));
        }
        for name in run_names(names.iter().cloned(), LEGACY_RUN_PREFIX) {
            if let Some(t) = missing_ok(txn.open_table(legacy_def(&name)))? {
                tables.push(BlockTable::Legacy(t));
            }
        }
        let mut lens = tables
            .iter()
            .map(|t| match t {
                BlockTable::Legacy(t) => Ok(t.len()?),
                BlockTable::Rows(..) => Ok(0),
            })
            .collect::<Result<Vec<u64>>>()?;
        let mut table_names = vec![String::new(); tables.len()];
        let counts = Self::counts_in(&txn)?;
        let main = std::iter::once(MAIN.to_string()).filter(|m| names.contains(m));
        for name in main.chain(run_names(names.iter().cloned(), RUN_PREFIX)) {
            if let Some(t) = missing_ok(txn.open_table(rows::rows_def(&name)))? {
                let (len, buckets) = Self::shape_in(&counts, &name)?;
                tables.push(BlockTable::Rows(t, buckets));
                lens.push(len);
                table_names.push(name);
            }
        }
        // Whichever commit installed this map, a run name it shares with this snapshot
        // stands for the same keys or fewer (see `RunFilters`).
        let run_filters = self.run_filters.read();
        let filters = table_names
            .iter()
            .map(|n| run_filters.get(n).cloned())
            .collect();
        Ok(Snapshot {
            tables,
            names: table_names,
            lens,
            filters,
        })
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let gen = self.commits.load(Ordering::Acquire);
        if let Some((g, at, s)) = self.snapshot.read().as_ref() {
            // A follower keeps a snapshot briefly: one read transaction per lookup costs
            // more than the lookup (file range locks), and a miss re-checks a fresh one.
            if *g == gen && (self.cache_snapshots || at.elapsed() < FOLLOWER_SNAPSHOT_TTL) {
                return Ok(s.clone());
            }
        }
        self.fresh_snapshot(gen)
    }

    fn fresh_snapshot(&self, gen: u64) -> Result<Arc<Snapshot>> {
        let s = Arc::new(self.open_snapshot()?);
        let mut slot = self.snapshot.write();
        // A commit since `gen` was read may predate this read transaction or not: don't cache.
        if self.commits.load(Ordering::Acquire) == gen {
            *slot = Some((gen, std::time::Instant::now(), s.clone()));
        }
        Ok(s)
    }

    /// The location of `key`, if indexed: the negative filter first, so a key that is
    /// absent usually costs no table lookup. For keys expected to be present, see
    /// [`Index::lookup`].
    pub fn get(&self, key: &IndexKey) -> Result<Option<Location>> {
        if !self.may_contain(key) {
            return Ok(None);
        }
        self.lookup(key)
    }

    /// [`Index::get`] without the negative filter, for keys expected to be present (the
    /// blocks a reader was given references to): for them the filter answers "maybe",
    /// after probing a cache line or more of its stages in vain. The runs' own filters
    /// still skip the runs that cannot hold the key.
    pub fn lookup(&self, key: &IndexKey) -> Result<Option<Location>> {
        if let Some(loc) = Self::get_in(&*self.snapshot()?, key)? {
            return Ok(Some(loc));
        }
        if self.cache_snapshots {
            return Ok(None);
        }
        // A follower's cached snapshot may predate the writer's last commit.
        let gen = self.commits.load(Ordering::Acquire);
        Self::get_in(&*self.fresh_snapshot(gen)?, key)
    }

    /// The locations of `keys` (`None` for those not indexed), looked up in one snapshot
    /// as [`Index::lookup`] does: for keys expected to be present.
    pub fn get_many(&self, keys: &[IndexKey]) -> Result<Vec<Option<Location>>> {
        let snap = self.snapshot()?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let found = Self::get_in(&snap, key)?;
            // A follower's miss re-checks a fresh snapshot, as `lookup` does.
            out.push(match found {
                None if !self.cache_snapshots => self.lookup(key)?,
                found => found,
            });
        }
        Ok(out)
    }

    /// Newest table first (the newest entry of a key wins, as in a merge), skipping the
    /// runs whose filter rules the key out.
    fn get_in(snap: &Snapshot, key: &IndexKey) -> Result<Option<Location>> {
        for (t, f) in snap.tables.iter().zip(&snap.filters).rev() {
            if f.as_ref().is_some_and(|f| !f.may_contain(key)) {
                continue;
            }
            if let Some(v) = t.get(key)? {
                return Ok(Some(Location::decode(&v)));
            }
        }
        Ok(None)
    }

    /// Up to `limit` keys in order from `start` (exclusive when `after`).
    pub fn keys_from(
        &self,
        start: Option<&IndexKey>,
        after: bool,
        limit: usize,
    ) -> Result<Vec<IndexKey>> {
        let snap = self.snapshot()?;
        let iters = snap
            .tables
            .iter()
            .map(|t| t.entries(start))
            .collect::<Result<Vec<_>>>()?;
        let mut merge = Merge::new(iters)?;
        let mut out = Vec::with_capacity(limit.min(4096));
        while out.len() < limit {
            let Some((k, _)) = merge.next_entry()? else {
                break;
            };
            if !(after && Some(&k) == start) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// Calls `f` for every entry, in key order.
    pub fn for_each(&self, mut f: impl FnMut(IndexKey, Location) -> Result<()>) -> Result<()> {
        let snap = self.open_snapshot()?;
        let iters = snap
            .tables
            .iter()
            .map(|t| t.entries(None))
            .collect::<Result<Vec<_>>>()?;
        let mut merge = Merge::new(iters)?;
        while let Some((k, v)) = merge.next_entry()? {
            f(k, Location::decode(&v))?;
        }
        Ok(())
    }

    /// Entries in the main table and in each run (a version 1 or 2 file opened
    /// read-only: its main table and runs).
    pub fn layout(&self) -> Result<Layout> {
        let txn = self.begin_read()?;
        let names: Vec<String> = txn.list_tables()?.map(|h| h.name().to_string()).collect();
        if names
            .iter()
            .any(|n| n == LEGACY_MAIN || n.starts_with(LEGACY_RUN_PREFIX))
        {
            let len = |n: &str| -> Result<u64> {
                Ok(match missing_ok(txn.open_table(legacy_def(n)))? {
                    Some(t) => t.len()?,
                    None => 0,
                })
            };
            let runs = run_names(names.iter().cloned(), LEGACY_RUN_PREFIX);
            return Ok(Layout {
                main: len(LEGACY_MAIN)?,
                runs: runs.iter().map(|n| len(n)).collect::<Result<_>>()?,
            });
        }
        let counts = Self::counts_in(&txn)?;
        let len = |n: &str| -> Result<u64> { Ok(Self::shape_in(&counts, n)?.0) };
        Ok(Layout {
            main: len(MAIN)?,
            runs: run_names(names.into_iter(), RUN_PREFIX)
                .iter()
                .map(|n| len(n))
                .collect::<Result<_>>()?,
        })
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
    /// New keys go to a new run; runs are merged (see `docs/format.md`) in the same
    /// transaction. Fails on a read-only index.
    pub fn commit(&self, batch: Batch, durable: bool) -> Result<Counters> {
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
        let mut run_filters = self.run_filters.read().clone();
        let mut txn = db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(|e| Error::Index(e.to_string()))?;
        if batch.clear_blocks {
            for name in Self::block_tables(&txn)? {
                txn.delete_table(rows::rows_def(&name))?;
            }
            txn.delete_table(COUNTS)?;
            txn.delete_table(FILTER)?;
            txn.delete_table(runfilter::RUN_FILTERS)?;
            if let Some(f) = &self.filter {
                f.clear();
            }
            run_filters.clear();
        }
        let fresh = self.apply_updates(&txn, &batch, counters.generation, &run_filters)?;
        // Readers must never find a committed key absent from the filter.
        if let Some(f) = &self.filter {
            fresh.iter().for_each(|(k, _)| f.insert(k));
        }
        Self::write_run(&txn, &fresh, &mut counters, &mut run_filters)?;
        let uncovered = self.uncovered.lock().clone();
        let mut covered = Vec::new();
        let gen = counters.generation;
        self.compact(&txn, gen, &mut run_filters, (&uncovered, &mut covered))?;
        {
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
        *self.run_filters.write() = run_filters;
        self.drop_covered(&covered, batch.clear_blocks);
        self.commits.fetch_add(1, Ordering::AcqRel);
        *self.snapshot.write() = None;
        Ok(counters)
    }

    /// Forgets the runs of the open (and drops their filters from the negative filter)
    /// whose keys a committed merge added to it, or all of them after `cleared`.
    fn drop_covered(&self, covered: &[String], cleared: bool) {
        let mut uncovered = self.uncovered.lock();
        if cleared {
            uncovered.clear();
        }
        for name in covered {
            if let (Some(run), Some(f)) = (uncovered.remove(name), &self.filter) {
                f.drop_run_filter(&run);
            }
        }
    }

    /// A merge's `on_key` part for the runs of the open among `sources`: adds the keys it
    /// takes from them to the negative filter, and notes those runs in `covered`.
    fn cover<'a>(
        &'a self,
        sources: &[String],
        (uncovered, covered): (&RunFilters, &mut Vec<String>),
    ) -> impl FnMut(usize, &IndexKey) + 'a {
        let from_open: Vec<bool> = sources.iter().map(|n| uncovered.contains_key(n)).collect();
        covered.extend(
            sources
                .iter()
                .filter(|n| uncovered.contains_key(*n))
                .cloned(),
        );
        let filter = self.filter.as_ref().filter(|_| from_open.contains(&true));
        move |src, k| {
            if let (Some(f), Some(true)) = (filter, from_open.get(src)) {
                f.insert(k);
            }
        }
    }

    /// Names of the main table (when present) and the runs, oldest first.
    fn block_tables(txn: &WriteTransaction) -> Result<Vec<String>> {
        let names: Vec<String> = txn.list_tables()?.map(|h| h.name().to_string()).collect();
        let mut out = Vec::new();
        if names.iter().any(|n| n == MAIN) {
            out.push(MAIN.to_string());
        }
        out.extend(run_names(names.into_iter(), RUN_PREFIX));
        Ok(out)
    }

    /// Entries and buckets of the block table `name`.
    fn shape(txn: &WriteTransaction, name: &str) -> Result<(u64, u64)> {
        Ok(txn
            .open_table(COUNTS)?
            .get(name)?
            .map_or((0, 1), |g| g.value()))
    }

    /// The `block_counts` table of a read transaction (absent before the first run).
    fn counts_in(txn: &redb::ReadTransaction) -> Result<Option<CountsTable>> {
        missing_ok(txn.open_table(COUNTS))
    }

    /// Entries and buckets of the block table `name`, from [`Index::counts_in`].
    fn shape_in(counts: &Option<CountsTable>, name: &str) -> Result<(u64, u64)> {
        Ok(match counts {
            Some(c) => c.get(name)?.map_or((0, 1), |g| g.value()),
            None => (0, 1),
        })
    }

    /// Records the entries and buckets of the block table `name` (`None`: it is gone).
    fn set_shape(txn: &WriteTransaction, name: &str, shape: Option<(u64, u64)>) -> Result<()> {
        let mut counts = txn.open_table(COUNTS)?;
        match shape {
            Some(s) => counts.insert(name, s)?,
            None => counts.remove(name)?,
        };
        Ok(())
    }

    /// Updates keys that are already indexed (in the table holding them) and sets
    /// completeness flags; returns the entries to add, sorted, one per key (the last wins).
    fn apply_updates(
        &self,
        txn: &WriteTransaction,
        batch: &Batch,
        generation: u64,
        run_filters: &RunFilters,
    ) -> Result<Vec<(IndexKey, Location)>> {
        // Newest first, as lookups search, each with its run filter.
        let mut tables = Self::block_tables(txn)?
            .iter()
            .rev()
            .map(|n| {
                let t = txn.open_table(rows::rows_def(n))?;
                Ok((t, Self::shape(txn, n)?.1, run_filters.get(n).cloned()))
            })
            .collect::<Result<Vec<_>>>()?;
        let skip = |f: &Option<Arc<BloomStage>>, k: &IndexKey| {
            f.as_ref().is_some_and(|f| !f.may_contain(k))
        };
        let stamp = |(k, l): &(IndexKey, Location)| {
            (
                *k,
                Location {
                    generation: generation as u32,
                    ..*l
                },
            )
        };
        let mut fresh: Vec<(IndexKey, Location)> = batch.new_blocks.iter().map(stamp).collect();
        for e in &batch.blocks {
            let (k, loc) = stamp(e);
            let mut updated = false;
            if self.may_contain(&k) {
                for (t, buckets, f) in tables.iter_mut() {
                    if skip(f, &k) {
                        continue;
                    }
                    if let Some(mut found) = rows::find(t, *buckets, &k)? {
                        found.set(loc.encode());
                        found.store(t)?;
                        updated = true;
                        break;
                    }
                }
            }
            if !updated {
                fresh.push((k, loc));
            }
        }
        // Stable sort, then keep the last entry of each key.
        fresh.sort_by_key(|e| e.0);
        let mut dedup: Vec<(IndexKey, Location)> = Vec::with_capacity(fresh.len());
        for e in fresh {
            match dedup.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => dedup.push(e),
            }
        }
        let mut complete = batch.set_complete.clone();
        complete.sort_unstable();
        complete.dedup();
        for k in &complete {
            if let Ok(i) = dedup.binary_search_by_key(k, |e| e.0) {
                dedup[i].1.flags |= FLAG_INDIRECT_COMPLETE;
                continue;
            }
            for (t, buckets, f) in tables.iter_mut() {
                if skip(f, k) {
                    continue;
                }
                if let Some(mut found) = rows::find(t, *buckets, k)? {
                    let mut loc = Location::decode(&found.loc());
                    loc.flags |= FLAG_INDIRECT_COMPLETE;
                    found.set(loc.encode());
                    found.store(t)?;
                    break;
                }
            }
        }
        Ok(dedup)
    }

    /// Writes sorted new entries as a new run (packed rows appended through a cursor)
    /// with its filter, and counts them.
    fn write_run(
        txn: &WriteTransaction,
        fresh: &[(IndexKey, Location)],
        counters: &mut Counters,
        run_filters: &mut RunFilters,
    ) -> Result<()> {
        if fresh.is_empty() {
            return Ok(());
        }
        let name = run_name(counters.generation);
        let mut filter = BloomStage::with_bits(fresh.len(), RUN_FILTER_BITS_PER_KEY);
        fresh.iter().for_each(|(k, _)| filter.insert_owned(k));
        let buckets = rows::buckets_for(fresh.len() as u64);
        let entries = fresh.iter().map(|(k, l)| Ok((*k, l.encode())));
        let n = rows::write_sorted(txn, &name, buckets, entries)?;
        Self::set_shape(txn, &name, Some((n, buckets)))?;
        runfilter::save(txn, &name, n, &filter)?;
        run_filters.insert(name, Arc::new(filter));
        for (_, loc) in fresh {
            counters.blocks += 1;
            counters.stored_bytes += u64::from(loc.stored_len);
            counters.logical_bytes += u64::from(loc.raw_len);
        }
        Ok(())
    }

    /// Keeps lookups cheap and merges amortized: the runs are merged into the main table
    /// once they hold 1/[`MAIN_MERGE_DIVISOR`] of its entries; otherwise the newest
    /// [`RUN_FAN_IN`] runs merge while the newer ones together hold at least as many
    /// entries as the oldest of them (so run sizes grow geometrically and there are
    /// O(log n) of them), and the newest two merge while there are more than [`MAX_RUNS`].
    /// A merged run is named after `generation` (the committing one) and gets a filter.
    fn compact(
        &self,
        txn: &WriteTransaction,
        generation: u64,
        run_filters: &mut RunFilters,
        (uncovered, covered): (&RunFilters, &mut Vec<String>),
    ) -> Result<()> {
        let names = Self::block_tables(txn)?;
        let len = |n: &str| Ok::<_, Error>(Self::shape(txn, n)?.0);
        // An empty main table (a GC can retire every key) still exists and must be merged
        // into, or renaming the merge result onto its name fails.
        let has_main = names.first().is_some_and(|n| n == MAIN);
        let (main, mut runs): (u64, Vec<(String, u64)>) = {
            let main = if has_main { len(MAIN)? } else { 0 };
            let runs = names
                .iter()
                .filter(|n| *n != MAIN)
                .map(|n| Ok((n.clone(), len(n)?)))
                .collect::<Result<_>>()?;
            (main, runs)
        };
        let in_runs: u64 = runs.iter().map(|r| r.1).sum();
        if in_runs > 0 && in_runs * MAIN_MERGE_DIVISOR >= main {
            let sources: Vec<String> = has_main
                .then(|| MAIN.to_string())
                .into_iter()
                .chain(runs.iter().map(|r| r.0.clone()))
                .collect();
            // The saved filter is the negative filter without the run filters of the
            // open: every key the merge takes from those runs is added to it first.
            let mut cover = self.cover(&sources, (uncovered, covered));
            Self::merge_tables(txn, &sources, MAIN, &mut cover)?;
            run_filters.clear();
            return self.save_filter(txn);
        }
        let target = run_name(generation);
        while let Some(k) = runs_to_merge(&runs) {
            let first = runs.len() - k;
            let sources: Vec<String> = runs[first..].iter().map(|r| r.0.clone()).collect();
            // The run named after this commit, if any, is the newest and so a source.
            if runs[..first].iter().any(|r| r.0 == target) {
                return Err(Error::Index(format!("run {target} exists")));
            }
            let merged: u64 = runs[first..].iter().map(|r| r.1).sum();
            let mut filter = BloomStage::with_bits(merged as usize, RUN_FILTER_BITS_PER_KEY);
            let mut cover = self.cover(&sources, (uncovered, &mut *covered));
            let n = Self::merge_tables(txn, &sources, &target, &mut |src, k| {
                cover(src, k);
                filter.insert_owned(k);
            })?;
            runfilter::save(txn, &target, n, &filter)?;
            for name in &sources {
                run_filters.remove(name);
            }
            run_filters.insert(target.clone(), Arc::new(filter));
            runs.truncate(first);
            runs.push((target.clone(), n));
        }
        Ok(())
    }

    /// Saves the filter (a superset of the main table's keys, which now hold every key),
    /// without the run filters it holds as stages (see [`Index::cover`]). A main table
    /// under [`FILTER_SAVE_MIN_KEYS`] gets none: scanning it at open is cheap, and the
    /// filter's minimum capacity would take more bytes than the table.
    fn save_filter(&self, txn: &WriteTransaction) -> Result<()> {
        txn.delete_table(FILTER)?;
        let Some(f) = &self.filter else {
            return Ok(());
        };
        let main = Self::shape(txn, MAIN)?.0;
        if main < FILTER_SAVE_MIN_KEYS {
            return Ok(());
        }
        let mut t = txn.open_table(FILTER)?;
        for (k, v) in f.to_rows() {
            t.insert(k, v.as_slice())?;
        }
        let mut meta = txn.open_table(META)?;
        meta.insert(META_FILTER_MAIN_LEN, main.to_le_bytes().as_slice())?;
        Ok(())
    }

    /// Streams the merge of `sources` (oldest first; the newest entry of a key wins) into a
    /// fresh table, deletes the sources (and their saved filters) and names the result
    /// `target`; calls `on_key` with each of its keys (and the source it came from) and
    /// returns how many there are.
    fn merge_tables(
        txn: &WriteTransaction,
        sources: &[String],
        target: &str,
        on_key: &mut dyn FnMut(usize, &IndexKey),
    ) -> Result<u64> {
        let shapes = sources
            .iter()
            .map(|n| Self::shape(txn, n))
            .collect::<Result<Vec<_>>>()?;
        // Keys in several sources are counted once per source: a few buckets too many.
        let buckets = rows::buckets_for(shapes.iter().map(|s| s.0).sum());
        let n = {
            let tables = sources
                .iter()
                .map(|n| txn.open_table(rows::rows_def(n)))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let iters = tables
                .iter()
                .zip(&shapes)
                .map(|(t, s)| rows::entries(t, s.1, None))
                .collect::<Result<Vec<_>>>()?;
            let mut merge = Merge::new(iters)?;
            let merged = std::iter::from_fn(|| {
                let next = merge.next_from().transpose()?;
                Some(next.map(|(src, e)| {
                    on_key(src, &e.0);
                    e
                }))
            });
            rows::write_sorted(txn, MERGE_TMP, buckets, merged)?
        };
        for name in sources {
            txn.delete_table(rows::rows_def(name))?;
            Self::set_shape(txn, name, None)?;
            runfilter::remove(txn, name)?;
        }
        txn.rename_table(rows::rows_def(MERGE_TMP), rows::rows_def(target))?;
        Self::set_shape(txn, target, Some((n, buckets)))?;
        Ok(n)
    }
}

/// How many of the newest `runs` (name, entries; oldest first) to merge into one, if any:
/// the newest [`RUN_FAN_IN`] once the newer ones hold as many entries as the oldest of them,
/// else the newest two while there are more than [`MAX_RUNS`].
fn runs_to_merge(runs: &[(String, u64)]) -> Option<usize> {
    let n = runs.len();
    if n >= RUN_FAN_IN {
        let newer: u64 = runs[n - RUN_FAN_IN + 1..].iter().map(|r| r.1).sum();
        if newer >= runs[n - RUN_FAN_IN].1 {
            return Some(RUN_FAN_IN);
        }
    }
    (n > MAX_RUNS).then_some(2)
}

/// Bits per key of each filter stage: ~0.5% false positives with 7 probes per 512-bit block.
pub const FILTER_BITS_PER_KEY: usize = 12;
/// Bits per key of a run's filter: ~0.1% false positives. A writable open adds the saved
/// run filters to the negative filter as stages of their own (instead of scanning the
/// runs' keys into it), so their false positives add up there.
pub const RUN_FILTER_BITS_PER_KEY: usize = 16;
/// Capacity of the first filter stage when the store is small.
pub const FILTER_MIN_CAPACITY: usize = 1 << 20;
const FILTER_PROBES: u32 = 7;
/// The filter is saved only for main tables of at least this many keys (below, a
/// writable open rebuilds it by scanning the keys: a few milliseconds).
/// (Unit tests lower it so that small tables exercise both paths.)
pub const FILTER_SAVE_MIN_KEYS: u64 = if cfg!(test) { 100 } else { 1 << 16 };
/// Words (u64) per row of the persisted filter.
pub const FILTER_CHUNK_WORDS: usize = 1 << 17;
/// `filter` table key of the header row.
pub const FILTER_HEADER_KEY: u64 = u64::MAX;

/// Words (u64) of a Bloom filter of `capacity` keys at `bits_per_key`, as
/// [`BloomStage::with_bits`] sizes it; `None` when that overflows.
fn filter_words(capacity: u64, bits_per_key: usize) -> Option<u64> {
    let bits = capacity.checked_mul(bits_per_key as u64)?;
    Some(bits.div_ceil(512).max(1) * 8)
}

/// Reads `words` filter words saved in rows of [`FILTER_CHUNK_WORDS`] (row `c` from
/// `get(c)`), passing each row to `seen`; `None` when a row is missing or of the wrong
/// length. The words grow with the rows read, so a saved header claiming a huge filter
/// costs no more memory than the rows that are there.
fn read_words(
    words: u64,
    mut get: impl FnMut(u64) -> Result<Option<Vec<u8>>>,
    mut seen: impl FnMut(&[u8]),
) -> Result<Option<Vec<AtomicU64>>> {
    let chunk = FILTER_CHUNK_WORDS as u64;
    let mut out = Vec::new();
    for c in 0..words.div_ceil(chunk) {
        let Some(bytes) = get(c)? else {
            return Ok(None);
        };
        if bytes.len() as u64 != (words - c * chunk).min(chunk) * 8 {
            return Ok(None);
        }
        seen(&bytes);
        out.extend(
            bytes
                .chunks_exact(8)
                .map(|w| AtomicU64::new(u64::from_le_bytes(w.try_into().unwrap_or_default()))),
        );
    }
    Ok(Some(out))
}

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
        Self::with_bits(capacity, FILTER_BITS_PER_KEY)
    }

    /// A stage of `capacity` keys holding `count` of them, from its words (a whole
    /// number of 512-bit blocks, as [`BloomStage::with_bits`] sizes them).
    fn from_words(words: Vec<AtomicU64>, capacity: usize, count: u64) -> Self {
        BloomStage {
            blocks: (words.len() / 8).max(1) as u64,
            words,
            capacity,
            count: AtomicU64::new(count),
        }
    }

    /// An empty stage of `bits_per_key` bits per key of `capacity`.
    fn with_bits(capacity: usize, bits_per_key: usize) -> Self {
        let blocks = (capacity * bits_per_key).div_ceil(512).max(1);
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

    /// [`BloomStage::insert`] while nobody else can see the stage (no atomic operations).
    fn insert_owned(&mut self, key: &IndexKey) {
        let probes: [(usize, u64); FILTER_PROBES as usize] = {
            let mut p = self.probes(key);
            std::array::from_fn(|_| p.next().unwrap_or_default())
        };
        for (w, m) in probes {
            *self.words[w].get_mut() |= m;
        }
        *self.count.get_mut() += 1;
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
    /// The run filters a writable open loaded (shared with the index's per-run filters):
    /// they stand for their runs' keys, which are not in `stages` until a merge takes the
    /// run (see [`Index::cover`]). Not saved with the filter.
    runs: RwLock<Vec<Arc<BloomStage>>>,
}

impl NegativeFilter {
    /// An empty filter sized for `expected` keys.
    pub fn new(expected: usize) -> Self {
        let cap = (expected * 2).max(FILTER_MIN_CAPACITY);
        NegativeFilter {
            stages: RwLock::new(vec![BloomStage::new(cap)]),
            runs: RwLock::new(Vec::new()),
        }
    }

    /// Adds the keys of a run filter by keeping the filter itself.
    fn add_run_filter(&mut self, run: Arc<BloomStage>) {
        self.runs.get_mut().push(run);
    }

    /// Drops a run filter given to [`NegativeFilter::add_run_filter`] once its keys were
    /// inserted.
    fn drop_run_filter(&self, run: &Arc<BloomStage>) {
        self.runs.write().retain(|r| !Arc::ptr_eq(r, run));
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

    /// [`NegativeFilter::insert`] while nobody else can see the filter (no locks or
    /// atomic operations).
    fn insert_owned(&mut self, key: &IndexKey) {
        let stages = self.stages.get_mut();
        let cap = match stages.last() {
            Some(s) if (s.count.load(Ordering::Relaxed) as usize) < s.capacity => None,
            last => Some(last.map_or(FILTER_MIN_CAPACITY, |s| s.capacity * 2)),
        };
        if let Some(cap) = cap {
            stages.push(BloomStage::new(cap));
        }
        if let Some(last) = stages.last_mut() {
            last.insert_owned(key);
        }
    }

    /// Forgets every key.
    pub fn clear(&self) {
        let mut stages = self.stages.write();
        let cap = stages.first().map_or(FILTER_MIN_CAPACITY, |s| s.capacity);
        *stages = vec![BloomStage::new(cap)];
        self.runs.write().clear();
    }

    /// False when `key` was certainly never inserted.
    pub fn may_contain(&self, key: &IndexKey) -> bool {
        // Largest stage first: it holds the most keys, so a present key is found sooner
        // (each stage probed is a cache miss).
        self.stages.read().iter().rev().any(|s| s.may_contain(key))
            || self.runs.read().iter().any(|s| s.may_contain(key))
    }

    /// The filter as rows of the `filter` table: [`FILTER_HEADER_KEY`] → stage count then
    /// (capacity, count, words) per stage, all u64 LE; `stage << 32 | chunk` → up to
    /// [`FILTER_CHUNK_WORDS`] words, u64 LE.
    fn to_rows(&self) -> Vec<(u64, Vec<u8>)> {
        let stages = self.stages.read();
        let mut header = (stages.len() as u64).to_le_bytes().to_vec();
        let mut rows = Vec::new();
        for (i, st) in stages.iter().enumerate() {
            for n in [
                st.capacity as u64,
                st.count.load(Ordering::Relaxed),
                st.words.len() as u64,
            ] {
                header.extend_from_slice(&n.to_le_bytes());
            }
            for (c, chunk) in st.words.chunks(FILTER_CHUNK_WORDS).enumerate() {
                let bytes = chunk
                    .iter()
                    .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
                    .collect();
                rows.push(((i as u64) << 32 | c as u64, bytes));
            }
        }
        rows.push((FILTER_HEADER_KEY, header));
        rows
    }

    /// Decodes [`NegativeFilter::to_rows`]; `None` when the rows are inconsistent.
    fn from_rows(get: impl Fn(u64) -> Result<Option<Vec<u8>>>) -> Result<Option<Self>> {
        let Some(header) = get(FILTER_HEADER_KEY)? else {
            return Ok(None);
        };
        let at = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                header.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        let Some(n) = at(0).filter(|&n| n < 64) else {
            return Ok(None);
        };
        let mut stages = Vec::new();
        for i in 0..n {
            let (Some(capacity), Some(count), Some(words)) = (
                at(1 + 3 * i as usize),
                at(2 + 3 * i as usize),
                at(3 + 3 * i as usize),
            ) else {
                return Ok(None);
            };
            let (Ok(cap), true) = (
                usize::try_from(capacity),
                filter_words(capacity, FILTER_BITS_PER_KEY) == Some(words),
            ) else {
                return Ok(None);
            };
            let Some(w) = read_words(words, |c| get(i << 32 | c), |_| {})? else {
                return Ok(None);
            };
            stages.push(BloomStage::from_words(w, cap, count));
        }
        Ok(Some(NegativeFilter {
            stages: RwLock::new(stages),
            runs: RwLock::new(Vec::new()),
        }))
    }

    /// Bytes of memory held by the bit arrays.
    pub fn memory_bytes(&self) -> usize {
        let runs: usize = self.runs.read().iter().map(|s| s.words.len() * 8).sum();
        runs + self
            .stages
            .read()
            .iter()
            .map(|s| s.words.len() * 8)
            .sum::<usize>()
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
    fn runs_merge_into_a_main_table_a_gc_emptied() {
        let idx = Index::in_memory().unwrap();
        let key = |i: u32| key_of(&HashAlg::Blake3.hash(&i.to_le_bytes()));
        let loc = |seg: u32, i: u32| Location {
            segment: SegmentId(seg),
            offset: u64::from(i),
            stored_len: 1,
            raw_len: 1,
            flags: 0,
            generation: 0,
        };
        let add = |seg: u32, from: u32, to: u32| {
            let new_blocks = (from..to).map(|i| (key(i), loc(seg, i))).collect();
            idx.commit(
                Batch {
                    new_blocks,
                    ..Batch::default()
                },
                true,
            )
            .unwrap();
        };
        // Two commits: the second run is as large as the first, so both end up in main.
        add(1, 0, 100);
        add(1, 100, 200);
        assert!(idx.layout().unwrap().runs.is_empty());
        let done = idx
            .gc_switch(GcSwitch {
                retire: vec![SegmentId(1)],
                ..GcSwitch::default()
            })
            .unwrap();
        assert_eq!(done.removed, 200);
        // The main table is empty but still there; the next runs must merge into it.
        add(2, 1000, 1001);
        add(2, 1001, 1002);
        for i in 1000..1002 {
            let got = idx.get(&key(i)).unwrap().expect("indexed");
            assert_eq!((got.segment, got.offset), (SegmentId(2), u64::from(i)));
        }
        assert_eq!(idx.get(&key(5)).unwrap(), None);
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

    /// A writable index in the file `path`, with a 1 MiB cache.
    pub(super) fn open_file(path: &std::path::Path, mode: crate::io::OpenMode) -> Index {
        use crate::io::{Fs, OsFs};
        let file = OsFs.open(path, mode).unwrap();
        Index::open_writable(
            IndexBackend::Io(file),
            ConcurrencyMode::ExclusiveWriter,
            1 << 20,
        )
        .unwrap()
    }

    fn loc_n(i: u32) -> Location {
        Location {
            segment: SegmentId(i % 7),
            offset: u64::from(i) * 100,
            stored_len: i % 1000,
            raw_len: i % 1000 + 1,
            flags: 2,
            generation: 0,
        }
    }

    fn key_n(i: u32) -> IndexKey {
        key_of(&HashAlg::Blake3.hash(&i.to_le_bytes()))
    }

    /// Commits `0..n` in batches of the given sizes as new keys.
    fn fill(idx: &Index, sizes: &[u32]) -> u32 {
        let mut next = 0;
        for &size in sizes {
            let new_blocks = (next..next + size).map(|i| (key_n(i), loc_n(i))).collect();
            let batch = Batch {
                new_blocks,
                ..Batch::default()
            };
            idx.commit(batch, false).unwrap();
            next += size;
        }
        next
    }

    #[test]
    fn runs_merge_and_every_key_stays_reachable() {
        let idx = Index::in_memory().unwrap();
        let sizes = [
            500, 3, 40, 40, 40, 7, 1, 1, 1, 1, 200, 13, 13, 13, 13, 13, 13, 13, 13,
        ];
        let n = fill(&idx, &sizes);
        let layout = idx.layout().unwrap();
        assert_eq!(layout.main + layout.runs.iter().sum::<u64>(), u64::from(n));
        assert!(layout.runs.len() <= MAX_RUNS);
        // Compaction left nothing to merge.
        let named: Vec<(String, u64)> = layout.runs.iter().map(|&n| (String::new(), n)).collect();
        assert_eq!(runs_to_merge(&named), None, "{layout:?}");
        assert_eq!(idx.counters().unwrap().blocks, u64::from(n));
        for i in 0..n {
            let got = idx.get(&key_n(i)).unwrap().unwrap();
            assert_eq!(
                (got.segment, got.offset),
                (loc_n(i).segment, loc_n(i).offset)
            );
        }
        assert!(idx.get(&key_n(n + 1)).unwrap().is_none());
        let mut all = Vec::new();
        idx.for_each(|k, _| {
            all.push(k);
            Ok(())
        })
        .unwrap();
        let mut want: Vec<IndexKey> = (0..n).map(key_n).collect();
        want.sort_unstable();
        assert_eq!(all, want);
        // Paging through keys_from sees every key once, in order.
        let mut paged = Vec::new();
        let mut start = None;
        loop {
            let page = idx.keys_from(start.as_ref(), true, 97).unwrap();
            let Some(last) = page.last().copied() else {
                break;
            };
            paged.extend(page);
            start = Some(last);
        }
        assert_eq!(paged, want);
    }

    /// An index of keys `0..n` spread over a main table and runs.
    fn main_and_runs() -> (Index, u32) {
        let idx = Index::in_memory().unwrap();
        let n = fill(&idx, &[400, 20, 5]);
        assert!(!idx.layout().unwrap().runs.is_empty());
        (idx, n)
    }

    /// Key `i`'s location moved to segment `seg`.
    fn moved_to(seg: u32, i: u32) -> Location {
        Location {
            segment: SegmentId(seg),
            ..loc_n(i)
        }
    }

    #[test]
    fn upserts_and_flags_update_in_place_wherever_the_key_lives() {
        let (idx, n) = main_and_runs();
        let moved = |i| moved_to(99, i);
        // Key 0 is in the main table, n - 1 in the newest run; n + 5 is new.
        let targets = [0, n - 1, n + 5];
        let batch = Batch {
            blocks: targets.iter().map(|&i| (key_n(i), moved(i))).collect(),
            set_complete: vec![key_n(1), key_n(n - 2)],
            ..Batch::default()
        };
        let c = idx.commit(batch, true).unwrap();
        assert_eq!(c.blocks, u64::from(n) + 1);
        for i in targets {
            assert_eq!(idx.get(&key_n(i)).unwrap().unwrap().segment, SegmentId(99));
        }
        for i in [1, n - 2] {
            let flags = idx.get(&key_n(i)).unwrap().unwrap().flags;
            assert_ne!(flags & FLAG_INDIRECT_COMPLETE, 0);
        }
        let mut count = 0;
        idx.for_each(|_, _| {
            count += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(count, n + 1);
        let cleared = Batch {
            clear_blocks: true,
            ..Batch::default()
        };
        assert_eq!(idx.commit(cleared, true).unwrap().blocks, 0);
        assert!(idx.get(&key_n(0)).unwrap().is_none());
        assert_eq!(idx.layout().unwrap(), Layout::default());
    }

    #[test]
    fn lookup_without_the_negative_filter_answers_as_get_does() {
        let (idx, n) = main_and_runs();
        // A newer entry for a key of the main table and one for a key of a run.
        let moved = |i| moved_to(77, i);
        let batch = Batch {
            blocks: vec![(key_n(3), moved(3)), (key_n(n - 2), moved(n - 2))],
            ..Batch::default()
        };
        idx.commit(batch, true).unwrap();
        let keys: Vec<IndexKey> = (0..n + 50).map(key_n).collect();
        let many = idx.get_many(&keys).unwrap();
        for (i, k) in keys.iter().enumerate() {
            let got = idx.lookup(k).unwrap();
            assert_eq!(got, idx.get(k).unwrap(), "key {i}");
            assert_eq!(got, many[i], "key {i}");
            assert_eq!(got.is_some(), (i as u32) < n, "key {i}");
        }
        assert_eq!(
            idx.lookup(&key_n(3)).unwrap().unwrap().segment,
            SegmentId(77)
        );
        assert_eq!(
            idx.lookup(&key_n(n - 2)).unwrap().unwrap().segment,
            SegmentId(77)
        );
    }

    #[test]
    fn reopen_restores_the_saved_filter_and_adds_the_runs() {
        use crate::io::OpenMode;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let open = |mode| open_file(&path, mode);
        let idx = open(OpenMode::CreateNew);
        let n = fill(&idx, &[300, 10, 10]);
        let layout = idx.layout().unwrap();
        assert!(layout.main > 0 && !layout.runs.is_empty(), "{layout:?}");
        drop(idx);
        let idx = open(OpenMode::Write);
        let f = idx.filter().unwrap();
        assert!((0..n).all(|i| f.may_contain(&key_n(i))));
        assert!((0..n).all(|i| idx.get(&key_n(i)).unwrap().is_some()));
        // A stale saved filter (main table changed behind it) is ignored, not trusted.
        let batch = Batch {
            meta: vec![(META_FILTER_MAIN_LEN, 7u64.to_le_bytes().to_vec())],
            ..Batch::default()
        };
        idx.commit(batch, true).unwrap();
        drop(idx);
        let idx = open(OpenMode::Write);
        assert!((0..n).all(|i| idx.get(&key_n(i)).unwrap().is_some()));
    }

    #[test]
    fn small_main_tables_save_no_filter() {
        use crate::io::OpenMode;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let open = |mode| open_file(&path, mode);
        let idx = open(OpenMode::CreateNew);
        let n = fill(&idx, &[(FILTER_SAVE_MIN_KEYS - 1) as u32]);
        assert_eq!(idx.layout().unwrap().main, u64::from(n));
        let saved = |idx: &Index| {
            let txn = idx.begin_read().unwrap();
            missing_ok(txn.open_table(FILTER)).unwrap().is_some()
        };
        assert!(!saved(&idx));
        drop(idx);
        // Without a saved filter the open scans the keys: nothing is missed.
        let idx = open(OpenMode::Write);
        assert!((0..n).all(|i| idx.may_contain(&key_n(i))));
        // Past the threshold the next merge into the main table saves it.
        let batch = Batch {
            new_blocks: (n..2 * n).map(|i| (key_n(i), loc_n(i))).collect(),
            ..Batch::default()
        };
        idx.commit(batch, true).unwrap();
        assert!(saved(&idx));
    }

    #[test]
    fn gc_retire_edits_few_rows_in_place_and_rewrites_many() {
        // Segment 0 holds every 7th key (many rows change); segment 3 only keys 3 and 10.
        for retire in [0u32, 3] {
            let idx = Index::in_memory().unwrap();
            let n = fill(&idx, &[2000]);
            let sparse = |i: u32| {
                if i == 3 || i == 10 {
                    3
                } else {
                    1
                }
            };
            let loc = |i: u32| Location {
                segment: SegmentId(if retire == 0 { i % 7 } else { sparse(i) }),
                ..loc_n(i)
            };
            let blocks = (0..n).map(|i| (key_n(i), loc(i))).collect();
            idx.commit(
                Batch {
                    blocks,
                    ..Batch::default()
                },
                true,
            )
            .unwrap();
            let gone = |i: u32| loc(i).segment == SegmentId(retire);
            let want_gone = (0..n).filter(|&i| gone(i)).count() as u64;
            let done = idx
                .gc_switch(GcSwitch {
                    retire: vec![SegmentId(retire)],
                    ..GcSwitch::default()
                })
                .unwrap();
            assert_eq!(done.removed, want_gone);
            assert_eq!(idx.layout().unwrap().total(), u64::from(n) - want_gone);
            assert_eq!(idx.counters().unwrap().blocks, u64::from(n) - want_gone);
            for i in 0..n {
                assert_eq!(idx.get(&key_n(i)).unwrap().is_some(), !gone(i), "key {i}");
            }
            let mut seen = 0;
            idx.for_each(|_, l| {
                assert_ne!(l.segment, SegmentId(retire));
                seen += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, u64::from(n) - want_gone);
        }
    }

    /// Writes a version 2 file by hand: `blocks` and a run, one B-tree entry per key.
    fn write_version_2(
        path: &std::path::Path,
        main: std::ops::Range<u32>,
        run: std::ops::Range<u32>,
    ) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        for (name, keys) in [
            (LEGACY_MAIN.to_string(), main),
            (format!("{LEGACY_RUN_PREFIX}{:016x}", 9), run),
        ] {
            let mut t = txn.open_table(legacy_def(&name)).unwrap();
            for i in keys {
                t.insert(key_n(i), loc_n(i).encode()).unwrap();
            }
        }
        txn.open_table(META)
            .unwrap()
            .insert(META_VERSION, 2u64.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    #[test]
    fn version_2_files_are_read_as_they_are_and_converted_by_a_writer() {
        use crate::io::{Fs, OpenMode, OsFs};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        write_version_2(&path, 0..500, 500..520);
        let check = |idx: &Index| {
            for i in 0..520 {
                let got = idx.get(&key_n(i)).unwrap().expect("indexed");
                assert_eq!(
                    (got.segment, got.offset),
                    (loc_n(i).segment, loc_n(i).offset)
                );
            }
            assert!(idx.get(&key_n(520)).unwrap().is_none());
            let mut all = Vec::new();
            idx.for_each(|k, _| {
                all.push(k);
                Ok(())
            })
            .unwrap();
            let mut want: Vec<IndexKey> = (0..520).map(key_n).collect();
            want.sort_unstable();
            assert_eq!(all, want);
        };
        let (backend, mode) = OsFs.index_backend(&path, OpenMode::Read).unwrap();
        let ro = Index::open_read_only(backend, mode).unwrap();
        check(&ro);
        assert_eq!(
            ro.layout().unwrap(),
            Layout {
                main: 500,
                runs: vec![20]
            }
        );
        drop(ro);
        let idx = open_file(&path, OpenMode::Write);
        check(&idx);
        assert_eq!(
            idx.layout().unwrap(),
            Layout {
                main: 520,
                runs: vec![]
            }
        );
        assert_eq!(
            idx.meta(META_VERSION).unwrap(),
            Some(INDEX_VERSION.to_le_bytes().to_vec())
        );
        let txn = idx.begin_read().unwrap();
        assert!(missing_ok(txn.open_table(legacy_def(LEGACY_MAIN)))
            .unwrap()
            .is_none());
        drop(txn);
        // New keys go to packed runs beside the converted main table.
        let batch = Batch {
            new_blocks: vec![(key_n(600), loc_n(600))],
            ..Batch::default()
        };
        idx.commit(batch, true).unwrap();
        assert!(idx.get(&key_n(600)).unwrap().is_some());
        check_rows(&idx);
    }

    /// Every row of every packed table holds sorted entries of its bucket only, and the
    /// tables have about `ROW_TARGET` entries per bucket.
    fn check_rows(idx: &Index) {
        let snap = idx.open_snapshot().unwrap();
        for t in &snap.tables {
            let BlockTable::Rows(t, buckets) = t else {
                panic!("legacy table")
            };
            let mut entries = 0;
            let mut last: Option<IndexKey> = None;
            for r in t.range::<u64>(..).unwrap() {
                let (b, row) = r.unwrap();
                let row = row.value();
                assert!(!row.is_empty() && row.len() % rows::ENTRY_LEN == 0);
                for e in row.chunks(rows::ENTRY_LEN) {
                    let k: IndexKey = e[..KEY_LEN].try_into().unwrap();
                    assert_eq!(rows::bucket(&k, *buckets), b.value());
                    assert!(last.is_none_or(|l| l < k));
                    last = Some(k);
                    entries += 1;
                }
            }
            assert_eq!(*buckets, rows::buckets_for(entries), "{entries} entries");
        }
    }

    #[test]
    fn merges_write_rows_by_bucket() {
        let idx = Index::in_memory().unwrap();
        fill(&idx, &[1000, 300, 100, 50, 10]);
        check_rows(&idx);
        assert!(!idx.layout().unwrap().runs.is_empty());
    }

    #[test]
    fn filter_rows_roundtrip() {
        let f = NegativeFilter::new(10);
        for i in 0..5000 {
            f.insert(&key_n(i));
        }
        let rows: std::collections::HashMap<u64, Vec<u8>> = f.to_rows().into_iter().collect();
        let g = NegativeFilter::from_rows(|k| Ok(rows.get(&k).cloned()))
            .unwrap()
            .unwrap();
        assert!((0..5000).all(|i| g.may_contain(&key_n(i))));
        assert_eq!(g.memory_bytes(), f.memory_bytes());
    }

    /// Every run's filter admits every key of its run.
    fn check_run_filters(idx: &Index) {
        let snap = idx.open_snapshot().unwrap();
        for ((t, f), name) in snap.tables.iter().zip(&snap.filters).zip(&snap.names) {
            if let Some(f) = f {
                for e in t.entries(None).unwrap() {
                    assert!(f.may_contain(&e.unwrap().0), "{name}");
                }
            }
        }
    }

    /// One commit of the model test: new keys (not indexed yet) and upserts of any key,
    /// as (key number, location number).
    type ModelCommit = (Vec<u32>, Vec<(u32, u32)>);

    /// Applies `commits` to `idx` and to a map, checking after each that lookups, the run
    /// filters and a key-order scan agree with the map; returns the map.
    fn run_model(
        idx: &Index,
        commits: &[ModelCommit],
    ) -> std::collections::BTreeMap<IndexKey, u32> {
        let mut model = std::collections::BTreeMap::new();
        continue_model(idx, commits, &mut model);
        model
    }

    /// [`run_model`] from the state `model` describes.
    fn continue_model(
        idx: &Index,
        commits: &[ModelCommit],
        model: &mut std::collections::BTreeMap<IndexKey, u32>,
    ) {
        for (fresh, upserts) in commits {
            let mut batch = Batch::default();
            let mut seen = std::collections::HashSet::new();
            for &i in fresh {
                if !model.contains_key(&key_n(i)) && seen.insert(i) {
                    batch.new_blocks.push((key_n(i), loc_n(i)));
                    model.insert(key_n(i), i);
                }
            }
            for &(i, l) in upserts {
                if seen.insert(i) {
                    batch.blocks.push((key_n(i), loc_n(l)));
                    model.insert(key_n(i), l);
                }
            }
            idx.commit(batch, false).unwrap();
            check_model(idx, model);
        }
    }

    fn check_model(idx: &Index, model: &std::collections::BTreeMap<IndexKey, u32>) {
        for (k, &l) in model {
            let got = idx.get(k).unwrap().map(|g| (g.segment, g.offset));
            assert_eq!(got, Some((loc_n(l).segment, loc_n(l).offset)));
        }
        for i in 100_000..100_050 {
            assert!(idx.get(&key_n(i)).unwrap().is_none());
        }
        let keys = idx.keys_from(None, false, usize::MAX).unwrap();
        assert_eq!(keys, model.keys().copied().collect::<Vec<_>>());
        check_run_filters(idx);
    }

    #[test]
    fn compaction_keeps_runs_few_and_filtered() {
        let idx = Index::in_memory().unwrap();
        // Equal commits: runs merge in fours, then into main once they hold as much.
        let commits: Vec<ModelCommit> = (0..40u32)
            .map(|c| ((c * 50..(c + 1) * 50).collect(), vec![]))
            .collect();
        run_model(&idx, &commits);
        let layout = idx.layout().unwrap();
        assert!(layout.runs.len() < 2 * RUN_FAN_IN, "{layout:?}");
        assert!(layout.main >= layout.runs.iter().sum::<u64>(), "{layout:?}");
        let snap = idx.open_snapshot().unwrap();
        let filtered = snap.filters.iter().filter(|f| f.is_some()).count();
        assert_eq!(filtered, layout.runs.len());
    }

    type RunFilterTable<'t> = redb::Table<'t, (&'static str, u64), &'static [u8]>;

    /// Commits `sizes` to a new index file, returns the keys and the runs left.
    fn file_with_runs(path: &std::path::Path, sizes: &[u32]) -> (u32, usize) {
        let idx = open_file(path, crate::io::OpenMode::CreateNew);
        let n = fill(&idx, sizes);
        let runs = idx.layout().unwrap().runs.len();
        assert!(runs >= 2, "{:?}", idx.layout().unwrap());
        (n, runs)
    }

    /// Edits the `run_filters` rows of the index file `path` with `f` (run names in order).
    fn edit_run_filters(
        path: &std::path::Path,
        f: impl FnOnce(&mut RunFilterTable<'_>, &[String]),
    ) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(runfilter::RUN_FILTERS).unwrap();
            let names = runfilter::names(&t).unwrap();
            f(&mut t, &names);
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_writable_open_loads_the_saved_run_filters_without_scanning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let (n, runs) = file_with_runs(&path, &[300, 40, 40, 5, 5, 5]);
        let idx = open_file(&path, crate::io::OpenMode::Write);
        let want = FilterOpenStats {
            runs_loaded: runs,
            ..FilterOpenStats::default()
        };
        assert_eq!(idx.filter_open_stats(), want);
        assert!((0..n).all(|i| idx.get(&key_n(i)).unwrap().is_some()));
        check_run_filters(&idx);
    }

    /// What a forged saved-filter header must claim for `capacity` keys at `bits` per key
    /// to pass the header's checks: its words, and its last row's number and bytes.
    fn hostile_filter(capacity: u64, bits: usize) -> (u64, u64, Vec<u8>) {
        let words = filter_words(capacity, bits).unwrap();
        let chunk = FILTER_CHUNK_WORDS as u64;
        let last = words.div_ceil(chunk) - 1;
        (
            words,
            last,
            vec![0u8; ((words - last * chunk) * 8) as usize],
        )
    }

    /// The header row of run `n`'s saved filter.
    fn run_filter_header(t: &RunFilterTable<'_>, n: &str) -> Vec<u8> {
        t.get((n, runfilter::HEADER))
            .unwrap()
            .unwrap()
            .value()
            .to_vec()
    }

    #[test]
    fn a_missing_or_corrupt_saved_run_filter_is_rebuilt_and_misses_no_key() {
        type Edit = fn(&mut RunFilterTable<'_>, &str);
        let edits: [(&str, Edit); 7] = [
            ("capacity hostile, last row forged", |t, n| {
                // A filter of 2^40 keys would take terabytes: its header and a last row
                // of the right length must not make the open allocate it.
                let mut v = run_filter_header(t, n);
                let capacity = 1u64 << 40;
                let (words, last, last_row) = hostile_filter(capacity, RUN_FILTER_BITS_PER_KEY);
                v[8..16].copy_from_slice(&capacity.to_le_bytes());
                v[16..24].copy_from_slice(&words.to_le_bytes());
                t.insert((n, runfilter::HEADER), v.as_slice()).unwrap();
                t.insert((n, last), last_row.as_slice()).unwrap();
            }),
            ("header removed", |t, n| {
                t.remove((n, runfilter::HEADER)).unwrap();
            }),
            ("words removed", |t, n| {
                t.remove((n, 0)).unwrap();
            }),
            ("words zeroed", |t, n| {
                let len = t.get((n, 0)).unwrap().unwrap().value().len();
                t.insert((n, 0), vec![0u8; len].as_slice()).unwrap();
            }),
            ("words short", |t, n| {
                let v = t.get((n, 0)).unwrap().unwrap().value().to_vec();
                t.insert((n, 0), &v[..v.len() - 8]).unwrap();
            }),
            ("header short", |t, n| {
                let v = run_filter_header(t, n);
                t.insert((n, runfilter::HEADER), &v[..v.len() - 1]).unwrap();
            }),
            ("entry count stale", |t, n| {
                let mut v = run_filter_header(t, n);
                v[0] ^= 1;
                t.insert((n, runfilter::HEADER), v.as_slice()).unwrap();
            }),
        ];
        for (what, edit) in edits {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("index.redb");
            let (n, runs) = file_with_runs(&path, &[300, 40, 40, 5, 5, 5]);
            // Every run's filter broken the same way.
            edit_run_filters(&path, |t, names| {
                names.iter().for_each(|name| edit(t, name))
            });
            let idx = open_file(&path, crate::io::OpenMode::Write);
            let stats = idx.filter_open_stats();
            assert_eq!((stats.runs_loaded, stats.runs_rebuilt), (0, runs), "{what}");
            assert!(
                (0..n).all(|i| idx.get(&key_n(i)).unwrap().is_some()),
                "{what}"
            );
            check_run_filters(&idx);
            drop(idx);
            // The open saved the rebuilt filters.
            let idx = open_file(&path, crate::io::OpenMode::Write);
            assert_eq!(idx.filter_open_stats().runs_loaded, runs, "{what}");
            assert!(
                (0..n).all(|i| idx.get(&key_n(i)).unwrap().is_some()),
                "{what}"
            );
        }
    }

    #[test]
    fn a_saved_filter_claiming_a_huge_size_is_rebuilt_without_allocating_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let idx = open_file(&path, crate::io::OpenMode::CreateNew);
        // The second commit merges into the main table, which saves the filter.
        let n = fill(&idx, &[300, 300]);
        drop(idx);
        // One stage of 2^40 keys (terabytes of words), with a last row of the right length:
        // the header's checks pass, and only the rows that are there may be read.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(FILTER).unwrap();
            assert!(
                t.get(FILTER_HEADER_KEY).unwrap().is_some(),
                "no filter saved"
            );
            let capacity = 1u64 << 40;
            let (words, last, last_row) = hostile_filter(capacity, FILTER_BITS_PER_KEY);
            let header: Vec<u8> = [1, capacity, 0, words]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            t.insert(FILTER_HEADER_KEY, header.as_slice()).unwrap();
            t.insert(last, last_row.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        let idx = open_file(&path, crate::io::OpenMode::Write);
        // Rebuilt by scanning the main table, and no key is missed.
        assert!(idx.filter_open_stats().entries_scanned >= u64::from(n));
        assert!((0..n).all(|i| idx.get(&key_n(i)).unwrap().is_some()));
        assert!(idx.filter().unwrap().memory_bytes() < 1 << 30);
    }

    #[test]
    fn an_entry_count_beyond_the_file_size_fails_the_open_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let (n, _) = file_with_runs(&path, &[300, 40, 5]);
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let (entries, buckets) = {
            let mut t = txn.open_table(COUNTS).unwrap();
            let shape = t.get(MAIN).unwrap().unwrap().value();
            // As many entries as a petabyte-sized file would hold.
            t.insert(MAIN, (1u64 << 50, shape.1)).unwrap();
            shape
        };
        txn.commit().unwrap();
        drop(db);
        use crate::io::{Fs, OsFs};
        let file = OsFs.open(&path, crate::io::OpenMode::Write).unwrap();
        let err = Index::open_writable(
            IndexBackend::Io(file),
            ConcurrencyMode::ExclusiveWriter,
            1 << 20,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("corrupt index") && err.contains("block_rows") && err.contains("reindex"),
            "{err}"
        );
        // The open wrote no table (redb's own header is rewritten by any open): with
        // the count put back, every key is there.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(COUNTS)
            .unwrap()
            .insert(MAIN, (entries, buckets))
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let idx = open_file(&path, crate::io::OpenMode::Write);
        assert!((0..n).all(|i| idx.get(&key_n(i)).unwrap().is_some()));
    }

    #[test]
    fn files_without_saved_run_filters_are_scanned_and_orphans_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let (n, runs) = file_with_runs(&path, &[300, 40, 40, 5, 5, 5]);
        // As written before run filters were saved, plus rows of a run that is gone.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(runfilter::RUN_FILTERS).unwrap();
        let gone = run_name(1 << 40);
        txn.open_table(runfilter::RUN_FILTERS)
            .unwrap()
            .insert((gone.as_str(), runfilter::HEADER), [0u8; 3].as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let idx = open_file(&path, crate::io::OpenMode::Write);
        assert_eq!(idx.filter_open_stats().runs_rebuilt, runs);
        assert!((0..n).all(|i| idx.get(&key_n(i)).unwrap().is_some()));
        let txn = idx.begin_read().unwrap();
        let t = txn.open_table(runfilter::RUN_FILTERS).unwrap();
        let mut names = runfilter::names(&t).unwrap();
        names.sort();
        let snap = idx.open_snapshot().unwrap();
        let mut live: Vec<String> = snap
            .names
            .iter()
            .filter(|n| n.starts_with(RUN_PREFIX))
            .cloned()
            .collect();
        live.sort();
        assert_eq!(names, live);
    }

    #[test]
    fn a_merge_into_main_after_a_reopen_saves_a_filter_with_the_runs_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let (n, _) = file_with_runs(&path, &[300, 40, 40, 5, 5, 5]);
        let idx = open_file(&path, crate::io::OpenMode::Write);
        assert_eq!(idx.filter_open_stats().entries_scanned, 0);
        let with_runs = idx.filter().unwrap().memory_bytes();
        // As many new keys as the main table holds: everything merges into it.
        let batch = Batch {
            new_blocks: (n..2 * n).map(|i| (key_n(i), loc_n(i))).collect(),
            ..Batch::default()
        };
        idx.commit(batch, true).unwrap();
        assert!(idx.layout().unwrap().runs.is_empty());
        // The run filters of the open left the negative filter: their keys are in it.
        let f = idx.filter().unwrap();
        assert!(f.memory_bytes() < with_runs);
        assert!((0..2 * n).all(|i| f.may_contain(&key_n(i))));
        drop(idx);
        let idx = open_file(&path, crate::io::OpenMode::Write);
        assert_eq!(idx.filter_open_stats(), FilterOpenStats::default());
        let f = idx.filter().unwrap();
        assert!((0..2 * n).all(|i| f.may_contain(&key_n(i))));
    }

    #[test]
    fn saved_run_filters_stay_valid_after_a_gc_and_follow_merges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let (n, runs) = file_with_runs(&path, &[300, 40, 40, 5, 5, 5]);
        let idx = open_file(&path, crate::io::OpenMode::Write);
        // Segment 3 holds every 7th key, in the main table and in the runs.
        let done = idx
            .gc_switch(GcSwitch {
                retire: vec![SegmentId(3)],
                ..GcSwitch::default()
            })
            .unwrap();
        assert!(done.removed > 0);
        drop(idx);
        let idx = open_file(&path, crate::io::OpenMode::Write);
        assert_eq!(idx.filter_open_stats().runs_loaded, runs);
        for i in 0..n {
            assert_eq!(
                idx.get(&key_n(i)).unwrap().is_some(),
                loc_n(i).segment != SegmentId(3)
            );
        }
        // More commits merge runs: every saved filter still matches a live run.
        let batch = Batch {
            new_blocks: (n..n + 60).map(|i| (key_n(i), loc_n(i))).collect(),
            ..Batch::default()
        };
        idx.commit(batch, true).unwrap();
        drop(idx);
        let idx = open_file(&path, crate::io::OpenMode::Write);
        let stats = idx.filter_open_stats();
        assert_eq!(stats.runs_rebuilt, 0);
        assert_eq!(stats.runs_loaded, idx.layout().unwrap().runs.len());
        assert!((n..n + 60).all(|i| idx.get(&key_n(i)).unwrap().is_some()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn lookups_after_any_commit_sequence_match_a_map(
            commits in proptest::collection::vec(
                (
                    proptest::collection::vec(0u32..2000, 0..120),
                    proptest::collection::vec((0u32..2000, 0u32..5000), 0..20),
                ),
                1..24,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("index.redb");
            let idx = open_file(&path, crate::io::OpenMode::CreateNew);
            let (before, after) = commits.split_at(commits.len() / 2);
            let mut model = run_model(&idx, before);
            drop(idx);
            // A reopen loads the saved run filters; merges after it take the runs of the
            // open, whose keys the negative filter then holds itself.
            let idx = open_file(&path, crate::io::OpenMode::Write);
            prop_assert_eq!(idx.filter_open_stats().runs_rebuilt, 0);
            check_model(&idx, &model);
            continue_model(&idx, after, &mut model);
            drop(idx);
            let idx = open_file(&path, crate::io::OpenMode::Write);
            prop_assert_eq!(idx.filter_open_stats().runs_rebuilt, 0);
            check_model(&idx, &model);
            let f = idx.filter().unwrap();
            prop_assert!(model.keys().all(|k| f.may_contain(k)));
        }
    }

    proptest! {
        #[test]
        fn location_roundtrip(seg in any::<u32>(), off in 0u64..(1 << 48), s in any::<u32>(), r in any::<u32>(), fl in any::<u16>(), g in any::<u32>()) {
            let loc = Location { segment: SegmentId(seg), offset: off, stored_len: s, raw_len: r, flags: fl, generation: g };
            prop_assert_eq!(Location::decode(&loc.encode()), loc);
        }

        #[test]
        fn filter_rows_garbage_never_panics(header in proptest::collection::vec(any::<u8>(), 0..64), chunk in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = NegativeFilter::from_rows(|k| Ok(Some(if k == FILTER_HEADER_KEY { header.clone() } else { chunk.clone() })));
        }

        #[test]
        fn run_filter_garbage_never_panics(
            raw in any::<bool>(),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
            fields in (0u64..4, 0u64..100, 0u64..40),
            chunk in proptest::collection::vec(any::<u8>(), 0..200),
            entries in 0u64..4,
        ) {
            // Either bytes at random or a header whose sizes may or may not fit the rows.
            let mut header = garbage.clone();
            if !raw {
                header = [fields.0, fields.1, fields.2].iter().flat_map(|v| v.to_le_bytes()).collect();
                header.extend_from_slice(&[0u8; 16]);
            }
            let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(runfilter::RUN_FILTERS).unwrap();
                t.insert(("r", runfilter::HEADER), header.as_slice()).unwrap();
                t.insert(("r", 0), chunk.as_slice()).unwrap();
                let _ = runfilter::load(&t, "r", entries);
            }
            txn.abort().unwrap();
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
            // Keys live in the main table or in one run; GC must see them all.
            let names = Self::block_tables(&txn)?;
            let mut tables = names
                .iter()
                .map(|n| Ok((txn.open_table(rows::rows_def(n))?, Self::shape(&txn, n)?.1)))
                .collect::<Result<Vec<_>>>()?;
            let mut moves = sw.moves;
            moves.sort_unstable_by_key(|m| m.0);
            for (k, old_seg, new) in &moves {
                for (blocks, buckets) in tables.iter_mut() {
                    let Some(mut found) = rows::find(blocks, *buckets, k)? else {
                        continue;
                    };
                    let cur = Location::decode(&found.loc());
                    if cur.segment == *old_seg {
                        let loc = cur.moved_to(new);
                        counters.stored_bytes = counters
                            .stored_bytes
                            .saturating_sub(u64::from(cur.stored_len))
                            .saturating_add(u64::from(loc.stored_len));
                        found.set(loc.encode());
                        found.store(blocks)?;
                        done.moved += 1;
                    }
                    break;
                }
            }
            drop(tables);
            if !sw.retire.is_empty() {
                let retire: std::collections::HashSet<u32> =
                    sw.retire.iter().map(|s| s.0).collect();
                let gone = |v: &[u8; LOCATION_LEN]| retire.contains(&Location::decode(v).segment.0);
                for name in &names {
                    let buckets = Self::shape(&txn, name)?.1;
                    let left = rows::retain(&txn, name, MERGE_TMP, buckets, gone, |v| {
                        let loc = Location::decode(v);
                        done.removed += 1;
                        done.removed_stored_bytes += u64::from(loc.stored_len);
                        counters.blocks = counters.blocks.saturating_sub(1);
                        counters.stored_bytes = counters
                            .stored_bytes
                            .saturating_sub(u64::from(loc.stored_len));
                        counters.logical_bytes = counters
                            .logical_bytes
                            .saturating_sub(u64::from(loc.raw_len));
                    })?;
                    Self::set_shape(&txn, name, Some(left))?;
                    // The run's keys are fewer, so its saved filter still holds them all.
                    runfilter::set_entries(&txn, name, left.0)?;
                }
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

// ---- file size ---------------------------------------------------------------
// Merges write new tables and free the old ones, and redb grows its file by doubling,
// so a small index can be mostly free pages. Kept apart from the lookup paths.

/// [`Index::compact_if_sparse`] leaves files smaller than this alone.
pub const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// ... and files larger than this: compaction moves pages one commit at a time and would
/// stall the closing of a big store (whose free share stays bounded by the merge policy).
pub const COMPACT_MAX_BYTES: u64 = 256 << 20;

impl Index {
    /// Compacts the file (`file_len` bytes) when it is between [`COMPACT_MIN_BYTES`] and
    /// [`COMPACT_MAX_BYTES`] and at least a third of it is free. Returns whether it ran.
    /// Read-only handles and files in use by readers of other processes are left as they
    /// are. Fails on I/O errors; redb commits each step, so a crash leaves a valid file.
    pub fn compact_if_sparse(&mut self, file_len: u64) -> Result<bool> {
        if !(COMPACT_MIN_BYTES..=COMPACT_MAX_BYTES).contains(&file_len) {
            return Ok(false);
        }
        let Db::Rw(db) = &mut self.db else {
            return Ok(false);
        };
        let used = {
            let txn = db.begin_write()?;
            let stats = txn.stats()?;
            txn.abort()?;
            stats.allocated_pages() * stats.page_size() as u64
        };
        if used.saturating_mul(3) > file_len.saturating_mul(2) {
            return Ok(false);
        }
        self.compact_file()
    }
}

impl Index {
    /// Compacts the index file after a GC removed entries: redb moves live pages down and
    /// returns the free tail to the file system. Needs the only reference to this handle;
    /// returns false when nothing was done, also when another process has a read
    /// transaction open (compaction is then simply skipped). A crash during it leaves a
    /// file redb repairs on the next open. Fails on a read-only index.
    pub fn compact_file(&mut self) -> Result<bool> {
        let Db::Rw(db) = &mut self.db else {
            return Err(Error::Unsupported("index is read-only".into()));
        };
        // The cached snapshot is a read transaction: it would block the compaction.
        *self.snapshot.get_mut() = None;
        match db.compact() {
            Ok(done) => Ok(done),
            Err(redb::CompactionError::TransactionInProgress) => Ok(false),
            Err(e) => Err(Error::Index(format!("compacting the index: {e}"))),
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::tests::open_file;
    use super::*;
    use crate::io::OpenMode;

    #[test]
    fn a_mostly_free_index_file_is_compacted_and_keeps_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let open = |mode| open_file(&path, mode);
        let key = |i: u32| key_of(&HashAlg::Blake3.hash(&i.to_le_bytes()));
        let loc = |i: u32| Location {
            segment: SegmentId(1),
            offset: u64::from(i) * 100,
            stored_len: 10,
            raw_len: 20,
            flags: 0,
            generation: 0,
        };
        let mut idx = open(OpenMode::CreateNew);
        let n = 40_000;
        for part in 0..4 {
            let new_blocks = (part * n / 4..(part + 1) * n / 4)
                .map(|i| (key(i), loc(i)))
                .collect();
            let batch = Batch {
                new_blocks,
                ..Batch::default()
            };
            idx.commit(batch, true).unwrap();
        }
        // Dropping every entry leaves the file as large as before, and all of it free.
        let cleared = Batch {
            clear_blocks: true,
            ..Batch::default()
        };
        idx.commit(cleared, true).unwrap();
        let len = || std::fs::metadata(&path).unwrap().len();
        let before = len();
        assert!(before >= COMPACT_MIN_BYTES, "{before}");
        assert!(idx.compact_if_sparse(before).unwrap());
        assert!(len() * 2 < before, "{} -> {}", before, len());
        // Compacting again finds nothing to do; every table still works.
        assert!(!idx.compact_if_sparse(len()).unwrap());
        let batch = Batch {
            new_blocks: vec![(key(7), loc(7))],
            ..Batch::default()
        };
        idx.commit(batch, true).unwrap();
        drop(idx);
        let idx = open(OpenMode::Write);
        assert_eq!(idx.get(&key(7)).unwrap().map(|l| l.offset), Some(700));
        assert_eq!(idx.get(&key(8)).unwrap(), None);
        assert_eq!(idx.counters().unwrap().blocks, 1);
    }
}
