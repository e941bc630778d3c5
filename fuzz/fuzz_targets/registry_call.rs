//! `cargo +nightly fuzz run registry_call`: the harness `lossgraph::doors::registry_call`
//! (documented there) under libFuzzer and AddressSanitizer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    lossgraph::doors::registry_call(data);
});
