//! Group records on DataDir's write and read paths.
//!
//! Small blocks (shorter than [`DataDirOptions::group_max_block`]) added in a transaction
//! are collected, in add order, into the open group; when it holds
//! [`DataDirOptions::group_bytes`] bytes or [`MAX_GROUP_MEMBERS`] blocks it is sealed:
//! written as one group record, compressed as a whole (neighbouring small files share
//! their redundancy, which per-block compression cannot see). Each member keeps its own
//! index entry ([`FLAG_GROUP`] plus its number in the group). A commit seals a partial
//! group first, so the durability rules are those of plain records.
//!
//! Readers see blocks of the open group at once (read-your-writes). Decoded groups are
//! kept in a small cache so neighbouring members cost one decompression; every member
//! read still checks its hashcode.
//!
//! [`DataDirOptions::group_max_block`]: super::DataDirOptions::group_max_block
//! [`DataDirOptions::group_bytes`]: super::DataDirOptions::group_bytes
//! [`FLAG_GROUP`]: crate::index::FLAG_GROUP

use super::datadir::{DataDir, Writer};
use crate::error::{Error, Result};
use crate::hash::HashCode;
use crate::index::{IndexKey, Location, SegmentId, FLAG_INDIRECT_COMPLETE};
use crate::segment::{self, member_shares, DecodedGroup, MAX_GROUP_MEMBERS};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Decoded groups kept for neighbouring reads (each at most a group's raw size).
const GROUP_CACHE_ENTRIES: usize = 16;

/// Blocks waiting to be written as one group record.
#[derive(Debug, Default)]
pub(crate) struct OpenGroup {
    /// The members' bytes, back to back.
    data: Vec<u8>,
    lens: Vec<u32>,
    hashes: Vec<HashCode>,
    keys: Vec<IndexKey>,
    /// Member number of each key.
    at: HashMap<IndexKey, usize>,
    /// Members marked complete before the group was sealed.
    complete: HashSet<IndexKey>,
}

impl OpenGroup {
    /// The bytes of the member `key`, when it is in the group.
    pub(crate) fn get(&self, key: &IndexKey) -> Option<&[u8]> {
        let i = *self.at.get(key)?;
        let start: usize = self.lens[..i].iter().map(|&l| l as usize).sum();
        Some(&self.data[start..start + self.lens[i] as usize])
    }

    /// True when `key` is a member.
    pub(crate) fn contains(&self, key: &IndexKey) -> bool {
        self.at.contains_key(key)
    }

    /// Marks member `key` complete; false when it is not a member.
    pub(crate) fn set_complete(&mut self, key: &IndexKey) -> bool {
        if !self.at.contains_key(key) {
            return false;
        }
        self.complete.insert(*key);
        true
    }

    /// True when member `key` was marked complete.
    pub(crate) fn is_complete(&self, key: &IndexKey) -> bool {
        self.complete.contains(key)
    }

    /// Number of members.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The members' keys.
    pub(crate) fn keys(&self) -> &[IndexKey] {
        &self.keys
    }

    fn push(&mut self, key: IndexKey, hash: HashCode, data: &[u8]) {
        self.at.insert(key, self.keys.len());
        self.keys.push(key);
        self.hashes.push(hash);
        self.lens.push(data.len() as u32);
        self.data.extend_from_slice(data);
    }
}

/// Recently decoded groups, keyed by (segment, record offset). Entries are tagged with the
/// abort epoch at which their read started: an abort truncates segments, so a record read
/// before it may be replaced by a different one at the same offset. A slot is inserted
/// before its group is decoded, so concurrent readers of one group (restore's fetcher
/// threads) wait for one decode instead of each doing it.
#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    entries: Mutex<VecDeque<(GroupKey, Slot)>>,
    epoch: AtomicU64,
}

type GroupKey = (SegmentId, u64, u64);
type Slot = Arc<Mutex<Option<Arc<DecodedGroup>>>>;

impl GroupCache {
    /// The slot of a group, inserted (empty) when missing.
    fn slot(&self, seg: SegmentId, offset: u64) -> Slot {
        let key = (seg, offset, self.epoch.load(Ordering::Acquire));
        let mut e = self.entries.lock();
        if let Some(i) = e.iter().position(|(k, _)| *k == key) {
            // Least recently used goes first: a group most of a restore's files come
            // from stays while the odd file of another group passes through.
            let hit = e.remove(i).unwrap_or_else(|| (key, Slot::default()));
            let s = hit.1.clone();
            e.push_back(hit);
            return s;
        }
        if e.len() >= GROUP_CACHE_ENTRIES {
            e.pop_front();
        }
        let s = Slot::default();
        e.push_back((key, s.clone()));
        s
    }

