//! `lossgraph bench --primitives`: the tape primitives' own times, beside
//! PyTorch's when given its JSON (`benches/pytorch_reference.py
//! --primitives`), so that one run on one machine shows the ratio.

use super::{header, pool_state, summary, write_json, Args, Timing};
use crate::bench_primitives::{cases, inputs, mlp_step, Kind};
use crate::cli::{FAILURE, SUCCESS};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// PyTorch's median and minimum ms per case name, from its JSON.
fn torch_times(path: &std::path::Path) -> Result<BTreeMap<String, (f64, f64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let rows = v["rows"]
        .as_array()
        .ok_or_else(|| format!("{}: no \"rows\" array", path.display()))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let op = r["op"].as_str()?;
            Some((
                op.to_string(),
                (r["torch_ms"].as_f64()?, r["torch_min_ms"].as_f64()?),
            ))
        })
        .collect())
}

pub(super) fn run(args: &Args) -> u8 {
    let torch = match args.torch.as_deref().map(torch_times).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lossgraph bench: {e}");
            return FAILURE;
        }
    };
    let inputs = match inputs() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("lossgraph bench: cannot make the inputs: {e}");
            return FAILURE;
        }
    };
    let max_reps = args.reps.unwrap_or(if args.quick { 3 } else { 15 });
    println!("{}", header(&pool_state(), max_reps, false));
    println!(
        "{:<28} {:<34} {:>9} {:>9} {:>9} {:>8}",
        "primitive", "shape (f32)", "ms", "min", "torch ms", "ratio"
    );
    let mut rows = Vec::new();
    let mut failed = false;
    let exact = args.reps.is_some();
    let mut report =
        |name: &str, shape: &str, kind: &str, timing: Result<Timing, String>| match timing {
            Ok(t) => {
                let theirs = torch.as_ref().and_then(|m| m.get(name)).copied();
                print_row(name, shape, &t, theirs);
                rows.push(serde_json::json!({
                    "op": name, "shape": shape, "kind": kind,
                    "ms": t.median, "min_ms": t.min, "reps": t.reps,
                    "torch_ms": theirs.map(|t| t.0),
                }));
            }
            Err(e) => {
                eprintln!("{name}: error: {e}");
                failed = true;
            }
        };
    let wanted = |name: &str| args.op.as_deref().is_none_or(|op| op == name);
    for case in cases().into_iter().filter(|c| wanted(c.name)) {
        let kind = match case.kind {
            Kind::Forward => "forward",
            Kind::Chain => "forward+backward",
        };
        let t = time(|| (case.run)(&inputs), max_reps, exact).map_err(|e| e.to_string());
        report(case.name, case.shape, kind, t);
    }
    if wanted("mlp_step") {
        let step = mlp_step().and_then(|mut step| time(&mut step, max_reps, exact));
        report(
            "mlp_step",
            "784-512-512-10, batch 256, Adam",
            "training step",
            step,
        );
    }
    println!("ratio = our median / PyTorch's median (below 1: faster than PyTorch)");
    if let Some(path) = &args.json {
        if !write_json(path, &rows) {
            return FAILURE;
        }
    }
    if failed {
        FAILURE
    } else {
        SUCCESS
    }
}

/// One line of the table: our times, and PyTorch's median with the ratio
/// when its JSON has the row.
fn print_row(name: &str, shape: &str, t: &Timing, theirs: Option<(f64, f64)>) {
    let (tm, ratio) = match theirs {
        Some((ms, _)) => (format!("{ms:.3}"), format!("{:.2}x", t.median / ms)),
        None => ("-".into(), "-".into()),
    };
    println!(
        "{name:<28} {shape:<34} {:>9.3} {:>9.3} {tm:>9} {ratio:>8}",
        t.median, t.min
    );
}

/// Median and minimum ms of up to `max_reps` runs within a 3 s budget (at
/// least 3), after two untimed warm-ups; exactly `max_reps` when `exact`.
fn time<E>(
    mut f: impl FnMut() -> Result<(), E>,
    max_reps: usize,
    exact: bool,
) -> Result<Timing, E> {
    f()?;
    f()?;
    let (start, budget) = (Instant::now(), Duration::from_secs(3));
    let mut times = Vec::new();
    while times.len() < max_reps.max(1) && (times.len() < 3 || exact || start.elapsed() < budget) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(summary(times))
}
