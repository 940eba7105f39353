//! Black-box tests of `vt pack/unpack/save/ls/log/cat` on real trees: fidelity, safety,
//! incremental packing, kill-safety, and cs.vt's own data.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use vt_engine::archive::{Archive, ArchiveEntry};
use vt_engine::store::{DataDir, DataDirOptions};
use vt_engine::{BlockRef, Dirent, Store};
use vt_tests::{fails, ok, stdout, vt};

fn is_root() -> bool {
    nix_euid() == 0
}

fn nix_euid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
}

fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs as u64, nanos);
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(t).unwrap();
}

/// Builds a tree exercising every fidelity item.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::write(root.join("plain.txt"), b"hello world\n").unwrap();
    std::fs::write(
        root.join("sub/code.py"),
        "def f():\n    return 1\n".repeat(500),
    )
    .unwrap();
    let rnd: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("sub/random.bin"), &rnd).unwrap();
    std::fs::write(root.join("sub/deeper/empty-file"), b"").unwrap();
    // Sparse: 8 MiB hole, then data, then a 4 MiB hole at the end.
    let sp = std::fs::File::create(root.join("sparse.img")).unwrap();
    sp.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&sp, b"data in the middle", 8 << 20).unwrap();
    sp.set_len(12 << 20).unwrap();
    std::os::unix::fs::symlink("plain.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("../plain.txt", root.join("sub/uplink")).unwrap();
    std::fs::hard_link(root.join("plain.txt"), root.join("sub/hardlink")).unwrap();
    for (name, mode) in [("setuid", 0o4755), ("setgid", 0o2750), ("private", 0o600)] {
        std::fs::write(root.join(name), name).unwrap();
        std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    xattr::set(
        root.join("plain.txt"),
        "user.comment",
        b"kept \x00\xff bytes",
    )
    .unwrap();
    nix_mkfifo(&root.join("fifo"));
    if is_root() {
        std::os::unix::fs::chown(root.join("private"), Some(12345), Some(54321)).unwrap();
    }
    set_mtime(&root.join("sub/random.bin"), 981_173_106, 123_456_789);
    set_mtime(&root.join("plain.txt"), 1_600_000_000, 1);
}

fn nix_mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Everything `ls -l`, `stat`, `getfattr` and `du` would show, per relative path.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    p: &Path,
    out: &mut BTreeMap<PathBuf, String>,
    inodes: &mut BTreeMap<u64, PathBuf>,
) {
    let m = std::fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(root).unwrap().to_path_buf();
    let ft = m.file_type();
    let mut desc = format!(
        "mode={:o} uid={} gid={}",
        m.mode() & 0o7777,
        m.uid(),
        m.gid()
    );
    if !ft.is_symlink() {
        desc += &format!(" mtime={}.{:09}", m.mtime(), m.mtime_nsec());
    }
    if ft.is_file() {
        let data = std::fs::read(p).unwrap();
        desc += &format!(
            " size={} blake3={} blocks={}",
            data.len(),
            blake3::hash(&data),
            m.blocks()
        );
        if m.nlink() > 1 {
            let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
            desc += &format!(" linkgroup={}", first.display());
        }
        let mut xs: Vec<_> = xattr::list(p).unwrap().collect();
        xs.sort();
        for x in xs {
            desc += &format!(
                " x:{}={:?}",
                x.to_string_lossy(),
                xattr::get(p, &x).unwrap()
            );
        }
    } else if ft.is_symlink() {
        desc += &format!(" -> {}", std::fs::read_link(p).unwrap().display());
    } else if ft.is_fifo() {
        desc += " fifo";
    }
    out.insert(rel, desc);
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for c in names {
            walk(root, &c, out, inodes);
        }
    }
}

fn init(dir: &Path) -> PathBuf {
    let s = dir.join("store");
    ok(vt(&s).arg("init"));
    s
}

