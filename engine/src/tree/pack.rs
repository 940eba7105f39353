//! Packing a directory tree into the store: walk, blockify files on both cores, build Dirs.

use super::meta::{dirent_meta, special_meta, SpecialKind};
use super::{Progress, TreeOptions};
use crate::block::BlockRef;
use crate::blockify::{blockify_bytes, blockify_reader, BlockifyOptions};
use crate::dir::{self, Dirent};
use crate::error::{Error, IoContext, Result};
use crate::filecache::{FileCache, FileStamp};
use crate::osmeta::{NameCache, OsMeta};
use crate::store::Store;
use crate::store::StoreSink;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use uuid::Uuid;

/// Files up to this size are read whole and chunked on one worker thread.
const SMALL_FILE: u64 = 4 << 20;

/// A walked entry, before its content is stored.
#[derive(Debug)]
enum Node {
    File {
        name: Vec<u8>,
        meta: OsMeta,
        job: usize,
        uuid: Option<Uuid>,
    },
    HardLink {
        name: Vec<u8>,
        meta: OsMeta,
        uuid: Uuid,
    },
    Dir {
        name: Vec<u8>,
        meta: OsMeta,
        children: Vec<Node>,
    },
    Symlink {
        name: Vec<u8>,
        meta: OsMeta,
        target: Vec<u8>,
    },
    Special {
        name: Vec<u8>,
        meta: OsMeta,
        kind: SpecialKind,
        rdev: u64,
    },
}

/// A file whose content must be stored.
#[derive(Debug)]
struct FileJob {
    path: PathBuf,
    stamp: FileStamp,
}

/// State of one walk.
struct Walker<'a> {
    opts: &'a TreeOptions,
    progress: &'a Progress,
    names: NameCache,
    jobs: Vec<FileJob>,
    links: HashMap<(u64, u64), Uuid>,
    /// Names found for each hard-link group (by its UUID).
    link_names: HashMap<Uuid, usize>,
    root_dev: u64,
}

/// Stores the tree at `root` and returns its dirent (a Dir, or a File/Symlink when
/// `root` is not a directory), named after `root`'s last component.
///
/// Files are looked up in `cache` first; their stamps are recorded into it. Fails on
/// I/O errors reading the tree or when the store fails; unsupported entries
/// (sockets) are reported through `progress` and skipped.
pub fn pack(
    store: &dyn Store,
    root: &Path,
    cache: Option<&FileCache>,
    opts: &TreeOptions,
    progress: &Progress,
) -> Result<Dirent> {
    let m = std::fs::symlink_metadata(root).ctx(|| format!("stat {}", root.display()))?;
    let name = root
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_else(|| b"root".to_vec());
    let mut w = Walker {
        opts,
        progress,
        names: NameCache::default(),
        jobs: Vec::new(),
        links: HashMap::new(),
        link_names: HashMap::new(),
        root_dev: m.dev(),
    };
    let mut node = w
        .walk(root, name, &m)?
        .ok_or_else(|| Error::bad(format!("{}: cannot pack this kind of file", root.display())))?;
    drop_lone_links(&mut node, &w.link_names);
    let blocks = store_files(store, &w.jobs, cache, opts, progress)?;
    build(store, node, &blocks, opts)
}

