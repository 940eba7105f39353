//! The FUSE adapter: translates fuser requests into [`vt_engine::fs::Fs`] calls.
//! All filesystem semantics live in the engine; this converts types and sets what
//! only the kernel sees: cache lifetimes, open flags, `st_blksize`, and the wakeup
//! hold ([`WakeLatency`]).

use crate::wakelat::WakeLatency;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vt_engine::fs::{Attr, Caller, FileKind, Fs, FsError, FsMode, RenameMode, SetAttr, XattrMode};

/// How long the kernel may cache attributes and entries of a writable mount. Every
/// change goes through this process, so the kernel's view stays right; the TTL only
/// bounds staleness for what changes on its own (the revisions directory, a file's
/// `st_blocks` once its data is committed).
const TTL: Duration = Duration::from_secs(1);

/// The same for a read-only mount, where nothing changes: a listing repeated after a
/// while is served from the kernel's caches instead of asking again for every entry.
const READ_ONLY_TTL: Duration = Duration::from_secs(3600);

/// Files at least this large, opened read-only, are read with direct I/O: the
/// kernel passes each `read` straight to the mount and the data lands in the
/// reader's buffer, instead of the mount copying it into freshly allocated page
/// cache pages and the reader copying it out again. For a large file read once
/// (the usual case) those copies cost more than serving the bytes; a re-read
/// still finds the blocks in the mount's cache and the store's files in the page
/// cache. Smaller files stay in the page cache, kept across opens.
const DIRECT_READ_MIN: u64 = 64 << 20;

/// Reads and writes of at least this many bytes do not take the fast-wakeup request
/// ([`WakeLatency`]): moving the bytes takes far longer than a wakeup, so a stream of
/// them leaves the CPUs free to halt when idle.
const STREAMING: u32 = 128 << 10;

/// What `fsyncdir` runs to make the tree's names durable: record a revision.
pub type SyncHook = Arc<dyn Fn() -> anyhow::Result<()> + Send + Sync>;

/// The fuser filesystem over a shared [`Fs`].
pub struct FuseFs {
    fs: Arc<Fs>,
    on_fsyncdir: Option<SyncHook>,
    /// The kernel lets files opened with direct I/O be mapped shared too
    /// (`FUSE_DIRECT_IO_ALLOW_MMAP`, Linux 6.6); without it, reads stay cached.
    direct_reads: bool,
    /// Fast wakeups while requests come (see [`WakeLatency`]); `None`: off.
    wake: Option<Arc<WakeLatency>>,
    /// How long the kernel may cache what a reply says ([`TTL`], [`READ_ONLY_TTL`]).
    ttl: Duration,
    /// Called once when the session ends (fuser's `destroy`).
    on_end: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl FuseFs {
    /// Serves `fs`; `on_fsyncdir` (if any) records the tree when a directory is fsynced.
    /// `wake`, if any, is touched by every request but large reads and writes
    /// ([`STREAMING`]).
    pub fn new(fs: Arc<Fs>, on_fsyncdir: Option<SyncHook>, wake: Option<Arc<WakeLatency>>) -> Self {
        let ttl = if fs.mode() == FsMode::ReadOnly {
            READ_ONLY_TTL
        } else {
            TTL
        };
        FuseFs {
            fs,
            on_fsyncdir,
            direct_reads: false,
            wake,
            ttl,
            on_end: None,
        }
    }

    /// Calls `f` once when the session ends: after the kernel let go of the mount
    /// and the request threads stopped, or when the filesystem is dropped unused.
    pub fn on_end(mut self, f: Box<dyn FnOnce() + Send + Sync>) -> Self {
        self.on_end = Some(f);
        self
    }

    /// A request arrived.
    fn busy(&self) {
        if let Some(w) = &self.wake {
            w.touch();
        }
    }
}

fn errno(e: FsError) -> Errno {
    if let FsError::Store(err) = &e {
        // Not eprintln!, which panics when stderr cannot be written (a full
        // disk is a likely reason for the store failing too).
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "vt mount: {err}");
    }
    Errno::from_i32(e.errno())
}

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Socket => FileType::Socket,
    }
}

fn attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.data_bytes.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: kind(a.kind),
        perm: a.perm as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: blksize(a.kind),
        flags: 0,
    }
}

