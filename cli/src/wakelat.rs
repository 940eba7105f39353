//! Fast wakeups while the mount is busy: a CPU latency request (PM QoS,
//! `/dev/cpu_dma_latency`) held at 0 µs while FUSE requests keep arriving, and
//! dropped soon after the last one.
//!
//! Why: every FUSE request is a round trip between two processes that sleep in
//! between: the caller waits for the reply, the mount waits for the next request.
//! When a CPU idles it may halt (on a virtual machine, leave the guest), and waking
//! it costs tens of microseconds, twice per request. A listing of a large tree is
//! thousands of such round trips. With the latency request at 0, idle CPUs poll
//! instead of halting, so a wakeup costs about a microsecond. Polling burns the idle
//! time of the CPUs, so the request is held only while requests come, and released
//! [`WakeLatency::hold`] after the last one; an idle mount costs nothing.
//!
//! The device needs root; without it the mount runs as before.

use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kernel's interface to CPU latency requests.
pub const DEVICE: &str = "/dev/cpu_dma_latency";

/// The value that asks for idle CPUs that wake at once.
const NOW: i32 = 0;
/// The value that withdraws the request (`PM_QOS_DEFAULT_VALUE`).
const RELEASE: i32 = -1;

/// Holds a CPU latency request while requests arrive (see the module docs).
/// Dropping it releases the request and stops its thread.
pub struct WakeLatency {
    inner: Arc<Inner>,
}

struct Inner {
    /// The request: each 4-byte write sets its value; closing the file drops it.
    sink: Mutex<Sink>,
    wake: Condvar,
    /// Whether the request is at [`NOW`]: read without the lock on every touch,
    /// changed only with `sink` locked.
    held: AtomicBool,
    /// When the last request came, in microseconds since `epoch`.
    last: AtomicU64,
    epoch: Instant,
    hold: Duration,
}

struct Sink {
    out: Box<dyn Write + Send>,
    closed: bool,
    /// The first write error, after which the request is left alone.
    failed: bool,
}

impl WakeLatency {
    /// Opens the kernel's latency device; `None` when it cannot (not root, no such
    /// device), in which case the mount just runs without it.
    pub fn open(hold: Duration) -> Option<WakeLatency> {
        let file = File::options().write(true).open(DEVICE).ok()?;
        WakeLatency::with_sink(Box::new(file), hold)
    }

    /// Holds requests written to `out` (the device, or any file in tests): each
    /// change of the request is one native-endian `i32` write. `None` when its
    /// thread cannot be started.
    pub fn with_sink(out: Box<dyn Write + Send>, hold: Duration) -> Option<WakeLatency> {
        let inner = Arc::new(Inner {
            sink: Mutex::new(Sink {
                out,
                closed: false,
                failed: false,
            }),
            wake: Condvar::new(),
            held: AtomicBool::new(false),
            last: AtomicU64::new(0),
            epoch: Instant::now(),
            hold,
        });
        let releaser = inner.clone();
        std::thread::Builder::new()
            .name("vt-wakelat".into())
            .spawn(move || releaser.release_when_idle())
            .ok()?;
        Some(WakeLatency { inner })
    }

    /// A request arrived: hold the latency request (a store and a load when it is
    /// already held).
    pub fn touch(&self) {
        let inner = &*self.inner;
        inner.last.store(inner.now_us(), Ordering::Relaxed);
        if inner.held.load(Ordering::Relaxed) {
            return;
        }
        let mut sink = inner.sink.lock();
        if inner.held.load(Ordering::Relaxed) || sink.closed || sink.failed {
            return;
        }
        if inner.set(&mut sink, true) {
            inner.wake.notify_one();
        }
    }

    /// Whether the request is held now.
    #[cfg(test)]
    fn is_held(&self) -> bool {
        self.inner.held.load(Ordering::Relaxed)
    }
}

