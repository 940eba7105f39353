//! Tests of the fast paths: cached reads with read-ahead, commits outside the
//! lock (snapshot and install), and the background flusher.

use super::*;
use crate::blockify::blockify_bytes;
use crate::error::Result;
use crate::hash::{HashAlg, HashCode};
use crate::store::{MemoryStore, StoreSink};
use proptest::prelude::*;
use std::sync::mpsc;
use std::time::Duration;

const ME: Caller = Caller {
    uid: 1000,
    gid: 1000,
};

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn one_thread() -> BlockifyOptions {
    BlockifyOptions {
        threads: 1,
        ..BlockifyOptions::default()
    }
}

/// A filesystem whose root holds `f` with `data`, stored beforehand.
fn stored_file(data: &[u8], opts: FsOptions) -> (Arc<dyn Store>, Fs, Ino) {
    let s: Arc<dyn Store> = Arc::new(MemoryStore::with_capacity(HashAlg::Blake3, 1 << 30));
    let sink = StoreSink(s.as_ref());
    let file = Dirent::file(b"f", blockify_bytes(data, &sink, &one_thread()).unwrap());
    let dir = crate::dir::encode_entries(&[file]).unwrap();
    let root = Dirent::dir(b"", blockify_bytes(&dir, &sink, &one_thread()).unwrap());
    let fs = Fs::new(s.clone(), &root, opts).unwrap();
    let ino = fs.lookup(ROOT_INO, b"f").unwrap().ino;
    (s, fs, ino)
}

#[test]
fn sequential_reads_with_read_ahead_return_the_content() {
    let data = pattern(6 << 20, 1);
    let opts = FsOptions {
        readahead: 1 << 20,
        // Small enough that read-ahead and reads evict each other.
        cache_bytes: 2 << 20,
        ..FsOptions::default()
    };
    let (_s, fs, f) = stored_file(&data, opts);
    let mut got = Vec::new();
    while got.len() < data.len() {
        got.extend(fs.read(f, got.len() as u64, 128 << 10).unwrap());
    }
    assert!(got == data);
    // One request spanning many leaves and indirect blocks, from odd offsets.
    for (off, len) in [(0, 6 << 20), (12_345, 4 << 20), ((6 << 20) - 7, 100)] {
        let got = fs.read(f, off as u64, len).unwrap();
        let end = (off + len as usize).min(data.len());
        assert!(got == data[off..end], "range {off}+{len}");
    }
    assert!(fs.read(f, 7 << 20, 10).unwrap().is_empty());
}

#[test]
fn reads_of_holes_and_partial_leaves_after_a_commit() {
    let (_s, fs, f) = stored_file(&pattern(300_000, 2), FsOptions::default());
    let fh = fs.open(f, true, false).unwrap();
    fs.write(f, 5 << 20, b"tail").unwrap();
    fs.release(fh).unwrap();
    let mut want = pattern(300_000, 2);
    want.resize(5 << 20, 0);
    want.extend_from_slice(b"tail");
    let got = fs.read(f, 0, u32::MAX).unwrap();
    assert!(got == want);
    let got = fs.read(f, 299_990, 1 << 20).unwrap();
    assert!(got == want[299_990..299_990 + (1 << 20)]);
}

/// A store whose adds wait until the gate opens (and report each wait).
#[derive(Debug)]
struct GatedStore {
    inner: MemoryStore,
    open: parking_lot::Mutex<bool>,
    changed: parking_lot::Condvar,
    waiting: parking_lot::Mutex<Option<mpsc::Sender<()>>>,
}

impl GatedStore {
    fn new() -> Arc<GatedStore> {
        Arc::new(GatedStore {
            inner: MemoryStore::with_capacity(HashAlg::Blake3, 1 << 30),
            open: parking_lot::Mutex::new(true),
            changed: parking_lot::Condvar::new(),
            waiting: parking_lot::Mutex::new(None),
        })
    }
    fn close(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        *self.waiting.lock() = Some(tx);
        *self.open.lock() = false;
        rx
    }
    fn reopen(&self) {
        *self.open.lock() = true;
        self.changed.notify_all();
    }
}

impl Store for GatedStore {
    fn hash_alg(&self) -> HashAlg {
        self.inner.hash_alg()
    }
    fn add_hashed(&self, hash: HashCode, data: &[u8]) -> Result<bool> {
        let mut open = self.open.lock();
        if !*open {
            if let Some(tx) = self.waiting.lock().take() {
                let _ = tx.send(());
            }
        }
        while !*open {
            self.changed.wait(&mut open);
        }
        drop(open);
        self.inner.add_hashed(hash, data)
    }
    fn get(&self, hash: &HashCode) -> Result<Option<Vec<u8>>> {
        self.inner.get(hash)
    }
    fn contains(&self, hash: &HashCode) -> Result<bool> {
        self.inner.contains(hash)
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn hashcodes(
        &self,
        start: Option<&HashCode>,
        after: bool,
        limit: usize,
    ) -> Result<Vec<HashCode>> {
        self.inner.hashcodes(start, after, limit)
    }
    fn len(&self) -> Result<u64> {
        self.inner.len()
    }
    fn is_complete(&self, hash: &HashCode) -> Result<bool> {
        self.inner.is_complete(hash)
    }
    fn set_complete(&self, hash: &HashCode) -> Result<()> {
        self.inner.set_complete(hash)
    }
}

/// Runs `f` on a thread and fails the test if it does not finish (a deadlock:
/// the limit is not a speed threshold).
fn finishes<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the operation stalled behind a commit")
}

