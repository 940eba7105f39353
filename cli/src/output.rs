//! Terminal output: one-line errors, progress bars shown only on a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Prints an error as one clear line on standard error.
pub fn error_line(e: &anyhow::Error) {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    eprintln!("vt: error: {}", msg.replace('\n', " "));
}

/// A byte-progress bar on standard error, hidden unless it is a terminal and not quiet.
pub fn byte_progress(quiet: bool, total: Option<u64>, what: &str) -> ProgressBar {
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    if quiet || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
        return pb;
    }
    let tmpl = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
    } else {
        "{msg} {spinner} {bytes} {binary_bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(tmpl) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Formats a byte count for humans.
pub fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// True when the error comes from writing to a closed pipe (e.g. `vt dump | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Draws a tree operation's progress from its counters until dropped.
pub struct TreeProgressBar {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TreeProgressBar {
    /// Starts drawing (only on a terminal and when not quiet).
    pub fn start(
        quiet: bool,
        progress: std::sync::Arc<vt_engine::tree::Progress>,
        label: &'static str,
    ) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        if quiet || !std::io::stderr().is_terminal() {
            return TreeProgressBar { stop, thread: None };
        }
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let pb = ProgressBar::new(0);
            let tmpl = "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}";
            if let Ok(style) = ProgressStyle::with_template(tmpl) {
                pb.set_style(style.progress_chars("=> "));
            }
            use vt_engine::tree::Progress as P;
            while !flag.load(Ordering::Relaxed) {
                pb.set_length(P::get(&progress.bytes_total).max(P::get(&progress.bytes_done)));
                pb.set_position(P::get(&progress.bytes_done));
                pb.set_message(format!(
                    "{label}: {} files, {} dirs",
                    P::get(&progress.files),
                    P::get(&progress.dirs)
                ));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            pb.finish_and_clear();
        });
        TreeProgressBar {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TreeProgressBar {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Prints the warnings a tree operation collected.
pub fn print_warnings(progress: &vt_engine::tree::Progress) {
    for w in progress.take_warnings() {
        eprintln!("vt: warning: {w}");
    }
}