impl Drop for WakeLatency {
    fn drop(&mut self) {
        let inner = &*self.inner;
        let mut sink = inner.sink.lock();
        sink.closed = true;
        if inner.held.load(Ordering::Relaxed) {
            inner.set(&mut sink, false);
        }
        inner.wake.notify_one();
    }
}

impl Inner {
    /// Takes (`true`) or drops the request, with `sink` locked; returns whether it is
    /// held now. A failed write marks the sink failed, after which the request is left
    /// alone; dropping counts as done even then.
    fn set(&self, sink: &mut Sink, held: bool) -> bool {
        let value = if held { NOW } else { RELEASE };
        let ok = sink.out.write_all(&value.to_ne_bytes()).is_ok();
        sink.failed |= !ok;
        let now = held && ok;
        self.held.store(now, Ordering::Relaxed);
        now
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// The thread: sleeps until the request is held, then checks every `hold` and
    /// releases it once no request came for that long.
    fn release_when_idle(&self) {
        let mut sink = self.sink.lock();
        loop {
            while !self.held.load(Ordering::Relaxed) && !sink.closed {
                self.wake.wait(&mut sink);
            }
            if sink.closed {
                return;
            }
            self.wake.wait_for(&mut sink, self.hold);
            if sink.closed {
                return;
            }
            let idle = self
                .now_us()
                .saturating_sub(self.last.load(Ordering::Relaxed));
            if self.held.load(Ordering::Relaxed) && u128::from(idle) >= self.hold.as_micros() {
                self.set(&mut sink, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Read};

    /// What was written to the request, as values.
    fn values(path: &std::path::Path) -> Vec<i32> {
        let mut bytes = Vec::new();
        File::open(path).unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() % 4, 0, "writes are whole i32s");
        bytes
            .chunks(4)
            .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn held_while_touched_released_after_the_hold_and_held_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qos");
        let file = File::create(&path).unwrap();
        let lat = WakeLatency::with_sink(Box::new(file), Duration::from_millis(5)).unwrap();
        assert!(!lat.is_held());
        assert!(
            values(&path).is_empty(),
            "nothing is requested before a touch"
        );

        lat.touch();
        assert!(lat.is_held());
        for _ in 0..50 {
            lat.touch();
        }
        assert_eq!(values(&path), [NOW], "one request for a burst of touches");

        wait_until("released", || !lat.is_held());
        assert_eq!(values(&path), [NOW, RELEASE]);

        lat.touch();
        assert!(lat.is_held());
        assert_eq!(values(&path), [NOW, RELEASE, NOW]);
        drop(lat);
        assert_eq!(
            values(&path),
            [NOW, RELEASE, NOW, RELEASE],
            "dropping releases a held request"
        );
    }

    #[test]
    fn kept_while_touches_come_faster_than_the_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qos");
        let hold = Duration::from_millis(300);
        let lat = WakeLatency::with_sink(Box::new(File::create(&path).unwrap()), hold).unwrap();
        lat.touch();
        // Touches every 5 ms for seven holds. The request must stay held throughout,
        // which can only fail to hold if this thread was kept off the CPU for most of
        // a hold: then the run proves nothing and is not judged.
        let start = Instant::now();
        let mut last = Instant::now();
        let mut longest = Duration::ZERO;
        while start.elapsed() < hold * 7 {
            std::thread::sleep(Duration::from_millis(5));
            longest = longest.max(last.elapsed());
            last = Instant::now();
            lat.touch();
        }
        if longest < hold / 2 {
            assert_eq!(values(&path), [NOW], "released between touches");
            assert!(lat.is_held());
        } else {
            eprintln!("not judged: touches were {longest:?} apart");
        }
        drop(lat);
        assert_eq!(values(&path).last(), Some(&RELEASE));
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_device_leaves_the_mount_running_without_it() {
        let lat = WakeLatency::with_sink(Box::new(Broken), Duration::from_millis(1)).unwrap();
        for _ in 0..3 {
            lat.touch();
            assert!(!lat.is_held());
        }
    }
}
