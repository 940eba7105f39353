//! The C ABI of vt (`include/vt.h`).

/// The library version as a NUL-terminated string.
#[no_mangle]
pub extern "C" fn vt_version() -> *const std::ffi::c_char {
    c"0.1.0".as_ptr()
}
