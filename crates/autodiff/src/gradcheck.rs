//! Finite-difference gradient checks for any function of vars.
//!
//! The function may return any shape: its output is contracted with a fixed
//! random cotangent `v`, so the check compares `vᵀJ` (from one backward pass)
//! against central differences of `⟨v, f(x)⟩`.
//!
//! - [`GradcheckMode::Full`] perturbs every element of every input (exact,
//!   `2·numel` evaluations).
//! - [`GradcheckMode::Fast`] perturbs all inputs along random directions `u`
//!   and compares `vᵀJu` (two evaluations per direction), for large inputs.
//!
//! Tolerances follow PyTorch's `gradcheck`: `eps = 1e-6`, `atol = 1e-5`,
//! `rtol = 1e-3`, an element passing when `|analytic − numeric| ≤ atol +
//! rtol·|numeric|`. Run it in f64: f32 has too few digits for `eps = 1e-6`
//! (a step of 1e-6 moves an f32 of size 1 by 8 ulp), so in f32 a step below
//! [`F32_MIN_EPS`] is refused, and [`GradcheckOptions::for_f32`] gives the
//! settings f32 central differences support.

use crate::error::{Error, Result};
use crate::tape::{Tape, Var};
use lossgraph_tensor::{Float, Tensor};
use rand::SeedableRng;

/// Which perturbations to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradcheckMode {
    /// Every element of every input.
    Full,
    /// `directions` random directions over all inputs at once.
    Fast { directions: usize },
}

/// Step, tolerances, mode and seed of a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradcheckOptions {
    /// Central-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (relative to the numeric value).
    pub rtol: f64,
    /// Full or fast.
    pub mode: GradcheckMode,
    /// Seed of the cotangent and the directions.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            mode: GradcheckMode::Full,
            seed: 0,
        }
    }
}

/// The smallest step [`gradcheck`] accepts for f32 inputs: below it the
/// rounding of `f(x ± eps)` (about `6e-8·|f|` each) swamps the difference.
pub const F32_MIN_EPS: f64 = 1e-4;

impl GradcheckOptions {
    /// Settings for f32 inputs: `eps = 1e-3`, `atol = 1e-3`, `rtol = 1e-2`.
    ///
    /// Central differences in f32 have two errors: truncation, about
    /// `eps²·|f‴|/6`, and rounding, about `6e-8·|⟨v, f⟩|/eps` (the output is
    /// computed in f32 before it is contracted). `eps = 1e-3` balances the
    /// two for values and derivatives of order 1, leaving errors near 1e-4;
    /// the tolerances allow ten times that, and a 1% error in a backward rule
    /// still fails. `lossgraph gradcheck --all --dtype f32` uses these.
    pub fn for_f32() -> Self {
        GradcheckOptions {
            eps: 1e-3,
            atol: 1e-3,
            rtol: 1e-2,
            ..Self::default()
        }
    }
    /// Fast mode with `directions` random directions.
    pub fn fast(directions: usize) -> Self {
        GradcheckOptions {
            mode: GradcheckMode::Fast { directions },
            ..Self::default()
        }
    }
}

/// One element (or direction) whose gradients disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The op that produced the checked function's output.
    pub op: String,
    /// Which input (position in `inputs`); `None` in fast mode, where a
    /// direction spans all inputs.
    pub input: Option<usize>,
    /// Flat element index within that input (full mode) or direction number.
    pub index: usize,
    /// From the tape.
    pub analytic: f64,
    /// From central differences.
    pub numeric: f64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op `{}`, ", self.op)?;
        match self.input {
            Some(i) => write!(f, "input {i}, element {}", self.index)?,
            None => write!(f, "direction {}", self.index)?,
        }
        write!(
            f,
            ": analytic {:.10e} vs numeric {:.10e} (analytic/numeric {:.4})",
            self.analytic,
            self.numeric,
            self.analytic / self.numeric
        )
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct GradcheckReport {
    /// Largest `|analytic − numeric|`.
    pub max_abs_err: f64,
    /// Largest `|analytic − numeric| / max(|numeric|, tiny)`.
    pub max_rel_err: f64,
    /// How many elements or directions were compared.
    pub checked: usize,
    /// Those outside tolerance.
    pub mismatches: Vec<Mismatch>,
}

impl GradcheckReport {
    /// Whether every compared value was within tolerance.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.checked > 0
    }
    /// `Ok(self)` when passed, else [`Error::GradcheckFailed`] naming the
    /// first mismatch.
    ///
    /// # Errors
    /// [`Error::GradcheckFailed`] when any value was out of tolerance.
    pub fn into_result(self) -> Result<Self> {
        if self.passed() {
            Ok(self)
        } else if let Some(m) = self.mismatches.first() {
            Err(Error::GradcheckFailed(format!(
                "{m} ({} of {} out of tolerance; max abs err {:.3e}, max rel err {:.3e})",
                self.mismatches.len(),
                self.checked,
                self.max_abs_err,
                self.max_rel_err
            )))
        } else {
            Err(Error::GradcheckFailed("nothing was checked".into()))
        }
    }
}

/// Evaluate `f` on fresh leaves and contract its output with `v`.
fn contract<T: Float, F>(f: &F, inputs: &[Tensor<T>], v: &Tensor<T>) -> Result<f64>
where
    F: Fn(&[Var<T>]) -> Result<Var<T>>,
{
    let tape = Tape::new();
    let vars: Vec<Var<T>> = inputs.iter().map(|x| tape.constant(x.clone())).collect();
    let out = f(&vars)?.value();
    Ok(out
        .as_slice()
        .iter()
        .zip(v.as_slice())
        .map(|(&o, &w)| o.as_f64() * w.as_f64())
        .sum())
}

