//! `vt mount`: serve an archive's latest revision (read-write) or a Dir
//! transcription (read-only) through FUSE, recording new revisions in the archive.

use super::Context;
use crate::fuse::{FuseFs, SyncHook};
use crate::wakelat::{self, WakeLatency};
use anyhow::{bail, Context as _};
use nix::sys::signal::{SigSet, Signal};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vt_engine::archive::{Archive, ArchiveEntry};
use vt_engine::blockify::{blockify_bytes, BlockifyOptions};
use vt_engine::dir::{encode_entries, Dirent, DirentKind};
use vt_engine::fs::{Fs, FsMode, FsOptions};
use vt_engine::store::StoreSink;
use vt_engine::{tree, BlockRef, Store};

/// Arguments of `vt mount`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An archive file (`*.vt`; its latest revision, read-write; missing or empty
    /// means an empty directory) or a `D{...}` transcription (read-only).
    pub special: String,
    /// Where to mount; created if missing and removed afterwards. Default: the
    /// archive's path without `.vt`.
    pub mountpoint: Option<PathBuf>,
    /// Mount only this directory inside the tree.
    pub subpath: Option<String>,
    /// Read-only.
    #[arg(short = 'r', long = "read-only")]
    pub read_only: bool,
    /// Mount options, comma-separated: `append_only`, `ro`, `rw`.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Show every revision of the archive as a read-only directory named by its time.
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Seconds between syncs that record a new revision when the tree changed (0: only at unmount).
    #[arg(long, default_value_t = 60)]
    pub sync_interval: u64,
    /// While requests arrive, ask the kernel for idle CPUs that wake at once (a CPU
    /// latency request of 0 µs through /dev/cpu_dma_latency; needs root), until this
    /// many milliseconds after the last request (at most 60,000). Idle CPUs then poll
    /// instead of halting, which makes each FUSE round trip cheaper. 0: never.
    #[arg(long, value_name = "MS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub low_latency_ms: u64,
}

/// What the mount serves and where changes go.
struct Source {
    root: Dirent,
    archive: Option<Archive>,
    read_only: bool,
}

fn parse_mode(args: &Args) -> anyhow::Result<FsMode> {
    let mut mode = if args.read_only {
        FsMode::ReadOnly
    } else {
        FsMode::ReadWrite
    };
    for opt in args.options.iter().flat_map(|o| o.split(',')) {
        match opt.trim() {
            "" => {}
            "append_only" | "append-only" => {
                if mode != FsMode::ReadOnly {
                    mode = FsMode::AppendOnly;
                }
            }
            "ro" => mode = FsMode::ReadOnly,
            "rw" => {}
            other => bail!("unknown mount option {other:?} (known: append_only, ro, rw)"),
        }
    }
    Ok(mode)
}

