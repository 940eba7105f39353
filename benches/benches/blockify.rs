//! Blockify throughput into a MemoryStore: chunking, hashing, storing, tree building.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vt_engine::blockify::{blockify_bytes, blockify_reader, BlockifyOptions};
use vt_engine::chunk::ChunkerKind;
use vt_engine::read::write_to;
use vt_engine::store::{DataDir, DataDirOptions, MemoryStore};
use vt_engine::HashAlg;
use vt_engine::Store;

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn opts(chunker: ChunkerKind, threads: usize) -> BlockifyOptions {
    BlockifyOptions {
        chunker,
        hash_alg: HashAlg::Blake3,
        threads,
    }
}

fn blockify(c: &mut Criterion) {
    let data = random_bytes(64 << 20, 7);
    let mut g = c.benchmark_group("blockify");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    for (name, kind) in [
        ("default", ChunkerKind::default()),
        ("csvt", ChunkerKind::Csvt),
    ] {
        for threads in [1, 2] {
            let o = opts(kind, threads);
            g.bench_function(format!("bytes/{name}/{threads}t"), |b| {
                b.iter(|| {
                    let store = MemoryStore::new(HashAlg::Blake3);
                    blockify_bytes(black_box(&data), &store, &o).unwrap()
                })
            });
        }
        let o = opts(kind, 2);
        g.bench_function(format!("reader/{name}/2t"), |b| {
            b.iter(|| {
                let store = MemoryStore::new(HashAlg::Blake3);
                blockify_reader(black_box(&data[..]), &store, &o).unwrap()
            })
        });
    }
    g.finish();
}

fn read_back(c: &mut Criterion) {
    let data = random_bytes(64 << 20, 8);
    let store = MemoryStore::new(HashAlg::Blake3);
    let top = blockify_bytes(&data, &store, &opts(ChunkerKind::default(), 2)).unwrap();
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("write_to/default", |b| {
        b.iter(|| write_to(&store, &top, &mut std::io::sink()).unwrap())
    });
    g.finish();
    // Random 64 KiB ranges: only the leaves overlapping each range are fetched.
    let mut g = c.benchmark_group("read_range");
    g.throughput(Throughput::Bytes(64 << 10));
    let mut x = 12345u64;
    g.bench_function("64KiB/random-offset", |b| {
        b.iter(|| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let off = (x >> 16) % (data.len() as u64 - (64 << 10));
            vt_engine::read::read_range(&store, &top, off, 64 << 10).unwrap()
        })
    });
    g.finish();
}

/// `vt save` and `vt cat` without the CLI: blockify into a DataDir on disk and commit
/// (fsync included), then write the content back out.
fn datadir(c: &mut Criterion) {
    let random = random_bytes(64 << 20, 9);
    let text: Vec<u8> = (0..random.len())
        .map(|i| b"the quick brown fox jumps over the lazy dog\n"[i % 44] ^ (i / 4096) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("datadir");
    g.throughput(Throughput::Bytes(random.len() as u64));
    g.sample_size(10);
    for (name, data) in [("random", &random), ("text", &text)] {
        let o = opts(ChunkerKind::default(), 2);
        let mut n = 0;
        g.bench_function(format!("save/{name}"), |b| {
            b.iter(|| {
                n += 1;
                let store =
                    DataDir::create(dir.path().join(format!("{name}{n}")), Default::default())
                        .unwrap();
                let top = blockify_reader(black_box(&data[..]), &store, &o).unwrap();
                store.flush().unwrap();
                top
            })
        });
        let path = dir.path().join(format!("{name}-read"));
        let store = DataDir::create(&path, DataDirOptions::default()).unwrap();
        let top = blockify_bytes(data, &store, &o).unwrap();
        store.flush().unwrap();
        g.bench_function(format!("cat/{name}"), |b| {
            b.iter(|| write_to(&store, &top, &mut std::io::sink()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, blockify, read_back, datadir);
criterion_main!(benches);
