//! Runs every conformance case (PyTorch-computed values and gradients, and
//! bad inputs that must be errors) in every dtype it lists.
//!
//! Cases come from `$LOSSGRAPH_CONFORMANCE_DIR` when set, else from the
//! vendored `tests/conformance/`. Prints one line per failing case and closes
//! with `conformance: N passed, M failed`; fails if M > 0 or N == 0.

use lossgraph_losses::conformance::{load_dir, run_all, summary};
use std::path::PathBuf;

fn main() {
    let dir = std::env::var_os("LOSSGRAPH_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance"));
    let cases = match load_dir(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conformance: cannot load cases from {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    let outcomes = run_all(&cases);
    for o in outcomes.iter().filter(|o| o.failure.is_some()) {
        println!(
            "FAIL {} [{}]: {}",
            o.id,
            o.dtype,
            o.failure.as_deref().unwrap_or("")
        );
    }
    let passed = outcomes.iter().filter(|o| o.failure.is_none()).count();
    let failed = outcomes.len() - passed;
    println!("{}", summary(&outcomes));
    if failed > 0 || passed == 0 {
        std::process::exit(1);
    }
}
