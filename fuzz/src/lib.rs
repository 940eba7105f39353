//! The invariants vt's decoders keep on untrusted bytes, one function per fuzz target.
//!
//! Every function takes arbitrary bytes, feeds them to the decoders of one format and
//! panics only when an invariant breaks: a decoder panics, or what it accepted does not
//! survive re-encoding, or a scan's record does not read back. A hostile length must
//! not allocate beyond the input either; the libFuzzer binaries (`fuzz/run.sh`) run
//! with `-rss_limit_mb` so such an allocation is reported as a crash.
//!
//! The same functions run in `cargo test` over seeds made by the engine's own encoders
//! and thousands of mutations of them (`tests/mutations.rs`), so every target is
//! exercised on every CI run, and inputs libFuzzer found are replayed from
//! `regressions/`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use vt_engine::archive::ArchiveEntry;
use vt_engine::block::BlockRef;
use vt_engine::codec::{self, Reader};
use vt_engine::dir::{self, meta::Meta, Dirent};
use vt_engine::fs::{CachedStore, Caller, FileKind, Fs, FsOptions, RenameMode, ROOT_INO};
use vt_engine::gc::{retention, roots};
use vt_engine::hash::{HashAlg, HashCode};
use vt_engine::io::FileIo;
use vt_engine::read::{self, BlockReader};
use vt_engine::segment::{self, RecordKind, ScanEnd, SEGMENT_HEADER_LEN};
use vt_engine::store::{MemoryStore, Store};
use vt_engine::timefmt;
use vt_engine::transcribe::json::Json;

