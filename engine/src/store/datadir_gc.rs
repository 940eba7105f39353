//! The [`DataDir`] methods garbage collection needs: the roots registry, clock checkpoints
//! for the grace period, touch tracking while a GC runs, and the crash-safe primitives the
//! executor in [`crate::gc`] is built from (segment creation under an intent record, index
//! switches, leftover cleanup on open).
//!
//! Everything GC persists lives in the index's `meta` table (see `docs/gc.md`):
//! - `gc_roots`: registered archives and pins, one `archive <path>` / `pin <ref>` per line;
//! - `gc_clock`: checkpoints (unix seconds, index generation), 16 bytes each;
//! - `gc_new`: names of segments GC is writing that the index does not list yet;
//! - `gc_retired`: names of segments the index dropped whose files may still exist;
//! - `gc_last`: a summary of the last completed GC (`key=value` lines).

use super::datadir::{
    parse_segment_name, segment_name, DataDir, SegmentFile, Writer, DATA_DIR, INDEX_FILE,
};
use crate::error::{Error, IoContext, Result};
use crate::gc::roots::Root;
use crate::index::{GcSwitch, IndexKey, Location, SegmentId, SegmentInfo, FLAG_INDIRECT_COMPLETE};
use crate::io::OpenMode;
use crate::segment::{segment_header, SegmentFormat};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// `meta` key: the roots registry.
pub const META_GC_ROOTS: &str = "gc_roots";
/// `meta` key: clock checkpoints.
pub const META_GC_CLOCK: &str = "gc_clock";
/// `meta` key: segments being written by GC, not yet in the index.
pub const META_GC_NEW: &str = "gc_new";
/// `meta` key: segments dropped from the index whose files may remain.
pub const META_GC_RETIRED: &str = "gc_retired";
/// `meta` key: summary of the last GC.
pub const META_GC_LAST: &str = "gc_last";
/// Clock checkpoints kept (oldest dropped first).
pub const CLOCK_CHECKPOINTS: usize = 256;

/// Keys re-referenced while a GC runs.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// Dedup hits of `add`: the block itself is referenced, and whatever the caller
    /// references below it was added (or touched) too.
    pub(crate) leaf: HashSet<IndexKey>,
    /// `contains` and `is_complete` answers: the caller may reference the whole tree
    /// below the block without adding it, so GC must keep that tree.
    pub(crate) tree: HashSet<IndexKey>,
}

/// GC bookkeeping inside a [`DataDir`]. Plain locks only:
/// - `holds`: shared by [`WriteHold`]s, exclusive while a GC starts, so a GC never starts
///   in the middle of a writer's add-then-register sequence;
/// - `switch`: shared around every "is it present? then remember it" step of readers
///   that may reference the block, exclusive during GC's final index switch, so a block
///   is never reported present and then removed without GC seeing the touch.
#[derive(Debug, Default)]
pub(crate) struct GcState {
    holds: RwLock<()>,
    pub(crate) switch: RwLock<()>,
    active: AtomicBool,
    pub(crate) touched: Mutex<Touched>,
    running: Mutex<()>,
    /// Segments retired by the last GC, kept open for readers that looked them up before
    /// the switch; dropped when the next GC starts.
    pub(crate) retired: Mutex<Vec<SegmentId>>,
}

/// Held by a writer across "add blocks, commit, register the root": a GC waits for
/// every hold taken before it started. See [`DataDir::write_hold`].
#[derive(Debug)]
pub struct WriteHold<'a>(#[allow(dead_code)] RwLockReadGuard<'a, ()>);

/// Whether a GC seals the writer's active segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seal {
    /// Never (dry runs change nothing).
    Never,
    /// When it holds at least a quarter of the segment size (avoids many small segments).
    WhenFilled,
    /// Always (full compaction).
    Always,
}

impl Seal {
    fn sealed(self, filled: bool) -> bool {
        match self {
            Seal::Never => false,
            Seal::WhenFilled => filled,
            Seal::Always => true,
        }
    }
}

