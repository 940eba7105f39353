//! Block references: blockifying content into them, reading them back, and their text form.

use crate::args::{
    bytes, handle, into_c_bytes, into_c_string, invalid, need_out, out_buf, path, put, text_out,
    utf8, Res,
};
use crate::error::vt_result;
use crate::hash::vt_hashcode;
use crate::panic::guard;
use crate::store::{store_arg, too_small, vt_store};
use std::ffi::{c_char, c_int, CString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{BorrowedFd, RawFd};
use vt_engine::blockify::{blockify_bytes, blockify_reader, BlockifyOptions};
use vt_engine::read::{write_range_to, write_to};
use vt_engine::store::StoreSink;
use vt_engine::{BlockRef, Store};

/// A reference to content in a store (opaque, immutable): a hashcode plus span, an
/// indirect tree, a literal, a run of one byte, or a range of another reference.
/// Create with `vt_blockify_*`, `vt_ref_parse` or `vt_dir_entry_ref`; release with
/// `vt_ref_free`. A reference does not point to a store handle: read it through any store
/// that holds its blocks. Thread-safe: immutable, so any number of threads may use one
/// at once (except `vt_ref_free`, which must be the last call).
#[derive(Debug, Clone)]
pub struct vt_ref(pub BlockRef);

/// Hands a reference to C.
pub fn new_ref(r: BlockRef) -> *mut vt_ref {
    Box::into_raw(Box::new(vt_ref(r)))
}

fn blockify_opts(store: &dyn Store) -> BlockifyOptions {
    BlockifyOptions::with_hash_alg(store.hash_alg())
}

/// Blockifies `len` bytes at `data` into the store and stores a new reference to the
/// content in `*out`.
///
/// Content is cut into content-defined chunks; chunks and the indirect blocks above
/// them are added to the store (durable after the next commit). `data` may be NULL
/// when `len` is 0. Ownership: `*out` is a new reference released with `vt_ref_free`;
/// NULL on failure. The caller keeps `data`.
/// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_UNSUPPORTED` (read-only store),
/// `VT_ERR_IO`, `VT_ERR_INDEX`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or live; `data` has `len` readable bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_blockify_buffer(
    store: *mut vt_store,
    data: *const u8,
    len: usize,
    out: *mut *mut vt_ref,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `data` has `len` readable bytes per the caller.
        let d = unsafe { bytes(data, len, "data") }?;
        let s = o.store();
        let r = blockify_bytes(d, &StoreSink(s), &blockify_opts(s))?;
        // SAFETY: as above.
        unsafe { put(out, new_ref(r)) };
        Ok(())
    })
}

/// Duplicates a caller's file descriptor, leaving the caller's open.
fn dup_fd(fd: c_int) -> Res<File> {
    if fd < 0 {
        return Err(invalid(&format!("fd {fd} is negative")));
    }
    // SAFETY: `fd` is non-negative and, per the caller's contract, an open descriptor for
    // the duration of this call; it is only borrowed to duplicate it.
    let b = unsafe { BorrowedFd::borrow_raw(fd as RawFd) };
    let owned = b
        .try_clone_to_owned()
        .map_err(|e| vt_engine::Error::io(format!("dup fd {fd}"), e))?;
    Ok(File::from(owned))
}

/// Blockifies everything readable from the file descriptor `fd` (from its current
/// offset to end of file, or until a pipe closes) and stores a new reference in `*out`.
///
/// The descriptor is not closed; its offset ends at end of file. Ownership and storing
/// as `vt_blockify_buffer`.
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (negative fd), `VT_ERR_IO` (bad descriptor,
/// read error), `VT_ERR_CLOSED`, `VT_ERR_UNSUPPORTED`, `VT_ERR_INDEX`.
/// Thread-safety: any thread (not concurrently with other readers of the same fd).
///
/// # Safety
/// `store` is NULL or live; `fd` is an open descriptor or negative; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_blockify_fd(
    store: *mut vt_store,
    fd: c_int,
    out: *mut *mut vt_ref,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        let f = dup_fd(fd)?;
        let s = o.store();
        let r = blockify_reader(f, &StoreSink(s), &blockify_opts(s))?;
        // SAFETY: as above.
        unsafe { put(out, new_ref(r)) };
        Ok(())
    })
}

