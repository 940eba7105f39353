//! Restoring a stored tree into a new directory, safely.
//!
//! Safety argument: the target must not exist; every directory below it is created by
//! this restore (`mkdir` fails on an existing name, so nothing is reused); every name is
//! validated (no `/`, NUL, `.`, `..`, empty) and unique in its directory; files are
//! created with `O_CREAT|O_EXCL` (never following a symlink), so no entry can be
//! written through a symlink, even one pointing outside; hard links only point at files
//! this restore wrote. So nothing outside the target can be created or modified.
//! Symlinks are restored verbatim (they are data); `refuse_outside_symlinks` refuses
//! those leading outside the target, for archives from untrusted sources.

use super::meta::{os_meta, special_of, SpecialKind};
use super::{Progress, TreeOptions};
use crate::block::BlockRef;
use crate::dir::{self, Dirent, DirentKind};
use crate::error::{Error, IoContext, Result};
use crate::osmeta::{self, ApplyOptions, NameCache, OsMeta};
use crate::read;
use crate::store::Store;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use uuid::Uuid;

/// Runs of zero bytes at least this long are left as holes.
const HOLE_MIN: u64 = 4096;

/// Work collected while creating directories, done afterwards.
#[derive(Default)]
struct Plan {
    files: Vec<(PathBuf, Dirent)>,
    links: Vec<(PathBuf, Uuid)>,
    /// Directories with their metadata, parents before children.
    dirs: Vec<(PathBuf, OsMeta)>,
    symlinks: Vec<(PathBuf, OsMeta)>,
}

/// Restores `root` as the new path `target`. Returns warnings for metadata that could
/// not be applied (the content is always restored or the call fails).
///
/// Fails when `target` exists, on I/O errors, when a block is missing or corrupt, and on
/// hostile entries (bad names, symlinks leading outside, dangling hard links).
pub fn restore(
    store: &dyn Store,
    root: &Dirent,
    target: &Path,
    opts: &TreeOptions,
    progress: &Progress,
) -> Result<()> {
    if std::fs::symlink_metadata(target).is_ok() {
        return Err(Error::bad(format!(
            "{} already exists; refusing to overwrite",
            target.display()
        )));
    }
    let mut plan = Plan::default();
    create_entry(store, root, target, target, opts, &mut plan)?;
    let names = NameCache::default();
    let apply = ApplyOptions {
        owner: opts.restore_owner,
        xattrs: opts.xattrs,
    };
    let uuids = write_files(store, &plan.files, &names, apply, opts, progress)?;
    for (path, uuid) in &plan.links {
        let src = uuids.get(uuid).ok_or_else(|| {
            Error::bad(format!(
                "{}: hard link to a file not in this tree",
                path.display()
            ))
        })?;
        std::fs::hard_link(src, path).ctx(|| format!("link {}", path.display()))?;
    }
    for (path, meta) in &plan.symlinks {
        warn_all(progress, osmeta::apply(path, meta, true, &names, apply)?);
    }
    // Deepest first, so setting a directory's mtime or a read-only mode comes last.
    for (path, meta) in plan.dirs.iter().rev() {
        warn_all(progress, osmeta::apply(path, meta, false, &names, apply)?);
    }
    Ok(())
}

fn warn_all(progress: &Progress, w: Vec<String>) {
    for m in w {
        progress.warn(m);
    }
}

