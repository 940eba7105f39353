//! Block index benchmark: sustained adds, misses, hits, size and write amplification.
//!
//! `cargo bench -p vt-benches --bench index` (env: `VT_BENCH_BLOCKS`, default 5,000,000;
//! `VT_BENCH_BATCH` blocks per commit, default 1,000,000; `VT_BENCH_CACHE_MIB`, default 1024;
//! `VT_BENCH_DIR`, default the system temp directory; `VT_BENCH_DATADIR_BLOCKS`, default
//! 200,000, 0 skips the DataDir part; `VT_BENCH_KEEP=1` keeps the index directory, and
//! `VT_BENCH_REUSE=<kept directory>` skips the adds and measures the reads of its index,
//! e.g. under a profiler). Prints one line per measurement;
//! not a criterion bench because the interesting numbers are at millions of keys.

/// The allocator the `vt` binary uses (see `cli/src/main.rs`).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vt_engine::index::{
    key_of, Batch, Index, IndexKey, Location, SegmentId, KEY_LEN, LOCATION_LEN,
};
use vt_engine::io::{ConcurrencyMode, FileIo, Fs, IndexBackend, OpenMode, OsFs};
use vt_engine::store::datadir::{DataDir, DataDirOptions};
use vt_engine::{HashAlg, Store};

/// Counts the bytes the index writes, for write amplification.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn FileIo>,
    written: Arc<AtomicU64>,
}

