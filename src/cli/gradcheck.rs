//! `lossgraph gradcheck`: finite-difference checks of each fused op and its
//! naive twin, over the op's option families, on random inputs.

use super::{FAILURE, SUCCESS, USAGE};
use crate::autodiff::{gradcheck, GradcheckOptions, Tape, Var};
use crate::losses::catalog::{call, describe, label_inputs, option_families, Size, CATALOG};
use crate::losses::registry::{build_from_vars, real_inputs, Call, Flavor, InputValue};
use crate::tensor::{Float, Tensor};
use std::collections::BTreeMap;

/// Check gradients of loss ops against central finite differences.
///
/// For each op (or every op with --all), each of its option families and two
/// input shapes, runs gradcheck on the fused op and on its naive twin and
/// prints: op, flavor, options, shape, max abs error, max rel error, pass/fail.
/// Exits non-zero if any check fails. Inputs that hold discrete labels (hinge
/// and margin_ranking targets, contrastive's `similar`, masked_mean's mask)
/// are held constant: a finite-difference step would move them off their
/// label set.
///
/// f64 uses PyTorch's settings (eps 1e-6, atol 1e-5, rtol 1e-3); f32 has too
/// few digits for those, so it uses GradcheckOptions::for_f32(): eps 1e-3,
/// atol 1e-3, rtol 1e-2 (a 1% error in a rule fails).
///
/// Examples:
///   lossgraph gradcheck cross_entropy huber
///   lossgraph gradcheck --all
///   lossgraph gradcheck --all --dtype f32 --seed 7
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Ops to check (names as in LOSSES.md).
    ops: Vec<String>,
    /// Check every op of the catalog.
    #[arg(long)]
    all: bool,
    /// Element type: f64 or f32.
    #[arg(long, default_value = "f64", value_parser = ["f64", "f32"])]
    dtype: String,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// One row of the table.
struct Row {
    op: String,
    flavor: &'static str,
    options: String,
    shape: String,
    abs: f64,
    rel: f64,
    outcome: Result<bool, String>,
}

fn real<T: Float>(c: &Call, name: &str) -> Tensor<T> {
    match &c.inputs[name] {
        InputValue::Real(t) => t.cast(),
        InputValue::Int(_) => unreachable!("real_inputs lists real inputs only"),
    }
}

/// Gradcheck of one call: every real input is perturbed except label inputs
/// (±1, {0, 1}), which are held constant (see `catalog::label_inputs`).
fn check_one<T: Float>(
    c: &Call,
    flavor: Flavor,
    opts: &GradcheckOptions,
) -> Result<(f64, f64, bool), String> {
    let labels = label_inputs(&c.op);
    let (held, names): (Vec<String>, Vec<String>) = real_inputs(c)
        .into_iter()
        .partition(|n| labels.contains(&n.as_str()));
    let inputs: Vec<Tensor<T>> = names.iter().map(|n| real(c, n)).collect();
    let f = |vars: &[Var<T>]| {
        let tape: Tape<T> = vars[0].tape().clone();
        let mut map: BTreeMap<String, Var<T>> =
            names.iter().cloned().zip(vars.iter().cloned()).collect();
        for n in &held {
            map.insert(n.clone(), tape.constant(real(c, n)));
        }
        Ok(build_from_vars(&tape, c, flavor, map)?.output)
    };
    let r = gradcheck(f, &inputs, opts).map_err(|e| e.to_string())?;
    Ok((r.max_abs_err, r.max_rel_err, r.passed()))
}

pub fn run(args: Args) -> u8 {
    let ops: Vec<String> = if args.all {
        CATALOG.iter().map(|o| o.name.to_string()).collect()
    } else {
        args.ops.clone()
    };
    if ops.is_empty() {
        eprintln!("lossgraph gradcheck: name one or more ops, or --all");
        return USAGE;
    }
    if let Some(bad) = ops
        .iter()
        .find(|o| !CATALOG.iter().any(|c| c.name == o.as_str()))
    {
        let names: Vec<&str> = CATALOG.iter().map(|o| o.name).collect();
        eprintln!(
            "lossgraph gradcheck: unknown op {bad:?}; the ops are: {}",
            names.join(", ")
        );
        return USAGE;
    }
    let opts = if args.dtype == "f32" {
        GradcheckOptions::for_f32()
    } else {
        GradcheckOptions::default()
    };
    let mut rows = Vec::new();
    for op in &ops {
        for fam in option_families(op) {
            for (k, size) in [Size::new(3, 4), Size::new(2, 6)].into_iter().enumerate() {
                let Some(c) = call(op, &fam, size, args.seed * 1000 + k as u64) else {
                    continue;
                };
                let shape = c
                    .inputs
                    .iter()
                    .map(|(n, v)| match v {
                        InputValue::Real(t) => format!("{n}{:?}", t.dims()),
                        InputValue::Int(t) => format!("{n}{:?}i64", t.dims()),
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                for (flavor, fname) in [(Flavor::Fused, "fused"), (Flavor::Naive, "naive")] {
                    let res = if args.dtype == "f32" {
                        check_one::<f32>(&c, flavor, &opts)
                    } else {
                        check_one::<f64>(&c, flavor, &opts)
                    };
                    let (abs, rel, outcome) = match res {
                        Ok((a, r, p)) => (a, r, Ok(p)),
                        Err(e) => (f64::NAN, f64::NAN, Err(e)),
                    };
                    rows.push(Row {
                        op: op.clone(),
                        flavor: fname,
                        options: describe(&fam),
                        shape: shape.clone(),
                        abs,
                        rel,
                        outcome,
                    });
                }
            }
        }
    }
    println!(
        "{:<20} {:<6} {:<40} {:<44} {:>10} {:>10}  result",
        "op", "flavor", "options", "shape", "max abs", "max rel"
    );
    let mut failed = 0;
    for r in &rows {
        let res = match &r.outcome {
            Ok(true) => "pass".to_string(),
            Ok(false) => {
                failed += 1;
                "FAIL".to_string()
            }
            Err(e) => {
                failed += 1;
                format!("ERROR {e}")
            }
        };
        println!(
            "{:<20} {:<6} {:<40} {:<44} {:>10.2e} {:>10.2e}  {res}",
            r.op, r.flavor, r.options, r.shape, r.abs, r.rel
        );
    }
    println!(
        "gradcheck ({}): {} passed, {} failed",
        args.dtype,
        rows.len() - failed,
        failed
    );
    if failed > 0 {
        FAILURE
    } else {
        SUCCESS
    }
}