/// A GC in progress on one handle; dropping it ends touch tracking.
#[derive(Debug)]
pub(crate) struct GcSession<'a> {
    store: &'a DataDir,
    _running: parking_lot::MutexGuard<'a, ()>,
    /// Index generation when the GC started: later entries are never collected.
    pub(crate) start_generation: u64,
    /// Segment ids at or above this were created after the start.
    pub(crate) first_new_segment: u32,
    /// The writer's active segment at the start (never compacted by this GC).
    pub(crate) active_segment: Option<SegmentId>,
}

impl Drop for GcSession<'_> {
    fn drop(&mut self) {
        let gc = &self.store.gc;
        let _sw = gc.switch.write();
        gc.active.store(false, Ordering::Release);
        *gc.touched.lock() = Touched::default();
    }
}

/// GC state shown by `vt info`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcInfo {
    /// Registered archives.
    pub archives: u64,
    /// Pins.
    pub pins: u64,
    /// Unix time of the last completed GC.
    pub last_gc: Option<f64>,
    /// Bytes the last GC freed.
    pub last_freed_bytes: u64,
    /// Dead bytes the last GC's plan left in place (below the rewrite threshold).
    pub last_dead_left_bytes: u64,
    /// Segment bytes not covered by any index entry (torn appends, duplicates).
    pub unindexed_bytes: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn names_text(names: &[String]) -> Vec<u8> {
    names.join("\n").into_bytes()
}

