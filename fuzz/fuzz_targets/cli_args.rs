//! `cargo +nightly fuzz run cli_args`: the harness `lossgraph::doors::cli_args`
//! (documented there) under libFuzzer and AddressSanitizer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lossgraph::doors::cli_args(data);
});
