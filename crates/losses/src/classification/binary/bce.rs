//! Binary cross-entropy on probabilities:
//! `ℓ = −w·(y·log p + (1 − y)·log(1 − p))`, each log clamped at `≥ −100`.
//!
//! The negative log-likelihood of a Bernoulli outcome with success
//! probability `p`; `y` may be a soft label in `[0, 1]`. The model must
//! already have squashed its output into `[0, 1]`, which is where the trouble
//! starts: a sigmoid that rounds to exactly 0 or 1 makes a log infinite. The
//! clamp at −100 (as PyTorch's) caps the loss of such an item at `100·w`, and
//! its gradient is capped too — prefer
//! [`bce_with_logits`](super::bce_with_logits), which never forms `p`.
//!
//! Gradients, as PyTorch's: `∂ℓ/∂p = w·(p − y)/max(p(1 − p), 10⁻¹²)` — the
//! derivative `(1 − y)/(1 − p) − y/p` wherever `p(1 − p) ≥ 10⁻¹²`, and a
//! finite `±10¹²` at `p = 0` or `1` and near them, where the derivative of
//! the clamped loss is 0 or `∓∞` (a probability that rounded to 0 still
//! pushes back, by a bounded amount; f32 would overflow `1/p` for tiny `p`);
//! `∂ℓ/∂y = w·(log(1 − p) − log p)` with the clamped logs.
//! Fails with `InvalidValue` when a probability or target lies outside
//! `[0, 1]`.

use super::weighted::{broadcast_option, Item, WeightedPointwise};
use crate::checks;
use crate::common::{
    check_denominator, check_unit_interval, no_batchmean, reduce_naive_with, same_shape, Reduction,
};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Float, Tensor};

/// Options of [`bce`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BceOptions<T: Float> {
    /// How items are combined (default `mean`: over every element).
    pub reduction: Reduction,
    /// Per-element weight `w`, broadcast to the input's shape (default none:
    /// `w = 1`). A constant: it gets no gradient.
    pub weight: Option<Tensor<T>>,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

/// The floor of each log, as PyTorch's `binary_cross_entropy`.
const LOG_FLOOR: f64 = -100.0;

/// The floor of `p(1 − p)` in the gradient's denominator, as PyTorch's
/// `binary_cross_entropy_backward`: its `EPSILON` is an f32 constant, so the
/// floor is `1e-12` rounded to f32 (9.99999996e-13) in both dtypes, and the
/// gradient at `p = 0` is `−y·1.0000000040e12` there, not `−y·10¹²`.
const GRAD_EPS: f64 = 1e-12_f32 as f64;

/// `max(v, floor)`, with NaN passing through.
#[inline(always)]
fn floor_log<T: Float>(v: T, floor: T) -> T {
    if v < floor {
        floor
    } else {
        v
    }
}

/// The per-element function of [`bce`].
struct BceItem;

impl<T: Float> Item<T> for BceItem {
    /// `(ℓ, ∂ℓ/∂p, ∂ℓ/∂y)` of one item, `ℓ = −(y·log p + (1 − y)·log(1 − p))`
    /// with floored logs (the third argument, `pos_weight`, is not used by
    /// `bce`); the two logs are shared by the loss and `∂ℓ/∂y`.
    /// `∂ℓ/∂p = (p − y)/max(p(1 − p), 10⁻¹²)`, PyTorch's rule (branch-free,
    /// so the vectorised loops that inline this stay so). The logs take `0`
    /// and `1` (special cases), so they do not use `FMA`.
    #[inline(always)]
    fn eval<const FMA: bool>(&self, p: T, y: T, _: T) -> (T, T, T) {
        item(p, y)
    }
}

#[inline(always)]
fn item<T: Float>(p: T, y: T) -> (T, T, T) {
    let (one, floor) = (T::one(), T::of(LOG_FLOOR));
    let lp = floor_log(p.fast_ln(), floor);
    let lq = floor_log((-p).fast_ln_1p(), floor);
    let loss = -(y * lp + (one - y) * lq);
    (
        loss,
        (p - y) / (p * (one - p)).max(T::of(GRAD_EPS)),
        lq - lp,
    )
}

