//! Real FUSE mounts through `vt mount`: real tools in, `vt`'s engine out.
//!
//! Needs /dev/fuse, fusermount3, rsync, git and make (the CI script installs them)
//! and runs as root, like the CI.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vt_engine::archive::Archive;
use vt_engine::store::{DataDir, DataDirOptions};
use vt_engine::tree::{self, Progress, TreeOptions};
use vt_engine::Dirent;
use vt_tests::{vt_bin, Mounted as Mount};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(dir: &Path, script: &str) -> String {
    run(Command::new("sh").arg("-c").arg(script).current_dir(dir))
}

/// A workspace: a store, an archive, a mountpoint.
struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        run(Command::new(vt_bin())
            .arg("-q")
            .arg("-S")
            .arg(tmp.path().join("store"))
            .arg("init"));
        Env { tmp }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn archive(&self) -> PathBuf {
        self.path("a.vt")
    }
    fn mnt(&self) -> PathBuf {
        self.path("mnt")
    }
    fn mount(&self, extra: &[&str]) -> Mount {
        mount_at(self, &self.archive().to_string_lossy(), &self.mnt(), extra)
    }
    /// The store, read-only (a follower: no writer lock needed).
    fn store(&self) -> DataDir {
        let opts = DataDirOptions {
            read_only: true,
            ..DataDirOptions::default()
        };
        DataDir::open(self.path("store"), opts).unwrap()
    }
    fn revisions(&self) -> usize {
        Archive::new(self.archive()).entries().unwrap().len()
    }
    /// Restores the archive's latest revision to a fresh directory.
    fn restore_latest(&self, name: &str) -> PathBuf {
        let store = self.store();
        let latest = Archive::new(self.archive())
            .latest()
            .unwrap()
            .expect("a revision");
        let root = Dirent::parse(&latest.transcription).unwrap();
        let out = self.path(name);
        tree::restore(
            &store,
            &root,
            &out,
            &TreeOptions::default(),
            &Progress::default(),
        )
        .unwrap();
        out
    }
}

/// Starts `vt mount SPECIAL DIR EXTRA...` on `env`'s store.
fn mount_at(env: &Env, special: &str, dir: &Path, extra: &[&str]) -> Mount {
    Mount::spawn(
        Command::new(vt_bin())
            .arg("-q")
            .arg("-S")
            .arg(env.path("store"))
            .arg("mount")
            .arg(special)
            .arg(dir)
            .args(extra),
        dir,
    )
}

/// A source tree with files, a sparse file, subdirectories, symlinks, a hard link,
/// odd modes and an xattr.
fn make_source(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("hello.txt"), b"hello world\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    fs::write(root.join("sub/big.bin"), &big).unwrap();
    let mut sparse = fs::File::create(root.join("sparse")).unwrap();
    sparse.seek(SeekFrom::Start(5 << 20)).unwrap();
    sparse.write_all(b"tail").unwrap();
    fs::write(root.join("sub/deeper/exe.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(
        root.join("sub/deeper/exe.sh"),
        fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("../hello.txt", root.join("sub/uplink")).unwrap();
    fs::hard_link(root.join("hello.txt"), root.join("sub/hard")).unwrap();
    sh(
        root,
        "setfattr -n user.color -v blue hello.txt 2>/dev/null || true",
    );
    sh(
        root,
        "touch -d '2020-02-02 02:02:02.123456789' sub/deeper/exe.sh empty",
    );
}

/// Compares two trees: types, contents, symlink targets, permissions, mtimes, link counts.
fn assert_same_tree(a: &Path, b: &Path) {
    let mut names_a: Vec<_> = fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut names_b: Vec<_> = fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(
        names_a,
        names_b,
        "entries of {} vs {}",
        a.display(),
        b.display()
    );
    for n in names_a {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pb.display());
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
            continue;
        }
        assert_eq!(
            ma.mode() & 0o7777,
            mb.mode() & 0o7777,
            "mode of {}",
            pb.display()
        );
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
            continue;
        }
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", pb.display());
        assert_eq!(ma.nlink(), mb.nlink(), "nlink of {}", pb.display());
        assert!(
            fs::read(&pa).unwrap() == fs::read(&pb).unwrap(),
            "content of {}",
            pb.display()
        );
    }
}

