//! Store handles: open and close, transactions, and single-block add/get/contains/flush.

use crate::args::{
    bytes, copy_out, handle, into_c_bytes, invalid, need_out, out_buf, path, put, Res,
};
use crate::error::{fail_with, vt_result};
use crate::hash::{hash_arg, vt_hashcode};
use crate::panic::guard;
use std::ffi::c_char;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use vt_engine::store::{DataDir, DataDirOptions, MemoryStore};
use vt_engine::{HashAlg, Store};

/// `vt_store_open` flag: create the store when the path holds none.
pub const VT_OPEN_CREATE: u32 = 1;
/// `vt_store_open` flag: open without the writer lock; adds fail with `VT_ERR_UNSUPPORTED`.
pub const VT_OPEN_READ_ONLY: u32 = 2;

const OPEN_FLAGS: u32 = VT_OPEN_CREATE | VT_OPEN_READ_ONLY;

/// The store behind a handle.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per handle; boxing would add an indirection per call
pub enum Backend {
    /// A persistent DataDir.
    Dir(DataDir),
    /// A process-local memory store.
    Mem(MemoryStore),
}

impl Backend {
    /// The store as a trait object.
    pub fn store(&self) -> &dyn Store {
        match self {
            Backend::Dir(d) => d,
            Backend::Mem(m) => m,
        }
    }
}

/// An open store (opaque). Create with `vt_store_open` or `vt_store_open_memory`,
/// release with `vt_store_free`. Thread-safe: every function taking a `vt_store *` may be
/// called from several threads at once on the same handle, except `vt_store_free`, which
/// must be the last call on it.
#[derive(Debug)]
pub struct vt_store {
    /// `None` once closed; calls then fail with `VT_ERR_CLOSED`.
    inner: RwLock<Option<Backend>>,
    /// True while an explicit transaction is open (`vt_txn_begin` .. commit/abort).
    txn: Mutex<bool>,
}

/// Borrows the open store behind a handle for the length of one call. A concurrent
/// `vt_store_close` waits until the guard is dropped.
#[derive(Debug)]
pub struct Open<'a>(RwLockReadGuard<'a, Option<Backend>>);

impl Open<'_> {
    /// The backend (present: checked when the guard was taken).
    pub fn backend(&self) -> &Backend {
        self.0.as_ref().expect("checked open")
    }
    /// The store as a trait object.
    pub fn store(&self) -> &dyn Store {
        self.backend().store()
    }
}

impl vt_store {
    fn new(b: Backend) -> Self {
        vt_store {
            inner: RwLock::new(Some(b)),
            txn: Mutex::new(false),
        }
    }

    /// The open store, or `VT_ERR_CLOSED`.
    pub fn open(&self) -> Res<Open<'_>> {
        // A poisoned lock only means a panic happened elsewhere while writing; the
        // Option inside is still consistent (it is replaced in one step).
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            return Err(fail_with(vt_result::VT_ERR_CLOSED, "store is closed"));
        }
        Ok(Open(g))
    }

    fn txn(&self) -> std::sync::MutexGuard<'_, bool> {
        self.txn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails with `VT_ERR_STATE` inside an explicit transaction (used by calls that commit).
    pub fn no_txn(&self, what: &str) -> Res {
        if *self.txn() {
            return Err(fail_with(
                vt_result::VT_ERR_STATE,
                &format!("{what} commits, so it is not allowed inside a transaction"),
            ));
        }
        Ok(())
    }

    /// Closes the store: aborts an open transaction, commits other adds, releases files
    /// and the writer lock. Fails with `VT_ERR_CLOSED` when already closed.
    fn close(&self) -> Res {
        let b = self
            .inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| fail_with(vt_result::VT_ERR_CLOSED, "store is already closed"))?;
        let mut txn = self.txn();
        let r = match &b {
            Backend::Dir(d) if *txn => d.abort(),
            b => b.store().flush(),
        };
        *txn = false;
        r?;
        Ok(())
    }
}

/// Borrows a store handle argument and its open store.
///
/// # Safety
/// `p` is NULL or a live handle from `vt_store_open*`.
pub unsafe fn store_arg<'a>(p: *const vt_store) -> Res<(&'a vt_store, Open<'a>)> {
    // SAFETY: forwarded from the caller.
    let s = unsafe { handle(p, "store") }?;
    let o = s.open()?;
    Ok((s, o))
}

