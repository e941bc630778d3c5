//! `lossgraph bench`: fused vs naive, forward + backward, median time and
//! peak extra heap, at sizes that matter (LM-sized logits, 4M-element
//! regression batches, a 32k-vocabulary projection).

use crate::alloc::peak_during;
use indicatif::{ProgressBar, ProgressStyle};
use lossgraph::autodiff::{Tape, Var};
use lossgraph::losses::catalog::{call, describe, Size};
use lossgraph::losses::registry::{
    build_from_vars, real_inputs, Call, Flavor, InputValue, OptValue,
};
use lossgraph::tensor::Tensor;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Benchmark every loss: fused op vs naive twin, forward + backward.
///
/// Prints a table: op, shape, dtype, fused ms, naive ms, speed-up, fused peak
/// bytes, naive peak bytes. Times are medians over repetitions (each a fresh
/// tape: forward, backward, drop); peak bytes are the most heap in use above
/// the level before the call, from a counting allocator in this binary.
/// Threads: rayon's default (all cores) unless RAYON_NUM_THREADS is set.
///
/// Examples:
///   lossgraph bench --quick
///   lossgraph bench --op cross_entropy --json ce.json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Write the rows as a JSON array to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Fewer repetitions (3 instead of up to 15).
    #[arg(long)]
    quick: bool,
    /// Run only this op.
    #[arg(long)]
    op: Option<String>,
}

/// One benchmark: an op, its size and options.
struct Spec {
    op: &'static str,
    size: Size,
    options: BTreeMap<String, OptValue>,
}

fn spec(op: &'static str, n: usize, c: usize) -> Spec {
    Spec {
        op,
        size: Size::new(n, c),
        options: BTreeMap::new(),
    }
}

/// The default rows: the sizes the performance targets are stated at.
fn default_specs() -> Vec<Spec> {
    let m4 = (4096, 1024); // 4M elements
    let mut v = vec![
        spec("cross_entropy", 1024, 32000),
        spec("cross_entropy", 8192, 1000),
        spec("cross_entropy", 65536, 10),
    ];
    for op in [
        "mse",
        "mae",
        "huber",
        "smooth_l1",
        "log_cosh",
        "quantile",
        "gaussian_nll",
        "poisson_nll",
        "bce",
        "bce_with_logits",
        "sigmoid_focal",
        "hinge",
        "kl_div",
        "masked_mean",
        "weighted_mean",
    ] {
        v.push(spec(op, m4.0, m4.1));
    }
    for op in ["nll", "softmax_focal", "brier", "multi_margin", "kl_logits"] {
        v.push(spec(op, 1024, 1000));
    }
    v.push(spec("gaussian_kl", 4096, 1024));
    v.push(spec("contrastive", 8192, 128));
    v.push(spec("triplet", 8192, 128));
    v.push(spec("info_nce", 1024, 256));
    for op in ["margin_ranking", "bradley_terry", "dpo"] {
        v.push(spec(op, 1 << 20, 1));
    }
    let mut lce = spec("linear_cross_entropy", 1024, 32000);
    lce.size.hidden = 1024;
    v.push(lce);
    v
}

/// A result row.
struct Row {
    op: String,
    shape: String,
    options: String,
    dtype: &'static str,
    fused_ms: f64,
    naive_ms: f64,
    fused_peak: usize,
    naive_peak: usize,
}

/// Leaves for one run (Arc clones of the prepared f32 tensors: no copy).
fn run_once(c: &Call, flavor: Flavor, inputs: &[(String, Tensor<f32>)]) -> Result<(), String> {
    let tape = Tape::<f32>::new();
    let vars: BTreeMap<String, Var<f32>> = inputs
        .iter()
        .map(|(n, t)| (n.clone(), tape.leaf(t.clone())))
        .collect();
    let b = build_from_vars(&tape, c, flavor, vars).map_err(|e| e.to_string())?;
    let out = b.output.value();
    let g = b
        .output
        .backward_with(Tensor::ones(out.shape().clone()))
        .map_err(|e| e.to_string())?;
    std::hint::black_box(&g);
    Ok(())
}