#[test]
fn requests_go_on_while_a_flush_is_storing() {
    let gate = GatedStore::new();
    let fs = Arc::new(Fs::empty(gate.clone(), FsOptions::default()));
    let other = {
        let (a, fh) = fs.create(ROOT_INO, b"other", 0o644, ME).unwrap();
        fs.write(a.ino, 0, b"readable").unwrap();
        fs.release(fh).unwrap();
        a.ino
    };
    let (big, fh) = fs.create(ROOT_INO, b"big", 0o644, ME).unwrap();
    let first = pattern(3 << 20, 3);
    fs.write(big.ino, 0, &first).unwrap();
    let stalled = gate.close();
    let flushing = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.fsync(big.ino))
    };
    // The flush is now blocked inside the store, holding no lock.
    stalled.recv().unwrap();
    let fs2 = fs.clone();
    let (read, attr, listed) = finishes(move || {
        let read = fs2.read(other, 0, 100).unwrap();
        let attr = fs2.getattr(big.ino).unwrap();
        fs2.mkdir(ROOT_INO, b"d", 0o755, ME).unwrap();
        // Writing the committing file is fine too: it lands after the snapshot.
        fs2.write(big.ino, 3 << 20, b"more").unwrap();
        (read, attr, fs2.readdir(ROOT_INO).unwrap().len())
    });
    assert_eq!(read, b"readable");
    assert_eq!(attr.size, 3 << 20);
    assert_eq!(listed, 5);
    gate.reopen();
    flushing.join().unwrap().unwrap();
    let mut want = first;
    want.extend_from_slice(b"more");
    // The write made during the commit is kept, and the next commit stores it.
    assert!(fs.read(big.ino, 0, u32::MAX).unwrap() == want);
    fs.release(fh).unwrap();
    let r: BlockRef = String::from_utf8(fs.getxattr(big.ino, XATTR_BLOCK).unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let whole = blockify_bytes(&want, &StoreSink(gate.as_ref()), &one_thread()).unwrap();
    assert_eq!(r, whole);
}

#[test]
fn background_flusher_stores_long_writes_like_one_blockify() {
    let s: Arc<dyn Store> = Arc::new(MemoryStore::with_capacity(HashAlg::Blake3, 1 << 30));
    let fs = Fs::empty(
        s.clone(),
        FsOptions {
            dirty_limit: 8 * PAGE,
            blockify: BlockifyOptions {
                threads: 2,
                ..BlockifyOptions::default()
            },
            ..FsOptions::default()
        },
    );
    let (a, fh) = fs.create(ROOT_INO, b"f", 0o600, ME).unwrap();
    let data = pattern(5 << 20, 4);
    for (i, piece) in data.chunks(100_000).enumerate() {
        fs.write(a.ino, i as u64 * 100_000, piece).unwrap();
    }
    // Rewrite a range the flusher may be committing right now.
    fs.write(a.ino, 1_000_000, &[7; 300_000]).unwrap();
    let mut want = data;
    want[1_000_000..1_300_000].fill(7);
    fs.release(fh).unwrap();
    assert!(fs.read(a.ino, 0, u32::MAX).unwrap() == want);
    let root = fs.sync().unwrap().expect("changed");
    let entries = crate::tree::read_dir_entries(s.as_ref(), &root).unwrap();
    let stored = entries[0].block.clone().unwrap();
    assert_eq!(
        stored,
        blockify_bytes(&want, &StoreSink(s.as_ref()), &one_thread()).unwrap()
    );
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Truncate(u64),
    /// Freeze the content (if no snapshot is pending).
    Snapshot,
    /// Commit the pending snapshot and install it.
    Install,
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..400_000, proptest::collection::vec(any::<u8>(), 0..150_000))
            .prop_map(|(o, d)| Op::Write(o, d)),
        1 => (0u64..500_000).prop_map(Op::Truncate),
        2 => Just(Op::Snapshot),
        2 => Just(Op::Install),
        1 => Just(Op::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Writes and truncates made while a snapshot is being committed survive its
    /// install, and the final commit equals blockifying the content in one go.
    #[test]
    fn snapshots_keep_later_changes(ops in proptest::collection::vec(op(), 1..14)) {
        let s = MemoryStore::with_capacity(HashAlg::Blake3, 1 << 30);
        let o = one_thread();
        let mut f = FileBuf::new(BlockRef::empty());
        let mut model: Vec<u8> = Vec::new();
        let mut pending = None;
        for op in ops {
            match op {
                Op::Write(off, d) => {
                    f.write(&s, off, &d).unwrap();
                    let end = off as usize + d.len();
                    if !d.is_empty() && model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..off as usize + d.len()].copy_from_slice(&d);
                }
                Op::Truncate(n) => {
                    f.truncate(n);
                    model.resize(n as usize, 0);
                }
                Op::Snapshot => {
                    if pending.is_none() {
                        pending = Some(f.snapshot());
                    }
                }
                Op::Install => {
                    if let Some(snap) = pending.take() {
                        let top = snap.commit(&s, &o).unwrap();
                        f.install(&snap, top);
                    }
                }
                Op::Commit => {
                    if pending.is_none() {
                        f.commit(&s, &o).unwrap();
                    }
                }
            }
            prop_assert_eq!(f.size(), model.len() as u64);
            prop_assert!(f.read(&s, 0, u64::MAX).unwrap() == model);
        }
        if let Some(snap) = pending.take() {
            let top = snap.commit(&s, &o).unwrap();
            f.install(&snap, top);
        }
        let top = f.commit(&s, &o).unwrap();
        prop_assert!(!f.is_dirty());
        prop_assert_eq!(top, blockify_bytes(&model, &StoreSink(&s), &o).unwrap());
    }
}
