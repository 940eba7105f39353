//! Packed rows: a block table holds its entries in buckets, one redb row per non-empty
//! bucket, keyed by the bucket's number (u64). A table of n entries has about
//! n / [`ROW_TARGET`] buckets, each covering an equal share of the key space (the top 64
//! bits of the key, scaled), so bucket numbers follow key order and a row holds about
//! [`ROW_TARGET`] entries, sorted. A lookup is one redb `get` of the key's bucket and a
//! binary search in its row; a merge copies entries into rows instead of inserting them
//! one by one into a B-tree (index version 3, see `docs/format.md`).

use super::{cursor_err, Entry, IndexKey, KEY_LEN, LOCATION_LEN};
use crate::error::{Error, Result};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use std::cmp::Ordering;
use std::ops::Bound;

/// Bytes of one entry in a row: the key, then the encoded location.
pub const ENTRY_LEN: usize = KEY_LEN + LOCATION_LEN;
/// Entries per bucket on average: a row of up to 71 entries and its key fit one 4 KiB redb
/// leaf page (4-byte page header, a 4-byte value end offset, the 8-byte key, the value);
/// with 55 on average (Poisson spread), about 1 row in 60 is larger and takes 8 KiB.
pub const ROW_TARGET: u64 = 55;
const _: () = assert!(4 + 4 + 8 + 71 * ENTRY_LEN <= 4096);
/// A GC retire rewrites at most this many rows in place; past it the table is rewritten
/// by streaming (bounded memory whatever share of the entries goes).
/// (Unit tests lower it so that small tables take both paths.)
const RETAIN_IN_PLACE_ROWS: usize = if cfg!(test) { 3 } else { 4096 };

/// A packed block table's definition.
pub(super) type RowsDef<'a> = TableDefinition<'a, u64, &'static [u8]>;
/// A packed block table opened for writing.
pub(super) type RowsTable<'txn> = Table<'txn, u64, &'static [u8]>;

/// The definition of the packed block table `name`.
pub(super) fn rows_def(name: &str) -> RowsDef<'_> {
    TableDefinition::new(name)
}

/// Buckets for a table of `n` entries.
pub(super) fn buckets_for(n: u64) -> u64 {
    (n / ROW_TARGET).max(1)
}

/// The bucket of `key` among `buckets`: non-decreasing in key order.
pub(super) fn bucket(key: &IndexKey, buckets: u64) -> u64 {
    ((u128::from(prefix(key)) * u128::from(buckets)) >> 64) as u64
}

/// Entries in `row`; fails unless it holds one or more whole entries.
fn row_len(row: &[u8]) -> Result<usize> {
    let n = row.len() / ENTRY_LEN;
    if !row.len().is_multiple_of(ENTRY_LEN) || n == 0 {
        return Err(Error::Index(format!(
            "corrupt index row of {} bytes",
            row.len()
        )));
    }
    Ok(n)
}

fn key_at(row: &[u8], i: usize) -> &[u8] {
    &row[i * ENTRY_LEN..i * ENTRY_LEN + KEY_LEN]
}

fn entry_at(row: &[u8], i: usize) -> Entry {
    let e = &row[i * ENTRY_LEN..(i + 1) * ENTRY_LEN];
    let mut k = [0u8; KEY_LEN];
    let mut v = [0u8; LOCATION_LEN];
    k.copy_from_slice(&e[..KEY_LEN]);
    v.copy_from_slice(&e[KEY_LEN..]);
    (k, v)
}

/// The first 8 bytes of a key as a number (same order as the bytes).
fn prefix(key: &[u8]) -> u64 {
    let mut top = [0u8; 8];
    top.copy_from_slice(&key[..8]);
    u64::from_be_bytes(top)
}

/// `Ok(i)`: `key` is entry `i` of `row`; `Err(i)`: it would go before entry `i`.
fn position(row: &[u8], key: &IndexKey) -> Result<std::result::Result<usize, usize>> {
    let (mut lo, mut hi) = (0, row_len(row)?);
    let top = prefix(key);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let k = key_at(row, mid);
        // Digests rarely share 8 bytes: an integer compare settles almost every step.
        match prefix(k).cmp(&top).then_with(|| k.cmp(&key[..])) {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => return Ok(Ok(mid)),
        }
    }
    Ok(Err(lo))
}

/// The encoded location of `key` in the table `t` of `buckets` buckets.
pub(super) fn get<T: ReadableTable<u64, &'static [u8]>>(
    t: &T,
    buckets: u64,
    key: &IndexKey,
) -> Result<Option<[u8; LOCATION_LEN]>> {
    let Some(row) = t.get(bucket(key, buckets))? else {
        return Ok(None);
    };
    let row = row.value();
    Ok(position(row, key)?.ok().map(|i| entry_at(row, i).1))
}