#[test]
fn cp_in_unmount_restore_remount_and_tar() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    let m = env.mount(&[]);
    run(Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(env.mnt().join("src")));
    assert_same_tree(&src, &env.mnt().join("src"));
    // The content reference is readable as an xattr.
    let xb = fs::read(env.mnt().join("src/hello.txt")).unwrap();
    assert_eq!(xb, b"hello world\n");
    m.stop();
    assert!(
        !env.mnt().exists(),
        "mountpoint created by vt mount is removed"
    );
    assert_eq!(env.revisions(), 1);
    let out = env.restore_latest("restored");
    assert_same_tree(&src, &out.join("src"));
    assert_eq!(
        fs::metadata(out.join("src/hello.txt")).unwrap().ino(),
        fs::metadata(out.join("src/sub/hard")).unwrap().ino()
    );

    // A remount shows the same tree; tar of it equals tar of the source.
    let m = env.mount(&[]);
    assert_same_tree(&src, &env.mnt().join("src"));
    let tar = |dir: &Path| {
        run(Command::new("sh")
            .arg("-c")
            .arg("tar --sort=name --numeric-owner --format=gnu -cf - . | sha256sum")
            .current_dir(dir))
    };
    assert_eq!(tar(&src), tar(&env.mnt().join("src")));
    // cp -a back out.
    run(Command::new("cp")
        .arg("-a")
        .arg(env.mnt().join("src"))
        .arg(env.path("out")));
    assert_same_tree(&src, &env.path("out"));
    // Changes: delete, rename, overwrite.
    fs::remove_file(env.mnt().join("src/empty")).unwrap();
    fs::rename(env.mnt().join("src/sub"), env.mnt().join("src/moved")).unwrap();
    fs::write(env.mnt().join("src/hello.txt"), b"changed\n").unwrap();
    m.stop();
    assert_eq!(env.revisions(), 2);
    let out = env.restore_latest("restored2");
    assert!(!out.join("src/empty").exists());
    assert!(out.join("src/moved/big.bin").exists());
    assert_eq!(fs::read(out.join("src/hello.txt")).unwrap(), b"changed\n");
    assert_eq!(fs::read(out.join("src/moved/hard")).unwrap(), b"changed\n");

    // -a lists every revision, read-only.
    let m = env.mount(&["-a"]);
    let revs: Vec<_> = fs::read_dir(env.mnt()).unwrap().collect();
    assert_eq!(revs.len(), 2);
    let mut names: Vec<_> = revs.into_iter().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert_eq!(
        fs::read(names[0].join("src/hello.txt")).unwrap(),
        b"hello world\n"
    );
    let err = fs::write(names[0].join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()));
    m.stop();
    assert_eq!(env.revisions(), 2, "read-only mounts record nothing");
}

fn libc_erofs() -> i32 {
    30
}

const EPERM: i32 = 1;

#[test]
fn append_only_refuses_destruction_with_eperm() {
    let env = Env::new();
    let m = env.mount(&[]);
    fs::create_dir(env.mnt().join("d")).unwrap();
    fs::write(env.mnt().join("d/f"), b"original").unwrap();
    m.stop();
    let before = fs::read_to_string(env.archive()).unwrap();

    let m = env.mount(&["-o", "append_only"]);
    let d = env.mnt().join("d");
    let f = d.join("f");
    let eperm = |r: std::io::Result<()>, what: &str| {
        assert_eq!(r.expect_err(what).raw_os_error(), Some(EPERM), "{what}");
    };
    eperm(fs::remove_file(&f), "unlink");
    eperm(
        fs::remove_dir(&d).or_else(|_| fs::remove_dir(&d)),
        "rmdir of a non-empty dir",
    );
    fs::create_dir(d.join("empty")).unwrap();
    eperm(fs::remove_dir(d.join("empty")), "rmdir");
    eperm(fs::rename(&f, d.join("g")), "rename");
    eperm(
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&f)
            .map(|_| ()),
        "O_TRUNC",
    );
    eperm(
        fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .and_then(|mut h| h.write_all(b"X")),
        "overwrite",
    );
    eperm(
        fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .and_then(|h| h.set_len(3)),
        "truncate",
    );
    // Appends and new files work.
    let mut h = fs::OpenOptions::new().append(true).open(&f).unwrap();
    h.write_all(b"+appended").unwrap();
    drop(h);
    fs::write(d.join("new"), b"new file").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"original+appended");
    m.stop();
    let after = fs::read_to_string(env.archive()).unwrap();
    assert!(
        after.starts_with(&before),
        "the archive is only appended to"
    );
    let out = env.restore_latest("r");
    assert_eq!(fs::read(out.join("d/f")).unwrap(), b"original+appended");
    assert_eq!(fs::read(out.join("d/new")).unwrap(), b"new file");
    assert!(out.join("d/empty").is_dir());
}

