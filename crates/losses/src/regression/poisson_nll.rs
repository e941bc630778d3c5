//! Poisson negative log-likelihood: `ℓ = e^pred − target·pred` with
//! `log_input` (pred is the log-rate), else `pred − target·log(pred + eps)`.
//!
//! For count targets (events, clicks, photons) with a predicted rate λ: the
//! NLL of `target ~ Poisson(λ)` up to `log(target!)`. Predicting the log-rate
//! keeps λ positive with no constraint and makes the gradient simply
//! `λ − target`; with `log_input = false` the rate itself must stay
//! positive (`eps` guards `log 0`, and a negative `pred` gives NaN). `full`
//! adds Stirling's approximation of `log(target!)` for targets above 1, so
//! the value is a true NLL; it does not change the gradient w.r.t. `pred`.
//! The `log_input` form overflows once `e^pred` does (the loss is then
//! genuinely that large).

use crate::common::{
    check_denominator, check_option, no_batchmean, reduce_naive_with, same_shape, Elementwise,
    Reduction,
};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Float, Tensor};

/// Options of [`poisson_nll`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoissonNllOptions {
    /// `pred` is the log of the rate (default true); else the rate itself.
    pub log_input: bool,
    /// Add Stirling's term for `log(target!)` (default false).
    pub full: bool,
    /// Added to the rate inside the log when `log_input` is false (default 1e-8, ≥ 0).
    pub eps: f64,
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for PoissonNllOptions {
    fn default() -> Self {
        PoissonNllOptions {
            log_input: true,
            full: false,
            eps: 1e-8,
            reduction: Reduction::Mean,
            denominator: None,
        }
    }
}

fn check(opts: &PoissonNllOptions) -> Result<()> {
    let ok = opts.eps >= 0.0 && opts.eps.is_finite();
    check_option("poisson_nll", "eps", opts.eps, ok, "[0, ∞)")
}

/// Stirling's `log(t!) ≈ t log t − t + ½ log(2πt)` and its derivative
/// `log t + 1/(2t)`, for `t > 1`; 0 and 0 otherwise (NaN propagates).
/// Both sides are computed and one is selected (no branch in the
/// vectorised loops); the logs are [`Float::fast_ln`].
#[inline(always)]
fn stirling<T: Float>(t: T) -> (T, T) {
    let ln = t.fast_ln();
    let half = T::of(0.5);
    let value = t * ln - t + half * (T::TAU() * t).fast_ln();
    let slope = ln + half / t;
    if t > T::one() {
        (value, slope)
    } else {
        (t * T::zero(), t * T::zero())
    }
}

/// The fused op for one choice of `log_input` (`LOG`) and `full` (`FULL`):
/// the options are constants of each copy, so its loops carry neither
/// branch nor the work of the other form.
fn fused<T: Float, const LOG: bool, const FULL: bool>(
    pred: &Var<T>,
    target: &Var<T>,
    eps: T,
    reduction: Reduction,
    denominator: Option<f64>,
) -> Result<Var<T>> {
    Elementwise::new(
        "poisson_nll",
        reduction,
        #[inline(always)]
        move |p: T, t: T| {
            let nll = if LOG {
                p.fast_exp() - t * p
            } else {
                p - t * (p + eps).fast_ln()
            };
            if FULL {
                nll + stirling(t).0
            } else {
                nll
            }
        },
        #[inline(always)]
        move |p: T, t: T| {
            let (dp, dt) = if LOG {
                (p.fast_exp() - t, -p)
            } else {
                (T::one() - t / (p + eps), -(p + eps).fast_ln())
            };
            (dp, if FULL { dt + stirling(t).1 } else { dt })
        },
    )
    .over(denominator)
    .apply(pred, target)
}

/// Poisson negative log-likelihood, reduced; PyTorch's `F.poisson_nll_loss`.
///
/// `ℓ = e^p − t·p` (`log_input`) or `p − t·log(p + eps)`, plus, if `full`,
/// `t log t − t + ½ log(2πt)` where `t > 1`.
/// Gradient: `∂ℓ/∂pred = e^p − t` or `1 − t/(p + eps)`;
/// `∂ℓ/∂target = −p` or `−log(p + eps)`, plus `log t + 1/(2t)` from
/// Stirling's term where it applies.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{poisson_nll, PoissonNllOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let log_rate = tape.leaf(Tensor::from_vec(vec![0.0, 2f64.ln()], [2])?);
/// let counts = tape.constant(Tensor::from_vec(vec![1.0, 2.0], [2])?);
/// let loss = poisson_nll(&log_rate, &counts, &PoissonNllOptions::default())?;
/// assert!((loss.item()? - (1.0 + 2.0 - 2.0 * 2f64.ln()) / 2.0).abs() < 1e-12);
/// // λ − target: 0 at the maximum-likelihood rate
/// let g = loss.backward()?.get(&log_rate).unwrap().to_vec();
/// assert!(g.iter().all(|x| x.abs() < 1e-12));
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `pred` and `target` differ in shape; `InvalidOption`
/// when `eps` is negative or not finite, or for `batchmean`.
pub fn poisson_nll<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    opts: &PoissonNllOptions,
) -> Result<Var<T>> {
    check(opts)?;
    let (eps, r, d) = (T::of(opts.eps), opts.reduction, opts.denominator);
    match (opts.log_input, opts.full) {
        (true, false) => fused::<T, true, false>(pred, target, eps, r, d),
        (true, true) => fused::<T, true, true>(pred, target, eps, r, d),
        (false, false) => fused::<T, false, false>(pred, target, eps, r, d),
        (false, true) => fused::<T, false, true>(pred, target, eps, r, d),
    }
}

