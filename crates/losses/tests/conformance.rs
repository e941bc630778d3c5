//! Runs every conformance case (PyTorch-computed values and gradients, and
//! bad inputs that must be errors) in every dtype it lists.
//!
//! Cases come from `$LOSSGRAPH_CONFORMANCE_DIR` when set, else from the
//! vendored `tests/conformance/`. Prints one line per failing case and closes
//! with `conformance: N passed, M failed`; fails if M > 0 or N == 0.

use lossgraph_losses::conformance::{load_dir, print_report, run_all};
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
    if !print_report(&run_all(&cases)) {
        std::process::exit(1);
    }
}
