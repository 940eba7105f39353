//! Garbage collection end to end: roots, refusal, grace period, retention + GC size,
//! restore after GC, the scheduler.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use vt_engine::archive::{Archive, ArchiveEntry};
use vt_engine::blockify::{blockify_bytes, BlockifyOptions};
use vt_engine::gc::retention::{self, Policy};
use vt_engine::gc::sched::{Scheduler, SchedulerConfig};
use vt_engine::gc::{self, GcOptions};
use vt_engine::store::datadir::{DataDir, DataDirOptions};
use vt_engine::store::StoreSink;
use vt_engine::tree::{self, Progress, TreeOptions};
use vt_engine::{BlockRef, Error, HashAlg};
use vt_tests::noise;

fn opts() -> DataDirOptions {
    DataDirOptions {
        index_cache_bytes: 16 << 20,
        segment_size: 256 << 10,
        ..DataDirOptions::default()
    }
}

fn store_bytes(s: &DataDir, data: &[u8]) -> BlockRef {
    let b = blockify_bytes(
        data,
        &StoreSink(s),
        &BlockifyOptions::with_hash_alg(HashAlg::Blake3),
    )
    .unwrap();
    s.commit().unwrap();
    b
}

fn now_gc() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        threshold: 1.0,
        ..GcOptions::default()
    }
}

fn segment_bytes(s: &DataDir) -> u64 {
    s.info().unwrap().segment_bytes
}

#[test]
fn unpinned_blocks_go_pinned_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let s = DataDir::create(dir.path().join("s"), opts()).unwrap();
    let keep = store_bytes(&s, &noise(1, 600_000));
    let drop = store_bytes(&s, &noise(2, 600_000));
    s.pin(&keep.to_string()).unwrap();
    let dry = gc::run(
        &s,
        &GcOptions {
            dry_run: true,
            ..now_gc()
        },
        None,
    )
    .unwrap();
    assert!(dry.executed.is_none());
    let t = dry.plan.totals();
    // A dry run leaves the active segment alone, so it plans a little less.
    assert!(t.reclaim_bytes > 400_000, "{}", dry.plan);
    let before = segment_bytes(&s);
    let r = gc::run(&s, &now_gc(), None).unwrap();
    let ex = r.executed.expect("executed");
    assert!(ex.blocks_removed > 0);
    assert_eq!(r.mark.missing + r.mark.damaged, 0);
    assert!(segment_bytes(&s) < before - 500_000);
    assert_eq!(
        vt_engine::read::read_all(&s, &keep).unwrap(),
        noise(1, 600_000)
    );
    assert!(matches!(
        vt_engine::read::read_all(&s, &drop),
        Err(Error::NotFound(_))
    ));
    assert!(s.verify().unwrap().is_ok());
    assert!(s.gc_leftovers().unwrap().is_empty());
    let info = s.gc_info().unwrap();
    assert!(info.last_gc.is_some() && info.last_freed_bytes > 500_000);
    // Survives a reopen, and a second GC has nothing to do.
    drop_and_check(s, dir.path(), &keep);
}

fn drop_and_check(s: DataDir, dir: &Path, keep: &BlockRef) {
    drop(s);
    let s = DataDir::open(dir.join("s"), opts()).unwrap();
    assert!(s.verify().unwrap().is_ok());
    assert!(vt_engine::read::read_all(&s, keep).is_ok());
    let r = gc::run(&s, &now_gc(), None).unwrap();
    assert!(r.plan.is_empty(), "{}", r.plan);
}

