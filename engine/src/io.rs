//! The small file-I/O layer under every segment and index file.
//!
//! All persistent writes of a [`DataDir`](crate::store::datadir::DataDir) go through
//! [`Fs`] and [`FileIo`], so tests can swap the operating system for [`SimFs`], an
//! in-memory file system that counts every write and sync and can "crash" at the
//! N-th one, then hand back the image a real disk could hold after such a crash.

use redb::backends::FileBackend;
pub use redb::ConcurrencyMode;
use redb::{BackendError, StorageBackend};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

mod staged;
pub use staged::{StagedFile, Staging};

/// One open file: positioned reads and writes, length, durability barrier.
// An `is_empty` would only be noise for files.
#[allow(clippy::len_without_is_empty)]
pub trait FileIo: Send + Sync + Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Writes the concatenation of `parts` at `offset`, as one
    /// [`write_at`](FileIo::write_at) of it would. The default concatenates; a file
    /// that stages appends in its own buffer copies each part there directly.
    fn write_parts_at(&self, parts: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write_at(&parts.concat(), offset)
    }
    /// Truncates or zero-extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every earlier write to this file durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Hints that the data written so far will be synced soon: start writing it back
    /// now, in the background, so the next [`sync`](FileIo::sync) has little left to do.
    /// Durability still comes only from `sync`, which reports any error the background
    /// writeback met. The default does nothing.
    fn start_writeback(&self) {}
    /// Writes all of `data` at `offset` like [`write_at`](FileIo::write_at), bypassing the
    /// page cache where the file system allows it. The caller passes whole aligned blocks
    /// (see [`Staging::align`]): `offset`, the length and the address of `data` are
    /// multiples of the alignment. The default is `write_at`.
    fn write_direct_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.write_at(data, offset)
    }
    /// Allocates space for `len` bytes at `offset` (reading as zeros), extending the file
    /// when they lie past its end. Fails where the file system cannot; the default does
    /// nothing.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// How [`Fs::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    Write,
    /// Read and write; the file must not exist yet.
    CreateNew,
}

/// A file system: the operations a store needs, nothing more.
pub trait Fs: Send + Sync + Debug {
    /// Opens `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileIo>>;
    /// True when `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Names of the files directly inside `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the creation and removal of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// A redb storage backend for the index file at `path` and the concurrency mode it supports.
    fn index_backend(
        &self,
        path: &Path,
        mode: OpenMode,
    ) -> io::Result<(IndexBackend, ConcurrencyMode)>;
    /// Takes the exclusive writer lock at `path`, recording `holder` in it. Returns the
    /// recorded holder of the lock when another process has it.
    fn lock_writer(&self, path: &Path, holder: &str) -> io::Result<Result<WriterLock, String>>;
}

/// A held writer lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct WriterLock(#[allow(dead_code)] Option<File>);

/// `pid=<pid> host=<hostname>`: who holds a writer lock, for error messages.
pub fn lock_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("pid={} host={host}", std::process::id())
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

#[derive(Debug)]
struct OsFile {
    file: Arc<File>,
    path: PathBuf,
    /// A second descriptor of the file opened with `O_DIRECT`, on the first direct write;
    /// `None` when the file system refused it.
    direct: OnceLock<Option<File>>,
    /// Set when a direct write was refused (`EINVAL`): write through the page cache from now on.
    direct_refused: AtomicBool,
    writeback: Arc<Writeback>,
}

impl OsFile {
    fn new(file: File, path: &Path) -> Self {
        OsFile {
            file: Arc::new(file),
            path: path.to_path_buf(),
            direct: OnceLock::new(),
            direct_refused: AtomicBool::new(false),
            writeback: Arc::default(),
        }
    }

    fn direct_file(&self) -> Option<&File> {
        if self.direct_refused.load(Ordering::Relaxed) {
            return None;
        }
        self.direct
            .get_or_init(|| open_direct(&self.path).ok())
            .as_ref()
    }
}

