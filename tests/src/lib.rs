//! Shared helpers for vt's end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The directory of the cs.vt compatibility fixtures.
pub fn csvt_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/csvt")
}

/// The target profile directory of the running test binary (`target/<profile>`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of the `vt` binary, built (once per test process) with the test's profile so
/// it is never stale.
pub fn vt_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = target_profile_dir();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "vt-cli", "--bin", "vt"]);
        if release {
            cmd.arg("--release");
        }
        let st = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(st.success(), "cargo build -p vt-cli failed");
        dir.join("vt")
    })
    .clone()
}

/// A `vt` command using `store` as its store, with a clean environment.
pub fn vt(store: &Path) -> Command {
    let mut c = Command::new(vt_bin());
    c.env_remove("VT_STORE").arg("-S").arg(store).arg("-q");
    c
}

/// Runs a command and returns its output, panicking with stderr when it fails.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Runs a command expected to fail; returns its stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        !out.status.success(),
        "{:?} unexpectedly succeeded: {}",
        cmd,
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Standard output as a trimmed string.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `len` incompressible bytes from `seed` (xorshift64): the same seed gives the same bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Flips one byte of the file at `path` (XOR 0x5a), in place: simulated corruption.
pub fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], offset).unwrap();
}

/// The first segment file of the DataDir store at `store` (the only one in small tests).
pub fn first_segment(store: &Path) -> PathBuf {
    std::fs::read_dir(store.join("data"))
        .unwrap()
        .next()
        .expect("a segment")
        .unwrap()
        .path()
}

/// Whether something is mounted exactly at `p` (per /proc/mounts).
pub fn is_mounted(p: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let p = p.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&p))
}

/// A running `vt mount` process serving `dir`. [`Mounted::stop`] unmounts it with
/// SIGTERM and checks a clean exit; if a test fails first, the drop guard unmounts
/// lazily and reaps the process.
#[derive(Debug)]
pub struct Mounted {
    child: Option<std::process::Child>,
    dir: PathBuf,
}

impl Mounted {
    /// Spawns `cmd` (a `vt ... mount ...` command serving `dir`) and waits until the
    /// mount appears (up to 30 s).
    pub fn spawn(cmd: &mut Command, dir: &Path) -> Mounted {
        let child = cmd
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn vt mount");
        let m = Mounted {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let t = std::time::Instant::now();
        while !is_mounted(dir) {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(30),
                "mount did not appear"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        m
    }

    /// The mount process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM: the mount records a final revision, unmounts and exits 0.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        ok(Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string()));
        let status = child.wait().unwrap();
        assert!(status.success(), "vt mount exited with {status}");
        assert!(!is_mounted(&self.dir));
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.dir)
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
