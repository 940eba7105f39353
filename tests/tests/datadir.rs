//! DataDir store: round trips, transactions, segments, concurrency, processes, cs.vt stores.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vt_engine::store::datadir::{import_legacy, DataDir, DataDirOptions};
use vt_engine::{Error, HashAlg, HashCode, Store};

fn opts() -> DataDirOptions {
    DataDirOptions {
        index_cache_bytes: 16 << 20,
        ..DataDirOptions::default()
    }
}

/// Deterministic test blocks: even ones compress well, odd ones do not.
fn block(i: u64) -> Vec<u8> {
    let len = 100 + (i * 7919 % 5000) as usize;
    if i.is_multiple_of(2) {
        format!("block {i} says hello. ")
            .into_bytes()
            .repeat(len / 20 + 1)
    } else {
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }
}

fn add_range(s: &DataDir, r: std::ops::Range<u64>) -> Vec<HashCode> {
    r.map(|i| s.add(&block(i)).unwrap()).collect()
}

fn check_all(s: &DataDir, r: std::ops::Range<u64>) {
    for i in r {
        let h = HashAlg::Blake3.hash(&block(i));
        assert_eq!(
            s.get(&h).unwrap().as_deref(),
            Some(&block(i)[..]),
            "block {i}"
        );
    }
}

#[test]
fn add_get_commit_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store");
    let s = DataDir::create(&p, opts()).unwrap();
    let hashes = add_range(&s, 0..200);
    // Read-your-writes before the commit.
    check_all(&s, 0..200);
    assert_eq!(s.len().unwrap(), 200);
    assert!(!s.add_hashed(hashes[3], &block(3)).unwrap(), "dedup");
    s.commit().unwrap();
    let info = s.info().unwrap();
    assert_eq!(info.blocks, 200);
    assert!(
        info.stored_bytes < info.logical_bytes,
        "compression saved nothing: {info:?}"
    );
    assert!(info.index_bytes > 0);
    drop(s);
    let s = DataDir::open(&p, opts()).unwrap();
    check_all(&s, 0..200);
    let before = s.info().unwrap();
    add_range(&s, 0..200);
    s.commit().unwrap();
    assert_eq!(
        s.info().unwrap().segment_bytes,
        before.segment_bytes,
        "a present block wrote bytes"
    );
    assert!(!s.contains(&HashAlg::Blake3.hash(b"absent")).unwrap());
    assert_eq!(s.get(&HashAlg::Blake3.hash(b"absent")).unwrap(), None);
}

#[test]
fn hashcodes_are_ordered_and_page_across_pending_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let s = DataDir::create(dir.path().join("s"), opts()).unwrap();
    let mut all: Vec<HashCode> = add_range(&s, 0..50);
    s.commit().unwrap();
    all.extend(add_range(&s, 50..90));
    all.sort();
    let mut got = Vec::new();
    let mut start = None;
    loop {
        let page = s.hashcodes(start.as_ref(), true, 7).unwrap();
        let Some(last) = page.last().copied() else {
            break;
        };
        got.extend(page);
        start = Some(last);
    }
    assert_eq!(got, all);
    assert_eq!(
        s.hashcodes(Some(&all[10]), false, 2).unwrap(),
        all[10..12].to_vec()
    );
    assert_eq!(
        s.hashcodes(Some(&all[10]), true, 2).unwrap(),
        all[11..13].to_vec()
    );
}

#[test]
fn abort_discards_and_truncates() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let s = DataDir::create(
        &p,
        DataDirOptions {
            segment_size: 8192,
            ..opts()
        },
    )
    .unwrap();
    add_range(&s, 0..10);
    s.commit().unwrap();
    let committed = s.info().unwrap();
    let extra = add_range(&s, 10..40);
    s.abort().unwrap();
    assert!(extra.iter().all(|h| !s.contains(h).unwrap()));
    assert_eq!(s.info().unwrap(), committed);
    add_range(&s, 40..45);
    s.commit().unwrap();
    drop(s);
    let s = DataDir::open(&p, opts()).unwrap();
    check_all(&s, 0..10);
    check_all(&s, 40..45);
    assert!(extra.iter().all(|h| s.get(h).unwrap().is_none()));
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn segments_roll_over() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let o = DataDirOptions {
        segment_size: 20_000,
        compression_level: 0,
        ..opts()
    };
    let s = DataDir::create(&p, o.clone()).unwrap();
    add_range(&s, 0..60);
    s.commit().unwrap();
    add_range(&s, 60..100);
    s.commit().unwrap();
    let info = s.info().unwrap();
    assert!(info.segments > 5, "{info:?}");
    drop(s);
    let files = std::fs::read_dir(p.join("data")).unwrap().count() as u64;
    assert_eq!(files, info.segments);
    let s = DataDir::open(&p, o).unwrap();
    check_all(&s, 0..100);
    assert_eq!(s.verify().unwrap().blocks_checked, 100);
}

