use super::*;
use crate::blockify::blockify_bytes;
use crate::dir::encode_entries;
use crate::hash::HashAlg;
use crate::store::{MemoryStore, StoreSink};
use proptest::prelude::*;

const ME: Caller = Caller {
    uid: 1000,
    gid: 1000,
};

fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::with_capacity(HashAlg::Blake3, 1 << 30))
}

fn opts(mode: FsMode) -> FsOptions {
    FsOptions {
        mode,
        ..FsOptions::default()
    }
}

fn rw() -> (Arc<dyn Store>, Fs) {
    let s = store();
    let fs = Fs::empty(s.clone(), opts(FsMode::ReadWrite));
    (s, fs)
}

fn new_file(fs: &Fs, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let (a, fh) = fs.create(parent, name.as_bytes(), 0o644, ME).unwrap();
    fs.write(a.ino, 0, data).unwrap();
    fs.release(fh).unwrap();
    a.ino
}

fn read_file(fs: &Fs, ino: Ino) -> Vec<u8> {
    fs.read(ino, 0, u32::MAX).unwrap()
}

fn names(fs: &Fs, ino: Ino) -> Vec<String> {
    fs.readdir(ino)
        .unwrap()
        .into_iter()
        .skip(2)
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect()
}

fn errno<T: std::fmt::Debug>(r: FsResult<T>) -> i32 {
    r.unwrap_err().errno()
}

/// Builds a stored tree: files a (content "hello"), d/b (1 MiB pattern), symlink s -> a,
/// and hard links h1, d/h2 (content "linked").
fn stored_tree(s: &Arc<dyn Store>) -> Dirent {
    let sink = StoreSink(s.as_ref());
    let o = BlockifyOptions {
        threads: 1,
        ..BlockifyOptions::default()
    };
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let b = Dirent::file(b"b", blockify_bytes(&big, &sink, &o).unwrap());
    let u = uuid::Uuid::new_v4();
    let h2 = Dirent::indirect(b"h2", u);
    let dblock = blockify_bytes(&encode_entries(&[b, h2]).unwrap(), &sink, &o).unwrap();
    let mut h1 = Dirent::file(b"h1", BlockRef::literal(b"linked"));
    h1.uuid = Some(u);
    let entries = vec![
        Dirent::file(b"a", BlockRef::literal(b"hello")),
        Dirent::dir(b"d", dblock),
        Dirent::symlink(b"s", b"a"),
        h1,
    ];
    let root = blockify_bytes(&encode_entries(&entries).unwrap(), &sink, &o).unwrap();
    Dirent::dir(b"", root)
}

fn ino_of(fs: &Fs, parent: Ino, name: &str) -> Ino {
    fs.lookup(parent, name.as_bytes()).unwrap().ino
}

#[test]
fn browse_stored_tree() {
    let s = store();
    let fs = Fs::new(s.clone(), &stored_tree(&s), opts(FsMode::ReadOnly)).unwrap();
    assert_eq!(names(&fs, ROOT_INO), ["a", "d", "h1", "s"]);
    let a = fs.lookup(ROOT_INO, b"a").unwrap();
    assert_eq!((a.kind, a.size, a.nlink), (FileKind::File, 5, 1));
    assert_eq!(read_file(&fs, a.ino), b"hello");
    let d = ino_of(&fs, ROOT_INO, "d");
    let b = fs.lookup(d, b"b").unwrap();
    assert_eq!(b.size, 1 << 20);
    let part = fs.read(b.ino, 1000, 100).unwrap();
    let want: Vec<u8> = (1000..1100u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(part, want);
    assert_eq!(fs.readlink(ino_of(&fs, ROOT_INO, "s")).unwrap(), b"a");
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 3);
    assert_eq!(errno(fs.lookup(ROOT_INO, b"zz")), libc::ENOENT);
    assert_eq!(fs.lookup(d, b"..").unwrap().ino, ROOT_INO);
}

#[test]
fn hard_links_share_an_inode_with_the_right_link_count() {
    let s = store();
    let fs = Fs::new(s.clone(), &stored_tree(&s), opts(FsMode::ReadWrite)).unwrap();
    let d = ino_of(&fs, ROOT_INO, "d");
    // Looking up the Indirect first (in d) must still find the content and count.
    let h2 = fs.lookup(d, b"h2").unwrap();
    let h1 = fs.lookup(ROOT_INO, b"h1").unwrap();
    assert_eq!(h1.ino, h2.ino);
    assert_eq!(h1.nlink, 2);
    assert_eq!(read_file(&fs, h2.ino), b"linked");
    fs.link(h1.ino, ROOT_INO, b"h3").unwrap();
    assert_eq!(fs.getattr(h1.ino).unwrap().nlink, 3);
    fs.unlink(ROOT_INO, b"h1").unwrap();
    assert_eq!(fs.getattr(h1.ino).unwrap().nlink, 2);
    // The stored tree keeps one File with the UUID and an Indirect for the other link.
    let root = fs.sync().unwrap().unwrap();
    let fs2 = Fs::new(s.clone(), &root, opts(FsMode::ReadOnly)).unwrap();
    let a = fs2.lookup(ROOT_INO, b"h3").unwrap();
    let d2 = ino_of(&fs2, ROOT_INO, "d");
    let b = fs2.lookup(d2, b"h2").unwrap();
    assert_eq!((a.ino, a.nlink), (b.ino, 2));
    assert_eq!(read_file(&fs2, a.ino), b"linked");
    assert!(fs2.lookup(ROOT_INO, b"h1").is_err());
}