impl Walker<'_> {
    fn walk(&mut self, path: &Path, name: Vec<u8>, m: &Metadata) -> Result<Option<Node>> {
        let meta = OsMeta::read(path, m, &self.names, self.opts.xattrs)?;
        let ft = m.file_type();
        Ok(Some(if ft.is_dir() {
            let children = if self.opts.one_file_system && m.dev() != self.root_dev {
                Vec::new()
            } else {
                self.walk_dir(path)?
            };
            self.progress.dirs.fetch_add(1, Ordering::Relaxed);
            Node::Dir {
                name,
                meta,
                children,
            }
        } else if ft.is_file() {
            self.file_node(path, name, meta, m)
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).ctx(|| format!("readlink {}", path.display()))?;
            self.progress.files.fetch_add(1, Ordering::Relaxed);
            Node::Symlink {
                name,
                meta,
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else if let Some(kind) = SpecialKind::of(&ft) {
            self.progress.files.fetch_add(1, Ordering::Relaxed);
            Node::Special {
                name,
                meta,
                kind,
                rdev: m.rdev(),
            }
        } else {
            let what = if ft.is_socket() {
                "socket"
            } else {
                "unknown file type"
            };
            self.progress.warn(format!(
                "{}: skipped ({what}: cannot be stored)",
                path.display()
            ));
            return Ok(None);
        }))
    }

    fn walk_dir(&mut self, path: &Path) -> Result<Vec<Node>> {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .ctx(|| format!("read directory {}", path.display()))?
            .collect::<std::io::Result<_>>()
            .ctx(|| format!("read directory {}", path.display()))?;
        entries.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
        let mut children = Vec::with_capacity(entries.len());
        for e in entries {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).ctx(|| format!("stat {}", p.display()))?;
            if let Some(n) = self.walk(&p, e.file_name().as_bytes().to_vec(), &m)? {
                children.push(n);
            }
        }
        Ok(children)
    }

    fn file_node(&mut self, path: &Path, name: Vec<u8>, meta: OsMeta, m: &Metadata) -> Node {
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        let mut uuid = None;
        if m.nlink() > 1 {
            if let Some(u) = self.links.get(&(m.dev(), m.ino())) {
                *self.link_names.entry(*u).or_default() += 1;
                return Node::HardLink {
                    name,
                    meta,
                    uuid: *u,
                };
            }
            // Derived from the first path, so re-packing the same tree gives the same root.
            let digest = blake3::hash(path.as_os_str().as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&digest.as_bytes()[..16]);
            let u = uuid::Builder::from_custom_bytes(b).into_uuid();
            self.links.insert((m.dev(), m.ino()), u);
            self.link_names.insert(u, 1);
            uuid = Some(u);
        }
        self.progress
            .bytes_total
            .fetch_add(m.len(), Ordering::Relaxed);
        self.jobs.push(FileJob {
            path: path.to_path_buf(),
            stamp: FileStamp::of(m),
        });
        Node::File {
            name,
            meta,
            job: self.jobs.len() - 1,
            uuid,
        }
    }
}

/// Clears the UUID of files whose other names all lie outside the tree: a UUID only
/// serves to restore links within it, and one per file would change every directory
/// block whenever the paths it is derived from change (new dedup-defeating bytes).
fn drop_lone_links(node: &mut Node, names: &HashMap<Uuid, usize>) {
    match node {
        Node::File { uuid, .. } if uuid.is_some_and(|u| names.get(&u).is_none_or(|&n| n < 2)) => {
            *uuid = None;
        }
        Node::Dir { children, .. } => children.iter_mut().for_each(|c| drop_lone_links(c, names)),
        _ => {}
    }
}

/// Stores every file's content, on `opts.threads` workers; returns refs by job index.
fn store_files(
    store: &dyn Store,
    jobs: &[FileJob],
    cache: Option<&FileCache>,
    opts: &TreeOptions,
    progress: &Progress,
) -> Result<Vec<BlockRef>> {
    let results: Vec<OnceLock<BlockRef>> = (0..jobs.len()).map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let first_error: OnceLock<Error> = OnceLock::new();
    let workers = opts.threads.max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs.len() || first_error.get().is_some() {
                    return;
                }
                match store_one(store, &jobs[i], cache, opts, progress, workers) {
                    Ok(b) => {
                        let _ = results[i].set(b);
                    }
                    Err(e) => {
                        let _ = first_error.set(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner() {
        return Err(e);
    }
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .ok_or_else(|| Error::bad("a file was not stored"))
        })
        .collect()
}

fn store_one(
    store: &dyn Store,
    job: &FileJob,
    cache: Option<&FileCache>,
    opts: &TreeOptions,
    progress: &Progress,
    workers: usize,
) -> Result<BlockRef> {
    if let Some(b) = cache.and_then(|c| c.lookup(&job.path, &job.stamp)) {
        if b.hashcode()
            .is_none_or(|h| store.contains(&h).unwrap_or(false))
        {
            progress.cached_files.fetch_add(1, Ordering::Relaxed);
            progress
                .bytes_done
                .fetch_add(job.stamp.size, Ordering::Relaxed);
            return Ok(b);
        }
    }
    let f = std::fs::File::open(&job.path).ctx(|| format!("open {}", job.path.display()))?;
    let block = if job.stamp.size <= SMALL_FILE {
        let mut data = Vec::with_capacity(job.stamp.size as usize);
        std::io::Read::read_to_end(&mut &f, &mut data)
            .ctx(|| format!("read {}", job.path.display()))?;
        let bopts = BlockifyOptions {
            threads: 1,
            ..opts.blockify.clone()
        };
        progress
            .bytes_done
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        blockify_bytes(&data, &StoreSink(store), &bopts)?
    } else {
        // Big files run their own pipeline; share the cores with the other workers.
        let bopts = BlockifyOptions {
            threads: (opts.blockify.threads / workers).max(2),
            ..opts.blockify.clone()
        };
        let reader = CountingReader { inner: f, progress };
        blockify_reader(reader, &StoreSink(store), &bopts).map_err(|e| match e {
            Error::Io { context, source } => Error::Io {
                context: format!("{}: {context}", job.path.display()),
                source,
            },
            other => other,
        })?
    };
    if let Some(c) = cache {
        c.insert(&job.path, job.stamp, block.clone());
    }
    Ok(block)
}

/// Counts bytes read into the progress totals.
struct CountingReader<'a> {
    inner: std::fs::File,
    progress: &'a Progress,
}

