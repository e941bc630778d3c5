//! `cargo +nightly fuzz run checkpoint_bytes`: the harness `lossgraph::doors::checkpoint_bytes`
//! (documented there) under libFuzzer and AddressSanitizer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    lossgraph::doors::checkpoint_bytes(data);
});
