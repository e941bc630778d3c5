//! Mean absolute error: `ℓ = |r|`, `r = pred − target`.
//!
//! Assumes Laplace noise: minimising it estimates the conditional median, so
//! outliers pull on the fit with a bounded force. The gradient `sign(r)` has
//! the same size for every residual — robust, but it does not shrink as the
//! fit improves (a fixed learning rate oscillates around the optimum), and
//! `|r|` has a corner at 0, where the gradient is 0 as in PyTorch.

use super::util::sign;
use crate::checks;
use crate::common::{reduce_naive_with, Elementwise, Reduction};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Options of [`mae`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MaeOptions {
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

/// Mean absolute error `|pred − target|`, reduced; PyTorch's `F.l1_loss`.
///
/// Gradient: `∂ℓ/∂pred = sign(r)`, `∂ℓ/∂target = −sign(r)`, 0 at `r = 0`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{mae, MaeOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let pred = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], [2])?);
/// let target = tape.constant(Tensor::from_vec(vec![0.0, 5.0], [2])?);
/// let loss = mae(&pred, &target, &MaeOptions::default())?;
/// assert_eq!(loss.item()?, 2.0); // (1 + 3) / 2
/// let g = loss.backward()?;
/// assert_eq!(g.get(&pred).unwrap().to_vec(), vec![0.5, -0.5]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `pred` and `target` differ in shape; `InvalidOption`
/// for the `batchmean` reduction.
pub fn mae<T: Float>(pred: &Var<T>, target: &Var<T>, opts: &MaeOptions) -> Result<Var<T>> {
    let out = Elementwise::new(
        "mae",
        opts.reduction,
        #[inline(always)]
        |p: T, t: T| (p - t).abs(),
        #[inline(always)]
        |p: T, t: T| {
            let s = sign(p - t);
            (s, -s)
        },
    )
    .over(opts.denominator)
    .apply(pred, target)?;
    checks::regression_target("mae", target);
    Ok(out)
}

/// The naive twin of [`mae`]: `abs(pred − target)` with primitive ops.
///
/// # Errors
/// As [`mae`].
pub fn mae_naive<T: Float>(pred: &Var<T>, target: &Var<T>, opts: &MaeOptions) -> Result<Var<T>> {
    crate::common::no_batchmean("mae", opts.reduction)?;
    crate::common::check_denominator("mae", opts.denominator, opts.reduction)?;
    crate::common::same_shape("mae", &pred.shape(), &target.shape(), "pred and target")?;
    reduce_naive_with(pred.sub(target)?.abs()?, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case, REDUCTIONS};
    use lossgraph_autodiff::{ErrorKind, Tape};
    use lossgraph_tensor::Tensor;

    #[test]
    fn mae_gradcheck_and_twin() {
        for (reduction, denominator) in REDUCTIONS {
            let o = MaeOptions {
                reduction,
                denominator,
            };
            for (shape, seed) in [(&[5][..], 1), (&[3, 4][..], 2)] {
                check_family(
                    &Case::regression(shape, seed),
                    |v| mae(&v[0], &v[1], &o),
                    |v| mae_naive(&v[0], &v[1], &o),
                );
            }
        }
    }

    #[test]
    fn mae_gradient_is_zero_at_zero_residual() {
        let x = Tensor::from_vec(vec![1.0, -2.0, 0.5], [3]).unwrap();
        let case = Case::new(vec![x.clone(), x]);
        let o = MaeOptions::default();
        check_twins(
            &case,
            |v| mae(&v[0], &v[1], &o),
            |v| mae_naive(&v[0], &v[1], &o),
        );
        let tape = Tape::<f64>::new();
        let p = tape.leaf(case.inputs[0].clone());
        let t = tape.leaf(case.inputs[1].clone());
        let g = mae(&p, &t, &o).unwrap().backward().unwrap();
        assert_eq!(g.get(&p).unwrap().to_vec(), vec![0.0; 3]);
    }

    #[test]
    fn mae_errors() {
        let tape = Tape::<f64>::new();
        let p = tape.leaf(Tensor::zeros([3]).unwrap());
        let t = tape.leaf(Tensor::zeros([4]).unwrap());
        let e = mae(&p, &t, &MaeOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
        let o = MaeOptions {
            reduction: Reduction::BatchMean,
            denominator: None,
        };
        let e = mae(&p, &p, &o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOption);
    }
}