/// A fuzz target: its name and its function.
pub type Target = (&'static str, fn(&[u8]));

/// The fuzz targets, for the tests and the seed writer.
pub const TARGETS: [Target; 7] = [
    ("codec", codec),
    ("block_ref", block_ref),
    ("dirent", dirent),
    ("text", text),
    ("segment", segment),
    ("tree", tree),
    ("fs", fs),
];

/// BSUInt / BSData / BSString / BSSFloat: the input is a program of reads, one op byte
/// before each; every value read must re-encode to something that reads back equal.
pub fn codec(data: &[u8]) {
    let mut r = Reader::new(data);
    while let Ok(op) = r.u8() {
        let mut out = Vec::new();
        match op % 4 {
            0 => {
                let Ok(n) = r.bsuint() else { break };
                codec::put_bsuint(&mut out, n);
                assert_eq!(out.len(), codec::bsuint_len(n));
                assert_eq!(Reader::new(&out).bsuint().ok(), Some(n));
                assert_eq!(codec::get_bsuint(&out).ok(), Some((n, out.len())));
            }
            1 => {
                let Ok(d) = r.bsdata() else { break };
                codec::put_bsdata(&mut out, d);
                assert_eq!(Reader::new(&out).bsdata().ok(), Some(d));
            }
            2 => {
                let Ok(s) = r.bsstring() else { break };
                codec::put_bsstring(&mut out, s);
                assert_eq!(Reader::new(&out).bsstring().ok(), Some(s));
            }
            _ => {
                let Ok(f) = r.bssfloat() else { break };
                codec::put_bssfloat(&mut out, f);
                let back = Reader::new(&out)
                    .bssfloat()
                    .expect("re-encoded float reads");
                assert!(
                    back == f || (back.is_nan() && f.is_nan()),
                    "{f} read back as {back}"
                );
            }
        }
    }
}

/// Binary block references (FORMAT-csvt §2): an accepted reference re-encodes to bytes
/// that decode equal, and its transcription (§6) parses back to it.
pub fn block_ref(data: &[u8]) {
    if let Ok(r) = BlockRef::decode(data) {
        round_trip_ref(&r);
    }
    if let Ok(all) = BlockRef::decode_all(data) {
        let mut out = Vec::new();
        for r in &all {
            r.encode_into(&mut out);
        }
        assert_eq!(
            BlockRef::decode_all(&out).expect("re-encoded refs decode"),
            all
        );
    }
}

fn round_trip_ref(r: &BlockRef) {
    let enc = r.encode();
    assert_eq!(&BlockRef::decode(&enc).expect("re-encoded ref decodes"), r);
    let text = r.to_string();
    let parsed = BlockRef::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(&parsed, r, "transcription {text:?}");
}

/// Directory entries and directory blocks: an accepted entry re-encodes to bytes that
/// decode equal, and its transcription parses back to it.
pub fn dirent(data: &[u8]) {
    if let Ok(d) = Dirent::decode(data) {
        round_trip_dirent(&d);
    }
    if let Ok(entries) = dir::decode_entries(data) {
        for d in &entries {
            round_trip_dirent(d);
        }
        // A directory block is written in its canonical order, whatever order it was read in.
        if let Ok(again) = dir::encode_entries(&entries) {
            let mut back = dir::decode_entries(&again).expect("re-encoded entries decode");
            let mut want = entries;
            for v in [&mut back, &mut want] {
                v.sort_by_key(Dirent::encode);
            }
            assert_eq!(back, want);
        }
    }
}

fn round_trip_dirent(d: &Dirent) {
    let enc = d.encode();
    assert_eq!(&Dirent::decode(&enc).expect("re-encoded dirent decodes"), d);
    let text = d.transcribe();
    let parsed = Dirent::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(&parsed, d, "transcription {text:?}");
}

/// The text parsers (transcriptions, archive lines, metadata, JSON, times, durations,
/// GC roots): none panics, and what parses as a reference, entry or archive line
/// formats back to text that parses equal (an archive line's time to the same bits).
pub fn text(data: &[u8]) {
    let _ = roots::decode(data);
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = BlockRef::parse(s) {
        round_trip_ref(&r);
    }
    if let Ok(d) = Dirent::parse(s) {
        round_trip_dirent(&d);
    }
    if let Ok(m) = Meta::parse_transcription(s) {
        let again = Meta::parse_transcription(&m.to_string()).expect("meta reparses");
        assert_eq!(again, m);
    }
    if let Ok(e) = ArchiveEntry::parse_line(s) {
        if let Ok(line) = e.to_line() {
            let again = ArchiveEntry::parse_line(&line).expect("archive line reparses");
            assert_eq!(again.transcription, e.transcription);
            assert_eq!(again.name, e.name);
            // The unix time is written as Python's repr, the shortest text that
            // reads back as the same float.
            assert_eq!(again.when.to_bits(), e.when.to_bits(), "{line}");
        }
    }
    if let Ok(h) = HashCode::parse(s) {
        assert_eq!(HashCode::parse(&h.to_string()).ok(), Some(h));
    }
    let _ = Json::parse(s);
    let _ = Meta::from_text(s);
    let _ = timefmt::parse_time(s);
    let _ = vt_engine::dir::meta::parse_time(s);
    let _ = roots::parse_ref(s);
    let _ = retention::parse_duration(s);
}

/// A segment file's bytes: scans (version 1/2 records and legacy cs.vt records) never
/// panic, and every record a scan accepts reads back through the read path to bytes
/// of the scanned length and hash.
pub fn segment(data: &[u8]) {
    let file = Bytes(data.to_vec());
    let _ = segment::check_header(data, "fuzz.vtd");
    let _ = segment::parse_record_header(data);
    let from = if data.len() as u64 >= SEGMENT_HEADER_LEN {
        SEGMENT_HEADER_LEN
    } else {
        0
    };
    let scanned = segment::scan_v1(&file, from, true, |rec| {
        match rec.kind {
            RecordKind::Block => {
                let got =
                    segment::read_record(&file, "fuzz.vtd", rec.offset, &rec.hash, rec.stored_len)
                        .expect("a scanned record reads back");
                assert_eq!(got.len(), rec.raw_len as usize);
                assert!(rec.hash.matches(&got));
            }
            RecordKind::Group => {
                let g = segment::read_group(&file, "fuzz.vtd", rec.offset, rec.hash.alg())
                    .expect("a scanned group reads back");
                assert_eq!(g.members.len(), rec.members.len());
                for (i, m) in rec.members.iter().enumerate() {
                    g.checked_member(i, &m.hash, m.len, "fuzz.vtd", rec.offset)
                        .expect("a scanned member reads back");
                }
            }
        }
        Ok(())
    });
    check_end(scanned, from, data.len());
    for alg in [HashAlg::Blake3, HashAlg::Sha1] {
        let scanned = segment::scan_legacy(&file, 0, alg, |rec| {
            let got = segment::read_legacy(
                &file,
                "fuzz.vtd",
                rec.offset,
                &rec.hash,
                rec.codec,
                rec.stored_len,
                rec.raw_len,
            )
            .expect("a scanned legacy record reads back");
            assert!(rec.hash.matches(&got));
            Ok(())
        });
        check_end(scanned, 0, data.len());
    }
}

/// A clean scan ends exactly at the end of the file (or where it started, past it); a
/// bad record lies between the two.
fn check_end(scanned: vt_engine::error::Result<ScanEnd>, from: u64, len: usize) {
    let len = len as u64;
    match scanned {
        Ok(ScanEnd::Clean(end)) => assert_eq!(end, len.max(from)),
        Ok(ScanEnd::Bad { offset, .. }) => assert!((from..len).contains(&offset), "{offset}"),
        Err(_) => {}
    }
}

/// Content as a model knows it: `None` for bytes under a reference that misstates its
/// block (a leaf of another length, an indirect block whose children add up to another
/// span, a sub-block past its block's end), which any read touching them must refuse.
type Model = Vec<Option<u8>>;

/// Largest content the `tree` target models.
const TREE_MAX_SPAN: usize = 1 << 16;

/// Indirect blocks per input: fewer than [`read::MAX_TREE_DEPTH`], so no consistent tree
/// is refused as too deep.
const TREE_MAX_INDIRECT: usize = 40;

/// Block trees in a store, built by a program in the input (leaves, literals, RLE runs,
/// indirect blocks over earlier nodes, checked and unchecked sub-blocks, each size
/// stated truly or falsely), then read back by ranges through [`read::read_range`],
/// [`BlockReader`], the mount's [`CachedStore`] and [`read::zero_spans`]. A read succeeds exactly when it touches
/// no misstated block, and then returns the modelled bytes: in particular no leaf
/// outside the range is fetched.
pub fn tree(data: &[u8]) {
    let store = Arc::new(MemoryStore::new(HashAlg::Blake3));
    let mut r = Reader::new(data);
    // Each node: its reference, its content model, and whether nothing under it misstates.
    let mut nodes: Vec<(BlockRef, Model, bool)> = Vec::new();
    let mut indirects = 0;
    let known = |d: &[u8]| -> Model { d.iter().map(|&b| Some(b)).collect() };
    let u16_of = |r: &mut Reader<'_>| -> u64 {
        let hi = r.u8().unwrap_or(0);
        let lo = r.u8().unwrap_or(0);
        u64::from(u16::from_be_bytes([hi, lo]))
    };
    while let Ok(op) = r.u8() {
        // The high bit of an op misstates the size it writes.
        let lie = op & 0x80 != 0;
        let node = match op % 6 {
            0 => {
                let Ok(d) = r.bsdata() else { break };
                let hash = store.add(d).expect("memory store add");
                let span = if lie { u16_of(&mut r) } else { d.len() as u64 };
                let sound = span == d.len() as u64;
                let model = if sound {
                    known(d)
                } else {
                    vec![None; span as usize]
                };
                (BlockRef::Hash { hash, span }, model, sound)
            }
            1 => {
                let Ok(d) = r.bsdata() else { break };
                (BlockRef::literal(d), known(d), true)
            }
            2 => {
                let (span, octet) = (u16_of(&mut r), r.u8().unwrap_or(0));
                (
                    BlockRef::Rle { span, octet },
                    vec![Some(octet); span as usize],
                    true,
                )
            }
            3 => {
                let k = usize::from(r.u8().unwrap_or(0) % 8) + 1;
                if k > nodes.len() || indirects == TREE_MAX_INDIRECT {
                    continue;
                }
                indirects += 1;
                let kids = &nodes[nodes.len() - k..];
                let mut enc = Vec::new();
                let mut model = Model::new();
                let mut sound = true;
                for (c, m, ok) in kids {
                    c.encode_into(&mut enc);
                    model.extend_from_slice(m);
                    sound &= ok;
                }
                let hash = store.add(&enc).expect("memory store add");
                let span = if lie {
                    u16_of(&mut r)
                } else {
                    model.len() as u64
                };
                // A child the decoder refuses (a sub-block past its block) makes the
                // whole indirect block unreadable.
                let decodes = BlockRef::decode_all(&enc).is_ok();
                if span != model.len() as u64 || !decodes {
                    model = vec![None; span as usize];
                    sound = false;
                }
                (BlockRef::Indirect { hash, span }, model, sound)
            }
            _ => {
                let Some((parent, pm, psound)) = nodes.last() else {
                    continue;
                };
                let (offset, span) = (u16_of(&mut r), u16_of(&mut r));
                let inside = offset + span <= parent.span();
                let model = match inside {
                    true => pm[offset as usize..(offset + span) as usize].to_vec(),
                    false => vec![None; span as usize],
                };
                if op % 6 == 4 {
                    // The checked constructor refuses what lies outside its block.
                    match parent.sub(offset, span) {
                        Ok(s) => (s, model, *psound),
                        Err(_) => {
                            // Refused: outside its block, or of a sub-block that does not
                            // fit its own.
                            assert!(!inside || !psound, "sub-block {offset}+{span} refused");
                            continue;
                        }
                    }
                } else {
                    let block = Arc::new(parent.clone());
                    (
                        BlockRef::Sub {
                            block,
                            offset,
                            span,
                        },
                        model,
                        *psound && inside,
                    )
                }
            }
        };
        if node.1.len() <= TREE_MAX_SPAN {
            nodes.push(node);
        }
    }
    // The mount's reader, over a small cache so that it also evicts.
    let cached = CachedStore::new(store.clone(), 64 << 10);
    for (root, model, sound) in nodes.iter().rev().take(3) {
        let span = root.span();
        for (off, len) in [
            (0, span),
            (span / 3, 4096),
            (span.saturating_sub(1), 10),
            (span + 5, 1),
        ] {
            check_range(&*store, &cached, root, model, off, len);
        }
        match read::zero_spans(&*store, root) {
            Ok(zeros) => {
                for z in zeros {
                    assert!(model[z.start as usize..z.end as usize]
                        .iter()
                        .all(|b| *b == Some(0)));
                }
            }
            Err(e) => assert!(!sound, "zero_spans refused a sound tree: {e}"),
        }
    }
}

