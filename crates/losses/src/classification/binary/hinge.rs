//! Hinge loss: `ℓ = max(0, margin − y·s)` for labels `y ∈ {−1, +1}`.
//!
//! A margin surrogate for the 0–1 loss, as in support vector machines: it
//! asks for separation, not calibrated probabilities. An item scored on the
//! right side by at least `margin` costs nothing and gets no gradient; every
//! other item is pushed with constant force `y`.
//!
//! Gradients, where `margin − y·s > 0`: `∂ℓ/∂s = −y`, `∂ℓ/∂y = −s`; 0
//! elsewhere, including at the corner `y·s = margin` (the subgradient 0: this
//! loss has no PyTorch equivalent). A label other than ±1 is `InvalidTarget`.

use crate::common::{
    check_denominator, check_option, first_where, no_batchmean, reduce_naive_with, same_shape,
    Elementwise, Reduction,
};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Error, Float};

/// Options of [`hinge`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HingeOptions {
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The margin the score must clear on the right side (default 1.0; any
    /// finite number).
    pub margin: f64,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for HingeOptions {
    fn default() -> Self {
        HingeOptions {
            reduction: Reduction::default(),
            margin: 1.0,
            denominator: None,
        }
    }
}

/// Hinge loss `max(0, margin − y·s)` of scores against ±1 labels, reduced.
///
/// Gradient: `∂ℓ/∂s = −y` and `∂ℓ/∂y = −s` where `margin − y·s > 0`, else 0
/// (0 at the corner).
///
/// Options: `reduction` (`mean`), `margin` (1.0) — see [`HingeOptions`].
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{hinge, HingeOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let scores = tape.leaf(Tensor::from_vec(vec![2.0, 0.25, 0.5], [3])?);
/// let target = tape.constant(Tensor::from_vec(vec![1.0, 1.0, -1.0], [3])?);
/// let loss = hinge(&scores, &target, &HingeOptions::default())?;
/// assert_eq!(loss.item()?, (0.0 + 0.75 + 1.5) / 3.0);
/// let g = loss.backward()?;
/// assert_eq!(g.get(&scores).unwrap().to_vec(), vec![0.0, -1.0 / 3.0, 1.0 / 3.0]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `scores` and `target` differ in shape;
/// `InvalidTarget` when a label is not ±1 (NaN labels propagate);
/// `InvalidOption` when `margin` is not finite or for `batchmean`.
pub fn hinge<T: Float>(scores: &Var<T>, target: &Var<T>, opts: &HingeOptions) -> Result<Var<T>> {
    validate(scores, target, opts)?;
    let m = T::of(opts.margin);
    Elementwise::new(
        "hinge",
        opts.reduction,
        #[inline(always)]
        move |s: T, y: T| {
            // written so that NaN propagates (`max` would drop it)
            let slack = m - y * s;
            if slack < T::zero() {
                T::zero()
            } else {
                slack
            }
        },
        #[inline(always)]
        move |s: T, y: T| {
            if m - y * s > T::zero() {
                (-y, -s)
            } else {
                (T::zero(), T::zero())
            }
        },
    )
    .over(opts.denominator)
    .apply(scores, target)
}

/// Checks shared by [`hinge`] and its twin.
fn validate<T: Float>(scores: &Var<T>, target: &Var<T>, opts: &HingeOptions) -> Result<()> {
    no_batchmean("hinge", opts.reduction)?;
    check_denominator("hinge", opts.denominator, opts.reduction)?;
    check_option(
        "hinge",
        "margin",
        opts.margin,
        opts.margin.is_finite(),
        "finite numbers",
    )?;
    same_shape(
        "hinge",
        &scores.shape(),
        &target.shape(),
        "scores and target",
    )?;
    let t = target.value();
    let t = t.as_slice();
    // a vectorised count first: a branchy search over random ±1 labels
    // mispredicts on every other element and cost more than the loss
    let bad = first_where(t, |y| y != T::one() && y != -T::one() && !y.is_nan());
    if let Some((i, y)) = bad.map(|i| (i, t[i])) {
        return Err(Error::target("hinge", format!("target[{i}] = {y} is not -1 or +1")).into());
    }
    Ok(())
}

/// The naive twin of [`hinge`]: `relu(margin − y·s)` with primitive ops.
///
/// # Errors
/// As [`hinge`].
pub fn hinge_naive<T: Float>(
    scores: &Var<T>,
    target: &Var<T>,
    opts: &HingeOptions,
) -> Result<Var<T>> {
    validate(scores, target, opts)?;
    let slack = target.mul(scores)?.neg()?.add_scalar(T::of(opts.margin))?;
    reduce_naive_with(slack.relu()?, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::uniform;
    use super::*;
    use crate::testing::{check_family, check_twins, Case, REDUCTIONS};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::{ErrorKind, Tensor};

    /// Scores and ±1 labels with every `|margin − y·s| ≥ 0.05` (no kink within
    /// a finite-difference step).
    fn scores_and_labels(shape: &[usize], margin: f64, seed: u64) -> (Tensor<f64>, Tensor<f64>) {
        let y = uniform(shape, -1.0, 1.0, seed).map(|v| if v < 0.0 { -1.0 } else { 1.0 });
        let s = uniform(shape, -3.0, 3.0, seed + 100);
        let s = Tensor::from_vec(
            s.as_slice()
                .iter()
                .zip(y.as_slice())
                .map(|(&s, &y)| {
                    let slack = margin - y * s;
                    if slack.abs() < 0.05 {
                        s + 0.1
                    } else {
                        s
                    }
                })
                .collect(),
            shape.to_vec(),
        )
        .unwrap();
        (s, y)
    }

    #[test]
    fn hinge_gradcheck_and_twin() {
        for margin in [1.0, 2.0, 0.0] {
            for (reduction, denominator) in REDUCTIONS {
                let o = HingeOptions {
                    reduction,
                    margin,
                    denominator,
                };
                for (shape, seed) in [(&[9][..], 1), (&[3, 4][..], 2)] {
                    let (s, y) = scores_and_labels(shape, margin, seed);
                    // labels stay exactly ±1: they are a constant for gradcheck …
                    let yc = y.clone();
                    check_family(
                        &Case::new(vec![s.clone()]),
                        |v| hinge(&v[0], &v[0].tape().constant(yc.clone()), &o),
                        |v| hinge_naive(&v[0], &v[0].tape().constant(yc.clone()), &o),
                    );
                    // … and a leaf for the twin check, which compares ∂ℓ/∂y too
                    check_twins(
                        &Case::new(vec![s, y]),
                        |v| hinge(&v[0], &v[1], &o),
                        |v| hinge_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn hinge_corner_gets_zero_gradient() {
        let tape = Tape::<f64>::new();
        let s = tape.leaf(Tensor::from_slice(&[1.0, -1.0, 0.5]));
        let y = tape.leaf(Tensor::from_slice(&[1.0, -1.0, 1.0]));
        let o = HingeOptions {
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let loss = hinge(&s, &y, &o).unwrap();
        assert_eq!(loss.item().unwrap(), 0.5);
        let g = loss.backward().unwrap();
        assert_eq!(g.get_or_zeros(&s).to_vec(), vec![0.0, 0.0, -1.0]);
        assert_eq!(g.get_or_zeros(&y).to_vec(), vec![0.0, 0.0, -0.5]);
    }

    #[test]
    fn hinge_errors() {
        let tape = Tape::<f64>::new();
        let leaf = |d: &[f64]| tape.leaf(Tensor::from_slice(d));
        let kind = |r: Result<Var<f64>>| r.err().map(|e| e.kind());
        let s = leaf(&[0.3, -2.0, 1.0]);
        let o = HingeOptions::default();
        assert_eq!(
            kind(hinge(&s, &leaf(&[1.0, 0.0, -1.0]), &o)),
            Some(ErrorKind::InvalidTarget)
        );
        assert_eq!(
            kind(hinge_naive(&s, &leaf(&[1.0, 0.5, -1.0]), &o)),
            Some(ErrorKind::InvalidTarget)
        );
        let y = leaf(&[1.0, -1.0, 1.0]);
        assert_eq!(
            kind(hinge(&s, &leaf(&[1.0, -1.0]), &o)),
            Some(ErrorKind::ShapeMismatch)
        );
        let nan_margin = HingeOptions {
            margin: f64::NAN,
            ..o
        };
        assert_eq!(
            kind(hinge(&s, &y, &nan_margin)),
            Some(ErrorKind::InvalidOption)
        );
        let batchmean = HingeOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(
            kind(hinge(&s, &y, &batchmean)),
            Some(ErrorKind::InvalidOption)
        );
    }
}
