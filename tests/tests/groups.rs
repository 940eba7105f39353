//! Group records: small blocks written together in one compressed record, each keeping
//! its own index entry. Dedup, read-your-writes, commit/abort, batched reads, reindex,
//! corruption reports and GC compaction with grouped blocks.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use vt_engine::gc::{self, GcOptions};
use vt_engine::store::datadir::{DataDir, DataDirOptions};
use vt_engine::{BlockRef, Error, HashAlg, HashCode, Store};
use vt_tests::flip_byte;

/// Groups of about 4 KiB; blocks of 1000 bytes and more get their own record.
fn opts() -> DataDirOptions {
    DataDirOptions {
        index_cache_bytes: 8 << 20,
        segment_size: 40_000,
        group_max_block: 1000,
        group_bytes: 4000,
        ..DataDirOptions::default()
    }
}

/// Text-like blocks of 40..1400 bytes (about a third too long to be grouped).
fn block(i: u64) -> Vec<u8> {
    let len = 40 + (i * 7919 % 1360) as usize;
    let words = ["alpha ", "beta ", "gamma ", "delta "];
    let mut v = format!("block {i}: ").into_bytes();
    let mut j = i;
    while v.len() < len {
        v.extend_from_slice(words[(j % 4) as usize].as_bytes());
        j = j
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            >> 7;
    }
    v.truncate(len);
    v
}

fn hash(i: u64) -> HashCode {
    HashAlg::Blake3.hash(&block(i))
}

fn check(s: &DataDir, r: std::ops::Range<u64>) {
    for i in r {
        assert_eq!(s.get(&hash(i)).unwrap(), Some(block(i)), "block {i}");
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn grouped_blocks_dedup_read_your_writes_commit_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let s = DataDir::create(&p, opts()).unwrap();
    for i in 0..200 {
        assert!(
            s.add_hashed(hash(i), &block(i)).unwrap(),
            "block {i} is new"
        );
        // A duplicate still in the open group, and one already sealed, write nothing.
        assert!(!s.add_hashed(hash(i), &block(i)).unwrap());
        assert!(!s.add_hashed(hash(i / 2), &block(i / 2)).unwrap());
        assert!(s.contains(&hash(i)).unwrap());
    }
    assert_eq!(s.len().unwrap(), 200);
    check(&s, 0..200);
    let before = s.info().unwrap();
    s.commit().unwrap();
    check(&s, 0..200);
    let info = s.info().unwrap();
    assert_eq!(info.blocks, 200);
    assert_eq!(before.blocks, 200);
    let logical: u64 = (0..200).map(|i| block(i).len() as u64).sum();
    assert_eq!(info.logical_bytes, logical);
    // Stored bytes are the payloads of every record (members count their shares).
    assert!(info.stored_bytes < logical / 2, "{info:?}");
    assert!(
        info.stored_bytes + 200 * 48 > info.segment_bytes / 2,
        "{info:?}"
    );
    assert_eq!(s.gc_info().unwrap().unindexed_bytes, 0);
    drop(s);
    let s = DataDir::open(&p, opts()).unwrap();
    check(&s, 0..200);
    assert!(!s.add_hashed(hash(7), &block(7)).unwrap());
    let r = s.verify().unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.blocks_checked, 200);
}

#[test]
fn hashcodes_and_completeness_cover_the_open_group() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let s = DataDir::create(&p, opts()).unwrap();
    s.add(&block(1)).unwrap();
    s.add(&block(2)).unwrap();
    let mut want = vec![hash(1), hash(2)];
    want.sort();
    assert_eq!(s.hashcodes(None, false, 10).unwrap(), want);
    assert_eq!(
        s.hashcodes(Some(&want[0]), true, 10).unwrap(),
        vec![want[1]]
    );
    s.set_complete(&hash(1)).unwrap();
    assert!(s.is_complete(&hash(1)).unwrap());
    assert!(!s.is_complete(&hash(2)).unwrap());
    s.commit().unwrap();
    drop(s);
    let s = DataDir::open(&p, opts()).unwrap();
    assert!(s.is_complete(&hash(1)).unwrap());
    assert!(!s.is_complete(&hash(2)).unwrap());
}

