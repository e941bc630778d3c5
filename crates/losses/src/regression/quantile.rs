//! Quantile (pinball) loss: with `u = target − pred`, `ℓ = max(τu, (τ−1)u)`.
//!
//! Minimising it makes `pred` the conditional `τ`-quantile of the target:
//! under-prediction (`u > 0`) costs `τ` per unit, over-prediction `1 − τ`, so
//! at the optimum a fraction `τ` of targets lie below the prediction. `τ = ½`
//! is half of [`mae`](super::mae()). The gradient is piecewise constant
//! (`−τ` or `1 − τ` w.r.t. `pred`) — no shrinking near the optimum — and at
//! the corner `u = 0` this op uses the subgradient 0 (there is no PyTorch
//! loss to follow).
//!
//! With `taus = [τ₁ … τ_Q]` one call fits Q quantiles at once: `pred [N, Q]`,
//! `target [N]`, column `q` scored with `τ_q` (a predictive band such as the
//! 10 %, 50 % and 90 % quantiles). Nothing keeps the columns ordered: the
//! fitted quantiles may cross.

use crate::common::{
    check_denominator, check_option, mean_denominator, no_batchmean, reduce_naive_with,
    reduce_over, same_shape, Elementwise, Reduction, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::{Error, Float, Tensor};

/// Options of [`quantile`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileOptions {
    /// The quantile level (default 0.5, in (0, 1)); unused when `taus` is set.
    pub tau: f64,
    /// Several levels, one per column of `pred [N, Q]` (default none; each in
    /// (0, 1), at least one).
    pub taus: Option<Vec<f64>>,
    /// How items are combined (default `mean`, over all `N·Q` items).
    pub reduction: Reduction,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for QuantileOptions {
    fn default() -> Self {
        QuantileOptions {
            tau: 0.5,
            taus: None,
            reduction: Reduction::Mean,
            denominator: None,
        }
    }
}

/// The levels to use, validated: `[tau]` or `taus`.
fn levels(opts: &QuantileOptions) -> Result<Vec<f64>> {
    let check =
        |name: &str, t: f64| check_option("quantile", name, t, t > 0.0 && t < 1.0, "(0, 1)");
    match &opts.taus {
        None => {
            check("tau", opts.tau)?;
            Ok(vec![opts.tau])
        }
        Some(taus) => {
            if taus.is_empty() {
                return Err(Error::option("quantile", "taus", "needs at least one level").into());
            }
            for &t in taus {
                check("taus", t)?;
            }
            Ok(taus.clone())
        }
    }
}

/// Shapes: `pred` and `target` equal (one level), or `pred [N, Q]` with
/// `target [N]` (`taus` of length Q).
fn check_shapes<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    opts: &QuantileOptions,
    q: usize,
) -> Result<()> {
    let (ps, ts) = (pred.shape(), target.shape());
    if opts.taus.is_none() {
        return same_shape("quantile", &ps, &ts, "pred and target");
    }
    let (p, t) = (ps.dims(), ts.dims());
    if p.len() != 2 || p[1] != q || t.len() != 1 || t[0] != p[0] {
        return Err(Error::shape(
            "quantile",
            &[p, t],
            format!("with {q} taus, pred must be [N, {q}] and target [N]"),
        )
        .into());
    }
    Ok(())
}

/// The fused pinball loss: item `i` of `pred` (row-major, `q` levels per
/// row) is scored against `target[i / q]` at level `taus[i % q]`.
struct Pinball<T> {
    taus: Vec<T>,
    reduction: Reduction,
    /// The `mean`'s denominator from outside (none: the `N·Q` items).
    denominator: Option<f64>,
}

impl<T: Float> Pinball<T> {
    /// The `mean`'s denominator for `n` items.
    fn denom(&self, n: usize) -> T {
        mean_denominator(self.denominator, T::of(n as f64))
    }
}

