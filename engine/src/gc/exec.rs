//! The executor: carries out a [`Plan`].
//!
//! 1. **Copy**: live records of the segments to rewrite are copied, raw, into new
//!    segments (neighbouring records read together, output written in 1 MiB pieces). Each new segment is named in the `gc_new` intent record before its file
//!    is created, synced (file and directory) when full, then switched in: one index
//!    transaction re-points its blocks and registers it. Old segments stay indexed.
//! 2. **Final switch** (writer lock and touch lock held): blocks re-referenced during
//!    the GC that still live in a retired segment are rescued (copied the same way), then
//!    one transaction drops every entry and row of the retired segments and records
//!    their names in `gc_retired`.
//! 3. **Delete**: the retired files are removed, the directory synced, `gc_retired` cleared.
//!
//! Live members of group records are not copied raw: they are re-collected, in their
//! order, into new groups (a group with dead members shrinks; partial groups merge).
//!
//! A crash anywhere leaves a valid store; the next writer open removes leftovers
//! (`DataDir::gc_cleanup_leftovers`). See `docs/gc.md`.

use super::mark::{Marker, Marks};
use super::plan::{Action, Plan, SegmentUsage};
use super::StopFlag;
use crate::error::{Error, Result};
use crate::hash::HashAlg;
use crate::hash::HashCode;
use crate::index::{hash_of_key, GcSwitch, IndexKey, Location, SegmentId, FLAG_CODEC_MASK};
use crate::segment::{
    check_record_crc, encode_group_record, member_shares, MAX_GROUP_MEMBERS, REC_FIXED_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::store::datadir::{DataDir, SegmentFile, Writer};
use crate::store::datadir_gc::{encode_names, GcSession, META_GC_RETIRED};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Live blocks gathered per pass over the index (bounds the executor's memory).
const BLOCKS_PER_PASS: usize = 1 << 20;
/// Live records of one segment are read together while they span at most this much...
const READ_SPAN: u64 = 4 << 20;
/// ...and no gap between two of them (dead records) is longer than this: reading a
/// short gap costs less than another system call.
const READ_GAP: u64 = 64 << 10;
/// Output is written in pieces of about this size.
const WRITE_CHUNK: usize = 1 << 20;

/// Pacing and stopping.
#[derive(Debug)]
pub struct Control<'a> {
    /// Cap on bytes copied per second.
    pub rate_limit: Option<u64>,
    /// Pause while the writer is busy.
    pub yield_to_writers: bool,
    /// Raised to stop (the executor then returns [`Error::Closed`]).
    pub stop: Option<&'a StopFlag>,
}

/// What the executor did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Segments rewritten.
    pub segments_rewritten: u64,
    /// Segments deleted without copying.
    pub segments_deleted: u64,
    /// New segments written.
    pub segments_written: u64,
    /// Blocks copied to new segments.
    pub blocks_moved: u64,
    /// Of those, blocks rescued because they were re-referenced during the GC.
    pub blocks_rescued: u64,
    /// Index entries removed.
    pub blocks_removed: u64,
    /// Record bytes copied.
    pub bytes_copied: u64,
    /// Bytes of the new segments.
    pub bytes_written: u64,
    /// Segment bytes freed (old files minus new ones).
    pub freed_bytes: u64,
}

/// A GC output segment being filled.
struct Output {
    id: SegmentId,
    seg: SegmentFile,
    /// Logical end: the file's length once `buf` is written.
    end: u64,
    /// Records appended but not written yet (they start at `end - buf.len()`).
    buf: Vec<u8>,
    moves: Vec<(IndexKey, SegmentId, Location)>,
    /// Live group members collected for the next group record.
    group: GcGroup,
}

/// Live members of old groups, waiting to be written as a new group record.
#[derive(Default)]
struct GcGroup {
    data: Vec<u8>,
    lens: Vec<u32>,
    hashes: Vec<HashCode>,
    /// Key and old entry of each member.
    old: Vec<(IndexKey, Location)>,
}

/// Pacing state.
struct Pace<'a> {
    ctl: &'a Control<'a>,
    start: Instant,
    bytes: u64,
}

