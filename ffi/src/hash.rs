//! Hashcodes as a plain C struct, and their text form.

use crate::args::{handle, invalid, need_out, put, text_out, utf8, Res};
use crate::error::vt_result;
use crate::panic::guard;
use std::ffi::c_char;
use vt_engine::{HashAlg, HashCode};

/// SHA-1 (legacy; 20-byte digest).
pub const VT_HASH_SHA1: u32 = 0;
/// SHA-256 (32-byte digest).
pub const VT_HASH_SHA256: u32 = 1;
/// BLAKE3 (32-byte digest), the default for new stores.
pub const VT_HASH_BLAKE3: u32 = 2;

/// A block's hashcode, by value. `digest_len` bytes of `digest` are used (20 for SHA-1,
/// 32 otherwise); the rest are zero.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct vt_hashcode {
    /// One of `VT_HASH_SHA1`, `VT_HASH_SHA256`, `VT_HASH_BLAKE3`.
    pub alg: u32,
    /// Number of meaningful bytes in `digest`.
    pub digest_len: u32,
    /// The digest.
    pub digest: [u8; 32],
}

impl From<HashCode> for vt_hashcode {
    fn from(h: HashCode) -> Self {
        let mut digest = [0u8; 32];
        let d = h.digest();
        digest[..d.len()].copy_from_slice(d);
        vt_hashcode {
            alg: h.alg().hashenum() as u32,
            digest_len: d.len() as u32,
            digest,
        }
    }
}

impl vt_hashcode {
    /// The engine hashcode; fails with `VT_ERR_INVALID` on an unknown algorithm or a
    /// length that does not match it.
    pub fn to_engine(&self) -> Res<HashCode> {
        // Checked here rather than through the engine's Result-returning constructors,
        // which build an engine error on the way: this runs on every vt_get.
        let alg = match self.alg {
            VT_HASH_SHA1 => HashAlg::Sha1,
            VT_HASH_SHA256 => HashAlg::Sha256,
            VT_HASH_BLAKE3 => HashAlg::Blake3,
            a => return Err(invalid(&format!("unknown hash algorithm {a}"))),
        };
        let len = self.digest_len as usize;
        if len != alg.digest_len() {
            return Err(invalid(&format!(
                "digest_len {len} does not match {} ({} bytes)",
                alg.name(),
                alg.digest_len()
            )));
        }
        Ok(HashCode::from_digest(alg, &self.digest[..len])?)
    }
}

/// Borrows a `*const vt_hashcode` argument and converts it.
///
/// # Safety
/// `p` is NULL or points to a readable `vt_hashcode`.
pub unsafe fn hash_arg(p: *const vt_hashcode) -> Res<HashCode> {
    // SAFETY: forwarded from the caller.
    unsafe { handle(p, "hash") }?.to_engine()
}

/// Writes the text form of a hashcode (`H{blake3:<hex>}`) into `buf` plus a NUL.
///
/// `*out_len` receives the text length without the NUL, also when the buffer is too
/// small; `buf` needs `*out_len + 1` bytes. `buf` may be NULL when `buf_len` is 0.
/// Errors: `VT_ERR_NULL` (hash or out_len NULL, or buf NULL with buf_len > 0),
/// `VT_ERR_INVALID` (unknown algorithm or wrong digest_len), `VT_ERR_BUFFER_TOO_SMALL`.
/// Thread-safety: any thread.
///
/// # Safety
/// `hash` points to a `vt_hashcode`; `buf` has `buf_len` writable bytes; `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn vt_hashcode_format(
    hash: *const vt_hashcode,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> vt_result {
    guard(|| {
        // SAFETY: pointer validity is the caller's contract, forwarded.
        let h = unsafe { hash_arg(hash) }?;
        // SAFETY: as above.
        unsafe { text_out(&h.to_string(), buf.cast(), buf_len, out_len) }
    })
}

/// Parses the text form of a hashcode (`H{alg:hex}`) into `*out`.
///
/// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (not UTF-8 or malformed). `*out` is written
/// only on success. Thread-safety: any thread.
///
/// # Safety
/// `text` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn vt_hashcode_parse(
    text: *const c_char,
    out: *mut vt_hashcode,
) -> vt_result {
    guard(|| {
        need_out(out, "out")?;
        // SAFETY: `text` is NUL-terminated per the caller.
        let s = unsafe { utf8(text, "text") }?;
        let h = HashCode::parse(s)?;
        // SAFETY: `out` is non-null and writable per the caller.
        unsafe { put(out, h.into()) };
        Ok(())
    })
}