/// Creates directories, symlinks and special files; queues regular files and links.
fn create_entry(
    store: &dyn Store,
    d: &Dirent,
    path: &Path,
    top: &Path,
    opts: &TreeOptions,
    plan: &mut Plan,
) -> Result<()> {
    match d.kind {
        DirentKind::Dir => {
            std::fs::create_dir(path).ctx(|| format!("mkdir {}", path.display()))?;
            plan.dirs
                .push((path.to_path_buf(), os_meta(&d.meta, 0o755)));
            let children = read_dir_entries(store, d)?;
            for c in &children {
                let p = path.join(OsStr::from_bytes(&c.name));
                create_entry(store, c, &p, top, opts, plan)?;
            }
        }
        DirentKind::Symlink => {
            let target = d.symlink_target().map(<[u8]>::to_vec).ok_or_else(|| {
                Error::bad(format!("{}: symlink without a target", path.display()))
            })?;
            if opts.refuse_outside_symlinks && leads_outside(path, top, &target) {
                return Err(Error::bad(format!(
                    "{}: symlink to {:?} leads outside the restore target (refused)",
                    path.display(),
                    String::from_utf8_lossy(&target)
                )));
            }
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), path)
                .ctx(|| format!("symlink {}", path.display()))?;
            plan.symlinks
                .push((path.to_path_buf(), os_meta(&d.meta, 0o777)));
        }
        DirentKind::Indirect => {
            let uuid = d.uuid.ok_or_else(|| {
                Error::bad(format!("{}: hard link without a UUID", path.display()))
            })?;
            plan.links.push((path.to_path_buf(), uuid));
        }
        DirentKind::File => match special_of(&d.meta) {
            Some((kind, rdev)) => make_special(path, kind, rdev, &os_meta(&d.meta, 0o644), plan)?,
            None => plan.files.push((path.to_path_buf(), d.clone())),
        },
    }
    Ok(())
}

/// The entries of a Dir dirent, validated: good names, no duplicates.
pub fn read_dir_entries(store: &dyn Store, d: &Dirent) -> Result<Vec<Dirent>> {
    let content = match &d.block {
        Some(b) => read::read_all(store, b)?,
        None => Vec::new(),
    };
    let entries = dir::decode_entries(&content)?;
    let mut seen = HashSet::with_capacity(entries.len());
    for e in &entries {
        dir::validate_name(&e.name)?;
        if !seen.insert(e.name.as_slice()) {
            return Err(Error::bad(format!(
                "directory lists {:?} twice (refused)",
                String::from_utf8_lossy(&e.name)
            )));
        }
    }
    Ok(entries)
}

/// True when `target`, a symlink placed at `link`, resolves lexically outside `top`.
fn leads_outside(link: &Path, top: &Path, target: &[u8]) -> bool {
    let t = Path::new(OsStr::from_bytes(target));
    if t.is_absolute() {
        return true;
    }
    let rel = link.parent().and_then(|p| p.strip_prefix(top).ok());
    let Some(rel) = rel else { return true };
    let mut depth: i64 = rel.components().count() as i64;
    for c in t.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return true,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

fn make_special(
    path: &Path,
    kind: SpecialKind,
    rdev: u64,
    meta: &OsMeta,
    plan: &mut Plan,
) -> Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let sflag = match kind {
        SpecialKind::Fifo => SFlag::S_IFIFO,
        SpecialKind::Char => SFlag::S_IFCHR,
        SpecialKind::Block => SFlag::S_IFBLK,
        SpecialKind::Socket => SFlag::S_IFSOCK,
    };
    let mode = Mode::from_bits_truncate(meta.mode & 0o777);
    mknod(path, sflag, mode, rdev as nix::libc::dev_t)
        .map_err(|e| Error::io(format!("mknod {}", path.display()), e.into()))?;
    plan.symlinks.push((path.to_path_buf(), meta.clone()));
    Ok(())
}