/// Opens (or with `VT_OPEN_CREATE` creates) the DataDir store at `path` and stores a
/// new handle in `*out`.
///
/// `flags` is 0 or a combination of `VT_OPEN_CREATE` and `VT_OPEN_READ_ONLY` (not both).
/// A writable handle holds the store's writer lock until closed; read-only handles take
/// no lock. `path` is a NUL-terminated file-system path (bytes, not necessarily UTF-8).
/// Ownership: on success `*out` is a new handle the caller releases with
/// `vt_store_free`; on failure `*out` is set to NULL.
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (unknown flags, empty path, no store there
/// without `VT_OPEN_CREATE`), `VT_ERR_LOCKED` (another handle or process writes it),
/// `VT_ERR_IO`, `VT_ERR_INDEX`, `VT_ERR_CORRUPT`, `VT_ERR_UNSUPPORTED` (newer format).
/// Thread-safety: any thread.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn vt_store_open(
    path: *const c_char,
    flags: u32,
    out: *mut *mut vt_store,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: `path` is NULL or NUL-terminated per the caller.
        let p = unsafe { self::path(path, "path") }?;
        if flags & !OPEN_FLAGS != 0 {
            return Err(invalid(&format!(
                "unknown flags {:#x}",
                flags & !OPEN_FLAGS
            )));
        }
        let create = flags & VT_OPEN_CREATE != 0;
        let read_only = flags & VT_OPEN_READ_ONLY != 0;
        if create && read_only {
            return Err(invalid(
                "VT_OPEN_CREATE and VT_OPEN_READ_ONLY exclude each other",
            ));
        }
        let opts = DataDirOptions {
            read_only,
            ..DataDirOptions::default()
        };
        let d = if create {
            DataDir::open_or_create(p, opts)
        } else {
            DataDir::open(p, opts)
        }?;
        let h = Box::new(vt_store::new(Backend::Dir(d)));
        // SAFETY: as above.
        unsafe { put(out, Box::into_raw(h)) };
        Ok(())
    })
}

/// Creates a process-local memory store holding at most about `capacity_bytes` of block
/// data (least recently used blocks are evicted; 0 means unbounded), hashing with BLAKE3.
///
/// Nothing persists; `vt_store_flush` is a no-op and the transaction calls fail with
/// `VT_ERR_UNSUPPORTED`. Ownership: `*out` is a new handle released with
/// `vt_store_free`; NULL on failure. Errors: `VT_ERR_NULL`. Thread-safety: any thread.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn vt_store_open_memory(
    capacity_bytes: u64,
    out: *mut *mut vt_store,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        let cap = if capacity_bytes == 0 {
            u64::MAX
        } else {
            capacity_bytes
        };
        let m = MemoryStore::with_capacity(HashAlg::DEFAULT, cap);
        let h = Box::new(vt_store::new(Backend::Mem(m)));
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, Box::into_raw(h)) };
        Ok(())
    })
}

/// Closes the store but keeps the handle: an open transaction is aborted, other adds are
/// committed (as `vt_store_flush`), files and the writer lock are released. Waits for
/// calls in progress on other threads. Afterwards every call on the handle fails with
/// `VT_ERR_CLOSED`; release it with `vt_store_free`.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED` (already closed), and the errors of the final
/// commit (`VT_ERR_IO`, `VT_ERR_INDEX`): the store is closed even then.
/// Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn vt_store_close(store: *mut vt_store) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        unsafe { handle(store, "store") }?.close()
    })
}

/// Releases a store handle, closing it first if needed (as `vt_store_close`, but any
/// error is discarded: call `vt_store_close` first to see it). NULL is ignored.
///
/// Ownership: takes the handle; it must not be used afterwards, by any thread.
/// Errors: none reported.
/// Thread-safety: must not run concurrently with any other call on the same handle.
///
/// # Safety
/// `store` is NULL or a handle from `vt_store_open*` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn vt_store_free(store: *mut vt_store) {
    if store.is_null() {
        return;
    }
    guard(|| {
        // SAFETY: `store` came from Box::into_raw in vt_store_open* and is freed once.
        let b = unsafe { Box::from_raw(store) };
        let _ = b.close();
        Ok(())
    });
}

