//! cs.vt chunking compatibility: the csvt chunker and tree builder reproduce the
//! fixtures in `fixtures/csvt/chunking` byte for byte, and blockify → read
//! round-trips for both chunkers.

use proptest::prelude::*;
use std::io::{Read, Seek, SeekFrom};
use vt_engine::blockify::{blockify_bytes, blockify_reader, BlockifyOptions};
use vt_engine::chunk::{cut_offsets, ChunkerKind, ChunkerParams};
use vt_engine::hash::hex;
use vt_engine::read::{ensure_complete, read_all, read_range, write_to, BlockReader};
use vt_engine::store::MemoryStore;
use vt_engine::{BlockRef, HashAlg, Store};

fn fixture_dir() -> std::path::PathBuf {
    vt_tests::csvt_fixtures().join("chunking")
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture_dir().join(name)).unwrap()
}

/// Rows of a TSV fixture without its header line.
fn tsv_rows(name: &str) -> Vec<Vec<String>> {
    fixture_text(name)
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// `counter_bytes(label, n)`: sha256(label + i as 8-byte big-endian) for i = 0, 1, ...
fn counter_bytes(label: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut i = 0u64;
    while out.len() < n {
        let mut msg = label.to_vec();
        msg.extend_from_slice(&i.to_be_bytes());
        out.extend_from_slice(HashAlg::Sha256.hash(&msg).digest());
        i += 1;
    }
    out.truncate(n);
    out
}

/// Every input named in the fixtures, with its bytes.
fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let file = |n: &str| std::fs::read(fixture_dir().join(n)).unwrap();
    vec![
        ("random-1MiB.bin", file("random-1MiB.bin")),
        ("text-1MiB.txt", file("text-1MiB.txt")),
        ("sample.py", file("sample.py")),
        ("counter-6MiB", counter_bytes(b"csvt-fixture", 6 << 20)),
        ("zeros-100000", vec![0; 100_000]),
        ("counter-33", counter_bytes(b"csvt-fixture", 33)),
        ("counter-32", counter_bytes(b"csvt-fixture", 32)),
        ("empty", Vec::new()),
    ]
}

fn csvt_opts(threads: usize) -> BlockifyOptions {
    BlockifyOptions {
        threads,
        ..BlockifyOptions::csvt(HashAlg::Blake3)
    }
}

fn leaf_text(chunk: &[u8]) -> String {
    if chunk.len() <= 32 {
        format!("LB{{{}}}", hex(chunk))
    } else {
        format!("blake3:{}", HashAlg::Blake3.hash(chunk).hex())
    }
}

#[test]
fn offsets_match_fixtures() {
    for (name, data) in inputs() {
        let want: Vec<usize> = fixture_text(&format!("{name}.offsets"))
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(cut_offsets(ChunkerKind::Csvt, &data), want, "{name}");
    }
}

#[test]
fn chunk_leaves_match_fixtures() {
    for (name, data) in inputs() {
        let mut bounds = cut_offsets(ChunkerKind::Csvt, &data);
        bounds.insert(0, 0);
        bounds.push(data.len());
        let got: Vec<Vec<String>> = bounds
            .windows(2)
            .filter(|w| w[1] > w[0])
            .map(|w| {
                let c = &data[w[0]..w[1]];
                vec![w[0].to_string(), c.len().to_string(), leaf_text(c)]
            })
            .collect();
        let mut want = tsv_rows(&format!("{name}.chunks.tsv"));
        // The fixture lists the empty input's top block (`LB{}`) as its one chunk.
        if data.is_empty() {
            assert_eq!(want, [["0", "0", "LB{}"]]);
            want.clear();
        }
        assert_eq!(got, want, "{name}");
    }
}

/// The indirect nodes under `r`, depth first, as fixture rows.
fn indirect_rows(store: &MemoryStore, r: &BlockRef, depth: usize, out: &mut Vec<Vec<String>>) {
    let BlockRef::Indirect { hash, span } = r else {
        return;
    };
    let data = store.get_required(hash).unwrap();
    out.push(vec![
        depth.to_string(),
        span.to_string(),
        data.len().to_string(),
        hash.hex(),
        hex(&data),
    ]);
    for child in BlockRef::decode_all(&data).unwrap() {
        indirect_rows(store, &child, depth + 1, out);
    }
}

