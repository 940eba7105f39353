//! Per-call overhead of `vt_get` on a cached block against the same operation through
//! the Rust API (`Store::get` plus the copy into the caller's buffer).
//!
//! "Cached": the block sits in a MemoryStore, and in a DataDir whose segment is in the
//! page cache, so the numbers measure the call path rather than the disk.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use vt::hash::vt_hashcode;
use vt::store::VT_OPEN_CREATE;
use vt::store::{vt_add, vt_get, vt_store, vt_store_free, vt_store_open, vt_store_open_memory};
use vt_engine::store::{DataDir, DataDirOptions, MemoryStore};
use vt_engine::{HashAlg, Store};

const SIZES: [usize; 2] = [64, 4096];

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn rust_get(store: &dyn Store, hash: &vt_engine::HashCode, buf: &mut [u8]) -> usize {
    let d = store.get(hash).unwrap().unwrap();
    buf[..d.len()].copy_from_slice(&d);
    d.len()
}

/// Adds `bytes` through the C API and returns its hashcode.
fn c_add(s: *mut vt_store, bytes: &[u8]) -> vt_hashcode {
    let mut h = std::mem::MaybeUninit::<vt_hashcode>::uninit();
    // SAFETY: `s` is a live handle; `bytes` and `h` are valid for the call.
    let rc = unsafe { vt_add(s, bytes.as_ptr(), bytes.len(), h.as_mut_ptr()) };
    assert_eq!(rc, vt::error::vt_result::VT_OK);
    // SAFETY: vt_add wrote `h` on success.
    unsafe { h.assume_init() }
}

fn c_get(s: *mut vt_store, h: &vt_hashcode, buf: &mut [u8]) -> usize {
    let mut n = 0usize;
    // SAFETY: `s` is live; `h`, `buf` and `n` are valid for the call.
    let rc = unsafe { vt_get(s, h, buf.as_mut_ptr(), buf.len(), &mut n) };
    debug_assert_eq!(rc, vt::error::vt_result::VT_OK);
    n
}

fn bench_memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("get_cached/memory");
    let rust = MemoryStore::new(HashAlg::Blake3);
    let mut cs: *mut vt_store = std::ptr::null_mut();
    // SAFETY: `cs` is a valid out-pointer.
    unsafe { vt_store_open_memory(0, &mut cs) };
    let mut buf = vec![0u8; 8192];
    for n in SIZES {
        let d = data(n);
        let h = rust.add(&d).unwrap();
        let ch = c_add(cs, &d);
        g.bench_with_input(BenchmarkId::new("rust", n), &n, |b, _| {
            b.iter(|| black_box(rust_get(&rust, black_box(&h), &mut buf)))
        });
        g.bench_with_input(BenchmarkId::new("vt_get", n), &n, |b, _| {
            b.iter(|| black_box(c_get(cs, black_box(&ch), &mut buf)))
        });
    }
    g.finish();
    // SAFETY: `cs` came from vt_store_open_memory and is freed once.
    unsafe { vt_store_free(cs) };
}

fn bench_datadir(c: &mut Criterion) {
    let mut g = c.benchmark_group("get_cached/datadir");
    let tmp = tempfile::tempdir().unwrap();
    let rust = DataDir::create(tmp.path().join("rust"), DataDirOptions::default()).unwrap();
    let cpath = std::ffi::CString::new(tmp.path().join("c").to_str().unwrap()).unwrap();
    let mut cs: *mut vt_store = std::ptr::null_mut();
    // SAFETY: `cpath` is NUL-terminated; `cs` is a valid out-pointer.
    unsafe { vt_store_open(cpath.as_ptr(), VT_OPEN_CREATE, &mut cs) };
    assert!(!cs.is_null());
    let mut buf = vec![0u8; 8192];
    for n in SIZES {
        let d = data(n);
        let h = rust.add(&d).unwrap();
        rust.commit().unwrap();
        let ch = c_add(cs, &d);
        // SAFETY: `cs` is live.
        unsafe { vt::store::vt_store_flush(cs) };
        g.bench_with_input(BenchmarkId::new("rust", n), &n, |b, _| {
            b.iter(|| black_box(rust_get(&rust, black_box(&h), &mut buf)))
        });
        g.bench_with_input(BenchmarkId::new("vt_get", n), &n, |b, _| {
            b.iter(|| black_box(c_get(cs, black_box(&ch), &mut buf)))
        });
    }
    g.finish();
    // SAFETY: `cs` came from vt_store_open and is freed once.
    unsafe { vt_store_free(cs) };
}

criterion_group!(benches, bench_memory, bench_datadir);
criterion_main!(benches);