#[test]
fn concurrent_adders_dedup_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(DataDir::create(dir.path().join("s"), opts()).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            // Overlapping ranges: every block is added by two threads.
            std::thread::spawn(move || add_range(&s, t * 100..t * 100 + 200).len())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    s.commit().unwrap();
    assert_eq!(s.len().unwrap(), 500);
    check_all(&s, 0..500);
    let report = s.verify().unwrap();
    assert!(report.is_ok() && report.blocks_checked == 500, "{report:?}");
}

#[test]
fn readers_run_while_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(DataDir::create(dir.path().join("s"), opts()).unwrap());
    add_range(&s, 0..100);
    s.commit().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rounds = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds == 0 {
                    check_all(&s, 0..100);
                    assert!(s.hashcodes(None, false, 1000).unwrap().len() >= 100);
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    for round in 1..10u64 {
        add_range(&s, round * 100..round * 100 + 100);
        s.commit().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    check_all(&s, 0..1000);
}

#[test]
fn completeness_flag_persists() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let s = DataDir::create(&p, opts()).unwrap();
    let h = add_range(&s, 0..3);
    s.set_complete(&h[0]).unwrap();
    s.commit().unwrap();
    s.set_complete(&h[1]).unwrap();
    assert!(s.is_complete(&h[1]).unwrap());
    s.commit().unwrap();
    assert!(matches!(
        s.set_complete(&HashAlg::Blake3.hash(b"nope")),
        Err(Error::NotFound(_))
    ));
    drop(s);
    let s = DataDir::open(&p, opts()).unwrap();
    assert!(s.is_complete(&h[0]).unwrap() && s.is_complete(&h[1]).unwrap());
    assert!(!s.is_complete(&h[2]).unwrap());
}

#[test]
fn reindex_rebuilds_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = DataDir::create(
        dir.path().join("s"),
        DataDirOptions {
            segment_size: 30_000,
            ..opts()
        },
    )
    .unwrap();
    add_range(&s, 0..150);
    s.commit().unwrap();
    let before = s.hashcodes(None, false, 10_000).unwrap();
    let report = s.reindex().unwrap();
    assert_eq!(report.blocks, 150);
    assert!(report.skipped.is_empty());
    assert_eq!(s.hashcodes(None, false, 10_000).unwrap(), before);
    check_all(&s, 0..150);
    add_range(&s, 150..160);
    s.commit().unwrap();
    check_all(&s, 0..160);
}

#[test]
fn read_only_handle_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    drop(DataDir::create(&p, opts()).unwrap());
    let r = DataDir::open(
        &p,
        DataDirOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(matches!(r.add(b"x"), Err(Error::Unsupported(_))));
    assert!(DataDir::open(dir.path().join("nothing"), opts()).is_err());
    assert!(
        DataDir::create(&p, opts()).is_err(),
        "create over an existing store"
    );
}

// ---- processes ----------------------------------------------------------

const CHILD_ENV: &str = "VT_DATADIR_TEST_CHILD";

/// Runs this test binary again, executing only `child_entry`, with `role` in the environment.
fn spawn_child(role: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child side of the multi-process tests; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (what, dir) = role.split_once(':').unwrap();
    let dir = PathBuf::from(dir);
    match what {
        "writer" => match DataDir::open(dir.join("s"), opts()) {
            Err(e @ Error::Locked { .. }) => println!("REFUSED: {e}"),
            Err(e) => println!("OTHER ERROR: {e}"),
            Ok(_) => println!("OPENED"),
        },
        "reader" => {
            let r = DataDir::open(
                dir.join("s"),
                DataDirOptions {
                    read_only: true,
                    ..opts()
                },
            )
            .unwrap();
            check_all(&r, 0..100);
            assert!(r.get(&HashAlg::Blake3.hash(&block(150))).unwrap().is_none());
            std::fs::write(dir.join("ready"), b"").unwrap();
            wait_for(&dir.join("go"));
            // The same handle now sees the writer's later commit.
            check_all(&r, 0..200);
            assert_eq!(r.len().unwrap(), 200);
            println!("READER OK");
        }
        _ => panic!("unknown role {what}"),
    }
}

#[test]
fn second_writer_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = DataDir::create(dir.path().join("s"), opts()).unwrap();
    let out = spawn_child(&format!("writer:{}", dir.path().display()))
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("REFUSED"), "{stdout}");
    assert!(
        stdout.contains(&format!("pid={}", std::process::id())),
        "holder not named: {stdout}"
    );
    // Same process, second handle: refused too (the lock is per open file).
    assert!(matches!(
        DataDir::open(dir.path().join("s"), opts()),
        Err(Error::Locked { .. })
    ));
    drop(s);
    let out = spawn_child(&format!("writer:{}", dir.path().display()))
        .wait_with_output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OPENED"),
        "lock not released"
    );
}

