//! DataDir: a persistent store of append-only segment files plus a redb index.
//!
//! ```text
//! <store>/lock          writer lock (OS file lock; holds "pid=N host=H")
//! <store>/index.redb    the index (see crate::index)
//! <store>/data/*.vtd    segments (see crate::segment)
//! ```
//!
//! Transactions: adds append records to the active segment and collect their locations in
//! memory (`pending`, visible to this process at once). [`DataDir::commit`] fsyncs the
//! segments (and the data directory when a segment was created), then commits the index
//! durably, so the index never references bytes that could be lost. [`DataDir::abort`]
//! truncates the segments back and forgets the pending entries.
//!
//! Processes: one writer (the lock file); any number of read-only handles in other
//! processes, which open the index with redb's `SingleWriter` concurrency mode and follow
//! the writer's commits. A store with no index (a cs.vt DataDir) opened read-only is indexed
//! in memory by scanning its segments; nothing under the store directory is written.

use crate::error::{Error, IoContext, Result};
use crate::hash::{HashAlg, HashCode};
use crate::index::{
    hash_of_key, key_of, Batch, Index, IndexKey, Location, NegativeFilter, SegmentId, SegmentInfo,
    FLAG_INDIRECT_COMPLETE, FLAG_LEGACY, INDEX_VERSION, INDEX_VERSIONS_READ, META_HASH_ALG,
    META_VERSION,
};
use crate::io::{lock_holder, FileIo, Fs, OpenMode, OsFs, WriterLock};
use crate::segment::{
    self, check_header, encode_record_parts, segment_header, DecodedGroup, HeaderCheck, RecordKind,
    ScanEnd, ScannedRecord, SegmentFormat, SEGMENT_HEADER_LEN,
};
use crate::store::datadir_group::{GroupCache, OpenGroup};
use crate::store::Store;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the index file inside a store directory.
pub const INDEX_FILE: &str = "index.redb";
/// Name of the writer lock file inside a store directory.
pub const LOCK_FILE: &str = "lock";
/// Name of the segment directory inside a store directory.
pub const DATA_DIR: &str = "data";
/// File-name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".vtd";
/// Default size at which the writer starts a new segment.
pub const DEFAULT_SEGMENT_SIZE: u64 = 1 << 30;
/// Default of [`DataDirOptions::group_max_block`]: the default chunker's smallest chunk,
/// so the chunks of big files (but their last) keep records of their own (a read of one
/// of them never decodes a group) while small files and directory blocks are grouped.
pub const DEFAULT_GROUP_MAX_BLOCK: usize = 16 << 10;
/// Default of [`DataDirOptions::group_bytes`].
pub const DEFAULT_GROUP_BYTES: usize = 128 << 10;
/// Largest accepted [`DataDirOptions::group_bytes`] and
/// [`DataDirOptions::group_max_block`] (readers accept up to `segment::MAX_GROUP_LEN`).
pub const MAX_GROUP_OPTION: usize = 4 << 20;
/// Appended bytes after which the active segment's writeback is started early, so the
/// commit's fsync overlaps ingest instead of following it.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// How to open or create a [`DataDir`].
#[derive(Debug, Clone)]
pub struct DataDirOptions {
    /// Hash algorithm of a new store (an existing store keeps its own).
    pub hash_alg: HashAlg,
    /// A new segment is started when a record would take the active one past this size.
    pub segment_size: u64,
    /// Open without the writer lock; adds fail with [`Error::Unsupported`].
    pub read_only: bool,
    /// zstd level for new records (1–3 recommended; 0 disables compression).
    pub compression_level: i32,
    /// redb page cache size.
    pub index_cache_bytes: usize,
    /// Blocks shorter than this are collected into group records, compressed together
    /// (see `datadir_group`); 0 writes every block as its own record.
    pub group_max_block: usize,
    /// A group record is written once its blocks total this many bytes (0 disables groups).
    pub group_bytes: usize,
    /// The file system (the OS, or a simulated one in crash tests).
    pub fs: Arc<dyn Fs>,
}

impl Default for DataDirOptions {
    fn default() -> Self {
        DataDirOptions {
            hash_alg: HashAlg::DEFAULT,
            segment_size: DEFAULT_SEGMENT_SIZE,
            read_only: false,
            compression_level: 3,
            index_cache_bytes: 512 << 20,
            group_max_block: DEFAULT_GROUP_MAX_BLOCK,
            group_bytes: DEFAULT_GROUP_BYTES,
            fs: Arc::new(OsFs),
        }
    }
}

/// Sizes reported by [`DataDir::info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDirInfo {
    /// Distinct blocks (committed and pending).
    pub blocks: u64,
    /// Payload bytes on disk of committed blocks.
    pub stored_bytes: u64,
    /// Total length of committed blocks.
    pub logical_bytes: u64,
    /// Number of segment files.
    pub segments: u64,
    /// Total size of the segment files.
    pub segment_bytes: u64,
    /// Size of the index file (0 when the index is in memory).
    pub index_bytes: u64,
}

/// A record that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    /// Segment file name.
    pub segment: String,
    /// Offset of the record in the segment.
    pub offset: u64,
    /// The block the index expects there, when known.
    pub hash: Option<HashCode>,
    /// What is wrong.
    pub what: String,
}

/// The result of [`DataDir::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read and re-hashed.
    pub blocks_checked: u64,
    /// Block bytes re-hashed.
    pub bytes_checked: u64,
    /// Every record that failed.
    pub corrupt: Vec<CorruptRecord>,
}

impl VerifyReport {
    /// True when nothing failed.
    pub fn is_ok(&self) -> bool {
        self.corrupt.is_empty()
    }
}

/// The result of [`DataDir::reindex`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReindexReport {
    /// Distinct blocks indexed.
    pub blocks: u64,
    /// Records that could not be indexed (and were skipped).
    pub skipped: Vec<CorruptRecord>,
}

#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    pub(crate) name: String,
    pub(crate) format: SegmentFormat,
    pub(crate) file: Arc<dyn FileIo>,
}

