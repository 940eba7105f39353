//! Black-box tests of `vt init/save/cat/info/verify/dump/reindex` on a DataDir store.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use vt_tests::first_segment;
use vt_tests::{fails, ok, stdout, vt};

fn init(dir: &Path) -> std::path::PathBuf {
    let s = dir.join("store");
    ok(vt(&s).arg("init"));
    s
}

/// Streams `vt cat REF` and returns the BLAKE3 of what it printed and its length.
fn cat_digest(store: &Path, reference: &str) -> (blake3::Hash, u64) {
    let mut child = vt(store)
        .args(["cat", reference])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = out.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    assert!(child.wait().unwrap().success());
    (h.finalize(), n)
}

fn file_digest(p: &Path) -> (blake3::Hash, u64) {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p).unwrap()).unwrap();
    (h.finalize(), std::fs::metadata(p).unwrap().len())
}

/// A deterministic pseudo-random stream (xorshift), fast enough for a GiB.
fn write_random(p: &Path, len: u64, seed: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(p).unwrap());
    let mut x = seed | 1;
    let mut left = len;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let k = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..k]).unwrap();
        left -= k as u64;
    }
    f.flush().unwrap();
}

fn text(len: usize) -> Vec<u8> {
    let words = [
        "alpha ", "beta ", "gamma\n", "delta ", "epsilon ", "zeta\n", "eta ",
    ];
    let mut v = Vec::with_capacity(len + 16);
    let mut i = 7usize;
    while v.len() < len {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.extend_from_slice(words[(i >> 33) % words.len()].as_bytes());
    }
    v.truncate(len);
    v
}

#[test]
fn save_cat_roundtrips_small_and_odd_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one", vec![b'x']),
        ("thirty-three", (0..33u8).collect()),
        ("zeros", vec![0u8; 3 << 20]),
        ("text", text(2 << 20)),
    ];
    for (name, data) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, &data).unwrap();
        let r = stdout(&ok(vt(&store).arg("save").arg(&p)));
        let out = ok(vt(&store).args(["cat", &r]));
        assert_eq!(out.stdout, data, "{name}: {r}");
    }
    let p = dir.path().join("random");
    write_random(&p, 5 << 20, 42);
    let r = stdout(&ok(vt(&store).arg("save").arg(&p)));
    assert_eq!(cat_digest(&store, &r), file_digest(&p));
}

#[test]
fn save_from_stdin_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let data = text(1 << 20);
    let save = |data: &[u8]| {
        let mut c = vt(&store)
            .args(["save", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(data).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let r1 = save(&data);
    let seg_bytes = || -> u64 {
        std::fs::read_dir(store.join("data"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = seg_bytes();
    let r2 = save(&data);
    assert_eq!(r1, r2);
    assert_eq!(
        seg_bytes(),
        before,
        "saving the same data again must write nothing"
    );
}

#[test]
fn save_cat_one_gib() {
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let p = dir.path().join("big");
    write_random(&p, 1 << 30, 7);
    let r = stdout(&ok(vt(&store).arg("save").arg(&p)));
    assert!(r.starts_with("I{"), "{r}");
    assert_eq!(cat_digest(&store, &r), file_digest(&p));
    let info = stdout(&ok(vt(&store).arg("info")));
    // Incompressible data: the segments hold at least the file (plus indirect blocks).
    let stored: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("stored bytes:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("stored bytes line");
    assert!(stored >= 1 << 30, "{info}");
}

#[test]
fn info_verify_dump_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let p = dir.path().join("t");
    std::fs::write(&p, text(300_000)).unwrap();
    let r = stdout(&ok(vt(&store).arg("save").arg(&p)));
    let v = ok(vt(&store).arg("fsck"));
    assert!(v.status.success());
    let seg = first_segment(&store);
    let dump = stdout(&ok(vt(&store).arg("dump").arg(&seg)));
    let records = dump.lines().filter(|l| !l.starts_with('#')).count();
    assert!(records >= 2, "{dump}");
    assert!(dump.contains("Zstd"), "text should compress: {dump}");
    ok(vt(&store).arg("reindex"));
    let out = ok(vt(&store).args(["cat", &r]));
    assert_eq!(out.stdout, std::fs::read(&p).unwrap());
}

#[test]
fn corrupt_segment_fails_verify_and_cat() {
    let dir = tempfile::tempdir().unwrap();
    let store = init(dir.path());
    let p = dir.path().join("r");
    write_random(&p, 400_000, 3);
    let r = stdout(&ok(vt(&store).arg("save").arg(&p)));
    let seg = first_segment(&store);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let out = vt(&store).arg("verify").output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(text.contains("CORRUPT") && text.contains(&name), "{text}");
    let err = fails(vt(&store).args(["cat", &r]));
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = fails(vt(&missing).args(["save", "/etc/hostname"]));
    assert!(err.contains("no store at"), "{err}");
    let store = init(dir.path());
    let err = fails(vt(&store).args(["cat", "B{garbage"]));
    assert!(
        err.starts_with("vt: error:") && err.lines().count() == 1,
        "{err}"
    );
    let err = fails(vt(&store).args(["save", "/definitely/not/here"]));
    assert!(err.contains("/definitely/not/here"), "{err}");
    let err = fails(vt(&store).arg("init"));
    assert!(err.contains("already exists"), "{err}");
}
