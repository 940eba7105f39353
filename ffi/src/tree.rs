//! Directory trees: pack into an archive, unpack a revision, iterate a Dir's entries.

use crate::args::{handle, into_c_string, invalid, need_out, path, put, utf8, Res};
use crate::error::{fail_with, vt_result};
use crate::panic::guard;
use crate::refs::{new_ref, vt_ref};
use crate::store::{store_arg, vt_store};
use std::ffi::{c_char, CString};
use std::path::Path;
use vt_engine::archive::{Archive, ArchiveEntry};
use vt_engine::blockify::BlockifyOptions;
use vt_engine::tree::{self, Progress, TreeOptions};
use vt_engine::{BlockRef, Dirent, DirentKind, Store};

/// `vt_dir_entry.kind`: a regular file (or a device, FIFO: see the transcription).
pub const VT_KIND_FILE: u32 = 0;
/// `vt_dir_entry.kind`: a directory.
pub const VT_KIND_DIR: u32 = 1;
/// `vt_dir_entry.kind`: a symbolic link.
pub const VT_KIND_SYMLINK: u32 = 2;
/// `vt_dir_entry.kind`: a hard link to another entry of the same tree.
pub const VT_KIND_HARDLINK: u32 = 3;

/// `vt_unpack` revision: the latest (last) revision of the archive.
pub const VT_REVISION_LATEST: i64 = -1;

fn tree_opts(store: &dyn Store) -> TreeOptions {
    TreeOptions {
        blockify: BlockifyOptions::with_hash_alg(store.hash_alg()),
        ..TreeOptions::default()
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Packs the directory (or single file) at `dir_path` into the store, commits, and
/// appends the new revision to the archive file `archive_path` (created if missing),
/// optionally named `name` (NULL for none).
///
/// Ownership: if `out_transcription` is not NULL it receives the revision's root dirent
/// transcription (the text in the archive line), released with `vt_string_free`.
/// Entries that cannot be stored (sockets) are skipped.
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (empty path, name not UTF-8 or with a newline),
/// `VT_ERR_STATE` (inside an explicit transaction: packing commits), `VT_ERR_CLOSED`,
/// `VT_ERR_UNSUPPORTED` (memory or read-only store: an archive needs durable blocks),
/// `VT_ERR_IO`, `VT_ERR_INDEX`. Thread-safety: any thread; concurrent appends to one
/// archive are serialized by its lock file.
///
/// # Safety
/// `store` NULL or live; paths NUL-terminated; `name` NULL or NUL-terminated;
/// `out_transcription` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn vt_pack(
    store: *mut vt_store,
    dir_path: *const c_char,
    archive_path: *const c_char,
    name: *const c_char,
    out_transcription: *mut *mut c_char,
) -> vt_result {
    guard(|| {
        // SAFETY: `out_transcription` is NULL or writable per the caller.
        unsafe { put(out_transcription, std::ptr::null_mut()) };
        // SAFETY: `store` is NULL or live per the caller.
        let (s, o) = unsafe { store_arg(store) }?;
        // SAFETY: paths are NULL or NUL-terminated per the caller.
        let (dir, arch) = unsafe {
            (
                path(dir_path, "dir_path")?,
                path(archive_path, "archive_path")?,
            )
        };
        let name = if name.is_null() {
            None
        } else {
            // SAFETY: `name` is non-null and NUL-terminated per the caller.
            Some(unsafe { utf8(name, "name") }?.to_string())
        };
        s.no_txn("vt_pack")?;
        let st = o.store();
        if let crate::store::Backend::Mem(_) = o.backend() {
            return Err(fail_with(
                vt_result::VT_ERR_UNSUPPORTED,
                "an archive needs a persistent store",
            ));
        }
        let root = tree::pack(st, dir, None, &tree_opts(st), &Progress::default())?;
        st.flush()?;
        let entry = ArchiveEntry {
            when: now(),
            transcription: root.transcribe(),
            name,
        };
        Archive::new(arch).append(&entry)?;
        if !out_transcription.is_null() {
            let t = into_c_string(entry.transcription)?;
            // SAFETY: as above.
            unsafe { put(out_transcription, t) };
        }
        Ok(())
    })
}

/// The entry `revision` of the archive: 0 is the oldest, -1 (`VT_REVISION_LATEST`) the
/// latest, -2 the one before it, and so on.
fn archive_entry(arch: &Path, revision: i64) -> Res<ArchiveEntry> {
    let mut entries = Archive::new(arch).entries()?;
    let n = entries.len() as i64;
    let i = if revision < 0 { n + revision } else { revision };
    if !(0..n).contains(&i) {
        return Err(fail_with(
            vt_result::VT_ERR_NOT_FOUND,
            &format!(
                "{} has {n} revisions; revision {revision} does not exist",
                arch.display()
            ),
        ));
    }
    Ok(entries.swap_remove(i as usize))
}

/// Sets `*out` to the number of revisions in the archive at `archive_path` (0 when the
/// file does not exist).
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (a malformed line), `VT_ERR_IO`.
/// Thread-safety: any thread.
///
/// # Safety
/// `archive_path` NULL or NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_archive_count(archive_path: *const c_char, out: *mut u64) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `archive_path` is NULL or NUL-terminated per the caller.
        let arch = unsafe { path(archive_path, "archive_path") }?;
        let n = Archive::new(arch).entries()?.len() as u64;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, n) };
        Ok(())
    })
}

