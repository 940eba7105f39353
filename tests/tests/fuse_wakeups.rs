//! `vt mount` holds a CPU latency request of 0 µs while requests come, and drops it
//! once they stop (cli/src/wakelat.rs). The test reads the kernel's aggregate request
//! from /dev/cpu_dma_latency, so it is the only test in its binary: cargo runs test
//! binaries one at a time, and no other mount is busy meanwhile.
//!
//! Needs root, /dev/fuse and fusermount3, like the CI.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vt_tests::{ok, vt, Mounted};

const DEVICE: &str = "/dev/cpu_dma_latency";
/// The kernel's value when nobody asks for anything (`PM_QOS_CPU_LATENCY_DEFAULT_VALUE`).
const NO_REQUEST: i32 = 2_000_000_000;

/// The lowest latency anyone asks for now, in µs.
fn requested() -> i32 {
    let mut b = [0u8; 4];
    fs::File::open(DEVICE)
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap_or_else(|e| panic!("read {DEVICE}: {e} (the test needs root)"));
    i32::from_ne_bytes(b)
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Lists `dir` over and over on another thread (each listing is a request to the
/// mount: directories are not cached by the kernel) until the guard is dropped.
struct Busy {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Busy {
    fn start(dir: &Path) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let dir = dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                assert_eq!(fs::read_dir(&dir).unwrap().count(), 20);
                n += 1;
            }
            n
        });
        Busy {
            stop,
            thread: Some(thread),
        }
    }
    /// Stops listing; returns how many listings were made.
    fn end(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_busy_mount_holds_fast_wakeups_and_drops_them_when_idle() {
    wait_for(
        "no CPU latency request is held (another program holds one?)",
        || requested() == NO_REQUEST,
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(vt(&store).arg("init"));
    let mnt = tmp.path().join("mnt");
    let mount = |extra: &[&str]| {
        Mounted::spawn(
            vt(&store)
                .arg("mount")
                .arg(tmp.path().join("a.vt"))
                .arg(&mnt)
                .args(["--sync-interval", "0"])
                .args(extra),
            &mnt,
        )
    };

    let m = mount(&["--low-latency-ms", "50"]);
    for i in 0..20 {
        fs::write(mnt.join(format!("f{i}")), b"x").unwrap();
    }
    wait_for("the mount drops the request after the writes", || {
        requested() == NO_REQUEST
    });
    let busy = Busy::start(&mnt);
    wait_for("the busy mount holds a 0 µs request", || requested() == 0);
    assert!(busy.end() > 0);
    wait_for("the idle mount drops the request", || {
        requested() == NO_REQUEST
    });
    m.stop();

    // Turned off: the same load never asks for anything.
    let m = mount(&["--low-latency-ms", "0"]);
    let busy = Busy::start(&mnt);
    let start = Instant::now();
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(1) {
        assert_eq!(requested(), NO_REQUEST, "a request with --low-latency-ms 0");
        samples += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(busy.end() > 0 && samples > 0);
    m.stop();
}
