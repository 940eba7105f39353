//! libFuzzer target: [`vt_fuzz::text`] (see fuzz/run.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vt_fuzz::text(data));
