//! Benchmark helpers for vt.
