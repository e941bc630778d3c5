//! Multiclass focal loss on logits: `ℓ = −α_y·(1 − p_y)^γ·log p_y`,
//! `p = softmax(z)`.
//!
//! Cross-entropy scaled by `(1 − p_y)^γ`, which fades out the items the model
//! already gets right, so rare hard items are not drowned by many easy ones
//! (dense detection, heavy class imbalance). `γ = 0` is (α-weighted)
//! cross-entropy. It trusts the labels: with noisy labels, the mislabeled
//! items are exactly the hard ones it amplifies.
//!
//! Stability: `log p_y` and `1 − p_y` come from one max-shifted pass over the
//! row, `1 − p_y` as the sum of the other classes' probabilities, so neither
//! cancels when `p_y` is near 1 nor overflows for large logits.
//! `"mean"` averages over the non-ignored items (α does not enter the
//! denominator).

use super::rows::{
    at, check_ids, class_of, class_weight, constant_rows, naive_classes, per_class, row,
    true_class, Lse, Rows,
};
use crate::checks;
use crate::common::{
    check_option, filled, no_batchmean, reduce_naive_over, reduce_over, rows_map2, slots, unfilled,
    Reduction, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::vectorized;
use lossgraph_tensor::{Float, Shape, Tensor};
use std::mem::MaybeUninit;

const OP: &str = "softmax_focal";

/// Options of [`softmax_focal`].
#[derive(Debug, Clone, PartialEq)]
pub struct SoftmaxFocalOptions {
    /// Focusing exponent `γ ≥ 0` (default 2).
    pub gamma: f64,
    /// Per-class weights `α [C]` (default none: every class 1).
    pub alpha: Option<Vec<f64>>,
    /// Class id whose items are skipped (default −100).
    pub ignore_index: i64,
    /// How items are combined (default `mean`, over non-ignored items).
    pub reduction: Reduction,
}

impl Default for SoftmaxFocalOptions {
    fn default() -> Self {
        SoftmaxFocalOptions {
            gamma: 2.0,
            alpha: None,
            ignore_index: -100,
            reduction: Reduction::Mean,
        }
    }
}

/// Softmax focal loss `−α_y·(1 − p_y)^γ·log p_y` from logits `[..., C]` and
/// class ids `[...]`.
///
/// `"none"` gives `[...]` (0 at ignored items); `"mean"` divides the sum by
/// the number of non-ignored items (0 when there is none).
///
/// Gradient: with `l = log p_y` and `q = 1 − p_y`,
/// `dℓ/dl = −α_y·q^γ·(1 − γ·p_y·l/q)` (the bracket is `1 + γ·p_y` at `q = 0`),
/// and `∂ℓ/∂z_k = dℓ/dl·([k = y] − p_k)`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{softmax_focal, SoftmaxFocalOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let z = tape.leaf(Tensor::from_vec(vec![0.0, 0.0], [1, 2])?);
/// let y = Tensor::from_vec(vec![1i64], [1])?;
/// let loss = softmax_focal(&z, &y, &SoftmaxFocalOptions::default())?;
/// // p_y = ½: ¼·log 2
/// assert!((loss.item()? - 0.25 * 2f64.ln()).abs() < 1e-12);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `target` is not the logits' shape without the last
/// axis, for 0-d logits or `C = 0`, or for `alpha` of length ≠ C;
/// `InvalidTarget` for an id outside `[0, C)` that is not `ignore_index`;
/// `InvalidOption` for `γ < 0`, an infinite `γ`, or `batchmean`.
pub fn softmax_focal<T: Float>(
    logits: &Var<T>,
    target: &Tensor<i64>,
    opts: &SoftmaxFocalOptions,
) -> Result<Var<T>> {
    let op = Focal::new(&logits.shape(), target, opts)?;
    let tape = logits.tape().clone();
    let out = tape.apply(op, &[logits])?;
    checks::logits(OP, "logits", logits, true);
    checks::class_ids(&tape, OP, target, opts.ignore_index, false);
    // the mean divides by the number of items, not by Σ α_y
    if let Some(a) = &opts.alpha {
        checks::class_weights(&tape, OP, "alpha", a, target, Some(opts.ignore_index));
    }
    Ok(out)
}

struct Focal<T> {
    target: Tensor<i64>,
    ignore: i64,
    gamma: T,
    alpha: Option<Vec<T>>,
    /// Number of non-ignored items.
    denom: T,
    reduction: Reduction,
    rows: Rows,
}

impl<T: Float> Focal<T> {
    fn new(shape: &Shape, ids: &Tensor<i64>, o: &SoftmaxFocalOptions) -> Result<Self> {
        no_batchmean(OP, o.reduction)?;
        check_option(
            OP,
            "gamma",
            o.gamma,
            o.gamma >= 0.0 && o.gamma.is_finite(),
            "[0, ∞), finite",
        )?;
        let rows = check_ids(OP, shape, ids, Some(o.ignore_index))?;
        let alpha = per_class::<T>(OP, "alpha", o.alpha.as_deref(), rows.classes)?;
        let kept = ids
            .as_slice()
            .iter()
            .filter(|&&y| y != o.ignore_index)
            .count();
        Ok(Focal {
            target: ids.clone(),
            ignore: o.ignore_index,
            gamma: T::of(o.gamma),
            alpha,
            denom: T::of(kept as f64),
            reduction: o.reduction,
            rows,
        })
    }

    fn class(&self, i: usize) -> Option<usize> {
        class_of(self.target.as_slice()[i], Some(self.ignore))
    }
}

/// What backward needs of a row: its log-sum-exp, `dℓ/d log p_y`, and
/// `q = 1 − p_y = Σ_{k≠y} p_k` (summed from the other classes, so it keeps
/// its digits when `p_y` is near 1).
#[derive(Debug, Clone, Copy, Default)]
struct RowState<T> {
    lse: Lse<T>,
    dl: T,
    q: T,
}

impl<T: Float> CustomOp<T> for Focal<T> {
    type Saved = Vec<RowState<T>>;
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }

    /// Per row, vectorised ([`true_class`]: the max and the sum over the
    /// other classes), then a few scalar numbers; rows spread over rayon.
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, Self::Saved)> {
        let (z, c) = (x[0].as_slice(), self.rows.classes);
        let g = self.gamma;
        let none: Option<&mut [T]> = None;
        let per_row = rows_map2(self.rows.rows, c, none, None, |i, _, _| {
            let Some(y) = self.class(i) else {
                return (T::zero(), RowState::default());
            };
            let zr = row(z, i, c);
            let t = vectorized(
                #[inline(always)]
                || true_class(zr, y),
            );
            let a = at(&self.alpha, y);
            let qg = t.q.powf(g); // 0^0 = 1: γ = 0 is cross-entropy
                                  // l/q → −1 as q → 0 (l = log(1 − q))
            let l_over_q = if t.q > T::zero() {
                t.log_p / t.q
            } else {
                -T::one()
            };
            let dl = -a * qg * (T::one() - g * t.p * l_over_q);
            let state = RowState {
                lse: t.lse,
                dl,
                q: t.q,
            };
            (-a * qg * t.log_p, state)
        });
        let (loss, saved): (Vec<T>, Vec<RowState<T>>) = per_row.into_iter().unzip();
        Ok((
            reduce_over(loss, &self.rows.batch, self.reduction, self.denom)?,
            saved,
        ))
    }

    /// `∂ℓ/∂z_k = s·([k = y] − p_k)` with `s = u·dℓ/dl`: `−s·p_k` for every
    /// class in one branch-free vectorised loop, then `s·q` at `y` (`q` from
    /// forward: no cancellation); an ignored row gets zeros. Each gradient
    /// element is written once (no zero fill first).
    fn backward(&self, cx: &BackwardCtx<'_, T, Self::Saved>) -> Result<Vec<Option<Tensor<T>>>> {
        let (z, c, n) = (cx.inputs[0].as_slice(), self.rows.classes, self.rows.rows);
        let up = Upstream::over(cx.grad_output, self.reduction, self.denom);
        let mut dz = unfilled(n * c);
        rows_map2(n, c, Some(slots(&mut dz, n * c)), None, |i, d, _| {
            let Some(d) = d else { return };
            let Some(y) = self.class(i) else {
                d.fill(MaybeUninit::new(T::zero()));
                return;
            };
            let RowState { lse, dl, q } = cx.saved[i];
            let s = up.at(i) * dl;
            let zr = row(z, i, c);
            vectorized(
                #[inline(always)]
                || {
                    for (dk, &zk) in d.iter_mut().zip(zr) {
                        *dk = MaybeUninit::new(-s * lse.p(zk));
                    }
                },
            );
            d[y] = MaybeUninit::new(s * q);
        });
        // SAFETY: rows_map2 visits every row, and each row's slots are written.
        unsafe { filled(&mut dz, n * c) };
        Ok(vec![Some(Tensor::from_vec(dz, cx.inputs[0].shape())?)])
    }
}