/// Reads `len` bytes at `off` of `root` three ways (`read_range`, a seeking
/// [`BlockReader`], the mount's [`CachedStore`]) and checks each against `model`.
fn check_range(
    store: &dyn Store,
    cached: &CachedStore,
    root: &BlockRef,
    model: &Model,
    off: u64,
    len: u64,
) {
    let start = off.min(root.span()) as usize;
    let end = off.saturating_add(len).min(root.span()) as usize;
    let want = &model[start..end];
    let sound = want.iter().all(Option::is_some);
    let check = |how: &str, got: Result<Vec<u8>, String>| match got {
        Ok(bytes) => {
            assert!(sound, "{how} {off}+{len} of {root} read misstated blocks");
            assert!(
                bytes.iter().copied().map(Some).eq(want.iter().copied()),
                "{how} {off}+{len}"
            );
        }
        Err(e) => assert!(
            !sound,
            "{how} {off}+{len} of {root} refused a sound range: {e}"
        ),
    };
    check(
        "read_range",
        read::read_range(store, root, off, len).map_err(|e| e.to_string()),
    );
    let mut br = BlockReader::new(store, root.clone());
    let mut got = Vec::new();
    let streamed = io::Seek::seek(&mut br, io::SeekFrom::Start(off))
        .and_then(|_| io::Read::read_to_end(&mut io::Read::take(&mut br, len), &mut got));
    check(
        "BlockReader",
        streamed.map(|_| got).map_err(|e| e.to_string()),
    );
    let mut out = Vec::new();
    let via_cache = cached.read_range(root, off, len, &mut out);
    check(
        "CachedStore",
        via_cache.map(|_| out).map_err(|e| e.to_string()),
    );
}

