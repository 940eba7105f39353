//! Every fuzz target on every CI run: its seeds, thousands of mutations of them
//! (flips, truncations, insertions, hostile length bytes, splices), random bytes, and
//! the inputs libFuzzer once found (`regressions/<target>/`, when there are any). A broken invariant panics
//! with the input printed, so it can be saved as a regression file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vt_engine::block::BlockRef;
use vt_engine::dir::{self, Dirent};
use vt_engine::hash::HashAlg;
use vt_engine::io::{Fs, OpenMode, OsFs};
use vt_engine::segment::{self, ScanEnd, SEGMENT_HEADER_LEN};

const MUTATIONS: usize = 20_000;

/// Fewer for the targets that build a store and read trees out of it per input.
const MUTATIONS_HEAVY: usize = 3_000;

fn run(name: &str, f: fn(&[u8]), input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let keep = std::env::temp_dir().join(format!("vt-fuzz-{name}-failure"));
        let _ = std::fs::write(&keep, input);
        panic!(
            "target {name} failed on an input of {} bytes, kept in {}",
            input.len(),
            keep.display()
        );
    }
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.gen_range(0..seeds.len())].clone();
    for _ in 0..rng.gen_range(1..4) {
        let at = if v.is_empty() {
            0
        } else {
            rng.gen_range(0..v.len())
        };
        match rng.gen_range(0..7) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.gen_range(0..8),
            1 if !v.is_empty() => v[at] = rng.gen(),
            2 => v.truncate(at),
            3 => v.insert(at, rng.gen()),
            // Hostile lengths: a run of 0xff reads as a huge BSUInt or u32.
            4 => {
                let n = rng.gen_range(1..9).min(v.len() - at.min(v.len()));
                v[at..at + n].fill(0xff);
            }
            5 => {
                let other = &seeds[rng.gen_range(0..seeds.len())];
                let from = rng.gen_range(0..=other.len());
                v.splice(at..at, other[from..].iter().copied());
            }
            _ if !v.is_empty() => {
                let end = rng.gen_range(at..v.len());
                let dup = v[at..=end].to_vec();
                v.splice(at..at, dup);
            }
            _ => v.push(rng.gen()),
        }
    }
    v
}

#[test]
fn every_target_survives_mutations_of_its_seeds() {
    for (i, (name, f)) in vt_fuzz::TARGETS.into_iter().enumerate() {
        let seeds = vt_fuzz::seeds(name);
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for s in &seeds {
            run(name, f, s);
        }
        let mut rng = StdRng::seed_from_u64(0x7674_6675_7a7a + i as u64);
        let n = match name {
            "tree" | "fs" => MUTATIONS_HEAVY,
            _ => MUTATIONS,
        };
        for _ in 0..n {
            run(name, f, &mutate(&mut rng, &seeds));
        }
        for _ in 0..200 {
            let len = rng.gen_range(0..300);
            let random: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            run(name, f, &random);
        }
        // Inputs libFuzzer once found, kept after their fix.
        let found = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("regressions")
            .join(name);
        for file in std::fs::read_dir(found).into_iter().flatten() {
            run(name, f, &std::fs::read(file.unwrap().path()).unwrap());
        }
    }
}

/// The seeds are valid inputs, so the round-trip invariants behind them are exercised
/// (a seed every decoder rejected would only test the error paths).
#[test]
fn seeds_are_accepted_by_their_decoders() {
    let refs = vt_fuzz::seeds("block_ref");
    let (all, singles) = refs.split_last().unwrap();
    let decoded: Vec<BlockRef> = singles
        .iter()
        .map(|s| BlockRef::decode(s).unwrap())
        .collect();
    assert_eq!(BlockRef::decode_all(all).unwrap(), decoded);
    // Every kind of reference: literal, RLE, indirect, sub-block, hash.
    let kinds: std::collections::BTreeSet<String> = decoded
        .iter()
        .map(|r| {
            format!("{r:?}")
                .split(['{', '('])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(kinds.len() >= 5, "{kinds:?}");
    let dirents = vt_fuzz::seeds("dirent");
    let (block, singles) = dirents.split_last().unwrap();
    assert!(singles.iter().all(|s| Dirent::decode(s).is_ok()));
    assert_eq!(dir::decode_entries(block).unwrap().len(), singles.len());
    let text = vt_fuzz::seeds("text");
    let refs = text
        .iter()
        .filter(|t| BlockRef::parse(std::str::from_utf8(t).unwrap()).is_ok())
        .count();
    let entries = text
        .iter()
        .filter(|t| Dirent::parse(std::str::from_utf8(t).unwrap()).is_ok())
        .count();
    assert!(refs >= 6 && entries >= 4, "{refs} refs, {entries} dirents");

    for d in vt_fuzz::seeds("fs") {
        assert!(dir::decode_entries(&d).unwrap().len() >= 4);
    }
    let segs = vt_fuzz::seeds("segment");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &segs[0]).unwrap();
    let io = OsFs.open(file.path(), OpenMode::Read).unwrap();
    let mut records = 0;
    let end = segment::scan_v1(&*io, SEGMENT_HEADER_LEN, true, |_| {
        records += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(end, ScanEnd::Clean(segs[0].len() as u64));
    assert_eq!(records, 4, "three block records and one group");
    std::fs::write(file.path(), &segs[1]).unwrap();
    let io = OsFs.open(file.path(), OpenMode::Read).unwrap();
    let mut legacy = 0;
    segment::scan_legacy(&*io, 0, HashAlg::Blake3, |_| {
        legacy += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(legacy, 3);
}