#[test]
fn rsync_git_and_make_inside_the_mount() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    let m = env.mount(&[]);
    let mnt = env.mnt();
    run(Command::new("rsync")
        .arg("-aHX")
        .arg(format!("{}/", src.display()))
        .arg(mnt.join("r")));
    let diff = run(Command::new("rsync")
        .arg("-acHX")
        .arg("--dry-run")
        .arg("--itemize-changes")
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", mnt.join("r").display())));
    assert_eq!(diff.trim(), "", "rsync sees differences");

    let repo = mnt.join("repo");
    fs::create_dir(&repo).unwrap();
    fs::write(
        repo.join("main.c"),
        "#include <stdio.h>\n#include \"msg.h\"\nint main(void){puts(MSG);return 0;}\n",
    )
    .unwrap();
    fs::write(repo.join("msg.h"), "#define MSG \"built in vt\"\n").unwrap();
    fs::write(
        repo.join("Makefile"),
        "prog: main.o\n\tcc -o prog main.o\nmain.o: main.c msg.h\n\tcc -c main.c\n",
    )
    .unwrap();
    sh(&repo, "git init -q . && git add -A && git -c user.name=t -c user.email=t@e commit -qm first && git fsck --strict && test -z \"$(git status --porcelain)\"");
    sh(&repo, "make -s");
    assert_eq!(sh(&repo, "./prog"), "built in vt\n");
    sh(&repo, "echo '#define MSG \"rebuilt\"' > msg.h && make -s && git -c user.name=t -c user.email=t@e commit -qam second");
    assert_eq!(sh(&repo, "./prog"), "rebuilt\n");
    assert_eq!(sh(&repo, "git log --oneline | wc -l").trim(), "2");
    m.stop();
    let out = env.restore_latest("r");
    assert_eq!(
        sh(&out.join("repo"), "git log --oneline | wc -l").trim(),
        "2"
    );
    sh(
        &out.join("repo"),
        "git fsck --strict && test -z \"$(git status --porcelain --untracked-files=no)\"",
    );
    assert_eq!(sh(&out.join("repo"), "./prog"), "rebuilt\n");
}

#[test]
fn kill_9_leaves_store_and_archive_valid() {
    let env = Env::new();
    let m = env.mount(&["--sync-interval", "1"]);
    fs::write(env.mnt().join("first"), b"synced").unwrap();
    let t = Instant::now();
    while env.revisions() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no periodic revision"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // More changes, some maybe half-synced, then a hard kill.
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(env.mnt().join("second"), &big).unwrap();
    let mut h = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .open(env.mnt().join("open"))
        .unwrap();
    h.write_all(&big).unwrap();
    run(Command::new("kill").arg("-9").arg(m.pid().to_string()));
    drop(h);
    drop(m);
    let store = env.store();
    assert!(store.verify().unwrap().is_ok());
    let out = env.restore_latest("r");
    assert_eq!(fs::read(out.join("first")).unwrap(), b"synced");
}

#[test]
fn transcription_mounts_read_only() {
    let env = Env::new();
    let m = env.mount(&[]);
    fs::write(env.mnt().join("f"), b"data").unwrap();
    m.stop();
    let latest = Archive::new(env.archive()).latest().unwrap().unwrap();
    let m = mount_at(&env, &latest.transcription, &env.path("ro"), &[]);
    assert_eq!(fs::read(env.path("ro/f")).unwrap(), b"data");
    let block = sh(&env.path("ro"), "getfattr --only-values -n x-vt-block f");
    assert!(
        block.starts_with("LB{") || block.starts_with("B{"),
        "{block}"
    );
    assert_eq!(
        fs::write(env.path("ro/g"), b"x")
            .unwrap_err()
            .raw_os_error(),
        Some(libc_erofs())
    );
    m.stop();
    assert_eq!(env.revisions(), 1);
}