/// Stores the root dirent transcription of revision `revision` of the archive (0 =
/// oldest, negative counts from the latest: -1 = `VT_REVISION_LATEST`) as a new string in
/// `*out`. Ownership: release it with `vt_string_free`; NULL on failure.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_NOT_FOUND` (no such revision), `VT_ERR_INVALID`
/// (malformed archive), `VT_ERR_IO`. Thread-safety: any thread.
///
/// # Safety
/// `archive_path` NULL or NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_archive_revision(
    archive_path: *const c_char,
    revision: i64,
    out: *mut *mut c_char,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: `archive_path` is NULL or NUL-terminated per the caller.
        let arch = unsafe { path(archive_path, "archive_path") }?;
        let e = archive_entry(arch, revision)?;
        let t = into_c_string(e.transcription)?;
        // SAFETY: as above.
        unsafe { put(out, t) };
        Ok(())
    })
}

fn restore_into(o: &crate::store::Open<'_>, transcription: &str, target: &Path) -> Res {
    let st = o.store();
    let root = Dirent::parse(transcription)?;
    tree::restore(st, &root, target, &tree_opts(st), &Progress::default())?;
    Ok(())
}

/// Restores revision `revision` of the archive (numbered as in `vt_archive_revision`)
/// as the new path `target_path`, which must not exist. Content is always restored
/// exactly or the call fails; metadata that cannot be applied (owners when not root) is
/// skipped silently. On failure a partial tree may be left at `target_path`.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_NOT_FOUND` (no such revision, or a block missing),
/// `VT_ERR_INVALID` (target exists, malformed archive, hostile entries such as symlinks
/// leading outside the target), `VT_ERR_CORRUPT`, `VT_ERR_IO`, `VT_ERR_CLOSED`,
/// `VT_ERR_INDEX`. Thread-safety: any thread.
///
/// # Safety
/// `store` NULL or live; paths NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn vt_unpack(
    store: *mut vt_store,
    archive_path: *const c_char,
    revision: i64,
    target_path: *const c_char,
) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: paths are NULL or NUL-terminated per the caller.
        let (arch, target) = unsafe {
            (
                path(archive_path, "archive_path")?,
                path(target_path, "target_path")?,
            )
        };
        let e = archive_entry(arch, revision)?;
        restore_into(&o, &e.transcription, target)
    })
}

