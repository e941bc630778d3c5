//! Smooth L1 loss: `ℓ = ½r²/β` for `|r| < β`, else `|r| − ½β`, `r = pred − target`.
//!
//! [`huber`](super::huber()) divided by its threshold: the linear part has
//! slope 1 whatever `β` is, so `β` only sets how wide the quadratic bowl
//! around 0 is (the Fast R-CNN box-regression loss). The gradient is
//! `clamp(r/β, −1, 1)`; `β = 0` is exactly [`mae`](super::mae()), with
//! gradient 0 at `r = 0` as in PyTorch. As `β` shrinks, the bowl's curvature
//! `1/β` grows without bound.

use super::util::sign;
use crate::checks;
use crate::common::{check_option, reduce_naive_with, Elementwise, Reduction};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Float, Tensor};

/// Options of [`smooth_l1`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothL1Options {
    /// Width of the quadratic zone (default 1.0, ≥ 0; 0 gives `mae`).
    pub beta: f64,
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for SmoothL1Options {
    fn default() -> Self {
        SmoothL1Options {
            beta: 1.0,
            reduction: Reduction::Mean,
            denominator: None,
        }
    }
}

fn check(opts: &SmoothL1Options) -> Result<()> {
    check_option("smooth_l1", "beta", opts.beta, opts.beta >= 0.0, "[0, ∞)")
}

/// Smooth L1 loss of `pred − target`, reduced; PyTorch's `F.smooth_l1_loss`.
///
/// `ℓ = ½r²/β` where `|r| < β`, else `|r| − ½β`.
/// Gradient: `∂ℓ/∂pred = r/β` where `|r| < β`, else `sign(r)`;
/// `∂ℓ/∂target` is its negative.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{smooth_l1, SmoothL1Options};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let pred = tape.leaf(Tensor::from_vec(vec![0.25, -3.0], [2])?);
/// let target = tape.constant(Tensor::zeros([2])?);
/// let opts = SmoothL1Options { beta: 0.5, ..Default::default() };
/// let loss = smooth_l1(&pred, &target, &opts)?;
/// assert_eq!(loss.item()?, (0.0625 + 2.75) / 2.0);
/// let g = loss.backward()?;
/// assert_eq!(g.get(&pred).unwrap().to_vec(), vec![0.25, -0.5]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `InvalidOption` when `beta < 0` (or NaN) or for `batchmean`;
/// `ShapeMismatch` when `pred` and `target` differ in shape.
pub fn smooth_l1<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    opts: &SmoothL1Options,
) -> Result<Var<T>> {
    check(opts)?;
    let b = T::of(opts.beta);
    let half = T::of(0.5);
    let out = Elementwise::new(
        "smooth_l1",
        opts.reduction,
        // with β = 0 the first branch is never taken: |r|, as mae
        #[inline(always)]
        move |p: T, t: T| {
            let r = p - t;
            let a = r.abs();
            if a < b {
                half * r * r / b
            } else {
                a - half * b
            }
        },
        #[inline(always)]
        move |p: T, t: T| {
            let r = p - t;
            let g = if r.abs() < b { r / b } else { sign(r) };
            (g, -g)
        },
    )
    .over(opts.denominator)
    .apply(pred, target)?;
    checks::regression_target("smooth_l1", target);
    Ok(out)
}

/// The naive twin of [`smooth_l1`], from primitive ops: with
/// `a = min(|r|, β)`, `ℓ = ½a²/β + (|r| − a)`; `abs(r)` when `β = 0`.
///
/// # Errors
/// As [`smooth_l1`].
pub fn smooth_l1_naive<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    opts: &SmoothL1Options,
) -> Result<Var<T>> {
    check(opts)?;
    crate::common::no_batchmean("smooth_l1", opts.reduction)?;
    crate::common::check_denominator("smooth_l1", opts.denominator, opts.reduction)?;
    crate::common::same_shape(
        "smooth_l1",
        &pred.shape(),
        &target.shape(),
        "pred and target",
    )?;
    let b = T::of(opts.beta);
    let abs = pred.sub(target)?.abs()?;
    if b == T::zero() {
        return reduce_naive_with(abs, opts.reduction, opts.denominator);
    }
    let a = abs.minimum(&pred.tape().constant(Tensor::scalar(b)))?;
    let loss = a.square()?.mul_scalar(T::of(0.5) / b)?.add(&abs.sub(&a)?)?;
    reduce_naive_with(loss, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case, REDUCTIONS};
    use lossgraph_autodiff::{ErrorKind, Tape};

    #[test]
    fn smooth_l1_gradcheck_and_twin() {
        for beta in [1.0, 0.5, 0.0] {
            for (reduction, denominator) in REDUCTIONS {
                let o = SmoothL1Options {
                    beta,
                    reduction,
                    denominator,
                };
                for (shape, seed) in [(&[7][..], 5), (&[3, 5][..], 6)] {
                    check_family(
                        &Case::regression(shape, seed),
                        |v| smooth_l1(&v[0], &v[1], &o),
                        |v| smooth_l1_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn smooth_l1_at_the_corner_and_at_zero() {
        let p = Tensor::from_vec(vec![0.5, -0.5, 0.0, 2.0], [4]).unwrap();
        let t = Tensor::zeros([4]).unwrap();
        for beta in [0.5, 0.0] {
            let o = SmoothL1Options {
                beta,
                reduction: Reduction::Sum,
                denominator: None,
            };
            check_twins(
                &Case::new(vec![p.clone(), t.clone()]),
                |v| smooth_l1(&v[0], &v[1], &o),
                |v| smooth_l1_naive(&v[0], &v[1], &o),
            );
        }
    }

    #[test]
    fn smooth_l1_beta_zero_is_mae() {
        let case = Case::regression(&[4, 3], 7);
        let o = SmoothL1Options {
            beta: 0.0,
            reduction: Reduction::None,
            denominator: None,
        };
        let m = crate::regression::MaeOptions {
            reduction: Reduction::None,
            denominator: None,
        };
        check_twins(
            &case,
            |v| smooth_l1(&v[0], &v[1], &o),
            |v| crate::regression::mae(&v[0], &v[1], &m),
        );
    }

    #[test]
    fn smooth_l1_errors() {
        let tape = Tape::<f64>::new();
        let p = tape.leaf(Tensor::zeros([3]).unwrap());
        let t = tape.leaf(Tensor::zeros([3, 1]).unwrap());
        let e = smooth_l1(&p, &t, &SmoothL1Options::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
        for beta in [-0.1, f64::NAN] {
            let o = SmoothL1Options {
                beta,
                ..Default::default()
            };
            assert_eq!(
                smooth_l1(&p, &p, &o).unwrap_err().kind(),
                ErrorKind::InvalidOption
            );
        }
    }
}