fn empty_root() -> Dirent {
    let mut d = Dirent::dir(b"", BlockRef::empty());
    d.meta.set_mode(0o755);
    d.meta.mtime_ns = Some(now() as i128 * 1_000_000_000);
    d
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn source(special: &str) -> anyhow::Result<Source> {
    if special.starts_with("D{") {
        let root = Dirent::parse(special).context("parse the Dir transcription")?;
        return Ok(Source {
            root,
            archive: None,
            read_only: true,
        });
    }
    let archive = Archive::new(special);
    let root = match archive.latest()? {
        Some(e) => Dirent::parse(&e.transcription)
            .with_context(|| format!("parse the latest revision of {special}"))?,
        None => empty_root(),
    };
    Ok(Source {
        root,
        archive: Some(archive),
        read_only: false,
    })
}

/// Every revision as a directory named by its ISO time (made unique).
fn revisions(archive: &Archive) -> anyhow::Result<Vec<Dirent>> {
    let mut out: Vec<Dirent> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in archive.entries()? {
        let mut d = Dirent::parse(&e.transcription).context("parse a revision")?;
        if d.kind != DirentKind::Dir {
            continue;
        }
        let base = vt_engine::timefmt::iso_utc(e.when);
        let mut name = base.clone();
        let mut n = 1;
        while !seen.insert(name.clone()) {
            n += 1;
            name = format!("{base}.{n}");
        }
        d.name = name.into_bytes();
        out.push(d);
    }
    Ok(out)
}

/// `root` with the directory at `comps` replaced by `new`, storing re-encoded parents.
fn splice(
    store: &dyn Store,
    root: &Dirent,
    comps: &[&str],
    mut new: Dirent,
) -> anyhow::Result<Dirent> {
    let Some((first, rest)) = comps.split_first() else {
        new.name = root.name.clone();
        return Ok(new);
    };
    let mut entries = tree::read_dir_entries(store, root)?;
    let i = entries
        .iter()
        .position(|e| e.name == first.as_bytes())
        .with_context(|| format!("{first}: no longer in the archive's tree"))?;
    entries[i] = splice(store, &entries[i], rest, new)?;
    let bytes = encode_entries(&entries)?;
    let opts = BlockifyOptions::with_hash_alg(store.hash_alg());
    let mut out = root.clone();
    out.block = Some(blockify_bytes(&bytes, &StoreSink(store), &opts)?);
    Ok(out)
}

/// Records changes: commits the tree, flushes the store, appends a revision.
struct Recorder {
    fs: Arc<Fs>,
    store: Arc<dyn Store>,
    archive: Archive,
    /// The archive's whole tree as last recorded (for splicing a subpath mount).
    base: Dirent,
    subpath: Vec<String>,
    quiet: bool,
}

impl Recorder {
    /// The shared recorder; a panic elsewhere while it was held leaves it usable, as
    /// every `sync` starts from the filesystem's current state.
    fn locked(r: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
        r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sync(&mut self) -> anyhow::Result<bool> {
        let Some(d) = self.fs.sync().map_err(|e| anyhow::anyhow!("sync: {e}"))? else {
            return Ok(false);
        };
        let comps: Vec<&str> = self.subpath.iter().map(String::as_str).collect();
        let root = splice(self.store.as_ref(), &self.base, &comps, d)?;
        self.store.flush().context("flush the store")?;
        let entry = ArchiveEntry {
            when: now(),
            transcription: root.transcribe(),
            name: None,
        };
        self.archive.append(&entry)?;
        if !self.quiet {
            eprintln!(
                "vt mount: recorded a new revision in {}",
                self.archive.path().display()
            );
        }
        self.base = root;
        Ok(true)
    }
}

fn default_mountpoint(special: &str) -> anyhow::Result<PathBuf> {
    match special.strip_suffix(".vt") {
        Some(s) if !special.starts_with("D{") && !s.is_empty() => Ok(PathBuf::from(s)),
        _ => bail!("give a mountpoint"),
    }
}

/// Mounts, serves until unmounted or signalled, records the final revision.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    // Block the termination signals before any thread starts, so only the
    // waiting thread below receives them.
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        sigs.add(s);
    }
    sigs.thread_block().context("block signals")?;

    let src = source(&args.special)?;
    let mut mode = parse_mode(args)?;
    if src.read_only || args.all {
        mode = FsMode::ReadOnly;
    }
    let store = if mode == FsMode::ReadOnly {
        ctx.open_store_readonly()?
    } else {
        ctx.open_store()?
    };
    let subpath: Vec<String> = args
        .subpath
        .iter()
        .flat_map(|s| s.split('/'))
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect();
    let mut opts = FsOptions {
        mode,
        ..FsOptions::default()
    };
    opts.blockify.hash_alg = store.hash_alg();
    opts.blockify.threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fs = if args.all {
        let archive = src.archive.as_ref().context("-a needs an archive")?;
        Fs::from_entries(store.clone(), revisions(archive)?, opts)
    } else {
        let top = tree::resolve(store.as_ref(), &src.root, &subpath.join("/"))?;
        Fs::new(store.clone(), &top, opts)
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", args.special))?;
    let fs = Arc::new(fs);

    let mountpoint = match &args.mountpoint {
        Some(m) => m.clone(),
        None => default_mountpoint(&args.special)?,
    };
    let created = !mountpoint.exists();
    if created {
        std::fs::create_dir_all(&mountpoint)
            .with_context(|| format!("create {}", mountpoint.display()))?;
    }
    let recorder = match (&src.archive, mode) {
        (Some(a), FsMode::AppendOnly | FsMode::ReadWrite) if !args.all => {
            Some(Arc::new(Mutex::new(Recorder {
                fs: fs.clone(),
                store,
                archive: a.clone(),
                base: src.root.clone(),
                subpath,
                quiet: ctx.quiet,
            })))
        }
        _ => None,
    };
    let result = serve(ctx, args, fs, &mountpoint, sigs, recorder.clone());
    let final_sync = match (&result, &recorder) {
        (Ok(_), Some(r)) => Recorder::locked(r).sync().map(|_| ()),
        _ => Ok(()),
    };
    if created {
        let _ = std::fs::remove_dir(&mountpoint);
    }
    result.and(final_sync)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn mount_config(read_only: bool, special: &str) -> fuser::Config {
    use fuser::MountOption as M;
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        M::FSName(format!(
            "vt:{}",
            special.chars().take(64).collect::<String>()
        )),
        M::Subtype("vt".into()),
        M::DefaultPermissions,
        if read_only { M::RO } else { M::RW },
    ];
    c.n_threads = Some(4);
    c
}

/// The error of a mount that failed, with what to check when it was refused.
fn mount_error(e: std::io::Error, mountpoint: &Path) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (FUSE needs root, or read and write access to /dev/fuse)"
        }
        _ => "",
    };
    anyhow::anyhow!("mount on {}: {e}{hint}", mountpoint.display())
}