/// What a scan of one segment found.
#[derive(Debug)]
struct SegmentScan {
    /// Records to index.
    blocks: Vec<(IndexKey, Location)>,
    /// Where the valid records end.
    end: u64,
    /// Bad records skipped.
    skipped: Vec<CorruptRecord>,
}

#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) blocks: BTreeMap<IndexKey, Location>,
    pub(crate) complete: BTreeSet<IndexKey>,
    /// Small blocks not yet written (see `datadir_group`).
    pub(crate) group: OpenGroup,
}

/// Writer-side state; the mutex around it serializes appends and commits.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// The segment being appended to.
    pub(crate) active: Option<SegmentId>,
    /// Current end of every segment written since open.
    pub(crate) ends: HashMap<SegmentId, u64>,
    /// Segment ends as of the last commit (abort truncates back to them).
    committed_ends: HashMap<SegmentId, u64>,
    pub(crate) committed_active: Option<SegmentId>,
    /// Segments appended to since the last commit.
    pub(crate) dirty: BTreeSet<SegmentId>,
    /// Segments created since the last commit.
    created: BTreeSet<SegmentId>,
    pub(crate) next_id: u32,
    /// Bytes appended to the active segment since its writeback was last started.
    unflushed: u64,
    /// Set when a commit failed: an fsync error may have dropped written pages, so a retry
    /// could "succeed" over lost bytes. Only reopening the store (recovery) clears it.
    failed_commit: Option<String>,
}

impl Writer {
    pub(crate) fn check(&self) -> Result<()> {
        match &self.failed_commit {
            Some(why) => Err(Error::Unsupported(format!(
                "an earlier commit failed ({why}); abort the transaction or reopen the store"
            ))),
            None => Ok(()),
        }
    }
}

/// A persistent, deduplicating block store: segment files plus a redb index.
pub struct DataDir {
    pub(crate) path: PathBuf,
    pub(crate) data_path: PathBuf,
    pub(crate) opts: DataDirOptions,
    hash_alg: HashAlg,
    /// Its negative filter (writer only) also covers the pending adds.
    pub(crate) index: Index,
    pub(crate) pending: RwLock<Pending>,
    /// Recently decoded group records.
    pub(crate) groups: GroupCache,
    pub(crate) files: RwLock<HashMap<SegmentId, SegmentFile>>,
    pub(crate) writer: Option<Mutex<Writer>>,
    _lock: Option<WriterLock>,
    /// Garbage-collection bookkeeping (see `datadir_gc`).
    pub(crate) gc: super::datadir_gc::GcState,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field("path", &self.path)
            .field("hash_alg", &self.hash_alg)
            .field("writable", &self.writer.is_some())
            .finish()
    }
}

pub(crate) fn segment_name(id: SegmentId) -> String {
    format!("{:08x}{SEGMENT_SUFFIX}", id.0)
}

pub(crate) fn parse_segment_name(name: &str) -> Option<SegmentId> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    (stem.len() == 8).then(|| u32::from_str_radix(stem, 16).ok().map(SegmentId))?
}

fn check_group_options(opts: &DataDirOptions) -> Result<()> {
    if opts.group_bytes > MAX_GROUP_OPTION || opts.group_max_block > MAX_GROUP_OPTION {
        return Err(Error::bad(format!(
            "group sizes above {MAX_GROUP_OPTION} bytes are not supported"
        )));
    }
    Ok(())
}

fn corrupt_record(seg: &str, offset: u64, hash: Option<HashCode>, what: String) -> CorruptRecord {
    CorruptRecord {
        segment: seg.to_string(),
        offset,
        hash,
        what,
    }
}