#[test]
fn trees_match_fixtures() {
    let tops = tsv_rows("top-blocks.tsv");
    for (name, data) in inputs() {
        let row = tops
            .iter()
            .find(|r| r[0] == name && r[1] == "none")
            .unwrap();
        assert_eq!(HashAlg::Sha256.hash(&data).hex(), row[3], "{name} input");
        assert_eq!(
            // cs.vt counts the empty input's `LB{}` as one chunk.
            cut_offsets(ChunkerKind::Csvt, &data).len() + 1,
            row[4].parse::<usize>().unwrap(),
            "{name} nchunks"
        );
        for threads in [1, 2] {
            let store = MemoryStore::new(HashAlg::Blake3);
            let top = blockify_bytes(&data, &store, &csvt_opts(threads)).unwrap();
            assert_eq!(hex(&top.encode()), row[5], "{name} top, {threads} threads");
            let indirect = format!("{name}.indirect.tsv");
            if fixture_dir().join(&indirect).exists() {
                let mut rows = Vec::new();
                indirect_rows(&store, &top, 0, &mut rows);
                assert_eq!(rows, tsv_rows(&indirect), "{name} indirect blocks");
            }
            assert_eq!(read_all(&store, &top).unwrap(), data, "{name} read back");
            assert!(ensure_complete(&store, &top).unwrap());
        }
    }
}