#[test]
fn new_hard_link_round_trips_through_sync() {
    let (s, fs) = rw();
    let f = new_file(&fs, ROOT_INO, "f", b"data");
    let sub = fs.mkdir(ROOT_INO, b"sub", 0o755, ME).unwrap().ino;
    fs.link(f, sub, b"g").unwrap();
    let root = fs.sync().unwrap().unwrap();
    let ents = crate::tree::read_dir_entries(s.as_ref(), &root).unwrap();
    assert!(ents.iter().any(|e| e.name == b"f" && e.uuid.is_some()));
    let fs2 = Fs::new(s, &root, opts(FsMode::ReadWrite)).unwrap();
    let sub2 = ino_of(&fs2, ROOT_INO, "sub");
    let g = fs2.lookup(sub2, b"g").unwrap();
    assert_eq!(g.nlink, 2);
    assert_eq!(g.ino, ino_of(&fs2, ROOT_INO, "f"));
    // Writing through one name shows through the other.
    let fh = fs2.open(g.ino, true, false).unwrap();
    fs2.write(g.ino, 4, b"+more").unwrap();
    fs2.release(fh).unwrap();
    assert_eq!(read_file(&fs2, ino_of(&fs2, ROOT_INO, "f")), b"data+more");
}

#[test]
fn write_read_truncate_and_holes() {
    let (s, fs) = rw();
    let f = new_file(&fs, ROOT_INO, "f", b"");
    let fh = fs.open(f, true, false).unwrap();
    fs.write(f, 0, b"abcdef").unwrap();
    fs.write(f, 2, b"XY").unwrap();
    assert_eq!(read_file(&fs, f), b"abXYef");
    // A write far past the end leaves a hole of zeros.
    let far = 10 * PAGE + 5;
    fs.write(f, far, b"end").unwrap();
    assert_eq!(fs.getattr(f).unwrap().size, far + 3);
    let hole = fs.read(f, 6, 1000).unwrap();
    assert!(hole.iter().all(|&b| b == 0));
    fs.release(fh).unwrap();
    // The hole is stored as RLE: the store grows by far less than the file.
    let before = s.len().unwrap();
    fs.sync().unwrap();
    assert!(s.len().unwrap() - before < 10);
    let content = read_file(&fs, f);
    assert_eq!(&content[..6], b"abXYef");
    assert_eq!(&content[far as usize..], b"end");
    // Shrink, then grow again: the cut-off bytes read back as zeros.
    fs.setattr(
        f,
        &SetAttr {
            size: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(read_file(&fs, f), b"abX");
    fs.setattr(
        f,
        &SetAttr {
            size: Some(6),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(read_file(&fs, f), b"abX\0\0\0");
    fs.fsync(f).unwrap();
    assert_eq!(read_file(&fs, f), b"abX\0\0\0");
    // O_TRUNC empties.
    let fh = fs.open(f, true, true).unwrap();
    assert_eq!(fs.getattr(f).unwrap().size, 0);
    fs.release(fh).unwrap();
}

#[test]
fn commit_keeps_leading_leaves_and_content_matches_blockify() {
    let (s, fs) = rw();
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let f = new_file(&fs, ROOT_INO, "f", &data[..2_000_000]);
    let fh = fs.open(f, true, false).unwrap();
    fs.write(f, 2_000_000, &data[2_000_000..]).unwrap();
    fs.release(fh).unwrap();
    let got = fs.getxattr(f, XATTR_BLOCK).unwrap();
    let r: BlockRef = String::from_utf8(got).unwrap().parse().unwrap();
    // Appending re-chunks from a leaf boundary, so the result equals a one-shot blockify.
    let whole = blockify_bytes(
        &data,
        &StoreSink(s.as_ref()),
        &FsOptions::default().blockify,
    )
    .unwrap();
    assert_eq!(r, whole);
    assert_eq!(read::read_all(s.as_ref(), &r).unwrap(), data);
}

#[test]
fn dirty_limit_commits_early_and_keeps_content() {
    let s = store();
    let fs = Fs::empty(
        s.clone(),
        FsOptions {
            dirty_limit: 4 * PAGE,
            ..opts(FsMode::ReadWrite)
        },
    );
    let (a, fh) = fs.create(ROOT_INO, b"f", 0o600, ME).unwrap();
    let mut want = Vec::new();
    for i in 0..200u32 {
        let chunk: Vec<u8> = (0..10_000u32).map(|j| ((i * 31 + j) % 253) as u8).collect();
        fs.write(a.ino, want.len() as u64, &chunk).unwrap();
        want.extend(chunk);
    }
    fs.release(fh).unwrap();
    assert_eq!(read_file(&fs, a.ino), want);
}

#[test]
fn namespace_operations() {
    let (_s, fs) = rw();
    let d = fs.mkdir(ROOT_INO, b"d", 0o750, ME).unwrap();
    assert_eq!(
        (d.kind, d.perm, d.uid, d.nlink),
        (FileKind::Dir, 0o750, 1000, 2)
    );
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 3);
    let f = new_file(&fs, d.ino, "f", b"x");
    assert_eq!(errno(fs.create(d.ino, b"f", 0o644, ME)), libc::EEXIST);
    assert_eq!(errno(fs.mkdir(d.ino, b"f", 0o755, ME)), libc::EEXIST);
    assert_eq!(errno(fs.rmdir(ROOT_INO, b"d")), libc::ENOTEMPTY);
    assert_eq!(errno(fs.unlink(ROOT_INO, b"d")), libc::EISDIR);
    assert_eq!(errno(fs.rmdir(d.ino, b"f")), libc::ENOTDIR);
    assert_eq!(
        errno(fs.create(d.ino, &[b'n'; 256], 0o644, ME)),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno(fs.create(f, b"x", 0o644, ME)), libc::ENOTDIR);
    // Rename a file over another, a dir into another dir, a dir over an empty dir.
    new_file(&fs, ROOT_INO, "g", b"gg");
    fs.rename(ROOT_INO, b"g", d.ino, b"f", RenameMode::Replace)
        .unwrap();
    assert_eq!(read_file(&fs, ino_of(&fs, d.ino, "f")), b"gg");
    let e = fs.mkdir(ROOT_INO, b"e", 0o755, ME).unwrap().ino;
    assert_eq!(
        errno(fs.rename(ROOT_INO, b"d", d.ino, b"x", RenameMode::Replace)),
        libc::EINVAL
    );
    fs.rename(ROOT_INO, b"d", e, b"d", RenameMode::Replace)
        .unwrap();
    assert_eq!(fs.lookup(d.ino, b"..").unwrap().ino, e);
    let empty = fs.mkdir(ROOT_INO, b"empty", 0o755, ME).unwrap().ino;
    // Over its own (non-empty) parent, as Linux reports it.
    assert_eq!(
        errno(fs.rename(e, b"d", ROOT_INO, b"e", RenameMode::Replace)),
        libc::ENOTEMPTY
    );
    fs.rename(e, b"d", ROOT_INO, b"empty", RenameMode::Replace)
        .unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"empty").unwrap().ino, d.ino);
    // The replaced directory lives on, removed, until the kernel forgets it.
    assert_eq!(fs.getattr(empty).unwrap().nlink, 0);
    assert_eq!(errno(fs.mkdir(empty, b"x", 0o755, ME)), libc::ENOENT);
    fs.forget(empty, 1);
    assert_eq!(errno(fs.getattr(empty)), libc::ENOENT);
    // A file over a dir and a dir over a file fail.
    new_file(&fs, ROOT_INO, "h", b"");
    assert_eq!(
        errno(fs.rename(ROOT_INO, b"h", ROOT_INO, b"e", RenameMode::Replace)),
        libc::EISDIR
    );
    assert_eq!(
        errno(fs.rename(ROOT_INO, b"e", ROOT_INO, b"h", RenameMode::Replace)),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(fs.rename(ROOT_INO, b"h", ROOT_INO, b"e", RenameMode::NoReplace)),
        libc::EEXIST
    );
    fs.rename(ROOT_INO, b"h", ROOT_INO, b"e", RenameMode::Exchange)
        .unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"h").unwrap().kind, FileKind::Dir);
    assert_eq!(names(&fs, ROOT_INO), ["e", "empty", "h"]);
    fs.rmdir(ROOT_INO, b"h").unwrap();
    fs.unlink(ROOT_INO, b"e").unwrap();
    assert_eq!(names(&fs, ROOT_INO), ["empty"]);
}

