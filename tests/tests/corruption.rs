//! Bad bytes in segments are reported by segment and offset, never returned as data.

use std::path::Path;
use vt_engine::store::datadir::{DataDir, DataDirOptions};
use vt_engine::{Error, HashAlg, HashCode, Store};
use vt_tests::flip_byte;

fn opts() -> DataDirOptions {
    DataDirOptions {
        index_cache_bytes: 8 << 20,
        segment_size: 50_000,
        // One record per block: these tests corrupt single records (tests/groups.rs
        // corrupts group records).
        group_max_block: 0,
        ..DataDirOptions::default()
    }
}

fn block(i: u64) -> Vec<u8> {
    let text = format!("corruption test block {i} ").into_bytes();
    if i.is_multiple_of(2) {
        text.repeat(40)
    } else {
        (0..1500u64)
            .map(|j| (j.wrapping_mul(31) ^ i.wrapping_mul(977)) as u8)
            .collect()
    }
}

fn setup(dir: &Path, n: u64) -> Vec<HashCode> {
    let s = DataDir::create(dir.join("s"), opts()).unwrap();
    let hashes = (0..n).map(|i| s.add(&block(i)).unwrap()).collect();
    s.commit().unwrap();
    hashes
}

/// Corrupts the record of block `victim` at `delta` bytes into the record; checks the
/// report, the read error, and that every other block still reads.
fn corrupt_and_check(victim: u64, delta: u64) {
    let dir = tempfile::tempdir().unwrap();
    let hashes = setup(dir.path(), 60);
    let s = DataDir::open(dir.path().join("s"), opts()).unwrap();
    let (seg, off) = s.locate(&hashes[victim as usize]).unwrap().unwrap();
    drop(s);
    flip_byte(&dir.path().join("s/data").join(&seg), off + delta);

    let s = DataDir::open(dir.path().join("s"), opts()).unwrap();
    let report = s.verify().unwrap();
    assert_eq!(report.blocks_checked, 60);
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    let bad = &report.corrupt[0];
    assert_eq!(
        (bad.segment.as_str(), bad.offset),
        (seg.as_str(), off),
        "{bad:?}"
    );
    assert_eq!(bad.hash, Some(hashes[victim as usize]));
    match s.get(&hashes[victim as usize]) {
        Err(Error::Corrupt {
            location, offset, ..
        }) => assert_eq!((location, offset), (seg.clone(), off)),
        other => panic!("reading the corrupt block gave {other:?}"),
    }
    for (i, h) in hashes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 != victim)
    {
        assert_eq!(s.get(h).unwrap().unwrap(), block(i as u64), "block {i}");
    }
    check_batched_reads(&s, &hashes, victim, &seg, off);
}

/// The batched read path (neighbouring records in one read) reports the same record and
/// still returns every other block intact.
fn check_batched_reads(s: &DataDir, hashes: &[HashCode], victim: u64, seg: &str, off: u64) {
    let (mut buf, mut ranges) = (Vec::new(), Vec::new());
    match s.get_many_into(hashes, &mut buf, &mut ranges) {
        Err(Error::Corrupt {
            location, offset, ..
        }) => assert_eq!((location.as_str(), offset), (seg, off)),
        other => panic!("a batch with the corrupt block gave {other:?}"),
    }
    let (good, idx): (Vec<HashCode>, Vec<u64>) = hashes
        .iter()
        .zip(0u64..)
        .filter(|(_, i)| *i != victim)
        .map(|(h, i)| (*h, i))
        .unzip();
    s.get_many_into(&good, &mut buf, &mut ranges).unwrap();
    for (r, i) in ranges.iter().zip(idx) {
        assert_eq!(buf[r.clone()], block(i)[..], "block {i}");
    }
}

#[test]
fn flipped_payload_byte_is_reported() {
    corrupt_and_check(7, 60);
    corrupt_and_check(8, 60);
}

#[test]
fn flipped_header_byte_is_reported() {
    // Offsets 0..16 are the crc, lengths, codec and hashenum; 16.. the digest.
    for delta in [0, 5, 9, 12, 20] {
        corrupt_and_check(11, delta);
    }
}

#[test]
fn reindex_skips_a_corrupt_record_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let hashes = setup(dir.path(), 40);
    let s = DataDir::open(dir.path().join("s"), opts()).unwrap();
    let (seg, off) = s.locate(&hashes[5]).unwrap().unwrap();
    drop(s);
    // A length field: the scan loses framing there and must resynchronize.
    flip_byte(&dir.path().join("s/data").join(&seg), off + 5);
    let s = DataDir::open(dir.path().join("s"), opts()).unwrap();
    let report = s.reindex().unwrap();
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(
        (report.skipped[0].segment.as_str(), report.skipped[0].offset),
        (seg.as_str(), off)
    );
    assert_eq!(report.blocks, 39);
    assert_eq!(s.get(&hashes[5]).unwrap(), None);
    for (i, h) in hashes.iter().enumerate().filter(|(i, _)| *i != 5) {
        assert_eq!(s.get(h).unwrap().unwrap(), block(i as u64), "block {i}");
    }
    assert!(s.verify().unwrap().is_ok());
    // The lost block can be stored again.
    s.add(&block(5)).unwrap();
    s.commit().unwrap();
    assert_eq!(s.get(&hashes[5]).unwrap().unwrap(), block(5));
}

#[test]
fn truncated_committed_segment_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let hashes = setup(dir.path(), 30);
    let s = DataDir::open(dir.path().join("s"), opts()).unwrap();
    let (seg, off) = s.locate(&hashes[29]).unwrap().unwrap();
    drop(s);
    let path = dir.path().join("s/data").join(&seg);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(off + 10).unwrap();
    let s = DataDir::open(dir.path().join("s"), opts()).unwrap();
    assert!(matches!(s.get(&hashes[29]), Err(Error::Corrupt { .. })));
    let report = s.verify().unwrap();
    assert!(
        report
            .corrupt
            .iter()
            .any(|c| c.segment == seg && c.offset == off),
        "{report:?}"
    );
}

#[test]
fn legacy_record_corruption_is_caught_by_rehash() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("legacy");
    std::fs::create_dir_all(store.join("data")).unwrap();
    let mut seg = Vec::new();
    let blocks: Vec<Vec<u8>> = (0..5).map(block).collect();
    for b in &blocks {
        vt_engine::codec::put_bsuint(&mut seg, 0);
        vt_engine::codec::put_bsdata(&mut seg, b);
    }
    let name = "0b7a57c4-0000-4000-8000-000000000000.vtd";
    std::fs::write(store.join("data").join(name), &seg).unwrap();
    let s = DataDir::open(
        &store,
        DataDirOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    let victim = HashAlg::Blake3.hash(&blocks[2]);
    let (_, off) = s.locate(&victim).unwrap().unwrap();
    drop(s);
    // Open first, then corrupt: the in-memory index was built from good bytes.
    let s = DataDir::open(
        &store,
        DataDirOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    flip_byte(&store.join("data").join(name), off + 3);
    assert!(matches!(s.get(&victim), Err(Error::Corrupt { .. })));
    let all: Vec<HashCode> = blocks.iter().map(|b| HashAlg::Blake3.hash(b)).collect();
    let (mut buf, mut ranges) = (Vec::new(), Vec::new());
    assert!(matches!(
        s.get_many_into(&all, &mut buf, &mut ranges),
        Err(Error::Corrupt { .. })
    ));
    let report = s.verify().unwrap();
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].segment, name);
}
