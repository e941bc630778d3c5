//! `lossgraph bench`: fused vs naive, forward + backward, median time and
//! peak extra heap, at sizes that matter (LM-sized logits, 4M-element
//! regression batches, a 32k-vocabulary projection). The cases, their inputs
//! and the run itself are `crate::bench_cases`, shared with
//! `cargo bench --bench losses`; the timing loop, peaks and table are here.

mod primitives;

use super::alloc::peak_during;
use super::{FAILURE, SUCCESS, USAGE};
use crate::bench_cases::{default_specs, prepare, run_once, Prepared, Spec};
use crate::losses::catalog::describe;
use crate::losses::registry::{Call, Flavor};
use crate::tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// Benchmark every loss: fused op vs naive twin, forward + backward.
///
/// Prints a table: op, shape, fused and naive ms (median), speed-up, fused and
/// naive ms (min), peak heap of each, and that peak less the gradients the
/// run returns ("scr.": the scratch memory). Each repetition is a fresh tape:
/// forward, backward of a ones cotangent, drop; gradients flow to every
/// input but the data (targets, masks, weights, a teacher's logits), which
/// are constants, as in training. Fused and naive repetitions
/// alternate, after one warm-up each. Peak bytes are the most heap in use
/// above the level before the run, from a counting allocator in this binary.
/// Threads: rayon's default (all cores) unless RAYON_NUM_THREADS is set.
/// Kernels: the widest of AVX-512 / AVX2 / baseline this CPU has.
///
/// By default the run is what a program of your own gets: the system
/// allocator, with the tensor buffer pool on (large buffers a step frees are
/// reused by the next; LOSSGRAPH_POOL=off turns it off, and then fresh
/// output buffers pay their page faults each repetition). --retain-heap
/// keeps all freed memory in glibc's heap instead, a diagnostic of the
/// kernels' own cost. --huge-pages backs blocks
/// of 2 MiB and more with transparent huge pages (Linux), which makes both
/// page faults and TLB misses rarer on large tensors; a program of your own
/// gets the same from glibc with GLIBC_TUNABLES=glibc.malloc.hugetlb=1.
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
    /// Run only this op (with --primitives: only this primitive, e.g.
    /// `softmax` or `mlp_step`).
    #[arg(long)]
    op: Option<String>,
    /// Exactly this many timed repetitions per flavor (no time budget); for
    /// profiling.
    #[arg(long)]
    reps: Option<usize>,
    /// Keep freed heap memory for reuse (glibc: no mmap for large blocks, no
    /// trimming), as a caching allocator would; by default the system
    /// allocator's behaviour is measured as is, page faults of fresh output
    /// buffers included.
    #[arg(long)]
    retain_heap: bool,
    /// Advise the kernel to back heap blocks of 2 MiB and more with
    /// transparent huge pages (Linux, THP not `never`); combines with
    /// --retain-heap.
    #[arg(long)]
    huge_pages: bool,
    /// Before each timed repetition run the same flavor once untimed, so that
    /// a repetition meets the caches as a loop of its own op leaves them (a
    /// training step's steady state) rather than as the other flavor left
    /// them: a naive run leaves the last-level cache full of dirty lines,
    /// whose write-back the next fused run would otherwise pay.
    #[arg(long)]
    warm_each: bool,
    /// Time the tape primitives instead of the losses: each forward alone at
    /// 4M f32 elements ([1024, 32000] for softmax rows), and forward +
    /// backward chains (`lossgraph::bench_primitives`).
    #[arg(long)]
    primitives: bool,
    /// With --primitives: a JSON file written by
    /// `python benches/pytorch_reference.py --primitives --json FILE`, whose
    /// times are printed beside ours with the ratio.
    #[arg(long, requires = "primitives")]
    torch: Option<std::path::PathBuf>,
}

/// A result row.
struct Row {
    op: String,
    shape: String,
    options: String,
    dtype: &'static str,
    fused: Timing,
    naive: Timing,
    fused_peak: Peak,
    naive_peak: Peak,
}

/// Milliseconds of the timed repetitions.
struct Timing {
    median: f64,
    min: f64,
    reps: usize,
}

/// Heap bytes of one run above the level before it: the peak, and the
/// peak less the gradients the run returns (its scratch memory).
#[derive(Clone, Copy)]
struct Peak {
    total: usize,
    scratch: usize,
}

