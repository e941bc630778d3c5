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
//!
//! Every case runs with check mode on (it changes no value). The runs that
//! trip a check print a `CHECK` line, and must be exactly the cases
//! `docs/checks.md` lists, with the same warnings.

use lossgraph_losses::conformance::{load_dir, print_report, run_all, Outcome};
use std::collections::BTreeSet;
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
    let outcomes = run_all(&cases);
    for o in outcomes.iter().filter(|o| !o.warnings.is_empty()) {
        println!("CHECK {} [{}]: {}", o.id, o.dtype, o.warnings.join(", "));
    }
    let passed = print_report(&outcomes);
    // the list in the docs is of the vendored cases; another folder has its own
    let listed = std::env::var_os("LOSSGRAPH_CONFORMANCE_DIR").is_none();
    if !passed || listed && !checks_as_listed(&outcomes) {
        std::process::exit(1);
    }
}

/// Whether the runs that tripped a check are exactly the (case, warning)
/// pairs `docs/checks.md` lists; prints the difference when not.
fn checks_as_listed(outcomes: &[Outcome]) -> bool {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/checks.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let listed = listed_checks(&text);
    let tripped: BTreeSet<(String, String)> = outcomes
        .iter()
        .flat_map(|o| o.warnings.iter().map(|w| (o.id.clone(), w.clone())))
        .collect();
    let unlisted: Vec<_> = tripped.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&tripped).collect();
    for (id, w) in &unlisted {
        println!(
            "check mode: {id} trips {w}, which {} does not list",
            path.display()
        );
    }
    for (id, w) in &stale {
        println!(
            "check mode: {} lists {id} as tripping {w}, which it no longer does",
            path.display()
        );
    }
    println!(
        "check mode: {} cases trip a check, as listed",
        tripped.len()
    );
    unlisted.is_empty() && stale.is_empty()
}

/// The `(case id, warning)` pairs of the table between the
/// `conformance-checks` markers: each row names a warning in its first cell
/// and the cases in its second, each in backticks.
fn listed_checks(doc: &str) -> BTreeSet<(String, String)> {
    let section = doc
        .split("<!-- conformance-checks")
        .nth(1)
        .and_then(|s| s.split("<!-- end conformance-checks").next())
        .unwrap_or("");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let mut pairs = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').collect();
        if let (Some(kind), Some(cases)) = (cells.get(1), cells.get(2)) {
            for w in ticked(kind) {
                pairs.extend(ticked(cases).into_iter().map(|id| (id, w.clone())));
            }
        }
    }
    pairs
}
