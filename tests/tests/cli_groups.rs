//! `vt pack` of small files writes group records; `vt dump` lists their members, and
//! verify, reindex and unpack handle them. (A file of its own: it spawns processes, which
//! would hold inherited lock descriptors of in-process stores in other tests.)

use vt_engine::HashAlg;
use vt_tests::first_segment;
use vt_tests::{ok, stdout, vt};

fn block(i: u64) -> Vec<u8> {
    format!("header file {i}: #define X_{i} {i}\n")
        .repeat(1 + (i as usize * 37) % 90)
        .into_bytes()
}

#[test]
fn cli_pack_of_small_files_writes_groups_that_dump_verify_and_unpack_show() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(vt(&store).arg("init"));
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..60 {
        std::fs::write(tree.join(format!("f{i}.h")), block(i)).unwrap();
    }
    ok(vt(&store).arg("pack").arg("--keep").arg(&tree));
    let seg = first_segment(&store);
    let dump = stdout(&ok(vt(&store).arg("dump").arg("--verify").arg(&seg)));
    assert!(dump.contains("group of "), "{dump}");
    // Member lines: tab, #number, hashcode, length, share.
    let members: Vec<&str> = dump.lines().filter(|l| l.starts_with("\t#")).collect();
    assert!(members.len() >= 60, "{dump}");
    assert!(
        members
            .iter()
            .any(|l| l.contains(&HashAlg::Blake3.hash(&block(5)).to_string())),
        "{dump}"
    );
    ok(vt(&store).arg("verify"));
    ok(vt(&store).arg("reindex"));
    let out = dir.path().join("out");
    let archive = dir.path().join("tree.vt");
    ok(vt(&store).arg("unpack").arg(&archive).arg(&out));
    for i in 0..60 {
        assert_eq!(
            std::fs::read(out.join(format!("f{i}.h"))).unwrap(),
            block(i)
        );
    }
}