impl FileIo for Counting {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.write_at(data, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(i: u64) -> IndexKey {
    key_of(&HashAlg::Blake3.hash(&i.to_le_bytes()))
}

fn loc(i: u64) -> Location {
    Location {
        segment: SegmentId((i >> 18) as u32),
        offset: (i & 0x3ffff) * 4096,
        stored_len: 2000,
        raw_len: 4096,
        flags: 2,
        generation: 0,
    }
}

fn bench_dir() -> PathBuf {
    if let Some(kept) = std::env::var_os("VT_BENCH_REUSE") {
        return PathBuf::from(kept);
    }
    let base = std::env::var_os("VT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    base.join(format!("vt-index-bench-{}", std::process::id()))
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (0 elsewhere).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// A wall-clock timer that also tracks process CPU time (the machine may be shared).
struct Timer(Instant, f64);

impl Timer {
    fn start() -> Self {
        Timer(Instant::now(), cpu_secs())
    }
}

/// Rate per wall second, and per CPU second of this process.
fn rate(n: u64, t: &Timer) -> String {
    let wall = t.0.elapsed().as_secs_f64();
    let cpu = (cpu_secs() - t.1).max(0.01);
    format!(
        "{:.0}/s (per CPU-s {:.0}/s)",
        n as f64 / wall,
        n as f64 / cpu
    )
}

fn main() {
    let n = env_u64("VT_BENCH_BLOCKS", 5_000_000);
    let batch = env_u64("VT_BENCH_BATCH", 1_000_000);
    let cache = (env_u64("VT_BENCH_CACHE_MIB", 1024) as usize) << 20;
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("index.redb");
    let written = Arc::new(AtomicU64::new(0));
    let open = |mode: OpenMode| {
        let file = OsFs.open(&path, mode).expect("index file");
        let counting = Arc::new(Counting {
            inner: file,
            written: written.clone(),
        });
        Index::open_writable(
            IndexBackend::Io(counting),
            ConcurrencyMode::ExclusiveWriter,
            cache,
        )
        .expect("open")
    };
    let reuse = std::env::var_os("VT_BENCH_REUSE").is_some();
    if !reuse {
        adds(n, batch, cache, &path, open(OpenMode::CreateNew), &written);
    }
    reads(n, open);
    if env_u64("VT_BENCH_KEEP", 0) == 0 && !reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if env_u64("VT_BENCH_DATADIR_BLOCKS", 200_000) > 0 {
        datadir_adds();
    }
}

/// Adds `n` keys in commits of `batch`, then reports size and bytes written.
fn adds(
    n: u64,
    batch: u64,
    cache: usize,
    path: &std::path::Path,
    index: Index,
    written: &AtomicU64,
) {
    println!(
        "index bench: {n} blocks, {batch} per commit, cache {} MiB",
        cache >> 20
    );
    let t0 = Timer::start();
    let mut i = 0;
    while i < n {
        let tb = Timer::start();
        let end = (i + batch).min(n);
        let mut b = Batch::default();
        for j in i..end {
            let k = key(j);
            // The ingest path: a miss answered by the filter, then the add.
            if index.get(&k).expect("get").is_some() {
                continue;
            }
            if let Some(f) = index.filter() {
                f.insert(&k);
            }
            b.new_blocks.push((k, loc(j)));
        }
        index.commit(b, true).expect("commit");
        let layout = index.layout().expect("layout");
        println!(
            "  adds {i:>10}..{end:<10} {:>9}  main {} runs {:?}",
            rate(end - i, &tb),
            layout.main,
            layout.runs
        );
        i = end;
    }
    let add_rate = rate(n, &t0);
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let logical = n * (KEY_LEN + LOCATION_LEN) as u64;
    println!("sustained adds: {add_rate} overall (incl. filter check + durable commits)");
    println!(
        "index file: {size} bytes, {:.1} bytes/block",
        size as f64 / n as f64
    );
    println!(
        "bytes written per byte indexed: {:.1} ({} bytes written for {} bytes of keys+values)",
        written.load(Ordering::Relaxed) as f64 / logical as f64,
        written.load(Ordering::Relaxed),
        logical
    );
    let filter_bytes = index.filter().map_or(0, |f| f.memory_bytes());
    println!(
        "filter memory: {filter_bytes} bytes ({:.2} bytes/block)",
        filter_bytes as f64 / n as f64
    );
}

/// Reopens the index and measures misses and hits of `n` indexed keys.
fn reads(n: u64, open: impl Fn(OpenMode) -> Index) {
    let t = Timer::start();
    let index = open(OpenMode::Write);
    println!(
        "reopen (writable, builds the filter): {:.2} s ({:?})",
        t.0.elapsed().as_secs_f64(),
        index.filter_open_stats()
    );

    let probes = 1_000_000u64;
    let t = Timer::start();
    for j in n..n + probes {
        assert!(index.get(&key(j)).expect("get").is_none());
    }
    println!("contains-miss (filter, then B-trees): {}", rate(probes, &t));
    // Hits are looked up as the store's reads look them up: without the negative filter.
    let t = Timer::start();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..probes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert!(index.lookup(&key(x % n)).expect("get").is_some());
    }
    println!("get-hit (random keys): {}", rate(probes, &t));
    // The same on both cores (readers share the index; e.g. `vt cat` and FUSE reads),
    // with seeds of their own so these keys are as cold as the ones above.
    let t = Timer::start();
    std::thread::scope(|s| {
        for seed in [0x2545_f491_4f6c_dd1du64, 0xd1b5_4a32_d192_ed03] {
            let index = &index;
            s.spawn(move || {
                let mut x = seed;
                for _ in 0..probes / 2 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    assert!(index.lookup(&key(x % n)).expect("get").is_some());
                }
            });
        }
    });
    println!("get-hit (random keys, 2 threads): {}", rate(probes, &t));
}

/// End-to-end DataDir adds of 4 KiB blocks (half compressible) from two threads.
fn datadir_adds() {
    let n = env_u64("VT_BENCH_DATADIR_BLOCKS", 200_000);
    let dir = bench_dir().join("store");
    let s = Arc::new(DataDir::create(&dir, DataDirOptions::default()).expect("create"));
    let t = Timer::start();
    let threads: Vec<_> = (0..2u64)
        .map(|th| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                for i in (th..n).step_by(2) {
                    let mut x = i.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
                    let noisy = if i.is_multiple_of(2) { 4096 } else { 512 };
                    for (j, b) in buf.iter_mut().enumerate() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *b = if j < noisy {
                            x as u8
                        } else {
                            b'a' + (j % 26) as u8
                        };
                    }
                    s.add(&buf).expect("add");
                    if i % 50_000 == th {
                        s.flush().expect("flush");
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().expect("thread");
    }
    s.flush().expect("flush");
    let info = s.info().expect("info");
    println!(
        "DataDir add, 4 KiB blocks, 2 threads: {} ({:.0} MB/s logical), stored/logical {:.2}",
        rate(n, &t),
        (n * 4096) as f64 / t.0.elapsed().as_secs_f64() / 1e6,
        info.stored_bytes as f64 / info.logical_bytes as f64
    );
    drop(s);
    let _ = std::fs::remove_dir_all(bench_dir());
}