#[test]
fn pack_unpack_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let src = dir.path().join("tree");
    make_tree(&src);
    let before = snapshot(&src);
    ok(vt(&store).arg("pack").arg(&src));
    assert!(!src.exists(), "pack removes the source");
    let archive = dir.path().join("tree.vt");
    assert_eq!(Archive::new(&archive).entries().unwrap().len(), 1);
    ok(vt(&store).arg("unpack").arg(&archive));
    let after = snapshot(&src);
    // Holes stay holes: the sparse file uses far fewer blocks than its 12 MiB.
    let sparse = &after[Path::new("sparse.img")];
    let blocks: u64 = sparse
        .split("blocks=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        blocks * 512 < 1 << 20,
        "sparse file lost its holes: {sparse}"
    );
    assert_eq!(before, after);
    let err = fails(vt(&store).arg("unpack").arg(&archive));
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn ls_log_cat_inside_trees() {
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let src = dir.path().join("t");
    make_tree(&src);
    ok(vt(&store).arg("pack").arg("--keep").arg(&src));
    std::fs::write(src.join("plain.txt"), b"second revision\n").unwrap();
    ok(vt(&store).arg("pack").arg("--keep").arg(&src));
    let archive = dir.path().join("t.vt");
    let a = archive.to_str().unwrap();
    let log = stdout(&ok(vt(&store).arg("log").arg(&archive)));
    assert_eq!(log.lines().count(), 2, "{log}");
    let ls = stdout(&ok(vt(&store).args(["ls", "-R", a])));
    assert!(ls.contains("sub/deeper/empty-file"), "{ls}");
    assert!(ls.contains("link -> plain.txt"), "{ls}");
    let cat = ok(vt(&store).args(["cat", &format!("{a}:plain.txt")]));
    assert_eq!(cat.stdout, b"second revision\n");
    let target = dir.path().join("old");
    ok(vt(&store)
        .arg("unpack")
        .args(["--rev", "1"])
        .arg(&archive)
        .arg(&target));
    assert_eq!(
        std::fs::read(target.join("plain.txt")).unwrap(),
        b"hello world\n"
    );
    let err = fails(
        vt(&store)
            .arg("unpack")
            .args(["--rev", "3"])
            .arg(&archive)
            .arg(dir.path().join("x")),
    );
    assert!(err.contains("no revision 3"), "{err}");
}

#[test]
fn repack_of_unchanged_tree_reads_only_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let src = dir.path().join("t");
    make_tree(&src);
    std::fs::remove_file(src.join("fifo")).unwrap();
    let first = stdout(&ok(vt(&store)
        .arg("-v")
        .args(["save", "-a"])
        .arg(dir.path().join("t.vt"))
        .arg(&src)));
    let out = vt(&store)
        .arg("-v")
        .args(["save", "-a"])
        .arg(dir.path().join("t.vt"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let files: Vec<u64> = err
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // "N files (M from the files cache)": every regular file came from the cache.
    assert!(err.contains("from the files cache"), "{err}");
    // Regular files with distinct inodes are what gets stored (hard links once).
    let mut inodes = std::collections::HashSet::new();
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let m = std::fs::symlink_metadata(e.as_ref().unwrap().path()).unwrap();
            if m.is_dir() {
                stack.push(e.unwrap().path());
            } else if m.is_file() {
                inodes.insert(m.ino());
            }
        }
    }
    assert!(files.len() >= 2, "{err}");
    assert_eq!(
        files[1],
        inodes.len() as u64,
        "every stored file came from the cache: {err}"
    );
    assert_eq!(
        stdout(&out).lines().last(),
        first.lines().last(),
        "same tree, same root"
    );
    // A changed file is re-read.
    std::fs::write(src.join("plain.txt"), b"changed").unwrap();
    let third = stdout(&ok(vt(&store).args(["save"]).arg(&src)));
    assert_ne!(third, first);
}

/// Writes a hostile root dirent into an archive and checks unpack refuses it without
/// touching anything outside the target.
fn assert_refused(entries: Vec<Dirent>, raw_extra: Option<Vec<u8>>, expect: &str) {
    assert_refused_with(entries, raw_extra, expect, &[]);
}