/// The naive twin of [`poisson_nll`] from primitive ops. Stirling's term is
/// evaluated at `where(t > 1, t, 1)` and then masked, so that
/// `0·log 0` never reaches the gradient.
///
/// # Errors
/// As [`poisson_nll`].
pub fn poisson_nll_naive<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    opts: &PoissonNllOptions,
) -> Result<Var<T>> {
    check(opts)?;
    no_batchmean("poisson_nll", opts.reduction)?;
    check_denominator("poisson_nll", opts.denominator, opts.reduction)?;
    same_shape(
        "poisson_nll",
        &pred.shape(),
        &target.shape(),
        "pred and target",
    )?;
    let mut loss = if opts.log_input {
        pred.exp()?.sub(&target.mul(pred)?)?
    } else {
        pred.sub(&target.mul(&pred.add_scalar(T::of(opts.eps))?.log()?)?)?
    };
    if opts.full {
        let tape = pred.tape();
        let mask = target
            .value()
            .map(|t| if t > T::one() { T::one() } else { T::zero() });
        let one = tape.constant(Tensor::scalar(T::one()));
        let zero = tape.constant(Tensor::scalar(T::zero()));
        let t = Var::where_select(&mask, target, &one)?;
        let two_pi_t = t.mul_scalar(T::TAU())?;
        let st = t
            .mul(&t.log()?)?
            .sub(&t)?
            .add(&two_pi_t.log()?.mul_scalar(T::of(0.5))?)?;
        loss = loss.add(&Var::where_select(&mask, &st, &zero)?)?;
    }
    reduce_naive_with(loss, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case, REDUCTIONS};
    use lossgraph_autodiff::{ErrorKind, Tape};

    /// pred: standard normal (log_input) or uniform in [0.3, 3] (rates);
    /// target: counts 0…6 nudged off the integers by ±0.2 so finite
    /// differences never straddle `t = 1`.
    fn case(shape: &[usize], seed: u64, log_input: bool) -> Case {
        let n: usize = shape.iter().product();
        let pred = if log_input {
            Tensor::randn(shape.to_vec(), 0.0, 1.0, seed).unwrap()
        } else {
            Tensor::rand_uniform(shape.to_vec(), 0.3, 3.0, seed).unwrap()
        };
        let u = Tensor::<f64>::rand_uniform([n], 0.0, 7.0, seed + 1).unwrap();
        let t: Vec<f64> = u
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, &x)| (x.floor() + if i % 2 == 0 { 0.2 } else { -0.2 }).max(0.0))
            .collect();
        Case::new(vec![pred, Tensor::from_vec(t, shape.to_vec()).unwrap()])
    }

    #[test]
    fn poisson_nll_gradcheck_and_twin() {
        for log_input in [true, false] {
            for full in [false, true] {
                for (reduction, denominator) in REDUCTIONS {
                    let o = PoissonNllOptions {
                        log_input,
                        full,
                        reduction,
                        denominator,
                        ..Default::default()
                    };
                    for (shape, seed) in [(&[9][..], 30), (&[3, 4][..], 31)] {
                        check_family(
                            &case(shape, seed, log_input),
                            |v| poisson_nll(&v[0], &v[1], &o),
                            |v| poisson_nll_naive(&v[0], &v[1], &o),
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn poisson_nll_full_at_integer_counts() {
        // zero counts: no 0·log 0 in value or gradient
        let tape = Tape::<f64>::new();
        let p = tape.leaf(Tensor::from_vec(vec![0.5, -1.0, 1.0, 2.0], [4]).unwrap());
        let t = tape.leaf(Tensor::from_vec(vec![0.0, 1.0, 2.0, 5.0], [4]).unwrap());
        let o = PoissonNllOptions {
            full: true,
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let y = poisson_nll(&p, &t, &o).unwrap();
        let yn = poisson_nll_naive(&p, &t, &o).unwrap();
        assert!((y.item().unwrap() - yn.item().unwrap()).abs() < 1e-12);
        let g = y.backward().unwrap();
        let gn = yn.backward().unwrap();
        for x in [&p, &t] {
            let (a, b) = (g.get(x).unwrap().to_vec(), gn.get(x).unwrap().to_vec());
            assert!(a
                .iter()
                .zip(&b)
                .all(|(a, b)| (a - b).abs() < 1e-12 && a.is_finite()));
        }
        let ts = g.get(&t).unwrap().to_vec();
        assert_eq!(ts[0], -0.5); // −p only: t = 0 has no Stirling term
    }

    #[test]
    fn poisson_nll_errors() {
        let tape = Tape::<f64>::new();
        let p = tape.leaf(Tensor::zeros([3]).unwrap());
        let t = tape.leaf(Tensor::zeros([1, 3]).unwrap());
        let e = poisson_nll(&p, &t, &PoissonNllOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
        for eps in [-1e-8, f64::NAN] {
            let o = PoissonNllOptions {
                eps,
                ..Default::default()
            };
            assert_eq!(
                poisson_nll(&p, &p, &o).unwrap_err().kind(),
                ErrorKind::InvalidOption
            );
            assert_eq!(
                poisson_nll_naive(&p, &p, &o).unwrap_err().kind(),
                ErrorKind::InvalidOption
            );
        }
    }
}
