#![no_main]
//! See `daybook::fuzz_targets::tenants_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| daybook::fuzz_targets::tenants_file(data));