impl Pace<'_> {
    fn check_stop(&self) -> Result<()> {
        match self.ctl.stop {
            Some(s) if s.load(Ordering::Acquire) => Err(Error::Closed),
            _ => Ok(()),
        }
    }

    /// Accounts `n` copied bytes; sleeps (in short slices, watching the stop flag) to
    /// hold the rate, and while the writer is busy when asked to yield.
    fn after_copy(&mut self, store: &DataDir, n: u64) -> Result<()> {
        self.bytes += n;
        if let Some(rate) = self.ctl.rate_limit.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            while self.start.elapsed() < due {
                self.check_stop()?;
                std::thread::sleep((due - self.start.elapsed()).min(Duration::from_millis(20)));
            }
        }
        if self.ctl.yield_to_writers {
            for _ in 0..50 {
                let busy = store.writer()?.try_lock().is_none();
                if !busy {
                    break;
                }
                self.check_stop()?;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.check_stop()
    }
}

/// Executes `plan` (made in `session`). `marks` gains the trees of blocks re-referenced
/// during the GC. Fails on I/O and index errors, on a corrupt live record (nothing is
/// retired then), and with [`Error::Closed`] when stopped; the store stays valid.
pub(crate) fn execute(
    store: &DataDir,
    _session: &GcSession<'_>,
    plan: &Plan,
    marks: &mut Marks,
    cutoff: u64,
    ctl: &Control<'_>,
) -> Result<ExecStats> {
    let mut st = ExecStats::default();
    let mut pace = Pace {
        ctl,
        start: Instant::now(),
        bytes: 0,
    };
    let mut out: Option<Output> = None;
    let rewrite: Vec<&SegmentUsage> = plan.with(Action::Rewrite).collect();
    let copied = copy_all(store, &rewrite, marks, cutoff, &mut pace, &mut out, &mut st);
    if let Err(e) = copied {
        if let Some(o) = out.take() {
            // The intent record lets the next open finish this if the removal fails too.
            let _ = store.gc_discard_segment(&o.seg);
        }
        return Err(e);
    }
    final_switch(store, plan, marks, &mut st)?;
    Ok(st)
}

fn copy_all(
    store: &DataDir,
    rewrite: &[&SegmentUsage],
    marks: &Marks,
    cutoff: u64,
    pace: &mut Pace<'_>,
    out: &mut Option<Output>,
    st: &mut ExecStats,
) -> Result<()> {
    let mut group: Vec<SegmentId> = Vec::new();
    let mut blocks = 0usize;
    for (i, u) in rewrite.iter().enumerate() {
        group.push(u.id);
        blocks += u.live_blocks as usize;
        if blocks >= BLOCKS_PER_PASS || i + 1 == rewrite.len() {
            let live = gather(store, &group, marks, cutoff)?;
            copy_records(store, &live, pace, out, st)?;
            group.clear();
            blocks = 0;
        }
    }
    seal_group(store, out, st)?;
    if let Some(o) = out.take() {
        finish(store, o, st)?;
    }
    st.segments_rewritten = rewrite.len() as u64;
    Ok(())
}

/// Live entries of `segments`, in segment and offset order.
fn gather(
    store: &DataDir,
    segments: &[SegmentId],
    marks: &Marks,
    cutoff: u64,
) -> Result<Vec<(IndexKey, Location)>> {
    let set: HashSet<SegmentId> = segments.iter().copied().collect();
    let mut live = Vec::new();
    store.index.for_each(|k, loc| {
        if set.contains(&loc.segment) && (marks.is_marked(&k) || u64::from(loc.generation) > cutoff)
        {
            live.push((k, loc));
        }
        Ok(())
    })?;
    live.sort_unstable_by_key(|(_, l)| (l.segment, l.offset, l.group_member()));
    Ok(live)
}

fn digest_len(key: &IndexKey) -> Result<usize> {
    Ok(HashAlg::from_hashenum(u64::from(key[32]))?.digest_len())
}

fn rec_len(key: &IndexKey, loc: &Location) -> Result<u64> {
    Ok((REC_FIXED_LEN + digest_len(key)?) as u64 + u64::from(loc.stored_len))
}