/// Time fused and naive runs in alternation (so both see the same machine
/// load), up to `max_reps` each within a time budget (or exactly `max_reps`
/// when `exact`), after one warm-up run each.
fn time_pair(
    c: &Call,
    inputs: &[(String, Tensor<f32>)],
    max_reps: usize,
    exact: bool,
    warm_each: bool,
) -> Result<(Timing, Timing), String> {
    run_once(c, Flavor::Fused, inputs)?;
    run_once(c, Flavor::Naive, inputs)?;
    let budget = Duration::from_secs(6);
    let start = Instant::now();
    let (mut fused, mut naive) = (Vec::new(), Vec::new());
    while fused.len() < max_reps && (fused.len() < 3 || exact || start.elapsed() < budget) {
        for (flavor, times) in [(Flavor::Fused, &mut fused), (Flavor::Naive, &mut naive)] {
            if warm_each {
                run_once(c, flavor, inputs)?;
            }
            let t = Instant::now();
            run_once(c, flavor, inputs)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok((summary(fused), summary(naive)))
}

fn summary(mut times: Vec<f64>) -> Timing {
    times.sort_by(|a, b| a.total_cmp(b));
    Timing {
        median: times[times.len() / 2],
        min: times[0],
        reps: times.len(),
    }
}

fn peak(c: &Call, flavor: Flavor, inputs: &[(String, Tensor<f32>)]) -> Result<Peak, String> {
    // from an empty buffer pool: the run's buffers count as it makes them,
    // and those it frees into the pool stay counted (the pool holds them)
    crate::tensor::pool::release();
    let (r, total) = peak_during(|| run_once(c, flavor, inputs));
    let grads = r?;
    Ok(Peak {
        total,
        scratch: total.saturating_sub(grads),
    })
}

fn bench_spec(s: &Spec, max_reps: usize, exact: bool, warm_each: bool) -> Result<Row, String> {
    let Prepared {
        call: c,
        inputs,
        shape,
    } = prepare(s, 1)?;
    let (fused, naive) = time_pair(&c, &inputs, max_reps, exact, warm_each)?;
    let fused_peak = peak(&c, Flavor::Fused, &inputs)?;
    let naive_peak = peak(&c, Flavor::Naive, &inputs)?;
    Ok(Row {
        op: s.op.to_string(),
        shape,
        options: describe(&s.options),
        dtype: "f32",
        fused,
        naive,
        fused_peak,
        naive_peak,
    })
}

/// The allocator line of the header: the system allocator, and whether the
/// tensor buffer pool is on (and its cap).
fn pool_state() -> String {
    match crate::tensor::pool::cap_bytes() {
        0 => String::from("system, buffer pool off"),
        cap => format!("system + buffer pool (cap {})", mib(cap)),
    }
}

/// Write `rows` as pretty JSON to `path`; false (after saying why) when the
/// file cannot be written.
fn write_json(path: &std::path::Path, rows: &[serde_json::Value]) -> bool {
    let text = serde_json::to_string_pretty(rows).unwrap_or_default();
    match std::fs::write(path, text) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("lossgraph bench: cannot write {}: {e}", path.display());
            false
        }
    }
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The conditions of a run, printed above the table.
fn header(allocator: &str, max_reps: usize, warm_each: bool) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!(
        "# {cpu}; {} rayon threads; kernels: {}; allocator: {}; up to {max_reps} reps, \
         fused and naive alternating{}; ms = median (min also shown); peak = most heap \
         above the start of a run; scr. = peak less the returned gradients",
        rayon::current_num_threads(),
        crate::tensor::simd::isa().name(),
        allocator,
        if warm_each {
            ", each after an untimed run of its own flavor (--warm-each)"
        } else {
            ""
        },
    )
}

pub fn run(args: Args) -> u8 {
    if args.primitives {
        return primitives::run(&args);
    }
    let specs: Vec<Spec> = default_specs()
        .into_iter()
        .filter(|s| args.op.as_deref().is_none_or(|o| o == s.op))
        .collect();
    if specs.is_empty() {
        eprintln!(
            "lossgraph bench: no benchmark for op {:?}",
            args.op.unwrap_or_default()
        );
        return USAGE;
    }
    let mut allocator = pool_state();
    if args.retain_heap {
        if super::alloc::retain_heap() {
            allocator.push_str(", freed memory retained (--retain-heap)");
        } else {
            eprintln!("lossgraph bench: --retain-heap needs glibc's malloc; measuring as is");
        }
    }
    if args.huge_pages {
        if super::alloc::huge_pages() {
            allocator.push_str(", transparent huge pages for blocks >= 2 MiB (--huge-pages)");
        } else {
            eprintln!(
                "lossgraph bench: --huge-pages needs Linux with transparent huge pages \
                 enabled; measuring without"
            );
        }
    }
    let max_reps = args.reps.unwrap_or(if args.quick { 3 } else { 15 });
    let exact = args.reps.is_some();
    let bar = ProgressBar::new(specs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    let mut failed = false;
    for s in &specs {
        bar.set_message(format!("{} {}x{}", s.op, s.size.n, s.size.c));
        match bench_spec(s, max_reps, exact, args.warm_each) {
            Ok(r) => rows.push(r),
            Err(e) => {
                bar.println(format!("{}: error: {e}", s.op));
                failed = true;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("{}", header(&allocator, max_reps, args.warm_each));
    println!(
        "{:<22} {:<26} {:>9} {:>9} {:>8} {:>9} {:>9} {:>11} {:>11} {:>11} {:>11}",
        "op",
        "shape (f32)",
        "fused ms",
        "naive ms",
        "speed-up",
        "fused min",
        "naive min",
        "fused peak",
        "naive peak",
        "fused scr.",
        "naive scr."
    );
    for r in &rows {
        println!(
            "{:<22} {:<26} {:>9.3} {:>9.3} {:>7.2}x {:>9.3} {:>9.3} {:>11} {:>11} {:>11} {:>11}",
            r.op,
            r.shape,
            r.fused.median,
            r.naive.median,
            r.naive.median / r.fused.median,
            r.fused.min,
            r.naive.min,
            mib(r.fused_peak.total),
            mib(r.naive_peak.total),
            mib(r.fused_peak.scratch),
            mib(r.naive_peak.scratch)
        );
    }
    if let Some(path) = &args.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "op": r.op, "shape": r.shape, "options": r.options, "dtype": r.dtype,
                    "fused_ms": r.fused.median, "naive_ms": r.naive.median,
                    "fused_min_ms": r.fused.min, "naive_min_ms": r.naive.min,
                    "reps": r.fused.reps,
                    "fused_peak_bytes": r.fused_peak.total,
                    "naive_peak_bytes": r.naive_peak.total,
                    "fused_scratch_bytes": r.fused_peak.scratch,
                    "naive_scratch_bytes": r.naive_peak.scratch,
                })
            })
            .collect();
        if !write_json(path, &v) {
            return FAILURE;
        }
    }
    if failed {
        FAILURE
    } else {
        SUCCESS
    }
}