#[test]
fn missing_archive_refuses_unless_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let s = DataDir::create(dir.path().join("s"), opts()).unwrap();
    let b = store_bytes(&s, &noise(3, 100_000));
    let arch = dir.path().join("a.vt");
    let d = vt_engine::Dirent::file(b"f", b.clone());
    Archive::new(&arch)
        .append(&ArchiveEntry {
            when: 1.0,
            transcription: d.to_string(),
            name: None,
        })
        .unwrap();
    s.register_root(&arch).unwrap();
    // Readable: the archive keeps the data.
    let r = gc::run(&s, &now_gc(), None).unwrap();
    assert!(r.plan.is_empty());
    std::fs::remove_file(&arch).unwrap();
    let err = gc::run(&s, &now_gc(), None).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    assert!(vt_engine::read::read_all(&s, &b).is_ok());
    // Unreadable (garbage) also refuses, even with --forget-missing.
    std::fs::write(&arch, "not an archive line\n").unwrap();
    let forgive = GcOptions {
        forget_missing: true,
        ..now_gc()
    };
    assert!(gc::run(&s, &forgive, None).is_err());
    std::fs::remove_file(&arch).unwrap();
    let r = gc::run(&s, &forgive, None).unwrap();
    assert_eq!(r.forgotten_roots.len(), 1);
    assert!(s.roots().unwrap().is_empty());
    assert!(vt_engine::read::read_all(&s, &b).is_err());
}

#[test]
fn grace_period_protects_recent_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let s = DataDir::create(dir.path().join("s"), opts()).unwrap();
    let at = |now| GcOptions {
        grace: Duration::from_secs(3600),
        threshold: 1.0,
        now: Some(now),
        ..GcOptions::default()
    };
    let old = store_bytes(&s, &noise(4, 300_000));
    s.record_clock(1_000_000).unwrap();
    // Nothing is an hour old yet.
    let r = gc::run(&s, &at(1_000_500), None).unwrap();
    assert!(r.plan.is_empty(), "{}", r.plan);
    let young = store_bytes(&s, &noise(5, 300_000));
    s.record_clock(1_005_000).unwrap();
    // Only the checkpoint at 1_000_000 is an hour old: `old` goes, `young` stays.
    gc::run(&s, &at(1_005_100), None).unwrap();
    assert!(vt_engine::read::read_all(&s, &old).is_err());
    assert!(vt_engine::read::read_all(&s, &young).is_ok());
    gc::run(&s, &at(1_006_000), None).unwrap();
    assert!(vt_engine::read::read_all(&s, &young).is_ok());
    gc::run(&s, &at(1_010_000), None).unwrap();
    assert!(vt_engine::read::read_all(&s, &young).is_err());
    assert!(s.verify().unwrap().is_ok());
}

/// Six revisions of a tree; each changes a third of the files.
fn write_revision(root: &Path, rev: u64) {
    for f in 0..30u64 {
        let gen = if f % 3 == rev % 3 { rev } else { rev - rev % 3 };
        let sub = root.join(format!("d{}", f % 4));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{f}")),
            noise(1000 * f + gen, 20_000 + f as usize * 997),
        )
        .unwrap();
    }
}

fn pack(s: &DataDir, root: &Path) -> vt_engine::Dirent {
    let topts = TreeOptions {
        threads: 2,
        ..TreeOptions::default()
    };
    let d = tree::pack(s, root, None, &topts, &Progress::default()).unwrap();
    s.commit().unwrap();
    d
}

