//! The background compaction scheduler: a thread that periodically records a clock
//! checkpoint, plans a GC, and executes it when dead space passes a threshold — throttled,
//! pausing while the writer is busy, and stopping promptly when the scheduler is stopped
//! or dropped (an interrupted run leaves a valid store).

use super::{GcOptions, GcReport};
use crate::store::datadir::DataDir;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Time between checks.
    pub interval: Duration,
    /// Run when dead bytes reach this share of all segment bytes.
    pub dead_fraction: f64,
    /// Copy rate cap in bytes per second.
    pub rate_limit: u64,
    /// The GC settings (threshold, grace); `dry_run` is ignored.
    pub gc: GcOptions,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            interval: Duration::from_secs(600),
            dead_fraction: 0.2,
            rate_limit: 50 << 20,
            gc: GcOptions::default(),
        }
    }
}

/// The outcome of one scheduled run.
pub type RunOutcome = std::result::Result<GcReport, String>;

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Set by [`Scheduler::run_now`]; the condvar wakes the thread.
    wake: Mutex<bool>,
    cv: Condvar,
    runs: Mutex<Vec<RunOutcome>>,
}

/// A running scheduler; stopping or dropping it stops the thread (interrupting a run).
#[derive(Debug)]
pub struct Scheduler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts the thread on `store` (a writable handle).
    pub fn start(store: Arc<DataDir>, cfg: SchedulerConfig) -> Self {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vt-gc".into())
            .spawn(move || run_loop(&store, &cfg, &s))
            .ok();
        Scheduler { shared, thread }
    }

    /// Asks for a check now instead of at the end of the interval.
    pub fn run_now(&self) {
        *self.shared.wake.lock() = true;
        self.shared.cv.notify_all();
    }

    /// Outcomes of the runs so far, oldest first.
    pub fn runs(&self) -> Vec<RunOutcome> {
        self.shared.runs.lock().clone()
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run_loop(store: &DataDir, cfg: &SchedulerConfig, s: &Shared) {
    let opts = GcOptions {
        dry_run: false,
        rate_limit: Some(cfg.rate_limit),
        min_dead_fraction: cfg.dead_fraction,
        yield_to_writers: true,
        ..cfg.gc.clone()
    };
    loop {
        {
            let mut woken = s.wake.lock();
            if !*woken && !s.stop.load(Ordering::Acquire) {
                s.cv.wait_for(&mut woken, cfg.interval);
            }
            *woken = false;
        }
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        let outcome = super::run(store, &opts, Some(&s.stop)).map_err(|e| e.to_string());
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        s.runs.lock().push(outcome);
    }
}