impl std::io::Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress
            .bytes_done
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Builds dirents bottom-up, storing each directory's encoded entries.
fn build(store: &dyn Store, node: Node, blocks: &[BlockRef], opts: &TreeOptions) -> Result<Dirent> {
    Ok(match node {
        Node::File {
            name,
            meta,
            job,
            uuid,
        } => {
            let mut d = Dirent::file(&name, blocks[job].clone());
            d.meta = dirent_meta(&meta);
            d.uuid = uuid;
            d
        }
        Node::HardLink { name, meta, uuid } => {
            let mut d = Dirent::indirect(&name, uuid);
            d.meta = dirent_meta(&meta);
            d
        }
        Node::Symlink { name, meta, target } => {
            let mut d = Dirent::symlink(&name, &target);
            d.meta = dirent_meta(&meta);
            d.meta.pathref = Some(target);
            d
        }
        Node::Special {
            name,
            meta,
            kind,
            rdev,
        } => {
            let mut d = Dirent::file(&name, BlockRef::empty());
            d.meta = special_meta(&meta, kind, rdev);
            d
        }
        Node::Dir {
            name,
            meta,
            children,
        } => {
            let entries = children
                .into_iter()
                .map(|c| build(store, c, blocks, opts))
                .collect::<Result<Vec<_>>>()?;
            let content = dir::encode_entries(&entries)?;
            let bopts = BlockifyOptions {
                threads: 1,
                ..opts.blockify.clone()
            };
            let mut d = Dirent::dir(&name, blockify_bytes(&content, &StoreSink(store), &bopts)?);
            d.meta = dirent_meta(&meta);
            d
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dir::DirentKind;
    use crate::hash::HashAlg;
    use crate::store::MemoryStore;
    use crate::tree::read_dir_entries;

    fn pack_dir(store: &MemoryStore, root: &Path) -> Dirent {
        let opts = TreeOptions {
            xattrs: false,
            ..TreeOptions::default()
        };
        pack(store, root, None, &opts, &Progress::default()).unwrap()
    }

    #[test]
    fn only_hard_links_within_the_tree_get_a_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a"), b"a").unwrap();
        std::fs::hard_link(root.join("a"), root.join("sub/a2")).unwrap();
        std::fs::write(root.join("b"), b"b").unwrap();
        std::fs::hard_link(root.join("b"), dir.path().join("outside")).unwrap();
        let store = MemoryStore::new(HashAlg::Blake3);
        let top = read_dir_entries(&store, &pack_dir(&store, &root)).unwrap();
        let by_name = |es: &[Dirent], n: &[u8]| es.iter().find(|e| e.name == n).cloned().unwrap();
        let a = by_name(&top, b"a");
        assert!(a.uuid.is_some());
        assert_eq!(by_name(&top, b"b").uuid, None);
        let sub = read_dir_entries(&store, &by_name(&top, b"sub")).unwrap();
        let a2 = by_name(&sub, b"a2");
        assert_eq!((a2.kind, a2.uuid), (DirentKind::Indirect, a.uuid));
    }

    #[test]
    fn links_leading_outside_do_not_change_the_directory_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("f"), b"content").unwrap();
        let store = MemoryStore::new(HashAlg::Blake3);
        let before = pack_dir(&store, &root);
        std::fs::hard_link(root.join("f"), dir.path().join("elsewhere")).unwrap();
        let after = pack_dir(&store, &root);
        assert_eq!(before.block, after.block);
    }
}
