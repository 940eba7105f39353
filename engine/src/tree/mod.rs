//! Trees: packing directories into the store, restoring them, and browsing stored trees.

mod meta;
mod pack;
mod restore;

pub use meta::{dirent_meta, os_meta, special_of, SpecialKind, K_FTYPE, K_RDEV};
pub use pack::pack;
pub use restore::{read_dir_entries, restore};

use crate::block::BlockRef;
use crate::blockify::BlockifyOptions;
use crate::dir::{Dirent, DirentKind};
use crate::error::{Error, Result};
use crate::read;
use crate::store::Store;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Options for packing and restoring trees.
#[derive(Debug, Clone)]
pub struct TreeOptions {
    /// How file content is chunked and hashed.
    pub blockify: BlockifyOptions,
    /// Worker threads across files.
    pub threads: usize,
    /// Record and restore extended attributes.
    pub xattrs: bool,
    /// Do not descend into other filesystems while packing.
    pub one_file_system: bool,
    /// Restore owner and group (by name, else number); needs privileges.
    pub restore_owner: bool,
    /// Refuse symlinks whose target lies outside the restored tree. Off by default:
    /// such symlinks are data (`scripts -> ../../lib/...` in real trees) and restore
    /// never follows a symlink, so they cannot be used to write outside the target.
    pub refuse_outside_symlinks: bool,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            blockify: BlockifyOptions::default(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            xattrs: true,
            one_file_system: false,
            restore_owner: nix::unistd::geteuid().is_root(),
            refuse_outside_symlinks: false,
        }
    }
}

/// Counters a frontend polls to draw progress, plus collected warnings.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files (and symlinks, special files) seen or restored.
    pub files: AtomicU64,
    /// Directories seen.
    pub dirs: AtomicU64,
    /// Files whose content came from the files cache.
    pub cached_files: AtomicU64,
    /// Content bytes processed so far.
    pub bytes_done: AtomicU64,
    /// Content bytes known so far.
    pub bytes_total: AtomicU64,
    warnings: Mutex<Vec<String>>,
}

impl Progress {
    /// Records a warning (an entry skipped, metadata not applied).
    pub fn warn(&self, msg: String) {
        self.warnings.lock().push(msg);
    }

    /// Takes the warnings collected so far.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock())
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A visitor of leaves: the leaf reference and, when at hand, its bytes.
pub type LeafFn<'a> = dyn FnMut(&BlockRef, Option<&[u8]>) -> Result<()> + 'a;

/// Calls `f` for each leaf of `block` in content order, with its bytes when the leaf
/// is stored (hash) or literal; RLE and sub-block leaves get `None`.
pub fn for_each_leaf(store: &dyn Store, block: &BlockRef, f: &mut LeafFn<'_>) -> Result<()> {
    leaves(store, block, f, 0)
}

fn leaves(store: &dyn Store, block: &BlockRef, f: &mut LeafFn<'_>, depth: usize) -> Result<()> {
    match block {
        BlockRef::Indirect { hash, span } => {
            // A hostile tree must not exhaust the stack.
            if depth >= read::MAX_TREE_DEPTH {
                return Err(Error::corrupt(
                    hash.to_string(),
                    0,
                    "indirect tree too deep",
                ));
            }
            for c in &read::fetch_children(store, hash, *span)? {
                leaves(store, c, f, depth + 1)?;
            }
            Ok(())
        }
        BlockRef::Hash { hash, span } => f(block, Some(&read::fetch_leaf(store, hash, *span)?)),
        BlockRef::Literal(d) => f(block, Some(d)),
        _ => f(block, None),
    }
}

/// Resolves `subpath` (components separated by `/`) below the Dir dirent `root`.
///
/// Fails when a component is missing or a non-directory is traversed.
pub fn resolve(store: &dyn Store, root: &Dirent, subpath: &str) -> Result<Dirent> {
    let mut cur = root.clone();
    for comp in subpath.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if cur.kind != DirentKind::Dir {
            return Err(Error::bad(format!(
                "{subpath}: {} is not a directory",
                String::from_utf8_lossy(&cur.name)
            )));
        }
        cur = read_dir_entries(store, &cur)?
            .into_iter()
            .find(|e| e.name == comp.as_bytes())
            .ok_or_else(|| Error::bad(format!("{subpath}: no entry {comp:?}")))?;
    }
    Ok(cur)
}

/// Totals of a stored tree.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files (hard links counted once per name).
    pub files: u64,
    /// Directories, the root included.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Content bytes of regular files.
    pub bytes: u64,
}

/// Walks a stored tree and counts its entries.
///
/// The walk keeps its own stack, so a hostile tree nested arbitrarily deep cannot
/// overflow the thread's stack.
pub fn stats(store: &dyn Store, d: &Dirent) -> Result<TreeStats> {
    let mut s = TreeStats::default();
    let mut todo = vec![d.clone()];
    while let Some(d) = todo.pop() {
        match d.kind {
            DirentKind::Dir => {
                s.dirs += 1;
                todo.extend(read_dir_entries(store, &d)?);
            }
            DirentKind::File | DirentKind::Indirect => {
                s.files += 1;
                s.bytes = s
                    .bytes
                    .saturating_add(d.block.as_ref().map_or(0, BlockRef::span));
            }
            DirentKind::Symlink => s.symlinks += 1,
        }
    }
    Ok(s)
}

/// Checks that every block of the tree is present, marking complete indirect blocks.
///
/// Like [`stats`], the walk keeps its own stack (no recursion per directory level).
pub fn check_present(store: &dyn Store, d: &Dirent) -> Result<()> {
    let mut todo = vec![d.clone()];
    while let Some(d) = todo.pop() {
        if let Some(b) = &d.block {
            if !read::ensure_complete(store, b)? {
                return Err(Error::bad(format!(
                    "{}: blocks of the tree are missing",
                    String::from_utf8_lossy(&d.name)
                )));
            }
        }
        if d.kind == DirentKind::Dir {
            todo.extend(read_dir_entries(store, &d)?);
        }
    }
    Ok(())
}