/// Blockifies the file at `path` and stores a new reference in `*out`.
///
/// Ownership and storing as `vt_blockify_buffer`.
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (empty path), `VT_ERR_IO` (cannot open or
/// read), `VT_ERR_CLOSED`, `VT_ERR_UNSUPPORTED`, `VT_ERR_INDEX`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or live; `path` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_blockify_path(
    store: *mut vt_store,
    path: *const c_char,
    out: *mut *mut vt_ref,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `path` is NULL or NUL-terminated per the caller.
        let p = unsafe { self::path(path, "path") }?;
        let f =
            File::open(p).map_err(|e| vt_engine::Error::io(format!("open {}", p.display()), e))?;
        let s = o.store();
        let r = blockify_reader(f, &StoreSink(s), &blockify_opts(s))?;
        // SAFETY: as above.
        unsafe { put(out, new_ref(r)) };
        Ok(())
    })
}

/// A `Write` into the caller's raw buffer; never forms a Rust reference to it (the
/// bytes may be uninitialized).
struct RawWriter {
    ptr: *mut u8,
    cap: usize,
    pos: usize,
}

impl Write for RawWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.cap - self.pos);
        if n == 0 && !data.is_empty() {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        if n > 0 {
            // SAFETY: `ptr` has `cap` writable bytes (checked by `out_buf` and the
            // caller's contract) and `pos + n <= cap`; `data` is a library buffer.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(self.pos), n) };
        }
        self.pos += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Maps a write error into the caller's buffer (content longer than its reference says)
/// to corruption rather than I/O.
fn read_err(e: vt_engine::Error) -> vt_result {
    match e {
        vt_engine::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::WriteZero => {
            crate::error::fail_with(
                vt_result::VT_ERR_CORRUPT,
                "content is longer than its reference's span",
            )
        }
        e => e.into(),
    }
}

/// Reads the whole content of `*r` from the store into `buf` (`buf_len` bytes).
///
/// Required-size protocol: `*out_len` receives the content length (the reference's
/// span), both on success and on `VT_ERR_BUFFER_TOO_SMALL` (nothing is read then).
/// `buf` may be NULL when `buf_len` is 0. Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`,
/// `VT_ERR_BUFFER_TOO_SMALL`, `VT_ERR_INVALID` (span exceeds `SIZE_MAX`),
/// `VT_ERR_NOT_FOUND` (a block is missing), `VT_ERR_CORRUPT`, `VT_ERR_IO`, `VT_ERR_INDEX`;
/// after an error the buffer's contents are unspecified. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or live; `r` is NULL or a live reference; `buf` has `buf_len`
/// writable bytes; `out_len` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_read(
    store: *mut vt_store,
    r: *const vt_ref,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `r` is NULL or live per the caller.
        let r = &unsafe { handle(r, "ref") }?.0;
        need_out(out_len, "out_len")?;
        let (ptr, cap) = out_buf(buf, buf_len, "buf")?;
        let span = usize::try_from(r.span()).map_err(|_| {
            invalid(&format!(
                "content of {} bytes cannot fit in memory",
                r.span()
            ))
        })?;
        // SAFETY: `out_len` is non-null and writable per the caller.
        unsafe { put(out_len, span) };
        if span > cap {
            return Err(too_small(span, cap));
        }
        let mut w = RawWriter {
            ptr,
            cap: span,
            pos: 0,
        };
        let n = write_to(o.store(), r, &mut w).map_err(read_err)?;
        if n != span as u64 {
            return Err(crate::error::fail_with(
                vt_result::VT_ERR_CORRUPT,
                &format!("content is {n} bytes, its reference says {span}"),
            ));
        }
        Ok(())
    })
}

