//! libFuzzer target: [`vt_fuzz::tree`] (see fuzz/run.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vt_fuzz::tree(data));
