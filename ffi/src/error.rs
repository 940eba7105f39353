//! Stable result codes and the per-thread error message.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use vt_engine::Error;

/// Result codes of every fallible `vt_` function. Values are stable and never reused.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vt_result {
    /// Success.
    VT_OK = 0,
    /// A required pointer argument was NULL.
    VT_ERR_NULL = 1,
    /// An argument was invalid (bad UTF-8, bad length, malformed transcription, ...).
    VT_ERR_INVALID = 2,
    /// The caller's buffer is too small; the required size was stored.
    VT_ERR_BUFFER_TOO_SMALL = 3,
    /// The block (or file, or revision) does not exist.
    VT_ERR_NOT_FOUND = 4,
    /// Stored data failed an integrity check.
    VT_ERR_CORRUPT = 5,
    /// An operating-system I/O error.
    VT_ERR_IO = 6,
    /// The store is locked by another writer.
    VT_ERR_LOCKED = 7,
    /// The store handle was closed with `vt_store_close`.
    VT_ERR_CLOSED = 8,
    /// The operation is not supported here.
    VT_ERR_UNSUPPORTED = 9,
    /// An internal error: a bug in libvt (a caught panic).
    VT_ERR_INTERNAL = 10,
    /// The index reported an error.
    VT_ERR_INDEX = 11,
    /// The call is not allowed in the handle's current state (e.g. committing with no
    /// open transaction, beginning a second one, or flushing inside one).
    VT_ERR_STATE = 12,
}

impl From<Error> for vt_result {
    /// Records the error's message as the thread's last error and maps it to its code.
    fn from(e: Error) -> Self {
        fail(&e)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records `msg` as this thread's last error message.
pub fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

/// Clears this thread's last error message.
pub fn clear_last_error() {
    LAST_ERROR.with(|e| {
        // Most calls follow a success: skip the write (and the drop) then.
        if e.borrow().is_some() {
            *e.borrow_mut() = None;
        }
    });
}

/// Maps an engine error to its result code and records its message.
pub fn fail(e: &Error) -> vt_result {
    set_last_error(&e.to_string());
    match e {
        Error::Io { .. } => vt_result::VT_ERR_IO,
        Error::Corrupt { .. } => vt_result::VT_ERR_CORRUPT,
        Error::NotFound(_) => vt_result::VT_ERR_NOT_FOUND,
        Error::BadInput(_) => vt_result::VT_ERR_INVALID,
        Error::Locked { .. } => vt_result::VT_ERR_LOCKED,
        Error::Closed => vt_result::VT_ERR_CLOSED,
        Error::Index(_) => vt_result::VT_ERR_INDEX,
        Error::Unsupported(_) => vt_result::VT_ERR_UNSUPPORTED,
        _ => vt_result::VT_ERR_INTERNAL,
    }
}

/// Records `msg` and returns `code`.
pub fn fail_with(code: vt_result, msg: &str) -> vt_result {
    set_last_error(msg);
    code
}

/// The message of the last failed `vt_` call on this thread, or NULL when the last
/// call succeeded.
///
/// Ownership: the string belongs to the library and stays valid until the next `vt_`
/// call on this thread; do not free it. Errors: none. Thread-safety: each thread has
/// its own message.
#[no_mangle]
pub extern "C" fn vt_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| match &*e.borrow() {
        Some(c) => c.as_ptr(),
        None => std::ptr::null(),
    })
}

/// A static, NUL-terminated description of a result code (a `vt_result` value).
///
/// Takes a plain `int` so that any value, even one not (yet) defined, is safe to pass.
/// Ownership: static; never NULL; do not free it. Errors: none (unknown codes give
/// "unknown result code"). Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn vt_result_name(code: c_int) -> *const c_char {
    use vt_result::*;
    const ALL: [vt_result; 13] = [
        VT_OK,
        VT_ERR_NULL,
        VT_ERR_INVALID,
        VT_ERR_BUFFER_TOO_SMALL,
        VT_ERR_NOT_FOUND,
        VT_ERR_CORRUPT,
        VT_ERR_IO,
        VT_ERR_LOCKED,
        VT_ERR_CLOSED,
        VT_ERR_UNSUPPORTED,
        VT_ERR_INTERNAL,
        VT_ERR_INDEX,
        VT_ERR_STATE,
    ];
    let s: &'static CStr = match ALL.iter().find(|r| **r as c_int == code) {
        Some(VT_OK) => c"ok",
        Some(VT_ERR_NULL) => c"null pointer argument",
        Some(VT_ERR_INVALID) => c"invalid argument",
        Some(VT_ERR_BUFFER_TOO_SMALL) => c"buffer too small",
        Some(VT_ERR_NOT_FOUND) => c"not found",
        Some(VT_ERR_CORRUPT) => c"corrupt data",
        Some(VT_ERR_IO) => c"I/O error",
        Some(VT_ERR_LOCKED) => c"store locked",
        Some(VT_ERR_CLOSED) => c"store closed",
        Some(VT_ERR_UNSUPPORTED) => c"unsupported",
        Some(VT_ERR_INTERNAL) => c"internal error",
        Some(VT_ERR_INDEX) => c"index error",
        Some(VT_ERR_STATE) => c"wrong state",
        None => c"unknown result code",
    };
    s.as_ptr()
}
