//! Argument checks shared by every export: NULL pointers, lengths, UTF-8, out-parameters.

use crate::error::{fail_with, vt_result};
use std::ffi::{c_char, CStr, CString};

/// The result of an export's body: `Err` carries a code whose message is already recorded.
pub type Res<T = ()> = Result<T, vt_result>;

/// Fails with `VT_ERR_NULL`, naming the argument.
pub fn null(what: &str) -> vt_result {
    fail_with(vt_result::VT_ERR_NULL, &format!("{what} is NULL"))
}

/// Fails with `VT_ERR_INVALID` and `msg`.
pub fn invalid(msg: &str) -> vt_result {
    fail_with(vt_result::VT_ERR_INVALID, msg)
}

/// Borrows a handle argument.
///
/// # Safety
/// `p` is NULL or points to a live `T` that outlives the returned reference.
pub unsafe fn handle<'a, T>(p: *const T, what: &str) -> Res<&'a T> {
    // SAFETY: the caller guarantees `p` is NULL or valid; NULL is rejected by `as_ref`.
    unsafe { p.as_ref() }.ok_or_else(|| null(what))
}

/// Borrows a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the returned reference.
pub unsafe fn utf8<'a>(p: *const c_char, what: &str) -> Res<&'a str> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: `p` is non-null and the caller guarantees it is NUL-terminated and live.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| invalid(&format!("{what} is not valid UTF-8")))
}

/// Borrows a NUL-terminated path argument (any bytes but NUL; not necessarily UTF-8).
///
/// # Safety
/// As for [`utf8`].
pub unsafe fn path<'a>(p: *const c_char, what: &str) -> Res<&'a std::path::Path> {
    use std::os::unix::ffi::OsStrExt;
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: `p` is non-null and the caller guarantees it is NUL-terminated and live.
    let c = unsafe { CStr::from_ptr(p) };
    if c.is_empty() {
        return Err(invalid(&format!("{what} is empty")));
    }
    Ok(std::path::Path::new(std::ffi::OsStr::from_bytes(
        c.to_bytes(),
    )))
}

/// Borrows a byte-buffer argument; NULL is allowed when `len` is 0.
///
/// # Safety
/// When `len > 0`, `p` is NULL or points to `len` readable bytes that outlive the slice.
pub unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Res<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    if len > isize::MAX as usize {
        return Err(invalid(&format!("{what}: length {len} is too large")));
    }
    // SAFETY: `p` is non-null, `len` fits in isize, and the caller guarantees `len`
    // readable bytes at `p` for the slice's lifetime.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Checks that an out-parameter is not NULL.
pub fn need_out<T>(p: *mut T, what: &str) -> Res {
    if p.is_null() {
        Err(null(what))
    } else {
        Ok(())
    }
}

/// Stores `v` through the out-parameter `p` when `p` is not NULL.
///
/// # Safety
/// `p` is NULL or valid for a write of `T` (it may be uninitialized).
pub unsafe fn put<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-null and valid for writes per the caller; `write` does not read or
        // drop the old (possibly uninitialized) value.
        unsafe { p.write(v) }
    }
}

/// Copies `src` into the caller's buffer `buf` of `cap` bytes.
///
/// # Safety
/// `buf` is valid for `cap` bytes of writes, and `src.len() <= cap`.
pub unsafe fn copy_out(src: &[u8], buf: *mut u8, cap: usize) {
    debug_assert!(src.len() <= cap);
    if !src.is_empty() {
        // SAFETY: the caller guarantees `buf` has room for `cap >= src.len()` bytes; a
        // caller's buffer cannot overlap a Vec the library just allocated.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), buf, src.len()) }
    }
}

/// Checks the caller's output buffer (pointer, capacity): NULL only with capacity 0.
pub fn out_buf(buf: *mut u8, cap: usize, what: &str) -> Res<(*mut u8, usize)> {
    if cap > 0 && buf.is_null() {
        return Err(null(what));
    }
    if cap > isize::MAX as usize {
        return Err(invalid(&format!("{what}: length {cap} is too large")));
    }
    Ok((buf, cap))
}

/// Hands `data` to C as a heap buffer freed by `vt_bytes_free(ptr, len)`.
/// Empty data gives NULL.
pub fn into_c_bytes(data: Vec<u8>) -> (*mut u8, usize) {
    if data.is_empty() {
        return (std::ptr::null_mut(), 0);
    }
    let b = data.into_boxed_slice();
    let len = b.len();
    (Box::into_raw(b).cast::<u8>(), len)
}

/// Hands `s` to C as a NUL-terminated heap string freed by `vt_string_free`.
pub fn into_c_string(s: String) -> Res<*mut c_char> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|_| invalid("text contains a NUL byte"))
}

/// Writes `text` plus a NUL into the caller's buffer with the required-size protocol:
/// `*out_len` receives the text length (without the NUL); the buffer needs one more byte.
///
/// # Safety
/// `buf` is valid for `cap` bytes of writes (or NULL with `cap == 0`); `out_len` is valid.
pub unsafe fn text_out(text: &str, buf: *mut u8, cap: usize, out_len: *mut usize) -> Res {
    need_out(out_len, "out_len")?;
    let (buf, cap) = out_buf(buf, cap, "buf")?;
    // SAFETY: `out_len` is non-null and valid for writes per the caller.
    unsafe { put(out_len, text.len()) };
    if text.len() >= cap {
        return Err(fail_with(
            vt_result::VT_ERR_BUFFER_TOO_SMALL,
            &format!(
                "text needs {} bytes (with the NUL), buffer has {cap}",
                text.len() + 1
            ),
        ));
    }
    // SAFETY: `text.len() + 1 <= cap` bytes fit in the caller's buffer.
    unsafe {
        copy_out(text.as_bytes(), buf, cap);
        buf.add(text.len()).write(0);
    }
    Ok(())
}