impl DataDir {
    /// Creates a new store at `path` (the directory may exist but must not hold a store).
    /// Fails when a store is already there, on I/O errors, or when `opts.read_only`.
    pub fn create(path: impl AsRef<Path>, opts: DataDirOptions) -> Result<Self> {
        let path = path.as_ref();
        if opts.read_only {
            return Err(Error::bad("cannot create a store read-only"));
        }
        check_group_options(&opts)?;
        let fs = opts.fs.clone();
        if fs.exists(&path.join(INDEX_FILE)) || fs.exists(&path.join(DATA_DIR)) {
            return Err(Error::bad(format!(
                "{} already holds a store",
                path.display()
            )));
        }
        let data = path.join(DATA_DIR);
        fs.create_dir_all(&data)
            .ctx(|| format!("creating {}", data.display()))?;
        let store = Self::open_writer(path, opts, true)?;
        let parent = match path.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => Path::new("/"),
        };
        for dir in [path, parent] {
            store
                .opts
                .fs
                .sync_dir(dir)
                .ctx(|| format!("syncing {}", dir.display()))?;
        }
        Ok(store)
    }

    /// Opens an existing store. Read-only handles take no lock and can run beside a writer
    /// in another process. Fails when `path` holds no store, when another process holds the
    /// writer lock ([`Error::Locked`]), or on I/O and index errors.
    pub fn open(path: impl AsRef<Path>, opts: DataDirOptions) -> Result<Self> {
        let path = path.as_ref();
        let fs = &opts.fs;
        if !fs.exists(&path.join(INDEX_FILE)) && !fs.exists(&path.join(DATA_DIR)) {
            return Err(Error::bad(format!("{} is not a store", path.display())));
        }
        check_group_options(&opts)?;
        if opts.read_only {
            Self::open_reader(path, opts)
        } else {
            Self::open_writer(path, opts, false)
        }
    }

    /// Opens the store at `path`, creating it if there is none.
    pub fn open_or_create(path: impl AsRef<Path>, opts: DataDirOptions) -> Result<Self> {
        let path = path.as_ref();
        let fs = &opts.fs;
        if fs.exists(&path.join(INDEX_FILE)) || fs.exists(&path.join(DATA_DIR)) {
            Self::open(path, opts)
        } else {
            Self::create(path, opts)
        }
    }

    fn open_writer(path: &Path, opts: DataDirOptions, creating: bool) -> Result<Self> {
        let fs = opts.fs.clone();
        let lock_path = path.join(LOCK_FILE);
        let lock = match fs
            .lock_writer(&lock_path, &lock_holder())
            .ctx(|| format!("locking {}", lock_path.display()))?
        {
            Ok(l) => l,
            Err(holder) => {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                    holder,
                })
            }
        };
        let (backend, mode) = fs
            .index_backend(&path.join(INDEX_FILE), OpenMode::Write)
            .ctx(|| format!("opening {}", path.join(INDEX_FILE).display()))?;
        let index = Index::open_writable(backend, mode, opts.index_cache_bytes)?;
        let hash_alg = Self::init_meta(&index, path, &opts, creating)?;
        let mut store = Self::assemble(path, opts, hash_alg, index);
        store._lock = Some(lock);
        store.writer = Some(Mutex::new(Writer::default()));
        store.gc_cleanup_leftovers()?;
        store.recover()?;
        Ok(store)
    }

    fn open_reader(path: &Path, opts: DataDirOptions) -> Result<Self> {
        let fs = opts.fs.clone();
        let index_path = path.join(INDEX_FILE);
        let followed = fs.exists(&index_path).then(|| {
            let (backend, mode) = fs.index_backend(&index_path, OpenMode::Read).ok()?;
            Index::open_read_only(backend, mode).ok()
        });
        let (index, scan) = match followed.flatten() {
            Some(ix) => (ix, false),
            // No usable index (a cs.vt store, or one needing repair): index in memory.
            None => (Index::in_memory()?, true),
        };
        let hash_alg = match index.meta(META_HASH_ALG)? {
            Some(name) => HashAlg::from_name(&String::from_utf8_lossy(&name))?,
            None => legacy_hash_alg(&*fs, path).unwrap_or(opts.hash_alg),
        };
        let store = Self::assemble(path, opts, hash_alg, index);
        if scan {
            store.scan_into_memory()?;
        }
        Ok(store)
    }

    fn assemble(path: &Path, opts: DataDirOptions, hash_alg: HashAlg, index: Index) -> Self {
        DataDir {
            path: path.to_path_buf(),
            data_path: path.join(DATA_DIR),
            opts,
            hash_alg,
            index,
            pending: RwLock::new(Pending::default()),
            groups: GroupCache::default(),
            files: RwLock::new(HashMap::new()),
            writer: None,
            _lock: None,
            gc: Default::default(),
        }
    }

    /// Checks or records the index version and hash algorithm; returns the store's algorithm.
    fn init_meta(
        index: &Index,
        path: &Path,
        opts: &DataDirOptions,
        creating: bool,
    ) -> Result<HashAlg> {
        if let Some(v) = index.meta(META_VERSION)? {
            let v = u64::from_le_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| Error::Index("bad index version".into()))?,
            );
            if !INDEX_VERSIONS_READ.contains(&v) {
                return Err(Error::Unsupported(format!("index version {v}")));
            }
            if v != INDEX_VERSION && index.is_writable() {
                let meta = vec![(META_VERSION, INDEX_VERSION.to_le_bytes().to_vec())];
                let batch = Batch {
                    meta,
                    ..Batch::default()
                };
                index.commit(batch, true)?;
            }
            let name = index.meta(META_HASH_ALG)?.unwrap_or_default();
            return HashAlg::from_name(&String::from_utf8_lossy(&name));
        }
        let alg = if creating {
            opts.hash_alg
        } else {
            legacy_hash_alg(&*opts.fs, path).unwrap_or(opts.hash_alg)
        };
        let batch = Batch {
            meta: vec![
                (META_VERSION, INDEX_VERSION.to_le_bytes().to_vec()),
                (META_HASH_ALG, alg.name().as_bytes().to_vec()),
            ],
            ..Batch::default()
        };
        index.commit(batch, true)?;
        Ok(alg)
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when this handle can add blocks.
    pub fn is_writable(&self) -> bool {
        self.writer.is_some()
    }

    pub(crate) fn writer(&self) -> Result<&Mutex<Writer>> {
        self.writer.as_ref().ok_or_else(|| {
            Error::Unsupported(format!("store {} is open read-only", self.path.display()))
        })
    }

    // ---- segments -------------------------------------------------------

    pub(crate) fn segment_file(&self, id: SegmentId) -> Result<SegmentFile> {
        if let Some(f) = self.files.read().get(&id) {
            return Ok(f.clone());
        }
        // A segment another process created after we opened: look it up in the index.
        let info = self
            .index
            .segments()?
            .into_iter()
            .find(|(i, _)| *i == id)
            .map(|(_, info)| info)
            .ok_or_else(|| Error::Index(format!("index references unknown segment {}", id.0)))?;
        let file = self.open_segment(&info.name, OpenMode::Read)?;
        let sf = SegmentFile {
            name: info.name,
            format: info.format,
            file,
        };
        self.files.write().insert(id, sf.clone());
        Ok(sf)
    }

    pub(crate) fn open_segment(&self, name: &str, mode: OpenMode) -> Result<Arc<dyn FileIo>> {
        let p = self.data_path.join(name);
        self.opts
            .fs
            .open(&p, mode)
            .ctx(|| format!("opening segment {}", p.display()))
    }

    pub(crate) fn read_block(&self, hash: &HashCode, loc: &Location) -> Result<Vec<u8>> {
        if loc.group_member().is_some() {
            return self.with_member(hash, loc, true, <[u8]>::to_vec);
        }
        let seg = self.segment_file(loc.segment)?;
        let codec = loc.codec()?;
        let data = if loc.flags & FLAG_LEGACY != 0 {
            segment::read_legacy(
                &*seg.file,
                &seg.name,
                loc.offset,
                hash,
                codec,
                loc.stored_len,
                loc.raw_len,
            )?
        } else {
            segment::read_record(&*seg.file, &seg.name, loc.offset, hash, loc.stored_len)?
        };
        if data.len() != loc.raw_len as usize {
            return Err(Error::corrupt(
                &seg.name,
                loc.offset,
                format!("block is {} bytes, index says {}", data.len(), loc.raw_len),
            ));
        }
        Ok(data)
    }

    /// Where `key`'s record is, pending or indexed; for keys expected to be present
    /// (see [`Index::lookup`]): callers asking about likely-absent keys check the
    /// negative filter first, as [`present`](Self::present) does.
    pub(crate) fn lookup(&self, key: &IndexKey) -> Result<Option<Location>> {
        if let Some(loc) = self.pending.read().blocks.get(key) {
            return Ok(Some(*loc));
        }
        self.index.lookup(key)
    }

    /// [`lookup`](Self::lookup) of many keys, in one index snapshot.
    pub(crate) fn lookup_many(&self, keys: &[IndexKey]) -> Result<Vec<Option<Location>>> {
        let p = self.pending.read();
        if p.blocks.is_empty() {
            drop(p);
            return self.index.get_many(keys);
        }
        keys.iter()
            .map(|k| match p.blocks.get(k) {
                Some(loc) => Ok(Some(*loc)),
                None => self.index.lookup(k),
            })
            .collect()
    }

    pub(crate) fn present(&self, key: &IndexKey) -> Result<bool> {
        if !self.index.may_contain(key) {
            return Ok(false);
        }
        if self.pending.read().group.contains(key) {
            return Ok(true);
        }
        Ok(self.lookup(key)?.is_some())
    }

    /// Starts a new segment file and makes it the active one.
    fn start_segment(&self, w: &mut Writer) -> Result<SegmentId> {
        let id = SegmentId(w.next_id);
        w.next_id += 1;
        let name = segment_name(id);
        let file = self
            .opts
            .fs
            .open(&self.data_path.join(&name), OpenMode::CreateNew)
            .ctx(|| format!("creating segment {name}"))?;
        file.write_at(&segment_header(), 0)
            .ctx(|| format!("writing segment {name}"))?;
        self.files.write().insert(
            id,
            SegmentFile {
                name,
                format: SegmentFormat::V1,
                file,
            },
        );
        w.ends.insert(id, SEGMENT_HEADER_LEN);
        w.created.insert(id);
        w.dirty.insert(id);
        w.active = Some(id);
        Ok(id)
    }

    /// Appends an encoded record, rolling over to a new segment when the active one is full.
    pub(crate) fn append(&self, w: &mut Writer, parts: &[&[u8]]) -> Result<(SegmentId, u64)> {
        let len = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let id = match w.active {
            Some(id)
                if w.ends.get(&id).is_some_and(|&e| {
                    e == SEGMENT_HEADER_LEN || e + len <= self.opts.segment_size
                }) =>
            {
                id
            }
            full => {
                if let Some(old) = full {
                    self.segment_file(old)?.file.start_writeback();
                }
                w.unflushed = 0;
                self.start_segment(w)?
            }
        };
        let seg = self.segment_file(id)?;
        let end = w.ends.get(&id).copied().unwrap_or(SEGMENT_HEADER_LEN);
        seg.file
            .write_parts_at(parts, end)
            .ctx(|| format!("appending to segment {}", seg.name))?;
        w.ends.insert(id, end + len);
        w.dirty.insert(id);
        w.unflushed += len;
        if w.unflushed >= WRITEBACK_EVERY {
            seg.file.start_writeback();
            w.unflushed = 0;
        }
        Ok((id, end))
    }

    // ---- transactions ---------------------------------------------------

    /// Makes every add so far durable and visible to other processes: fsyncs the segments
    /// written (and the data directory if a segment was created), then commits the index
    /// durably. A barrier: when it returns, the adds survive a crash. Fails on I/O errors;
    /// every later add, commit and abort of this handle then fails: reopen the store, whose
    /// recovery keeps exactly what reached the disk consistent.
    pub fn commit(&self) -> Result<()> {
        let mut w = self.writer()?.lock();
        w.check()?;
        // A partial group becomes a record first, so the commit covers it.
        self.seal_group(&mut w)?;
        let (blocks, complete) = {
            let p = self.pending.read();
            (
                p.blocks.iter().map(|(k, l)| (*k, *l)).collect::<Vec<_>>(),
                p.complete.iter().copied().collect::<Vec<_>>(),
            )
        };
        if blocks.is_empty() && complete.is_empty() && w.dirty.is_empty() {
            return Ok(());
        }
        let segments = self.segment_rows(&w, w.dirty.iter().copied())?;
        // `add_hashed` only adds keys that are neither pending nor indexed.
        let batch = Batch {
            new_blocks: blocks,
            set_complete: complete,
            segments,
            ..Batch::default()
        };
        let done = self
            .sync_segments(&w)
            .and_then(|()| self.index.commit(batch, true));
        if let Err(e) = done {
            w.failed_commit = Some(e.to_string());
            return Err(e);
        }
        let mut p = self.pending.write();
        *p = Pending::default();
        w.committed_ends = w.ends.clone();
        w.committed_active = w.active;
        w.dirty.clear();
        w.created.clear();
        Ok(())
    }

    fn sync_segments(&self, w: &Writer) -> Result<()> {
        for id in &w.dirty {
            let seg = self.segment_file(*id)?;
            seg.file
                .sync()
                .ctx(|| format!("syncing segment {}", seg.name))?;
        }
        if !w.created.is_empty() {
            self.opts
                .fs
                .sync_dir(&self.data_path)
                .ctx(|| format!("syncing {}", self.data_path.display()))?;
        }
        Ok(())
    }

    fn segment_rows(
        &self,
        w: &Writer,
        ids: impl Iterator<Item = SegmentId>,
    ) -> Result<Vec<(SegmentId, SegmentInfo)>> {
        ids.map(|id| {
            let seg = self.segment_file(id)?;
            let indexed_end = w.ends.get(&id).copied().unwrap_or(SEGMENT_HEADER_LEN);
            Ok((
                id,
                SegmentInfo {
                    name: seg.name,
                    format: seg.format,
                    indexed_end,
                },
            ))
        })
        .collect()
    }

    /// Forgets every add since the last commit and truncates the segments back.
    /// Fails on I/O errors (the discarded records are then unindexed garbage that
    /// the next open truncates or re-indexes).
    pub fn abort(&self) -> Result<()> {
        let mut w = self.writer()?.lock();
        *self.pending.write() = Pending::default();
        self.groups.invalidate();
        // After a failed commit the index may or may not have recorded the transaction:
        // truncating could remove bytes it references. Leave them to the next open's recovery.
        w.check()?;
        let created = std::mem::take(&mut w.created);
        for id in &created {
            if let Some(seg) = self.files.write().remove(id) {
                self.opts
                    .fs
                    .remove(&self.data_path.join(&seg.name))
                    .ctx(|| format!("removing {}", seg.name))?;
            }
            w.ends.remove(id);
        }
        for id in std::mem::take(&mut w.dirty) {
            if created.contains(&id) {
                continue;
            }
            let end = w
                .committed_ends
                .get(&id)
                .copied()
                .unwrap_or(SEGMENT_HEADER_LEN);
            let seg = self.segment_file(id)?;
            seg.file
                .set_len(end)
                .ctx(|| format!("truncating {}", seg.name))?;
            w.ends.insert(id, end);
        }
        w.active = w.committed_active;
        Ok(())
    }

    // ---- recovery and indexing -----------------------------------------

    /// Brings the index up to date with the segments: indexes valid records past each
    /// segment's indexed end, truncates torn tails, and registers unknown segment files.
    fn recover(&self) -> Result<()> {
        let mut known: BTreeMap<SegmentId, SegmentInfo> =
            self.index.segments()?.into_iter().collect();
        let names: BTreeSet<String> = known.values().map(|i| i.name.clone()).collect();
        let on_disk = self
            .opts
            .fs
            .list(&self.data_path)
            .ctx(|| format!("listing {}", self.data_path.display()))?;
        let on_disk_ids = on_disk.iter().filter_map(|n| parse_segment_name(n));
        let mut next_id = known
            .keys()
            .copied()
            .chain(on_disk_ids)
            .map(|i| i.0 + 1)
            .max()
            .unwrap_or(1);
        let mut removed = false;
        for name in on_disk
            .iter()
            .filter(|n| n.ends_with(SEGMENT_SUFFIX) && !names.contains(*n))
        {
            let Some(format) = self.probe_new_segment(name)? else {
                removed = true;
                continue;
            };
            let id = match parse_segment_name(name) {
                Some(id) if format == SegmentFormat::V1 && !known.contains_key(&id) => id,
                _ => {
                    next_id += 1;
                    SegmentId(next_id - 1)
                }
            };
            let start = if format == SegmentFormat::V1 {
                SEGMENT_HEADER_LEN
            } else {
                0
            };
            known.insert(
                id,
                SegmentInfo {
                    name: name.clone(),
                    format,
                    indexed_end: start,
                },
            );
        }
        if removed {
            self.opts
                .fs
                .sync_dir(&self.data_path)
                .ctx(|| "syncing data directory".to_string())?;
        }
        let mut w = self.writer()?.lock();
        w.next_id = next_id;
        for (id, info) in known {
            // Everything before the indexed end is committed; anything bad after it is a torn tail.
            let committed = info.indexed_end;
            self.catch_up_segment(&mut w, id, info, committed)?;
        }
        w.committed_ends = w.ends.clone();
        w.committed_active = w.active;
        Ok(())
    }

    /// Checks the header of a segment file the index does not know. Removes a torn
    /// (partially created) one and returns `None`.
    fn probe_new_segment(&self, name: &str) -> Result<Option<SegmentFormat>> {
        let file = self.open_segment(name, OpenMode::Read)?;
        let len = file.len().ctx(|| format!("reading {name}"))?;
        let mut head = vec![0u8; len.min(SEGMENT_HEADER_LEN) as usize];
        file.read_at(&mut head, 0)
            .ctx(|| format!("reading {name}"))?;
        match check_header(&head, name)? {
            HeaderCheck::Format(f) => Ok(Some(f)),
            HeaderCheck::Torn if parse_segment_name(name).is_none() => Ok(None),
            HeaderCheck::Torn => {
                // Ours, created after the last commit: it cannot hold committed records.
                self.opts
                    .fs
                    .remove(&self.data_path.join(name))
                    .ctx(|| format!("removing {name}"))?;
                Ok(None)
            }
        }
    }

    /// Indexes the records of one segment from its indexed end and commits. Bad records
    /// before `committed_end` are skipped (reported); a bad record at or after it ends the
    /// segment: our own segments are truncated there (a torn tail).
    fn catch_up_segment(
        &self,
        w: &mut Writer,
        id: SegmentId,
        info: SegmentInfo,
        committed_end: u64,
    ) -> Result<Vec<CorruptRecord>> {
        let mode = if info.format == SegmentFormat::V1 {
            OpenMode::Write
        } else {
            OpenMode::Read
        };
        let file = self.open_segment(&info.name, mode)?;
        self.files.write().insert(
            id,
            SegmentFile {
                name: info.name.clone(),
                format: info.format,
                file: file.clone(),
            },
        );
        let SegmentScan {
            blocks: batch,
            end,
            skipped,
        } = self.scan_segment(id, &info, &*file, committed_end)?;
        let len = file.len().ctx(|| format!("reading {}", info.name))?;
        if end < len && info.format == SegmentFormat::V1 {
            file.set_len(end)
                .ctx(|| format!("truncating torn tail of {}", info.name))?;
            file.sync().ctx(|| format!("syncing {}", info.name))?;
        } else if info.format == SegmentFormat::V1 && len > info.indexed_end {
            // Records past the indexed end may never have been synced.
            file.sync().ctx(|| format!("syncing {}", info.name))?;
        }
        let row = SegmentInfo {
            indexed_end: end,
            ..info.clone()
        };
        if row != info || !batch.is_empty() {
            self.index.commit(
                Batch {
                    new_blocks: batch,
                    segments: vec![(id, row)],
                    ..Batch::default()
                },
                true,
            )?;
        }
        if info.format == SegmentFormat::V1 {
            w.ends.insert(id, end);
            // Only a segment of the current format takes appends: group records must not
            // land in a segment whose header says version 1.
            let current = segment::header_version(&*file) == Some(segment::SEGMENT_VERSION);
            if current && end < self.opts.segment_size && w.active.is_none_or(|a| a < id) {
                w.active = Some(id);
            }
        }
        Ok(skipped)
    }

    /// Scans a segment from its indexed end; returns entries to index, the valid end, and skipped records.
    fn scan_segment(
        &self,
        id: SegmentId,
        info: &SegmentInfo,
        file: &dyn FileIo,
        committed_end: u64,
    ) -> Result<SegmentScan> {
        let mut found: BTreeMap<IndexKey, Location> = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut from = info.indexed_end;
        let legacy = if info.format == SegmentFormat::Legacy {
            FLAG_LEGACY
        } else {
            0
        };
        let mut visit = |r: ScannedRecord| -> Result<()> {
            let mut index = |hash: &HashCode, loc: Location| -> Result<()> {
                let key = key_of(hash);
                if !found.contains_key(&key) && self.index.get(&key)?.is_none() {
                    found.insert(key, loc);
                }
                Ok(())
            };
            let at = |stored_len, raw_len, flags| Location {
                segment: id,
                offset: r.offset,
                stored_len,
                raw_len,
                flags,
                generation: 0,
            };
            if r.kind == RecordKind::Group {
                for (i, m) in r.members.iter().enumerate() {
                    index(
                        &m.hash,
                        at(m.share, m.len, Location::member_flags(r.codec, i)),
                    )?;
                }
                return Ok(());
            }
            index(
                &r.hash,
                at(r.stored_len, r.raw_len, r.codec as u16 | legacy),
            )
        };
        let end = loop {
            let scanned = match info.format {
                SegmentFormat::V1 => segment::scan_v1(file, from, false, &mut visit)?,
                SegmentFormat::Legacy => {
                    segment::scan_legacy(file, from, self.hash_alg, &mut visit)?
                }
            };
            match scanned {
                ScanEnd::Clean(end) => break end,
                ScanEnd::Bad { offset, what }
                    if offset < committed_end && info.format == SegmentFormat::V1 =>
                {
                    skipped.push(corrupt_record(&info.name, offset, None, what));
                    match segment::resync_v1(file, offset)? {
                        Some(next) if next < committed_end => from = next,
                        _ => {
                            break committed_end
                                .min(file.len().ctx(|| "segment length".to_string())?)
                        }
                    }
                }
                ScanEnd::Bad { offset, what } => {
                    if info.format == SegmentFormat::Legacy {
                        skipped.push(corrupt_record(&info.name, offset, None, what));
                    }
                    break offset;
                }
            }
        };
        Ok(SegmentScan {
            blocks: found.into_iter().collect(),
            end,
            skipped,
        })
    }

    /// Read-only open of a store without a usable index: scan every segment into the in-memory index.
    fn scan_into_memory(&self) -> Result<()> {
        let names = self
            .opts
            .fs
            .list(&self.data_path)
            .ctx(|| format!("listing {}", self.data_path.display()))?;
        for (i, name) in names
            .iter()
            .filter(|n| n.ends_with(SEGMENT_SUFFIX))
            .enumerate()
        {
            let file = self.open_segment(name, OpenMode::Read)?;
            let len = file.len().ctx(|| format!("reading {name}"))?;
            let mut head = vec![0u8; len.min(SEGMENT_HEADER_LEN) as usize];
            file.read_at(&mut head, 0)
                .ctx(|| format!("reading {name}"))?;
            let HeaderCheck::Format(format) = check_header(&head, name)? else {
                continue;
            };
            let id = SegmentId(i as u32 + 1);
            let start = if format == SegmentFormat::V1 {
                SEGMENT_HEADER_LEN
            } else {
                0
            };
            let info = SegmentInfo {
                name: name.clone(),
                format,
                indexed_end: start,
            };
            self.files.write().insert(
                id,
                SegmentFile {
                    name: name.clone(),
                    format,
                    file: file.clone(),
                },
            );
            let SegmentScan { blocks, end, .. } = self.scan_segment(id, &info, &*file, len)?;
            let row = SegmentInfo {
                indexed_end: end,
                ..info
            };
            self.index.commit(
                Batch {
                    new_blocks: blocks,
                    segments: vec![(id, row)],
                    ..Batch::default()
                },
                false,
            )?;
        }
        Ok(())
    }

    /// Rebuilds the whole index from the segments (completeness flags are dropped: they are
    /// not stored in segments). Commits pending adds first. Bad records in the middle of a
    /// segment are skipped and reported; a torn tail is truncated.
    pub fn reindex(&self) -> Result<ReindexReport> {
        self.commit()?;
        let mut w = self.writer()?.lock();
        let known = self.index.segments()?;
        let reset = known
            .iter()
            .map(|(id, i)| {
                let start = if i.format == SegmentFormat::V1 {
                    SEGMENT_HEADER_LEN
                } else {
                    0
                };
                (
                    *id,
                    SegmentInfo {
                        indexed_end: start,
                        ..i.clone()
                    },
                )
            })
            .collect();
        // One transaction empties the index and rewinds every segment, so a crash during the
        // rebuild leaves a state that the next open's recovery completes.
        self.index.commit(
            Batch {
                clear_blocks: true,
                segments: reset,
                ..Batch::default()
            },
            true,
        )?;
        let mut report = ReindexReport::default();
        for (id, info) in known {
            let committed = info.indexed_end;
            let start = if info.format == SegmentFormat::V1 {
                SEGMENT_HEADER_LEN
            } else {
                0
            };
            let info = SegmentInfo {
                indexed_end: start,
                ..info
            };
            report
                .skipped
                .extend(self.catch_up_segment(&mut w, id, info, committed)?);
        }
        w.committed_ends = w.ends.clone();
        report.blocks = self.index.counters()?.blocks;
        Ok(report)
    }

    /// Re-reads and re-hashes every indexed block (committed and pending), in segment order,
    /// and reports each record that fails by segment file name and offset.
    /// Fails only when the index itself cannot be read.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut all: Vec<(Location, IndexKey)> = Vec::new();
        self.index.for_each(|k, l| {
            all.push((l, k));
            Ok(())
        })?;
        all.extend(self.pending.read().blocks.iter().map(|(k, l)| (*l, *k)));
        all.sort_unstable_by_key(|(l, _)| (l.segment, l.offset, l.group_member()));
        let mut report = VerifyReport::default();
        // Members of one group are neighbours in this order: the group is read once.
        let mut group: Option<(Location, Result<Arc<DecodedGroup>>)> = None;
        for (loc, key) in all {
            let hash = hash_of_key(&key)?;
            report.blocks_checked += 1;
            let read = match loc.group_member() {
                None => self.read_block(&hash, &loc),
                Some(i) => {
                    let same = |g: &Location| (g.segment, g.offset) == (loc.segment, loc.offset);
                    if !group.as_ref().is_some_and(|(g, _)| same(g)) {
                        group = Some((loc, self.decoded_group(&loc, false)));
                    }
                    match group.as_ref().map(|(_, g)| g) {
                        Some(Ok(g)) => g
                            .checked_member(i, &hash, loc.raw_len, "", loc.offset)
                            .map(<[u8]>::to_vec),
                        Some(Err(e)) => Err(Error::corrupt(
                            "",
                            loc.offset,
                            format!("group member {i}: {}", failure_text(e)),
                        )),
                        None => Err(Error::Index("no group".into())),
                    }
                }
            };
            let failure = match read {
                Ok(data) if hash.matches(&data) => {
                    report.bytes_checked += data.len() as u64;
                    continue;
                }
                Ok(_) => format!("block does not hash to {hash}"),
                Err(Error::Corrupt { what, .. }) => what,
                Err(e) => e.to_string(),
            };
            let name = self
                .segment_file(loc.segment)
                .map_or_else(|_| format!("segment #{}", loc.segment.0), |s| s.name);
            report
                .corrupt
                .push(corrupt_record(&name, loc.offset, Some(hash), failure));
        }
        Ok(report)
    }

    /// Sizes of the store.
    pub fn info(&self) -> Result<DataDirInfo> {
        let c = self.index.counters()?;
        let pending = {
            let p = self.pending.read();
            (p.blocks.len() + p.group.len()) as u64
        };
        let mut segment_bytes = 0;
        let segments = self.index.segments()?;
        for (id, _) in &segments {
            if let Ok(seg) = self.segment_file(*id) {
                segment_bytes += seg.file.len().unwrap_or(0);
            }
        }
        let index_path = self.path.join(INDEX_FILE);
        let index_bytes = self
            .opts
            .fs
            .open(&index_path, OpenMode::Read)
            .and_then(|f| f.len())
            .unwrap_or(0);
        Ok(DataDirInfo {
            blocks: c.blocks + pending,
            stored_bytes: c.stored_bytes,
            logical_bytes: c.logical_bytes,
            segments: segments.len() as u64,
            segment_bytes,
            index_bytes,
        })
    }

    /// Where the record of `hash` lives: segment file name and record offset
    /// (for diagnostics such as `vt dump`). `None` when the block is absent.
    pub fn locate(&self, hash: &HashCode) -> Result<Option<(String, u64)>> {
        let Some(loc) = self.lookup(&key_of(hash))? else {
            return Ok(None);
        };
        Ok(Some((self.segment_file(loc.segment)?.name, loc.offset)))
    }

    /// Memory held by the negative filter (0 for read-only handles).
    pub fn filter_memory_bytes(&self) -> usize {
        self.index.filter().map_or(0, NegativeFilter::memory_bytes)
    }
}

