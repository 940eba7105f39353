//! A POSIX-like filesystem over a stored Dir tree, for FUSE and other frontends.
//!
//! [`Fs`] keeps an inode table over the tree. Directories are decoded on first
//! use; inode numbers are stable for the life of an `Fs`. Files with several
//! links share one inode (stored as a file dirent with a UUID plus `Indirect`
//! dirents); the first hard link met while loading loads the whole tree so that
//! link counts are right. Writes go to a per-file [`FileBuf`] of modified pages,
//! committed (re-chunked from the first change on) at flush, fsync, last close,
//! or when a file holds too many modified pages. [`Fs::sync`] commits every file
//! and encodes the changed directories, giving a new root dirent to record in an
//! archive.
//!
//! Three modes: read-only (every mutation fails with `EROFS`), append-only (no
//! unlink, rmdir, rename, shrinking truncate, overwrite of existing bytes,
//! removal or replacement of xattrs: `EPERM`; new files, directories, links
//! and appends are allowed), and read-write.
//!
//! Permission checks are left to the caller (the kernel, with FUSE's
//! `default_permissions`); this layer keeps the modes and owners it is given.

mod cache;
mod commit;
mod error;
mod file;
mod node;
#[cfg(test)]
mod perf_tests;
#[cfg(test)]
mod tests;

pub use cache::{CachedStore, ReadAhead};
pub use error::{FsError, FsResult};
pub use file::{trim_idle_page_pool, FileBuf, Snapshot, PAGE};

use crate::block::BlockRef;
use crate::blockify::BlockifyOptions;
use crate::dir::{validate_name, Dirent, DirentKind, Meta, Owner};
use crate::hash::HashCode;
use crate::osmeta::NameCache;
#[cfg(test)]
use crate::read;
use crate::store::Store;
use crate::transcribe::json::{JStr, Json};
use cache::DirCache;
use commit::{Committer, Flusher};
use node::{Body, DirNode, Node, State};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An inode number.
pub type Ino = u64;
/// The root directory's inode number.
pub const ROOT_INO: Ino = 1;
/// Longest entry name.
pub const NAME_MAX: usize = 255;
/// The read-only extended attribute holding a file's content reference.
pub const XATTR_BLOCK: &[u8] = b"x-vt-block";
/// Largest file size accepted.
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// What mutations a mount allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsMode {
    /// No changes at all.
    ReadOnly,
    /// New files, directories and links, and appends; nothing removed or overwritten.
    AppendOnly,
    /// Everything.
    ReadWrite,
}

/// How an [`Fs`] behaves.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Allowed mutations.
    pub mode: FsMode,
    /// How file content and directories are chunked and hashed.
    pub blockify: BlockifyOptions,
    /// A file holding more modified bytes than this is committed early.
    pub dirty_limit: u64,
    /// Bytes of blocks kept in the read cache.
    pub cache_bytes: u64,
    /// Bytes fetched ahead of a sequential reader.
    pub readahead: u64,
    /// Owner reported for entries that record none (usually the mounting user).
    pub default_uid: u32,
    /// Group reported for entries that record none.
    pub default_gid: u32,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            mode: FsMode::ReadWrite,
            blockify: BlockifyOptions {
                threads: 1,
                ..BlockifyOptions::default()
            },
            dirty_limit: 64 << 20,
            cache_bytes: 64 << 20,
            readahead: 4 << 20,
            default_uid: nix::unistd::geteuid().as_raw(),
            default_gid: nix::unistd::getegid().as_raw(),
        }
    }
}

/// The type of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Socket.
    Socket,
}

/// Attributes of an inode, as `stat` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// Type.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Bytes of data, for `st_blocks`: a file's holes (zero runs stored as RLE, or
    /// never written) are not counted, so `du` and `cp --sparse` see sparse files.
    pub data_bytes: u64,
    /// Permission bits (`0o7777` range).
    pub perm: u32,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number, for device files.
    pub rdev: u32,
    /// Access time.
    pub atime: SystemTime,
    /// Modification time.
    pub mtime: SystemTime,
    /// Status change time.
    pub ctime: SystemTime,
}

/// One directory entry as `readdir` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: Ino,
    /// Type.
    pub kind: FileKind,
    /// Name (`.` and `..` included).
    pub name: Vec<u8>,
}

/// Attribute changes for [`Fs::setattr`]; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (files only).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SystemTime>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
}

/// Who is creating an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// What may happen to an existing target in [`Fs::rename`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RenameMode {
    /// Replace the target if any (POSIX `rename`).
    #[default]
    Replace,
    /// Fail with `EEXIST` if the target exists.
    NoReplace,
    /// Swap source and target, which must both exist.
    Exchange,
}

/// How [`Fs::setxattr`] treats an existing attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrMode {
    /// Create or replace.
    #[default]
    Set,
    /// Fail with `EEXIST` if present.
    Create,
    /// Fail with `ENODATA` if absent.
    Replace,
}

/// Filesystem statistics for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Block size.
    pub bsize: u32,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Inodes in use plus free.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Longest name.
    pub namelen: u32,
}

/// The current time in ns since the epoch.
pub(crate) fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn ns_of(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

fn time_of(ns: i128) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs().min(u64::MAX as u128) as u64);
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// A filesystem over a Dir tree in a store. All methods may be called from many threads.
#[derive(Debug)]
pub struct Fs {
    store: Arc<CachedStore>,
    readahead: ReadAhead,
    opts: FsOptions,
    state: Arc<Mutex<State>>,
    names: NameCache,
    committer: Arc<Committer>,
    flusher: Flusher,
}