/// The entries of a table in key order, from a start key on.
pub(super) struct Entries<'a> {
    rows: redb::Range<'a, u64, &'static [u8]>,
    row: Vec<u8>,
    next: usize,
    /// Entries before this key (in the first row) are skipped.
    start: Option<IndexKey>,
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if (self.next + 1) * ENTRY_LEN <= self.row.len() {
                let e = entry_at(&self.row, self.next);
                self.next += 1;
                match self.start {
                    Some(s) if e.0 < s => continue,
                    Some(_) => self.start = None,
                    None => {}
                }
                return Some(Ok(e));
            }
            let row = match self.rows.next()? {
                Ok((_, row)) => row,
                Err(e) => return Some(Err(e.into())),
            };
            let row = row.value();
            if let Err(e) = row_len(row) {
                return Some(Err(e));
            }
            self.row.clear();
            self.row.extend_from_slice(row);
            self.next = 0;
        }
    }
}

/// The entries of `t` (of `buckets` buckets) in key order, from `start` (inclusive) or
/// from the first.
pub(super) fn entries<'a, T: ReadableTable<u64, &'static [u8]>>(
    t: &'a T,
    buckets: u64,
    start: Option<&IndexKey>,
) -> Result<Entries<'a>> {
    let from = start.map_or(0, |s| bucket(s, buckets));
    Ok(Entries {
        rows: t.range::<u64>(from..)?,
        row: Vec::new(),
        next: 0,
        start: start.copied(),
    })
}

/// Writes sorted entries (strictly increasing keys) into the new, empty table `name` of
/// `buckets` buckets, one row per non-empty bucket appended through a cursor; returns how
/// many were written.
pub(super) fn write_sorted(
    txn: &WriteTransaction,
    name: &str,
    buckets: u64,
    entries: impl Iterator<Item = Result<Entry>>,
) -> Result<u64> {
    let mut t = txn.open_table(rows_def(name))?;
    let mut cur = t.upper_bound_mut(Bound::<u64>::Unbounded)?;
    let mut row = Vec::with_capacity(2 * ROW_TARGET as usize * ENTRY_LEN);
    let mut row_bucket = 0;
    let mut n = 0u64;
    for e in entries {
        let (k, v) = e?;
        let b = bucket(&k, buckets);
        if b != row_bucket && !row.is_empty() {
            cur.insert_before(row_bucket, row.as_slice())
                .map_err(cursor_err)?;
            row.clear();
        }
        row_bucket = b;
        row.extend_from_slice(&k);
        row.extend_from_slice(&v);
        n += 1;
    }
    if !row.is_empty() {
        cur.insert_before(row_bucket, row.as_slice())
            .map_err(cursor_err)?;
    }
    cur.close()?;
    Ok(n)
}

/// One entry found for update: change its location with [`Found::set`], then
/// [`Found::store`] its row.
pub(super) struct Found {
    bucket: u64,
    row: Vec<u8>,
    at: usize,
}

impl Found {
    /// The entry's encoded location.
    pub(super) fn loc(&self) -> [u8; LOCATION_LEN] {
        entry_at(&self.row, self.at).1
    }

    /// Replaces the entry's location (in the copy; see [`Found::store`]).
    pub(super) fn set(&mut self, loc: [u8; LOCATION_LEN]) {
        let off = self.at * ENTRY_LEN + KEY_LEN;
        self.row[off..off + LOCATION_LEN].copy_from_slice(&loc);
    }

    /// Writes the row back.
    pub(super) fn store(self, t: &mut RowsTable<'_>) -> Result<()> {
        t.insert(self.bucket, self.row.as_slice())?;
        Ok(())
    }
}

/// The row holding `key` in `t` (of `buckets` buckets), for an update.
pub(super) fn find(t: &RowsTable<'_>, buckets: u64, key: &IndexKey) -> Result<Option<Found>> {
    let bucket = bucket(key, buckets);
    let Some(row) = t.get(bucket)? else {
        return Ok(None);
    };
    let row = row.value();
    Ok(position(row, key)?.ok().map(|at| Found {
        bucket,
        row: row.to_vec(),
        at,
    }))
}