#[test]
fn reader_process_follows_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = DataDir::create(dir.path().join("s"), opts()).unwrap();
    add_range(&s, 0..100);
    s.commit().unwrap();
    let child = spawn_child(&format!("reader:{}", dir.path().display()));
    wait_for(&dir.path().join("ready"));
    add_range(&s, 100..200);
    s.commit().unwrap();
    std::fs::write(dir.path().join("go"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("READER OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- cs.vt DataDir -------------------------------------------------------

fn fixture_store() -> PathBuf {
    vt_tests::csvt_fixtures().join("datadir/store")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// Distinct blake3 hashes listed in the fixture's record table.
fn fixture_hashes() -> BTreeSet<HashCode> {
    let tsv =
        std::fs::read_to_string(vt_tests::csvt_fixtures().join("datadir/vtd-records.tsv")).unwrap();
    tsv.lines()
        .skip(1)
        .map(|l| {
            HashCode::parse_inner(&format!("blake3:{}", l.split('\t').nth(6).unwrap())).unwrap()
        })
        .collect()
}

#[test]
fn legacy_csvt_store_opens_read_only_without_modification() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("store");
    copy_dir(&fixture_store(), &copy);
    let before = snapshot(&copy);
    let s = DataDir::open(
        &copy,
        DataDirOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(s.hash_alg(), HashAlg::Blake3);
    let want = fixture_hashes();
    assert_eq!(want.len(), 68);
    assert_eq!(s.len().unwrap(), 68);
    let listed: BTreeSet<HashCode> = s
        .hashcodes(None, false, 1000)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(listed, want);
    for h in &want {
        let data = s.get_required(h).unwrap();
        assert!(h.matches(&data));
    }
    assert!(s.verify().unwrap().is_ok());
    drop(s);
    assert_eq!(snapshot(&copy), before, "read-only open modified the store");
}

#[test]
fn legacy_csvt_store_imports_into_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("legacy");
    copy_dir(&fixture_store(), &copy);
    let dest = DataDir::create(dir.path().join("new"), opts()).unwrap();
    assert_eq!(import_legacy(&copy, &dest).unwrap(), 68);
    assert_eq!(
        import_legacy(&copy, &dest).unwrap(),
        0,
        "second import adds nothing"
    );
    for h in fixture_hashes() {
        assert!(h.matches(&dest.get_required(&h).unwrap()));
    }
    assert!(dest.verify().unwrap().is_ok());
}

#[test]
fn legacy_csvt_store_opened_writable_is_indexed_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("store");
    copy_dir(&fixture_store(), &copy);
    let vtd = snapshot(&copy.join("data"));
    let s = DataDir::open(&copy, opts()).unwrap();
    assert_eq!(s.len().unwrap(), 68);
    let h = s
        .add(b"a new block in an old store, long enough to be worth a record")
        .unwrap();
    s.commit().unwrap();
    drop(s);
    let s = DataDir::open(&copy, opts()).unwrap();
    assert_eq!(s.len().unwrap(), 69);
    assert!(s.get(&h).unwrap().is_some());
    let legacy_after: Vec<_> = snapshot(&copy.join("data"))
        .into_iter()
        .filter(|(p, _)| vtd.iter().any(|(q, _)| q == p))
        .collect();
    assert_eq!(legacy_after, vtd, "legacy segment was modified");
}

/// `get_many_into` returns exactly what `get` does, for any order, repeats, pending and
/// committed blocks across segments, into a reused buffer; a missing block is NotFound.
#[test]
fn batched_reads_match_single_reads() {
    use proptest::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let small_segments = DataDirOptions {
        segment_size: 40_000,
        ..opts()
    };
    let s = DataDir::create(dir.path().join("s"), small_segments).unwrap();
    let mut hashes = add_range(&s, 0..60);
    s.commit().unwrap();
    hashes.extend(add_range(&s, 60..90)); // pending
    let missing = HashAlg::Blake3.hash(b"never stored");
    let scratch = std::cell::RefCell::new((Vec::new(), Vec::new()));
    let mut runner = proptest::test_runner::TestRunner::default();
    let picks = proptest::collection::vec((0usize..90, 0usize..3), 0..40);
    runner
        .run(&picks, |picks| {
            // Mostly runs of neighbours (as a save writes them), some jumps and repeats.
            let mut at = 0;
            let want: Vec<usize> = picks
                .iter()
                .map(|&(i, step)| {
                    at = if step == 0 { i } else { (at + step - 1) % 90 };
                    at
                })
                .collect();
            let hs: Vec<HashCode> = want.iter().map(|&i| hashes[i]).collect();
            let (buf, ranges) = &mut *scratch.borrow_mut();
            s.get_many_into(&hs, buf, ranges).unwrap();
            prop_assert_eq!(ranges.len(), want.len());
            for (r, &i) in ranges.iter().zip(&want) {
                prop_assert_eq!(&buf[r.clone()], &block(i as u64)[..]);
            }
            Ok(())
        })
        .unwrap();
    let with_missing = [hashes[0], missing, hashes[1]];
    let (buf, ranges) = &mut *scratch.borrow_mut();
    assert!(matches!(
        s.get_many_into(&with_missing, buf, ranges),
        Err(Error::NotFound(h)) if h == missing
    ));
}
