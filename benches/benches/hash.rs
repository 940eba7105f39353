//! Hashing throughput per algorithm and block size (one core).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vt_engine::HashAlg;

fn hashing(c: &mut Criterion) {
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    for size in [4usize << 10, 64 << 10, 1 << 20] {
        let mut g = c.benchmark_group(format!("hash/{}KiB", size >> 10));
        g.throughput(Throughput::Bytes(size as u64));
        for alg in [HashAlg::Blake3, HashAlg::Sha256, HashAlg::Sha1] {
            g.bench_function(alg.name(), |b| {
                b.iter(|| alg.hash(black_box(&data[..size])))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, hashing);
criterion_main!(benches);
