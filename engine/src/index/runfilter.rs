//! Saved run filters: each run's Bloom filter kept in the `run_filters` table, written and
//! removed in the transactions that create and drop the run, so that a writable open
//! loads them instead of scanning the runs.
//!
//! Rows (layout in `docs/format.md`): `(run name, HEADER)` → the header below;
//! `(run name, c)` → words `c * FILTER_CHUNK_WORDS ..` of the filter, u64 LE. A saved
//! filter is used only when its header matches the run's current entry count, its rows
//! have the lengths the header implies and their checksum matches; anything else (files
//! written before run filters were saved, a torn or corrupt value) makes the open rebuild
//! that run's filter by scanning it.

use super::{filter_words, read_words, BloomStage, FILTER_CHUNK_WORDS, RUN_FILTER_BITS_PER_KEY};
use crate::error::Result;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use std::ops::{Bound, Range};
use std::sync::atomic::Ordering;

/// `(run name, chunk)` → bytes.
pub(super) const RUN_FILTERS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("run_filters");
/// Chunk number of a saved filter's header row.
pub const HEADER: u64 = u64::MAX;
/// Header: the run's entries when the filter was written (u64 LE).
const ENTRIES: Range<usize> = 0..8;
/// Header: the filter's capacity in keys (u64 LE).
const CAPACITY: Range<usize> = 8..16;
/// Header: the filter's length in words (u64 LE).
const WORDS: Range<usize> = 16..24;
/// Header: the first 16 bytes of the BLAKE3 hash of the words (as stored, LE).
const CHECKSUM: Range<usize> = 24..40;
/// Length of the header row.
pub const HEADER_LEN: usize = 40;

fn u64_at(v: &[u8], r: Range<usize>) -> Option<u64> {
    Some(u64::from_le_bytes(v.get(r)?.try_into().ok()?))
}

/// Saves `filter`, the filter of the run `name` holding `entries` entries, replacing any
/// rows saved under that name.
pub(super) fn save(
    txn: &WriteTransaction,
    name: &str,
    entries: u64,
    filter: &BloomStage,
) -> Result<()> {
    remove(txn, name)?;
    let mut t = txn.open_table(RUN_FILTERS)?;
    let mut hasher = blake3::Hasher::new();
    for (c, chunk) in filter.words.chunks(FILTER_CHUNK_WORDS).enumerate() {
        let bytes: Vec<u8> = chunk
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        hasher.update(&bytes);
        t.insert((name, c as u64), bytes.as_slice())?;
    }
    let mut header = [0u8; HEADER_LEN];
    header[ENTRIES].copy_from_slice(&entries.to_le_bytes());
    header[CAPACITY].copy_from_slice(&(filter.capacity as u64).to_le_bytes());
    header[WORDS].copy_from_slice(&(filter.words.len() as u64).to_le_bytes());
    header[CHECKSUM].copy_from_slice(&hasher.finalize().as_bytes()[..CHECKSUM.len()]);
    t.insert((name, HEADER), header.as_slice())?;
    Ok(())
}

/// Removes the rows saved for the run `name`, if any.
pub(super) fn remove(txn: &WriteTransaction, name: &str) -> Result<()> {
    let mut t = txn.open_table(RUN_FILTERS)?;
    t.retain_in((name, 0u64)..=(name, HEADER), |_, _| false)?;
    Ok(())
}

/// Records that the run `name` now holds `entries` entries, all of them among the keys
/// its saved filter was built from (a GC removed the others), so the filter stays valid.
pub(super) fn set_entries(txn: &WriteTransaction, name: &str, entries: u64) -> Result<()> {
    let mut t = txn.open_table(RUN_FILTERS)?;
    let Some(mut header) = t.get((name, HEADER))?.map(|g| g.value().to_vec()) else {
        return Ok(());
    };
    if header.len() == HEADER_LEN {
        header[ENTRIES].copy_from_slice(&entries.to_le_bytes());
        t.insert((name, HEADER), header.as_slice())?;
    }
    Ok(())
}

/// The saved filter of the run `name` if it is there and valid for a run of `entries`
/// entries; `None` means the caller must rebuild it.
pub(super) fn load(
    t: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    name: &str,
    entries: u64,
) -> Result<Option<BloomStage>> {
    let get =
        |c: u64| -> Result<Option<Vec<u8>>> { Ok(t.get((name, c))?.map(|g| g.value().to_vec())) };
    let Some(header) = get(HEADER)? else {
        return Ok(None);
    };
    let field = |r| u64_at(&header, r);
    let (Some(saved_entries), Some(capacity), Some(words)) =
        (field(ENTRIES), field(CAPACITY), field(WORDS))
    else {
        return Ok(None);
    };
    if header.len() != HEADER_LEN
        || saved_entries != entries
        || filter_words(capacity, RUN_FILTER_BITS_PER_KEY) != Some(words)
    {
        return Ok(None);
    }
    let Ok(capacity) = usize::try_from(capacity) else {
        return Ok(None);
    };
    let mut hasher = blake3::Hasher::new();
    let Some(bits) = read_words(words, get, |row| {
        hasher.update(row);
    })?
    else {
        return Ok(None);
    };
    if hasher.finalize().as_bytes()[..CHECKSUM.len()] != header[CHECKSUM] {
        return Ok(None);
    }
    Ok(Some(BloomStage::from_words(bits, capacity, entries)))
}

/// The run names that have saved rows, in order (one B-tree seek per name).
pub(super) fn names(
    t: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    loop {
        let next = match out.last() {
            None => t.first()?.map(|(k, _)| k.value().0.to_string()),
            Some(last) => {
                let from = (Bound::Excluded((last.as_str(), HEADER)), Bound::Unbounded);
                let mut range = t.range::<(&str, u64)>(from)?;
                match range.next() {
                    Some(item) => Some(item?.0.value().0.to_string()),
                    None => None,
                }
            }
        };
        match next {
            Some(n) => out.push(n),
            None => return Ok(out),
        }
    }
}