/// What a read error says, without its location (verify reports that separately).
fn failure_text(e: &Error) -> String {
    match e {
        Error::Corrupt { what, .. } => what.clone(),
        e => e.to_string(),
    }
}

/// cs.vt names its index files `index-<hashname>...`; use that name when there is no index of ours.
fn legacy_hash_alg(fs: &dyn Fs, path: &Path) -> Option<HashAlg> {
    let names = fs.list(path).ok()?;
    names.iter().find_map(|n| {
        let rest = n.strip_prefix("index-")?;
        let alg = rest.split(['-', '.']).next()?;
        HashAlg::from_name(alg).ok()
    })
}

impl Drop for DataDir {
    /// A writer gives back the index file's free pages when they are most of it (see
    /// [`Index::compact_if_sparse`]); best effort: a failure leaves a valid, larger file.
    fn drop(&mut self) {
        if self.writer.is_none() {
            return;
        }
        let index_path = self.path.join(INDEX_FILE);
        let Ok(len) = self
            .opts
            .fs
            .open(&index_path, OpenMode::Read)
            .and_then(|f| f.len())
        else {
            return;
        };
        let _ = self.index.compact_if_sparse(len);
    }
}

impl Store for DataDir {
    fn hash_alg(&self) -> HashAlg {
        self.hash_alg
    }

