//! Shared helpers for vt's end-to-end tests.

use std::path::PathBuf;

/// The directory of the cs.vt compatibility fixtures.
pub fn csvt_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/csvt")
}