/// Copies `live` (in segment and offset order), reading neighbouring records of a segment
/// with one read (see [`READ_SPAN`]) and checking each record's checksum.
fn copy_records(
    store: &DataDir,
    live: &[(IndexKey, Location)],
    pace: &mut Pace<'_>,
    out: &mut Option<Output>,
    st: &mut ExecStats,
) -> Result<()> {
    let mut i = 0;
    while i < live.len() {
        if live[i].1.group_member().is_some() {
            i = copy_members(store, live, i, pace, out, st)?;
            continue;
        }
        let (seg, start) = (live[i].1.segment, live[i].1.offset);
        let mut end = start + rec_len(&live[i].0, &live[i].1)?;
        let mut j = i + 1;
        while let Some((k, l)) = live.get(j) {
            let next_end = l.offset + rec_len(k, l)?;
            if l.segment != seg
                || l.offset < end
                || l.offset - end > READ_GAP
                || l.group_member().is_some()
            {
                break;
            }
            if next_end - start > READ_SPAN {
                break;
            }
            end = next_end;
            j += 1;
        }
        let span = store.gc_read_span(seg, start, usize::try_from(end - start).unwrap_or(0))?;
        for (key, loc) in &live[i..j] {
            let at = (loc.offset - start) as usize;
            let rec = span
                .get(at..at + rec_len(key, loc)? as usize)
                .filter(|r| check_record_crc(r));
            let Some(rec) = rec else {
                let name = store.segment_file(seg)?.name;
                return Err(Error::corrupt(
                    &name,
                    loc.offset,
                    "record checksum mismatch",
                ));
            };
            copy_record(store, *key, *loc, rec, pace, out, st)?;
        }
        i = j;
    }
    Ok(())
}

/// Moves the live members of the group record at `live[i]` (and its neighbours with the
/// same record) into the output's pending group, checking each member's hashcode.
/// Returns the index of the first entry past that record.
fn copy_members(
    store: &DataDir,
    live: &[(IndexKey, Location)],
    i: usize,
    pace: &mut Pace<'_>,
    out: &mut Option<Output>,
    st: &mut ExecStats,
) -> Result<usize> {
    let first = live[i].1;
    let g = store.decoded_group(&first, false)?;
    let name = store.segment_file(first.segment)?.name;
    let mut j = i;
    while let Some((key, loc)) = live.get(j) {
        let Some(m) = loc.group_member() else { break };
        if (loc.segment, loc.offset) != (first.segment, first.offset) {
            break;
        }
        let hash = hash_of_key(key)?;
        let data = g.checked_member(m, &hash, loc.raw_len, &name, loc.offset)?;
        add_member(store, out, st, *key, *loc, hash, data)?;
        pace.after_copy(store, data.len() as u64)?;
        j += 1;
    }
    Ok(j)
}

/// Adds a live member to the pending group, sealing the group when full.
fn add_member(
    store: &DataDir,
    out: &mut Option<Output>,
    st: &mut ExecStats,
    key: IndexKey,
    loc: Location,
    hash: HashCode,
    data: &[u8],
) -> Result<()> {
    let o = place(store, out, st, 0)?;
    st.bytes_copied += data.len() as u64;
    if o.group.push(store, key, loc, hash, data) {
        seal_group(store, out, st)?;
    }
    Ok(())
}

impl GcGroup {
    /// Adds a member; true when the group is now full.
    fn push(
        &mut self,
        store: &DataDir,
        key: IndexKey,
        loc: Location,
        hash: HashCode,
        data: &[u8],
    ) -> bool {
        self.data.extend_from_slice(data);
        self.lens.push(data.len() as u32);
        self.hashes.push(hash);
        self.old.push((key, loc));
        self.data.len() >= store.group_limit() || self.lens.len() >= MAX_GROUP_MEMBERS
    }
}

/// Appends the group record of `g` to `o` and re-points its members.
fn write_group(store: &DataDir, o: &mut Output, g: GcGroup) -> Result<()> {
    let rec = encode_group_record(&g.hashes, &g.lens, &g.data, store.opts.compression_level)?;
    let offset = o.end;
    o.buf.extend_from_slice(&rec.bytes);
    o.end += rec.bytes.len() as u64;
    let shares = member_shares(rec.stored_len, &g.lens);
    for (i, ((key, old), share)) in g.old.into_iter().zip(shares).enumerate() {
        let new = Location {
            segment: o.id,
            offset,
            stored_len: share,
            raw_len: old.raw_len,
            flags: Location::member_flags(rec.codec, i),
            generation: old.generation,
        };
        o.moves.push((key, old.segment, new));
    }
    if o.buf.len() >= WRITE_CHUNK {
        flush(o)?;
    }
    Ok(())
}