/// Restores the tree of a dirent transcription (as returned by `vt_pack` or
/// `vt_archive_revision`) as the new path `target_path`. Errors: as `vt_unpack`
/// (`VT_ERR_INVALID` also for a malformed transcription). Thread-safety: any thread.
///
/// # Safety
/// `store` NULL or live; `transcription` and `target_path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn vt_restore(
    store: *mut vt_store,
    transcription: *const c_char,
    target_path: *const c_char,
) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: strings are NULL or NUL-terminated per the caller.
        let (t, target) = unsafe {
            (
                utf8(transcription, "transcription")?,
                path(target_path, "target_path")?,
            )
        };
        restore_into(&o, t, target)
    })
}

/// One directory entry, as returned by `vt_dir_next`. Every pointer in it belongs to the
/// iterator and stays valid until the next `vt_dir_next` or `vt_dir_free` on it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vt_dir_entry {
    /// The name's bytes (not NUL-terminated; usually UTF-8 but any bytes but `/` and NUL).
    pub name: *const u8,
    /// Length of `name`.
    pub name_len: usize,
    /// `VT_KIND_FILE`, `VT_KIND_DIR`, `VT_KIND_SYMLINK` or `VT_KIND_HARDLINK`.
    pub kind: u32,
    /// Permission bits (`07777` range); 0 when none are recorded.
    pub mode: u32,
    /// Content length: file size, or the size of a Dir's encoded entries; 0 for links.
    pub size: u64,
    /// True when `mtime_sec`/`mtime_nsec` hold the modification time.
    pub has_mtime: bool,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_sec: i64,
    /// Nanoseconds part of the modification time (0..999999999).
    pub mtime_nsec: u32,
    /// A symlink's target bytes (not NUL-terminated), else NULL.
    pub symlink_target: *const u8,
    /// Length of `symlink_target`.
    pub symlink_target_len: usize,
    /// The entry's dirent transcription (NUL-terminated): pass it to `vt_dir_open` to
    /// descend into a directory, or to `vt_restore`.
    pub transcription: *const c_char,
}

/// An iterator over a Dir's entries (opaque). Create with `vt_dir_open`, release with
/// `vt_dir_free`. The entries are read when it is opened, so it does not use the store
/// afterwards. Not thread-safe: use one iterator from one thread at a time.
#[derive(Debug)]
pub struct vt_dir_iter {
    entries: Vec<Dirent>,
    next: usize,
    current: Option<(usize, CString)>,
}

/// Opens an iterator over the entries of a directory, given as a text `transcription`:
/// either a Dir dirent (`D{...}`, as from `vt_pack` or `vt_dir_entry.transcription`) or a
/// block reference to a Dir's encoded entries. Reads and validates all entries now.
///
/// Ownership: `*out` is released with `vt_dir_free`; NULL on failure.
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (malformed text, not a directory, malformed
/// entries), `VT_ERR_NOT_FOUND` (a block is missing), `VT_ERR_CORRUPT`, `VT_ERR_IO`,
/// `VT_ERR_CLOSED`, `VT_ERR_INDEX`. Thread-safety: any thread.
///
/// # Safety
/// `store` NULL or live; `transcription` NULL or NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_dir_open(
    store: *mut vt_store,
    transcription: *const c_char,
    out: *mut *mut vt_dir_iter,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `transcription` is NULL or NUL-terminated per the caller.
        let t = unsafe { utf8(transcription, "transcription") }?;
        let dirent = match Dirent::parse(t) {
            Ok(d) if d.kind == DirentKind::Dir => d,
            Ok(d) => {
                return Err(invalid(&format!(
                    "{} is not a directory",
                    String::from_utf8_lossy(&d.name)
                )))
            }
            // Not a dirent: a reference to a Dir's entries.
            Err(_) => Dirent::dir(b"", t.parse::<BlockRef>()?),
        };
        let entries = tree::read_dir_entries(o.store(), &dirent)?;
        let it = Box::new(vt_dir_iter {
            entries,
            next: 0,
            current: None,
        });
        // SAFETY: as above.
        unsafe { put(out, Box::into_raw(it)) };
        Ok(())
    })
}

