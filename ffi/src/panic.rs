//! The panic boundary: no Rust panic ever unwinds into C.

use crate::error::{clear_last_error, fail_with, vt_result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, mapping `Ok` to `VT_OK`, `Err(code)` to `code`, and a panic to
/// `VT_ERR_INTERNAL` with its message recorded. Clears the thread's last error first.
pub fn guard(f: impl FnOnce() -> Result<(), vt_result>) -> vt_result {
    clear_last_error();
    // AssertUnwindSafe: after a panic the handle may hold half-updated state, but every
    // handle's shared state sits behind locks that stay usable (no poisoning is relied on).
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => vt_result::VT_OK,
        Ok(Err(code)) => code,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            fail_with(
                vt_result::VT_ERR_INTERNAL,
                &format!("internal error (panic): {msg}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_message() -> String {
        let p = crate::error::vt_last_error_message();
        assert!(!p.is_null());
        // SAFETY: a non-null message pointer is a live NUL-terminated thread-local string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_error_with_its_message() {
        let r = guard(|| panic!("boom {}", 7));
        assert_eq!(r, vt_result::VT_ERR_INTERNAL);
        assert!(last_message().contains("boom 7"), "{}", last_message());
        let r = guard(|| panic!("static"));
        assert_eq!(r, vt_result::VT_ERR_INTERNAL);
        assert!(last_message().contains("static"));
    }

    #[test]
    fn success_clears_the_last_error() {
        let _ = guard(|| Err(fail_with(vt_result::VT_ERR_INVALID, "bad")));
        assert_eq!(last_message(), "bad");
        assert_eq!(guard(|| Ok(())), vt_result::VT_OK);
        assert!(crate::error::vt_last_error_message().is_null());
    }
}
