//! Huber loss: `ℓ = ½r²` for `|r| ≤ δ`, else `δ(|r| − ½δ)`, `r = pred − target`.
//!
//! Quadratic (like [`mse`](super::mse())) for residuals up to `δ`, linear (like
//! [`mae`](super::mae())) beyond: the gradient is the residual clipped to
//! `[−δ, δ]`, so an outlier pushes no harder than `δ` while small residuals
//! still get a gradient that shrinks to 0. `δ` must match the scale of the
//! noise: too small and it is MAE, too large and it is MSE. The loss and its
//! gradient are continuous; its second derivative jumps at `|r| = δ`.

use crate::checks;
use crate::common::{check_option, reduce_naive_with, Elementwise, Reduction};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Float, Tensor};

/// Options of [`huber`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HuberOptions {
    /// Residual size where the loss turns from quadratic to linear (default 1.0, > 0).
    pub delta: f64,
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for HuberOptions {
    fn default() -> Self {
        HuberOptions {
            delta: 1.0,
            reduction: Reduction::Mean,
            denominator: None,
        }
    }
}

fn check(opts: &HuberOptions) -> Result<()> {
    check_option("huber", "delta", opts.delta, opts.delta > 0.0, "(0, ∞)")
}

/// Huber loss of `pred − target`, reduced; PyTorch's `F.huber_loss`.
///
/// `ℓ = ½r²` where `|r| ≤ δ`, else `δ(|r| − ½δ)`.
/// Gradient: `∂ℓ/∂pred = clamp(r, −δ, δ)`, `∂ℓ/∂target = −clamp(r, −δ, δ)`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{huber, HuberOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let pred = tape.leaf(Tensor::from_vec(vec![0.5, 3.0], [2])?);
/// let target = tape.constant(Tensor::zeros([2])?);
/// let loss = huber(&pred, &target, &HuberOptions::default())?;
/// assert_eq!(loss.item()?, (0.125 + 2.5) / 2.0);
/// let g = loss.backward()?;
/// assert_eq!(g.get(&pred).unwrap().to_vec(), vec![0.25, 0.5]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `InvalidOption` when `delta ≤ 0` (or NaN) or for `batchmean`;
/// `ShapeMismatch` when `pred` and `target` differ in shape.
pub fn huber<T: Float>(pred: &Var<T>, target: &Var<T>, opts: &HuberOptions) -> Result<Var<T>> {
    check(opts)?;
    let d = T::of(opts.delta);
    let half = T::of(0.5);
    let out = Elementwise::new(
        "huber",
        opts.reduction,
        #[inline(always)]
        move |p: T, t: T| {
            let a = (p - t).abs();
            if a <= d {
                half * a * a
            } else {
                d * (a - half * d)
            }
        },
        #[inline(always)]
        move |p: T, t: T| {
            let r = p - t;
            // clamp(r, −δ, δ), written so that NaN propagates
            let g = if r > d {
                d
            } else if r < -d {
                -d
            } else {
                r
            };
            (g, -g)
        },
    )
    .over(opts.denominator)
    .apply(pred, target)?;
    checks::regression_target("huber", target);
    Ok(out)
}

/// The naive twin of [`huber`], from primitive ops: with `a = min(|r|, δ)`,
/// `ℓ = ½a² + δ(|r| − a)`.
///
/// # Errors
/// As [`huber`].
pub fn huber_naive<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    opts: &HuberOptions,
) -> Result<Var<T>> {
    check(opts)?;
    crate::common::no_batchmean("huber", opts.reduction)?;
    crate::common::check_denominator("huber", opts.denominator, opts.reduction)?;
    crate::common::same_shape("huber", &pred.shape(), &target.shape(), "pred and target")?;
    let d = T::of(opts.delta);
    let abs = pred.sub(target)?.abs()?;
    let a = abs.minimum(&pred.tape().constant(Tensor::scalar(d)))?;
    let loss = a
        .square()?
        .mul_scalar(T::of(0.5))?
        .add(&abs.sub(&a)?.mul_scalar(d)?)?;
    reduce_naive_with(loss, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case, REDUCTIONS};
    use lossgraph_autodiff::{ErrorKind, Tape};

    #[test]
    fn huber_gradcheck_and_twin() {
        for delta in [1.0, 0.3, 2.5] {
            for (reduction, denominator) in REDUCTIONS {
                let o = HuberOptions {
                    delta,
                    reduction,
                    denominator,
                };
                for (shape, seed) in [(&[7][..], 3), (&[3, 5][..], 4)] {
                    check_family(
                        &Case::regression(shape, seed),
                        |v| huber(&v[0], &v[1], &o),
                        |v| huber_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn huber_at_the_corner_and_at_zero() {
        // |r| = δ exactly (gradient ±δ from both sides) and r = 0
        let p = Tensor::from_vec(vec![0.5, -0.5, 0.0, 2.0], [4]).unwrap();
        let t = Tensor::zeros([4]).unwrap();
        let o = HuberOptions {
            delta: 0.5,
            reduction: Reduction::Sum,
            denominator: None,
        };
        check_twins(
            &Case::new(vec![p, t]),
            |v| huber(&v[0], &v[1], &o),
            |v| huber_naive(&v[0], &v[1], &o),
        );
    }

    #[test]
    fn huber_huge_residuals_f32() {
        let tape = Tape::<f32>::new();
        let p = tape.leaf(Tensor::from_vec(vec![1e30f32, -3e38], [2]).unwrap());
        let t = tape.leaf(Tensor::zeros([2]).unwrap());
        let o = HuberOptions {
            reduction: Reduction::None,
            ..Default::default()
        };
        let y = huber(&p, &t, &o).unwrap();
        assert_eq!(y.value().to_vec(), vec![1e30f32 - 0.5, 3e38 - 0.5]);
        let g = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(&p).unwrap().to_vec(), vec![1.0, -1.0]);
    }

    #[test]
    fn huber_errors() {
        let tape = Tape::<f64>::new();
        let p = tape.leaf(Tensor::zeros([3]).unwrap());
        let t = tape.leaf(Tensor::zeros([2, 2]).unwrap());
        let e = huber(&p, &t, &HuberOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
        for delta in [0.0, -1.0, f64::NAN] {
            let o = HuberOptions {
                delta,
                ..Default::default()
            };
            assert_eq!(
                huber(&p, &p, &o).unwrap_err().kind(),
                ErrorKind::InvalidOption
            );
            assert_eq!(
                huber_naive(&p, &p, &o).unwrap_err().kind(),
                ErrorKind::InvalidOption
            );
        }
    }
}
