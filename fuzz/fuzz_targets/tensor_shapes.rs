//! `cargo +nightly fuzz run tensor_shapes`: the harness `lossgraph::doors::tensor_shapes`
//! (documented there) under libFuzzer and AddressSanitizer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    lossgraph::doors::tensor_shapes(data);
});