/// Entries the `fs` target visits per input.
const FS_MAX_ENTRIES: usize = 2000;

/// A directory block from the input, served as `vt mount` serves an archive
/// (`engine::fs`; its entries may nest directories inline as literal blocks): every
/// directory listed, each listed name looked up, attributes, files, links and
/// extended attributes read; then a file created, written, renamed and a directory
/// made beside the hostile entries, the tree synced and reopened. Nothing panics, a
/// listed name looks up to the inode the listing gave, and what was created survives
/// the sync.
pub fn fs(data: &[u8]) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(HashAlg::Blake3));
    let hash = store.add(data).expect("memory store add");
    let span = data.len() as u64;
    let root = Dirent::dir(b"", BlockRef::Hash { hash, span });
    let opts = || FsOptions {
        cache_bytes: 1 << 20,
        ..FsOptions::default()
    };
    let fs = Fs::new(store.clone(), &root, opts()).expect("a Dir root mounts");
    walk_fs(&fs);
    let me = Caller { uid: 0, gid: 0 };
    let Ok((attr, fh)) = fs.create(ROOT_INO, b"vt-fuzz-new", 0o644, me) else {
        return;
    };
    assert_eq!(fs.write(attr.ino, 0, b"written").ok(), Some(7));
    let _ = fs.release(fh);
    let _ = fs.mkdir(ROOT_INO, b"vt-fuzz-dir", 0o755, me);
    let renamed = fs
        .rename(
            ROOT_INO,
            b"vt-fuzz-new",
            ROOT_INO,
            b"vt-fuzz-renamed",
            RenameMode::default(),
        )
        .is_ok();
    let Ok(Some(synced)) = fs.sync() else {
        return;
    };
    drop(fs);
    let again = Fs::new(store, &synced, opts()).expect("the synced root mounts");
    let name: &[u8] = if renamed {
        b"vt-fuzz-renamed"
    } else {
        b"vt-fuzz-new"
    };
    let ino = again
        .lookup(ROOT_INO, name)
        .expect("the created file survives")
        .ino;
    assert_eq!(again.read(ino, 0, 100).expect("it reads"), b"written");
}

