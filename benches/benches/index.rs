//! Block index benchmark: sustained adds, misses, hits, size and write amplification.
//!
//! `cargo bench -p vt-benches --bench index` (env: `VT_BENCH_BLOCKS`, default 5,000,000;
//! `VT_BENCH_BATCH` blocks per commit, default 1,000,000; `VT_BENCH_CACHE_MIB`, default 1024;
//! `VT_BENCH_DIR`, default the system temp directory). Prints one line per measurement;
//! not a criterion bench because the interesting numbers are at millions of keys.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vt_engine::index::{key_of, Batch, Index, IndexKey, Location, NegativeFilter, SegmentId};
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
    let base = std::env::var_os("VT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    base.join(format!("vt-index-bench-{}", std::process::id()))
}

fn rate(n: u64, t: Instant) -> String {
    format!("{:.0}/s", n as f64 / t.elapsed().as_secs_f64())
}

fn main() {
    let n = env_u64("VT_BENCH_BLOCKS", 5_000_000);
    let batch = env_u64("VT_BENCH_BATCH", 1_000_000);
    let cache = (env_u64("VT_BENCH_CACHE_MIB", 1024) as usize) << 20;
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("index.redb");
    let file = OsFs.open(&path, OpenMode::CreateNew).expect("index file");
    let written = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(Counting {
        inner: file,
        written: written.clone(),
    });
    let index = Index::open_writable(
        IndexBackend::Io(counting),
        ConcurrencyMode::ExclusiveWriter,
        cache,
    )
    .expect("open");
    let filter = NegativeFilter::new(0);

    println!(
        "index bench: {n} blocks, {batch} per commit, cache {} MiB",
        cache >> 20
    );
    let t0 = Instant::now();
    let mut i = 0;
    while i < n {
        let tb = Instant::now();
        let end = (i + batch).min(n);
        let mut b = Batch::default();
        for j in i..end {
            let k = key(j);
            // The ingest path: a miss answered by the filter, then the add.
            if filter.may_contain(&k) && index.get(&k).expect("get").is_some() {
                continue;
            }
            filter.insert(&k);
            b.blocks.push((k, loc(j)));
        }
        index.commit(b, true).expect("commit");
        println!("  adds {i:>10}..{end:<10} {}", rate(end - i, tb));
        i = end;
    }
    let add_rate = rate(n, t0);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let logical = n * (33 + 24);
    println!("sustained adds: {add_rate} (incl. filter check + durable commits)");
    println!(
        "index file: {size} bytes, {:.1} bytes/block",
        size as f64 / n as f64
    );
    println!(
        "write amplification: {:.1}x ({} bytes written for {} bytes of keys+values)",
        written.load(Ordering::Relaxed) as f64 / logical as f64,
        written.load(Ordering::Relaxed),
        logical
    );
    println!(
        "filter memory: {} bytes ({:.2} bytes/block)",
        filter.memory_bytes(),
        filter.memory_bytes() as f64 / n as f64
    );

    let probes = 1_000_000u64;
    let t = Instant::now();
    let mut fp = 0;
    for j in n..n + probes {
        let k = key(j);
        if filter.may_contain(&k) {
            fp += 1;
            assert!(index.get(&k).expect("get").is_none());
        }
    }
    println!(
        "contains-miss (filter + index on false positive): {} ({fp} false positives)",
        rate(probes, t)
    );
    let t = Instant::now();
    for j in n..n + probes / 4 {
        assert!(index.get(&key(j)).expect("get").is_none());
    }
    println!(
        "contains-miss without filter (B-tree): {}",
        rate(probes / 4, t)
    );
    let t = Instant::now();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..probes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert!(index.get(&key(x % n)).expect("get").is_some());
    }
    println!("get-hit (random keys): {}", rate(probes, t));
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
    datadir_adds();
}

/// End-to-end DataDir adds of 4 KiB blocks (half compressible) from two threads.
fn datadir_adds() {
    let n = env_u64("VT_BENCH_DATADIR_BLOCKS", 200_000);
    let dir = bench_dir().join("store");
    let s = Arc::new(DataDir::create(&dir, DataDirOptions::default()).expect("create"));
    let t = Instant::now();
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
        rate(n, t),
        (n * 4096) as f64 / t.elapsed().as_secs_f64() / 1e6,
        info.stored_bytes as f64 / info.logical_bytes as f64
    );
    drop(s);
    let _ = std::fs::remove_dir_all(bench_dir());
}
