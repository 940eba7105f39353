//! libFuzzer target: [`vt_fuzz::fs`] (see fuzz/run.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vt_fuzz::fs(data));