/// Lists every directory of `fs` and visits each entry (up to [`FS_MAX_ENTRIES`]).
fn walk_fs(fs: &Fs) {
    let mut dirs = vec![ROOT_INO];
    let mut seen = 0;
    while let Some(d) = dirs.pop() {
        let Ok(entries) = fs.readdir(d) else {
            continue;
        };
        for e in entries {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            seen += 1;
            if seen > FS_MAX_ENTRIES {
                return;
            }
            // A lookup may fail on a block the store lacks (EIO), never as "no such
            // entry" for a name just listed.
            let attr = match fs.lookup(d, &e.name) {
                Ok(a) => a,
                Err(err) => {
                    assert_ne!(err.errno(), libc::ENOENT, "listed {:?}", e.name);
                    continue;
                }
            };
            assert_eq!(attr.ino, e.ino, "{:?}", String::from_utf8_lossy(&e.name));
            let _ = fs.getattr(e.ino);
            if let Ok(names) = fs.listxattr(e.ino) {
                for n in names {
                    let _ = fs.getxattr(e.ino, &n);
                }
            }
            match e.kind {
                FileKind::Dir => dirs.push(e.ino),
                FileKind::File => {
                    let _ = fs.read(e.ino, 0, 4096);
                    let _ = fs.read(e.ino, attr.size.saturating_sub(1), 4096);
                }
                FileKind::Symlink => {
                    let _ = fs.readlink(e.ino);
                }
                _ => {}
            }
        }
    }
}