    fn add_hashed(&self, hash: HashCode, data: &[u8]) -> Result<bool> {
        let writer = self.writer()?;
        let key = key_of(&hash);
        if self.gc_present(&key, false)? {
            return Ok(false);
        }
        if self.groupable(data.len()) {
            let mut w = writer.lock();
            w.check()?;
            if self.gc_present(&key, false)? {
                return Ok(false);
            }
            if let Some(f) = self.index.filter() {
                f.insert(&key);
            }
            self.add_to_group(&mut w, key, hash, data)?;
            return Ok(true);
        }
        // Compress before taking the lock, so concurrent adders compress in parallel.
        let rec = encode_record_parts(&hash, data, self.opts.compression_level)?;
        let mut w = writer.lock();
        w.check()?;
        // Another thread may have added it meanwhile (and a commit may have indexed it).
        if self.gc_present(&key, false)? {
            return Ok(false);
        }
        let (segment, offset) = self.append(&mut w, &[&rec.header, &rec.payload])?;
        let loc = Location {
            segment,
            offset,
            stored_len: rec.stored_len(),
            raw_len: rec.raw_len,
            flags: rec.codec as u16,
            generation: 0,
        };
        if let Some(f) = self.index.filter() {
            f.insert(&key);
        }
        self.pending.write().blocks.insert(key, loc);
        Ok(true)
    }