#[test]
fn forget_five_of_six_then_gc_matches_a_fresh_store() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let s = DataDir::create(dir.path().join("s"), opts()).unwrap();
    let arch = Archive::new(dir.path().join("s.vt"));
    s.register_root(arch.path()).unwrap();
    let mut last = None;
    for rev in 1..=6u64 {
        // Each revision rewrites the whole tree: unchanged files keep their content.
        let _ = std::fs::remove_dir_all(&src);
        write_revision(&src, rev * 3);
        let d = pack(&s, &src);
        arch.append(&ArchiveEntry {
            when: rev as f64 * 86400.0,
            transcription: d.to_string(),
            name: None,
        })
        .unwrap();
        last = Some(d);
    }
    let last = last.unwrap();
    let decided = retention::forget(
        &arch,
        &Policy {
            keep_last: Some(1),
            ..Policy::default()
        },
        false,
    )
    .unwrap();
    assert_eq!(decided.iter().filter(|(d, _)| d.keep).count(), 1);
    assert_eq!(arch.entries().unwrap().len(), 1);
    let before = segment_bytes(&s);
    gc::run(&s, &now_gc(), None).unwrap();
    let after = segment_bytes(&s);

    let fresh = DataDir::create(dir.path().join("fresh"), opts()).unwrap();
    pack(&fresh, &src);
    let want = segment_bytes(&fresh);
    eprintln!("segments: before GC {before}, after {after}, fresh store {want}");
    assert!(
        (after as f64) <= want as f64 * 1.10,
        "after GC {after} bytes (from {before}), fresh store {want}"
    );
    // With the index file compacted too (as `vt compact` does), the whole store.
    let mut s = s;
    let (index_before, index_after) = s.compact_index().unwrap();
    assert!(
        index_after <= index_before,
        "{index_before} -> {index_after}"
    );
    let total = |d: &DataDir| {
        let i = d.info().unwrap();
        i.segment_bytes + i.index_bytes
    };
    let (got, want) = (total(&s), total(&fresh));
    eprintln!("index {index_before} -> {index_after}; store {got}, fresh store {want}");
    assert!(
        (got as f64) <= want as f64 * 1.10,
        "store {got} bytes after GC and index compaction, fresh store {want}"
    );
    assert!(s.verify().unwrap().is_ok());
    let out = dir.path().join("restored");
    let topts = TreeOptions {
        restore_owner: false,
        ..TreeOptions::default()
    };
    tree::restore(&s, &last, &out, &topts, &Progress::default()).unwrap();
    for f in 0..30u64 {
        let rel = format!("d{}/f{f}", f % 4);
        assert_eq!(
            std::fs::read(out.join(&rel)).unwrap(),
            std::fs::read(src.join(&rel)).unwrap(),
            "{rel}"
        );
    }
}

#[test]
fn scheduler_compacts_in_the_background_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(DataDir::create(dir.path().join("s"), opts()).unwrap());
    let keep = store_bytes(&s, &noise(7, 400_000));
    s.pin(&keep.to_string()).unwrap();
    store_bytes(&s, &noise(8, 800_000));
    let before = segment_bytes(&s);
    let sched = Scheduler::start(
        s.clone(),
        SchedulerConfig {
            interval: Duration::from_secs(3600),
            dead_fraction: 0.3,
            rate_limit: 1 << 40,
            gc: now_gc(),
        },
    );
    sched.run_now();
    let mut waited = 0;
    while sched.runs().is_empty() {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
        assert!(waited < 3000, "scheduler never ran");
    }
    let runs = sched.runs();
    let report = runs[0].as_ref().unwrap();
    assert!(report.executed.is_some(), "{}", report.plan);
    sched.stop();
    assert!(segment_bytes(&s) < before);
    assert!(vt_engine::read::read_all(&*s, &keep).is_ok());
    assert!(s.verify().unwrap().is_ok());
}

#[test]
fn stopped_scheduler_leaves_a_valid_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(DataDir::create(dir.path().join("s"), opts()).unwrap());
    let keep = store_bytes(&s, &noise(9, 1_500_000));
    s.pin(&keep.to_string()).unwrap();
    store_bytes(&s, &noise(10, 1_500_000));
    // 64 KiB/s: the run is still copying when the stop comes.
    let sched = Scheduler::start(
        s.clone(),
        SchedulerConfig {
            interval: Duration::from_secs(3600),
            dead_fraction: 0.1,
            rate_limit: 64 << 10,
            gc: GcOptions {
                threshold: 1.0,
                grace: Duration::ZERO,
                ..GcOptions::default()
            },
        },
    );
    sched.run_now();
    std::thread::sleep(Duration::from_millis(300));
    sched.stop();
    assert!(vt_engine::read::read_all(&*s, &keep).is_ok());
    assert!(s.verify().unwrap().is_ok());
    assert!(s.gc_leftovers().unwrap().is_empty());
}
