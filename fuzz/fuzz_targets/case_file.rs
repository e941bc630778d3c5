//! `cargo +nightly fuzz run case_file`: the harness `lossgraph::doors::case_file`
//! (documented there) under libFuzzer and AddressSanitizer, mutating a real
//! case file as well as raw bytes.
#![no_main]

const SAMPLE: &str = include_str!("../../crates/losses/tests/conformance/huber.json");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    lossgraph::doors::case_file(data, SAMPLE);
});
