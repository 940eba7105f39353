//! Black-box test of `vt forget` + `vt compact`: the store shrinks to about the size of a
//! store that only ever held the last revision, and that revision still unpacks.

use std::path::Path;
use std::process::Command;
use vt_tests::{noise, ok, stdout, vt, vt_bin};

/// Revision `rev` of a 12-file tree: every revision changes a third of the files.
fn write_revision(root: &Path, rev: u64) {
    std::fs::create_dir_all(root).unwrap();
    for f in 0..12u64 {
        let gen = if f % 3 == rev % 3 { rev } else { 0 };
        std::fs::write(
            root.join(format!("f{f}")),
            noise(100 * f + gen, 30_000 + f as usize * 1_111),
        )
        .unwrap();
    }
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[test]
fn forget_then_compact_leaves_about_a_fresh_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, src) = (tmp.path().join("store"), tmp.path().join("tree"));
    ok(vt(&store).arg("init"));
    for rev in 1..=6 {
        write_revision(&src, rev);
        ok(vt(&store).arg("pack").arg("--keep").arg(&src));
    }
    let archive = tmp.path().join("tree.vt");
    ok(vt(&store)
        .arg("forget")
        .arg(&archive)
        .args(["--keep-last", "1"]));
    // Not quiet: the summary lines are checked.
    let out = ok(Command::new(vt_bin())
        .env_remove("VT_STORE")
        .arg("-S")
        .arg(&store)
        .args(["-v", "compact", "--grace", "0"]));
    let text = stdout(&out);
    assert!(text.contains("rewrite"), "{text}");
    assert!(text.contains("index file"), "{text}");
    ok(vt(&store).arg("verify"));

    let fresh = tmp.path().join("fresh");
    ok(vt(&fresh).arg("init"));
    ok(vt(&fresh)
        .arg("pack")
        .arg("--keep")
        .arg("-a")
        .arg(tmp.path().join("fresh.vt"))
        .arg(&src));
    let (got, want) = (dir_bytes(&store), dir_bytes(&fresh));
    assert!(
        got as f64 <= want as f64 * 1.10,
        "store {got} bytes after forget + compact, fresh store {want}"
    );

    let restored = tmp.path().join("restored");
    ok(vt(&store).arg("unpack").arg(&archive).arg(&restored));
    for f in 0..12 {
        let name = format!("f{f}");
        assert_eq!(
            std::fs::read(restored.join(&name)).unwrap(),
            std::fs::read(src.join(&name)).unwrap(),
            "{name}"
        );
    }
}