/// A read-only file held in memory, for the scans.
#[derive(Debug)]
struct Bytes(Vec<u8>);

impl FileIo for Bytes {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= self.0.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&self.0[start..end]);
        Ok(())
    }

    fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(io::Error::other("read-only"))
    }

    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(io::Error::other("read-only"))
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Valid inputs for each target, made by the engine's encoders: the starting corpus
/// for libFuzzer and the base of the mutation tests.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let refs = sample_refs();
    match target {
        "codec" => {
            let mut v = Vec::new();
            for (i, n) in [0u64, 1, 127, 128, 300, u64::MAX].into_iter().enumerate() {
                v.push(0);
                codec::put_bsuint(&mut v, n);
                v.push(1);
                codec::put_bsdata(&mut v, &vec![i as u8; i * 40]);
                v.push(2);
                codec::put_bsstring(&mut v, "naïve");
                v.push(3);
                codec::put_bssfloat(&mut v, 1.5e9 + i as f64);
            }
            vec![v]
        }
        "block_ref" => {
            let mut all = Vec::new();
            let mut v: Vec<Vec<u8>> = refs
                .iter()
                .map(|r| {
                    r.encode_into(&mut all);
                    r.encode()
                })
                .collect();
            v.push(all);
            v
        }
        "dirent" => {
            let entries = sample_dirents(&refs);
            let mut v: Vec<Vec<u8>> = entries.iter().map(Dirent::encode).collect();
            v.push(dir::encode_entries(&entries).expect("sample entries encode"));
            v
        }
        "text" => {
            let mut v: Vec<Vec<u8>> = refs.iter().map(|r| r.to_string().into_bytes()).collect();
            for d in sample_dirents(&refs) {
                v.push(d.transcribe().into_bytes());
                let e = ArchiveEntry {
                    when: 1_700_000_000.25,
                    transcription: d.transcribe(),
                    name: Some("rev".into()),
                };
                if let Ok(line) = e.to_line() {
                    v.push(line.into_bytes());
                }
            }
            v.push(roots::encode(&[
                roots::Root::Archive(PathBuf::from("/a/b.vt")),
                roots::Root::Pin(refs[0].to_string()),
            ]));
            v.extend(
                [
                    "2026-11-27T10:00:00+01:00",
                    "1700000000.5",
                    "90d",
                    "{\"a\": [1, 2.5, \"x\"]}",
                ]
                .map(|s| s.as_bytes().to_vec()),
            );
            v
        }
        "segment" => sample_segments(),
        "tree" => sample_tree_programs(),
        "fs" => sample_fs_dirs(&refs),
        _ => Vec::new(),
    }
}

/// One reference of each kind (FORMAT-csvt §2), a sub-block of a stored one included.
fn sample_refs() -> Vec<BlockRef> {
    let leaf = b"leaf block".repeat(20);
    let hash = BlockRef::Hash {
        hash: HashAlg::Blake3.hash(&leaf),
        span: leaf.len() as u64,
    };
    vec![
        BlockRef::empty(),
        BlockRef::literal(b"hi"),
        BlockRef::Rle {
            span: 1 << 20,
            octet: 0,
        },
        BlockRef::Indirect {
            hash: HashAlg::Sha256.hash(b"children"),
            span: 1 << 30,
        },
        hash.sub(10, 100).expect("a sub-block inside the block"),
        hash,
    ]
}