/// Writes the pending group (if any) as one record and re-points its members.
fn seal_group(store: &DataDir, out: &mut Option<Output>, st: &mut ExecStats) -> Result<()> {
    let Some(o) = out.as_mut() else {
        return Ok(());
    };
    if o.group.lens.is_empty() {
        return Ok(());
    }
    let g = std::mem::take(&mut o.group);
    // The record is at most the group's bytes plus its framing and table.
    let bound = (g.data.len() + 16 * g.lens.len() + 1024) as u64;
    let o = place(store, out, st, bound)?;
    write_group(store, o, g)
}

/// The output segment with room for `len` more bytes: the current one, or a new one
/// after finishing it when full (its pending group moves along).
fn place<'o>(
    store: &DataDir,
    out: &'o mut Option<Output>,
    st: &mut ExecStats,
    len: u64,
) -> Result<&'o mut Output> {
    let full = out
        .as_ref()
        .is_some_and(|o| o.end > SEGMENT_HEADER_LEN && o.end + len > store.opts.segment_size);
    let mut group = GcGroup::default();
    if full {
        if let Some(mut o) = out.take() {
            group = std::mem::take(&mut o.group);
            finish(store, o, st)?;
        }
    }
    if out.is_none() {
        let mut w = store.writer()?.lock();
        let mut o = start_output(store, &mut w)?;
        o.group = group;
        *out = Some(o);
    }
    out.as_mut()
        .ok_or_else(|| Error::Index("no GC output segment".into()))
}

/// Appends the raw record `rec` of `key` to the output segment (starting one when needed).
fn copy_record(
    store: &DataDir,
    key: IndexKey,
    loc: Location,
    rec: &[u8],
    pace: &mut Pace<'_>,
    out: &mut Option<Output>,
    st: &mut ExecStats,
) -> Result<()> {
    let len = rec.len() as u64;
    let o = place(store, out, st, len)?;
    append(o, key, &loc, rec)?;
    st.bytes_copied += len;
    pace.after_copy(store, len)
}

fn start_output(store: &DataDir, w: &mut Writer) -> Result<Output> {
    let (id, seg) = store.gc_create_segment(w)?;
    Ok(Output {
        id,
        seg,
        end: SEGMENT_HEADER_LEN,
        buf: Vec::with_capacity(WRITE_CHUNK + (64 << 10)),
        moves: Vec::new(),
        group: GcGroup::default(),
    })
}

/// Writes the buffered records to the file.
fn flush(o: &mut Output) -> Result<()> {
    if o.buf.is_empty() {
        return Ok(());
    }
    let at = o.end - o.buf.len() as u64;
    o.seg
        .file
        .write_at(&o.buf, at)
        .map_err(|e| Error::io(format!("appending to segment {}", o.seg.name), e))?;
    o.buf.clear();
    Ok(())
}

fn append(o: &mut Output, key: IndexKey, loc: &Location, rec: &[u8]) -> Result<()> {
    o.buf.extend_from_slice(rec);
    let new = Location {
        segment: o.id,
        offset: o.end,
        flags: loc.flags & FLAG_CODEC_MASK,
        ..*loc
    };
    o.moves.push((key, loc.segment, new));
    o.end += rec.len() as u64;
    if o.buf.len() >= WRITE_CHUNK {
        flush(o)?;
    }
    Ok(())
}

/// Syncs a full output segment and switches its blocks over.
fn finish(store: &DataDir, mut o: Output, st: &mut ExecStats) -> Result<()> {
    flush(&mut o)?;
    store.gc_sync_segment(&o.seg)?;
    let _w = store.writer()?.lock();
    let done = store.gc_switch_in(o.id, &o.seg, o.end, o.moves, GcSwitch::default())?;
    st.blocks_moved += done.moved;
    st.segments_written += 1;
    st.bytes_written += o.end;
    Ok(())
}