fn assert_refused_with(
    entries: Vec<Dirent>,
    raw_extra: Option<Vec<u8>>,
    expect: &str,
    flags: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = DataDir::create(&store_dir, DataDirOptions::default()).unwrap();
    let mut content = Vec::new();
    for e in &entries {
        e.encode_into(&mut content);
    }
    if let Some(raw) = raw_extra {
        content.extend_from_slice(&raw);
    }
    let h = store.add(&content).unwrap();
    store.flush().unwrap();
    drop(store);
    let root = Dirent::dir(
        b"evil",
        BlockRef::Hash {
            hash: h,
            span: content.len() as u64,
        },
    );
    let archive = dir.path().join("evil.vt");
    Archive::new(&archive)
        .append(&ArchiveEntry {
            when: 1.0,
            transcription: root.transcribe(),
            name: None,
        })
        .unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = dir.path().join("jail/target");
    std::fs::create_dir(dir.path().join("jail")).unwrap();
    let err = fails(
        vt(&store_dir)
            .arg("unpack")
            .args(flags)
            .arg(&archive)
            .arg(&target),
    );
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside"
    );
    let jail: Vec<_> = std::fs::read_dir(dir.path().join("jail"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(jail.iter().all(|n| n == "target"), "{jail:?}");
}

fn raw_file_entry(name: &[u8]) -> Vec<u8> {
    // type FILE, flags HASNAME, name, block LB{x}
    let mut v = vec![0u8, 0x02];
    vt_engine::codec::put_bsdata(&mut v, name);
    BlockRef::literal(b"x").encode_into(&mut v);
    v
}

#[test]
fn hostile_names_are_refused() {
    for (name, why) in [
        (&b"../outside/pwned"[..], "contains '/'"),
        (b"a/b", "contains '/'"),
        (b"..", "reserved"),
        (b".", "reserved"),
        (b"nul\0byte", "NUL"),
    ] {
        assert_refused(vec![], Some(raw_file_entry(name)), why);
    }
}

#[test]
fn hostile_links_are_refused() {
    let strict = ["--refuse-outside-symlinks"];
    let esc = || vec![Dirent::symlink(b"esc", b"../../outside")];
    assert_refused_with(esc(), None, "leads outside", &strict);
    let abs = vec![Dirent::symlink(b"abs", b"/etc/passwd")];
    assert_refused_with(abs, None, "leads outside", &strict);
    // Without the flag such a symlink is restored verbatim, but nothing can be written
    // through it: an entry of the same name (here a directory) is refused.
    let mut through = Vec::new();
    Dirent::dir(b"esc", BlockRef::empty()).encode_into(&mut through);
    assert_refused(esc(), Some(through), "esc");
    let link = vec![Dirent::indirect(b"h", uuid::Uuid::new_v4())];
    assert_refused(link, None, "hard link to a file not in this tree");
    // The same name twice (a symlink then a file through it) is refused.
    let mut dup = raw_file_entry(b"a");
    dup.extend_from_slice(&raw_file_entry(b"a"));
    assert_refused(vec![Dirent::symlink(b"a", b"x")], Some(dup), "");
}

#[test]
fn csvt_fixture_store_restores_byte_identically() {
    let fx = vt_tests::csvt_fixtures().join("datadir");
    let dir = tempfile::tempdir().unwrap();
    // Open the Python store directly (read-only), from a copy: fixtures stay pristine.
    let legacy = dir.path().join("legacy");
    copy_dir(&fx.join("store"), &legacy);
    let archive = dir.path().join("tree.vt");
    std::fs::copy(fx.join("tree.vt"), &archive).unwrap();
    for (rev, sums) in [("1", "tree.sha256sums"), ("2", "tree-rev2.sha256sums")] {
        let target = dir.path().join(format!("direct{rev}"));
        ok(vt(&legacy)
            .args(["unpack", "--rev", rev])
            .arg(&archive)
            .arg(&target));
        check_sums(&target, &fx.join(sums));
    }
    // And through `vt import` into a new store.
    let store = init(dir.path());
    ok(vt(&store).arg("import").arg(&legacy));
    let target = dir.path().join("imported");
    ok(vt(&store).arg("unpack").arg(&archive).arg(&target));
    check_sums(&target, &fx.join("tree-rev2.sha256sums"));
    assert_eq!(
        std::fs::read_link(target.join("sub/uplink")).unwrap(),
        Path::new("../big.txt")
    );
    let m = std::fs::metadata(target.join("random.bin")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
}

fn check_sums(root: &Path, sums: &Path) {
    use sha2_like::sha256_hex;
    let text = std::fs::read_to_string(sums).unwrap();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (sum, rel) = line.split_once("  ").unwrap();
        let data = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(sha256_hex(&data), sum, "{rel}");
        n += 1;
    }
    assert!(n >= 5);
}

/// SHA-256 through the engine's hash module (no extra dependency).
mod sha2_like {
    pub fn sha256_hex(d: &[u8]) -> String {
        vt_engine::HashAlg::Sha256.hash(d).hex()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), &p).unwrap();
            let mut perm = std::fs::metadata(&p).unwrap().permissions();
            perm.set_mode(0o644);
            std::fs::set_permissions(&p, perm).unwrap();
        }
    }
}