/// The pinball loss of one residual `u = target − pred` at level `τ`:
/// `τ·u` for `u ≥ 0`, `(τ − 1)·u` below (NaN takes the second value and
/// stays NaN). A select between computed values, so loops over it
/// vectorise.
#[inline(always)]
fn pinball<T: Float>(u: T, tau: T) -> T {
    if u >= T::zero() {
        tau * u
    } else {
        (tau - T::one()) * u
    }
}

/// `∂ℓ/∂pred` of [`pinball`]: `−τ` for `u > 0`, `1 − τ` for `u < 0`, 0 at
/// the corner (`u·0`, so NaN stays NaN).
#[inline(always)]
fn pinball_slope<T: Float>(u: T, tau: T) -> T {
    if u > T::zero() {
        -tau
    } else if u < T::zero() {
        T::one() - tau
    } else {
        u * T::zero()
    }
}

impl<T: Float> CustomOp<T> for Pinball<T> {
    type Saved = ();
    fn name(&self) -> &str {
        "quantile"
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, ())> {
        let (pred, target) = (x[0].as_slice(), x[1].as_slice());
        let q = self.taus.len();
        let mut loss = Vec::with_capacity(pred.len());
        for (row, &t) in pred.chunks(q).zip(target) {
            for (&p, &tau) in row.iter().zip(&self.taus) {
                loss.push(pinball(t - p, tau));
            }
        }
        let n = loss.len();
        let denom = self.denom(n);
        Ok((reduce_over(loss, x[0].shape(), self.reduction, denom)?, ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, ()>) -> Result<Vec<Option<Tensor<T>>>> {
        let (pred, target) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let q = self.taus.len();
        let up = Upstream::over(cx.grad_output, self.reduction, self.denom(pred.len()));
        let mut dp = Vec::with_capacity(if cx.needs_grad[0] { pred.len() } else { 0 });
        let mut dt = Vec::with_capacity(if cx.needs_grad[1] { target.len() } else { 0 });
        let mut i = 0;
        for (row, &t) in pred.chunks(q).zip(target) {
            let mut acc = T::zero();
            for (&p, &tau) in row.iter().zip(&self.taus) {
                let g = up.at(i) * pinball_slope(t - p, tau);
                i += 1;
                if cx.needs_grad[0] {
                    dp.push(g);
                }
                acc -= g;
            }
            if cx.needs_grad[1] {
                dt.push(acc);
            }
        }
        Ok(vec![
            cx.needs_grad[0]
                .then(|| Tensor::from_vec(dp, cx.inputs[0].shape().clone()))
                .transpose()?,
            cx.needs_grad[1]
                .then(|| Tensor::from_vec(dt, cx.inputs[1].shape().clone()))
                .transpose()?,
        ])
    }
}

/// Quantile (pinball) loss, reduced: with `u = target − pred`,
/// `ℓ = max(τu, (τ−1)u)`.
///
/// One level (`tau`): `pred` and `target` of the same shape, `"none"` gives
/// that shape. Several (`taus`, length Q): `pred [N, Q]`, `target [N]`,
/// column `q` at level `τ_q`; `"none"` gives `[N, Q]` and `"mean"` averages
/// all `N·Q` items.
///
/// Gradient: `∂ℓ/∂pred = −τ` where `u > 0`, `1 − τ` where `u < 0`, 0 at
/// `u = 0`; `∂ℓ/∂target` is its negative (summed over the Q columns).
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{quantile, QuantileOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// // one sample, its 10 % / 50 % / 90 % quantiles predicted as 0, 1, 2
/// let pred = tape.leaf(Tensor::from_vec(vec![0.0, 1.0, 2.0], [1, 3])?);
/// let target = tape.leaf(Tensor::from_vec(vec![1.5], [1])?);
/// let opts = QuantileOptions { taus: Some(vec![0.1, 0.5, 0.9]), ..Default::default() };
/// let loss = quantile(&pred, &target, &opts)?;
/// // 0.1·1.5 + 0.5·0.5 + 0.1·0.5, averaged over 3 items
/// assert!((loss.item()? - 0.15).abs() < 1e-12);
/// let g = loss.backward()?;
/// let gp = g.get(&pred).unwrap().to_vec();
/// assert!((gp[0] + 0.1 / 3.0).abs() < 1e-12 && (gp[2] - 0.1 / 3.0).abs() < 1e-12);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `InvalidOption` when `tau` or a level of `taus` is outside (0, 1), when
/// `taus` is empty, or for `batchmean`; `ShapeMismatch` when the shapes are
/// not as above.
pub fn quantile<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    opts: &QuantileOptions,
) -> Result<Var<T>> {
    no_batchmean("quantile", opts.reduction)?;
    check_denominator("quantile", opts.denominator, opts.reduction)?;
    let taus = levels(opts)?;
    check_shapes(pred, target, opts, taus.len())?;
    if opts.taus.is_none() {
        // One level, same shapes: the parallel, vectorised elementwise op
        // (the loss and its derivative are selects between computed values,
        // no branch).
        let tau = T::of(opts.tau);
        return Elementwise::new(
            "quantile",
            opts.reduction,
            #[inline(always)]
            move |p: T, t: T| pinball(t - p, tau),
            #[inline(always)]
            move |p: T, t: T| {
                // ∂ℓ/∂target is the negative of ∂ℓ/∂pred
                let d = pinball_slope(t - p, tau);
                (d, -d)
            },
        )
        .over(opts.denominator)
        .apply(pred, target);
    }
    let op = Pinball {
        taus: taus.into_iter().map(T::of).collect(),
        reduction: opts.reduction,
        denominator: opts.denominator,
    };
    pred.tape().apply(op, &[pred, target])
}

/// The naive twin of [`quantile`]: `maximum(τ·u, (τ−1)·u)` with primitive
/// ops (with `taus`: `u = target[:, None] − pred` broadcast against the
/// levels as a `[Q]` constant). `maximum` splits the gradient at `u = 0`.
///
/// # Errors
/// As [`quantile`].
pub fn quantile_naive<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    opts: &QuantileOptions,
) -> Result<Var<T>> {
    no_batchmean("quantile", opts.reduction)?;
    check_denominator("quantile", opts.denominator, opts.reduction)?;
    let taus = levels(opts)?;
    check_shapes(pred, target, opts, taus.len())?;
    let loss = match &opts.taus {
        None => {
            let tau = T::of(opts.tau);
            let u = target.sub(pred)?;
            u.mul_scalar(tau)?.maximum(&u.mul_scalar(tau - T::one())?)?
        }
        Some(_) => {
            let tape = pred.tape();
            let q = taus.len();
            let hi = tape.constant(Tensor::from_vec(
                taus.iter().map(|&t| T::of(t)).collect(),
                [q],
            )?);
            let lo = tape.constant(Tensor::from_vec(
                taus.iter().map(|&t| T::of(t - 1.0)).collect(),
                [q],
            )?);
            let u = target.reshape([target.shape().numel(), 1])?.sub(pred)?;
            u.mul(&hi)?.maximum(&u.mul(&lo)?)?
        }
    };
    reduce_naive_with(loss, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case, REDUCTIONS};
    use lossgraph_autodiff::{ErrorKind, Tape};

    fn multi_case(n: usize, q: usize, seed: u64) -> Case {
        Case::new(vec![
            Tensor::randn([n, q], 0.0, 1.0, seed).unwrap(),
            Tensor::randn([n], 0.0, 1.0, seed + 1).unwrap(),
        ])
    }

    #[test]
    fn quantile_gradcheck_and_twin() {
        for tau in [0.5, 0.9, 0.1] {
            for (reduction, denominator) in REDUCTIONS {
                let o = QuantileOptions {
                    tau,
                    taus: None,
                    reduction,
                    denominator,
                };
                for (shape, seed) in [(&[7][..], 10), (&[3, 5][..], 11)] {
                    check_family(
                        &Case::regression(shape, seed),
                        |v| quantile(&v[0], &v[1], &o),
                        |v| quantile_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn quantile_taus_gradcheck_and_twin() {
        for taus in [vec![0.1, 0.5, 0.9], vec![0.25]] {
            for (reduction, denominator) in REDUCTIONS {
                let o = QuantileOptions {
                    taus: Some(taus.clone()),
                    reduction,
                    denominator,
                    ..Default::default()
                };
                for (n, seed) in [(6, 12), (1, 13)] {
                    check_family(
                        &multi_case(n, taus.len(), seed),
                        |v| quantile(&v[0], &v[1], &o),
                        |v| quantile_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn quantile_one_column_equals_single_tau() {
        let case = multi_case(5, 1, 14);
        let single = QuantileOptions {
            tau: 0.3,
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let multi = QuantileOptions {
            taus: Some(vec![0.3]),
            ..single.clone()
        };
        check_twins(
            &case,
            |v| quantile(&v[0], &v[1], &multi),
            |v| quantile(&v[0].reshape([5]).unwrap(), &v[1], &single),
        );
    }

    #[test]
    fn quantile_gradient_is_zero_at_the_corner() {
        let tape = Tape::<f64>::new();
        let p = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap());
        let t = tape.leaf(Tensor::from_vec(vec![1.0, 3.0], [2]).unwrap());
        let o = QuantileOptions {
            tau: 0.9,
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let g = quantile(&p, &t, &o).unwrap().backward().unwrap();
        assert_eq!(g.get(&p).unwrap().to_vec(), vec![0.0, -0.9]);
        assert_eq!(g.get(&t).unwrap().to_vec(), vec![0.0, 0.9]);
    }

    #[test]
    fn quantile_errors() {
        let tape = Tape::<f64>::new();
        let p = tape.leaf(Tensor::zeros([4, 2]).unwrap());
        let t = tape.leaf(Tensor::zeros([4]).unwrap());
        let kind = |o: &QuantileOptions, p: &Var<f64>, t: &Var<f64>| {
            let fused = quantile(p, t, o).unwrap_err().kind();
            assert_eq!(fused, quantile_naive(p, t, o).unwrap_err().kind());
            fused
        };
        for tau in [0.0, 1.0, 1.5, -0.2, f64::NAN] {
            let o = QuantileOptions {
                tau,
                ..Default::default()
            };
            assert_eq!(kind(&o, &t, &t), ErrorKind::InvalidOption);
            let o = QuantileOptions {
                taus: Some(vec![0.5, tau]),
                ..Default::default()
            };
            assert_eq!(kind(&o, &p, &t), ErrorKind::InvalidOption);
        }
        let o = QuantileOptions {
            taus: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(kind(&o, &p, &t), ErrorKind::InvalidOption);
        // one level: shapes must match
        assert_eq!(
            kind(&QuantileOptions::default(), &p, &t),
            ErrorKind::ShapeMismatch
        );
        // several: Q columns, N targets, 2-D pred
        let o = QuantileOptions {
            taus: Some(vec![0.1, 0.5, 0.9]),
            ..Default::default()
        };
        assert_eq!(kind(&o, &p, &t), ErrorKind::ShapeMismatch);
        let o = QuantileOptions {
            taus: Some(vec![0.1, 0.9]),
            ..Default::default()
        };
        let t3 = tape.leaf(Tensor::zeros([3]).unwrap());
        assert_eq!(kind(&o, &p, &t3), ErrorKind::ShapeMismatch);
        let t41 = tape.leaf(Tensor::zeros([4, 1]).unwrap());
        assert_eq!(kind(&o, &p, &t41), ErrorKind::ShapeMismatch);
        let p3 = tape.leaf(Tensor::zeros([4, 1, 2]).unwrap());
        assert_eq!(kind(&o, &p3, &t), ErrorKind::ShapeMismatch);
    }
}
