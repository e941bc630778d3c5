//! The weighted mean `Σ wᵢℓᵢ / (Σ wᵢ + ε)` with non-negative weights, e.g.
//! per-sample importance weights or class-balancing weights.
//!
//! Normalising by `Σ w` (not by the item count) keeps the loss on the scale of
//! one item whatever the weights' overall scale; `ε` guards a denominator that
//! can get small. Items of weight 0 are skipped, so their values (even `∞`)
//! do not matter. When every weight is 0 the mean is 0 and every gradient is
//! 0 (the project's empty-denominator rule).
//!
//! Gradients, with `D = Σ w + ε` and `μ` the weighted mean:
//! `∂/∂ℓᵢ = wᵢ / D`, `∂/∂wᵢ = (ℓᵢ − μ) / D`.
//!
//! The `denominator` option replaces `Σ w` by a total from outside — the
//! whole batch's, when this call sees a part of it — so that the parts'
//! gradients add up to the batch's; `D = denominator + ε` is then a
//! constant and `∂/∂wᵢ = ℓᵢ / D`.

use super::masked_mean::{check_eps, ratio_naive, RatioMean, WeightRule};
use crate::checks;
use crate::common::{check_denominator, same_shape, Reduction};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Options of [`weighted_mean`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WeightedMeanOptions {
    /// Added to the denominator (default 0.0, must be finite and ≥ 0).
    pub eps: f64,
    /// The total weight from outside (default none: this call's `Σ w`) —
    /// the whole batch's, when this call sees a part of it (a micro-batch, a
    /// data-parallel shard), so that the parts' gradients add up to the
    /// batch's. Finite, ≥ 0.
    pub denominator: Option<f64>,
}

/// Weighted mean `Σ w·ℓ / (Σ w + eps)` of `values`, a 0-d output; 0 with zero
/// gradients when every weight is 0.
///
/// Gradient: `∂/∂ℓ = w / D`, `∂/∂w = (ℓ − μ) / D` with `D = Σ w + eps` and `μ`
/// the weighted mean.
///
/// Options: `eps` (0.0).
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{weighted_mean, WeightedMeanOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let loss = tape.leaf(Tensor::from_vec(vec![1.0, 4.0], [2])?);
/// let w = tape.leaf(Tensor::from_vec(vec![3.0, 1.0], [2])?);
/// let m = weighted_mean(&loss, &w, &WeightedMeanOptions::default())?;
/// assert_eq!(m.item()?, 1.75); // (3 + 4) / 4
/// let g = m.backward()?;
/// assert_eq!(g.get(&loss).unwrap().to_vec(), vec![0.75, 0.25]);
/// assert_eq!(g.get(&w).unwrap().to_vec(), vec![-0.1875, 0.5625]); // (ℓ − 1.75) / 4
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `InvalidOption` for an `eps` that is negative or not finite;
/// `ShapeMismatch` when `values` and `weights` differ in shape;
/// `InvalidValue` for a negative weight.
pub fn weighted_mean<T: Float>(
    values: &Var<T>,
    weights: &Var<T>,
    opts: &WeightedMeanOptions,
) -> Result<Var<T>> {
    check_shape_and_eps(values, weights, opts)?;
    // the weights are checked by the op's forward, in its one pass
    let rule = WeightRule::NonNegative;
    let out = RatioMean::new("weighted_mean", opts.eps, false, rule, &values.shape())
        .with_denominator(opts.denominator)
        .apply(values, weights)?;
    // a part of a batch may hold only masked items when the count comes from outside
    if opts.denominator.is_none() {
        checks::all_masked("weighted_mean", "weight", weights);
    }
    Ok(out)
}

fn check_shape_and_eps<T: Float>(
    values: &Var<T>,
    weights: &Var<T>,
    opts: &WeightedMeanOptions,
) -> Result<()> {
    let op = "weighted_mean";
    check_eps(op, opts.eps)?;
    check_denominator(op, opts.denominator, Reduction::Mean)?;
    same_shape(op, &values.shape(), &weights.shape(), "values and weights")
}

/// Every check of [`weighted_mean`] (the naive twin runs them all up front).
fn validate<T: Float>(values: &Var<T>, weights: &Var<T>, opts: &WeightedMeanOptions) -> Result<()> {
    check_shape_and_eps(values, weights, opts)?;
    WeightRule::NonNegative.check("weighted_mean", &weights.value())
}

/// The naive twin of [`weighted_mean`]: `sum(w·ℓ) / (sum(w) + eps)` with
/// primitive ops.
///
/// # Errors
/// As [`weighted_mean`].
pub fn weighted_mean_naive<T: Float>(
    values: &Var<T>,
    weights: &Var<T>,
    opts: &WeightedMeanOptions,
) -> Result<Var<T>> {
    validate(values, weights, opts)?;
    ratio_naive(values, weights, opts.eps, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, value_and_grads, Case};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::{ErrorKind, Tensor};

    #[test]
    fn weighted_mean_gradcheck_and_twin() {
        for (eps, denominator) in [(0.0, None), (1e-3, None), (0.5, None), (0.5, Some(2.5))] {
            let o = WeightedMeanOptions { eps, denominator };
            for (k, shape) in [&[5][..], &[3, 4][..], &[2, 1, 3][..]].iter().enumerate() {
                let v = Tensor::randn(shape.to_vec(), 0.0, 1.0, k as u64).unwrap();
                let w = Tensor::rand_uniform(shape.to_vec(), 0.1, 2.0, 7 + k as u64).unwrap();
                check_family(
                    &Case::new(vec![v, w]),
                    |x| weighted_mean(&x[0], &x[1], &o),
                    |x| weighted_mean_naive(&x[0], &x[1], &o),
                );
            }
        }
    }

    #[test]
    fn zero_weights_give_zero_with_zero_gradients() {
        for eps in [0.0, 0.5] {
            let o = WeightedMeanOptions {
                eps,
                ..Default::default()
            };
            let case = Case::new(vec![
                Tensor::randn([2, 3], 0.0, 1.0, 3).unwrap(),
                Tensor::zeros([2, 3]).unwrap(),
            ]);
            for f in [weighted_mean::<f64>, weighted_mean_naive::<f64>] {
                let (out, grads) = value_and_grads(&|x| f(&x[0], &x[1], &o), &case.inputs, 1);
                assert_eq!(out.item().unwrap(), 0.0);
                for g in grads {
                    assert!(g.as_slice().iter().all(|&x| x == 0.0), "{g:?}");
                }
            }
        }
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let v = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let kind = |r: Result<Var<f64>>| r.err().unwrap().kind();
        let o = WeightedMeanOptions::default();
        for f in [weighted_mean::<f64>, weighted_mean_naive::<f64>] {
            let wide = tape.leaf(Tensor::ones([3, 2]).unwrap());
            assert_eq!(kind(f(&v, &wide, &o)), ErrorKind::ShapeMismatch);
            let neg =
                tape.leaf(Tensor::from_vec(vec![1.0, 0.0, -1e-9, 1.0, 1.0, 0.0], [2, 3]).unwrap());
            assert_eq!(kind(f(&v, &neg, &o)), ErrorKind::InvalidValue);
            let ones = tape.leaf(Tensor::ones([2, 3]).unwrap());
            for eps in [-1.0, f64::NAN, f64::INFINITY] {
                let o = WeightedMeanOptions {
                    eps,
                    ..Default::default()
                };
                assert_eq!(kind(f(&v, &ones, &o)), ErrorKind::InvalidOption);
            }
        }
    }
}