/// Opens `path` for writing with `O_DIRECT` (some file systems, e.g. older tmpfs, refuse it).
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// Background fdatasync of one file (see [`FileIo::start_writeback`]).
#[derive(Debug, Default)]
struct Writeback {
    state: Mutex<WritebackState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct WritebackState {
    running: bool,
    /// The first error a background sync met. Linux reports a writeback error to one
    /// fsync per open file only, so it is kept here and every later `sync` fails.
    failed: Option<(io::ErrorKind, String)>,
}

impl Writeback {
    fn lock(&self) -> MutexGuard<'_, WritebackState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a background fdatasync of `file` unless one is running.
    fn start(self: &Arc<Self>, file: &Arc<File>) {
        let mut st = self.lock();
        if st.running {
            return;
        }
        st.running = true;
        drop(st);
        let (me, file) = (self.clone(), file.clone());
        let spawned = std::thread::Builder::new()
            .name("vt-writeback".into())
            .spawn(move || {
                let r = file.sync_data();
                let mut st = me.lock();
                if let Err(e) = r {
                    st.failed.get_or_insert((e.kind(), e.to_string()));
                }
                st.running = false;
                me.done.notify_all();
            });
        if spawned.is_err() {
            // Only an optimization: the next sync writes everything itself.
            self.lock().running = false;
        }
    }

    /// Waits for a running background sync; fails when any background sync failed.
    fn settle(&self) -> io::Result<()> {
        let mut st = self.lock();
        while st.running {
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        match &st.failed {
            Some((kind, what)) => Err(io::Error::new(
                *kind,
                format!("background writeback failed: {what}"),
            )),
            None => Ok(()),
        }
    }
}

impl FileIo for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.writeback.settle()?;
        self.file.sync_data()
    }
    fn start_writeback(&self) {
        self.writeback.start(&self.file);
    }
    fn write_direct_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        if let Some(direct) = self.direct_file() {
            match direct.write_at(data, offset) {
                Ok(n) => done = n,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // Nothing was written; this file system wants the page cache.
                    self.direct_refused.store(true, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // A short direct write leaves an unaligned rest: write it through the page cache.
        self.file.write_all_at(&data[done..], offset + done as u64)
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        use nix::fcntl::{fallocate, FallocateFlags};
        let off = |x: u64| i64::try_from(x).map_err(io::Error::other);
        fallocate(
            &*self.file,
            FallocateFlags::empty(),
            off(offset)?,
            off(len)?,
        )
        .map_err(io::Error::from)
    }
}

fn os_open(path: &Path, mode: OpenMode) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true);
    match mode {
        OpenMode::Read => {}
        OpenMode::Write => {
            o.write(true);
        }
        OpenMode::CreateNew => {
            o.write(true).create_new(true);
        }
    }
    o.open(path)
}

