#![no_main]
//! See `daybook::fuzz_targets::config_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| daybook::fuzz_targets::config_file(data));