#[test]
fn unlinked_open_file_stays_readable_until_release() {
    let (_s, fs) = rw();
    let f = new_file(&fs, ROOT_INO, "f", b"still here");
    let fh = fs.open(f, false, false).unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();
    assert_eq!(read_file(&fs, f), b"still here");
    assert_eq!(fs.getattr(f).unwrap().nlink, 0);
    fs.release(fh).unwrap();
    // The kernel still knows the inode (from `create`) until it forgets it.
    assert_eq!(fs.getattr(f).unwrap().nlink, 0);
    assert_eq!(errno(fs.link(f, ROOT_INO, b"again")), libc::ENOENT);
    fs.forget(f, 1);
    assert_eq!(errno(fs.getattr(f)), libc::ENOENT);
    assert_eq!(errno(fs.release(fh)), libc::EBADF);
}

#[test]
fn setattr_and_symlinks() {
    let (_s, fs) = rw();
    let f = new_file(&fs, ROOT_INO, "f", b"x");
    let t = UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    let a = fs
        .setattr(
            f,
            &SetAttr {
                mode: Some(0o4755),
                uid: Some(0),
                gid: Some(0),
                mtime: Some(t),
                atime: Some(t),
                ..Default::default()
            },
        )
        .unwrap();
    // chown clears setuid.
    assert_eq!(
        (a.perm, a.uid, a.gid, a.mtime, a.atime),
        (0o755, 0, 0, t, t)
    );
    fs.setattr(
        f,
        &SetAttr {
            mode: Some(0o4755),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(fs.getattr(f).unwrap().perm, 0o4755);
    let s = fs.symlink(ROOT_INO, b"s", b"../target", ME).unwrap();
    assert_eq!((s.kind, s.size, s.perm), (FileKind::Symlink, 9, 0o777));
    assert_eq!(fs.readlink(s.ino).unwrap(), b"../target");
    assert_eq!(errno(fs.readlink(f)), libc::EINVAL);
    let fifo = fs
        .mknod(ROOT_INO, b"p", libc::S_IFIFO | 0o600, 0, ME)
        .unwrap();
    assert_eq!(fifo.kind, FileKind::Fifo);
}

#[test]
fn xattrs() {
    let (_s, fs) = rw();
    let f = new_file(
        &fs,
        ROOT_INO,
        "f",
        b"content that is long enough to be hashed, over 32 bytes",
    );
    fs.setxattr(f, b"user.a", b"1", XattrMode::Set).unwrap();
    assert_eq!(
        errno(fs.setxattr(f, b"user.a", b"2", XattrMode::Create)),
        libc::EEXIST
    );
    assert_eq!(
        errno(fs.setxattr(f, b"user.b", b"2", XattrMode::Replace)),
        libc::ENODATA
    );
    fs.setxattr(f, b"user.a", b"2", XattrMode::Replace).unwrap();
    assert_eq!(fs.getxattr(f, b"user.a").unwrap(), b"2");
    assert_eq!(fs.listxattr(f).unwrap(), vec![b"user.a".to_vec()]);
    let block = String::from_utf8(fs.getxattr(f, XATTR_BLOCK).unwrap()).unwrap();
    let r: BlockRef = block.parse().unwrap();
    assert_eq!(r.span(), 55);
    assert_eq!(
        errno(fs.setxattr(f, XATTR_BLOCK, b"x", XattrMode::Set)),
        libc::EPERM
    );
    fs.removexattr(f, b"user.a").unwrap();
    assert_eq!(errno(fs.getxattr(f, b"user.a")), libc::ENODATA);
    assert_eq!(errno(fs.removexattr(f, b"user.a")), libc::ENODATA);
}

#[test]
fn sync_round_trips_meta_and_reports_changes() {
    let (s, fs) = rw();
    assert!(fs.sync().unwrap().is_none(), "nothing changed yet");
    let d = fs.mkdir(ROOT_INO, b"d", 0o700, ME).unwrap().ino;
    let f = new_file(&fs, d, "f", b"abc");
    fs.setxattr(f, b"user.k", b"v", XattrMode::Set).unwrap();
    fs.symlink(ROOT_INO, b"l", b"d/f", ME).unwrap();
    let r1 = fs.sync().unwrap().unwrap();
    assert!(fs.sync().unwrap().is_none());
    let fs2 = Fs::new(s.clone(), &r1, opts(FsMode::ReadWrite)).unwrap();
    let d2 = fs2.lookup(ROOT_INO, b"d").unwrap();
    assert_eq!((d2.perm, d2.uid), (0o700, 1000));
    let f2 = fs2.lookup(d2.ino, b"f").unwrap();
    assert_eq!(read_file(&fs2, f2.ino), b"abc");
    assert_eq!(fs2.getxattr(f2.ino, b"user.k").unwrap(), b"v");
    assert_eq!(fs2.readlink(ino_of(&fs2, ROOT_INO, "l")).unwrap(), b"d/f");
    // Only reading leaves the root unchanged.
    assert_eq!(fs2.root().unwrap(), r1);
    // A change deep down changes the root.
    let fh = fs2.open(f2.ino, true, false).unwrap();
    fs2.write(f2.ino, 3, b"d").unwrap();
    fs2.release(fh).unwrap();
    let r2 = fs2.sync().unwrap().unwrap();
    assert_ne!(r1, r2);
    let got = crate::tree::resolve(s.as_ref(), &r2, "d/f").unwrap();
    assert_eq!(
        read::read_all(s.as_ref(), got.block.as_ref().unwrap()).unwrap(),
        b"abcd"
    );
}

#[test]
fn read_only_refuses_every_mutation() {
    let s = store();
    let fs = Fs::new(s.clone(), &stored_tree(&s), opts(FsMode::ReadOnly)).unwrap();
    let a = ino_of(&fs, ROOT_INO, "a");
    let ro = libc::EROFS;
    assert_eq!(errno(fs.create(ROOT_INO, b"n", 0o644, ME)), ro);
    assert_eq!(errno(fs.mkdir(ROOT_INO, b"n", 0o755, ME)), ro);
    assert_eq!(errno(fs.unlink(ROOT_INO, b"a")), ro);
    assert_eq!(errno(fs.rmdir(ROOT_INO, b"d")), ro);
    assert_eq!(
        errno(fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", RenameMode::Replace)),
        ro
    );
    assert_eq!(errno(fs.write(a, 0, b"x")), ro);
    assert_eq!(errno(fs.open(a, true, false)), ro);
    assert_eq!(
        errno(fs.setattr(
            a,
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            }
        )),
        ro
    );
    assert_eq!(errno(fs.setxattr(a, b"user.x", b"1", XattrMode::Set)), ro);
    assert_eq!(errno(fs.link(a, ROOT_INO, b"n")), ro);
    assert_eq!(errno(fs.symlink(ROOT_INO, b"n", b"a", ROOT_INO_CALLER)), ro);
    assert!(fs.sync().unwrap().is_none());
}

const ROOT_INO_CALLER: Caller = Caller { uid: 0, gid: 0 };

#[test]
fn append_only_allows_appends_and_new_entries_only() {
    let s = store();
    let fs = Fs::new(s.clone(), &stored_tree(&s), opts(FsMode::AppendOnly)).unwrap();
    let before = fs.root().unwrap();
    let a = ino_of(&fs, ROOT_INO, "a");
    let perm = libc::EPERM;
    assert_eq!(errno(fs.unlink(ROOT_INO, b"a")), perm);
    assert_eq!(errno(fs.rmdir(ROOT_INO, b"d")), perm);
    assert_eq!(
        errno(fs.rename(ROOT_INO, b"a", ROOT_INO, b"z", RenameMode::Replace)),
        perm
    );
    assert_eq!(errno(fs.write(a, 0, b"H")), perm);
    assert_eq!(errno(fs.write(a, 4, b"O!")), perm);
    assert_eq!(
        errno(fs.setattr(
            a,
            &SetAttr {
                size: Some(2),
                ..Default::default()
            }
        )),
        perm
    );
    assert_eq!(errno(fs.open(a, true, true)), perm);
    fs.setxattr(a, b"user.k", b"1", XattrMode::Set).unwrap();
    assert_eq!(errno(fs.setxattr(a, b"user.k", b"2", XattrMode::Set)), perm);
    assert_eq!(errno(fs.removexattr(a, b"user.k")), perm);
    assert_eq!(read_file(&fs, a), b"hello");
    // Appends, growth, new files, directories and links are fine.
    let fh = fs.open(a, true, false).unwrap();
    fs.write(a, 5, b" world").unwrap();
    fs.release(fh).unwrap();
    assert_eq!(read_file(&fs, a), b"hello world");
    fs.setattr(
        a,
        &SetAttr {
            size: Some(20),
            ..Default::default()
        },
    )
    .unwrap();
    let n = new_file(&fs, ROOT_INO, "new", b"n");
    fs.mkdir(ROOT_INO, b"nd", 0o755, ME).unwrap();
    fs.link(n, ROOT_INO, b"new2").unwrap();
    let after = fs.sync().unwrap().unwrap();
    assert_ne!(before, after);
    // The old entries are all still there.
    let fs2 = Fs::new(s, &after, opts(FsMode::ReadOnly)).unwrap();
    assert_eq!(
        names(&fs2, ROOT_INO),
        ["a", "d", "h1", "nd", "new", "new2", "s"]
    );
}

#[test]
fn revisions_as_entries() {
    let s = store();
    let mut r1 = stored_tree(&s);
    r1.name = b"2024-01-01T00:00:00".to_vec();
    let mut r2 = Dirent::dir(b"2024-01-02T00:00:00", BlockRef::empty());
    r2.meta.set_mode(0o755);
    let fs = Fs::from_entries(s, vec![r1, r2], opts(FsMode::ReadWrite)).unwrap();
    assert_eq!(fs.mode(), FsMode::ReadOnly);
    assert_eq!(
        names(&fs, ROOT_INO),
        ["2024-01-01T00:00:00", "2024-01-02T00:00:00"]
    );
    let rev = ino_of(&fs, ROOT_INO, "2024-01-01T00:00:00");
    assert_eq!(read_file(&fs, ino_of(&fs, rev, "a")), b"hello");
}

#[test]
fn inode_numbers_are_stable() {
    let s = store();
    let fs = Fs::new(s.clone(), &stored_tree(&s), opts(FsMode::ReadWrite)).unwrap();
    let a1 = ino_of(&fs, ROOT_INO, "a");
    let d = ino_of(&fs, ROOT_INO, "d");
    fs.rename(ROOT_INO, b"a", d, b"a2", RenameMode::Replace)
        .unwrap();
    assert_eq!(ino_of(&fs, d, "a2"), a1);
    fs.sync().unwrap();
    assert_eq!(ino_of(&fs, d, "a2"), a1);
}

/// Walks `f` with `SEEK_HOLE`/`SEEK_DATA`: every hole reads as zeros in `model`, every
/// non-zero byte is counted in `data_bytes`, and the walk ends at the file's end.
fn check_holes(fs: &Fs, f: Ino, model: &[u8]) -> Result<(), TestCaseError> {
    let size = model.len() as u64;
    let nonzero = model.iter().filter(|&&b| b != 0).count() as u64;
    let data = fs.getattr(f).unwrap().data_bytes;
    prop_assert!(
        nonzero <= data && data <= size,
        "{nonzero} <= {data} <= {size}"
    );
    let mut pos = 0;
    let mut counted = 0;
    while pos < size {
        let hole = fs
            .seek(f, pos, false)
            .unwrap()
            .expect("a hole before the end");
        prop_assert!(hole > pos || fs.seek(f, pos, true).unwrap() != Some(pos));
        counted += hole - pos;
        let next = fs.seek(f, hole, true).unwrap();
        let hole_end = next.unwrap_or(size);
        prop_assert!(hole_end > hole || hole == size);
        prop_assert!(model[hole as usize..hole_end as usize]
            .iter()
            .all(|&b| b == 0));
        pos = hole_end;
    }
    prop_assert_eq!(counted, data);
    prop_assert_eq!(fs.seek(f, size, true).unwrap(), None);
    prop_assert_eq!(fs.seek(f, size, false).unwrap(), None);
    Ok(())
}

#[test]
fn holes_show_in_seek_and_data_bytes_before_and_after_commit() {
    let (_s, fs) = rw();
    let mib = 1u64 << 20;
    let data: Vec<u8> = (0..mib).map(|i| (i % 251 + 1) as u8).collect();
    let f = new_file(&fs, ROOT_INO, "f", &data);
    let grow = |size| SetAttr {
        size: Some(size),
        ..Default::default()
    };
    fs.setattr(f, &grow(1 << 30)).unwrap();
    fs.write(f, 512 * mib, b"0123456789").unwrap();
    for committed in [false, true] {
        let a = fs.getattr(f).unwrap();
        assert_eq!(a.size, 1 << 30);
        assert!(
            a.data_bytes >= mib + 10 && a.data_bytes <= 2 * mib,
            "{a:?} {committed}"
        );
        assert_eq!(fs.seek(f, 0, true).unwrap(), Some(0));
        assert_eq!(fs.seek(f, 0, false).unwrap(), Some(mib));
        let second = fs.seek(f, mib, true).unwrap().unwrap();
        assert!(second > mib && second <= 512 * mib, "{second}");
        let after = fs.seek(f, second, false).unwrap().unwrap();
        assert!(after >= 512 * mib + 10 && after < 1 << 30, "{after}");
        assert_eq!(fs.seek(f, after, true).unwrap(), None);
        assert_eq!(fs.seek(f, 1 << 30, false).unwrap(), None);
        fs.fsync(f).unwrap();
    }
    assert_eq!(fs.read(f, 512 * mib, 10).unwrap(), b"0123456789");
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Truncate(u64),
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Up to two pages long, so that writes often cover whole pages (over stored
        // content too, after a commit), which take a path of their own.
        4 => (0u64..300_000, proptest::collection::vec(any::<u8>(), 0..140_000)).prop_map(|(o, d)| Op::Write(o, d)),
        1 => (0u64..300_000).prop_map(Op::Truncate),
        1 => Just(Op::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Random writes, truncates and commits agree with a plain Vec model.
    #[test]
    fn file_matches_model(ops in proptest::collection::vec(op(), 1..12)) {
        let (_s, fs) = rw();
        let f = new_file(&fs, ROOT_INO, "f", b"");
        let fh = fs.open(f, true, false).unwrap();
        let mut model: Vec<u8> = Vec::new();
        for o in ops {
            match o {
                Op::Write(off, d) => {
                    fs.write(f, off, &d).unwrap();
                    let end = off as usize + d.len();
                    if !d.is_empty() && model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..off as usize + d.len()].copy_from_slice(&d);
                }
                Op::Truncate(n) => {
                    fs.setattr(f, &SetAttr { size: Some(n), ..Default::default() }).unwrap();
                    model.resize(n as usize, 0);
                }
                Op::Commit => fs.fsync(f).unwrap(),
            }
            prop_assert_eq!(fs.getattr(f).unwrap().size, model.len() as u64);
            check_holes(&fs, f, &model)?;
        }
        prop_assert_eq!(read_file(&fs, f), model.clone());
        fs.release(fh).unwrap();
        prop_assert_eq!(read_file(&fs, f), model);
    }
}

#[test]
fn one_shot_commit_matches_blockify() {
    let (s, fs) = rw();
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let f = new_file(&fs, ROOT_INO, "f", &data);
    let got = fs.getxattr(f, XATTR_BLOCK).unwrap();
    let r: BlockRef = String::from_utf8(got).unwrap().parse().unwrap();
    let whole = blockify_bytes(
        &data,
        &StoreSink(s.as_ref()),
        &FsOptions::default().blockify,
    )
    .unwrap();
    assert_eq!(read::read_all(s.as_ref(), &r).unwrap(), data);
    let mut a = Vec::new();
    crate::tree::for_each_leaf(s.as_ref(), &r, &mut |b, _| {
        a.push(b.span());
        Ok(())
    })
    .unwrap();
    let mut b = Vec::new();
    crate::tree::for_each_leaf(s.as_ref(), &whole, &mut |x, _| {
        b.push(x.span());
        Ok(())
    })
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(r, whole);
}

#[test]
fn sockets_are_special_nodes_that_round_trip() {
    let (s, fs) = rw();
    let sock = fs
        .mknod(ROOT_INO, b"sock", libc::S_IFSOCK | 0o755, 0, ME)
        .unwrap();
    assert_eq!(
        (sock.kind, sock.perm, sock.size),
        (FileKind::Socket, 0o755, 0)
    );
    assert_eq!(fs.lookup(ROOT_INO, b"sock").unwrap().kind, FileKind::Socket);
    assert_eq!(fs.readdir(ROOT_INO).unwrap()[2].kind, FileKind::Socket);
    // Unknown file types are refused like mknod(2) does.
    assert_eq!(
        errno(fs.mknod(ROOT_INO, b"x", 0o170000 | 0o644, 0, ME)),
        libc::EINVAL
    );
    let root = fs.sync().unwrap().unwrap();
    let fs2 = Fs::new(s.clone(), &root, opts(FsMode::ReadWrite)).unwrap();
    assert_eq!(
        fs2.lookup(ROOT_INO, b"sock").unwrap().kind,
        FileKind::Socket
    );
    // Restoring the tree makes a socket node again.
    let out = tempfile::tempdir().unwrap();
    crate::tree::restore(
        s.as_ref(),
        &root,
        &out.path().join("r"),
        &crate::tree::TreeOptions::default(),
        &crate::tree::Progress::default(),
    )
    .unwrap();
    use std::os::unix::fs::FileTypeExt;
    let ft = std::fs::symlink_metadata(out.path().join("r/sock"))
        .unwrap()
        .file_type();
    assert!(ft.is_socket());
}

/// A stored tree without hard links: d/x ("x data"), d/sub/y ("y data").
fn plain_tree(s: &Arc<dyn Store>) -> Dirent {
    let fs = Fs::empty(s.clone(), opts(FsMode::ReadWrite));
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ME).unwrap().ino;
    new_file(&fs, d, "x", b"x data");
    let sub = fs.mkdir(d, b"sub", 0o755, ME).unwrap().ino;
    new_file(&fs, sub, "y", b"y data");
    fs.sync().unwrap().unwrap()
}

#[test]
fn forget_unloads_clean_directories_and_keeps_inode_numbers() {
    let s = store();
    let fs = Fs::new(s.clone(), &plain_tree(&s), opts(FsMode::ReadWrite)).unwrap();
    let d = fs.lookup(ROOT_INO, b"d").unwrap().ino;
    let x = fs.lookup(d, b"x").unwrap().ino;
    let sub = fs.lookup(d, b"sub").unwrap().ino;
    let y = fs.lookup(sub, b"y").unwrap().ino;
    assert_eq!(fs.inodes_in_memory(), 5);
    // chmod: a change to keep, and a ctime that differs from the mtime.
    let chmod = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    let ctime = fs.setattr(x, &chmod).unwrap().ctime;
    fs.forget(y, 1);
    fs.forget(sub, 1);
    assert_eq!(fs.inodes_in_memory(), 4, "sub is unloaded");
    fs.forget(x, 1);
    fs.forget(d, 1);
    assert_eq!(fs.inodes_in_memory(), 4, "d holds an unsaved chmod");
    fs.sync().unwrap().unwrap();
    assert_eq!(fs.inodes_in_memory(), 2, "after the sync, d is unloaded");
    // Looking the entries up again gives the same numbers, meta and times.
    assert_eq!(fs.lookup(ROOT_INO, b"d").unwrap().ino, d);
    let xa = fs.lookup(d, b"x").unwrap();
    assert_eq!((xa.ino, xa.perm, xa.ctime), (x, 0o600, ctime));
    assert_eq!(fs.lookup(d, b"sub").unwrap().ino, sub);
    assert_eq!(fs.lookup(sub, b"y").unwrap().ino, y);
    assert_eq!(read_file(&fs, y), b"y data");
    // A referenced or open entry keeps its directory loaded.
    let fh = fs.open(y, false, false).unwrap();
    for (ino, n) in [(y, 1), (sub, 1), (x, 1), (d, 1)] {
        fs.forget(ino, n);
    }
    assert_eq!(fs.inodes_in_memory(), 5);
    fs.release(fh).unwrap();
    fs.sync().unwrap();
    assert_eq!(fs.root().unwrap(), fs.root().unwrap());
    assert_eq!(fs.inodes_in_memory(), 2);
    // Unloading never changes the tree.
    let fs2 = Fs::new(s.clone(), &fs.root().unwrap(), opts(FsMode::ReadWrite)).unwrap();
    let d2 = fs2.lookup(ROOT_INO, b"d").unwrap().ino;
    assert_eq!(fs2.lookup(d2, b"x").unwrap().perm, 0o600);
}

#[test]
fn forget_keeps_hard_linked_trees_loaded() {
    let s = store();
    let fs = Fs::new(s.clone(), &stored_tree(&s), opts(FsMode::ReadWrite)).unwrap();
    let d = fs.lookup(ROOT_INO, b"d").unwrap().ino;
    let loaded = fs.inodes_in_memory();
    fs.forget(d, 1);
    fs.sync().unwrap();
    assert_eq!(fs.inodes_in_memory(), loaded);
    assert_eq!(fs.lookup(ROOT_INO, b"d").unwrap().ino, d);
}

#[test]
fn removed_entries_live_until_unreferenced() {
    let (_s, fs) = rw();
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ME).unwrap().ino;
    fs.rmdir(ROOT_INO, b"d").unwrap();
    // Like a removed working directory: stat works, nothing can be added.
    let a = fs.getattr(d).unwrap();
    assert_eq!((a.kind, a.nlink), (FileKind::Dir, 0));
    assert_eq!(errno(fs.create(d, b"f", 0o644, ME)), libc::ENOENT);
    assert_eq!(errno(fs.symlink(d, b"l", b"t", ME)), libc::ENOENT);
    let f = new_file(&fs, ROOT_INO, "f", b"x");
    assert_eq!(
        errno(fs.rename(ROOT_INO, b"f", d, b"f", RenameMode::Replace)),
        libc::ENOENT
    );
    assert_eq!(errno(fs.link(f, d, b"f")), libc::ENOENT);
    fs.forget(d, 1);
    assert_eq!(errno(fs.getattr(d)), libc::ENOENT);
    // A file keeps its inode while referenced, even with no links and no opens.
    fs.lookup(ROOT_INO, b"f").unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();
    fs.forget(f, 1);
    assert_eq!(fs.getattr(f).unwrap().nlink, 0);
    fs.forget(f, 1);
    assert_eq!(errno(fs.getattr(f)), libc::ENOENT);
}

/// A store that counts flushes and reads.
#[derive(Debug)]
struct FlushCounter {
    inner: MemoryStore,
    flushes: std::sync::atomic::AtomicUsize,
    gets: std::sync::atomic::AtomicUsize,
}

impl Store for FlushCounter {
    fn hash_alg(&self) -> HashAlg {
        self.inner.hash_alg()
    }
    fn add_hashed(&self, hash: crate::hash::HashCode, data: &[u8]) -> crate::Result<bool> {
        self.inner.add_hashed(hash, data)
    }
    fn get(&self, hash: &crate::hash::HashCode) -> crate::Result<Option<Vec<u8>>> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(hash)
    }
    fn contains(&self, hash: &crate::hash::HashCode) -> crate::Result<bool> {
        self.inner.contains(hash)
    }
    fn flush(&self) -> crate::Result<()> {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn hashcodes(
        &self,
        start: Option<&crate::hash::HashCode>,
        after: bool,
        limit: usize,
    ) -> crate::Result<Vec<crate::hash::HashCode>> {
        self.inner.hashcodes(start, after, limit)
    }
    fn len(&self) -> crate::Result<u64> {
        self.inner.len()
    }
}

#[test]
fn fsync_commits_the_file_and_flushes_the_store() {
    let store = Arc::new(FlushCounter {
        inner: MemoryStore::with_capacity(HashAlg::Blake3, 1 << 30),
        flushes: Default::default(),
        gets: Default::default(),
    });
    let flushes = || store.flushes.load(std::sync::atomic::Ordering::SeqCst);
    let fs = Fs::empty(store.clone(), opts(FsMode::ReadWrite));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let (a, fh) = fs.create(ROOT_INO, b"f", 0o644, ME).unwrap();
    fs.write(a.ino, 0, &data).unwrap();
    // flush (close) commits without flushing the store.
    fs.flush(a.ino).unwrap();
    assert_eq!(flushes(), 0);
    fs.write(a.ino, 10, b"changed").unwrap();
    fs.fsync(a.ino).unwrap();
    assert_eq!(flushes(), 1);
    // The committed content is in the store: readable through its reference.
    let r = fs.getxattr(a.ino, XATTR_BLOCK).unwrap();
    let r = BlockRef::parse(std::str::from_utf8(&r).unwrap()).unwrap();
    let mut want = data.clone();
    want[10..17].copy_from_slice(b"changed");
    assert_eq!(read::read_all(&store.inner, &r).unwrap(), want);
    fs.release(fh).unwrap();
}

/// The content reference of file `ino` (committing it first).
fn content_ref(fs: &Fs, ino: Ino) -> BlockRef {
    let r = fs.getxattr(ino, XATTR_BLOCK).unwrap();
    BlockRef::parse(std::str::from_utf8(&r).unwrap()).unwrap()
}

fn one_shot(s: &Arc<dyn Store>, data: &[u8]) -> BlockRef {
    blockify_bytes(data, &StoreSink(s.as_ref()), &FsOptions::default().blockify).unwrap()
}

#[test]
fn holes_commit_without_chunking_and_match_one_shot_blockify() {
    let (s, fs) = rw();
    let f = new_file(&fs, ROOT_INO, "f", b"head");
    let size = |n| SetAttr {
        size: Some(n),
        ..Default::default()
    };
    // Extending to 1 TiB commits in a few chunks' time: the hole is one RLE leaf.
    fs.setattr(f, &size(1 << 40)).unwrap();
    let r = content_ref(&fs, f);
    assert_eq!(r.span(), 1 << 40);
    // Data in the middle of the hole, and an append past it.
    fs.write(f, 1 << 39, b"middle").unwrap();
    fs.write(f, (1 << 40) + 5, b"tail").unwrap();
    content_ref(&fs, f);
    assert_eq!(fs.read(f, (1 << 39) - 2, 10).unwrap(), b"\0\0middle\0\0");
    assert_eq!(fs.read(f, (1 << 40) + 3, 10).unwrap(), b"\0\0tail");
    assert_eq!(fs.read(f, 0, 6).unwrap(), b"head\0\0");
    // At a size that blockify can do in one go, the references are the same.
    let mut model = vec![0u8; 40 << 20];
    model[..4].copy_from_slice(b"head");
    let g = new_file(&fs, ROOT_INO, "g", b"head");
    fs.setattr(g, &size(model.len() as u64)).unwrap();
    assert_eq!(content_ref(&fs, g), one_shot(&s, &model));
    for (off, d) in [(10_000_000usize, &b"x"[..]), (3, b"y"), (39 << 20, b"zz")] {
        fs.write(g, off as u64, d).unwrap();
        model[off..off + d.len()].copy_from_slice(d);
        assert_eq!(content_ref(&fs, g), one_shot(&s, &model));
    }
    fs.setattr(g, &size(50 << 20)).unwrap();
    fs.write(g, 45 << 20, b"w").unwrap();
    model.resize(50 << 20, 0);
    model[45 << 20] = b'w';
    assert_eq!(content_ref(&fs, g), one_shot(&s, &model));
    assert_eq!(read_file(&fs, g), model);
}

fn sparse_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..6_000_000, proptest::collection::vec(any::<u8>(), 0..3_000)).prop_map(|(o, d)| Op::Write(o, d)),
        1 => (0u64..6_000_000).prop_map(Op::Truncate),
        2 => Just(Op::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Sparse writes, truncates and commits give the content and the very
    /// reference of a one-shot blockify of a `Vec` model.
    #[test]
    fn sparse_commits_match_one_shot_blockify(ops in proptest::collection::vec(sparse_op(), 1..10)) {
        let (s, fs) = rw();
        let f = new_file(&fs, ROOT_INO, "f", b"");
        let mut model: Vec<u8> = Vec::new();
        for o in ops {
            match o {
                Op::Write(off, d) => {
                    fs.write(f, off, &d).unwrap();
                    // A write of nothing changes nothing, even past the end.
                    let end = off as usize + d.len();
                    if !d.is_empty() {
                        if model.len() < end {
                            model.resize(end, 0);
                        }
                        model[off as usize..end].copy_from_slice(&d);
                    }
                }
                Op::Truncate(n) => {
                    fs.setattr(f, &SetAttr { size: Some(n), ..Default::default() }).unwrap();
                    model.resize(n as usize, 0);
                }
                Op::Commit => prop_assert_eq!(content_ref(&fs, f), one_shot(&s, &model)),
            }
        }
        prop_assert_eq!(content_ref(&fs, f), one_shot(&s, &model));
        prop_assert_eq!(read_file(&fs, f), model);
    }
}

