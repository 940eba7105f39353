//! DataDir's batched read path: many blocks per call, and neighbouring records (as a
//! sequential save writes them) fetched with one read. Every record is still checked
//! (header, hashcode, lengths, crc) before its bytes are handed out.

use super::datadir::DataDir;
use crate::error::{Error, Result};
use crate::hash::HashCode;
use crate::index::{key_of, IndexKey, Location, FLAG_GROUP, FLAG_LEGACY};
use crate::segment::{self, Codec, REC_FIXED_LEN};
use std::ops::Range;

/// Longest run of neighbouring records read with one call.
const MAX_RUN: u64 = 4 << 20;

/// Bytes of the version-1 record of `hash` whose index entry is `loc`.
fn record_len(hash: &HashCode, loc: &Location) -> u64 {
    (REC_FIXED_LEN + hash.alg().digest_len()) as u64 + u64::from(loc.stored_len)
}

/// True when `next` is a version-1 block record starting at `end` of segment `of`.
fn continues(of: &Location, end: u64, next: &Location) -> bool {
    next.segment == of.segment && next.offset == end && next.flags & (FLAG_LEGACY | FLAG_GROUP) == 0
}

impl DataDir {
    /// See [`crate::Store::get_many_into`].
    pub(crate) fn read_many(
        &self,
        hashes: &[HashCode],
        buf: &mut Vec<u8>,
        ranges: &mut Vec<Range<usize>>,
    ) -> Result<()> {
        ranges.clear();
        let keys: Vec<IndexKey> = hashes.iter().map(key_of).collect();
        let locs = self.lookup_many(&keys)?;
        let (mut i, mut pos) = (0, 0);
        while i < hashes.len() {
            let Some(loc) = locs[i] else {
                // Not indexed yet: maybe in the open group.
                let data = self
                    .open_member(&keys[i])
                    .ok_or(Error::NotFound(hashes[i]))?;
                segment::grow(buf, pos + data.len());
                buf[pos..pos + data.len()].copy_from_slice(&data);
                ranges.push(pos..pos + data.len());
                pos += data.len();
                i += 1;
                continue;
            };
            if loc.group_member().is_some() {
                // Neighbouring members find their group decoded in the cache.
                let n = self.with_member(&hashes[i], &loc, true, |data| {
                    segment::grow(buf, pos + data.len());
                    buf[pos..pos + data.len()].copy_from_slice(data);
                    data.len()
                })?;
                ranges.push(pos..pos + n);
                pos += n;
                i += 1;
                continue;
            }
            if loc.flags & FLAG_LEGACY != 0 {
                let data = self.read_block(&hashes[i], &loc)?;
                segment::grow(buf, pos + data.len());
                buf[pos..pos + data.len()].copy_from_slice(&data);
                ranges.push(pos..pos + data.len());
                pos += data.len();
                i += 1;
                continue;
            }
            let mut end = loc.offset + record_len(&hashes[i], &loc);
            let mut j = i + 1;
            while let Some(Some(next)) = locs.get(j) {
                let next_end = end + record_len(&hashes[j], next);
                if !continues(&loc, end, next) || next_end - loc.offset > MAX_RUN {
                    break;
                }
                end = next_end;
                j += 1;
            }
            pos = self.read_run(&hashes[i..j], &locs[i..j], buf, pos, ranges)?;
            i = j;
        }
        Ok(())
    }

    /// Reads the neighbouring records of `hashes` (all present, at `locs`) into `buf` at
    /// `pos` with one read, checks each, and pushes each block's range. Compressed blocks
    /// are decoded after the run. Returns where the next free byte of `buf` is.
    fn read_run(
        &self,
        hashes: &[HashCode],
        locs: &[Option<Location>],
        buf: &mut Vec<u8>,
        pos: usize,
        ranges: &mut Vec<Range<usize>>,
    ) -> Result<usize> {
        let first = locs[0].ok_or(Error::NotFound(hashes[0]))?;
        let seg = self.segment_file(first.segment)?;
        let lens: Vec<usize> = hashes
            .iter()
            .zip(locs)
            .map(|(h, l)| l.map_or(0, |l| record_len(h, &l) as usize))
            .collect();
        let run: usize = lens.iter().sum();
        segment::grow(buf, pos + run);
        seg.file
            .read_at(&mut buf[pos..pos + run], first.offset)
            .map_err(|e| {
                Error::corrupt(&seg.name, first.offset, format!("cannot read record: {e}"))
            })?;
        let (mut at, mut tail) = (pos, pos + run);
        for ((hash, loc), len) in hashes.iter().zip(locs).zip(lens) {
            let loc = loc.ok_or(Error::NotFound(*hash))?;
            let (hdr, payload) = segment::check_record(
                &buf[at..at + len],
                &seg.name,
                loc.offset,
                hash,
                loc.stored_len,
            )?;
            if hdr.raw_len != loc.raw_len {
                return Err(Error::corrupt(
                    &seg.name,
                    loc.offset,
                    format!("block is {} bytes, index says {}", hdr.raw_len, loc.raw_len),
                ));
            }
            let payload = at + payload.start..at + payload.end;
            if hdr.codec == Codec::None {
                ranges.push(payload);
            } else {
                let n = hdr.raw_len as usize;
                segment::grow(buf, tail + n);
                let (src, dst) = buf.split_at_mut(tail);
                segment::decompress_to_slice(hdr.codec, &src[payload], hdr.raw_len, &mut dst[..n])
                    .map_err(|w| Error::corrupt(&seg.name, loc.offset, w))?;
                ranges.push(tail..tail + n);
                tail += n;
            }
            at += len;
        }
        Ok(tail)
    }
}
