//! Chunker throughput: the default gear chunker and the csvt rolling hash.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vt_engine::chunk::{ChunkerKind, ChunkerParams};

/// Seeded incompressible bytes (xorshift), so runs are comparable.
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

/// Counts chunks, feeding the stream in 1 MiB buffers as blockify does.
fn count_chunks(kind: ChunkerKind, data: &[u8]) -> usize {
    let mut c = kind.chunker();
    let mut n = 0;
    for buf in data.chunks(1 << 20) {
        let mut pos = 0;
        while let Some(k) = c.next_cut(&buf[pos..]) {
            n += 1;
            pos += k;
            if pos == buf.len() {
                break;
            }
        }
    }
    n + 1
}

fn chunkers(c: &mut Criterion) {
    let data = random_bytes(64 << 20, 42);
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);
    let kinds = [
        ("default-64k", ChunkerKind::Default(ChunkerParams::DEFAULT)),
        (
            "default-16k",
            ChunkerKind::Default(ChunkerParams::new(4 << 10, 16 << 10, 64 << 10).unwrap()),
        ),
        ("csvt", ChunkerKind::Csvt),
    ];
    for (name, kind) in kinds {
        let n = count_chunks(kind, &data);
        eprintln!("{name}: {n} chunks, mean {} bytes", data.len() / n);
        g.bench_function(name, |b| b.iter(|| count_chunks(kind, black_box(&data))));
    }
    g.finish();
}

criterion_group!(benches, chunkers);
criterion_main!(benches);