/// `len` pseudo-random bytes from `seed` (xorshift64), with runs of zeros now and then so
/// some leaves become RLE holes.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(97) {
            out.resize((out.len() + 70_000).min(len), 0);
        } else {
            out.extend_from_slice(&x.to_le_bytes()[..(len - out.len()).min(8)]);
        }
    }
    out
}

/// One writer's rounds: write files, overwrite a range in place, truncate, read its own
/// and its neighbour's files back, all while the mount commits in the background and
/// records a revision every second. Runs until `done` says so (after at least one round).
/// Returns the final content of every file it owns.
fn churn(mnt: &Path, who: u64, done: &dyn Fn(u64) -> bool) -> Vec<(PathBuf, Vec<u8>)> {
    let mut owned = Vec::new();
    for r in 0.. {
        if r > 0 && done(r) {
            break;
        }
        let dir = mnt.join(format!("w{who}-{r}"));
        fs::create_dir(&dir).unwrap();
        for (i, len) in [0usize, 1, 4096, 100_000, 3_000_000]
            .into_iter()
            .enumerate()
        {
            let p = dir.join(format!("f{i}"));
            let mut want = pattern(who << 32 | r << 8 | i as u64, len);
            fs::write(&p, &want).unwrap();
            assert_eq!(fs::read(&p).unwrap(), want, "{} after write", p.display());
            if len > 70_000 {
                let patch = pattern(!who ^ r, 20_000);
                let mut f = fs::OpenOptions::new().write(true).open(&p).unwrap();
                f.seek(SeekFrom::Start(50_000)).unwrap();
                f.write_all(&patch).unwrap();
                drop(f);
                want[50_000..70_000].copy_from_slice(&patch);
                assert_eq!(fs::read(&p).unwrap(), want, "{} after patch", p.display());
            }
            if len > 1_000_000 && r % 2 == 1 {
                want.truncate(777_777);
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(want.len() as u64)
                    .unwrap();
                assert_eq!(
                    fs::read(&p).unwrap(),
                    want,
                    "{} after truncate",
                    p.display()
                );
            }
            owned.push((p, want));
        }
        // Read a neighbour's latest files while it may be writing: they must read whole
        // (any content it had at some point), never fail.
        let other = mnt.join(format!("w{}-{}", (who + 1) % 3, r.saturating_sub(1)));
        if let Ok(entries) = fs::read_dir(&other) {
            for e in entries {
                let e = e.unwrap();
                if let Err(err) = fs::read(e.path()) {
                    panic!("reading {}: {err}", e.path().display());
                }
            }
        }
    }
    owned
}

#[test]
fn concurrent_writers_read_back_during_periodic_syncs() {
    let env = Env::new();
    let m = env.mount(&["--sync-interval", "1"]);
    let mnt = env.mnt();
    // Keep writing until the mount has recorded revisions in the middle of the churn.
    let done = |round: u64| round >= 200 || (round >= 6 && env.revisions() >= 3);
    let owned: Vec<(PathBuf, Vec<u8>)> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..3)
            .map(|who| {
                let (mnt, done) = (&mnt, &done);
                s.spawn(move || churn(mnt, who, done))
            })
            .collect();
        jobs.into_iter().flat_map(|j| j.join().unwrap()).collect()
    });
    assert!(
        env.revisions() >= 3,
        "no periodic revisions during the churn"
    );
    m.stop();
    assert!(env.store().verify().unwrap().is_ok());
    let out = env.restore_latest("restored");
    for (p, want) in &owned {
        let rel = p.strip_prefix(&mnt).unwrap();
        assert_eq!(&fs::read(out.join(rel)).unwrap(), want, "{}", rel.display());
    }
    // A remount reads the same bytes.
    let m = env.mount(&[]);
    for (p, want) in &owned {
        assert_eq!(&fs::read(p).unwrap(), want, "{} after remount", p.display());
    }
    m.stop();
}