/// Rescues re-referenced blocks of retired segments, then retires them in one
/// transaction, then deletes their files.
fn final_switch(store: &DataDir, plan: &Plan, marks: &mut Marks, st: &mut ExecStats) -> Result<()> {
    let retire: Vec<&SegmentUsage> = plan
        .segments
        .iter()
        .filter(|s| s.action != Action::Keep)
        .map(|s| &s.usage)
        .collect();
    if retire.is_empty() {
        return Ok(());
    }
    let ids: HashSet<SegmentId> = retire.iter().map(|u| u.id).collect();
    let names: Vec<String> = retire.iter().map(|u| u.name.clone()).collect();
    {
        let mut w = store.writer()?.lock();
        // From here until the switch commits, no reader can report a block present.
        let _sw = store.gc.switch.write();
        let rescue = rescue_list(store, marks, &ids)?;
        let extra = GcSwitch {
            retire: ids.iter().copied().collect(),
            meta: vec![(META_GC_RETIRED, encode_names(&names))],
            ..GcSwitch::default()
        };
        let done = if rescue.is_empty() {
            store.index.gc_switch(extra)?
        } else {
            let mut o = start_output(store, &mut w)?;
            for (key, loc) in &rescue {
                if loc.group_member().is_some() {
                    rescue_member(store, &mut o, *key, *loc)?;
                    st.bytes_copied += u64::from(loc.raw_len);
                    continue;
                }
                let rec = store.gc_read_record(loc, digest_len(key)?)?;
                append(&mut o, *key, loc, &rec)?;
                st.bytes_copied += rec.len() as u64;
            }
            let g = std::mem::take(&mut o.group);
            if !g.lens.is_empty() {
                write_group(store, &mut o, g)?;
            }
            flush(&mut o)?;
            store.gc_sync_segment(&o.seg)?;
            st.bytes_written += o.end;
            st.segments_written += 1;
            store.gc_switch_in(o.id, &o.seg, o.end, o.moves, extra)?
        };
        st.blocks_moved += done.moved;
        st.blocks_rescued = done.moved;
        st.blocks_removed = done.removed;
    }
    store.gc.retired.lock().extend(ids.iter().copied());
    store.gc_delete_retired(&names)?;
    st.segments_deleted = retire.len() as u64 - st.segments_rewritten;
    let old: u64 = retire.iter().map(|u| u.file_bytes).sum();
    st.freed_bytes = old.saturating_sub(st.bytes_written);
    Ok(())
}

/// Adds a re-referenced group member to the rescue output's group (writing it when full).
fn rescue_member(store: &DataDir, o: &mut Output, key: IndexKey, loc: Location) -> Result<()> {
    let hash = hash_of_key(&key)?;
    let name = store.segment_file(loc.segment)?.name;
    let i = loc.group_member().unwrap_or(0);
    let g = store.decoded_group(&loc, true)?;
    let data = g.checked_member(i, &hash, loc.raw_len, &name, loc.offset)?;
    if o.group.push(store, key, loc, hash, data) {
        let g = std::mem::take(&mut o.group);
        write_group(store, o, g)?;
    }
    Ok(())
}

/// Blocks touched during the GC (and, for `contains`/`is_complete` touches, the trees
/// below them) whose records are in a retired segment.
fn rescue_list(
    store: &DataDir,
    marks: &mut Marks,
    retired: &HashSet<SegmentId>,
) -> Result<Vec<(IndexKey, Location)>> {
    let touched = std::mem::take(&mut *store.gc.touched.lock());
    let mut m = Marker {
        store,
        marks,
        reached: Some(Vec::new()),
    };
    for k in &touched.tree {
        m.untyped(k)?;
    }
    let mut keys = m.reached.take().unwrap_or_default();
    keys.extend(touched.leaf);
    keys.sort_unstable();
    keys.dedup();
    let mut rescue = Vec::new();
    for k in keys {
        if let Some(loc) = store.index.get(&k)? {
            if retired.contains(&loc.segment) {
                rescue.push((k, loc));
            }
        }
    }
    rescue.sort_unstable_by_key(|(_, l)| (l.segment, l.offset));
    Ok(rescue)
}