/// Writes regular files on `opts.threads` workers; returns UUID → path for hard links.
fn write_files(
    store: &dyn Store,
    files: &[(PathBuf, Dirent)],
    names: &NameCache,
    apply: ApplyOptions,
    opts: &TreeOptions,
    progress: &Progress,
) -> Result<HashMap<Uuid, PathBuf>> {
    let next = AtomicUsize::new(0);
    let first_error: OnceLock<Error> = OnceLock::new();
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= files.len() || first_error.get().is_some() {
                    return;
                }
                let (path, d) = &files[i];
                // Metadata goes through the still open descriptor: no more path lookups.
                let r = write_file(store, path, d, progress).and_then(|f| {
                    osmeta::apply_file(&f, path, &os_meta(&d.meta, 0o644), names, apply)
                });
                match r {
                    Ok(w) => warn_all(progress, w),
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
    Ok(files
        .iter()
        .filter_map(|(p, d)| d.uuid.map(|u| (u, p.clone())))
        .collect())
}

/// Writes one file's content, leaving long zero runs as holes; returns the open file.
fn write_file(
    store: &dyn Store,
    path: &Path,
    d: &Dirent,
    progress: &Progress,
) -> Result<std::fs::File> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .ctx(|| format!("create {}", path.display()))?;
    let block = d.block.clone().unwrap_or_else(BlockRef::empty);
    let mut w = HoleWriter {
        f: &mut f,
        pos: 0,
        seek_pending: false,
        path,
    };
    super::for_each_leaf(
        store,
        &block,
        &mut |leaf: &BlockRef, data: Option<&[u8]>| {
            match (leaf, data) {
                (BlockRef::Rle { span, octet: 0 }, _) if *span >= HOLE_MIN => w.hole(*span),
                (_, Some(bytes)) => w.write(bytes),
                (_, None) => {
                    let bytes = read::read_all(store, leaf)?;
                    w.write(&bytes)
                }
            }?;
            progress
                .bytes_done
                .fetch_add(leaf.span(), Ordering::Relaxed);
            Ok(())
        },
    )?;
    // Only a file ending in a hole needs its length set; the writes set it otherwise.
    let (end, trailing_hole) = (w.pos, w.seek_pending);
    if trailing_hole {
        f.set_len(end)
            .ctx(|| format!("set length of {}", path.display()))?;
    }
    progress.files.fetch_add(1, Ordering::Relaxed);
    Ok(f)
}

/// Page size for hole detection.
const PAGE: u64 = 4096;

struct HoleWriter<'a> {
    f: &'a mut std::fs::File,
    pos: u64,
    seek_pending: bool,
    path: &'a Path,
}

impl HoleWriter<'_> {
    /// Writes `b`, turning whole all-zero pages into holes (as `cp --sparse` does); the
    /// data between holes goes out in one write.
    fn write(&mut self, b: &[u8]) -> Result<()> {
        let mut at = 0;
        // Start of the data not yet written or skipped.
        let mut run = 0;
        while at < b.len() {
            // Up to the next page boundary of the file position.
            let pos = self.pos + (at - run) as u64;
            let n = ((PAGE - pos % PAGE) as usize).min(b.len() - at);
            let piece = &b[at..at + n];
            if n as u64 == PAGE && piece.iter().all(|&x| x == 0) {
                self.write_now(&b[run..at])?;
                self.hole(PAGE)?;
                run = at + n;
            }
            at += n;
        }
        self.write_now(&b[run..])
    }

    fn write_now(&mut self, b: &[u8]) -> Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        if self.seek_pending {
            self.f
                .seek(SeekFrom::Start(self.pos))
                .ctx(|| format!("seek {}", self.path.display()))?;
            self.seek_pending = false;
        }
        self.f
            .write_all(b)
            .ctx(|| format!("write {}", self.path.display()))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn hole(&mut self, n: u64) -> Result<()> {
        self.pos += n;
        self.seek_pending = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the split into calls and wherever the zero pages fall, the file holds
        /// exactly the bytes written.
        #[test]
        fn hole_writer_keeps_the_content(
            pages in proptest::collection::vec((any::<bool>(), 1usize..2 * PAGE as usize), 0..12),
            cuts in proptest::collection::vec(0usize..40_000, 0..6),
        ) {
            let data: Vec<u8> = pages
                .iter()
                .enumerate()
                .flat_map(|(i, &(zero, n))| {
                    std::iter::repeat_n(if zero { 0 } else { i as u8 + 1 }, n)
                })
                .collect();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= data.len()).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let mut f = std::fs::File::create_new(&path).unwrap();
            let mut w = HoleWriter { f: &mut f, pos: 0, seek_pending: false, path: &path };
            for pair in cuts.windows(2) {
                w.write(&data[pair[0]..pair[1]]).unwrap();
            }
            let (end, trailing) = (w.pos, w.seek_pending);
            if trailing {
                f.set_len(end).unwrap();
            }
            drop(f);
            prop_assert_eq!(std::fs::read(&path).unwrap(), data);
        }
    }
}