    fn get(&self, hash: &HashCode) -> Result<Option<Vec<u8>>> {
        let key = key_of(hash);
        if let Some(data) = self.open_member(&key) {
            return Ok(Some(data));
        }
        match self.lookup(&key)? {
            Some(loc) => self.read_block(hash, &loc).map(Some),
            None => Ok(None),
        }
    }

    fn get_into(&self, hash: &HashCode, buf: &mut Vec<u8>) -> Result<Option<usize>> {
        let key = key_of(hash);
        let Some(loc) = self.lookup(&key)? else {
            let Some(data) = self.open_member(&key) else {
                return Ok(None);
            };
            segment::grow(buf, data.len());
            buf[..data.len()].copy_from_slice(&data);
            return Ok(Some(data.len()));
        };
        if loc.group_member().is_some() {
            let n = self.with_member(hash, &loc, true, |data| {
                segment::grow(buf, data.len());
                buf[..data.len()].copy_from_slice(data);
                data.len()
            })?;
            return Ok(Some(n));
        }
        if loc.flags & FLAG_LEGACY != 0 {
            let data = self.read_block(hash, &loc)?;
            if buf.len() < data.len() {
                buf.resize(data.len(), 0);
            }
            buf[..data.len()].copy_from_slice(&data);
            return Ok(Some(data.len()));
        }
        let seg = self.segment_file(loc.segment)?;
        let n = segment::read_record_into(
            &*seg.file,
            &seg.name,
            loc.offset,
            hash,
            loc.stored_len,
            buf,
        )?;
        if n != loc.raw_len as usize {
            return Err(Error::corrupt(
                &seg.name,
                loc.offset,
                format!("block is {n} bytes, index says {}", loc.raw_len),
            ));
        }
        Ok(Some(n))
    }