/// Large files opened read-only are read with direct I/O (the kernel's page cache is
/// skipped); reads through such a handle see writes made through another handle at
/// once, and shared mappings of it work.
#[test]
fn large_files_read_directly_stay_coherent_with_writes_and_mmap() {
    use std::os::unix::fs::FileExt;
    let env = Env::new();
    let m = env.mount(&[]);
    let big = env.mnt().join("big");
    let len = 80u64 << 20;
    let head = pattern(7, 3 << 20);
    fs::write(&big, &head).unwrap();
    let w = fs::OpenOptions::new().write(true).open(&big).unwrap();
    w.set_len(len).unwrap();
    let r = fs::File::open(&big).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    r.read_exact_at(&mut buf, 1 << 20).unwrap();
    assert!(buf == head[1 << 20..2 << 20], "read of the written head");
    r.read_exact_at(&mut buf, len - (1 << 20)).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "read of the extended tail");
    // A write through the other handle is seen by the next read.
    w.write_all_at(b"direct", 70 << 20).unwrap();
    let mut got = [0u8; 6];
    r.read_exact_at(&mut got, 70 << 20).unwrap();
    assert_eq!(&got, b"direct");
    drop((r, w));
    // A shared read-only mapping of a file opened read-only.
    let script = format!(
        "import mmap\n\
         with open('{}', 'rb') as f:\n    \
         m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)\n    \
         print(m[70 << 20:(70 << 20) + 6].decode(), len(m))",
        big.display()
    );
    let out = run(Command::new("python3").arg("-c").arg(&script));
    assert_eq!(out.trim(), format!("direct {len}"));
    let mut want = head.clone();
    want.resize(len as usize, 0);
    want[70 << 20..(70 << 20) + 6].copy_from_slice(b"direct");
    assert!(fs::read(&big).unwrap() == want, "whole file");
    m.stop();
    let m = env.mount(&[]);
    assert!(fs::read(&big).unwrap() == want, "whole file after remount");
    m.stop();
}

#[test]
fn write_only_handles_bypass_the_page_cache_and_readers_see_their_writes() {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let env = Env::new();
    let m = env.mount(&[]);
    let f = env.mnt().join("small");
    fs::write(&f, pattern(3, 200_000)).unwrap();
    // A reader caches the file's pages (small files are read through the page cache).
    let r = fs::File::open(&f).unwrap();
    let mut before = vec![0u8; 200_000];
    r.read_exact_at(&mut before, 0).unwrap();
    // Unaligned overwrites, an append and a write past the end through a write-only
    // handle (which the mount opens for direct I/O).
    let mut want = before.clone();
    let w = fs::OpenOptions::new().write(true).open(&f).unwrap();
    w.write_all_at(b"overwritten", 4093).unwrap();
    want[4093..4093 + 11].copy_from_slice(b"overwritten");
    w.write_all_at(&pattern(4, 70_000), 100_001).unwrap();
    want[100_001..170_001].copy_from_slice(&pattern(4, 70_000));
    w.write_all_at(b"tail", 300_000).unwrap();
    want.resize(300_000, 0);
    want.extend_from_slice(b"tail");
    let mut a = fs::OpenOptions::new().append(true).open(&f).unwrap();
    a.write_all(b"appended").unwrap();
    want.extend_from_slice(b"appended");
    drop((w, a));
    // The reader's next reads (same handle, then a new one, then a mapping) see them.
    let mut got = vec![0u8; want.len()];
    r.read_exact_at(&mut got, 0).unwrap();
    assert!(got == want, "read through the caching handle");
    assert!(fs::read(&f).unwrap() == want, "read through a new handle");
    let script = format!(
        "import mmap, sys\n\
         with open('{}', 'rb') as f:\n    \
         m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)\n    \
         sys.stdout.buffer.write(m[:])",
        f.display()
    );
    let mapped = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(mapped.status.success());
    assert!(mapped.stdout == want, "read through a shared mapping");
    assert_eq!(fs::metadata(&f).unwrap().len(), want.len() as u64);
    drop(r);
    m.stop();
    let m = env.mount(&[]);
    assert!(fs::read(&f).unwrap() == want, "after remount");
    m.stop();
}

