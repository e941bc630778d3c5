//! Brier score on logits: `ℓ = Σ_c (p_c − [c = y])²`, `p = softmax(z)`.
//!
//! The squared distance between the predicted distribution and the one-hot
//! truth: a strictly proper scoring rule like log loss, but bounded (in
//! `[0, 2]`), so a confidently wrong item costs at most 2 instead of an
//! unbounded `−log p_y`. The flip side is a vanishing gradient when the model
//! is confidently wrong (every `p_k(…)` factor tends to 0), which makes it a
//! better calibration metric than training objective from scratch.
//!
//! Computed as `(1 − p_y)² + Σ_{c≠y} p_c²` with `1 − p_y` summed from the
//! other classes, so a near-certain correct item keeps a small, accurate loss;
//! likewise the gradient at a near-certain wrong class (`1 − p_m` summed from
//! the others), so a saturated row keeps small, accurate gradients.

use super::rows::{check_ids, constant_rows, row, sum_others, true_class, Lse, Rows};
use crate::checks;
use crate::common::{
    filled, no_batchmean, reduce_naive_over, reduce_over, rows_map2, slots, unfilled, Reduction,
    Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::vectorized;
use lossgraph_tensor::{Float, Shape, Tensor};
use std::mem::MaybeUninit;

const OP: &str = "brier";

/// Options of [`brier`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BrierOptions {
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
}

/// Brier score `Σ_c (softmax(z)_c − onehot(y)_c)²` from logits `[..., C]` and
/// class ids `[...]`; `"none"` gives `[...]`.
///
/// Gradient: with `g_c = 2(p_c − [c = y])` and `d = Σ_c g_c·p_c`,
/// `∂ℓ/∂z_k = p_k·(g_k − d)`; at `k = y` this is `−2·p_y·ℓ`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{brier, BrierOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let z = tape.leaf(Tensor::from_vec(vec![0.0, 0.0], [1, 2])?);
/// let y = Tensor::from_vec(vec![0i64], [1])?;
/// let loss = brier(&z, &y, &BrierOptions::default())?;
/// assert!((loss.item()? - 0.5).abs() < 1e-12); // (½ − 1)² + ½²
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `target` is not the logits' shape without the last
/// axis, or for 0-d logits or `C = 0`; `InvalidTarget` for an id outside
/// `[0, C)`; `InvalidOption` for `batchmean`.
pub fn brier<T: Float>(
    logits: &Var<T>,
    target: &Tensor<i64>,
    opts: &BrierOptions,
) -> Result<Var<T>> {
    let op = Brier::new(&logits.shape(), target, opts)?;
    let out = logits.tape().clone().apply(op, &[logits])?;
    checks::logits(OP, "logits", logits, true);
    Ok(out)
}

struct Brier {
    target: Tensor<i64>,
    reduction: Reduction,
    rows: Rows,
}

impl Brier {
    fn new(shape: &Shape, ids: &Tensor<i64>, o: &BrierOptions) -> Result<Self> {
        no_batchmean(OP, o.reduction)?;
        let rows = check_ids(OP, shape, ids, None)?;
        Ok(Brier {
            target: ids.clone(),
            reduction: o.reduction,
            rows,
        })
    }

    fn class(&self, i: usize) -> usize {
        // ids are checked to lie in [0, C)
        self.target.as_slice()[i] as usize
    }
}

/// What backward needs of a row: its log-sum-exp, loss, `d = Σ_c g_c·p_c`,
/// and for a wrong argmax class `m` holding most of the mass, `m` and its
/// `2p_m − d` formed without cancellation.
#[derive(Debug, Clone, Copy)]
struct RowState<T> {
    lse: Lse<T>,
    loss: T,
    d: T,
    argmax: Option<(usize, T)>,
}

