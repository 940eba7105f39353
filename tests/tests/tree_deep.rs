//! Trees nested far deeper than any real filesystem allows (a hostile archive) are
//! walked without exhausting the thread's stack.

use vt_engine::store::MemoryStore;
use vt_engine::tree::{check_present, stats};
use vt_engine::{BlockRef, Dirent, HashAlg, Store};

/// Builds `depth` directories, each holding only the next one, plus one file at the bottom.
fn nested(store: &MemoryStore, depth: usize) -> Dirent {
    let file_data = b"bottom";
    let file = Dirent::file(
        b"f",
        BlockRef::Hash {
            hash: store.add(file_data).unwrap(),
            span: file_data.len() as u64,
        },
    );
    let mut child = file;
    for _ in 0..depth {
        let mut content = Vec::new();
        child.encode_into(&mut content);
        let block = BlockRef::Hash {
            hash: store.add(&content).unwrap(),
            span: content.len() as u64,
        };
        child = Dirent::dir(b"d", block);
    }
    child
}

#[test]
fn stats_and_presence_check_survive_hostile_depth() {
    let store = MemoryStore::new(HashAlg::Blake3);
    // A recursive walk needs several hundred bytes of stack per level: 200,000 levels
    // overflow a 2 MiB test thread many times over.
    let depth = 200_000;
    let root = nested(&store, depth);
    let s = stats(&store, &root).unwrap();
    assert_eq!(s.dirs, depth as u64);
    assert_eq!(s.files, 1);
    assert_eq!(s.bytes, 6);
    check_present(&store, &root).unwrap();
}

#[test]
fn presence_check_names_the_missing_blocks() {
    let store = MemoryStore::new(HashAlg::Blake3);
    let root = nested(&store, 3);
    let other = MemoryStore::new(HashAlg::Blake3);
    let err = check_present(&other, &root).unwrap_err().to_string();
    assert!(
        err.contains("missing") || err.contains("not found"),
        "{err}"
    );
}
