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

    #[test]
    fn cli_args(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
        let _ = doors::cli_args(&bytes);
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
    // `plot mse --points 100000000000` reserved the points up front and
    // aborted; 18446744073709551616 does not fit a usize at all
    for points in ["100000000000", "18446744073709551616", "0", "1"] {
        assert_eq!(
            cli(&["plot", "mse", "--points", points]),
            2,
            "--points {points}"
        );
    }
    // ten settings of ten values expand to 10^10 curves
    let many = "1,2,3,4,5,6,7,8,9,10";
    let settings: Vec<String> = (0..10).map(|_| format!("delta={many}")).collect();
    let mut args = vec!["plot".to_string(), format!("huber:{}", settings.join(":"))];
    args.extend(["--points".into(), "3".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(cli(&args), 2);
}

/// Run the command line `lossgraph ARGS --out <scratch>/t.svg` in process;
/// its exit code (2 is a usage error).
fn cli(args: &[&str]) -> u8 {
    use clap::Parser;
    let dir = std::env::temp_dir().join(format!("lossgraph-doors-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("t.svg").display().to_string();
    let mut argv = vec!["lossgraph"];
    argv.extend_from_slice(args);
    argv.extend(["--out", &out]);
    let code = match lossgraph::cli::Cli::try_parse_from(argv) {
        Ok(cli) => lossgraph::cli::run(cli),
        Err(_) => lossgraph::cli::USAGE,
    };
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// A fixed, seeded stream of bytes (xorshift64*).
fn byte_stream() -> impl FnMut() -> u8 {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
    }
}

/// The command-line door is only worth its cases if random bytes get past
/// the parser: count the command lines that parsed, and those that parsed
/// as `plot` and drew a figure, over a fixed stream of byte strings.
#[test]
fn command_lines_reach_the_commands() {
    use lossgraph::cli::CommandKind;
    let mut byte = byte_stream();
    let (mut parsed, mut plots, tries) = (0, 0, 300);
    for _ in 0..tries {
        let bytes: Vec<u8> = (0..24).map(|_| byte()).collect();
        match doors::cli_args(&bytes) {
            Some((CommandKind::Plot, true)) => (parsed, plots) = (parsed + 1, plots + 1),
            Some(_) => parsed += 1,
            None => {}
        }
    }
    assert!(
        parsed * 4 >= tries,
        "only {parsed} of {tries} command lines parsed"
    );
    assert!(
        plots * 25 >= tries,
        "only {plots} of {tries} command lines drew a plot"
    );
    eprintln!("cli door: {parsed} of {tries} command lines parsed, {plots} drew a plot");
}

/// The registry door is only worth its cases if random bytes reach the
/// kernels: count the builds that were accepted (forward and backward ran)
/// over a fixed stream of byte strings.
#[test]
fn registry_calls_reach_the_kernels() {
    let mut byte = byte_stream();
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
