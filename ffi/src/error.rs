//! Stable result codes and the per-thread error message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
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
    /// The handle was closed or is in the wrong state (e.g. no open transaction).
    VT_ERR_CLOSED = 8,
    /// The operation is not supported here.
    VT_ERR_UNSUPPORTED = 9,
    /// An internal error: a bug in libvt (a caught panic).
    VT_ERR_INTERNAL = 10,
    /// The index reported an error.
    VT_ERR_INDEX = 11,
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
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
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

/// The message of the last failed call on this thread, or NULL if none.
///
/// The pointer stays valid until the next `vt_` call on this thread; do not free it.
#[no_mangle]
pub extern "C" fn vt_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| match &*e.borrow() {
        Some(c) => c.as_ptr(),
        None => std::ptr::null(),
    })
}

/// A static, NUL-terminated description of a result code. Never NULL; do not free it.
#[no_mangle]
pub extern "C" fn vt_result_name(code: vt_result) -> *const c_char {
    let s: &'static std::ffi::CStr = match code {
        vt_result::VT_OK => c"ok",
        vt_result::VT_ERR_NULL => c"null pointer argument",
        vt_result::VT_ERR_INVALID => c"invalid argument",
        vt_result::VT_ERR_BUFFER_TOO_SMALL => c"buffer too small",
        vt_result::VT_ERR_NOT_FOUND => c"not found",
        vt_result::VT_ERR_CORRUPT => c"corrupt data",
        vt_result::VT_ERR_IO => c"I/O error",
        vt_result::VT_ERR_LOCKED => c"store locked",
        vt_result::VT_ERR_CLOSED => c"closed or wrong state",
        vt_result::VT_ERR_UNSUPPORTED => c"unsupported",
        vt_result::VT_ERR_INTERNAL => c"internal error",
        vt_result::VT_ERR_INDEX => c"index error",
    };
    s.as_ptr()
}