#[test]
fn overwrites_reuse_the_stored_leaves_after_the_change() {
    let store = Arc::new(FlushCounter {
        inner: MemoryStore::with_capacity(HashAlg::Blake3, 1 << 30),
        flushes: Default::default(),
        gets: Default::default(),
    });
    let s: Arc<dyn Store> = store.clone();
    let model: Vec<u8> = (0..16_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let root = {
        let fs = Fs::empty(s.clone(), opts(FsMode::ReadWrite));
        new_file(&fs, ROOT_INO, "f", &model);
        fs.sync().unwrap().unwrap()
    };
    for (off, len) in [(5_000_000usize, 10usize), (100, 70_000), (15_999_990, 10)] {
        // A fresh filesystem: its block cache is empty, so reads reach the store.
        let fs = Fs::new(s.clone(), &root, opts(FsMode::ReadWrite)).unwrap();
        let f = fs.lookup(ROOT_INO, b"f").unwrap().ino;
        let before = store.gets.load(std::sync::atomic::Ordering::SeqCst);
        let fh = fs.open(f, true, false).unwrap();
        let patch: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
        fs.write(f, off as u64, &patch).unwrap();
        fs.release(fh).unwrap();
        let reads = store.gets.load(std::sync::atomic::Ordering::SeqCst) - before;
        let mut want = model.clone();
        want[off..off + len].copy_from_slice(&patch);
        assert!(
            read_file(&fs, f) == want,
            "content after an overwrite at {off}"
        );
        assert_eq!(
            content_ref(&fs, f),
            one_shot(&s, &want),
            "overwrite at {off}"
        );
        // Chunking to the end would read about 16 MB / 64 KiB = 244 leaves from
        // the middle on; reuse reads the leaves around the change and the path
        // of indirect blocks to them.
        assert!(
            reads < 40,
            "{reads} blocks read for a {len}-byte overwrite at {off}"
        );
    }
}

#[test]
fn fallocate_grows_punches_and_zeroes() {
    let (s, fs) = rw();
    let mut model: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let f = new_file(&fs, ROOT_INO, "f", &model);
    let keep = libc::FALLOC_FL_KEEP_SIZE;
    let punch = libc::FALLOC_FL_PUNCH_HOLE | keep;
    // Reserving space changes nothing; mode 0 grows the file.
    fs.fallocate(f, 0, 2_000_000, keep).unwrap();
    assert_eq!(fs.getattr(f).unwrap().size, 1_000_000);
    fs.fallocate(f, 900_000, 200_000, 0).unwrap();
    model.resize(1_100_000, 0);
    // Holes over stored bytes (whole pages and partial ones), committed or not.
    for (off, len) in [(100_000u64, 300_000u64), (5, 10), (70_000, 70_000)] {
        fs.fallocate(f, off, len, punch).unwrap();
        model[off as usize..(off + len) as usize].fill(0);
        assert!(read_file(&fs, f) == model, "after punching {off}+{len}");
    }
    assert_eq!(content_ref(&fs, f), one_shot(&s, &model));
    // A hole reaching the end cuts the stored content; the size stays.
    fs.fallocate(f, 650_000, 10_000_000, punch).unwrap();
    model[650_000..].fill(0);
    assert!(read_file(&fs, f) == model);
    assert_eq!(content_ref(&fs, f), one_shot(&s, &model));
    // Zeroing a range may grow the file.
    fs.fallocate(f, 1_000_000, 200_000, libc::FALLOC_FL_ZERO_RANGE)
        .unwrap();
    model.resize(1_200_000, 0);
    assert!(read_file(&fs, f) == model);
    assert_eq!(content_ref(&fs, f), one_shot(&s, &model));
    // Refusals.
    assert_eq!(
        errno(fs.fallocate(f, 0, 10, libc::FALLOC_FL_PUNCH_HOLE)),
        libc::EOPNOTSUPP
    );
    assert_eq!(errno(fs.fallocate(f, 0, 10, 0x40)), libc::EOPNOTSUPP);
    assert_eq!(errno(fs.fallocate(f, 0, 0, 0)), libc::EINVAL);
    assert_eq!(errno(fs.fallocate(ROOT_INO, 0, 10, 0)), libc::EISDIR);
    let ao = Fs::new(s.clone(), &fs.root().unwrap(), opts(FsMode::AppendOnly)).unwrap();
    let g = ao.lookup(ROOT_INO, b"f").unwrap().ino;
    assert_eq!(errno(ao.fallocate(g, 0, 10, punch)), libc::EPERM);
    ao.fallocate(g, 0, 2_000_000, 0).unwrap();
    assert_eq!(ao.getattr(g).unwrap().size, 2_000_000);
}
