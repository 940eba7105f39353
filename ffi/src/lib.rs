//! The C ABI of vt (`include/vt.h`, generated from this crate by cbindgen).
//!
//! Conventions, kept by every export:
//! - names start with `vt_`; handles are opaque and each has a `vt_*_free`;
//! - fallible functions return a [`error::vt_result`] (stable numbers, never reused) and
//!   record a message readable with `vt_last_error_message`;
//! - every pointer argument is checked for NULL, every length for size; out-pointers are
//!   written NULL/0 on failure where documented;
//! - every export runs inside [`panic::guard`]: a Rust panic becomes `VT_ERR_INTERNAL`,
//!   never an abort or an unwind into C;
//! - `unsafe` lives only here, each block with a `SAFETY:` comment.
#![allow(non_camel_case_types)]

pub mod args;
pub mod error;
pub mod hash;
pub mod panic;
pub mod refs;
pub mod store;
pub mod tree;

/// Major version of the C API; incompatible changes increment it.
pub const VT_API_VERSION_MAJOR: u32 = 0;
/// Minor version of the C API; additions increment it.
pub const VT_API_VERSION_MINOR: u32 = 1;

/// The library version as a static NUL-terminated string (e.g. "0.1.0").
///
/// Ownership: static; never NULL; do not free it. Errors: none. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn vt_version() -> *const std::ffi::c_char {
    const V: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => panic!("version holds a NUL"),
    };
    V.as_ptr()
}