/// Reads up to `buf_len` bytes of `*r`'s content starting at byte `offset` into `buf`,
/// like `pread`: the range is clipped to the content's end, and `*out_len` receives the
/// number of bytes read (0 at or past the end).
///
/// Only the blocks overlapping the range are fetched. Errors: `VT_ERR_NULL`,
/// `VT_ERR_CLOSED`, `VT_ERR_NOT_FOUND`, `VT_ERR_CORRUPT`, `VT_ERR_IO`, `VT_ERR_INDEX`.
/// Thread-safety: any thread.
///
/// # Safety
/// As `vt_read`.
#[no_mangle]
pub unsafe extern "C" fn vt_read_range(
    store: *mut vt_store,
    r: *const vt_ref,
    offset: u64,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> vt_result {
    guard(|| {
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `r` is NULL or live per the caller.
        let r = &unsafe { handle(r, "ref") }?.0;
        need_out(out_len, "out_len")?;
        // SAFETY: `out_len` is non-null and writable per the caller.
        unsafe { put(out_len, 0) };
        let (ptr, cap) = out_buf(buf, buf_len, "buf")?;
        let mut w = RawWriter { ptr, cap, pos: 0 };
        write_range_to(o.store(), r, offset, cap as u64, &mut w).map_err(read_err)?;
        // SAFETY: as above.
        unsafe { put(out_len, w.pos) };
        Ok(())
    })
}

/// Reads the whole content of `*r` into a buffer the library allocates. Ownership:
/// `*out_data` receives `*out_len` bytes, released with `vt_bytes_free(*out_data, *out_len)`. Empty
/// content gives NULL and 0; on failure both are NULL and 0.
///
/// Errors: as `vt_read`, without `VT_ERR_BUFFER_TOO_SMALL`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or live; `r` NULL or live; `out_data`, `out_len` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_read_alloc(
    store: *mut vt_store,
    r: *const vt_ref,
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
        // SAFETY: `r` is NULL or live per the caller.
        let r = &unsafe { handle(r, "ref") }?.0;
        let data = vt_engine::read::read_all(o.store(), r)?;
        let (p, n) = into_c_bytes(data);
        // SAFETY: as above.
        unsafe {
            put(out_data, p);
            put(out_len, n);
        }
        Ok(())
    })
}

/// Writes the whole content of `*r` to the file descriptor `fd` (at its current offset;
/// the descriptor is not closed). `*out_written` (if not NULL) receives the bytes
/// written, also after a failure part-way.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (negative fd), `VT_ERR_IO` (bad descriptor or
/// write error), `VT_ERR_CLOSED`, `VT_ERR_NOT_FOUND`, `VT_ERR_CORRUPT`, `VT_ERR_INDEX`.
/// Thread-safety: any thread (not concurrently with other writers of the same fd).
///
/// # Safety
/// `store` NULL or live; `r` NULL or live; `fd` open or negative; `out_written` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn vt_read_to_fd(
    store: *mut vt_store,
    r: *const vt_ref,
    fd: c_int,
    out_written: *mut u64,
) -> vt_result {
    guard(|| {
        // SAFETY: `out_written` is NULL or writable per the caller.
        unsafe { put(out_written, 0) };
        // SAFETY: `store` is NULL or live per the caller.
        let (_, o) = unsafe { store_arg(store) }?;
        // SAFETY: `r` is NULL or live per the caller.
        let r = &unsafe { handle(r, "ref") }?.0;
        let mut f = dup_fd(fd)?;
        let mut counted = CountingWriter {
            inner: &mut f,
            n: 0,
        };
        let res = write_to(o.store(), r, &mut counted);
        // SAFETY: as above.
        unsafe { put(out_written, counted.n) };
        res?;
        Ok(())
    })
}

struct CountingWriter<'a> {
    inner: &'a mut File,
    n: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Parses a block reference transcription into a new reference in `*out`: the forms