#[test]
fn killed_pack_never_loses_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let src = dir.path().join("t");
    make_tree(&src);
    std::fs::remove_file(src.join("fifo")).unwrap();
    for i in 0..40 {
        std::fs::write(
            src.join(format!("sub/f{i}")),
            vec![i as u8 + 1; 200_000 + i * 1000],
        )
        .unwrap();
    }
    let before = snapshot(&src);
    let archive = dir.path().join("t.vt");
    let restored = dir.path().join("restored");
    for delay_ms in [0u64, 5, 20, 40, 80, 120, 200, 400] {
        let mut child = vt(&store).arg("pack").arg(&src).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        if src.exists() {
            // Not removed: must be intact (the removal itself may have been cut short
            // only after the revision was durable, which the next branch checks).
            if snapshot(&src) == before {
                continue;
            }
        }
        // The source is (partly) gone: its revision must be durable and complete.
        let entries = Archive::new(&archive).entries().unwrap();
        assert!(
            !entries.is_empty(),
            "source gone at {delay_ms} ms with no revision"
        );
        ok(vt(&store).arg("unpack").arg(&archive).arg(&restored));
        assert_eq!(
            snapshot(&restored),
            before,
            "restored revision differs at {delay_ms} ms"
        );
        // A kill during the final removal leaves part of the source: replace it.
        if src.exists() {
            std::fs::remove_dir_all(&src).unwrap();
        }
        std::fs::rename(&restored, &src).unwrap();
        // Back to the original tree (mtimes kept by restore) for the next round.
        assert_eq!(snapshot(&src), before);
    }
    ok(vt(&store).arg("verify"));
}

/// The kernel's UAPI headers (`/usr/include/linux`, from linux-libc-dev, which the C
/// toolchain installs) are a real kernel-headers tree: saved, restored and compared
/// entry by entry (content, modes, mtimes to the nanosecond, owners, symlinks).
#[test]
fn kernel_headers_tree_round_trips() {
    let headers = Path::new("/usr/include/linux");
    assert!(
        headers.join("fs.h").is_file(),
        "{} is missing: install linux-libc-dev (.ci/run does)",
        headers.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let archive = dir.path().join("linux.vt");
    ok(vt(&store).arg("save").arg(headers).arg("-a").arg(&archive));
    let target = dir.path().join("restored");
    ok(vt(&store).arg("unpack").arg(&archive).arg(&target));
    let before = snapshot(headers);
    assert!(before.len() > 100, "only {} entries", before.len());
    assert_eq!(before, snapshot(&target));
    let ls = stdout(&ok(vt(&store).args([
        "ls",
        "-R",
        archive.to_str().unwrap(),
    ])));
    assert!(ls.contains("fs.h"), "{ls}");
    ok(vt(&store).arg("verify"));
}