fn sample_dirents(refs: &[BlockRef]) -> Vec<Dirent> {
    let block = refs.last().cloned().unwrap_or_else(BlockRef::empty);
    let mut file = Dirent::file(b"a.txt", block.clone());
    file.meta = Meta::from_text("m:1700000000.5;u:me").expect("sample meta");
    vec![
        file,
        Dirent::file("naïve \u{1}".as_bytes(), BlockRef::literal(b"x")),
        Dirent::dir(b"sub", block),
        Dirent::symlink(b"link", b"../a.txt"),
    ]
}

/// Directory blocks for [`fs`]: the sample entries, and a directory holding a
/// subdirectory whose entries are inline (a literal block).
fn sample_fs_dirs(refs: &[BlockRef]) -> Vec<Vec<u8>> {
    let mut entries = sample_dirents(refs);
    let inner = dir::encode_entries(&entries).expect("sample entries encode");
    let top = dir::encode_entries(&entries).expect("sample entries encode");
    entries.push(Dirent::dir(b"inline", BlockRef::literal(&inner)));
    let nested = dir::encode_entries(&entries).expect("sample entries encode");
    vec![top, nested]
}

/// Programs for [`tree`]: a sound tree of every kind of node, and the same with
/// misstated sizes.
fn sample_tree_programs() -> Vec<Vec<u8>> {
    let mut sound = Vec::new();
    for i in 0..3u8 {
        sound.push(0); // leaf
        codec::put_bsdata(&mut sound, &vec![i + 1; 1000 + usize::from(i)]);
    }
    sound.push(1); // literal
    codec::put_bsdata(&mut sound, b"literal");
    sound.extend([2, 0x10, 0x00, 0]); // 4096 zeros
    sound.extend([3, 4]); // indirect over the last five
    sound.extend([4, 0x00, 0x10, 0x03, 0x00]); // sub-block 16+768
    sound.extend([3, 1]); // indirect over it
    sound.extend([5, 0x00, 0x20, 0x00, 0x40]); // unchecked sub-block 32+64
    let mut lies = sound.clone();
    lies.push(0x80); // a leaf claiming 200 bytes
    codec::put_bsdata(&mut lies, &[9; 100]);
    lies.extend([0x00, 200]);
    lies.extend([3, 1]); // a sound indirect over it
    lies.extend([0x83, 2, 0x01, 0x00]); // an indirect claiming 256 bytes
    lies.extend([5, 0x00, 0x00, 0x02, 0x00]); // unchecked sub-block past its end
    vec![sound, lies]
}

fn sample_segments() -> Vec<Vec<u8>> {
    let blocks: Vec<Vec<u8>> = vec![
        b"short".to_vec(),
        b"compressible ".repeat(400),
        (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect(),
    ];
    let mut seg = segment::segment_header().to_vec();
    for b in &blocks {
        let h = HashAlg::Blake3.hash(b);
        if let Ok(rec) = segment::encode_record(&h, b, 3) {
            seg.extend_from_slice(&rec.bytes);
        }
    }
    let hashes: Vec<HashCode> = blocks.iter().map(|b| HashAlg::Blake3.hash(b)).collect();
    let lens: Vec<u32> = blocks.iter().map(|b| b.len() as u32).collect();
    if let Ok(g) = segment::encode_group_record(&hashes, &lens, &blocks.concat(), 3) {
        seg.extend_from_slice(&g.bytes);
    }
    // A legacy cs.vt segment: flags, length, payload (uncompressed) per record.
    let mut legacy = Vec::new();
    for b in &blocks {
        codec::put_bsuint(&mut legacy, 0);
        codec::put_bsdata(&mut legacy, b);
    }
    vec![seg, legacy]
}
