#![no_main]
//! See `daybook::fuzz_targets::journal_segment`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| daybook::fuzz_targets::journal_segment(data));
