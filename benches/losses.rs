//! Fused vs naive, per loss: the op with its hand-written backward against
//! its twin composed from primitive ops, forward + backward, f32, at the
//! sizes of `lossgraph bench` (LM-sized logits, 4M-element regression
//! batches, a 32k-vocabulary projection; the list is
//! `lossgraph::bench_cases::default_specs`).
//!
//! One criterion group per case, named `op/shape` (`cross_entropy/[1024,
//! 32000]`), with two functions, `fused` and `naive`. Each iteration is one
//! `run_once`: a fresh tape, the prepared inputs as leaves (no copy), the
//! loss, backward of a ones cotangent, drop. Inputs are sampled and cast once
//! per group (seed 1, as `lossgraph bench`); the group's name is the shape
//! column of `lossgraph bench`, the first real input's dims, so every case is
//! sampled even when criterion's filter skips it (about 6 s in all);
//! `LOSSGRAPH_BENCH_OP` skips the other ops before sampling. Threads:
//! rayon's default (all cores) unless RAYON_NUM_THREADS is set.
//!
//! ```text
//! cargo bench --bench losses                        # every case, some minutes
//! cargo bench --bench losses -- cross_entropy       # criterion's filter (a regex
//!                                                   # on the id: this one also
//!                                                   # runs linear_cross_entropy)
//! cargo bench --bench losses -- '^cross_entropy/'   # that op only
//! LOSSGRAPH_BENCH_OP=mse cargo bench --bench losses # one op by exact name
//! ```
//!
//! Every case takes 10 samples after a 1 s warm-up, within a 3 s target
//! (criterion's `--sample-size`, `--warm-up-time` and `--measurement-time`
//! change them), so that the whole suite takes minutes, not hours; a case
//! slower than that target allows still runs its 10 iterations, one per
//! sample (linear_cross_entropy, about 1 s an iteration: some 10 s per
//! flavor). `lossgraph bench` runs the
//! same pairs from the same cases and prints them in one table with the
//! speed-up and each flavor's peak heap, which criterion does not measure.

use criterion::{criterion_group, criterion_main, Criterion};
use lossgraph::bench_cases::{default_specs, prepare, run_once};
use lossgraph::losses::registry::Flavor;
use std::time::Duration;

fn losses(c: &mut Criterion) {
    let only = std::env::var("LOSSGRAPH_BENCH_OP").ok();
    let specs: Vec<_> = default_specs()
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|o| o == s.op))
        .collect();
    if let (Some(op), true) = (&only, specs.is_empty()) {
        let mut ops: Vec<_> = default_specs().iter().map(|s| s.op).collect();
        ops.dedup();
        panic!(
            "LOSSGRAPH_BENCH_OP={op}: no such case; ops: {}",
            ops.join(", ")
        );
    }
    for s in &specs {
        // one case's inputs in memory at a time: prepared here, dropped at
        // the end of the group
        let p = prepare(s, 1).unwrap_or_else(|e| panic!("{}: {e}", s.op));
        let mut g = c.benchmark_group(format!("{}/{}", s.op, p.shape));
        for (name, flavor) in [("fused", Flavor::Fused), ("naive", Flavor::Naive)] {
            g.bench_function(name, |b| {
                b.iter(|| {
                    run_once(&p.call, flavor, &p.inputs)
                        .unwrap_or_else(|e| panic!("{} {name}: {e}", s.op))
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = losses
}
criterion_main!(benches);