/// The naive twin of [`softmax_focal`]: `p = softmax(z)`, `log p`, the true
/// class picked by a one-hot product, then `−α_y·(1 − p_y)^γ·log p_y`.
///
/// # Errors
/// As [`softmax_focal`].
pub fn softmax_focal_naive<T: Float>(
    logits: &Var<T>,
    target: &Tensor<i64>,
    opts: &SoftmaxFocalOptions,
) -> Result<Var<T>> {
    let shape = logits.shape();
    // validation only; the rest comes from the ids and the options
    let op = Focal::<T>::new(&shape, target, opts)?;
    let (classes, batch) = (op.rows.classes, op.rows.batch);
    let ids = naive_classes(target, Some(opts.ignore_index));
    let tape = logits.tape();
    let onehot = constant_rows(tape, &shape, classes, |i, r| {
        if let Some(y) = ids[i] {
            r[y] = T::one();
        }
    })?;
    // −α_y per kept row, 0 where ignored; the mean is over the kept rows
    let coef: Vec<T> = ids
        .iter()
        .map(|y| y.map_or(T::zero(), |y| T::of(-class_weight(&opts.alpha, y))))
        .collect();
    let kept = ids.iter().flatten().count();
    let coef = tape.constant(Tensor::from_vec(coef, &batch)?);
    let last = shape.ndim() - 1;
    let p = logits.softmax()?;
    let p_y = p.mul(&onehot)?.sum(last, false)?;
    let log_p_y = p.log()?.mul(&onehot)?.sum(last, false)?;
    let focus = p_y.neg()?.add_scalar(T::one())?.powf(T::of(opts.gamma))?;
    let loss = focus.mul(&log_p_y)?.mul(&coef)?;
    reduce_naive_over(loss, opts.reduction, T::of(kept as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case};
    use lossgraph_autodiff::{ErrorKind, Tape};

    fn ids(v: &[i64], shape: &[usize]) -> Tensor<i64> {
        Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
    }

    #[test]
    fn focal_gradcheck_and_twin() {
        let cases = [
            (vec![5usize, 3], ids(&[0, -100, 2, 1, 2], &[5])),
            (vec![2, 3, 3], ids(&[2, 1, -100, 0, 0, 1], &[2, 3])),
        ];
        for (seed, (shape, y)) in cases.iter().enumerate() {
            for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                for (gamma, alpha) in [
                    (2.0, None),
                    (0.0, None),
                    (0.5, Some(vec![0.25, 1.0, 2.0])),
                    (3.0, None),
                ] {
                    let o = SoftmaxFocalOptions {
                        gamma,
                        alpha,
                        reduction,
                        ..Default::default()
                    };
                    check_family(
                        &Case::normal(1, shape, seed as u64 + 1),
                        |v| softmax_focal(&v[0], y, &o),
                        |v| softmax_focal_naive(&v[0], y, &o),
                    );
                }
            }
        }
    }

    #[test]
    fn large_inputs_split_over_rayon_agree_with_twin() {
        // 400 × 100 elements: above the parallel threshold
        let y: Vec<i64> = (0..400)
            .map(|i| if i % 9 == 4 { -100 } else { i % 100 })
            .collect();
        let y = ids(&y, &[400]);
        let o = SoftmaxFocalOptions::default();
        check_twins(
            &Case::normal(1, &[400, 100], 21),
            |v| softmax_focal(&v[0], &y, &o),
            |v| softmax_focal_naive(&v[0], &y, &o),
        );
    }

    #[test]
    fn confident_items_keep_precision() {
        // p_y = 1 − 1e-12: the loss is ≈ q^γ·q = 1e-36 for γ = 2; computing
        // 1 − p_y by subtraction would lose every digit of q
        let tape = Tape::<f64>::new();
        let gap = -(1e-12f64).ln(); // p_other/p_y = e^{−gap} = 1e-12
        let z = tape.leaf(Tensor::from_vec(vec![gap, 0.0], [1, 2]).unwrap());
        let y = ids(&[0], &[1]);
        let loss = softmax_focal(&z, &y, &SoftmaxFocalOptions::default()).unwrap();
        let q: f64 = 1e-12 / (1.0 + 1e-12);
        let want = -q * q * (-q).ln_1p();
        let got = loss.item().unwrap();
        assert!((got - want).abs() <= 1e-9 * want, "{got:e} vs {want:e}");
        let g = loss.backward().unwrap();
        assert!(g.get(&z).unwrap().as_slice().iter().all(|d| d.is_finite()));
    }

    #[test]
    fn f32_extreme_logits_stay_finite() {
        let t = Tape::<f32>::new();
        let z =
            t.leaf(Tensor::from_vec(vec![1e4f32, -1e4, 0.0, 50.0, -50.0, 10.0], [2, 3]).unwrap());
        let y = ids(&[1, 0], &[2]);
        let o = SoftmaxFocalOptions::default();
        let naive = softmax_focal_naive(&z, &y, &o).unwrap().item().unwrap();
        assert!(!naive.is_finite());
        let loss = softmax_focal(&z, &y, &o).unwrap();
        // row 0: p_y ≈ e^{−2e4}, q = 1, ℓ = 2e4; row 1: ℓ = (1−p)²·(lse − 50)
        assert!((loss.item().unwrap() - 1e4).abs() < 1.0);
        let g = loss.backward().unwrap();
        assert!(g.get(&z).unwrap().as_slice().iter().all(|d| d.is_finite()));
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let d = SoftmaxFocalOptions::default();
        let kind = |r: Result<Var<f64>>| r.err().map(|e| e.kind());
        assert_eq!(
            kind(softmax_focal(&z, &ids(&[3, 0], &[2]), &d)),
            Some(ErrorKind::InvalidTarget)
        );
        assert_eq!(
            kind(softmax_focal(&z, &ids(&[0], &[1]), &d)),
            Some(ErrorKind::ShapeMismatch)
        );
        let a = SoftmaxFocalOptions {
            alpha: Some(vec![1.0; 2]),
            ..Default::default()
        };
        assert_eq!(
            kind(softmax_focal(&z, &ids(&[0, 1], &[2]), &a)),
            Some(ErrorKind::ShapeMismatch)
        );
        let g = SoftmaxFocalOptions {
            gamma: -1.0,
            ..Default::default()
        };
        assert_eq!(
            kind(softmax_focal(&z, &ids(&[0, 1], &[2]), &g)),
            Some(ErrorKind::InvalidOption)
        );
        assert_eq!(
            kind(softmax_focal_naive(&z, &ids(&[0, 1], &[2]), &g)),
            Some(ErrorKind::InvalidOption)
        );
        let inf = SoftmaxFocalOptions {
            gamma: f64::INFINITY,
            ..Default::default()
        };
        assert_eq!(
            kind(softmax_focal(&z, &ids(&[0, 1], &[2]), &inf)),
            Some(ErrorKind::InvalidOption)
        );
    }
}
