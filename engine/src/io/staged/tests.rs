use super::*;
use crate::io::{Fs, OpenMode, OsFile, SimFs};
use proptest::prelude::*;
use std::path::Path;

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    (0..n as u64)
        .map(|i| (((i + seed) * 2654435761) >> 7) as u8)
        .collect()
}

fn read(f: &dyn FileIo, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    f.read_at(&mut buf, offset)?;
    Ok(buf)
}

/// A staged file over a real file of `dir`, with small chunks so tests cross many.
fn os_staged(dir: &Path, refuse_direct: bool) -> (StagedFile, Arc<OsFile>) {
    let path = dir.join("f");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    let os = Arc::new(OsFile::new(file, &path));
    if refuse_direct {
        // As if the file system refused O_DIRECT at open (tmpfs on older kernels, ...).
        os.direct.set(None).unwrap();
    }
    let staging = Staging {
        align: 4096,
        chunk: 64 << 10,
        background: true,
        depth: 2,
        writers: 2,
        prealloc: 256 << 10,
    };
    (StagedFile::new(os.clone(), staging), os)
}

/// Appends records of awkward sizes to `model`'s bytes (already in the file) until there
/// are `total`, checking read-your-writes all along.
fn append_records(f: &StagedFile, model: &mut Vec<u8>, total: usize) {
    let mut i = 0u64;
    while model.len() < total {
        let rec = bytes(1000 + (i as usize * 7919) % 30000, i);
        f.write_at(&rec, model.len() as u64).unwrap();
        model.extend_from_slice(&rec);
        // Bytes that are staged, queued or just written read back at once.
        let from = model.len().saturating_sub(70_000);
        assert_eq!(
            read(f, from as u64, model.len() - from).unwrap(),
            model[from..]
        );
        i += 1;
    }
    assert_eq!(f.len().unwrap(), model.len() as u64);
}

#[test]
fn appends_through_direct_chunks_read_back_and_end_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (f, os) = os_staged(dir.path(), false);
    f.write_at(b"header", 0).unwrap();
    let mut model = b"header".to_vec();
    append_records(&f, &mut model, 600_000);
    f.sync().unwrap();
    let on_disk = std::fs::read(dir.path().join("f")).unwrap();
    assert_eq!(on_disk, model, "every byte, no padding");
    assert_eq!(read(&*os, 0, model.len()).unwrap(), model);
    assert_eq!(read(&f, 0, model.len()).unwrap(), model);
}

#[test]
fn a_second_transaction_continues_at_an_unaligned_end() {
    let dir = tempfile::tempdir().unwrap();
    let (f, _) = os_staged(dir.path(), false);
    let mut first = Vec::new();
    append_records(&f, &mut first, 100_000);
    f.sync().unwrap();
    let second = bytes(300_001, 9);
    f.write_at(&second, first.len() as u64).unwrap();
    f.sync().unwrap();
    let on_disk = std::fs::read(dir.path().join("f")).unwrap();
    assert_eq!(on_disk, [first, second].concat());
}

#[test]
fn readers_elsewhere_see_every_synced_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (f, _) = os_staged(dir.path(), false);
    let first = bytes(5000, 1);
    f.write_at(&first, 0).unwrap();
    f.sync().unwrap();
    // Another descriptor caches the partly filled last page before the direct writes.
    let other = std::fs::File::open(dir.path().join("f")).unwrap();
    let mut seen = vec![0; 5000];
    std::os::unix::fs::FileExt::read_exact_at(&other, &mut seen, 0).unwrap();
    let more = bytes(500_000, 2);
    f.write_at(&more, 5000).unwrap();
    f.sync().unwrap();
    let mut all = vec![0; 505_000];
    std::os::unix::fs::FileExt::read_exact_at(&other, &mut all, 0).unwrap();
    assert_eq!(all, [first, more].concat());
}

#[test]
fn a_file_system_refusing_direct_io_gets_ordinary_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (f, os) = os_staged(dir.path(), true);
    let mut model = Vec::new();
    append_records(&f, &mut model, 300_000);
    f.sync().unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), model);
    assert!(os.direct_file().is_none());
}

#[test]
fn a_refused_direct_write_falls_back_to_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g");
    let file = std::fs::File::create_new(&path).unwrap();
    let os = OsFile::new(file, &path);
    // Misaligned on purpose: O_DIRECT refuses it with EINVAL (a file system without
    // O_DIRECT refuses the open instead); either way the bytes must land.
    let data = bytes(5000, 3);
    os.write_direct_at(&data[1..4097], 1).unwrap();
    let mut expect = vec![0u8];
    expect.extend_from_slice(&data[1..4097]);
    assert_eq!(std::fs::read(&path).unwrap(), expect);
}

#[test]
fn os_files_opened_for_writing_are_staged() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h");
    let f = crate::io::OsFs.open(&p, OpenMode::CreateNew).unwrap();
    let data = bytes(20 << 20, 4);
    f.write_at(&data, 0).unwrap();
    assert_eq!(
        read(&*f, (20 << 20) - 10, 10).unwrap(),
        data[data.len() - 10..]
    );
    f.sync().unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), data);
    assert!(format!("{f:?}").contains("StagedFile"));
}

