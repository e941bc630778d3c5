//! Runs every conformance case (PyTorch-computed values and gradients, and
//! bad inputs that must be errors) in every dtype it lists.
//!
//! Cases come from `$LOSSGRAPH_CONFORMANCE_DIR` when set, else from the
//! vendored `tests/conformance/` (the shared PyTorch cases), `tests/edges/`
//! (inputs exactly at each loss's kinks, and logits of extreme magnitude, from
//! `tests/edges/generate.py`) and `tests/magnitudes/` (every op on inputs
//! scaled over 1e-30 … 1e30, logits up to ±1e4, probabilities at 0, 1 and an
//! f32 ulp from them, temperatures down to 1e-3, from
//! `tests/magnitudes/generate.py`; checked norm-wise, f32 against a multiple
//! of PyTorch's own f32 error stored with each case). Prints one line per
//! failing case and closes with `conformance: N passed, M failed`; fails if
//! M > 0 or N == 0.

use lossgraph_losses::conformance::{load_dir, print_report, run_all};
use std::path::PathBuf;

fn main() {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dirs = match std::env::var_os("LOSSGRAPH_CONFORMANCE_DIR") {
        Some(d) => vec![PathBuf::from(d)],
        None => vec![
            here.join("tests/conformance"),
            here.join("tests/edges"),
            here.join("tests/magnitudes"),
        ],
    };
    let mut cases = Vec::new();
    for dir in &dirs {
        match load_dir(dir) {
            Ok(c) => cases.extend(c),
            Err(e) => {
                eprintln!("conformance: cannot load cases from {}: {e}", dir.display());
                std::process::exit(1);
            }
        }
    }
    if !print_report(&run_all(&cases)) {
        std::process::exit(1);
    }
}
