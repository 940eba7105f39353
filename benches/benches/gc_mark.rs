//! GC mark at scale: time and peak memory of marking a store of millions of blocks.
//!
//! `cargo bench -p vt-benches --bench gc_mark` (env: `VT_BENCH_BLOCKS`, default 1,000,000;
//! `VT_BENCH_DIR`, default the system temp directory; `VT_BENCH_CACHE_MIB`, the redb page
//! cache of the measuring processes, default 64; `VT_BENCH_KEEP=1` keeps the store for a
//! later run, which then skips the build).
//!
//! Builds a store of N tiny distinct leaf blocks (16 bytes each), nine in ten reachable
//! from one pinned tree of indirect blocks (1,024 children each), the rest garbage. Then,
//! each in a fresh process so the numbers are its own, it opens the store and runs
//! 1. `mark`: resolve the roots and mark (`vt_engine::gc::mark::mark`);
//! 2. `plan`: a whole dry-run GC (mark, live bytes per segment, plan).
//!
//! Each prints its wall time, the mark set's size and the process's peak resident set
//! (`VmHWM` of `/proc/self/status`, including opening the store: its negative filter and
//! the redb page cache are part of what a GC costs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use vt_engine::gc::{self, GcOptions};
use vt_engine::store::datadir::{DataDir, DataDirOptions};
use vt_engine::{BlockRef, Store};

const FANOUT: usize = 1024;
const COMMIT_EVERY: u64 = 1_000_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A field of `/proc/self/status` in KiB (0 where there is none).
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn opts(cache_mib: u64) -> DataDirOptions {
    DataDirOptions {
        compression_level: 0,
        index_cache_bytes: (cache_mib as usize) << 20,
        ..DataDirOptions::default()
    }
}

/// One level of the tree being built: children of the indirect block being filled.
#[derive(Default)]
struct Level {
    buf: Vec<u8>,
    children: usize,
    span: u64,
}

/// Builds the pinned tree bottom-up as leaves arrive.
struct TreeBuilder {
    levels: Vec<Level>,
}

impl TreeBuilder {
    fn push(&mut self, store: &DataDir, depth: usize, r: &BlockRef) {
        if self.levels.len() == depth {
            self.levels.push(Level::default());
        }
        let l = &mut self.levels[depth];
        r.encode_into(&mut l.buf);
        l.children += 1;
        l.span += r.span();
        if l.children == FANOUT {
            let up = self.close(store, depth);
            self.push(store, depth + 1, &up);
        }
    }

    fn close(&mut self, store: &DataDir, depth: usize) -> BlockRef {
        let l = std::mem::take(&mut self.levels[depth]);
        let hash = store.add(&l.buf).expect("add indirect block");
        BlockRef::Indirect { hash, span: l.span }
    }

    /// Closes every level; the root reference.
    fn finish(mut self, store: &DataDir) -> BlockRef {
        let mut carry: Option<BlockRef> = None;
        for depth in 0..self.levels.len() {
            if let Some(c) = carry.take() {
                let l = &mut self.levels[depth];
                c.encode_into(&mut l.buf);
                l.children += 1;
                l.span += c.span();
            }
            if self.levels[depth].children > 0 {
                carry = Some(self.close(store, depth));
            }
        }
        carry.expect("at least one leaf")
    }
}

fn build(dir: &Path, n: u64) {
    let t = Instant::now();
    let store = DataDir::create(dir, opts(256)).expect("create store");
    let mut tree = TreeBuilder { levels: Vec::new() };
    for i in 0..n {
        let mut leaf = [0u8; 16];
        leaf[..8].copy_from_slice(&i.to_le_bytes());
        leaf[8..].copy_from_slice(b"gc-mark!");
        let hash = store.add(&leaf).expect("add leaf");
        if i % 10 != 9 {
            tree.push(&store, 0, &BlockRef::Hash { hash, span: 16 });
        }
        if (i + 1) % COMMIT_EVERY == 0 {
            store.flush().expect("commit");
            eprintln!("  {} blocks, {:.0} s", i + 1, t.elapsed().as_secs_f64());
        }
    }
    let root = tree.finish(&store);
    store.flush().expect("commit");
    let mut pin = String::new();
    vt_engine::transcribe::write_blockref(&mut pin, &root);
    store.pin(&pin).expect("pin the root");
    let blocks = store.len().expect("len");
    println!(
        "build: {blocks} blocks in {:.1} s ({:.0}/s)",
        t.elapsed().as_secs_f64(),
        blocks as f64 / t.elapsed().as_secs_f64()
    );
}

fn phase_mark(dir: &Path, cache_mib: u64) {
    let store = DataDir::open(dir, opts(cache_mib)).expect("open store");
    let rss_open = status_kib("VmRSS");
    let t = Instant::now();
    let (refs, problems) = gc::roots::resolve(&store.roots().expect("roots"));
    assert!(problems.is_empty(), "{problems:?}");
    let marks = gc::mark::mark(&store, &refs).expect("mark");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "mark: {} of {} blocks marked, {} interior blocks read, {secs:.1} s; mark set {:.1} MiB; \
         RSS after open {:.0} MiB, peak RSS {:.0} MiB (redb cache {cache_mib} MiB)",
        marks.stats.marked,
        marks.stats.indexed,
        marks.stats.interiors_read,
        marks.memory_bytes() as f64 / (1 << 20) as f64,
        mib(rss_open),
        mib(status_kib("VmHWM")),
    );
}

fn phase_plan(dir: &Path, cache_mib: u64) {
    let store = DataDir::open(dir, opts(cache_mib)).expect("open store");
    let t = Instant::now();
    let o = GcOptions {
        dry_run: true,
        grace: std::time::Duration::ZERO,
        threshold: 1.0,
        ..GcOptions::default()
    };
    let r = gc::run(&store, &o, None).expect("dry-run gc");
    let t2 = r.plan.totals();
    println!(
        "plan (dry-run gc: mark, measure, plan): {:.1} s; {} live of {} segment bytes; \
         peak RSS {:.0} MiB (redb cache {cache_mib} MiB)",
        t.elapsed().as_secs_f64(),
        t2.live_bytes,
        t2.total_bytes,
        mib(status_kib("VmHWM")),
    );
}

/// Runs `phase` in a fresh process (this binary again).
fn child(phase: &str, dir: &Path) {
    let exe = std::env::current_exe().expect("current exe");
    let st = Command::new(exe)
        .env("VT_BENCH_GC_PHASE", phase)
        .env("VT_BENCH_GC_STORE", dir)
        .status()
        .expect("spawn");
    assert!(st.success(), "{phase} failed: {st}");
}

fn main() {
    let cache_mib = env_u64("VT_BENCH_CACHE_MIB", 64);
    if let Ok(phase) = std::env::var("VT_BENCH_GC_PHASE") {
        let dir = PathBuf::from(std::env::var_os("VT_BENCH_GC_STORE").expect("store dir"));
        match phase.as_str() {
            "mark" => phase_mark(&dir, cache_mib),
            "plan" => phase_plan(&dir, cache_mib),
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    let n = env_u64("VT_BENCH_BLOCKS", 1_000_000);
    let base = std::env::var_os("VT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("vt-gc-mark-{n}"));
    if !dir.join(".built").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        build(&dir, n);
        std::fs::write(dir.join(".built"), b"").expect("marker");
    }
    child("mark", &dir);
    child("plan", &dir);
    if env_u64("VT_BENCH_KEEP", 0) == 0 {
        std::fs::remove_dir_all(&dir).expect("remove the store");
    }
}
