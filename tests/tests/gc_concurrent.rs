//! GC racing writers: threads keep adding new blocks, re-adding garbage blocks (dedup
//! hits), reusing garbage trees found with `contains` (as the files cache does) and
//! pinning and unpinning roots, while another thread runs GC after GC. Nothing a pinned
//! root references may be lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vt_engine::gc::{self, GcOptions};
use vt_engine::store::datadir::{DataDir, DataDirOptions};
use vt_engine::{BlockRef, HashAlg, Store};
use vt_tests::noise;

/// A tree a writer rooted, and the tags of its blocks.
type Rooted = (BlockRef, Vec<u64>);

fn leaf(seed: u64) -> Vec<u8> {
    noise(seed, 500 + (seed % 1500) as usize)
}

fn hash_ref(s: &DataDir, seed: u64) -> BlockRef {
    let data = leaf(seed);
    let hash = s.add(&data).unwrap();
    BlockRef::Hash {
        hash,
        span: data.len() as u64,
    }
}

/// An indirect block over `children`, added to the store.
fn indirect(s: &DataDir, children: &[BlockRef]) -> BlockRef {
    let mut top = Vec::new();
    for c in children {
        c.encode_into(&mut top);
    }
    BlockRef::Indirect {
        hash: s.add(&top).unwrap(),
        span: children.iter().map(BlockRef::span).sum(),
    }
}

const GARBAGE_LEAVES: u64 = 300;
const GARBAGE_TREES: u64 = 40;

fn garbage_tree_seeds(t: u64) -> Vec<u64> {
    (0..5).map(|j| 1_000_000 + t * 10 + j).collect()
}

fn garbage_tree(s: &DataDir, t: u64) -> BlockRef {
    let kids: Vec<BlockRef> = garbage_tree_seeds(t)
        .into_iter()
        .map(|x| hash_ref(s, x))
        .collect();
    indirect(s, &kids)
}

fn expected(seeds: &[u64]) -> Vec<u8> {
    seeds.iter().flat_map(|&x| leaf(x)).collect()
}

/// One writer round: a root mixing new leaves, re-added garbage leaves and a garbage
/// tree reused through `contains` when present (re-added otherwise).
fn round(s: &DataDir, w: u64, i: u64) -> (BlockRef, Vec<u64>) {
    let _hold = s.write_hold();
    let mut seeds = Vec::new();
    let mut kids = Vec::new();
    for j in 0..4 {
        let x = 10_000_000 + w * 100_000 + i * 10 + j;
        kids.push(hash_ref(s, x));
        seeds.push(x);
    }
    let g = (w * 7919 + i * 104_729) % GARBAGE_LEAVES;
    kids.push(hash_ref(s, g));
    seeds.push(g);
    let t = (w * 31 + i * 17) % GARBAGE_TREES;
    let tseeds = garbage_tree_seeds(t);
    let tree = {
        let kids_t: Vec<BlockRef> = tseeds
            .iter()
            .map(|&x| BlockRef::Hash {
                hash: HashAlg::Blake3.hash(&leaf(x)),
                span: leaf(x).len() as u64,
            })
            .collect();
        let mut top = Vec::new();
        for c in &kids_t {
            c.encode_into(&mut top);
        }
        let top_hash = HashAlg::Blake3.hash(&top);
        if s.contains(&top_hash).unwrap() {
            BlockRef::Indirect {
                hash: top_hash,
                span: kids_t.iter().map(BlockRef::span).sum(),
            }
        } else {
            garbage_tree(s, t)
        }
    };
    kids.push(tree);
    seeds.extend(tseeds);
    let root = indirect(s, &kids);
    s.commit().unwrap();
    s.pin(&root.to_string()).unwrap();
    (root, seeds)
}

#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        DataDir::create(
            dir.path().join("s"),
            DataDirOptions {
                segment_size: 64 << 10,
                index_cache_bytes: 16 << 20,
                ..DataDirOptions::default()
            },
        )
        .unwrap(),
    );
    for g in 0..GARBAGE_LEAVES {
        s.add(&leaf(g)).unwrap();
    }
    for t in 0..GARBAGE_TREES {
        garbage_tree(&s, t);
    }
    s.commit().unwrap();
    let roots: Arc<Mutex<Vec<Rooted>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let gcs = Arc::new(AtomicU64::new(0));
    let rescued = Arc::new(AtomicU64::new(0));
    let removed = Arc::new(AtomicU64::new(0));
    let gc_thread = {
        let (s, done, gcs) = (s.clone(), done.clone(), gcs.clone());
        let (rescued, removed) = (rescued.clone(), removed.clone());
        std::thread::spawn(move || {
            let opts = GcOptions {
                grace: Duration::ZERO,
                threshold: 1.0,
                ..GcOptions::default()
            };
            while !done.load(Ordering::Acquire) || gcs.load(Ordering::Relaxed) < 3 {
                let r = gc::run(&s, &opts, None).unwrap();
                if let Some(ex) = r.executed {
                    rescued.fetch_add(ex.blocks_rescued, Ordering::Relaxed);
                    removed.fetch_add(ex.blocks_removed, Ordering::Relaxed);
                }
                gcs.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let (s, roots) = (s.clone(), roots.clone());
            std::thread::spawn(move || {
                for i in 0..60u64 {
                    let (root, seeds) = round(&s, w, i);
                    let mut r = roots.lock().unwrap();
                    r.push((root, seeds));
                    // Forget an older root now and then: its blocks become garbage again.
                    if i % 5 == 4 {
                        let at = (w * 3 + i) as usize % r.len();
                        let (old, _) = r.remove(at);
                        assert!(s.unpin(&old.to_string()).unwrap());
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    gc_thread.join().unwrap();
    assert!(gcs.load(Ordering::Relaxed) >= 3);
    eprintln!(
        "{} GC runs removed {} blocks, rescued {} re-referenced ones",
        gcs.load(Ordering::Relaxed),
        removed.load(Ordering::Relaxed),
        rescued.load(Ordering::Relaxed)
    );
    // The race is real: collection happened while writers re-referenced garbage.
    assert!(removed.load(Ordering::Relaxed) > 0);
    let check = |s: &DataDir, when: &str| {
        for (root, seeds) in roots.lock().unwrap().iter() {
            let got = vt_engine::read::read_all(s, root)
                .unwrap_or_else(|e| panic!("{when}: root {root}: {e}"));
            assert!(got == expected(seeds), "{when}: root {root} reads wrong");
        }
    };
    check(&s, "after the race");
    assert!(s.verify().unwrap().is_ok());
    gc::run(
        &s,
        &GcOptions {
            grace: Duration::ZERO,
            threshold: 1.0,
            ..GcOptions::default()
        },
        None,
    )
    .unwrap();
    check(&s, "after a quiet GC");
    assert!(s.verify().unwrap().is_ok());
    assert!(s.gc_leftovers().unwrap().is_empty());
}