/// Binary cross-entropy `−w·(y·log p + (1 − y)·log(1 − p))` of probabilities,
/// each log clamped at `≥ −100`, reduced; PyTorch's `F.binary_cross_entropy`.
///
/// Gradient: `∂ℓ/∂p = w·(p − y)/max(p(1 − p), 10⁻¹²)` (PyTorch's rule: the
/// derivative `(1 − y)/(1 − p) − y/p` away from 0 and 1, a bounded `±10¹²`
/// at them), `∂ℓ/∂y = w·(log(1 − p) − log p)` with the clamped logs.
/// `log(1 − p)` is computed as `log1p(−p)`.
///
/// Options: `reduction` (`mean`), `weight` (none) — see [`BceOptions`].
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{bce, BceOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let probs = tape.leaf(Tensor::from_vec(vec![0.8, 0.4], [2])?);
/// let target = tape.constant(Tensor::from_vec(vec![1.0, 0.0], [2])?);
/// let loss = bce(&probs, &target, &BceOptions::default())?;
/// let want = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
/// assert!((loss.item()? - want).abs() < 1e-15);
/// // a probability of exactly 0 for a positive item costs 100, not ∞
/// let p0 = tape.leaf(Tensor::from_vec(vec![0.0], [1])?);
/// let y1 = tape.constant(Tensor::from_vec(vec![1.0], [1])?);
/// assert_eq!(bce(&p0, &y1, &BceOptions::default())?.item()?, 100.0);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `probs` and `target` differ in shape or `weight` does
/// not broadcast to it; `InvalidValue` when a probability or target is outside
/// `[0, 1]`; `InvalidOption` for the `batchmean` reduction.
pub fn bce<T: Float>(probs: &Var<T>, target: &Var<T>, opts: &BceOptions<T>) -> Result<Var<T>> {
    let weight = check_shapes(probs, target, opts)?;
    // the values of probs and target are checked in the op's forward pass
    let op = WeightedPointwise::new("bce", opts.reduction, weight, None, BceItem)
        .over(opts.denominator)
        .in_unit_interval([Some("probs"), Some("target")]);
    let out = op.apply(probs, target)?;
    checks::bce_probs("bce", probs);
    Ok(out)
}

/// Checks shared by [`bce`] and its twin; returns the weight at the input's shape.
fn check_shapes<T: Float>(
    probs: &Var<T>,
    target: &Var<T>,
    opts: &BceOptions<T>,
) -> Result<Option<Tensor<T>>> {
    no_batchmean("bce", opts.reduction)?;
    check_denominator("bce", opts.denominator, opts.reduction)?;
    let shape = probs.shape();
    same_shape("bce", &shape, &target.shape(), "probs and target")?;
    broadcast_option("bce", "weight", opts.weight.as_ref(), &shape)
}

/// Every check of [`bce`], values included (the naive twin runs them up
/// front); returns `weight` at the input's shape.
fn validate<T: Float>(
    probs: &Var<T>,
    target: &Var<T>,
    opts: &BceOptions<T>,
) -> Result<Option<Tensor<T>>> {
    let weight = check_shapes(probs, target, opts)?;
    check_unit_interval("bce", "probs", &probs.value())?;
    check_unit_interval("bce", "target", &target.value())?;
    Ok(weight)
}

/// The naive twin of [`bce`]: `−w·(y·clamp(log p) + (1 − y)·clamp(log(1 − p)))`
/// with primitive ops.
///
/// # Errors
/// As [`bce`].
pub fn bce_naive<T: Float>(
    probs: &Var<T>,
    target: &Var<T>,
    opts: &BceOptions<T>,
) -> Result<Var<T>> {
    let weight = validate(probs, target, opts)?;
    let (floor, inf, one) = (T::of(LOG_FLOOR), T::infinity(), T::one());
    let lp = probs.log()?.clamp(floor, inf)?;
    let lq = probs.neg()?.add_scalar(one)?.log()?.clamp(floor, inf)?;
    let not_y = target.neg()?.add_scalar(one)?;
    let mut loss = target.mul(&lp)?.add(&not_y.mul(&lq)?)?.neg()?;
    if let Some(w) = weight {
        loss = loss.mul(&probs.tape().constant(w))?;
    }
    reduce_naive_with(loss, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::uniform;
    use super::*;
    use crate::testing::{check_family, check_twins, value_and_grads, Case, REDUCTIONS};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::ErrorKind;

    /// Probabilities and soft targets away from 0 and 1, so that finite
    /// differences stay inside `[0, 1]`.
    fn case(shape: &[usize], seed: u64) -> Case {
        Case::new(vec![
            uniform(shape, 0.02, 0.98, seed),
            uniform(shape, 0.02, 0.98, seed + 100),
        ])
    }

    #[test]
    fn bce_gradcheck_and_twin() {
        for (reduction, denominator) in REDUCTIONS {
            let o = BceOptions {
                reduction,
                denominator,
                weight: None,
            };
            for (shape, seed) in [(&[7][..], 1), (&[3, 4][..], 2)] {
                check_family(
                    &case(shape, seed),
                    |v| bce(&v[0], &v[1], &o),
                    |v| bce_naive(&v[0], &v[1], &o),
                );
            }
        }
    }

    #[test]
    fn bce_weighted_gradcheck_and_twin() {
        // a full-shape weight, a per-column weight and a per-row weight
        for (wshape, seed) in [(&[3, 4][..], 3), (&[4][..], 4), (&[3, 1][..], 5)] {
            for (reduction, denominator) in [REDUCTIONS[0], REDUCTIONS[2], REDUCTIONS[3]] {
                let o = BceOptions {
                    reduction,
                    denominator,
                    weight: Some(uniform(wshape, 0.1, 2.0, seed)),
                };
                check_family(
                    &case(&[3, 4], seed),
                    |v| bce(&v[0], &v[1], &o),
                    |v| bce_naive(&v[0], &v[1], &o),
                );
            }
        }
    }

    #[test]
    fn bce_hard_labels_twin() {
        // hard 0/1 targets: gradcheck would step outside [0, 1]; compare twins
        let p = uniform(&[2, 5], 0.01, 0.99, 6);
        let y = uniform(&[2, 5], 0.0, 1.0, 7).map(|v| v.round());
        let o = BceOptions::default();
        check_twins(
            &Case::new(vec![p, y]),
            |v| bce(&v[0], &v[1], &o),
            |v| bce_naive(&v[0], &v[1], &o),
        );
    }

    #[test]
    fn bce_saturated_probs_are_clamped() {
        // p ∈ {0, 1}: each clamped log costs 100; gradients stay finite
        let p = Tensor::from_vec(vec![0.0, 1.0, 0.0, 1.0], [4]).unwrap();
        let y = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], [4]).unwrap();
        let o = BceOptions {
            reduction: Reduction::None,
            denominator: None,
            weight: None,
        };
        let (out, grads) = value_and_grads(&|v| bce(&v[0], &v[1], &o), &[p, y], 3);
        assert_eq!(out.to_vec(), vec![100.0, 100.0, 0.0, 0.0]);
        assert!(grads.iter().all(Tensor::all_finite));
        // ∂ℓ/∂y = log(1 − p) − log p with clamped logs: ±100 at the saturated items
        let tape = Tape::new();
        let pv = tape.leaf(Tensor::from_vec(vec![0.0, 1.0], [2]).unwrap());
        let yv = tape.leaf(Tensor::from_vec(vec![1.0, 0.0], [2]).unwrap());
        let g = bce(&pv, &yv, &BceOptions::default())
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(g.get_or_zeros(&yv).to_vec(), vec![50.0, -50.0]);
    }

    #[test]
    fn bce_errors() {
        let tape = Tape::<f64>::new();
        let leaf = |d: Vec<f64>| tape.leaf(Tensor::from_slice(&d));
        let o = BceOptions::default();
        let (p, y) = (leaf(vec![0.2, 0.7]), leaf(vec![1.0, 0.0]));
        let kind = |r: Result<Var<f64>>| r.err().map(|e| e.kind());
        assert_eq!(
            kind(bce(&leaf(vec![0.2, 1.2]), &y, &o)),
            Some(ErrorKind::InvalidValue)
        );
        assert_eq!(
            kind(bce(&p, &leaf(vec![-0.1, 1.0]), &o)),
            Some(ErrorKind::InvalidValue)
        );
        assert_eq!(
            kind(bce(&p, &leaf(vec![1.0, 0.0, 1.0]), &o)),
            Some(ErrorKind::ShapeMismatch)
        );
        let bad_weight = BceOptions {
            weight: Some(Tensor::from_slice(&[1.0, 2.0, 3.0])),
            ..o.clone()
        };
        assert_eq!(
            kind(bce(&p, &y, &bad_weight)),
            Some(ErrorKind::ShapeMismatch)
        );
        let batchmean = BceOptions {
            reduction: Reduction::BatchMean,
            ..o.clone()
        };
        assert_eq!(
            kind(bce(&p, &y, &batchmean)),
            Some(ErrorKind::InvalidOption)
        );
        // the twin validates the same way
        assert_eq!(
            kind(bce_naive(&leaf(vec![0.2, 1.2]), &y, &o)),
            Some(ErrorKind::InvalidValue)
        );
    }
}