impl Fs {
    /// A filesystem whose root is the Dir dirent `root`.
    ///
    /// Fails with `ENOTDIR` when `root` is not a directory.
    pub fn new(store: Arc<dyn Store>, root: &Dirent, opts: FsOptions) -> FsResult<Fs> {
        if root.kind != DirentKind::Dir {
            return Err(FsError::NotDir);
        }
        let body = Body::Dir(DirNode {
            block: root.block.clone().unwrap_or_else(BlockRef::empty),
            children: None,
            cache: None,
        });
        Ok(Self::with_root(
            store,
            Node::new(body, root.meta.clone(), ROOT_INO),
            opts,
        ))
    }

    /// An empty read-write (or `opts.mode`) filesystem.
    pub fn empty(store: Arc<dyn Store>, opts: FsOptions) -> Fs {
        let mut meta = Meta::default();
        meta.set_mode(0o755);
        meta.mtime_ns = Some(now_ns());
        let mut root = Dirent::dir(b"", BlockRef::empty());
        root.meta = meta;
        Self::new(store, &root, opts).expect("a Dir root")
    }

    /// A read-only filesystem whose root lists `entries` (e.g. one directory per
    /// archive revision). Fails on invalid or repeated names.
    pub fn from_entries(
        store: Arc<dyn Store>,
        entries: Vec<Dirent>,
        mut opts: FsOptions,
    ) -> FsResult<Fs> {
        opts.mode = FsMode::ReadOnly;
        let fs = Self::empty(store, opts);
        {
            let mut st = fs.state.lock();
            let mut children = BTreeMap::new();
            for e in entries {
                validate_name(&e.name).map_err(|_| FsError::Invalid)?;
                let name = e.name.clone();
                let ino = st.node_from_dirent(e, ROOT_INO);
                if children.insert(name, ino).is_some() {
                    return Err(FsError::Exists);
                }
            }
            if let Body::Dir(d) = &mut st.node_mut(ROOT_INO)?.body {
                d.children = Some(children);
            }
        }
        Ok(fs)
    }

    fn with_root(store: Arc<dyn Store>, root: Node, opts: FsOptions) -> Fs {
        let cached = Arc::new(CachedStore::new(store, opts.cache_bytes));
        let dirs = Arc::new(DirCache::default());
        let state = Arc::new(Mutex::new(State::new(root, dirs.clone())));
        let committer = Arc::new(Committer::new(
            state.clone(),
            cached.clone(),
            opts.blockify.clone(),
        ));
        Fs {
            readahead: ReadAhead::start(cached.clone(), dirs),
            store: cached,
            opts,
            state,
            names: NameCache::default(),
            flusher: Flusher::start(committer.clone()),
            committer,
        }
    }

    /// The mount mode.
    pub fn mode(&self) -> FsMode {
        self.opts.mode
    }

    /// The (caching) store the filesystem reads and writes.
    pub fn store(&self) -> &Arc<CachedStore> {
        &self.store
    }

    fn st(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn check_write(&self) -> FsResult<()> {
        match self.opts.mode {
            FsMode::ReadOnly => Err(FsError::ReadOnly),
            _ => Ok(()),
        }
    }

    /// For operations that remove or overwrite something.
    fn check_destructive(&self) -> FsResult<()> {
        match self.opts.mode {
            FsMode::ReadOnly => Err(FsError::ReadOnly),
            FsMode::AppendOnly => Err(FsError::Perm),
            FsMode::ReadWrite => Ok(()),
        }
    }

    fn check_name(name: &[u8]) -> FsResult<()> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        validate_name(name).map_err(|_| FsError::Invalid)
    }

    fn owner_id(&self, o: &Option<Owner>, user: bool) -> u32 {
        let resolved = match o {
            Some(Owner::Id(n)) => Some(*n),
            Some(Owner::Name(n)) if user => self.names.uid(n),
            Some(Owner::Name(n)) => self.names.gid(n),
            None => None,
        };
        resolved.unwrap_or(if user {
            self.opts.default_uid
        } else {
            self.opts.default_gid
        })
    }

    fn set_owner(&self, meta: &mut Meta, uid: Option<u32>, gid: Option<u32>) {
        if let Some(u) = uid {
            meta.user = Some(Owner::from_id(u, self.names.user(u).as_deref()));
        }
        if let Some(g) = gid {
            meta.group = Some(Owner::from_id(g, self.names.group(g).as_deref()));
        }
    }

    fn kind_of(n: &Node) -> FileKind {
        match &n.body {
            Body::Dir(_) => FileKind::Dir,
            Body::Symlink => FileKind::Symlink,
            Body::File(_) => match crate::tree::special_of(&n.meta) {
                Some((crate::tree::SpecialKind::Fifo, _)) => FileKind::Fifo,
                Some((crate::tree::SpecialKind::Char, _)) => FileKind::CharDevice,
                Some((crate::tree::SpecialKind::Block, _)) => FileKind::BlockDevice,
                Some((crate::tree::SpecialKind::Socket, _)) => FileKind::Socket,
                None => FileKind::File,
            },
        }
    }

