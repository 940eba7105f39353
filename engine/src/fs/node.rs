//! The inode table: nodes, lazy directory loading, hard-link resolution, and
//! turning the in-memory tree back into dirents.

use super::error::{FsError, FsResult};
use super::file::FileBuf;
use super::Ino;
use crate::block::BlockRef;
use crate::blockify::{blockify_bytes, BlockifyOptions};
use crate::dir::{self, Dirent, DirentKind, Meta};
use crate::read;
use crate::store::{Store, StoreSink};
use std::collections::{BTreeMap, HashMap, HashSet};
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
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir(_))
    }
}

/// The mutable state behind the filesystem's lock.
#[derive(Debug)]
pub(crate) struct State {
    pub nodes: HashMap<Ino, Node>,
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
}

impl State {
    pub fn new(root: Node) -> State {
        let mut nodes = HashMap::new();
        nodes.insert(super::ROOT_INO, root);
        State {
            nodes,
            next_ino: super::ROOT_INO + 1,
            handles: HashMap::new(),
            next_fh: 1,
            links: HashMap::new(),
            all_loaded: false,
            changed: false,
        }
    }

    pub fn node(&self, ino: Ino) -> FsResult<&Node> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    pub fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    pub fn insert(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
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
        let bytes = read::read_all(store, &block)?;
        let entries = dir::decode_entries(&bytes)?;
        let mut saw_link = false;
        let mut children = BTreeMap::new();
        for e in entries {
            saw_link |= e.uuid.is_some() || e.kind == DirentKind::Indirect;
            let name = e.name.clone();
            let child = self.node_from_dirent(e, ino);
            children.insert(name, child);
        }
        if let Body::Dir(d) = &mut self.node_mut(ino)?.body {
            d.children = Some(children);
            d.cache = Some((*blake3::hash(&bytes).as_bytes(), block));
        }
        if saw_link && !self.all_loaded {
            self.all_loaded = true;
            self.load_all(store)?;
        }
        Ok(())
    }

    /// Loads every directory of the tree.
    fn load_all(&mut self, store: &dyn Store) -> FsResult<()> {
        let mut stack = vec![super::ROOT_INO];
        while let Some(ino) = stack.pop() {
            let kids: Vec<Ino> = self.children(store, ino)?.values().copied().collect();
            stack.extend(
                kids.into_iter()
                    .filter(|k| self.nodes.get(k).is_some_and(Node::is_dir)),
            );
        }
        Ok(())
    }

    /// Creates (or, for hard links, finds) the node for a stored entry.
    pub fn node_from_dirent(&mut self, e: Dirent, parent: Ino) -> Ino {
        let block = e.block.clone().unwrap_or_else(BlockRef::empty);
        match (e.kind, e.uuid) {
            (DirentKind::Dir, _) => {
                let body = Body::Dir(DirNode {
                    block,
                    children: None,
                    cache: None,
                });
                self.insert(Node::new(body, e.meta, parent))
            }
            (DirentKind::Symlink, _) => self.insert(Node::new(Body::Symlink, e.meta, parent)),
            (DirentKind::File, None) | (DirentKind::Indirect, None) => {
                self.insert(Node::new(Body::File(FileBuf::new(block)), e.meta, parent))
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
    pub fn commit_files(&mut self, store: &dyn Store, opts: &BlockifyOptions) -> FsResult<()> {
        for n in self.nodes.values_mut() {
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
        let mut e = match &n.body {
            Body::Dir(d) => Dirent::dir(name, d.block.clone()),
            Body::Symlink => Dirent::new(DirentKind::Symlink, name),
            Body::File(f) => Dirent::file(name, f.base().clone()),
        };
        e.meta = n.meta.clone();
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
