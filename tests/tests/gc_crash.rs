//! Crash consistency of GC: the executor's every write, sync, index commit and delete is
//! a crash point. From each, three disk images (synced bytes only; every write; torn
//! appends) are reopened: verify passes, every live block reads back, no leftovers remain
//! after the open's cleanup, and a second GC completes the job.

use std::sync::Arc;
use std::time::Duration;
use vt_engine::gc::{self, GcOptions};
use vt_engine::io::{CrashImage, SimFs};
use vt_engine::store::datadir::{DataDir, DataDirOptions};
use vt_engine::{BlockRef, HashAlg, HashCode, Result, Store};

const STORE: &str = "/sim/store";

/// Grouped workloads: blocks under 700 bytes go into groups of about 1200 bytes, whose
/// live members compaction regroups; longer blocks are copied as records.
const GROUPED: usize = 700;

fn opts(fs: &SimFs, group_max_block: usize) -> DataDirOptions {
    DataDirOptions {
        fs: Arc::new(fs.clone()),
        segment_size: 5000,
        index_cache_bytes: 4 << 20,
        group_max_block,
        group_bytes: 1200,
        ..DataDirOptions::default()
    }
}

fn block(i: u64) -> Vec<u8> {
    let len = 300 + (i * 131 % 700) as usize;
    (0..len)
        .map(|j| ((j as u64 * 2654435761) ^ (i * 40503)) as u8)
        .collect()
}

fn hash(i: u64) -> HashCode {
    HashAlg::Blake3.hash(&block(i))
}

/// Live blocks: even ones below 40 (under a pinned indirect block) and 100..104 (pinned
/// directly). Everything else is garbage; 40..60 fill whole segments of garbage.
fn live(i: u64) -> bool {
    i.is_multiple_of(2) && i < 40 || (100..105).contains(&i)
}

fn setup(fs: &SimFs, grouped: usize) -> Result<DataDir> {
    let s = DataDir::create(STORE, opts(fs, grouped))?;
    let mut children = Vec::new();
    for i in (0..60).chain(100..105) {
        s.add(&block(i))?;
        if i.is_multiple_of(2) && i < 40 {
            children.push(BlockRef::Hash {
                hash: hash(i),
                span: block(i).len() as u64,
            });
        }
        if i % 10 == 9 {
            s.commit()?;
        }
    }
    let mut top = Vec::new();
    for c in &children {
        c.encode_into(&mut top);
    }
    let top_hash = s.add(&top)?;
    s.commit()?;
    let span = children.iter().map(BlockRef::span).sum();
    s.pin(
        &BlockRef::Indirect {
            hash: top_hash,
            span,
        }
        .to_string(),
    )?;
    for i in 100..105 {
        s.pin(
            &BlockRef::Hash {
                hash: hash(i),
                span: block(i).len() as u64,
            }
            .to_string(),
        )?;
    }
    Ok(s)
}

fn gc_opts() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        threshold: 0.9,
        now: Some(2_000_000_000),
        ..GcOptions::default()
    }
}

fn check(img: &SimFs, grouped: usize, label: &str) {
    let s =
        DataDir::open(STORE, opts(img, grouped)).unwrap_or_else(|e| panic!("{label}: reopen: {e}"));
    assert!(
        s.gc_leftovers().unwrap().is_empty(),
        "{label}: leftovers {:?}",
        s.gc_leftovers().unwrap()
    );
    let report = s.verify().unwrap();
    assert!(report.is_ok(), "{label}: {report:?}");
    let check_live = |s: &DataDir, when: &str| {
        for i in (0..60).chain(100..105).filter(|&i| live(i)) {
            let got = s
                .get(&hash(i))
                .unwrap_or_else(|e| panic!("{label} {when}: {i}: {e}"));
            assert_eq!(
                got.as_deref(),
                Some(&block(i)[..]),
                "{label} {when}: live block {i}"
            );
        }
    };
    check_live(&s, "after reopen");
    gc::run(&s, &gc_opts(), None).unwrap_or_else(|e| panic!("{label}: second gc: {e}"));
    check_live(&s, "after second gc");
    for i in (0..60).filter(|&i| !live(i)) {
        assert!(
            !s.contains(&hash(i)).unwrap(),
            "{label}: garbage {i} survived"
        );
    }
    assert!(
        s.verify().unwrap().is_ok(),
        "{label}: verify after second gc"
    );
    assert!(s.gc_leftovers().unwrap().is_empty(), "{label}");
}

#[test]
fn every_gc_crash_point_recovers() {
    crash_everywhere(0);
}

#[test]
fn every_gc_crash_point_recovers_with_group_records() {
    crash_everywhere(GROUPED);
}

/// Runs the GC once to count its operations, then crashes it at each one.
fn crash_everywhere(grouped: usize) {
    let probe = SimFs::new();
    let s = setup(&probe, grouped).unwrap();
    let setup_ops = probe.ops();
    let r = gc::run(&s, &gc_opts(), None).unwrap();
    let ex = r.executed.expect("the plan has work");
    // With groups, the garbage shares segments with live blocks: nothing to delete whole.
    assert!(
        ex.segments_rewritten > 0 && (ex.segments_deleted > 0 || grouped > 0),
        "{}",
        r.plan
    );
    drop(s);
    let gc_ops = probe.ops() - setup_ops;
    eprintln!("{}\n{ex:?}\nGC ops: {gc_ops}", r.plan);
    assert!(gc_ops > 20, "GC too small to be interesting: {gc_ops} ops");
    check(
        &probe.crash_image(CrashImage::DurableOnly),
        grouped,
        "no crash",
    );
    for n in 1..=gc_ops {
        let fs = SimFs::new();
        let s = setup(&fs, grouped).unwrap();
        assert_eq!(fs.ops(), setup_ops, "setup is deterministic");
        fs.crash_at(setup_ops + n);
        let _ = gc::run(&s, &gc_opts(), None);
        drop(s);
        assert!(fs.has_crashed(), "crash point {n} not reached");
        for kind in [
            CrashImage::DurableOnly,
            CrashImage::AllWrites,
            CrashImage::TornTail,
        ] {
            check(
                &fs.crash_image(kind),
                grouped,
                &format!("crash at GC op {n}/{gc_ops}, {kind:?}"),
            );
        }
    }
}