#[test]
fn abort_discards_open_and_sealed_groups() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let s = DataDir::create(&p, opts()).unwrap();
    for i in 0..30 {
        s.add(&block(i)).unwrap();
    }
    s.commit().unwrap();
    let size = |p: &Path| -> u64 {
        segments(p)
            .iter()
            .map(|f| f.metadata().unwrap().len())
            .sum()
    };
    let committed = size(&p);
    for i in 30..100 {
        s.add(&block(i)).unwrap();
    }
    check(&s, 30..100);
    s.abort().unwrap();
    assert_eq!(size(&p), committed);
    for i in 30..100 {
        assert_eq!(s.get(&hash(i)).unwrap(), None);
    }
    // New adds after the abort reuse the truncated offsets; reads must not see stale
    // decoded groups.
    for i in 1000..1070 {
        s.add(&block(i)).unwrap();
    }
    s.commit().unwrap();
    check(&s, 0..30);
    check(&s, 1000..1070);
    drop(s);
    let s = DataDir::open(&p, opts()).unwrap();
    check(&s, 1000..1070);
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn batched_reads_match_single_reads_across_groups_and_the_open_group() {
    let dir = tempfile::tempdir().unwrap();
    let s = DataDir::create(dir.path().join("s"), opts()).unwrap();
    for i in 0..150 {
        s.add(&block(i)).unwrap();
    }
    s.commit().unwrap();
    for i in 150..170 {
        s.add(&block(i)).unwrap();
    }
    // In order, reversed, and with repeats; committed, sealed-pending and open members.
    let mut order: Vec<u64> = (0..170).collect();
    order.extend((0..170).rev().step_by(3));
    order.extend([5, 5, 160, 5]);
    let hashes: Vec<HashCode> = order.iter().map(|&i| hash(i)).collect();
    let (mut buf, mut ranges) = (Vec::new(), Vec::new());
    s.get_many_into(&hashes, &mut buf, &mut ranges).unwrap();
    assert_eq!(ranges.len(), order.len());
    for (r, &i) in ranges.iter().zip(&order) {
        assert_eq!(&buf[r.clone()], &block(i)[..], "block {i}");
    }
    let mut one = Vec::new();
    for &i in &order {
        let n = s.get_into(&hash(i), &mut one).unwrap().unwrap();
        assert_eq!(&one[..n], &block(i)[..]);
    }
    let missing = [hash(1), HashAlg::Blake3.hash(b"absent")];
    assert!(matches!(
        s.get_many_into(&missing, &mut buf, &mut ranges),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn reindex_rebuilds_group_members_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let s = DataDir::create(&p, opts()).unwrap();
    for i in 0..120 {
        s.add(&block(i)).unwrap();
    }
    s.commit().unwrap();
    let before = s.info().unwrap();
    let locs: Vec<_> = (0..120).map(|i| s.locate(&hash(i)).unwrap()).collect();
    let report = s.reindex().unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(report.blocks, 120);
    let after = s.info().unwrap();
    assert_eq!(
        (after.blocks, after.stored_bytes, after.logical_bytes),
        (before.blocks, before.stored_bytes, before.logical_bytes)
    );
    let again: Vec<_> = (0..120).map(|i| s.locate(&hash(i)).unwrap()).collect();
    assert_eq!(again, locs);
    check(&s, 0..120);
}

/// The segment and group record holding block `i`, and the blocks sharing that record.
fn group_of(s: &DataDir, i: u64, n: u64) -> (String, u64, Vec<u64>) {
    let (seg, off) = s.locate(&hash(i)).unwrap().unwrap();
    let members = (0..n)
        .filter(|&j| s.locate(&hash(j)).unwrap() == Some((seg.clone(), off)))
        .collect();
    (seg, off, members)
}

#[test]
fn a_corrupt_group_fails_its_members_and_is_reported_per_member() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let s = DataDir::create(&p, opts()).unwrap();
    for i in 0..100 {
        s.add(&block(i)).unwrap();
    }
    s.commit().unwrap();
    // Block 0 is short (40 bytes): grouped.
    let (seg, off, members) = group_of(&s, 0, 100);
    assert!(members.len() > 2, "{members:?}");
    drop(s);
    flip_byte(&p.join("data").join(&seg), off + 60);
    let s = DataDir::open(&p, opts()).unwrap();
    for i in 0..100 {
        let got = s.get(&hash(i));
        if members.contains(&i) {
            match got {
                Err(Error::Corrupt {
                    location, offset, ..
                }) => assert_eq!((location.as_str(), offset), (seg.as_str(), off)),
                other => panic!("block {i}: {other:?}"),
            }
            let (mut buf, mut ranges) = (Vec::new(), Vec::new());
            assert!(s.get_many_into(&[hash(i)], &mut buf, &mut ranges).is_err());
        } else {
            assert_eq!(got.unwrap(), Some(block(i)), "block {i}");
        }
    }
    let report = s.verify().unwrap();
    assert_eq!(report.corrupt.len(), members.len(), "{report:?}");
    for (c, m) in report.corrupt.iter().zip(0..) {
        assert_eq!((c.segment.as_str(), c.offset), (seg.as_str(), off));
        assert!(c.what.contains(&format!("group member {m}")), "{c:?}");
    }
    // Reindex skips the bad group and keeps everything else.
    let r = s.reindex().unwrap();
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    assert_eq!(r.blocks, 100 - members.len() as u64);
    for i in (0..100).filter(|i| !members.contains(i)) {
        assert_eq!(s.get(&hash(i)).unwrap(), Some(block(i)));
    }
}

#[test]
fn gc_regroups_live_members_and_counts_dead_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let s = DataDir::create(&p, opts()).unwrap();
    let live = |i: u64| i.is_multiple_of(3);
    for i in 0..300 {
        s.add(&block(i)).unwrap();
        if i % 100 == 99 {
            s.commit().unwrap();
        }
    }
    for i in (0..300).filter(|&i| live(i)) {
        let r = BlockRef::Hash {
            hash: hash(i),
            span: block(i).len() as u64,
        };
        s.pin(&r.to_string()).unwrap();
    }
    // A new segment for later writes, so GC may compact everything written so far.
    let before: u64 = segments(&p)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    let o = GcOptions {
        grace: Duration::ZERO,
        threshold: 1.0,
        ..GcOptions::default()
    };
    let report = gc::run(&s, &o, None).unwrap();
    let ex = report.executed.expect("executed");
    assert!(ex.blocks_moved > 0, "{ex:?}");
    assert_eq!(ex.blocks_removed, 200, "{ex:?}");
    let after: u64 = segments(&p)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(after < before * 2 / 3, "{before} -> {after}");
    for i in 0..300 {
        let got = s.get(&hash(i)).unwrap();
        if live(i) {
            assert_eq!(got, Some(block(i)), "live block {i}");
        } else {
            assert_eq!(got, None, "dead block {i}");
        }
    }
    let v = s.verify().unwrap();
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(s.gc_info().unwrap().unindexed_bytes, 0);
    // Regrouped: live short blocks share records again.
    let (_, _, members) = group_of(&s, 0, 300);
    assert!(members.len() > 1, "{members:?}");
    drop(s);
    let s = DataDir::open(&p, opts()).unwrap();
    let r = s.reindex().unwrap();
    assert!(r.skipped.is_empty());
    assert_eq!(r.blocks, s.len().unwrap());
    for i in (0..300).filter(|&i| live(i)) {
        assert_eq!(s.get(&hash(i)).unwrap(), Some(block(i)));
    }
}