/// Fails every direct write with EIO; everything else goes to `inner`.
#[derive(Debug)]
struct FailingDirect(Arc<dyn FileIo>);

impl FileIo for FailingDirect {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_at(data, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
    fn write_direct_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EIO))
    }
}

#[test]
fn a_failed_chunk_write_fails_later_calls_until_truncated_below_it() {
    for background in [false, true] {
        let fs = SimFs::with_staging(None);
        fs.create_dir_all(Path::new("/d")).unwrap();
        let raw = fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        let staging = Staging {
            background,
            ..SimFs::STAGING
        };
        let f = StagedFile::new(Arc::new(FailingDirect(raw)), staging);
        f.write_at(&bytes(100, 0), 0).unwrap();
        f.sync().unwrap();
        // Crosses a chunk: its direct write fails, now or on the background writer.
        let _ = f.write_at(&bytes(3000, 1), 100);
        assert!(f.sync().is_err(), "background={background}");
        assert!(f.write_at(b"x", 3100).is_err());
        assert!(f.sync().is_err(), "the failure is kept");
        f.set_len(100).unwrap();
        f.write_at(b"again", 100).unwrap();
        f.sync().unwrap();
        assert_eq!(fs.read_file(Path::new("/d/f")).unwrap().len(), 105);
    }
}

#[test]
fn simulated_files_check_direct_write_alignment() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).unwrap();
    let f = fs
        .open_unstaged(Path::new("/d/f"), OpenMode::CreateNew)
        .unwrap();
    let mut buf = AlignedBuf::new(512, 256);
    buf.put(0, &[7; 512]);
    assert!(f.write_direct_at(&buf.bytes()[..256], 0).is_ok());
    assert!(f.write_direct_at(&buf.bytes()[..100], 256).is_err());
    assert!(f.write_direct_at(&buf.bytes()[1..257], 256).is_err());
    assert!(f.write_direct_at(&buf.bytes()[..256], 100).is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Write(u64, usize),
    Read(u64, usize),
    Sync,
    SetLen(u64),
    Writeback,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..3000).prop_map(Op::Append),
        1 => (0u64..20_000, 1usize..500).prop_map(|(o, n)| Op::Write(o, n)),
        4 => (0u64..20_000, 1usize..3000).prop_map(|(o, n)| Op::Read(o, n)),
        1 => Just(Op::Sync),
        1 => (0u64..20_000).prop_map(Op::SetLen),
        1 => Just(Op::Writeback),
    ]
}

fn apply(f: &StagedFile, model: &mut Vec<u8>, op: &Op, seed: u64) {
    match *op {
        Op::Append(n) => {
            let data = bytes(n, seed);
            f.write_at(&data, model.len() as u64).unwrap();
            model.extend_from_slice(&data);
        }
        Op::Write(o, n) => {
            let o = o.min(model.len() as u64 + 10);
            let data = bytes(n, seed);
            f.write_at(&data, o).unwrap();
            let end = o as usize + n;
            model.resize(model.len().max(end), 0);
            model[o as usize..end].copy_from_slice(&data);
        }
        Op::Read(o, n) => {
            let got = read(f, o, n);
            match model.get(o as usize..o as usize + n) {
                Some(want) => assert_eq!(got.unwrap(), want),
                None => assert!(got.is_err(), "read past the end"),
            }
        }
        Op::Sync => f.sync().unwrap(),
        Op::SetLen(l) => {
            f.set_len(l).unwrap();
            model.resize(l as usize, 0);
        }
        Op::Writeback => f.start_writeback(),
    }
}

proptest! {
    /// Any mix of appends, writes elsewhere, reads, syncs and truncations behaves like a
    /// plain file, with any staging; after a sync (and after drop) the file holds exactly
    /// the model's bytes, and every direct write was aligned (the simulated file checks).
    #[test]
    fn staged_file_behaves_like_a_plain_file(
        ops in prop::collection::vec(op(), 1..60),
        align_log in 4u32..9,
        chunks in 1usize..5,
        background in any::<bool>(),
        depth in 1usize..4,
        writers in 1usize..4,
        prealloc in prop_oneof![Just(0u64), 1u64..5000],
        head in 0usize..600,
    ) {
        let align = 1usize << align_log;
        let chunk = align * chunks;
        let staging = Staging { align, chunk, background, depth, writers, prealloc };
        let fs = SimFs::with_staging(Some(staging));
        fs.create_dir_all(Path::new("/d")).unwrap();
        let p = Path::new("/d/f");
        let mut model = bytes(head, 99);
        // A file that already holds bytes when opened for writing.
        fs.write_file(p, &model);
        let f = StagedFile::new(fs.open_unstaged(p, OpenMode::Write).unwrap(), staging);
        for (i, op) in ops.iter().enumerate() {
            apply(&f, &mut model, op, i as u64);
        }
        prop_assert_eq!(f.len().unwrap(), model.len() as u64);
        f.sync().unwrap();
        // Exactly the model: no allocated space is left past the end.
        prop_assert_eq!(&fs.read_file(p).unwrap(), &model);
        let tail = bytes(777, 5);
        f.write_at(&tail, model.len() as u64).unwrap();
        model.extend_from_slice(&tail);
        drop(f);
        prop_assert_eq!(&fs.read_file(p).unwrap(), &model);
    }
}