/// printed by `vt_ref_format` and the `vt` command (`B{hash:H{blake3:..},span:N}`,
/// `I{hash:..,span:N}`, `LB{..}`, `RLE{span:N,octet:xx}`, `SubB{block:..,offset:N,span:N}`)
/// and the cs.vt forms that carry their span.
///
/// Ownership: `*out` is released with `vt_ref_free`; NULL on failure.
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (not UTF-8, malformed; the message says
/// where). Thread-safety: any thread.
///
/// # Safety
/// `text` is NULL or NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_ref_parse(text: *const c_char, out: *mut *mut vt_ref) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: `text` is NULL or NUL-terminated per the caller.
        let s = unsafe { utf8(text, "text") }?;
        let r: BlockRef = s.parse()?;
        // SAFETY: as above.
        unsafe { put(out, new_ref(r)) };
        Ok(())
    })
}

/// Writes `*r`'s transcription plus a NUL into `buf`. `*out_len` receives the text
/// length without the NUL, also on `VT_ERR_BUFFER_TOO_SMALL` (then the buffer needs
/// `*out_len + 1` bytes). `buf` may be NULL when `buf_len` is 0.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_BUFFER_TOO_SMALL`. Thread-safety: any thread.
///
/// # Safety
/// `r` NULL or live; `buf` has `buf_len` writable bytes; `out_len` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_ref_format(
    r: *const vt_ref,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> vt_result {
    guard(|| {
        // SAFETY: `r` is NULL or live per the caller.
        let r = &unsafe { handle(r, "ref") }?.0;
        // SAFETY: buffer and out_len validity per the caller.
        unsafe { text_out(&r.to_string(), buf.cast(), buf_len, out_len) }
    })
}

/// Stores `*r`'s transcription as a new NUL-terminated string in `*out`. Ownership:
/// release it with `vt_string_free`; NULL on failure.
///
/// Errors: `VT_ERR_NULL`. Thread-safety: any thread.
///
/// # Safety
/// `r` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_ref_to_string(r: *const vt_ref, out: *mut *mut c_char) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: `r` is NULL or live per the caller.
        let r = &unsafe { handle(r, "ref") }?.0;
        let s = into_c_string(r.to_string())?;
        // SAFETY: as above.
        unsafe { put(out, s) };
        Ok(())
    })
}

/// Sets `*out` to the length in bytes of the content `*r` stands for.
///
/// Errors: `VT_ERR_NULL`. Thread-safety: any thread.
///
/// # Safety
/// `r` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_ref_span(r: *const vt_ref, out: *mut u64) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `r` is NULL or live per the caller.
        let r = &unsafe { handle(r, "ref") }?.0;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, r.span()) };
        Ok(())
    })
}

/// Sets `*out` to the hashcode of the stored block `*r` names (for hash and indirect
/// references; an indirect reference's block holds its children's references).
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (a literal, run or sub-range reference has no
/// hashcode of its own). Thread-safety: any thread.
///
/// # Safety
/// `r` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn vt_ref_hashcode(r: *const vt_ref, out: *mut vt_hashcode) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `r` is NULL or live per the caller.
        let r = &unsafe { handle(r, "ref") }?.0;
        let h = r
            .hashcode()
            .ok_or_else(|| invalid("this reference has no hashcode of its own"))?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, h.into()) };
        Ok(())
    })
}

/// Releases a reference. NULL is ignored.
///
/// Ownership: takes the reference. Errors: none. Thread-safety: must be the last call on it.
///
/// # Safety
/// `r` is NULL or a reference from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn vt_ref_free(r: *mut vt_ref) {
    if !r.is_null() {
        // SAFETY: `r` came from Box::into_raw in `new_ref` and is freed once.
        drop(unsafe { Box::from_raw(r) });
    }
}

/// Releases a string returned by the library (`vt_ref_to_string`, `vt_pack`,
/// `vt_archive_revision`). NULL is ignored.
///
/// Ownership: takes the string. Errors: none. Thread-safety: any thread.
///
/// # Safety
/// `s` is NULL or a string from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn vt_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` came from CString::into_raw in `into_c_string` and is freed once.
        drop(unsafe { CString::from_raw(s) });
    }
}