/// `2p_m − d` for the class `m ≠ y` of the row's largest logit, when it
/// holds more than half the mass (else `None`: then `2p_m − d` cancels at
/// most a few ulps). Near `p_m = 1`, `2p_m` and `d = 2(Σ_c p_c² − p_y)` agree
/// to all digits while their difference is `2(p_m(1 − p_m) − Σ_{c≠m} p_c² +
/// p_y)`, which is formed here from `1 − p_m = Σ_{c≠m} p_c` instead
/// (vectorised: call it inside [`vectorized`]).
#[inline(always)]
fn wrong_argmax<T: Float>(z: &[T], y: usize, lse: &Lse<T>, p_y: T) -> Option<(usize, T)> {
    let m = z.iter().position(|&v| v == lse.max)?;
    if m == y {
        return None;
    }
    let t = true_class(z, m);
    if t.p <= T::of(0.5) || t.p.is_nan() {
        return None;
    }
    let others_sq = sum_others(
        z,
        m,
        #[inline(always)]
        |zk| {
            let p = t.lse.p(zk);
            p * p
        },
    );
    Some((m, T::of(2.0) * (t.p * t.q - others_sq + p_y)))
}

impl<T: Float> CustomOp<T> for Brier {
    type Saved = Vec<RowState<T>>;
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }

    /// Per row, vectorised ([`true_class`], then `Σ_{c≠y} p_c²` over the
    /// slices before and after `y`); rows spread over rayon.
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, Self::Saved)> {
        let (z, c) = (x[0].as_slice(), self.rows.classes);
        let none: Option<&mut [T]> = None;
        let per_row = rows_map2(self.rows.rows, c, none, None, |i, _, _| {
            let (zr, y) = (row(z, i, c), self.class(i));
            vectorized(
                #[inline(always)]
                || {
                    let t = true_class(zr, y);
                    let others = sum_others(
                        zr,
                        y,
                        #[inline(always)]
                        |zk| {
                            let p = t.lse.p(zk);
                            p * p
                        },
                    );
                    let loss = t.q * t.q + others;
                    // d = Σ_c 2(p_c − [c = y])·p_c = 2(Σ_{c≠y} p_c² − q·p_y)
                    let d = T::of(2.0) * (others - t.q * t.p);
                    let argmax = wrong_argmax(zr, y, &t.lse, t.p);
                    (
                        loss,
                        RowState {
                            lse: t.lse,
                            loss,
                            d,
                            argmax,
                        },
                    )
                },
            )
        });
        let (loss, saved): (Vec<T>, Vec<RowState<T>>) = per_row.into_iter().unzip();
        let n = T::of(self.rows.rows as f64);
        Ok((
            reduce_over(loss, &self.rows.batch, self.reduction, n)?,
            saved,
        ))
    }

    /// `∂ℓ/∂z_k = u·p_k·(2p_k − d)` for every class in one branch-free
    /// vectorised loop, then the true class overwritten with its own form;
    /// each gradient element written once (no zero fill).
    fn backward(&self, cx: &BackwardCtx<'_, T, Self::Saved>) -> Result<Vec<Option<Tensor<T>>>> {
        let (z, c, n) = (cx.inputs[0].as_slice(), self.rows.classes, self.rows.rows);
        let up = Upstream::over(cx.grad_output, self.reduction, T::of(n as f64));
        let two = T::of(2.0);
        let mut dz = unfilled(n * c);
        rows_map2(n, c, Some(slots(&mut dz, n * c)), None, |i, dr, _| {
            let Some(dr) = dr else { return };
            let (u, s, y, zr) = (up.at(i), cx.saved[i], self.class(i), row(z, i, c));
            vectorized(
                #[inline(always)]
                || {
                    for (dk, &zk) in dr.iter_mut().zip(zr) {
                        let p = s.lse.p(zk);
                        *dk = MaybeUninit::new(u * p * (two * p - s.d));
                    }
                },
            );
            // at y: p_y·(−2(1 − p_y) − d) = −2·p_y·ℓ
            dr[y] = MaybeUninit::new(-two * u * s.lse.p(zr[y]) * s.loss);
            // at a wrong argmax near p = 1: 2p_m − d without cancellation
            if let Some((m, e)) = s.argmax {
                dr[m] = MaybeUninit::new(u * s.lse.p(zr[m]) * e);
            }
        });
        // SAFETY: rows_map2 visits every row, and each row's slots are written.
        unsafe { filled(&mut dz, n * c) };
        Ok(vec![Some(Tensor::from_vec(dz, cx.inputs[0].shape())?)])
    }
}

