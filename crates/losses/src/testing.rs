//! Test helpers shared by every family: the three checks each loss must pass.
//!
//! 1. `gradcheck` (f64, full mode) of the fused op;
//! 2. `gradcheck` of the naive twin (it is a reference too);
//! 3. fused and naive agree: outputs, and gradients within 1e-10 relative,
//!    wherever the naive value is finite.

use crate::common::Reduction;
use lossgraph_autodiff::{gradcheck, GradcheckOptions, Result, Tape, Var};
use lossgraph_tensor::Tensor;

/// The reductions a twin test runs through, each with its `denominator`
/// option: `none`, `sum`, `mean` over the op's own count, and `mean` over a
/// count from outside (as a part of a larger batch divides by the whole
/// batch's count).
pub const REDUCTIONS: [(Reduction, Option<f64>); 4] = [
    (Reduction::None, None),
    (Reduction::Sum, None),
    (Reduction::Mean, None),
    (Reduction::Mean, Some(7.5)),
];

/// Inputs (as f64 tensors) for one check.
#[derive(Debug, Clone)]
pub struct Case {
    /// The real inputs, in the order the closures expect them.
    pub inputs: Vec<Tensor<f64>>,
}

impl Case {
    /// Inputs from tensors.
    pub fn new(inputs: Vec<Tensor<f64>>) -> Self {
        Case { inputs }
    }
    /// `n` standard-normal inputs of one shape, seeded.
    pub fn normal(n: usize, shape: &[usize], seed: u64) -> Self {
        Case {
            inputs: (0..n)
                .map(|k| Tensor::randn(shape.to_vec(), 0.0, 1.0, seed * 31 + k as u64).unwrap())
                .collect(),
        }
    }
    /// `pred` and `target` of one shape, standard normal.
    pub fn regression(shape: &[usize], seed: u64) -> Self {
        Self::normal(2, shape, seed)
    }
}

/// Assert that `got` equals `want` within `rtol` relative (and 1e-12 absolute),
/// skipping elements where `want` is not finite.
pub fn assert_close(what: &str, got: &Tensor<f64>, want: &Tensor<f64>, rtol: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
    for (i, (&g, &w)) in got.as_slice().iter().zip(want.as_slice()).enumerate() {
        if !w.is_finite() {
            continue;
        }
        let tol = 1e-12 + rtol * w.abs();
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g:e}, want {w:e} (diff {:e})",
            (g - w).abs()
        );
    }
}

/// A function of leaf vars, as gradcheck takes it.
pub type VarFn<'a> = dyn Fn(&[Var<f64>]) -> Result<Var<f64>> + 'a;

/// Evaluate `f` on leaves made from `inputs` with a seeded cotangent; return
/// the output and every input's gradient.
pub fn value_and_grads(
    f: &VarFn<'_>,
    inputs: &[Tensor<f64>],
    seed: u64,
) -> (Tensor<f64>, Vec<Tensor<f64>>) {
    let tape = Tape::new();
    let vars: Vec<Var<f64>> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let out = f(&vars).expect("op failed");
    let v = Tensor::randn(out.shape(), 0.0, 1.0, seed).unwrap();
    let g = out.backward_with(v).expect("backward failed");
    let grads = vars.iter().map(|x| g.get_or_zeros(x)).collect();
    (out.value(), grads)
}

/// Run the three checks on one case.
pub fn check_family(
    case: &Case,
    fused: impl Fn(&[Var<f64>]) -> Result<Var<f64>>,
    naive: impl Fn(&[Var<f64>]) -> Result<Var<f64>>,
) {
    let opts = GradcheckOptions::default();
    let r = gradcheck(&fused, &case.inputs, &opts).expect("fused op failed");
    assert!(
        r.passed(),
        "fused gradcheck failed: {:?}",
        r.mismatches.first()
    );
    let r = gradcheck(&naive, &case.inputs, &opts).expect("naive op failed");
    assert!(
        r.passed(),
        "naive gradcheck failed: {:?}",
        r.mismatches.first()
    );
    check_twins(case, fused, naive);
}

/// Only check 3: fused and naive agree (for inputs where gradcheck is not
/// meaningful, e.g. at kinks).
pub fn check_twins(
    case: &Case,
    fused: impl Fn(&[Var<f64>]) -> Result<Var<f64>>,
    naive: impl Fn(&[Var<f64>]) -> Result<Var<f64>>,
) {
    let (fo, fg) = value_and_grads(&fused, &case.inputs, 99);
    let (no, ng) = value_and_grads(&naive, &case.inputs, 99);
    assert_close("output", &fo, &no, 1e-10);
    for (k, (f, n)) in fg.iter().zip(&ng).enumerate() {
        assert_close(&format!("grad of input {k}"), f, n, 1e-10);
    }
}