impl Fs for OsFs {
    /// Files opened for writing stage their appends (see [`StagedFile`], [`Staging::OS`]).
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileIo>> {
        let file = Arc::new(OsFile::new(os_open(path, mode)?, path));
        if mode == OpenMode::Read {
            return Ok(file);
        }
        Ok(Arc::new(StagedFile::new(file, Staging::OS)))
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn index_backend(
        &self,
        path: &Path,
        mode: OpenMode,
    ) -> io::Result<(IndexBackend, ConcurrencyMode)> {
        let file = match mode {
            OpenMode::Read => os_open(path, OpenMode::Read)?,
            _ => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?,
        };
        let backend = FileBackend::new(file).map_err(io::Error::other)?;
        // SingleWriter lets reader processes open the index while the writer commits.
        Ok((IndexBackend::Os(backend), ConcurrencyMode::SingleWriter))
    }
    fn lock_writer(&self, path: &Path, holder: &str) -> io::Result<Result<WriterLock, String>> {
        use std::io::{Read, Write};
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.write_all_at(format!("{holder}\n").as_bytes(), 0)?;
                Ok(Ok(WriterLock(Some(file))))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                let _ = file.flush();
                Ok(Err(who.trim().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// The redb storage backend of an index: the OS file (with redb's own locking),
/// or a [`FileIo`] of another [`Fs`] (no cross-process locking).
#[derive(Debug)]
pub enum IndexBackend {
    /// redb's file backend over an OS file.
    Os(FileBackend),
    /// Any [`FileIo`].
    Io(Arc<dyn FileIo>),
}

type Range = (Bound<u64>, Bound<u64>);

impl IndexBackend {
    fn lock_op(
        &self,
        f: impl FnOnce(&FileBackend) -> Result<bool, BackendError>,
    ) -> Result<bool, BackendError> {
        match self {
            IndexBackend::Os(b) => f(b),
            IndexBackend::Io(_) => Err(BackendError::Unsupported),
        }
    }
}

impl StorageBackend for IndexBackend {
    fn len(&self) -> io::Result<u64> {
        match self {
            IndexBackend::Os(b) => b.len(),
            IndexBackend::Io(f) => f.len(),
        }
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        match self {
            IndexBackend::Os(b) => b.read(offset, out),
            IndexBackend::Io(f) => f.read_at(out, offset),
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        match self {
            IndexBackend::Os(b) => b.set_len(len),
            IndexBackend::Io(f) => f.set_len(len),
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        match self {
            IndexBackend::Os(b) => b.sync_data(),
            IndexBackend::Io(f) => f.sync(),
        }
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        match self {
            IndexBackend::Os(b) => b.write(offset, data),
            IndexBackend::Io(f) => f.write_at(data, offset),
        }
    }
    fn close(&self) -> io::Result<()> {
        match self {
            IndexBackend::Os(b) => b.close(),
            IndexBackend::Io(_) => Ok(()),
        }
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.lock_op(|b| b.try_lock_range(s, e))
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.lock_op(|b| b.try_lock_shared_range(s, e))
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.lock_op(|b| b.lock_range(s, e).map(|()| true))
            .map(|_| ())
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.lock_op(|b| b.lock_shared_range(s, e).map(|()| true))
            .map(|_| ())
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.lock_op(|b| b.unlock_range(s, e).map(|()| true))
            .map(|_| ())
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        let r: Range = (s, e);
        self.lock_op(|b| b.query_lock_range(r.0, r.1))
    }
}

// ---------------------------------------------------------------------------
// SimFs: a simulated disk for crash tests.

/// One simulated file: what the program sees, and what a crash would leave.
#[derive(Debug, Clone, Default)]
struct SimFile {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// The file's directory entry survives a crash (its directory was synced after creation).
    entry_durable: bool,
    /// Every write so far landed at or past the end of the file's data (allocated space
    /// not counted) and no `set_len` grew it: a log. Only such files are torn by
    /// [`CrashImage::TornTail`].
    overwritten: bool,
    /// Where the live bytes written so far end; `live` may go on with allocated zeros.
    data_end: usize,
}

#[derive(Debug)]
struct SimState {
    files: BTreeMap<PathBuf, SimFile>,
    dirs: Vec<PathBuf>,
    /// How handles opened for writing stage appends (`None`: every write goes through).
    staging: Option<Staging>,
    /// Mutating operations (writes, truncations, syncs) performed so far.
    ops: u64,
    /// The operation number at which the simulated machine dies.
    crash_at: Option<u64>,
    crashed: bool,
}

impl Default for SimState {
    fn default() -> Self {
        SimState {
            files: BTreeMap::new(),
            dirs: Vec::new(),
            staging: Some(SimFs::STAGING),
            ops: 0,
            crash_at: None,
            crashed: false,
        }
    }
}

/// How [`SimFs::crash_image`] treats writes that were not synced before the crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashImage {
    /// Only synced bytes survive.
    DurableOnly,
    /// Every write reached the disk (the crash hit after the page cache was written back).
    AllWrites,
    /// Synced bytes survive; of each append-only file's unsynced tail, the first half
    /// survives and the rest is lost (a torn append, at any byte). Files that were written
    /// in place (the redb index, which grows by `set_len` in whole pages) keep their synced
    /// bytes only, as in `DurableOnly`.
    TornTail,
}

/// An in-memory file system that can simulate a crash at the N-th mutating operation.
///
/// Cloning shares the same state. After the crash point every operation fails, as if
/// the process had died; [`SimFs::crash_image`] then yields what a disk could hold.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash")
}

impl SimFs {
    /// The default staging of simulated files: tiny chunks, written by the appending
    /// thread, so the crash tests cross chunk writes (head, direct body) and final
    /// writes at deterministic operation numbers.
    pub const STAGING: Staging = Staging {
        align: 256,
        chunk: 1024,
        background: false,
        depth: 1,
        writers: 1,
        prealloc: 2048,
    };

    /// An empty simulated disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty simulated disk whose files opened for writing stage appends as `staging`
    /// says (`None`: no staging; a background writer makes operation numbers vary).
    pub fn with_staging(staging: Option<Staging>) -> Self {
        let fs = Self::default();
        fs.lock().staging = staging;
        fs
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock can only come from a bug in this file; recover the state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutating operations performed so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Crashes at mutating operation number `n` (1-based): that operation and every
    /// later one fail without effect.
    pub fn crash_at(&self, n: u64) {
        self.lock().crash_at = Some(n);
    }

    /// True once the simulated crash has happened.
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// A new, healthy disk holding what survives a crash now, per `kind`.
    pub fn crash_image(&self, kind: CrashImage) -> SimFs {
        let st = self.lock();
        let mut files = BTreeMap::new();
        for (path, f) in &st.files {
            if !f.entry_durable && kind != CrashImage::AllWrites {
                continue;
            }
            let data = match kind {
                CrashImage::DurableOnly => f.durable.clone(),
                CrashImage::AllWrites => f.live.clone(),
                CrashImage::TornTail if !f.overwritten => torn(&f.durable, &f.live),
                CrashImage::TornTail => f.durable.clone(),
            };
            files.insert(
                path.clone(),
                SimFile {
                    live: data.clone(),
                    data_end: data.len(),
                    durable: data,
                    entry_durable: true,
                    overwritten: f.overwritten,
                },
            );
        }
        let state = SimState {
            files,
            dirs: st.dirs.clone(),
            staging: st.staging,
            ..SimState::default()
        };
        SimFs {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Reads a whole file (for tests that corrupt or inspect files).
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock();
        st.files
            .get(path)
            .map(|f| f.live.clone())
            .ok_or_else(|| not_found(path))
    }

    /// Replaces a whole file's contents, durably (for tests that corrupt files).
    pub fn write_file(&self, path: &Path, data: &[u8]) {
        let mut st = self.lock();
        let f = st.files.entry(path.to_path_buf()).or_default();
        f.live = data.to_vec();
        f.durable = data.to_vec();
        f.entry_durable = true;
        f.data_end = data.len();
    }

    /// Counts one mutating operation; fails if the machine has crashed or crashes now.
    fn step(st: &mut SimState) -> io::Result<()> {
        if st.crashed {
            return Err(crashed());
        }
        st.ops += 1;
        if st.crash_at.is_some_and(|n| st.ops >= n) {
            st.crashed = true;
            return Err(crashed());
        }
        Ok(())
    }
}

/// Durable bytes plus the first half of the unsynced bytes beyond them, when the live file
/// extends the durable one; otherwise just the durable bytes.
fn torn(durable: &[u8], live: &[u8]) -> Vec<u8> {
    if live.len() > durable.len() && live.starts_with(durable) {
        let extra = (live.len() - durable.len()) / 2;
        live[..durable.len() + extra].to_vec()
    } else {
        durable.to_vec()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

#[derive(Debug)]
struct SimHandle {
    fs: SimFs,
    path: PathBuf,
    writable: bool,
}

impl SimHandle {
    fn with_file<T>(
        &self,
        mutate: bool,
        f: impl FnOnce(&mut SimFile) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut st = self.fs.lock();
        if mutate {
            if !self.writable {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only"));
            }
            SimFs::step(&mut st)?;
        } else if st.crashed {
            return Err(crashed());
        }
        let file = st
            .files
            .get_mut(&self.path)
            .ok_or_else(|| not_found(&self.path))?;
        f(file)
    }
}

impl FileIo for SimHandle {
    fn len(&self) -> io::Result<u64> {
        self.with_file(false, |f| Ok(f.live.len() as u64))
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with_file(false, |f| {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let end = start.checked_add(buf.len()).filter(|&e| e <= f.live.len());
            let end = end.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(&f.live[start..end]);
            Ok(())
        })
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.with_file(true, |f| {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let end = start + data.len();
            f.overwritten |= start < f.data_end;
            if f.live.len() < end {
                f.live.resize(end, 0);
            }
            f.live[start..end].copy_from_slice(data);
            f.data_end = f.data_end.max(end);
            Ok(())
        })
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_file(true, |f| {
            let len = usize::try_from(len).map_err(io::Error::other)?;
            f.live.resize(len, 0);
            f.data_end = len;
            Ok(())
        })
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.with_file(true, |f| {
            let end = usize::try_from(offset + len).map_err(io::Error::other)?;
            if f.live.len() < end {
                f.live.resize(end, 0);
            }
            Ok(())
        })
    }
    fn sync(&self) -> io::Result<()> {
        self.with_file(true, |f| {
            f.durable = f.live.clone();
            Ok(())
        })
    }
    /// Refuses what `O_DIRECT` would refuse: a write not aligned to the staging alignment.
    fn write_direct_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let align = self.fs.lock().staging.map_or(1, |s| s.align);
        let aligned = |x: usize| x.is_multiple_of(align);
        if !aligned(data.len())
            || !aligned(data.as_ptr().addr())
            || !offset.is_multiple_of(align as u64)
        {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.write_at(data, offset)
    }
}

impl SimFs {
    fn open_unstaged(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileIo>> {
        let mut st = self.lock();
        if st.crashed {
            return Err(crashed());
        }
        let exists = st.files.contains_key(path);
        match mode {
            OpenMode::CreateNew if exists => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"))
            }
            OpenMode::CreateNew => {
                SimFs::step(&mut st)?;
                st.files.insert(path.to_path_buf(), SimFile::default());
            }
            _ if !exists => return Err(not_found(path)),
            _ => {}
        }
        let writable = mode != OpenMode::Read;
        Ok(Arc::new(SimHandle {
            fs: self.clone(),
            path: path.to_path_buf(),
            writable,
        }))
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileIo>> {
        let file = self.open_unstaged(path, mode)?;
        let staging = self.lock().staging;
        match staging {
            Some(s) if mode != OpenMode::Read => Ok(Arc::new(StagedFile::new(file, s))),
            _ => Ok(file),
        }
    }
    fn exists(&self, path: &Path) -> bool {
        let st = self.lock();
        st.files.contains_key(path) || st.dirs.iter().any(|d| d == path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        let names = st
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        Ok(names)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if !st.dirs.iter().any(|d| d == dir) {
            st.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        SimFs::step(&mut st)?;
        for (path, f) in st.files.iter_mut() {
            if path.parent() == Some(dir) {
                f.entry_durable = true;
            }
        }
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        SimFs::step(&mut st)?;
        st.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    fn index_backend(
        &self,
        path: &Path,
        mode: OpenMode,
    ) -> io::Result<(IndexBackend, ConcurrencyMode)> {
        // The index writes pages in place: it is never staged.
        let file = if mode != OpenMode::Read && !self.exists(path) {
            // The store syncs the directory after creating its index file.
            self.open_unstaged(path, OpenMode::CreateNew)?
        } else {
            self.open_unstaged(
                path,
                if mode == OpenMode::Read {
                    OpenMode::Read
                } else {
                    OpenMode::Write
                },
            )?
        };
        Ok((IndexBackend::Io(file), ConcurrencyMode::ExclusiveWriter))
    }
    fn lock_writer(&self, _path: &Path, _holder: &str) -> io::Result<Result<WriterLock, String>> {
        // One simulated machine, one process: nothing to exclude.
        Ok(Ok(WriterLock(None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_writeback_keeps_data_and_sync_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = OsFs.open(&p, OpenMode::CreateNew).unwrap();
        let block = vec![7u8; 1 << 20];
        for i in 0..8u64 {
            f.write_at(&block, i << 20).unwrap();
            f.start_writeback();
        }
        f.sync().unwrap();
        f.start_writeback();
        f.sync().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), block.repeat(8));
    }

    #[test]
    fn a_failed_background_writeback_fails_every_later_sync() {
        let wb = Writeback::default();
        wb.lock().failed = Some((io::ErrorKind::Other, "EIO".into()));
        assert!(wb.settle().is_err());
        assert!(wb.settle().is_err());
    }

    #[test]
    fn crash_freezes_the_durable_image() {
        let fs = SimFs::new();
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        let p = dir.join("f");
        let f = fs.open(&p, OpenMode::CreateNew).unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.sync().unwrap();
        fs.sync_dir(dir).unwrap();
        fs.crash_at(fs.ops() + 2);
        f.write_at(b" world", 5).unwrap();
        assert!(f.sync().is_err());
        assert!(f.write_at(b"x", 0).is_err());
        let img = fs.crash_image(CrashImage::DurableOnly);
        assert_eq!(img.read_file(&p).unwrap(), b"hello");
        let img = fs.crash_image(CrashImage::AllWrites);
        assert_eq!(img.read_file(&p).unwrap(), b"hello world");
        let img = fs.crash_image(CrashImage::TornTail);
        assert_eq!(img.read_file(&p).unwrap(), b"hello wo");
    }

    #[test]
    fn unsynced_directory_entries_are_lost() {
        let fs = SimFs::new();
        let dir = Path::new("/s");
        let f = fs.open(&dir.join("f"), OpenMode::CreateNew).unwrap();
        f.write_at(b"x", 0).unwrap();
        f.sync().unwrap();
        let img = fs.crash_image(CrashImage::DurableOnly);
        assert!(!img.exists(&dir.join("f")));
    }
}
