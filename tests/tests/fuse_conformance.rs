//! Conformance of `vt mount` under two standard filesystem test suites, run
//! through a real FUSE mount of a fresh archive:
//!
//! - `pjdfstest` (POSIX semantics: errno values, permissions as root and as
//!   other users, times, links, renames); the test asserts a pass-count floor
//!   and no failures.
//! - `fsx` (random reads, writes, mmap, truncates, fsyncs, closes and
//!   reopens, checked against a model of the file's content).
//!
//! Both come from crates.io at the versions below; `.ci/run` installs them and
//! adds the `tests` user that pjdfstest switches to. A missing tool fails the
//! test with the command that installs it. Runs as root, like the CI.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use vt_tests::{ok, vt, vt_bin, Mounted};

const PJDFSTEST: (&str, &str) = ("pjdfstest", "0.2.2");
const FSX: (&str, &str) = ("fsx", "0.3.2");

/// pjdfstest tests that pass on a `vt mount`. Of 398 tests, the others are
/// skipped because they do not apply: 13 `erofs` tests remount the filesystem
/// read-only with `mount -o remount,ro`, which for a FUSE mount runs the
/// `mount.fuse` helper (it cannot restart `vt mount`), and `link_count_max`
/// needs a LINK_MAX that FUSE does not report.
const PJDFSTEST_PASS_FLOOR: u64 = 384;

/// fsx operations per run. 100,000 operations also pass (see docs/fuse.md) but
/// take several minutes through FUSE on a 2-core machine.
const FSX_OPS: u64 = 10_000;

/// fsx settings: beyond its defaults (pread/pwrite, mmap reads and writes,
/// truncates), files up to 4 MiB (several chunks) and the operations that make
/// the mount commit and re-read content: close and reopen, fsync, fdatasync,
/// plus msync invalidation, sendfile, copy_file_range, fadvise, fallocate and
/// hole punching.
const FSX_CONFIG: &str = "flen = 4194304
[weights]
close_open = 2
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 2
fsync = 2
fdatasync = 1
sendfile = 1
copy_file_range = 1
posix_fadvise = 1
posix_fallocate = 1
punch_hole = 1
";

/// Finds `tool` on PATH or in cargo's bin directory and checks its version.
fn tool((name, version): (&str, &str)) -> PathBuf {
    let install = format!("cargo install --locked {name}@{version} (.ci/run does this)");
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(h).join("bin"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cargo/bin"));
    }
    let Some(bin) = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()) else {
        panic!("{name} not found: install it with {install}");
    };
    let out = ok(Command::new(&bin).arg("--version"));
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got.split_whitespace().nth(1),
        Some(version),
        "{} is {got:?}, want {version}: install it with {install}",
        bin.display()
    );
    bin
}

/// A fresh store and archive mounted read-write; unmounted (and checked) by
/// [`Mount::stop`], or lazily by the drop guard when a test fails.
struct Mount {
    mounted: Mounted,
    tmp: tempfile::TempDir,
}

impl Mount {
    fn start() -> Mount {
        let tmp = tempfile::tempdir().unwrap();
        // pjdfstest works in the mount as other users too: they need to reach it.
        ok(Command::new("chmod").arg("755").arg(tmp.path()));
        let store = tmp.path().join("store");
        ok(vt(&store).arg("init"));
        let mnt = tmp.path().join("mnt");
        let mounted = Mounted::spawn(
            vt(&store)
                .arg("mount")
                .arg(tmp.path().join("a.vt"))
                .arg(&mnt),
            &mnt,
        );
        Mount { mounted, tmp }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("mnt")
    }

    /// Unmounts with SIGTERM, then checks the exit status and the store.
    fn stop(self) {
        self.mounted.stop();
        ok(Command::new(vt_bin())
            .arg("-q")
            .arg("-S")
            .arg(self.tmp.path().join("store"))
            .arg("verify"));
    }
}

/// `Summary: 0 failed, 14 skipped, 384 passed, ...` as (failed, skipped, passed).
fn pjd_summary(out: &str) -> Option<(u64, u64, u64)> {
    let line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Summary:"))?;
    let count = |what: &str| {
        line.split(',')
            .map(str::trim)
            .find_map(|p| p.strip_suffix(what)?.trim().parse().ok())
    };
    Some((count("failed")?, count("skipped")?, count("passed")?))
}

/// The names of the failed tests in pjdfstest's output.
fn pjd_failures(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.trim_end().ends_with("FAILED"))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[test]
fn pjdfstest_passes() {
    let bin = tool(PJDFSTEST);
    let nobody_group = ok(Command::new("id").args(["-gn", "nobody"]));
    let nobody_group = String::from_utf8_lossy(&nobody_group.stdout)
        .trim()
        .to_string();
    assert!(
        Command::new("id")
            .arg("tests")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success(),
        "pjdfstest needs a user `tests`: useradd -M -U tests (.ci/run does this)"
    );
    let m = Mount::start();
    // The features every Linux filesystem of this kind has; device files are
    // stored (as special entries), so their tests apply too.
    let config = m.tmp.path().join("pjd.toml");
    fs::write(
        &config,
        format!(
            "[features]\nposix_fallocate = {{}}\nrename_ctime = {{}}\nutime_now = {{}}\n\
             utimensat = {{}}\n[settings]\nnaptime = 0.05\nallow_remount = false\n\
             [dummy_auth]\nentries = [ [\"nobody\", \"{nobody_group}\"], [\"tests\", \"tests\"] ]\n"
        ),
    )
    .unwrap();
    // A directory on another filesystem, for the EXDEV tests.
    let other = m.tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    let out = Command::new(bin)
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(m.dir())
        .arg("-s")
        .arg(&other)
        .current_dir(m.dir())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run pjdfstest");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let Some((failed, skipped, passed)) = pjd_summary(&text) else {
        panic!("no Summary line in pjdfstest's output:\n{text}");
    };
    eprintln!("pjdfstest: {failed} failed, {skipped} skipped, {passed} passed");
    assert_eq!(
        failed,
        0,
        "pjdfstest failures: {:?}\n{text}",
        pjd_failures(&text)
    );
    assert!(
        passed >= PJDFSTEST_PASS_FLOOR,
        "pjdfstest passed {passed} < {PJDFSTEST_PASS_FLOOR}\n{text}"
    );
    m.stop();
}

#[test]
fn fsx_finds_no_corruption() {
    let bin = tool(FSX);
    let m = Mount::start();
    let artifacts = m.tmp.path().join("fsx");
    fs::create_dir(&artifacts).unwrap();
    let config = m.tmp.path().join("fsx.toml");
    fs::write(&config, FSX_CONFIG).unwrap();
    let out = Command::new(bin)
        .arg("-f")
        .arg(&config)
        .arg("-N")
        .arg(FSX_OPS.to_string())
        .arg("-S")
        .arg("42")
        .arg("-P")
        .arg(&artifacts)
        .arg(m.dir().join("testfile"))
        .output()
        .expect("run fsx");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("All operations completed A-OK!"),
        "fsx failed ({}):\n{}",
        out.status,
        text.lines().rev().take(60).collect::<Vec<_>>().join("\n")
    );
    m.stop();
}

#[test]
fn pjd_summary_parses() {
    let out = "x ok\nSummary: 2 failed, 14 skipped, 382 passed, 0 expected failures, 398 total\n";
    assert_eq!(pjd_summary(out), Some((2, 14, 382)));
    assert_eq!(pjd_summary("no summary"), None);
    let out = "a::b    FAILED\n\tpanic\nc::d   ok\n";
    assert_eq!(pjd_failures(out), vec!["a::b"]);
}