/// Starts an explicit write transaction: first commits any earlier adds, then marks the
/// handle so that `vt_txn_commit` makes the adds since this call durable and
/// `vt_txn_abort` discards them.
///
/// The transaction belongs to the handle, not to a thread: adds from every thread
/// between begin and commit/abort are part of it. Without an explicit transaction, adds
/// are committed by `vt_store_flush` (or close). Inside one, `vt_store_flush` and
/// `vt_pack` fail with `VT_ERR_STATE`.
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_STATE` (one is already open),
/// `VT_ERR_UNSUPPORTED` (memory or read-only store), `VT_ERR_IO`, `VT_ERR_INDEX`.
/// Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn vt_txn_begin(store: *mut vt_store) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (s, o) = unsafe { store_arg(store) }?;
        let d = datadir(&o)?;
        let mut txn = s.txn();
        if *txn {
            return Err(fail_with(
                vt_result::VT_ERR_STATE,
                "a transaction is already open",
            ));
        }
        d.commit()?;
        *txn = true;
        Ok(())
    })
}

/// Commits the open transaction: every add since `vt_txn_begin` is durable when this
/// returns. On an I/O error the transaction stays open (retry, or abort).
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_STATE` (no open transaction),
/// `VT_ERR_UNSUPPORTED` (memory store), `VT_ERR_IO`, `VT_ERR_INDEX`.
/// Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn vt_txn_commit(store: *mut vt_store) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (s, o) = unsafe { store_arg(store) }?;
        let d = datadir(&o)?;
        let mut txn = s.txn();
        if !*txn {
            return Err(fail_with(vt_result::VT_ERR_STATE, "no open transaction"));
        }
        d.commit()?;
        *txn = false;
        Ok(())
    })
}

/// Aborts the open transaction: every add since `vt_txn_begin` is forgotten (blocks it
/// added are no longer found). The transaction ends even when this fails.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_STATE` (no open transaction),
/// `VT_ERR_UNSUPPORTED` (memory store), `VT_ERR_IO`.
/// Thread-safety: any thread; adds racing with the abort on other threads may land on
/// either side of it.
///
/// # Safety
/// `store` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn vt_txn_abort(store: *mut vt_store) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (s, o) = unsafe { store_arg(store) }?;
        let d = datadir(&o)?;
        let mut txn = s.txn();
        if !*txn {
            return Err(fail_with(vt_result::VT_ERR_STATE, "no open transaction"));
        }
        *txn = false;
        d.abort()?;
        Ok(())
    })
}

fn datadir<'a>(o: &'a Open<'_>) -> Res<&'a DataDir> {
    match o.backend() {
        Backend::Dir(d) => Ok(d),
        Backend::Mem(_) => Err(fail_with(
            vt_result::VT_ERR_UNSUPPORTED,
            "a memory store has no transactions",
        )),
    }
}

/// Makes every add so far durable and visible to other processes (commits). A no-op on
/// memory and read-only stores.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_STATE` (inside an explicit
/// transaction: use `vt_txn_commit`), `VT_ERR_IO`, `VT_ERR_INDEX`.
/// Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn vt_store_flush(store: *mut vt_store) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (s, o) = unsafe { store_arg(store) }?;
        s.no_txn("vt_store_flush")?;
        o.store().flush()?;
        Ok(())
    })
}