/// The naive twin of [`brier`]: `softmax(z) − onehot(y)`, squared, summed over
/// the class axis.
///
/// # Errors
/// As [`brier`].
pub fn brier_naive<T: Float>(
    logits: &Var<T>,
    target: &Tensor<i64>,
    opts: &BrierOptions,
) -> Result<Var<T>> {
    let shape = logits.shape();
    let op = Brier::new(&shape, target, opts)?;
    let onehot = constant_rows(logits.tape(), &shape, op.rows.classes, |i, r| {
        r[op.class(i)] = T::one();
    })?;
    let loss = logits
        .softmax()?
        .sub(&onehot)?
        .square()?
        .sum(shape.ndim() - 1, false)?;
    reduce_naive_over(loss, op.reduction, T::of(op.rows.rows as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case};
    use lossgraph_autodiff::{ErrorKind, Tape};

    fn ids(v: &[i64], shape: &[usize]) -> Tensor<i64> {
        Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
    }

    #[test]
    fn brier_gradcheck_and_twin() {
        let cases = [
            (vec![5usize, 4], ids(&[0, 3, 2, 1, 2], &[5])),
            (vec![2, 3, 3], ids(&[2, 1, 0, 0, 0, 1], &[2, 3])),
        ];
        for (seed, (shape, y)) in cases.iter().enumerate() {
            for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                let o = BrierOptions { reduction };
                check_family(
                    &Case::normal(1, shape, seed as u64 + 3),
                    |v| brier(&v[0], y, &o),
                    |v| brier_naive(&v[0], y, &o),
                );
            }
        }
    }

    #[test]
    fn f32_large_logits_match_f64() {
        // softmax of large f32 logits is exact enough; the loss near p_y = 1
        // keeps its tiny value instead of rounding 1 − p_y to 0
        let data = vec![1e4, -1e4, 0.5, 30.0, 0.0, 5.0];
        let y = ids(&[0, 0], &[2]);
        let o = BrierOptions {
            reduction: Reduction::None,
        };
        let t32 = Tape::<f32>::new();
        let z32 =
            t32.leaf(Tensor::from_vec(data.iter().map(|&v| v as f32).collect(), [2, 3]).unwrap());
        let t64 = Tape::<f64>::new();
        let z64 = t64.leaf(Tensor::from_vec(data, [2, 3]).unwrap());
        let (a, b) = (
            brier(&z32, &y, &o).unwrap().value(),
            brier(&z64, &y, &o).unwrap().value(),
        );
        for (&a, &b) in a.as_slice().iter().zip(b.as_slice()) {
            assert!((a as f64 - b).abs() <= 1e-5 * b.abs(), "{a:e} vs {b:e}");
        }
        assert!(b.as_slice()[1] > 0.0);
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let d = BrierOptions::default();
        let kind = |r: Result<Var<f64>>| r.err().map(|e| e.kind());
        // brier has no ignore_index: −100 is a bad id
        assert_eq!(
            kind(brier(&z, &ids(&[-100, 0], &[2]), &d)),
            Some(ErrorKind::InvalidTarget)
        );
        assert_eq!(
            kind(brier(&z, &ids(&[3, 0], &[2]), &d)),
            Some(ErrorKind::InvalidTarget)
        );
        assert_eq!(
            kind(brier(&z, &ids(&[0, 0], &[1, 2]), &d)),
            Some(ErrorKind::ShapeMismatch)
        );
        let bm = BrierOptions {
            reduction: Reduction::BatchMean,
        };
        assert_eq!(
            kind(brier(&z, &ids(&[0, 0], &[2]), &bm)),
            Some(ErrorKind::InvalidOption)
        );
        assert_eq!(
            kind(brier_naive(&z, &ids(&[3, 0], &[2]), &d)),
            Some(ErrorKind::InvalidTarget)
        );
    }
}