fn entry_of(d: &Dirent, transcription: &CString) -> vt_dir_entry {
    let (has_mtime, (mtime_sec, mtime_nsec)) = match d.meta.mtime() {
        Some(t) => (true, t),
        None => (false, (0, 0)),
    };
    let target = d.symlink_target();
    vt_dir_entry {
        name: d.name.as_ptr(),
        name_len: d.name.len(),
        kind: d.kind.code() as u32,
        mode: d.meta.mode(),
        size: d.block.as_ref().map_or(0, BlockRef::span),
        has_mtime,
        mtime_sec,
        mtime_nsec,
        symlink_target: target.map_or(std::ptr::null(), <[u8]>::as_ptr),
        symlink_target_len: target.map_or(0, <[u8]>::len),
        transcription: transcription.as_ptr(),
    }
}

/// Advances the iterator. When there is another entry, fills `*out_entry` and sets
/// `*out_has` to true; at the end sets `*out_has` to false and leaves `*out_entry` alone.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (an entry's transcription holds a NUL — not
/// produced by valid stores). Thread-safety: not concurrently on one iterator.
///
/// # Safety
/// `iter` NULL or live; `out_entry` and `out_has` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_dir_next(
    iter: *mut vt_dir_iter,
    out_entry: *mut vt_dir_entry,
    out_has: *mut bool,
) -> vt_result {
    guard(|| {
        need_out(out_entry, "out_entry")?;
        need_out(out_has, "out_has")?;
        // SAFETY: `out_has` is non-null and writable per the caller.
        unsafe { put(out_has, false) };
        // SAFETY: `iter` is NULL or a live iterator, used by one thread at a time.
        let it = unsafe { iter.as_mut() }.ok_or_else(|| crate::args::null("iter"))?;
        it.current = None;
        let Some(d) = it.entries.get(it.next) else {
            return Ok(());
        };
        let t = CString::new(d.transcribe()).map_err(|_| invalid("transcription holds a NUL"))?;
        let e = entry_of(d, &t);
        it.current = Some((it.next, t));
        it.next += 1;
        // SAFETY: both out-pointers are non-null and writable per the caller.
        unsafe {
            put(out_entry, e);
            put(out_has, true);
        }
        Ok(())
    })
}

/// Stores a new reference to the content of the entry last returned by `vt_dir_next`
/// (a file's data, a directory's encoded entries) in `*out`. Ownership: release it with
/// `vt_ref_free`; NULL on failure.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_STATE` (no current entry), `VT_ERR_NOT_FOUND` (the entry
/// has no content: symlinks, hard links). Thread-safety: not concurrently on one iterator.
///
/// # Safety
/// `iter` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_dir_entry_ref(
    iter: *const vt_dir_iter,
    out: *mut *mut vt_ref,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: `iter` is NULL or live per the caller.
        let it = unsafe { handle(iter, "iter") }?;
        let (i, _) = it.current.as_ref().ok_or_else(|| {
            fail_with(
                vt_result::VT_ERR_STATE,
                "no current entry (call vt_dir_next first)",
            )
        })?;
        let d = &it.entries[*i];
        let b = d
            .block
            .clone()
            .ok_or_else(|| fail_with(vt_result::VT_ERR_NOT_FOUND, "this entry has no content"))?;
        // SAFETY: as above.
        unsafe { put(out, new_ref(b)) };
        Ok(())
    })
}

/// Releases an iterator (and the strings of its last entry). NULL is ignored.
///
/// Ownership: takes the iterator. Errors: none. Thread-safety: must be the last call on it.
///
/// # Safety
/// `iter` is NULL or an iterator from `vt_dir_open`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn vt_dir_free(iter: *mut vt_dir_iter) {
    if !iter.is_null() {
        // SAFETY: `iter` came from Box::into_raw in vt_dir_open and is freed once.
        drop(unsafe { Box::from_raw(iter) });
    }
}
