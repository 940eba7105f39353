//! The inode table: nodes, lazy directory loading, hard-link resolution,
//! turning the in-memory tree back into dirents, and freeing what the kernel
//! has forgotten.
//!
//! Each entry reply to the kernel counts one reference (`nlookup`); `forget`
//! drops them. A node with no links, no opens and no references is freed. A
//! directory the kernel has forgotten is unloaded when it holds no unsaved
//! changes and all its entries are forgotten too: its child nodes are dropped
//! and only their inode numbers are remembered (8 bytes each), so reloading it
//! gives every entry its old number back.

use super::cache::{decode_dir, DecodedDir, DirCache};
use super::error::{FsError, FsResult};
use super::file::FileBuf;
use super::Ino;
use crate::block::BlockRef;
use crate::blockify::{blockify_bytes, BlockifyOptions};
use crate::dir::{self, Dirent, DirentKind, Meta};
use crate::store::{Store, StoreSink};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// A directory's entries: loaded on first use from `block`.
#[derive(Debug)]
pub(crate) struct DirNode {
    /// The stored entries (original, or as of the last sync).
    pub block: BlockRef,
    /// Name → inode, once loaded.
    pub children: Option<BTreeMap<Vec<u8>, Ino>>,
    /// Hash of the last encoding and its reference, to skip re-storing.
    pub cache: Option<([u8; 32], BlockRef)>,
}

/// What a node holds.
#[derive(Debug)]
pub(crate) enum Body {
    /// Regular file (or special file recorded as one).
    File(FileBuf),
    /// Directory.
    Dir(DirNode),
    /// Symbolic link; the target is `meta.pathref`.
    Symlink,
}

/// One inode.
#[derive(Debug)]
pub(crate) struct Node {
    pub body: Body,
    pub meta: Meta,
    /// Link count for files and symlinks (directories compute theirs).
    pub nlink: u32,
    /// Parent directory, for directories.
    pub parent: Ino,
    /// Hard-link identity.
    pub uuid: Option<Uuid>,
    /// A hard link seen before its target file (filled in when the file is found).
    pub pending: bool,
    /// Access and change times in ns; not stored in dirents.
    pub atime_ns: i128,
    pub ctime_ns: i128,
    /// Open file handles.
    pub opens: u32,
    /// How far read-ahead was asked for; a read near it extends it.
    pub ra_until: u64,
    /// A commit of this file runs outside the lock (see `commit.rs`).
    pub committing: bool,
    /// References handed to the kernel (entry replies) not yet forgotten.
    pub nlookup: u64,
}

impl Node {
    pub fn new(body: Body, meta: Meta, parent: Ino) -> Node {
        let t = meta.mtime_ns.unwrap_or_else(super::now_ns);
        Node {
            body,
            meta,
            nlink: 1,
            parent,
            uuid: None,
            pending: false,
            atime_ns: t,
            ctime_ns: t,
            opens: 0,
            ra_until: 0,
            committing: false,
            nlookup: 0,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir(_))
    }

    /// True when nothing refers to the node any more: no links (a removed
    /// directory has none), no open handles, no kernel references, and no
    /// commit running outside the lock (the committer frees it when done).
    pub fn is_unreferenced(&self) -> bool {
        self.nlink == 0 && self.opens == 0 && self.nlookup == 0 && !self.committing
    }

    /// Access and change times when they differ from what loading the node's
    /// dirent again would give (both equal to the mtime).
    fn times_to_keep(&self) -> Option<(i128, i128)> {
        match self.meta.mtime_ns {
            Some(m) if self.atime_ns == m && self.ctime_ns == m => None,
            _ => Some((self.atime_ns, self.ctime_ns)),
        }
    }

    /// The dirent of a node that is not a loaded directory and has a single link.
    fn plain_dirent(&self, name: &[u8]) -> Dirent {
        let mut e = match &self.body {
            Body::Dir(d) => Dirent::dir(name, d.block.clone()),
            Body::Symlink => Dirent::new(DirentKind::Symlink, name),
            Body::File(f) => Dirent::file(name, f.base().clone()),
        };
        e.meta = self.meta.clone();
        e
    }
}

/// The mutable state behind the filesystem's lock.
#[derive(Debug)]
pub(crate) struct State {
    pub nodes: HashMap<Ino, Box<Node>>,
    pub next_ino: Ino,
    /// Open handles: handle → inode.
    pub handles: HashMap<u64, Ino>,
    pub next_fh: u64,
    /// Hard-link identities met while loading.
    links: HashMap<Uuid, Ino>,
    /// Set once the whole tree was loaded (done when the first hard link shows up,
    /// so link counts are right and every link of a file is known).
    all_loaded: bool,
    /// True when something changed since the last sync.
    pub changed: bool,
    /// Inode numbers of the entries of unloaded directories, in name order.
    remembered: HashMap<Ino, Vec<Ino>>,
    /// Access and change times of unloaded nodes that differ from their mtime.
    times: HashMap<Ino, (i128, i128)>,
    /// Directories decoded ahead by the read-ahead thread.
    prefetched: Arc<DirCache>,
}