/// Median milliseconds over repetitions, within a time budget.
fn time(
    c: &Call,
    flavor: Flavor,
    inputs: &[(String, Tensor<f32>)],
    max_reps: usize,
) -> Result<f64, String> {
    run_once(c, flavor, inputs)?; // warm-up
    let budget = Duration::from_secs(3);
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < max_reps && (times.len() < 3 || start.elapsed() < budget) {
        let t = Instant::now();
        run_once(c, flavor, inputs)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

fn shape_of(c: &Call) -> String {
    c.inputs
        .iter()
        .filter(|(_, v)| matches!(v, InputValue::Real(_)))
        .take(1)
        .map(|(_, v)| match v {
            InputValue::Real(t) => format!("{:?}", t.dims()),
            InputValue::Int(_) => String::new(),
        })
        .collect::<String>()
}

fn bench_spec(s: &Spec, max_reps: usize) -> Result<Row, String> {
    let c = call(s.op, &s.options, s.size, 1).ok_or_else(|| format!("unknown op {}", s.op))?;
    let inputs: Vec<(String, Tensor<f32>)> = real_inputs(&c)
        .into_iter()
        .map(|n| {
            let t = match &c.inputs[&n] {
                InputValue::Real(t) => t.cast::<f32>(),
                InputValue::Int(_) => unreachable!("real inputs only"),
            };
            (n, t)
        })
        .collect();
    // the f64 copies are not needed any more: keep only what the op reads
    let mut c = c;
    for (n, _) in &inputs {
        c.inputs
            .insert(n.clone(), InputValue::Real(Tensor::zeros([0])));
    }
    let shape = match s.op {
        "linear_cross_entropy" => format!(
            "[{}, {}]x[{}, {}]",
            s.size.n, s.size.hidden, s.size.c, s.size.hidden
        ),
        _ => format!(
            "{:?}",
            inputs
                .first()
                .map(|(_, t)| t.dims().to_vec())
                .unwrap_or_default()
        ),
    };
    let _ = shape_of;
    let fused_ms = time(&c, Flavor::Fused, &inputs, max_reps)?;
    let naive_ms = time(&c, Flavor::Naive, &inputs, max_reps)?;
    let (r, fused_peak) = peak_during(|| run_once(&c, Flavor::Fused, &inputs));
    r?;
    let (r, naive_peak) = peak_during(|| run_once(&c, Flavor::Naive, &inputs));
    r?;
    Ok(Row {
        op: s.op.to_string(),
        shape,
        options: describe(&s.options),
        dtype: "f32",
        fused_ms,
        naive_ms,
        fused_peak,
        naive_peak,
    })
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

pub fn run(args: Args) -> ExitCode {
    let specs: Vec<Spec> = default_specs()
        .into_iter()
        .filter(|s| args.op.as_deref().is_none_or(|o| o == s.op))
        .collect();
    if specs.is_empty() {
        eprintln!(
            "lossgraph bench: no benchmark for op {:?}",
            args.op.unwrap_or_default()
        );
        return ExitCode::from(2);
    }
    let max_reps = if args.quick { 3 } else { 15 };
    let bar = ProgressBar::new(specs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    let mut failed = false;
    for s in &specs {
        bar.set_message(format!("{} {}x{}", s.op, s.size.n, s.size.c));
        match bench_spec(s, max_reps) {
            Ok(r) => rows.push(r),
            Err(e) => {
                bar.println(format!("{}: error: {e}", s.op));
                failed = true;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "{:<22} {:<26} {:<5} {:>10} {:>10} {:>8} {:>14} {:>14}",
        "op", "shape", "dtype", "fused ms", "naive ms", "speed-up", "fused peak", "naive peak"
    );
    for r in &rows {
        println!(
            "{:<22} {:<26} {:<5} {:>10.3} {:>10.3} {:>7.2}x {:>14} {:>14}",
            r.op,
            r.shape,
            r.dtype,
            r.fused_ms,
            r.naive_ms,
            r.naive_ms / r.fused_ms,
            mib(r.fused_peak),
            mib(r.naive_peak)
        );
    }
    if let Some(path) = &args.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "op": r.op, "shape": r.shape, "options": r.options, "dtype": r.dtype,
                    "fused_ms": r.fused_ms, "naive_ms": r.naive_ms,
                    "fused_peak_bytes": r.fused_peak, "naive_peak_bytes": r.naive_peak,
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("lossgraph bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
