//! The stable twin of the fuzz targets in `fuzz/`: the same harnesses of
//! `lossgraph::doors`, fed random bytes by proptest for a bounded number of
//! cases. A harness returns normally on any input; a panic fails the test
//! (and proptest shrinks the bytes to a minimal reproducer).

use lossgraph::doors;
use proptest::prelude::*;

const SAMPLE_CASES: &str = include_str!("../crates/losses/tests/conformance/huber.json");

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn tensor_shapes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        doors::tensor_shapes(&bytes);
    }

    #[test]
    fn checkpoint_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        doors::checkpoint_bytes(&bytes);
    }

    #[test]
    fn registry_call(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        doors::registry_call(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn case_file(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        doors::case_file(&bytes, SAMPLE_CASES);
    }
}

/// Regression inputs: each byte string once reached a panic (kept so a fix
/// stays fixed), or names a door's edge on purpose.
#[test]
fn known_inputs() {
    // a shape of [2^32, 2^32] with no data (the report)
    doors::tensor_shapes(&[2, 1, 32, 1, 32]);
    // an empty checkpoint, and one byte
    doors::checkpoint_bytes(&[]);
    doors::checkpoint_bytes(&[0]);
    // every op of the catalog with its first family and no overrides
    for i in 0..=lossgraph::losses::catalog::CATALOG.len() as u8 {
        doors::registry_call(&[i]);
    }
    doors::case_file(&[0], SAMPLE_CASES);
    doors::case_file(&[1], SAMPLE_CASES);
}

/// The registry door is only worth its cases if random bytes reach the
/// kernels: count the builds that were accepted (forward and backward ran)
/// over a fixed stream of byte strings.
#[test]
fn registry_calls_reach_the_kernels() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut byte = || {
        // xorshift64*: a fixed, seeded stream
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
    };
    let (mut built, tries) = (0, 300);
    for _ in 0..tries {
        let bytes: Vec<u8> = (0..64).map(|_| byte()).collect();
        built += doors::registry_call(&bytes);
    }
    // three builds a call; at least a fifth of them must get through
    assert!(
        built * 5 >= tries * 3,
        "only {built} of {} builds were accepted",
        tries * 3
    );
    eprintln!("registry door: {built} of {} builds accepted", tries * 3);
}