/// A reader handing out data in awkward sizes.
struct Dribble<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    i: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.sizes[self.i % self.sizes.len()]
            .min(buf.len())
            .min(self.data.len());
        self.i += 1;
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn reader_blockify_matches_fixture_top() {
    let data = counter_bytes(b"csvt-fixture", 6 << 20);
    let tops = tsv_rows("top-blocks.tsv");
    let row = tops.iter().find(|r| r[0] == "counter-6MiB").unwrap();
    for threads in [1, 2, 3] {
        let store = MemoryStore::new(HashAlg::Blake3);
        let r = Dribble {
            data: &data,
            sizes: vec![65543, 4096, 1000, 1 << 20],
            i: 0,
        };
        let top = blockify_reader(r, &store, &csvt_opts(threads)).unwrap();
        assert_eq!(hex(&top.encode()), row[5], "{threads} threads");
    }
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
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

fn default_opts(threads: usize) -> BlockifyOptions {
    BlockifyOptions {
        chunker: ChunkerKind::Default(ChunkerParams::new(256, 1024, 4096).unwrap()),
        hash_alg: HashAlg::Blake3,
        threads,
    }
}

#[test]
fn small_inputs_become_literals_or_one_leaf() {
    for opts in [csvt_opts(2), default_opts(2), BlockifyOptions::default()] {
        let store = MemoryStore::new(HashAlg::Blake3);
        assert_eq!(
            blockify_bytes(b"", &store, &opts).unwrap(),
            BlockRef::empty()
        );
        assert_eq!(
            blockify_bytes(b"x", &store, &opts).unwrap(),
            BlockRef::literal(b"x")
        );
        let d32 = pseudo_random(32, 1);
        assert_eq!(
            blockify_bytes(&d32, &store, &opts).unwrap(),
            BlockRef::literal(&d32)
        );
        let d33 = pseudo_random(33, 1);
        let r = blockify_bytes(&d33, &store, &opts).unwrap();
        assert_eq!(
            r,
            BlockRef::Hash {
                hash: HashAlg::Blake3.hash(&d33),
                span: 33
            }
        );
        assert_eq!(read_all(&store, &r).unwrap(), d33);
        assert_eq!(store.len().unwrap(), 1);
    }
}

#[test]
fn default_mode_turns_zero_runs_into_one_rle() {
    let store = MemoryStore::new(HashAlg::Blake3);
    let top = blockify_bytes(&vec![0u8; 10 << 20], &store, &BlockifyOptions::default()).unwrap();
    assert_eq!(
        top,
        BlockRef::Rle {
            span: 10 << 20,
            octet: 0
        }
    );
    assert!(store.is_empty().unwrap());
    // Data around a hole: the hole stays an RLE reference, and reads back as zeros.
    let mut data = pseudo_random(300_000, 5);
    data.extend(vec![0u8; 3 << 20]);
    data.extend(pseudo_random(300_000, 6));
    let top = blockify_bytes(&data, &store, &default_opts(2)).unwrap();
    let stored: u64 = store
        .hashcodes(None, false, usize::MAX)
        .unwrap()
        .iter()
        .map(|h| store.get(h).unwrap().unwrap().len() as u64)
        .sum();
    assert!(stored < 1 << 20, "hole was stored: {stored} bytes");
    assert_eq!(read_all(&store, &top).unwrap(), data);
}

#[test]
fn missing_and_corrupt_blocks_are_reported() {
    let data = pseudo_random(3 << 20, 9);
    let store = MemoryStore::new(HashAlg::Blake3);
    let top = blockify_bytes(&data, &store, &default_opts(2)).unwrap();
    let BlockRef::Indirect { hash, span } = top.clone() else {
        panic!("expected an indirect top, got {top}");
    };
    // A store missing one leaf.
    let partial = MemoryStore::new(HashAlg::Blake3);
    let all = store.hashcodes(None, false, usize::MAX).unwrap();
    let victim = all.iter().find(|h| **h != hash).unwrap();
    for h in &all {
        if h != victim {
            partial
                .add_hashed(*h, &store.get(h).unwrap().unwrap())
                .unwrap();
        }
    }
    assert!(matches!(read_all(&partial, &top), Err(vt_engine::Error::NotFound(h)) if h == *victim));
    let mut sink = Vec::new();
    assert!(write_to(&partial, &top, &mut sink).is_err());
    assert!(!ensure_complete(&partial, &top).unwrap());
    // A reference claiming the wrong span.
    let wrong = BlockRef::Indirect {
        hash,
        span: span + 1,
    };
    assert!(matches!(
        read_all(&store, &wrong),
        Err(vt_engine::Error::Corrupt { .. })
    ));
    let leaf = BlockRef::Hash {
        hash: *victim,
        span: 1,
    };
    assert!(matches!(
        read_all(&store, &leaf),
        Err(vt_engine::Error::Corrupt { .. })
    ));
}

#[test]
fn block_reader_reads_and_seeks() {
    let data = pseudo_random(2 << 20, 21);
    let store = MemoryStore::new(HashAlg::Blake3);
    let top = blockify_bytes(&data, &store, &csvt_opts(2)).unwrap();
    let mut r = BlockReader::new(&store, top.clone());
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    assert_eq!(all, data);
    for &(pos, len) in &[
        (0u64, 10usize),
        (16_000, 50_000),
        (2_097_000, 1000),
        (1_000_000, 1),
    ] {
        r.seek(SeekFrom::Start(pos)).unwrap();
        let mut buf = Vec::new();
        r.by_ref().take(len as u64).read_to_end(&mut buf).unwrap();
        let end = (pos as usize + len).min(data.len());
        assert_eq!(buf, &data[pos as usize..end]);
    }
    assert_eq!(r.seek(SeekFrom::End(-5)).unwrap(), data.len() as u64 - 5);
    assert!(r.seek(SeekFrom::Current(-(data.len() as i64))).is_err());
    // A sub-block of the tree reads like the matching slice.
    let sub = top.sub(1_000_001, 300_000).unwrap();
    let mut r = BlockReader::new(&store, sub.clone());
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert_eq!(got, &data[1_000_001..1_300_001]);
    assert_eq!(read_all(&store, &sub).unwrap(), got);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn roundtrip_with_random_ranges(
        seed in any::<u64>(),
        len in 0usize..400_000,
        zero_from in 0usize..400_000,
        zero_len in 0usize..100_000,
        csvt in any::<bool>(),
        threads in 1usize..4,
        ranges in proptest::collection::vec((0u64..420_000, 0u64..100_000), 1..6),
    ) {
        let mut data = pseudo_random(len, seed);
        let zs = zero_from.min(len);
        let ze = (zs + zero_len).min(len);
        data[zs..ze].fill(0);
        let opts = if csvt { csvt_opts(threads) } else { default_opts(threads) };
        let store = MemoryStore::new(HashAlg::Blake3);
        let top = blockify_bytes(&data, &store, &opts).unwrap();
        let r = Dribble { data: &data, sizes: vec![7777, 1, 30_000], i: 0 };
        prop_assert_eq!(&blockify_reader(r, &store, &opts).unwrap(), &top);
        prop_assert_eq!(top.span(), len as u64);
        prop_assert_eq!(&read_all(&store, &top).unwrap(), &data);
        for (off, n) in ranges {
            let s = (off as usize).min(len);
            let e = (s + n as usize).min(len);
            prop_assert_eq!(&read_range(&store, &top, off, n).unwrap()[..], &data[s..e]);
            let mut r = BlockReader::new(&store, top.clone());
            r.seek(SeekFrom::Start(off)).unwrap();
            let mut buf = Vec::new();
            r.take(n).read_to_end(&mut buf).unwrap();
            prop_assert_eq!(&buf[..], &data[s..e]);
        }
    }
}