    /// Forgets everything (after an abort).
    pub(crate) fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.lock().clear();
    }
}

impl DataDir {
    /// True when a block of `len` bytes goes into a group.
    pub(crate) fn groupable(&self, len: usize) -> bool {
        len < self.opts.group_max_block && self.opts.group_bytes > 0
    }

    /// Bytes at which a group is sealed: the option, but at most a quarter of a segment,
    /// so a group never takes a segment of its own.
    pub(crate) fn group_limit(&self) -> usize {
        let quarter = usize::try_from(self.opts.segment_size / 4).unwrap_or(usize::MAX);
        self.opts.group_bytes.min(quarter).max(1)
    }

    /// Adds a block to the open group (the caller checked it is absent and holds the
    /// writer lock); seals the group when full.
    pub(crate) fn add_to_group(
        &self,
        w: &mut Writer,
        key: IndexKey,
        hash: HashCode,
        data: &[u8],
    ) -> Result<()> {
        let full = {
            let mut p = self.pending.write();
            p.group.push(key, hash, data);
            p.group.data.len() >= self.group_limit() || p.group.len() >= MAX_GROUP_MEMBERS
        };
        if full {
            self.seal_group(w)?;
        }
        Ok(())
    }

    /// Writes the open group as one record and moves its members to the pending index
    /// entries. The caller holds the writer lock (so nothing else changes the group).
    pub(crate) fn seal_group(&self, w: &mut Writer) -> Result<()> {
        let rec = {
            let p = self.pending.read();
            if p.group.len() == 0 {
                return Ok(());
            }
            let g = &p.group;
            segment::encode_group_record(&g.hashes, &g.lens, &g.data, self.opts.compression_level)?
        };
        let (segment, offset) = self.append(w, &[&rec.bytes])?;
        let mut p = self.pending.write();
        let g = std::mem::take(&mut p.group);
        let shares = member_shares(rec.stored_len, &g.lens);
        for (i, (key, (&len, share))) in g.keys.iter().zip(g.lens.iter().zip(shares)).enumerate() {
            let mut flags = Location::member_flags(rec.codec, i);
            if g.complete.contains(key) {
                flags |= FLAG_INDIRECT_COMPLETE;
            }
            let loc = Location {
                segment,
                offset,
                stored_len: share,
                raw_len: len,
                flags,
                generation: 0,
            };
            p.blocks.insert(*key, loc);
        }
        Ok(())
    }

    /// The decoded group record at `loc` (a member's entry), from the cache when `cached`
    /// and it is there; a fresh read is cached when `cached`.
    pub(crate) fn decoded_group(&self, loc: &Location, cached: bool) -> Result<Arc<DecodedGroup>> {
        let read = || -> Result<Arc<DecodedGroup>> {
            let seg = self.segment_file(loc.segment)?;
            let alg = crate::store::Store::hash_alg(self);
            Ok(Arc::new(segment::read_group(
                &*seg.file, &seg.name, loc.offset, alg,
            )?))
        };
        if !cached {
            return read();
        }
        let slot = self.groups.slot(loc.segment, loc.offset);
        let mut g = slot.lock();
        if let Some(g) = g.as_ref() {
            return Ok(g.clone());
        }
        let fresh = read()?;
        *g = Some(fresh.clone());
        Ok(fresh)
    }

    /// Member `hash` of the group at `loc`, checked (length and hashcode), passed to `f`.
    pub(crate) fn with_member<T>(
        &self,
        hash: &HashCode,
        loc: &Location,
        cached: bool,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<T> {
        let i = loc
            .group_member()
            .ok_or_else(|| Error::Index("not a group member".into()))?;
        let g = self.decoded_group(loc, cached)?;
        let name = || {
            self.segment_file(loc.segment)
                .map_or_else(|_| format!("segment #{}", loc.segment.0), |s| s.name)
        };
        match g.checked_member(i, hash, loc.raw_len, "", loc.offset) {
            Ok(data) => Ok(f(data)),
            Err(Error::Corrupt { offset, what, .. }) => Err(Error::corrupt(name(), offset, what)),
            Err(e) => Err(e),
        }
    }

    /// The bytes of `key` when it is in the open group.
    pub(crate) fn open_member(&self, key: &IndexKey) -> Option<Vec<u8>> {
        self.pending.read().group.get(key).map(<[u8]>::to_vec)
    }
}
