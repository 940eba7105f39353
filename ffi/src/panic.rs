//! The panic boundary: no Rust panic ever unwinds into C.

use crate::error::{clear_last_error, fail_with, vt_result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `VT_ERR_INTERNAL` with its message recorded.
pub fn guard(f: impl FnOnce() -> vt_result) -> vt_result {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            fail_with(vt_result::VT_ERR_INTERNAL, &format!("internal error (panic): {msg}"))
        }
    }
}
