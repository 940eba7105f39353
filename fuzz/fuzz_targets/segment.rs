//! libFuzzer target: [`vt_fuzz::segment`] (see fuzz/run.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vt_fuzz::segment(data));
