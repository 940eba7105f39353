//! Crash consistency of the DataDir store.
//!
//! A multi-transaction workload runs on a simulated disk ([`SimFs`]) that dies at the N-th
//! write or sync, for every N the workload performs. From each crash, three disk images are
//! taken (only synced bytes; every write landed; unsynced appends torn in half). Reopening
//! any of them must yield exactly the committed transactions: every committed block reads
//! back correctly, nothing the index references is missing, uncommitted blocks are absent or
//! correct, and verify passes. The recovered store must accept new commits.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use vt_engine::io::{CrashImage, SimFs};
use vt_engine::store::datadir::{DataDir, DataDirOptions};
use vt_engine::{HashAlg, Result, Store};

const STORE: &str = "/sim/store";

fn opts(fs: &SimFs) -> DataDirOptions {
    DataDirOptions {
        fs: Arc::new(fs.clone()),
        // Small segments so the workload also crosses segment creation.
        segment_size: 6000,
        index_cache_bytes: 4 << 20,
        // Blocks under 1000 bytes go into groups of about 2500 bytes (sealed mid-transaction
        // and at commits); longer ones get records of their own.
        group_max_block: 1000,
        group_bytes: 2500,
        ..DataDirOptions::default()
    }
}

fn block(i: u64) -> Vec<u8> {
    let len = 300 + (i * 131 % 900) as usize;
    let text = format!("record {i};").into_bytes();
    if i.is_multiple_of(3) {
        text.repeat(len / text.len() + 1)
    } else {
        (0..len)
            .map(|j| ((j as u64 * 2654435761) ^ (i * 40503)) as u8)
            .collect()
    }
}

/// What the workload got done before the crash.
#[derive(Debug, Default)]
struct Outcome {
    created: bool,
    /// Blocks of transactions whose commit returned Ok.
    committed: BTreeSet<u64>,
    /// Blocks the workload tried to add but did not see committed.
    uncommitted: BTreeSet<u64>,
    complete: Option<u64>,
}

fn workload(fs: &SimFs, out: &mut Outcome) -> Result<()> {
    let s = DataDir::create(STORE, opts(fs))?;
    out.created = true;
    for t in 0..5u64 {
        // Overlapping ranges: later transactions re-add earlier blocks (dedup paths).
        let ids: Vec<u64> = (t * 6..t * 6 + 9).collect();
        out.uncommitted.extend(&ids);
        for &i in &ids {
            s.add(&block(i))?;
        }
        if t == 2 {
            let aborted: Vec<u64> = (1000..1006).collect();
            out.uncommitted.extend(&aborted);
            for &i in &aborted {
                s.add(&block(i))?;
            }
            s.abort()?;
            for &i in &ids {
                s.add(&block(i))?;
            }
        }
        if t == 3 {
            s.set_complete(&HashAlg::Blake3.hash(&block(1)))?;
        }
        s.commit()?;
        out.committed.extend(&ids);
        if t == 3 {
            out.complete = Some(1);
        }
    }
    for i in 2000..2005 {
        out.uncommitted.insert(i);
        s.add(&block(i))?;
    }
    // Dropped without commit: the tail is unindexed.
    Ok(())
}

fn check_recovered(img: &SimFs, out: &Outcome, label: &str) {
    let s = match DataDir::open(STORE, opts(img)) {
        Ok(s) => s,
        Err(e) => panic!("{label}: reopen failed: {e}"),
    };
    for &i in &out.committed {
        let h = HashAlg::Blake3.hash(&block(i));
        let got = s
            .get(&h)
            .unwrap_or_else(|e| panic!("{label}: block {i}: {e}"));
        assert_eq!(
            got.as_deref(),
            Some(&block(i)[..]),
            "{label}: committed block {i}"
        );
    }
    for &i in out.uncommitted.difference(&out.committed) {
        let h = HashAlg::Blake3.hash(&block(i));
        if let Some(data) = s
            .get(&h)
            .unwrap_or_else(|e| panic!("{label}: block {i}: {e}"))
        {
            assert_eq!(
                data,
                block(i),
                "{label}: uncommitted block {i} present but wrong"
            );
        }
    }
    let listed = s.hashcodes(None, false, 100_000).unwrap();
    assert!(listed.len() >= out.committed.len(), "{label}");
    for h in &listed {
        assert!(
            s.get(h).unwrap().is_some_and(|d| h.matches(&d)),
            "{label}: {h} listed but unreadable"
        );
    }
    if let Some(i) = out.complete {
        assert!(
            s.is_complete(&HashAlg::Blake3.hash(&block(i))).unwrap(),
            "{label}: completeness flag lost"
        );
    }
    let report = s.verify().unwrap();
    assert!(report.is_ok(), "{label}: {report:?}");
    // The recovered store takes new commits, which survive a clean reopen.
    let h = s
        .add(b"written after recovery, long enough to be stored as a record")
        .unwrap();
    s.commit().unwrap();
    drop(s);
    let s = DataDir::open(STORE, opts(img)).unwrap();
    assert!(
        s.get(&h).unwrap().is_some(),
        "{label}: post-recovery commit lost"
    );
    assert!(
        s.verify().unwrap().is_ok(),
        "{label}: verify after second reopen"
    );
}

#[test]
fn every_crash_point_recovers_to_the_committed_state() {
    let probe = SimFs::new();
    let mut full = Outcome::default();
    workload(&probe, &mut full).unwrap();
    let total = probe.ops();
    assert!(
        total > 50,
        "workload too small to be interesting: {total} ops"
    );
    assert_eq!(full.committed.len(), 5 * 6 + 3);
    let mut crashes_with_commits = 0;
    for n in 1..=total {
        let fs = SimFs::new();
        fs.crash_at(n);
        let mut out = Outcome::default();
        // The last points fall in the index's shutdown, after the workload returned.
        let _ = workload(&fs, &mut out);
        assert!(fs.has_crashed(), "crash point {n} not reached");
        if !out.created {
            // The store never existed for the caller; reopening must not panic.
            for kind in [
                CrashImage::DurableOnly,
                CrashImage::AllWrites,
                CrashImage::TornTail,
            ] {
                let _ = DataDir::open(STORE, opts(&fs.crash_image(kind)));
            }
            continue;
        }
        crashes_with_commits += usize::from(!out.committed.is_empty());
        for kind in [
            CrashImage::DurableOnly,
            CrashImage::AllWrites,
            CrashImage::TornTail,
        ] {
            check_recovered(
                &fs.crash_image(kind),
                &out,
                &format!("crash at op {n}/{total}, {kind:?}"),
            );
        }
    }
    assert!(crashes_with_commits > 10);
}

#[test]
fn clean_shutdown_without_commit_keeps_committed_state() {
    let fs = SimFs::new();
    let mut out = Outcome::default();
    workload(&fs, &mut out).unwrap();
    check_recovered(&fs.crash_image(CrashImage::DurableOnly), &out, "no crash");
    check_recovered(
        &fs.crash_image(CrashImage::AllWrites),
        &out,
        "no crash, all writes",
    );
    assert!(
        Path::new(STORE).is_relative() || !Path::new(STORE).exists(),
        "simulation touched the real disk"
    );
}
