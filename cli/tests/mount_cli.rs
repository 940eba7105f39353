//! `vt mount` argument handling (real mounts are tested in vt-tests, which needs
//! this package's binary: having an integration test here makes cargo build it).

use std::process::Command;

#[test]
fn mount_help_lists_the_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_vt"))
        .args(["mount", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in ["--read-only", "--all", "--sync-interval", "append_only"] {
        assert!(text.contains(opt), "{opt} missing from:\n{text}");
    }
}

#[test]
fn unknown_mount_option_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_vt"))
        .args([
            "-S",
            "memory",
            "mount",
            "-o",
            "bogus",
            "D{}",
            "/nonexistent-mnt",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}