/// The preferred I/O size (`st_blksize`). For files, 1 MiB: `cp`, `cat` and friends
/// size their buffers by it, and larger buffers mean fewer (and larger) FUSE requests.
/// For directories, 4 KiB, as on local file systems: glibc sizes its `readdir`
/// buffer by it (32 KiB at least, 1 MiB at most), and for each `getdents` the kernel
/// allocates a reply buffer of that size (up to the largest request) and frees it
/// after. With 1 MiB that was 256 pages mapped and freed per directory read, twice
/// per directory in a listing; a 32 KiB buffer still holds about 200 entries.
fn blksize(kind: FileKind) -> u32 {
    match kind {
        FileKind::Dir => 4096,
        _ => 1 << 20,
    }
}

/// What a `readdirplus` reply says about `.` and `..`: the kernel skips those
/// entries' attributes, so they are not worked out.
fn dot_attr(ino: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: blksize(FileKind::Dir),
        flags: 0,
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn time(t: Option<TimeOrNow>) -> Option<SystemTime> {
    t.map(|t| match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    })
}

fn entry(reply: ReplyEntry, ttl: Duration, r: Result<Attr, FsError>) {
    match r {
        Ok(a) => reply.entry(&ttl, &attr(&a), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, data: Result<Vec<u8>, FsError>) {
    match data {
        Err(e) => reply.error(errno(e)),
        Ok(d) if size == 0 => reply.size(d.len() as u32),
        Ok(d) if d.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
        Ok(d) => reply.data(&d),
    }
}

impl FuseFs {
    /// How the kernel should cache an opened file. Every change to a file goes
    /// through this mount and the kernel updates its cached pages as it passes a
    /// write on, so cached pages stay valid across opens (`FOPEN_KEEP_CACHE`).
    /// Large files opened read-only skip the cache (see [`DIRECT_READ_MIN`]), and so do
    /// files opened write-only: their writes then go to the mount straight from the
    /// writer's buffer, and the kernel drops cached pages of the range written, which
    /// keeps other handles coherent. Both need `FUSE_DIRECT_IO_ALLOW_MMAP`.
    fn open_flags(&self, ino: INodeNo, write: bool, write_only: bool) -> FopenFlags {
        let large = || self.fs.size(ino.0).is_ok_and(|s| s >= DIRECT_READ_MIN);
        if self.direct_reads && (write_only || (!write && large())) {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Larger requests mean fewer round trips; the kernel caps what it can't do.
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        // Listings carry the entries' attributes, so `ls -l` and `find` need no
        // lookup per entry.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        // Directories need no open handle (see `opendir`).
        let _ = config.add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        // More read-ahead requests in flight for the worker threads to serve.
        let _ = config.set_max_background(64);
        self.direct_reads = config
            .add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
            .is_ok();
        Ok(())
    }

    fn destroy(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.busy();
        entry(reply, self.ttl, self.fs.lookup(parent.0, name.as_bytes()));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.busy();
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&self.ttl, &attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.busy();
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: time(atime),
            mtime: time(mtime),
        };
        match self.fs.setattr(ino.0, &set) {
            Ok(a) => reply.attr(&self.ttl, &attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.busy();
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.busy();
        let mode = mode & !(umask & 0o777);
        entry(
            reply,
            self.ttl,
            self.fs
                .mknod(parent.0, name.as_bytes(), mode, rdev.into(), caller(req)),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.busy();
        let mode = mode & !umask;
        entry(
            reply,
            self.ttl,
            self.fs.mkdir(parent.0, name.as_bytes(), mode, caller(req)),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.busy();
        empty(reply, self.fs.unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.busy();
        empty(reply, self.fs.rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.busy();
        entry(
            reply,
            self.ttl,
            self.fs.symlink(
                parent.0,
                link_name.as_bytes(),
                target.as_os_str().as_bytes(),
                caller(req),
            ),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.busy();
        let how = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else if flags.is_empty() {
            RenameMode::Replace
        } else {
            return reply.error(Errno::from_i32(libc::EINVAL));
        };
        empty(
            reply,
            self.fs.rename(
                parent.0,
                name.as_bytes(),
                newparent.0,
                newname.as_bytes(),
                how,
            ),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.busy();
        entry(
            reply,
            self.ttl,
            self.fs.link(ino.0, newparent.0, newname.as_bytes()),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.busy();
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let trunc = flags.0 & libc::O_TRUNC != 0;
        match self.fs.open(ino.0, write, trunc) {
            Ok(fh) => reply.opened(
                FileHandle(fh),
                self.open_flags(ino, write, flags.acc_mode() == OpenAccMode::O_WRONLY),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if size < STREAMING {
            self.busy();
        }
        match self.fs.read(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.busy();
        // The kernel handles SEEK_SET/CUR/END itself and asks only for these two.
        let data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            _ => return reply.error(Errno::from_i32(libc::EINVAL)),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(Errno::from_i32(libc::ENXIO));
        };
        match self.fs.seek(ino.0, offset, data) {
            Ok(Some(at)) => reply.offset(at as i64),
            Ok(None) => reply.error(Errno::from_i32(libc::ENXIO)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if data.len() < STREAMING as usize {
            self.busy();
        }
        match self.fs.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.busy();
        empty(reply, self.fs.flush(ino.0));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.busy();
        empty(reply, self.fs.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.busy();
        empty(reply, self.fs.fsync(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.busy();
        let entries = match self.fs.readdir(ino.0) {
            Ok(v) => v,
            Err(e) => return reply.error(errno(e)),
        };
        for (i, e) in entries.into_iter().enumerate().skip(offset as usize) {
            let name = OsStr::from_bytes(&e.name);
            if reply.add(INodeNo(e.ino), (i + 1) as u64, kind(e.kind), name) {
                break;
            }
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.busy();
        // Listings keep no per-handle state. ENOSYS tells the kernel to skip
        // OPENDIR and RELEASEDIR from now on: two requests fewer per directory.
        reply.error(Errno::ENOSYS);
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.busy();
        // Attributes cost more than names: fetch a batch at a time until full.
        const BATCH: usize = 128;
        let mut at = offset as usize;
        loop {
            let batch = match self.fs.readdir_plus(ino.0, at, BATCH) {
                Ok(v) => v,
                Err(e) => return reply.error(errno(e)),
            };
            let n = batch.len();
            for (e, a) in batch {
                at += 1;
                let name = OsStr::from_bytes(&e.name);
                // The kernel takes a lookup reference for every entry with
                // attributes (all but `.` and `..`); forget gives it back.
                let counted = a.is_some();
                let (ttl, fattr) = match a {
                    Some(a) => (self.ttl, attr(&a)),
                    None => (Duration::ZERO, dot_attr(e.ino)),
                };
                if reply.add(INodeNo(e.ino), at as u64, name, &ttl, &fattr, Generation(0)) {
                    return reply.ok();
                }
                if counted {
                    if let Err(err) = self.fs.remember(e.ino) {
                        return reply.error(errno(err));
                    }
                }
            }
            if n < BATCH {
                return reply.ok();
            }
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.busy();
        empty(reply, self.fs.fallocate(ino.0, offset, length, mode));
    }

    /// A file's `fsync` makes its content durable; its name (and every other change
    /// to the tree) becomes durable when its directory is fsynced, as on a local
    /// filesystem: this records a revision when the tree changed.
    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.busy();
        match self.on_fsyncdir.as_ref().map_or(Ok(()), |hook| hook()) {
            Ok(()) => reply.ok(),
            Err(e) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "vt mount: fsyncdir: {e:#}");
                reply.error(Errno::EIO);
            }
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.busy();
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.busy();
        let how = if flags & libc::XATTR_CREATE != 0 {
            XattrMode::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrMode::Replace
        } else {
            XattrMode::Set
        };
        empty(reply, self.fs.setxattr(ino.0, name.as_bytes(), value, how));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.busy();
        xattr_reply(reply, size, self.fs.getxattr(ino.0, name.as_bytes()));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.busy();
        let list = self.fs.listxattr(ino.0).map(|names| {
            let mut out = Vec::new();
            for n in names {
                out.extend_from_slice(&n);
                out.push(0);
            }
            out
        });
        xattr_reply(reply, size, list);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.busy();
        empty(reply, self.fs.removexattr(ino.0, name.as_bytes()));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.busy();
        let mode = mode & !umask;
        let write_only = flags & libc::O_ACCMODE == libc::O_WRONLY;
        match self.fs.create(parent.0, name.as_bytes(), mode, caller(req)) {
            Ok((a, fh)) => {
                let open = self.open_flags(INodeNo(a.ino), true, write_only);
                reply.created(&self.ttl, &attr(&a), Generation(0), FileHandle(fh), open)
            }
            Err(e) => reply.error(errno(e)),
        }
    }
}