    fn attr_locked(&self, st: &mut State, ino: Ino) -> FsResult<Attr> {
        let subdirs = if st.node(ino)?.is_dir() {
            let kids: Vec<Ino> = st.children(self.st(), ino)?.values().copied().collect();
            Some((
                kids.len(),
                kids.iter()
                    .filter(|k| st.nodes.get(k).is_some_and(|n| n.is_dir()))
                    .count(),
            ))
        } else {
            None
        };
        let n = st.node(ino)?;
        let kind = Self::kind_of(n);
        let mut data_bytes = None;
        let (size, nlink) = match (&n.body, subdirs) {
            (Body::File(f), _) => {
                // Only `st_blocks` depends on this: a store error here (a missing
                // indirect block) is reported by the reads, not by `stat`.
                data_bytes = f.data_bytes(self.st()).ok();
                (f.size(), n.nlink)
            }
            (Body::Symlink, _) => (
                n.meta.pathref.as_ref().map_or(0, |p| p.len() as u64),
                n.nlink,
            ),
            (Body::Dir(_), Some(_)) if n.nlink == 0 => (0, 0),
            (Body::Dir(_), Some((entries, dirs))) => (entries as u64, 2 + dirs as u32),
            (Body::Dir(_), None) => (0, 2),
        };
        let perm = if n.meta.acl.is_some() {
            n.meta.mode()
        } else {
            match kind {
                FileKind::Dir => 0o755,
                FileKind::Symlink => 0o777,
                _ => 0o644,
            }
        };
        let rdev = crate::tree::special_of(&n.meta).map_or(0, |(_, r)| r as u32);
        let mtime = n.meta.mtime_ns.unwrap_or(n.ctime_ns);
        Ok(Attr {
            ino,
            kind,
            size,
            data_bytes: data_bytes.unwrap_or(size),
            perm: if kind == FileKind::Symlink {
                0o777
            } else {
                perm
            },
            nlink,
            uid: self.owner_id(&n.meta.user, true),
            gid: self.owner_id(&n.meta.group, false),
            rdev,
            atime: time_of(n.atime_ns),
            mtime: time_of(mtime),
            ctime: time_of(n.ctime_ns),
        })
    }

    /// `lseek` with `SEEK_DATA` (`data`) or `SEEK_HOLE` on file `ino` from `offset`
    /// (see [`FileBuf::seek`]); `Ok(None)` is `ENXIO`.
    pub fn seek(&self, ino: Ino, offset: u64, data: bool) -> FsResult<Option<u64>> {
        let st = self.state.lock();
        let n = st.node(ino)?;
        let Body::File(f) = &n.body else {
            return Err(if n.is_dir() {
                FsError::IsDir
            } else {
                FsError::Invalid
            });
        };
        Ok(f.seek(self.st(), offset, data)?)
    }

    /// Attributes of `ino`, handing out one more reference to it (see [`Fs::forget`]).
    fn entry_locked(&self, st: &mut State, ino: Ino) -> FsResult<Attr> {
        let a = self.attr_locked(st, ino)?;
        st.node_mut(ino)?.nlookup += 1;
        Ok(a)
    }

    /// Hands out one more reference to `ino`: for each entry (other than `.`
    /// and `..`) a `readdirplus` reply carried, as the kernel counts those too.
    pub fn remember(&self, ino: Ino) -> FsResult<()> {
        self.state.lock().node_mut(ino)?.nlookup += 1;
        Ok(())
    }

