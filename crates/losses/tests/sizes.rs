//! Every loss at sizes that reach its blocked, chunked and parallel paths
//! (#25 §6): the conformance cases hold under 80 elements, where none of
//! those paths runs.
//!
//! For every op of the catalog and every option family, at sizes whose
//! element counts cross the kernels' thresholds with uneven tails (blocks of
//! 256, rayon above 2¹⁵ elements, row blocks of 2¹⁴, rows longer than 32):
//!
//! 1. fused and naive agree in f64, value and every gradient;
//! 2. with the data inputs held constant, as a training step holds targets,
//!    masks and reference outputs (other code: the single-output arms of the
//!    shared kernels), the remaining gradients are the same as with every
//!    input a leaf;
//! 3. the fused op in f32 — its polynomial kernels, on whichever instruction
//!    set runs (CI repeats this under each `LOSSGRAPH_ISA`) — agrees with the
//!    f64 naive twin at an f32 tolerance. The f64 twins never reach the f32
//!    kernels, so this is what catches a wrong f32 formula.

use lossgraph_autodiff::{Tape, Var};
use lossgraph_losses::catalog::{call, data_inputs, describe, option_families, Size, CATALOG};
use lossgraph_losses::registry::{build_from_vars, Call, Flavor, InputValue};
use lossgraph_tensor::{Float, Tensor};
use std::collections::BTreeMap;

/// Sizes as (rows, width): 407, 4235 and 33153 elements; widths 11, 35 and
/// 129 (past the 32-wide short rows and the 16-wide vectors, with tails).
const SIZES: [(usize, usize); 3] = [(37, 11), (121, 35), (257, 129)];

/// What one run gives: the output and each real input's gradient (absent
/// for a constant), in f64.
struct Run {
    output: Tensor<f64>,
    grads: BTreeMap<String, Option<Tensor<f64>>>,
}

/// Build `c` in dtype `T` with the inputs in `constants` held constant, and
/// backpropagate the seeded cotangent `up` (cast to `T`).
fn run<T: Float>(c: &Call, flavor: Flavor, constants: &[&str], up: &Tensor<f64>) -> Run {
    let tape = Tape::<T>::new();
    let mut vars: BTreeMap<String, Var<T>> = BTreeMap::new();
    for (name, v) in &c.call_inputs() {
        if let InputValue::Real(t) = v {
            let t: Tensor<T> = t.cast();
            let var = if constants.contains(&name.as_str()) {
                tape.constant(t)
            } else {
                tape.leaf(t)
            };
            vars.insert(name.clone(), var);
        }
    }
    let b = build_from_vars(&tape, c, flavor, vars).unwrap_or_else(|e| panic!("{}: {e}", c.op));
    let out = b.output.value();
    let g = b
        .output
        .backward_with(up.cast())
        .unwrap_or_else(|e| panic!("{}: {e}", c.op));
    Run {
        output: out.cast(),
        grads: b
            .leaves
            .iter()
            .map(|(n, v)| (n.clone(), g.get(v).map(|t| t.cast())))
            .collect(),
    }
}