    fn get_many_into(
        &self,
        hashes: &[HashCode],
        buf: &mut Vec<u8>,
        ranges: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<()> {
        self.read_many(hashes, buf, ranges)
    }

    fn contains(&self, hash: &HashCode) -> Result<bool> {
        self.gc_present(&key_of(hash), true)
    }

    fn flush(&self) -> Result<()> {
        if self.writer.is_some() {
            self.commit()
        } else {
            Ok(())
        }
    }

    fn hashcodes(
        &self,
        start: Option<&HashCode>,
        after: bool,
        limit: usize,
    ) -> Result<Vec<HashCode>> {
        let sk = start.map(key_of);
        let mut keys = self.index.keys_from(sk.as_ref(), after, limit)?;
        {
            let p = self.pending.read();
            let range = match &sk {
                Some(s) => p.blocks.range(*s..),
                None => p.blocks.range::<IndexKey, _>(..),
            };
            keys.extend(
                range
                    .map(|(k, _)| *k)
                    .filter(|k| !(after && Some(k) == sk.as_ref()))
                    .take(limit),
            );
            keys.extend(p.group.keys().iter().filter(|k| match &sk {
                Some(s) if after => *k > s,
                Some(s) => *k >= s,
                None => true,
            }));
        }
        keys.sort_unstable();
        keys.dedup();
        keys.truncate(limit);
        keys.iter().map(hash_of_key).collect()
    }

    fn len(&self) -> Result<u64> {
        let p = self.pending.read();
        Ok(self.index.counters()?.blocks + (p.blocks.len() + p.group.len()) as u64)
    }

    fn is_complete(&self, hash: &HashCode) -> Result<bool> {
        let key = key_of(hash);
        {
            let p = self.pending.read();
            if p.complete.contains(&key) || p.group.is_complete(&key) {
                return Ok(true);
            }
        }
        self.gc_complete(&key)
    }

    fn set_complete(&self, hash: &HashCode) -> Result<()> {
        let _w = self.writer()?.lock();
        let key = key_of(hash);
        let mut p = self.pending.write();
        if let Some(loc) = p.blocks.get_mut(&key) {
            loc.flags |= FLAG_INDIRECT_COMPLETE;
            return Ok(());
        }
        if p.group.set_complete(&key) {
            return Ok(());
        }
        drop(p);
        match self.index.lookup(&key)? {
            Some(l) if l.flags & FLAG_INDIRECT_COMPLETE != 0 => Ok(()),
            Some(_) => {
                self.pending.write().complete.insert(key);
                Ok(())
            }
            None => Err(Error::NotFound(*hash)),
        }
    }
}

/// Copies every block of the store at `src` (a cs.vt DataDir or one of ours, opened
/// read-only and never modified) into `dest`, committing as it goes. Returns the number
/// of blocks that were new to `dest`. Fails on the first unreadable block.
pub fn import_legacy(src: &Path, dest: &DataDir) -> Result<u64> {
    let opts = DataDirOptions {
        read_only: true,
        ..DataDirOptions::default()
    };
    let source = DataDir::open(src, opts)?;
    let mut added = 0;
    let mut start: Option<HashCode> = None;
    loop {
        let page = source.hashcodes(start.as_ref(), true, 4096)?;
        let Some(last) = page.last().copied() else {
            break;
        };
        for h in &page {
            let data = source.get_required(h)?;
            if dest.add_hashed(*h, &data)? {
                added += 1;
            }
        }
        dest.commit()?;
        start = Some(last);
    }
    Ok(added)
}
