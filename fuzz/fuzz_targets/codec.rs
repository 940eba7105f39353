//! libFuzzer target: [`vt_fuzz::codec`] (see fuzz/run.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vt_fuzz::codec(data));