/// The call's inputs, by name (a helper so `run` reads as a loop).
trait Inputs {
    fn call_inputs(&self) -> Vec<(String, InputValue)>;
}
impl Inputs for Call {
    fn call_inputs(&self) -> Vec<(String, InputValue)> {
        self.inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The largest `|a − e| / (atol·scale + rtol·|e|)` over the elements, where
/// `scale` is the largest `|e|` (so `atol` is relative to the tensor's size);
/// at most 1 passes.
fn excess(a: &Tensor<f64>, e: &Tensor<f64>, rtol: f64, atol: f64) -> f64 {
    assert_eq!(a.dims(), e.dims());
    let scale = e.as_slice().iter().fold(0f64, |m, &v| m.max(v.abs()));
    a.as_slice()
        .iter()
        .zip(e.as_slice())
        .map(|(&a, &e)| {
            let d = (a - e).abs();
            if d == 0.0 {
                0.0
            } else {
                d / (atol * scale + rtol * e.abs())
            }
        })
        .fold(0.0, f64::max)
}

/// The f32 tolerance: `|a − e| ≤ F32_ATOL·max|e| + F32_RTOL·|e|`, the
/// reference `e` being the f64 twin. A relative 1e-4 is about 800 ulp of
/// f32; the absolute term, relative to the tensor's largest entry, covers
/// entries that are sums of many terms of either sign (a matrix product over
/// 257 rows, a mean over 33153 elements), whose error follows the size of
/// the terms, not of the result. Measured on AVX-512 (2026-12-07): with an
/// absolute term of 1e-6 every op passes but info_nce without normalisation
/// at 257×129 (logits up to ~40, gradients that are differences of sums over
/// 257 rows), at 1.04× that; the next worst is 0.37× (triplet's output). A
/// wrong formula is off by far more than either.
const F32_RTOL: f64 = 1e-4;
const F32_ATOL: f64 = 1e-5;

/// A seeded cotangent of the output's shape, in [0.5, 1.5).
fn cotangent(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::rand_uniform(shape.to_vec(), 0.5, 1.5, seed).unwrap()
}

#[test]
fn every_loss_at_block_chunk_and_thread_sizes() {
    let mut f32_errors: Vec<(f64, String)> = Vec::new();
    let mut runs = 0;
    for entry in CATALOG {
        let op = entry.name;
        for opts in option_families(op) {
            for (k, &(n, w)) in SIZES.iter().enumerate() {
                let Some(c) = call(op, &opts, Size::new(n, w), 100 + k as u64) else {
                    panic!("{op}: no sample at {n}×{w}");
                };
                let what = format!("{op} [{}] at {n}×{w}", describe(&opts));
                // the output's shape, from a first fused run with a unit cotangent
                let shape = {
                    let tape = Tape::<f64>::new();
                    let b = build_from_vars(&tape, &c, Flavor::Fused, BTreeMap::new()).unwrap();
                    b.output.value().dims().to_vec()
                };
                let up = cotangent(&shape, 7 + k as u64);

                // 1. fused and naive, f64, every real input a leaf
                let fused = run::<f64>(&c, Flavor::Fused, &[], &up);
                let naive = run::<f64>(&c, Flavor::Naive, &[], &up);
                let x = excess(&fused.output, &naive.output, 1e-9, 1e-12);
                assert!(
                    x <= 1.0,
                    "{what}: output, fused vs naive ({x:.2} × tolerance)"
                );
                for (name, g) in &fused.grads {
                    let (Some(g), Some(Some(h))) = (g, naive.grads.get(name)) else {
                        panic!("{what}: gradient of {name} missing");
                    };
                    let x = excess(g, h, 1e-9, 1e-12);
                    assert!(
                        x <= 1.0,
                        "{what}: grad {name}, fused vs naive ({x:.2} × tolerance)"
                    );
                }

                // 2. data inputs constant: the other gradients do not change
                let data: Vec<&str> = data_inputs(op)
                    .iter()
                    .copied()
                    .filter(|d| matches!(c.inputs.get(*d), Some(InputValue::Real(_))))
                    .collect();
                if !data.is_empty() {
                    for flavor in [Flavor::Fused, Flavor::Naive] {
                        let held = run::<f64>(&c, flavor, &data, &up);
                        let all = if flavor == Flavor::Fused {
                            &fused
                        } else {
                            &naive
                        };
                        for (name, g) in &held.grads {
                            if data.contains(&name.as_str()) {
                                continue;
                            }
                            let (Some(g), Some(Some(h))) = (g, all.grads.get(name)) else {
                                panic!("{what}: gradient of {name} missing with data constant");
                            };
                            let x = excess(g, h, 1e-12, 1e-14);
                            assert!(
                                x <= 1.0,
                                "{what} {flavor:?}: grad {name} changes when {data:?} are constants ({x:.2} × tolerance)"
                            );
                        }
                    }
                }

                // 3. fused f32 against the f64 twin, at an f32 tolerance
                let f32_run = run::<f32>(&c, Flavor::Fused, &[], &up);
                let x = excess(&f32_run.output, &naive.output, F32_RTOL, F32_ATOL);
                f32_errors.push((x, format!("{what}: output")));
                for (name, g) in &f32_run.grads {
                    let (Some(g), Some(Some(h))) = (g, naive.grads.get(name)) else {
                        panic!("{what}: f32 gradient of {name} missing");
                    };
                    let x = excess(g, h, F32_RTOL, F32_ATOL);
                    f32_errors.push((x, format!("{what}: grad {name}")));
                }
                runs += 1;
            }
        }
    }
    f32_errors.sort_by(|a, b| b.0.total_cmp(&a.0));
    eprintln!(
        "{runs} runs on isa {}; the largest f32 errors, as multiples of the tolerance:",
        lossgraph_tensor::simd::isa().name()
    );
    for (x, at) in f32_errors.iter().take(6) {
        eprintln!("  {x:.3}  {at}");
    }
    let (x, at) = &f32_errors[0];
    assert!(
        *x <= 1.0,
        "f32 fused vs f64 twin: {x:.2} × tolerance at {at}"
    );
    assert!(runs > 100, "only {runs} runs");
}

/// A second backward through the same output: ops that computed their
/// gradient during forward (for `sum`/`mean`, when the cotangent is known to
/// be a scalar) hand that buffer to the first backward and recompute for the
/// next. The recomputed gradients must equal the first ones, for every op and
/// family, at a size past every threshold.
#[test]
fn a_second_backward_recomputes_the_same_gradients() {
    for entry in CATALOG {
        let op = entry.name;
        for opts in option_families(op) {
            let c = call(op, &opts, Size::new(257, 129), 5).unwrap();
            let tape = Tape::<f32>::new();
            let b = build_from_vars(&tape, &c, Flavor::Fused, BTreeMap::new()).unwrap();
            let up = Tensor::<f32>::ones(b.output.value().dims().to_vec()).unwrap();
            let first = b.output.backward_with(up.clone()).unwrap();
            let second = b.output.backward_with(up.mul_scalar(2.0)).unwrap();
            for (name, v) in &b.leaves {
                let (g1, g2) = (first.get(v).unwrap(), second.get(v).unwrap());
                let twice = g1.mul_scalar(2.0);
                let x = excess(&g2.cast(), &twice.cast(), 1e-6, 1e-7);
                assert!(
                    x <= 1.0,
                    "{op} [{}]: grad {name} of a second backward (2× cotangent) is not twice the first's ({x:.2} × tolerance)",
                    describe(&opts)
                );
            }
        }
    }
}