/// What wakes [`serve`] before its next periodic check.
enum Event {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    /// The session of this mount attempt (1 or 2) ended.
    Ended(u8),
}

/// Serves until the filesystem is unmounted from outside or a signal arrives;
/// records revisions every `sync_interval` seconds when the tree changed.
fn serve(
    ctx: &Context,
    args: &Args,
    fs: Arc<Fs>,
    mountpoint: &Path,
    sigs: SigSet,
    recorder: Option<Arc<Mutex<Recorder>>>,
) -> anyhow::Result<()> {
    let hook: Option<SyncHook> = recorder
        .clone()
        .map(|r| Arc::new(move || Recorder::locked(&r).sync().map(|_| ())) as SyncHook);
    let wake = match args.low_latency_ms {
        0 => None,
        ms => WakeLatency::open(Duration::from_millis(ms)).map(Arc::new),
    };
    if ctx.verbose > 0 && args.low_latency_ms > 0 && wake.is_none() {
        eprintln!(
            "vt mount: cannot open {} (not root?): running without it",
            wakelat::DEVICE
        );
    }
    // Signals and the end of the session both wake the loop below; the session's
    // end is reported by the filesystem's `destroy`, which fuser calls once its
    // request threads are done (after an unmount from outside, at once).
    let (tx, rx) = mpsc::channel::<Event>();
    let fuse_fs = |hook, wake, attempt| {
        let tx = tx.clone();
        FuseFs::new(fs.clone(), hook, wake).on_end(Box::new(move || {
            let _ = tx.send(Event::Ended(attempt));
        }))
    };
    let mut config = mount_config(fs.mode() == FsMode::ReadOnly, &args.special);
    // Auto-unmount (through fusermount3) cleans up after a killed process.
    let mut auto = config.clone();
    auto.mount_options.push(fuser::MountOption::AutoUnmount);
    auto.acl = fuser::SessionACL::All;
    // A filesystem whose mount failed is dropped, and so "ends" too: only the
    // attempt that mounted counts.
    let (session, attempt) =
        match fuser::spawn_mount(fuse_fs(hook.clone(), wake.clone(), 1), mountpoint, &auto) {
            Ok(s) => (s, 1),
            Err(_) => {
                config.acl = fuser::SessionACL::Owner;
                let s = fuser::spawn_mount(fuse_fs(hook, wake, 2), mountpoint, &config)
                    .map_err(|e| mount_error(e, mountpoint))?;
                (s, 2)
            }
        };
    if !ctx.quiet {
        eprintln!(
            "vt mount: {} mounted on {}",
            args.special,
            mountpoint.display()
        );
    }
    std::thread::spawn(move || {
        if sigs.wait().is_ok() {
            let _ = tx.send(Event::Signal);
        }
    });
    let interval = Duration::from_secs(args.sync_interval);
    let mut last = Instant::now();
    loop {
        let ended = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Event::Signal) => {
                // Unmount (lazily, so busy mounts also go); the session ends once
                // the kernel lets go.
                unmount(mountpoint);
                true
            }
            Ok(Event::Ended(a)) => a == attempt,
            Err(_) => false,
        };
        // Page buffers kept for a stream of writes go soon after it ends.
        vt_engine::fs::trim_idle_page_pool();
        if ended || session.guard.is_finished() {
            return session
                .join()
                .with_context(|| format!("serve {}", mountpoint.display()));
        }
        if let Some(r) = &recorder {
            if !interval.is_zero() && last.elapsed() >= interval {
                last = Instant::now();
                if let Err(e) = Recorder::locked(r).sync() {
                    eprintln!("vt mount: periodic sync failed: {e:#}");
                }
            }
        }
    }
}

/// Lazily unmounts `mountpoint` with the first unmount tool that works.
fn unmount(mountpoint: &Path) {
    let tries: [(&str, &[&str]); 3] = [
        ("fusermount3", &["-u", "-z"]),
        ("fusermount", &["-u", "-z"]),
        ("umount", &["-l"]),
    ];
    for (cmd, args) in tries {
        let ok = std::process::Command::new(cmd)
            .args(args)
            .arg(mountpoint)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
    }
    eprintln!("vt mount: could not unmount {}", mountpoint.display());
}