/// Removes from the table `name` (of `buckets` buckets) every entry whose location
/// `gone` says is gone, calling `removed` once for each; returns the entries left and the
/// table's buckets. `tmp` names a scratch table for when so many rows change that the
/// table is rewritten (with buckets for what is left) instead of edited in place.
pub(super) fn retain(
    txn: &WriteTransaction,
    name: &str,
    tmp: &str,
    buckets: u64,
    gone: impl Fn(&[u8; LOCATION_LEN]) -> bool,
    mut removed: impl FnMut(&[u8; LOCATION_LEN]),
) -> Result<(u64, u64)> {
    let mut kept = 0u64;
    let mut changed: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut overflow = false;
    {
        let t = txn.open_table(rows_def(name))?;
        for item in t.range::<u64>(..)? {
            let (b, row) = item?;
            let row = row.value();
            let n = row_len(row)?;
            let goes = (0..n).filter(|&i| gone(&entry_at(row, i).1)).count();
            kept += (n - goes) as u64;
            if goes > 0 && !overflow {
                overflow = changed.len() == RETAIN_IN_PLACE_ROWS;
                if overflow {
                    changed = Vec::new();
                } else {
                    changed.push((b.value(), row.to_vec()));
                }
            }
        }
    }
    if overflow {
        let new_buckets = buckets_for(kept);
        let t = txn.open_table(rows_def(name))?;
        let left = entries(&t, buckets, None)?.filter(|e| match e {
            Ok((_, v)) if gone(v) => {
                removed(v);
                false
            }
            _ => true,
        });
        write_sorted(txn, tmp, new_buckets, left)?;
        drop(t);
        txn.delete_table(rows_def(name))?;
        txn.rename_table(rows_def(tmp), rows_def(name))?;
        return Ok((kept, new_buckets));
    }
    let mut t = txn.open_table(rows_def(name))?;
    for (b, row) in changed {
        let mut left = Vec::with_capacity(row.len());
        for i in 0..row.len() / ENTRY_LEN {
            let (k, v) = entry_at(&row, i);
            if gone(&v) {
                removed(&v);
            } else {
                left.extend_from_slice(&k);
                left.extend_from_slice(&v);
            }
        }
        if left.is_empty() {
            t.remove(b)?;
        } else {
            t.insert(b, left.as_slice())?;
        }
    }
    Ok((kept, buckets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The key made of byte `k`, with its first `shared` bytes zero.
    fn key_of_byte(k: u8, shared: usize) -> IndexKey {
        let mut key = [k; KEY_LEN];
        key[..shared].fill(0);
        key
    }

    fn row_of(keys: &[u8], shared: usize) -> Vec<u8> {
        let mut row = Vec::new();
        for &k in keys {
            row.extend_from_slice(&key_of_byte(k, shared));
            row.extend_from_slice(&[k ^ 0xff; LOCATION_LEN]);
        }
        row
    }

    #[test]
    fn malformed_rows_are_errors() {
        for len in [0, 1, ENTRY_LEN - 1, ENTRY_LEN + 1, 3 * ENTRY_LEN - 2] {
            assert!(position(&vec![0u8; len], &[0; KEY_LEN]).is_err(), "{len}");
        }
    }

    proptest! {
        #[test]
        fn buckets_follow_key_order_and_stay_in_range(
            a in proptest::array::uniform32(any::<u8>()),
            b in proptest::array::uniform32(any::<u8>()),
            n in 0u64..(1 << 40),
        ) {
            let key = |d: [u8; 32]| {
                let mut k = [0u8; KEY_LEN];
                k[..32].copy_from_slice(&d);
                k
            };
            let (lo, hi) = if key(a) <= key(b) { (key(a), key(b)) } else { (key(b), key(a)) };
            let buckets = buckets_for(n);
            prop_assert!(bucket(&lo, buckets) <= bucket(&hi, buckets));
            prop_assert!(bucket(&hi, buckets) < buckets);
            prop_assert_eq!(bucket(&[0xff; KEY_LEN], buckets), buckets - 1);
            prop_assert_eq!(bucket(&[0; KEY_LEN], buckets), 0);
        }

        #[test]
        fn position_agrees_with_a_linear_scan(
            mut keys in proptest::collection::btree_set(1u8..255, 1..100),
            probe in any::<u8>(),
            shared in 0usize..12,
        ) {
            let keys: Vec<u8> = std::mem::take(&mut keys).into_iter().collect();
            // Keys that share their first 8 bytes or more are ordered by the rest.
            let row = row_of(&keys, shared);
            let want = match keys.iter().position(|&k| k >= probe) {
                Some(i) if keys[i] == probe => Ok(i),
                Some(i) => Err(i),
                None => Err(keys.len()),
            };
            prop_assert_eq!(position(&row, &key_of_byte(probe, shared)).unwrap(), want);
            if let Ok(i) = want {
                prop_assert_eq!(entry_at(&row, i), (key_of_byte(probe, shared), [probe ^ 0xff; LOCATION_LEN]));
            }
        }
    }
}