    /// Drops `n` references to `ino`. Every successful `lookup`, `create`,
    /// `mknod`, `mkdir`, `symlink` and `link` hands out one reference (as the
    /// kernel counts them). A node with no links, handles or references is
    /// freed; a directory whose entries are all unreferenced and unchanged is
    /// unloaded. Inode numbers stay the same either way.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.state.lock().forget(ino, n);
    }

    /// Attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let mut st = self.state.lock();
        self.attr_locked(&mut st, ino)
    }

    /// The entry `name` in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<Attr> {
        let mut st = self.state.lock();
        let ino = match name {
            b"." => parent,
            b".." => st.node(parent)?.parent,
            _ => {
                if name.len() > NAME_MAX {
                    return Err(FsError::NameTooLong);
                }
                *st.children(self.st(), parent)?
                    .get(name)
                    .ok_or(FsError::NotFound)?
            }
        };
        self.entry_locked(&mut st, ino)
    }

    /// Entries of directory `ino`, starting with `.` and `..`, sorted by name.
    pub fn readdir(&self, ino: Ino) -> FsResult<Vec<DirEntry>> {
        let mut st = self.state.lock();
        let kids: Vec<(Vec<u8>, Ino)> = st
            .children(self.st(), ino)?
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let parent = st.node(ino)?.parent;
        let mut out = vec![
            DirEntry {
                ino,
                kind: FileKind::Dir,
                name: b".".to_vec(),
            },
            DirEntry {
                ino: parent,
                kind: FileKind::Dir,
                name: b"..".to_vec(),
            },
        ];
        for (name, child) in kids {
            let kind = Self::kind_of(st.node(child)?);
            out.push(DirEntry {
                ino: child,
                kind,
                name,
            });
        }
        Ok(out)
    }

    /// Up to `max` entries of directory `ino` from position `offset` of the
    /// [`Fs::readdir`] listing, each with its attributes (FUSE's `readdirplus`,
    /// which spares the kernel a lookup per entry). `.` and `..` come without:
    /// the kernel ignores what a listing says about them, and the parent's
    /// attributes cost a pass over all of its entries.
    pub fn readdir_plus(
        &self,
        ino: Ino,
        offset: usize,
        max: usize,
    ) -> FsResult<Vec<(DirEntry, Option<Attr>)>> {
        let mut st = self.state.lock();
        let parent = st.node(ino)?.parent;
        let dots = [(&b"."[..], ino), (&b".."[..], parent)];
        let mut out: Vec<(DirEntry, Option<Attr>)> = dots
            .iter()
            .skip(offset)
            .take(max)
            .map(|(name, ino)| {
                let entry = DirEntry {
                    ino: *ino,
                    kind: FileKind::Dir,
                    name: name.to_vec(),
                };
                (entry, None)
            })
            .collect();
        let window: Vec<(Vec<u8>, Ino)> = st
            .children(self.st(), ino)?
            .iter()
            .skip(offset.saturating_sub(dots.len()))
            .take(max - out.len())
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (name, child) in window {
            let attr = self.attr_locked(&mut st, child)?;
            let entry = DirEntry {
                ino: child,
                kind: attr.kind,
                name,
            };
            out.push((entry, Some(attr)));
        }
        let (dirs, blocks) = Self::dirs_listed_next(&st, out.iter().map(|(e, _)| e));
        drop(st);
        if !dirs.is_empty() || !blocks.is_empty() {
            self.readahead.hint_dirs(dirs, blocks);
        }
        Ok(out)
    }

    /// The directories that listing the directories among `entries` will load,
    /// in the order a recursive listing (`ls -lR`, `find`) comes to them: the
    /// unloaded subdirectories of the subdirectories in `entries` (working out
    /// those subdirectories' attributes loaded them, to count their entries).
    /// The read-ahead thread decodes them and their subtrees. Also the indirect
    /// blocks of those subdirectories' files (read for `st_blocks`).
    fn dirs_listed_next<'a>(
        st: &State,
        entries: impl Iterator<Item = &'a DirEntry>,
    ) -> (Vec<BlockRef>, Vec<HashCode>) {
        let mut out = Vec::new();
        let mut blocks = Vec::new();
        for e in entries.filter(|e| e.kind == FileKind::Dir && e.name != b"." && e.name != b"..") {
            let Some(Body::Dir(DirNode {
                children: Some(kids),
                ..
            })) = st.nodes.get(&e.ino).map(|n| &n.body)
            else {
                continue;
            };
            for kid in kids.values().filter_map(|k| st.nodes.get(k)) {
                match &kid.body {
                    Body::Dir(d) if d.children.is_none() => out.push(d.block.clone()),
                    Body::File(f) if !f.holes_known() => {
                        if let BlockRef::Indirect { hash, .. } = f.base() {
                            blocks.push(*hash);
                        }
                    }
                    _ => {}
                }
            }
        }
        (out, blocks)
    }

    /// Opens file `ino`; `write` when opened for writing, `truncate` for `O_TRUNC`.
    /// Returns a handle for [`Fs::release`].
    pub fn open(&self, ino: Ino, write: bool, truncate: bool) -> FsResult<u64> {
        if write || truncate {
            self.check_write()?;
        }
        let mut st = self.state.lock();
        let n = st.node_mut(ino)?;
        let Body::File(f) = &mut n.body else {
            return Err(if n.is_dir() {
                FsError::IsDir
            } else {
                FsError::Invalid
            });
        };
        if truncate && f.size() > 0 {
            if self.opts.mode == FsMode::AppendOnly {
                return Err(FsError::Perm);
            }
            f.truncate(0);
            let t = now_ns();
            n.meta.mtime_ns = Some(t);
            n.ctime_ns = t;
            st.changed = true;
        }
        Ok(Self::new_handle(&mut st, ino))
    }

    /// The size of file `ino` in bytes (0 for other kinds). Cheaper than
    /// [`Fs::getattr`]: nothing is read from the store.
    pub fn size(&self, ino: Ino) -> FsResult<u64> {
        let st = self.state.lock();
        Ok(match &st.node(ino)?.body {
            Body::File(f) => f.size(),
            _ => 0,
        })
    }

    fn new_handle(st: &mut State, ino: Ino) -> u64 {
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, ino);
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.opens += 1;
        }
        fh
    }

    /// Closes handle `fh`; the last close of a file commits its changes.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let commit = {
            let mut st = self.state.lock();
            let ino = st.handles.remove(&fh).ok_or(FsError::BadHandle)?;
            let n = st.node_mut(ino)?;
            n.opens = n.opens.saturating_sub(1);
            // A node being committed is freed by the committer when done.
            if n.is_unreferenced() {
                st.free(ino);
            }
            let n = st.node(ino);
            n.is_ok_and(|n| n.opens == 0 && n.nlink > 0).then_some(ino)
        };
        match commit {
            Some(ino) => self.committer.commit_file(ino),
            None => Ok(()),
        }
    }

    /// Commits file `ino`'s changes to the store (for `flush`, i.e. `close`).
    /// The blockifying runs outside the filesystem lock. The store may still
    /// hold the changes in memory; see [`Fs::fsync`].
    pub fn flush(&self, ino: Ino) -> FsResult<()> {
        self.state.lock().node(ino)?;
        self.committer.commit_file(ino)
    }

    /// Commits file `ino`'s changes and flushes the store, so the file's
    /// content is durable in the store. It becomes part of a recorded tree
    /// at the next [`Fs::sync`].
    pub fn fsync(&self, ino: Ino) -> FsResult<()> {
        self.flush(ino)?;
        // Outside the filesystem lock: other requests go on meanwhile.
        self.store.flush()?;
        Ok(())
    }

    /// Up to `size` bytes of file `ino` from `offset`.
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let len = u64::from(size);
        let (base, ahead) = {
            let mut st = self.state.lock();
            let n = st.node_mut(ino)?;
            let Body::File(f) = &n.body else {
                return Err(if n.is_dir() {
                    FsError::IsDir
                } else {
                    FsError::Invalid
                });
            };
            if f.is_dirty() {
                return Ok(f.read(self.st(), offset, len)?);
            }
            let base = f.base().clone();
            let end = offset.saturating_add(len).min(f.size());
            (
                base,
                Self::read_ahead(&mut n.ra_until, offset, end, self.opts.readahead),
            )
        };
        // Clean content is read without holding the lock.
        let mut out = Vec::new();
        self.store.read_range(&base, offset, len, &mut out)?;
        if let Some((from, n)) = ahead {
            self.readahead.hint(&base, from, n);
        }
        Ok(out)
    }

    /// The range to fetch ahead of a read of `[offset, end)`, if any. `until` is how
    /// far read-ahead was asked for: a read starting near it (a sequential reader,
    /// even with requests served out of order) moves it `window` past the read once
    /// less than half a window is left; any other read restarts it there.
    fn read_ahead(until: &mut u64, offset: u64, end: u64, window: u64) -> Option<(u64, u64)> {
        if window == 0 {
            return None;
        }
        let near = offset <= *until && *until - offset <= 2 * window;
        if !near {
            *until = end;
            return None;
        }
        if *until >= end + window / 2 {
            return None;
        }
        let from = (*until).max(end);
        *until = end + window;
        Some((from, *until - from))
    }

    /// Writes `data` at `offset` into file `ino`; returns the bytes written.
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.check_write()?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::TooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(FsError::TooBig);
        }
        let mut st = self.state.lock();
        self.throttle(&mut st, ino);
        let n = st.node_mut(ino)?;
        let Body::File(f) = &mut n.body else {
            return Err(if n.is_dir() {
                FsError::IsDir
            } else {
                FsError::Invalid
            });
        };
        if self.opts.mode == FsMode::AppendOnly && offset < f.size() && !data.is_empty() {
            return Err(FsError::Perm);
        }
        f.write(self.store.as_ref(), offset, data)?;
        let full = f.fresh_bytes() > self.opts.dirty_limit;
        let t = now_ns();
        n.meta.mtime_ns = Some(t);
        n.ctime_ns = t;
        st.changed = true;
        if full {
            // Committed by the background thread while writes go on.
            if let Some(snap) = Committer::claim(&mut st, ino) {
                if let Some((ino, snap)) = self.flusher.send(ino, snap) {
                    drop(st);
                    let top = snap.commit(self.store.as_ref(), &self.opts.blockify);
                    self.committer.finish(ino, &snap, top)?;
                }
            }
        }
        Ok(data.len() as u32)
    }

    /// Makes a writer wait while its file's commit runs and the pages written
    /// meanwhile pass the dirty limit, so memory stays bounded.
    fn throttle(&self, st: &mut parking_lot::MutexGuard<'_, State>, ino: Ino) {
        let over = |st: &State| {
            st.nodes.get(&ino).is_some_and(|n| {
                n.committing
                    && matches!(&n.body, Body::File(f) if f.fresh_bytes() > self.opts.dirty_limit)
            })
        };
        while over(st) {
            self.committer.done.wait(st);
        }
    }

    /// `fallocate(2)` on file `ino`: `mode` 0 grows the file to cover the
    /// range, `FALLOC_FL_KEEP_SIZE` alone changes nothing (space is not
    /// reserved: the store has no fixed size), `FALLOC_FL_PUNCH_HOLE` (with
    /// `KEEP_SIZE`) and `FALLOC_FL_ZERO_RANGE` make the range read as zeros,
    /// which become RLE leaves. Other modes give `EOPNOTSUPP`.
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        self.check_write()?;
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let punch = mode & libc::FALLOC_FL_PUNCH_HOLE != 0;
        let zero = mode & libc::FALLOC_FL_ZERO_RANGE != 0;
        let known =
            libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        if mode & !known != 0 || (punch && (zero || !keep)) {
            return Err(FsError::NotSupported);
        }
        let end = offset.checked_add(len).ok_or(FsError::TooBig)?;
        if len == 0 {
            return Err(FsError::Invalid);
        }
        if end > MAX_FILE_SIZE {
            return Err(FsError::TooBig);
        }
        let mut st = self.state.lock();
        let n = st.node_mut(ino)?;
        // A commit running outside the lock installs its snapshot later: committing
        // here too would let that install hide these changes.
        let committing = n.committing;
        let Body::File(f) = &mut n.body else {
            return Err(if n.is_dir() {
                FsError::IsDir
            } else {
                FsError::Invalid
            });
        };
        let zeroes_data = (punch || zero) && offset < f.size();
        if zeroes_data && self.opts.mode == FsMode::AppendOnly {
            return Err(FsError::Perm);
        }
        let grows = !keep && end > f.size();
        if zeroes_data {
            // In pieces, committing like writes do, so memory stays bounded.
            let mut at = offset;
            while at < end.min(f.size()) {
                let piece = (end - at).min(self.opts.dirty_limit.max(PAGE));
                f.zero_range(self.store.as_ref(), at, piece)?;
                if !committing && f.dirty_bytes() > self.opts.dirty_limit {
                    f.commit(self.store.as_ref(), &self.opts.blockify)?;
                }
                at += piece;
            }
        }
        if grows {
            f.truncate(end);
        }
        if zeroes_data || grows {
            let t = now_ns();
            n.meta.mtime_ns = Some(t);
            n.ctime_ns = t;
            st.changed = true;
        }
        Ok(())
    }

    /// A new node's meta: mode, owner (group from a setgid parent), times.
    fn new_meta(
        &self,
        st: &State,
        parent: Ino,
        mode: u32,
        caller: Caller,
        dir: bool,
    ) -> FsResult<Meta> {
        let p = st.node(parent)?;
        let mut m = Meta::default();
        let inherit = p.meta.setgid;
        let mut mode = mode & 0o7777;
        if inherit && dir {
            mode |= 0o2000;
        }
        m.set_mode(mode);
        let gid = if inherit {
            self.owner_id(&p.meta.group, false)
        } else {
            caller.gid
        };
        self.set_owner(&mut m, Some(caller.uid), Some(gid));
        m.mtime_ns = Some(now_ns());
        Ok(m)
    }

    /// Adds `node` as `name` in `parent`, which must not hold that name.
    fn add_entry(&self, st: &mut State, parent: Ino, name: &[u8], node: Node) -> FsResult<Ino> {
        Self::check_name(name)?;
        Self::check_live_dir(st, parent)?;
        if st.children(self.st(), parent)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        let ino = st.insert(node);
        st.children_mut(self.st(), parent)?
            .insert(name.to_vec(), ino);
        Self::touch_dir(st, parent);
        st.changed = true;
        Ok(ino)
    }

    /// Fails with `ENOENT` when `dir` was removed (it may still be someone's
    /// working directory); nothing can be added to it.
    fn check_live_dir(st: &State, dir: Ino) -> FsResult<()> {
        match st.node(dir)? {
            n if n.is_dir() && n.nlink == 0 => Err(FsError::NotFound),
            _ => Ok(()),
        }
    }

    fn touch_dir(st: &mut State, dir: Ino) {
        if let Some(n) = st.nodes.get_mut(&dir) {
            let t = now_ns();
            n.meta.mtime_ns = Some(t);
            n.ctime_ns = t;
        }
    }

    /// Creates and opens a regular file. Returns its attributes and a handle.
    pub fn create(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        caller: Caller,
    ) -> FsResult<(Attr, u64)> {
        self.check_write()?;
        let mut st = self.state.lock();
        let meta = self.new_meta(&st, parent, mode, caller, false)?;
        let node = Node::new(Body::File(FileBuf::new(BlockRef::empty())), meta, parent);
        let ino = self.add_entry(&mut st, parent, name, node)?;
        let fh = Self::new_handle(&mut st, ino);
        Ok((self.entry_locked(&mut st, ino)?, fh))
    }

    /// Creates a regular file, named pipe or device node (`mode` holds the type bits).
    pub fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.check_write()?;
        use crate::tree::SpecialKind as K;
        let kind = match mode & libc::S_IFMT {
            0 | libc::S_IFREG => None,
            libc::S_IFIFO => Some(K::Fifo),
            libc::S_IFCHR => Some(K::Char),
            libc::S_IFBLK => Some(K::Block),
            libc::S_IFSOCK => Some(K::Socket),
            _ => return Err(FsError::Invalid),
        };
        let mut st = self.state.lock();
        let mut meta = self.new_meta(&st, parent, mode, caller, false)?;
        if let Some(k) = kind {
            meta.other.insert(
                crate::tree::K_FTYPE.into(),
                Json::Str(JStr::from_text(k.name())),
            );
            if matches!(k, K::Char | K::Block) {
                meta.other
                    .insert(crate::tree::K_RDEV.into(), Json::Num(rdev.to_string()));
            }
        }
        let node = Node::new(Body::File(FileBuf::new(BlockRef::empty())), meta, parent);
        let ino = self.add_entry(&mut st, parent, name, node)?;
        self.entry_locked(&mut st, ino)
    }

    /// Creates a directory.
    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32, caller: Caller) -> FsResult<Attr> {
        self.check_write()?;
        let mut st = self.state.lock();
        let meta = self.new_meta(&st, parent, mode, caller, true)?;
        let body = Body::Dir(DirNode {
            block: BlockRef::empty(),
            children: Some(BTreeMap::new()),
            cache: None,
        });
        let ino = self.add_entry(&mut st, parent, name, Node::new(body, meta, parent))?;
        self.entry_locked(&mut st, ino)
    }

    /// Creates a symbolic link to `target`.
    pub fn symlink(
        &self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> FsResult<Attr> {
        self.check_write()?;
        if target.is_empty() || target.contains(&0) {
            return Err(FsError::Invalid);
        }
        let mut st = self.state.lock();
        let mut meta = self.new_meta(&st, parent, 0o777, caller, false)?;
        meta.acl = None;
        meta.pathref = Some(target.to_vec());
        let ino = self.add_entry(
            &mut st,
            parent,
            name,
            Node::new(Body::Symlink, meta, parent),
        )?;
        self.entry_locked(&mut st, ino)
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let st = self.state.lock();
        let n = st.node(ino)?;
        match (&n.body, &n.meta.pathref) {
            (Body::Symlink, Some(p)) => Ok(p.clone()),
            _ => Err(FsError::Invalid),
        }
    }

    /// Adds a hard link to `ino` as `name` in `parent`.
    pub fn link(&self, ino: Ino, parent: Ino, name: &[u8]) -> FsResult<Attr> {
        self.check_write()?;
        let mut st = self.state.lock();
        if st.node(ino)?.is_dir() {
            return Err(FsError::Perm);
        }
        Self::check_name(name)?;
        Self::check_live_dir(&st, parent)?;
        if st.children(self.st(), parent)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        let n = st.node_mut(ino)?;
        if n.nlink == 0 {
            // A removed file cannot get a name again (as with linkat(2)).
            return Err(FsError::NotFound);
        }
        n.nlink += 1;
        n.ctime_ns = now_ns();
        st.children_mut(self.st(), parent)?
            .insert(name.to_vec(), ino);
        Self::touch_dir(&mut st, parent);
        st.changed = true;
        self.entry_locked(&mut st, ino)
    }

    /// Removes a non-directory entry.
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        self.check_destructive()?;
        let mut st = self.state.lock();
        let ino = *st
            .children(self.st(), parent)?
            .get(name)
            .ok_or(FsError::NotFound)?;
        if st.node(ino)?.is_dir() {
            return Err(FsError::IsDir);
        }
        st.children_mut(self.st(), parent)?.remove(name);
        Self::touch_dir(&mut st, parent);
        Self::drop_link(&mut st, ino);
        st.changed = true;
        Ok(())
    }

    /// One link of `ino` is gone (a directory's only one): free the node when
    /// nothing refers to it any more.
    fn drop_link(st: &mut State, ino: Ino) {
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.nlink = if n.is_dir() {
                0
            } else {
                n.nlink.saturating_sub(1)
            };
            n.ctime_ns = now_ns();
            if n.is_unreferenced() {
                st.free(ino);
            }
        }
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        self.check_destructive()?;
        if name == b"." {
            return Err(FsError::Invalid);
        }
        if name == b".." {
            return Err(FsError::NotEmpty);
        }
        let mut st = self.state.lock();
        let ino = *st
            .children(self.st(), parent)?
            .get(name)
            .ok_or(FsError::NotFound)?;
        if !st.node(ino)?.is_dir() {
            return Err(FsError::NotDir);
        }
        if !st.children(self.st(), ino)?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        st.children_mut(self.st(), parent)?.remove(name);
        Self::touch_dir(&mut st, parent);
        Self::drop_link(&mut st, ino);
        st.changed = true;
        Ok(())
    }

    /// True when `dir` is `ancestor` or lies below it.
    fn is_within(st: &State, mut dir: Ino, ancestor: Ino) -> bool {
        loop {
            if dir == ancestor {
                return true;
            }
            match st.nodes.get(&dir) {
                Some(n) if dir != ROOT_INO => dir = n.parent,
                _ => return false,
            }
        }
    }

    /// Renames `parent/name` to `newparent/newname`.
    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        how: RenameMode,
    ) -> FsResult<()> {
        self.check_destructive()?;
        Self::check_name(newname)?;
        let mut st = self.state.lock();
        Self::check_live_dir(&st, newparent)?;
        let src = *st
            .children(self.st(), parent)?
            .get(name)
            .ok_or(FsError::NotFound)?;
        let dst = st.children(self.st(), newparent)?.get(newname).copied();
        let src_dir = st.node(src)?.is_dir();
        if src_dir && Self::is_within(&st, newparent, src) {
            return Err(FsError::Invalid);
        }
        match (how, dst) {
            (RenameMode::Exchange, None) => return Err(FsError::NotFound),
            (RenameMode::Exchange, Some(d)) => {
                if st.node(d)?.is_dir() && Self::is_within(&st, parent, d) {
                    return Err(FsError::Invalid);
                }
                return self.exchange(&mut st, (parent, name, src), (newparent, newname, d));
            }
            (RenameMode::NoReplace, Some(_)) => return Err(FsError::Exists),
            _ => {}
        }
        if let Some(d) = dst {
            if d == src {
                return Ok(());
            }
            let dst_dir = st.node(d)?.is_dir();
            match (src_dir, dst_dir) {
                (false, true) => return Err(FsError::IsDir),
                (true, false) => return Err(FsError::NotDir),
                (true, true) if !st.children(self.st(), d)?.is_empty() => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
        }
        st.children_mut(self.st(), parent)?.remove(name);
        st.children_mut(self.st(), newparent)?
            .insert(newname.to_vec(), src);
        if let Some(d) = dst {
            Self::drop_link(&mut st, d);
        }
        let t = now_ns();
        let n = st.node_mut(src)?;
        n.parent = if src_dir { newparent } else { n.parent };
        n.ctime_ns = t;
        Self::touch_dir(&mut st, parent);
        Self::touch_dir(&mut st, newparent);
        st.changed = true;
        Ok(())
    }

    fn exchange(&self, st: &mut State, a: (Ino, &[u8], Ino), b: (Ino, &[u8], Ino)) -> FsResult<()> {
        st.children_mut(self.st(), a.0)?.insert(a.1.to_vec(), b.2);
        st.children_mut(self.st(), b.0)?.insert(b.1.to_vec(), a.2);
        for (ino, parent) in [(a.2, b.0), (b.2, a.0)] {
            let n = st.node_mut(ino)?;
            if n.is_dir() {
                n.parent = parent;
            }
            n.ctime_ns = now_ns();
        }
        Self::touch_dir(st, a.0);
        Self::touch_dir(st, b.0);
        st.changed = true;
        Ok(())
    }

    /// Changes attributes; returns the new attributes.
    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> FsResult<Attr> {
        self.check_write()?;
        let mut st = self.state.lock();
        let n = st.node_mut(ino)?;
        if let Some(size) = set.size {
            let Body::File(f) = &mut n.body else {
                return Err(if n.is_dir() {
                    FsError::IsDir
                } else {
                    FsError::Invalid
                });
            };
            if size > MAX_FILE_SIZE {
                return Err(FsError::TooBig);
            }
            if size < f.size() && self.opts.mode == FsMode::AppendOnly {
                return Err(FsError::Perm);
            }
            if size != f.size() {
                f.truncate(size);
                n.meta.mtime_ns = Some(now_ns());
            }
        }
        if let Some(mode) = set.mode {
            if !matches!(n.body, Body::Symlink) {
                n.meta.set_mode(mode & 0o7777);
            }
        }
        let owner_changes = set.uid.is_some() || set.gid.is_some();
        self.set_owner(&mut n.meta, set.uid, set.gid);
        if owner_changes && !n.is_dir() {
            // chown clears setuid/setgid, as on local filesystems.
            n.meta.setuid = false;
            if n.meta.mode() & 0o010 != 0 {
                n.meta.setgid = false;
            }
        }
        if let Some(t) = set.atime {
            n.atime_ns = ns_of(t);
        }
        if let Some(t) = set.mtime {
            n.meta.mtime_ns = Some(ns_of(t));
        }
        n.ctime_ns = now_ns();
        st.changed = true;
        self.attr_locked(&mut st, ino)
    }

    /// The value of extended attribute `name`; `x-vt-block` gives a file's content
    /// reference (committing pending writes first).
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
        if name == XATTR_BLOCK {
            self.committer.commit_file(ino)?;
        }
        let mut st = self.state.lock();
        if name == XATTR_BLOCK {
            // A write may have come in since: commit it too (under the lock).
            self.committer.wait_for(&mut st, ino);
        }
        let n = st.node_mut(ino)?;
        if name == XATTR_BLOCK {
            let r = match &mut n.body {
                Body::File(f) => {
                    if f.is_dirty() {
                        f.commit(self.store.as_ref(), &self.opts.blockify)?;
                    }
                    f.base().clone()
                }
                Body::Dir(d) => d
                    .cache
                    .as_ref()
                    .map_or_else(|| d.block.clone(), |c| c.1.clone()),
                Body::Symlink => return Err(FsError::NoAttr),
            };
            return Ok(r.to_string().into_bytes());
        }
        match n.meta.xattr(name) {
            Some(v) => Ok(v.to_vec()),
            // "Not supported" rather than "no such attribute": `ls -l` then stops
            // asking for every file, which halves the requests of `ls -lR`.
            None if name.starts_with(b"system.") || name == b"security.selinux" => {
                Err(FsError::NotSupported)
            }
            None => Err(FsError::NoAttr),
        }
    }

    /// Sets extended attribute `name`.
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], how: XattrMode) -> FsResult<()> {
        self.check_write()?;
        if name == XATTR_BLOCK {
            return Err(FsError::Perm);
        }
        // POSIX ACLs are not kept: refusing them makes tools fall back to chmod.
        if name.starts_with(b"system.") {
            return Err(FsError::NotSupported);
        }
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(if name.is_empty() {
                FsError::Invalid
            } else {
                FsError::NameTooLong
            });
        }
        let mut st = self.state.lock();
        let n = st.node_mut(ino)?;
        let exists = n.meta.xattr(name).is_some();
        match how {
            XattrMode::Create if exists => return Err(FsError::Exists),
            XattrMode::Replace if !exists => return Err(FsError::NoAttr),
            _ => {}
        }
        if exists && self.opts.mode == FsMode::AppendOnly {
            return Err(FsError::Perm);
        }
        n.meta.set_xattr(name, value);
        n.ctime_ns = now_ns();
        st.changed = true;
        Ok(())
    }

    /// Names of the extended attributes of `ino` (not including `x-vt-block`).
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<Vec<u8>>> {
        let st = self.state.lock();
        Ok(st
            .node(ino)?
            .meta
            .xattrs
            .iter()
            .map(|(k, _)| k.clone())
            .collect())
    }

    /// Removes extended attribute `name`.
    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> FsResult<()> {
        self.check_destructive()?;
        if name == XATTR_BLOCK {
            return Err(FsError::Perm);
        }
        let mut st = self.state.lock();
        let n = st.node_mut(ino)?;
        n.meta.remove_xattr(name).ok_or(FsError::NoAttr)?;
        n.ctime_ns = now_ns();
        st.changed = true;
        Ok(())
    }

    /// Filesystem statistics (the store has no fixed size: free space is reported large).
    pub fn statfs(&self) -> StatFs {
        let st = self.state.lock();
        StatFs {
            bsize: 4096,
            blocks: 1 << 32,
            bfree: 1 << 31,
            files: st.nodes.len() as u64 + (1 << 31),
            ffree: 1 << 31,
            namelen: NAME_MAX as u32,
        }
    }

    /// How many inodes are held in memory (loaded entries, open or
    /// referenced removed files).
    pub fn inodes_in_memory(&self) -> usize {
        self.state.lock().nodes.len()
    }

    /// True when something changed since the last [`Fs::sync`].
    pub fn is_changed(&self) -> bool {
        self.state.lock().changed
    }

    /// Commits all files, stores changed directories, and returns the root dirent
    /// (unnamed). Returns `None` when nothing changed since the last sync. Does
    /// not flush the store: the caller does that before recording the root.
    pub fn sync(&self) -> FsResult<Option<Dirent>> {
        if !self.state.lock().changed {
            return Ok(None);
        }
        self.commit_all()?;
        let mut st = self.state.lock();
        if !st.changed {
            return Ok(None);
        }
        self.committer.wait_idle(&mut st);
        Ok(Some(self.root_locked(&mut st)?))
    }

    /// The current root dirent (unnamed), committing and storing what changed.
    /// Fails with `EROFS` on a read-only filesystem with pending changes (it has none).
    pub fn root(&self) -> FsResult<Dirent> {
        self.commit_all()?;
        let mut st = self.state.lock();
        self.committer.wait_idle(&mut st);
        self.root_locked(&mut st)
    }

    /// Commits every modified file, each outside the lock, so other requests go on
    /// meanwhile. What is written during this is committed under the lock later.
    fn commit_all(&self) -> FsResult<()> {
        let dirty: Vec<Ino> = {
            let st = self.state.lock();
            st.nodes
                .iter()
                .filter(|(_, n)| matches!(&n.body, Body::File(f) if f.is_dirty()))
                .map(|(&ino, _)| ino)
                .collect()
        };
        for ino in dirty {
            self.committer.commit_file(ino)?;
        }
        Ok(())
    }

    fn root_locked(&self, st: &mut State) -> FsResult<Dirent> {
        st.commit_files(self.store.as_ref(), &self.opts.blockify)?;
        let mut emitted = HashSet::new();
        let root = st.dirent_of(
            self.store.as_ref(),
            &self.opts.blockify,
            ROOT_INO,
            b"",
            &mut emitted,
        )?;
        st.changed = false;
        st.unload_forgotten();
        Ok(root)
    }
}