/// Stores one block of `len` bytes and writes its hashcode to `*out` (if `out` is not
/// NULL). Adding a block that is present writes nothing. The block is durable after the
/// next commit (`vt_store_flush`, `vt_txn_commit`, close).
///
/// `data` may be NULL when `len` is 0. The library copies the data; the caller keeps
/// ownership of `data`.
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_UNSUPPORTED` (read-only store),
/// `VT_ERR_IO`, `VT_ERR_INDEX`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or live; `data` has `len` readable bytes; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn vt_add(
    store: *mut vt_store,
    data: *const u8,
    len: usize,
    out: *mut vt_hashcode,
) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `data` has `len` readable bytes per the caller.
        let d = unsafe { bytes(data, len, "data") }?;
        let h = o.store().add(d)?;
        // SAFETY: `out` is NULL or writable per the caller.
        unsafe { put(out, h.into()) };
        Ok(())
    })
}

/// Copies the block `*hash` into the caller's buffer `buf` of `buf_len` bytes.
///
/// Required-size protocol: `*out_len` receives the block's length, both on success and
/// when it fails with `VT_ERR_BUFFER_TOO_SMALL` (then nothing is copied: call again with
/// a buffer of `*out_len` bytes). `buf` may be NULL when `buf_len` is 0 (a size query).
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_INVALID` (bad hashcode),
/// `VT_ERR_NOT_FOUND` (absent), `VT_ERR_CORRUPT` (stored bytes fail their hash),
/// `VT_ERR_BUFFER_TOO_SMALL`, `VT_ERR_IO`, `VT_ERR_INDEX`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or live; `hash` readable; `buf` has `buf_len` writable bytes;
/// `out_len` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_get(
    store: *mut vt_store,
    hash: *const vt_hashcode,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `hash` is NULL or readable per the caller.
        let h = unsafe { hash_arg(hash) }?;
        need_out(out_len, "out_len")?;
        let (buf, cap) = out_buf(buf, buf_len, "buf")?;
        // `get` rather than `get_required`: no engine error is built on this hot path.
        let data = o.store().get(&h)?.ok_or_else(|| not_found(&h))?;
        // SAFETY: `out_len` is non-null and writable per the caller.
        unsafe { put(out_len, data.len()) };
        if data.len() > cap {
            return Err(too_small(data.len(), cap));
        }
        // SAFETY: `buf` has `cap >= data.len()` writable bytes per the caller.
        unsafe { copy_out(&data, buf, cap) };
        Ok(())
    })
}

/// The `VT_ERR_NOT_FOUND` error for a missing block.
fn not_found(h: &vt_engine::HashCode) -> vt_result {
    fail_with(
        vt_result::VT_ERR_NOT_FOUND,
        &format!("block not found: {h}"),
    )
}

/// The `VT_ERR_BUFFER_TOO_SMALL` error.
pub fn too_small(need: usize, have: usize) -> vt_result {
    fail_with(
        vt_result::VT_ERR_BUFFER_TOO_SMALL,
        &format!("need {need} bytes, buffer has {have}"),
    )
}

/// Like `vt_get`, but the library allocates the buffer. Ownership: `*out_data` receives a pointer to
/// `*out_len` bytes, to be released with `vt_bytes_free(*out_data, *out_len)`. An empty
/// block gives NULL and 0. On failure `*out_data` is NULL and `*out_len` 0.
///
/// Errors: as `vt_get`, without `VT_ERR_BUFFER_TOO_SMALL`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or live; `hash` readable; `out_data` and `out_len` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_get_alloc(
    store: *mut vt_store,
    hash: *const vt_hashcode,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> vt_result {
    guard(|| {
        need_out(out_data, "out_data")?;
        need_out(out_len, "out_len")?;
        // SAFETY: both out-pointers are non-null and writable per the caller.
        unsafe {
            put(out_data, std::ptr::null_mut());
            put(out_len, 0);
        }
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `hash` is NULL or readable per the caller.
        let h = unsafe { hash_arg(hash) }?;
        let (p, n) = into_c_bytes(o.store().get_required(&h)?);
        // SAFETY: as above.
        unsafe {
            put(out_data, p);
            put(out_len, n);
        }
        Ok(())
    })
}

/// Releases a buffer returned by `vt_get_alloc` or `vt_read_alloc`; `len` must be the
/// length returned with it. NULL is ignored.
///
/// Ownership: takes the buffer. Errors: none. Thread-safety: any thread.
///
/// # Safety
/// `data` is NULL or a buffer from this library with exactly `len` bytes, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn vt_bytes_free(data: *mut u8, len: usize) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data`/`len` came from `into_c_bytes` (Box<[u8]>::into_raw) and are freed once.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
}

/// Sets `*out` to whether the block `*hash` is in the store.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_INVALID` (bad hashcode), `VT_ERR_IO`,
/// `VT_ERR_INDEX`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or live; `hash` readable; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_contains(
    store: *mut vt_store,
    hash: *const vt_hashcode,
    out: *mut bool,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `hash` is NULL or readable per the caller.
        let h = unsafe { hash_arg(hash) }?;
        let present = o.store().contains(&h)?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, present) };
        Ok(())
    })
}

/// Sets `*out` to the number of distinct blocks in the store (committed and pending).
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_INDEX`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_store_block_count(store: *mut vt_store, out: *mut u64) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        let n = o.store().len()?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, n) };
        Ok(())
    })
}
