#![no_main]
//! See `daybook::fuzz_targets::ingest_batch`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| daybook::fuzz_targets::ingest_batch(data));