impl State {
    pub fn new(root: Node, prefetched: Arc<DirCache>) -> State {
        let mut nodes = HashMap::new();
        nodes.insert(super::ROOT_INO, Box::new(root));
        State {
            nodes,
            next_ino: super::ROOT_INO + 1,
            handles: HashMap::new(),
            next_fh: 1,
            links: HashMap::new(),
            all_loaded: false,
            changed: false,
            remembered: HashMap::new(),
            times: HashMap::new(),
            prefetched,
        }
    }

    pub fn node(&self, ino: Ino) -> FsResult<&Node> {
        self.nodes.get(&ino).map(|n| &**n).ok_or(FsError::NotFound)
    }

    pub fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node> {
        self.nodes
            .get_mut(&ino)
            .map(|n| &mut **n)
            .ok_or(FsError::NotFound)
    }

    pub fn insert(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, Box::new(node));
        ino
    }

    /// Inserts a reloaded node under its remembered number (a new one if none),
    /// with its remembered times.
    fn reinsert(&mut self, mut node: Node, ino: Option<Ino>) -> Ino {
        let Some(ino) = ino else {
            return self.insert(node);
        };
        if let Some((a, c)) = self.times.remove(&ino) {
            node.atime_ns = a;
            node.ctime_ns = c;
        }
        self.nodes.insert(ino, Box::new(node));
        ino
    }

    /// Removes a node and what is remembered about it.
    pub fn free(&mut self, ino: Ino) {
        self.nodes.remove(&ino);
        self.remembered.remove(&ino);
        self.times.remove(&ino);
    }

    /// The loaded entries of directory `ino`, loading them first.
    pub fn children(&mut self, store: &dyn Store, ino: Ino) -> FsResult<&BTreeMap<Vec<u8>, Ino>> {
        self.load_dir(store, ino)?;
        match &self.node(ino)?.body {
            Body::Dir(DirNode {
                children: Some(c), ..
            }) => Ok(c),
            _ => Err(FsError::NotDir),
        }
    }

    /// Mutable entries of directory `ino`, loading them first.
    pub fn children_mut(
        &mut self,
        store: &dyn Store,
        ino: Ino,
    ) -> FsResult<&mut BTreeMap<Vec<u8>, Ino>> {
        self.load_dir(store, ino)?;
        match &mut self.node_mut(ino)?.body {
            Body::Dir(DirNode {
                children: Some(c), ..
            }) => Ok(c),
            _ => Err(FsError::NotDir),
        }
    }

    /// Loads directory `ino`'s entries if not yet loaded.
    pub fn load_dir(&mut self, store: &dyn Store, ino: Ino) -> FsResult<()> {
        let block = match &self.node(ino)?.body {
            Body::Dir(d) if d.children.is_none() => d.block.clone(),
            Body::Dir(_) => return Ok(()),
            _ => return Err(FsError::NotDir),
        };
        let DecodedDir { entries, digest } = match self.prefetched.take(&block) {
            Some(d) => d,
            None => decode_dir(store, &block)?,
        };
        let saw_link = entries
            .iter()
            .any(|e| e.uuid.is_some() || e.kind == DirentKind::Indirect);
        let mut numbers = self.remembered_numbers(ino, &entries).into_iter();
        self.nodes.reserve(entries.len());
        let mut named = Vec::with_capacity(entries.len());
        for mut e in entries {
            // Nodes keep no name: the entry's moves into the listing.
            let name = std::mem::take(&mut e.name);
            let child = match numbers.next().flatten() {
                Some(n) if !saw_link => self.reinsert(Self::plain_node(e, ino), Some(n)),
                _ => self.node_from_dirent(e, ino),
            };
            named.push((name, child));
        }
        // Stored entries come sorted by name, which makes this a linear bulk build.
        let children: BTreeMap<Vec<u8>, Ino> = named.into_iter().collect();
        if let Body::Dir(d) = &mut self.node_mut(ino)?.body {
            d.children = Some(children);
            d.cache = Some((digest, block));
        }
        if saw_link && !self.all_loaded {
            self.all_loaded = true;
            self.load_all(store)?;
        }
        Ok(())
    }

    /// The remembered inode number of each of `entries` (the stored entries of
    /// unloaded directory `ino`, which are the ones it had when unloaded).
    fn remembered_numbers(&mut self, ino: Ino, entries: &[Dirent]) -> Vec<Option<Ino>> {
        let mut out = vec![None; entries.len()];
        let Some(inos) = self.remembered.remove(&ino) else {
            return out;
        };
        if inos.len() != entries.len() {
            return out;
        }
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|a, b| entries[*a].name.cmp(&entries[*b].name));
        for (k, i) in order.into_iter().enumerate() {
            out[i] = Some(inos[k]);
        }
        out
    }

    /// The node for a stored entry that is not a hard link.
    fn plain_node(e: Dirent, parent: Ino) -> Node {
        let block = e.block.unwrap_or_else(BlockRef::empty);
        let body = match e.kind {
            DirentKind::Dir => Body::Dir(DirNode {
                block,
                children: None,
                cache: None,
            }),
            DirentKind::Symlink => Body::Symlink,
            DirentKind::File | DirentKind::Indirect => Body::File(FileBuf::new(block)),
        };
        Node::new(body, e.meta, parent)
    }

    /// Drops `n` kernel references to `ino`, then frees the node if nothing
    /// refers to it, or unloads it (and then its parents, as far as they are
    /// forgotten too) if it is a directory without unsaved changes.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.nlookup = node.nlookup.saturating_sub(n);
        if node.nlookup > 0 {
            return;
        }
        if node.is_unreferenced() {
            self.free(ino);
            return;
        }
        let mut dir = ino;
        while self.unload(dir) {
            match self.nodes.get(&dir) {
                Some(d) if d.parent != dir && d.parent != super::ROOT_INO => dir = d.parent,
                _ => break,
            }
            if self.nodes.get(&dir).is_none_or(|d| d.nlookup > 0) {
                break;
            }
        }
    }

    /// Unloads every forgotten directory that can be (deepest first): after a
    /// sync, directories forgotten while they held changes are clean again.
    pub fn unload_forgotten(&mut self) {
        if self.all_loaded {
            return;
        }
        let mut dirs: Vec<(usize, Ino)> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.nlookup == 0
                    && matches!(
                        &n.body,
                        Body::Dir(DirNode {
                            children: Some(_),
                            ..
                        })
                    )
            })
            .map(|(ino, _)| (self.depth(*ino), *ino))
            .collect();
        dirs.sort_unstable_by(|a, b| b.cmp(a));
        for (_, ino) in dirs {
            self.unload(ino);
        }
    }

    /// How many directories lie above `ino`.
    fn depth(&self, mut ino: Ino) -> usize {
        let mut d = 0;
        while let Some(n) = self.nodes.get(&ino) {
            if ino == super::ROOT_INO || n.parent == ino || d > self.nodes.len() {
                break;
            }
            ino = n.parent;
            d += 1;
        }
        d
    }

    /// Unloads directory `ino` if it and all its entries are forgotten and it
    /// equals its stored encoding. Returns true when it is (now) unloaded.
    fn unload(&mut self, ino: Ino) -> bool {
        if ino == super::ROOT_INO || self.all_loaded {
            return false;
        }
        let Some(node) = self.nodes.get(&ino) else {
            return false;
        };
        let Body::Dir(d) = &node.body else {
            return false;
        };
        let (Some(children), Some((hash, _))) = (&d.children, &d.cache) else {
            return d.children.is_none();
        };
        if node.nlookup > 0 || node.nlink == 0 {
            return false;
        }
        let mut entries = Vec::with_capacity(children.len());
        for (name, child) in children {
            let Some(c) = self.nodes.get(child) else {
                return false;
            };
            let clean = match &c.body {
                Body::File(f) => !f.is_dirty(),
                Body::Dir(cd) => cd.children.is_none(),
                Body::Symlink => true,
            };
            if !clean
                || c.committing
                || c.nlookup > 0
                || c.opens > 0
                || c.nlink != 1
                || c.uuid.is_some()
            {
                return false;
            }
            entries.push(c.plain_dirent(name));
        }
        match dir::encode_entries(&entries) {
            Ok(bytes) if blake3::hash(&bytes).as_bytes() == hash => {}
            _ => return false,
        }
        let inos: Vec<Ino> = children.values().copied().collect();
        for child in &inos {
            if let Some(c) = self.nodes.remove(child) {
                if let Some(t) = c.times_to_keep() {
                    self.times.insert(*child, t);
                }
            }
        }
        self.remembered.insert(ino, inos);
        if let Some(Body::Dir(d)) = self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            d.children = None;
        }
        true
    }

    /// Loads every directory of the tree.
    fn load_all(&mut self, store: &dyn Store) -> FsResult<()> {
        let mut stack = vec![super::ROOT_INO];
        while let Some(ino) = stack.pop() {
            let kids: Vec<Ino> = self.children(store, ino)?.values().copied().collect();
            stack.extend(
                kids.into_iter()
                    .filter(|k| self.nodes.get(k).is_some_and(|n| n.is_dir())),
            );
        }
        Ok(())
    }

    /// Creates (or, for hard links, finds) the node for a stored entry.
    pub fn node_from_dirent(&mut self, e: Dirent, parent: Ino) -> Ino {
        let block = e.block.clone().unwrap_or_else(BlockRef::empty);
        match (e.kind, e.uuid) {
            (DirentKind::Dir | DirentKind::Symlink, _)
            | (DirentKind::File | DirentKind::Indirect, None) => {
                self.insert(Self::plain_node(e, parent))
            }
            (DirentKind::File, Some(u)) => match self.links.get(&u).copied() {
                Some(ino) => {
                    let n = self.nodes.get_mut(&ino).expect("linked inode exists");
                    if n.pending {
                        n.body = Body::File(FileBuf::new(block));
                        n.meta = e.meta;
                        n.pending = false;
                    }
                    n.nlink += 1;
                    ino
                }
                None => self.new_linked(u, Body::File(FileBuf::new(block)), e.meta, parent, false),
            },
            (DirentKind::Indirect, Some(u)) => match self.links.get(&u).copied() {
                Some(ino) => {
                    if let Some(n) = self.nodes.get_mut(&ino) {
                        n.nlink += 1;
                    }
                    ino
                }
                None => {
                    let body = Body::File(FileBuf::new(BlockRef::empty()));
                    self.new_linked(u, body, e.meta, parent, true)
                }
            },
        }
    }

    fn new_linked(&mut self, u: Uuid, body: Body, meta: Meta, parent: Ino, pending: bool) -> Ino {
        let mut n = Node::new(body, meta, parent);
        n.uuid = Some(u);
        n.pending = pending;
        let ino = self.insert(n);
        self.links.insert(u, ino);
        ino
    }

    /// Commits every modified file's buffer to the store.
    /// Removed files still open are left alone: nothing will store them.
    pub fn commit_files(&mut self, store: &dyn Store, opts: &BlockifyOptions) -> FsResult<()> {
        for n in self.nodes.values_mut().filter(|n| n.nlink > 0) {
            if let Body::File(f) = &mut n.body {
                if f.is_dirty() {
                    f.commit(store, opts)?;
                }
            }
        }
        Ok(())
    }

    /// The dirent for `ino` named `name`, storing re-encoded directories.
    /// Files with several links get a UUID; the first link met is written as
    /// the file, the others as `Indirect` entries.
    pub fn dirent_of(
        &mut self,
        store: &dyn Store,
        opts: &BlockifyOptions,
        ino: Ino,
        name: &[u8],
        emitted: &mut HashSet<Ino>,
    ) -> FsResult<Dirent> {
        let (kids, nlink) = {
            let n = self.node(ino)?;
            match &n.body {
                Body::Dir(DirNode {
                    children: Some(c), ..
                }) => (
                    Some(c.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>()),
                    0,
                ),
                _ => (None, n.nlink),
            }
        };
        if let Some(kids) = kids {
            let mut entries = Vec::with_capacity(kids.len());
            for (k, child) in kids {
                entries.push(self.dirent_of(store, opts, child, &k, emitted)?);
            }
            let bytes = dir::encode_entries(&entries)?;
            let h = *blake3::hash(&bytes).as_bytes();
            let n = self.node_mut(ino)?;
            let Body::Dir(d) = &mut n.body else {
                return Err(FsError::NotDir);
            };
            let block = match &d.cache {
                Some((ch, b)) if *ch == h => b.clone(),
                _ => {
                    let b = blockify_bytes(&bytes, &StoreSink(store), opts)?;
                    d.cache = Some((h, b.clone()));
                    b
                }
            };
            d.block = block.clone();
            let mut e = Dirent::dir(name, block);
            e.meta = n.meta.clone();
            return Ok(e);
        }
        let first = emitted.insert(ino);
        let n = self.node_mut(ino)?;
        let mut e = n.plain_dirent(name);
        if nlink > 1 && !n.is_dir() {
            let u = *n.uuid.get_or_insert_with(Uuid::new_v4);
            if first {
                e.uuid = Some(u);
            } else {
                e = Dirent {
                    meta: n.meta.clone(),
                    ..Dirent::indirect(name, u)
                };
            }
        }
        Ok(e)
    }
}