fn text_names(v: Option<Vec<u8>>) -> Vec<String> {
    let v = v.unwrap_or_default();
    String::from_utf8_lossy(&v)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

impl DataDir {
    // ---- touch tracking (called from the Store methods) -------------------

    /// `present`, remembering a hit while a GC runs (`tree`: the caller may reference
    /// the whole tree below the block).
    pub(crate) fn gc_present(&self, key: &IndexKey, tree: bool) -> Result<bool> {
        if !self.gc.active.load(Ordering::Acquire) {
            return self.present(key);
        }
        let _sw = self.gc.switch.read();
        let hit = self.present(key)?;
        if hit {
            self.gc_touch(key, tree);
        }
        Ok(hit)
    }

    /// `is_complete` for a key, remembering a hit while a GC runs.
    pub(crate) fn gc_complete(&self, key: &IndexKey) -> Result<bool> {
        let _sw = self
            .gc
            .active
            .load(Ordering::Acquire)
            .then(|| self.gc.switch.read());
        let complete = self
            .lookup(key)?
            .is_some_and(|l| l.flags & FLAG_INDIRECT_COMPLETE != 0);
        if complete {
            self.gc_touch(key, true);
        }
        Ok(complete)
    }

    fn gc_touch(&self, key: &IndexKey, tree: bool) {
        if self.gc.active.load(Ordering::Acquire) {
            let mut t = self.gc.touched.lock();
            if tree {
                t.tree.insert(*key);
            } else {
                t.leaf.insert(*key);
            }
        }
    }

    /// A hold for a writer's "add blocks, commit, record the root" sequence: a GC that
    /// starts while holds exist waits for them, so blocks deduplicated before the GC
    /// started but rooted only at the end of the sequence are not collected. Holds taken
    /// after a GC started do not wait (touch tracking protects them). A thread must not
    /// take a second hold while it has one (a waiting GC would deadlock them both).
    pub fn write_hold(&self) -> WriteHold<'_> {
        WriteHold(self.gc.holds.read())
    }

    /// Starts a GC on this handle: waits for write holds, turns on touch tracking and
    /// records where the store stood. Per `seal_active`, the writer's active segment is
    /// sealed (its next append starts a new segment) so this GC may compact it. Fails when the handle is read-only or a commit failed;
    /// a second concurrent GC on the same handle waits for the first.
    pub(crate) fn gc_begin(&self, seal_active: Seal) -> Result<GcSession<'_>> {
        let running = self.gc.running.lock();
        for id in std::mem::take(&mut *self.gc.retired.lock()) {
            self.files.write().remove(&id);
        }
        let _holds = self.gc.holds.write();
        let mut w = self.writer()?.lock();
        w.check()?;
        let filled = w
            .active
            .and_then(|a| w.ends.get(&a))
            .is_some_and(|&e| e >= self.opts.segment_size / 4);
        if seal_active.sealed(filled) && w.dirty.is_empty() {
            // The writer's next append starts a new segment, so the one it was filling
            // becomes a candidate (abort falls back to `committed_active`, cleared too).
            w.active = None;
            w.committed_active = None;
        }
        self.gc.active.store(true, Ordering::Release);
        let start_generation = self.index.counters()?.generation;
        Ok(GcSession {
            store: self,
            _running: running,
            start_generation,
            first_new_segment: w.next_id,
            active_segment: w.active,
        })
    }

    // ---- meta rows --------------------------------------------------------

    /// Writes `meta` rows durably in a GC index transaction, keeping other index writers
    /// out (see [`crate::index::Index::gc_switch`]).
    pub(crate) fn gc_meta(&self, meta: Vec<(&'static str, Vec<u8>)>) -> Result<()> {
        let _w = self.writer()?.lock();
        self.index.gc_switch(GcSwitch {
            meta,
            ..GcSwitch::default()
        })?;
        Ok(())
    }

    // ---- roots ------------------------------------------------------------

    /// The registered archives and pins.
    pub fn roots(&self) -> Result<Vec<Root>> {
        let v = self.index.meta(META_GC_ROOTS)?.unwrap_or_default();
        crate::gc::roots::decode(&v)
    }

    fn update_roots(&self, f: impl FnOnce(&mut Vec<Root>) -> bool) -> Result<bool> {
        let _w = self.writer()?.lock();
        let mut roots = self.roots()?;
        if !f(&mut roots) {
            return Ok(false);
        }
        let gen = self.index.counters()?.generation;
        let clock = self.clock_with(now_secs(), gen)?;
        self.index.gc_switch(GcSwitch {
            meta: vec![
                (META_GC_ROOTS, crate::gc::roots::encode(&roots)),
                (META_GC_CLOCK, clock),
            ],
            ..GcSwitch::default()
        })?;
        Ok(true)
    }

    /// Records that the archive at `archive` refers to blocks of this store, so GC marks
    /// its revisions (and refuses to run while it is missing). Idempotent; the path is
    /// made absolute. Also records a clock checkpoint. Fails on a read-only handle.
    pub fn register_root(&self, archive: &Path) -> Result<()> {
        let abs = crate::gc::roots::absolute(archive)?;
        self.update_roots(|roots| {
            let r = Root::Archive(abs);
            if roots.contains(&r) {
                // Still record the checkpoint: the caller just committed blocks.
                return true;
            }
            roots.push(r);
            true
        })?;
        Ok(())
    }

    /// Removes an archive from the registry; returns false when it was not registered.
    pub fn unregister_root(&self, archive: &Path) -> Result<bool> {
        let abs = crate::gc::roots::absolute(archive)?;
        self.update_roots(|roots| {
            let before = roots.len();
            roots.retain(|r| {
                *r != Root::Archive(abs.clone()) && *r != Root::Archive(archive.into())
            });
            roots.len() != before
        })
    }

    /// Pins a reference (a dirent or block reference transcription): GC keeps its tree.
    /// Fails when `reference` does not parse.
    pub fn pin(&self, reference: &str) -> Result<()> {
        crate::gc::roots::parse_ref(reference)?;
        self.update_roots(|roots| {
            let r = Root::Pin(reference.to_string());
            if !roots.contains(&r) {
                roots.push(r);
            }
            true
        })?;
        Ok(())
    }

    /// Removes a pin; returns false when it was not pinned.
    pub fn unpin(&self, reference: &str) -> Result<bool> {
        self.update_roots(|roots| {
            let before = roots.len();
            roots.retain(|r| *r != Root::Pin(reference.to_string()));
            roots.len() != before
        })
    }

    // ---- clock ------------------------------------------------------------

    /// Every clock checkpoint, oldest first: `(unix seconds, index generation)`, meaning
    /// every entry of that generation or older was committed by then.
    pub fn clock_checkpoints(&self) -> Result<Vec<(u64, u64)>> {
        let v = self.index.meta(META_GC_CLOCK)?.unwrap_or_default();
        Ok(v.chunks_exact(16)
            .map(|c| {
                let at = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().unwrap_or_default());
                (at(0), at(8))
            })
            .collect())
    }

    fn clock_with(&self, at: u64, gen: u64) -> Result<Vec<u8>> {
        let mut cps = self.clock_checkpoints()?;
        cps.push((at, gen));
        cps.sort_unstable();
        let skip = cps.len().saturating_sub(CLOCK_CHECKPOINTS);
        Ok(cps[skip..]
            .iter()
            .flat_map(|(t, g)| t.to_le_bytes().into_iter().chain(g.to_le_bytes()))
            .collect())
    }

    /// Records a clock checkpoint at unix time `at` (the current generation). GC's grace
    /// period can only age blocks past a checkpoint; `register_root`, pins, GC runs and
    /// the scheduler record them. Fails on a read-only handle.
    pub fn record_clock(&self, at: u64) -> Result<()> {
        let _w = self.writer()?.lock();
        let gen = self.index.counters()?.generation;
        let clock = self.clock_with(at, gen)?;
        self.index.gc_switch(GcSwitch {
            meta: vec![(META_GC_CLOCK, clock)],
            ..GcSwitch::default()
        })?;
        Ok(())
    }

    // ---- segments ---------------------------------------------------------

    /// Allocates a segment id for GC output and creates the file with its header, after
    /// durably recording the intent (so a crash leaves a file the next open removes).
    /// The caller must hold the writer lock (`w`).
    pub(crate) fn gc_create_segment(&self, w: &mut Writer) -> Result<(SegmentId, SegmentFile)> {
        let id = SegmentId(w.next_id);
        w.next_id += 1;
        let name = segment_name(id);
        self.index.gc_switch(GcSwitch {
            meta: vec![(META_GC_NEW, names_text(std::slice::from_ref(&name)))],
            ..GcSwitch::default()
        })?;
        let file = self
            .opts
            .fs
            .open(&self.data_path.join(&name), OpenMode::CreateNew)
            .ctx(|| format!("creating segment {name}"))?;
        file.write_at(&segment_header(), 0)
            .ctx(|| format!("writing segment {name}"))?;
        Ok((
            id,
            SegmentFile {
                name,
                format: SegmentFormat::V1,
                file,
            },
        ))
    }

    /// Makes a GC output segment durable (file, then directory entry).
    pub(crate) fn gc_sync_segment(&self, seg: &SegmentFile) -> Result<()> {
        seg.file
            .sync()
            .ctx(|| format!("syncing segment {}", seg.name))?;
        self.opts
            .fs
            .sync_dir(&self.data_path)
            .ctx(|| format!("syncing {}", self.data_path.display()))
    }

    /// Registers a synced GC output segment in the index and re-points `moves` to it, in
    /// one transaction (with `extra`) that also clears the intent record. The caller must
    /// hold the writer lock.
    pub(crate) fn gc_switch_in(
        &self,
        id: SegmentId,
        seg: &SegmentFile,
        end: u64,
        moves: Vec<(IndexKey, SegmentId, Location)>,
        mut extra: GcSwitch,
    ) -> Result<crate::index::GcSwitched> {
        extra.moves = moves;
        extra.segments.push((
            id,
            SegmentInfo {
                name: seg.name.clone(),
                format: SegmentFormat::V1,
                indexed_end: end,
            },
        ));
        extra.meta.push((META_GC_NEW, Vec::new()));
        let done = self.index.gc_switch(extra)?;
        self.files.write().insert(id, seg.clone());
        Ok(done)
    }

    /// Removes an unfinished GC output segment (after a stop or an error before its switch).
    pub(crate) fn gc_discard_segment(&self, seg: &SegmentFile) -> Result<()> {
        self.opts
            .fs
            .remove(&self.data_path.join(&seg.name))
            .ctx(|| format!("removing {}", seg.name))?;
        self.opts
            .fs
            .sync_dir(&self.data_path)
            .ctx(|| format!("syncing {}", self.data_path.display()))?;
        self.gc_meta(vec![(META_GC_NEW, Vec::new())])
    }

    /// Deletes the files of segments the index no longer lists, then clears the record.
    pub(crate) fn gc_delete_retired(&self, names: &[String]) -> Result<()> {
        for n in names {
            self.remove_if_present(n)?;
        }
        self.opts
            .fs
            .sync_dir(&self.data_path)
            .ctx(|| format!("syncing {}", self.data_path.display()))?;
        self.gc_meta(vec![(META_GC_RETIRED, Vec::new())])
    }

    fn remove_if_present(&self, name: &str) -> Result<bool> {
        let p = self.data_path.join(name);
        if !self.opts.fs.exists(&p) {
            return Ok(false);
        }
        self.opts
            .fs
            .remove(&p)
            .ctx(|| format!("removing {}", p.display()))?;
        Ok(true)
    }

    /// Runs at writer open, before recovery (which would register stray segment files):
    /// removes GC output that never reached the index and retired segments whose
    /// deletion a crash interrupted.
    pub(crate) fn gc_cleanup_leftovers(&self) -> Result<()> {
        let new = text_names(self.index.meta(META_GC_NEW)?);
        let retired = text_names(self.index.meta(META_GC_RETIRED)?);
        if new.is_empty() && retired.is_empty() {
            return Ok(());
        }
        let indexed: BTreeSet<String> = self
            .index
            .segments()?
            .into_iter()
            .map(|(_, i)| i.name)
            .collect();
        let mut removed = false;
        for n in new.iter().chain(&retired) {
            // A name the index lists is live data (never ours to remove).
            if !indexed.contains(n) && parse_segment_name(n).is_some() {
                removed |= self.remove_if_present(n)?;
            }
        }
        if removed {
            self.opts
                .fs
                .sync_dir(&self.data_path)
                .ctx(|| format!("syncing {}", self.data_path.display()))?;
        }
        self.index.gc_switch(GcSwitch {
            meta: vec![(META_GC_NEW, Vec::new()), (META_GC_RETIRED, Vec::new())],
            ..GcSwitch::default()
        })?;
        Ok(())
    }

    /// GC leftovers: segment files the index does not list, and unfinished GC records.
    /// Empty on a healthy store (after the cleanup every writer open performs).
    pub fn gc_leftovers(&self) -> Result<Vec<String>> {
        let indexed: BTreeSet<String> = self
            .index
            .segments()?
            .into_iter()
            .map(|(_, i)| i.name)
            .collect();
        let mut out: Vec<String> = self
            .opts
            .fs
            .list(&self.data_path)
            .ctx(|| format!("listing {}", self.data_path.display()))?
            .into_iter()
            .filter(|n| !indexed.contains(n))
            .map(|n| format!("{DATA_DIR}/{n}"))
            .collect();
        for key in [META_GC_NEW, META_GC_RETIRED] {
            out.extend(
                text_names(self.index.meta(key)?)
                    .into_iter()
                    .map(|n| format!("{key}: {n}")),
            );
        }
        Ok(out)
    }

    /// Segment bytes no index entry accounts for (beyond segment headers). Walks the
    /// index: the members of a group record share one record header, and only the
    /// entries tell how many records there are.
    fn unindexed_bytes(&self) -> Result<u64> {
        let c = self.index.counters()?;
        let mut total = 0u64;
        for (id, _) in self.index.segments()? {
            if let Ok(seg) = self.segment_file(id) {
                total += seg.file.len().unwrap_or(0);
            }
        }
        // Stored bytes count payloads only; each record also carries a header and digest.
        let mut records = 0u64;
        let mut groups: HashSet<(SegmentId, u64)> = HashSet::new();
        self.index.for_each(|_, loc| {
            if loc.group_member().is_none() || groups.insert((loc.segment, loc.offset)) {
                records += 1;
            }
            Ok(())
        })?;
        let overhead =
            records * (crate::segment::REC_FIXED_LEN as u64 + self.hash_alg_digest_len() as u64);
        let headers = self.index.segments()?.len() as u64 * crate::segment::SEGMENT_HEADER_LEN;
        Ok(total.saturating_sub(c.stored_bytes + overhead + headers))
    }

    fn hash_alg_digest_len(&self) -> usize {
        crate::store::Store::hash_alg(self).digest_len()
    }

    /// GC state for `vt info`: roots, the last GC, and dead space known without a mark.
    pub fn gc_info(&self) -> Result<GcInfo> {
        let roots = self.roots()?;
        let mut info = GcInfo {
            archives: roots
                .iter()
                .filter(|r| matches!(r, Root::Archive(_)))
                .count() as u64,
            pins: roots.iter().filter(|r| matches!(r, Root::Pin(_))).count() as u64,
            unindexed_bytes: self.unindexed_bytes()?,
            ..GcInfo::default()
        };
        for line in text_names(self.index.meta(META_GC_LAST)?) {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "time" => info.last_gc = v.parse().ok(),
                "freed" => info.last_freed_bytes = v.parse().unwrap_or(0),
                "dead_left" => info.last_dead_left_bytes = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        Ok(info)
    }

    /// Compacts the index file (see [`crate::index::Index::compact_file`]) and returns its
    /// length before and after. A GC removes entries, but the index file keeps its size
    /// (its free pages are reused by later commits) until compacted. Takes `&mut self`:
    /// no other thread may use the handle meanwhile. Fails on a read-only handle and on
    /// index errors.
    pub fn compact_index(&mut self) -> Result<(u64, u64)> {
        let len = |s: &Self| {
            s.opts
                .fs
                .open(&s.path.join(INDEX_FILE), OpenMode::Read)
                .and_then(|f| f.len())
                .unwrap_or(0)
        };
        let before = len(self);
        self.writer()?;
        self.index.compact_file()?;
        Ok((before, len(self)))
    }

    /// Index rows of every segment, with the file length.
    pub(crate) fn gc_segments(&self) -> Result<Vec<(SegmentId, SegmentInfo, u64)>> {
        let mut out = Vec::new();
        for (id, info) in self.index.segments()? {
            let len = self
                .segment_file(id)
                .and_then(|s| s.file.len().ctx(|| format!("reading {}", s.name)))?;
            out.push((id, info, len));
        }
        Ok(out)
    }

    /// Reads `len` bytes of segment `id` at `offset` (several records and the gaps between
    /// them, in one read).
    pub(crate) fn gc_read_span(&self, id: SegmentId, offset: u64, len: usize) -> Result<Vec<u8>> {
        let seg = self.segment_file(id)?;
        let mut buf = vec![0u8; len];
        seg.file
            .read_at(&mut buf, offset)
            .map_err(|e| Error::corrupt(&seg.name, offset, format!("cannot read records: {e}")))?;
        Ok(buf)
    }

    /// Reads the raw bytes of the version-1 record at `loc` and checks its checksum.
    pub(crate) fn gc_read_record(&self, loc: &Location, digest_len: usize) -> Result<Vec<u8>> {
        let seg = self.segment_file(loc.segment)?;
        let len = crate::segment::REC_FIXED_LEN + digest_len + loc.stored_len as usize;
        let mut buf = vec![0u8; len];
        seg.file.read_at(&mut buf, loc.offset).map_err(|e| {
            Error::corrupt(&seg.name, loc.offset, format!("cannot read record: {e}"))
        })?;
        if !crate::segment::check_record_crc(&buf) {
            return Err(Error::corrupt(
                &seg.name,
                loc.offset,
                "record checksum mismatch",
            ));
        }
        Ok(buf)
    }
}

/// Encodes the `gc_retired` / `gc_new` value.
pub(crate) fn encode_names(names: &[String]) -> Vec<u8> {
    names_text(names)
}