#[test]
fn concurrent_adders_share_groups_without_losing_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(DataDir::create(dir.path().join("s"), opts()).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    // Overlapping ranges: threads race to add the same blocks.
                    let b = (i * 3 + t) % 400;
                    s.add(&block(b)).unwrap();
                    assert_eq!(s.get(&hash(b)).unwrap(), Some(block(b)));
                    if i % 50 == 49 {
                        s.commit().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    s.commit().unwrap();
    let n = (0..400u64)
        .filter(|b| (0..4).any(|t| (0..200).any(|i| (i * 3 + t) % 400 == *b)))
        .count() as u64;
    assert_eq!(s.len().unwrap(), n);
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn a_store_written_by_format_1_stays_readable_and_gets_groups_in_new_segments() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let plain = DataDirOptions {
        group_max_block: 0,
        ..opts()
    };
    let s = DataDir::create(&p, plain).unwrap();
    for i in 0..20 {
        s.add(&block(i)).unwrap();
    }
    s.commit().unwrap();
    drop(s);
    // What version 1 wrote: the same records under a version-1 header.
    let seg = segments(&p).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
    let crc = crc32(&bytes[..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    let s = DataDir::open(&p, opts()).unwrap();
    check(&s, 0..20);
    for i in 20..60 {
        s.add(&block(i)).unwrap();
    }
    s.commit().unwrap();
    // The version-1 file is left as it was; new records went to a new segment.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    assert!(segments(&p).len() > 1);
    drop(s);
    let s = DataDir::open(&p, opts()).unwrap();
    check(&s, 0..60);
    assert!(s.verify().unwrap().is_ok());
    assert_eq!(s.reindex().unwrap().blocks, 60);
}

/// CRC-32 (IEEE), bit by bit: enough for a 12-byte header.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}
