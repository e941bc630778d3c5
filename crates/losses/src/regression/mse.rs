//! Mean squared error: `ℓ = r²`, `r = pred − target`.
//!
//! Assumes Gaussian noise of constant variance: minimising it estimates the
//! conditional mean. Its gradient `2r` grows with the residual, so a few large
//! outliers dominate the fit.

use crate::checks;
use crate::common::{reduce_naive_with, Elementwise, Reduction};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Options of [`mse`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MseOptions {
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

/// Mean squared error `(pred − target)²`, reduced; PyTorch's `F.mse_loss`.
///
/// Gradient: `∂ℓ/∂pred = 2r`, `∂ℓ/∂target = −2r`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{mse, MseOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let pred = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], [2])?);
/// let target = tape.constant(Tensor::from_vec(vec![0.0, 4.0], [2])?);
/// let loss = mse(&pred, &target, &MseOptions::default())?;
/// assert_eq!(loss.item()?, 2.5); // (1 + 4) / 2
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `pred` and `target` differ in shape.
pub fn mse<T: Float>(pred: &Var<T>, target: &Var<T>, opts: &MseOptions) -> Result<Var<T>> {
    let two = T::of(2.0);
    let out = Elementwise::new(
        "mse",
        opts.reduction,
        #[inline(always)]
        |p: T, t: T| (p - t) * (p - t),
        #[inline(always)]
        move |p: T, t: T| (two * (p - t), -two * (p - t)),
    )
    .over(opts.denominator)
    .apply(pred, target)?;
    checks::regression_target("mse", target);
    Ok(out)
}

/// The naive twin of [`mse`]: `square(pred − target)` with primitive ops.
///
/// # Errors
/// As [`mse`].
pub fn mse_naive<T: Float>(pred: &Var<T>, target: &Var<T>, opts: &MseOptions) -> Result<Var<T>> {
    crate::common::no_batchmean("mse", opts.reduction)?;
    crate::common::check_denominator("mse", opts.denominator, opts.reduction)?;
    crate::common::same_shape("mse", &pred.shape(), &target.shape(), "pred and target")?;
    reduce_naive_with(
        pred.sub(target)?.square()?,
        opts.reduction,
        opts.denominator,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case, REDUCTIONS};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::{simd, Tensor};

    #[test]
    fn mse_gradcheck_and_twin() {
        for (reduction, denominator) in REDUCTIONS {
            let o = MseOptions {
                reduction,
                denominator,
            };
            check_family(
                &Case::regression(&[5], 1),
                |v| mse(&v[0], &v[1], &o),
                |v| mse_naive(&v[0], &v[1], &o),
            );
            check_family(
                &Case::regression(&[3, 4], 2),
                |v| mse(&v[0], &v[1], &o),
                |v| mse_naive(&v[0], &v[1], &o),
            );
        }
    }

    /// Gradients above `simd::STREAM_MIN_BYTES` are staged in scratch blocks
    /// and streamed out; under `sum` each element's gradient must equal, bit
    /// for bit, the one from a small slice (written the plain way), for both
    /// inputs at once.
    #[test]
    fn streamed_gradients_match_small_slices() {
        let (n, part) = (2_100_003, 300_000);
        assert!(simd::streams::<f32>(n) && !simd::streams::<f32>(part));
        let p = Tensor::<f32>::randn([n], 0.0, 2.0, 31).unwrap();
        let t = Tensor::<f32>::randn([n], 0.5, 1.0, 32).unwrap();
        let o = MseOptions {
            reduction: Reduction::Sum,
            denominator: None,
        };
        let run = |p: &[f32], t: &[f32]| {
            let tape = Tape::<f32>::new();
            let p = tape.leaf(Tensor::from_vec(p.to_vec(), [p.len()]).unwrap());
            let t = tape.leaf(Tensor::from_vec(t.to_vec(), [t.len()]).unwrap());
            let g = mse(&p, &t, &o).unwrap().backward().unwrap();
            let (gp, gt) = (g.get(&p).unwrap(), g.get(&t).unwrap());
            (gp.as_slice().to_vec(), gt.as_slice().to_vec())
        };
        let (gp, gt) = run(p.as_slice(), t.as_slice());
        for s in (0..n).step_by(part) {
            let e = (s + part).min(n);
            let (sp, st) = run(&p.as_slice()[s..e], &t.as_slice()[s..e]);
            assert_eq!(sp, gp[s..e], "pred, from {s}");
            assert_eq!(st, gt[s..e], "target, from {s}");
        }
    }
}