/// Check the gradient of `f` at `inputs` by central differences.
///
/// `f` receives one leaf var per input (on a fresh tape each call) and may
/// return any shape.
///
/// ```
/// use lossgraph_autodiff::{gradcheck, GradcheckOptions};
/// use lossgraph_tensor::Tensor;
/// let x = Tensor::<f64>::randn([3, 4], 0.0, 1.0, 7)?;
/// let report = gradcheck(|v| v[0].tanh()?.sum(1, false), &[x], &GradcheckOptions::default())?;
/// assert!(report.passed());
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// Whatever `f` returns, or a backward error. [`Error::TapeMismatch`] when
/// `f` returns a var of another tape than the leaves it was given (its
/// gradient would read as zero and "pass"). `InvalidOption` for f32 inputs
/// with a step below [`F32_MIN_EPS`] (use [`GradcheckOptions::for_f32`]).
/// A failed comparison is not an error: it is in the report (use
/// [`GradcheckReport::into_result`]).
pub fn gradcheck<T: Float, F>(
    f: F,
    inputs: &[Tensor<T>],
    opts: &GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: Fn(&[Var<T>]) -> Result<Var<T>>,
{
    let f32_like = T::epsilon().as_f64() > 1e-10;
    if f32_like && opts.eps < F32_MIN_EPS {
        return Err(lossgraph_tensor::Error::option(
            "gradcheck",
            "eps",
            format!(
                "{:e} is below what f32 central differences resolve ({F32_MIN_EPS:e}); \
                 use GradcheckOptions::for_f32() (eps 1e-3, atol 1e-3, rtol 1e-2) or f64 inputs",
                opts.eps
            ),
        )
        .into());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    // analytic: one backward pass with a random cotangent
    let tape = Tape::new();
    let vars: Vec<Var<T>> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let out = f(&vars)?;
    let op = out.op_name();
    if !out.tape().same(&tape) {
        return Err(Error::TapeMismatch {
            op: format!("gradcheck (the function returned `{op}` from another tape)"),
        });
    }
    let v = Tensor::<T>::randn_with(out.shape(), 0.0, 1.0, &mut rng)?;
    let grads = out.backward_with(v.clone())?;
    let analytic: Vec<Tensor<T>> = vars.iter().map(|x| grads.get_or_zeros(x)).collect();
    drop(grads);
    drop(out);
    drop(vars);
    drop(tape);

    let mut report = GradcheckReport {
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        checked: 0,
        mismatches: Vec::new(),
    };
    let compare =
        |report: &mut GradcheckReport, input: Option<usize>, index: usize, a: f64, n: f64| {
            let abs = (a - n).abs();
            let rel = abs / n.abs().max(f64::MIN_POSITIVE);
            let ok = abs <= opts.atol + opts.rtol * n.abs();
            report.checked += 1;
            if abs.is_nan() || !ok {
                report.mismatches.push(Mismatch {
                    op: op.clone(),
                    input,
                    index,
                    analytic: a,
                    numeric: n,
                });
            }
            if !abs.is_nan() {
                report.max_abs_err = report.max_abs_err.max(abs);
                report.max_rel_err = report.max_rel_err.max(rel);
            } else {
                report.max_abs_err = f64::NAN;
            }
        };
    let eps = T::of(opts.eps);
    let two_eps = 2.0 * opts.eps;
    match opts.mode {
        GradcheckMode::Full => {
            let mut xs = inputs.to_vec();
            for i in 0..xs.len() {
                for e in 0..xs[i].numel() {
                    let orig = xs[i].as_slice()[e];
                    xs[i].make_mut()[e] = orig + eps;
                    let plus = contract(&f, &xs, &v)?;
                    xs[i].make_mut()[e] = orig - eps;
                    let minus = contract(&f, &xs, &v)?;
                    xs[i].make_mut()[e] = orig;
                    let numeric = (plus - minus) / two_eps;
                    compare(
                        &mut report,
                        Some(i),
                        e,
                        analytic[i].as_slice()[e].as_f64(),
                        numeric,
                    );
                }
            }
        }
        GradcheckMode::Fast { directions } => {
            for d in 0..directions {
                let us: Vec<Tensor<T>> = inputs
                    .iter()
                    .map(|x| Tensor::<T>::randn_with(x.shape(), 0.0, 1.0, &mut rng))
                    .collect::<lossgraph_tensor::Result<_>>()?;
                let shifted = |sign: f64| -> Result<Vec<Tensor<T>>> {
                    inputs
                        .iter()
                        .zip(&us)
                        .map(|(x, u)| Ok(x.add(&u.mul_scalar(eps * T::of(sign)))?))
                        .collect()
                };
                let numeric = (contract(&f, &shifted(1.0)?, &v)?
                    - contract(&f, &shifted(-1.0)?, &v)?)
                    / two_eps;
                let a: f64 = analytic
                    .iter()
                    .zip(&us)
                    .map(|(g, u)| {
                        g.as_slice()
                            .iter()
                            .zip(u.as_slice())
                            .map(|(&g, &u)| g.as_f64() * u.as_f64())
                            .sum::<f64>()
                    })
                    .sum();
                compare(&mut report, None, d, a, numeric);
            }
        }
    }
    Ok(report)
}