/// Allocated bytes as `stat` reports them (`st_blocks` × 512).
fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn sparse_files_show_their_holes_to_stat_and_cp() {
    let env = Env::new();
    let m = env.mount(&[]);
    let f = env.mnt().join("sparse");
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251 + 1) as u8).collect();
    fs::write(&f, &data).unwrap();
    let len = 256u64 << 20;
    fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len)
        .unwrap();
    let check = |label: &str| {
        assert_eq!(fs::metadata(&f).unwrap().len(), len);
        let a = allocated(&f);
        assert!(
            (1 << 20..2 << 20).contains(&a),
            "{label}: {a} bytes allocated"
        );
        // GNU cp finds the holes with SEEK_DATA/SEEK_HOLE and keeps them.
        let copy = env.path(&format!("copy-{label}"));
        run(Command::new("cp").arg("--sparse=always").arg(&f).arg(&copy));
        let mut want = data.clone();
        want.resize(len as usize, 0);
        assert!(fs::read(&copy).unwrap() == want, "{label}: copy differs");
        assert!(
            allocated(&copy) < 4 << 20,
            "{label}: the copy lost its holes"
        );
    };
    check("live");
    m.stop();
    let m = env.mount(&[]);
    check("remounted");
    m.stop();
}

#[test]
fn fsync_of_file_and_directory_survives_kill_9() {
    let env = Env::new();
    // No periodic syncs: only the fsyncs can make the new name durable.
    let m = env.mount(&["--sync-interval", "0"]);
    let dir = env.mnt().join("d");
    fs::create_dir(&dir).unwrap();
    let mut f = fs::File::create(dir.join("log")).unwrap();
    f.write_all(b"committed line\n").unwrap();
    f.sync_all().unwrap();
    fs::File::open(&dir).unwrap().sync_all().unwrap();
    assert_eq!(env.revisions(), 1);
    // Not fsynced: may be lost, must not corrupt anything.
    fs::write(dir.join("later"), b"unsynced").unwrap();
    run(Command::new("kill").arg("-9").arg(m.pid().to_string()));
    drop(f);
    drop(m);
    assert!(env.store().verify().unwrap().is_ok());
    let out = env.restore_latest("r");
    assert_eq!(fs::read(out.join("d/log")).unwrap(), b"committed line\n");
}

#[test]
fn preferred_io_size_is_large_for_files_and_small_for_directories() {
    let env = Env::new();
    let m = env.mount(&[]);
    fs::create_dir(env.mnt().join("d")).unwrap();
    fs::write(env.mnt().join("d/f"), b"data").unwrap();
    // Files: 1 MiB, so cp and cat move a MiB per request.
    assert_eq!(
        fs::metadata(env.mnt().join("d/f")).unwrap().blksize(),
        1 << 20
    );
    // Directories: glibc sizes readdir buffers by st_blksize (at least 32 KiB), and
    // the kernel allocates a reply buffer that large for every getdents.
    for d in [env.mnt(), env.mnt().join("d")] {
        let b = fs::metadata(&d).unwrap().blksize();
        assert!(b <= 32 << 10, "{}: st_blksize {b}", d.display());
    }
    m.stop();
}

/// Whether `stat` of `path` completes within `wait` while the mount process is stopped
/// (SIGSTOP): only an answer from the kernel's caches can. The process is continued
/// before returning, so a stat left waiting completes then.
fn stat_answered_while_stopped(m: &Mount, path: &Path, wait: Duration) -> bool {
    let pid = m.pid().to_string();
    run(Command::new("kill").arg("-STOP").arg(&pid));
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    let t = std::thread::spawn(move || {
        let r = fs::metadata(&p).map(|md| md.len());
        let _ = tx.send(());
        r
    });
    let answered = rx.recv_timeout(wait).is_ok();
    run(Command::new("kill").arg("-CONT").arg(&pid));
    t.join().unwrap().unwrap();
    answered
}

#[test]
fn a_read_only_mount_lets_the_kernel_cache_attributes_longer() {
    let env = Env::new();
    let m = env.mount(&[]);
    fs::create_dir(env.mnt().join("d")).unwrap();
    fs::write(env.mnt().join("d/f"), b"data").unwrap();
    m.stop();
    for (opts, cached) in [(&["-r"][..], true), (&[][..], false)] {
        let m = env.mount(opts);
        let f = env.mnt().join("d/f");
        assert_eq!(fs::metadata(&f).unwrap().len(), 4);
        // Past a writable mount's 1 s TTL: its kernel must ask the mount again.
        std::thread::sleep(Duration::from_millis(1500));
        let answered = stat_answered_while_stopped(&m, &f, Duration::from_secs(2));
        assert_eq!(answered, cached, "mount options {opts:?}");
        m.stop();
    }
}
